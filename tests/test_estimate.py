"""Exact accuracy-at-k estimators against brute-force enumeration, exact rationals and Monte Carlo."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttscale.answers.candidates import NO_ANSWER, Candidates, Selection
from ttscale.errors import ConfigError, EstimationError
from ttscale.estimate.exact import (
    _DIRECT_TERMS,
    _truncated_product,
    best_of_n_at_k,
    candidates_to_arrays,
    dataset_mean,
    majority_at_k,
    pass_at_k,
)
from ttscale.estimate.resample import resampled_accuracy

TOL = 1e-12


# ----------------------------------------------------------------------------- brute force


def vote_credit(votes: dict[int, int], class_correct) -> float:
    """Tie-credited majority score of one subset's votes (class -> count)."""
    if not votes:
        return 0.0
    top = max(votes.values())
    tied = [c for c, v in votes.items() if v == top]
    return sum(bool(class_correct[c]) for c in tied) / len(tied)


def brute_majority(classes, class_correct, k: int) -> float:
    total, subsets = 0.0, 0
    for sub in itertools.combinations(range(len(classes)), k):
        votes: dict[int, int] = {}
        for i in sub:
            if classes[i] != NO_ANSWER:
                votes[classes[i]] = votes.get(classes[i], 0) + 1
        total += vote_credit(votes, class_correct)
        subsets += 1
    return total / subsets


def brute_pass(correct, k: int) -> float:
    subs = list(itertools.combinations(range(len(correct)), k))
    return sum(any(correct[i] for i in s) for s in subs) / len(subs)


def brute_best_of_n(rewards, correct, k: int) -> float:
    total, subsets = 0.0, 0
    for sub in itertools.combinations(range(len(rewards)), k):
        best = max(rewards[i] for i in sub)
        tied = [i for i in sub if rewards[i] == best]
        total += sum(bool(correct[i]) for i in tied) / len(tied)
        subsets += 1
    return total / subsets


@lru_cache(maxsize=None)
def exact_majority(counts: tuple[int, ...], class_correct: tuple[bool, ...], n: int) -> list[Fraction]:
    """maj@k for k = 0..n in exact rationals, enumerating per-class vote vectors (moderate n)."""
    u = n - sum(counts)
    ways = [Fraction(0)] * (n + 1)
    for x in itertools.product(*(range(m + 1) for m in counts)):
        s = sum(x)
        if s == 0:
            continue
        top = max(x)
        tied = [c for c, v in enumerate(x) if v == top]
        credit = Fraction(sum(bool(class_correct[c]) for c in tied), len(tied))
        if credit == 0:
            continue
        w = math.prod(math.comb(m, v) for m, v in zip(counts, x))
        for z in range(u + 1):
            ways[s + z] += credit * w * math.comb(u, z)
    return [ways[k] / math.comb(n, k) for k in range(n + 1)]


# ----------------------------------------------------------------------------- strategies


@st.composite
def pools(draw, max_n: int = 9):
    """A small problem: class ids (some NO_ANSWER), per-class correctness, tie-prone rewards."""
    n = draw(st.integers(1, max_n))
    num_classes = draw(st.integers(1, 4))
    classes = draw(st.lists(st.integers(NO_ANSWER, num_classes - 1), min_size=n, max_size=n))
    class_correct = draw(st.lists(st.booleans(), min_size=num_classes, max_size=num_classes))
    rewards = draw(st.lists(st.sampled_from([-math.inf, 0.0, 0.5, 1.0, 2.0, math.inf]), min_size=n, max_size=n))
    return Candidates(
        classes=np.array(classes, dtype=np.int64),
        class_correct=np.array(class_correct, dtype=bool),
        rewards=np.array(rewards, dtype=np.float64),
    )


batches = st.lists(pools(), min_size=1, max_size=4)
FAST = settings(max_examples=120, deadline=None)


# ----------------------------------------------------------------------------- exactness


@FAST
@given(batches)
def test_pass_at_k_matches_enumeration(problems):
    ks = list(range(1, max(p.n for p in problems) + 2))
    n = np.array([p.n for p in problems])
    c = np.array([int(p.correct.sum()) for p in problems])
    got = pass_at_k(n, c, ks)
    for i, p in enumerate(problems):
        for col, k in enumerate(ks):
            if k > p.n:
                assert np.isnan(got[i, col])
            else:
                assert got[i, col] == pytest.approx(brute_pass(p.correct, k), abs=TOL)


