"""The round loop: every live branch of every problem in flight goes into one generator call and
one scorer call per round; finished problems are handed back as soon as they finish."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ttscale.records.datasets import Problem
from ttscale.sampling.sampler import request_seed
from ttscale.search.branch import Branch, SearchError
from ttscale.search.cost import SearchCost
from ttscale.search.params import SearchParams
from ttscale.search.steps import StepGenerator, StepRequest, StepScorer
from ttscale.search.strategies import SearchState, new_state
from ttscale.validation import check_count, is_number

SEED_STRIDE = 1 << 20
"""Request seeds derive from (base seed, problem id, round * SEED_STRIDE + request index)."""


@dataclass
class ProblemResult:
    problem: Problem
    candidates: list[Branch]
    """Final candidates, best aggregated score first."""
    cost: SearchCost = field(default_factory=SearchCost)


@dataclass
class _Running:
    problem: Problem
    state: SearchState
    cost: SearchCost = field(default_factory=SearchCost)


def _rng(params: SearchParams, problem_id: str) -> np.random.Generator:
    seed = request_seed(params.seed, f"{problem_id}\x00resample", 0)
    return np.random.default_rng(seed)


def search_problems(
    problems: Sequence[Problem],
    generator: StepGenerator,
    scorer: StepScorer,
    params: SearchParams,
    *,
    in_flight: int = 64,
    on_round: Callable[[int, int], None] | None = None,
) -> Iterator[ProblemResult]:
    """Search every problem; yields each one's result when it finishes (not in input order).

    At most ``in_flight`` problems are searched together (a kill loses at most their rounds).
    ``on_round(live_branches, problems_in_flight)`` is called after each round.
    """
    in_flight = check_count("in_flight", in_flight, 1)
    queue = list(reversed(problems))
    running: list[_Running] = []
    while queue or running:
        while queue and len(running) < in_flight:
            p = queue.pop()
            running.append(_Running(p, new_state(params, _rng(params, p.id))))
        yield from _round(running, generator, scorer, params)
        running[:] = [r for r in running if not r.state.done]
        if on_round is not None:
            on_round(sum(len(r.state.pending()) for r in running), len(running))


def _round(
    running: list[_Running], generator: StepGenerator, scorer: StepScorer, params: SearchParams
) -> Iterator[ProblemResult]:
    start = time.perf_counter()
    owners: list[tuple[_Running, Branch]] = []
    requests: list[StepRequest] = []
    for r in running:
        for index, (branch, n) in enumerate(r.state.pending()):
            seed = request_seed(params.seed, r.problem.id, r.state.round * SEED_STRIDE + index)
            requests.append(StepRequest(r.problem.problem, branch.steps, n, seed, _step_budget(branch, params)))
            owners.append((r, branch))
    steps = generator.generate_steps(requests)
    if len(steps) != len(requests) or any(len(s) != q.n for s, q in zip(steps, requests)):
        raise SearchError(f"step generator: expected {[q.n for q in requests]} continuations per request, got {[len(s) for s in steps]}")
    children = [[branch.extend(step, params) for step in group] for (_, branch), group in zip(owners, steps)]
    flat = [(r, c) for (r, _), group in zip(owners, children) for c in group]
    scored = scorer.score_steps([(r.problem.problem, c.texts) for r, c in flat])
    _check_scores(scorer, scored.scores, [(r.problem.id, c) for r, c in flat])
    tokens = scored.tokens or [0] * len(flat)
    for (r, c), scores, read in zip(flat, scored.scores, tokens):
        c.step_scores = [float(s) for s in scores]
        c.score = params.aggregation(c.step_scores)
        r.cost.scored_tokens += read
    elapsed = time.perf_counter() - start
    total = max(1, sum(s.tokens for group in steps for s in group))
    by_run: dict[int, list[list[Branch]]] = {}
    for (r, _), group, step_group in zip(owners, children, steps):
        by_run.setdefault(id(r), []).append(group)
        made = sum(s.tokens for s in step_group)
        r.cost.generated_tokens += made
        r.cost.expansions += len(step_group)
        r.cost.requests += 1
        r.cost.prompt_tokens += step_group[0].prompt_tokens if step_group else 0
        r.cost.seconds += elapsed * made / total  # the round's time, shared by tokens generated
    for r in running:
        r.cost.rounds += 1
        r.state.advance(by_run.get(id(r), []))
        if r.state.done:
            yield ProblemResult(r.problem, r.state.finals(), r.cost)


def _step_budget(branch: Branch, params: SearchParams) -> int:
    if params.max_tokens is None:
        return params.max_step_tokens
    return max(1, min(params.max_step_tokens, params.max_tokens - branch.tokens))


def _check_scores(scorer: StepScorer, scores: list[list[float]], items: list[tuple[str, Branch]]) -> None:
    name = getattr(scorer, "name", type(scorer).__name__)
    if len(scores) != len(items):
        raise SearchError(f"step scorer {name!r}: {len(scores)} score lists for {len(items)} partial solutions")
    for (pid, branch), got in zip(items, scores):
        if len(got) != len(branch.steps):
            raise SearchError(f"step scorer {name!r}: problem {pid!r}: {len(got)} step scores for {len(branch.steps)} steps")
        for k, s in enumerate(got):
            if not is_number(s):
                raise SearchError(f"step scorer {name!r}: problem {pid!r}, step {k + 1}: score {s!r}, expected a finite number")
