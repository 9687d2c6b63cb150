"""The pipeline behind ``ttscale bench``: sample, score, evaluate every policy at every k, plan, report.

One folder holds one benchmark (``bank.jsonl``, ``bench-state.json``, ``bench-cache.json``,
``results.json`` and the report). Every stage is cheap to run again, so the same command can be
repeated after a kill, with another policy or with a larger ``n``:

1. **sample**: :func:`ttscale.sampling.driver.run_sampling` tops the bank up to ``n`` samples per problem;
   the sampler (a model load, a vLLM start-up) is only built when samples are missing. The run is
   logged in :mod:`ttscale.bench.state`.
2. **score**: :func:`ttscale.scoring.resumable.score_bank` runs only when a sample lacks the score.
   **search** (``--search``): :mod:`ttscale.bench.search` fills one resumable bank per method and
   width in ``search/``; the engine starts only when a problem is missing from one of them.
3. **analyse**: :mod:`ttscale.bench.analysis` (accuracy at every k per policy and difficulty
   bucket, the planner's fits), cached per policy.
4. **assemble**: :mod:`ttscale.bench.assemble` builds the typed :class:`~ttscale.bench.results.BenchResults`.
5. **report**: :mod:`ttscale.bench.report` writes the files, skipped when ``results.json`` already
   holds the same results.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttscale.bench.analysis import PromptCounter, analyse
from ttscale.bench.assemble import assemble
from ttscale.bench.config import BenchConfig
from ttscale.bench.results import BenchResults
from ttscale.bench.search import SearchOutcome, search_stage
from ttscale.bench.state import STATE, BenchState, read_json
from ttscale.errors import ConfigError
from ttscale.records.datasets import Problem
from ttscale.records.files import finite_json
from ttscale.records.models import Record
from ttscale.sampling.driver import (
    RunStats,
    existing_counts,
    plan_requests,
    run_sampling,
)

# --- stage 1: sampling -----------------------------------------------------------------------


def missing_samples(bank: Path, problems: Sequence[Problem], n: int, seed: int | None) -> int:
    """Samples the bank still owes (0: nothing to sample, no sampler needed)."""
    return sum(r.n for r in plan_requests(problems, existing_counts(bank, problems), n, seed))


@dataclass
class SampleOutcome:
    stats: RunStats
    wall: float
    """Seconds from building the sampler to closing it (start-up included); 0 when nothing was sampled."""
    finished: bool = True


def sample_stage(config: BenchConfig, make_sampler: Callable[[], Any], *,
                 on_start: Callable[[int, int], None] | None = None,
                 on_result: Callable[[Any, RunStats], None] | None = None) -> SampleOutcome:
    """Top the bank up to ``n`` with the resumable driver; log the run in the state file (even a failed one)."""
    state_path = config.out_dir / STATE
    state = BenchState.load(state_path)
    state.check_sampling(config.sampling, config.bank)
    if missing_samples(config.bank, config.problems, config.n, config.seed) == 0:
        return SampleOutcome(RunStats(problems=len(config.problems), complete=len(config.problems)), 0.0)
    state = state.with_sampling(config.sampling)
    state.save(state_path)  # before the first sample: a killed run is still checked next time
    started = time.perf_counter()
    seen: list[RunStats] = []

    def track(result: Any, stats: RunStats) -> None:
        if not seen:
            seen.append(stats)
        if on_result is not None:
            on_result(result, stats)

    outcome = SampleOutcome(RunStats(problems=len(config.problems)), 0.0, finished=False)
    try:
        sampler = make_sampler()
        try:
            outcome.stats = run_sampling(sampler, config.problems, config.bank, config.n, meta=config.meta,
                                         on_start=on_start, on_result=track)
            outcome.finished = True
        finally:
            sampler.close()
    finally:
        outcome.wall = time.perf_counter() - started
        # A failed run's stats object is the driver's live one (``seen``): what it wrote before failing.
        stats = outcome.stats if outcome.finished else (seen[0] if seen else outcome.stats)
        if stats.requests:
            state.with_run(backend=config.meta.get("backend"), n=config.n, stats=stats, wall=outcome.wall,
                           finished=outcome.finished).save(state_path)
    return outcome


# --- stage 2: scoring ------------------------------------------------------------------------


def unscored(records: Sequence[Record], name: str) -> int:
    """Samples without a score under ``name``."""
    return sum(1 for r in records for s in r.samples if s.score(name) is None)


def score_stage(bank: Path, scorers: Sequence[str], make_scorer: Callable[[str], Any], *,
                on_start: Callable[[str, int], None] | None = None,
                on_batch: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Scores every unscored sample in place with each scorer (resumable); returns samples scored per scorer."""
    from ttscale.records.bank import read_bank
    from ttscale.scoring.resumable import score_bank

    scored: dict[str, int] = {}
    for kind in scorers:
        if unscored(read_bank(bank).records, kind) == 0:
            scored[kind] = 0
            continue
        scorer = make_scorer(kind)
        try:
            stats = score_bank(bank, scorer, on_start=None if on_start is None else (lambda total, k=kind: on_start(k, total)),
                               on_batch=on_batch)
        finally:
            scorer.close()
        scored[kind] = stats.scored
    return scored


