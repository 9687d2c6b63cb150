"""The best any vote-only adaptive rule can do on a bank: an exact Bayes-optimal frontier.

A vote-only rule (ASC, ESC, PPR-1v1, first-to-ahead, ttscale's allocators) decides whether a
question gets another sample from that question's votes alone, and treats answer labels as
labels (it never reads the answer string). Under the replay that ``evals/sample_efficiency.py``
scores (each question's bank samples in a uniformly random order, the first K read), the sorted
vote counts plus the number of samples without an answer are a sufficient statistic: the order
of the votes carries no further information about the question.

This script gives such a rule the most favourable prior there is, the bank itself: a question
is one of the bank's questions drawn uniformly (the rule knows every question's exact answer
distribution, not which question it faces). Backward induction over the sufficient statistic
then gives, for each price mu per sample, the policy maximising accuracy - mu * samples, and
the answer it returns at the stop is the class most likely to be correct (at least as good as
the tie-credited majority the real rules return). Sweeping mu traces the upper concave
frontier of (mean samples, accuracy) for every vote-only rule: no such rule, however clever,
reaches a given accuracy with fewer mean samples per question than this frontier says (rules
coordinating a global budget across questions included, by the usual Lagrangian argument, as
long as they do not use the finite set's composition to tell which question is which).

The tables are ``ttscale.adaptive.exact_replay.VoteStates`` (each question's draws without replacement
enumerated): 328 states and seconds on the GPT-4 bank, 736,042 states and about 2 minutes on the
Llama bank's 40-of-48 replay. They are checked against the replay of real rules before use.

On the Llama bank the bound is loose: its fine-grained states nearly identify the question, which
the bank-as-prior exploits. ``--crossfit`` measures what a prior learned from other questions gives:
a stopping policy over (n, top two counts, distinct answers) cells, by backward induction on the
exact tables of one half of the questions, scored exactly on the other half (both ways); and the
bound's own construction held out, the Bayes rule with one half's questions as its prior applied
state by state on the other half (``crossfit_bayes_frontier``).

Run:  python evals/vote_bound.py [--bank gsm8k_gpt4_cot-pot|gsm8k400_llama2-13b_pot|both] [--crossfit]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ttscale.adaptive.exact_replay import VoteStates, bayes_frontier, crossfit_bayes_frontier, samples_to_reach  # noqa: E402
from ttscale.adaptive.simulate import replay_pool, run_rule  # noqa: E402
from ttscale.adaptive.stopping import ASC, PPR1v1  # noqa: E402
from ttscale.answers.grading import load_candidates  # noqa: E402
from ttscale.estimate import exact as estimate  # noqa: E402

BANKS = REPO.parent / "shared" / "data" / "banks"
SETUP = [("gsm8k_gpt4_cot-pot", 12), ("gsm8k400_llama2-13b_pot", 40)]


def rule_crossing(tables: VoteStates, make, lo: float, hi: float, target: float) -> tuple[float, float] | None:
    """(mean samples, parameter) where a one-parameter rule's exact accuracy first reaches target:
    bisection on the parameter (accuracy rises from ``lo`` to ``hi``), then the mix of the two
    parameters around the crossing, as the replay tables interpolate."""
    s_hi, a_hi = tables.evaluate(make(hi))
    if a_hi < target:
        return None
    s_lo, a_lo = tables.evaluate(make(lo))
    if a_lo >= target:
        return s_lo, lo
    for _ in range(40):
        mid = (lo + hi) / 2
        s_m, a_m = tables.evaluate(make(mid))
        if a_m >= target:
            hi, s_hi, a_hi = mid, s_m, a_m
        else:
            lo, s_lo, a_lo = mid, s_m, a_m
    return s_lo + (target - a_lo) / (a_hi - a_lo) * (s_hi - s_lo) if a_hi > a_lo else s_hi, hi


def exact_figures(tables: VoteStates, target: float) -> dict:
    """Exact samples to reach ``target``: ASC and PPR-1v1 ((samples, parameter) by bisection), and the
    Bayes-optimal vote-only rule answering the plurality / the likeliest class (with its frontier)."""
    asc = rule_crossing(tables, ASC, 0.5 + 1e-9, 1 - 1e-9, target)
    ppr = rule_crossing(tables, lambda d: PPR1v1(1 - d), 1e-9, 1 - 1e-9, target)
    bayes = bayes_frontier(tables, plurality=False)
    bayes_plural = bayes_frontier(tables)
    return {"asc_exact": asc, "ppr_exact": ppr and (ppr[0], 1 - ppr[1]),
            "bayes_samples": samples_to_reach(bayes, target), "bayes_plurality_samples": samples_to_reach(bayes_plural, target),
            "bayes_frontier": bayes, "bayes_plurality_frontier": bayes_plural}


def learn_cells(tables: VoteStates, price: float) -> dict[tuple[int, int, int, int], bool]:
    """Continue? per (n, v1, v2, distinct) cell: backward induction with each cell's value the
    probability-weighted mean of its exact states' (an approximation: it ignores how the policy's
    earlier stops reweight the states inside a cell), answering the plurality."""
    K = tables.max_samples
    decisions: dict[tuple[int, int, int, int], bool] = {}
    next_value = None  # per exact state at n + 1
    for n in range(K, 0, -1):
        keys = [(n, int(a), int(b), int(c)) for a, b, c in zip(tables.v1[n], tables.v2[n], tables.distinct[n])]
        ids: dict[tuple[int, int, int, int], int] = {}
        cell = np.array([ids.setdefault(k, len(ids)) for k in keys], dtype=np.int64)
        weight = np.maximum(np.bincount(cell, weights=tables.prob[n], minlength=len(ids)), 1e-300)
        stop = np.bincount(cell, weights=tables.prob[n] * tables.plurality_credit[n], minlength=len(ids)) / weight
        if n == K:
            value = stop
        else:
            P = tables.trans[n]
            cont_value = np.bincount(cell, weights=tables.prob[n] * (P @ next_value), minlength=len(ids)) / weight - price
            can = np.bincount(cell, weights=(np.diff(P.indptr) > 0).astype(float), minlength=len(ids)) > 0
            cont = (cont_value > stop) & can
            decisions.update((k, bool(cont[i])) for k, i in ids.items())
            value = np.where(cont, cont_value, stop)
        next_value = value[cell]
    return decisions


def crossfit(problems, K: int, target: float, seed: int = 7) -> dict:
    """Cell policies learned on one half of the questions, scored exactly on the other (both ways)."""
    order = np.random.default_rng(seed).permutation(len(problems))
    halves = [[problems[i] for i in order[: len(order) // 2]], [problems[i] for i in order[len(order) // 2:]]]
    tables = [VoteStates(h, K) for h in halves]
    share = [len(h) / len(problems) for h in halves]
    points = []
    for price in np.geomspace(1e-5, 0.05, 40):
        samples = acc = 0.0
        for train, test in ((0, 1), (1, 0)):
            cells = learn_cells(tables[train], float(price))
            t = tables[test]
            s, a = t.run_policy(lambda n, t=t: np.array([cells.get((n, int(x), int(y), int(z)), True)
                                                         for x, y, z in zip(t.v1[n], t.v2[n], t.distinct[n])], dtype=bool))
            samples += share[test] * s
            acc += share[test] * a
        points.append((samples, acc))
    bayes = crossfit_bayes_frontier(tables)
    return {"samples": samples_to_reach(points, target), "best_accuracy": max(a for _, a in points),
            "points": points, "bayes_samples": samples_to_reach(bayes, target),
            "bayes_best_accuracy": max(a for _, a in bayes), "bayes_points": bayes}


def run_bank(name: str, K: int, tolerance: float, check_permutations: int, with_crossfit: bool = False) -> dict:
    t0 = time.time()
    _, graded = load_candidates(BANKS / f"{name}.jsonl", equivalence="math")
    problems = [p for p in graded if p.n >= K]
    counts, correct, n = estimate.candidates_to_arrays(problems)
    reference = float(estimate.majority_at_k(counts, correct, n, [K]).mean())
    target = reference - tolerance
    tables = VoteStates(problems, K)
    # The tables must reproduce real rules: the same rule scored here and by replay.
    pool = replay_pool(problems, K, check_permutations, seed=0)
    checks = []
    for rule in (ASC(0.8), ASC(0.95), PPR1v1(0.1)):
        exact = tables.evaluate(rule)
        rep = run_rule(pool, rule)
        checks.append({"rule": f"{rule.name} {rule.param:g}", "exact_samples": exact[0], "exact_accuracy": exact[1],
                       "replay_samples": rep.mean_samples, "replay_accuracy": rep.accuracy, "replay_stderr": rep.stderr})
    return {"bank": name, "k": K, "questions": len(problems), "reference": reference, "target": target, "states": tables.states,
            "checks": checks, **exact_figures(tables, target),
            "crossfit": crossfit(problems, K, target) if with_crossfit else None, "seconds": time.time() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bank", choices=["gsm8k_gpt4_cot-pot", "gsm8k400_llama2-13b_pot", "both"], default="gsm8k_gpt4_cot-pot")
    ap.add_argument("--tolerance", type=float, default=0.001)
    ap.add_argument("--check-permutations", type=int, default=40)
    ap.add_argument("--crossfit", action="store_true", help="also a cell policy learned on half the questions, scored on the rest")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    banks = [b for b in SETUP if args.bank in (b[0], "both")]
    out = []
    for name, K in banks:
        r = run_bank(name, K, args.tolerance, args.check_permutations, args.crossfit)
        out.append(r)
        fmt = lambda x: "  n/a" if x is None else f"{x:6.2f}"  # noqa: E731
        print(f"{name}: {r['questions']} questions, K = {K}, exact majority@K {100 * r['reference']:.2f}%, "
              f"target {100 * r['target']:.2f}%; {r['states']} vote states, {r['seconds']:.0f} s")
        print("  check, tables against replay:")
        for c in r["checks"]:
            print(f"    {c['rule']:<12} tables {c['exact_samples']:6.3f} samples {100 * c['exact_accuracy']:6.2f}%   "
                  f"replay ({args.check_permutations} permutations) {c['replay_samples']:6.3f} samples "
                  f"{100 * c['replay_accuracy']:6.2f}% +- {100 * c['replay_stderr']:.2f}")
        asc = r["asc_exact"][0] if r["asc_exact"] else None
        ppr = r["ppr_exact"][0] if r["ppr_exact"] else None
        print("  mean samples per question to reach the target (exact, no permutation noise):")
        print(f"    ASC                                    {fmt(asc)}")
        print(f"    PPR-1v1                                {fmt(ppr)}")
        for key, label in (("bayes_plurality_samples", "Bayes-optimal stopping, plurality answer"),
                           ("bayes_samples", "Bayes-optimal stopping and answer")):
            x = r[key]
            ratio = "" if x is None or asc is None else f"   (ASC / this = {asc / x:.2f}x at most)"
            print(f"    {label:<38} {fmt(x)}{ratio}")
        if r["crossfit"] is not None:
            c = r["crossfit"]
            print(f"    cell policy learned on the other half   {fmt(c['samples'])}   (best accuracy {100 * c['best_accuracy']:.2f}%)")
            x = c["bayes_samples"]
            ratio = "" if x is None or r["bayes_plurality_samples"] is None else f"   ({x / r['bayes_plurality_samples']:.2f}x the in-sample bound)"
            print(f"    Bayes rule, the other half as its prior {fmt(x)}{ratio}   (best accuracy {100 * c['bayes_best_accuracy']:.2f}%)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
