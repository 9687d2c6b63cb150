"""Load benchmark of ``ttscale serve``: concurrent clients through the proxy vs straight to the upstream.

Starts an upstream and the proxy (``python -m ttscale serve``) as separate processes, then for
each client count C runs the same load (same prompts, same seeds) straight to the upstream asking
for n=N samples, and through the proxy (policy majority over N samples). Prints side by side:
throughput (requests/s and upstream samples/s), latency p50/p99, the proxy's added latency, the
throughput ratio, and CPU milliseconds per request of the proxy, the upstream and the load
generator (from /proc: user + system time of each process group).

Two upstreams:

- ``--upstream fake`` (default): tests/fake_upstream.py, which answers at once (about 0.2 ms of
  CPU per request). It shows the proxy's own cost: against it any Python proxy is the
  bottleneck, so the throughput ratio there says how many requests/s one proxy core serves.
- ``--upstream vllm``: the real vLLM OpenAI server on the embedded model, /v1/completions with
  the packaged arithmetic problems (``ttscale/arith``) and short ``max_tokens``; the accuracy
  column is the first choice's (direct: one sample; proxy: the majority answer of N). Only one
  vLLM engine may run at a time on the machine::

      flock /tmp/vllm.lock python evals/bench_proxy.py --upstream vllm --clients 1,200 --total 40,400

With ``--pin`` (the default on 2+ cores) the proxy runs on the last core (``taskset``) and the
upstream and the load generator (aiohttp, raw JSON bodies: about 0.2 ms of CPU per request)
share the others. ``--before DIR`` runs a second proxy from another checkout (e.g. ``git
worktree add /tmp/before <commit>``) on the same loads, for a before/after in one run;
``--repeat R`` runs every load R times, interleaved, and reports medians.

    python evals/bench_proxy.py --clients 1,200 --total 2000 --n 8 [--before /tmp/before] [--json out.json]
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

QUIET_VLLM = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING",
              "TOKENIZERS_PARALLELISM": "false"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], health: str, cpus: str | None = None, *, cwd: Path = ROOT, seconds: float = 60,
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """``cmd`` started in its own process group (on ``cpus`` with taskset) and answering
    ``health``; its output goes to a temporary file (a pipe nobody reads would fill and stall it)."""
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": f"{cwd}:{ROOT / 'tests'}", **(env or {})})
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"{cmd[:6]} exited: {log.read().decode(errors='replace')[-3000:]}")
        try:
            if httpx.get(health, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"{cmd[:6]} not healthy after {seconds:g} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process of a process group (vLLM's server has an
    engine process beside it), from /proc."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[2]) == pgid:  # field 5 of stat: the process group
            total += sum(int(x) for x in fields[11:13])
    return total / os.sysconf("SC_CLK_TCK")


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- the loads --------------------------------------------------------------------------------------


class Workload:
    """What one request of client i, request j sends, and how its reply is checked."""

    def __init__(self, upstream: str, n: int, max_tokens: int) -> None:
        self.upstream, self.n, self.max_tokens = upstream, n, max_tokens
        if upstream == "vllm":
            from ttscale.arith.paths import test_set_path
            from ttscale.arith.task import extract_answer, format_prompt

            rows = [json.loads(line) for line in test_set_path().read_text().splitlines() if line.strip()]
            self.problems = [(format_prompt(r["problem"]), str(r["answer"])) for r in rows]
            self.extract: Callable[[str], str | None] = extract_answer
            self.path = "/completions"
        else:
            self.path = "/chat/completions"

    def body(self, i: int, j: int, direct: bool, model: str) -> tuple[dict[str, Any], str | None]:
        """The request body, and the right answer when known."""
        body: dict[str, Any] = {"model": model, "max_tokens": self.max_tokens}
        if direct:
            body["n"] = self.n  # what the proxy asks the upstream for
        if self.upstream == "vllm":
            prompt, answer = self.problems[(i * 7919 + j) % len(self.problems)]
            return {**body, "prompt": prompt, "seed": 1000 * i + j}, answer
        return {**body, "messages": [{"role": "user", "content": f"client {i} question {j}: what is {i} + {j}?"}]}, None

    def read(self, reply: dict[str, Any], direct: bool) -> tuple[str, int]:
        """The first choice's text and the upstream samples the request took."""
        choice = reply["choices"][0]
        text = choice["message"]["content"] if "message" in choice else choice["text"]
        samples = len(reply["choices"]) if direct else reply["ttscale"]["samples"]
        return text or "", samples


