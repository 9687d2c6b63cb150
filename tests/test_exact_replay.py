"""Exact replay of count-reading stopping rules, and the Bayes-optimal vote-only bound."""

from __future__ import annotations

import numpy as np
import pytest

from ttscale.adaptive.exact_replay import (
    VoteStates,
    bayes_frontier,
    crossfit_bayes_frontier,
    exact_rule_points,
    samples_to_reach,
)
from ttscale.adaptive.simulate import replay_pool, run_rule
from ttscale.adaptive.stopping import (
    ASC,
    ESC,
    FirstToAhead,
    SettledMajority,
    PPR1v1,
    default_rules,
    vote_trajectories,
)
from ttscale.answers.candidates import Candidates
from ttscale.errors import ConfigError, EstimationError
from ttscale.estimate import exact as estimate

K = 6


def random_bank(seed: int = 0, questions: int = 40, n: int = 9) -> list[Candidates]:
    """Questions with 2-5 answer classes (class 0 correct on most), some samples without an answer."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(questions):
        c = int(rng.integers(2, 6))
        probs = rng.dirichlet(np.full(c, 0.7))
        classes = rng.choice(c, size=n, p=probs)
        classes[rng.random(n) < 0.08] = -1
        used = np.unique(classes[classes >= 0])
        remap = {int(u): i for i, u in enumerate(used)}
        classes = np.array([remap[int(x)] if x >= 0 else -1 for x in classes], dtype=np.int64)
        correct = np.zeros(max(len(used), 1), dtype=bool)
        if len(used) and rng.random() < 0.8:
            correct[int(rng.integers(len(used)))] = True
        out.append(Candidates(classes=classes, class_correct=correct))
    return out


@pytest.fixture(scope="module")
def bank() -> list[Candidates]:
    return random_bank()


@pytest.fixture(scope="module")
def states(bank: list[Candidates]) -> VoteStates:
    return VoteStates(bank, K)


def test_state_probabilities_sum_to_one_at_every_n(states: VoteStates) -> None:
    for n in range(1, K + 1):
        assert states.prob[n].sum() == pytest.approx(1.0, abs=1e-12)
        # every transition row (a state with successors) is a distribution
        if n < K:
            rows = np.asarray(states.trans[n].sum(axis=1)).ravel()
            assert np.allclose(rows, 1.0, atol=1e-12)


def test_interchangeable_wrong_classes_fold_together_exactly() -> None:
    # one correct class of 3, two wrong pairs, six one-off wrong answers, one sample without an answer
    classes = np.array([0, 0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 7, 8, -1], dtype=np.int64)
    q = Candidates(classes=classes, class_correct=np.array([True] + [False] * 8))
    states = VoteStates([q], 10)
    for n in range(1, 11):
        assert states.prob[n].sum() == pytest.approx(1.0, abs=1e-12)
    # P(first two samples agree) = sum_c m_c (m_c - 1) / (N (N - 1)) = (6 + 2 + 2) / 182
    two = dict(zip(states.levels[2], states.prob[2]))
    assert two[((2,), 0)] == pytest.approx(10 / 182, abs=1e-12)
    counts, correct, n = estimate.candidates_to_arrays([q])
    exact = float(estimate.majority_at_k(counts, correct, n, [10]).mean())
    assert states.evaluate(FirstToAhead(100))[1] == pytest.approx(exact, abs=1e-12)


def test_reading_every_sample_gives_the_exact_majority_at_k(bank: list[Candidates], states: VoteStates) -> None:
    counts, correct, n = estimate.candidates_to_arrays(bank)
    exact = float(estimate.majority_at_k(counts, correct, n, [K]).mean())
    samples, acc = states.evaluate(FirstToAhead(100))  # never stops
    assert samples == pytest.approx(K)
    assert acc == pytest.approx(exact, abs=1e-12)


@pytest.mark.parametrize("rule", [ASC(0.8), PPR1v1(0.3), FirstToAhead(2), SettledMajority(0.9)])
def test_exact_scores_match_a_long_replay(bank: list[Candidates], states: VoteStates, rule) -> None:  # type: ignore[no-untyped-def]
    samples, acc = states.evaluate(rule)
    replay = run_rule(replay_pool(bank, K, permutations=400, seed=3), rule)
    assert abs(acc - replay.accuracy) <= 4 * replay.stderr + 1e-3
    assert abs(samples - replay.mean_samples) < 0.05
    assert 1.0 <= samples < K


@pytest.mark.parametrize(("pilot", "step"), [(1, 1), (2, 2), (4, 1), (3, 2)])
def test_rounds_match_a_replay_that_checks_only_after_rounds(bank: list[Candidates], states: VoteStates, pilot: int, step: int) -> None:
    rule = ASC(0.85)
    pool = replay_pool(bank, K, permutations=300, seed=5)
    Q, R, _ = pool.sequences.shape
    traj = vote_trajectories(pool.sequences.reshape(Q * R, K))
    n = np.arange(1, K + 1)[None, :]
    checkpoint = (n >= pilot) & ((n - pilot) % step == 0)
    mask = rule.stop_mask(traj) & (traj.v1 > 0) & checkpoint
    stop = np.where(mask.any(axis=1), mask.argmax(axis=1), K - 1).reshape(Q, R)
    credit = np.take_along_axis(pool.credit, stop[..., None], axis=2)[..., 0]
    samples, acc = states.evaluate(rule, pilot=pilot, step=step)
    assert abs(samples - (stop + 1).mean()) < 0.05
    assert abs(acc - credit.mean()) < 0.01
    if (pilot, step) != (1, 1):
        assert samples > states.evaluate(rule)[0]  # fewer chances to stop cost samples


def test_no_rule_passes_the_bayes_frontier(states: VoteStates) -> None:
    plural = bayes_frontier(states)
    best = bayes_frontier(states, plurality=False)
    for pts in exact_rule_points(states, default_rules()).values():
        for p in pts:
            # the bound reaches every rule's accuracy with at most the rule's samples
            assert samples_to_reach(plural, p.accuracy - 1e-12) <= p.mean_samples + 1e-9
            assert samples_to_reach(best, p.accuracy - 1e-12) <= samples_to_reach(plural, p.accuracy - 1e-12) + 1e-9
    # free samples: the Bayes rule is at least as accurate as reading all K and voting
    assert states.bayes(0.0)[1] >= states.evaluate(FirstToAhead(100))[1] - 1e-12
    # a high enough price stops everything after the first sample
    assert states.bayes(1.0)[0] == pytest.approx(1.0)


def test_bayes_decisions_are_the_policy_bayes_scores(states: VoteStates) -> None:
    for price in (0.0, 0.01, 0.1):
        decisions = states.bayes_decisions(price)
        assert states.run_policy(lambda n: decisions[n] if decisions[n] is not None else np.ones(len(states.levels[n]), bool)) \
            == pytest.approx(states.bayes(price))


def test_held_out_bound_equals_the_bound_when_both_halves_are_alike(bank: list[Candidates], states: VoteStates) -> None:
    # The same questions on both sides: the other half's prior is this half's own, so nothing is lost.
    held = crossfit_bayes_frontier([VoteStates(bank, K), VoteStates(bank, K)])
    assert np.allclose(held, bayes_frontier(states))


def test_held_out_bound_reads_on_where_its_prior_never_went() -> None:
    unanimous = [Candidates(classes=np.zeros(K, dtype=np.int64), class_correct=np.array([True]))] * 3
    blank = [Candidates(classes=np.full(K, -1, dtype=np.int64), class_correct=np.zeros(1, dtype=bool))] * 3
    split = [Candidates(classes=np.arange(K) % 2, class_correct=np.array([True, False]))] * 3
    # Neither half's states occur in the other's tables: every question is read to K samples.
    assert crossfit_bayes_frontier([VoteStates(unanimous, K), VoteStates(blank, K)], prices=[0.05]) == [(K, 0.5)]
    # A unanimous prior trusts the first vote, and the split questions are answered after one sample.
    fooled = crossfit_bayes_frontier([VoteStates(unanimous, K), VoteStates(split, K)], prices=[0.05])[0]
    alone = VoteStates(split, K).bayes(0.05)
    assert fooled[0] < 0.5 * (1 + K) and alone[1] > 0.5
    with pytest.raises(ConfigError, match="halves"):
        crossfit_bayes_frontier([VoteStates(unanimous, K)])


def test_exact_points_skip_order_reading_rules_and_refuse_them(states: VoteStates) -> None:
    points = exact_rule_points(states, default_rules())
    assert "esc" not in points and {"asc", "ppr-1v1", "first-to-ahead"} <= set(points)
    assert all(p.stderr == 0.0 and p.mean_tokens is None for pts in points.values() for p in pts)
    with pytest.raises(ConfigError, match="esc"):
        states.evaluate(ESC(2))


def test_samples_to_reach_mixes_between_points() -> None:
    pts = [(1.0, 0.5), (3.0, 0.9), (2.0, 0.6)]
    assert samples_to_reach(pts, 0.7) == pytest.approx(1.0 + 2.0 * 0.2 / 0.4)  # the hull skips (2, 0.6)
    assert samples_to_reach(pts, 0.4) == 1.0
    assert samples_to_reach(pts, 0.95) is None


def test_bad_input(bank: list[Candidates]) -> None:
    with pytest.raises(EstimationError, match="no question has 50 samples"):
        VoteStates(bank, 50)
    with pytest.raises(ConfigError, match="max_samples"):
        VoteStates(bank, 0)
    with pytest.raises(ConfigError, match="step"):
        VoteStates(bank, 3).evaluate(ASC(0.9), step=0)
