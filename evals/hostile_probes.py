"""The hostile-input probes of issue 14, run against one or more checkouts side by side.

Every probe is a real run: ``python -m ttscale ...`` with ``PYTHONPATH=TREE`` on files written
here, the proxy as ``python -m ttscale serve`` in front of a local fake upstream (a threaded
stdlib HTTP server in this process whose replies each probe chooses: normal, no ``choices``,
``choices: null``, a 307, a 100,000-digit answer, bad ``usage``), and the Python API in a child
process. No model or GPU is needed. Per probe it records the exit code or HTTP status, the first
line of the message (a traceback's last line), wall time, peak RSS of the child (``wait4``; for
proxy probes the proxy's high-water mark so far) and probe-specific counts (upstream requests,
samples per problem of a bank, connections closed).

    python evals/hostile_probes.py --tree before=/tmp/before --tree after=.
    # writes evals/results/hostile_probes.json and .txt (one column per tree)

Each probe has its own timeout (and command-line probes an 8 GiB address-space limit), so a probe
that hangs or allocates without bound costs its timeout, not the run or the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

PY = sys.executable
KEY = "probe-key"
HUGE = "1" * 100_000
RESULTS = Path(__file__).resolve().parent / "results"
MAX_CHILD_BYTES = 8 << 30
"""Address space of each command-line probe: a probe that once allocated without bound fails at
8 GiB (a MemoryError) instead of taking the machine; peak RSS shows how far it got."""


# -- the fake upstream ---------------------------------------------------------------------------------


class Upstream:
    """An OpenAI-compatible server whose reply is chosen by ``mode`` (set per probe)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.answers: list[str] = ["4"]
        self.requests: Counter[str] = Counter()
        self.samples = 0
        self.delay = 0.0
        self.lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with upstream.lock:
                    upstream.requests[self.path] += 1
                try:
                    req = json.loads(body)
                except ValueError:
                    req = {}
                upstream.handle(self, req)

            def _send(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client killed mid-request (the SIGKILL probe): nothing to report

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self, mode: str = "ok", answers: list[str] | None = None) -> None:
        with self.lock:
            self.mode, self.answers, self.samples, self.delay = mode, answers or ["4"], 0, 0.0
            self.requests.clear()

    def total(self) -> int:
        return sum(v for k, v in self.requests.items() if k != "/redirected")

    def handle(self, h: Any, req: dict[str, Any]) -> None:
        if self.delay:
            time.sleep(self.delay)
        if h.path == "/redirected":
            h._send(200, {"error": "the redirect target got the request"})
            return
        if self.mode == "redirect":
            h._send(307, {}, {"Location": f"http://127.0.0.1:{self.port}/redirected"})
            return
        prompts = req.get("prompt", "x")
        count = (len(prompts) if isinstance(prompts, list) else 1) * int(req.get("n") or 1)
        with self.lock:
            self.samples += count
        chat = h.path.endswith("/chat/completions")
        usage = {"prompt_tokens": 5, "completion_tokens": 5 * count, "total_tokens": 5 + 5 * count}
        if self.mode == "bad_usage":
            usage = {"prompt_tokens": -5, "completion_tokens": "lots", "total_tokens": -1}
        out: dict[str, Any] = {"id": "x", "object": "chat.completion" if chat else "text_completion", "created": 0,
                               "model": req.get("model", "fake-model"), "usage": usage}
        if self.mode == "no_choices":
            h._send(200, out)
            return
        if self.mode == "null_choices":
            out["choices"] = None
            h._send(200, out)
            return
        choices = []
        for i in range(count):
            text = f"Step by step.\n#### {self.answers[i % len(self.answers)]}"
            choices.append({"index": i, "finish_reason": "stop", "logprobs": None,
                            **({"message": {"role": "assistant", "content": text}} if chat else {"text": text})})
        out["choices"] = choices
        h._send(200, out)


# -- running children ----------------------------------------------------------------------------------


