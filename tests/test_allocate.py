"""Allocators: exact budgets, per-question caps, the sampler-protocol driver on a bank replay, seeded replays."""

from __future__ import annotations

import numpy as np
import pytest

from ttscale.adaptive.allocate import (
    OnlineAllocator,
    StaticAllocator,
    decision_accuracy,
    fit_concentration,
    flip_probability,
)
from ttscale.adaptive.simulate import (
    replay_pool,
    run_allocator,
    run_rule,
    run_static,
    simulate,
)
from ttscale.adaptive.stopping import ASC, FirstToAhead
from ttscale.answers.candidates import Candidates
from ttscale.errors import ConfigError
from ttscale.records.models import Record, Sample
from ttscale.sampling.allocation import run_allocation
from ttscale.sampling.backends.replay import ReplaySampler


def synthetic_records(questions: int = 30, n: int = 12, seed: int = 0) -> list[Record]:
    rng = np.random.default_rng(seed)
    out = []
    for q in range(questions):
        p = rng.dirichlet(np.full(4, rng.choice([0.2, 1.0, 5.0])))
        answers = rng.choice(4, size=n, p=p)
        out.append(Record(id=f"q{q}", problem=f"problem {q}", reference="0",
                          samples=[Sample(answer=str(a), tokens=int(10 + a)) for a in answers]))
    return out


def candidates(records: list[Record]) -> list[Candidates]:
    out = []
    for r in records:
        ids: dict[str, int] = {}
        cls = np.array([ids.setdefault(s.answer, len(ids)) for s in r.samples])
        correct = np.array([a == r.reference for a in ids], dtype=bool)
        out.append(Candidates(classes=cls, class_correct=correct, tokens=np.array([s.tokens for s in r.samples])))
    return out


@pytest.mark.parametrize("budget", [0, 7, 60, 123, 200])
def test_online_driver_spends_budget_exactly_and_respects_cap(budget: int) -> None:
    records = synthetic_records()
    sampler = ReplaySampler(records)
    alloc = OnlineAllocator(max_per_question=10, pilot=2, settle=0.0)
    res = run_allocation(sampler, [(r.id, r.problem) for r in records], alloc, budget)
    assert int(res.samples.sum()) == budget
    assert res.samples.max() <= 10
    assert res.completion_tokens == sum(sum(records[q].samples[i].tokens for i in range(res.samples[q])) for q in range(30))
    # every answer drawn is the bank's, in bank order (replay)
    for q, r in enumerate(records):
        assert res.answers[q] == [s.answer for s in r.samples[: res.samples[q]]]


def test_online_stops_when_everything_is_settled_or_capped() -> None:
    records = synthetic_records()
    res = run_allocation(ReplaySampler(records), [(r.id, r.problem) for r in records],
                         OnlineAllocator(max_per_question=6, pilot=2), 10_000)
    assert res.samples.max() <= 6 and res.samples.sum() <= 6 * 30 and res.samples.min() >= 2


@pytest.mark.parametrize("budget", [0, 20, 61, 150, 300, 1000])
def test_static_driver_budget_and_cap(budget: int) -> None:
    records = synthetic_records()
    res = run_allocation(ReplaySampler(records), [(r.id, r.problem) for r in records], StaticAllocator(8), budget, pilot=3)
    assert int(res.samples.sum()) == min(budget, 8 * 30)
    assert res.samples.max() <= 8


def test_static_allocate_core() -> None:
    counts = np.array([[5, 0], [3, 2], [1, 1], [0, 0]])
    n = np.array([5, 5, 2, 0])
    extra = StaticAllocator(7).allocate(counts, n, 9)
    assert extra.sum() == 9 and np.all(n + extra <= 7)
    assert extra[1] + extra[2] >= extra[0]  # contested questions first
    assert StaticAllocator(7).allocate(counts, n, 1000).tolist() == (7 - n).tolist()
    with pytest.raises(ConfigError):
        StaticAllocator(7).allocate(counts, n, -1)


def test_allocator_settings_validated_and_state_reset_by_start() -> None:
    for kwargs, name in (({"max_per_question": 0}, "max_per_question"), ({"max_per_question": 5, "pilot": True}, "pilot"),
                         ({"max_per_question": 5, "settle": 1.5}, "settle"), ({"max_per_question": 5, "step": 0}, "step"),
                         ({"max_per_question": 5, "round_share": -0.1}, "round_share"), ({"max_per_question": 5, "prior": "flat"}, "prior"),
                         ({"max_per_question": 5, "costs": np.array([1.0, 0.0])}, "costs")):
        with pytest.raises(ConfigError, match=name):
            OnlineAllocator(**kwargs)
    with pytest.raises(ConfigError, match="max_per_question"):
        StaticAllocator(2.5)
    # costs: an array becomes a tuple (the settings stay hashable); its length is checked at start
    alloc = OnlineAllocator(max_per_question=6, pilot=1, costs=np.array([1.0, 2.0, 4.0]))
    assert alloc.costs == (1.0, 2.0, 4.0) and hash(alloc) == hash(OnlineAllocator(max_per_question=6, pilot=1, costs=[1, 2, 4]))
    with pytest.raises(ConfigError, match="costs"):
        alloc.start(2)
    alloc.start(3)
    for q, cls in enumerate(([0], [0], [0])):
        alloc.observe(q, cls)
    assert alloc.votes.n.tolist() == [1, 1, 1] and alloc.prior_ is None
    pr = alloc.priorities()  # the same vote everywhere: priority falls with cost
    assert pr[0] == pytest.approx(2 * pr[1]) == pytest.approx(4 * pr[2]) and alloc.prior_ is not None
    alloc.start(3)  # a new run forgets the votes and the fitted prior
    assert alloc.votes.n.tolist() == [0, 0, 0] and alloc.prior_ is None
    assert StaticAllocator(7, costs=np.ones(4)).allocate(np.array([[5, 0], [3, 2], [1, 1], [0, 0]]), np.array([5, 5, 2, 0]), 9).sum() == 9


