"""Online early stop replayed offline on stored per-token confidences, checked against the engine.

For the embedded model's default and hard sets (first LIMIT problems, N traces each):

1. ``ttscale sample --backend vllm --token-confidence 20 --seed 0`` into a bank (full traces, each
   with its per-token confidences; the request seeds of ``evals/early_stop.py``);
2. the replay in bank order (warm-up = the first W traces, as online) at each eta, against the
   online runs of ``evals/early_stop.py`` (``evals/results/early_stop.json``, the same seeds):
   accuracy of the surviving traces' vote and generated tokens;
3. ``ttscale simulate --early-stop-window 8 --early-stop-warmup 4 --json`` on the bank: the
   ``deepconf-online`` rule over 20 seeded orders of each question's traces, at every eta of its
   grid, beside majority@N.

    flock /tmp/vllm.lock .venv/bin/python evals/early_stop_replay.py --limit 200 --n 16

Writes evals/results/early_stop_replay.{json,md}; the banks go to --out (default /tmp/early_stop_replay).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ttscale.early_stop.trajectory import Trace, decode_confidences, replay_early_stop  # noqa: E402
from ttscale.records.bank import read_bank  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "evals" / "results"
SETS = {"default": "arith", "hard": "arith-hard"}
TTSCALE = [sys.executable, "-m", "ttscale"]


def vote(answers: list[str | None], reference: str | None) -> float:
    """Tie-credited majority correctness (string answers: the embedded task's are integers)."""
    tally: dict[str, int] = defaultdict(int)
    for a in answers:
        if a is not None:
            tally[a] += 1
    if not tally:
        return 0.0
    best = max(tally.values())
    top = [a for a, v in tally.items() if v == best]
    return 1.0 / len(top) if reference in top else 0.0


def replay_in_order(bank: Path, eta: float, window: int, warmup: int) -> dict[str, Any]:
    records = read_bank(bank).records
    acc = tokens = stopped = 0.0
    for r in records:
        traces = [Trace.of(decode_confidences(s.token_confidence or ""), window) for s in r.samples]
        replay = replay_early_stop(traces, eta=eta, warmup=warmup)
        acc += vote([s.answer for s, cut in zip(r.samples, replay.stopped) if not cut], r.reference)
        tokens += int(replay.tokens.sum())
        stopped += int(replay.stopped.sum())
    return {"accuracy": acc / len(records), "tokens": int(tokens), "stopped": int(stopped)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("/tmp/early_stop_replay"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    online = {s["set"]: s for s in json.loads((RESULTS / "early_stop.json").read_text())["sets"]}
    out: dict[str, Any] = {"command": "flock /tmp/vllm.lock .venv/bin/python evals/early_stop_replay.py "
                           f"--limit {args.limit} --n {args.n}", "window": args.window, "warmup": args.warmup, "sets": {}}
    for name, dataset in SETS.items():
        bank = args.out / f"{name}.jsonl"
        subprocess.run([*TTSCALE, "sample", "--backend", "vllm", "--model", "arith-tiny", "--dataset", dataset,
                        "--limit", str(args.limit), "--n", str(args.n), "--seed", "0", "--token-confidence", "20",
                        "--out", str(bank), "--quiet"], check=True, cwd=ROOT)
        rows = []
        for row in online[name]["rows"]:
            if not row["method"].startswith("early-stop eta="):
                continue
            eta = float(row["method"].split("=")[1])
            replayed = replay_in_order(bank, eta, args.window, args.warmup)
            rows.append({"eta": eta, "online_accuracy": row["accuracy"], "online_tokens": row["tokens"],
                         "online_stopped": row.get("stopped_traces"), **{f"replay_{k}": v for k, v in replayed.items()}})
        sim = json.loads(subprocess.run([*TTSCALE, "simulate", str(bank), "--json", "--early-stop-window", str(args.window),
                                         "--early-stop-warmup", str(args.warmup)], check=True, cwd=ROOT,
                                        capture_output=True, text=True).stdout)
        out["sets"][name] = {"problems": args.limit, "n": args.n, "in_order": rows, "simulate": {
            "reference": sim["reference"], "deepconf_online": sim["rules"]["deepconf-online"],
            "majority_tokens": max(p["mean_tokens"] for p in sim["rules"]["ppr-1v1"])}}
    (RESULTS / "early_stop_replay.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = ["# Online early stop replayed on stored token confidences (embedded model, vLLM)", "",
             f"`{out['command']}`; window {args.window}, warm-up {args.warmup}, top-k 20. The bank holds every trace in full "
             "with its per-token confidences (`ttscale sample --token-confidence 20`); the online figures are "
             "`evals/results/early_stop.json` (same request seeds).", ""]
    for name, s in out["sets"].items():
        lines += [f"## {name} set, {s['problems']} problems x {s['n']} traces", "",
                  "In bank order (warm-up = the first traces, as online):", "",
                  "| eta | online accuracy | replay accuracy | online tokens | replay tokens | online stopped | replay stopped |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for r in s["in_order"]:
            lines.append(f"| {r['eta']:g} | {100 * r['online_accuracy']:.2f}% | {100 * r['replay_accuracy']:.2f}% | "
                         f"{r['online_tokens']:,} | {r['replay_tokens']:,} | {r['online_stopped'] if r['online_stopped'] is not None else '-'} | "
                         f"{r['replay_stopped']} |")
        ref = s["simulate"]["reference"]
        lines += ["", f"`ttscale simulate` (20 seeded orders per question): majority@{ref['k']} {100 * ref['accuracy']:.2f}% at "
                  f"{s['simulate']['majority_tokens']:.0f} tokens per question", "",
                  "| eta | accuracy | stderr | tokens/question | saved | stopped share |", "|---:|---:|---:|---:|---:|---:|"]
        for p in s["simulate"]["deepconf_online"]:
            saved = 1 - p["mean_tokens"] / s["simulate"]["majority_tokens"]
            lines.append(f"| {p['param']:g} | {100 * p['accuracy']:.2f}% | {100 * p['stderr']:.2f} | {p['mean_tokens']:.1f} | "
                         f"{100 * saved:.1f}% | {p['stopped']:.3f} |")
        lines.append("")
    (RESULTS / "early_stop_replay.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
