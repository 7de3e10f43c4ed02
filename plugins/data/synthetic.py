"""The paper's toy task (docs/maths.md section 7): data and noise from two spherical Gaussians, generated in memory."""

from __future__ import annotations

from pathlib import Path

import attrs
import torch
from torch import Tensor

from vaezoo.api import Data, DataSource, DataSpec, evaluation_rng, latent_scatter, param

#: Numbers the generated data set may hold (float32: 1 GiB).
MAX_NUMBERS = 2**28
#: Largest mean and standard deviation of a coordinate: the networks see x unnormalised, and inputs much larger
#: overflow an MLP encoder's posterior scale exp(log sigma) in float32.
MAX_SCALE = 100


@attrs.frozen
class SyntheticParams:
    dim: int = param(100, ge=1, le=4096, help="dimension of x")
    n_train: int = param(10000, ge=1, le=10**6, help="training examples (as many noise examples are drawn)")
    n_valid: int = param(1000, ge=1, le=10**6, help="validation examples")
    n_test: int = param(1000, ge=1, le=10**6, help="test examples (as many noise examples are drawn)")
    data_mean: float = param(0.0, ge=-MAX_SCALE, le=MAX_SCALE, help="every coordinate's mean under p_d")
    data_std: float = param(1.0, gt=0, le=MAX_SCALE, help="every coordinate's standard deviation under p_d")
    noise_mean: float = param(0.5, ge=-MAX_SCALE, le=MAX_SCALE, help="every coordinate's mean under p_n")
    noise_std: float = param(1.5, gt=0, le=MAX_SCALE, help="every coordinate's standard deviation under p_n")
    data_seed: int = param(
        20190723, ge=0, le=2**32 - 1, help="seed of the generated data (independent of the run seed)"
    )

    def __attrs_post_init__(self) -> None:
        numbers = (2 * self.n_train + self.n_valid + 2 * self.n_test) * self.dim
        if numbers > MAX_NUMBERS:
            raise ValueError(
                f"(2 n_train + n_valid + 2 n_test) * dim must be <= {MAX_NUMBERS} (1 GiB of data and noise), got "
                f"(2*{self.n_train} + {self.n_valid} + 2*{self.n_test}) * {self.dim} = {numbers}: lower 'dim' or "
                "the example counts"
            )


class NoisyData(Data):
    """Splits of a data set that also has a contrastive distribution of its own: ``noise`` maps a split name
    (``train``, ``test``) to noise examples. The ``dataset`` noise sampler draws from ``noise["train"]``."""

    def __init__(self, spec: DataSpec, train: Tensor, valid: Tensor, test: Tensor, noise: dict[str, Tensor]) -> None:
        super().__init__(spec, train, valid, test)
        self.noise = noise

    def noise_examples(self, split: str) -> Tensor | None:
        return self.noise.get(split)


class SyntheticData(DataSource):
    """p_d = N(data_mean, data_std^2 I) and p_n = N(noise_mean, noise_std^2 I) in ``dim`` dimensions.

    The noise examples are the data set's own contrastive distribution (:class:`NoisyData`) for the train and
    test splits. The splits need no overlap check (see ``vaezoo_plugins.data.checks``): they are successive draws of
    one seeded stream, so no example is read twice, and an equal draw of ``dim`` real coordinates is a coincidence
    of float32 rounding (possible only in very few dimensions), not an example shared by mistake.
    """

    name = "synthetic"
    description = "two spherical Gaussians (data and noise), the paper's Fig. 2 task"
    Params = SyntheticParams
    needs_data_dir = False
    default_noise = "dataset"

    def load(self, data_dir: Path | None, seed: int) -> Data:
        p = self.params
        generator = torch.Generator().manual_seed(p.data_seed)

        def draw(n: int, mean: float, std: float) -> torch.Tensor:
            return mean + std * torch.randn(n, p.dim, generator=generator)

        train, valid, test = (draw(n, p.data_mean, p.data_std) for n in (p.n_train, p.n_valid, p.n_test))
        noise = {split: draw(n, p.noise_mean, p.noise_std) for split, n in (("train", p.n_train), ("test", p.n_test))}
        return NoisyData(DataSpec((p.dim,), "real"), train, valid, test, noise)


#: Test examples of data and of noise whose codes the Fig. 2 scatter shows.
CODES_LIMIT = 2000
SCATTER_NAME = "latent_scatter.png"


@torch.no_grad()
def _test_codes(session) -> tuple[Tensor, Tensor]:
    """Posterior samples ``'b d'`` of the test data and of the test noise (at most CODES_LIMIT each), on the CPU,
    drawn under an evaluation RNG of their own."""
    model = session.model
    model.eval()
    data = session.data

    def encode(x: Tensor) -> Tensor:
        return model.encoder(x[:CODES_LIMIT].to(session.device)).sample().cpu()

    with evaluation_rng(session, salt=1):
        return encode(data.splits["test"]), encode(data.noise["test"])


def _has_test_noise(session) -> bool:
    return isinstance(session.data, NoisyData) and "test" in session.data.noise


def finish(session, run_dir: Path) -> None:
    """For a data set with a noise distribution: the paper's Fig. 2 scatter of test data and noise codes
    (``latent_scatter.png``)."""
    if not _has_test_noise(session):
        return
    data_codes, noise_codes = _test_codes(session)
    config = session.config
    latent_scatter(data_codes, noise_codes, run_dir / SCATTER_NAME, f"{config.regularizer.name} on {config.data.name}")
