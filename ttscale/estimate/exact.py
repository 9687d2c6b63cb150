"""Exact accuracy at k samples from one pool of n >= k samples per problem.

Every estimator here answers: if k of a problem's n samples were drawn uniformly at random
without replacement, what is the expected accuracy of the policy? The answer is computed
exactly by counting subsets (no simulation) for pass@k, majority vote with tie credit and
Best-of-N. Selectors without a closed form use ``ttscale.estimate.resample`` (seeded random
subsets with a stated Monte Carlo error).

All results are (P, K) arrays: one row per problem, one column per requested k, NaN where the
problem has fewer than k samples. ``dataset_mean`` averages them over the problems that have k.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from ttscale.answers.candidates import Candidates
from ttscale.errors import EstimationError
from ttscale.estimate._inputs import CHUNK_ELEMENTS, check_ks

__all__ = [
    "best_of_n_at_k",
    "candidates_to_arrays",
    "dataset_mean",
    "majority_at_k",
    "pass_at_k",
]

MAJORITY_MAX_POOL = 1000
"""Largest pool maj@k handles: it counts subsets in float64, and C(n, k) < 1e300 up to here."""

_DIRECT_TERMS = 6
"""Polynomial products with at most this many kernel terms use shifted adds; longer ones a windowed matmul."""

# ----------------------------------------------------------------------------- validation


def _int_array(name: str, value: object, ndim: int) -> np.ndarray:
    """``value`` as an int64 array of ``ndim`` dimensions, rejecting non-integer and negative entries."""
    arr = np.asarray(value)
    if arr.ndim != ndim:
        raise EstimationError(f"{name}: expected a {ndim}-d array, got shape {arr.shape}")
    if arr.size and arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise EstimationError(f"{name}: expected whole numbers (sample counts), got non-integer values")
    elif arr.size and arr.dtype.kind not in "iub":
        raise EstimationError(f"{name}: expected integer counts, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        where = np.unravel_index(int(np.argmin(arr)), arr.shape)
        raise EstimationError(f"{name}: counts must be >= 0, got {int(arr[where])} at index {tuple(int(i) for i in where)}")
    return arr


def _nan_beyond_pool(result: np.ndarray, n: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """Set NaN where a problem has fewer samples than k (no k-subset exists)."""
    result[ks[None, :] > n[:, None]] = np.nan
    return result


# ----------------------------------------------------------------------------- pass@k


def pass_at_k(n: np.ndarray, c: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """Unbiased pass@k = 1 - C(n-c, k) / C(n, k) per problem (Chen et al. 2021).

    Args:
        n: (P,) samples per problem.
        c: (P,) correct samples per problem, 0 <= c <= n.
        ks: the k to evaluate (any order, each >= 1).

    Returns:
        (P, K) float64, NaN where k > n_i.

    The ratio is the product over i < k of (1 - c / (n - i)); it is accumulated as a sum of
    log1p terms and finished with expm1, so pass@k stays accurate both near 0 (c small) and
    near 1, for pools of any size (e.g. n = 10,000).
    """
    ks = check_ks(ks)
    n = _int_array("n", n, 1)
    c = _int_array("c", c, 1)
    if n.shape != c.shape:
        raise EstimationError(f"n and c must have the same shape, got {n.shape} and {c.shape}")
    if np.any(c > n):
        i = int(np.flatnonzero(c > n)[0])
        raise EstimationError(f"c must be <= n, got c={int(c[i])} > n={int(n[i])} for problem {i}")
    out = np.full((n.shape[0], ks.shape[0]), np.nan)
    if ks.size == 0 or n.size == 0:
        return out
    kmax = int(ks.max())
    cols = ks - 1
    chunk = max(1, CHUNK_ELEMENTS // kmax)
    i = np.arange(kmax, dtype=np.float64)
    for lo in range(0, n.shape[0], chunk):
        nn = n[lo : lo + chunk, None].astype(np.float64)
        cc = c[lo : lo + chunk, None].astype(np.float64)
        left = nn - i  # samples left before the (i+1)-th draw; <= 0 only where k > n (NaN later)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(left > 0, np.minimum(cc / left, 1.0), 0.0)
            log_miss = np.cumsum(np.log1p(-frac), axis=1)  # log C(n-c,k)/C(n,k); -inf once a draw must hit
        out[lo : lo + chunk] = -np.expm1(log_miss[:, cols])
    return _nan_beyond_pool(out, n, ks)


# ----------------------------------------------------------------------------- Best-of-N


def best_of_n_at_k(rewards: Sequence[np.ndarray], correct: Sequence[np.ndarray], ks: Sequence[int]) -> np.ndarray:
    """Expected accuracy of Best-of-k: the highest-reward sample of a random k-subset is submitted.

    Args:
        rewards: per problem a float (n_i,) array of rewards (higher is better; +-inf allowed, NaN not).
        correct: per problem a bool (n_i,) array of per-sample correctness.
        ks: the k to evaluate.

    Returns:
        (P, K) float64, NaN where k > n_i.

    With samples sorted by reward (descending), the sample at rank r (1-based) is the best of a
    random k-subset with probability C(n-r, k-1) / C(n, k). Reward ties are broken uniformly at
    random, so by symmetry a tied group contributes P(best lies in the group) times the group's
    fraction of correct samples: each rank is credited its group's mean correctness.
    """
    ks = check_ks(ks)
    if len(rewards) != len(correct):
        raise EstimationError(f"rewards and correct must list the same problems, got {len(rewards)} and {len(correct)}")
    P = len(rewards)
    out = np.full((P, ks.shape[0]), np.nan)
    by_size: dict[int, list[int]] = {}
    rs, cs = [], []
    for p in range(P):
        if rewards[p] is None:
            raise EstimationError(f"rewards of problem {p} are missing (None): Best-of-N needs a reward per sample")
        r = np.asarray(rewards[p], dtype=np.float64)
        ok = np.asarray(correct[p])
        if r.ndim != 1 or ok.shape != r.shape:
            raise EstimationError(f"problem {p}: rewards and correct must be 1-d of the same length, got shapes {r.shape} and {ok.shape}")
        if np.isnan(r).any():
            raise EstimationError(f"problem {p}: reward of sample {int(np.flatnonzero(np.isnan(r))[0])} is NaN; score it or drop it")
        if ok.dtype != bool:
            if ok.size and not np.isin(ok, (0, 1)).all():
                raise EstimationError(f"problem {p}: correct must be booleans (or 0/1), got dtype {ok.dtype}")
            ok = ok.astype(bool)
        rs.append(r)
        cs.append(ok)
        by_size.setdefault(r.shape[0], []).append(p)
    if ks.size == 0:
        return out
    for n, members in by_size.items():
        if n == 0:
            continue
        R = np.stack([rs[p] for p in members])
        C = np.stack([cs[p] for p in members]).astype(np.float64)
        order = np.argsort(-R, axis=1, kind="stable")
        R = np.take_along_axis(R, order, axis=1)
        C = np.take_along_axis(C, order, axis=1)
        # Tie groups: a new group starts wherever the sorted reward changes.
        starts = np.ones_like(R, dtype=bool)
        starts[:, 1:] = R[:, 1:] != R[:, :-1]
        group = np.cumsum(starts, axis=1) - 1 + (np.arange(len(members)) * n)[:, None]
        sums = np.bincount(group.ravel(), weights=C.ravel(), minlength=len(members) * n)
        sizes = np.bincount(group.ravel(), minlength=len(members) * n)
        credit = (sums[group] / sizes[group])  # (members, n): group-mean correctness at each rank
        out[members] = credit @ _best_rank_probabilities(n, ks)
    return out


def _best_rank_probabilities(n: int, ks: np.ndarray) -> np.ndarray:
    """(n, K): P(rank r is the best of a random k-subset) = C(n-r, k-1) / C(n, k); NaN columns where k > n.

    For r = 1 it is k/n and each next rank multiplies by (n-r-k+1)/(n-r), so it is a cumulative
    product of factors in [0, 1] (no large binomials, no cancellation).
    """
    kf = ks.astype(np.float64)[None, :]
    s = np.arange(1, n, dtype=np.float64)[:, None]  # ranks 1..n-1 (the factor from r=s to r=s+1)
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.clip(1.0 - (kf - 1.0) / (n - s), 0.0, 1.0)
    q = np.empty((n, ks.shape[0]))
    q[0] = kf[0] / n
    if n > 1:
        q[1:] = q[0] * np.cumprod(step, axis=0)
    q[:, ks > n] = np.nan
    return q


# ----------------------------------------------------------------------------- majority vote


def candidates_to_arrays(problems: Sequence[Candidates]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad per-problem candidates into the arrays ``majority_at_k`` takes.

    Returns:
        counts: int64 (P, C) votes per answer class, zero-padded to the largest class count C.
        correct: bool (P, C) whether each class is correct (False in the padding).
        n: int64 (P,) pool size per problem, samples without an answer included.
    """
    P = len(problems)
    width = max((p.num_classes for p in problems), default=0)
    counts = np.zeros((P, width), dtype=np.int64)
    correct = np.zeros((P, width), dtype=bool)
    n = np.zeros(P, dtype=np.int64)
    for i, p in enumerate(problems):
        counts[i, : p.num_classes] = p.counts()
        correct[i, : p.num_classes] = p.class_correct
        n[i] = p.n
    return counts, correct, n


