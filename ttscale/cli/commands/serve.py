"""``ttscale serve``: an OpenAI-compatible proxy that samples N candidates upstream and answers with the chosen one."""

from __future__ import annotations

import logging
import os
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ttscale.adaptive.workload_prior import DEFAULT_PRICE
from ttscale.answers.equivalence import EquivalenceMode
from ttscale.cli.console import err, handle_errors
from ttscale.cli.sampling_options import early_stop_option_error, early_stop_params
from ttscale.errors import ConfigError

if TYPE_CHECKING:
    from ttscale.live.serve.config import ServeConfig


class LogLevel(str, Enum):
    """uvicorn's log levels."""

    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"
    TRACE = "trace"


def banner(config: ServeConfig, host: str, port: int) -> list[str]:
    """The start-up lines, each short enough for an 80-column terminal (URLs on lines of their own)."""
    settings = [f"policy {config.policy}", f"n={config.n}"]
    settings += ["adaptive"] * config.adaptive + ["key required"] * (config.api_key is not None)
    settings += [f"workload prior (price {config.workload_price:g})"] if config.workload is not None else []
    settings += [f"scorer {config.scorer}"] if config.scorer else []
    es = config.early_stop
    if es is not None:
        settings.append(f"early stop {'threshold ' + format(es.threshold, 'g') if es.threshold is not None else f'eta {es.eta:g}'}, window {es.window}")
    return [f"ttscale proxy  http://{host}:{port}/v1", f"  upstream     {config.upstream}", "  " + ", ".join(settings)]


def _access_log(level: LogLevel) -> None:
    """Access lines (``ttscale.serve.access``) on stderr at ``level``: shown at info and below."""
    log = logging.getLogger("ttscale.serve.access")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if level in (LogLevel.DEBUG, LogLevel.TRACE) else getattr(logging, level.value.upper()))
    log.propagate = False


