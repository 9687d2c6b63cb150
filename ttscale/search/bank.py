"""Search results into a bank: one line per problem, its final candidates as samples, resumable.

A sample is a final candidate: its text, its extracted answer (None for a branch that never
reached one), its generated tokens, ``reward`` and ``rewards[scorer]`` the aggregated step score,
and ``step_scores``. The line carries ``search``: the method, the parameters and what the problem
cost (:class:`~ttscale.search.cost.SearchCost`). A problem already in the bank is not searched again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ttscale.answers import extract_answer
from ttscale.records.bank import BankWriter
from ttscale.records.datasets import Problem
from ttscale.records.lock import bank_lock
from ttscale.records.models import Record, Sample
from ttscale.sampling.driver import existing_counts
from ttscale.search.algorithms import ProblemResult, search_problems
from ttscale.search.branch import Branch
from ttscale.search.cost import SearchCost
from ttscale.search.params import SearchParams
from ttscale.search.steps import StepGenerator, StepScorer


@dataclass
class SearchRunStats:
    problems: int = 0
    complete: int = 0
    """Problems already in the bank before this run (not searched again)."""
    searched: int = 0
    samples: int = 0
    elapsed: float = 0.0
    cost: SearchCost | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["cost"] = (self.cost or SearchCost()).to_json()
        return data


def candidate_sample(branch: Branch, scorer: str) -> Sample:
    answer = extract_answer(branch.text) if branch.finish == "answer" else None
    return Sample(
        answer=answer, text=branch.text, tokens=branch.tokens, reward=branch.score, rewards={scorer: branch.score},
        finish="stop" if branch.finish == "answer" else "length", search_finish=branch.finish,
        step_scores=branch.step_scores,
    )


def result_record(result: ProblemResult, params: SearchParams, scorer: str, meta: dict[str, Any]) -> Record:
    p = result.problem
    return Record(
        id=p.id, problem=p.problem, reference=p.answer,
        samples=[candidate_sample(b, scorer) for b in result.candidates],
        search={"method": params.method.value, "scorer": scorer, "params": params.to_json(), "cost": result.cost.to_json()},
        **meta,
    )


def run_search(
    problems: Sequence[Problem],
    generator: StepGenerator,
    scorer: StepScorer,
    params: SearchParams,
    out: str | Path,
    *,
    meta: dict[str, Any] | None = None,
    in_flight: int = 64,
    on_result: Callable[[ProblemResult, SearchRunStats], None] | None = None,
) -> SearchRunStats:
    """Search every problem not yet in the bank at ``out`` and append one line per problem as it finishes.

    Killed at any point, the same call continues: finished problems are in the bank and are skipped;
    the ones in flight are searched again with the same seeds.
    """
    out = Path(out)
    with bank_lock(out):
        have = existing_counts(out, problems)
        todo = [p for p in problems if not have.get(p.id)]
        stats = SearchRunStats(problems=len(problems), complete=len(problems) - len(todo), cost=SearchCost())
        if not todo:
            return stats
        start = time.perf_counter()
        name = getattr(scorer, "name", "prm")
        with BankWriter(out) as writer:
            try:
                for result in search_problems(todo, generator, scorer, params, in_flight=in_flight):
                    writer.append(result_record(result, params, name, dict(meta or {})))
                    stats.searched += 1
                    stats.samples += len(result.candidates)
                    stats.cost.add(result.cost)
                    stats.elapsed = time.perf_counter() - start
                    if on_result is not None:
                        on_result(result, stats)
            finally:
                stats.elapsed = time.perf_counter() - start
    return stats
