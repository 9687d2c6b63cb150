"""Benchmark: exact maj@k and pass@k for every k versus a Monte Carlo estimate of maj@k.

Synthetic bank: per problem an answer distribution from a symmetric Dirichlet over a few
candidate answers (class 0 is the correct one), ``--samples`` answers drawn from it, and a few
samples without an extracted answer. Prints time and peak memory of the exact estimators for
k = 1..samples, the same for a vectorized numpy Monte Carlo of maj@k with ``--mc-draws`` random
k-subsets per problem and k, and how far the two disagree in Monte Carlo standard errors.

Run from the repository root:  python evals/bench_estimators.py [--problems 10000] [--samples 64]
At the defaults the Monte Carlo side needs about 30 s of CPU (10^7 random permutations);
``--mc-draws 0`` skips it.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ttscale.estimate.exact import dataset_mean, majority_at_k, pass_at_k  # noqa: E402


def synthetic_bank(problems: int, samples: int, classes: int, alpha: float, no_answer: float, seed: int):
    """Per-sample answer labels (P, n) int8 (-1: no answer), class correctness (P, C) and counts (P, C)."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(classes, alpha), size=problems)
    cum = np.cumsum(probs, axis=1)
    u = rng.random((problems, samples))
    labels = np.minimum((u[:, :, None] > cum[:, None, :]).sum(axis=2), classes - 1).astype(np.int8)
    labels[rng.random((problems, samples)) < no_answer] = -1
    correct = np.zeros((problems, classes), dtype=bool)
    correct[:, 0] = True
    counts = np.stack([(labels == c).sum(axis=1) for c in range(classes)], axis=1).astype(np.int64)
    return labels, correct, counts


