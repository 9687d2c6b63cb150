"""The OpenAI-compatible proxy: every request becomes N upstream samples and one chosen answer.

``POST /v1/chat/completions`` and ``/v1/completions`` answer like an OpenAI server: the message is
the chosen candidate's full text, ``usage`` counts every upstream token, and a ``ttscale`` field
carries the vote, samples used and cost. ``stream: true`` sends the chosen answer as server-sent
events once it is chosen. ``GET /v1/models`` lists the upstream's models (and ``ttscale/<preset>/``
variants), ``/health`` the proxy's and the upstream's state, ``/metrics`` Prometheus counters.

Errors are OpenAI-style bodies: 400 bad request, 401 bad key, 404 unknown path, 413 too large,
502 upstream down or failing, 504 upstream too slow.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import (
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from ttscale.errors import ConfigError, TTScaleError
from ttscale.live.serve.options import PREFIX, RequestOptions, route
from ttscale.live.solve import (
    Budget,
    Question,
    Solution,
    SolveError,
    Solver,
    check_policy_needs,
    last_user_text,
)
from ttscale.planning.cost import Prices
from ttscale.sampling.sampler import SamplingConfig
from ttscale.selection.policy import Policy, load_policy, preset_names
from ttscale.selection.fields import LOGPROBS, REWARDS

log = logging.getLogger("ttscale.serve")

PASSED_THROUGH_NOT = frozenset({"model", "messages", "prompt", "ttscale", "n", "stream", "stream_options", "seed",
                                "logprobs", "top_logprobs", "echo", "best_of"})
"""Client fields the proxy handles itself; every other field goes upstream as it is."""


@dataclass(frozen=True)
class ServeConfig:
    """Settings of ``ttscale serve`` (validated on construction)."""

    upstream: str
    """Base URL of the OpenAI-compatible upstream, e.g. http://127.0.0.1:8000/v1."""
    upstream_api_key: str | None = None
    """Key sent upstream (never logged)."""
    api_key: str | None = None
    """When set, clients must send ``Authorization: Bearer <key>`` (401 otherwise)."""
    policy: str = "majority"
    """Default policy preset (a request may choose another)."""
    n: int = 8
    """Default samples per request."""
    max_n: int = 64
    """Most samples one request may ask for."""
    adaptive: bool = False
    """Default: stop early when the vote is settled."""
    timeout: float = 120.0
    """Seconds a client request may wait for the upstream before a 504."""
    max_retries: int = 2
    """Retries of a failing upstream call (429, 5xx, dropped connection) before giving up or degrading."""
    concurrency: int = 256
    """Upstream calls in flight, over all clients."""
    max_request_bytes: int = 1_000_000
    """Largest request body accepted (413 above)."""
    temperature: float = 0.7
    """Sampling temperature when the client sends none (voting needs diverse samples)."""
    max_tokens: int = 1024
    """max_tokens when the client sends none."""
    price_in: float | None = None
    """Dollars per million prompt tokens (for the ``cost_usd`` of responses)."""
    price_out: float | None = None
    """Dollars per million generated tokens."""
    equivalence: str = "math"
    """Answer equivalence: ``math`` or ``string``."""
    scorer: str | None = None
    """Scorer kind (``ttscale.scoring.registry.SCORERS``: ``reward-model``, ``vllm-reward``, ``prm``, ``vllm-prm``,
    ...) that scores every candidate so reward policies (best-of-n, weighted-majority) can choose;
    None: requests for reward policies get a 400."""
    scorer_model: str | None = None
    """Local model folder of the scorer (reward model or PRM)."""

    def __post_init__(self) -> None:
        if not isinstance(self.upstream, str) or not self.upstream.startswith(("http://", "https://")):
            raise ConfigError("upstream", self.upstream, "an http(s) URL such as http://127.0.0.1:8000/v1")
        for name, low in (("n", 1), ("max_n", 1), ("max_retries", 0), ("concurrency", 1), ("max_request_bytes", 1024), ("max_tokens", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(name, value, f"an integer >= {low}")
        if self.n > self.max_n:
            raise ConfigError("n", self.n, f"at most max_n ({self.max_n})")
        if not isinstance(self.timeout, (int, float)) or not math.isfinite(self.timeout) or self.timeout <= 0:
            raise ConfigError("timeout", self.timeout, "a number of seconds > 0")
        _preset(self.policy, "policy")
        SamplingConfig(temperature=self.temperature, max_tokens=self.max_tokens)  # validates both
        if (self.price_in is None) != (self.price_out is None):
            raise ConfigError("price_out" if self.price_out is None else "price_in", None, "both prices or neither")
        from ttscale.scoring.registry import SCORERS

        if self.scorer is not None and self.scorer not in SCORERS:
            raise ConfigError("scorer", self.scorer, "one of " + ", ".join(SCORERS))
        if self.scorer is None and self.scorer_model is not None:
            raise ConfigError("scorer_model", self.scorer_model, "no model without a scorer kind (--scorer)")
        # The same check the solver makes, here at start-up (the solver is built on the first request).
        check_policy_needs(_preset(self.policy, "policy"), scorer=self.scorer is not None, logprobs=True, scorer_option="--scorer")

    @property
    def prices(self) -> Prices | None:
        return None if self.price_in is None else Prices(self.price_in, self.price_out or 0.0)


class _SerializedScorer:
    """A scorer shared by concurrent requests: one batch at a time (a vLLM engine is not thread-safe)."""

    def __init__(self, scorer: Any) -> None:
        self.scorer, self.name, self.lock = scorer, scorer.name, threading.Lock()

    def score(self, problems: list[str], candidates: list[list[str]]) -> list[list[float]]:
        with self.lock:
            return self.scorer.score(problems, candidates)

    def close(self) -> None:
        with self.lock:
            self.scorer.close()


def _preset(spec: str, parameter: str) -> Policy:
    """A preset policy (with optional overrides); over HTTP no file paths, so no file reads."""
    name = spec.split(":", 1)[0]
    if name not in preset_names():
        raise ConfigError(parameter, spec, "a policy preset: " + ", ".join(preset_names()))
    return load_policy(spec)


# ------------------------------------------------------------------------------------- errors


class HTTPError(Exception):
    """An error answered with an OpenAI-style body."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(body, status_code=self.status, headers=headers)


def _upstream_error(exc: BaseException, upstream: str) -> HTTPError:
    from ttscale.sampling.backends.openai import ServerError

    if isinstance(exc, SolveError) and exc.cause is not None:
        exc = exc.cause
    if isinstance(exc, ServerError):
        if exc.kind == "timeout":
            return HTTPError(504, f"upstream {upstream} did not answer in time: {exc}", type_="upstream_error", code="upstream_timeout")
        if exc.kind == "refused" and exc.status is not None and 400 <= exc.status < 500:
            return HTTPError(exc.status, f"upstream refused the request: {exc}", code="upstream_refused")
        if exc.kind == "unreachable":
            return HTTPError(502, f"upstream {upstream} is unreachable: {exc}", type_="upstream_error", code="upstream_unreachable")
        return HTTPError(502, f"upstream {upstream} failed: {exc}", type_="upstream_error", code="upstream_failed")
    if isinstance(exc, ConfigError):
        return HTTPError(400, str(exc), param=exc.parameter)
    return HTTPError(502, f"upstream {upstream} failed: {exc}", type_="upstream_error", code="upstream_failed")


# ------------------------------------------------------------------------------------- metrics


class Metrics:
    """Prometheus counters in a registry of this app (several apps may live in one process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ttscale_requests_total", "Client requests", ["endpoint", "status"], registry=r)
        self.seconds = Histogram("ttscale_request_seconds", "Client request latency", ["endpoint"], registry=r,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.samples = Counter("ttscale_upstream_samples_total", "Samples drawn upstream", registry=r)
        self.upstream_requests = Counter("ttscale_upstream_requests_total", "Upstream requests", registry=r)
        self.tokens = Counter("ttscale_upstream_tokens_total", "Upstream tokens", ["kind"], registry=r)
        self.failed = Counter("ttscale_upstream_failed_samples_total", "Samples the upstream never delivered", registry=r)
        self.inflight = Gauge("ttscale_requests_in_flight", "Client requests being answered", registry=r)

    def solved(self, sol: Solution) -> None:
        self.samples.inc(sol.samples)
        self.upstream_requests.inc(sol.requests)
        self.tokens.labels("prompt").inc(sol.prompt_tokens)
        self.tokens.labels("completion").inc(sol.completion_tokens)
        self.failed.inc(sol.failed_samples)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


# ------------------------------------------------------------------------------------- the app


async def _read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"request body of {declared} bytes is over the limit of {limit} bytes", code="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"request body is over the limit of {limit} bytes", code="request_too_large")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise HTTPError(400, "request body must be a JSON object", code="invalid_json")
    return body


def _int_field(body: Mapping[str, Any], name: str, default: int | None, low: int, high: int | None = None) -> int | None:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        span = f"an integer >= {low}" + (f" and <= {high}" if high is not None else "")
        raise HTTPError(400, f"{name}={value!r}: expected {span}", param=name)
    return value


def _messages(body: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise HTTPError(400, "messages: expected a non-empty list of chat messages", param="messages")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise HTTPError(400, f"messages[{i}]: expected an object with a string 'role'", param=f"messages[{i}]")
    return tuple(msgs)


def _prompts(body: Mapping[str, Any]) -> list[str]:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    raise HTTPError(400, "prompt: expected a string or a non-empty list of strings", param="prompt")


ENDPOINTS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics"})


class _Guard:
    """Key check, metrics and in-flight count for every request, as plain ASGI middleware
    (Starlette's ``BaseHTTPMiddleware`` costs a task and a stream per request)."""

    def __init__(self, app: Any, config: ServeConfig, metrics: Metrics) -> None:
        self.app = app
        self.key = None if config.api_key is None else config.api_key.encode()
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        if self.key is not None and path != "/health":
            header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            given = header[7:] if header[:7].lower() == b"bearer " else b""
            if not hmac.compare_digest(given, self.key):
                self.metrics.requests.labels(endpoint, "401").inc()
                why = "no API key given" if not given else "incorrect API key"
                response = HTTPError(401, f"{why}: send 'Authorization: Bearer <key>'", code="invalid_api_key").response()
                return await response(scope, receive, send)
        status = "500"

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        self.metrics.inflight.inc()
        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.inflight.dec()
            self.metrics.requests.labels(endpoint, status).inc()
            self.metrics.seconds.labels(endpoint).observe(time.perf_counter() - start)


def create_app(config: ServeConfig) -> FastAPI:
    """The proxy app for ``config`` (run it with uvicorn; ``ttscale serve`` does)."""
    from ttscale.live.samplers import http_sampler

    metrics = Metrics()
    state: dict[str, Any] = {}
    # Presets /v1/models lists: not evaluation-only, and reward policies only with a scorer.
    have = {LOGPROBS, REWARDS} if config.scorer else {LOGPROBS}
    served = [name for name in preset_names() if not load_policy(name).missing(have)]

    def solver() -> Solver:
        if "solver" not in state:
            sampling = SamplingConfig(temperature=config.temperature, max_tokens=config.max_tokens, logprobs=False, seed=None)
            sampler = http_sampler(config.upstream, None, sampling, api_key=config.upstream_api_key or "EMPTY",
                                   concurrency=config.concurrency, timeout=config.timeout, max_retries=config.max_retries)
            scorer = None
            if config.scorer is not None:
                from ttscale.scoring.registry import make_scorer

                scorer = _SerializedScorer(make_scorer(config.scorer, config.scorer_model))
            state["solver"] = Solver(sampler, _preset(config.policy, "policy"), equivalence=config.equivalence,
                                     prices=config.prices, logprobs=True, scorer=scorer)
        return state["solver"]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if "solver" in state:
            await state["solver"].sampler.aclose()
            if state["solver"].scorer is not None:
                state["solver"].scorer.close()

    app = FastAPI(title="ttscale proxy", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = config
    app.state.metrics = metrics

    @app.exception_handler(HTTPError)
    async def _http_error(request: Request, exc: HTTPError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _starlette_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else None
        return HTTPError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code=kind).response()

    app.add_middleware(_Guard, config=config, metrics=metrics)

    # -- solving ---------------------------------------------------------------------------------

    async def solve(questions: list[Question], options: RequestOptions) -> tuple[list[Solution], Policy]:
        policy = _preset(options.policy, "ttscale.policy") if options.policy else solver().policy
        n = options.n or config.n
        if n > config.max_n:
            raise HTTPError(400, f"ttscale.n={n}: expected at most {config.max_n} samples (the server's --max-n)", param="ttscale.n")
        defaults = Budget()
        budget = Budget(
            samples=n, adaptive=config.adaptive if options.adaptive is None else options.adaptive,
            pilot=min(n, options.pilot or defaults.pilot), step=options.step or defaults.step,
            confidence=options.confidence or defaults.confidence,
        )
        try:
            sols = await asyncio.wait_for(solver().solve(questions, budget, policy=policy), timeout=config.timeout)
        except TimeoutError:
            raise HTTPError(504, f"upstream {config.upstream} did not answer within {config.timeout:g} s",
                            type_="upstream_error", code="upstream_timeout") from None
        except ConfigError as exc:
            raise HTTPError(400, str(exc), param=exc.parameter) from None
        except TTScaleError as exc:
            raise _upstream_error(exc, config.upstream) from None
        for sol in sols:
            metrics.solved(sol)  # type: ignore[arg-type]
        return sols, policy  # type: ignore[return-value]

    def question(body: Mapping[str, Any], routed_model: str, policy_needs_logprobs: bool, *, prompt: str | None,
                 messages: tuple[dict[str, Any], ...] | None) -> Question:
        overrides = {k: v for k, v in body.items() if k not in PASSED_THROUGH_NOT}
        overrides.setdefault("temperature", config.temperature)
        overrides.setdefault("max_tokens", config.max_tokens)
        overrides["model"] = routed_model
        if policy_needs_logprobs:
            overrides["logprobs"] = True
        seed = _int_field(body, "seed", None, 0, 2**31 - 1)
        if messages is not None:
            text = last_user_text(messages)
        else:
            text = prompt or ""
        # A fixed id: the same seeded request draws the same samples every time.
        return Question(id="request", problem=text, messages=messages, overrides=overrides, seed=seed)

    def picks(sol: Solution, count: int) -> list[tuple[str | None, int | None]]:
        """(answer, candidate index) for the ``count`` choices: the policy's answers, then by votes."""
        order = list(sol.answers) + [a for a in sol.vote if a not in sol.answers]
        if not order:  # no candidate had an answer: return the first candidate's text
            return [(None, 0 if sol.candidates else None)]
        return [(a, sol.representative(a)) for a in order[:count]]

    def usage(sols: list[Solution]) -> dict[str, int]:
        p = sum(s.prompt_tokens for s in sols)
        c = sum(s.completion_tokens for s in sols)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    def ttscale_field(sols: list[Solution], options: RequestOptions) -> dict[str, Any]:
        if len(sols) == 1:
            return sols[0].to_dict(candidates=options.candidates)
        return {"prompts": [s.to_dict(candidates=options.candidates) for s in sols]}

    def routing(body: Mapping[str, Any]) -> tuple[Any, bool]:
        """The request's upstream model and options, and whether its policy needs log-probs."""
        try:
            routed = route(body.get("model"), body.get("ttscale"))
            policy = _preset(routed.options.policy, "ttscale.policy") if routed.options.policy else solver().policy
        except ConfigError as exc:
            raise HTTPError(400, str(exc), param=exc.parameter) from None
        return routed, LOGPROBS in policy.needs

    def stream(body: Mapping[str, Any], chunks: list[dict[str, Any]], base: dict[str, Any], extra: dict[str, Any],
               sols: list[Solution]) -> StreamingResponse:
        """SSE of ``chunks``; the last carries the ``ttscale`` field, then a usage chunk when asked for."""
        chunks[-1]["ttscale"] = extra
        if isinstance(body.get("stream_options"), dict) and body["stream_options"].get("include_usage"):
            chunks.append({**base, "choices": [], "usage": usage(sols)})
        return sse(chunks)

    def sse(chunks: list[dict[str, Any]]) -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    # -- endpoints -------------------------------------------------------------------------------

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await _read_json(request, config.max_request_bytes)
        messages = _messages(body)
        routed, needs = routing(body)
        count = _int_field(body, "n", 1, 1, 16)
        q = question(body, routed.model, needs, prompt=None, messages=messages)
        (sol,), _ = await solve([q], routed.options)
        created, rid, model = int(time.time()), f"chatcmpl-{uuid.uuid4().hex}", body["model"]
        choices = []
        for i, (_, index) in enumerate(picks(sol, count or 1)):
            cand = sol.candidates[index] if index is not None else None
            choices.append({"index": i, "message": {"role": "assistant", "content": cand.text if cand else ""},
                            "finish_reason": (cand.finish if cand else None) or "stop", "logprobs": None})
        extra = ttscale_field([sol], routed.options)
        if body.get("stream"):
            base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}
            chunks = []
            for ch in choices:
                chunks.append({**base, "choices": [{"index": ch["index"], "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]})
                chunks.append({**base, "choices": [{"index": ch["index"], "delta": {"content": ch["message"]["content"]}, "logprobs": None, "finish_reason": None}]})
                chunks.append({**base, "choices": [{"index": ch["index"], "delta": {}, "logprobs": None, "finish_reason": ch["finish_reason"]}]})
            return stream(body, chunks, base, extra, [sol])
        return JSONResponse({"id": rid, "object": "chat.completion", "created": created, "model": model,
                             "choices": choices, "usage": usage([sol]), "ttscale": extra})

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = await _read_json(request, config.max_request_bytes)
        prompts = _prompts(body)
        routed, needs = routing(body)
        count = _int_field(body, "n", 1, 1, 16) or 1
        questions = [question(body, routed.model, needs, prompt=p, messages=None) for p in prompts]
        sols, _ = await solve(questions, routed.options)
        created, rid, model = int(time.time()), f"cmpl-{uuid.uuid4().hex}", body["model"]
        choices = []
        for sol in sols:
            for _, index in picks(sol, count):
                cand = sol.candidates[index] if index is not None else None
                choices.append({"index": len(choices), "text": cand.text if cand else "",
                                "finish_reason": (cand.finish if cand else None) or "stop", "logprobs": None})
        extra = ttscale_field(sols, routed.options)
        if body.get("stream"):
            base = {"id": rid, "object": "text_completion", "created": created, "model": model}
            chunks = [{**base, "choices": [{"index": ch["index"], "text": ch["text"], "logprobs": None, "finish_reason": None}]} for ch in choices]
            chunks += [{**base, "choices": [{"index": ch["index"], "text": "", "logprobs": None, "finish_reason": ch["finish_reason"]}]} for ch in choices]
            return stream(body, chunks, base, extra, sols)
        return JSONResponse({"id": rid, "object": "text_completion", "created": created, "model": model,
                             "choices": choices, "usage": usage(sols), "ttscale": extra})

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        cached = state.get("models")
        if cached is None or time.monotonic() - cached[0] > 30:
            from ttscale.sampling.backends.openai import ServerError

            try:
                listed = await solver().sampler.list_models()
            except ServerError as exc:
                raise _upstream_error(exc, config.upstream) from None
            cached = (time.monotonic(), listed)
            state["models"] = cached
        data = []
        for m in cached[1]:
            entry = {"id": m.id, "object": "model", "created": getattr(m, "created", 0) or 0, "owned_by": getattr(m, "owned_by", None) or "upstream"}
            data.append(entry)
            data += [{**entry, "id": f"{PREFIX}{name}/{m.id}", "owned_by": "ttscale"} for name in served]
        return JSONResponse({"object": "list", "data": data})

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "upstream": config.upstream, "policy": config.policy, "n": config.n})

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        from prometheus_client import CONTENT_TYPE_LATEST

        return PlainTextResponse(metrics.render().decode(), media_type=CONTENT_TYPE_LATEST)

    return app
