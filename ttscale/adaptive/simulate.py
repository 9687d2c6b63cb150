"""Replay evaluation of stopping rules and allocators on a bank, with seeded permutations.

Adaptive rules read samples in order, so their accuracy depends on the order: each question's
samples are shuffled ``permutations`` times (seeded, per question) and every rule and allocator
is run on every shuffle. Reported per rule and parameter: accuracy (tie-credited majority of the
votes at the stop), its standard error over the permutations (against the expectation over orders
on this bank), mean samples and mean generated tokens per question (None when the bank has no
tokens). The reference is the exact majority@K of the same questions (``estimate.majority_at_k``),
K the most samples a rule may use.
"""

from __future__ import annotations


import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ttscale.adaptive.stopping import StoppingRule, default_rules, vote_trajectories
from ttscale.answers.candidates import Candidates
from ttscale.errors import ConfigError, EstimationError
from ttscale.estimate import exact as estimate
from ttscale.validation import check_count

__all__ = ["ReplayPool", "RulePoint", "SimulationResult", "cheapest_points", "default_max_samples", "points_json", "replay_pool", "simulate", "summarize"]


@dataclass(frozen=True)
class ReplayPool:
    """Seeded orderings of each question's samples, cut at K: what every simulated rule reads."""

    sequences: np.ndarray
    """int (Q, R, K): class ids in arrival order, per question and permutation."""
    tokens: np.ndarray | None
    """float (Q, R, K): generated tokens of those samples, or None when the bank has none."""
    class_correct: list[np.ndarray]
    """Per question, bool (C_q,) correctness of each class."""
    credit: np.ndarray
    """float (Q, R, K): tie-credited majority correctness after each sample."""
    reference: float
    """Exact majority@K of these questions."""
    dropped: int = 0
    """Questions left out because they have fewer than K samples."""
    orders: np.ndarray | None = None
    """int (Q, R, K): which of the question's samples each position is (for per-sample signals)."""

    @property
    def questions(self) -> int:
        return int(self.sequences.shape[0])

    @property
    def permutations(self) -> int:
        return int(self.sequences.shape[1])

    @property
    def k(self) -> int:
        return int(self.sequences.shape[2])


def default_max_samples(sizes: Sequence[int], share: float = 0.9) -> int:
    """The largest K that at least ``share`` of the questions have (so few are left out)."""
    arr = np.sort(np.asarray(sizes))[::-1]
    if arr.size == 0:
        raise EstimationError("the bank has no questions")
    return int(arr[max(0, int(math.ceil(share * arr.size)) - 1)])


def replay_pool(problems: Sequence[Candidates], max_samples: int | None = None, permutations: int = 20, seed: int = 0) -> ReplayPool:
    """Shuffle each question's samples ``permutations`` times (question q uses child q of ``SeedSequence(seed)``)."""
    if not problems:
        raise EstimationError("the bank has no questions to simulate")
    check_count("permutations", permutations, 2, "an integer >= 2 (standard errors need two)")
    sizes = [p.n for p in problems]
    K = default_max_samples(sizes) if max_samples is None else int(max_samples)
    if K < 1:
        raise ConfigError("max_samples", max_samples, "an integer >= 1")
    kept = [p for p in problems if p.n >= K]
    if not kept:
        raise ConfigError("max_samples", K, f"at most the largest pool in the bank ({max(sizes)} samples)")
    has_tokens = all(p.tokens is not None for p in kept)
    R = int(permutations)
    children = np.random.SeedSequence(seed).spawn(len(problems))
    seqs = np.empty((len(kept), R, K), dtype=np.int64)
    orders = np.empty((len(kept), R, K), dtype=np.int64)
    toks = np.empty((len(kept), R, K)) if has_tokens else None
    credit = np.empty((len(kept), R, K))
    i = 0
    for q, p in enumerate(problems):
        if p.n < K:
            continue
        rng = np.random.default_rng(children[q])
        order = np.stack([rng.permutation(p.n)[:K] for _ in range(R)])
        seqs[i] = p.classes[order]
        orders[i] = order
        if toks is not None:
            toks[i] = p.tokens[order]
        credit[i] = vote_trajectories(seqs[i], p.class_correct).credit
        i += 1
    counts, correct, n = estimate.candidates_to_arrays(kept)
    reference = float(estimate.majority_at_k(counts, correct, n, [K]).mean())
    return ReplayPool(seqs, toks, [p.class_correct for p in kept], credit, reference, dropped=len(problems) - len(kept), orders=orders)


