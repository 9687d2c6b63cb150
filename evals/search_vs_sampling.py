"""Step-level search vs sampling at matched compute on the embedded task, with any step scorer.

    flock /tmp/vllm.lock python evals/search_vs_sampling.py --set default --limit 200 --methods sampling
    flock /tmp/vllm.lock python evals/search_vs_sampling.py --set default --limit 200 --methods beam
    ...  (dvts, particle; then --set hard)                  one engine per call, figures merged
    python evals/search_vs_sampling.py --report             table and plot from the saved figures
    ... --scorer prm:FOLDER                                 a PRM instead of the oracle step checker
    ... --scorer prm --aggregation min                      branch and sample scores: the weakest step

Sampling: 16 samples per problem in one seeded request (vLLM, temperature 1.3, the model's
measured setting, max 160 tokens); each sample is cut into steps at the separator and scored by
the step scorer (aggregation ``--aggregation``, ``last`` by default, the same for search), and its first N samples give majority@N, Best-of-N by
the scorer, weighted majority by the scorer (answers' summed scores) and pass@N. Search: beam
(N/4 beams kept, each expanded 4 ways), DVTS (N/4 subtrees expanded 4 ways), particle filtering
(N particles, resampling temperature 1), each returning N candidates; its answer is the
best-scored candidate. Every accuracy credits ties by the share right among the tied. Compute is
total tokens per problem: generated (pruned search steps included) plus tokens the scorer read
(the oracle reads none). Throughput: tokens/s of search generation (scorer time excluded) vs the
16-sample sampling run, whose token count matches search at N = 16 (ratio in the table).
Figures: evals/results/search_vs_sampling.{json,md,png}, keyed by scorer, set and policy.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_oracle import best_credit, build_engine, majority_credit  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
JSON_OUT = RESULTS / "search_vs_sampling.json"
MD_OUT = RESULTS / "search_vs_sampling.md"
PNG_OUT = RESULTS / "search_vs_sampling.png"
SAMPLE_N = 16
TEMPERATURE = 1.3
EXPANSION = 4
SEPARATOR = "\n"
SEARCHES = ("beam", "dvts", "particle")


class TimedScorer:
    """A step scorer that also sums the seconds it took, so search throughput counts generation only."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", "prm")
        self.seconds = 0.0

    def score_steps(self, items: Sequence[tuple[str, Sequence[str]]]) -> Any:
        start = time.perf_counter()
        try:
            return self.inner.score_steps(items)
        finally:
            self.seconds += time.perf_counter() - start


