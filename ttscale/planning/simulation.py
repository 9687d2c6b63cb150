"""What ``ttscale simulate`` works out: adaptive rules and allocators replayed on a bank, each
rule's cheapest setting reaching a target, and (``exact``) the same scored over every sample order
with the live adaptive ``Budget`` (the ``default`` rule) and the vote-only bound.

Pure functions over graded problems (:class:`~ttscale.answers.candidates.Candidates`) returning
typed results whose ``to_json`` is the command's JSON; the CLI only parses options and prints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ttscale.adaptive.early_stop import EARLY_STOP_RULE, early_stop_rule
from ttscale.adaptive.exact_replay import (
    VoteStates,
    bayes_frontier,
    check_exact_states,
    exact_rule_points,
    held_out_bayes_frontier,
    largest_exact_k,
    samples_to_reach,
)
from ttscale.adaptive.simulate import (
    ReplayPool,
    RulePoint,
    SimulationResult,
    cheapest_points,
    default_max_samples,
    points_json,
    replay_pool,
    run_allocator,
    run_static,
    simulate,
)
from ttscale.adaptive.signals import SIGNAL_RULE, fits_weighted_votes, signal_rule
from ttscale.adaptive.workload_prior import WORKLOAD_RULE, workload_rules
from ttscale.adaptive.stopping import DEFAULT_RULE, StoppingRule, default_rules
from ttscale.answers.candidates import Candidates
from ttscale.early_stop.params import EarlyStopParams
from ttscale.errors import ConfigError
from ttscale.limits import check_permutations
from ttscale.validation import check_count

__all__ = [
    "ExactSimulation", "HeldOutBound", "LiveBudget", "SimulationReport", "VoteBound", "allocator_budgets", "cheapest_live_budget",
    "default_allocators", "exact_simulation", "held_out_bound", "held_out_frontiers", "held_out_splits", "pooled_held_out", "simulate_problems",
]

DEFAULT_PILOT = 2
"""Pilot samples per question of the simulated online allocator."""
STATIC_PILOT = 4
"""Pilot samples per question of the simulated static allocator."""
TOLERANCE = 0.001
"""Without a target: rules' cheapest settings within 0.1 point of majority@K."""
LIVE_DEFAULT_ROUNDS = (1, 1)
"""``ttscale.live.budget.Budget``'s default (pilot, step): the live solver then draws, each round,
the fewest samples after which the rule could stop, which stops exactly where checking after every
sample does. The live layer sits above this one, so the values are repeated here; a test keeps
them equal."""


def allocator_budgets(k: int) -> list[float]:
    """Mean samples per question at which the allocators are read off: about 24 points in [1, K]."""
    grid = np.unique(np.round(np.geomspace(1, k, 24) * 4) / 4)
    return [float(b) for b in grid if 1 <= b <= k]


def default_allocators(k: int, budgets: list[float] | None = None) -> dict[str, Callable[[ReplayPool], list[RulePoint]]]:
    """The simulated allocators: online (Blend-ASC style) and static (from pilots), read off at ``budgets``."""
    from ttscale.adaptive.allocate import OnlineAllocator, StaticAllocator

    budgets = budgets or allocator_budgets(k)
    return {
        "alloc-online": lambda pool: run_allocator(pool, lambda: OnlineAllocator(max_per_question=k, pilot=DEFAULT_PILOT), budgets),
        "alloc-static": lambda pool: run_static(pool, lambda: StaticAllocator(k), budgets, pilot=STATIC_PILOT),
    }


@dataclass(frozen=True)
class LiveBudget:
    """An adaptive live ``Budget`` (the ``default`` rule at one confidence) and what it does on the bank, exactly."""

    samples: int
    """The most samples a question gets (K)."""
    pilot: int
    step: int
    confidence: float
    mean_samples: float
    accuracy: float

    def to_json(self) -> dict:
        return {"budget": {"samples": self.samples, "adaptive": True, "pilot": self.pilot, "step": self.step,
                           "confidence": self.confidence},
                "mean_samples": self.mean_samples, "accuracy": self.accuracy}


