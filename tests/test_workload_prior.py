"""The workload prior (EM over a grid of question types) and the stopping rules that read it."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest

from ttscale.adaptive.exact_replay import VoteStates
from ttscale.adaptive.stopping import vote_trajectories
from ttscale.adaptive.workload_prior import WorkloadBayes, WorkloadPrior, WorkloadSettled, pilot_counts, type_grid
from ttscale.answers.candidates import Candidates
from ttscale.errors import ConfigError, EstimationError

TRUE_TYPES = np.array([[0.9, 0.1, 0.0], [0.55, 0.45, 0.0]])  # two-answer questions, on the grid of 20 steps
TRUE_WEIGHTS = np.array([0.7, 0.3])


def synthetic_counts(questions: int, samples: int, seed: int) -> np.ndarray:
    """(questions, 3) vote counts of questions drawn from the true mixture."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(2, size=questions, p=TRUE_WEIGHTS)
    return np.array([rng.multinomial(samples, TRUE_TYPES[k]) for k in kind])


def test_em_recovers_a_known_mixture() -> None:
    prior = WorkloadPrior(grid=20).fit(synthetic_counts(3000, 16, seed=1))
    assert prior.n_iter_ >= 2 and np.isfinite(prior.log_likelihood_)
    assert np.isclose(prior.weights_.sum(), 1.0) and (prior.weights_ > 0).all()
    for share, weight in zip(TRUE_TYPES, TRUE_WEIGHTS):
        near = np.abs(prior.types_ - share).sum(axis=1) <= 0.11  # the type and its grid neighbours
        assert abs(prior.weights_[near].sum() - weight) < 0.05
    assert np.allclose(prior.mean_shares(), TRUE_WEIGHTS @ TRUE_TYPES, atol=0.02)
    # seeded and deterministic
    again = WorkloadPrior(grid=20).fit(synthetic_counts(3000, 16, seed=1))
    assert np.array_equal(prior.weights_, again.weights_)


def test_fitted_prior_calibrates_the_hold_probability() -> None:
    """On a workload of unanimous and contested questions, a 1-1 split after 2 of 12 samples is a
    contested question: the mixture says the lead is a coin flip, far from certain."""
    prior = WorkloadPrior(grid=20).fit(synthetic_counts(3000, 8, seed=2))
    rule = prior.rule(0.9)
    hold = rule.hold_probability(np.array([1, 2, 4]), np.array([1, 0, 0]), np.array([0, 0, 0]), np.array([10, 10, 8]))
    assert 0.45 <= hold[0] <= 0.55  # a tie: the leader is as likely to end behind
    assert hold[1] > 0.9 and hold[2] > hold[1]  # unanimous votes: a unanimous question


def small_bank(seed: int = 0, questions: int = 12, n: int = 5) -> list[Candidates]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(questions):
        c = int(rng.integers(1, 4))
        classes = rng.choice(c, size=n, p=rng.dirichlet(np.full(c, 0.8)))
        classes[rng.random(n) < 0.1] = -1
        used = np.unique(classes[classes >= 0])
        remap = {int(u): i for i, u in enumerate(used)}
        classes = np.array([remap[int(x)] if x >= 0 else -1 for x in classes], dtype=np.int64)
        correct = np.zeros(max(len(used), 1), dtype=bool)
        correct[int(rng.integers(correct.size))] = rng.random() < 0.8
        out.append(Candidates(classes=classes, class_correct=correct))
    return out


def brute_force(bank: list[Candidates], rule, K: int) -> tuple[float, float]:
    """Mean samples and tie-credited accuracy over every order of every question's K samples."""
    samples = acc = 0.0
    for p in bank:
        seqs = np.array([p.classes[list(o)] for o in permutations(range(K))])
        traj = vote_trajectories(seqs, p.class_correct)
        from dataclasses import replace
        stop = rule.stop_index(replace(traj, horizon=K))
        samples += (stop + 1).mean() / len(bank)
        acc += traj.credit[np.arange(len(seqs)), stop].mean() / len(bank)
    return samples, acc


@pytest.mark.parametrize("make", [lambda c: WorkloadSettled(0.8, components=c), lambda c: WorkloadSettled(0.97, components=c),
                                  lambda c: WorkloadBayes(0.02, components=c), lambda c: WorkloadBayes(0.002, components=c),
                                  lambda c: WorkloadBayes(0.01, components=c, objective="accuracy")])
def test_exact_tables_replay_the_rules_like_brute_force(make) -> None:
    K = 5
    bank = small_bank()
    comps = WorkloadPrior(grid=10).fit(pilot_counts(small_bank(seed=1, questions=30), 4)).components()
    rule = make(comps)
    exact = VoteStates(bank, K).evaluate(rule)
    brute = brute_force(bank, rule, K)
    assert exact == pytest.approx(brute, abs=1e-9)
    assert 1.0 <= exact[0] <= K


def test_a_cheaper_price_spends_more_samples() -> None:
    bank = small_bank(seed=3, questions=40, n=8)
    comps = WorkloadPrior(grid=10).fit(pilot_counts(bank, 8)).components()
    states = VoteStates(bank, 8)
    points = [states.evaluate(WorkloadBayes(p, components=comps)) for p in (0.2, 0.02, 0.002, 1e-5)]
    samples = [s for s, _ in points]
    assert samples == sorted(samples) and samples[-1] > samples[0]