def majority_at_k(counts: np.ndarray, correct: np.ndarray, n: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """Exact expected majority-vote (self-consistency) accuracy of a random k-subset, with tie credit.

    Args:
        counts: int (P, C) votes per answer class, zero-padded.
        correct: bool (P, C) whether each class is correct (several may be, e.g. unmerged forms).
        n: int (P,) pool size per problem, n_i >= counts[i].sum(); the difference are samples
            without an extracted answer: they fill subset slots but never vote.
        ks: the k to evaluate.

    Returns:
        (P, K) float64, NaN where k > n_i. A subset scores (#correct classes tied at the top) /
        (#classes tied at the top); a subset without any answered sample scores 0.

    Method: for a correct class a with m votes in the pool and j of them in the subset, count the
    subsets in which every rival has fewer than j votes or exactly j (a tie). Rivals with fewer
    than j votes in the pool are unconstrained and merge with the no-answer samples into one
    binomial (1+x)^S; each rival with >= j votes contributes its truncated binomial
    sum_{i<j} C(m_b, i) x^i + y C(m_b, j) x^j, y marking a tie. The tie credit 1/(1+t) is
    the integral of y^t over [0, 1], evaluated exactly by Gauss-Legendre quadrature (all nodes
    and weights positive, so every term is nonnegative: no cancellation). Identical
    (S, constrained rivals) configurations are computed once per j across the whole dataset.
    """
    ks = check_ks(ks)
    counts = _int_array("counts", counts, 2)
    correct = np.asarray(correct)
    n = _int_array("n", n, 1)
    if correct.shape != counts.shape:
        raise EstimationError(f"correct must have the shape of counts {counts.shape}, got {correct.shape}")
    if correct.dtype != bool:
        if correct.size and not np.isin(correct, (0, 1)).all():
            raise EstimationError(f"correct must be booleans (or 0/1), got dtype {correct.dtype}")
        correct = correct.astype(bool)
    if n.shape != (counts.shape[0],):
        raise EstimationError(f"n must have shape ({counts.shape[0]},) (one pool size per problem), got {n.shape}")
    answered = counts.sum(axis=1)
    if np.any(answered > n):
        i = int(np.flatnonzero(answered > n)[0])
        raise EstimationError(f"problem {i}: counts sum to {int(answered[i])} votes but n={int(n[i])}; n must include every sample")

    P = counts.shape[0]
    out = np.full((P, ks.shape[0]), np.nan)
    if ks.size == 0 or P == 0:
        return out
    kmax = min(int(ks.max()), int(n.max()))
    # Items: (problem, correct class with votes). Credit sums over a problem's correct classes.
    item_p, item_a = np.nonzero(correct & (counts > 0))
    acc = np.zeros((P, kmax + 1))
    if item_p.size:
        rivals = counts[item_p].copy()
        rivals[np.arange(item_p.size), item_a] = 0
        rivals = -np.sort(-rivals, axis=1)  # descending, so constrained rivals form a prefix
        width = int((rivals > 0).sum(axis=1).max())
        rivals = rivals[:, :width]
        m = counts[item_p, item_a]
        u = n[item_p] - answered[item_p]
        for size in np.unique(n[item_p]):
            # One pool size at a time: polynomial length and the normalizer C(n, k) are shared.
            sel = np.flatnonzero(n[item_p] == size)
            wins = _majority_win_probability(m[sel], rivals[sel], u[sel], int(size), kmax)
            np.add.at(acc, item_p[sel], wins)
        np.minimum(acc, 1.0, out=acc)  # float rounding may overshoot 1 by ~1e-15
    cols = np.minimum(ks, kmax)
    out[:] = acc[:, cols]
    return _nan_beyond_pool(out, n, ks)


@lru_cache(maxsize=4)
def _binomial_table(size: int) -> np.ndarray:
    """(size+1, size+1) float64 table of C(a, b) (0 where b > a), rounded once from exact integers."""
    table = np.zeros((size + 1, size + 1))
    row = [1]
    for a in range(size + 1):
        table[a, : a + 1] = row
        row = [1, *(row[i] + row[i + 1] for i in range(a)), 1]
    table.flags.writeable = False
    return table


def _binomials(size: int) -> np.ndarray:
    """A C(a, b) table valid for a, b <= size (shared across sizes: built at the next power of two)."""
    return _binomial_table(max(64, 1 << (size - 1).bit_length()))


@lru_cache(maxsize=64)
def _tie_quadrature(rivals: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [0, 1], exact for polynomials of degree <= ``rivals``."""
    x, w = np.polynomial.legendre.leggauss(rivals // 2 + 1)
    return (x + 1.0) / 2.0, w / 2.0


def _unique_rows(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique rows of a small nonnegative int matrix (sorted lexicographically) and the inverse index."""
    span = int(key.max()) + 1 if key.size else 1
    if span ** key.shape[1] < 2**62:
        # Pack each row into one int64 (much faster than np.unique(axis=0)); order is preserved.
        code = np.zeros(key.shape[0], dtype=np.int64)
        for col in range(key.shape[1]):
            code = code * span + key[:, col]
        _, first, inv = np.unique(code, return_index=True, return_inverse=True)
        return key[first], inv.reshape(-1)
    uniq, inv = np.unique(key, axis=0, return_inverse=True)
    return uniq, inv.reshape(-1)


def _majority_win_probability(m: np.ndarray, rivals: np.ndarray, u: np.ndarray, size: int, kmax: int) -> np.ndarray:
    """(I, kmax+1): tie-credited win probability of a correct class with m votes, per subset size k.

    m: (I,) votes of the class; rivals: (I, R) rival votes sorted descending (zero-padded);
    u: (I,) samples without an answer; every item has a pool of ``size`` samples.
    """
    if size > MAJORITY_MAX_POOL:
        # Subset counts reach C(n, n/2) > 1e300: beyond float64. A random sub-pool of the
        # samples keeps maj@k unbiased for every k up to its size.
        raise EstimationError(
            f"majority_at_k is exact for pools of at most {MAJORITY_MAX_POOL} samples, got n={size}; "
            f"draw a random sub-pool of {MAJORITY_MAX_POOL} samples per problem (still unbiased for k <= {MAJORITY_MAX_POOL})"
        )
    B = _binomials(size)
    # Items sorted by votes, most first: those with >= j votes are then a prefix (plain slices).
    order = np.argsort(-m, kind="stable")
    m, rivals, u = m[order], rivals[order], u[order]
    wins = np.zeros((m.shape[0], kmax + 1))
    for j in range(1, min(int(m[0]), kmax) + 1):
        top = int(np.searchsorted(-m, -j, side="right"))  # items with m >= j
        rv = rivals[:top]
        constrained = rv >= j
        r = constrained.sum(axis=1)
        R = int(r.max())
        S = u[:top] + np.where(constrained, 0, rv).sum(axis=1)
        cons = np.where(constrained[:, :R], rv[:, :R], 0)
        # The polynomial depends only on (S, constrained rival votes): compute each distinct one
        # once. r leads the key so configurations with equal r are contiguous after sorting.
        uniq, inv = _unique_rows(np.column_stack([r, S, cons]))
        L = min(size, kmax) - j + 1  # degrees d = k - j for k = j..min(n, kmax)
        W = np.empty((uniq.shape[0], L))
        bounds = np.searchsorted(uniq[:, 0], np.arange(R + 2))
        for nr in range(R + 1):
            lo, hi = int(bounds[nr]), int(bounds[nr + 1])
            step = max(1, CHUNK_ELEMENTS // (L * (nr // 2 + 1)))  # bounds the (G, Q, L) products
            for a in range(lo, hi, step):
                b = min(a + step, hi)
                W[a:b] = _losing_rest(uniq[a:b, 1], uniq[a:b, 2 : 2 + nr], j, L, B)
        # C(m, j) ways to pick the class's j votes times W ways for the other k - j slots.
        block = W[inv]
        block *= B[m[:top], j][:, None]
        wins[:top, j : j + L] += block
    k = np.arange(kmax + 1)
    wins /= np.where(k <= size, B[size, np.minimum(k, size)], 1.0)  # ways -> probability: / C(n, k)
    out = np.empty_like(wins)
    out[order] = wins
    return out


def _losing_rest(S: np.ndarray, cons: np.ndarray, j: int, L: int, B: np.ndarray) -> np.ndarray:
    """(G, L): tie-credited ways to fill d = 0..L-1 slots with no rival above j votes.

    S: (G,) unconstrained samples (no-answers and rivals with fewer than j votes in the pool);
    cons: (G, r) pool votes of the rivals with >= j votes. A subset where t rivals tie at j is
    counted with weight 1/(1+t) = integral of y^t over [0, 1] (Gauss-Legendre, exact).
    """
    base = B[S, :L]  # (1+x)^S
    r = cons.shape[1]
    if r == 0:
        return base.copy()
    if j == 1:
        # Every rival vote in the subset is then a tie at 1, so the tie count is the degree:
        # elementary symmetric sums e_t of the rival votes, weighted 1/(1+t), no quadrature.
        e = np.zeros((S.shape[0], r + 1))
        e[:, 0] = 1.0
        for c in range(r):
            e[:, 1:] = e[:, 1:] + cons[:, c, None] * e[:, :-1]
        e /= np.arange(1, r + 2)
        return _truncated_product(base, e[:, : L], L)
    y, w = _tie_quadrature(r)
    # The product has degree <= S + j * (factors so far): carry only that many coefficients.
    width = min(L, int(S.max()) + 1)
    poly = np.repeat(base[:, None, :width], y.shape[0], axis=1)  # (G, Q, width): one product per node
    top = min(j, L - 1)  # terms of degree >= L fall off the truncated product
    for c in range(r):
        kernel = np.repeat(B[cons[:, c], None, : top + 1], y.shape[0], axis=1)  # C(m_b, i), i <= j
        if top == j:
            kernel[:, :, j] *= y  # the tie term y C(m_b, j) x^j
        poly = _truncated_product(poly, kernel, min(L, poly.shape[-1] + top))
    out = np.zeros((S.shape[0], L))
    out[:, : poly.shape[-1]] = np.einsum("gql,q->gl", poly, w)
    return out


def _truncated_product(poly: np.ndarray, kernel: np.ndarray, size: int, direct_terms: int = _DIRECT_TERMS) -> np.ndarray:
    """Batched polynomial product (..., a) x (..., t+1) -> (..., size), truncated at degree size-1.

    Direct summation (no FFT): every term is nonnegative, so each coefficient keeps full
    relative precision even when it is 1e-250 of the largest one. Kernels of at most
    ``direct_terms`` terms use shifted adds, longer ones a windowed matmul (same result).
    """
    a, t = poly.shape[-1], kernel.shape[-1] - 1
    if t <= direct_terms:
        out = np.zeros(poly.shape[:-1] + (size,))
        for i in range(min(t, size - 1) + 1):
            span = min(a, size - i)
            out[..., i : i + span] += poly[..., :span] * kernel[..., i, None]
        return out
    # Longer kernels: one strided matmul over sliding windows (no copy of the windows).
    padded = np.zeros(poly.shape[:-1] + (size + t,))
    span = min(a, size)
    padded[..., t : t + span] = poly[..., :span]
    windows = np.lib.stride_tricks.sliding_window_view(padded, t + 1, axis=-1)  # [d, i'] = poly[d + i' - t]
    return np.matmul(windows, kernel[..., ::-1, None])[..., 0]


# ----------------------------------------------------------------------------- dataset mean


def dataset_mean(accuracy: np.ndarray, stderr: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dataset accuracy at each k: the mean over problems with n_i >= k (the non-NaN rows).

    Args:
        accuracy: (P, K) per-problem accuracy from any estimator here.
        stderr: (P, K) per-problem Monte Carlo errors (from ``resampled_accuracy``), or None.

    Returns:
        mean: (K,), NaN where no problem has k samples.
        se: (K,) standard error of ``mean``. With ``stderr``: the Monte Carlo error
            sqrt(sum se_i^2) / P_k, i.e. against the exact accuracy on these same problems.
            Without: the problem-sampling error std_i / sqrt(P_k) (ddof=1), i.e. against the
            accuracy on the population the problems were drawn from (NaN when P_k < 2).
    """
    accuracy = np.asarray(accuracy, dtype=np.float64)
    if accuracy.ndim != 2:
        raise EstimationError(f"accuracy: expected a (problems, k) array, got shape {accuracy.shape}")
    valid = ~np.isnan(accuracy)
    count = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(valid, accuracy, 0.0).sum(axis=0) / count
        mean[count == 0] = np.nan
        if stderr is not None:
            stderr = np.asarray(stderr, dtype=np.float64)
            if stderr.shape != accuracy.shape:
                raise EstimationError(f"stderr must have the shape of accuracy {accuracy.shape}, got {stderr.shape}")
            sq = np.where(valid & ~np.isnan(stderr), stderr, 0.0) ** 2
            se = np.sqrt(sq.sum(axis=0)) / count
            se[count == 0] = np.nan
        else:
            dev = np.where(valid, accuracy - mean, 0.0)
            se = np.sqrt((dev**2).sum(axis=0) / (count - 1) / count)
            se[count < 2] = np.nan
    return mean, se
