"""The OpenAI-compatible proxy: every request becomes N upstream samples and one chosen answer.

``POST /v1/chat/completions`` and ``/v1/completions`` answer like an OpenAI server: the message is
the chosen candidate's full text, ``usage`` counts every upstream token, and a ``ttscale`` field
carries the vote, samples used and cost. ``stream: true`` sends the chosen answer as server-sent
events once it is chosen. ``GET /v1/models`` lists the upstream's models and their
``ttscale/<policy>[@<n>[+adaptive]]/<name>`` variants (a model served from a folder under the
folder's name), ``GET /v1/models/{id}`` one of them, ``/health`` the proxy's and the upstream's
state, ``/metrics`` Prometheus counters.

A request goes upstream as the client sent it, so a client gets what it would get directly:

- only the sampling fields the client sent are forwarded (no temperature or ``max_tokens`` of
  the proxy's own unless ``--temperature``/``--max-tokens`` set them): the upstream's defaults
  apply (vLLM: the model's generation config);
- prompts go as they are: text or token ids (a list of ints, or a list of such lists), never
  templated; answers are read from the text the upstream returns;
- ``temperature: 0`` is greedy decoding: one upstream sample (n identical samples would be
  waste), said in ``ttscale.notes``;
- exactly ``n`` choices (see :mod:`~ttscale.live.serve.responses`), with the chosen candidates'
  ``logprobs`` when asked for (``logprobs``; chat ``logprobs``/``top_logprobs``);
- a request the upstream refuses (4xx) comes back with the upstream's status and error body.

With an early stop (``"ttscale": {"early_stop": {...}}`` or ``--early-stop-*``) each sample is
its own streamed upstream call with top-k log-probs, closed once its group confidence falls below
the threshold (see :mod:`ttscale.early_stop`); the client's ``max_tokens`` bounds the window, the
choices' ``logprobs`` are null (the stream's are read for the confidence, not kept) and
``ttscale.early_stop`` says how many samples were stopped and what they generated.

The parts: :mod:`~ttscale.live.serve.config` (settings), :mod:`~ttscale.live.serve.requests`
(request bodies), :mod:`~ttscale.live.serve.options` (the request's policy and budget),
:mod:`~ttscale.live.serve.responses`, :mod:`~ttscale.live.serve.errors` (OpenAI-style error
bodies), :mod:`~ttscale.live.serve.middleware` (key, size limit, metrics), :mod:`~ttscale.live.serve.routing`
(the completion endpoints past FastAPI's per-request machinery); here the
:class:`Proxy` that answers each endpoint and :func:`create_app`, which routes to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ttscale.adaptive.workload_prior import DEFAULT_PRICE
from ttscale.errors import ConfigError, TTScaleError
from ttscale.live.budget import Budget
from ttscale.live.samplers import proxy_sampler
from ttscale.live.serve.config import ServeConfig, preset
from ttscale.live.serve.errors import HTTPError, install_error_handlers, upstream_error
from ttscale.live.serve.metrics import Metrics
from ttscale.live.serve.middleware import BodyLimit, Guard, access, authorized
from ttscale.live.serve.options import (
    PREFIX,
    RequestOptions,
    Routed,
    parse_options,
    route,
)
from ttscale.live.serve.requests import (
    ChatRequest,
    CompletionRequest,
    Prompt,
    check_forwarded,
)
from ttscale.live.serve.responses import Endpoint, completion_response
from ttscale.live.serve.routing import Direct
from ttscale.live.solution import Question, Solution, last_user_text
from ttscale.live.solve import Solver
from ttscale.sampling.backends.openai import ServerError, sent_max_tokens
from ttscale.selection.fields import LOGPROBS, REWARDS
from ttscale.selection.policy import Policy, load_policy, preset_names

__all__ = ["Proxy", "ServeConfig", "create_app"]

MODELS_TTL = 30.0
"""Seconds the upstream's model list is reused."""


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