def test_pilot_counts_lump_everything_past_the_top_two() -> None:
    bank = [Candidates(classes=np.array([0, 1, 0, 2, -1, 0, 1]), class_correct=np.array([True, False, False])),
            Candidates(classes=np.array([0, 0]), class_correct=np.array([True]))]
    assert pilot_counts(bank, 5).tolist() == [[2, 1, 2]]  # the 2-sample question is skipped
    assert pilot_counts(bank).tolist() == [[3, 2, 2], [2, 0, 0]]


def test_bad_input_gives_typed_errors() -> None:
    with pytest.raises(ConfigError, match="counts"):
        WorkloadPrior().fit(np.zeros((0, 3)))
    with pytest.raises(ConfigError, match="counts"):
        WorkloadPrior().fit([1, 2, 3])
    with pytest.raises(ConfigError, match="non-negative integer"):
        WorkloadPrior().fit([[1, -1, 0]])
    with pytest.raises(ConfigError, match="non-negative integer"):
        WorkloadPrior().fit([[1.5, 1, 0]])
    with pytest.raises(ConfigError, match="non-negative integer"):
        WorkloadPrior().fit([[np.nan, 1, 0]])
    with pytest.raises(EstimationError, match="at least 2 samples"):
        WorkloadPrior().fit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])  # one sample per question
    with pytest.raises(ConfigError, match="grid"):
        WorkloadPrior(grid=1).fit([[2, 0]])
    with pytest.raises(ConfigError, match="floor"):
        WorkloadPrior(floor=1.0).fit([[2, 0]])
    with pytest.raises(EstimationError, match="not fitted"):
        WorkloadPrior().components()
    with pytest.raises(ConfigError, match="components"):
        WorkloadSettled(0.9, components=((1.0, 0.5, 0.5, 0.5),))
    with pytest.raises(ConfigError, match="components"):
        WorkloadBayes(0.01, components=((1.0, 0.0, 0.5, 0.5),))
    with pytest.raises(ConfigError, match="confidence"):
        WorkloadSettled(1.0, components=((1.0, 0.5, 0.3, 0.2),))
    with pytest.raises(ConfigError, match="objective"):
        WorkloadBayes(0.01, components=((1.0, 0.5, 0.3, 0.2),), objective="votes")


def test_all_unanimous_pilot_falls_back_on_the_floor_without_nan() -> None:
    """Every pilot question unanimous: the fit puts its mass on unanimous types, and the floor keeps
    the others possible, so a contested question later still reads as contested."""
    prior = WorkloadPrior(grid=20).fit(np.tile([8, 0, 0], (200, 1)))
    top = prior.types_[np.argmax(prior.weights_)]
    assert top[0] > 0.99 and prior.weights_.max() > 0.9
    rule = prior.rule(0.95)
    v1 = np.array([1, 3, 6, 12, 1, 0])
    v2 = np.array([1, 3, 5, 0, 0, 0])
    others = np.array([0, 0, 1, 0, 11, 1])
    remaining = np.array([10, 6, 0, 0, 0, 11])
    hold = rule.hold_probability(v1, v2, others, remaining)
    assert np.all(np.isfinite(hold)) and np.all((hold >= 0) & (hold <= 1))
    assert 0.4 < hold[0] < 0.6 and hold[2] == 1.0
    go = WorkloadBayes(1e-3, components=prior.components()).stop_mask(vote_trajectories(np.array([[0, 1, 0, 1, 1, 0]])))
    assert go.dtype == bool  # without a horizon it never stops early
    assert not go.any()


def test_type_grid_shares_are_valid() -> None:
    g = type_grid(20)
    assert g.shape == (120, 3)
    assert np.allclose(g.sum(axis=1), 1) and (g > 0).all() and (g[:, 0] >= g[:, 1] - 1e-12).all()


def test_samples_to_stop_never_passes_a_one_at_a_time_stop() -> None:
    """Drawing samples_to_stop at once (as the live solver does) stops where checking after every
    sample would: on random sequences, the round-by-round stop equals the rule's stop index."""
    K = 10
    comps = WorkloadPrior(grid=10).fit(synthetic_counts(500, 8, seed=4)).components()
    rule = WorkloadBayes(3e-3, components=comps)
    rng = np.random.default_rng(5)
    seqs = rng.choice(4, size=(300, K), p=[0.6, 0.25, 0.1, 0.05])
    seqs[rng.random(seqs.shape) < 0.05] = -1
    from dataclasses import replace
    one_at_a_time = rule.stop_index(replace(vote_trajectories(seqs), horizon=K)) + 1
    for seq, expected in zip(seqs, one_at_a_time):
        have = 0
        while True:
            votes = np.sort(np.bincount(seq[:have][seq[:have] >= 0], minlength=2))[::-1]
            if have and votes[0] > 0 and rule.stops(int(votes[0]), int(votes[1]), have, K):
                break
            if have == K:
                break
            have += max(1, rule.samples_to_stop(int(votes[0]), int(votes[1]), have, K))
        assert have == expected

