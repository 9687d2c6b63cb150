"""Benchmark: answer classes for 500 synthetic problems x 64 LaTeX answers (target: under 5 s).

Answers are resampled (seeded) from the real answers of ../shared/data/banks/math100_qwen_rm.jsonl:
each synthetic problem picks a math100 problem and draws 64 answers, 80% from that problem's own
8 samples and 20% from the whole pool of answers (every distinct bank answer plus a few common
LaTeX forms: surds, pi, intervals, sets, polynomials). A third of the draws are rewritten into an
equivalent surface form (``$..$``, ``\\dfrac``, ``a/b``, decimals, mixed -> improper fractions,
``x = ...``, units, reordered sums...), so both normalization and math-verify have work to do.

Times one fresh classifier (empty caches) over all 500 problems, classify + grading each class
representative against the reference, as ``ttscale.answers.grading`` does. The math-verify worker
process is started first and its start-up time reported separately (it is paid once per process).

    python evals/bench_answers.py [--problems 500] [--samples 64] [--seed 0] [--mode math]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ttscale.answers import (  # noqa: E402
    AnswerClassifier,
    EquivalenceConfig,
    _pool,  # noqa: E402
    normalize_answer,
)
from ttscale.answers.normalize import rational_value  # noqa: E402

BANK = ROOT.parent / "shared" / "data" / "banks" / "math100_qwen_rm.jsonl"

# Equivalent rewrites of the bank's non-numeric answers (these need sympy to be recognized).
SYMBOLIC_VARIANTS = {
    "4a-2": ["-2+4a", "2(2a-1)", "4 a - 2", "a\\cdot 4-2"],
    "4t": ["t \\cdot 4", "4 t", "2t+2t"],
    "7\\pi": ["\\pi \\cdot 7", "7 \\pi", "\\frac{14\\pi}{2}"],
    "\\sqrt{34}+3\\sqrt{10}": ["3\\sqrt{10}+\\sqrt{34}", "\\sqrt{34}+\\sqrt{90}"],
    "4:30": ["4:30 \\text{ p.m.}"],
    "A": ["(A)", "\\text{(A)}"],
    "C": ["(C)", "\\textbf{(C)}"],
}
# Common MATH-style answers that are not in the bank: noise with real LaTeX in it.
EXTRA_POOL = [
    "\\sqrt{2}", "2\\sqrt{3}", "\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", "\\pi", "\\frac{\\pi}{4}",
    "\\sqrt{16}", "2^{3}", "(1,2]", "\\left[0, \\infty\\right)", "\\{1,2\\}", "x^2+1", "(x+1)^2",
    "3+2\\sqrt{2}", "\\frac{3}{8}", "0.375", "e^{2}", "\\infty", "\\emptyset", "-\\frac{1}{2}",
]


def numeric_variants(canon: str) -> list[str]:
    v = rational_value(canon)
    if v is None:
        return []
    out = []
    if v.denominator == 1:
        n = int(v)
        out += [f"{n}.0", f"{n:,}" if abs(n) >= 1000 else f"0{n}" if n >= 0 else f"{n}.00",
                f"\\frac{{{2 * n}}}{{2}}", f"x = {n}", f"{n} \\text{{ units}}"]
    else:
        num, den = v.numerator, v.denominator
        out += [f"{num}/{den}", f"\\dfrac{{{num}}}{{{den}}}" if num > 0 else f"-\\dfrac{{{-num}}}{{{den}}}",
                f"\\frac{{{2 * num}}}{{{2 * den}}}"]
        d = den
        while d % 2 == 0:
            d //= 2
        while d % 5 == 0:
            d //= 5
        if d == 1:  # a finite decimal
            out.append(str(float(v)))
    return out


def variants(answer: str) -> list[str]:
    canon = normalize_answer(answer)
    out = [f"${answer}$", f"\\boxed{{{answer}}}", f"{answer}.", f" {answer} ", answer.replace("\\frac", "\\dfrac")]
    out += numeric_variants(canon)
    out += SYMBOLIC_VARIANTS.get(canon, [])
    return out


def build(problems: int, samples: int, seed: int) -> list[tuple[list[str | None], str]]:
    rows = [json.loads(line) for line in BANK.open()]
    pool = sorted({s["answer"] for r in rows for s in r["samples"] if s["answer"] is not None}) + EXTRA_POOL
    variant_cache: dict[str, list[str]] = {}
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(problems):
        row = rows[rng.integers(len(rows))]
        own = [s["answer"] for s in row["samples"]]
        answers: list[str | None] = []
        for _ in range(samples):
            a = own[rng.integers(len(own))] if rng.random() < 0.8 else pool[rng.integers(len(pool))]
            if a is not None and rng.random() < 1 / 3:
                vs = variant_cache.setdefault(a, variants(a))
                a = vs[rng.integers(len(vs))]
            answers.append(a)
        out.append((answers, row["reference"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=500)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", default="math", choices=["math", "string"])
    args = ap.parse_args()

    data = build(args.problems, args.samples, args.seed)
    distinct = len({a for answers, _ in data for a in answers if a is not None})
    print(f"{len(data)} problems x {args.samples} answers ({distinct} distinct raw strings), mode={args.mode}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    t0 = time.perf_counter()
    if args.mode == "math":
        _pool.pool().call(("sig", "1"), 120.0)  # start the worker process
    t_start = time.perf_counter() - t0

    clf = AnswerClassifier(EquivalenceConfig(mode=args.mode))
    t0, c0 = time.perf_counter(), time.process_time()
    num_classes = []
    for answers, _ in data:
        ids, reps = clf.classify(answers)
        num_classes.append(len(reps))
    t_classify, cpu_classify = time.perf_counter() - t0, time.process_time() - c0
    stats_classify = clf.stats.as_dict()
    t0 = time.perf_counter()
    correct_classes = 0
    for answers, reference in data:
        ids, reps = clf.classify(answers)
        correct_classes += sum(clf.is_correct(rep, reference) for rep in reps)
    t_both = time.perf_counter() - t0

    classes = np.array(num_classes)
    print(f"worker start-up:         {t_start:6.2f} s (once per process; not in the times below)")
    print(f"classify, cold caches:   {t_classify:6.2f} s  ({1e6 * t_classify / (len(data) * args.samples):.1f} us/answer; "
          f"{cpu_classify:.2f} s CPU in this process, the rest is waiting for sympy)")
    print(f"classify + grade, warm:  {t_both:6.2f} s")
    print(f"classes per problem:     mean {classes.mean():.2f}, median {np.median(classes):.0f}, max {classes.max()}; "
          f"{classes.sum()} in all; {correct_classes} correct classes")
    print("stats after the cold pass: " + ", ".join(f"{k}={v}" for k, v in stats_classify.items()))
    print("stats after both passes:   " + ", ".join(f"{k}={v}" for k, v in clf.stats.as_dict().items()))


if __name__ == "__main__":
    main()
