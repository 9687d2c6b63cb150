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

Exact: each question's probability of every vote-count state is enumerated (sub-multisets of its
K samples drawn without replacement), so it runs where questions have few answer classes. The
GPT-4 bank (1315 x 12 samples, at most 8 classes) takes seconds; the Llama bank's 40-of-48
replay has up to 19 classes per question (10^10 sub-multisets) and is out of reach this way.

Run:  python evals/vote_bound.py [--bank gsm8k_gpt4_cot-pot --k 12]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from math import comb
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ttscale import estimate  # noqa: E402
from ttscale.answers import AnswerClassifier, EquivalenceConfig, EquivalenceMode  # noqa: E402
from ttscale.bank import read_bank  # noqa: E402
from ttscale.grading import bank_candidates  # noqa: E402
from ttscale.simulate import replay_pool, run_rule  # noqa: E402
from ttscale.stopping import ASC, PPR1v1, StoppingRule, VoteTrajectories  # noqa: E402

BANKS = REPO.parent / "shared" / "data" / "banks"
SETUP = [("gsm8k_gpt4_cot-pot", 12), ("gsm8k400_llama2-13b_pot", 40)]

State = tuple[tuple[int, ...], int]  # (vote counts sorted descending, samples without an answer)


def question_tables(classes: np.ndarray, class_correct: np.ndarray, K: int, weight: float,
                    L: dict[State, float], A: dict[State, dict[int, float]]) -> None:
    """Add one question's probability of every state after n <= K draws (without replacement).

    Classes are folded in one at a time, merging partial states with the same sorted counts (so a
    question with many one-vote classes stays cheap): P(counts c) = prod_i C(m_i, c_i) / C(N, n).
    """
    N = classes.size
    counts = np.bincount(classes[classes >= 0], minlength=class_correct.size)
    m0 = int((classes < 0).sum())
    # partial state: (sorted nonzero counts, no-answer count, correct class's count) -> combinatorial weight
    part: dict[tuple[tuple[int, ...], int, int], float] = {((), 0, 0): 1.0}
    if m0:
        part = {((), c, 0): float(comb(m0, c)) for c in range(min(m0, K) + 1)}
    for i in np.flatnonzero(counts):
        m, ok = int(counts[i]), bool(class_correct[i])
        nxt: dict[tuple[tuple[int, ...], int, int], float] = defaultdict(float)
        for (votes, z, cc), w in part.items():
            room = K - sum(votes) - z
            for c in range(min(m, room) + 1):
                key = (tuple(sorted(votes + (c,), reverse=True)) if c else votes, z, c if ok else cc)
                nxt[key] += w * comb(m, c)
        part = nxt
    for (votes, z, cc), w in part.items():
        n = sum(votes) + z
        if n == 0:
            continue
        p = weight * w / comb(N, n)
        L[(votes, z)] += p
        if cc:
            A[(votes, z)][cc] += p


