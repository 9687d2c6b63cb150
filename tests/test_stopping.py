"""Stopping rules on hand-made vote sequences (exact stop points), trajectories, and the cost formulas."""

from __future__ import annotations

import numpy as np
import pytest

from ttscale.adaptive.stopping import (
    ASC,
    ESC,
    FirstToAhead,
    PPR1v1,
    SettledMajority,
    default_rules,
    vote_trajectories,
)
from ttscale.errors import ConfigError
from ttscale.planning.cost import (
    ModelCostSpec,
    Prices,
    dollars,
    kinetics_eflops,
    request_cost,
)
from ttscale.selection.ahead import first_to_ahead

N = -1  # no answer


def test_asc_exact_stop_points() -> None:
    # unanimous: I_{1/2}(1, v+1) = 1 - 2^-(v+1); 0.9375 at v=3, 0.96875 at v=4
    assert ASC(0.95).stop_point(np.zeros(10, dtype=int)) == 4
    assert ASC(0.93).stop_point(np.zeros(10, dtype=int)) == 3
    # (6, 1): I_{1/2}(2, 7) = 1 - 8/256... = 0.9648 >= 0.95 at t = 7; (5, 1) gives 0.9375
    assert ASC(0.95).stop_point(np.array([0, 1, 0, 0, 0, 0, 0, 0, 0])) == 7
    # a no-answer costs a sample but does not vote
    assert ASC(0.95).stop_point(np.array([N, 0, 0, 0, 0, 0])) == 5
    # never stops: all samples used
    assert ASC(0.95).stop_point(np.array([0, 1, 0, 1, 0, 1])) == 6
    assert ASC(0.95).stop_point(np.zeros(10, dtype=int), max_samples=3) == 3


def test_esc_windows() -> None:
    assert ESC(3).stop_point(np.array([0, 0, 1, 2, 2, 2, 0, 0, 0])) == 6
    assert ESC(3).stop_point(np.array([0, 0, 0, 1])) == 3
    # a run of three that straddles two windows does not count
    assert ESC(3).stop_point(np.array([0, 1, 1, 1, 2, 2])) == 6
    # a window with a no-answer is not unanimous
    assert ESC(3).stop_point(np.array([N, 0, 0, 1, 1, 1])) == 6
    assert ESC(2).stop_point(np.array([N, N, 4, 4])) == 4


def test_ppr_1v1_exact_stop_points() -> None:
    # unanimous (K = 1, bound delta / 1): density (v+1) / 2^v: 7/64 > 0.1 >= 8/128
    assert PPR1v1(0.1).stop_point(np.zeros(12, dtype=int)) == 7
    # one rival (K = 2): density (v+1)(v+2) / 2^(v+1): v1 = 9 gives 0.107, v1 = 10 gives 0.064
    seq = np.array([0, 1] + [0] * 12)
    assert PPR1v1(0.1).stop_point(seq) == 11
    # two rivals (K = 3): bound 0.05, so v1 = 10 (0.064) is not enough and v1 = 11 (0.038) is
    seq = np.array([0, 1, 2] + [0] * 12)
    assert PPR1v1(0.1).stop_point(seq) == 13


def test_first_to_ahead_matches_select() -> None:
    assert FirstToAhead(2).stop_point(np.array([0, 1, 1, 1])) == 4
    assert FirstToAhead(2).stop_point(np.array([0, 1, 1, 0, 1])) == 5  # never 2 ahead
    assert FirstToAhead(1).stop_point(np.array([N, N, 3])) == 3
    rng = np.random.default_rng(0)
    for _ in range(300):
        seq = rng.integers(-1, 3, size=rng.integers(1, 15))
        margin = int(rng.integers(1, 4))
        hit = first_to_ahead(seq, margin)
        expect = seq.size if hit is None else hit[1] + 1
        assert FirstToAhead(margin).stop_point(seq) == expect