def first_line(text: str) -> str:
    """The message of a run: a traceback's last line (with its length), else the first line that
    is not a deprecation note."""
    lines = [ln.strip(" │╭╰─") for ln in text.splitlines()]
    lines = [ln for ln in lines if ln.strip()]
    if any("Traceback" in ln for ln in lines):
        err = [ln for ln in lines if re.match(r"^[\w.]*(Error|Exception|Exit|Interrupt)\b", ln)]
        return f"traceback ({len(lines)} lines): {(err or lines)[-1]}"[:160]
    for ln in lines:
        if not ln.startswith(("note:", "warning: `ttscale plan --simulate`")):
            return ln[:160]
    return ""


def run(tree: str, args: list[str], *, timeout: float, env: dict[str, str] | None = None, fsize: int | None = None,
        cwd: str | None = None, argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m ttscale ARGS`` (or ``argv``) from ``tree``: exit code, message, seconds, peak RSS (MB)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        def limits() -> None:
            os.setsid()
            resource.setrlimit(resource.RLIMIT_AS, (MAX_CHILD_BYTES, MAX_CHILD_BYTES))
            if fsize is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        t0 = time.monotonic()
        p = subprocess.Popen(argv or [PY, "-m", "ttscale", *args], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             env=child_env(tree, env), preexec_fn=limits, cwd=cwd or tree)
        killer = threading.Timer(timeout, lambda: os.killpg(p.pid, signal.SIGKILL))
        killer.start()
        _, status, usage = os.wait4(p.pid, 0)
        killer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        secs = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        text = err.read().decode(errors="replace") + "\n" + out.read().decode(errors="replace")
    timed_out = p.returncode == -signal.SIGKILL
    return {"status": f"killed at {timeout:.0f} s" if timed_out else f"exit {p.returncode}",
            "message": "(no answer: hung or still working)" if timed_out and not text.strip() else first_line(text),
            "seconds": round(secs, 2), "peak_mb": round(usage.ru_maxrss / 1024), "_text": text}


def child_env(tree: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child run from ``tree`` (run with cwd=tree too: ``python -m`` puts the
    working directory before PYTHONPATH)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTSCALE_")}
    env.update({"PYTHONPATH": tree, "COLUMNS": "200", "NO_COLOR": "1", **(extra or {})})
    return env


# -- files ---------------------------------------------------------------------------------------------


def line(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":")) + "\n"


def make_files(d: Path) -> dict[str, Path]:
    f: dict[str, Path] = {}
    ok = [{"id": f"q{i}", "reference": "4", "samples": [{"answer": str(4 + (j % 3 == 0)), "tokens": 10, "reward": j / 8} for j in range(8)]}
          for i in range(20)]
    f["ok"] = d / "ok.jsonl"
    f["ok"].write_text("".join(line(r) for r in ok))
    f["deep"] = d / "deep.jsonl"
    f["deep"].write_text(line(ok[0])[:-2] + ',"x":' + "[" * 100_000 + "]" * 100_000 + "}\n" + "".join(line(r) for r in ok[1:]))
    f["digits_tokens"] = d / "digits_tokens.jsonl"
    f["digits_tokens"].write_text(line(ok[0]).replace('"tokens":10', '"tokens":' + "7" * 5000, 1) + "".join(line(r) for r in ok[1:]))
    f["digits_answer"] = d / "digits_answer.jsonl"
    f["digits_answer"].write_text(line(ok[0]).replace('"answer":"4"', f'"answer":"{HUGE}"', 1) + "".join(line(r) for r in ok[1:]))
    f["scatter20k"] = d / "scatter20k.jsonl"
    f["scatter20k"].write_text(line({"id": "q0", "reference": "1", "samples": [{"answer": str(i)} for i in range(20000)]})
                               + line({"id": "q1", "reference": "1", "samples": [{"answer": str(i % 3)} for i in range(20000)]}))
    import random
    rng = random.Random(0)
    weights = [1 / (i + 1) for i in range(30)]
    f["scatter_mid"] = d / "scatter_mid.jsonl"
    f["scatter_mid"].write_text("".join(line({"id": f"q{q}", "reference": "0", "samples": [{"answer": str(a)} for a in rng.choices(range(30), weights, k=100)]})
                                        for q in range(50)))
    f["big"] = d / "big.jsonl"
    f["big"].write_text(line({"id": "q0", "reference": "1", "samples": [{"answer": str(i % 7)} for i in range(2_500_000)]}))
    f["power"] = d / "power.jsonl"
    f["power"].write_text("".join(line({"id": f"q{i}", "reference": "(x+1)^{1000000}",
                                        "samples": [{"answer": "(x+1)^{1000000}"}, {"answer": "(x+2)^{1000000}"}]}) for i in range(2)))
    f["cr"] = d / "cr.jsonl"
    f["cr"].write_bytes("".join(line(r) for r in ok[:3]).replace("\n", "\r").encode())
    f["dir"] = d / "a_directory"
    f["dir"].mkdir()
    f["fifo"] = d / "fifo"
    os.mkfifo(f["fifo"])
    f["dataset"] = d / "dataset.jsonl"
    f["dataset"].write_text("".join(line({"id": f"p{i}", "problem": f"What is {i} + 4?", "answer": str(i + 4)}) for i in range(120)))
    return f


# -- probes --------------------------------------------------------------------------------------------


class Probes:
    """Each method probes one item of the issue on one tree; ``results[name]`` gets its record."""

    def __init__(self, tree: str, d: Path, files: dict[str, Path], up: Upstream) -> None:
        self.tree, self.d, self.f, self.up = tree, d, files, up
        self.results: dict[str, dict[str, Any]] = {}

    def record(self, name: str, res: dict[str, Any], **extra: Any) -> None:
        res = {k: v for k, v in res.items() if not k.startswith("_")}
        res.update(extra)
        self.results[name] = res
        print(f"  {name:<34} {res.get('status', '')!s:<14} {res.get('seconds', '')!s:>6} s "
              f"{res.get('peak_mb', '')!s:>5} MB  {res.get('message', '')[:90]}  {extra if extra else ''}", flush=True)

    def cli(self, name: str, args: list[str], timeout: float = 60, **kw: Any) -> dict[str, Any]:
        res = run(self.tree, args, timeout=timeout, **kw)
        self.record(name, res)
        return res

    # 1, 2, 10, 11, minor: the command line
    def bank_probes(self) -> None:
        f = self.f
        self.cli("1 deep JSON bank: eval", ["eval", str(f["deep"])])
        self.cli("1 deep JSON bank: plan", ["plan", str(f["deep"])])
        self.cli("2 5,000-digit tokens: eval", ["eval", str(f["digits_tokens"])])
        self.cli("2 100,000-digit answer: eval", ["eval", str(f["digits_answer"])])
        self.cli("2 100,000-digit answer: plan", ["plan", str(f["digits_answer"])])
        self.cli("2 100,000-digit answer: simulate --exact", ["simulate", str(f["digits_answer"]), "--exact", "--permutations", "2", "--json"])
        self.cli("6 -p long policy spec", ["eval", str(f["ok"]), "-p", "majority:" + "a=1," * 70])
        self.cli("10 -p /dev/zero", ["eval", str(f["ok"]), "-p", "/dev/zero"], timeout=30)
        self.cli("10 -p FIFO", ["eval", str(f["ok"]), "-p", str(f["fifo"])], timeout=20)
        self.cli("10 eval --draws 1000000000", ["eval", str(f["ok"]), "-p", "weighted-majority", "--draws", "1000000000"], timeout=60)
        self.cli("10 simulate --permutations 10^7", ["plan", str(f["ok"]), "--simulate", "--permutations", "10000000"], timeout=60)
        self.cli("10 simulate --exact, 20,000 answers", ["plan", str(f["scatter20k"]), "--simulate", "--exact", "--permutations", "2"], timeout=90)
        self.cli("10 simulate --exact, scattered 50x100", ["simulate", str(f["scatter_mid"]), "--exact", "--permutations", "2"], timeout=60)
        self.cli("10 42 MB bank, 2.5 M samples", ["eval", str(f["big"])], timeout=90)
        self.cli("10 answer (x+1)^{1000000}", ["eval", str(f["power"])], timeout=60)
        plot = self.d / "plot_out"
        res = run(self.tree, ["eval", str(f["ok"]), "--plot", str(plot)], timeout=60)
        self.record("11 --plot PATH without .png", res, wrote=sorted(p.name for p in self.d.glob("plot_out*")))
        for p in self.d.glob("plot_out*"):
            p.unlink()
        # a directory as PATH (the issue's /dev/full would leave /dev/full.png on the machine)
        res = run(self.tree, ["eval", str(f["ok"]), "--plot", str(f["dir"])], timeout=60)
        self.record("11 --plot DIRECTORY", res, wrote=sorted(p.name for p in self.d.glob("a_directory.*")))
        for p in self.d.glob("a_directory.*"):
            p.unlink()
        self.cli("minor: a directory as the bank", ["eval", str(f["dir"])])
        self.cli("minor: a FIFO as the bank", ["eval", str(f["fifo"])], timeout=20)
        self.cli("minor: CR-only line endings", ["eval", str(f["cr"])])

    # 3, 4: writers
    def sample_args(self, out: Path, limit: int = 120, n: int = 4) -> list[str]:
        return ["sample", "--backend", "openai", "--base-url", self.up.url, "--model", "fake-model", "--dataset", str(self.f["dataset"]),
                "--limit", str(limit), "--n", str(n), "--out", str(out), "--concurrency", "2", "--quiet", "--template", "plain"]

    def bank_counts(self, path: Path) -> Counter[str]:
        counts: Counter[str] = Counter()
        if path.exists():
            for raw in path.read_bytes().splitlines():
                try:
                    rec = json.loads(raw)
                    counts[rec["id"]] += len(rec["samples"])
                except (ValueError, KeyError, TypeError):
                    counts["<bad line>"] += 1
        return counts

    def exact(self, path: Path, limit: int = 120, n: int = 4) -> str:
        c = self.bank_counts(path)
        wrong = {k: v for k, v in c.items() if v != n}
        return "exact" if len(c) == limit and not wrong else f"{len(c)} problems, {len(wrong)} not {n} samples (max {max(c.values(), default=0)})"

    def writer_probes(self) -> None:
        self.up.reset()
        self.up.delay = 0.03
        out = self.d / "two_writers.jsonl"
        results: list[dict[str, Any]] = []
        first = threading.Thread(target=lambda: results.append(run(self.tree, self.sample_args(out), timeout=90)))
        first.start()
        time.sleep(1.0)
        second = run(self.tree, self.sample_args(out), timeout=90)
        first.join()
        self.record("3 two writers on one bank", second, first=results[0]["status"], bank=self.exact(out))
        rerun = run(self.tree, self.sample_args(out), timeout=90)
        self.record("3 ... then a rerun", rerun, bank=self.exact(out))

        out = self.d / "killed.jsonl"
        p = subprocess.Popen([PY, "-m", "ttscale", *self.sample_args(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=child_env(self.tree), start_new_session=True, cwd=self.tree)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(self.bank_counts(out)) < 20:  # kill mid-run, with lines written
            time.sleep(0.1)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        before_lines = len(self.bank_counts(out))
        res = run(self.tree, self.sample_args(out), timeout=90)
        self.record("3 SIGKILL a writer, then a new one", res, problems_at_kill=before_lines, bank=self.exact(out))
        self.up.delay = 0.0

        self.cli("4 disk full: --out /dev/full", self.sample_args(Path("/dev/full"), limit=5), timeout=60)
        out = self.d / "fsize.jsonl"
        res = run(self.tree, self.sample_args(out, limit=60), timeout=60, fsize=4096)
        self.record("4 file size limit (ulimit -f 4 KiB)", res, bank_bytes=out.stat().st_size if out.exists() else 0)
        res = run(self.tree, self.sample_args(out, limit=60), timeout=60)
        self.record("4 ... then a rerun without the limit", res, bank=self.exact(out, limit=60))
        res = run(self.tree, [*self.sample_args(self.d / "key.jsonl", limit=2), "--api-key", "sk-visible"], timeout=60)
        warned = [ln for ln in res["_text"].splitlines() if "environment" in ln.lower() or "OPENAI_API_KEY" in ln and "warn" in ln.lower()]
        self.record("minor: --api-key on the command line", res, warning=(warned[0][:100] if warned else None))

    # 5: the Python API on a malformed upstream
    def api_probe(self) -> None:
        for mode in ("no_choices", "null_choices"):
            self.up.reset(mode)
            code = ("import sys\nfrom ttscale import TTScale\n"
                    f"try:\n    print(TTScale(base_url={self.up.url!r}, model='fake-model', budget=8).solve('hi'))\n"
                    "except Exception as e:\n    print(f'error: {type(e).__name__}: {e}', file=sys.stderr); sys.exit(1)\n")
            res = run(self.tree, [], timeout=20, argv=[PY, "-c", code])
            self.record(f"5 TTScale.solve, upstream {mode.replace('_', ' ')}", res, upstream_requests=self.up.total())


class Proxy:
    """``ttscale serve`` from one tree in front of the fake upstream."""

    def __init__(self, tree: str, up: Upstream) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        self.p = subprocess.Popen([PY, "-m", "ttscale", "serve", "--upstream", up.url, "--port", str(self.port), "--log-level", "warning"],
                                  stdout=self.log, stderr=self.log, env=child_env(tree, {"TTSCALE_API_KEY": KEY}), start_new_session=True,
                                  cwd=tree)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise RuntimeError("the proxy did not start")

    def peak_mb(self) -> int:
        status = Path(f"/proc/{self.p.pid}/status").read_text()
        return round(int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024)

    def stop(self) -> None:
        os.killpg(self.p.pid, signal.SIGTERM)
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()


def chat(text: str = "What is 2+2?", **extra: Any) -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": text}], **extra}


class ProxyProbes:
    def __init__(self, probes: Probes, proxy: Proxy) -> None:
        self.pr, self.px, self.up = probes, proxy, probes.up
        # a connection per request: a reply that closes the connection must not fail the next probe
        self.client = httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {KEY}", "Connection": "close"}, timeout=30)

    def post(self, name: str, body: Any, *, path: str = "/v1/chat/completions", mode: str = "ok", answers: list[str] | None = None,
             raw: str | None = None, **extra: Any) -> httpx.Response | None:
        self.up.reset(mode, answers)
        t0 = time.monotonic()
        try:
            r = self.client.post(path, content=raw if raw is not None else json.dumps(body), headers={"Content-Type": "application/json"})
            status, msg = f"HTTP {r.status_code}", self.message(r)
        except httpx.HTTPError as exc:
            r, status, msg = None, "no response", f"{type(exc).__name__}: {exc}"[:120]
        res = {"status": status, "message": msg, "seconds": round(time.monotonic() - t0, 2), "peak_mb": self.px.peak_mb()}
        self.pr.record(name, res, upstream_requests=self.up.total(), **extra)
        return r

    @staticmethod
    def message(r: httpx.Response) -> str:
        try:
            obj = r.json()
        except ValueError:
            return r.text[:120]
        if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
            return str(obj["error"].get("message"))[:160]
        if isinstance(obj, dict) and obj.get("choices"):
            c = obj["choices"][0]
            text = (c.get("message") or {}).get("content") if "message" in c else c.get("text")
            notes = (obj.get("ttscale") or {}).get("notes")
            return f"answered {str(text)[-40:]!r}" + (f"; notes: {notes}" if notes else "")
        return json.dumps(obj)[:160]

    def run_all(self) -> None:
        self.post("2 proxy: upstream '#### 4' + 100,000 digits", chat(n=4), answers=["4", HUGE])
        self.post("5 proxy: upstream 200 without choices", chat(n=8), mode="no_choices")
        self.post("5 proxy: upstream choices null", chat(n=8), mode="null_choices")
        deep = "[" * 1200 + "]" * 1200
        self.post("6 proxy: body nested 1,200 deep", None, raw=json.dumps(chat())[:-1] + f', "stop": {deep}}}')
        self.post("6 proxy: policy spec too long for a file", chat(ttscale={"policy": "majority:" + "a=1," * 70}))
        self.post("6 proxy: upstream usage negative / string", chat(n=4), mode="bad_usage")
        self.post("7 proxy: temperature NaN", None, raw=json.dumps(chat())[:-1] + ', "temperature": NaN}')
        self.post("7 proxy: pathological LaTeX answers", chat(n=4), answers=["(x+1)^{1000000}", "(x+2)^{1000000}", "(x+1)^{999999}"])
        r = None
        self.up.reset("redirect")
        r = self.post("9 proxy: upstream 307", chat(n=2), mode="redirect")
        self.pr.results["9 proxy: upstream 307"]["redirect_target_posts"] = self.up.requests.get("/redirected", 0)
        self.post("10 proxy: /v1/completions, 2,000 prompts x 8", {"model": "fake-model", "prompt": ["What is 2+2?"] * 2000, "n": 8},
                  path="/v1/completions")
        self.pr.results["10 proxy: /v1/completions, 2,000 prompts x 8"]["upstream_samples"] = self.up.samples
        for label, extra in (("10^12", {"max_tokens": 10**12}), ("-5", {"max_tokens": -5}), ('"x"', {"max_tokens": "x"}),
                             ('temperature "hot"', {"temperature": "hot"})):
            name = f"minor: proxy max_tokens {label}" if "temperature" not in label else f"minor: proxy {label}"
            self.post(name, chat(**extra))
        self.post("minor: proxy unknown preset (paths shown?)", chat(ttscale={"policy": "no-such-preset"}))
        msg = self.pr.results["minor: proxy unknown preset (paths shown?)"]["message"]
        self.pr.results["minor: proxy unknown preset (paths shown?)"]["absolute_path_shown"] = bool(re.search(r"(/tmp/|/work/|/home/)", msg))
        t0 = time.monotonic()
        h = httpx.get(self.px.url + "/health", timeout=10)
        self.pr.record("minor: /health without the key", {"status": f"HTTP {h.status_code}", "message": h.text[:120],
                                                          "seconds": round(time.monotonic() - t0, 2), "peak_mb": self.px.peak_mb()},
                       upstream_url_shown=str(self.up.port) in h.text)
        self.slowloris()

    def latencies(self, count: int) -> list[float]:
        self.up.reset()
        out = []
        for _ in range(count):
            t0 = time.monotonic()
            try:
                self.client.post("/v1/chat/completions", json=chat(n=4), timeout=30)
            except httpx.HTTPError:
                pass
            out.append(time.monotonic() - t0)
        return out

    def slowloris(self, header_conns: int = 150, body_conns: int = 50, watch: float = 30.0) -> None:
        """Connections trickling headers (1 byte per 2 s) or a keyed body: when does the proxy close
        them, and how slow are normal requests meanwhile."""
        calm = self.latencies(20)
        closed_at: list[float | None] = []
        lock = threading.Lock()
        stop = threading.Event()
        t0 = time.monotonic()

        def trickle(payload: bytes, prefix: bytes) -> None:
            s = socket.create_connection(("127.0.0.1", self.px.port), timeout=3)
            at: float | None = None
            try:
                s.sendall(prefix)
                for ch in payload:
                    if stop.is_set():
                        break
                    s.sendall(bytes([ch]))
                    try:
                        s.settimeout(2.0)
                        s.recv(4096)  # an answer (408) or the end of the connection: closed by the proxy
                        at = time.monotonic() - t0
                        break
                    except socket.timeout:
                        pass
            except OSError:
                at = time.monotonic() - t0
            finally:
                s.close()
                with lock:
                    closed_at.append(at)

        headers = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n"
        body = json.dumps(chat()).encode()
        keyed = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body) + 100}\r\n\r\n").encode()
        threads = [threading.Thread(target=trickle, args=(headers, b"")) for _ in range(header_conns)]
        threads += [threading.Thread(target=trickle, args=(body + b" " * 100, keyed)) for _ in range(body_conns)]
        for t in threads:
            t.daemon = True
            t.start()
        time.sleep(3)
        attack = self.latencies(20)
        remaining = watch - (time.monotonic() - t0)
        if remaining > 0:
            time.sleep(remaining)
        stop.set()
        for t in threads:
            t.join(5)
        with lock:
            closed = [c for c in closed_at if c is not None]
        metrics = ""
        try:
            metrics = self.client.get("/metrics", timeout=10).text
        except httpx.HTTPError:
            pass
        status500 = sum(float(m) for m in re.findall(r'^\w+_total\{[^}]*status="500"[^}]*\}\s+([\d.e+]+)', metrics, re.M))
        res = {"status": f"{len(closed)}/{len(threads)} closed by the proxy within {watch:.0f} s",
               "message": f"closed at {statistics.median(closed):.1f} s (median), latest {max(closed):.1f} s" if closed else "none closed",
               "seconds": round(time.monotonic() - t0, 2), "peak_mb": self.px.peak_mb()}
        self.pr.record("8 slowloris (150 header + 50 body trickles)", res,
                       p50_ms_without=round(1000 * statistics.median(calm), 1), p50_ms_during=round(1000 * statistics.median(attack), 1),
                       metrics_status_500=status500)


def run_tree(label: str, tree: str, only: str | None) -> dict[str, dict[str, Any]]:
    tree = str(Path(tree).resolve())
    print(f"== {label}: {tree}", flush=True)
    up = Upstream()
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        d = Path(tmp)
        files = make_files(d)
        pr = Probes(tree, d, files, up)
        steps: list[tuple[str, Callable[[], None]]] = [("bank", pr.bank_probes), ("writers", pr.writer_probes), ("api", pr.api_probe)]
        for name, step in steps:
            if only is None or only == name:
                step()
        if only in (None, "proxy"):
            proxy = Proxy(tree, up)
            try:
                ProxyProbes(pr, proxy).run_all()
            finally:
                proxy.stop()
    up.server.shutdown()
    return pr.results


CORE = ("status", "message", "seconds", "peak_mb")


def cell(text: Any, width: int = 70) -> str:
    text = str(text).replace("|", "/").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """A Markdown table: per probe, each tree's status, time, peak RSS and message, then the counts."""
    labels = list(results)
    names = list(dict.fromkeys(n for r in results.values() for n in r))
    head = ["probe"] + [f"{lab}: {col}" for lab in labels for col in ("status", "s", "MB", "message")] + ["counts"]
    out = [f"Hostile-input probes (issue 14), {' vs '.join(labels)}: exit code or HTTP status, wall time, peak RSS "
           "(proxy probes: the proxy's high-water mark so far), first line of the message (a traceback's last), counts.", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in names:
        row = [n]
        counts = []
        for lab in labels:
            r = results[lab].get(n)
            row += [cell(r["status"], 40), str(r["seconds"]), str(r.get("peak_mb", "")), cell(r["message"])] if r else ["-"] * 4
            extra = {k: v for k, v in (r or {}).items() if k not in CORE}
            if extra:
                counts.append(f"{lab}: " + ", ".join(f"{k}={v}" for k, v in extra.items()))
        row.append(cell("; ".join(counts), 400))
        out.append("| " + " | ".join(row) + " |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", action="append", required=True, help="LABEL=PATH of a checkout (repeatable; one column each)")
    ap.add_argument("--only", choices=["bank", "writers", "api", "proxy"], help="run one group of probes")
    ap.add_argument("--out", default=str(RESULTS / "hostile_probes"), help="results path without suffix (.json and .txt written)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the proxy on the way out
    results = {}
    for spec in args.tree:
        label, _, path = spec.partition("=")
        results[label] = run_tree(label, path or label, args.only)
    Path(args.out + ".json").write_text(json.dumps(results, indent=1) + "\n")
    Path(args.out + ".txt").write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