def cheapest_live_budget(states: VoteStates, k: int, goal: float,
                         rounds: tuple[int, int] = LIVE_DEFAULT_ROUNDS) -> LiveBudget | None:
    """The cheapest adaptive ``Budget(samples=k, adaptive=True, confidence=c)`` reaching ``goal``
    exactly on the bank over the ``default`` rule's grid of c; None where no setting reaches it."""
    pilot, step = min(rounds[0], k), rounds[1]
    best: LiveBudget | None = None
    for rule in default_rules()[DEFAULT_RULE]:
        samples, acc = states.evaluate(rule, pilot=pilot, step=step)
        if acc >= goal and (best is None or samples < best.mean_samples - 1e-9):
            best = LiveBudget(samples=k, pilot=pilot, step=step, confidence=float(rule.param), mean_samples=samples, accuracy=acc)
    return best


@dataclass(frozen=True)
class VoteBound:
    """Fewest mean samples per question with which any vote-only rule reaches ``target`` (None: none does)."""

    target: float
    plurality_answer: float | None
    """Rules that answer the plurality (every rule here)."""
    any_answer: float | None
    """Rules that may answer the class most likely correct instead."""
    held_out: "HeldOutBound | None" = None
    """The plurality bound's rule learnt on half of the questions and scored on the other half
    (:func:`held_out_bound`): what knowing *other* questions of the workload buys. The bound above
    knows the very questions it is scored on; where vote states nearly identify a question (many
    answers, a large K) no rule that has not seen them comes near it. None: too few questions."""

    def to_json(self) -> dict:
        h = self.held_out
        return {"target": self.target, "plurality_answer": self.plurality_answer, "any_answer": self.any_answer,
                "held_out": None if h is None else {"plurality_answer": h.samples, "best_accuracy": h.best_accuracy, "splits": h.splits}}


@dataclass(frozen=True)
class ExactSimulation:
    """Count-reading rules scored over every order of every question's samples (no permutation noise)."""

    states: int
    """Vote states of the exact tables."""
    rules: dict[str, list[RulePoint]]
    cheapest: dict[str, RulePoint | None]
    """Per rule, its cheapest exact setting reaching the target."""
    bound: VoteBound
    deploy: LiveBudget | None
    """The cheapest live adaptive budget (the ``default`` rule, default rounds) reaching the target."""

    def to_json(self) -> dict:
        return {
            "states": self.states,
            "deploy": None if self.deploy is None else self.deploy.to_json(),
            "rules": {name: [p.to_json() for p in pts] for name, pts in self.rules.items()},
            "cheapest": points_json(self.cheapest),
            "bound": self.bound.to_json(),
        }


HELD_OUT_MIN_QUESTIONS = 20
"""Fewest questions (with >= K samples) for the held-out bound: ten per half."""
HELD_OUT_SPLITS = 5
"""Seeded halvings the held-out bound averages over: one halving's figure moves a lot (the GPT-4 GSM8K
bank, ten halvings in ``evals/held_out_bound.py``: 2.25 to 2.82 samples, 2.53 pooled)."""
HELD_OUT_LARGE_STATES = 100_000
"""Tables with more vote states than this (the Llama-2 GSM8K bank: 736,042) get one split, not
:data:`HELD_OUT_SPLITS`: each split builds two tables, minutes apiece there."""


def held_out_splits(states: int) -> int:
    """Halvings :func:`exact_simulation`'s held-out bound averages over, for tables of ``states``
    vote states: :data:`HELD_OUT_SPLITS`, or 1 above :data:`HELD_OUT_LARGE_STATES`."""
    return HELD_OUT_SPLITS if states <= HELD_OUT_LARGE_STATES else 1


