"""Test priors: the p(z) under which -ELBO, KL and IW-NLL are reported (docs/maths.md section 4).

The core offers ``trained`` (the model's own prior, the default), ``standard`` (N(0, I)) and any variance s^2
from 1e-6 to 1e6 (N(0, s^2 I)). Plugins offer more through the hook ``vaezoo_test_priors``: the ncvae plugin adds
``optimal`` (the variance its objective implies) and ``tuned`` (the best variance on validation data).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import torch
from torch.distributions import Distribution, Independent, Normal

from vaezoo.base.errors import UsageError
from vaezoo.components.distributions import isotropic_normal
from vaezoo.config.prior_setting import check_test_prior, variance_of
from vaezoo.runs.session import Session


@attrs.frozen
class TestPrior:
    """A test prior and, when it is N(0, s^2 I), its variance s^2 (reported as ``test_prior_variance``)."""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    distribution: Distribution
    variance: float | None = None

    @classmethod
    def isotropic(cls, session: Session, variance: float) -> TestPrior:
        """N(0, variance I) over the session's latent space, on its device."""
        like = next(session.model.parameters())
        return cls(isotropic_normal(session.config.model.latent_dim, variance, like=like), variance)


#: What a plugin offers for a session: test-prior names, each with a function that builds it when asked.
Offered = dict[str, Callable[[], TestPrior]]


def offered_test_priors(session: Session) -> Offered:
    """The named test priors available for ``session``'s model: the core's and every plugin's."""
    offered: Offered = {
        "trained": lambda: _trained(session),
        "standard": lambda: TestPrior.isotropic(session, 1.0),
    }
    hook = session.hook
    for answer in hook.vaezoo_test_priors(session=session) if hook is not None else []:
        offered.update(answer)
    return offered


def resolve_test_prior(session: Session, choice: str) -> TestPrior:
    """The test prior ``choice`` names for ``session`` (a UsageError listing the offered names if none)."""
    variance = variance_of(check_test_prior(choice))
    if variance is not None:
        return TestPrior.isotropic(session, variance)
    return _offered(session, choice)()


def check_test_prior_offered(session: Session, choice: str) -> None:
    """Refuse, before any training, a test prior name that nothing offers for ``session``'s model."""
    if variance_of(check_test_prior(choice)) is None:
        _offered(session, choice)


def _offered(session: Session, name: str) -> Callable[[], TestPrior]:
    """The builder of the test prior ``name`` offered for ``session`` (a UsageError listing the offered names)."""
    offered = offered_test_priors(session)
    if name not in offered:
        raise UsageError(
            f"test prior {name!r} is not offered for regularizer {session.config.regularizer.name!r}; choose one "
            f"of: {', '.join(offered)}, or a variance"
        )
    return offered[name]


def _trained(session: Session) -> TestPrior:
    with torch.no_grad():
        prior = session.model.prior()
    return TestPrior(prior, isotropic_variance(prior))


def isotropic_variance(distribution: Distribution) -> float | None:
    """s^2 when ``distribution`` is N(0, s^2 I) (an Independent Normal of zero mean and equal scales), else None."""
    if not (isinstance(distribution, Independent) and isinstance(distribution.base_dist, Normal)):
        return None
    loc, scale = distribution.base_dist.loc, distribution.base_dist.scale
    if bool((loc != 0).any()) or bool((scale != scale.flatten()[0]).any()):
        return None
    return float(scale.flatten()[0]) ** 2
