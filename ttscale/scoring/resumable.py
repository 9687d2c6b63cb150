"""Resumable scoring of a bank: ``rewards[NAME]`` filled on every sample by a scorer.

:func:`score_bank` scores in batches of problems. Finished batches go to an append-only side file
``OUT.score-NAME.partial`` that a rerun picks up (a torn last line from a kill is cut); the result is
written to a temporary file and renamed over ``OUT`` atomically, so the input is never lost. Samples
that already carry a score under the name are skipped.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttscale.errors import BankFormatError, ConfigError, DiskWriteError, TTScaleError
from ttscale.records.bank import read_bank, write_bank
from ttscale.records.lock import bank_lock
from ttscale.records.models import Record
from ttscale.scoring.base import MissingField, check_name
from ttscale.scoring.judge import JudgeParseError
from ttscale.validation import is_int


_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EIO}


@dataclass
class ScoreStats:
    out: Path
    problems: int
    samples: int
    scored: int
    """Samples scored in this run."""
    skipped: int
    """Samples that already had a score under the name (or in the resume file)."""
    resumed: int


def _partial_path(out: Path, name: str) -> Path:
    return out.with_name(f"{out.name}.score-{name}.partial")


def score_bank(
    bank_path: str | Path,
    scorer: Any,
    out_path: str | Path | None = None,
    *,
    default: bool = False,
    batch_problems: int = 8,
    on_batch: Callable[[int, int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ScoreStats:
    """Fill ``rewards[scorer.name]`` (and ``reward`` when ``default``) on every sample; see the module doc.

    ``out_path`` None rewrites the bank in place (temp file + atomic rename). An existing ``out_path``
    that is not the bank is taken as the source when it holds the bank's problems (a rerun adds to it).
    ``on_start(samples to score)``, ``on_batch(samples done, samples to score)`` report progress.
    Another process writing the output raises :class:`~ttscale.errors.BankLockedError` at once.
    """
    check_name(getattr(scorer, "name", None))
    if not is_int(batch_problems) or batch_problems < 1:
        raise ConfigError("batch_problems", batch_problems, "an integer >= 1")
    bank_path = Path(bank_path)
    out = Path(out_path) if out_path is not None else bank_path
    with bank_lock(out):  # one writer per output bank, from reading it to the rename
        return _score_locked(bank_path, scorer, out, default, batch_problems, on_batch, on_start)


def _score_locked(bank_path: Path, scorer: Any, out: Path, default: bool, batch_problems: int,
                  on_batch: Callable[[int, int], None] | None, on_start: Callable[[int], None] | None) -> ScoreStats:
    data = read_bank(bank_path)
    source = data
    if out.exists() and out.resolve() != bank_path.resolve():
        prev = read_bank(out)
        if {r.id for r in prev.records} != {r.id for r in data.records}:
            raise ConfigError("--out", str(out), f"a new file, or an earlier scoring of {bank_path} (same problem ids)")
        source = prev
    name = scorer.name
    partial = _partial_path(out, name)
    done: dict[str, dict[int, float]] = {}
    resumed = 0
    if partial.exists():
        good = 0
        with open(partial, "rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break  # a killed writer's partial line: cut below
                obj = json.loads(raw)
                done.setdefault(obj["id"], {}).update({int(k): float(v) for k, v in obj["scores"].items()})
                good += len(raw)
        os.truncate(partial, good)
    records: list[Record] = source.records
    todo: list[tuple[Record, list[int]]] = []
    skipped = 0
    for rec in records:
        have = done.get(rec.id, {})
        idx = []
        for j, s in enumerate(rec.samples):
            if s.score(name) is not None:
                skipped += 1
            elif j in have:
                resumed += 1
            else:
                idx.append(j)
        if idx:
            todo.append((rec, idx))
    total = sum(len(i) for _, i in todo)
    if on_start:
        on_start(total)
    use_samples = hasattr(scorer, "score_samples")
    try:
        _score_batches(source.path, scorer, todo, batch_problems, partial, done, on_batch, total, use_samples)
    except OSError as exc:
        if exc.errno not in _WRITE_ERRNOS:
            raise
        raise DiskWriteError.from_os_error(partial, exc, f"scores of finished batches are kept in {partial}: free space and rerun to resume") from None
    except BaseException:
        if partial.exists() and partial.stat().st_size == 0:
            partial.unlink()  # nothing resumable was written
        raise
    for rec in records:
        have = done.get(rec.id, {})
        for j, s in enumerate(rec.samples):
            value = have.get(j, s.score(name))
            if value is None:
                continue
            s.rewards = {**(s.rewards or {}), name: value}
            if default:
                s.reward = value
    write_bank(out, records)
    partial.unlink(missing_ok=True)
    return ScoreStats(out=out, problems=len(records), samples=sum(len(r.samples) for r in records),
                      scored=total, skipped=skipped, resumed=resumed)


def _score_batches(path: Path, scorer: Any, todo: list[tuple[Record, list[int]]], batch_problems: int, partial: Path,
                   done: dict[str, dict[int, float]], on_batch: Callable[[int, int], None] | None, total: int,
                   use_samples: bool) -> None:
    name = scorer.name
    finished = 0
    with open(partial, "ab") as pf:
        for first in range(0, len(todo), batch_problems):
            chunk = todo[first:first + batch_problems]
            problems = []
            for rec, _ in chunk:
                if rec.problem is None and not use_samples:
                    raise BankFormatError(path, None, f"id {rec.id!r}: problem", f"the problem text for scorer {name!r}")
                problems.append(rec.problem or "")
            try:
                if use_samples:
                    scores = scorer.score_samples(problems, [[rec.samples[j] for j in idx] for rec, idx in chunk])
                else:
                    texts = []
                    for rec, idx in chunk:
                        row = []
                        for j in idx:
                            t = rec.samples[j].text
                            if t is None:
                                raise BankFormatError(path, None, f"id {rec.id!r}: samples[{j}].text",
                                                      f"candidate text for scorer {name!r}")
                            row.append(t)
                        texts.append(row)
                    scores = scorer.score(problems, texts)
            except MissingField as exc:
                rec, idx = chunk[exc.problem]
                raise BankFormatError(path, None, f"id {rec.id!r}: samples[{idx[exc.sample]}].{exc.field}", exc.expected) from None
            except JudgeParseError as exc:
                if exc.problem is None or exc.sample is None:
                    raise
                rec, idx = chunk[exc.problem]
                raise JudgeParseError(exc.text, f"{path}, id {rec.id!r}, samples[{idx[exc.sample]}] "
                                      "(--on-unparsed fallback scores it instead): ") from None
            if len(scores) != len(chunk):
                raise TTScaleError(f"scorer {name!r} returned {len(scores)} rows for {len(chunk)} problems")
            for (rec, idx), row in zip(chunk, scores):
                if len(row) != len(idx):
                    raise TTScaleError(f"scorer {name!r} returned {len(row)} scores for {len(idx)} candidates")
                done.setdefault(rec.id, {}).update(zip(idx, row))
                pf.write(json.dumps({"id": rec.id, "scores": {str(j): v for j, v in zip(idx, row)}}, allow_nan=False).encode() + b"\n")
            pf.flush()
            os.fsync(pf.fileno())
            finished += sum(len(i) for _, i in chunk)
            if on_batch:
                on_batch(finished, total)
