"""Batched selectors against the scalar reference: same draws, same semantics, same tie statistics.

Every registered selector has a vectorized twin (``Selector.run_batched``: an index matrix of
draws in, one "is the selection correct" flag per draw out). The scalar selectors are the
reference; these tests check the twins

* exactly, draw by draw, on pools where no tie can arise (continuous scores, two classes and
  an odd number of voters);
* statistically, on pools full of ties (equal rewards, NaN, NO_ANSWER, equal votes): over the
  same draws the correctness rates agree within 4 standard errors;
* end to end: ``resampled_accuracy`` batched versus the scalar loop, and batched majority
  versus the exact ``majority_at_k``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from ttscale.answers.candidates import NO_ANSWER, Candidates
from ttscale.errors import ConfigError
from ttscale.estimate import resample
from ttscale.estimate.exact import candidates_to_arrays, majority_at_k
from ttscale.estimate.resample import _random_orders, resampled_accuracy
from ttscale.selection.fields import MissingFieldError
from ttscale.selection.policy import load_policy
from ttscale.selection.registry import get_selector, list_selectors
from ttscale.selection.ties import (
    rank_random,
    rank_rows,
    top1_rows,
    top_k_random,
    topk_rows,
)

# (selector, params) settings: every selector, the parameters that change its path.
SETTINGS = [
    ("majority", {}),
    ("majority", {"answers": 2}),
    ("top-k-answers", {"answers": 1}),
    ("top-k-answers", {"answers": 3}),
    ("oracle", {}),
    ("oracle", {"answers": 2}),
    ("weighted-majority", {}),
    ("weighted-majority", {"temperature": 0.3, "answers": 2}),
    ("weighted-majority", {"transform": "sigmoid", "temperature": 2.0}),
    ("weighted-majority", {"transform": "linear"}),
    ("weighted-majority", {"source": "confidence"}),
    ("weighted-majority", {"source": "confidence", "transform": "sigmoid", "answers": 2}),
    ("best-of-n", {}),
    ("best-of-n", {"answers": 2}),
    ("best-of-n", {"answers": 3}),
    ("best-of-majority", {}),
    ("best-of-majority", {"alpha": 0.4}),
    ("best-of-majority", {"alpha": 0.4, "score": "mean", "answers": 2}),
    ("best-of-majority", {"alpha": 0.6, "fallback": "reward"}),
    ("best-of-majority", {"alpha": 0.6, "fallback": "abstain"}),
    ("best-of-majority", {"alpha": 0.3, "answers": 3, "fill": True}),
    ("majority-of-bests", {}),
    ("majority-of-bests", {"top": 1}),
    ("majority-of-bests", {"top": 3, "answers": 2}),
    ("majority-of-bests", {"fraction": 0.3}),
    ("confidence-vote", {}),
    ("confidence-vote", {"fraction": 0.4}),
    ("confidence-vote", {"fraction": 0.6, "weighted": True, "answers": 2}),
    ("first-to-ahead", {}),
    ("first-to-ahead", {"margin": 1}),
    ("first-to-ahead", {"margin": 3, "answers": 2}),
]


def _id(setting) -> str:
    name, params = setting
    return name + (":" + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")


def _prepared(cands: Candidates, params: dict) -> Candidates:
    """Linear weights need non-negative rewards: use |reward| for that setting."""
    if params.get("transform") == "linear":
        return Candidates(cands.classes, cands.class_correct, np.abs(cands.rewards), cands.logprobs)
    return cands


def tied_pool(seed: int) -> Candidates:
    """A small pool full of ties: few classes, NO_ANSWER, rewards/log-probs from short lists with NaN."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(6, 11))
    C = int(rng.integers(2, 5))
    classes = rng.integers(-1, C, n)
    classes[rng.permutation(n)[:C]] = np.arange(C)  # every class has a sample
    correct = rng.random(C) < 0.4
    correct[rng.integers(C)] = True
    return Candidates(
        classes=classes.astype(np.int64),
        class_correct=correct,
        rewards=rng.choice([-1.0, 0.0, 0.5, 0.5, 2.0, np.nan], n),
        logprobs=rng.choice([-3.0, -1.0, -0.2, -0.2, np.nan], n),
    )


