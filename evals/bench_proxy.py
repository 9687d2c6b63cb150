"""Load benchmark of ``ttscale serve``: many concurrent clients through the proxy vs straight to the upstream.

Starts a fast local OpenAI-compatible upstream (tests/fake_upstream.py, answers at once) and the
proxy (``python -m ttscale serve``) as separate processes, then runs the same load twice in one
run: C concurrent clients each sending R chat requests, (a) directly to the upstream asking for
n=N (what the proxy asks for) and (b) through the proxy (policy majority, N samples). Prints
latency percentiles, the proxy's added latency (p50, p99), throughput and errors.

    python evals/bench_proxy.py --clients 200 --requests 10 --n 8 [--json evals/results/bench_proxy.json]

On a 2-core machine the load generator, the proxy and the upstream share the cores, so absolute
figures are pessimistic; the side-by-side difference is what the proxy adds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], health: str) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"})
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[:4]} exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(health, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{cmd[:4]} not healthy after 60 s")


async def load(url: str, body: dict, clients: int, requests: int) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        async def client(i: int) -> None:
            for j in range(requests):
                payload = {**body, "messages": [{"role": "user", "content": f"client {i} question {j}: what is {i} + {j}?"}]}
                t0 = time.perf_counter()
                try:
                    r = await http.post("/chat/completions", json=payload)
                    ok = r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
                    if not ok:
                        errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                        continue
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    done = len(latencies)
    return {
        "requests": clients * requests, "ok": done, "errors": errors, "wall_s": round(wall, 2),
        "throughput_rps": round(done / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if done else None,
        "p90_ms": round(float(np.percentile(lat, 90)), 1) if done else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if done else None,
        "mean_ms": round(float(lat.mean()), 1) if done else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=10, help="requests per client")
    parser.add_argument("--n", type=int, default=8, help="samples per request")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    up_port, proxy_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}/v1"
    procs = []
    try:
        procs.append(start([sys.executable, "tests/fake_upstream.py", "--port", str(up_port)], upstream + "/models"))
        procs.append(start([sys.executable, "-m", "ttscale", "serve", "--upstream", upstream, "--port", str(proxy_port),
                            "--n", str(args.n), "--log-level", "warning", "--concurrency", "512"],
                           f"http://127.0.0.1:{proxy_port}/health"))
        proxy = f"http://127.0.0.1:{proxy_port}/v1"
        body = {"model": "fake-model", "max_tokens": 64}
        asyncio.run(load(proxy, body, 20, 2))  # warm both (connections, answer classifier)
        direct = asyncio.run(load(upstream, {**body, "n": args.n}, args.clients, args.requests))
        via = asyncio.run(load(proxy, body, args.clients, args.requests))
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=10)
    added = {k: round(via[k] - direct[k], 1) for k in ("p50_ms", "p99_ms", "mean_ms") if via[k] is not None and direct[k] is not None}
    result = {"clients": args.clients, "requests_per_client": args.requests, "n": args.n,
              "direct": direct, "proxy": via, "added_latency_ms": added,
              "throughput_ratio": round(via["throughput_rps"] / direct["throughput_rps"], 3) if direct["throughput_rps"] else None,
              "cpus": os.cpu_count()}
    print(f"{'':8}{'ok':>7}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}")
    for name, r in (("direct", direct), ("proxy", via)):
        print(f"{name:8}{r['ok']:>7}{sum(r['errors'].values()):>8}{r['throughput_rps']:>9}{r['p50_ms']:>9}{r['p90_ms']:>9}{r['p99_ms']:>9}")
    print(f"added by the proxy: p50 {added.get('p50_ms')} ms, p99 {added.get('p99_ms')} ms; throughput ratio {result['throughput_ratio']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
