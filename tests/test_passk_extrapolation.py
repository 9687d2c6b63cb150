"""Pass@k extrapolation: what the data cannot check (never-solved problems), robust intervals,
the support flag, and the eval's no-assumption (Le Cam) lower bound."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy.special import betaln

from ttscale.curves import BetaBinomialPassAtK
from ttscale.curves.passk import SUPPORT_TOLERANCE
from ttscale.errors import ConfigError, EstimationError

KS = np.array([10, 100, 1000, 10_000])


def test_unidentified_mass_is_the_rule_of_three_bound():
    n, c = np.full(128, 32), np.r_[np.zeros(100, int), np.arange(1, 29)]
    model = BetaBinomialPassAtK(n_bootstrap=0).fit(n, c)
    assert model.n_successes_ == int(c.sum()) and model.zero_share_ == pytest.approx(100 / 128)
    np.testing.assert_allclose(model.unidentified_mass(KS), np.minimum(100, 3 * KS / 32) / 128)
    assert model.max_supported_k_ == pytest.approx(SUPPORT_TOLERANCE * 128 * 32 / 3)
    np.testing.assert_array_equal(model.extrapolation_supported(KS), [True, False, False, False])
    assert model.extrapolation_supported(10) is True and model.extrapolation_supported(10_000, tolerance=0.9) is True
    with pytest.raises(ConfigError, match="tolerance"):
        model.extrapolation_supported(10, tolerance=0.0)


def test_all_problems_solved_means_full_support():
    model = BetaBinomialPassAtK(n_bootstrap=0).fit(np.full(50, 20), np.arange(1, 51) % 20 + 1)
    assert model.max_supported_k_ == float("inf") and model.zero_share_ == 0.0
    assert np.all(model.extrapolation_supported(KS)) and np.all(model.unidentified_mass(KS) == 0)
    assert np.all(model.zero_problem_mass(KS) == 0)


def test_zero_problem_mass_is_the_posterior_expectation():
    rng = np.random.default_rng(3)
    n = rng.integers(20, 60, 300)
    c = rng.binomial(n, rng.beta(0.4, 30.0, 300) * (rng.random(300) > 0.3))
    for zero_inflated in (False, True):
        m = BetaBinomialPassAtK(zero_inflated=zero_inflated, n_bootstrap=0).fit(n, c)
        zero = c == 0
        p_beta0 = np.exp(betaln(m.a_, m.b_ + n[zero]) - betaln(m.a_, m.b_))
        keep = (1 - m.pi_) * p_beta0 / (m.pi_ + (1 - m.pi_) * p_beta0)
        solved = 1 - np.exp(betaln(m.a_, m.b_ + n[zero][:, None] + KS) - betaln(m.a_, m.b_ + n[zero][:, None]))
        np.testing.assert_allclose(m.zero_problem_mass(KS), (keep[:, None] * solved).sum(0) / n.size, rtol=1e-10)
        assert np.all(m.zero_problem_mass(KS) <= m.predict(KS) + 1e-12)


def test_robust_interval_contains_the_bootstrap_one_and_degenerate_case():
    n, c = np.full(64, 32), np.r_[np.zeros(40, int), np.arange(1, 25)]
    model = BetaBinomialPassAtK(n_bootstrap=30, random_state=1).fit(n, c)
    lo, hi = model.predict_interval(KS)
    rlo, rhi = model.predict_interval(KS, robust=True)
    assert np.all(rlo <= lo + 1e-12) and np.all(rhi >= hi - 1e-12) and np.all((rlo >= 0) & (rhi <= 1))
    assert isinstance(model.predict_interval(100, robust=True)[0], float)
    zero = BetaBinomialPassAtK(n_bootstrap=5).fit(np.full(128, 32), np.zeros(128))
    assert zero.predict_interval(100) == (0.0, 0.0)
    assert zero.predict_interval(100, robust=True) == pytest.approx((0.0, 300 / 32 / 128))
    assert zero.predict_interval(10_000, robust=True) == pytest.approx((0.0, 1.0))
    assert zero.max_supported_k_ == pytest.approx(0.02 * 128 * 32 / 3)
    with pytest.raises(EstimationError, match="not fitted"):
        BetaBinomialPassAtK().unidentified_mass(10)


def test_robust_interval_covers_a_pilot_and_its_unsolvable_twin():
    """The same pilot fits a world where never-solved problems are rare-but-solvable and one
    where they are unsolvable; the plain bootstrap interval can only cover one of them."""
    covered_plain, covered_robust = [], []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        p = rng.beta(0.3, 400.0, 200)
        c = rng.binomial(32, p)
        world = 1 - (1 - p[:, None]) ** KS[-1]
        truths = (world.mean(), np.where(c[:, None] > 0, world, 0.0).mean())
        model = BetaBinomialPassAtK(n_bootstrap=40, random_state=seed).fit(32, c)
        lo, hi = model.predict_interval(KS[-1])
        rlo, rhi = model.predict_interval(KS[-1], robust=True)
        covered_plain.append(all(lo <= t <= hi for t in truths))
        covered_robust.append(all(rlo <= t <= rhi for t in truths))
        assert not model.extrapolation_supported(KS[-1])
    assert all(covered_robust) and not all(covered_plain)


def _load_eval():
    path = Path(__file__).resolve().parents[1] / "evals" / "extrapolate_pass_at_k.py"
    spec = importlib.util.spec_from_file_location("extrapolate_pass_at_k", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lecam_bound_on_a_toy_checkpoint():
    ev = _load_eval()
    n, c = np.array([10_000, 10_000]), np.array([0, 1])
    # Only problem 2 carries pass@k (k / n of it); the pilot misses it with probability 1 - 32 / n.
    expected = (ev.KS / 10_000) / 2 * (1 - 32 / 10_000) / 2
    np.testing.assert_allclose(ev.lecam_bound(n, c, 32), expected, rtol=1e-9)
    assert np.all(ev.lecam_bound(n, np.array([0, 0]), 32) == 0)


def test_oracle_posterior_moments_match_monte_carlo():
    ev = _load_eval()
    rng = np.random.default_rng(0)
    cp = np.r_[np.zeros(20, int), 1, 3]
    a, b, pi = 0.5, 2000.0, 0.2
    loglik, mean, var = ev.posterior_moments(cp, 32, [a], [b], [pi])
    draws = []
    for c in cp:
        w0 = pi / (pi + (1 - pi) * np.exp(betaln(a, b + 32) - betaln(a, b))) if c == 0 else 0.0
        p = rng.beta(a + c, b + 32 - c, 40_000) * (rng.random(40_000) > w0)
        draws.append(1 - (1 - p[:, None]) ** ev.KS)
    t = np.mean(draws, axis=0)
    np.testing.assert_allclose(mean[0], t.mean(0), atol=4e-3)
    np.testing.assert_allclose(var[0], t.var(0), rtol=0.1, atol=1e-6)