def test_trajectories_and_tie_credit() -> None:
    traj = vote_trajectories(np.array([[0, 1, 1, N, 0, 2]]), np.array([True, False, False]))
    assert traj.v1.tolist() == [[1, 1, 2, 2, 2, 2]]
    assert traj.v2.tolist() == [[0, 1, 1, 1, 2, 2]]
    assert traj.distinct.tolist() == [[1, 2, 2, 2, 2, 3]]
    assert traj.run.tolist() == [[1, 1, 2, 0, 1, 1]]
    np.testing.assert_allclose(traj.credit, [[1, 0.5, 0, 0, 0.5, 0.5]])
    empty = vote_trajectories(np.array([[N, N]]), np.array([True]))
    assert empty.credit.tolist() == [[0, 0]] and empty.v1.tolist() == [[0, 0]]


def test_rule_parameters_validated() -> None:
    for bad, name in ((lambda: ASC(0.4), "threshold"), (lambda: ESC(0), "window"), (lambda: PPR1v1(1.5), "delta"),
                      (lambda: FirstToAhead(0), "margin"), (lambda: ESC(2.5), "window"), (lambda: FirstToAhead(True), "margin"),
                      (lambda: ASC(float("nan")), "threshold"), (lambda: ASC(0.9, 0.8), "at most 1 positional")):
        with pytest.raises((ConfigError, TypeError), match=name):
            bad()
    # frozen and hashable: a rule is its parameter, by position or by keyword
    assert ASC(0.9) == ASC(threshold=0.9) and len({ASC(0.9), ASC(threshold=0.9), ASC(0.95)}) == 2
    assert ASC(0.9) != PPR1v1(0.9) and ESC(4).param == 4 and FirstToAhead(3).param == 3
    with pytest.raises(Exception, match="frozen"):
        ASC(0.9).threshold = 0.5  # type: ignore[misc]
    grids = default_rules()
    assert set(grids) == {"asc", "esc", "ppr-1v1", "first-to-ahead", "default"} and all(len(g) >= 5 for g in grids.values())
    assert all(isinstance(r, SettledMajority) for r in grids["default"])
    for bad, name in ((lambda: SettledMajority(0.5), "confidence"), (lambda: SettledMajority(0.9, alpha=0), "alpha"),
                      (lambda: SettledMajority(0.9, rest=-1), "rest")):
        with pytest.raises(ConfigError, match=name):
            bad()


def test_settled_majority_hold_probability_matches_monte_carlo() -> None:
    rule = SettledMajority(0.9, alpha=0.3, rest=0.5)
    rng = np.random.default_rng(0)
    for v1, v2, others, m in ((3, 1, 0, 6), (2, 2, 1, 5), (4, 0, 2, 10), (1, 0, 0, 7)):
        p = rng.dirichlet([v1 + 0.3, v2 + 0.3, others + 0.5], size=200_000)
        draws = np.stack([rng.multinomial(m, row) for row in p[:20_000]])
        lead = v1 + draws[:, 0] - v2 - draws[:, 1]
        mc = np.mean(lead > 0) + 0.5 * np.mean(lead == 0)
        assert rule.hold_probability(v1, v2, others, m) == pytest.approx(mc, abs=0.012)
    # at the horizon the leader holds (ties half); a bigger lead holds more often
    assert rule.hold_probability(3, 1, 0, 0) == 1.0 and rule.hold_probability(2, 2, 0, 0) == 0.5
    assert rule.hold_probability(5, 1, 0, 6) > rule.hold_probability(4, 2, 0, 6) > rule.hold_probability(3, 3, 0, 6)


def test_settled_majority_looks_ahead_to_the_horizon() -> None:
    rule = SettledMajority(0.95)
    seq = np.array([0, 0, 0, 1, 0, 1, 0, 0, 1, 0])
    assert rule.stop_point(seq, max_samples=4) <= 4
    # a 2-0 lead settles a 3-sample vote (the leader cannot lose), not a 40-sample one
    strict = SettledMajority(0.99)
    assert strict.stop_point(np.array([0, 0, 1])) == 2
    assert strict.stop_point(np.concatenate([[0, 0], np.ones(38, dtype=int)])) > 2
    # without a horizon it never stops early
    traj = vote_trajectories(seq[None, :])
    assert not rule.stop_mask(traj).any()