# --- the whole run ---------------------------------------------------------------------------


@dataclass
class BenchOutcome:
    results: BenchResults
    sampled: SampleOutcome
    scored: dict[str, int]
    evaluated: list[str]
    refitted: bool
    report: str
    """``written`` or ``up to date``."""
    files: list[Path]
    searched: SearchOutcome | None = None

    def summary(self) -> dict[str, Any]:
        """What ``ttscale bench --json`` prints: what each stage did this time."""
        search = {} if self.searched is None else {"searched": {"problems": self.searched.searched, "wall_seconds": self.searched.seconds}}
        return finite_json({"sampled": {**self.sampled.stats.to_json(), "wall_seconds": self.sampled.wall},
                            "scored": self.scored, **search, "evaluated": self.evaluated, "refitted": self.refitted,
                            "report": self.report, "files": [str(f) for f in self.files]})


def run_bench(config: BenchConfig, *, make_sampler: Callable[[], Any], make_scorer: Callable[[str], Any] | None = None,
              prompt_counter: PromptCounter | None = None,
              make_search_generator: Callable[[], Any] | None = None,
              make_step_scorer: Callable[[], Any] | None = None,
              on_sample_start: Callable[[int, int], None] | None = None,
              on_sample_result: Callable[[Any, RunStats], None] | None = None,
              on_step: Callable[[str], None] | None = None) -> BenchOutcome:
    """Sample, score, analyse and report; each stage skips what an earlier run already did."""
    from ttscale.bench.report import RESULTS, report_files, write_report

    config.out_dir.mkdir(parents=True, exist_ok=True)
    sampled = sample_stage(config, make_sampler, on_start=on_sample_start, on_result=on_sample_result)
    scored: dict[str, int] = {}
    if config.scorers:
        if make_scorer is None:
            raise ConfigError("scorer", config.scorers, "a scorer factory")
        scored = score_stage(config.bank, config.scorers, make_scorer,
                             on_start=None if on_step is None else (lambda k, total: on_step(f"scoring {total} samples ({k})")))
    searched = None
    if config.search is not None:
        if make_search_generator is None or make_step_scorer is None:
            raise ConfigError("search", config.search.methods, "a step generator and a step scorer factory")
        searched = search_stage(config, make_search_generator, make_step_scorer, on_step=on_step)
    analysis = analyse(config, prompt_counter=prompt_counter, on_step=on_step)
    results = assemble(config, analysis, BenchState.load(config.out_dir / STATE))
    files = report_files(config.out_dir, search=config.search is not None)
    # Compared as JSON: an older results.json with the same content counts as up to date.
    if read_json(config.out_dir / RESULTS) == results.to_json() and all(f.exists() for f in files):
        return BenchOutcome(results, sampled, scored, analysis.evaluated, analysis.refitted, "up to date", files, searched)
    if on_step:
        on_step("writing the report")
    files = write_report(results, config.out_dir)
    return BenchOutcome(results, sampled, scored, analysis.evaluated, analysis.refitted, "written", files, searched)
