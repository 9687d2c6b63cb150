"""Sample efficiency of adaptive rules: mean samples per question to match majority@K.

Banks (../shared/data/banks), side by side in one run:
  * gsm8k400_llama2-13b_pot.jsonl  400 x 48 samples, K = 40;
  * gsm8k_gpt4_cot-pot.jsonl       1319 x 9-12 samples, K = 12 (the bank's maximum; the 1315
                                   questions with 12 samples).
For each bank every question's samples are shuffled ``--permutations`` times (seeded; questions
with fewer than K samples left out) and every rule reads the first K of each shuffle:
  ASC, ESC, PPR-1v1, first-to-ahead   per-question stopping rules over a parameter grid;
  alloc-online   ttscale's online allocator under a global budget (pilot of 2 per question,
                 then rounds to the questions whose vote is most likely to flip before K;
                 empirical-Bayes prior fitted on the pilot), read off at a grid of budgets;
  alloc-online-fine  the same with rounds of 1% of the questions instead of 5% (finer greedy
                 steps; on a live server smaller rounds mean smaller batches, hence the default 5%);
  alloc-static   pilot of 4, then one greedy split of the rest by expected marginal gain.
Analysis printed per bank (what limits any vote-only allocator): the questions majority@K almost
never gets right (exact per-question maj@K < 5%) take most of the adaptive budget; an oracle that
skips exactly those after the pilot shows the headroom, and the AUC of the leader's vote share
after 8 samples for "majority@K gains over majority@8" vs "hopeless" shows how little of it the
votes reveal.
Exact rows (no permutation noise; ``evals/vote_bound.py``): ASC and PPR-1v1 scored over every order
of every question's samples at once, and two bounds: the Bayes-optimal vote-only rule that knows
the bank's own per-question answer distributions (answering the plurality / the likeliest class).
No vote-only rule or allocator reaches the target with fewer mean samples than ``bound-plurality``
(the rules here all answer the plurality). The exact tables take about 2 minutes on the Llama bank.
Target: the exact majority@K of the bank (ttscale.estimate.majority_at_k) minus 0.1 point.
Per rule: the mean samples per question at which its accuracy curve (points sorted by mean
samples) first reaches the target, linearly INTERPOLATED between the two grid points around the
crossing; "ratio" = the best of ASC/ESC/PPR-1v1 divided by the rule's samples (> 1: fewer samples).
Accuracy is the mean over permutations; its standard error (printed) is of the order of the
0.1-point tolerance, so crossings move by a sample or two between seed sets.

The allocator's settings were chosen on the permutations of seed 1000; the default report
uses seed 0 (other permutations).

Run (about 8 minutes on 2 busy cores):  python evals/sample_efficiency.py
Quick look:                               python evals/sample_efficiency.py --permutations 6
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

from vote_bound import exact_figures  # noqa: E402

from ttscale.adaptive.allocate import OnlineAllocator, StaticAllocator  # noqa: E402
from ttscale.adaptive.exact_replay import VoteStates  # noqa: E402
from ttscale.adaptive.simulate import (  # noqa: E402
    RulePoint,
    replay_pool,
    run_allocator,
    run_rule,
    run_static,
)
from ttscale.adaptive.stopping import ASC, ESC, FirstToAhead, PPR1v1  # noqa: E402
from ttscale.answers.grading import load_candidates  # noqa: E402

BANKS = REPO.parent / "shared" / "data" / "banks"
SETUP = [("gsm8k400_llama2-13b_pot", 40), ("gsm8k_gpt4_cot-pot", 12)]
BASELINES = ("asc", "esc", "ppr-1v1")
TOLERANCE = 0.001  # 0.1 point

GRIDS = {
    "asc": [ASC(t) for t in (0.75, 0.8, 0.85, 0.875, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995, 0.999)],
    "esc": [ESC(w) for w in (2, 3, 4, 5, 6, 7, 8, 10, 12)],
    "ppr-1v1": [PPR1v1(d) for d in (0.99, 0.95, 0.9, 0.7, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.001)],
    "first-to-ahead": [FirstToAhead(m) for m in (2, 3, 4, 5, 6, 7, 8, 10, 12)],
}


def crossing(points: list[RulePoint], target: float) -> tuple[float | None, str, float]:
    """(mean samples where accuracy first reaches target, how it was found, stderr near there)."""
    pts = sorted(points, key=lambda p: p.mean_samples)
    for i, p in enumerate(pts):
        if p.accuracy >= target:
            if i == 0:
                return p.mean_samples, f"at first grid point (param {p.param:g})", p.stderr
            q = pts[i - 1]
            frac = (target - q.accuracy) / (p.accuracy - q.accuracy)
            s = q.mean_samples + frac * (p.mean_samples - q.mean_samples)
            return s, f"interp. {q.param:g}->{p.param:g}", max(p.stderr, q.stderr)
    return None, "not reached", pts[-1].stderr if pts else float("nan")


def headroom(pool, pilot: int, budgets: list[float]) -> dict:
    """Oracle skipping of hopeless questions, and how well 8 votes tell them from questions that gain."""
    from scipy.stats import mannwhitneyu

    Q, R, K = pool.sequences.shape
    per_q = pool.credit.mean(axis=1)  # (Q, K): each question's majority@n over the permutations
    hopeless = per_q[:, -1] < 0.05
    gains = per_q[:, -1] - per_q[:, min(7, K - 1)] > 0.05

    class SkipHopeless(OnlineAllocator):
        def open_mask(self) -> np.ndarray:
            return super().open_mask() & ~hopeless

    oracle = run_allocator(pool, lambda: SkipHopeless(max_per_question=K, pilot=pilot), budgets)
    top = max(oracle, key=lambda p: p.accuracy)
    n8 = min(8, K)
    share = np.array([[np.bincount(s[s >= 0]).max() / n8 if (s >= 0).any() else 0.0 for s in pool.sequences[:, r, :n8]]
                      for r in range(R)]).T  # (Q, R)
    a, b = share[gains].ravel(), share[hopeless].ravel()
    auc = float(mannwhitneyu(a, b).statistic / (a.size * b.size)) if a.size and b.size else None
    return {"hopeless_questions": int(hopeless.sum()), "oracle_best_accuracy": top.accuracy,
            "oracle_samples": top.mean_samples, "auc_share8_gain_vs_hopeless": auc}


def exact_rows(problems, K: int, target: float) -> dict:
    """Exact crossings (no permutation noise) of the count-based rules, and the vote-only bound.

    Over every order of each question's samples at once (``evals/vote_bound.py``): ASC and PPR-1v1
    by bisection on their parameter; the Bayes-optimal vote-only rule that knows the bank's
    per-question answer distributions as its prior (answering the plurality, and answering the class
    most likely correct) bounds what any vote-only rule or allocator can reach."""
    f = exact_figures(VoteStates(problems, K), target)
    asc, ppr = f["asc_exact"], f["ppr_exact"]
    return {
        "asc (exact)": {"samples": asc and asc[0], "how": f"threshold {asc[1]:.4f}" if asc else "not reached"},
        "ppr-1v1 (exact)": {"samples": ppr and ppr[0], "how": f"delta {ppr[1]:.4f}" if ppr else "not reached"},
        "bound-plurality": {"samples": f["bayes_plurality_samples"], "how": "Bayes, bank as prior"},
        "bound-bayes": {"samples": f["bayes_samples"], "how": "Bayes, bank as prior"},
    }


def run_bank(name: str, K: int, permutations: int, seed: int, pilot: int, exact: bool = True) -> dict:
    t0 = time.time()
    _, problems = load_candidates(BANKS / f"{name}.jsonl", equivalence="math")
    pool = replay_pool(problems, K, permutations, seed)
    target = pool.reference - TOLERANCE
    curves: dict[str, list[RulePoint]] = {n: [run_rule(pool, r) for r in grid] for n, grid in GRIDS.items()}
    step = 0.5 if K > 20 else 0.125
    budgets = list(np.arange(1.0, K + 1e-9, step))
    curves["alloc-online"] = run_allocator(pool, lambda: OnlineAllocator(max_per_question=K, pilot=pilot), budgets)
    curves["alloc-online-fine"] = run_allocator(pool, lambda: OnlineAllocator(max_per_question=K, pilot=pilot, round_share=0.01), budgets)
    curves["alloc-static"] = run_static(pool, lambda: StaticAllocator(K), budgets, pilot=4)
    never = float(pool.credit[:, :, -1].mean())  # majority of all K samples on these very permutations
    rows = {}
    for rule, pts in curves.items():
        s, how, se = crossing(pts, target)
        rows[rule] = {"samples": s, "how": how, "stderr": se}
    best = min((rows[b]["samples"] for b in BASELINES if rows[b]["samples"] is not None), default=None)
    if exact:
        for rule, row in exact_rows(problems, K, target).items():
            rows[rule] = {**row, "stderr": 0.0}
    best_exact = min((rows[b]["samples"] for b in ("asc (exact)", "ppr-1v1 (exact)", "esc") if rows.get(b, {}).get("samples") is not None),
                     default=None)
    for r in rows.values():
        r["ratio"] = None if (best is None or r["samples"] is None) else best / r["samples"]
        r["ratio_exact"] = None if (best_exact is None or r["samples"] is None) else best_exact / r["samples"]
    analysis = headroom(pool, pilot, budgets)
    return {"analysis": analysis, "bank": name, "k": K, "questions": pool.questions, "dropped": pool.dropped, "reference": pool.reference,
            "perm_reference": never, "target": target, "rows": rows, "seconds": time.time() - t0,
            "curves": {n: [p.to_json() for p in pts] for n, pts in curves.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--permutations", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0, help="seed of the permutations (settings were tuned on 1000)")
    ap.add_argument("--pilot", type=int, default=2, help="online allocator's pilot samples per question")
    ap.add_argument("--json", type=Path, default=None, help="also write every curve and crossing to this file")
    ap.add_argument("--no-exact", action="store_true", help="skip the exact rows and bounds (about 2 minutes on the Llama bank)")
    args = ap.parse_args()
    results = [run_bank(name, K, args.permutations, args.seed, args.pilot, not args.no_exact) for name, K in SETUP]
    print(f"Mean samples per question to reach majority@K within 0.1 point; {args.permutations} permutations, seed {args.seed}.")
    print("samples: linear interpolation between the two grid points around the crossing; ratio = best of ASC/ESC/PPR-1v1 / samples;")
    print("exact = the same with ASC and PPR-1v1 scored exactly over all orders (rows '(exact)', no permutation noise) and ESC from replay.")
    print("bound-*: the Bayes-optimal vote-only rule knowing the bank's per-question answer distributions (evals/vote_bound.py):")
    print("no vote-only rule or allocator needs fewer samples (bound-plurality: answering the plurality, as every rule here does).\n")
    head = f"{'rule':<17}" + "".join(f"| {r['bank'][:26]:<26} samples  ratio  exact  {'(crossing)':<22}" for r in results)
    print(head)
    sub = f"{'':<17}" + "".join(f"| maj@{r['k']} = {100 * r['reference']:.2f}% (perm set {100 * r['perm_reference']:.2f}%)"
                                  f", target {100 * r['target']:.2f}%".ljust(72) for r in results)
    print(sub)
    print("-" * len(head))
    for rule in results[0]["rows"]:
        line = f"{rule:<17}"
        for r in results:
            row = r["rows"].get(rule, {"samples": None, "ratio": None, "ratio_exact": None, "how": "not run"})
            s = "   n/a" if row["samples"] is None else f"{row['samples']:6.2f}"
            ratio = "  n/a " if row["ratio"] is None else f"{row['ratio']:5.2f}x"
            rex = "  n/a " if row["ratio_exact"] is None else f"{row['ratio_exact']:5.2f}x"
            line += f"| {'':<26} {s}  {ratio} {rex}  {row['how']:<22}"
        print(line)
    print()
    for r in results:
        a = r["analysis"]
        auc = "n/a" if a["auc_share8_gain_vs_hopeless"] is None else f"{a['auc_share8_gain_vs_hopeless']:.2f}"
        print(f"{r['bank']}: {a['hopeless_questions']} hopeless questions (exact maj@{r['k']} < 5%); an oracle skipping exactly "
              f"those after the pilot reaches {100 * a['oracle_best_accuracy']:.2f}% with {a['oracle_samples']:.2f} samples per "
              f"question; AUC of the leader's share after 8 votes, gaining vs hopeless questions: {auc}")
    for r in results:
        se = np.mean([p["stderr"] for p in r["curves"]["asc"]])
        print(f"{r['bank']}: {r['questions']} questions ({r['dropped']} with fewer than {r['k']} samples left out), "
              f"accuracy stderr over permutations ~{100 * se:.2f} points, {r['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"seed": args.seed, "permutations": args.permutations, "banks": results}, indent=1))


if __name__ == "__main__":
    main()
