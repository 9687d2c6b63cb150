"""``ttscale serve-model``: the real vLLM OpenAI-compatible server on a model folder, with its settings.

Runs ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm serve`` console script fails in
the CPU packaging) with the engine arguments the model folder's ``ttscale.json`` asks for (the
embedded model: ``--dtype float32``, else vLLM loads its float32 weights as bfloat16) and, on a
CPU build, the settings seen working there (``../shared/VLLM-CPU.md``). ``--print`` shows the
command instead of running it; arguments after ``--`` go to vLLM unchanged.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from typing import Annotated, Any

import typer

from ttscale.cli.console import err, handle_errors
from ttscale.errors import ConfigError

CPU_SERVER_DEFAULTS: dict[str, Any] = {"enforce_eager": True, "max_num_batched_tokens": 16384}
CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}
"""Without a KV-cache size the CPU engine claims most of a NUMA node and refuses to start."""
READY_SECONDS = 600.0


def _flag(key: str, value: Any) -> list[str]:
    flag = "--" + key.replace("_", "-")
    if value is True:
        return [flag]
    if value is False or value is None:
        return []
    return [flag, str(value)]


def server_command(model: str, *, host: str, port: int, served_name: str | None, engine: dict[str, Any],
                   extra: list[str]) -> list[str]:
    """The command line of vLLM's OpenAI server on ``model`` with ``engine`` arguments (``--key value``)."""
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", host, "--port", str(port)]
    if served_name:
        cmd += ["--served-model-name", served_name]
    for key, value in engine.items():
        cmd += _flag(key, value)
    return cmd + extra


def _on_cpu_build() -> bool:
    import importlib.metadata

    try:
        importlib.metadata.version("vllm-cpu")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _wait_ready(proc: subprocess.Popen[bytes], url: str) -> bool:
    import httpx

    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(1)
    return False


@handle_errors
def serve_model_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Model folder or name; 'arith-tiny' is the packaged model.")] = "arith-tiny",
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    served_name: Annotated[str | None, typer.Option("--served-model-name", help="Model id clients send (default: 'arith-tiny' for the packaged model, else the folder).")] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help="Weights dtype (default: the folder's ttscale.json, else vLLM's auto).")] = None,
    max_model_len: Annotated[int | None, typer.Option("--max-model-len", help="Longest prompt + completion in tokens.")] = None,
    print_only: Annotated[bool, typer.Option("--print", help="Print the command (and environment) instead of running it.")] = False,
) -> None:
    """Start vLLM's OpenAI-compatible server on a model with the settings its folder asks for (put `ttscale serve` in front).

    Arguments after `--` go to vLLM's server unchanged.
    """
    from ttscale.arith.paths import MODEL_NAME, is_embedded_model, resolve_model
    from ttscale.sampling.model_defaults import engine_defaults

    if not 0 < port < 65536:
        raise ConfigError("--port", port, "a port number in 1..65535")
    resolved = resolve_model(model) or model
    engine = dict(engine_defaults(resolved))
    env = {"HF_HUB_OFFLINE": "1"} if os.path.isdir(resolved) else {}
    if _on_cpu_build():
        engine = {**CPU_SERVER_DEFAULTS, **engine}
        env.update(CPU_ENV)
    for key, value in (("dtype", dtype), ("max_model_len", max_model_len)):
        if value is not None:
            engine[key] = value
    name = served_name or (MODEL_NAME if is_embedded_model(model) else None)
    cmd = server_command(resolved, host=host, port=port, served_name=name, engine=engine, extra=list(ctx.args))
    env = {k: v for k, v in env.items() if k not in os.environ}  # the caller's environment wins
    line = " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env.items()), *map(shlex.quote, cmd)])
    if print_only:
        print(line)
        return
    url = f"http://{host}:{port}"
    err.print(f"starting vLLM's OpenAI server: {line}", highlight=False, soft_wrap=True)
    proc = subprocess.Popen(cmd, env={**os.environ, **env})
    try:
        if _wait_ready(proc, url):
            err.print(f"ready: {url}/v1 serves {name or resolved} (ttscale serve --upstream {url}/v1 puts the optimizer "
                      "in front); Ctrl-C stops it", highlight=False, soft_wrap=True)
        code = proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    if code not in (0, -signal.SIGINT, -signal.SIGTERM):
        raise ConfigError("serve-model", model, f"a server that keeps running (vLLM exited with {code}; -v shows its log)")