@dataclass(frozen=True)
class HeldOutBound:
    """The vote-only bound's rule learnt on half of the questions, scored on the other half."""

    samples: float | None
    """Mean samples per question to reach the target (None: never reaches it)."""
    best_accuracy: float
    """The highest accuracy it reaches at any price."""
    splits: int
    """Seeded halvings averaged (each scored both ways)."""


def held_out_frontiers(problems: Sequence[Candidates], k: int, seed: int = 0, splits: int = HELD_OUT_SPLITS,
                       folds: int = 2) -> list[list[tuple[float, float]]] | None:
    """Per seeded split of the questions with >= ``k`` samples into ``folds`` parts, the (samples,
    accuracy) per price of the Bayes rule learnt on all parts but one and scored exactly on the one
    left out, in turn (``held_out_bayes_frontier``; 2 folds: halves, both ways). None with fewer than
    :data:`HELD_OUT_MIN_QUESTIONS` questions, or ten per fold."""
    check_count("splits", splits, 1)
    check_count("folds", folds, 2)
    kept = [p for p in problems if p.n >= k]
    if len(kept) < max(HELD_OUT_MIN_QUESTIONS, 10 * int(folds)):
        return None
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(splits)):
        order = rng.permutation(len(kept))
        parts = np.array_split(order, int(folds)) if folds > 2 else [order[: len(kept) // 2], order[len(kept) // 2:]]
        tables = [VoteStates([kept[i] for i in np.sort(part)], k) for part in parts]

        def complement(f: int) -> VoteStates:  # two folds: the other half's table, not a rebuilt copy
            rest = np.concatenate([q for j, q in enumerate(parts) if j != f])
            return tables[1 - f] if folds == 2 else VoteStates([kept[i] for i in np.sort(rest)], k)

        out.append(held_out_bayes_frontier([(complement(f), tables[f]) for f in range(int(folds))]))
    return out


def pooled_held_out(frontiers: Sequence[Sequence[tuple[float, float]]], goal: float) -> HeldOutBound:
    """The splits' frontiers averaged price by price (running one split's rule or another's at
    random), read at ``goal``."""
    mean = np.mean(np.asarray(frontiers, dtype=float), axis=0)
    frontier = [(float(s_), float(a)) for s_, a in mean]
    return HeldOutBound(samples_to_reach(frontier, goal), max(a for _, a in frontier), len(frontiers))


def held_out_bound(problems: Sequence[Candidates], k: int, goal: float, seed: int = 0,
                   splits: int = HELD_OUT_SPLITS) -> HeldOutBound | None:
    """The vote-only bound held out (:func:`held_out_frontiers` pooled by :func:`pooled_held_out`);
    None with fewer than :data:`HELD_OUT_MIN_QUESTIONS` questions with >= ``k`` samples."""
    frontiers = held_out_frontiers(problems, k, seed, splits)
    return None if frontiers is None else pooled_held_out(frontiers, goal)


def exact_simulation(problems: Sequence[Candidates], k: int, rules: dict[str, list[StoppingRule]], goal: float,
                     seed: int = 0) -> ExactSimulation:
    """Score the count-reading ``rules`` exactly over every order (questions with >= ``k`` samples),
    the live adaptive budget, and the vote-only bound (in-sample and held out on ``seed``'s halves),
    all against ``goal``."""
    states = VoteStates(problems, k)
    points = exact_rule_points(states, rules)
    held_out = held_out_bound(problems, k, goal, seed, splits=held_out_splits(states.states))
    bound = VoteBound(goal, samples_to_reach(bayes_frontier(states), goal),
                      samples_to_reach(bayes_frontier(states, plurality=False), goal), held_out)
    return ExactSimulation(states.states, points, cheapest_points(points, goal), bound, cheapest_live_budget(states, k, goal))


@dataclass(frozen=True)
class SimulationReport:
    """What ``ttscale simulate`` prints: the seeded replay, the target, and the exact tables when asked."""

    result: SimulationResult
    target: float
    """Accuracy each rule's cheapest setting must reach."""
    default_target: bool
    """True when ``target`` is the default (majority@K - 0.1 point), not given."""
    exact: ExactSimulation | None = None
    lowered_from: int | None = None
    """The pool size K would have been when the exact tables made the simulation use a smaller one
    (None: not lowered)."""

    def cheapest(self) -> dict[str, RulePoint | None]:
        """Per rule, its cheapest replayed setting reaching the target (None when none does)."""
        return self.result.cheapest(self.target)

    def to_json(self) -> dict:
        out = self.result.to_json(target=self.target)
        if self.exact is not None:
            out["exact"] = self.exact.to_json()
        if self.lowered_from is not None:
            out["k_lowered_from"] = self.lowered_from
        return out


AUTO_LOWER_SHARE = 0.9
"""``simulate_problems(exact=True)`` without ``max_k``: the least share of the pool size it lowers K
to, unasked, when the exact tables at the pool size would not fit in memory (the Llama-2 GSM8K bank:
48 -> 47)."""


def simulate_problems(
    problems: Sequence[Candidates],
    *,
    max_k: int | None = None,
    permutations: int = 20,
    seed: int = 0,
    target: float | None = None,
    exact: bool = False,
    early_stop: EarlyStopParams | None = None,
    on_step: Callable[[str], None] | None = None,
) -> SimulationReport:
    """Replay every stopping rule and allocator on ``permutations`` seeded orders of each question's
    first ``max_k`` samples (default: the pool size 90% of questions have), then find each rule's
    cheapest setting reaching ``target`` (default: majority@K - 0.1 point); ``exact`` adds
    :func:`exact_simulation`. A bank whose samples store per-token confidences also gets the online
    early stop (``deepconf-online``, one point per eta) with ``early_stop``'s window and warm-up.
    ``on_step`` is called with the name of each step as it starts."""
    if max_k is not None:
        check_count("max_k", max_k, 1)
    if target is not None and not (math.isfinite(target) and 0.0 < target <= 1.0):
        raise ConfigError("target", target, "an accuracy as a fraction in (0, 1]")
    step = on_step or (lambda _: None)
    K = default_max_samples([p.n for p in problems]) if max_k is None else int(max_k)
    step("replay orders")
    check_count("permutations", permutations, 2, "an integer >= 2 (standard errors need two)")
    check_permutations(permutations, len(problems), K)  # sized before the tables are made
    pool_k = None
    if exact:
        try:
            check_exact_states(problems, K)  # before the replay, not minutes into it
        except ConfigError as exc:
            # Unasked, K is the pool size, a default rather than a request: when a K within
            # AUTO_LOWER_SHARE of it fits, the whole simulation takes that K (and says so); further
            # off, the refusal names the largest K that fits. An explicit max_k is refused as it is.
            fits = None if max_k is not None else largest_exact_k(problems, K - 1)
            if fits is None:
                raise
            if fits < AUTO_LOWER_SHARE * K:
                raise ConfigError(exc.parameter, exc.value, f"{exc.expected}; the largest that fits is --max-k {fits}") from None
            pool_k, K = K, fits
    rules = default_rules()
    workload = workload_rules(problems, K)  # the workload rule on a prior fitted on the bank's own votes
    if workload is not None:
        rules[WORKLOAD_RULE] = workload
    pool = replay_pool(problems, K, permutations, seed)
    allocators = default_allocators(pool.k)
    weighted = signal_rule(problems, seed=seed)
    if weighted is not None and fits_weighted_votes(pool):  # too many distinct answers: votes only
        allocators[SIGNAL_RULE] = weighted
    replayed = early_stop_rule(problems, early_stop)
    if replayed is not None:
        allocators[EARLY_STOP_RULE] = replayed
    result = simulate(pool, rules, allocators=allocators, seed=seed, on_rule=step)
    goal = max(result.reference - TOLERANCE, 0.0) if target is None else target
    exact_result = None
    if exact:
        step("exact tables")
        exact_result = exact_simulation(problems, pool.k, rules, goal, seed)
    return SimulationReport(result, goal, target is None, exact_result, pool_k)
