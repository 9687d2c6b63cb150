"""Reward-reading options of the planner across models (issue 18): Best-of-N and reward-weighted
majority predicted from pilots, checked on the full banks.

Corpora (the only reward-carrying banks at hand; no model is run):
* The embedded model (arith-tiny) at T=1.3 and T=0.7, 500 default-set problems x 64 samples
  (evals/data), each sample scored by its stored mean token log-prob with
  ``ttscale score confidence BANK --out COPY`` (no forward pass: the sampler stored it), read with
  ``scorer="confidence"``; $0.1 per million tokens for both, as in evals/plan_models.py. The full
  plan (every option, frontier, three targets) from 8-sample pilots against the full banks.
* math100 (a Qwen2.5-Math instruct model, 100 x 8, its outcome reward model's ``reward``): one bank,
  predicted from 4-sample pilots.
* The embedded model at T=1.3 scored by ``rewards.deepconf`` (a reward under which Best-of-N falls
  with N): one bank, 8-sample pilots.

For every reward option: the prediction from the pilots (at N <= pilot on the pilots themselves,
beyond on the completed pilots), its interval, and the exact value on the full bank (the figure
``ttscale eval -p best-of-n`` prints); majority@N beside for comparison.

Run: .venv/bin/python evals/plan_models_rewards.py   (a few minutes on 2 cores)
Writes evals/results/plan_models_rewards.{json,txt} and plan_models_rewards_embedded.png.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from plan_models import corpus

from ttscale.cli.models_report import plot_models, short_policy
from ttscale.offline import plan_models
from ttscale.planning.cost import Prices
from ttscale.planning.models import ModelPlan

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
WORK = ROOT.parent / "runs" / "plan_models_rewards"
EMBEDDED = {"T1.3": ROOT / "data" / "votes-default-T1.3.jsonl", "T0.7": ROOT / "data" / "votes-default-T0.7.jsonl"}
MATH100 = "../shared/data/banks/math100_qwen_rm.jsonl"
PILOT = 8


def scored_copy(name: str, bank: Path) -> str:
    """``bank`` with each sample's mean token log-prob stored as ``rewards.confidence`` (a copy in runs/)."""
    out = WORK / f"confidence-{name}.jsonl"
    if not out.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "ttscale", "score", "confidence", str(bank), "--out", str(out), "-q", "--json"],
                       check=True, stdout=subprocess.DEVNULL)
    return str(out)


def reward_rows(pred: ModelPlan, pilot: int) -> list[dict]:
    """Every fixed option of the pilot plan: predicted, interval, exact on the full bank."""
    rows = []
    for o in pred.options:
        if o.kind != "fixed":
            continue
        assert o.exact is not None and o.n is not None
        rows.append({"bank": o.bank, "policy": o.policy, "n": o.n, "predicted": o.accuracy, "low": o.low, "high": o.high,
                     "exact": o.exact, "error": o.accuracy - o.exact, "covered": o.low <= o.exact <= o.high,
                     "from": "pilot" if o.n <= pilot and not o.policy.startswith("majority@") else
                             "curve model" if o.policy.startswith("majority@") else "completed pilot"})
    return rows


def summary(rows: list[dict]) -> dict:
    out = {}
    for name in ("majority", "best-of-n", "weighted-majority"):
        for where in ("pilot", "completed pilot", "curve model"):
            sel = [r for r in rows if r["policy"].split("@")[0] == name and r["from"] == where]
            if sel:
                out[f"{name}, {where}"] = {"options": len(sel), "mean_abs_error": sum(abs(r["error"]) for r in sel) / len(sel),
                                           "mean_error": sum(r["error"] for r in sel) / len(sel),
                                           "coverage": sum(r["covered"] for r in sel) / len(sel)}
    return out


def table(title: str, rows: list[dict], names: dict[str, str], lines: list[str]) -> None:
    lines.append(title)
    lines.append(f"  {'option':<22} {'pred %':>7} {'interval %':>13} {'exact %':>8} {'error':>7}  from")
    for r in rows:
        lines.append(f"  {names[r['bank']] + ' ' + short_policy(r['policy']):<22} {100 * r['predicted']:7.2f} "
                     f"{100 * r['low']:6.1f}-{100 * r['high']:5.1f} {100 * r['exact']:8.2f} {100 * r['error']:+7.2f}  "
                     f"{r['from']}{'' if r['covered'] else ' (exact outside the interval)'}")
    for key, s in summary(rows).items():
        lines.append(f"  {key}: {s['options']} options, mean |error| {100 * s['mean_abs_error']:.2f} points "
                     f"(mean {100 * s['mean_error']:+.2f}), interval covers the exact value {100 * s['coverage']:.0f}%")
    lines.append("")


def main() -> int:
    RESULTS.mkdir(exist_ok=True)
    lines = ["plan_models_rewards: Best-of-N and weighted-majority options, predicted from pilots vs exact on the full banks", ""]
    out: dict = {"pilot": PILOT}

    banks = [scored_copy(k, v) for k, v in EMBEDDED.items()]
    prices = {b: Prices(input=0.1, output=0.1) for b in banks}
    common: dict = {"prices": prices, "horizon": 16, "scorer": "confidence", "equivalence": "string"}
    exact = plan_models(banks, **common)
    pred = plan_models(banks, pilot=PILOT, **common)
    names = {b: chr(ord("A") + i) for i, b in enumerate(banks)}
    top = max(o.accuracy for o in exact.options)
    out["embedded"] = corpus("embedded arith-tiny T=1.3 (A) + T=0.7 (B), rewards = mean token log-prob", exact, pred,
                             [round(x, 3) for x in (top - 0.05, top - 0.02, top - 0.005)], lines)
    rows = reward_rows(pred, PILOT)
    out["embedded"]["fixed_options"] = rows
    out["embedded"]["summary"] = summary(rows)
    table(f"embedded: fixed options from {PILOT}-sample pilots vs exact", rows, names, lines)
    plot_models(exact, RESULTS / "plan_models_rewards_embedded.png",
                "arith-tiny T=1.3 (A), T=0.7 (B), 500 x 64, rewards = mean log-prob; exact")

    for key, bank, pilot, extra in (("math100", MATH100, 4, {}),
                                    ("deepconf", str(EMBEDDED["T1.3"]), PILOT, {"scorer": "deepconf", "equivalence": "string"})):
        pred = plan_models([bank], pilot=pilot, adaptive=False, output_tokens={bank: 500.0}, **extra)
        rows = reward_rows(pred, pilot)
        out[key] = {"bank": bank, "pilot": pilot, "fixed_options": rows, "summary": summary(rows)}
        table(f"{key}: {bank} ({pred.questions} questions), fixed options from {pilot}-sample pilots vs exact",
              rows, {bank: "A"}, lines)

    text = "\n".join(lines)
    print(text)
    (RESULTS / "plan_models_rewards.txt").write_text(text + "\n")
    (RESULTS / "plan_models_rewards.json").write_text(json.dumps(out, indent=1, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
