"""The planner's shipped defaults on vote banks made after they were chosen (issue 15).

Every figure of ``evals/unseen_allocation.py`` and ``evals/unseen_majority.py`` is held out by
leaving one corpus out, but the corpora themselves were all in view while the protocol and its
grids were designed. This scores the defaults exactly as shipped -- nothing is fitted or chosen on
these banks -- on vote banks sampled afterwards (``evals/corpora.py --which votes-hard-T0.7``):

* allocation: the live ``default`` rule (``SettledMajority`` with ``DEFAULT_ALPHA`` /
  ``DEFAULT_REST``, swept over its confidence) against ASC, ESC, PPR-1v1, first-to-ahead, the
  vote-only bound in-sample and held out (5 halvings, 1 above 100,000 vote states, as
  ``ttscale simulate --exact``), mean samples to majority@K - 0.1 point;
  ``Budget(samples=K, adaptive=True)`` at its shipped confidence, and ``Budget.from_pilot``'s
  workload rule at its shipped price (its prior fitted on the other half's votes);
* majority extrapolation: ``ttscale plan``'s ``DirichletMajorityModel()`` (library defaults) from
  8-sample pilots (10 seeds) to maj@K, with its 95% interval.

    .venv/bin/python evals/fresh_corpus.py          # about 20 minutes (K = 40: 202,941 vote states)
Writes evals/results/fresh_corpus.json and .txt.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "evals"))

import unseen_allocation as alloc  # noqa: E402

from ttscale.adaptive.stopping import DEFAULT_ALPHA, DEFAULT_REST  # noqa: E402
from ttscale.answers.grading import load_candidates  # noqa: E402
from ttscale.curves import DirichletMajorityModel  # noqa: E402
from ttscale.estimate import exact as est  # noqa: E402
from ttscale.planning.simulation import held_out_bound, held_out_splits  # noqa: E402

FRESH = {  # name -> (bank, K): made after the defaults were chosen, never in their corpora
    "arith-hard-T0.7": (alloc.DATA / "votes-hard-T0.7.jsonl", 16),
    "arith-hard-T0.7-K40": (alloc.DATA / "votes-hard-T0.7.jsonl", 40),
}
SHIPPED_WORKLOAD = "accuracy,K,20"
"""``Budget.from_pilot``'s shipped setting (objective, pilot, grid), as ``unseen_allocation`` keys it."""
PILOT, SEEDS, LEVEL = 8, 10, 0.95