def test_flip_probability_and_concentration() -> None:
    f = flip_probability(np.array([5, 3, 1, 0, 4]), np.array([0, 3, 1, 0, 0]), np.array([5, 6, 2, 0, 4]), 40)
    assert f[0] < 0.1 and f[1] > 0.4 and f[2] > f[0] and f[3] == 1.0
    assert flip_probability(np.array([4]), np.array([0]), np.array([4]), 4)[0] == 0.0  # nothing left to come
    acc = decision_accuracy(np.array([3, 2]), np.array([0, 2]), np.array([3, 4]), np.arange(5))
    assert np.all(np.diff(acc, axis=1) >= -1e-12) and acc.shape == (2, 5)
    unanimous = fit_concentration(np.array([[4, 0, 0]] * 20))
    scattered = fit_concentration(np.array([[1, 1, 1, 1]] * 20))
    assert unanimous < 0.05 < 10 < scattered


def test_replay_is_deterministic_with_seeds() -> None:
    probs = candidates(synthetic_records(20, 10))
    a, b, c = replay_pool(probs, 8, 5, seed=3), replay_pool(probs, 8, 5, seed=3), replay_pool(probs, 8, 5, seed=4)
    assert np.array_equal(a.sequences, b.sequences) and not np.array_equal(a.sequences, c.sequences)
    make = lambda: OnlineAllocator(max_per_question=8, pilot=2)  # noqa: E731
    assert [p.to_json() for p in run_allocator(a, make, [2, 3, 5])] == [p.to_json() for p in run_allocator(b, make, [2, 3, 5])]
    r1, r2 = simulate(probs, max_samples=8, permutations=4, seed=1), simulate(probs, max_samples=8, permutations=4, seed=1)
    assert r1.to_json() == r2.to_json()


def test_simulated_allocator_matches_driver_on_replay() -> None:
    # the simulation's allocator run on permutation r equals the driven allocator on ReplaySampler's
    # replay of that same order
    records = synthetic_records(15, 10, seed=2)
    probs = candidates(records)
    pool = replay_pool(probs, 10, 2, seed=0)
    pts = run_allocator(pool, lambda: OnlineAllocator(max_per_question=10, pilot=2, settle=0.0), [4])
    reordered = []
    for q, r in enumerate(records):
        ids: dict[str, int] = {}
        [ids.setdefault(s.answer, len(ids)) for s in r.samples]
        inv = {v: k for k, v in ids.items()}
        reordered.append(Record(id=r.id, problem=r.problem, reference=r.reference,
                                samples=[Sample(answer=inv[int(c)], tokens=1) for c in pool.sequences[q, 0]]))
    res = run_allocation(ReplaySampler(reordered), [(r.id, r.problem) for r in reordered],
                         OnlineAllocator(max_per_question=10, pilot=2, settle=0.0), 40)
    assert res.samples.sum() == 40
    # permutation 0's samples per question, recomputed: the same allocation
    alloc = OnlineAllocator(max_per_question=10, pilot=2, settle=0.0)
    alloc.start(15)
    spent = 0
    while spent < 40:
        plan = alloc.next_round(40 - spent)
        for q in np.flatnonzero(plan):
            alloc.observe(q, pool.sequences[q, 0, alloc.votes.n[q] : alloc.votes.n[q] + plan[q]])
        spent += int(plan.sum())
    assert res.samples.tolist() == alloc.votes.n.tolist()
    assert pts[0].mean_samples == pytest.approx(4.0)


def test_rules_in_simulation_agree_with_stop_point() -> None:
    probs = candidates(synthetic_records(10, 12))
    pool = replay_pool(probs, 12, 3, seed=0)
    for rule in (ASC(0.9), FirstToAhead(3)):
        point = run_rule(pool, rule)
        used = [rule.stop_point(pool.sequences[q, r]) for q in range(10) for r in range(3)]
        assert point.mean_samples == pytest.approx(np.mean(used))
    static = run_static(pool, lambda: StaticAllocator(12), [3, 6], pilot=2)
    assert [p.mean_samples for p in static] == [3.0, 6.0]
