"""The proxy's majority vote against ``ttscale eval``'s maj@8, on the embedded model behind the real vLLM server.

1. Starts ``python -m vllm.entrypoints.openai.api_server`` with the packaged model (arith-tiny)
   and ``ttscale serve`` in front of it (policy majority, n = 8).
2. Sends the first P problems of the packaged test set through the proxy with the official
   openai client (completions, the arith prompt, temperature 0.7), one request per problem with
   seed ``request_seed(S, id, 0)``: the proxy's accuracy is how often its chosen answer is right.
3. Samples a bank of the same model from the same server with ``ttscale sample`` (n = 8 with the
   same seeds, then grown to ``--pool`` samples) and runs ``ttscale eval --json``: maj@8 exact
   over the pool, and the standard error a single 8-sample vote per problem has around it.

Prints both accuracies, their difference in standard errors, and how many of the proxy's votes
equal the bank's vote over its first 8 samples (the same seeds give the same samples).

    python evals/proxy_majority.py --problems 100 --pool 32 [--json evals/results/proxy_majority.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ttscale.arith import model_dir, test_set_path  # noqa: E402
from ttscale.estimate.exact import majority_at_k  # noqa: E402
from ttscale.records.bank import read_bank  # noqa: E402
from ttscale.sampling.sampler import SamplingConfig, request_seed  # noqa: E402

ENV = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING",
       "PYTHONPATH": str(ROOT)}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url: str, proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} not up after {seconds} s")


async def through_proxy(proxy: str, model: str, rows: list[dict], seed: int, temperature: float, max_tokens: int,
                        concurrency: int) -> list[dict]:
    import openai

    client = openai.AsyncOpenAI(base_url=proxy, api_key="unused", max_retries=0, timeout=600)
    template = SamplingConfig(template="arith")
    gate = asyncio.Semaphore(concurrency)

    async def one(row: dict) -> dict:
        async with gate:
            resp = await client.completions.create(
                model=model, prompt=template.render(row["problem"]), seed=request_seed(seed, row["id"], 0),
                temperature=temperature, max_tokens=max_tokens)
        return resp.model_extra["ttscale"]

    try:
        return await asyncio.gather(*(one(r) for r in rows))
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--pool", type=int, default=32, help="bank samples per problem for the exact maj@8")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=1,
                        help="requests in flight (1: the proxy's and the bank's requests run alone, so the same seeds give "
                             "the same samples; vLLM's numerics depend on what else is in the batch)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    rows = [json.loads(line) for line in test_set_path("default").read_text().splitlines()[: args.problems]]
    work = Path(tempfile.mkdtemp(prefix="proxy_majority_"))
    dataset = work / "problems.jsonl"
    dataset.write_text("".join(json.dumps({"id": r["id"], "problem": r["problem"], "answer": r["answer"]}) + "\n" for r in rows))
    model = str(model_dir())
    vport, pport = free_port(), free_port()
    server = f"http://127.0.0.1:{vport}/v1"
    procs = []
    t0 = time.perf_counter()
    try:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", "127.0.0.1", "--port", str(vport),
             "--dtype", "float32", "--max-model-len", "256", "--max-num-batched-tokens", "16384", "--enforce-eager"],
            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        wait(f"http://127.0.0.1:{vport}/health", procs[-1])
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "ttscale", "serve", "--upstream", server, "--port", str(pport), "--n", "8",
             "--policy", "majority", "--log-level", "warning", "--timeout", "600"],
            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        wait(f"http://127.0.0.1:{pport}/health", procs[-1])
        started = time.perf_counter() - t0

        t1 = time.perf_counter()
        proxied = asyncio.run(through_proxy(f"http://127.0.0.1:{pport}/v1", model, rows, args.seed, args.temperature,
                                            args.max_tokens, args.concurrency))
        proxy_seconds = time.perf_counter() - t1

        bank = work / "bank.jsonl"
        common = ["--backend", "openai", "--base-url", server, "--model", model, "--dataset", str(dataset), "--out", str(bank),
                  "--template", "arith", "--temperature", str(args.temperature), "--max-tokens", str(args.max_tokens),
                  "--seed", str(args.seed), "--concurrency", str(args.concurrency), "--quiet"]
        for n in (8, args.pool):
            subprocess.run([sys.executable, "-m", "ttscale", "sample", *common, "--n", str(n)], env=ENV, check=True)
        evaluated = json.loads(subprocess.run([sys.executable, "-m", "ttscale", "eval", str(bank), "--k", "8", "--json"],
                                              env=ENV, check=True, capture_output=True, text=True).stdout)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)

    reference = {r["id"]: r["answer"] for r in rows}
    records = read_bank(bank).by_id()  # merges the n = 8 lines with the lines that grew the pool
    proxy_right = np.array([t["answer"] == reference[r["id"]] for t, r in zip(proxied, rows)], dtype=float)
    maj8 = evaluated["policies"]["majority"]["accuracy"][0]
    # Per problem: the exact probability that a vote of 8 of its pool samples is right; a single
    # vote per problem (what the proxy draws) has variance m(1-m) around it.
    per_problem = []
    same_samples: list[float] = []  # majority of the very samples the proxy drew, ties credited 1/t
    same_vote = 0
    for r, t in zip(rows, proxied):
        answers = [s.answer for s in records[r["id"]].samples]
        votes = Counter(a for a in answers if a is not None)
        classes = list(votes) or ["-"]
        counts = np.array([[votes.get(a, 0) for a in classes]])
        correct = np.array([[a == reference[r["id"]] for a in classes]])
        per_problem.append(float(majority_at_k(counts, correct, np.array([len(answers)]), [8])[0, 0]))
        first8 = Counter(a for a in answers[:8] if a is not None)
        top8 = max(first8.values()) if first8 else 0
        tied = [a for a, c in first8.items() if c == top8]
        same_samples.append(sum(a == reference[r["id"]] for a in tied) / len(tied) if tied else 0.0)
        top = max(first8.values()) if first8 else 0
        if t["answer"] in {a for a, c in first8.items() if c == top} or (not first8 and t["answer"] is None):
            same_vote += 1
    m = np.array(per_problem, dtype=float)
    se = float(np.sqrt(np.sum(m * (1 - m))) / len(m))
    diff = float(proxy_right.mean() - maj8)
    result = {
        "problems": len(rows), "n": 8, "pool": args.pool, "temperature": args.temperature,
        "proxy_majority_accuracy": float(proxy_right.mean()), "eval_maj_at_8": maj8,
        "difference": diff, "stderr_of_one_vote_per_problem": se, "difference_in_stderr": diff / se if se else None,
        "proxy_votes_equal_to_bank_first_8_vote": same_vote,
        "majority_of_the_same_8_samples": float(np.mean(same_samples)),
        "proxy_samples": int(sum(t["samples"] for t in proxied)),
        "proxy_tokens": int(sum(t["prompt_tokens"] + t["completion_tokens"] for t in proxied)),
        "proxy_seconds": round(proxy_seconds, 1), "startup_seconds": round(started, 1),
    }
    print(f"proxy majority (one 8-sample vote per problem): {100 * result['proxy_majority_accuracy']:.2f}%")
    print(f"ttscale eval maj@8 (exact over {args.pool} samples per problem): {100 * maj8:.2f}%")
    print(f"difference {100 * diff:+.2f} points = {result['difference_in_stderr']:+.2f} standard errors ({100 * se:.2f} points)")
    print(f"proxy vote equals the bank's vote over the same 8 seeded samples: {same_vote}/{len(rows)}; "
          f"majority of those 8 with exact tie credit: {100 * np.mean(same_samples):.2f}% (the proxy breaks ties at random)")
    print(f"proxy: {result['proxy_samples']} samples, {result['proxy_tokens']} tokens in {proxy_seconds:.1f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