def tie_free_pool(seed: int, n: int = 9) -> Candidates:
    """Two classes (one correct), no NO_ANSWER, continuous scores: with an odd number of voters
    no selector ever meets a tie, so batched and scalar must agree draw by draw."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 2, n)
    classes[:2] = [0, 1]
    return Candidates(
        classes=classes.astype(np.int64),
        class_correct=np.array([True, False]),
        rewards=rng.normal(size=n),
        logprobs=-rng.exponential(size=n),
    )


def scalar_hits(name: str, params: dict, cands: Candidates, idx: np.ndarray, seed: int) -> np.ndarray:
    sel = get_selector(name)
    p = sel.validate(params)
    rng = np.random.default_rng(seed)
    return np.array([sel.run(cands.subset(row), rng, p).is_correct(cands.class_correct) for row in idx])


def batched_hits(name: str, params: dict, cands: Candidates, idx: np.ndarray, seed: int) -> np.ndarray:
    sel = get_selector(name)
    out = sel.run_batched(cands, idx, np.random.default_rng(seed), sel.validate(params))
    assert out.dtype == bool and out.shape == (idx.shape[0],)
    return out


def draws(n: int, k: int, D: int, seed: int) -> np.ndarray:
    return np.argsort(np.random.default_rng(seed).random((D, n)), axis=1)[:, :k]


# --------------------------------------------------------------------------- registry


def test_every_selector_has_a_batched_twin_and_is_covered():
    assert {name for name, _ in SETTINGS} == set(list_selectors())
    for name in list_selectors():
        sel = get_selector(name)
        assert sel.has_batched, name
        assert sel.ordered == (name == "first-to-ahead"), name


def test_bind_and_policies_carry_the_batched_twin():
    fn = get_selector("best-of-majority").bind({"alpha": 0.3})
    assert callable(fn.batched) and callable(fn.batched.prefixes) and fn.batched.ordered is False
    assert load_policy("first-to-ahead").selector_fn().batched.ordered is True
    c = tied_pool(0)
    hits = load_policy("best-of-majority").selector_fn().batched(c, draws(c.n, 3, 50, 0), np.random.default_rng(0))
    assert hits.shape == (50,) and hits.dtype == bool


def test_batched_checks_fields_and_parameters_like_the_scalar():
    c = Candidates(np.array([0, 1, 1]), np.array([True, False]))
    idx = np.array([[0, 1], [1, 2]])
    for name in ("best-of-n", "best-of-majority", "majority-of-bests", "weighted-majority", "confidence-vote"):
        with pytest.raises(MissingFieldError):
            get_selector(name).bind({}).batched(c, idx, np.random.default_rng(0))
    neg = Candidates(np.array([0, 1, 1]), np.array([True, False]), rewards=np.array([0.5, -1.0, 2.0]))
    linear = get_selector("weighted-majority").bind({"transform": "linear"})
    with pytest.raises(ConfigError, match="non-negative"):
        linear.batched(neg, idx, np.random.default_rng(0))  # row 0 holds the -1 reward
    assert linear.batched(neg, np.array([[0, 2], [2, 0]]), np.random.default_rng(0)).tolist() == [False, False]


def test_all_no_answer_draws_are_wrong_for_every_selector():
    c = Candidates(np.array([NO_ANSWER] * 4), np.array([True]), rewards=np.arange(4.0), logprobs=-np.arange(4.0))
    for name, params in SETTINGS:
        assert not batched_hits(name, params, c, draws(4, 3, 20, 1), 0).any(), name


# --------------------------------------------------------------------------- exact, draw by draw


TIE_FREE = [
    ("majority", {}), ("majority", {"answers": 2}), ("top-k-answers", {"answers": 1}), ("oracle", {}),
    ("weighted-majority", {}), ("weighted-majority", {"transform": "sigmoid", "answers": 2}),
    ("weighted-majority", {"transform": "linear"}), ("weighted-majority", {"source": "confidence", "temperature": 0.5}),
    ("best-of-n", {}), ("best-of-n", {"answers": 2}),
    ("best-of-majority", {}), ("best-of-majority", {"alpha": 0.4, "score": "mean"}),
    ("best-of-majority", {"alpha": 0.9}), ("best-of-majority", {"alpha": 0.9, "fallback": "reward"}),
    ("best-of-majority", {"alpha": 0.5, "answers": 2, "fill": True}),
    ("majority-of-bests", {"top": 1}), ("majority-of-bests", {"top": 3}), ("majority-of-bests", {"fraction": 0.6}),
    ("confidence-vote", {"fraction": 0.6}), ("confidence-vote", {"fraction": 0.6, "weighted": True}),
    ("first-to-ahead", {}), ("first-to-ahead", {"margin": 3}), ("first-to-ahead", {"margin": 1, "answers": 2}),
]


@pytest.mark.parametrize("setting", TIE_FREE, ids=_id)
def test_batched_matches_scalar_draw_by_draw_without_ties(setting):
    name, params = setting
    for seed in range(2):
        c = _prepared(tie_free_pool(seed), params)
        for k in (5, 7):  # odd: two classes cannot tie; fraction 0.6 keeps 3 of 5, 5 of 7
            idx = draws(c.n, k, 150, seed + k)
            np.testing.assert_array_equal(
                batched_hits(name, params, c, idx, 1), scalar_hits(name, params, c, idx, 2), err_msg=f"{seed=} {k=}"
            )


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the scalar's inf - inf
@pytest.mark.parametrize(
    "rewards, params",
    [
        ([np.nan] * 7, {}),  # nothing scored: no weight at all
        ([0.0] * 7, {"transform": "linear"}),  # all weights 0
        ([-5000.0] * 7, {"transform": "sigmoid"}),  # sigmoid underflows to 0
        ([np.inf, 1.0, 1.0, 1.0, 1.0, 1.0, np.inf], {}),  # inf - inf: non-finite total
        ([np.inf] * 7, {"transform": "linear"}),
    ],
)
def test_weighted_majority_falls_back_to_plain_votes_like_the_scalar(rewards, params):
    # class 0 holds 4 of 7 samples; every draw of 5 or 7 has a strict vote winner
    c = Candidates(np.array([0, 1, 0, 1, 0, 1, 0]), np.array([False, True]), rewards=np.array(rewards))
    for k in (5, 7):
        idx = draws(7, k, 100, k)
        b = batched_hits("weighted-majority", params, c, idx, 0)
        np.testing.assert_array_equal(b, scalar_hits("weighted-majority", params, c, idx, 1))
    assert not batched_hits("weighted-majority", params, c, np.tile(np.arange(7), (50, 1)), 0).any()


def test_first_to_ahead_reads_the_draw_in_order():
    # 1 1 0 0 0: decided for class 1 after two samples; reversed, class 0 wins
    c = Candidates(np.array([1, 1, 0, 0, 0]), np.array([True, False]))
    fn = get_selector("first-to-ahead").bind({"margin": 2}).batched
    idx = np.array([[0, 1, 2, 3, 4], [4, 3, 2, 1, 0]])
    assert fn(c, idx, np.random.default_rng(0)).tolist() == [False, True]
    assert get_selector("first-to-ahead").ordered


# --------------------------------------------------------------------------- statistical, with ties


@pytest.mark.parametrize("setting", SETTINGS, ids=_id)
def test_batched_rate_matches_scalar_on_the_same_draws(setting):
    name, params = setting
    D = 300
    for seed in range(2):
        c = _prepared(tied_pool(seed), params)
        for k in (3, c.n):
            idx = draws(c.n, k, D, 10 * seed + k)
            b = batched_hits(name, params, c, idx, seed)
            s = scalar_hits(name, params, c, idx, seed + 100)
            pb, ps = b.mean(), s.mean()
            se = math.sqrt((pb * (1 - pb) + ps * (1 - ps)) / D)
            assert abs(pb - ps) <= 4 * se + 1e-12, (seed, k, pb, ps, se)


@pytest.mark.parametrize(
    "setting",
    [("majority", {}), ("top-k-answers", {"answers": 2}), ("best-of-n", {"answers": 2}), ("best-of-majority", {"alpha": 0.4}),
     ("majority-of-bests", {"top": 2}), ("weighted-majority", {}), ("first-to-ahead", {"margin": 3})],
    ids=_id,
)
def test_tie_credit_per_draw_matches_scalar(setting):
    """Per draw, the chance of a correct selection (the tie credit) is the scalar's."""
    name, params = setting
    c = tied_pool(7)
    idx = draws(c.n, 5, 12, 3)
    reps = 300
    b = batched_hits(name, params, c, np.repeat(idx, reps, axis=0), 0).reshape(len(idx), reps).mean(axis=1)
    s = np.stack([scalar_hits(name, params, c, idx, seed) for seed in range(60)]).mean(axis=0)
    pooled = (b * reps + s * 60) / (reps + 60)
    se = np.sqrt(pooled * (1 - pooled) * (1 / reps + 1 / 60))
    assert np.all(np.abs(b - s) <= 4.5 * se + 1e-12), np.column_stack([b, s])


