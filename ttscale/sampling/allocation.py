"""Drive an allocator (:mod:`ttscale.adaptive.allocate`) against a sampler under a sample budget.

The allocators are pure (vote counts in, samples per question out); this loop is their edge: it
turns each round's plan into :class:`~ttscale.sampling.sampler.SampleRequest` s, sends them to any
sampler (a live backend or ``ReplaySampler``) and feeds the answers back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ttscale.adaptive.allocate import (
    OnlineAllocator,
    StaticAllocator,
    _Votes,
    pilot_sizes,
)
from ttscale.answers.candidates import NO_ANSWER
from ttscale.errors import ConfigError
from ttscale.sampling.sampler import SampleRequest, request_seed
from ttscale.validation import check_count

__all__ = ["AllocationResult", "run_allocation"]



@dataclass
class AllocationResult:
    """What a driven allocation produced, per question."""

    answers: list[list[str | None]]
    """Answers drawn per question, in order."""
    chosen: list[str | None]
    """Majority answer per question (first to reach the top count on ties; None without a vote)."""
    samples: np.ndarray
    """Samples drawn per question."""
    completion_tokens: int
    """Generated tokens over all requests (as the sampler reported them)."""
    requests: int
    """Requests sent (each prefills its prompt once)."""


class _Classes:
    """Answer strings to class ids per question (exact match after the extractor's normalization)."""

    def __init__(self, questions: int) -> None:
        self.ids: list[dict[str, int]] = [{} for _ in range(questions)]

    def __call__(self, q: int, answer: str | None) -> int:
        if answer is None:
            return NO_ANSWER
        table = self.ids[q]
        return table.setdefault(answer, len(table))


def run_allocation(
    sampler: object,
    problems: Sequence[tuple[str, str]],
    allocator: OnlineAllocator | StaticAllocator,
    budget: int,
    *,
    pilot: int = 3,
    classify: Callable[[int, str | None], int] | None = None,
) -> AllocationResult:
    """Drive ``allocator`` against a sampler (live backend or ``ReplaySampler``) under ``budget`` samples.

    ``problems``: (id, problem text) per question. The online allocator decides round by round;
    the static one gets a pilot of ``pilot`` samples per question, then one allocation of the rest.
    Every round sends one request per question that gets samples (the prompt prefilled once).
    """
    Q = len(problems)
    if Q == 0:
        raise ConfigError("problems", 0, "at least one question")
    budget = check_count("budget", budget, 0)
    classify = classify or _Classes(Q)
    answers: list[list[str | None]] = [[] for _ in range(Q)]
    drawn = np.zeros(Q, dtype=np.int64)
    tokens = requests = 0
    seed = getattr(getattr(sampler, "config", None), "seed", None)

    def draw(plan: np.ndarray) -> list[tuple[int, list[int]]]:
        nonlocal tokens, requests
        reqs = [SampleRequest(id=problems[q][0], problem=problems[q][1], n=int(plan[q]), round=int(drawn[q]),
                              seed=request_seed(seed, problems[q][0], int(drawn[q])))
                for q in np.flatnonzero(plan > 0)]
        got = []
        batch = max(1, int(getattr(sampler, "batch_size", len(reqs)) or len(reqs)))
        for lo in range(0, len(reqs), batch):
            for res in sampler.generate(reqs[lo : lo + batch]):  # type: ignore[attr-defined]
                q = next(i for i in np.flatnonzero(plan > 0) if problems[i][0] == res.request.id)
                got.append((int(q), [classify(int(q), c.answer) for c in res.candidates]))
                answers[q].extend(c.answer for c in res.candidates)
                drawn[q] += len(res.candidates)
                tokens += int(res.completion_tokens or 0)
                requests += 1
        return got

    spent = 0
    if isinstance(allocator, OnlineAllocator):
        allocator.start(Q)
        while spent < budget:
            plan = allocator.next_round(budget - spent)
            if not plan.any():
                break
            for q, cls in draw(plan):
                allocator.observe(q, cls)
            spent = int(drawn.sum())
    else:
        first = pilot_sizes(Q, pilot, allocator.max_per_question, budget)
        votes = _Votes.empty(Q)
        for q, cls in draw(first):
            votes.add(q, np.asarray(cls, dtype=np.int64))
        extra = allocator.allocate(votes.counts, votes.n, budget - int(drawn.sum()))
        draw(extra)
    chosen = []
    for q in range(Q):
        votes_q: dict[str, int] = {}
        for a in answers[q]:
            if a is not None:
                votes_q[a] = votes_q.get(a, 0) + 1
        chosen.append(max(votes_q, key=votes_q.__getitem__) if votes_q else None)
    return AllocationResult(answers, chosen, drawn, tokens, requests)