class Proxy:
    """Answers the proxy's endpoints for one :class:`ServeConfig` (the solver is built on first use)."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self._solver: Solver | None = None
        self._models: tuple[float, list[Any]] | None = None
        self._aliases: dict[str, str] = {}
        """Clean model names -> upstream ids (see :func:`aliases`), from the last listing."""
        self._models_lock = asyncio.Lock()
        self._listing_failed = -MODELS_TTL - 1.0
        self._forms = [""] + [f"@{k}{tail}" for k in (4, 8, 16, 32, 64) if k <= config.max_n for tail in ("", "+adaptive")]
        """The ``@<n>`` forms /v1/models lists for each policy (any other n works as well)."""
        # Presets /v1/models lists: not evaluation-only, and reward policies only with a scorer.
        have = {LOGPROBS, REWARDS} if config.scorer else {LOGPROBS}
        self.served = [name for name in preset_names() if not load_policy(name).missing(have)]
        self._budget = functools.lru_cache(maxsize=256)(functools.partial(_budget, workload=config.workload, price=config.workload_price))
        """A request's budget (frozen, so shared: validating one per request cost 0.1 ms)."""

    @property
    def solver(self) -> Solver:
        if self._solver is None:
            c = self.config
            sampler = proxy_sampler(c.upstream, api_key=c.upstream_api_key or "EMPTY", concurrency=c.concurrency,
                                    timeout=c.timeout, max_retries=c.max_retries)
            scorer = None
            if c.scorer is not None:
                from ttscale.scoring.registry import make_scorer

                scorer = _SerializedScorer(make_scorer(c.scorer, c.scorer_model))
            self._solver = Solver(sampler, preset(c.policy, "policy"), equivalence=c.equivalence, prices=c.prices,
                                  logprobs=True, scorer=scorer, answer_seconds=c.answer_seconds)
            self._solver.scorer_option = "a server started with ttscale serve --scorer"
        return self._solver

    async def aclose(self) -> None:
        if self._solver is not None:
            await self._solver.sampler.aclose()  # type: ignore[attr-defined]
            if self._solver.scorer is not None:
                self._solver.scorer.close()

    # -- the endpoints ---------------------------------------------------------------------------

    async def chat_completions(self, body: ChatRequest, request: Request) -> Response:
        routed, policy = await self._route(body.model, body.ttscale)
        messages = tuple(m.model_dump() for m in body.messages)
        question = self._question(body, routed, policy, problem=last_user_text(messages), prompt=None, messages=messages)
        sols = await self._solve([question], routed.options, policy, request)
        return self._respond(Endpoint.CHAT, body, routed, sols)

    async def completions(self, body: CompletionRequest, request: Request) -> Response:
        routed, policy = await self._route(body.model, body.ttscale)
        if REWARDS in policy.needs and any(not isinstance(p, str) for p in body.prompt):
            raise HTTPError(400, f"prompt: expected text for policy {policy.name!r} (its scorer reads the question), "
                                 "not token ids", param="prompt")
        questions = [self._question(body, routed, policy, problem=p if isinstance(p, str) else "", prompt=p, messages=None)
                     for p in body.prompt]
        sols = await self._solve(questions, routed.options, policy, request)
        return self._respond(Endpoint.TEXT, body, routed, sols)

    async def models(self) -> JSONResponse:
        return JSONResponse({"object": "list", "data": await self._model_entries()})

    async def model(self, model_id: str) -> JSONResponse:
        """``GET /v1/models/{id}`` (the openai SDK's ``models.retrieve``): a listed id, or any
        ``ttscale/<policy>@<n>.../<model>`` form of a served model and policy."""
        entries = await self._model_entries()
        entry = next((e for e in entries if e["id"] == model_id), None)
        if entry is None:
            try:
                routed, policy = await self._route(model_id, None)
            except HTTPError:
                routed = policy = None
            base = next((e for e in entries if routed is not None and e["id"] == routed.model), None)
            if base is not None and policy is not None and policy.name in self.served:
                entry = {**base, "id": model_id, "owned_by": "ttscale"}
        if entry is None:
            raise HTTPError(404, f"The model {model_id!r} does not exist (GET /v1/models lists them)", param="model",
                            code="model_not_found")
        return JSONResponse(entry)

    async def health(self, request: Request) -> JSONResponse:
        c = self.config
        if c.api_key is not None and not authorized(request.headers.get("authorization", ""), c.api_key):
            return JSONResponse({"status": "ok"})  # open to probes without a key: nothing beyond "ok"
        return JSONResponse({"status": "ok", "upstream": c.upstream, "policy": c.policy, "n": c.n})

    async def prometheus(self) -> PlainTextResponse:
        from prometheus_client import CONTENT_TYPE_LATEST

        return PlainTextResponse(self.metrics.render().decode(), media_type=CONTENT_TYPE_LATEST)

    # -- models ----------------------------------------------------------------------------------

    async def _listing(self, *, refresh: bool = False) -> list[Any]:
        """The upstream's models (cached MODELS_TTL seconds); ``refresh``: re-read a stale list now."""
        stale = self._models is None or time.monotonic() - self._models[0] > MODELS_TTL
        if stale:
            async with self._models_lock:
                if self._models is None or time.monotonic() - self._models[0] > MODELS_TTL:
                    try:
                        listed = await self.solver.sampler.list_models()  # type: ignore[attr-defined]
                    except ServerError as exc:
                        self._listing_failed = time.monotonic()
                        raise upstream_error(exc, self.config.upstream) from None
                    self._models = (time.monotonic(), listed)
                    self._aliases = aliases([m.id for m in listed])
        assert self._models is not None
        return self._models[1]

    async def _model_entries(self) -> list[dict[str, Any]]:
        """``/v1/models`` entries: each upstream model as it is, then ``ttscale/<policy>[@<n>]/<name>``
        for every preset this server can serve, under a clean name (see :func:`aliases`)."""
        listed = await self._listing()
        data = []
        for m in listed:
            entry = {"id": m.id, "object": "model", "created": getattr(m, "created", 0) or 0,
                     "owned_by": getattr(m, "owned_by", None) or "upstream"}
            data.append(entry)
            name = self._names.get(m.id, m.id)
            data += [{**entry, "id": f"{PREFIX}{policy}{form}/{name}", "owned_by": "ttscale"}
                     for policy in self.served for form in self._forms]
        return data

    async def _upstream_model(self, name: str) -> str:
        """The upstream's id of a requested model: as given, or the id behind a clean name."""
        now = time.monotonic()
        if (self._models is None or (name not in self._aliases and name not in self._ids)) \
                and now - self._listing_failed > MODELS_TTL:
            # Unknown name: read the listing (at most once per MODELS_TTL); if it fails, the request
            # goes out as it is and the upstream answers for itself.
            with contextlib.suppress(HTTPError, TimeoutError):
                await asyncio.wait_for(self._listing(), timeout=min(5.0, self.config.timeout))
        return self._aliases.get(name, name)

    @property
    def _ids(self) -> set[str]:
        return set() if self._models is None else {m.id for m in self._models[1]}

    @property
    def _names(self) -> dict[str, str]:
        return {upstream: name for name, upstream in self._aliases.items()}

    # -- solving ---------------------------------------------------------------------------------

    async def _route(self, model: str, options: RequestOptions | None) -> tuple[Routed, Policy]:
        """The request's upstream model and options (prefix and body field), and its policy."""
        try:
            if model in self._ids:  # an upstream id that happens to start with "ttscale/" is that model
                routed = Routed(model, parse_options(options))
            else:
                routed = route(model, options)
            policy = preset(routed.options.policy, "ttscale.policy") if routed.options.policy else self.solver.policy
        except ConfigError as exc:
            raise HTTPError.bad_request(exc) from None
        upstream = await self._upstream_model(routed.model)
        return (routed if upstream == routed.model else Routed(upstream, routed.options)), policy

    def _question(self, body: ChatRequest | CompletionRequest, routed: Routed, policy: Policy, *, problem: str,
                  prompt: Prompt | None, messages: tuple[dict[str, Any], ...] | None) -> Question:
        try:
            overrides = check_forwarded(body.forwarded, messages)
        except ConfigError as exc:
            raise HTTPError.bad_request(exc) from None
        # Only what the client sent goes upstream (its defaults apply), unless the server sets one.
        c = self.config
        if c.temperature is not None:
            overrides.setdefault("temperature", c.temperature)
        if c.max_tokens is not None and "max_completion_tokens" not in overrides:
            overrides.setdefault("max_tokens", c.max_tokens)
        overrides["model"] = routed.model
        if messages is None:
            overrides["prompt"] = list(prompt) if isinstance(prompt, tuple) else prompt
        _ask_logprobs(overrides, body, policy)
        # A fixed id: the same seeded request draws the same samples every time.
        return Question(id="request", problem=problem, messages=messages, overrides=overrides, seed=body.seed)

    async def _solve(self, questions: list[Question], options: RequestOptions, policy: Policy,
                     request: Request) -> list[Solution]:
        c = self.config
        n = options.n or c.n
        if n > c.max_n:
            raise HTTPError(400, f"ttscale.n={n}: expected at most {c.max_n} samples (the server's --max-n)", param="ttscale.n")
        if len(questions) * n > c.max_request_samples:
            param = "prompt" if len(questions) > 1 else "ttscale.n"
            raise HTTPError(400, f"{len(questions)} prompts x n={n} = {len(questions) * n} samples: expected at most "
                                 f"{c.max_request_samples} per request (the server's --max-request-samples)", param=param)
        greedy = questions[0].overrides is not None and questions[0].overrides.get("temperature") == 0
        sampler = self._sampler(options, questions[0])
        try:
            samples = 1 if greedy else n
            budget = self._budget(samples, c.adaptive if options.adaptive is None else options.adaptive,
                             min(samples, options.pilot or _DEFAULT_BUDGET.pilot), options.step or _DEFAULT_BUDGET.step,
                             options.confidence or _DEFAULT_BUDGET.confidence)
            async with asyncio.timeout(c.timeout):  # no task of its own, unlike wait_for
                sols = await self.solver.solve(questions, budget, policy=policy, sampler=sampler)
        except TimeoutError:
            raise HTTPError(504, f"upstream {c.upstream} did not answer within {c.timeout:g} s",
                            type_="upstream_error", code="upstream_timeout") from None
        except ConfigError as exc:
            raise HTTPError.bad_request(exc) from None
        except TTScaleError as exc:
            raise upstream_error(exc, c.upstream) from None
        for sol in sols:
            self.metrics.solved(sol)  # type: ignore[arg-type]
            if greedy and n > 1:
                sol.notes.append(f"temperature 0 is greedy decoding: 1 upstream sample instead of {n} "  # type: ignore[union-attr]
                                 "(every sample would be the same)")
        access(request, sols)  # type: ignore[arg-type]
        return sols  # type: ignore[return-value]

    def _sampler(self, options: RequestOptions, question: Question) -> Any:
        """The request's sampler: the solver's, or a twin with the request's early stop (or the
        server's default), whose window the traces' ``max_tokens`` must be able to fill."""
        es = options.early_stop_or(self.config.early_stop)
        limit = sent_max_tokens(question.overrides)
        if es is not None and limit is not None and es.window > limit:
            raise HTTPError(400, f"ttscale.early_stop.window={es.window}: expected at most max_tokens ({limit}): "
                                 "a trace never fills a longer window, so it could never stop", param="ttscale.early_stop.window")
        return self.solver.sampler.with_early_stop(es)  # type: ignore[attr-defined]

    def _respond(self, endpoint: Endpoint, body: ChatRequest | CompletionRequest, routed: Routed,
                 sols: list[Solution]) -> Response:
        return completion_response(endpoint, sols, model=body.model, count=body.n or 1, stream=bool(body.stream),
                                   include_usage=body.include_usage, candidates=routed.options.candidates,
                                   logprobs=body.wants_logprobs)