class Tables:
    """Every vote state's probability, transitions and stop values under the bank-as-prior mixture,
    as arrays per number of samples n (state lists ``levels[n]``, sparse transitions n -> n+1)."""

    def __init__(self, L: dict[State, float], A: dict[State, dict[int, float]], K: int) -> None:
        from scipy.sparse import csr_matrix

        self.K = K
        by_n: dict[int, list[State]] = defaultdict(list)
        for s in L:
            by_n[sum(s[0]) + s[1]].append(s)
        self.levels = [by_n[n] for n in range(K + 1)]
        index = [{s: i for i, s in enumerate(lv)} for lv in self.levels]
        self.prob = [np.array([L[s] for s in lv]) for lv in self.levels]
        # Chance the answer returned at the stop is right, given the state: the class most likely
        # correct (Bayes) and the tie-credited plurality (what the real rules return).
        self.stop_best, self.stop_plural, self.votes1, self.votes2, self.distinct = [], [], [], [], []
        for lv in self.levels:
            best, plural = np.zeros(len(lv)), np.zeros(len(lv))
            for i, s in enumerate(lv):
                mult: dict[int, int] = defaultdict(int)
                for v in s[0]:
                    mult[v] += 1
                best[i] = max((A[s].get(v, 0.0) / k for v, k in mult.items()), default=0.0) / L[s]
                plural[i] = A[s].get(s[0][0], 0.0) / mult[s[0][0]] / L[s] if s[0] else 0.0
            self.stop_best.append(best)
            self.stop_plural.append(plural)
            self.votes1.append(np.array([s[0][0] if s[0] else 0 for s in lv]))
            self.votes2.append(np.array([s[0][1] if len(s[0]) > 1 else 0 for s in lv]))
            self.distinct.append(np.array([len(s[0]) for s in lv]))
        # P(s' | s) for s at n, s' at n+1: L(s') * ways / ((n+1) L(s)), since under exchangeable
        # draws the last of the n+1 samples is any one of them with equal chance.
        self.trans = [None] * (K + 1)
        for n in range(1, K):
            rows, cols, vals = [], [], []
            for j, s2 in enumerate(self.levels[n + 1]):
                votes, z = s2
                for v in sorted(set(votes)):
                    lst = list(votes)
                    lst[lst.index(v)] = v - 1
                    prev = (tuple(sorted((c for c in lst if c > 0), reverse=True)), z)
                    rows.append(index[n][prev]); cols.append(j); vals.append(L[s2] * v * votes.count(v) / (n + 1) / L[prev])
                if z > 0:
                    prev = (votes, z - 1)
                    rows.append(index[n][prev]); cols.append(j); vals.append(L[s2] * z / (n + 1) / L[prev])
            self.trans[n] = csr_matrix((vals, (rows, cols)), shape=(len(self.levels[n]), len(self.levels[n + 1])))

    @property
    def states(self) -> int:
        return sum(len(lv) for lv in self.levels)

    def run(self, mu: float = 0.0, stop_rule: StoppingRule | None = None, plurality: bool = False,
            policy: dict[State, bool] | None = None) -> tuple[float, float]:
        """(mean samples, accuracy) of one policy on these tables.

        Default: the Bayes-optimal policy at price ``mu`` per sample (answering the class most likely
        correct, or the plurality with ``plurality=True``). ``stop_rule``: that rule (any rule reading the
        vote counts only: ASC, PPR-1v1, first-to-ahead; not ESC, which reads the order), answering the plurality. ``policy``: state -> continue?, answering the plurality
        (states it does not know continue); the Bayes policy of other tables (see ``decisions``).
        """
        plurality = plurality or stop_rule is not None or policy is not None
        stop_v = self.stop_plural if plurality else self.stop_best
        U = stop_v[self.K].copy()
        S = np.zeros_like(U)
        C = U.copy()
        self.last_decisions: dict[State, bool] = {}
        for n in range(self.K - 1, 0, -1):
            P = self.trans[n]
            go_on = P @ U - mu
            if stop_rule is not None:
                v1 = self.votes1[n][:, None]
                traj = VoteTrajectories(v1=v1, v2=self.votes2[n][:, None], distinct=self.distinct[n][:, None], run=np.zeros_like(v1))
                cont = ~(stop_rule.stop_mask(traj)[:, 0] & (v1[:, 0] > 0))
            elif policy is not None:
                cont = np.array([policy.get(s, True) for s in self.levels[n]], dtype=bool)
            else:
                cont = go_on > stop_v[n]
                self.last_decisions.update(zip(self.levels[n], cont.tolist()))
            cont &= np.asarray(P.sum(axis=1)).ravel() > 0
            U = np.where(cont, go_on, stop_v[n])
            S = np.where(cont, 1.0 + P @ S, 0.0)
            C = np.where(cont, P @ C, stop_v[n])
        w = self.prob[1] / self.prob[1].sum()
        return 1.0 + float(w @ S), float(w @ C)


def frontier(tables: Tables, mus: np.ndarray, plurality: bool = False) -> list[tuple[float, float]]:
    """(mean samples, accuracy) of the Bayes-optimal policy at each price mu."""
    return [tables.run(float(mu), plurality=plurality) for mu in mus]


def samples_at(points: list[tuple[float, float]], target: float) -> float | None:
    """Fewest mean samples reaching ``target`` on the upper concave hull of the points (two
    policies mixed at random reach any point between them)."""
    pts = sorted(points)
    best = None
    for i, (s0, a0) in enumerate(pts):
        if a0 >= target:
            best = s0 if best is None else min(best, s0)
        for s1, a1 in pts[i + 1:]:
            if a0 < target <= a1:
                s = s0 + (target - a0) / (a1 - a0) * (s1 - s0)
                best = s if best is None else min(best, s)
    return best


