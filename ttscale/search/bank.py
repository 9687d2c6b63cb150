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
from ttscale.errors import ConfigError
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


@dataclass(frozen=True)
class SearchBankInfo:
    """What a search bank's ``search`` fields say, for commands that read it as a pool of candidates."""

    problems: int
    """Lines with a ``search`` field."""
    methods: tuple[str, ...]
    widths: tuple[int, ...]
    scorers: tuple[str, ...]
    generated_tokens_per_problem: float
    """Every generated step, pruned ones included (the candidates' own tokens are less)."""
    scored_tokens_per_problem: float
    """Tokens the step scorer read."""

    def describe(self) -> str:
        width = "/".join(str(w) for w in self.widths)
        return f"{'/'.join(self.methods)} search, width {width}, step scorer {'/'.join(self.scorers)}"


def search_bank_info(records: Sequence[Record]) -> SearchBankInfo | None:
    """The search fields of a bank's records; None when no line has one (a bank of samples)."""
    found = [s for s in ((r.model_extra or {}).get("search") for r in records) if isinstance(s, dict)]
    if not found:
        return None

    def cost(s: dict[str, Any], key: str) -> float:
        value = (s.get("cost") or {}).get(key, 0)
        return float(value) if isinstance(value, (int, float)) else 0.0

    return SearchBankInfo(
        problems=len(found),
        methods=tuple(sorted({str(s.get("method")) for s in found})),
        widths=tuple(sorted({int(w) for s in found if isinstance(w := (s.get("params") or {}).get("width"), int)})),
        scorers=tuple(sorted({str(s.get("scorer")) for s in found})),
        generated_tokens_per_problem=sum(cost(s, "generated_tokens") for s in found) / len(found),
        scored_tokens_per_problem=sum(cost(s, "scored_tokens") for s in found) / len(found),
    )


def refuse_search_bank(path: Path, records: Sequence[Record], purpose: str) -> None:
    """Refuse a search bank where independent samples are needed (curve fits over N, stopping-rule
    replays): a search's candidates are one search's survivors, not a sample pool."""
    info = search_bank_info(records)
    if info is not None:
        raise ConfigError("BANK", str(path), f"a bank of independent samples to {purpose} (this one holds {info.describe()}: "
                          "its candidates are one search's survivors, not a sample pool; `ttscale eval` reads it as a pool, "
                          "`ttscale bench --search` compares search with sampling at matched tokens)")
