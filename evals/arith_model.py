"""Measure the committed tiny arithmetic model on the fixed test sets (transformers backend).

    python evals/arith_model.py --out evals/results/arith [--n 32] [--temperature 0.7]
    python evals/arith_model.py --bench             # time 500 problems x 16 samples

For each test set (default, hard) it samples ``n`` answers per problem at the given
temperature plus one greedy answer, writes the samples as a bank (one JSON line per problem,
the DESIGN.md bank form: id, problem, reference, samples[answer, text, tokens, logprob,
mean_logprob, finish, correct]) to ``OUT/arith_<set>.bank.jsonl``, and prints and writes
(``OUT/summary.json``) these figures:

- single: single-sample accuracy, the mean over problems of (correct samples / n);
- maj@8: majority vote of 8 samples, exact over all 8-subsets of the n samples (ties credited
  1 / number of tied answers; a sample without an answer never wins);
- bon_logprob@8: the sample with the highest mean token log-prob among 8, exact;
- pass@n: some sample of the n is correct;
- greedy: greedy decoding accuracy.

maj@k uses ``ttscale.estimate.majority_at_k`` when it is importable, else the exact counting
implementation below; ``--self-check`` checks both against brute-force enumeration.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import time
from collections import Counter
from math import comb
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ttscale.arith import (  # noqa: E402
    DEFAULT_TEMPERATURE,
    extract_answer,
    format_prompt,
    model_dir,
    test_set_path,
)

MAX_NEW_TOKENS = 96


# --- exact estimators (pure functions of one problem's samples) ---------------------------------


def pass_at_k(n: int, c: int, k: int) -> float:
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def maj_at_k(answers: list[str | None], reference: str, k: int) -> float:
    """Expected majority-vote correctness of a uniform k-subset (without replacement), exact.

    For each count j of reference votes, count the ways the rival answer classes fill the other
    slots with every rival below j or tied at j (tracking how many tie), by a product of
    polynomials over classes; unanswered samples fill slots but never win.
    """
    n = len(answers)
    counts = Counter(a for a in answers if a is not None)
    n_null = sum(1 for a in answers if a is None)
    n_ref = counts.pop(reference, 0)
    rivals = list(counts.values())
    total = comb(n, k)
    value = 0.0
    for j in range(1, min(k, n_ref) + 1):
        rest = k - j
        # poly[m][t]: ways to take m samples from the rivals so far, t of them with exactly j votes.
        poly = [[0] * (len(rivals) + 1) for _ in range(rest + 1)]
        poly[0][0] = 1
        for size in rivals:
            new = [[0] * (len(rivals) + 1) for _ in range(rest + 1)]
            for m in range(rest + 1):
                for t in range(len(rivals) + 1):
                    ways = poly[m][t]
                    if not ways:
                        continue
                    for v in range(0, min(j, size, rest - m) + 1):
                        new[m + v][t + (v == j)] += ways * comb(size, v)
            poly = new
        acc = 0.0
        for m in range(rest + 1):
            fill = comb(n_null, rest - m)
            if not fill:
                continue
            for t in range(len(rivals) + 1):
                if poly[m][t]:
                    acc += poly[m][t] * fill / (1 + t)
        value += comb(n_ref, j) * acc
    return value / total


def maj_at_k_brute(answers: list[str | None], reference: str, k: int) -> float:
    total = 0.0
    subsets = list(itertools.combinations(range(len(answers)), k))
    for subset in subsets:
        votes = Counter(answers[i] for i in subset if answers[i] is not None)
        if not votes:
            continue
        top = max(votes.values())
        winners = [a for a, v in votes.items() if v == top]
        if reference in winners:
            total += 1 / len(winners)
    return total / len(subsets)


def bon_at_k(scores: list[float], correct: list[bool], k: int) -> float:
    """Expected correctness of the highest-score sample of a uniform k-subset (ties averaged)."""
    n = len(scores)
    order = sorted(range(n), key=lambda i: -scores[i])
    total = comb(n, k)
    value = 0.0
    r = 0
    while r < n:
        s = r
        while s < n and scores[order[s]] == scores[order[r]]:
            s += 1
        # Ranks r+1..s share one score: average their chance and correctness.
        prob = sum(comb(n - (rank + 1), k - 1) for rank in range(r, s)) / total
        frac = sum(correct[order[i]] for i in range(r, s)) / (s - r)
        value += prob * frac
        r = s
    return value


def _maj_function():
    """maj@k per problem: ``ttscale.estimate.majority_at_k`` when present, else ``maj_at_k`` above."""
    try:
        from ttscale.estimate.exact import majority_at_k
    except ImportError:
        return maj_at_k, "exact counting (evals/arith_model.py maj_at_k)"
    import numpy as np

    def via_estimate(answers: list[str | None], reference: str, k: int) -> float:
        classes = sorted({a for a in answers if a is not None})
        counts = np.array([[sum(a == c for a in answers) for c in classes]], dtype=np.int64).reshape(1, len(classes))
        correct = np.array([[c == reference for c in classes]], dtype=bool).reshape(1, len(classes))
        return float(majority_at_k(counts, correct, np.array([len(answers)]), [k])[0, 0])

    return via_estimate, "exact (ttscale.estimate.majority_at_k)"


# --- sampling ---------------------------------------------------------------------------------


def _load(name: str, limit: int | None) -> list[dict]:
    with open(test_set_path(name)) as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return rows[:limit] if limit else rows


def run_set(sampler, name: str, *, n: int, temperature: float, seed: int, limit: int | None, out: Path | None) -> dict:
    rows = _load(name, limit)
    prompts = [format_prompt(r["problem"]) for r in rows]

    def progress(done: int, total: int, tokens: int) -> None:
        print(f"  [{name}] {done}/{total} problems, {tokens} tokens", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    gens = sampler.generate(
        prompts, n=n, temperature=temperature, top_p=1.0, max_new_tokens=MAX_NEW_TOKENS, seed=seed, on_batch=progress
    )
    sample_s = time.perf_counter() - t0
    tokens = sum(g.tokens for per in gens for g in per)
    t0 = time.perf_counter()
    greedy = sampler.generate(prompts, n=1, temperature=0.0, max_new_tokens=MAX_NEW_TOKENS, seed=seed)
    greedy_s = time.perf_counter() - t0

    maj, _ = _maj_function()
    single = maj8 = bon8 = passn = greedy_ok = 0.0
    lines = []
    for row, per, g in zip(rows, gens, greedy):
        ref = row["answer"]
        answers = [extract_answer(x.text) for x in per]
        correct = [a == ref for a in answers]
        c = sum(correct)
        single += c / n
        maj8 += maj(answers, ref, min(8, n))
        bon8 += bon_at_k([x.mean_logprob for x in per], correct, min(8, n))
        passn += pass_at_k(n, c, n)
        greedy_ok += extract_answer(g[0].text) == ref
        lines.append(
            {
                "id": row["id"],
                "problem": row["problem"],
                "reference": ref,
                "samples": [
                    {
                        "answer": a,
                        "text": x.text,
                        "tokens": x.tokens,
                        "logprob": round(x.cumulative_logprob, 5),
                        "mean_logprob": round(x.mean_logprob, 6),
                        "finish": x.finish,
                        "correct": ok,
                    }
                    for a, x, ok in zip(answers, per, correct)
                ],
                "greedy": {"answer": extract_answer(g[0].text), "text": g[0].text},
                "model": "arith-tiny",
                "sampling": {"temperature": temperature, "top_p": 1.0, "n": n, "seed": seed},
            }
        )
    m = len(rows)
    result = {
        "set": name,
        "problems": m,
        "n": n,
        "temperature": temperature,
        "single": single / m,
        "maj@8": maj8 / m,
        "bon_logprob@8": bon8 / m,
        f"pass@{n}": passn / m,
        "greedy": greedy_ok / m,
        "sample_seconds": round(sample_s, 1),
        "sample_tokens": tokens,
        "tokens_per_s": round(tokens / sample_s, 1),
        "greedy_seconds": round(greedy_s, 1),
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / f"arith_{name}.bank.jsonl", "w") as fh:
            for line in lines:
                fh.write(json.dumps(line) + "\n")
    return result


def self_check() -> None:
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 10)
        k = rng.randint(1, n)
        answers = [rng.choice(["1", "2", "3", None]) for _ in range(n)]
        ref = rng.choice(["1", "2", "3"])
        a, b = maj_at_k(answers, ref, k), maj_at_k_brute(answers, ref, k)
        c = _maj_function()[0](answers, ref, k)
        assert abs(a - b) < 1e-12 and abs(c - b) < 1e-9, (answers, ref, k, a, b, c)
    print(f"maj@k: local exact counting and {_maj_function()[1]} match brute force on 200 random cases")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for the banks and summary.json")
    parser.add_argument("--model", type=Path, default=model_dir(), help="model folder (default: the packaged one)")
    parser.add_argument("--sets", default="default,hard", help="comma-separated test sets (default, hard)")
    parser.add_argument("--n", type=int, default=32, help="samples per problem (default 32)")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="only the first N problems of each set")
    parser.add_argument("--batch-size", type=int, default=512, help="sequences per generate call")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--bench", action="store_true", help="only time 500 default problems x 16 samples")
    parser.add_argument("--self-check", action="store_true", help="check the maj@k estimator against brute force")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.self_check:
        self_check()
        return 0

    from ttscale.sampling.backends.hf import HFSampler

    sampler = HFSampler(args.model, batch_size=args.batch_size, threads=args.threads)
    if args.bench:
        rows = _load("default", args.limit)
        prompts = [format_prompt(r["problem"]) for r in rows]
        t0 = time.perf_counter()
        gens = sampler.generate(prompts, n=16, temperature=args.temperature, max_new_tokens=MAX_NEW_TOKENS, seed=args.seed)
        secs = time.perf_counter() - t0
        tokens = sum(g.tokens for per in gens for g in per)
        print(
            json.dumps(
                {"problems": len(rows), "n": 16, "seconds": round(secs, 1), "tokens": tokens,
                 "tokens_per_s": round(tokens / secs, 1), "threads": args.threads, "batch_size": args.batch_size}
            )
        )
        return 0

    _, how = _maj_function()
    results = []
    for name in args.sets.split(","):
        res = run_set(sampler, name, n=args.n, temperature=args.temperature, seed=args.seed, limit=args.limit, out=args.out)
        res["maj_estimator"] = how
        results.append(res)
        print(json.dumps(res), flush=True)
    if args.out is not None:
        (args.out / "summary.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