def test_prefix_form_matches_one_k_at_a_time():
    """``run_prefixes`` (one pass for every k) agrees with ``run_batched`` on each prefix."""
    ks = np.array([7, 1, 3, 9])
    for name, params in [("majority", {}), ("top-k-answers", {"answers": 2}), ("oracle", {}),
                         ("first-to-ahead", {}), ("first-to-ahead", {"margin": 1, "answers": 2}),
                         ("best-of-n", {})]:
        sel = get_selector(name)
        p = sel.validate(params)
        c = tie_free_pool(3)
        orders = draws(c.n, c.n, 200, 4)
        table = sel.run_prefixes(c, orders, ks, np.random.default_rng(0), p)
        for j, k in enumerate(ks):
            if k % 2:  # odd k: tie-free, so exact
                np.testing.assert_array_equal(table[:, j], sel.run_batched(c, orders[:, :k], np.random.default_rng(1), p))
        c = tied_pool(5)
        orders = draws(c.n, c.n, 2000, 5)
        table = sel.run_prefixes(c, orders, ks[ks <= c.n], np.random.default_rng(0), p)
        for j, k in enumerate(ks[ks <= c.n]):
            one = sel.run_batched(c, orders[:, :k], np.random.default_rng(1), p)
            pa, pb = table[:, j].mean(), one.mean()
            assert abs(pa - pb) <= 4 * math.sqrt((pa * (1 - pa) + pb * (1 - pb)) / 2000) + 1e-12, (name, k)


