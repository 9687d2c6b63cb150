"""DeepConf online early stop on the real vLLM engine: accuracy vs generated tokens, and engine time.

On the embedded model and its default and hard test sets (first LIMIT problems, N traces each,
the request seeds of ``ttscale sample --seed 0``), one engine (built with the early-stop logits
processor) runs:

- ``full``: N traces per problem, no early stop. Scored as majority@k (first k traces, k = N/4,
  N/2, N) and confidence-weighted majority@N (weight exp(mean token log-prob), the
  ``confidence-weighted`` policy).
- ``fixed threshold T``: one pass, every trace tracked against T (the median of the first eta run's
  calibrated thresholds), no warm-up and no top-k log-probs: the cleanest engine-time comparison.
- ``eta=E``: N traces with early stop (W warm-up traces in full, the threshold calibrated on them
  with keep-top E %, the rest tracked with a sliding window); the vote is the majority of the
  traces that were not stopped. Same seeds: a tracked trace draws what the same trace of ``full``
  drew up to where it stops (checked: its text is a prefix of the full trace's).

Accuracy counts a tie among the top answers as 1/(tied answers) when the reference is among them
(the expected accuracy of a uniformly random tie-break). Tokens are all generated tokens,
stopped traces included. Wall time is the engine's ``generate`` calls (engine start excluded).

    flock /tmp/vllm.lock .venv/bin/python evals/early_stop.py --limit 200 --n 16 --warmup 4 --window 8 --eta 10 50 90

Writes evals/results/early_stop.json and .md.

``--backend http`` runs the same comparison through vLLM's OpenAI-compatible server (started here
on the embedded model, ``python -m vllm.entrypoints.openai.api_server``) and ttscale's ``openai``
backend: ``full`` is one non-streamed call with ``n`` per problem; the early-stop runs stream
every trace (``n=1``, ``logprobs=top_k``) and close the streams of traces that fall below the
threshold. An extra run, ``streamed, no stop`` (threshold 0, which no group confidence is below),
streams every trace in full: the wall-time baseline of the streamed runs. Each run also records
the server's own generated-token count (the difference of ``vllm:generation_tokens_total`` on
its ``/metrics``), which shows the server stopped generating the closed streams.

    flock /tmp/vllm.lock .venv/bin/python evals/early_stop.py --backend http --sets default --limit 200 --eta 10 90 \
        --out evals/results/early_stop_http
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TQDM_DISABLE", "1")

from ttscale.arith.paths import resolve_model  # noqa: E402
from ttscale.cli.sampling_options import cpu_engine_defaults  # noqa: E402
from ttscale.early_stop import LOW_CONFIDENCE, EarlyStopParams  # noqa: E402
from ttscale.records.datasets import load_dataset  # noqa: E402
from ttscale.records.models import Sample  # noqa: E402
from ttscale.sampling.driver import plan_requests  # noqa: E402
from ttscale.sampling.backends.openai import OpenAISampler  # noqa: E402
from ttscale.sampling.model_defaults import sampling_defaults  # noqa: E402
from ttscale.sampling.sampler import SamplingConfig  # noqa: E402

SETS = {"default": "arith", "hard": "arith-hard"}


def vote_accuracy(samples: list[Sample], reference: str | None, weights: list[float] | None = None) -> float:
    """Expected accuracy of the (weighted) vote over the samples that have an answer."""
    tally: dict[str, float] = defaultdict(float)
    for i, s in enumerate(samples):
        if s.answer is not None:
            tally[s.answer] += 1.0 if weights is None else weights[i]
    if not tally:
        return 0.0
    best = max(tally.values())
    top = [a for a, v in tally.items() if v >= best * (1 - 1e-12)]
    return (1.0 / len(top)) if reference in top else 0.0


def weight(s: Sample) -> float:
    import math

    c = s.confidence()
    return math.exp(c) if c is not None else 0.0


def run(sampler: Any, requests: list[Any]) -> tuple[list[Any], float]:
    start = time.perf_counter()
    results = sampler.generate(requests)
    return results, time.perf_counter() - start


def evaluate_set(name: str, make: Any, model: str, args: argparse.Namespace, server_tokens: Any = None) -> dict[str, Any]:
    """The rows and timings of one set; ``make(config)`` builds a sampler, ``server_tokens()`` (HTTP
    only) reads the server's generated-token counter."""
    problems = load_dataset(SETS[name], limit=args.limit)
    refs = {p.id: p.answer for p in problems}
    own = sampling_defaults(model)
    base = dict(template=own["template"], temperature=own["temperature"], max_tokens=own["max_tokens"], seed=0)
    requests = plan_requests(problems, {}, args.n, 0)
    full_sampler = make(SamplingConfig(**base))
    run(full_sampler, requests[:8])  # warm the engine up first, so the first timed run is not charged for it
    counted = server_tokens() if server_tokens else None
    full, full_s = run(full_sampler, requests)
    full_by_id = {r.request.id: r.candidates for r in full}
    full_tokens = sum(r.completion_tokens for r in full)
    rows: list[dict[str, Any]] = []
    for k in sorted({max(1, args.n // 4), max(1, args.n // 2), args.n}):
        acc = sum(vote_accuracy(full_by_id[i][:k], refs[i]) for i in refs) / len(refs)
        toks = sum(c.tokens or 0 for i in refs for c in full_by_id[i][:k])
        rows.append({"method": f"majority@{k}", "accuracy": acc, "tokens": toks})
    acc = sum(vote_accuracy(full_by_id[i], refs[i], [weight(c) for c in full_by_id[i]]) for i in refs) / len(refs)
    rows.append({"method": f"confidence-weighted@{args.n}", "accuracy": acc, "tokens": full_tokens})
    timing = [{"run": "full", "wall_s": full_s, "tokens": full_tokens, "tokens_per_s": full_tokens / full_s}]
    if server_tokens:
        timing[0]["server_tokens"] = server_tokens() - counted
    runs: list[tuple[str, EarlyStopParams]] = [
        (f"eta={eta:g}", EarlyStopParams(eta=eta, window=args.window, warmup=args.warmup, top_k=args.top_k)) for eta in args.eta]
    if args.backend == "http":  # every trace streamed (with top-k log-probs) and none stopped: the streamed runs' baseline
        runs.insert(0, ("streamed, no stop", EarlyStopParams(threshold=0.0, window=args.window, top_k=args.top_k)))
    fixed = None
    for label, es in runs + [("fixed", None)]:  # type: ignore[list-item]
        if es is None:
            if fixed is None:
                break
            # One pass, no warm-up and no top-k log-probs: wall time then follows the tokens alone.
            es = EarlyStopParams(threshold=fixed, window=args.window, top_k=args.top_k)
            label = f"fixed threshold {fixed:.3f}"
        sampler = make(SamplingConfig(**base, early_stop=es))
        counted = server_tokens() if server_tokens else None
        results, wall = run(sampler, requests)
        tokens = sum(r.completion_tokens for r in results)
        stopped = prefix_ok = kept_tokens = full_len = 0
        acc = 0.0
        for r in results:
            cands = r.candidates
            acc += vote_accuracy(cands, refs[r.request.id])
            for j, c in enumerate(cands):
                if c.finish == LOW_CONFIDENCE:
                    stopped += 1
                    twin = full_by_id[r.request.id][j]  # the same trace (same seed) without early stop
                    prefix_ok += int((twin.text or "").startswith(c.text or ""))
                    kept_tokens += c.tokens or 0
                    full_len += twin.tokens or 0
        rows.append({"method": f"early-stop {label}" if es.threshold != 0.0 else label, "accuracy": acc / len(refs), "tokens": tokens,
                     "stopped_traces": stopped, "stopped_prefix_of_full": prefix_ok,
                     "stopped_tokens": kept_tokens, "stopped_tokens_if_full": full_len})
        timing.append({"run": label, "wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall})
        if server_tokens:
            timing[-1]["server_tokens"] = server_tokens() - counted
        if fixed is None and es.calibrated and label.startswith("eta="):
            limits = [c.model_extra["early_stop_threshold"] for r in results for c in r.candidates
                      if c.model_extra and "early_stop_threshold" in c.model_extra]
            fixed = float(sorted(limits)[len(limits) // 2]) if limits else None
    ref = next(r for r in rows if r["method"] == f"majority@{args.n}")
    for r in rows:
        r["tokens_saved_vs_majority_at_n"] = 1 - r["tokens"] / ref["tokens"]
        r["accuracy_minus_majority_at_n"] = r["accuracy"] - ref["accuracy"]
    return {"set": name, "problems": len(problems), "n": args.n, "rows": rows, "timing": timing,
            "finish_counts": dict(Counter(c.finish for r in results for c in r.candidates))}


def markdown(out: dict[str, Any]) -> str:
    a = out["args"]
    http = a.get("backend") == "http"
    lines = [
        "# Online early stop (DeepConf) on the embedded model, "
        + ("vLLM's OpenAI-compatible server (streamed traces)" if http else "real vLLM engine"),
        "",
        f"{a['limit']} problems per set, {a['n']} traces each, seed 0 (request seeds of `ttscale sample`), "
        f"warm-up W={a['warmup']}, window {a['window']} tokens, top-k {a['top_k']}. Engine: vLLM {out['vllm']} on CPU "
        f"(2 shared cores)" + (f", behind its OpenAI-compatible server, ttscale's `openai` backend with concurrency {a['concurrency']}"
                               if http else "") + f". Command: `{out['command']}`",
        "",
    ]
    for s in out["sets"]:
        lines += [f"## {s['set']} set", "", "| method | accuracy | tokens | saved vs majority@N | Δ accuracy (points) | stopped traces | their tokens (full length) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in s["rows"]:
            lines.append(f"| {r['method']} | {100 * r['accuracy']:.2f}% | {r['tokens']:,} | {100 * r['tokens_saved_vs_majority_at_n']:.1f}% | "
                         f"{100 * r['accuracy_minus_majority_at_n']:+.2f} | {r.get('stopped_traces', '')} | "
                         + (f"{r['stopped_tokens']:,} ({r['stopped_tokens_if_full']:,}) |" if "stopped_tokens" in r else " |"))
        if http:
            lines += ["", "| run | wall s | tokens (client) | tokens (server) | tokens/s | wall vs full | wall vs streamed, no stop |",
                      "|---|---:|---:|---:|---:|---:|---:|"]
        else:
            lines += ["", "| run | wall s | tokens | tokens/s | wall vs full |", "|---|---:|---:|---:|---:|"]
        full = s["timing"][0]["wall_s"]
        streamed = next((t["wall_s"] for t in s["timing"] if t["run"] == "streamed, no stop"), None)
        for t in s["timing"]:
            if http:
                vs = f"{t['wall_s'] / streamed:.2f}x" if streamed and t["run"] != "full" else ""
                lines.append(f"| {t['run']} | {t['wall_s']:.1f} | {t['tokens']:,} | {t.get('server_tokens', 0):,.0f} | "
                             f"{t['tokens_per_s']:,.0f} | {t['wall_s'] / full:.2f}x | {vs} |")
            else:
                lines.append(f"| {t['run']} | {t['wall_s']:.1f} | {t['tokens']:,} | {t['tokens_per_s']:,.0f} | {t['wall_s'] / full:.2f}x |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--eta", type=float, nargs="+", default=[10.0, 50.0, 90.0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--backend", choices=["offline", "http"], default="offline",
                        help="offline: vllm.LLM in this process; http: vLLM's OpenAI-compatible server and the openai backend")
    parser.add_argument("--concurrency", type=int, default=128, help="HTTP calls in flight (--backend http)")
    parser.add_argument("--out", type=Path, default=None, help="default evals/results/early_stop (offline) or early_stop_http")
    args = parser.parse_args()
    args.out = args.out or ROOT / ("evals/results/early_stop_http" if args.backend == "http" else "evals/results/early_stop")

    import vllm

    model = resolve_model("arith-tiny")
    if args.backend == "http":
        with vllm_server(model) as url:
            sets = evaluate_sets(args, model, lambda cfg: OpenAISampler(None, cfg, base_url=url, concurrency=args.concurrency),
                                 lambda: generation_tokens(url))
    else:
        from ttscale.early_stop.vllm_processor import EarlyStopLogitsProcessor
        from ttscale.sampling.backends.vllm import VLLMSampler, in_process

        in_process()
        llm = vllm.LLM(model=model, **cpu_engine_defaults(), logits_processors=[EarlyStopLogitsProcessor])
        sets = evaluate_sets(args, model, lambda cfg: VLLMSampler(model, cfg, llm=llm))
    out = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "vllm": vllm.__version__,
           "command": "flock /tmp/vllm.lock .venv/bin/python evals/early_stop.py " + " ".join(sys.argv[1:]), "sets": sets}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(out))


def evaluate_sets(args: argparse.Namespace, model: str, make: Any, server_tokens: Any = None) -> list[dict[str, Any]]:
    sets = []
    for name in args.sets:
        result = evaluate_set(name, make, model, args, server_tokens)
        sets.append(result)
        for r in result["rows"]:
            print(f"{name:8s} {r['method']:26s} acc {100 * r['accuracy']:6.2f}%  tokens {r['tokens']:>8,}  "
                  f"saved {100 * r['tokens_saved_vs_majority_at_n']:5.1f}%")
        for t in result["timing"]:
            server = f"  server tokens {t['server_tokens']:,.0f}" if "server_tokens" in t else ""
            print(f"{name:8s} {t['run']:18s} wall {t['wall_s']:6.1f}s  {t['tokens_per_s']:8,.0f} tok/s{server}", flush=True)
    return sets


@contextlib.contextmanager
def vllm_server(model: str) -> Iterator[str]:
    """vLLM's OpenAI-compatible server on the embedded model (tests/vllm_server.py's command), its base URL."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fake_upstream import free_port
    from vllm_server import SERVER_ENV, start, stop, vllm_server_command, wait_healthy

    port = free_port()
    log = Path(tempfile.mkdtemp()) / "vllm-server.log"
    env = {**os.environ, **SERVER_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = start(vllm_server_command(Path(model), port), log, env)
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}", log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc, graceful=True)


def generation_tokens(url: str) -> float:
    """The server's generated tokens so far (``vllm:generation_tokens_total`` on its ``/metrics``)."""
    import re

    import httpx

    text = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=10).text
    return sum(float(m.group(1)) for m in re.finditer(r"^vllm:generation_tokens_total\{[^}]*\} (\S+)$", text, re.M))


if __name__ == "__main__":
    main()