@FAST
@given(problems=batches)
def test_majority_at_k_matches_enumeration(problems):
    ks = list(range(1, max(p.n for p in problems) + 2))
    got = majority_at_k(*candidates_to_arrays(problems), ks)
    for i, p in enumerate(problems):
        for col, k in enumerate(ks):
            if k > p.n:
                assert np.isnan(got[i, col])
            else:
                assert got[i, col] == pytest.approx(brute_majority(p.classes, p.class_correct, k), abs=TOL)


@FAST
@given(batches)
def test_best_of_n_matches_enumeration(problems):
    ks = list(range(1, max(p.n for p in problems) + 2))
    got = best_of_n_at_k([p.rewards for p in problems], [p.correct for p in problems], ks)
    for i, p in enumerate(problems):
        for col, k in enumerate(ks):
            if k > p.n:
                assert np.isnan(got[i, col])
            else:
                assert got[i, col] == pytest.approx(brute_best_of_n(p.rewards, p.correct, k), abs=TOL)


@pytest.mark.parametrize(
    ("counts", "correct", "n"),
    [
        ([12, 9, 7, 5, 3], [False, True, False, False, True], 40),  # two correct classes, 4 no-answers
        ([40, 35, 15], [False, True, False], 95),  # binomials near 1e27: relative precision holds
        ([6] * 5, [True] + [False] * 4, 33),  # many exact ties
    ],
)
def test_majority_at_k_matches_exact_rationals(counts, correct, n):
    exact = exact_majority(tuple(counts), tuple(correct), n)
    ks = list(range(1, n + 1))
    got = majority_at_k(np.array([counts]), np.array([correct]), np.array([n]), ks)[0]
    want = np.array([float(exact[k]) for k in ks])
    # Relative as well as absolute: small probabilities (k = 1, 2) must not lose digits.
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("direct_terms", [_DIRECT_TERMS, 0])
def test_truncated_product_is_the_exact_truncated_convolution(direct_terms):
    # Both paths (shifted adds; direct_terms=0 sends every kernel to the windowed matmul) give the
    # product of polynomials with binomial coefficients (1 to ~1e28 in one row) to full relative
    # precision, for 2-d and 3-d batches, kernels shorter and longer than the result, any truncation.
    for a, t, size, batch in [(1, 0, 1, (2,)), (5, 2, 4, (3,)), (5, 2, 9, (2, 3)), (8, 9, 20, (2, 2)),
                              (13, 3, 6, (4,)), (3, 10, 5, (1, 2)), (60, 40, 95, (2,))]:
        rows = int(np.prod(batch))
        polys = [[math.comb(60 + r, i) for i in range(a)] for r in range(rows)]
        kernels = [[math.comb(40 + 2 * r, i) for i in range(t + 1)] for r in range(rows)]
        poly = np.array(polys, dtype=float).reshape(*batch, a)
        kernel = np.array(kernels, dtype=float).reshape(*batch, t + 1)
        got = _truncated_product(poly, kernel, size, direct_terms).reshape(rows, size)
        for r in range(rows):
            want = [sum(polys[r][i] * kernels[r][d - i] for i in range(max(0, d - t), min(d, a - 1) + 1)) for d in range(size)]
            np.testing.assert_allclose(got[r], np.array(want, dtype=float), rtol=1e-13, atol=0)


def test_pass_at_k_large_pool_precision():
    n = np.array([10_000, 10_000, 10_000, 300])
    c = np.array([1, 37, 9_990, 150])
    ks = [1, 7, 100, 300]
    got = pass_at_k(n, c, ks)
    for i in range(len(n)):
        for col, k in enumerate(ks):
            want = 1 - Fraction(math.comb(int(n[i] - c[i]), k), math.comb(int(n[i]), k))
            assert got[i, col] == pytest.approx(float(want), rel=1e-12)


# ----------------------------------------------------------------------------- Monte Carlo agreement