@dataclass(frozen=True)
class RulePoint:
    """One rule at one parameter value."""

    param: float
    accuracy: float
    stderr: float
    mean_samples: float
    mean_tokens: float | None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {"param": self.param, "accuracy": self.accuracy, "stderr": self.stderr,
               "mean_samples": self.mean_samples, "mean_tokens": self.mean_tokens}
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class SimulationResult:
    """What ``ttscale plan --simulate --json`` prints."""

    k: int
    reference: float
    questions: int
    permutations: int
    seed: int
    rules: dict[str, list[RulePoint]]
    dropped: int = 0

    def cheapest(self, target: float) -> dict[str, RulePoint | None]:
        """Per rule, its cheapest setting reaching ``target`` (see :func:`cheapest_points`)."""
        return cheapest_points(self.rules, target)

    def to_json(self, target: float | None = None) -> dict:
        """The JSON of ``plan --simulate --json``; with ``target`` also each rule's cheapest setting reaching it."""
        extra = {}
        if target is not None:
            extra = {"cheapest": {"target": target, "rules": points_json(self.cheapest(target))}}
        return {
            "reference": {"k": self.k, "accuracy": self.reference},
            "questions": self.questions,
            "dropped_questions": self.dropped,
            "permutations": self.permutations,
            "seed": self.seed,
            "rules": {name: [p.to_json() for p in pts] for name, pts in self.rules.items()},
            **extra,
        }


def cheapest_points(rules: dict[str, list[RulePoint]], target: float) -> dict[str, RulePoint | None]:
    """Per rule, its setting with the fewest mean samples whose accuracy reaches ``target`` (None
    when no setting does): a setting a user can run, no interpolation between settings."""
    return {name: min((p for p in pts if p.accuracy >= target), key=lambda p: p.mean_samples, default=None)
            for name, pts in rules.items()}


def points_json(points: dict[str, RulePoint | None]) -> dict[str, dict | None]:
    """One point per rule (or None) as JSON."""
    return {name: None if p is None else p.to_json() for name, p in points.items()}


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else 0.0


def summarize(pool: ReplayPool, used: np.ndarray, credit: np.ndarray, param: float, tokens: np.ndarray | None = None, **extra: object) -> RulePoint:
    """A :class:`RulePoint` from per (question, permutation) samples used and final credit (both (Q, R)).

    ``tokens`` (Q, R) generated tokens spent; derived from the pool's tokens and ``used`` when None.
    """
    acc_r = credit.mean(axis=0)  # (R,) dataset accuracy per permutation
    se = float(acc_r.std(ddof=1) / math.sqrt(acc_r.size)) if acc_r.size > 1 else 0.0
    mean_tokens = None
    if tokens is None and pool.tokens is not None:
        cum = np.cumsum(pool.tokens, axis=2)
        idx = np.clip(used - 1, 0, pool.k - 1)
        tokens = np.where(used > 0, np.take_along_axis(cum, idx[..., None], axis=2)[..., 0], 0.0)
    if tokens is not None:
        mean_tokens = _finite(float(tokens.mean()))
    return RulePoint(param=float(param), accuracy=_finite(float(acc_r.mean())), stderr=_finite(se),
                     mean_samples=_finite(float(used.mean())), mean_tokens=mean_tokens, extra=dict(extra))


def run_rule(pool: ReplayPool, rule: StoppingRule) -> RulePoint:
    """Simulate one stopping rule on every question and permutation of the pool."""
    Q, R, K = pool.sequences.shape
    traj = replace(vote_trajectories(pool.sequences.reshape(Q * R, K)), horizon=K)
    stop = rule.stop_index(traj).reshape(Q, R)
    credit = np.take_along_axis(pool.credit, stop[..., None], axis=2)[..., 0]
    return summarize(pool, stop + 1, credit, rule.param)


