"""OpenAI-compatible HTTP servers (vLLM's, SGLang, TGI, OpenAI itself) as a sampler.

Uses the official ``openai`` async client. A request for ``n`` candidates is one HTTP call with
``n`` where the server supports it (one prefill), else ``n`` parallel calls with n=1 and seeds
``seed, seed+1, ...``. Calls in flight are bounded. The client's own retries handle 408, 409,
429, 5xx, timeouts and dropped connections (exponential backoff from 0.5 s, honouring
``Retry-After``); then a :class:`ServerError` says what failed and why (:class:`Failure`).
Raw prompts go to ``/v1/completions``, chat prompts to ``/v1/chat/completions``.

With ``SamplingConfig.early_stop`` (DeepConf online) every trace is its own ``n=1`` call,
streamed with ``logprobs=top_k`` and seeded ``seed + i`` like candidate ``i`` of an ``n`` call:
the first ``warmup`` traces of a request run in full and calibrate its threshold, each later one
feeds each streamed token's top-k log-probs into a :class:`GroupConfidenceTracker` and the stream
is closed once the group confidence falls below the threshold (vLLM aborts a request whose client
disconnects, so the server stops generating it). See :meth:`OpenAISampler._stream_trace`.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from ttscale.arith.paths import is_embedded_model
from ttscale.records.confidences import encode_confidences
from ttscale.early_stop import (
    LOW_CONFIDENCE,
    EarlyStopParams,
    GroupConfidenceTracker,
    below_threshold,
    phase_split,
    top_k_confidence,
    tracked_threshold,
)
from ttscale.errors import ConfigError, TTScaleError
from ttscale.sampling.sampler import (
    MAX_SEED,
    FanOut,
    PromptFormat,
    Sample,
    SampleRequest,
    SampleResult,
    SamplingConfig,
    make_sample,
)
from ttscale.validation import is_int, is_number

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["Failure", "OpenAISampler", "ServerError", "describe_failure"]


class Failure(StrEnum):
    """Why a server call failed (a proxy answers 502 or 504 by it)."""

    UNREACHABLE = "unreachable"
    """No connection."""
    TIMEOUT = "timeout"
    """No answer in time."""
    STATUS = "status"
    """Kept answering an error status (after the retries)."""
    REFUSED = "refused"
    """A status that is not retried (4xx other than 408, 409, 429)."""
    MALFORMED = "malformed"
    """Answered 200 with a body that is not a completion (no ``choices``, ``choices: null``, wrong
    types): not retried, since the same server would answer the same way; the message names the field."""


class ServerError(TTScaleError, RuntimeError):
    """The server could not be reached or kept failing after the retries.

    ``kind`` (a :class:`Failure`) says why; ``status`` holds the HTTP status when there was one.
    """

    def __init__(self, message: str, *, kind: Failure | str = Failure.STATUS, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = Failure(kind)
        self.status = status

    @classmethod
    def of(cls, exc: BaseException, message: str | None = None) -> ServerError:
        """The ServerError for an exception of the openai client (``message``: default its description)."""
        return cls(describe_failure(exc) if message is None else message, kind=failure_kind(exc), status=getattr(exc, "status_code", None))


def failure_kind(exc: BaseException) -> Failure:
    """The :class:`Failure` an exception of the openai client stands for."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return Failure.TIMEOUT
    if isinstance(exc, openai.APIConnectionError):
        return Failure.UNREACHABLE
    return Failure.STATUS


_MENTIONS_N = re.compile(r"(?<![\w-])n(?![\w-])")
"""The parameter ``n`` named in an error message (not the letter inside a word)."""


def _retried(status: int) -> bool:
    """Whether the openai client retries a response with this status."""
    return status >= 500 or status in (408, 409, 429)


