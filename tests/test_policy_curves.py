"""Bounded curves for policies other than majority and pass@k (issue 15, item 4): a vote-type policy is
anchored on the Dirichlet majority model and capped by pass@N, a reward-selected one follows a floored
power law, a falling curve is held at its best N, bad input gives clear errors and never NaN."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from ttscale.answers.candidates import Candidates
from ttscale.answers.grading import load_candidates
from ttscale.curves import (
    VOTE_GAINS,
    BetaBinomialPassAtK,
    DirichletMajorityModel,
    MajorityAnchoredCurve,
    smooth_majority,
    vote_gain,
)
from ttscale.errors import ConfigError, EstimationError
from ttscale.estimate import exact as est
from ttscale.planning.plan import fit_accuracy_curve, fit_curve, fit_policy_curve, plan


def pilot_of(problems: list[Candidates], m: int, seed: int = 0) -> list[Candidates]:
    rng = np.random.default_rng(seed)
    return [p.subset(rng.choice(p.n, size=m, replace=False)) for p in problems]


@pytest.fixture(scope="module")
def llama_pilot(banks_dir: Path) -> list[Candidates]:
    """An 8-sample pilot of the Llama-2-13B GSM8K bank (400 questions x 48)."""
    _, problems = load_candidates(banks_dir / "gsm8k400_llama2-13b_pot.jsonl")
    return pilot_of(list(problems), 8)


@pytest.fixture(scope="module")
def math100(banks_dir: Path) -> list[Candidates]:
    _, problems = load_candidates(banks_dir / "math100_qwen_rm.jsonl")
    return list(problems)


def _majority(problems: list[Candidates]) -> DirichletMajorityModel:
    counts, correct, n = est.candidates_to_arrays(problems)
    return DirichletMajorityModel(n_bootstrap=1, random_state=0).fit(counts, correct, n)


def _passk(problems: list[Candidates]) -> BetaBinomialPassAtK:
    n = np.array([p.n for p in problems])
    c = np.array([int(p.correct.sum()) for p in problems])
    return BetaBinomialPassAtK(n_bootstrap=100, random_state=0).fit(n, c)


def test_a_vote_policy_never_exceeds_its_ceiling(llama_pilot: list[Candidates]) -> None:
    # top-k-answers submits 4 answers: it gains faster than majority, so the pass@N ceiling binds
    curve = fit_policy_curve(llama_pilot, "top-k-answers", max_n=1024)
    assert curve.method == "majority-anchored" and curve.best_n is None
    passk = _passk(llama_pilot)
    beyond = curve.n > 8
    cap_mean = np.asarray(passk.predict(curve.n[beyond]))
    cap_high = np.asarray(passk.predict_interval(curve.n[beyond], 0.95)[1])
    assert np.all(curve.mean[beyond] <= cap_mean + 1e-9)
    assert np.all(curve.high[beyond] <= cap_high + 1e-9)
    assert np.all(curve.low <= curve.mean + 1e-12) and np.all(curve.mean <= curve.high + 1e-12)
    # a transfer ratio large enough to run past pass@N is stopped there, interval included
    from ttscale.estimate.evaluate import exact_form
    from ttscale.selection.policy import load_policy

    k = list(range(1, 9))
    acc = np.asarray(exact_form(load_policy("top-k-answers"))(llama_pilot, k)) if exact_form(load_policy("top-k-answers")) else None
    if acc is None:
        from ttscale.estimate.resample import resampled_accuracy

        acc = resampled_accuracy(llama_pilot, load_policy("top-k-answers").selector_fn(), k, draws=100, seed=0)[0]
    steep = MajorityAnchoredCurve(gain=10.0, n_bootstrap=100).fit(k, acc, _majority(llama_pilot), ceiling=passk)
    far = np.array([256.0, 1024.0])
    assert np.allclose(steep.predict(far), passk.predict(far))
    assert np.all(steep.predict_interval(far)[1] <= np.asarray(passk.predict_interval(far, 0.95)[1]) + 1e-9)
    unbounded = MajorityAnchoredCurve(gain=10.0, n_bootstrap=100).fit(k, acc, _majority(llama_pilot))
    assert np.all(unbounded.predict(far) > steep.predict(far) + 0.05)


def test_a_vote_policy_saturates_with_the_majority_model(llama_pilot: list[Candidates]) -> None:
    curve = fit_policy_curve(llama_pilot, "first-to-ahead", max_n=1024)
    assert curve.method == "majority-anchored"
    # up to the pilot size the curve is the bank's own exact (here resampled) curve
    for k, acc in zip(curve.observed_k, curve.observed_acc):
        assert curve.at(k)[0] == pytest.approx(acc, abs=1e-12)
    # beyond it: the pilot value plus the selector's ratio times the majority model's (parity-smoothed) gain
    majority = _majority(llama_pilot)
    s = smooth_majority(majority, [8, 1024]).mean(axis=0)
    gain = VOTE_GAINS["first-to-ahead"]
    assert gain == vote_gain("first-to-ahead") < 1  # a stopping rule gains less than majority
    assert curve.at(1024)[0] == pytest.approx(curve.observed_acc[-1] + gain * (s[1] - s[0]), abs=1e-6)
    # it saturates: the last doubling adds under half a point, and it stays below majority's own limit
    assert curve.at(1024)[0] - curve.at(512)[0] < 0.005
    assert curve.at(1024)[0] <= float(majority.predict(1024)) + 1e-9
    # the interval widens with the extrapolated gain and holds the mean
    lo8, hi8 = curve.at(8)[1:]
    lo, hi = curve.at(1024)[1:]
    assert hi - lo > hi8 - lo8 > 0 and lo < curve.at(1024)[0] < hi


def test_smooth_majority_averages_the_odd_neighbours_of_an_even_n(llama_pilot: list[Candidates]) -> None:
    majority = _majority(llama_pilot)
    raw = majority.predict_questions([7, 8, 9])
    smooth = smooth_majority(majority, [7, 8, 9])
    assert np.allclose(smooth[:, 0], raw[:, 0]) and np.allclose(smooth[:, 2], raw[:, 2])
    assert np.allclose(smooth[:, 1], 0.5 * (raw[:, 0] + raw[:, 2]))
    assert np.all((smooth >= 0) & (smooth <= 1))


def test_a_falling_reward_curve_is_held_at_its_best_n(math100: list[Candidates]) -> None:
    # rewards turned upside down: best-of-n now picks the worst-rated sample and falls with N
    flipped = [dataclasses.replace(p, rewards=-p.rewards) for p in math100]
    curve = fit_policy_curve(flipped, "best-of-n", max_n=256)
    assert curve.best_n == 1 and curve.observed_acc[-1] < curve.observed_acc[0] - 0.03
    far = curve.n >= curve.best_n
    assert np.allclose(curve.mean[far], curve.observed_acc[0])
    result = plan(flipped, policy="best-of-n", budget_samples=100, curve=curve)
    assert result.recommended_n == 1 and any("gets worse past N = 1" in n for n in result.notes)


def test_the_anchored_model_holds_a_falling_vote_curve(llama_pilot: list[Candidates]) -> None:
    majority = _majority(llama_pilot)
    k = np.arange(1, 9)
    base = np.array([p.correct.mean() for p in llama_pilot])
    shape = np.array([0.8, 0.9, 1.0, 0.98, 0.96, 0.94, 0.92, 0.9])  # rises to k = 3, then falls
    acc = np.clip(base[:, None] * shape[None, :], 0, 1)
    model = MajorityAnchoredCurve(n_bootstrap=50).fit(k, acc, majority)
    assert model.best_n_ == 3
    held = acc.mean(axis=0)[2]
    assert np.allclose(model.predict([3, 8, 64, 1024]), held)
    assert np.all(model.extrapolated_gain([64, 1024]) == 0)


def test_a_reward_policy_is_a_floored_power_law_under_pass(math100: list[Candidates]) -> None:
    curve = fit_policy_curve(math100, "weighted-majority", max_n=1024)
    assert curve.method == "power-law+floor"
    passk = _passk(math100)
    beyond = curve.n > 8
    assert np.all(curve.mean[beyond] <= np.asarray(passk.predict(curve.n[beyond])) + 1e-9)
    assert np.all(np.diff(curve.mean[beyond]) >= -1e-12)  # bounded and saturating, never a fall it did not see


def test_too_few_samples_is_a_clear_error(llama_pilot: list[Candidates]) -> None:
    single = pilot_of(llama_pilot, 1)
    with pytest.raises(EstimationError, match="at least 2 samples per question"):
        fit_policy_curve(single, "first-to-ahead")
    with pytest.raises(EstimationError, match="at least 3 samples per question"):
        fit_accuracy_curve("first-to-ahead", [1, 2], [0.3, 0.35], 400)
    majority = _majority(llama_pilot)
    with pytest.raises(EstimationError, match="2 or more k"):
        MajorityAnchoredCurve().fit([1], np.zeros((len(llama_pilot), 1)), majority)
    with pytest.raises(EstimationError, match="not fitted"):
        MajorityAnchoredCurve().predict(8)
    with pytest.raises(ConfigError, match="same 10 questions"):
        MajorityAnchoredCurve().fit([1, 2], np.zeros((10, 2)), majority)
    with pytest.raises(ConfigError):
        MajorityAnchoredCurve(gain=-1).fit([1, 2], np.zeros((len(llama_pilot), 2)), majority)
    # a policy needing a field the bank lacks
    with pytest.raises(ConfigError, match="logprobs"):
        fit_policy_curve(llama_pilot, "confidence-vote")


def test_an_all_correct_bank_gives_no_nan(banks_dir: Path) -> None:
    _, problems = load_candidates(banks_dir / "gsm8k_gpt4_cot-pot.jsonl")
    right = [p for p in problems if p.correct.all()][:60]
    assert len(right) == 60
    pilot = pilot_of(right, 8)
    for name in ("first-to-ahead", "top-k-answers"):
        curve = fit_policy_curve(pilot, name, max_n=256)
        for arr in (curve.mean, curve.low, curve.high):
            assert np.all(np.isfinite(arr)) and np.allclose(arr, 1.0)
    # the planner's own entry point refuses it with a message, as for majority
    with pytest.raises(EstimationError, match="every sample of every question is correct"):
        fit_curve(pilot, "first-to-ahead")


def test_the_planner_uses_the_bounded_curve(llama_pilot: list[Candidates]) -> None:
    curve = fit_curve(llama_pilot, "first-to-ahead", max_n=1024)
    assert curve.method == "majority-anchored"
    data = plan(llama_pilot, policy="first-to-ahead", curve=curve).to_json()
    json.dumps(data, allow_nan=False)
    assert data["method"] == "majority-anchored" and not any("points off" in n for n in data["notes"])
    majority = fit_curve(llama_pilot, "majority", max_n=1024)
    assert data["ceiling"]["accuracy"] < majority.ceiling[0]  # first-to-ahead stops early: below majority's ceiling
    assert math.isfinite(data["ceiling"]["halfwidth"]) and data["ceiling"]["halfwidth"] > 0


def test_bench_fits_what_plan_fits(llama_pilot: list[Candidates]) -> None:
    from ttscale.bench.config import AnalysisSettings
    from ttscale.bench.fits import policy_fit
    from ttscale.selection.policy import load_policy

    settings = AnalysisSettings(draws=200)
    ks = [1, 2, 4, 8]
    fit = policy_fit("first-to-ahead", ks, [0.0] * 4, len(llama_pilot), settings, problems=llama_pilot,
                     policy=load_policy("first-to-ahead"))
    same = fit_policy_curve(llama_pilot, "first-to-ahead", ks=ks, max_n=settings.max_n, level=settings.level,
                            seed=settings.seed, draws=settings.draws)
    assert fit.method == same.method == "majority-anchored"
    assert fit.ceiling.accuracy == pytest.approx(same.ceiling[0])