async def load(url: str, work: Workload, clients: int, requests: int, *, direct: bool, model: str) -> dict[str, Any]:
    """``clients`` concurrent clients each sending ``requests`` requests one after another, with
    aiohttp (C HTTP parser; raw JSON bodies): httpx's client costs 3-5 ms of CPU per request at
    200 connections, more than the proxy, and would measure itself instead."""
    import aiohttp

    latencies: list[float] = []
    errors: dict[str, int] = {}
    samples = right = judged = 0

    def failed(what: str) -> None:
        errors[what] = errors.get(what, 0) + 1

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal samples, right, judged
        for j in range(requests):
            body, answer = work.body(i, j, direct, model)
            t0 = time.perf_counter()
            try:
                async with session.post(url + work.path, data=json.dumps(body),
                                        headers={"content-type": "application/json"}) as r:
                    status, raw = r.status, await r.read()
                reply = json.loads(raw) if status == 200 else None
                text, drawn = work.read(reply, direct) if reply else ("", 0)
            except Exception as exc:  # noqa: BLE001 - counted, the load goes on
                failed(type(exc).__name__)
                continue
            if status != 200 or (not text and answer is None):
                failed(str(status))
                continue
            latencies.append(time.perf_counter() - t0)
            samples += drawn
            if answer is not None:
                judged += 1
                right += work.extract(text) == answer

    t0 = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients),
                                     timeout=aiohttp.ClientTimeout(total=600)) as session:
        await asyncio.gather(*(client(i, session) for i in range(clients)))
    wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    done = len(latencies)

    def pct(q: float) -> float | None:
        return round(float(np.percentile(lat, q)), 1) if done else None

    return {
        "requests": clients * requests, "ok": done, "errors": errors, "wall_s": round(wall, 2),
        "throughput_rps": round(done / wall, 2), "samples_per_s": round(samples / wall, 1),
        "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "mean_ms": round(float(lat.mean()), 1) if done else None,
        **({"accuracy": round(right / judged, 3)} if judged else {}),
    }


def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over repeated runs of one load (errors summed)."""
    out = dict(runs[0])
    for k, v in runs[0].items():
        if isinstance(v, (int, float)) and all(isinstance(r.get(k), (int, float)) for r in runs):
            out[k] = round(float(np.median([r[k] for r in runs])), 3)
    out["errors"] = {e: sum(r["errors"].get(e, 0) for r in runs) for r in runs for e in r["errors"]}
    return out


def run(url: str, work: Workload, clients: int, requests: int, groups: dict[str, int], *, direct: bool,
        model: str) -> dict[str, Any]:
    """One load, with the CPU milliseconds per successful request of each process group in
    ``groups`` and of the load generator (this process)."""
    before = {k: group_cpu_seconds(p) for k, p in groups.items()}
    me = self_cpu_seconds()
    out = asyncio.run(load(url, work, clients, requests, direct=direct, model=model))
    ok = max(1, out["ok"])
    for k, p in groups.items():
        out[f"{k}_cpu_ms_per_request"] = round((group_cpu_seconds(p) - before[k]) * 1000 / ok, 3)
    out["client_cpu_ms_per_request"] = round((self_cpu_seconds() - me) * 1000 / ok, 3)
    return out


# -- main -------------------------------------------------------------------------------------------


def start_upstream(kind: str, cpus: str | None, latency: float = 0.0) -> tuple[subprocess.Popen, str, str]:
    """The upstream process, its /v1 URL and the model name clients ask for."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    if kind == "fake":
        cmd = [sys.executable, "tests/fake_upstream.py", "--port", str(port), "--latency", str(latency)]
        return start(cmd, url + "/models", cpus), url, "fake-model"
    from vllm_server import vllm_server_command

    from ttscale.arith.paths import model_dir

    env = dict(QUIET_VLLM)
    if cpus is not None:  # vLLM's CPU backend binds its OpenMP threads itself: to the upstream's cores
        env["VLLM_CPU_OMP_THREADS_BIND"] = cpus
    cmd = vllm_server_command(model_dir(), port, "--served-model-name", "arith-tiny", "--disable-uvicorn-access-log")
    return start(cmd, url.removesuffix("/v1") + "/health", cpus, seconds=400, env=env), url, "arith-tiny"


