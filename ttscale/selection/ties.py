"""Tie-breaking: rank and top-k with ties broken uniformly at random, one draw and row-wise.

Every selector ranks with these, so estimators can reproduce the tie credit exactly. Scores
within :data:`TIE_RTOL` (relative) of each other are tied; NaN ranks below every number (with
-inf). The row-wise forms (``top1_rows``, ``rank_rows``, ``topk_rows``) work on a (D, m) matrix
of D draws at once, for the batched selectors, with the same tolerance and tie distribution.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TIE_RTOL", "rank_random", "rank_rows", "top1_rows", "top_k_random", "topk_rows"]

TIE_RTOL = 1e-9
"""Scores within this relative distance count as tied (summed float weights differ in the last ulp)."""


def _eligible_scores(scores: np.ndarray, eligible: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the eligible entries, their scores as float64 with NaN as -inf)."""
    scores = np.asarray(scores, dtype=np.float64)
    idx = np.arange(scores.shape[0]) if eligible is None else np.flatnonzero(eligible)
    s = scores[idx]
    s[np.isnan(s)] = -np.inf
    return idx, s


def rank_random(
    scores: np.ndarray,
    rng: np.random.Generator,
    eligible: np.ndarray | None = None,
    rtol: float = TIE_RTOL,
) -> np.ndarray:
    """Indices of the eligible entries of ``scores``, best (highest) first, ties in random order.

    Entries within ``rtol`` (relative) of each other are tied, and each tie group comes out
    in a uniformly random order drawn from ``rng``; so ``rank_random(...)[:k]`` is a top-k
    with uniform tie-breaking at the boundary. NaN ranks below every number (with -inf).
    """
    idx, s = _eligible_scores(scores, eligible)
    if idx.size <= 1:
        return idx
    order = np.argsort(-s, kind="stable")
    ss = s[order]
    hi, lo = ss[:-1], ss[1:]
    finite = np.isfinite(hi) & np.isfinite(lo)
    gap = np.subtract(hi, lo, out=np.zeros_like(hi), where=finite)
    tied = (hi == lo) | (finite & (gap <= rtol * np.maximum(np.abs(hi), np.abs(lo))))
    group = np.concatenate(([0], np.cumsum(~tied)))
    shuffled = np.lexsort((rng.random(idx.size), group))
    return idx[order[shuffled]]


def top_k_random(
    scores: np.ndarray,
    k: int,
    rng: np.random.Generator,
    eligible: np.ndarray | None = None,
    rtol: float = TIE_RTOL,
) -> np.ndarray:
    """The k best eligible indices (fewer if fewer are eligible), ties broken uniformly at random.

    ``k == 1`` is the argmax with uniform random tie-breaking (a fast path of ``rank_random``).
    """
    if k != 1:
        return rank_random(scores, rng, eligible, rtol)[:k]
    idx, s = _eligible_scores(scores, eligible)
    if idx.size <= 1:
        return idx
    best = s.max()
    tied = idx[s >= best - rtol * abs(best)] if np.isfinite(best) else idx[s == best]
    if tied.size == 1:
        return tied
    return tied[[rng.integers(tied.size)]]



def _clean_rows(scores: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """float64 copy of ``scores`` with NaN and ineligible entries at -inf."""
    s = np.array(scores, dtype=np.float64)
    s[np.isnan(s) | ~eligible] = -np.inf
    return s


def top1_rows(
    scores: np.ndarray, eligible: np.ndarray, rng: np.random.Generator, rtol: float = TIE_RTOL
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise ``top_k_random(scores, 1, rng, eligible)``: per row of (D, m), the best eligible entry.

    Returns (pick, has): int64 (D,) column of the pick and bool (D,) whether the row had an
    eligible entry (``pick`` is meaningless where it has not). Entries within ``rtol`` of the
    row's best are tied and one is picked uniformly at random; NaN ranks with -inf.
    """
    D, m = scores.shape
    if m == 0:
        return np.zeros(D, dtype=np.int64), np.zeros(D, dtype=bool)
    s = _clean_rows(scores, eligible)
    best = s.max(axis=1)[:, None]
    with np.errstate(invalid="ignore"):
        near = np.where(np.isfinite(best), s >= best - rtol * np.abs(best), s == best)
    tied = eligible & near
    keys = rng.random((D, m))
    keys[~tied] = -1.0
    return keys.argmax(axis=1), tied.any(axis=1)


def rank_rows(
    scores: np.ndarray, eligible: np.ndarray, rng: np.random.Generator, rtol: float = TIE_RTOL
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise ``rank_random``: (order, count) for a (D, m) score matrix.

    ``order[d]`` lists row d's eligible columns best first (tie groups, by the same adjacent-gap
    rule, in uniformly random order), then its ineligible ones; ``count[d]`` is how many are
    eligible, so ``order[d, :count[d]]`` is ``rank_random(scores[d], rng, eligible[d])``.
    """
    D, m = scores.shape
    s = _clean_rows(scores, eligible)
    order = np.lexsort((-s, ~eligible), axis=-1)
    ss = np.take_along_axis(s, order, axis=1)
    el = np.take_along_axis(eligible, order, axis=1)
    hi, lo = ss[:, :-1], ss[:, 1:]
    finite = np.isfinite(hi) & np.isfinite(lo)
    gap = np.subtract(hi, lo, out=np.zeros_like(hi), where=finite)
    tied = el[:, 1:] & ((hi == lo) | (finite & (gap <= rtol * np.maximum(np.abs(hi), np.abs(lo)))))
    group = np.zeros((D, m), dtype=np.int64)
    np.cumsum(~tied, axis=1, out=group[:, 1:])
    shuffled = np.lexsort((rng.random((D, m)), group), axis=-1)
    return np.take_along_axis(order, shuffled, axis=1), eligible.sum(axis=1)


def topk_rows(
    scores: np.ndarray,
    eligible: np.ndarray,
    k: int | np.ndarray,
    rng: np.random.Generator,
    rtol: float = TIE_RTOL,
) -> np.ndarray:
    """Row-wise ``top_k_random``: bool (D, m) marking each row's k best eligible entries.

    ``k`` is one int or one per row (D,); fewer are marked where fewer are eligible, none
    where k is 0. Rows with k == 1 use the argmax rule of ``top_k_random`` (``top1_rows``),
    the others ``rank_rows``, exactly as the scalar function does.
    """
    D, m = scores.shape
    kk = np.broadcast_to(np.asarray(k, dtype=np.int64), (D,))
    out = np.zeros((D, m), dtype=bool)
    if m == 0 or D == 0:
        return out
    one = kk == 1
    if one.any():
        rows = np.arange(D) if one.all() else np.flatnonzero(one)
        pick, has = top1_rows(scores[rows], eligible[rows], rng, rtol)
        out[rows[has], pick[has]] = True
    many = kk > 1
    if many.any():
        rows = np.arange(D) if many.all() else np.flatnonzero(many)
        order, count = rank_rows(scores[rows], eligible[rows], rng, rtol)
        sub = np.zeros((rows.size, m), dtype=bool)
        np.put_along_axis(sub, order, np.arange(m) < np.minimum(kk[rows], count)[:, None], axis=1)
        out[rows] = sub
    return out

