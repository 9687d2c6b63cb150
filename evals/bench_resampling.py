"""Benchmark: resampled accuracy at k (policies without a closed form), batched versus scalar.

Loads a bank the way ``ttscale eval`` does, then times ``estimate.resampled_accuracy`` for each
policy: the batched path (the selector's vectorized implementation over a (draws, k) index
matrix per problem and k) and, with ``--scalar``, the reference loop that calls the Python
selector once per draw. With both, prints how far the two estimates are apart in Monte Carlo
standard errors (they use different random streams, so they agree only statistically).

Run from the repository root:

    python evals/bench_resampling.py ../shared/data/banks/math100_qwen_rm.jsonl --k 1,2,4,8 \\
        -p best-of-n -p weighted-majority -p best-of-majority -p best-of-majority:answers=2 -p majority-of-bests
    python evals/bench_resampling.py ../shared/data/banks/gsm8k400_llama2-13b_pot.jsonl \\
        --k 1,2,4,8,16,32,48 -p first-to-ahead -p top-k-answers

``--scalar`` at 1000 draws takes minutes per policy; ``--scalar-draws 100`` times it on fewer
draws (the loop's cost is linear in the draws, so multiply by draws / scalar-draws).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ttscale.answers import AnswerClassifier, EquivalenceConfig  # noqa: E402
from ttscale.answers.grading import bank_candidates  # noqa: E402
from ttscale.estimate.exact import dataset_mean  # noqa: E402
from ttscale.estimate.resample import resampled_accuracy  # noqa: E402
from ttscale.records.bank import read_bank  # noqa: E402
from ttscale.selection.policy import load_policy  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bank", type=Path)
    ap.add_argument("-p", "--policy", action="append", required=True)
    ap.add_argument("--k", default="1,2,4,8")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scalar", action="store_true", help="also time the scalar per-draw loop")
    ap.add_argument("--scalar-draws", type=int, default=None, help="draws for the scalar loop (default: --draws)")
    args = ap.parse_args()
    ks = [int(k) for k in args.k.split(",")]

    t0 = time.perf_counter()
    data = read_bank(args.bank)
    problems = bank_candidates(data.records, AnswerClassifier(EquivalenceConfig()), path=data.path)
    print(f"{args.bank.name}: {len(problems)} problems, loaded in {time.perf_counter() - t0:.2f} s; k = {ks}")

    total = 0.0
    for spec in args.policy:
        select = load_policy(spec).selector_fn()
        t0 = time.perf_counter()
        mean, se = resampled_accuracy(problems, select, ks, draws=args.draws, seed=args.seed)
        dt = time.perf_counter() - t0
        total += dt
        acc, mc = dataset_mean(mean, se)
        line = f"{spec:32s} batched {dt:7.3f} s  acc " + " ".join(f"{a:.4f}" for a in acc)
        if args.scalar:
            draws = args.scalar_draws or args.draws

            def scalar(cands, rng, _select=select):  # no .batched attribute: the per-draw loop
                return _select(cands, rng)

            t0 = time.perf_counter()
            smean, sse = resampled_accuracy(problems, scalar, ks, draws=draws, seed=args.seed)
            sdt = time.perf_counter() - t0
            sacc, smc = dataset_mean(smean, sse)
            se = np.sqrt(mc**2 + smc**2)
            with np.errstate(invalid="ignore", divide="ignore"):  # se 0: both exact (k == n, no ties)
                z = np.where(acc == sacc, 0.0, np.abs(acc - sacc) / se)
            line += (
                f"\n{'':32s} scalar  {sdt:7.3f} s ({draws} draws; x{args.draws / draws:g} = "
                f"{sdt * args.draws / draws:.1f} s)  acc " + " ".join(f"{a:.4f}" for a in sacc)
                + "  |diff|/se " + " ".join(f"{v:.1f}" for v in z)
            )
        print(line, flush=True)
    print(f"total batched: {total:.3f} s")


if __name__ == "__main__":
    main()
