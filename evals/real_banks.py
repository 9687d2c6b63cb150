"""Every policy preset and the planner on the real banks of ../shared/data/banks (issue 7).

For each bank of ../shared/data/banks (see its README.md and SOURCES.json):

  gsm8k400_llama2-13b_pot.jsonl  400 x 48    answers only        k = 1..48
  gsm8k_gpt4_cot-pot.jsonl       1319 x 9-12 answers only        k = 1..12 (k > 9: the problems with >= k samples)
  math100_qwen_rm.jsonl          100 x 8     answers and rewards k = 1..8

1. ``ttscale eval BANK -p ... --k 1,...,n --json --plot evals/results/real_<bank>_eval.png`` with
   every preset of policies/ whose fields the bank has (presets needing rewards only where every
   sample has a reward, presets needing log-probs only where every sample has one; ``oracle``
   skipped, it is the pass@k row). Exact where a closed form exists (majority, best-of-n), else
   the seeded resampling estimate (1000 draws per problem and k, seed 0) with its standard error.
2. The planner for majority, pass@k and, where rewards exist, best-of-n and weighted-majority:
   ``ttscale plan BANK -p P --budget-samples n --json`` (the fitted accuracy at the bank's own
   pool size n next to the exact observed one, the predicted ceiling at N = 1024, the saturation
   N) and ``ttscale plan BANK -p P --target T --json`` with T = the predicted ceiling minus 1 point
   (rounded down to 0.01 point): the recommended N, i.e. the smallest N within 1 point of the
   ceiling (what ``ttscale bench`` reports as "within 1 point of the ceiling"). The majority
   target run also writes ``--plot evals/results/real_<bank>_plan.png`` (fitted curve, interval,
   observed points, target line, recommended N).
3. The Pythia pass-count table (pass_counts_gsm8k_pythia_checkpoints.csv) has no answers, so no
   policy applies: exact pass@k (ttscale.estimate.pass_at_k) of the final (300B-token)
   checkpoint of each size, in-process. Its extrapolation is evals/extrapolate_pass_at_k.py.

Every figure comes from the ``ttscale`` command line run as a subprocess from the repository root
(the exact command lines are stored next to their output in evals/results/real_banks.json), so a
figure can be checked by pasting its command. Adaptive stopping rules and allocators on the two
GSM8K banks are evals/sample_efficiency.py (not rerun here).

Run (about 5 minutes on 2 busy cores):  nice -n 10 python evals/real_banks.py
Only some banks:                        python evals/real_banks.py --banks math100
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ttscale.estimate.exact import pass_at_k  # noqa: E402
from ttscale.records.bank import read_bank, read_pass_counts  # noqa: E402
from ttscale.selection.policy import load_policy, preset_names  # noqa: E402

DATA = "../shared/data/banks"  # relative to the repository root, as the commands are run
RESULTS = "evals/results"
BANKS = {
    # short name (used in the PNG names): bank file
    "llama": "gsm8k400_llama2-13b_pot.jsonl",
    "gpt4": "gsm8k_gpt4_cot-pot.jsonl",
    "math100": "math100_qwen_rm.jsonl",
}
REWARD_PLANS = ("best-of-n", "weighted-majority")
EXTRA = {"math100": ["best-of-majority:answers=4"]}
"""Overrides beyond the presets: BoM submitting 4 answers, the reward counterpart of top-k-answers (4 answers)."""
SKIP = {"oracle": "reads the reference (the pass@k row is the oracle)"}
PYTHIA = "pass_counts_gsm8k_pythia_checkpoints.csv"
PYTHIA_K = (1, 10, 100, 1000, 10000)
WITHIN = 0.01  # recommended N: the smallest N within 1 point of the predicted ceiling


def run(args: list[str]) -> tuple[dict, float, str]:
    """Run ``python -m ttscale ARGS`` from the repository root; its JSON output, seconds and command line."""
    cmd = "ttscale " + " ".join(shlex.quote(a) for a in args)
    print(f"$ {cmd}", flush=True)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ttscale", *args], cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {cmd}\n{proc.stderr.strip()}")
    return json.loads(proc.stdout), seconds, cmd


def bank_fields(path: Path) -> dict:
    """What every sample of the bank carries (policies are run only where their fields exist)."""
    records = read_bank(path).records
    samples = [s for r in records for s in r.samples]
    sizes = [len(r.samples) for r in records]
    return {
        "problems": len(records), "samples": len(samples), "pool_min": min(sizes), "pool_max": max(sizes),
        "rewards": all(s.reward is not None for s in samples),
        "logprobs": all(s.confidence() is not None for s in samples),
        "tokens": all(s.tokens is not None for s in samples),
        "text": all(s.text is not None for s in samples),
        "correct": all(s.correct is not None for s in samples),
    }


def applicable(fields: dict) -> tuple[list[str], dict[str, str]]:
    """Preset names the bank supports (majority first) and the skipped ones with the reason."""
    have = {"reference"} | {f for f in ("rewards", "logprobs") if fields[f]}
    run_, skipped = [], {}
    for name in preset_names():
        if name in SKIP:
            skipped[name] = SKIP[name]
            continue
        lacking = sorted(load_policy(name).missing(have))
        if lacking:
            skipped[name] = "needs " + " and ".join(lacking) + " (the bank has none)"
        else:
            run_.append(name)
    run_.sort(key=lambda n: n != "majority")
    return run_, skipped


def eval_bank(short: str, file: str, fields: dict, policies: list[str]) -> dict:
    bank = f"{DATA}/{file}"
    ks = ",".join(str(k) for k in range(1, fields["pool_max"] + 1))
    args = ["eval", bank]
    for p in policies:
        if p != "majority":  # always included
            args += ["-p", p]
    args += ["--k", ks, "--json", "--plot", f"{RESULTS}/real_{short}_eval.png"]
    out, seconds, cmd = run(args)
    return {"command": cmd, "seconds": round(seconds, 1), **out}


def plan_bank(short: str, file: str, fields: dict, policy: str, *, plot: bool) -> dict:
    bank = f"{DATA}/{file}"
    n = fields["pool_max"]
    budget, s1, cmd1 = run(["plan", bank, "-p", policy, "--budget-samples", str(n), "--json"])
    ceiling = budget["ceiling"]["accuracy"]
    target = math.floor((ceiling - WITHIN) * 1e4) / 1e4
    entry: dict = {
        "policy": policy, "method": budget["method"],
        "observed": {"k": budget["observed"]["k"][-1], "accuracy": budget["observed"]["accuracy"][-1]},
        "at_pool": budget["recommended"], "ceiling": budget["ceiling"], "saturation": budget["saturation"],
        "best_n": budget["best_n"], "notes": budget["notes"],
        "budget_run": {"command": cmd1, "seconds": round(s1, 1), "table": budget["table"]},
    }
    if target > 0:
        args = ["plan", bank, "-p", policy, "--target", f"{target:.4f}", "--json"]
        if plot:
            args += ["--plot", f"{RESULTS}/real_{short}_plan.png"]
        within, s2, cmd2 = run(args)
        entry["within_1_point"] = {"target": target, **within["recommended"]}
        entry["target_run"] = {"command": cmd2, "seconds": round(s2, 1), "notes": within["notes"]}
    return entry


def pythia(path: Path) -> dict:
    """Exact pass@k of each model size's final checkpoint (problems with at least k samples)."""
    table = read_pass_counts(path)
    rows = []
    for model in table.models():
        if not model.endswith("_300B"):
            continue
        n, c = table.for_model(model)
        per = pass_at_k(n, c, PYTHIA_K)
        rows.append({
            "model": model, "problems": int(n.size), "samples_min": int(n.min()), "samples_max": int(n.max()),
            "pass": [None if np.isnan(per[:, j]).all() else float(np.nanmean(per[:, j])) for j in range(len(PYTHIA_K))],
            "problems_at_k": [int((n >= k).sum()) for k in PYTHIA_K],
        })
    rows.sort(key=lambda r: _size(r["model"]))
    return {"file": f"{DATA}/{PYTHIA}", "k": list(PYTHIA_K), "checkpoints": rows,
            "note": "pass@k only (the table holds counts, not answers); k > 128 averages over the problems with >= k samples"}


