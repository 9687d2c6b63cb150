"""Benchmark problems: local JSONL files always, the Hugging Face hub when online.

A problem is ``id``, ``problem`` and the reference ``answer`` (the form of
``../shared/data/benchmarks``). Local files are validated line by line and errors name the file,
the line and the field. Hub names (``gsm8k``, ``math500``, ``aime2024``, ``aime2025``) are loaded
with the ``datasets`` library and converted to the same form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttscale.errors import BankFormatError, ConfigError
from ttscale.validation import is_int, is_number


@dataclass(frozen=True)
class Problem:
    id: str
    problem: str
    answer: str | None = None
    """Reference final answer (None when the source has none)."""


def _text(path: Path, line: int, obj: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise BankFormatError(path, line, name, "a non-empty string", None)
        return None
    if not (isinstance(value, str) or is_number(value)):
        raise BankFormatError(path, line, name, "a string", type(value).__name__)
    value = str(value)
    if required and not value.strip():
        raise BankFormatError(path, line, name, "a non-empty string", repr(value))
    return value


def load_jsonl(path: str | Path, *, limit: int | None = None) -> list[Problem]:
    """Problems of a local JSONL file (``id``, ``problem``, ``answer``; other fields ignored).

    Raises :class:`BankFormatError` naming file and line for a line that is not a JSON object, a
    missing or empty ``id``/``problem``, a non-string answer, or an id seen on an earlier line.
    """
    path = Path(path)
    if not path.is_file():
        raise BankFormatError(path, None, None, "an existing dataset file (JSONL: id, problem, answer)", "no such file")
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise BankFormatError(path, line_no, None, "UTF-8 text", f"invalid byte at offset {exc.start}") from None
            except json.JSONDecodeError as exc:
                raise BankFormatError(path, line_no, None, "one JSON object per line", f"{exc.msg} at column {exc.colno}") from None
            if not isinstance(obj, dict):
                raise BankFormatError(path, line_no, None, "a JSON object", type(obj).__name__)
            pid = _text(path, line_no, obj, "id", required=True)
            assert pid is not None
            if pid in seen:
                raise BankFormatError(path, line_no, "id", f"an id unique in the file (first on line {seen[pid]})", repr(pid))
            seen[pid] = line_no
            problem = _text(path, line_no, obj, "problem", required=True)
            assert problem is not None
            answer = _text(path, line_no, obj, "answer", required=False)
            problems.append(Problem(pid, problem, answer))
            if limit is not None and len(problems) >= limit:
                break
    if not problems:
        raise BankFormatError(path, None, None, "at least one problem line", "an empty file")
    return problems


# --- the Hugging Face hub ---------------------------------------------------------------------


def _gsm8k_answer(solution: str) -> str:
    # GSM8K's answer field is the worked solution ending in "#### N"; the reference is N without commas.
    return solution.rsplit("####", 1)[-1].strip().replace(",", "")


@dataclass(frozen=True)
class HubDataset:
    path: str
    config: str | None
    split: str
    convert: Callable[[int, dict[str, Any]], Problem]


def _aime(prefix: str) -> Callable[[int, dict[str, Any]], Problem]:
    def convert(i: int, row: dict[str, Any]) -> Problem:
        pid = str(row.get("id", row.get("problem_idx", i)))
        return Problem(f"{prefix}-{pid}", str(row["problem"]), str(row["answer"]))

    return convert


HUB: dict[str, HubDataset] = {
    "gsm8k": HubDataset(
        "openai/gsm8k", "main", "test",
        lambda i, row: Problem(f"gsm8k-test-{i}", row["question"], _gsm8k_answer(row["answer"])),
    ),
    "math500": HubDataset(
        "HuggingFaceH4/MATH-500", None, "test",
        lambda i, row: Problem(str(row.get("unique_id", f"math500-{i}")), row["problem"], str(row["answer"])),
    ),
    "aime2024": HubDataset("HuggingFaceH4/aime_2024", None, "train", _aime("aime2024")),
    "aime2025": HubDataset("MathArena/aime_2025", None, "train", _aime("aime2025")),
}
"""Benchmark names loadable from the hub, with the conversion of their rows."""


def load_hub(name: str, *, limit: int | None = None) -> list[Problem]:
    """A named benchmark from the Hugging Face hub (needs ``datasets`` and a network, or its cache)."""
    try:
        spec = HUB[name]
    except KeyError:
        raise ConfigError("dataset", name, "a JSONL file path or one of " + ", ".join(HUB)) from None
    try:
        import datasets as hf_datasets  # optional: the [datasets] extra
    except ImportError:
        raise ConfigError("dataset", name, "the `datasets` package to load hub benchmarks (pip install 'ttscale[datasets]'), or a local JSONL file") from None
    try:
        rows: Iterable[dict[str, Any]] = hf_datasets.load_dataset(spec.path, spec.config, split=spec.split)
    except Exception as exc:  # offline, gated, renamed: say which and how to avoid it
        raise ConfigError("dataset", name, f"a loadable hub dataset {spec.path} ({type(exc).__name__}: {exc}); pass a local JSONL file instead") from None
    problems = []
    for i, row in enumerate(rows):
        problems.append(spec.convert(i, row))
        if limit is not None and len(problems) >= limit:
            break
    return problems


_HUB_NAME = re.compile(r"^[a-z0-9_]+$")


PACKAGED = {"arith": "default", "arith-hard": "hard"}
"""Names of the packaged arithmetic test sets (``ttscale.arith``), always available offline."""


def load_dataset(spec: str | Path, *, limit: int | None = None) -> list[Problem]:
    """Problems from a local JSONL path, a packaged set (:data:`PACKAGED`) or a hub name (:data:`HUB`)."""
    if limit is not None and (not is_int(limit) or limit < 1):
        raise ConfigError("limit", limit, "an integer >= 1")
    if str(spec) in PACKAGED:
        from ttscale.arith.paths import test_set_path

        return load_jsonl(test_set_path(PACKAGED[str(spec)]), limit=limit)
    path = Path(spec)
    if path.suffix in (".jsonl", ".json") or path.exists() or not _HUB_NAME.match(str(spec)):
        return load_jsonl(path, limit=limit)
    return load_hub(str(spec), limit=limit)
