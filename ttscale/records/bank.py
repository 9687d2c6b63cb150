"""Banks: append-only JSONL stores of sampled candidates per problem.

Reading validates every line (pydantic) and names file, line and field on error. Several lines
with one id are merged in order, which is how an append-only bank grows (a resumed or enlarged
run appends new lines). A truncated last line, the trace of a killed writer, is reported and
skipped, never merged; the writer cuts it before appending.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from ttscale.errors import BankFormatError, DiskWriteError, InputLimitError
from ttscale.limits import env_limit, load_json
from ttscale.records.files import atomic_write
from ttscale.records.models import Record

log = logging.getLogger(__name__)

def _validation_error(path: Path, line: int, err: ValidationError) -> BankFormatError:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or None
    got = repr(first.get("input"))
    if len(got) > 60:
        got = got[:57] + "..."
    return BankFormatError(path, line, loc, first["msg"].lower(), None if first["type"] == "missing" else got)


def parse_record(path: Path, line_no: int, raw: bytes) -> Record:
    """Validate one bank line into a :class:`Record`.

    Any content, however hostile (invalid UTF-8, nesting 100,000 deep, a 5,000-digit number, a
    NaN), gives a :class:`BankFormatError` naming file, line and field: the limits are those of
    :func:`ttscale.limits.load_json`.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BankFormatError(path, line_no, None, "UTF-8 text", f"invalid byte at offset {exc.start}") from None
    try:
        obj = load_json(text)
    except json.JSONDecodeError as exc:
        raise BankFormatError(path, line_no, None, "one JSON object per line", f"{exc.msg} at column {exc.colno}") from None
    except InputLimitError as exc:
        raise BankFormatError(path, line_no, exc.field, exc.expected, exc.got) from None
    if not isinstance(obj, dict):
        raise BankFormatError(path, line_no, None, "a JSON object", type(obj).__name__)
    try:
        return Record.model_validate(obj)
    except ValidationError as exc:
        raise _validation_error(path, line_no, exc) from None


def check_regular_file(path: Path, expected: str) -> None:
    """Refuse what is not a regular file before opening it: a directory or a missing path is
    named as such, and a FIFO or device (``/dev/zero``) would hang or never end."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise BankFormatError(path, None, None, expected, "no such file") from None
    except OSError as exc:
        raise BankFormatError(path, None, None, expected, exc.strerror or type(exc).__name__) from None
    if not stat.S_ISREG(mode):
        raise BankFormatError(path, None, None, expected, _file_kind(mode))


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


@dataclass
class Bank:
    """The problems of a bank file, lines with one id merged in order of first appearance."""

    path: Path
    records: list[Record]
    lines: int = 0
    """Complete lines read."""
    truncated_line: int | None = None
    """Line number of a skipped truncated last line (a killed writer), if any."""

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def by_id(self) -> dict[str, Record]:
        return {r.id: r for r in self.records}

    def sample_counts(self) -> dict[str, int]:
        """Samples per problem id (what a resumed sampler still owes)."""
        return {r.id: len(r.samples) for r in self.records}


def _merge(path: Path, line_no: int, into: Record, extra: Record) -> None:
    for name in ("problem", "reference"):
        a, b = getattr(into, name), getattr(extra, name)
        if a is None:
            setattr(into, name, b)
        elif b is not None and a != b:
            raise BankFormatError(path, line_no, name, f"the same {name} as earlier lines of id {into.id!r}", repr(b)[:60])
    into.samples.extend(extra.samples)


def iter_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, raw bytes without the newline, complete?) for each non-blank line; a line
    longer than ``TTSCALE_MAX_LINE_BYTES`` is a :class:`BankFormatError` before it is all read."""
    cap = env_limit("TTSCALE_MAX_LINE_BYTES")
    with open(path, "rb") as fh:
        number = 0
        while raw := fh.readline(cap + 1):
            number += 1
            if len(raw) > cap and not (len(raw) == cap + 1 and raw.endswith(b"\n")):
                raise BankFormatError(path, number, None, f"a line of at most {cap:,} bytes (raise TTSCALE_MAX_LINE_BYTES for longer)",
                                      "a longer line")
            complete = raw.endswith(b"\n")
            raw = raw.rstrip(b"\r\n")
            if raw.strip():
                yield number, raw, complete


