"""Tallies shared by the selectors: scores, votes and class scores, per draw and row-wise.

The scalar helpers build a :class:`~ttscale.answers.candidates.Selection` from one problem's
candidates; the row-wise ones count over D draws at once for the batched twins. A batched
selector gets ``idx`` (D, k), the draws (row d is the subset ``cands.subset(idx[d])``, in that
order), and returns bool (D,), whether each draw's selection is correct (any chosen class
correct), mirroring its scalar twin step by step with the same tolerance and uniform ties.
"""

from __future__ import annotations

import math

import numpy as np

from ttscale.answers.candidates import NO_ANSWER, Candidates, Selection
from ttscale.selection.fields import REWARDS, MissingFieldError
from ttscale.selection.params import ClassScore
from ttscale.selection.ties import top_k_random

__all__ = [
    "class_score",
    "class_score_rows",
    "class_table",
    "hits",
    "keep_count",
    "keep_counts",
    "prefix_votes",
    "scores_of",
    "selection_of",
    "top_votes_rows",
    "vote",
]


def keep_count(fraction: float, n: int) -> int:
    """ceil(fraction * n), at least 1, robust to 0.7 * 10 = 7.000000000000001."""
    return max(1, min(n, math.ceil(fraction * n - 1e-9)))



def scores_of(cands: Candidates, field: str) -> np.ndarray:
    """The per-sample ``field`` (rewards or log-probs) as float64."""
    arr = getattr(cands, field)
    if arr is None:  # run() checks needs(); this guards direct impl calls
        raise MissingFieldError(field, "this selector", "needs them")
    return np.asarray(arr, dtype=np.float64)


def representative(cands: Candidates, cls: int, among: np.ndarray | None = None) -> int:
    """A deterministic representative sample of class ``cls`` (optionally within ``among``).

    The highest-reward sample when rewards exist, else the most confident, else the first.
    """
    mask = cands.classes == cls
    if among is not None:
        inside = np.zeros(cands.n, dtype=bool)
        inside[among] = True
        mask &= inside
    members = np.flatnonzero(mask)
    for arr in (cands.rewards, cands.logprobs):
        if arr is not None:
            vals = np.asarray(arr, dtype=np.float64)[members]
            nan = np.isnan(vals)
            if not nan.all():
                vals[nan] = -np.inf
                return int(members[vals.argmax()])
    return int(members[0])


def selection_of(
    cands: Candidates,
    chosen: np.ndarray,
    support: np.ndarray,
    sample: int | None = None,
    among: np.ndarray | None = None,
) -> Selection:
    """Build a Selection of classes ``chosen`` with ``support[c]`` per class."""
    classes = tuple(int(c) for c in chosen)
    if not classes:
        return Selection(classes=(), support=(), sample=None)
    if sample is None:
        sample = representative(cands, classes[0], among)
    return Selection(classes=classes, support=tuple(float(support[c]) for c in classes), sample=sample)


