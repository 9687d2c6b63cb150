"""Sampler overhead and fan-out, measured on the real vLLM engine.

1. Offline: ttscale's ``VLLMSampler`` against ``LLM.generate`` called directly, on one engine, with
   the same prompts, ``SamplingParams(n=N, seed=...)`` and the same seeds, alternating, several
   rounds: generated tokens per second side by side and their ratio (1.0 = no overhead). Also the
   full resumable driver (``run_sampling``: bank lines appended and fsynced per request).
2. HTTP: on a real vLLM OpenAI-compatible server, one request with n=N per prompt against N
   requests with n=1 per prompt (ttscale's ``OpenAISampler`` in native and parallel fan-out).

Usage (a few minutes on 2 CPU cores):
    python evals/bench_sampler.py [--model DIR] [--prompts 64] [--n 8] [--max-tokens 64] [--rounds 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ENGINE = dict(dtype="float32", enforce_eager=True, max_model_len=256, max_num_batched_tokens=16384)


def _problems(count: int) -> list[Any]:
    from ttscale.records.datasets import Problem, load_dataset

    try:
        return load_dataset("arith", limit=count)
    except Exception:  # the packaged test set not built yet: the same generator
        from ttscale.arith.task import PRESETS, generate_problems

        return [Problem(p["id"], p["problem"], p["answer"]) for p in generate_problems(PRESETS["default"], count, 1)]


def _paired(a: list[float], b: list[float]) -> float:
    """Median over rounds of a[i] / b[i]."""
    return round(statistics.median(x / y for x, y in zip(a, b)), 3)


def bench_offline(model: str, problems: list[Any], n: int, max_tokens: int, rounds: int) -> dict[str, Any]:
    from vllm import LLM, SamplingParams

    from ttscale.sampling.backends.vllm import VLLMSampler
    from ttscale.sampling.driver import plan_requests, run_sampling
    from ttscale.sampling.sampler import SamplingConfig

    config = SamplingConfig(temperature=0.7, max_tokens=max_tokens, template="arith", seed=0)
    llm = LLM(model=model, enable_prefix_caching=True, **ENGINE)
    sampler = VLLMSampler(model, config, llm=llm)
    requests = plan_requests(problems, {}, n, config.seed)
    prompts = [config.render(p.problem) for p in problems]
    params = [SamplingParams(n=n, temperature=0.7, top_p=1.0, max_tokens=max_tokens, seed=r.seed, logprobs=1) for r in requests]

    def direct() -> tuple[int, float, list[list[str]]]:
        t = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        dt = time.perf_counter() - t
        return sum(len(o.token_ids) for r in outs for o in r.outputs), dt, [[o.text for o in r.outputs] for r in outs]

    def ours() -> tuple[int, float, list[list[str]]]:
        t = time.perf_counter()
        res = sampler.generate(requests)
        dt = time.perf_counter() - t
        return sum(r.completion_tokens for r in res), dt, [[c.text for c in r.candidates] for r in res]

    def driver() -> tuple[int, float, None]:
        with tempfile.TemporaryDirectory() as tmp:
            stats = run_sampling(sampler, problems, Path(tmp) / "bank.jsonl", n)
        return stats.completion_tokens, stats.elapsed, None

    direct(), ours()  # warm-up (first batches build caches)
    rates: dict[str, list[float]] = {"llm_generate": [], "ttscale_sampler": [], "ttscale_run_sampling": []}
    same = True
    for i in range(rounds):
        order = [("llm_generate", direct), ("ttscale_sampler", ours), ("ttscale_run_sampling", driver)]
        if i % 2:
            order.reverse()  # alternate, so drift in machine load hits both sides alike
        texts: dict[str, Any] = {}
        for name, fn in order:
            tokens, dt, out = fn()
            rates[name].append(tokens / dt)
            texts[name] = out
        same &= texts["llm_generate"] == texts["ttscale_sampler"]
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {
        "prompts": len(prompts), "n": n, "max_tokens": max_tokens, "rounds": rounds,
        "tokens_per_s": {k: round(v, 1) for k, v in med.items()},
        "all_rounds": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        # Per-round pairs cancel most of the drift of a shared machine's load; their median is the figure.
        "ratio_sampler_vs_direct": _paired(rates["ttscale_sampler"], rates["llm_generate"]),
        "ratio_run_sampling_vs_direct": _paired(rates["ttscale_run_sampling"], rates["llm_generate"]),
        "same_texts": same,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_http(model: str, problems: list[Any], n: int, max_tokens: int, rounds: int) -> dict[str, Any]:
    import httpx

    from ttscale.sampling.backends.openai import OpenAISampler
    from ttscale.sampling.driver import plan_requests
    from ttscale.sampling.sampler import SamplingConfig

    port = _free_port()
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--max-model-len", "256", "--max-num-batched-tokens", "16384", "--enforce-eager",
    ]
    log = tempfile.NamedTemporaryFile(prefix="vllm-server-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"vLLM server did not start; see {log.name}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        out: dict[str, Any] = {"prompts": len(problems), "n": n, "max_tokens": max_tokens, "rounds": rounds}
        rates: dict[str, list[float]] = {"native_n": [], "parallel_n1": []}
        calls: dict[str, int] = {}
        base = SamplingConfig(temperature=0.7, max_tokens=max_tokens, template="arith", seed=0)
        requests = plan_requests(problems, {}, n, base.seed)
        samplers = {
            name: OpenAISampler(None, SamplingConfig.from_dict({**base.to_dict(), "fan_out": fan}), base_url=url + "/v1", concurrency=32)
            for name, fan in (("native_n", "native"), ("parallel_n1", "parallel"))
        }
        for s in samplers.values():
            s.generate(requests[:4])  # warm-up
        for i in range(rounds):
            names = list(samplers) if i % 2 == 0 else list(reversed(samplers))
            for name in names:
                s = samplers[name]
                before = s.calls
                t = time.perf_counter()
                res = s.generate(requests)
                dt = time.perf_counter() - t
                calls[name] = s.calls - before
                rates[name].append(sum(r.completion_tokens for r in res) / dt)
        med = {k: statistics.median(v) for k, v in rates.items()}
        out.update(
            tokens_per_s={k: round(v, 1) for k, v in med.items()},
            all_rounds={k: [round(x, 1) for x in v] for k, v in rates.items()},
            http_requests_per_round=calls,
            ratio_native_vs_parallel=_paired(rates["native_n"], rates["parallel_n1"]),
        )
        return out
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "ttscale" / "models" / "arith-tiny"))
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-offline", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    parser.add_argument("--max-num-batched-tokens", type=int, default=ENGINE["max_num_batched_tokens"],
                        help="vLLM step token budget. Seeded CPU calls are cut so no prefill is chunked (a chunked "
                             "seeded prefill crashes vLLM-cpu); at >= prompts x n x prompt length nothing is cut, "
                             "as on a GPU.")
    args = parser.parse_args()
    ENGINE["max_num_batched_tokens"] = args.max_num_batched_tokens
    problems = _problems(args.prompts)
    results: dict[str, Any] = {"model": args.model}
    if not args.skip_offline:
        results["offline"] = bench_offline(args.model, problems, args.n, args.max_tokens, args.rounds)
        print(json.dumps({"offline": results["offline"]}, indent=1), flush=True)
    if not args.skip_http:
        results["http"] = bench_http(args.model, problems, args.n, args.max_tokens, args.rounds)
        print(json.dumps({"http": results["http"]}, indent=1), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":  # vLLM spawns its engine process: the guard is required
    main()
