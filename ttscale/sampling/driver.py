"""The resumable sampling driver: fill a bank up to ``n`` samples per problem.

It reads what the bank already holds per id, asks the sampler only for the missing samples (one
request per problem, seeded from ``(base seed, id, samples already held)``), and appends one bank
line per finished request, fsynced. Killed at any point, the same call again continues where it
stopped: finished requests are never sent again and at most the requests in flight are redone,
with the same seeds. A larger ``n`` grows the bank the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ttscale.early_stop.params import LOW_CONFIDENCE
from ttscale.errors import BankFormatError, ConfigError
from ttscale.records.bank import BankWriter, read_bank
from ttscale.records.datasets import Problem
from ttscale.records.lock import bank_lock
from ttscale.records.models import Record
from ttscale.sampling.sampler import Sampler, SampleRequest, SampleResult, request_seed
from ttscale.validation import is_int


@dataclass
class RunStats:
    problems: int = 0
    """Problems in the dataset."""
    complete: int = 0
    """Problems that already had ``n`` samples before this run."""
    requests: int = 0
    """Requests finished and written in this run (one bank line each)."""
    calls: int = 0
    """Backend calls they took (HTTP requests, retries and fan-out included)."""
    samples: int = 0
    """Samples written in this run."""
    stopped: int = 0
    """Of those, traces the early stop ended (finish ``low_confidence``; their tokens are counted below)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    elapsed: float = 0.0
    """Wall-clock seconds of sampling (bank reading excluded)."""

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.elapsed if self.elapsed > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "tokens_per_s": round(self.tokens_per_s, 1)}


def existing_counts(out: Path, problems: Sequence[Problem]) -> dict[str, int]:
    """Samples per id already in the bank at ``out`` (empty when there is no bank yet).

    Refuses a bank whose problem text for an id differs from the dataset's: appending would mix
    two problems under one id.
    """
    if not out.exists() or out.stat().st_size == 0:
        return {}
    try:
        bank = read_bank(out)
    except BankFormatError as exc:
        if exc.expected == "at least one problem line":  # only a cut partial line: start afresh
            return {}
        raise
    texts = {p.id: p.problem for p in problems}
    for record in bank.records:
        if record.problem is not None and record.id in texts and record.problem != texts[record.id]:
            raise BankFormatError(out, None, "problem", f"the dataset's text for id {record.id!r} (is the bank from another dataset?)", repr(record.problem[:60]))
    return bank.sample_counts()


def plan_requests(problems: Sequence[Problem], have: dict[str, int], n: int, seed: int | None) -> list[SampleRequest]:
    """One request per problem with fewer than ``n`` samples, for exactly the missing ones."""
    requests = []
    for p in problems:
        held = have.get(p.id, 0)
        if held < n:
            requests.append(SampleRequest(p.id, p.problem, n - held, request_seed(seed, p.id, held), held))
    return requests


def _record(result: SampleResult, problem: Problem, meta: dict[str, Any]) -> Record:
    return Record(
        id=problem.id, problem=problem.problem, reference=problem.answer,
        samples=list(result.candidates),
        round=result.request.round, prompt_tokens=result.prompt_tokens, **meta,
    )


def run_sampling(
    sampler: Sampler,
    problems: Sequence[Problem],
    out: str | Path,
    n: int,
    *,
    meta: dict[str, Any] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_result: Callable[[SampleResult, RunStats], None] | None = None,
) -> RunStats:
    """Sample until every problem has ``n`` samples in the bank at ``out``.

    ``meta`` fields (model, backend) go on every written line. ``on_start(requests, samples)``
    is called once with what is missing; ``on_result`` after each written line. A backend error
    propagates after the finished requests are written (the bank stays valid and resumable).
    Another process writing ``out`` raises :class:`~ttscale.errors.BankLockedError` before anything is
    read or sent (see :mod:`ttscale.records.lock`).
    """
    if not is_int(n) or n < 1:
        raise ConfigError("n", n, "an integer >= 1")
    out = Path(out)
    with bank_lock(out):  # one writer per bank, from reading the counts to the last line
        return _run_locked(sampler, problems, out, n, meta, on_start, on_result)


def _run_locked(
    sampler: Sampler,
    problems: Sequence[Problem],
    out: Path,
    n: int,
    meta: dict[str, Any] | None,
    on_start: Callable[[int, int], None] | None,
    on_result: Callable[[SampleResult, RunStats], None] | None,
) -> RunStats:
    by_id = {p.id: p for p in problems}
    have = existing_counts(out, problems)
    requests = plan_requests(problems, have, n, sampler.config.seed)
    stats = RunStats(problems=len(problems), complete=len(problems) - len(requests))
    if on_start is not None:
        on_start(len(requests), sum(r.n for r in requests))
    if not requests:
        return stats
    meta = dict(meta or {})
    start = time.perf_counter()
    with BankWriter(out) as writer:

        def write(result: SampleResult) -> None:
            if len(result.candidates) != result.request.n:
                raise ConfigError("candidates", len(result.candidates), f"{result.request.n} from the backend for {result.request.id!r}")
            writer.append(_record(result, by_id[result.request.id], meta))
            stats.requests += 1
            stats.calls += result.calls
            stats.samples += len(result.candidates)
            stats.stopped += sum(c.finish == LOW_CONFIDENCE for c in result.candidates)
            stats.prompt_tokens += result.prompt_tokens or 0
            stats.completion_tokens += result.completion_tokens
            stats.elapsed = time.perf_counter() - start
            if on_result is not None:
                on_result(result, stats)

        try:
            if sampler.concurrency <= 1:
                # Blocking backends run in this thread, so Ctrl-C and kills stop them at once.
                for i in range(0, len(requests), sampler.batch_size):
                    for result in sampler.generate(requests[i : i + sampler.batch_size]):
                        write(result)
            else:
                asyncio.run(_drive_async(sampler, requests, write))
        finally:
            stats.elapsed = time.perf_counter() - start
    return stats


async def _drive_async(sampler: Sampler, requests: list[SampleRequest], write: Callable[[SampleResult], None]) -> None:
    """Up to ``sampler.concurrency`` calls in flight; each result written as soon as it arrives."""
    gate = asyncio.Semaphore(sampler.concurrency)

    async def one(chunk: list[SampleRequest]) -> None:
        async with gate:
            results = await sampler.agenerate(chunk)
        for result in results:  # one event loop thread: writes never interleave
            write(result)

    size = max(1, sampler.batch_size)
    tasks = [asyncio.create_task(one(requests[i : i + size])) for i in range(0, len(requests), size)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        # First failure: stop the rest (what finished is already written), then report it.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        aclose = getattr(sampler, "aclose", None)  # HTTP clients belong to this loop: close them in it
        if aclose is not None:
            await aclose()