def vote(
    cands: Candidates,
    rng: np.random.Generator,
    k: int,
    index: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> Selection:
    """Top-k classes by (weighted) votes among samples ``index`` (all by default)."""
    idx = np.arange(cands.n) if index is None else np.asarray(index)
    cls = cands.classes[idx]
    ok = cls >= 0
    w = None if weights is None else np.asarray(weights, dtype=np.float64)[idx][ok]
    votes = np.bincount(cls[ok], weights=w, minlength=cands.num_classes).astype(np.float64)
    present = votes > 0 if w is None else np.bincount(cls[ok], minlength=cands.num_classes) > 0
    return selection_of(cands, top_k_random(votes, k, rng, present), votes, among=idx)



def class_score(cands: Candidates, how: ClassScore) -> np.ndarray:
    """Per-class reward score (max or mean over its samples, NaN ignored; -inf when none)."""
    rewards = scores_of(cands, REWARDS)
    out = np.full(cands.num_classes, -np.inf)
    ok = (cands.classes >= 0) & ~np.isnan(rewards)
    cls, r = cands.classes[ok], rewards[ok]
    if how is ClassScore.MAX:
        np.maximum.at(out, cls, r)
    else:
        tot = np.bincount(cls, weights=r, minlength=cands.num_classes)
        cnt = np.bincount(cls, minlength=cands.num_classes)
        np.divide(tot, cnt, out=out, where=cnt > 0)
    return out



def _offsets(cls: np.ndarray, width: int) -> np.ndarray:
    """Flat indices into a (D, width + 1) table: row d, column cls (NO_ANSWER -> the spare last column)."""
    col = np.where(cls < 0, width, cls)
    return (np.arange(cls.shape[0], dtype=np.int64)[:, None] * (width + 1) + col).ravel()


def class_table(cls: np.ndarray, width: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(D, width) per-row bincount of ``cls`` (D, m), optionally weighted; NO_ANSWER entries dropped.

    Within a row the weights are summed in row order, as ``np.bincount`` does for one subset.
    """
    D = cls.shape[0]
    w = None if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    table = np.bincount(_offsets(cls, width), weights=w, minlength=D * (width + 1))
    return table.reshape(D, width + 1)[:, :width]


def prefix_votes(cands: Candidates, orders: np.ndarray, ks: np.ndarray):
    """Yield (j, votes) for each ks[j], smallest k first: (D, C) vote counts of ``orders[:, :k]``.

    Counted incrementally (each sample once for all k); ``votes`` is only valid until the next step.
    """
    D, C = orders.shape[0], cands.num_classes
    col = np.where(cands.classes < 0, C, cands.classes)  # NO_ANSWER -> the spare column
    base = np.arange(D, dtype=np.int64)[:, None] * (C + 1)
    counts = np.zeros(D * (C + 1), dtype=np.int64)
    done = 0
    for j in np.argsort(ks, kind="stable"):
        k = int(ks[j])
        if k > done:
            counts += np.bincount((base + col[orders[:, done:k]]).ravel(), minlength=D * (C + 1))
            done = k
        yield j, counts.reshape(D, C + 1)[:, :C]


def class_score_rows(cls: np.ndarray, rewards: np.ndarray, width: int, how: ClassScore) -> np.ndarray:
    """Row-wise ``class_score``: (D, width) max or mean reward per class, NaN ignored, -inf when none."""
    ok = (cls >= 0) & ~np.isnan(rewards)
    flat = _offsets(np.where(ok, cls, NO_ANSWER), width)
    D = cls.shape[0]
    if how is ClassScore.MAX:
        out = np.full(D * (width + 1), -np.inf)
        np.maximum.at(out, flat, np.where(ok, rewards, -np.inf).ravel())
    else:
        tot = np.bincount(flat, weights=np.where(ok, rewards, 0.0).ravel(), minlength=D * (width + 1))
        cnt = np.bincount(flat, minlength=D * (width + 1))
        out = np.full(D * (width + 1), -np.inf)
        np.divide(tot, cnt, out=out, where=cnt > 0)
    return out.reshape(D, width + 1)[:, :width]



def top_votes_rows(votes: np.ndarray, answers: int, rng: np.random.Generator) -> np.ndarray:
    """Row-wise ``vote`` on integer vote counts (D, C): bool (D, C), the ``answers`` most-voted classes.

    Only classes with votes are eligible. Counts are whole numbers, so ties are exact equality
    (as within ``TIE_RTOL`` for the scalar): a random key in [0, 0.5) added to each count orders
    every tie group uniformly without ever reordering different counts.
    """
    D, C = votes.shape
    present = votes > 0
    if C == 0:
        return present
    if answers >= C:
        return present
    comp = np.where(present, votes + 0.5 * rng.random((D, C)), -1.0)
    if answers == 1:
        out = np.zeros((D, C), dtype=bool)
        pick = comp.argmax(axis=1)
        has = present.any(axis=1)
        out[np.flatnonzero(has), pick[has]] = True
        return out
    cut = np.partition(comp, C - answers, axis=1)[:, C - answers, None]  # the answers-th largest
    return present & (comp >= cut)


def hits(chosen: np.ndarray, class_correct: np.ndarray) -> np.ndarray:
    """bool (D,): does each row's chosen set (D, C) hold a correct class (Pass@k semantics)."""
    return (chosen & np.asarray(class_correct, dtype=bool)[None, :]).any(axis=1)


def keep_counts(fraction: float, n: np.ndarray) -> np.ndarray:
    """Element-wise ``keep_count``."""
    return np.maximum(1, np.minimum(n, np.ceil(fraction * n - 1e-9).astype(np.int64)))

