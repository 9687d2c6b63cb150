"""Seeded resampling estimate of accuracy at k, for selectors without a closed form.

For each problem and k, random k-subsets of the pool (in random order) are scored by the
selector; the mean comes with its Monte Carlo standard error. Each problem draws from its own
child of one ``SeedSequence``, so results are reproducible and independent of the other problems.
Selectors with a vectorized twin (``select.batched``) score many draws at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from ttscale.answers.candidates import Candidates, Selection
from ttscale.estimate._inputs import CHUNK_ELEMENTS, check_ks
from ttscale.validation import check_count

__all__ = ["resampled_accuracy"]


def resampled_accuracy(
    problems: Sequence[Candidates],
    select: Callable[[Candidates, np.random.Generator], Selection],
    ks: Sequence[int],
    draws: int = 1000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo accuracy at k for selectors without a closed form.

    For every problem and k, ``draws`` uniformly random k-subsets (in random order) are scored
    1 when the selection on them is correct (``Selection.is_correct``: any chosen class correct).
    Problem p uses its own child of ``SeedSequence(seed)``, so its numbers do not depend on the
    other problems.

    Two paths, same estimand:

    * batched, when ``select`` carries a vectorized twin ``select.batched(cands, idx, rng)``
      (every registered selector bound by ``Selector.bind`` / ``Policy.selector_fn``): per
      problem, ``draws`` random orderings of the pool are drawn at once and the first k entries
      of each are that draw's k-subset for every k (a uniformly random ordered k-subset for
      each k, so every column is unbiased; columns of one problem share their draws, which
      also lets ``select.batched.prefixes`` score every k in one pass). When k == n and the
      selector ignores order (``select.batched.ordered`` False), every draw is the whole pool
      as is: only the tie-breaking varies.
    * otherwise the reference loop: ``select(cands.subset(...), rng)`` once per draw.

    Returns:
        mean: (P, K) accuracy per problem, NaN where k > n_i.
        stderr: (P, K) Monte Carlo standard error of ``mean`` (sample std / sqrt(draws)), NaN
            where k > n_i (and where draws == 1).
    """
    ks = check_ks(ks)
    draws = check_count("draws", draws, 1)
    P = len(problems)
    mean = np.full((P, ks.shape[0]), np.nan)
    stderr = np.full((P, ks.shape[0]), np.nan)
    children = np.random.SeedSequence(seed).spawn(P)
    batched = getattr(select, "batched", None)
    hits = np.empty(draws)
    for p, cand in enumerate(problems):
        rng = np.random.default_rng(children[p])
        cols = np.flatnonzero(ks <= cand.n)
        if cols.size == 0:
            continue
        if batched is not None:
            table = _batched_hits(cand, batched, ks[cols], draws, rng)
            mean[p, cols] = table.mean(axis=0)
            if draws > 1:
                stderr[p, cols] = table.std(axis=0, ddof=1) / math.sqrt(draws)
            continue
        for col in cols:
            k = int(ks[col])
            for d in range(draws):
                chosen = select(cand.subset(rng.choice(cand.n, size=k, replace=False)), rng)
                hits[d] = chosen.is_correct(cand.class_correct)
            mean[p, col] = hits.mean()
            if draws > 1:
                stderr[p, col] = hits.std(ddof=1) / math.sqrt(draws)
    return mean, stderr


def _batched_hits(
    cand: Candidates,
    batched: Callable[[Candidates, np.ndarray, np.random.Generator], np.ndarray],
    ks: np.ndarray,
    draws: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """float64 (draws, K): 1 where draw d of size ks[j] is correct, for one problem (all ks <= n).

    Draw d of every size is a prefix of one random ordering of the pool; ``batched.prefixes``
    (when the selector has it) scores all sizes in one pass, else ``batched`` runs per k.
    """
    n = cand.n
    whole = (ks == n) & (not getattr(batched, "ordered", True))  # the pool itself, any order
    drawn = np.flatnonzero(~whole)
    depth = int(ks[drawn].max()) if drawn.size else 0
    prefixes = getattr(batched, "prefixes", None)
    out = np.empty((draws, ks.shape[0]))
    step = max(1, CHUNK_ELEMENTS // (4 * n))  # bounds the (rows, n) draws and the selectors' work arrays
    for lo in range(0, draws, step):
        rows = min(step, draws - lo)
        if drawn.size:
            orders = _random_orders(rng, n, depth, rows)
            if prefixes is not None:
                out[lo : lo + rows, drawn] = prefixes(cand, orders, ks[drawn], rng)
            else:
                for j in drawn:
                    out[lo : lo + rows, j] = batched(cand, orders[:, : ks[j]], rng)
        for j in np.flatnonzero(whole):
            out[lo : lo + rows, j] = batched(cand, np.broadcast_to(np.arange(n), (rows, n)), rng)
    return out


def _random_orders(rng: np.random.Generator, n: int, m: int, rows: int) -> np.ndarray:
    """int64 (rows, m): per row a uniformly random ordered m-subset of range(n) (m <= n).

    Small m against n: i.i.d. uniform indices, redrawing the rows that repeat one (conditioned
    on being distinct they are uniform over ordered subsets); otherwise the first m entries of a
    random permutation per row.
    """
    if m * (m - 1) <= n:
        out = rng.integers(n, size=(rows, m))
        redo = _rows_with_repeats(out)
        while redo.size:
            out[redo] = rng.integers(n, size=(redo.size, m))
            redo = redo[_rows_with_repeats(out[redo])]
        return out
    return rng.permuted(np.broadcast_to(np.arange(n, dtype=np.int64), (rows, n)), axis=1)[:, :m]


def _rows_with_repeats(a: np.ndarray) -> np.ndarray:
    """Indices of the rows of ``a`` (rows, m) that hold some value twice."""
    if a.shape[1] < 2:
        return np.empty(0, dtype=np.int64)
    s = np.sort(a, axis=1)
    return np.flatnonzero((s[:, 1:] == s[:, :-1]).any(axis=1))