def simulate(
    problems: Sequence[Candidates] | ReplayPool,
    rules: dict[str, list[StoppingRule]] | None = None,
    *,
    allocators: dict[str, Callable[[ReplayPool], list[RulePoint]]] | None = None,
    max_samples: int | None = None,
    permutations: int = 20,
    seed: int = 0,
    on_rule: Callable[[str], None] | None = None,
) -> SimulationResult:
    """Every stopping rule at every grid value (and every allocator) on seeded replays of the bank."""
    pool = problems if isinstance(problems, ReplayPool) else replay_pool(problems, max_samples, permutations, seed)
    rules = default_rules() if rules is None else rules
    out: dict[str, list[RulePoint]] = {}
    for name, grid in rules.items():
        out[name] = [run_rule(pool, r) for r in grid]
        if on_rule is not None:
            on_rule(name)
    for name, fn in (allocators or {}).items():
        out[name] = fn(pool)
        if on_rule is not None:
            on_rule(name)
    return SimulationResult(k=pool.k, reference=pool.reference, questions=pool.questions,
                            permutations=pool.permutations, seed=seed, rules=out, dropped=pool.dropped)


def run_allocator(pool: ReplayPool, make: Callable[[], object], budgets: Sequence[float], **extra: object) -> list[RulePoint]:
    """Simulate an online allocator (``make()`` -> a fresh :class:`~ttscale.adaptive.allocate.OnlineAllocator`)
    on every permutation, reading off accuracy at each budget (mean samples per question).

    The allocator is anytime: one run per permutation passes every budget in turn, and each round is
    cut so the spend lands exactly on each budget (Q x budget samples, rounded down).
    """
    Q, R, K = pool.sequences.shape
    targets = sorted({int(math.floor(b * Q)) for b in budgets})
    used = np.zeros((len(targets), Q, R), dtype=np.int64)
    credit = np.zeros((len(targets), Q, R))
    rows = np.arange(Q)
    for r in range(R):
        alloc = make()
        alloc.start(Q)  # type: ignore[attr-defined]
        seq = pool.sequences[:, r, :]
        spent = 0
        for i, target in enumerate(targets):
            while spent < target:
                plan = alloc.next_round(target - spent)  # type: ignore[attr-defined]
                if not plan.any():
                    break
                n0 = alloc.votes.n.copy()  # type: ignore[attr-defined]
                for j in range(int(plan.max())):
                    qs = np.flatnonzero(plan > j)
                    alloc.votes.add_many(qs, seq[qs, n0[qs] + j])  # type: ignore[attr-defined]
                spent += int(plan.sum())
            n = alloc.votes.n  # type: ignore[attr-defined]
            used[i, :, r] = n
            credit[i, :, r] = np.where(n > 0, pool.credit[rows, r, np.clip(n - 1, 0, K - 1)], 0.0)
    return [summarize(pool, used[i], credit[i], param=targets[i] / Q, **extra) for i in range(len(targets))]


def run_static(pool: ReplayPool, make: Callable[[], object], budgets: Sequence[float], pilot: int = 4, **extra: object) -> list[RulePoint]:
    """Simulate a static allocator (``make()`` -> :class:`~ttscale.adaptive.allocate.StaticAllocator`): a pilot of
    ``pilot`` samples per question, then one greedy split of the rest of each budget."""
    from ttscale.adaptive.allocate import pilot_sizes

    Q, R, K = pool.sequences.shape
    pilot = min(int(pilot), K)
    rows = np.arange(Q)
    out = []
    for b in budgets:
        total = int(math.floor(b * Q))
        used = np.zeros((Q, R), dtype=np.int64)
        for r in range(R):
            first = pilot_sizes(Q, pilot, K, total)
            seq = pool.sequences[:, r, :]
            width = int(seq.max()) + 1 if (seq >= 0).any() else 1
            counts = np.zeros((Q, width), dtype=np.int64)
            for j in range(int(first.max())):
                take = first > j
                ok = take & (seq[:, j] >= 0)
                np.add.at(counts, (rows[ok], seq[ok, j]), 1)
            extra_n = make().allocate(counts, first, total - int(first.sum()))  # type: ignore[attr-defined]
            used[:, r] = first + extra_n
        credit = np.where(used > 0, np.take_along_axis(pool.credit, np.clip(used - 1, 0, K - 1)[..., None], axis=2)[..., 0], 0.0)
        out.append(summarize(pool, used, credit, param=total / Q, **extra))
    return out
