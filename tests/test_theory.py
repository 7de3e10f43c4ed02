"""The theory lab: exact objectives on finite spaces, their optima, Theorem 5's fixed point, and the command.

Budgets are small (a few hundred Adam steps, a few restarts) so the file runs in well under a minute; the
tolerances below hold with them and would fail if an objective, the optimiser or the fixed point were wrong.
"""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
from torch.distributions import Categorical, kl_divergence

from vaezoo.base.errors import UsageError
from vaezoo.components.divergences import discriminator_jsd
from vaezoo_plugins.theory import cli as theory_cli
from vaezoo_plugins.theory.lab import (
    COLLAPSE_NATS,
    DTYPE,
    LabConfig,
    Problem,
    Setting,
    aggregate_posterior,
    exact_jsd,
    expected_kl,
    minimise,
    mutual_information,
    ncvae_fixed_point,
    ncvae_map,
    objective,
    optimal_decoder_logits,
    reconstruction_error,
)

PROBLEM = Problem.default()
P_DATA = PROBLEM.tensor("p_data")
BUDGET = {"restarts": 4, "steps": 600, "seed": 0}


def random_simplex(*shape: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=generator, dtype=DTYPE) * 1.5).softmax(-1)


def random_logits(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DTYPE) * 2


def reference_jsd(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """0.5 KL(q || m) + 0.5 KL(p || m), m = (p + q) / 2, from torch's categorical KL."""
    m = Categorical(probs=(p + q) / 2)
    return 0.5 * kl_divergence(Categorical(probs=q), m) + 0.5 * kl_divergence(Categorical(probs=p), m)


# ------------------------------------------------------------------------------------------- exact terms


def test_discriminator_jsd_with_the_optimal_discriminator_is_the_exact_jsd():
    q, p = random_simplex(64, 5, seed=1), random_simplex(64, 5, seed=2)
    assert torch.allclose(exact_jsd(q, p), reference_jsd(q, p), rtol=0, atol=1e-12)
    # and a single prior against a batch of aggregates, as the AAE objective uses it
    assert torch.allclose(exact_jsd(q, p[0]), reference_jsd(q, p[0].expand_as(q)), rtol=0, atol=1e-12)
    assert exact_jsd(p[0], p[0]).abs().item() < 1e-15
    assert exact_jsd(
        torch.tensor([1 - 1e-12, 1e-12], dtype=DTYPE), torch.tensor([1e-12, 1 - 1e-12], dtype=DTYPE)
    ).item() == pytest.approx(math.log(2), abs=1e-9)


def test_any_other_discriminator_gives_a_lower_bound():
    q, p = random_simplex(5, seed=3), random_simplex(5, seed=4)
    optimal = p.log() - q.log()
    other = optimal + random_logits(5, seed=5)
    bound = discriminator_jsd(other, other, p, q)
    assert bound.item() < exact_jsd(q, p).item() - 1e-4


def test_mutual_information_and_bayes_decoder_match_their_definitions():
    encoder = random_logits(3, 4, 4, seed=6)  # 'r x z'
    q = encoder.softmax(-1)
    joint = P_DATA[:, None] * q  # 'r x z'
    marginal = joint.sum(-2, keepdim=True)
    by_sum = (joint * (q / marginal).log()).sum((-2, -1))
    assert torch.allclose(mutual_information(P_DATA, encoder), by_sum, atol=1e-12)
    decoder = optimal_decoder_logits(P_DATA, encoder)  # 'r z x'
    assert torch.allclose(decoder.exp().sum(-1), torch.ones(3, 4, dtype=DTYPE), atol=1e-12)
    entropy = PROBLEM.data_entropy()
    recon = reconstruction_error(P_DATA, encoder, decoder)
    assert torch.allclose(recon, entropy - by_sum, atol=1e-12)  # ReconE = H(X) - I at the Bayes decoder
    other = reconstruction_error(P_DATA, encoder, random_logits(3, 4, 4, seed=7))
    assert (other > recon + 1e-3).all()


@pytest.mark.parametrize("beta", [0.3, 1.0, 2.5])
def test_betavae_identity_at_the_bayes_decoder(beta):
    """docs/maths.md section 6: loss = H(X) + (beta - 1) I(X;Z) + beta KL(q(z) || p(z)) at the optimal decoder."""
    encoder = random_logits(1, 5, 4, 4, seed=8)  # 'g r x z'
    loss = objective(PROBLEM, [Setting("betavae", beta, beta=beta)], encoder, optimal_decoder_logits(P_DATA, encoder))
    prior = Categorical(probs=PROBLEM.tensor("prior"))
    kl_aggregate = kl_divergence(Categorical(probs=aggregate_posterior(P_DATA, encoder)), prior)
    identity = PROBLEM.data_entropy() + (beta - 1) * mutual_information(P_DATA, encoder) + beta * kl_aggregate
    assert torch.allclose(loss, identity, atol=1e-12)


def test_special_cases_of_the_objectives_agree():
    """ncvae with delta = 0 is betavae; with p_n = p_d and n = p it is betavae with beta + delta (the paper's
    remark); infovae with alpha = 0, lambda = 1 is the plain VAE."""
    encoder, decoder = random_logits(1, 3, 4, 4, seed=9), random_logits(1, 3, 4, 4, seed=10)

    def loss(problem, setting):
        return objective(problem, [setting], encoder, decoder)

    assert torch.allclose(
        loss(PROBLEM, Setting("ncvae", 2, beta=2, delta=0)), loss(PROBLEM, Setting("betavae", 2, beta=2))
    )
    same = Problem(PROBLEM.p_data, PROBLEM.p_data, PROBLEM.prior, PROBLEM.prior)
    assert torch.allclose(
        loss(same, Setting("ncvae", 2, beta=2, delta=0.5)), loss(same, Setting("betavae", 2.5, beta=2.5))
    )
    assert torch.allclose(
        loss(PROBLEM, Setting("infovae", 1, alpha=0, lambda_=1)), loss(PROBLEM, Setting("betavae", 1, beta=1))
    )
    noise_kl = expected_kl(PROBLEM.tensor("p_noise"), encoder, Categorical(probs=PROBLEM.tensor("contrastive_prior")))
    assert torch.allclose(
        loss(PROBLEM, Setting("ncvae", 2, beta=2, delta=0.5)) - loss(PROBLEM, Setting("betavae", 2, beta=2)),
        0.5 * noise_kl,
    )


# --------------------------------------------------------------------------------------------- optimiser


def test_settings_are_optimised_independently():
    """Optimising settings together (one 'g r' batch) gives what optimising one alone gives."""
    a, b = Setting("betavae", 0.5, beta=0.5), Setting("betavae", 2, beta=2)
    together = minimise(PROBLEM, [a, b], restarts=2, steps=50)
    alone = minimise(PROBLEM, [b], restarts=2, steps=50)
    assert together[1].restart_objectives == pytest.approx(alone[0].restart_objectives, abs=1e-12)
    assert torch.allclose(together[1].encoder, alone[0].encoder, atol=1e-12)


def test_same_seed_same_optimum_other_seed_other_starts():
    setting = [Setting("betavae", 1, beta=1)]  # beta = 1: the optimum's I depends on the start
    first, again = minimise(PROBLEM, setting, restarts=3, steps=30), minimise(PROBLEM, setting, restarts=3, steps=30)
    other = minimise(PROBLEM, setting, restarts=3, steps=30, seed=1)
    assert first[0].restart_mi == again[0].restart_mi
    assert first[0].restart_mi != other[0].restart_mi


def test_betavae_beta_2_collapses():
    (optimum,) = minimise(PROBLEM, [Setting("betavae", 2, beta=2)], **BUDGET)
    assert optimum.mutual_information < COLLAPSE_NATS
    assert optimum.objective == pytest.approx(PROBLEM.data_entropy(), abs=1e-6)  # the collapsed loss is H(X)
    assert torch.allclose(optimum.decoder, P_DATA.expand(4, 4), atol=1e-3)  # p(x|z) = p_d(x): z is ignored


def test_betavae_beta_below_1_does_not_collapse():
    """docs/maths.md section 6: for beta < 1 the optimum maximises I(X;Z) (trading off KL(q(z)||p));
    Corollary 2.1 says collapse."""
    (optimum,) = minimise(PROBLEM, [Setting("betavae", 0.5, beta=0.5)], **BUDGET)
    assert optimum.mutual_information > 0.95 * PROBLEM.data_entropy()
    assert optimum.objective < PROBLEM.data_entropy() - 0.5  # far below the collapsed loss H(X)


@pytest.mark.parametrize(
    ("setting", "collapses"),
    [
        (Setting("infovae", 0.5, alpha=0.5, lambda_=1), False),
        (Setting("infovae", 2, alpha=-1, lambda_=1), True),
        (Setting("aae", 1, lambda_=1), False),
    ],
)
def test_infovae_and_aae_findings(setting, collapses):
    """What docs/theory-lab.md reports: infovae collapses for alpha < 0 only; aae does not collapse."""
    (optimum,) = minimise(PROBLEM, [setting], **BUDGET)
    if collapses:
        assert optimum.mutual_information < COLLAPSE_NATS
    else:
        assert optimum.mutual_information > 0.5 * PROBLEM.data_entropy()


@pytest.fixture(scope="module")
def ncvae_optimum():
    (optimum,) = minimise(PROBLEM, [Setting("ncvae", 2, beta=2, delta=1)], **BUDGET)
    return optimum


def test_ncvae_does_not_collapse(ncvae_optimum):
    assert PROBLEM.p_noise != PROBLEM.p_data and PROBLEM.contrastive_prior != PROBLEM.prior
    assert ncvae_optimum.mutual_information > 0.05  # 50 times the collapse threshold


def test_ncvae_optimum_matches_the_fixed_point(ncvae_optimum):
    fixed = ncvae_fixed_point(PROBLEM, 2, 1)
    assert fixed.converged
    assert (ncvae_optimum.encoder - fixed.encoder).abs().max().item() < 1e-4
    fp_mi = mutual_information(P_DATA, fixed.encoder.log()).item()
    assert ncvae_optimum.mutual_information == pytest.approx(fp_mi, abs=1e-5)
    logits = fixed.encoder.log()[None, None]
    fp_loss = objective(PROBLEM, [ncvae_optimum.setting], logits, optimal_decoder_logits(P_DATA, logits)).item()
    assert fp_loss <= ncvae_optimum.objective + 1e-10  # the fixed point is the global minimum
    assert ncvae_optimum.objective == pytest.approx(fp_loss, abs=1e-8)


# ------------------------------------------------------------------------------------------- fixed point


@pytest.mark.parametrize(("beta", "delta"), [(1.5, 0.5), (2, 1), (8, 2), (1.01, 0.01)])
def test_fixed_point_is_a_stationary_fixed_point(beta, delta):
    fixed = ncvae_fixed_point(PROBLEM, beta, delta)
    assert fixed.converged
    assert torch.allclose(ncvae_map(PROBLEM, beta, delta, fixed.encoder).exp(), fixed.encoder, atol=1e-12)
    # stationary: with the Bayes decoder, the gradient of the loss in every encoder and decoder logit vanishes
    encoder = fixed.encoder.log()[None, None].clone().requires_grad_()
    decoder = optimal_decoder_logits(P_DATA, encoder.detach()).requires_grad_()
    objective(PROBLEM, [Setting("ncvae", beta, beta=beta, delta=delta)], encoder, decoder).sum().backward()
    assert encoder.grad.abs().max().item() < 1e-10
    assert decoder.grad.abs().max().item() < 1e-10
    # unique: another start converges to the same point, and it is not collapsed
    other = ncvae_fixed_point(PROBLEM, beta, delta, start=random_simplex(4, 4, seed=11))
    assert torch.allclose(other.encoder, fixed.encoder, atol=1e-10)
    assert mutual_information(P_DATA, fixed.encoder.log()).item() > COLLAPSE_NATS


def test_fixed_point_needs_its_damping_when_beta_is_near_1():
    """With beta near 1 and small delta the map's gain is large: a fixed damping of 0.5 does not converge."""
    assert not ncvae_fixed_point(PROBLEM, 1.01, 0.01, damping=0.5, max_iterations=500).converged
    assert ncvae_fixed_point(PROBLEM, 1.01, 0.01).converged


def test_fixed_point_collapses_when_noise_and_contrastive_prior_match_the_data():
    """Theorem 6 needs p_n != p_d and n != p: without that, the fixed point is collapsed."""
    same = Problem(PROBLEM.p_data, PROBLEM.p_data, PROBLEM.prior, PROBLEM.prior)
    fixed = ncvae_fixed_point(same, 2, 1)
    assert fixed.converged
    assert mutual_information(P_DATA, fixed.encoder.log()).item() < 1e-12


def test_fixed_point_refuses_settings_outside_theorem_5():
    with pytest.raises(ValueError, match="beta > 1 and delta > 0"):
        ncvae_fixed_point(PROBLEM, 1.0, 1.0)


# ------------------------------------------------------------------------------------- validation and CLI


def theory_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vaezoo theory")
    theory_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["--p-data", "0.5,-0.5"], ["--p-data", "-0.5", "> 0"]),
        (["--p-data", "0.5,0"], ["--p-data", "entry 0", "> 0"]),
        (["--prior", "1,nan"], ["--prior", "nan", "finite"]),
        (["--p-noise", "1,two,3,4"], ["--p-noise", "'two'", "not a number"]),
        (["--p-data", ""], ["--p-data", "''", "not a number"]),
        (["--p-data", "1,2,3", "--p-noise", "1,1,1,1"], ["--p-noise", "4 entries", "expected 3"]),
        (["--x-size", "3", "--p-data", "1,2,3,4"], ["--p-data", "4 entries", "expected 3"]),
        (["--z-size", "1"], ["--z-size", "1", ">= 2"]),
        (["--x-size", "0"], ["--x-size", "0", ">= 2"]),
        (["--prior", "3"], ["--prior", "1 entry", "at least 2"]),
        (["--prior", "1,1", "--contrastive-prior", "1,2,3"], ["--contrastive-prior", "3 entries", "expected 2"]),
        (["--betas", "1,-2"], ["--betas", "-2", ">= 0"]),
        (["--deltas", "x"], ["--deltas", "'x'", "not a number"]),
        (["--regularizers", "betavae,vqvae"], ["'vqvae'", "betavae, infovae, aae, ncvae"]),
        (["--restarts", "0"], ["--restarts", "0", ">= 1"]),
        (["--lambda", "-1"], ["--lambda", "-1", ">= 0"]),
    ],
)
def test_bad_input_is_a_usage_error_naming_the_value(argv, fragments):
    with pytest.raises(UsageError) as error:
        theory_cli.run(theory_args(*argv))  # refused before any optimisation
    for fragment in fragments:
        assert fragment in str(error.value), (fragment, str(error.value))


