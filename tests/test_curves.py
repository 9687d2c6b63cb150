"""Curve models: parameter recovery, closed forms, model choice, majority extrapolation, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from ttscale.curves import (
    BetaBinomialPassAtK,
    DirichletMajorityModel,
    ExpPowerLaw,
    LogLogRegression,
    PowerLawWithFloor,
    best_n,
    beta_binomial_pass_at_k,
    pass_at_k,
    select_curve_model,
    select_pass_at_k_model,
)
from ttscale.curves.majority import EXTRAPOLATION_SPREAD
from ttscale.errors import ConfigError, EstimationError, TTScaleError


def simulate_counts(a, b, pi, problems, trials, seed):
    rng = np.random.default_rng(seed)
    p = rng.beta(a, b, problems)
    p[rng.random(problems) < pi] = 0.0
    return np.full(problems, trials), rng.binomial(trials, p)


# --------------------------------------------------------------------------- beta-binomial


def test_beta_binomial_recovers_parameters():
    n, c = simulate_counts(0.5, 20.0, 0.0, 4000, 50, seed=1)
    model = BetaBinomialPassAtK(n_bootstrap=0).fit(n, c)
    assert model.a_ == pytest.approx(0.5, rel=0.12)
    assert model.b_ == pytest.approx(20.0, rel=0.2)
    assert model.pi_ == 0.0 and model.degenerate_ is None and not model.at_bound_
    assert model.mean_ == pytest.approx(0.5 / 20.5, rel=0.05)
    assert model.log_likelihood(n, c) == pytest.approx(model.loglik_)
    assert model.log_likelihood(n[:10], c[:10]) < 0


def test_zero_inflated_recovers_zero_mass():
    n, c = simulate_counts(1.5, 6.0, 0.3, 4000, 100, seed=2)
    model = BetaBinomialPassAtK(zero_inflated=True, n_bootstrap=0).fit(n, c)
    assert model.pi_ == pytest.approx(0.3, abs=0.03)
    assert model.a_ == pytest.approx(1.5, rel=0.2)
    assert model.b_ == pytest.approx(6.0, rel=0.25)
    # The plain model cannot express the point mass and fits worse.
    plain = BetaBinomialPassAtK(n_bootstrap=0).fit(n, c)
    assert model.loglik_ > plain.loglik_ + 10


def test_beta_binomial_predict_matches_closed_form_and_integral():
    n, c = simulate_counts(0.7, 9.0, 0.2, 500, 20, seed=3)
    model = BetaBinomialPassAtK(zero_inflated=True, n_bootstrap=0).fit(n, c)
    ks = np.array([1, 7, 100, 10_000])
    pred = model.predict(ks)
    np.testing.assert_allclose(pred, beta_binomial_pass_at_k(model.a_, model.b_, ks, model.pi_), rtol=1e-12)
    for k, value in zip(ks, pred):
        integral, _ = integrate.quad(lambda p: (1 - (1 - p) ** k) * stats.beta.pdf(p, model.a_, model.b_), 0, 1, limit=200, points=[1e-4, 1e-2])
        assert value == pytest.approx((1 - model.pi_) * integral, rel=1e-5, abs=1e-9)
    # pass@1 is the mean success rate, and the curve rises with k.
    assert model.predict(1) == pytest.approx((1 - model.pi_) * model.a_ / (model.a_ + model.b_), rel=1e-10)
    assert np.all(np.diff(model.predict(np.arange(1, 200))) > 0)
    assert isinstance(model.predict(5), float)


def test_beta_binomial_extrapolates_far_beyond_the_trials():
    # A small pilot (16 trials) of a heavy-tailed population predicts pass@1000 from the fitted Beta.
    a, b = 0.4, 8.0
    n, c = simulate_counts(a, b, 0.0, 3000, 16, seed=4)
    model = BetaBinomialPassAtK(n_bootstrap=0).fit(n, c)
    truth = beta_binomial_pass_at_k(a, b, np.array([100, 1000]))
    np.testing.assert_allclose(model.predict([100, 1000]), truth, atol=0.03)


def test_bootstrap_intervals_contain_the_truth():
    a, b, k = 0.6, 12.0, np.array([64, 512])
    truth = beta_binomial_pass_at_k(a, b, k)
    hits = []
    for seed in range(6):
        n, c = simulate_counts(a, b, 0.0, 400, 16, seed=10 + seed)
        model = BetaBinomialPassAtK(n_bootstrap=60, random_state=seed).fit(n, c)
        lo, hi = model.predict_interval(k, level=0.95)
        assert np.all(lo <= model.predict(k) + 1e-12) and np.all(model.predict(k) <= hi + 1e-12)
        hits.append((lo <= truth) & (truth <= hi))
    assert np.mean(hits) >= 0.8
    # Seeded: the same interval twice.
    n, c = simulate_counts(a, b, 0.0, 200, 16, seed=99)
    one = BetaBinomialPassAtK(n_bootstrap=20, random_state=7).fit(n, c).predict_interval(100)
    two = BetaBinomialPassAtK(n_bootstrap=20, random_state=7).fit(n, c).predict_interval(100)
    assert one == two


def test_shape_prior_pulls_the_shape():
    n, c = simulate_counts(0.5, 50.0, 0.0, 60, 32, seed=5)
    free = BetaBinomialPassAtK(n_bootstrap=0).fit(n, c)
    tight = BetaBinomialPassAtK(shape_prior=(3.0, 0.01), n_bootstrap=0).fit(n, c)
    assert tight.a_ == pytest.approx(3.0, rel=0.05)
    assert free.loglik_ >= tight.loglik_ - 1e-9
    # The mean is still fitted: pass@1 stays close to the data's success rate.
    assert tight.predict(1) == pytest.approx(c.sum() / n.sum(), rel=0.1)


def test_degenerate_counts_give_constant_predictions():
    zero = BetaBinomialPassAtK(n_bootstrap=5).fit(np.full(10, 32), np.zeros(10))
    assert zero.degenerate_ == "all_wrong"
    np.testing.assert_array_equal(zero.predict([1, 10, 1e6]), 0.0)
    lo, hi = zero.predict_interval([5, 50])
    np.testing.assert_array_equal(lo, 0.0)
    np.testing.assert_array_equal(hi, 0.0)
    one = BetaBinomialPassAtK(zero_inflated=True, n_bootstrap=0).fit([4, 5, 6], [4, 5, 6])
    assert one.degenerate_ == "all_correct"
    np.testing.assert_array_equal(one.predict([1, 1000]), 1.0)
    # A single success among many problems: finite, between 0 and 1, no NaN.
    few = BetaBinomialPassAtK(zero_inflated=True, n_bootstrap=10).fit(np.full(100, 32), np.r_[1, np.zeros(99)])
    out = np.r_[few.predict([1, 100, 10_000]), *few.predict_interval([1, 100, 10_000])]
    assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))


def test_beta_binomial_input_errors():
    with pytest.raises(EstimationError, match="not fitted"):
        BetaBinomialPassAtK().predict(10)
    with pytest.raises(EstimationError, match="not fitted"):
        BetaBinomialPassAtK().predict_interval(10)
    with pytest.raises(ConfigError, match="0 <= c <= n"):
        BetaBinomialPassAtK().fit([5, 5], [6, 1])
    with pytest.raises(ConfigError, match="same length"):
        BetaBinomialPassAtK().fit([5, 5, 5], [1, 1])
    with pytest.raises(ConfigError, match="at least one trial"):
        BetaBinomialPassAtK().fit([0, 5], [0, 1])
    with pytest.raises(ConfigError, match="whole numbers"):
        BetaBinomialPassAtK().fit([5, 5], [1.5, 1])
    with pytest.raises(EstimationError, match="at least 2 problems"):
        BetaBinomialPassAtK().fit([5], [1])
    with pytest.raises(ConfigError, match="shape_prior"):
        BetaBinomialPassAtK(shape_prior=(-1.0, 1.0)).fit([5, 5], [1, 2])
    with pytest.raises(ConfigError, match="n_bootstrap"):
        BetaBinomialPassAtK(n_bootstrap=-3).fit([5, 5], [1, 2])
    # A bool is not a count, a seed or a flag given as 0/1 (Python calls True an int).
    for bad, name in ((dict(n_bootstrap=True), "n_bootstrap"), (dict(random_state=False), "random_state"),
                      (dict(zero_inflated=1), "zero_inflated"), (dict(shape_prior=(True, 1.0)), "shape_prior"),
                      (dict(shape_prior=(2.0, float("inf"))), "shape_prior")):
        with pytest.raises(ConfigError, match=name):
            BetaBinomialPassAtK(**bad).fit([5, 5], [1, 2])
    model = BetaBinomialPassAtK(n_bootstrap=0).fit([5, 5, 5], [1, 2, 0])
    with pytest.raises(ConfigError, match="k"):
        model.predict([0, 10])
    with pytest.raises(ConfigError, match="k"):
        model.predict([np.nan])
    with pytest.raises(ConfigError, match="n_bootstrap"):
        model.predict_interval(10)
    with pytest.raises(ConfigError, match="level"):
        BetaBinomialPassAtK(n_bootstrap=3).fit([5, 5, 5], [1, 2, 0]).predict_interval(10, level=1.5)
    # Every deliberate error is a TTScaleError (the CLI prints them without a traceback).
    assert issubclass(EstimationError, TTScaleError) and issubclass(ConfigError, TTScaleError)


def test_params_and_clone():
    model = BetaBinomialPassAtK(zero_inflated=True, n_bootstrap=7, random_state=3)
    assert model.get_params() == {"zero_inflated": True, "shape_prior": None, "n_bootstrap": 7, "random_state": 3}
    model.fit([10, 10, 10], [1, 0, 3])
    twin = model.clone()
    assert twin.get_params() == model.get_params() and not hasattr(twin, "a_")
    with pytest.raises(ConfigError, match="parameters of BetaBinomialPassAtK"):
        model.set_params(nope=1)
    assert "zero_inflated=True" in repr(model)


def test_exact_pass_at_k_helper():
    np.testing.assert_allclose(pass_at_k([5, 5], [0, 2], [1, 4]), [[0, 0], [0.4, 1.0]])
    with pytest.raises(EstimationError, match="k <= n"):
        pass_at_k([5], [1], [6])


# --------------------------------------------------------------------------- (k, acc) curve families


K = np.arange(1, 65, dtype=float)


def test_exp_power_law_recovers_parameters():
    acc = np.exp(-2.0 * K**-0.4)
    for scale in ("linear", "log"):
        model = ExpPowerLaw(scale=scale, n_bootstrap=0).fit(K, acc)
        assert model.a_ == pytest.approx(-2.0, rel=1e-4)
        assert model.b_ == pytest.approx(-0.4, rel=1e-4)
        np.testing.assert_allclose(model.predict([1000, 1e5]), np.exp(-2.0 * np.array([1000, 1e5]) ** -0.4), rtol=1e-4)


def test_power_law_with_floor_recovers_parameters():
    acc = 1 - (0.2 + 0.5 * K**-0.6)
    model = PowerLawWithFloor(n_bootstrap=0).fit(K, acc)
    assert (model.E_, model.C_, model.g_) == (pytest.approx(0.2, abs=1e-4), pytest.approx(0.5, rel=1e-3), pytest.approx(0.6, rel=1e-3))
    assert model.predict(1e9) == pytest.approx(0.8, abs=1e-4)


def test_loglog_regression_is_exact_on_its_family():
    acc = np.exp(-2.0 * K**-0.4)
    model = LogLogRegression(n_bootstrap=0).fit(K, acc)
    assert model.intercept_ == pytest.approx(np.log(2.0)) and model.slope_ == pytest.approx(-0.4)
    err_model = LogLogRegression(transform="err", n_bootstrap=0).fit(K, 1 - 0.5 * K**-0.3)
    assert err_model.slope_ == pytest.approx(-0.3) and err_model.predict(100) == pytest.approx(1 - 0.5 * 100**-0.3)


def test_curve_bootstrap_over_problems_and_residuals():
    rng = np.random.default_rng(0)
    per_problem = (rng.random((300, K.size)) < np.exp(-2.0 * K**-0.4)).astype(float)
    model = ExpPowerLaw(n_bootstrap=40, random_state=0).fit(K, per_problem)
    np.testing.assert_allclose(model.acc_, per_problem.mean(axis=0))
    lo, hi = model.predict_interval([10, 100])
    assert np.all(lo < hi) and np.all(lo <= model.predict([10, 100])) and np.all(model.predict([10, 100]) <= hi)
    noisy = np.clip(np.exp(-2.0 * K**-0.4) + rng.normal(0, 0.01, K.size), 0, 1)
    lo, hi = PowerLawWithFloor(n_bootstrap=30).fit(K, noisy).predict_interval(100)
    assert 0 <= lo < hi <= 1


def test_curve_fit_counts_uses_exact_pass_at_k():
    n, c = simulate_counts(0.5, 5.0, 0.0, 200, 32, seed=6)
    model = LogLogRegression(n_bootstrap=0).fit_counts(n, c)
    np.testing.assert_allclose(model.acc_, pass_at_k(n, c, np.arange(1, 33)).mean(axis=0))


def test_curve_degenerate_and_errors():
    for cls in (ExpPowerLaw, PowerLawWithFloor, LogLogRegression):
        zero = cls(n_bootstrap=0).fit(K, np.zeros(K.size))
        one = cls(n_bootstrap=0).fit(K, np.ones(K.size))
        np.testing.assert_array_equal(zero.predict([1, 1e6]), 0.0)
        np.testing.assert_array_equal(one.predict([1, 1e6]), 1.0)
        assert zero.degenerate_ == "all_zero" and one.degenerate_ == "all_one"
        with pytest.raises(EstimationError, match="not fitted"):
            cls().predict(3)
        with pytest.raises(EstimationError, match="at least"):
            cls().fit([1.0], [0.3])
        with pytest.raises(ConfigError, match="acc"):
            cls().fit([1, 2, 3], [0.1, 0.2])
        with pytest.raises(ConfigError, match="acc"):
            cls().fit([1, 2, 3], [0.1, np.nan, 0.3])
        with pytest.raises(ConfigError, match="acc"):
            cls().fit([1, 2, 3], [0.1, 1.2, 0.3])
    with pytest.raises(EstimationError, match="0 < accuracy < 1"):
        LogLogRegression().fit([1, 2, 3], [0.0, 0.0, 0.3])
    with pytest.raises(ConfigError, match="scale"):
        ExpPowerLaw(scale="cubic").fit(K, np.exp(-K**-0.5))
    with pytest.raises(ConfigError, match="transform"):
        LogLogRegression(transform="logit").fit(K, np.exp(-K**-0.5))
    with pytest.raises(EstimationError, match="at least 3"):
        PowerLawWithFloor().fit([1, 2], [0.3, 0.4])


# --------------------------------------------------------------------------- model choice


def test_selection_picks_the_generating_family():
    rng = np.random.default_rng(1)
    k = np.arange(1, 129, dtype=float)
    families = {"exp": ExpPowerLaw(n_bootstrap=0), "floor": PowerLawWithFloor(n_bootstrap=0), "loglog-err": LogLogRegression(transform="err", n_bootstrap=0)}
    curves = {"exp": np.exp(-1.5 * k**-0.35), "floor": 1 - (0.3 + 0.45 * k**-0.8)}
    for truth, acc in curves.items():
        noisy = np.clip(acc + rng.normal(0, 0.002, k.size), 0, 1)
        result = select_curve_model(families, k, noisy, holdout_fraction=0.5)
        assert result.best_name == truth, result.scores
        assert result.ranking[0] == truth and np.all(result.test_k > result.train_k.max())
        assert isinstance(result.best, type(families[truth])) and result.best.k_.size == k.size


def test_pass_at_k_selection_prefers_the_beta_binomial_on_beta_data():
    n, c = simulate_counts(0.3, 3.0, 0.0, 2000, 64, seed=7)
    result = select_pass_at_k_model(
        {"bb": BetaBinomialPassAtK(n_bootstrap=0), "floor": PowerLawWithFloor(n_bootstrap=0), "loglog-err": LogLogRegression(transform="err", n_bootstrap=0)},
        n, c, holdout_fraction=0.5, n_repeats=2, random_state=0,
    )
    assert result.best_name == "bb", result.scores
    np.testing.assert_array_equal(result.test_k, np.arange(33, 65))
    with pytest.raises(EstimationError, match="at least 4 samples"):
        select_pass_at_k_model([BetaBinomialPassAtK()], [3, 3], [1, 2])


def test_selection_errors():
    with pytest.raises(ConfigError, match="holdout_fraction"):
        select_curve_model([ExpPowerLaw()], K, np.exp(-K**-0.5), holdout_fraction=1.0)
    with pytest.raises(ConfigError, match="models"):
        select_curve_model([], K, np.exp(-K**-0.5))
    with pytest.raises(EstimationError, match="at least 3 points"):
        select_curve_model([ExpPowerLaw()], [1, 2], [0.2, 0.3])
    # A model that cannot fit the training part is ranked last, not fatal.
    result = select_curve_model({"exp": ExpPowerLaw(n_bootstrap=0), "floor": PowerLawWithFloor(n_bootstrap=0)}, [1, 2, 3, 4], [0.1, 0.2, 0.25, 0.3], 0.5)
    assert result.scores["floor"] == float("inf") and "floor" in result.failures and result.best_name == "exp"


def test_best_n_finds_non_monotone_peaks():
    k = [1, 2, 4, 8, 16, 32]
    peak = best_n(k, [0.50, 0.58, 0.62, 0.61, 0.57, 0.55])
    assert (peak.k, peak.acc, peak.monotone) == (4.0, 0.62, False)
    assert peak.final_gap == pytest.approx(0.07) and peak.largest_drop == pytest.approx(0.07)
    rising = best_n(k, [0.5, 0.6, 0.6, 0.65, 0.7, 0.72])
    assert rising.k == 32 and rising.monotone and rising.largest_drop == 0
    assert best_n(k, [0.5, 0.6, 0.599, 0.65, 0.7, 0.72], tolerance=0.005).monotone
    model = PowerLawWithFloor(n_bootstrap=0).fit(K, 1 - (0.2 + 0.5 * K**-0.6))
    assert best_n([1, 10, 100], model).k == 100
    with pytest.raises(ConfigError):
        best_n([1, 2], [0.1, np.nan])


# --------------------------------------------------------------------------- majority vote


def _population_majority(p, correct, n_votes, rng, draws=4000):
    """Monte Carlo maj@N of one question with known class probabilities (last entry: no answer)."""
    votes = rng.multinomial(n_votes, p, size=draws)[:, :-1]
    top = votes.max(axis=1, keepdims=True)
    at_top = (votes == top) & (top > 0)
    return np.mean((at_top & correct).sum(axis=1) / np.maximum(at_top.sum(axis=1), 1))


def test_majority_matches_exact_binomial_with_tie_credit():
    # Huge pilot counts pin p = (0.55, 0.45): maj@N is then the binomial vote with tie credit.
    counts = np.array([[5500, 4500], [4500, 5500]])
    correct = np.array([[True, False], [True, False]])
    model = DirichletMajorityModel(discount=0.0, correct_discount=0.0, new_mass=1e-3, correct_share=0.5, none_prior=1e-3, random_state=0)
    model.fit(counts, correct)
    for n_votes in (4, 9):
        x = np.arange(n_votes + 1)
        pmf = stats.binom.pmf(x, n_votes, 0.55)
        exact = pmf[x > n_votes / 2].sum() + 0.5 * pmf[x == n_votes / 2].sum()
        pred = model.predict_questions(n_votes)
        assert pred[0, 0] == pytest.approx(exact, abs=2e-3)
        assert pred[1, 0] == pytest.approx(1 - exact, abs=2e-3)


def _urn_majority(alpha, flags, none, unseen_correct, new_wrong, d, n_votes):
    """Brute force: every sequence of n_votes draws from the posterior-predictive urn (seen classes,
    no answer, the correct answer while unseen, Pitman-Yor new wrong answers), tie-credited."""
    from functools import lru_cache

    alpha = [float(a) for a in alpha]
    total = sum(alpha) + none + unseen_correct + new_wrong

    def score(x, cu, blocks):
        votes = list(x) + [cu] + list(blocks)
        good = list(flags) + [True] + [False] * len(blocks)
        top = max(votes)
        if top == 0:
            return 0.0
        tied = [i for i, v in enumerate(votes) if v == top]
        return sum(good[i] for i in tied) / len(tied)

    @lru_cache(maxsize=None)
    def rec(x, u, cu, blocks, t):
        if t == n_votes:
            return score(x, cu, blocks)
        val, den = 0.0, total + t
        for i, a in enumerate(alpha):
            if a > 0:
                val += (a + x[i]) / den * rec(x[:i] + (x[i] + 1,) + x[i + 1 :], u, cu, blocks, t + 1)
        val += (none + u) / den * rec(x, u + 1, cu, blocks, t + 1)
        if unseen_correct > 0:
            val += (unseen_correct + cu) / den * rec(x, u, cu + 1, blocks, t + 1)
        for b in range(len(blocks)):
            grown = tuple(sorted(blocks[:b] + (blocks[b] + 1,) + blocks[b + 1 :]))
            val += (blocks[b] - d) / den * rec(x, u, cu, grown, t + 1)
        if new_wrong > 0:
            val += (new_wrong + d * len(blocks)) / den * rec(x, u, cu, tuple(sorted(blocks + (1,))), t + 1)
        return val

    return rec(tuple(0 for _ in alpha), 0, 0, (), 0)


@pytest.mark.parametrize("discount", [0.6, -0.5])
def test_majority_prediction_is_exact_against_the_enumerated_urn(discount):
    # Small pilots with ties, no-answer samples, several correct classes, an unseen correct answer
    # and Pitman-Yor new wrong answers: the prediction equals the brute-force expectation.
    counts = [np.array([2, 1, 1]), np.array([1, 1]), np.array([3]), np.array([2, 2]), np.array([], int), np.array([1, 2, 1])]
    correct = [np.array([True, False, False]), np.array([False, False]), np.array([False]), np.array([True, True]),
               np.array([], bool), np.array([False, True, False])]
    n = [5, 3, 3, 4, 2, 4]
    model = DirichletMajorityModel(discount=discount, correct_discount=-0.3, new_mass=0.8, correct_share=0.3, none_prior=0.4)
    model.fit(counts, correct, n)
    ks = [1, 2, 3, 4, 5, 6, 7]
    pred = model.predict_questions(ks)
    alpha, flags, none, unseen, new_wrong, d = model._posterior()
    for q in range(len(counts)):
        brute = [_urn_majority(alpha[q], flags[q], none[q], unseen[q], new_wrong[q], d, k) for k in ks]
        np.testing.assert_allclose(pred[q], brute, atol=1e-10)


def test_majority_prediction_matches_the_subset_estimator_for_a_known_distribution():
    # A pool of 1000x the class probabilities and a pinned posterior: drawing N of the pool
    # (ttscale.estimate.majority_at_k, without replacement) is nearly the multinomial vote.
    from ttscale.estimate.exact import majority_at_k

    probs = np.array([[0.35, 0.3, 0.2, 0.1], [0.2, 0.4, 0.3, 0.05], [0.45, 0.45, 0.05, 0.0]])
    flags = np.array([[True, False, False, False], [True, False, False, False], [False, True, False, False]])
    none = np.array([0.05, 0.05, 0.05])
    def pool(scale):
        counts = np.round(probs * scale).astype(int)
        return counts, counts.sum(axis=1) + np.round(none * scale).astype(int)

    model = DirichletMajorityModel(discount=0.0, correct_discount=0.0, new_mass=1e-6, correct_share=0.5, none_prior=1e-6)
    ks = [1, 2, 3, 5, 8, 13]
    pred = model.fit(pool(100_000)[0], flags, pool(100_000)[1]).predict_questions(ks)
    ref = majority_at_k(pool(1000)[0], flags, pool(1000)[1], ks)
    np.testing.assert_allclose(pred, ref, atol=4e-3)


def test_majority_curve_is_smooth_deterministic_and_tends_to_its_limit():
    rng = np.random.default_rng(5)
    counts = [rng.multinomial(8, rng.dirichlet([1.5, 0.5, 0.5, 0.3]))[:3] for _ in range(60)]
    correct = [np.array([True, False, False])] * 60
    model = DirichletMajorityModel(discount=0.4, correct_discount=-0.5, new_mass=0.5, correct_share=0.2, none_prior=0.5)
    model.fit(counts, correct, n=[8] * 60)
    ks = np.arange(1, 200)
    curve = model.predict(ks)
    assert np.all(np.isfinite(curve)) and np.all((curve >= 0) & (curve <= 1))
    # No sampling noise: refitting gives the same numbers, the odd-N curve rises smoothly, and the
    # exact part (N <= 95) joins the asymptotic part without a jump.
    again = DirichletMajorityModel(discount=0.4, correct_discount=-0.5, new_mass=0.5, correct_share=0.2, none_prior=0.5)
    np.testing.assert_array_equal(again.fit(counts, correct, n=[8] * 60).predict(ks), curve)
    odd = curve[::2]
    assert np.all(np.diff(odd) > -1e-12)
    assert abs(curve[95] - curve[94]) < 2e-3
    assert np.all(np.abs(np.diff(curve[100:])) < 1e-3)
    limit = model.predict(10**6)
    assert curve[-1] < limit + 1e-9 and limit - curve[-1] < 0.02


def test_majority_model_predicts_simulated_questions():
    # Questions drawn from the model's own family: a Dirichlet over (correct, 4 wrong, no answer)
    # in which the correct answer has the larger concentration. 8-sample pilots, predict maj@32.
    rng = np.random.default_rng(2)
    questions, pilot, target = 300, 8, 32
    flags = np.r_[True, np.zeros(4, bool)]
    counts, correct, n, truth = [], [], [], []
    for _ in range(questions):
        p = rng.dirichlet([1.5, 0.4, 0.4, 0.4, 0.4, 0.2])
        truth.append(_population_majority(p, flags, target, rng, draws=1000))
        sample = rng.choice(p.size, pilot, p=p)
        counts.append(np.bincount(sample[sample < p.size - 1], minlength=p.size - 1))
        correct.append(flags)
        n.append(pilot)
    model = DirichletMajorityModel(random_state=1).fit(counts, correct, n)
    pred = model.predict([pilot, target])
    assert pred[1] == pytest.approx(np.mean(truth), abs=0.02)
    assert pred[1] > pred[0]
    # The calibrated prior finds the correct answer's extra concentration.
    assert model.prior_["correct_discount"] < model.prior_["discount"] - 0.5
    lo, hi = model.predict_interval(target)
    assert lo <= np.mean(truth) <= hi and hi - lo < 0.15
    assert set(model.prior_) == {"discount", "correct_discount", "new_mass", "correct_share", "none_prior"}
    assert np.isfinite(model.loo_loglik_)
    # Treating the correct answer as a class like any other loses that signal and predicts less.
    exchangeable = DirichletMajorityModel(correct_discount="same", random_state=1).fit(counts, correct, n)
    assert exchangeable.prior_["correct_discount"] == exchangeable.prior_["discount"]
    assert exchangeable.predict(target) < pred[1] - 0.03



def test_majority_interval_widens_with_the_extrapolated_gain():
    # Beyond the pilot the question bootstrap is widened by extrapolation_spread x the predicted
    # gain (how far the prior itself may be off); inside the pilot it is the bootstrap alone.
    rng = np.random.default_rng(5)
    counts, correct, n = _mixed_bank(rng, questions=120, pilot=8)
    boot = DirichletMajorityModel(n_bootstrap=200, extrapolation_spread=0.0).fit(counts, correct, n)
    wide = DirichletMajorityModel(n_bootstrap=200).fit(counts, correct, n)
    assert wide.extrapolation_spread == EXTRAPOLATION_SPREAD > 0
    ks = [4, 8, 64]
    lo0, hi0 = boot.predict_interval(ks)
    lo1, hi1 = wide.predict_interval(ks)
    np.testing.assert_allclose([lo1[:2], hi1[:2]], [lo0[:2], hi0[:2]])  # at or inside the pilot: unchanged
    gain = wide.predict(64) - wide.predict(8)
    assert gain > 0.01
    centre = wide.predict(64)
    # in quadrature: each side's half-width is at least the spread x gain, and more than the bootstrap's
    assert centre - lo1[2] >= EXTRAPOLATION_SPREAD * gain - 1e-9 and hi1[2] - centre >= EXTRAPOLATION_SPREAD * gain - 1e-9
    assert lo1[2] < lo0[2] and hi1[2] > hi0[2]
    assert np.hypot(centre - lo0[2], EXTRAPOLATION_SPREAD * gain) == pytest.approx(centre - lo1[2])
    # a 50% interval scales the term by the normal quantile ratio, so it is narrower
    lo5, hi5 = wide.predict_interval(64, level=0.5)
    assert lo1[2] < lo5 <= centre <= hi5 < hi1[2]
    for bad in (-0.5, float("nan"), "wide"):
        with pytest.raises(ConfigError, match="extrapolation_spread"):
            DirichletMajorityModel(extrapolation_spread=bad).fit(counts, correct, n)


def test_majority_pilot_shift_matches_the_pilot_and_fades():
    # With pilot_shift_decay the dataset curve is shifted by the pilot's exact maj@m minus the
    # model's, in full at N <= m and fading as (m / N)^beta beyond; per-question values never move.
    from ttscale.estimate import majority_at_k

    rng = np.random.default_rng(9)
    counts, correct, n = _mixed_bank(rng, questions=150, pilot=8)
    plain = DirichletMajorityModel(n_bootstrap=50).fit(counts, correct, n)
    shifted = DirichletMajorityModel(n_bootstrap=50, pilot_shift_decay=0.5).fit(counts, correct, n)
    exact8 = float(np.mean(majority_at_k(np.array(counts), np.array(correct), np.array(n), [8])[:, 0]))
    assert plain.pilot_gap_ == 0.0 and plain.pilot_ref_ is None
    assert shifted.pilot_ref_ == 8
    assert shifted.predict(8) == pytest.approx(exact8, abs=1e-9)
    gap = shifted.pilot_gap_
    assert gap == pytest.approx(exact8 - plain.predict(8), abs=1e-9)
    assert shifted.predict(4) == pytest.approx(plain.predict(4) + gap, abs=1e-9)
    assert shifted.predict(32) == pytest.approx(plain.predict(32) + gap * (8 / 32) ** 0.5, abs=1e-9)
    np.testing.assert_allclose(shifted.predict_questions([4, 32]), plain.predict_questions([4, 32]))
    lo, hi = shifted.predict_interval(32)
    assert lo <= shifted.predict(32) <= hi
    for bad in (-1.0, float("inf"), "fast"):
        with pytest.raises(ConfigError, match="pilot_shift_decay"):
            DirichletMajorityModel(pilot_shift_decay=bad).fit(counts, correct, n)

def _mixed_bank(rng, questions=200, pilot=48):
    """Heterogeneous questions: a concentrated correct mode, a wrong mode or scattered answers."""
    counts, correct, n = [], [], []
    for _ in range(questions):
        kind = rng.integers(3)
        conc = [[3.0, 0.5, 0.3, 0.3, 0.2], [0.6, 2.5, 0.3, 0.3, 0.2], [0.5, 0.4, 0.4, 0.4, 0.4]][kind]
        p = rng.dirichlet(conc)
        sample = rng.choice(p.size, pilot, p=p)
        counts.append(np.bincount(sample[sample < p.size - 1], minlength=p.size - 1))
        correct.append(np.r_[True, np.zeros(p.size - 2, bool)])
        n.append(pilot)
    return counts, correct, n


def test_majority_fit_matches_the_observed_correct_share():
    # maj@1 under the posterior is the mean posterior correct share; averaged over questions it
    # must equal the observed correct share (law of total expectation). The leave-one-out values
    # alone miss it on heterogeneous banks; match_share re-sets correct_discount to restore it.
    counts, correct, n = _mixed_bank(np.random.default_rng(5))
    observed = np.mean([c[0] / k for c, k in zip(counts, n)])
    model = DirichletMajorityModel(match_pool=False).fit(counts, correct, n)
    assert model.predict(1) == pytest.approx(observed, abs=1e-6)
    plain = DirichletMajorityModel(match_share=False, match_pool=False).fit(counts, correct, n)
    assert abs(plain.predict(1) - observed) > 1e-4  # not matched by chance (1-1.5 points on the Llama bank)
    for k in ("discount", "new_mass", "correct_share", "none_prior"):
        assert model.prior_[k] == plain.prior_[k]
    # Held fixed, correct_discount is left alone.
    fixed = DirichletMajorityModel(correct_discount=-0.5, match_pool=False).fit(counts, correct, n)
    assert fixed.prior_["correct_discount"] == -0.5
    # The same on 8-sample pilots of the same bank.
    small = _mixed_bank(np.random.default_rng(6), questions=300, pilot=8)
    observed = np.mean([c[0] / k for c, k in zip(*small[::2])])
    assert DirichletMajorityModel().fit(*small).predict(1) == pytest.approx(observed, abs=1e-6)
    with pytest.raises(ConfigError, match="match_share"):
        DirichletMajorityModel(match_share="yes").fit(counts, correct, n)


def _flat_bank(rng, questions=200, pilot=48):
    """Questions with several equally likely answers, or a correct or a wrong mode."""
    counts, correct = [], []
    for _ in range(questions):
        conc = [[1, 1, 1, 1, 1, 0.3], [5, 0.3, 0.3, 0.3, 0.3, 0.2], [0.3, 5, 0.3, 0.3, 0.3, 0.2]][rng.integers(3)]
        p = rng.dirichlet(conc)
        sample = rng.choice(p.size, pilot, p=p)
        counts.append(np.bincount(sample[sample < p.size - 1], minlength=p.size - 1))
        correct.append(np.r_[True, np.zeros(p.size - 2, bool)])
    return counts, correct, [pilot] * questions


def test_majority_pool_match_on_large_pilots():
    # 48-sample pilots: the discount is re-set so the model's maj@48 equals the pilot's exact
    # maj@48, maj@1 staying matched. The share-matched fit alone misses maj@48 by ~0.8 point here.
    from ttscale.estimate.exact import majority_at_k

    counts, correct, n = _flat_bank(np.random.default_rng(3))
    exact = majority_at_k(*_padded(counts, correct), np.array(n), [1, 48]).mean(axis=0)
    model = DirichletMajorityModel(n_bootstrap=50).fit(counts, correct, n)
    plain = DirichletMajorityModel(match_pool=False).fit(counts, correct, n)
    assert (model.pool_match_, model.pool_match_n_, plain.pool_match_, plain.pool_match_n_) == ("matched", 48, "off", None)
    assert abs(plain.predict(48) - exact[1]) > 5e-3
    np.testing.assert_allclose(model.predict([1, 48]), exact, atol=1e-3)
    assert model.pool_match_gap_ == pytest.approx(model.predict(48) - exact[1], abs=1e-9)
    assert model.prior_["discount"] != plain.prior_["discount"]
    for k in ("new_mass", "correct_share", "none_prior"):
        assert model.prior_[k] == plain.prior_[k]
    lo, hi = model.predict_interval(48)
    assert lo < model.predict(48) < hi
    # Ragged pilots: n_ref is the lower 5% quantile of the pilot sizes, matched over the questions
    # with at least n_ref samples.
    rng = np.random.default_rng(4)
    sizes = rng.integers(30, 49, len(counts))
    sub = [np.bincount(rng.permutation(np.repeat(np.arange(c.size + 1), np.r_[c, 48 - c.sum()]))[:k], minlength=c.size + 1)[:-1]
           for c, k in zip(counts, sizes)]
    ragged = DirichletMajorityModel().fit(sub, correct, sizes)
    n_ref = int(np.quantile(sizes, 0.05, method="lower"))
    assert (ragged.pool_match_, ragged.pool_match_n_) == ("matched", n_ref)
    keep = sizes >= n_ref
    ref = majority_at_k(*_padded([s for s, k in zip(sub, keep) if k], [c for c, k in zip(correct, keep) if k]), sizes[keep], [n_ref])
    assert ragged.predict_questions(n_ref)[keep].mean() == pytest.approx(ref.mean(), abs=1e-3)


def test_majority_pool_match_off_for_small_pilots_and_fallback():
    # 8-sample pilots (below 24 for 95% of questions): off, the fit is exactly the share-matched one.
    small = _flat_bank(np.random.default_rng(3), pilot=8)
    auto = DirichletMajorityModel().fit(*small)
    off = DirichletMajorityModel(match_pool=False).fit(*small)
    assert (auto.pool_match_, auto.pool_match_n_, auto.pool_match_gap_) == ("off", None, None)
    assert auto.prior_ == off.prior_
    # A few short questions do not switch it off: 95% reach 30 samples.
    counts, correct, n = _flat_bank(np.random.default_rng(3), questions=100, pilot=30)
    counts[0] = np.minimum(counts[0], 1)
    n[0] = int(counts[0].sum())
    assert DirichletMajorityModel().fit(counts, correct, n).pool_match_n_ == 30
    # No discount reaches the exact value: the fitted values are kept, and the gap reported is the
    # model's maj@24 minus the pilot's exact one. 24-sample pilots, unanimous, with the unseen-answer
    # mass held at 500: when the pilot is always right (exact maj@24 = 1) the new wrong answers
    # keep the model's maj@24 far below 1 at any discount (gap < 0); when it is always wrong
    # (exact 0) the unseen correct answer keeps it far above 0 (gap > 0). With no seen wrong
    # class the discount only moves the Pitman-Yor tail of new answers.
    from ttscale.estimate.exact import majority_at_k

    held = dict(correct_discount=0.9, new_mass=500.0, correct_share=0.5, none_prior=0.5)
    q = 40
    right = (np.full((q, 1), 24), np.ones((q, 1), bool))
    wrong = (np.c_[np.full(q, 24), np.zeros(q, int)], np.c_[np.zeros(q, bool), np.ones(q, bool)])
    for pilot, sign in ((right, -1.0), (wrong, 1.0)):
        exact = float(majority_at_k(*pilot, pilot[0].sum(axis=1), [24]).mean())
        fallback = DirichletMajorityModel(**held).fit(*pilot)
        assert (fallback.pool_match_, fallback.pool_match_n_) == ("no root", 24)
        assert sign * fallback.pool_match_gap_ > 0.5
        assert fallback.pool_match_gap_ == pytest.approx(fallback.predict(24) - exact, abs=1e-12)
        assert fallback.prior_ == DirichletMajorityModel(match_pool=False, **held).fit(*pilot).prior_
    big = _flat_bank(np.random.default_rng(3), questions=60)
    with pytest.raises(ConfigError, match="match_pool"):
        DirichletMajorityModel(match_pool="yes").fit(*big)
    with pytest.raises(ConfigError, match="match_pool"):
        DirichletMajorityModel(discount=0.3, match_pool=True).fit(*big)
    assert DirichletMajorityModel(discount=0.3).fit(*big).pool_match_ == "off"


def _padded(counts, correct):
    width = max(len(c) for c in counts)
    return (np.array([np.r_[c, np.zeros(width - len(c), int)] for c in counts]),
            np.array([np.r_[f, np.zeros(width - len(f), bool)] for f in correct]))


def test_majority_model_edge_cases_and_errors():
    # All pilots unanimous and correct: maj@N is ~1; all wrong and unanimous: ~0.
    right = DirichletMajorityModel().fit(np.full((20, 1), 8), np.ones((20, 1), bool))
    assert right.predict(40) > 0.97
    wrong = DirichletMajorityModel().fit(np.c_[np.full(20, 8), np.zeros(20)], np.c_[np.zeros(20, bool), np.ones(20, bool)])
    assert wrong.predict(40) < 0.03
    # Questions whose pilot has no answer at all still predict finite values.
    mixed = DirichletMajorityModel().fit([np.array([3, 1]), np.array([], int), np.array([2])], [np.array([True, False]), np.array([], bool), np.array([False])], n=[4, 3, 5])
    out = mixed.predict_questions([1, 8, 40])
    assert out.shape == (3, 3) and np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))
    with pytest.raises(EstimationError, match="not fitted"):
        DirichletMajorityModel().predict(10)
    with pytest.raises(ConfigError, match="discount"):
        DirichletMajorityModel(discount=1.5).fit(np.ones((2, 1)), np.ones((2, 1), bool))
    with pytest.raises(ConfigError, match="correct_share"):
        DirichletMajorityModel(correct_share="half").fit(np.ones((2, 1)), np.ones((2, 1), bool))
    for bad, name in ((dict(new_mass=True), "new_mass"), (dict(none_prior=0.0), "none_prior"),
                      (dict(discount="same"), "discount"), (dict(n_draws=0), "n_draws"), (dict(match_pool=1), "match_pool")):
        with pytest.raises(ConfigError, match=name):
            DirichletMajorityModel(**bad).fit(np.ones((2, 1)), np.ones((2, 1), bool))
    with pytest.raises(ConfigError, match="n"):
        DirichletMajorityModel().fit(np.array([[3, 2]]), np.array([[True, False]]), n=[4])
    with pytest.raises(EstimationError, match="no pilot sample"):
        DirichletMajorityModel().fit(np.array([[0, 0], [1, 0]]), np.zeros((2, 2), bool))
    with pytest.raises(ConfigError, match="counts"):
        DirichletMajorityModel().fit(np.array([[-1, 2]]), np.zeros((1, 2), bool))
    with pytest.raises(EstimationError, match="at least 2 pilot samples"):
        DirichletMajorityModel().fit(np.ones((3, 1)), np.ones((3, 1), bool))
    with pytest.raises(ConfigError, match="whole numbers"):
        right.predict(2.5)


# --------------------------------------------------------------------------- properties

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=15, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 40), st.integers(0, 40)), min_size=2, max_size=20),
    st.booleans(),
)
def test_pass_at_k_predictions_are_probabilities_rising_in_k(rows, zero_inflated):
    n = np.array([r[0] for r in rows])
    c = np.minimum(np.array([r[1] for r in rows]), n)
    model = BetaBinomialPassAtK(zero_inflated=zero_inflated, n_bootstrap=0).fit(n, c)
    pred = model.predict(np.array([1, 2, 10, 100, 10_000]))
    assert np.all(np.isfinite(pred)) and np.all((pred >= 0) & (pred <= 1))
    assert np.all(np.diff(pred) >= -1e-12)
    assert (model.degenerate_ == "all_wrong") == (c.sum() == 0)