def split_steps(text: str) -> list[str]:
    """A whole sample as the search would have produced it: steps ending on the separator, the last as it ends."""
    parts = text.split(SEPARATOR)
    steps = [p + SEPARATOR for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    return steps or [""]


def weighted_credit(answers: list[str | None], scores: list[float], reference: str) -> float:
    totals: dict[str, float] = defaultdict(float)
    for a, s in zip(answers, scores):
        if a is not None:
            totals[a] += s
    if not totals:
        return 0.0
    top = max(totals.values())
    leaders = [a for a, v in totals.items() if v == top]
    return (reference in leaders) / len(leaders)


def bon_credit(answers: list[str | None], scores: list[float], reference: str) -> float:
    best = max(scores)
    tied = [a for a, s in zip(answers, scores) if s == best]
    return sum(a == reference for a in tied) / len(tied)


def sampling_figures(llm: Any, problems: list[Any], ns: list[int], scorer: Any, aggregation: str = "last") -> dict[str, Any]:
    from ttscale.sampling.backends.vllm import VLLMSampler
    from ttscale.sampling.sampler import SampleRequest, SamplingConfig, request_seed
    from ttscale.search.params import Aggregation

    config = SamplingConfig(temperature=TEMPERATURE, max_tokens=160, template="arith", seed=0, logprobs=False)
    sampler = VLLMSampler(None, config, llm=llm)
    requests = [SampleRequest(p.id, p.problem, SAMPLE_N, request_seed(0, p.id, 0)) for p in problems]
    start = time.perf_counter()
    results = sampler.generate(requests)
    seconds = time.perf_counter() - start
    generated = sum(r.completion_tokens for r in results)
    items = [(p.problem, split_steps(c.text or "")) for r, p in zip(results, problems) for c in r.candidates]
    scored = scorer.score_steps(items)
    read = scored.tokens or [0] * len(items)
    flat = [(Aggregation(aggregation)(s), t) for s, t in zip(scored.scores, read)]
    out: dict[str, Any] = {"seconds": round(seconds, 2), "tokens_per_s": round(generated / seconds, 1), "tokens": generated, "by_n": {}}
    at = 0
    per: list[list[tuple[Any, float, int]]] = []
    for r in results:
        per.append([(c, *flat[at + k]) for k, c in enumerate(r.candidates)])
        at += len(r.candidates)
    for n in ns:
        rows = [(cs[:n], p.answer) for cs, p in zip(per, problems)]
        answers = [[c.answer for c, _, _ in cs] for cs, _ in rows]
        scores = [[s for _, s, _ in cs] for cs, _ in rows]
        gen = sum(c.tokens or 0 for cs, _ in rows for c, _, _ in cs) / len(rows)
        read_n = sum(t for cs, _ in rows for _, _, t in cs) / len(rows)
        refs = [ref for _, ref in rows]
        out["by_n"][str(n)] = {
            "pass": sum(ref in a for a, ref in zip(answers, refs)) / len(rows),
            "pass1": sum(sum(x == ref for x in a) / len(a) for a, ref in zip(answers, refs)) / len(rows),
            "majority": sum(majority_credit(a, ref) for a, ref in zip(answers, refs)) / len(rows),
            "best_of_n": sum(bon_credit(a, s, ref) for a, s, ref in zip(answers, scores, refs)) / len(rows),
            "weighted": sum(weighted_credit(a, s, ref) for a, s, ref in zip(answers, scores, refs)) / len(rows),
            "generated_per_problem": gen, "scored_per_problem": read_n, "requests_per_problem": 1,
        }
    return out


def search_figures(llm: Any, problems: list[Any], n: int, method: str, scorer: Any, aggregation: str = "last") -> dict[str, Any]:
    from ttscale.sampling.sampler import SamplingConfig
    from ttscale.search import SearchCost, SearchParams, search_problems
    from ttscale.search.vllm_steps import VLLMStepGenerator

    keep = min(n, EXPANSION) if method == "dvts" else max(1, n // EXPANSION)
    params = SearchParams(method=method, width=n, keep=keep, seed=0, separator=SEPARATOR, aggregation=aggregation)
    gen = VLLMStepGenerator(None, SamplingConfig(temperature=TEMPERATURE, template="arith", seed=0), separator=SEPARATOR, llm=llm)
    timed = TimedScorer(scorer)
    start = time.perf_counter()
    results = list(search_problems(problems, gen, timed, params, in_flight=len(problems)))
    seconds = time.perf_counter() - start
    cost = SearchCost()
    for r in results:
        cost.add(r.cost)
    refs = {p.id: p.answer for p in problems}
    generation = max(1e-9, seconds - timed.seconds)
    return {
        "method": method, "n": n, "keep": keep,
        "accuracy": sum(best_credit(r.candidates, refs[r.problem.id]) for r in results) / len(results),
        "pass": sum(any(_answer(c) == refs[r.problem.id] for c in r.candidates) for r in results) / len(results),
        "generated_per_problem": cost.generated_tokens / len(results), "scored_per_problem": cost.scored_tokens / len(results),
        "prompt_per_problem": cost.prompt_tokens / len(results),
        "requests_per_problem": cost.requests / len(results), "rounds_per_problem": cost.rounds / len(results),
        "engine_calls": gen.engine_calls, "seconds": round(seconds, 2), "scorer_seconds": round(timed.seconds, 2),
        "tokens_per_s": round(cost.generated_tokens / generation, 1),
    }


def _answer(branch: Any) -> str | None:
    from ttscale.answers import extract_answer

    return extract_answer(branch.text) if branch.finish == "answer" else None


def load() -> dict[str, Any]:
    return json.loads(JSON_OUT.read_text()) if JSON_OUT.exists() else {}


def save(data: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    JSON_OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


SAMPLING_POLICIES = (("majority", "majority"), ("best_of_n", "Best-of-N"), ("weighted", "weighted majority"))


def points(entry: dict[str, Any]) -> dict[str, list[tuple[int, float, float, float, float]]]:
    """Per policy: (N, accuracy, generated, scored, requests) per problem, N ascending."""
    out: dict[str, list[tuple[int, float, float, float, float]]] = defaultdict(list)
    sampling = entry.get("sampling", {}).get("by_n", {})
    for n in sorted(sampling, key=int):
        b = sampling[n]
        for key, label in SAMPLING_POLICIES:
            scored = 0.0 if key == "majority" else b["scored_per_problem"]
            out[label].append((int(n), b[key], b["generated_per_problem"], scored, 1.0))
        out["pass@N (reference)"].append((int(n), b["pass"], b["generated_per_problem"], 0.0, 1.0))
    for _, r in sorted(entry.get("search", {}).items(), key=lambda kv: (kv[1]["method"], kv[1]["n"])):
        out[r["method"]].append((r["n"], r["accuracy"], r["generated_per_problem"], r["scored_per_problem"], r["requests_per_problem"]))
    return out


def verdict(entry: dict[str, Any]) -> list[str]:
    """Per N: the best search against the best sampling policy (pass@N is not a policy)."""
    pts = points(entry)
    lines = []
    ns = sorted({n for label, rows in pts.items() for n, *_ in rows if label in SEARCHES})
    for n in ns:
        def best(labels: Sequence[str]) -> tuple[str, float, float] | None:
            cands = [(label, acc, gen + sc) for label in labels for m, acc, gen, sc, _ in pts.get(label, []) if m == n]
            return max(cands, key=lambda c: c[1]) if cands else None

        s = best([label for _, label in SAMPLING_POLICIES])
        t = best(SEARCHES)
        if s is None or t is None:
            continue
        diff = 100 * (t[1] - s[1])
        one = 100 / entry["problems"]  # a difference of at most one problem is a tie
        word = "beats" if diff > one + 1e-9 else "trails" if diff < -one - 1e-9 else "ties (within one problem)"
        lines.append(f"N={n}: best search ({t[0]}, {100 * t[1]:.1f}% at {t[2]:,.0f} tokens/problem) {word} the best sampling "
                     f"policy ({s[0]}, {100 * s[1]:.1f}% at {s[2]:,.0f} tokens/problem): {diff:+.1f} points at "
                     f"{t[2] / s[2]:.2f}x the tokens")
        # At equal total compute: the best sampling point (any policy, any N) costing no more than the search.
        within = [(f"{label}@{m}", acc, gen + sc) for label in (lab for _, lab in SAMPLING_POLICIES)
                  for m, acc, gen, sc, _ in pts.get(label, []) if gen + sc <= t[2] * 1.0001]
        if within:
            e = max(within, key=lambda c: c[1])
            d2 = 100 * (t[1] - e[1])
            w2 = "beats" if d2 > one + 1e-9 else "trails" if d2 < -one - 1e-9 else "ties (within one problem)"
            lines.append(f"  at equal total tokens: {w2} the best sampling point costing no more ({e[0]}, {100 * e[1]:.1f}% at "
                         f"{e[2]:,.0f} tokens/problem): {d2:+.1f} points")
        else:
            lines.append("  at equal total tokens: no sampling point costs as little as this search (sampling needs more tokens)")
    return lines


def report(data: dict[str, Any]) -> str:
    lines = ["# Step-level search vs sampling at matched compute (embedded model, vLLM on CPU)", "",
             "Accuracy in %; tokens per problem: generated (search: pruned steps included) + read by the step scorer. "
             "Made by `evals/search_vs_sampling.py` (commands in its docstring).", ""]
    for scorer, sets in sorted(data.items()):
        for name, entry in sorted(sets.items()):
            s = entry.get("sampling")
            lines += [f"## scorer {scorer}, {name} set, {entry['problems']} problems", "",
                      "| policy | N | accuracy | generated tok | scorer tok | total tok | requests/problem |",
                      "|---|---|---|---|---|---|---|"]
            for label, rows in points(entry).items():
                for n, acc, gen, sc, req in rows:
                    lines.append(f"| {label} | {n} | {100 * acc:.1f} | {gen:,.0f} | {sc:,.0f} | {gen + sc:,.0f} | {req:.1f} |")
            lines += [""] + [f"- {v}" for v in verdict(entry)] + [""]
            if s and entry.get("search"):
                lines += ["Throughput (generation only; sampling: one request of 16 per problem, "
                          f"{s['tokens']:,} tokens at {s['tokens_per_s']:,.0f} tok/s):", "",
                          "| method | N | tokens | tokens vs sampling@16 | search tok/s | sampling tok/s | ratio | requests/problem | engine calls |",
                          "|---|---|---|---|---|---|---|---|---|"]
                for _, r in sorted(entry["search"].items(), key=lambda kv: (kv[1]["method"], kv[1]["n"])):
                    tokens = r["generated_per_problem"] * entry["problems"]
                    lines.append(f"| {r['method']} | {r['n']} | {tokens:,.0f} | {tokens / s['tokens']:.2f} | {r['tokens_per_s']:,.0f} | "
                                 f"{s['tokens_per_s']:,.0f} | {r['tokens_per_s'] / s['tokens_per_s']:.2f} | {r['requests_per_problem']:.1f} | {r['engine_calls']} |")
                lines.append("")
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scorers = sorted(data)
    names = sorted({name for sets in data.values() for name in sets})
    if not names:
        return
    fig, axes = plt.subplots(len(scorers), len(names), figsize=(6.5 * len(names), 4.5 * len(scorers)), squeeze=False)
    for (r, scorer), (c, name) in itertools.product(enumerate(scorers), enumerate(names)):
        ax, entry = axes[r][c], data[scorer].get(name)
        if entry is None:
            ax.set_axis_off()
            continue
        for label, rows in points(entry).items():
            style = "--" if label.startswith("pass@N") else "-" if label in SEARCHES else ":"
            marker = "o" if label in SEARCHES else "s"
            ax.plot([g + s for _, _, g, s, _ in rows], [100 * a for _, a, *_ in rows], style, marker=marker, label=label)
            for n, a, g, s, _ in rows:
                if label in ("beam", "majority"):
                    ax.annotate(f"N={n}", (g + s, 100 * a), textcoords="offset points", xytext=(3, -10), fontsize=7)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("total tokens per problem (generator + step scorer)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{name} set, {entry['problems']} problems, scorer {scorer}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(PNG_OUT, dpi=110)


def write(data: dict[str, Any]) -> None:
    save(data)
    MD_OUT.write_text(report(data))
    plot(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", choices=["default", "hard"], default="default")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--ns", default="4,8,16")
    ap.add_argument("--methods", default="sampling,beam,dvts,particle", help="sampling and/or beam, dvts, particle")
    ap.add_argument("--scorer", default="oracle", help="oracle, prm, prm:FOLDER, vllm-prm[:FOLDER] (ttscale search --scorer)")
    ap.add_argument("--aggregation", default="last", choices=["last", "min", "product"],
                    help="branch score from step scores (search) and sample score (sampling); results kept per scorer and aggregation")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    if args.report:
        data = load()
        write(data)
        print(report(data), end="")
        return
    from ttscale.records.datasets import load_dataset
    from ttscale.search.prm_steps import resolve_step_scorer

    scorer = resolve_step_scorer(args.scorer)
    problems = load_dataset("arith" if args.set == "default" else "arith-hard", limit=args.limit)
    ns = [int(x) for x in args.ns.split(",")]
    llm = build_engine()
    data = load()
    key = args.scorer if args.aggregation == "last" else f"{args.scorer} ({args.aggregation})"
    entry = data.setdefault(key, {}).get(args.set) or {}
    if entry.get("problems") != len(problems):
        entry = {"problems": len(problems), "search": {}}
    data[key][args.set] = entry
    for method in args.methods.split(","):
        if method == "sampling":
            entry["sampling"] = sampling_figures(llm, problems, sorted(set(ns) | {SAMPLE_N}), scorer, args.aggregation)
            print(json.dumps(entry["sampling"]), flush=True)
        else:
            for n in ns:
                fig = search_figures(llm, problems, n, method, scorer, args.aggregation)
                entry["search"][f"{method}:{n}"] = fig
                write(data)
                print(json.dumps(fig), flush=True)
        write(data)
    print(report(data), end="")


if __name__ == "__main__":
    main()