class _SampleLimits:
    """Samples read so far, per problem and in all, against ``TTSCALE_MAX_PROBLEM_SAMPLES`` and
    ``TTSCALE_MAX_BANK_SAMPLES``: a bank far larger than any use stops at the line that passes a
    limit, in seconds and a bounded amount of memory, not after everything is read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.per_problem = env_limit("TTSCALE_MAX_PROBLEM_SAMPLES")
        self.in_all = env_limit("TTSCALE_MAX_BANK_SAMPLES")
        self.total = 0

    def _error(self, line: int, what: str, limit: int, name: str, got: str) -> BankFormatError:
        return BankFormatError(self.path, line, "samples", f"at most {limit:,} samples {what} (raise {name} for more)", got)

    def before_parsing(self, line: int, raw: bytes) -> None:
        """Refuse a line that holds more samples than any problem may have, before parsing it:
        every sample has an ``"answer"`` key, so their count bounds the samples (C-speed)."""
        keys = raw.count(b'"answer"')
        if keys > self.per_problem:
            raise self._error(line, "per problem", self.per_problem, "TTSCALE_MAX_PROBLEM_SAMPLES", f"a line with {keys:,}")

    def add(self, line: int, record: Record, problem_samples: int) -> None:
        """Count ``record``'s samples; ``problem_samples``: its problem's samples with them."""
        self.total += len(record.samples)
        if problem_samples > self.per_problem:
            raise self._error(line, "per problem", self.per_problem, "TTSCALE_MAX_PROBLEM_SAMPLES",
                              f"{problem_samples:,} for id {record.id[:60]!r} by this line")
        if self.total > self.in_all:
            raise self._error(line, "in one bank", self.in_all, "TTSCALE_MAX_BANK_SAMPLES", f"{self.total:,} by this line")


def read_bank(path: str | Path) -> Bank:
    """Read and validate a bank; see the module docstring for merging and truncation, and
    :data:`ttscale.limits.LIMITS` for the limits on lines and samples."""
    path = Path(path)
    check_regular_file(path, "an existing bank file (JSONL)")
    records: dict[str, Record] = {}
    bank = Bank(path=path, records=[])
    limits = _SampleLimits(path)
    for line_no, raw, complete in iter_lines(path):
        limits.before_parsing(line_no, raw)
        try:
            record = parse_record(path, line_no, raw)
        except BankFormatError:
            if not complete and b"\r" in raw:  # not a killed writer: a file with CR-only line ends
                raise BankFormatError(path, line_no, None, "lines ending in \\n (LF or CRLF)",
                                      "CR-only line endings: convert them, e.g. tr '\\r' '\\n'") from None
            if not complete:  # an unterminated, unparsable last line: a writer died mid-line
                bank.truncated_line = line_no
                log.warning("%s, line %d: truncated last line skipped (a writer was killed mid-line)", path, line_no)
                break
            raise
        bank.lines += 1
        earlier = records.get(record.id)
        limits.add(line_no, record, len(record.samples) + (len(earlier.samples) if earlier else 0))
        if earlier is not None:
            _merge(path, line_no, earlier, record)
        else:
            records[record.id] = record
    bank.records = list(records.values())
    if not bank.records:
        raise BankFormatError(path, None, None, "at least one problem line", "an empty bank")
    return bank


_KEPT = "the lines written before are kept: free space (or raise the file size limit) and rerun the same command to resume"


class BankWriter:
    """Append-only writer: one JSON line per call, flushed (and fsynced) so a kill loses at most that line.

    Opening an existing bank whose last line is unterminated cuts that partial line first, so the
    next append starts on a fresh line and the partial one is never merged.
    """

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._failed = False
        self.repaired_bytes = self._cut_partial_tail()
        self._fh = open(self.path, "ab")

    def _cut_partial_tail(self) -> int:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return 0
        with open(self.path, "rb+") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - 1))
            if fh.read(1) == b"\n":
                return 0
            # Walk back to the last newline; everything after it is a partial line.
            block, pos = 1 << 16, size
            while pos > 0:
                start = max(0, pos - block)
                fh.seek(start)
                chunk = fh.read(pos - start)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    keep = start + cut + 1
                    break
                pos = start
            else:
                keep = 0
            fh.truncate(keep)
            log.warning("%s: cut a truncated last line (%d bytes) before appending", self.path, size - keep)
            return size - keep

    def append(self, record: Record | dict[str, Any]) -> None:
        """Append one line; a failed write (disk full, file size limit) raises :class:`DiskWriteError`.

        Lines appended before stay in the bank; a part of this one that reached the disk is an
        unterminated last line, cut by the next writer (so a rerun resumes exactly).
        """
        line = record_line(record)
        if self._failed:
            raise DiskWriteError(self.path, None, "an earlier write to this bank failed", _KEPT)
        try:
            self._fh.write(line)
            self._fh.flush()
            if self.fsync:
                os.fsync(self._fh.fileno())
        except OSError as exc:
            self._failed = True
            raise DiskWriteError.from_os_error(self.path, exc, _KEPT) from None

    def extend(self, records: Iterable[Record | dict[str, Any]]) -> None:
        for record in records:
            self.append(record)

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError:
            if not self._failed:  # after a reported failure, the retried flush fails the same way
                raise

    def __enter__(self) -> BankWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def record_line(record: Record | dict[str, Any]) -> bytes:
    """One bank line: the record as compact JSON (no NaN), ``answer`` always present, newline-terminated."""
    if not isinstance(record, Record):
        record = Record.model_validate(record)
    obj = record.model_dump(mode="json", exclude_none=True)
    for sample in obj["samples"]:
        sample.setdefault("answer", None)  # required in the form, even when null
    return json.dumps(obj, ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n"


def write_bank(path: str | Path, records: Iterable[Record | dict[str, Any]], *, fsync: bool = False) -> Path:
    """Write a new bank, replacing any file at ``path`` atomically (a kill leaves the old bank or the new one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (record_line(r) for r in records), fsync=fsync)
    return path