def test_settled_majority_batches_stop_where_one_at_a_time_does() -> None:
    """The live solver draws samples_to_stop() at once: that must stop exactly where checking after every sample does."""
    rng = np.random.default_rng(1)
    for _ in range(300):
        K = int(rng.integers(2, 20))
        seq = rng.choice([-1, 0, 1, 2], p=[0.1, 0.6, 0.2, 0.1], size=K)
        rule = SettledMajority(float(rng.choice([0.8, 0.9, 0.95, 0.99])))
        expect = rule.stop_point(seq)
        n = 0
        while True:
            counts = np.bincount(seq[:n][seq[:n] >= 0], minlength=3)
            top = np.sort(counts)[::-1]
            answered = int(counts.sum())
            if n and (n == K or (top[0] > 0 and rule.hold_probability(top[0], top[1], answered - top[0] - top[1], K - n) >= rule.confidence)):
                break
            n += rule.samples_to_stop(int(top[0]), int(top[1]), answered - int(top[0]) - int(top[1]), n, K)
        assert n == expect, (seq.tolist(), rule)


# ----------------------------------------------------------------------------- cost


def test_kinetics_eflops_hand_computed() -> None:
    spec = ModelCostSpec(active_params=1e9, kv_bytes_per_token=1000, gqa_ratio=4, arithmetic_intensity=500)
    N, L_in, L_out = 8, 100, 50
    compute = 2 * N * 1e9 * L_out + 2 * 4 * N * L_in * 1000 * L_out + 4 * N * 1000 * L_out**2
    memory = 500 * (2 * L_in * 1000 * L_out + N * 1000 * L_out**2)
    assert kinetics_eflops(spec, N, L_in, L_out) == pytest.approx(compute + memory)
    # the prompt's KV traffic is shared: it does not grow with N
    one = kinetics_eflops(spec, 1, L_in, L_out)
    two = kinetics_eflops(spec, 2, L_in, L_out)
    shared = 500 * 2 * L_in * 1000 * L_out
    assert two - one == pytest.approx(one - shared)
    np.testing.assert_allclose(kinetics_eflops(spec, np.array([1, 2]), L_in, L_out), [one, two])
    assert ModelCostSpec(1, 1).arithmetic_intensity == 562.0
    with pytest.raises(ConfigError, match="active_params"):
        ModelCostSpec(active_params=-1, kv_bytes_per_token=1)
    with pytest.raises(ConfigError, match="kv_bytes_per_token"):
        ModelCostSpec(active_params=1e9)


def test_tokens_prefill_once_per_request_and_dollars() -> None:
    cost = request_cost(100, [10, 20, 30])
    assert (cost.prompt_tokens, cost.completion_tokens, cost.total_tokens) == (100, 60, 160)
    assert request_cost(100, 25.0, n=4).total_tokens == 200  # prompt once for n = 4
    assert request_cost(100, 25.0, n=4, requests=2).prompt_tokens == 200  # two rounds: two prefills
    prices = Prices(input=2.0, output=10.0)
    assert dollars(1e6, 2e6, prices) == pytest.approx(22.0)
    assert cost.dollars(prices) == pytest.approx((100 * 2 + 60 * 10) / 1e6)
    with pytest.raises(ConfigError):
        request_cost(100, 25.0)
    with pytest.raises(ConfigError, match="price_in"):
        Prices(input=float("nan"))
    with pytest.raises(ConfigError, match="price_out"):
        Prices(1.0, -2.0)
    with pytest.raises(ConfigError, match="requests"):
        request_cost(100, 25.0, n=4, requests=True)
    assert Prices(1, 2) == Prices(input=1.0, output=2.0)


def test_sparse_counting_matches_the_dense_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Banks with very many distinct answers are counted sample by sample; the result is the same."""
    import ttscale.adaptive.stopping as stopping

    rng = np.random.default_rng(4)
    seq = rng.integers(-1, 7, size=(40, 25))
    correct = rng.random(7) < 0.4
    dense = vote_trajectories(seq, correct)
    monkeypatch.setattr(stopping, "DENSE_VOTE_CELLS", 0)
    sparse = vote_trajectories(seq, correct)
    for name in ("v1", "v2", "distinct", "run", "answered"):
        np.testing.assert_array_equal(getattr(sparse, name), getattr(dense, name), err_msg=name)
    np.testing.assert_allclose(sparse.credit, dense.credit)
