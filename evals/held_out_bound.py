"""The vote-only bound held out, next to the in-sample bound goal 5 of issue 15 measures against.

`exact.bound.plurality_answer` is the Bayes-optimal stopping rule with the bank itself as its prior:
it knows every question's answer distribution and is scored on those same questions. The project
never reports a rule fitted on a bank and scored on the same bank; this eval scores the bound's own
construction held out instead: the Bayes rule with one seeded half of the questions as its prior,
scored exactly on the other half and the other way round (``crossfit_bayes_frontier``), averaged
over several halvings price by price (``ttscale.planning.simulation.held_out_bound``, what
``ttscale plan --simulate --exact`` now reports as ``exact.bound.held_out``). Beside it, the live
``default`` rule's held-out figure from ``evals/unseen_allocation.py`` (its priors chosen on the
other corpora) and the best of ASC, ESC, PPR-1v1 and first-to-ahead.

Run (about 20 minutes on 2 cores, most of it the Llama-2 bank's tables):
    .venv/bin/python evals/held_out_bound.py [--splits 10] [--large-splits 3] [--folds 2]
``--folds F`` learns on F - 1 of F parts instead of half (the rule then sees more of the workload;
the results go to ``--out``, by default ``held_out_bound`` for 2 folds, ``held_out_bound_F`` else).
Writes evals/results/held_out_bound.json and .txt. Reads evals/results/unseen_allocation.json (K, target,
in-sample bound and `default` per corpus).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "evals"))

from unseen_allocation import CORPORA  # noqa: E402

from ttscale.adaptive.exact_replay import samples_to_reach  # noqa: E402
from ttscale.answers.grading import load_candidates  # noqa: E402
from ttscale.planning.simulation import HELD_OUT_LARGE_STATES, held_out_frontiers, pooled_held_out  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--splits", type=int, default=10, help="halvings per corpus")
    ap.add_argument("--large-splits", type=int, default=3, help=f"halvings where the tables exceed {HELD_OUT_LARGE_STATES:,} states")
    ap.add_argument("--folds", type=int, default=2, help="parts per split: the rule learns on all but one (2: halves)")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--out", type=Path, default=REPO / "evals" / "results" / "held_out_bound")
    args = ap.parse_args()
    if args.out.name == "held_out_bound" and args.folds != 2:
        args.out = args.out.with_name(f"held_out_bound_{args.folds}")
    allocation = json.loads((REPO / "evals" / "results" / "unseen_allocation.json").read_text())["corpora"]
    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    say("Mean samples per question to reach majority@K - 0.1 point, exact over every order. bound: the Bayes rule with")
    say(f"the bank as its prior (in-sample); held out: that rule learnt on {args.folds - 1} of {args.folds} parts of the questions, scored on")
    say("the part left out, in turn, averaged over seeded splits (min-max of single splits beside it); default: the live rule with")
    say("priors chosen on the other corpora; baseline: the best of ASC, ESC, PPR-1v1, first-to-ahead (evals/unseen_allocation.py).")
    say(f"{'corpus':20s} {'K':>3s} {'splits':>6s} {'bound':>7s} {'held out':>8s} {'single splits':>17s} {'default':>8s} "
        f"{'baseline':>8s} {'default/bound':>13s} {'default/held out':>16s}")
    report = {}
    names = [n for n in CORPORA if (args.only is None or n in args.only) and CORPORA[n][0].exists() and n in allocation]
    for name in names:
        t0 = time.time()
        # K, the target (majority@K - 0.1 point), the in-sample bound and the table's size as
        # unseen_allocation measured them on the same exact tables
        row = allocation[name]
        K, goal, bound = row["K"], row["target"], row["bound"]
        _, problems = load_candidates(CORPORA[name][0])
        splits = args.splits if row["states"] <= HELD_OUT_LARGE_STATES else args.large_splits
        frontiers = held_out_frontiers(problems, K, seed=0, splits=splits, folds=args.folds)
        pooled = None if frontiers is None else pooled_held_out(frontiers, goal)
        single = [] if frontiers is None else [samples_to_reach(f, goal) for f in frontiers]
        reached = [s for s in single if s is not None]
        default = row["samples"]["default"]
        baseline = min(v for k, v in row["samples"].items() if v is not None and k not in ("default", "default+signals"))
        held = None if pooled is None else pooled.samples
        report[name] = {"K": K, "splits": splits, "folds": args.folds, "bound": bound, "held_out": held,
                        "held_out_best_accuracy": None if pooled is None else pooled.best_accuracy,
                        "single_halvings": single, "default": default, "best_baseline": baseline,
                        "default_vs_bound": default / bound, "default_vs_held_out": None if held is None else default / held,
                        "seconds": time.time() - t0}
        spread = (f"{min(reached):.2f}-{max(reached):.2f}" if reached else "none") + (
            f" ({len(single) - len(reached)} miss)" if len(reached) < len(single) else "")
        held_cell = f"{held:8.2f}" if held is not None else f"{'none':>8s}"
        ratio = f"{default / held:16.3f}" if held is not None else f"{'held out misses':>16s}"
        say(f"{name:20s} {K:3d} {splits:6d} {bound:7.2f} {held_cell} {spread:>17s} {default:8.2f} {baseline:8.2f} "
            f"{default / bound:13.3f} {ratio}")
        if held is None and pooled is not None:
            say(f"{'':20s} held out never reaches the target: best {100 * pooled.best_accuracy:.2f}% vs target {100 * goal:.2f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    args.out.with_suffix(".txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