def monte_carlo_majority(labels: np.ndarray, correct: np.ndarray, kmax: int, draws: int, seed: int,
                         chunk_rows: int = 1 << 17) -> tuple[np.ndarray, np.ndarray]:
    """Per-problem maj@k (tie credit) for k = 1..kmax from ``draws`` random permutations per problem.

    The first k entries of a uniformly random permutation are a uniformly random k-subset, so one
    permutation serves every k (votes are counted incrementally along it). Returns the mean and
    its Monte Carlo standard error, both (P, kmax).
    """
    P, n = labels.shape
    C = correct.shape[1]
    rng = np.random.default_rng(seed)
    s1 = np.zeros((P, kmax))
    s2 = np.zeros((P, kmax))
    per_chunk = max(1, chunk_rows // draws)
    for lo in range(0, P, per_chunk):
        hi = min(P, lo + per_chunk)
        rows = (hi - lo) * draws
        perm = rng.permuted(np.repeat(labels[lo:hi], draws, axis=0), axis=1)
        perm[perm < 0] = C  # no-answer samples go to a dummy column that never votes
        perm = np.ascontiguousarray(perm.T)  # (n, rows): step t reads one contiguous row
        flat_correct = np.repeat(np.pad(correct[lo:hi], ((0, 0), (0, 1))), draws, axis=0).ravel()
        counts = np.zeros(rows * (C + 1), dtype=np.int8)  # n <= 127 votes per class
        base = np.arange(rows, dtype=np.int64) * (C + 1)
        top = np.zeros(rows, dtype=np.int8)  # votes of the leading class(es)
        tied = np.zeros(rows, dtype=np.int8)  # classes at the top
        good = np.zeros(rows, dtype=np.int8)  # correct classes at the top
        for t in range(kmax):
            idx = base + perm[t]
            v = counts[idx] + np.int8(1)
            counts[idx] = v
            voted = perm[t] < C
            ok = flat_correct[idx]
            lead = voted & (v > top)
            tie = voted & (v == top)
            top = np.where(lead, v, top)
            tied = np.where(lead, np.int8(1), tied + tie)
            good = np.where(lead, ok, good + (tie & ok))
            credit = (good / np.maximum(tied, 1)).reshape(hi - lo, draws)
            s1[lo:hi, t] = credit.sum(axis=1)
            s2[lo:hi, t] = np.square(credit).sum(axis=1)
    mean = s1 / draws
    var = np.maximum(s2 - draws * mean**2, 0.0) / max(draws - 1, 1)
    return mean, np.sqrt(var / draws)


def measure(fn: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """Best wall time over ``repeat`` runs, and tracemalloc peak (MB) of one more run."""
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return best, peak, result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=64, help="pool size n per problem; k runs over 1..n")
    ap.add_argument("--classes", type=int, default=8, help="candidate answers per problem (class 0 correct)")
    ap.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration of the answer distribution")
    ap.add_argument("--no-answer", type=float, default=0.03, help="probability a sample has no extracted answer")
    ap.add_argument("--mc-draws", type=int, default=1000, help="Monte Carlo subsets per problem and k (0: skip)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each exact estimator (best is shown)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    labels, correct, counts = synthetic_bank(args.problems, args.samples, args.classes, args.alpha, args.no_answer, args.seed)
    n = np.full(args.problems, args.samples)
    ks = list(range(1, args.samples + 1))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    maj_t, maj_mem, maj = measure(lambda: majority_at_k(counts, correct, n, ks), args.repeat)
    pass_t, pass_mem, _ = measure(lambda: pass_at_k(n, (labels == 0).sum(axis=1), ks), args.repeat)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"synthetic bank: {args.problems} problems x {args.samples} samples, {args.classes} answers, "
          f"Dirichlet({args.alpha}), {args.no_answer:.0%} no-answers; k = 1..{args.samples}")
    print(f"distinct answers per problem: mean {(counts > 0).sum(axis=1).mean():.1f}; "
          f"no-answer samples: {(labels < 0).mean():.1%}")
    print()
    rows = [
        ("exact maj@k", maj_t, maj_mem),
        ("exact pass@k", pass_t, pass_mem),
    ]
    mc = None
    if args.mc_draws > 0:
        t0 = time.perf_counter()
        mc_mean, mc_se = monte_carlo_majority(labels, correct, args.samples, args.mc_draws, args.seed + 1)
        mc_t = time.perf_counter() - t0
        rows.append((f"Monte Carlo maj@k ({args.mc_draws} draws)", mc_t, float("nan")))
        mc = (mc_mean, mc_se, mc_t)
    print(f"{'estimator (all k at once)':<34} {'time (s)':>9} {'peak MB':>9}")
    for name, t, mem in rows:
        mem_s = "-" if math.isnan(mem) else f"{mem:.1f}"
        print(f"{name:<34} {t:>9.3f} {mem_s:>9}")
    print(f"(time: best of {args.repeat} runs for the exact estimators, one run for Monte Carlo; "
          f"peak MB: tracemalloc peak of numpy/Python allocations during one call; "
          f"process max RSS {rss1:.0f} MB after the exact runs, {rss0:.0f} MB before)")

    if mc is None:
        return
    mc_mean, mc_se, mc_t = mc
    print()
    print(f"Monte Carlo / exact maj@k time ratio: {mc_t / maj_t:.0f}x")
    exact_ds, _ = dataset_mean(maj)
    mc_ds, mc_ds_se = dataset_mean(mc_mean, mc_se)
    # At k = n every draw is the whole pool: the MC se is 0 (up to rounding) and MC must equal exact.
    random_k = mc_ds_se > 1e-9
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(random_k, (mc_ds - exact_ds) / mc_ds_se, np.nan)
    fixed = np.max(np.abs(mc_ds - exact_ds)[~random_k], initial=0.0)
    print(f"max |exact - MC| of the dataset mean over k = 1..{args.samples}: {np.nanmax(np.abs(z)):.2f} MC standard errors "
          f"(largest abs difference {np.max(np.abs(mc_ds - exact_ds)):.1e}; {fixed:.1e} where every draw is the whole pool)")
    # Per problem the sample se is unreliable when few draws score (0 when none do, tiny after a
    # lucky hit or two), so measure the gap in sqrt(p(1-p)/draws), p the exact value (an upper
    # bound of the credit's se: credits lie in [0, 1]), where draws*p and draws*(1-p) >= 10.
    steady = args.mc_draws * np.minimum(maj, 1 - maj) >= 10
    pz = np.abs(mc_mean - maj)[steady] / np.sqrt(maj * (1 - maj) / args.mc_draws)[steady]
    print(f"per problem and k ({pz.size} pairs with >= 10 expected hits and misses): max {pz.max():.2f} "
          f"x sqrt(p(1-p)/draws), {(pz > 4).mean():.4%} beyond 4 (normal tails: {math.erfc(4 / math.sqrt(2)):.4%})")
    print()
    print(f"{'k':>4} {'exact maj@k':>12} {'MC maj@k':>10} {'MC se':>9} {'z':>6} {'pass@k':>8}")
    pass_ds, _ = dataset_mean(pass_at_k(n, (labels == 0).sum(axis=1), ks))
    for k in sorted({1, 2, 3, 4, 8, 16, 32, args.samples} & set(ks)):
        i = k - 1
        z_s = f"{z[i]:>6.2f}" if random_k[i] else f"{'-':>6}"
        print(f"{k:>4} {exact_ds[i]:>12.6f} {mc_ds[i]:>10.6f} {mc_ds_se[i]:>9.2e} {z_s} {pass_ds[i]:>8.4f}")


if __name__ == "__main__":
    main()