def rule_crossing(tables: Tables, make, lo: float, hi: float, target: float) -> tuple[float, float] | None:
    """(mean samples, parameter) where a one-parameter rule's exact accuracy first reaches target:
    bisection on the parameter (accuracy rises from ``lo`` to ``hi``), then the mix of the two
    parameters around the crossing, as the replay tables interpolate."""
    s_hi, a_hi = tables.run(stop_rule=make(hi))
    if a_hi < target:
        return None
    s_lo, a_lo = tables.run(stop_rule=make(lo))
    if a_lo >= target:
        return s_lo, lo
    for _ in range(40):
        mid = (lo + hi) / 2
        s_m, a_m = tables.run(stop_rule=make(mid))
        if a_m >= target:
            hi, s_hi, a_hi = mid, s_m, a_m
        else:
            lo, s_lo, a_lo = mid, s_m, a_m
    return s_lo + (target - a_lo) / (a_hi - a_lo) * (s_hi - s_lo) if a_hi > a_lo else s_hi, hi


def run_bank(name: str, K: int, tolerance: float, check_permutations: int) -> dict:
    t0 = time.time()
    data = read_bank(BANKS / f"{name}.jsonl")
    problems = [p for p in bank_candidates(data.records, AnswerClassifier(EquivalenceConfig(mode=EquivalenceMode.MATH))) if p.n >= K]
    counts, correct, n = estimate.candidates_to_arrays(problems)
    reference = float(estimate.majority_at_k(counts, correct, n, [K]).mean())
    target = reference - tolerance
    L: dict[State, float] = defaultdict(float)
    A: dict[State, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for p in problems:
        question_tables(p.classes, p.class_correct, K, 1.0 / len(problems), L, A)
    tables = Tables(L, A, K)
    # The tables must reproduce real rules: the same rule scored here and by replay.
    pool = replay_pool(problems, K, check_permutations, seed=0)
    checks = []
    for rule in (ASC(0.8), ASC(0.95), PPR1v1(0.1)):
        exact = tables.run(stop_rule=rule)
        rep = run_rule(pool, rule)
        checks.append({"rule": f"{rule.name} {rule.param:g}", "exact_samples": exact[0], "exact_accuracy": exact[1],
                       "replay_samples": rep.mean_samples, "replay_accuracy": rep.accuracy, "replay_stderr": rep.stderr})
    mus = np.concatenate([np.geomspace(1e-5, 0.2, 120), [0.0]])
    bayes = frontier(tables, mus)
    bayes_plural = frontier(tables, mus, plurality=True)
    asc = rule_crossing(tables, ASC, 0.5 + 1e-9, 1 - 1e-9, target)
    ppr = rule_crossing(tables, lambda d: PPR1v1(1 - d), 1e-9, 1 - 1e-9, target)
    return {"bank": name, "k": K, "questions": len(problems), "reference": reference, "target": target, "states": tables.states,
            "checks": checks, "asc_exact": asc, "ppr_exact": ppr and (ppr[0], 1 - ppr[1]),
            "bayes_samples": samples_at(bayes, target), "bayes_plurality_samples": samples_at(bayes_plural, target),
            "bayes_frontier": bayes, "bayes_plurality_frontier": bayes_plural, "seconds": time.time() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bank", choices=["gsm8k_gpt4_cot-pot", "gsm8k400_llama2-13b_pot", "both"], default="gsm8k_gpt4_cot-pot")
    ap.add_argument("--tolerance", type=float, default=0.001)
    ap.add_argument("--check-permutations", type=int, default=40)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    banks = [b for b in SETUP if args.bank in (b[0], "both")]
    out = []
    for name, K in banks:
        r = run_bank(name, K, args.tolerance, args.check_permutations)
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
        print(f"  mean samples per question to reach the target (exact, no permutation noise):")
        print(f"    ASC                                    {fmt(asc)}")
        print(f"    PPR-1v1                                {fmt(ppr)}")
        for key, label in (("bayes_plurality_samples", "Bayes-optimal stopping, plurality answer"),
                           ("bayes_samples", "Bayes-optimal stopping and answer")):
            x = r[key]
            ratio = "" if x is None or asc is None else f"   (ASC / this = {asc / x:.2f}x at most)"
            print(f"    {label:<38} {fmt(x)}{ratio}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
