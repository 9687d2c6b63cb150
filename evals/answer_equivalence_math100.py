"""What answer equivalence changes on a real bank: math100_qwen_rm (100 MATH problems x 8 samples).

Three ways of grouping answers into vote classes and grading them against the reference:

* ``raw``    - exact string equality of the answer strings (no normalization at all);
* ``string`` - ``EquivalenceMode.STRING``: equal ``normalize_answer`` strings;
* ``math``   - ``EquivalenceMode.MATH``: normalized strings, then math-verify on class representatives.

For two answer sources: the bank's own extracted ``answer`` field, and ``extract_answer`` run on
each sample's full ``text`` (raw LaTeX such as ``4:30 \\text{ p.m.}`` or ``12 \\frac{3}{5}``).
Reports, per source and mode: classes, samples whose vote class differs from the raw-string
class, problems whose majority-vote winner changes, maj@8 (tie credit), and agreement of
per-sample correctness with the source's own ``correct`` flag (listing every disagreement).

    python evals/answer_equivalence_math100.py [--bank PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ttscale.answers import (  # noqa: E402
    AnswerClassifier,
    EquivalenceConfig,
    extract_answer,
    normalize_answer,
)

BANK = ROOT.parent / "shared" / "data" / "banks" / "math100_qwen_rm.jsonl"


def raw_classes(answers: list[str | None]) -> tuple[np.ndarray, list[str]]:
    index: dict[str, int] = {}
    ids = np.full(len(answers), -1, dtype=np.int64)
    for i, a in enumerate(answers):
        if a is not None and a.strip():
            ids[i] = index.setdefault(a, len(index))
    return ids, list(index)


def members(ids: np.ndarray) -> list[frozenset[int]]:
    """Per sample: the set of sample indices sharing its class (empty for no answer)."""
    groups: dict[int, set[int]] = {}
    for i, c in enumerate(ids):
        if c >= 0:
            groups.setdefault(int(c), set()).add(i)
    return [frozenset(groups[int(c)]) if c >= 0 else frozenset() for c in ids]


def majority(ids: np.ndarray, class_correct: np.ndarray) -> tuple[frozenset[int], float]:
    """Samples of the winning class (first-seen among ties) and the maj score with tie credit."""
    answered = ids[ids >= 0]
    if answered.size == 0:
        return frozenset(), 0.0
    counts = np.bincount(answered, minlength=len(class_correct))
    top = np.flatnonzero(counts == counts.max())
    winner = frozenset(np.flatnonzero(ids == top[0]).tolist())
    return winner, float(class_correct[top].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bank", type=Path, default=BANK)
    args = ap.parse_args()
    rows = [json.loads(line) for line in args.bank.open()]
    n_samples = sum(len(r["samples"]) for r in rows)
    print(f"{args.bank.name}: {len(rows)} problems, {n_samples} samples")

    extracted = [[extract_answer(s["text"]) if s.get("text") is not None else None for s in r["samples"]] for r in rows]
    same = sum(
        (a is None and e is None) or (a is not None and e is not None and normalize_answer(a) == normalize_answer(e))
        for r, ex in zip(rows, extracted) for s, e in zip(r["samples"], ex) for a in [s["answer"]]
    )
    print(f"extract_answer(text) vs the bank's answer (normalized): {same}/{n_samples} agree")

    classifiers = {
        "string": AnswerClassifier(EquivalenceConfig(mode="string")),
        "math": AnswerClassifier(EquivalenceConfig(mode="math")),
    }
    for source in ("bank answer", "extract_answer(text)"):
        print(f"\n== answers from: {source}")
        print(f"{'mode':7} {'classes':>7} {'class!=raw':>10} {'maj winner!=raw':>15} {'maj@8':>6} "
              f"{'correct==source':>16} {'time':>6}")
        baseline: dict[str, list] = {}
        for mode in ("raw", "string", "math"):
            clf = classifiers.get(mode)
            t0 = time.perf_counter()
            n_classes = changed = maj_changed = agree = 0
            maj_total = 0.0
            disagreements = []
            for p, row in enumerate(rows):
                answers = [s["answer"] for s in row["samples"]] if source == "bank answer" else extracted[p]
                ref = row["reference"]
                if clf is None:
                    ids, reps = raw_classes(answers)
                    class_correct = np.array([rep == ref for rep in reps], dtype=bool)
                else:
                    ids, reps = clf.classify(answers)
                    class_correct = np.array([clf.is_correct(rep, ref) for rep in reps], dtype=bool)
                n_classes += len(reps)
                mem = members(ids)
                winner, score = majority(ids, class_correct)
                maj_total += score
                if mode == "raw":
                    baseline[row["id"]] = [mem, winner]
                else:
                    changed += sum(m != b for m, b in zip(mem, baseline[row["id"]][0]))
                    maj_changed += winner != baseline[row["id"]][1]
                for s, c, a in zip(row["samples"], ids, answers):
                    ours = bool(c >= 0 and class_correct[c])
                    if ours == bool(s["correct"]):
                        agree += 1
                    else:
                        disagreements.append((row["id"], a, ref, s["correct"]))
            dt = time.perf_counter() - t0
            dash = "-" if mode == "raw" else None
            print(f"{mode:7} {n_classes:7d} {dash or changed:>10} {dash or maj_changed:>15} "
                  f"{maj_total / len(rows):6.3f} {agree:>7d}/{n_samples} ({agree / n_samples:.2%}) {dt:5.2f}s")
            seen = set()
            for pid, a, ref, src in disagreements:
                if (pid, a) not in seen:
                    seen.add((pid, a))
                    count = sum(1 for d in disagreements if d[0] == pid and d[1] == a)
                    print(f"        {pid}: answer {a!r} vs reference {ref!r}: source says {src}, x{count}")
    print("\nmath-mode stats:", classifiers["math"].stats.as_dict())


if __name__ == "__main__":
    main()