def majority_check(path: Path, K: int) -> dict:
    _, problems = load_candidates(path)
    problems = [p for p in problems if p.n >= K]
    counts, correct, n = est.candidates_to_arrays(problems)  # maj@K over every K of each question's samples
    truth = float(est.majority_at_k(counts, correct, n, [K])[:, 0].mean())
    rows = []
    for seed in range(SEEDS):
        rng = np.random.default_rng(1000 + seed)
        pilot = [p.subset(rng.choice(p.n, size=PILOT, replace=False)) for p in problems]
        c, k, nn = est.candidates_to_arrays(pilot)
        model = DirichletMajorityModel(random_state=seed).fit(c, k, nn)
        pred = float(model.predict([K])[0])
        lo, hi = (float(v) for v in model.predict_interval(K, LEVEL))
        rows.append({"seed": seed, "pred": pred, "low": lo, "high": hi, "covers": lo <= truth <= hi})
    return {"K": K, "truth": truth, "pilots": rows, "mae": float(np.mean([abs(r["pred"] - truth) for r in rows])),
            "mean_error": float(np.mean([r["pred"] - truth for r in rows])),
            "coverage": float(np.mean([r["covers"] for r in rows]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", default=None, help="fresh corpora to score (default: all)")
    ap.add_argument("--cache", type=Path, default=REPO / "runs" / "unseen-cache")
    ap.add_argument("--out", type=Path, default=REPO / "evals" / "results" / "fresh_corpus")
    args = ap.parse_args()
    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    prior = f"{float(DEFAULT_ALPHA)},{float(DEFAULT_REST)}"
    report = {}
    for name, (path, K) in FRESH.items():
        if args.only is not None and name not in args.only:
            continue
        if not path.exists():
            say(f"{name}: {path} missing (make it with evals/corpora.py --which {path.stem})")
            continue
        alloc.CORPORA[name] = (path, K)
        t0 = time.time()
        r = alloc.evaluate_corpus(name, args.cache, say)
        _, problems = load_candidates(path)
        held = held_out_bound(problems, K, r["target"], seed=0, splits=held_out_splits(r["states"]))  # as simulate --exact
        default = r["per_prior"][prior]
        baseline = {k: v for k, v in r["samples"].items() if k != "default+signals"}
        best = min(v for v in baseline.values() if v is not None)
        (ls, la), = r["curves"][f"shipped-default:{prior}"]
        (ws, wa), = r["curves"][f"shipped-workload:{SHIPPED_WORKLOAD}"]
        maj = majority_check(path, K)
        report[name] = {
            "K": K, "questions": r["questions"], "reference": r["reference"], "target": r["target"], "states": r["states"],
            "default": default, "baselines": baseline, "best_baseline": best, "default+signals": r["samples"].get("default+signals"),
            "bound": r["bound"], "held_out": None if held is None else {"samples": held.samples, "best_accuracy": held.best_accuracy,
                                                                        "splits": held.splits},
            "workload": r["per_workload"][SHIPPED_WORKLOAD],
            "live_default": {"confidence": alloc.SHIPPED.confidence, "samples": ls, "accuracy": la},
            "live_workload": {"price": alloc.SHIPPED.price, "samples": ws, "accuracy": wa},
            "majority": maj, "seconds": time.time() - t0,
        }
    say()
    say("Shipped defaults on fresh banks (nothing fitted or chosen on them). Mean samples per question to reach")
    say("majority@K - 0.1 point, exact over every order (ESC: 400 seeded orders):")
    say(f"{'corpus':22s} {'K':>3s} {'maj@K':>6s} {'default':>8s} {'asc':>7s} {'esc':>7s} {'ppr-1v1':>7s} {'f-t-a':>7s} "
        f"{'signals':>7s} {'workload':>8s} {'bound':>7s} {'held out':>8s} {'def/best':>8s} {'def/bound':>9s} {'def/held':>8s}")
    num = lambda x, w=7: f"{'n/a':>{w}s}" if x is None else f"{x:{w}.2f}"  # noqa: E731
    for name, x in report.items():
        b, h = x["baselines"], x["held_out"]
        hs = None if h is None else h["samples"]
        say(f"{name:22s} {x['K']:3d} {100 * x['reference']:6.2f} {num(x['default'], 8)} {num(b.get('asc'))} {num(b.get('esc'))} "
            f"{num(b.get('ppr-1v1'))} {num(b.get('first-to-ahead'))} {num(x['default+signals'])} {num(x['workload'], 8)} "
            f"{num(x['bound'])} {num(hs, 8)} {x['default'] / x['best_baseline']:8.3f} {x['default'] / x['bound']:9.3f} "
            + (f"{x['default'] / hs:8.3f}" if hs else f"{'-':>8s}"))
    say()
    say("At the shipped knobs: Budget(samples=K, adaptive=True) (confidence "
        f"{alloc.SHIPPED.confidence:g}) and Budget.from_pilot's workload rule (price {alloc.SHIPPED.price:g}); samples, accuracy %")
    for name, x in report.items():
        d, w = x["live_default"], x["live_workload"]
        say(f"{name:22s} maj@K {100 * x['reference']:6.2f}  default {d['samples']:6.2f} {100 * d['accuracy']:6.2f}  "
            f"workload {w['samples']:6.2f} {100 * w['accuracy']:6.2f}")
    say()
    say(f"Majority extrapolation (ttscale plan's DirichletMajorityModel(), library defaults) from {PILOT}-sample pilots, "
        f"{SEEDS} seeds: predicted maj@K, error, {100 * LEVEL:g}% interval coverage")
    for name, x in report.items():
        m = x["majority"]
        preds = [100 * r["pred"] for r in m["pilots"]]
        say(f"{name:22s} K {m['K']:3d} truth {100 * m['truth']:6.2f}  predicted {np.mean(preds):6.2f} "
            f"(range {min(preds):.2f}-{max(preds):.2f})  MAE {100 * m['mae']:.2f}  coverage {m['coverage']:.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    args.out.with_suffix(".txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