def _size(model: str) -> float:
    size = model.split("_")[1]
    return float(size[:-1]) * {"M": 1e6, "B": 1e9}[size[-1]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--banks", default=",".join(BANKS), help="comma-separated short names: " + ", ".join(BANKS))
    ap.add_argument("--out", default=f"{RESULTS}/real_banks.json")
    opts = ap.parse_args()
    started = time.perf_counter()
    out: dict = {"generated_by": "python evals/real_banks.py", "banks": {}}
    for short in opts.banks.split(","):
        file = BANKS[short]
        t0 = time.perf_counter()
        fields = bank_fields(REPO.parent / "shared" / "data" / "banks" / file)
        policies, skipped = applicable(fields)
        policies += EXTRA.get(short, [])
        entry: dict = {"file": f"{DATA}/{file}", "fields": fields, "policies": policies, "skipped": skipped}
        entry["eval"] = eval_bank(short, file, fields, policies)
        plans = ["majority", "pass", *(REWARD_PLANS if fields["rewards"] else ())]
        entry["planner"] = {p: plan_bank(short, file, fields, p, plot=p == "majority") for p in plans}
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        out["banks"][short] = entry
        print(f"{short}: {entry['seconds']:.0f} s", flush=True)
    out["pythia"] = pythia(REPO.parent / "shared" / "data" / "banks" / PYTHIA)
    out["seconds"] = round(time.perf_counter() - started, 1)
    path = REPO / opts.out
    path.write_text(json.dumps(out, indent=1, allow_nan=False) + "\n")
    print(f"wrote {opts.out} in {out['seconds']:.0f} s")
    summary(out)


def summary(out: dict) -> None:
    """Compact tables (the ones evals/README.md shows)."""
    for short, b in out["banks"].items():
        ev = b["eval"]
        print(f"\n{short}: {b['file']} ({ev['problems']} problems); skipped: {', '.join(b['skipped'])}")
        for name, c in ev["policies"].items():
            se = "" if c["stderr"] is None else f"  (se <= {100 * max(c['stderr']):.2f})"
            print(f"  {name:28s} " + " ".join(f"{100 * a:6.2f}" for a in c["accuracy"]) + se)
        print(f"  {'pass@k':28s} " + " ".join(f"{100 * a:6.2f}" for a in ev["pass"]))
        for p, pl in b["planner"].items():
            w = pl.get("within_1_point") or {}
            print(f"  plan {p:18s} {pl['method']:18s} obs@{pl['observed']['k']} {100 * pl['observed']['accuracy']:.2f} "
                  f"fit@{pl['at_pool']['n']} {100 * pl['at_pool']['accuracy']:.2f} ceiling {100 * pl['ceiling']['accuracy']:.2f}"
                  f"+-{100 * pl['ceiling']['halfwidth']:.2f} sat N={pl['saturation']['n']} ({100 * pl['saturation']['accuracy']:.2f}) "
                  f"within1 N={w.get('n')} ({100 * w.get('accuracy', float('nan')):.2f})")
    print("\npythia pass@k", out["pythia"]["k"])
    for r in out["pythia"]["checkpoints"]:
        print(f"  {r['model']:18s} " + " ".join("   -  " if v is None else f"{100 * v:6.2f}" for v in r["pass"]),
              r["problems_at_k"])


if __name__ == "__main__":
    main()