_DEFAULT_BUDGET = Budget()


def _budget(samples: int, adaptive: bool, pilot: int, step: int, confidence: float, *,
            workload: tuple[tuple[float, float, float, float], ...] | None = None, price: float = DEFAULT_PRICE) -> Budget:
    """A request's budget; adaptive ones stop on the server's workload prior when it has one."""
    return Budget(samples=samples, adaptive=adaptive, pilot=pilot, step=step, confidence=confidence,
                  workload=workload if adaptive else None, price=price)


def _ask_logprobs(overrides: dict[str, Any], body: ChatRequest | CompletionRequest, policy: Policy) -> None:
    """Ask the upstream for the log-probs the client wants (returned for the chosen candidates)
    and those the policy needs (only the sampled tokens')."""
    needed = LOGPROBS in policy.needs
    if isinstance(body, ChatRequest):
        if body.logprobs or needed:
            overrides["logprobs"] = True
        if body.logprobs and body.top_logprobs is not None:
            overrides["top_logprobs"] = body.top_logprobs
    elif body.logprobs is not None or needed:
        overrides["logprobs"] = body.logprobs if body.logprobs is not None else 1  # 1: what every server reads as "on"


def aliases(ids: list[str]) -> dict[str, str]:
    """Clean names for upstream ids that are file paths (vLLM's id for ``--model /abs/dir`` is the
    path): the folder's name when no other model has it, else the path without its leading
    slash, so ``ttscale/majority/<name>`` has no ``//``. Other ids are their own names."""
    out: dict[str, str] = {}
    for upstream in ids:
        if upstream.startswith("/"):
            base = upstream.rstrip("/").rsplit("/", 1)[-1]
            unique = sum(1 for i in ids if i.rstrip("/").rsplit("/", 1)[-1] == base) == 1 and base not in ids
            out[base if unique else upstream.lstrip("/")] = upstream
    return out


