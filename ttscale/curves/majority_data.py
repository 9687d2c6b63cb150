"""Pilot votes for the majority curve: per question, the votes of each answer class, which classes
are correct and the samples without an answer, validated and padded into arrays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ttscale.curves._base import describe
from ttscale.errors import ConfigError, EstimationError


@dataclass(frozen=True)
class MajorityData:
    """Pilot votes per question, padded: counts (Q, C), correct (Q, C), unanswered (Q,)."""

    counts: np.ndarray
    correct: np.ndarray
    unanswered: np.ndarray

    @property
    def n(self) -> np.ndarray:
        return self.counts.sum(axis=1) + self.unanswered


def _pad(rows: Sequence[Any], dtype: Any, name: str) -> np.ndarray:
    arrs = [np.asarray(r) for r in rows]
    if any(a.ndim != 1 for a in arrs):
        raise ConfigError(name, "ragged rows", "one 1-D array per question")
    width = max((a.size for a in arrs), default=0)
    out = np.zeros((len(arrs), max(width, 1)), dtype=dtype)
    for i, a in enumerate(arrs):
        out[i, : a.size] = a
    return out


def as_majority_data(counts: Any, correct: Any, n: Any = None) -> MajorityData:
    """Validate pilot votes: ``counts`` and ``correct`` as (Q, C) arrays or ragged per-question lists,
    ``n`` (Q,) pilot samples per question including unanswered ones (default: the vote totals)."""
    if isinstance(counts, np.ndarray) and counts.ndim == 2:
        cnt = counts
    elif isinstance(counts, (list, tuple)):
        cnt = _pad(counts, np.float64, "counts")
    else:
        raise ConfigError("counts", describe(counts), "a (questions, classes) array or a list of per-question vote arrays")
    if isinstance(correct, np.ndarray) and correct.ndim == 2:
        cor = correct
    elif isinstance(correct, (list, tuple)):
        cor = _pad(correct, bool, "correct")
    else:
        raise ConfigError("correct", describe(correct), "a (questions, classes) boolean array or a list of per-question arrays")
    if cor.shape != cnt.shape:
        if isinstance(correct, (list, tuple)) and cor.shape[0] == cnt.shape[0] and cor.shape[1] <= cnt.shape[1]:
            cor = np.pad(cor, ((0, 0), (0, cnt.shape[1] - cor.shape[1])))
        else:
            raise ConfigError("correct", describe(correct), f"the shape of counts {cnt.shape}")
    cnt_f = np.asarray(cnt, dtype=float)
    if not np.all(np.isfinite(cnt_f)) or np.any(cnt_f < 0) or np.any(cnt_f != np.round(cnt_f)):
        raise ConfigError("counts", describe(counts), "non-negative whole vote counts")
    cnt_i = cnt_f.astype(np.int64)
    cor_b = np.asarray(cor)
    if cor_b.dtype != bool:
        if cor_b.size and not np.isin(cor_b, (0, 1)).all():
            raise ConfigError("correct", describe(correct), "booleans (or 0/1)")
        cor_b = cor_b.astype(bool)
    if cnt_i.shape[0] == 0:
        raise EstimationError("no questions to fit: counts has 0 rows")
    answered = cnt_i.sum(axis=1)
    if n is None:
        n_i = answered
    else:
        n_i = np.asarray(n)
        if n_i.ndim == 0:
            n_i = np.full(cnt_i.shape[0], n_i)
        if n_i.shape != (cnt_i.shape[0],) or np.any(n_i != np.round(n_i)):
            raise ConfigError("n", describe(n), f"({cnt_i.shape[0]},) whole pilot sizes, one per question")
        n_i = n_i.astype(np.int64)
        if np.any(n_i < answered):
            i = int(np.flatnonzero(n_i < answered)[0])
            raise ConfigError("n", f"n[{i}]={n_i[i]}", f"at least the {answered[i]} votes in counts[{i}] (n counts every sample)")
    if np.any(n_i < 1):
        i = int(np.flatnonzero(n_i < 1)[0])
        raise EstimationError(f"question {i} has no pilot sample; every question needs at least one")
    # A class with no vote says nothing: move seen classes to the front of each row (classes are
    # exchangeable apart from their flags) and drop columns no question uses, so the width is the
    # largest number of classes any pilot saw rather than the bank's.
    cor_b = cor_b & (cnt_i > 0)
    order = np.argsort(cnt_i == 0, axis=1, kind="stable")
    cnt_i = np.take_along_axis(cnt_i, order, axis=1)
    cor_b = np.take_along_axis(cor_b, order, axis=1)
    width = max(int((cnt_i > 0).sum(axis=1).max()), 1)
    return MajorityData(cnt_i[:, :width], cor_b[:, :width], (n_i - answered).astype(np.int64))