@handle_errors
def serve_command(
    upstream: Annotated[str, typer.Option("--upstream", "-u", help="Base URL of the OpenAI-compatible upstream, e.g. http://127.0.0.1:8000/v1.")],
    policy: Annotated[str, typer.Option("--policy", "-p", help="Default policy preset (requests may choose another).")] = "majority",
    n: Annotated[int, typer.Option("--n", help="Default samples per request.")] = 8,
    max_n: Annotated[int, typer.Option("--max-n", help="Most samples a request may ask for.")] = 64,
    max_request_samples: Annotated[int, typer.Option("--max-request-samples", help="Most upstream samples one request may draw in all (prompts x n).")] = 1024,
    adaptive: Annotated[bool, typer.Option("--adaptive", help="Default: stop early when the vote is settled.")] = False,
    api_key: Annotated[str | None, typer.Option("--api-key", help="Key clients must send as 'Authorization: Bearer KEY' (or env TTSCALE_API_KEY; env keeps it out of the process list).")] = None,
    upstream_api_key: Annotated[str | None, typer.Option("--upstream-api-key", help="Key sent upstream (or env TTSCALE_UPSTREAM_API_KEY, then OPENAI_API_KEY).")] = None,
    host: Annotated[str, typer.Option("--host", help="Interface to bind; 127.0.0.1 keeps the proxy local (0.0.0.0 exposes it: set --api-key).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8100,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds a request may wait for the upstream before a 504.")] = 120.0,
    max_retries: Annotated[int, typer.Option("--max-retries", help="Retries of a failing upstream call before degrading or failing.")] = 2,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Upstream calls in flight over all clients.")] = 256,
    max_request_bytes: Annotated[int, typer.Option("--max-request-bytes", help="Largest request body accepted (413 above).")] = 1_000_000,
    read_seconds: Annotated[float, typer.Option("--read-seconds", help="Seconds a client may take to send its request headers (then the connection closes), and again its body (then 408).")] = 10.0,
    temperature: Annotated[float | None, typer.Option("--temperature", help="Temperature sent when a client sends none (default: none sent, the upstream's own default applies).")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="max_tokens sent when a client sends none (default: none sent, the upstream's own default applies).")] = None,
    price_in: Annotated[float | None, typer.Option("--price-in", help="Dollars per million prompt tokens (responses then carry cost_usd).")] = None,
    price_out: Annotated[float | None, typer.Option("--price-out", help="Dollars per million generated tokens.")] = None,
    equivalence: Annotated[EquivalenceMode, typer.Option("--equivalence", metavar="MODE", help="Answer equivalence: math or string.")] = EquivalenceMode.MATH,
    answer_seconds: Annotated[float, typer.Option("--answer-seconds", help="Seconds answer comparison (math-verify) may take per prompt; then answers are compared as strings (said in the response).")] = 3.0,
    keep_alive: Annotated[float, typer.Option("--keep-alive", help="Seconds an idle client connection stays open (uvicorn closes idle ones after 5 s by default; a client reusing one as it closes sees a reset).")] = 75.0,
    scorer: Annotated[str | None, typer.Option("--scorer", help="Score candidates for reward policies (best-of-n, weighted-majority): reward-model, vllm-reward, prm, vllm-prm, confidence, lowest-group-confidence or judge.")] = None,
    scorer_model: Annotated[str | None, typer.Option("--scorer-model", help="Local model folder of the scorer (reward model or PRM).")] = None,
    early_stop_eta: Annotated[float | None, typer.Option("--early-stop-eta", help="Default early stop (DeepConf online) of requests without ttscale.early_stop: keep-top percentage of the warm-up traces whose lowest group confidence is the threshold, in (0, 100] (default 10 once any --early-stop-* is given).")] = None,
    early_stop_window: Annotated[int | None, typer.Option("--early-stop-window", help="Default early stop: sliding window of the group confidence, in tokens (default 2048).")] = None,
    early_stop_warmup: Annotated[int | None, typer.Option("--early-stop-warmup", help="Default early stop: traces per request run in full to calibrate the threshold (default 16).")] = None,
    early_stop_threshold: Annotated[float | None, typer.Option("--early-stop-threshold", help="Default early stop: a fixed group-confidence threshold instead of warm-up calibration.")] = None,
    early_stop_top_k: Annotated[int | None, typer.Option("--early-stop-top-k", help="Default early stop: top log-probs per token of the token confidence (1-20, default 20).")] = None,
    workload_pilot: Annotated[Path | None, typer.Option("--workload-pilot", help="A pilot bank of this workload's questions (votes only): adaptive requests stop by the Bayes-optimal rule under the workload prior fitted on it (`workload` in `ttscale simulate`) instead of the default rule.")] = None,
    workload_price: Annotated[float, typer.Option("--workload-price", help="With --workload-pilot: the accuracy one more sample must buy, in (0, 1); lower spends more.")] = DEFAULT_PRICE,
    log_level: Annotated[LogLevel, typer.Option("--log-level", metavar="LEVEL", help="critical, error, warning, info, debug or trace. info: one line per proxied request (status, latency, upstream requests, samples, stop reason); warning: problems only.")] = LogLevel.INFO,
) -> None:
    """Serve /v1/chat/completions, /v1/completions, /v1/models, /health and /metrics in front of UPSTREAM."""
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("serve", "uvicorn", "the server extra: pip install 'ttscale[server]'") from None
    from ttscale.live.serve.app import create_app
    from ttscale.live.serve.config import ServeConfig
    from ttscale.live.serve.protocol import timed_protocol

    early_stop = early_stop_params(eta=early_stop_eta, window=early_stop_window, warmup=early_stop_warmup,
                                   threshold=early_stop_threshold, top_k=early_stop_top_k)
    workload = None
    if workload_pilot is not None:
        from ttscale.live.budget import Budget

        try:
            workload = Budget.from_pilot(workload_pilot, samples=max_n, price=workload_price).workload
        except ConfigError as exc:
            raise ConfigError("--workload-pilot" if exc.parameter != "budget.price" else "--workload-price",
                              exc.value, exc.expected) from None
    try:
        config = ServeConfig(
            upstream=upstream.rstrip("/"), policy=policy, n=n, max_n=max_n, max_request_samples=max_request_samples, adaptive=adaptive,
            api_key=api_key or os.environ.get("TTSCALE_API_KEY") or None,
            upstream_api_key=upstream_api_key or os.environ.get("TTSCALE_UPSTREAM_API_KEY") or os.environ.get("OPENAI_API_KEY") or None,
            timeout=timeout, max_retries=max_retries, concurrency=concurrency, max_request_bytes=max_request_bytes, read_seconds=read_seconds,
            temperature=temperature, max_tokens=max_tokens, price_in=price_in, price_out=price_out, equivalence=equivalence, answer_seconds=answer_seconds,
            scorer=scorer, scorer_model=scorer_model, early_stop=early_stop, workload=workload, workload_price=workload_price,
        )
    except ConfigError as exc:  # the window against --max-tokens, in the options' names
        raise early_stop_option_error(exc) from None
    if host not in ("127.0.0.1", "localhost", "::1") and config.api_key is None:
        err.print(f"[yellow]warning:[/] listening on {host} without --api-key:\n"
                  "  anyone who can reach it can spend your upstream budget", soft_wrap=True)
    for line in banner(config, host, port):
        err.print(line, soft_wrap=True, highlight=False)
    _access_log(log_level)
    uvicorn.run(create_app(config), host=host, port=port, log_level=log_level.value, access_log=log_level is LogLevel.DEBUG,
                timeout_keep_alive=int(max(1, keep_alive)), backlog=4096, http=timed_protocol(config.read_seconds))