def create_app(config: ServeConfig) -> FastAPI:
    """The proxy app for ``config`` (run it with uvicorn; ``ttscale serve`` does)."""
    proxy = Proxy(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await proxy.aclose()

    app = FastAPI(title="ttscale proxy", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = config
    app.state.metrics = proxy.metrics
    app.state.proxy = proxy
    install_error_handlers(app)
    # The completion endpoints are answered by Direct (FastAPI's routes stay for other methods' 405).
    app.add_middleware(Direct, routes={"/v1/chat/completions": (ChatRequest, proxy.chat_completions),
                                       "/v1/completions": (CompletionRequest, proxy.completions)})
    app.add_middleware(BodyLimit, limit=config.max_request_bytes, read_seconds=config.read_seconds)
    app.add_middleware(Guard, api_key=config.api_key, metrics=proxy.metrics)  # added last: runs first
    app.add_api_route("/v1/chat/completions", proxy.chat_completions, methods=["POST"])
    app.add_api_route("/v1/completions", proxy.completions, methods=["POST"])
    app.add_api_route("/v1/models", proxy.models, methods=["GET"])
    app.add_api_route("/v1/models/{model_id:path}", proxy.model, methods=["GET"])
    app.add_api_route("/health", proxy.health, methods=["GET"])
    app.add_api_route("/metrics", proxy.prometheus, methods=["GET"])
    return app