def describe_failure(exc: BaseException) -> str:
    """A short description of an exception of the openai client: status and server message, timeout, ..."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        body = exc.body
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            body = body["error"]
        message = body.get("message") if isinstance(body, dict) else None
        return f"HTTP {exc.status_code}: {str(message or exc.message)[:200]}"
    if isinstance(exc, openai.APITimeoutError):
        return "timed out"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        return f"connection failed ({type(cause).__name__ if cause else 'no response'})"
    return f"{type(exc).__name__}: {exc}"


_ATTEMPTS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("ttscale_openai_attempts", default=None)
"""HTTP attempts of the sampling call running in this task (the client retries inside one call)."""


MAX_USAGE_TOKENS = 10**12
"""Largest token count believed from an upstream's ``usage`` (more, negative or not an integer:
the count is ignored, never passed on to metrics or costs)."""


def usage_count(usage: Any, key: str) -> int | None:
    """``usage[key]`` when it is an integer in [0, MAX_USAGE_TOKENS], else None (an upstream's
    ``"completion_tokens": -5`` or ``"12"`` is its mistake, not a crash of ours)."""
    value = usage.get(key) if isinstance(usage, dict) else None
    return int(value) if is_int(value) and 0 <= value <= MAX_USAGE_TOKENS else None


def _shown(value: Any) -> str:
    if value is _ABSENT:
        return "no such field"
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_OWN_FIELDS = frozenset({"model", "n", "seed", "stream", "stream_options", "messages", "prompt"})
"""Request fields the sampler sets itself; a request's ``overrides`` cannot change them."""


def sent_max_tokens(overrides: Mapping[str, Any] | None) -> int | None:
    """The ``max_tokens`` (or ``max_completion_tokens``) a request's overrides send, if any."""
    for key in ("max_tokens", "max_completion_tokens"):
        value = (overrides or {}).get(key)
        if is_int(value) and value > 0:
            return int(value)
    return None


