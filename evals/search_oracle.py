"""Step-level search guided by the oracle step checker vs plain sampling, on the embedded task.

    python evals/search_oracle.py --set default --limit 200      # one engine per call (wrap in flock)
    python evals/search_oracle.py --set hard --limit 200
    python evals/search_oracle.py --report                        # table from the saved figures

For each N in --ns (4, 8, 16) on the packaged test set: plain sampling draws 16 samples per problem
in one seeded request (vLLM, temperature 1.3 as the model is measured, seeds from base seed 0), and
its first N samples give pass@N (some sample right), majority@N (ties credited 1/tied) and pass@1
(mean share right); search (beam: keep N/4 beams expanded 4 ways, as search-and-learn's default
beam width 4; DVTS: N/4 subtrees each expanded 4 ways, i.e. keep 4; particle filtering: N particles, softmax temperature 1) returns
N final candidates scored by the oracle; its answer is the best-scored candidate (ties credited by
share right). Tokens are every generated token (pruned steps included for search). Figures go to
evals/results/search_oracle.json (merged per set and method) and search_oracle.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS = Path(__file__).resolve().parent / "results"
JSON_OUT = RESULTS / "search_oracle.json"
MD_OUT = RESULTS / "search_oracle.md"
SAMPLE_N = 16
TEMPERATURE = 1.3
EXPANSION = 4


def majority_credit(answers: list[str | None], reference: str) -> float:
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return 0.0
    top = max(votes.values())
    leaders = [a for a, c in votes.items() if c == top]
    return (reference in leaders) / len(leaders)


def best_credit(candidates: list[Any], reference: str) -> float:
    if not candidates:
        return 0.0
    best = max(c.score for c in candidates)
    tied = [c for c in candidates if c.score == best]
    return sum(_answer(c) == reference for c in tied) / len(tied)


def _answer(branch: Any) -> str | None:
    from ttscale.answers import extract_answer

    return extract_answer(branch.text) if branch.finish == "answer" else None


def sampling_figures(llm: Any, problems: list[Any], ns: list[int]) -> dict[str, Any]:
    from ttscale.sampling.backends.vllm import VLLMSampler
    from ttscale.sampling.sampler import SampleRequest, SamplingConfig, request_seed

    config = SamplingConfig(temperature=TEMPERATURE, max_tokens=160, template="arith", seed=0, logprobs=False)
    sampler = VLLMSampler(None, config, llm=llm)
    requests = [SampleRequest(p.id, p.problem, SAMPLE_N, request_seed(0, p.id, 0)) for p in problems]
    start = time.perf_counter()
    results = sampler.generate(requests)
    seconds = time.perf_counter() - start
    total = sum(r.completion_tokens for r in results)
    out: dict[str, Any] = {"seconds": round(seconds, 2), "tokens_per_s": round(total / seconds, 1), "by_n": {}}
    for n in ns:
        rows = [(r.candidates[:n], p.answer) for r, p in zip(results, problems)]
        out["by_n"][str(n)] = {
            "pass": sum(any(c.answer == ref for c in cs) for cs, ref in rows) / len(rows),
            "majority": sum(majority_credit([c.answer for c in cs], ref) for cs, ref in rows) / len(rows),
            "pass1": sum(sum(c.answer == ref for c in cs) / len(cs) for cs, ref in rows) / len(rows),
            "tokens": sum(c.tokens or 0 for cs, _ in rows for c in cs),
            "requests_per_problem": 1,
        }
    return out


def search_figures(llm: Any, problems: list[Any], n: int, method: str) -> dict[str, Any]:
    from ttscale.sampling.sampler import SamplingConfig
    from ttscale.search import SearchCost, SearchParams, search_problems
    from ttscale.search.oracle import OracleStepScorer
    from ttscale.search.vllm_steps import VLLMStepGenerator

    # Beam: N/4 beams kept, each expanded 4 ways; DVTS: N/4 subtrees expanded 4 ways (keep = 4).
    keep = min(n, EXPANSION) if method == "dvts" else max(1, n // EXPANSION)
    params = SearchParams(method=method, width=n, keep=keep, seed=0)
    gen = VLLMStepGenerator(None, SamplingConfig(temperature=TEMPERATURE, template="arith", seed=0), llm=llm)
    start = time.perf_counter()
    results = list(search_problems(problems, gen, OracleStepScorer(), params, in_flight=len(problems)))
    seconds = time.perf_counter() - start
    cost = SearchCost()
    for r in results:
        cost.add(r.cost)
    refs = {p.id: p.answer for p in problems}
    return {
        "method": method, "n": n, "keep": keep,
        "accuracy": sum(best_credit(r.candidates, refs[r.problem.id]) for r in results) / len(results),
        "pass": sum(any(_answer(c) == refs[r.problem.id] for c in r.candidates) for r in results) / len(results),
        "majority": sum(majority_credit([_answer(c) for c in r.candidates], refs[r.problem.id]) for r in results) / len(results),
        "candidates": sum(len(r.candidates) for r in results) / len(results),
        "tokens": cost.generated_tokens, "steps": cost.expansions,
        "requests_per_problem": cost.requests / len(results), "rounds_per_problem": cost.rounds / len(results),
        "engine_calls": gen.engine_calls, "seconds": round(seconds, 2), "tokens_per_s": round(cost.generated_tokens / seconds, 1),
    }


def build_engine() -> Any:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ttscale.arith.paths import model_dir
    from ttscale.sampling.backends.vllm import VLLMSampler
    from ttscale.sampling.sampler import SamplingConfig

    return VLLMSampler(str(model_dir()), SamplingConfig(template="arith")).llm


def load() -> dict[str, Any]:
    return json.loads(JSON_OUT.read_text()) if JSON_OUT.exists() else {}


def save(data: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    JSON_OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    MD_OUT.write_text(report(data))


def _label(r: dict[str, Any]) -> str:
    if r["method"] == "beam":
        return f"beam (keep {r['keep']}, expand {r['n'] // r['keep']})"
    if r["method"] == "dvts":
        return f"dvts ({r['n'] // r['keep']} subtrees x {r['keep']})"
    return "particle (T 1)"


def report(data: dict[str, Any]) -> str:
    lines = ["# Step-level search with the oracle step checker vs plain sampling (embedded model, vLLM)", "",
             "Accuracy in %; tokens are all generated tokens over the set (search: pruned steps included).", ""]
    for name, entry in sorted(data.items()):
        s = entry.get("sampling")
        if not s:
            continue
        lines += [f"## {name} set, {entry['problems']} problems", "",
                  "| N | sampling pass@1 | majority@N | pass@N | sampling tokens | method | search accuracy | search pass | search majority | search tokens | tokens ratio | requests/problem | search tok/s | sampling tok/s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for key in sorted(entry.get("search", {}), key=lambda k: (int(k.split(":")[1]), k)):
            r = entry["search"][key]
            b = s["by_n"][str(r["n"])]
            lines.append(
                f"| {r['n']} | {100 * b['pass1']:.1f} | {100 * b['majority']:.1f} | {100 * b['pass']:.1f} | {b['tokens']:,} | "
                f"{_label(r)} | {100 * r['accuracy']:.1f} | {100 * r['pass']:.1f} | {100 * r['majority']:.1f} | "
                f"{r['tokens']:,} | {r['tokens'] / b['tokens']:.2f} | {r['requests_per_problem']:.1f} | {r['tokens_per_s']:,.0f} | {s['tokens_per_s']:,.0f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", choices=["default", "hard"], default="default")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--ns", default="4,8,16")
    ap.add_argument("--methods", default="beam")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    if args.report:
        print(report(load()), end="")
        return
    from ttscale.records.datasets import load_dataset

    problems = load_dataset("arith" if args.set == "default" else "arith-hard", limit=args.limit)
    ns = [int(x) for x in args.ns.split(",")]
    llm = build_engine()
    data = load()
    entry = data.get(args.set) or {}
    if entry.get("problems") != len(problems):
        entry = {"problems": len(problems), "search": {}}
    if not set(map(str, ns)) <= set(entry.get("sampling", {}).get("by_n", {})):  # same seeds: the same draws again
        entry["sampling"] = sampling_figures(llm, problems, sorted(set(ns) | set(int(k) for k in entry.get("sampling", {}).get("by_n", {}))))
        data[args.set] = entry
        save(data)
        print(json.dumps(entry["sampling"]), flush=True)
    data[args.set] = entry
    for method in args.methods.split(","):
        for n in ns:
            fig = search_figures(llm, problems, n, method)
            entry["search"][f"{method}:{n}"] = fig
            save(data)
            print(json.dumps(fig), flush=True)
    print(report(data), end="")


if __name__ == "__main__":
    main()