# --------------------------------------------------------------------------- row-wise tie-breaking helpers


def test_row_helpers_follow_the_scalar_rules():
    rng = np.random.default_rng(0)
    scores = np.array([[1.0, 3.0, 3.0, np.nan, 2.0], [0.1 + 0.2, 0.3, -np.inf, 5.0, 5.0]])
    eligible = np.array([[True, True, True, True, True], [True, True, True, False, False]])
    firsts = np.zeros((2, 5), dtype=np.int64)
    for _ in range(2000):
        pick, has = top1_rows(scores, eligible, rng)
        assert has.all()
        firsts[[0, 1], pick] += 1
        order, count = rank_rows(scores, eligible, rng)
        assert count.tolist() == [5, 3]
        assert sorted(order[0, :2].tolist()) == [1, 2] and order[0, 2:].tolist() == [4, 0, 3]
        assert sorted(order[1, :2].tolist()) == [0, 1] and order[1, 2] == 2
    assert firsts[0, [0, 3, 4]].sum() == 0 and firsts[1, 2:].sum() == 0
    assert stats.chisquare(firsts[0, 1:3]).pvalue > 1e-4 and stats.chisquare(firsts[1, :2]).pvalue > 1e-4
    # per-row k, k == 0 and k beyond the eligible count
    mask = topk_rows(scores, eligible, np.array([0, 5]), rng)
    assert mask[0].sum() == 0 and mask[1].tolist() == [True, True, True, False, False]
    assert not top1_rows(scores, np.zeros_like(eligible), rng)[1].any()