async def _all(coros: Iterable[Awaitable[T]]) -> list[T]:
    """Await all; on the first failure cancel the rest (unlike gather) and raise that failure itself."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in coros]
    except BaseExceptionGroup as eg:
        first = eg.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [t.result() for t in tasks]


class OpenAISampler:
    """Sampling from an OpenAI-compatible server.

    ``model`` None takes the first model the server lists. ``concurrency`` bounds HTTP calls in
    flight (a call holds its slot through the client's retries); ``timeout`` is per attempt
    (seconds); ``max_retries`` retries per call after the first attempt, by the openai client
    (backoff 0.5 s doubling up to 8 s, jittered, or the server's ``Retry-After``).
    ``resume_hint`` ends the error of a call that gave up (what the caller can do about it).
    """

    name = "openai"
    batch_size = 1

    def __init__(
        self,
        model: str | None,
        config: SamplingConfig | None = None,
        *,
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key: str | None = None,
        concurrency: int = 32,
        timeout: float = 120.0,
        max_retries: int = 5,
        resume_hint: str = "what finished is in the bank, run the same command again to resume",
    ) -> None:
        for name, value, ok, expected in (
            ("concurrency", concurrency, is_int(concurrency) and concurrency >= 1, "an integer >= 1"),
            ("timeout", timeout, is_number(timeout) and timeout > 0, "a number of seconds > 0"),
            ("max_retries", max_retries, is_int(max_retries) and max_retries >= 0, "an integer >= 0"),
        ):
            if not ok:
                raise ConfigError(name, value, expected)
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError("base_url", base_url, "an http(s) URL such as http://127.0.0.1:8000/v1")
        self.config = config or SamplingConfig()
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"  # local servers accept any key
        self.concurrency = concurrency
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.resume_hint = resume_hint
        self.native_n: bool | None = {FanOut.NATIVE: True, FanOut.PARALLEL: False}.get(self.config.fan_out)
        """Whether the server takes ``n`` in one call (None: not known yet, found out on first use)."""
        self.logprobs_ok = True
        self.calls = 0
        """HTTP calls made for samples (retries and fan-out included)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._gate: asyncio.Semaphore | None = None
        self._ready: asyncio.Lock | None = None
        self._checked = False

    # -- the client, one per event loop (httpx connections belong to the loop that opened them) --

    def client(self) -> Any:
        """The ``openai.AsyncOpenAI`` client of the running event loop (made on first use)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            import openai

            self._loop = loop
            # No redirects: a 307 from the upstream must not re-send the prompt (and key) elsewhere.
            http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [self._count_attempt]}, follow_redirects=False)
            self._client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=self.max_retries,
                                              timeout=self.timeout, http_client=http)
            self._gate = asyncio.Semaphore(self.concurrency)
            self._ready = asyncio.Lock()
        return self._client

    async def _count_attempt(self, request: Any) -> None:
        attempts = _ATTEMPTS.get()
        if attempts is not None:  # a sampling call (not a model listing)
            attempts[0] += 1
            self.calls += 1

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
        self._client = self._loop = None

    def close(self) -> None:
        self._client = self._loop = None  # an async client can only be closed inside its loop: see aclose

    def with_early_stop(self, params: EarlyStopParams | None) -> OpenAISampler:
        """This sampler with another early stop (a proxy's requests each choose theirs), sharing its
        client and call slots (``concurrency`` still bounds all calls). Call it inside the event loop
        the sampler runs on. The config is copied, not validated again: the caller checks the
        window against the ``max_tokens`` its requests send."""
        if params == self.config.early_stop:
            return self
        self.client()  # made now, so the twin shares it (and aclose closes it once)
        twin = copy.copy(self)
        # Traces keep their log-probs with the early stop: the stream brings them anyway.
        twin.config = self.config.model_copy(update={"early_stop": params, "logprobs": self.config.logprobs or params is not None})
        return twin

    def token_limit(self, req: SampleRequest) -> int:
        """Most tokens a trace of ``req`` may bring: the ``max_tokens`` the call sends."""
        return sent_max_tokens(req.overrides) or self.config.max_tokens

    async def list_models(self) -> list[Any]:
        """The server's ``/models`` entries (``id``, ``created``, ``owned_by``), asked once without
        retries (a server that is down should say so at once); :class:`ServerError` when it fails."""
        try:
            return [m async for m in self.client().with_options(max_retries=0).models.list()]
        except Exception as exc:  # noqa: BLE001 - every failure of the listing is the server's
            raise ServerError.of(exc) from None

    async def check(self) -> None:
        """Reach the server once (clear error when it is down) and resolve the model name."""
        self.client()
        assert self._ready is not None
        async with self._ready:
            if self._checked:
                return
            try:
                models = [m.id for m in await self.list_models()]
            except ServerError as exc:
                if exc.status == 404:
                    models = []  # some servers (TGI) have no /models: trust the given name
                elif exc.status == 401:
                    raise ServerError(f"{self.base_url}: authentication failed ({exc}); set OPENAI_API_KEY or --api-key",
                                      kind=Failure.REFUSED, status=exc.status) from None
                else:
                    raise ServerError(f"cannot reach an OpenAI-compatible server at {self.base_url}: {exc}; is it running, and is --base-url right?",
                                      kind=exc.kind, status=exc.status) from None
            if self.model is None:
                if not models:
                    raise ConfigError("model", None, f"a model name (the server at {self.base_url} lists none)")
                self.model = models[0]
            elif models and self.model not in models:
                # The packaged model by another of its names (``arith-tiny`` against a server that
                # loaded its folder by path, or the reverse): the same weights, so the server's name.
                same = [m for m in models if is_embedded_model(m)] if is_embedded_model(self.model) else []
                if not same:
                    raise ConfigError("model", self.model, f"a model the server at {self.base_url} serves: {', '.join(models)}")
                self.model = same[0]
            self._checked = True

    # -- generation ------------------------------------------------------------------------------

    def generate(self, requests: Sequence[SampleRequest]) -> list[SampleResult]:
        async def run() -> list[SampleResult]:
            try:
                return await self.agenerate(requests)
            finally:
                await self.aclose()

        return asyncio.run(run())

    async def agenerate(self, requests: Sequence[SampleRequest]) -> list[SampleResult]:
        await self.check()
        return await _all(self._request(r) for r in requests)

    async def _request(self, req: SampleRequest) -> SampleResult:
        if self.config.early_stop is not None:
            return await self._request_early_stop(req)
        start = time.perf_counter()
        calls = 0
        if self.native_n is not False:
            result, calls = await self._native(req)
            if result is not None:
                return result
        seeds = [None if req.seed is None else (req.seed + i) % (MAX_SEED + 1) for i in range(req.n)]
        parts = await _all(self._call(req, 1, s) for s in seeds)
        cands: list[Sample] = []
        prompt_tokens: int | None = None
        billed = completion = 0
        for (resp, latency, tries), seed in zip(parts, seeds):
            calls += tries
            cands += self._parse(resp, latency, seed, req)
            usage = resp.get("usage")
            if usage_count(usage, "prompt_tokens") is not None:
                prompt_tokens = usage_count(usage, "prompt_tokens")
                billed += prompt_tokens or 0
            completion += usage_count(usage, "completion_tokens") or 0
        return SampleResult(
            request=req, candidates=cands, prompt_tokens=prompt_tokens,
            completion_tokens=completion or sum(c.tokens or 0 for c in cands),
            latency=time.perf_counter() - start, calls=calls, extra={"prompt_tokens_billed": billed},
        )

    async def _native(self, req: SampleRequest) -> tuple[SampleResult | None, int]:
        """One call with ``n``; None when the server turns out not to support ``n`` (AUTO mode)."""
        import openai

        try:
            resp, latency, calls = await self._call(req, req.n, req.seed)
        except openai.BadRequestError as exc:
            if self.native_n is not True and req.n > 1 and _MENTIONS_N.search(describe_failure(exc)):
                if self.native_n is False:  # a concurrent request found out first
                    return None, 1
                log.warning("%s rejects n=%d in one request (%s): sending n=1 requests in parallel", self.base_url, req.n, describe_failure(exc))
                self.native_n = False
                return None, 1
            raise ConfigError("request", req.id, f"a request the server accepts ({describe_failure(exc)})") from None
        cands = self._parse(resp, latency, req.seed, req)  # a malformed reply fails here, before any fallback
        got = len(cands)
        if got < req.n and req.n > 1 and self.native_n is None:
            log.warning("%s returned %d of n=%d choices: sending n=1 requests in parallel", self.base_url, got, req.n)
            self.native_n = False
            return None, calls
        if req.n > 1:
            self.native_n = True
        usage = resp.get("usage")
        return SampleResult(
            request=req, candidates=cands, prompt_tokens=usage_count(usage, "prompt_tokens"),
            completion_tokens=usage_count(usage, "completion_tokens") or sum(c.tokens or 0 for c in cands),
            latency=latency, calls=calls,
        ), calls

    async def _call(self, req: SampleRequest, n: int, seed: int | None,
                    send: Callable[[Any], Awaitable[Any]] | None = None) -> tuple[Any, float, int]:
        """One HTTP call, retried by the client: (response, seconds of the call, attempts).

        A 400 about log-probs turns them off and sends again (with the early stop, which needs
        them, it is a :class:`ConfigError` naming ``early_stop``); a status the client does not
        retry is a ``refused`` :class:`ServerError`, a failure that outlasts the retries names the
        attempts and the last failure. Other 400s are raised as they are (the caller reads them).
        ``send(client)`` replaces the plain JSON call (a streamed trace, read to its end inside
        the call's slot).
        """
        import openai

        client = self.client()
        assert self._gate is not None
        attempts = [0]
        token = _ATTEMPTS.set(attempts)
        try:
            async with self._gate:
                start = time.perf_counter()
                resp = await (send(client) if send is not None else self._send(client, req, n, seed))
                return resp, time.perf_counter() - start, attempts[0]
        except openai.BadRequestError as exc:
            if self.config.early_stop is not None and "logprob" in str(exc).lower():
                raise self._no_logprobs(req, describe_failure(exc)) from None
            if self.config.token_confidence is not None and "logprob" in str(exc).lower():
                raise self._no_top_logprobs(req, describe_failure(exc)) from None
            if not (self.logprobs_ok and self.config.logprobs and "logprob" in str(exc).lower()):
                raise
            log.warning("%s rejects logprobs (%s): sampling without them", self.base_url, describe_failure(exc))
            self.logprobs_ok = False
            resp, latency, more = await self._call(req, n, seed)
            return resp, latency, attempts[0] + more
        except openai.APIStatusError as exc:
            if not _retried(exc.status_code):
                raise ServerError(f"{self.base_url} refused request {req.id!r}: {describe_failure(exc)}",
                                  kind=Failure.REFUSED, status=exc.status_code) from None
            raise self._gave_up(req, exc, attempts[0]) from None
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise self._gave_up(req, exc, attempts[0]) from None
        finally:
            _ATTEMPTS.reset(token)

    def _gave_up(self, req: SampleRequest, exc: BaseException, attempts: int) -> ServerError:
        message = f"{self.base_url}: request {req.id!r} failed {attempts} times, last: {describe_failure(exc)}; {self.resume_hint}"
        return ServerError.of(exc, message)

    def payload(self, req: SampleRequest, n: int, seed: int | None, *, stream: bool = False) -> tuple[str, dict[str, Any]]:
        """(endpoint path, JSON body) of one call: the config's fields, then the request's overrides.

        ``stream``: a streamed call with the early stop's ``top_k`` log-probs per token (and the
        usage in a last chunk)."""
        c = self.config
        body: dict[str, Any] = {"temperature": c.temperature, "top_p": c.top_p, "max_tokens": c.max_tokens}
        if c.stop:
            body["stop"] = list(c.stop)
        if c.top_k > 0:
            body["top_k"] = c.top_k  # vLLM, SGLang and TGI accept it; OpenAI has none
        chat = req.messages is not None or c.prompt_format is PromptFormat.CHAT
        if c.logprobs and self.logprobs_ok:
            body["logprobs"] = True
        for key, value in (req.overrides or {}).items():
            if key not in _OWN_FIELDS:
                body[key] = value
        # A proxy may route requests to the several models one server serves.
        body.update(model=(req.overrides or {}).get("model") or self.model, n=n)
        if seed is not None:
            body["seed"] = seed
        if c.token_confidence is not None and not stream:
            body["logprobs"] = c.token_confidence if not chat else True
            if chat:
                body["top_logprobs"] = c.token_confidence
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
            if self.config.early_stop is not None:
                body["logprobs"] = self.config.early_stop.top_k if not chat else True
                if chat:
                    body["top_logprobs"] = self.config.early_stop.top_k
        lp = body.get("logprobs")
        if not self.logprobs_ok or lp in (False, None):
            body.pop("logprobs", None)
        elif not chat and lp is True:
            body["logprobs"] = 1  # chat takes a flag; completions the number of top log-probs
        if chat:
            body["messages"] = list(req.messages) if req.messages is not None else c.messages(req.problem)
            return "/chat/completions", body
        body["prompt"] = c.render(req.problem)
        return "/completions", body

    async def _send(self, client: Any, req: SampleRequest, n: int, seed: int | None) -> Any:
        # A raw JSON body and a dict back: the client's typed request/response models cost ~8 ms
        # of CPU per call, which a proxy answering hundreds of requests a second cannot spend.
        path, body = self.payload(req, n, seed)
        return await client.post(path, cast_to=object, body=body)

    def _malformed(self, req: SampleRequest, field: str, expected: str, got: Any) -> ServerError:
        return ServerError(f"{self.base_url} answered request {req.id!r} with a malformed reply: field '{field}': "
                           f"expected {expected} (got {_shown(got)})", kind=Failure.MALFORMED, status=200)

    def _choices(self, resp: Any, req: SampleRequest) -> list[dict[str, Any]]:
        """The reply's ``choices``: a non-empty list of objects, else a MALFORMED :class:`ServerError`
        naming the field (a 200 without choices must end the request, not start another)."""
        if not isinstance(resp, dict):
            raise self._malformed(req, "(body)", "a completion object", type(resp).__name__)
        choices = resp.get("choices", _ABSENT)
        if choices is _ABSENT:
            raise self._malformed(req, "choices", "a non-empty list of choices", _ABSENT)
        if not isinstance(choices, list) or not choices:
            raise self._malformed(req, "choices", "a non-empty list of choices", choices)
        for i, choice in enumerate(choices):
            if not isinstance(choice, dict):
                raise self._malformed(req, f"choices[{i}]", "an object", choice)
        return choices

    def _parse(self, resp: Any, latency: float, seed: int | None, req: SampleRequest) -> list[Sample]:
        choices = self._choices(resp, req)
        usage = resp.get("usage")
        n1 = len(choices) == 1 and isinstance(usage, dict) and bool(usage)
        cands = []
        for i, choice in sorted(enumerate(choices), key=lambda ic: ic[1].get("index", 0) if is_int(ic[1].get("index", 0)) else 0):
            lp = choice.get("logprobs") or None
            if "message" in choice:  # chat completion
                message = choice.get("message") or {}
                if not isinstance(message, dict):
                    raise self._malformed(req, f"choices[{i}].message", "an object", message)
                text, where = message.get("content") or "", f"choices[{i}].message.content"
                lps = _numbers([t.get("logprob") if isinstance(t, dict) else None for t in (lp.get("content") or [])]) \
                    if isinstance(lp, dict) and isinstance(lp.get("content") or [], list) else None
            else:
                text, where = choice.get("text") or "", f"choices[{i}].text"
                raw = lp.get("token_logprobs") if isinstance(lp, dict) else None
                lps = _numbers(raw) if isinstance(raw, list) else None
            if not isinstance(text, str):
                raise self._malformed(req, where, "a string", text)
            if lps is not None:
                tokens: int | None = len(lps)
                logprob: float | None = float(sum(x for x in lps if x is not None))
            else:
                tokens = usage_count(usage, "completion_tokens") if n1 else None
                logprob = None
            finish = choice.get("finish_reason")
            confs = None
            if self.config.token_confidence is not None:
                confs = encode_confidences(self._choice_confidences(lp, "message" in choice, req, i))
            cands.append(make_sample(text, tokens=tokens, logprob=logprob, finish=finish if isinstance(finish, str) else None,
                                     latency=latency, seed=seed, token_confidence=confs))
        return cands

    def _choice_confidences(self, lp: Any, chat: bool, req: SampleRequest, i: int) -> list[float]:
        """One choice's token confidences from its top log-probs (``token_confidence``)."""
        k = self.config.token_confidence
        assert k is not None
        if not isinstance(lp, dict):
            raise self._no_top_logprobs(req, f"sent no log-probs for choice {i}")
        rows = self._token_rows(req, lp, chat, f"choices[{i}].logprobs", lambda why: self._no_top_logprobs(req, why))
        return [self._confidence(req, values, k, where) for values, where, _ in rows]

    def _token_rows(self, req: SampleRequest, lp: dict[str, Any], chat: bool, prefix: str,
                    missing: Callable[[str], ConfigError], chunk: bool = False) -> list[tuple[list[Any], str, Any]]:
        """Per generated token of one choice's ``logprobs`` object (chat: ``content[j]``; completions:
        ``top_logprobs[j]`` and ``token_logprobs[j]``): (its top log-probs, where they are in the reply,
        the sampled token's log-prob). A reply without the top log-probs raises ``missing(why)`` (the
        error names the option that asked for them); a wrongly shaped one, a malformed-reply error. A
        stream ``chunk`` may carry no token at all."""
        rows: list[tuple[list[Any], str, Any]] = []
        if chat:
            content = lp.get("content")
            if content is None and not chunk:
                raise missing(f"sent no `{prefix}.content`")
            if not isinstance(content, list | None):
                raise self._malformed(req, f"{prefix}.content", "a list", content)
            for j, entry in enumerate(content or []):
                where = f"{prefix}.content[{j}].top_logprobs"
                if not isinstance(entry, dict):
                    raise self._malformed(req, f"{prefix}.content[{j}]", "an object (a token with its log-probs)", entry)
                top = entry.get("top_logprobs")
                if top is not None and not isinstance(top, list):
                    raise self._malformed(req, where, "a list of top log-probs", top)
                if not top:
                    raise missing(f"sent no `{where}`")
                rows.append(([t.get("logprob") if isinstance(t, dict) else t for t in top], where, entry.get("logprob")))
            return rows
        top = lp.get("top_logprobs")
        if top is None:
            if not chunk or lp.get("tokens") or lp.get("token_logprobs"):
                raise missing(f"sent log-probs without the top ones (`{prefix}.top_logprobs` null)")
            return rows  # no token in this reply or chunk
        if not isinstance(top, list):
            raise self._malformed(req, f"{prefix}.top_logprobs", "a list (one object per token)", top)
        sampled = lp.get("token_logprobs")
        sampled = sampled if isinstance(sampled, list) and len(sampled) == len(top) else [None] * len(top)
        for j, position in enumerate(top):
            where = f"{prefix}.top_logprobs[{j}]"
            if not isinstance(position, dict):
                raise self._malformed(req, where, "an object of token: log-prob", position)
            if not position:
                raise missing(f"sent an empty `{where}`")
            rows.append((list(position.values()), where, sampled[j]))
        return rows

    def _no_top_logprobs(self, req: SampleRequest, why: str) -> ConfigError:
        k = self.config.token_confidence
        return ConfigError("token_confidence", {"top_k": k, "backend": "openai"},
                           f"a server that returns the top-{k} log-probs of each token (request field `logprobs`); "
                           f"{self.base_url} {why} for request {req.id!r}: use a server that returns logprobs (vLLM, "
                           "SGLang) or sample without --token-confidence")

    # -- early stop: streamed traces ------------------------------------------------------------

    def _no_logprobs(self, req: SampleRequest, why: str) -> ConfigError:
        es = self.config.early_stop
        top_k = es.top_k if es is not None else None
        return ConfigError("early_stop", {"top_k": top_k, "backend": "openai"},
                           f"a server that returns the top-{top_k} log-probs of each streamed token (request field "
                           f"`logprobs`); {self.base_url} {why} for request {req.id!r}: use a server that returns "
                           "logprobs (vLLM, SGLang), a smaller --early-stop-top-k, or sample without --early-stop-*")

    async def _request_early_stop(self, req: SampleRequest) -> SampleResult:
        """A request's traces with the early stop: the warm-up traces in full (streamed like the
        others), the threshold from them (or the fixed one), then the tracked traces, each stream
        closed when its group confidence falls below the threshold. Trace ``i`` is seeded
        ``seed + i``, as candidate ``i`` of an ``n`` call (vLLM's seeding), so a tracked trace
        draws what the same trace of a run without early stop draws, up to where it is stopped."""
        es = self.config.early_stop
        assert es is not None
        start = time.perf_counter()
        # The question's warm-up traces from earlier requests (the live solver's rounds) count toward warmup.
        warm, tracked = phase_split(req.n, es, len(req.early_stop_warmup))
        seeds = [None if req.seed is None else (req.seed + i) % (MAX_SEED + 1) for i in range(req.n)]
        warm_runs = await _all(self._trace(req, s, None) for s in seeds[:warm])
        limit = tracked_threshold(es, [*req.early_stop_warmup, *(t.lowest for t in warm_runs)]) if tracked else None
        tracked_runs = await _all(self._trace(req, s, limit) for s in seeds[warm:])
        cands: list[Sample] = []
        for i, t in enumerate(warm_runs + tracked_runs):
            extra: dict[str, Any] = {"lowest_group_confidence": t.lowest} if i < warm else {"early_stop_threshold": limit}
            cands.append(make_sample(t.text, tokens=t.tokens, logprob=t.logprob if self.config.logprobs else None,
                                     finish=t.finish, latency=t.latency, seed=seeds[i], **extra))
        runs = warm_runs + tracked_runs
        prompt_tokens = next((t.prompt_tokens for t in runs if t.prompt_tokens is not None), None)
        return SampleResult(
            request=req, candidates=cands, prompt_tokens=prompt_tokens,
            completion_tokens=sum(t.tokens for t in runs), latency=time.perf_counter() - start,
            calls=sum(t.attempts for t in runs),
            extra={"stopped": sum(t.finish == LOW_CONFIDENCE for t in runs), "threshold": limit},
        )

    async def _trace(self, req: SampleRequest, seed: int | None, limit: float | None) -> _Trace:
        """One streamed trace (see :meth:`_stream_trace`) in a call slot, with the client's retries
        until its stream starts; ``limit`` None runs it in full."""

        async def send(client: Any) -> _Trace:
            return await self._stream_trace(client, req, seed, limit)

        trace, latency, attempts = await self._call(req, 1, seed, send=send)
        trace.latency, trace.attempts = latency, attempts
        return trace

    async def _stream_trace(self, client: Any, req: SampleRequest, seed: int | None, limit: float | None) -> _Trace:
        """Stream one trace, tracking its group confidence; close the stream below ``limit``.

        Bounded: more tokens than ``max_tokens``, or more chunks than ``2 * max_tokens + 16``,
        is a malformed reply (a server that does not stop), as is a chunk that is not a completion
        chunk (the error names the field). A token without top log-probs is a :class:`ConfigError`
        naming ``early_stop`` and ``logprobs``. A stopped trace keeps the text and tokens of every
        chunk received up to the one that dropped it (the server had generated them).
        """
        import openai

        es = self.config.early_stop
        assert es is not None
        path, body = self.payload(req, 1, seed, stream=True)
        chat = path == "/chat/completions"
        stream = await client.post(path, cast_to=object, body=body, stream=True, stream_cls=openai.AsyncStream[object])
        max_tokens = self.token_limit(req)
        max_chunks = 2 * max_tokens + 16
        tracker = GroupConfidenceTracker(es.window)
        trace = _Trace()
        pieces: list[str] = []
        chunks = 0
        try:
            async for chunk in _guarded(stream, self, req):
                chunks += 1
                if chunks > max_chunks:
                    raise self._malformed(req, "(stream)", f"at most {max_chunks} chunks for max_tokens={max_tokens}", f"chunk {chunks}")
                text, confs, lps, finish, usage = self._chunk(chunk, req, chat, es.top_k)
                if usage is not None:
                    trace.prompt_tokens = usage_count(usage, "prompt_tokens")
                if text:
                    pieces.append(text)
                if text and not confs:
                    raise self._no_logprobs(req, "streamed text without top log-probs")
                trace.tokens += len(confs)
                if trace.tokens > max_tokens:
                    raise self._malformed(req, "choices[0].logprobs", f"at most max_tokens={max_tokens} tokens in the stream",
                                          f"{trace.tokens} tokens")
                trace.logprob += sum(x for x in lps if x is not None)
                for conf in confs:
                    group = tracker.push(conf)
                    if below_threshold(group, limit):
                        trace.finish = LOW_CONFIDENCE
                if trace.finish == LOW_CONFIDENCE:
                    break  # closes the stream: the server aborts the request
                if finish is not None:
                    trace.finish = finish
        finally:
            await stream.close()
        if trace.finish is None:
            raise self._malformed(req, "choices[0].finish_reason", "a finish reason before the stream ended", None)
        trace.text = "".join(pieces)
        trace.lowest = tracker.lowest_group()
        return trace

    def _chunk(self, chunk: Any, req: SampleRequest, chat: bool, top_k: int
               ) -> tuple[str, list[float], list[float | None], str | None, Any]:
        """One stream chunk: (text, token confidences, token log-probs, finish reason, usage or None)."""
        if not isinstance(chunk, dict):
            raise self._malformed(req, "(chunk)", "a completion chunk object", type(chunk).__name__)
        choices = chunk.get("choices", _ABSENT)
        if not isinstance(choices, list):
            raise self._malformed(req, "choices", "a list of choices in each chunk", choices)
        usage = chunk.get("usage")
        if not choices:
            if not isinstance(usage, dict):  # only the last chunk (the usage) has no choice
                raise self._malformed(req, "choices", "a non-empty list of choices (or a usage chunk)", choices)
            return "", [], [], None, usage
        if len(choices) != 1 or not isinstance(choices[0], dict):
            raise self._malformed(req, "choices", "one choice object per chunk (n=1)", choices)
        choice = choices[0]
        finish = choice.get("finish_reason")
        if finish is not None and not isinstance(finish, str):
            raise self._malformed(req, "choices[0].finish_reason", "a string or null", finish)
        if chat:
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise self._malformed(req, "choices[0].delta", "an object", delta)
            text, where = delta.get("content") or "", "choices[0].delta.content"
        else:
            text, where = choice.get("text") or "", "choices[0].text"
        if not isinstance(text, str):
            raise self._malformed(req, where, "a string", text)
        lp = choice.get("logprobs")
        if lp is None:
            return text, [], [], finish, usage
        if not isinstance(lp, dict):
            raise self._malformed(req, "choices[0].logprobs", "an object", lp)
        rows = self._token_rows(req, lp, chat, "choices[0].logprobs", lambda why: self._no_logprobs(req, why), chunk=True)
        confs = [self._confidence(req, values, top_k, where) for values, where, _ in rows]
        return text, confs, [_logprob(sampled) for _, _, sampled in rows], finish, usage

    def _confidence(self, req: SampleRequest, values: list[Any], top_k: int, where: str) -> float:
        if not values:
            raise self._no_logprobs(req, f"sent an empty `{where}`")
        for v in values:
            if not (is_number(v) or v == float("-inf")):
                raise self._malformed(req, where, "log-probs (numbers)", v)
        conf = top_k_confidence((float(v) for v in values), top_k)
        assert conf is not None
        return conf


_ABSENT = object()


@dataclass
class _Trace:
    """One streamed trace of the early stop, as it was received."""

    text: str = ""
    tokens: int = 0
    logprob: float = 0.0
    finish: str | None = None
    lowest: float | None = None
    """Its lowest group confidence over the tokens received (None for no tokens)."""
    prompt_tokens: int | None = None
    latency: float = 0.0
    attempts: int = 0


async def _guarded(stream: Any, sampler: OpenAISampler, req: SampleRequest) -> Any:
    """The stream's chunks; an error event or a chunk that is not JSON becomes a :class:`ServerError`."""
    import openai

    iterator = stream.__aiter__()
    while True:
        try:
            chunk = await iterator.__anext__()
        except StopAsyncIteration:
            return
        except ValueError as exc:  # json.JSONDecodeError: a data line that is not JSON
            raise sampler._malformed(req, "(chunk)", "JSON data in each server-sent event", str(exc)) from None
        except (openai.APITimeoutError, openai.APIConnectionError):
            raise  # _call names the failure
        except openai.APIError as exc:  # an error event in the middle of the stream
            raise ServerError(f"{sampler.base_url}: the stream of request {req.id!r} failed: {str(exc)[:200]}",
                              kind=Failure.STATUS, status=200) from None
        yield chunk


def _logprob(value: Any) -> float | None:
    return float(value) if is_number(value) or value == float("-inf") else None


def _numbers(values: list[Any]) -> list[float | None] | None:
    """Token log-probs as floats (None kept: a filtered token); None when any is not a number (an
    upstream's malformed log-probs are dropped, not summed)."""
    out: list[float | None] = []
    for v in values:
        if v is None:
            out.append(None)
        elif is_number(v) or (isinstance(v, float) and v == float("-inf")):
            out.append(float(v))
        else:
            return None
    return out