def test_vectors_are_normalised_and_sizes_follow_them():
    config = theory_cli.config_from_args(theory_args("--p-data", "3,1", "--prior", "1,1,2"))
    problem = config.problem
    assert problem.p_data == pytest.approx((0.75, 0.25))
    assert problem.prior == pytest.approx((0.25, 0.25, 0.5))
    assert (problem.x_size, problem.z_size) == (2, 3)
    assert len(problem.p_noise) == 2 and len(problem.contrastive_prior) == 3
    assert LabConfig().problem == Problem.default()


@pytest.mark.slow
def test_command_writes_table_csv_plot_and_json(tmp_path, capsys):
    out = tmp_path / "lab"
    argv = ["--regularizers", "betavae,ncvae", "--betas", "0.5,2", "--deltas", "1", "--restarts", "3", "--steps", "400"]
    assert theory_cli.run(theory_args(*argv, "--out", str(out), "--json")) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "theory.json").read_text())
    rows = {(r["regularizer"], r["beta"]): r for r in printed["rows"]}
    assert set(rows) == {("betavae", 0.5), ("betavae", 2.0), ("ncvae", 0.5), ("ncvae", 2.0)}
    assert rows["betavae", 2.0]["collapsed"] and not rows["betavae", 0.5]["collapsed"]
    assert rows["ncvae", 2.0]["fixed_point_max_abs_diff"] < 1e-4 and rows["ncvae", 0.5]["fixed_point_mi"] is None
    assert printed["data_entropy"] == pytest.approx(PROBLEM.data_entropy())
    csv_lines = (out / "theory.csv").read_text().splitlines()
    assert csv_lines[0].startswith("regularizer,sweep,beta,delta,alpha,lambda,objective,mi,collapsed")
    assert len(csv_lines) == 5
    assert (out / "theory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "theory.md").read_text()
    assert "| betavae | 2 | - | - | - |" in markdown and "| ncvae | 2 | 1 | - | - |" in markdown

    assert theory_cli.run(theory_args(*argv)) == 0  # no --json: the markdown report
    assert "| regularizer | β | δ | α | λ |" in capsys.readouterr().out