def test_majority_matches_monte_carlo_1e5_draws():
    rng = np.random.default_rng(7)
    pool = np.repeat([0, 1, 2, 3, NO_ANSWER], [9, 8, 5, 4, 4])  # n = 30, class 1 correct
    class_correct = np.array([False, True, False, False])
    counts, correct, n = candidates_to_arrays([Candidates(pool, class_correct)])
    ks = [1, 2, 5, 10, 20, 29]
    exact = majority_at_k(counts, correct, n, ks)[0]
    draws = 100_000
    perms = rng.permuted(np.tile(pool, (draws, 1)), axis=1)
    for col, k in enumerate(ks):
        votes = np.stack([(perms[:, :k] == c).sum(axis=1) for c in range(4)], axis=1)
        top = votes.max(axis=1, keepdims=True)
        tied = (votes == top) & (top > 0)
        credit = (tied & class_correct).sum(axis=1) / np.maximum(tied.sum(axis=1), 1)
        se = credit.std(ddof=1) / math.sqrt(draws)
        assert abs(credit.mean() - exact[col]) <= 4 * se, (k, credit.mean(), exact[col], se)


def majority_selector(cands: Candidates, rng: np.random.Generator) -> Selection:
    """Plain self-consistency: most votes, ties broken uniformly at random, abstain with no answers."""
    votes = cands.counts()
    if votes.sum() == 0:
        return Selection((), ())
    tied = np.flatnonzero(votes == votes.max())
    chosen = int(rng.choice(tied))
    return Selection((chosen,), (float(votes[chosen]),))


def test_resampled_majority_agrees_with_exact():
    problems = [
        Candidates(np.array([0, 0, 1, 1, 2, NO_ANSWER, 0, 1]), np.array([True, False, False])),
        Candidates(np.array([0, 1, 2, 3, 1, 2]), np.array([False, False, True, False])),
        Candidates(np.array([NO_ANSWER, NO_ANSWER, 0, 0, 1]), np.array([False, True])),
    ]
    ks = [1, 2, 3, 5, 8]
    mean, se = resampled_accuracy(problems, majority_selector, ks, draws=800, seed=3)
    exact = majority_at_k(*candidates_to_arrays(problems), ks)
    assert np.array_equal(np.isnan(mean), np.isnan(exact))
    ok = ~np.isnan(exact)
    assert np.all(np.abs(mean[ok] - exact[ok]) <= 4 * se[ok] + 1e-12)
    # Reproducible from the seed.
    first, _ = resampled_accuracy(problems, majority_selector, ks, draws=20, seed=5)
    again, _ = resampled_accuracy(problems, majority_selector, ks, draws=20, seed=5)
    np.testing.assert_array_equal(first, again)


def test_dataset_mean_ignores_short_pools_and_combines_errors():
    acc = np.array([[0.5, 1.0], [0.25, np.nan], [0.75, np.nan]])
    se = np.array([[0.1, 0.2], [0.1, np.nan], [0.1, np.nan]])
    mean, mc = dataset_mean(acc, se)
    np.testing.assert_allclose(mean, [0.5, 1.0])
    np.testing.assert_allclose(mc, [math.sqrt(3 * 0.01) / 3, 0.2])
    mean, spread = dataset_mean(acc)
    np.testing.assert_allclose(spread[0], np.std([0.5, 0.25, 0.75], ddof=1) / math.sqrt(3))
    assert np.isnan(spread[1])  # one problem: no spread to estimate
    mean, _ = dataset_mean(np.full((2, 1), np.nan))
    assert np.isnan(mean[0])


# ----------------------------------------------------------------------------- edge cases


def test_k1_and_k_equal_n():
    pool = np.array([0, 0, 0, 1, 1, 2, NO_ANSWER])
    class_correct = np.array([False, True, False])
    counts, correct, n = candidates_to_arrays([Candidates(pool, class_correct)])
    got = majority_at_k(counts, correct, n, [1, 7, 8])[0]
    assert got[0] == pytest.approx(2 / 7, abs=TOL)  # one sample: right with probability c/n
    assert got[1] == 0.0  # the whole pool: class 0 wins outright
    assert np.isnan(got[2])


def test_all_answers_missing_scores_zero():
    got = majority_at_k(np.zeros((1, 2), dtype=int), np.array([[True, False]]), np.array([5]), [1, 3, 5, 6])
    np.testing.assert_array_equal(got[0, :3], 0.0)
    assert np.isnan(got[0, 3])
    got = majority_at_k(np.zeros((2, 0), dtype=int), np.zeros((2, 0), dtype=bool), np.array([3, 0]), [1, 3])
    np.testing.assert_array_equal(got, [[0.0, 0.0], [np.nan, np.nan]])


