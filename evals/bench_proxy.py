"""Load benchmark of ``ttscale serve``: concurrent clients through the proxy vs straight to the upstream.

Starts a fast local OpenAI-compatible upstream (tests/fake_upstream.py, answers at once) and the
proxy (``python -m ttscale serve``) as separate processes, then for each client count C runs the
same load twice: C concurrent clients sending chat requests, (a) directly to the upstream asking
for n=N (what the proxy asks for) and (b) through the proxy (policy majority, N samples). Prints
latency percentiles, the proxy's added latency (p50, p99), throughput side by side, and the
proxy's CPU time per proxied request (from /proc: user + system time of its process).

    python evals/bench_proxy.py --clients 1,200 --total 2000 --n 8 [--json evals/results/bench_proxy.json]

With ``--pin`` (the default on 2+ cores) the proxy runs on a core of its own (``taskset``) and
the upstream and the load generator share the others, so the proxy does not take the CPU the
load needs: the throughput ratio then says whether the proxy keeps up with the upstream.
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
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], health: str, cpus: str | None = None) -> subprocess.Popen:
    """``cmd`` started (on ``cpus`` with taskset) and answering ``health``; its stderr goes to a
    temporary file (a pipe nobody reads would fill and stall it)."""
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"})
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"{cmd[:6]} exited: {log.read().decode()[-2000:]}")
        try:
            if httpx.get(health, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{cmd[:4]} not healthy after 60 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its waited-for children, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


async def load(url: str, body: dict, clients: int, requests: int) -> dict:
    """``clients`` concurrent clients each sending ``requests`` chat requests one after another.
    With aiohttp (C parser) when installed: httpx's client costs 3-5 ms of CPU per request at
    200 connections, more than the proxy, and would measure itself instead."""
    latencies: list[float] = []
    errors: dict[str, int] = {}

    def failed(what: str) -> None:
        errors[what] = errors.get(what, 0) + 1

    try:
        import aiohttp
    except ImportError:
        aiohttp = None

    async def client(i: int, post) -> None:  # type: ignore[no-untyped-def]
        for j in range(requests):
            payload = {**body, "messages": [{"role": "user", "content": f"client {i} question {j}: what is {i} + {j}?"}]}
            t0 = time.perf_counter()
            try:
                status, reply = await post(payload)
            except Exception as exc:  # noqa: BLE001 - counted, the load goes on
                failed(type(exc).__name__)
                continue
            if status != 200 or not reply["choices"][0]["message"]["content"]:
                failed(str(status))
                continue
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    if aiohttp is not None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients),
                                         timeout=aiohttp.ClientTimeout(total=120)) as session:
            async def post(payload: dict) -> tuple[int, dict]:
                async with session.post(url + "/chat/completions", json=payload) as r:
                    return r.status, await r.json()

            await asyncio.gather(*(client(i, post) for i in range(clients)))
    else:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(timeout=120, limits=limits) as http:
            async def post(payload: dict) -> tuple[int, dict]:  # type: ignore[misc]
                r = await http.post(url + "/chat/completions", json=payload)
                return r.status_code, r.json()

            await asyncio.gather(*(client(i, post) for i in range(clients)))
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


def run(url: str, body: dict, clients: int, requests: int, upstream: int, proxy: int | None = None) -> dict:
    """One load, with the CPU milliseconds per successful request of the upstream, the load
    generator (this process) and, with ``proxy``, the proxy."""
    pids = {"upstream": upstream, "client": os.getpid(), **({"proxy": proxy} if proxy else {})}
    before = {k: cpu_seconds(p) for k, p in pids.items()}
    out = asyncio.run(load(url, body, clients, requests))
    for k, p in pids.items():
        out[f"{k}_cpu_ms_per_request"] = round((cpu_seconds(p) - before[k]) * 1000 / max(1, out["ok"]), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,200", help="client counts, comma-separated")
    parser.add_argument("--total", type=int, default=2000, help="requests per load (split among the clients)")
    parser.add_argument("--n", type=int, default=8, help="samples per request")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=(os.cpu_count() or 1) >= 2,
                        help="proxy on the last core, upstream and load generator on the others")
    parser.add_argument("--log-level", default="warning", help="the proxy's --log-level (info: an access line per request)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    ncpu = os.cpu_count() or 1
    proxy_cpus = str(ncpu - 1) if args.pin else None
    other_cpus = f"0-{ncpu - 2}" if args.pin else None
    if args.pin:
        os.sched_setaffinity(0, range(ncpu - 1))  # the load generator beside the upstream
    up_port, proxy_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}/v1"
    procs = []
    results = []
    try:
        procs.append(start([sys.executable, "tests/fake_upstream.py", "--port", str(up_port)], upstream + "/models", other_cpus))
        procs.append(start([sys.executable, "-m", "ttscale", "serve", "--upstream", upstream, "--port", str(proxy_port),
                            "--n", str(args.n), "--log-level", args.log_level, "--concurrency", "512"],
                           f"http://127.0.0.1:{proxy_port}/health", proxy_cpus))
        proxy = f"http://127.0.0.1:{proxy_port}/v1"
        body = {"model": "fake-model", "max_tokens": 64}
        asyncio.run(load(proxy, body, 20, 10))  # warm both (connections, answer classifier)
        for clients in (int(c) for c in args.clients.split(",")):
            requests = max(1, args.total // clients)
            direct = run(upstream, {**body, "n": args.n}, clients, requests, procs[0].pid)
            via = run(proxy, body, clients, requests, procs[0].pid, procs[1].pid)
            added = {k: round(via[k] - direct[k], 1) for k in ("p50_ms", "p99_ms", "mean_ms")
                     if via[k] is not None and direct[k] is not None}
            ratio = round(via["throughput_rps"] / direct["throughput_rps"], 3) if direct["throughput_rps"] else None
            results.append({"clients": clients, "requests_per_client": requests, "direct": direct, "proxy": via,
                            "added_latency_ms": added, "throughput_ratio": ratio})
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=10)
    print(f"n={args.n}, proxy pinned to its own core: {args.pin} ({ncpu} cores)")
    print(f"{'':16}{'':15}{'':24}{'CPU ms per request':>29}")
    print(f"{'clients':>7} {'':7}{'ok':>6}{'errors':>7}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'proxy':>9}{'upstream':>10}{'client':>8}")
    for r in results:
        for name in ("direct", "proxy"):
            x = r[name]
            print(f"{r['clients']:>7} {name:7}{x['ok']:>6}{sum(x['errors'].values()):>7}{x['throughput_rps']:>8}"
                  f"{x['p50_ms']:>8}{x['p99_ms']:>8}{x.get('proxy_cpu_ms_per_request', ''):>9}"
                  f"{x['upstream_cpu_ms_per_request']:>10}{x['client_cpu_ms_per_request']:>8}")
        a = r["added_latency_ms"]
        print(f"{'':8}added by the proxy: p50 {a.get('p50_ms')} ms, p99 {a.get('p99_ms')} ms; "
              f"throughput ratio {r['throughput_ratio']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {"n": args.n, "pinned": args.pin, "cpus": ncpu, "proxy_log_level": args.log_level, "loads": results}
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