@dataclass(frozen=True)
class PassCounts:
    """A pass-count table: per (model, problem) how many of n samples were correct."""

    path: Path
    model: np.ndarray = field(repr=False)
    problem: np.ndarray = field(repr=False)
    n: np.ndarray = field(repr=False)
    correct: np.ndarray = field(repr=False)

    def models(self) -> list[str]:
        return list(dict.fromkeys(self.model.tolist()))

    def for_model(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        """(n, correct) arrays of one model's problems."""
        mask = self.model == model
        return self.n[mask], self.correct[mask]


PASS_COUNT_COLUMNS = ("model", "problem", "n", "correct")


def read_pass_counts(path: str | Path) -> PassCounts:
    """Read a ``model,problem,n,correct`` CSV table, validating every row."""
    path = Path(path)
    check_regular_file(path, "an existing pass-count CSV file")
    models, problems, ns, cs = [], [], [], []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or tuple(h.strip() for h in header) != PASS_COUNT_COLUMNS:
                raise BankFormatError(path, 1, None, "the header " + ",".join(PASS_COUNT_COLUMNS), ",".join(header or []))
            for row in reader:
                line = reader.line_num
                if not row:
                    continue
                if len(row) != 4:
                    raise BankFormatError(path, line, None, "4 columns", f"{len(row)} columns")
                values = []
                for name, value in zip(PASS_COUNT_COLUMNS[2:], row[2:]):
                    try:
                        values.append(int(value))
                    except ValueError:
                        raise BankFormatError(path, line, name, "a non-negative integer", repr(value)) from None
                n, c = values
                if n < 1 or not 0 <= c <= n:
                    raise BankFormatError(path, line, "correct", "0 <= correct <= n with n >= 1", f"n={n}, correct={c}")
                models.append(row[0])
                problems.append(row[1])
                ns.append(n)
                cs.append(c)
    except UnicodeDecodeError as exc:
        raise BankFormatError(path, None, None, "UTF-8 text", f"invalid byte at offset {exc.start}") from None
    return PassCounts(path, np.array(models), np.array(problems), np.array(ns, dtype=np.int64), np.array(cs, dtype=np.int64))