def test_row_ranking_without_ties_is_the_scalar_ranking():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(50, 7))
    eligible = rng.random((50, 7)) < 0.7
    order, count = rank_rows(scores, eligible, rng)
    for d in range(50):
        assert order[d, : count[d]].tolist() == rank_random(scores[d], rng, eligible[d]).tolist()
        mask = topk_rows(scores[d : d + 1], eligible[d : d + 1], 2, rng)[0]
        assert set(np.flatnonzero(mask)) == set(top_k_random(scores[d], 2, rng, eligible[d]).tolist())


def test_random_orders_are_uniform_ordered_subsets():
    rng = np.random.default_rng(0)
    for n, m in [(6, 2), (4, 3), (5, 5), (7, 1)]:  # rejection path (m(m-1) <= n) and permutation path
        orders = _random_orders(rng, n, m, 6000)
        assert orders.shape == (6000, m) and orders.min() >= 0 and orders.max() < n
        assert all(len(set(row)) == m for row in orders[:500].tolist())
        codes = (orders * n ** np.arange(m)).sum(axis=1)
        counts = np.unique(codes, return_counts=True)[1]
        assert len(counts) == math.perm(n, m)
        assert stats.chisquare(counts).pvalue > 1e-4, (n, m)


# --------------------------------------------------------------------------- estimators


def _problems() -> list[Candidates]:
    return [tied_pool(seed) for seed in (11, 12, 13)]


@pytest.mark.parametrize(
    "spec",
    ["best-of-majority:alpha=0.3,answers=2", "weighted-majority", "majority-of-bests:top=2",
     "first-to-ahead:margin=2", "confidence-vote:fraction=0.5"],
)
def test_resampled_accuracy_batched_agrees_with_the_scalar_loop(spec):
    select = load_policy(spec).selector_fn()

    def scalar(cands, rng):  # the same selector without its batched twin
        return select(cands, rng)

    problems = _problems()
    ks = [1, 3, 6, 10]  # 10 > some pools (NaN) and == n of others (the whole-pool draw)
    mean_b, se_b = resampled_accuracy(problems, select, ks, draws=2000, seed=1)
    mean_s, se_s = resampled_accuracy(problems, scalar, ks, draws=200, seed=2)
    assert np.array_equal(np.isnan(mean_b), np.isnan(mean_s))
    ok = ~np.isnan(mean_b)
    se = np.sqrt(se_b**2 + se_s**2)[ok]
    assert np.all(np.abs(mean_b - mean_s)[ok] <= 4 * se + 1e-12), (mean_b, mean_s)
    again, _ = resampled_accuracy(problems, select, ks, draws=2000, seed=1)
    np.testing.assert_array_equal(mean_b, again)  # reproducible from the seed


def test_batched_majority_agrees_with_the_exact_estimate():
    problems = [
        Candidates(np.array([0, 0, 1, 1, 2, NO_ANSWER, 0, 1]), np.array([True, False, False])),
        Candidates(np.array([0, 1, 2, 3, 1, 2]), np.array([False, False, True, False])),
        Candidates(np.array([NO_ANSWER, NO_ANSWER, 0, 0, 1]), np.array([False, True])),
        *_problems(),
    ]
    ks = [1, 2, 3, 5, 8]
    select = load_policy("majority").selector_fn()
    assert hasattr(select, "batched")
    mean, se = resampled_accuracy(problems, select, ks, draws=4000, seed=3)
    exact = majority_at_k(*candidates_to_arrays(problems), ks)
    assert np.array_equal(np.isnan(mean), np.isnan(exact))
    ok = ~np.isnan(exact)
    assert np.all(np.abs(mean[ok] - exact[ok]) <= 4 * se[ok] + 1e-12)


def test_whole_pool_draws_skip_the_subset_sampling(monkeypatch):
    """k == n for an order-blind selector: every draw is the pool itself, nothing is drawn."""
    calls = []
    real = resample._random_orders
    monkeypatch.setattr(resample, "_random_orders", lambda *a: calls.append(a) or real(*a))
    c = tied_pool(2)
    resampled_accuracy([c], load_policy("majority").selector_fn(), [c.n], draws=50)
    assert calls == []
    resampled_accuracy([c], load_policy("first-to-ahead").selector_fn(), [c.n], draws=50)
    assert len(calls) == 1  # order matters: the pool is shuffled
