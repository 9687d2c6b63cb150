"""The same problems x samples through vLLM offline, the vLLM server over HTTP, and transformers.

Runs ``ttscale sample`` three times on the first P problems of the packaged arithmetic test set
with the embedded model, n samples each, the same seed: ``--backend vllm`` (in-process engine),
``--backend openai`` against ``python -m vllm.entrypoints.openai.api_server`` on 127.0.0.1, and
``--backend hf``. Then compares the banks: every run complete; vLLM offline vs server texts and
cumulative log-probs per sample; maj@n and wall time per backend.

vLLM's sampled tokens depend on what else is in the batch (its numerics are not batch
invariant), so the exact comparison runs one request at a time on both sides
(``--batch-size 1`` offline, ``--concurrency 1`` over HTTP); ``--batched`` also runs both with
their default batching and reports how many samples still agree.

    python evals/three_backends.py --problems 100 --n 8 [--batched] [--json evals/results/three_backends.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ttscale.arith import model_dir, test_set_path  # noqa: E402
from ttscale.records.bank import read_bank  # noqa: E402

ENV = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING",
       "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
ENGINE = ["--dtype", "float32", "--max-model-len", "256", "--engine-arg", "enforce_eager=true",
          "--engine-arg", "max_num_batched_tokens=16384"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample(name: str, out: Path, dataset: Path, n: int, seed: int, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "ttscale", "sample", "--dataset", str(dataset), "--out", str(out), "--n", str(n),
           "--template", "arith", "--temperature", "0.7", "--max-tokens", "128", "--seed", str(seed), "--json", "--quiet", *extra]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{name}: {done.stderr[-2000:]}")
    summary = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])  # vLLM prints too
    return {"wall_s": round(wall, 1), **{k: summary.get(k) for k in ("samples", "requests", "calls", "completion_tokens", "tokens_per_s")}}


def maj_at_n(bank: Path, n: int) -> float:
    done = subprocess.run([sys.executable, "-m", "ttscale", "eval", str(bank), "--k", f"1,{n}", "--json"], env=ENV,
                          capture_output=True, text=True, check=True)
    data = json.loads(done.stdout)
    return data["policies"]["majority"]["accuracy"][-1]


def compare(a: Path, b: Path) -> dict:
    ra, rb = read_bank(a).by_id(), read_bank(b).by_id()
    same_text = total = 0
    max_lp = 0.0
    for pid, rec in ra.items():
        for sa, sb in zip(rec.samples, rb[pid].samples):
            total += 1
            if sa.text == sb.text:
                same_text += 1
                if sa.logprob is not None and sb.logprob is not None:
                    max_lp = max(max_lp, abs(sa.logprob - sb.logprob))
    return {"samples": total, "same_text": same_text, "max_logprob_diff_where_same": max_lp}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--batched", action="store_true", help="also compare with default batching on both sides")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="three_backends_"))
    dataset = work / "problems.jsonl"
    rows = test_set_path("default").read_text().splitlines()[: args.problems]
    dataset.write_text("\n".join(rows) + "\n")
    model = str(model_dir())
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", "127.0.0.1", "--port", str(port),
         "--dtype", "float32", "--max-model-len", "256", "--max-num-batched-tokens", "16384", "--enforce-eager"],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    runs: dict[str, dict] = {}
    try:
        runs["vllm-offline"] = sample("vllm", work / "offline.jsonl", dataset, args.n, args.seed,
                                      ["--backend", "vllm", "--model", model, "--batch-size", "1", *ENGINE])
        deadline = time.time() + 300
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError("vLLM server did not start")
            time.sleep(1)
        url = f"http://127.0.0.1:{port}/v1"
        runs["vllm-server"] = sample("openai", work / "server.jsonl", dataset, args.n, args.seed,
                                     ["--backend", "openai", "--base-url", url, "--model", model, "--concurrency", "1"])
        if args.batched:
            runs["vllm-server-batched"] = sample("openai", work / "server_batched.jsonl", dataset, args.n, args.seed,
                                                 ["--backend", "openai", "--base-url", url, "--model", model, "--concurrency", "32"])
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
    if args.batched:
        runs["vllm-offline-batched"] = sample("vllm", work / "offline_batched.jsonl", dataset, args.n, args.seed,
                                              ["--backend", "vllm", "--model", model, *ENGINE])
    runs["transformers"] = sample("hf", work / "hf.jsonl", dataset, args.n, args.seed, ["--backend", "hf", "--model", model])
    banks = {"vllm-offline": "offline", "vllm-server": "server", "transformers": "hf",
             "vllm-server-batched": "server_batched", "vllm-offline-batched": "offline_batched"}
    for name, stem in banks.items():
        if name in runs:
            bank = work / f"{stem}.jsonl"
            counts = read_bank(bank).sample_counts()
            runs[name]["complete"] = len(counts) == args.problems and set(counts.values()) == {args.n}
            runs[name]["maj_at_n"] = maj_at_n(bank, args.n)
    result = {"problems": args.problems, "n": args.n, "seed": args.seed, "runs": runs,
              "offline_vs_server": compare(work / "offline.jsonl", work / "server.jsonl")}
    if args.batched:
        result["offline_vs_server_batched"] = compare(work / "offline_batched.jsonl", work / "server_batched.jsonl")
    for name, r in runs.items():
        print(f"{name:22} complete={r['complete']} samples={r['samples']} maj@{args.n}={100 * r['maj_at_n']:.1f}% "
              f"wall={r['wall_s']}s tok/s={r['tokens_per_s']}")
    c = result["offline_vs_server"]
    print(f"offline vs server (one request at a time): {c['same_text']}/{c['samples']} identical texts, "
          f"max |logprob diff| {c['max_logprob_diff_where_same']:.2e}")
    if args.batched:
        c = result["offline_vs_server_batched"]
        print(f"offline vs server (default batching): {c['same_text']}/{c['samples']} identical texts")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
