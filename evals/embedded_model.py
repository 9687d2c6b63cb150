"""The embedded model on its test set at N = 32 with every policy, and the planner's extrapolation check.

1. ``ttscale bench --out OUT --n 32 -p <every preset the samples allow>`` on the packaged model
   and test set (vLLM when installed): the bank, report.md, plots and results.json in OUT.
2. From pilots of the first 4 and 8 samples per problem (the same bank cut short), the planner
   (``ttscale plan --json``) predicts majority and pass@k at N = 16 and 32; the observed values
   are ``ttscale eval`` on the full 32-sample bank. Prints predicted [interval] vs observed.

    python evals/embedded_model.py --out evals/results/embedded [--limit 500]

Writes OUT/extrapolation.json. The bank (OUT/bank.jsonl) is large: it is not committed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ttscale.records.bank import read_bank  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
POLICIES = "majority,confidence-weighted,confidence-vote,confidence-vote-low,first-to-ahead,top-k-answers"


def run(cmd: list[str]) -> str:
    done = subprocess.run([sys.executable, "-m", "ttscale", *cmd], env=ENV, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ttscale {' '.join(cmd)}: {done.stderr[-2000:]}")
    return done.stdout


def pilot_bank(full: Path, out: Path, k: int) -> Path:
    """The bank cut to its first k samples per problem (what a pilot run with --n k would hold)."""
    with open(out, "w") as fh:
        for rec in read_bank(full).records:
            data = rec.model_dump(mode="json", exclude_none=True)
            data["samples"] = data["samples"][:k]
            fh.write(json.dumps(data) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "evals/results/embedded")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--n", type=int, default=32)
    args = parser.parse_args()

    t0 = time.perf_counter()
    run(["bench", "--out", str(args.out), "--n", str(args.n), "--limit", str(args.limit), "-p", POLICIES])
    bench_s = time.perf_counter() - t0
    full = args.out / "bank.jsonl"
    observed = json.loads(run(["eval", str(full), "--k", "1,2,4,8,16,32", "--json"]))
    obs = {"majority": dict(zip(observed["k"], observed["policies"]["majority"]["accuracy"])),
           "pass": dict(zip(observed["k"], observed["pass"]))}
    rows = []
    for pilot in (4, 8):
        bank = pilot_bank(full, args.out / f"pilot{pilot}.jsonl", pilot)
        for policy in ("majority", "pass"):
            plan = json.loads(run(["plan", str(bank), "--policy", policy, "--budget-samples", "32", "--max-n", "64", "--json"]))
            table = {row["n"]: row for row in plan["table"]}
            for n in (16, 32):
                row = table.get(n)
                if row is None:
                    continue
                rows.append({"pilot": pilot, "policy": policy, "n": n, "predicted": row["accuracy"], "low": row["low"],
                             "high": row["high"], "observed": obs[policy][n],
                             "error_points": 100 * (row["accuracy"] - obs[policy][n]),
                             "inside": row["low"] <= obs[policy][n] <= row["high"]})
        bank.unlink()
    print(f"bench: {bench_s:.0f} s (report in {args.out})")
    print(f"{'pilot':>5} {'policy':>9} {'N':>3} {'predicted %':>12} {'interval %':>16} {'observed %':>11} {'error':>7}")
    for r in rows:
        print(f"{r['pilot']:>5} {r['policy']:>9} {r['n']:>3} {100 * r['predicted']:>12.2f} "
              f"{100 * r['low']:>7.2f}-{100 * r['high']:<7.2f} {100 * r['observed']:>11.2f} {r['error_points']:>+7.2f}")
    (args.out / "extrapolation.json").write_text(json.dumps({"bench_seconds": round(bench_s, 1), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