def test_single_class_is_pass_at_k_of_answered_samples():
    # A lone correct class wins whenever the subset has any answered sample.
    n, m = np.array([12]), np.array([[5]])
    ks = list(range(1, 13))
    np.testing.assert_allclose(majority_at_k(m, np.array([[True]]), n, ks), pass_at_k(n, m[:, 0], ks), atol=TOL)
    np.testing.assert_array_equal(majority_at_k(m, np.array([[False]]), n, ks), 0.0)


def test_columns_follow_requested_k_order():
    counts, correct, n = np.array([[3, 2, 1]]), np.array([[False, True, False]]), np.array([6])
    ks = [5, 1, 3, 3]
    got = majority_at_k(counts, correct, n, ks)
    for col, k in enumerate(ks):
        assert got[0, col] == majority_at_k(counts, correct, n, [k])[0, 0]


def test_ragged_pools_in_one_call():
    problems = [
        Candidates(np.array([0, 1, 0]), np.array([True, False])),
        Candidates(np.array([1, 1, 0, 0, 2, NO_ANSWER, 2]), np.array([False, False, True])),
        Candidates(np.array([0]), np.array([True])),
    ]
    ks = [1, 2, 3, 7]
    got = majority_at_k(*candidates_to_arrays(problems), ks)
    for i, p in enumerate(problems):
        for col, k in enumerate(ks):
            want = brute_majority(p.classes, p.class_correct, k) if k <= p.n else np.nan
            np.testing.assert_allclose(got[i, col], want, atol=TOL)


def test_best_of_n_ties_average_within_group():
    # All rewards tied: every subset picks uniformly, so BoN@k is the pool's accuracy for all k.
    got = best_of_n_at_k([np.ones(5)], [np.array([1, 0, 0, 1, 0], dtype=bool)], [1, 3, 5])
    np.testing.assert_allclose(got, [[0.4, 0.4, 0.4]], atol=TOL)


def test_candidates_to_arrays_pads():
    counts, correct, n = candidates_to_arrays(
        [Candidates(np.array([0, NO_ANSWER, 1, 1]), np.array([True, False])), Candidates(np.array([0]), np.array([False]))]
    )
    np.testing.assert_array_equal(counts, [[1, 2], [1, 0]])
    np.testing.assert_array_equal(correct, [[True, False], [False, False]])
    np.testing.assert_array_equal(n, [4, 1])


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize("ks", [[0], [-1, 2], [1.5], 3, [True]])
def test_bad_k_is_a_config_error(ks):
    with pytest.raises(ConfigError):
        pass_at_k(np.array([4]), np.array([1]), ks)
    with pytest.raises(ConfigError):
        majority_at_k(np.array([[1]]), np.array([[True]]), np.array([4]), ks)


def test_bad_inputs_are_estimation_errors():
    with pytest.raises(EstimationError, match="counts must be >= 0"):
        majority_at_k(np.array([[2, -1]]), np.array([[True, False]]), np.array([4]), [1])
    with pytest.raises(EstimationError, match="shape"):
        majority_at_k(np.array([[2, 1]]), np.array([[True]]), np.array([4]), [1])
    with pytest.raises(EstimationError, match="n must have shape"):
        majority_at_k(np.array([[2, 1]]), np.array([[True, False]]), np.array([4, 4]), [1])
    with pytest.raises(EstimationError, match="n must include every sample"):
        majority_at_k(np.array([[2, 3]]), np.array([[True, False]]), np.array([4]), [1])
    with pytest.raises(EstimationError, match="at most 1000 samples"):
        majority_at_k(np.array([[600, 500]]), np.array([[True, False]]), np.array([1100]), [1])
    with pytest.raises(EstimationError, match="c must be <= n"):
        pass_at_k(np.array([3]), np.array([4]), [1])
    with pytest.raises(EstimationError, match="same shape"):
        pass_at_k(np.array([3, 4]), np.array([1]), [1])
    with pytest.raises(EstimationError, match="whole numbers"):
        pass_at_k(np.array([3.5]), np.array([1]), [1])
    with pytest.raises(EstimationError, match="NaN"):
        best_of_n_at_k([np.array([1.0, np.nan])], [np.array([True, False])], [1])
    with pytest.raises(EstimationError, match="same length"):
        best_of_n_at_k([np.array([1.0, 2.0])], [np.array([True])], [1])
    with pytest.raises(EstimationError, match="missing"):
        best_of_n_at_k([None], [np.array([True])], [1])
    with pytest.raises(ConfigError):
        resampled_accuracy([Candidates(np.array([0]), np.array([True]))], majority_selector, [1], draws=0)