def start_proxy(root: Path, upstream: str, n: int, log_level: str, cpus: str | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "ttscale", "serve", "--upstream", upstream, "--port", str(port), "--n", str(n),
           "--log-level", log_level, "--concurrency", "512"]
    return start(cmd, f"http://127.0.0.1:{port}/health", cpus, cwd=root), f"http://127.0.0.1:{port}/v1"


def affinity(pgid: int) -> str:
    """The CPUs each process of a group may run on (to show the pinning held)."""
    seen = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            if int(Path(status.parent, "stat").read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
        except OSError:
            continue
        seen.update(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Cpus_allowed_list"))
    return ",".join(sorted(seen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", choices=("fake", "vllm"), default="fake",
                        help="fake: tests/fake_upstream.py (instant); vllm: the real vLLM server on the embedded model")
    parser.add_argument("--fake-latency", type=float, default=0.0,
                        help="seconds the fake upstream waits before each answer (a model's time, without its CPU)")
    parser.add_argument("--clients", default="1,200", help="client counts, comma-separated")
    parser.add_argument("--total", default=None,
                        help="requests per load, split among the clients: one number, or one per client count "
                             "(default 2000 against the fake upstream, 40,400 against vLLM)")
    parser.add_argument("--n", type=int, default=8, help="samples per request")
    parser.add_argument("--max-tokens", type=int, default=None, help="max_tokens per sample (the embedded model needs about 40 for a 4-step problem)")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=(os.cpu_count() or 1) >= 2,
                        help="proxy on the last core, upstream and load generator on the others")
    parser.add_argument("--before", type=Path, default=None,
                        help="a checkout of an earlier commit: its proxy runs the same loads too")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each load this many times, interleaved, and report the medians (a shared machine's load drifts)")
    parser.add_argument("--log-level", default="warning", help="the proxy's --log-level (info: an access line per request)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    clients = [int(c) for c in args.clients.split(",")]
    totals = [int(t) for t in (args.total or ("2000" if args.upstream == "fake" else "40,400")).split(",")]
    totals = totals * len(clients) if len(totals) == 1 else totals
    if len(totals) != len(clients):
        parser.error(f"--total: expected one number or {len(clients)} (one per client count), got {args.total}")
    max_tokens = args.max_tokens or 64

    ncpu = os.cpu_count() or 1
    proxy_cpus = str(ncpu - 1) if args.pin else None
    other_cpus = (f"0-{ncpu - 2}" if ncpu > 2 else "0") if args.pin else None
    if args.pin:
        os.sched_setaffinity(0, range(ncpu - 1))  # the load generator beside the upstream
    work = Workload(args.upstream, args.n, max_tokens)
    load_before = loadavg()
    procs: list[subprocess.Popen] = []
    results = []
    pinning: dict[str, str] = {}
    try:
        upstream, upstream_url, model = start_upstream(args.upstream, other_cpus, args.fake_latency)
        procs.append(upstream)
        proxies = {"proxy": start_proxy(ROOT, upstream_url, args.n, args.log_level, proxy_cpus)}
        if args.before is not None:
            proxies["before"] = start_proxy(args.before.resolve(), upstream_url, args.n, args.log_level, proxy_cpus)
        procs += [p for p, _ in proxies.values()]
        pinning = {"upstream": affinity(upstream.pid), **{k: affinity(p.pid) for k, (p, _) in proxies.items()},
                   "client": ",".join(map(str, sorted(os.sched_getaffinity(0))))}
        for _, url in proxies.values():  # warm (connections, answer classifier, vLLM's first batches)
            asyncio.run(load(url, work, 20, 2, direct=False, model=model))
        asyncio.run(load(upstream_url, work, 20, 2, direct=True, model=model))
        for c, total in zip(clients, totals):
            requests = max(1, total // c)
            runs: dict[str, list[dict[str, Any]]] = {"direct": [], **{name: [] for name in proxies}}
            for rep in range(args.repeat):  # interleaved, the proxies' order alternating: drifting load hits all alike
                runs["direct"].append(run(upstream_url, work, c, requests, {"upstream": upstream.pid}, direct=True, model=model))
                for name in (list(proxies) if rep % 2 == 0 else list(proxies)[::-1]):
                    proc, url = proxies[name]
                    runs[name].append(run(url, work, c, requests, {"upstream": upstream.pid, "proxy": proc.pid},
                                          direct=False, model=model))
            row: dict[str, Any] = {"clients": c, "requests_per_client": requests, "repeats": args.repeat,
                                   **{name: median(rs) for name, rs in runs.items()}}
            direct = row["direct"]
            for name in proxies:
                via = row[name]
                via["added_latency_ms"] = {k: round(via[k] - direct[k], 1) for k in ("p50_ms", "p99_ms", "mean_ms")
                                           if via[k] is not None and direct[k] is not None}
                via["throughput_ratio"] = round(via["throughput_rps"] / direct["throughput_rps"], 3) if direct["throughput_rps"] else None
            if args.repeat > 1:
                row["runs"] = runs
            results.append(row)
    finally:
        for p in reversed(procs):
            stop(p)
    load_after = loadavg()

    what = f"fake upstream (answers after {args.fake_latency:g} s)" if args.upstream == "fake" else f"real vLLM server, embedded model, max_tokens {max_tokens}"
    print(f"{what}; n={args.n}; medians of {args.repeat} runs; pinned: {pinning or 'no'}; load average before {load_before}, after {load_after}")
    print(f"{'':31}{'':8}{'':16}{'':13}{'CPU ms per request':>27}")
    print(f"{'clients':>7} {'path':8}{'ok':>5}{'err':>4}{'req/s':>8}{'samples/s':>10}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'ratio':>7}{'acc':>6}{'proxy':>8}{'upstrm':>8}{'client':>8}")
    for r in results:
        for name in ("direct", "proxy", "before"):
            if name not in r:
                continue
            x = r[name]
            print(f"{r['clients']:>7} {name:8}{x['ok']:>5}{sum(x['errors'].values()):>4}{x['throughput_rps']:>8}"
                  f"{x['samples_per_s']:>10}{x['p50_ms']!s:>8}{x['p99_ms']!s:>8}{x.get('throughput_ratio', '')!s:>7}"
                  f"{x.get('accuracy', '')!s:>6}{x.get('proxy_cpu_ms_per_request', '')!s:>8}"
                  f"{x['upstream_cpu_ms_per_request']:>8}{x['client_cpu_ms_per_request']:>8}")
        for name in ("proxy", "before"):
            if name in r:
                a = r[name]["added_latency_ms"]
                print(f"{'':8}{name} adds p50 {a.get('p50_ms')} ms, p99 {a.get('p99_ms')} ms")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {"upstream": args.upstream, "fake_latency": args.fake_latency, "n": args.n, "max_tokens": max_tokens, "pinned": pinning, "cpus": ncpu,
                  "proxy_log_level": args.log_level, "repeat": args.repeat, "before": str(args.before) if args.before else None,
                  "loadavg_before": load_before, "loadavg_after": load_after, "loads": results}
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
