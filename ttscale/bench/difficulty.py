"""Difficulty buckets of a benchmark's problems, for the report's per-difficulty table and plot.

From a field every dataset row has (``level``, ``difficulty``, ``steps``), from the embedded
arithmetic task's worked solutions (their step count), or else from the model's own pass rate
on each problem. More than :data:`MAX_BUCKETS` distinct values are grouped.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ttscale.answers.candidates import Candidates
from ttscale.records.datasets import PACKAGED
from ttscale.records.models import Record

DIFFICULTY_FIELDS = ("level", "difficulty", "steps")
"""Row fields read as a problem's difficulty, first one present on every problem wins."""
MAX_BUCKETS = 8
"""More distinct difficulty values than this are grouped (numbers by quantile, text by frequency)."""

_ARITH_STEP = re.compile(r"^[A-Z][a-z]+: -?\d+ [+-] \d+ = -?\d+$")


@dataclass(frozen=True)
class Difficulty:
    """A bucket label per problem, and the buckets in display order (easy to hard where known)."""

    source: str
    """The field the labels come from (``level``, ``steps``, ...) or ``pass-rate``."""
    labels: list[str]
    order: list[str]


def _natural_key(text: str) -> tuple:
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def bucket_values(name: str, values: Sequence[Any]) -> Difficulty:
    """Labels from raw difficulty values; more than :data:`MAX_BUCKETS` distinct ones are grouped."""
    nums = [_number(v) for v in values]
    numeric = all(v is not None for v in nums)
    if numeric:
        arr = np.asarray(nums, dtype=float)
        if np.unique(arr).size <= MAX_BUCKETS:
            labels = [f"{name} {v:g}" for v in arr]
        else:
            edges = np.unique(np.quantile(arr, np.linspace(0, 1, 6)))
            group = np.clip(np.searchsorted(edges, arr, side="right") - 1, 0, max(edges.size - 2, 0))
            spans = {g: (arr[group == g].min(), arr[group == g].max()) for g in np.unique(group)}
            labels = [f"{name} {spans[g][0]:g}-{spans[g][1]:g}" for g in group]
        order = sorted(set(labels), key=lambda lab: _number(lab.split(" ")[-1].split("-")[0]) or 0.0)
        return Difficulty(name, labels, order)
    labels = [str(v) for v in values]
    common = [lab for lab, _ in Counter(labels).most_common()]
    if len(common) > MAX_BUCKETS:
        keep = set(common[: MAX_BUCKETS - 1])
        labels = [lab if lab in keep else "other" for lab in labels]
    order = sorted(set(labels), key=lambda lab: (lab == "other", _natural_key(lab)))
    return Difficulty(name, labels, order)


def arith_steps(solution: Any) -> int | None:
    """Steps of a worked solution in the embedded arithmetic task's form (``First: 16 - 16 = 0``)."""
    if not isinstance(solution, str):
        return None
    steps = sum(1 for line in solution.splitlines() if _ARITH_STEP.match(line.strip()))
    return steps or None


def difficulty_from_rows(rows: Sequence[dict[str, Any]]) -> Difficulty | None:
    """Difficulty from a field every row has (level, difficulty, steps), or from arithmetic solutions."""
    if not rows:
        return None
    for name in DIFFICULTY_FIELDS:
        values = [r.get(name) for r in rows]
        if all(v is not None and not isinstance(v, (dict, list)) for v in values):
            return bucket_values(name, values)
    steps = [arith_steps(r.get("solution")) for r in rows]
    if all(s is not None for s in steps):
        return bucket_values("steps", steps)
    return None


PASS_RATE_BUCKETS = ("solved 0%", "solved <50%", "solved 50-99%", "solved 100%")


def difficulty_from_pass_rate(problems: Sequence[Candidates]) -> Difficulty:
    """Buckets by the share of a problem's samples that are correct (the model's own difficulty)."""
    rate = np.array([float(p.correct.mean()) if p.n else 0.0 for p in problems])
    index = np.select([rate <= 0, rate < 0.5, rate < 1], [0, 1, 2], 3)
    labels = [PASS_RATE_BUCKETS[i] for i in index]
    return Difficulty("pass-rate", labels, [b for b in PASS_RATE_BUCKETS if b in set(labels)])


def problem_rows(dataset: str, records: Sequence[Record]) -> list[dict[str, Any]]:
    """Each record's dataset row (any extra fields: level, solution, ...) over the bank line's extras."""
    if dataset in PACKAGED:
        from ttscale.arith.paths import test_set_path

        path: Path | None = test_set_path(PACKAGED[dataset])
    else:
        path = Path(dataset) if Path(dataset).is_file() else None
    rows: dict[str, dict[str, Any]] = {}
    if path is not None:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    obj = json.loads(line)
                    rows[str(obj.get("id"))] = obj
    return [{**(r.model_extra or {}), **rows.get(r.id, {})} for r in records]

