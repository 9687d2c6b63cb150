"""OpenAI-compatible HTTP servers (vLLM's, SGLang, TGI, OpenAI itself) as a sampler.

Uses the official ``openai`` async client. A request for ``n`` candidates is one HTTP call with
``n`` where the server supports it (one prefill), else ``n`` parallel calls with n=1 and seeds
``seed, seed+1, ...``. Calls in flight are bounded; 429, 5xx, timeouts and dropped connections
are retried with exponential backoff (honouring ``Retry-After``); then a :class:`ServerError`
says what failed. Raw prompts go to ``/v1/completions``, chat prompts to ``/v1/chat/completions``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import time
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, TypeVar

from ttscale.errors import ConfigError, TTScaleError
from ttscale.sampling.sampler import (
    MAX_SEED,
    Candidate,
    FanOut,
    PromptFormat,
    SampleRequest,
    SampleResult,
    SamplingConfig,
    make_candidate,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class ServerError(TTScaleError, RuntimeError):
    """The server could not be reached or kept failing after the retries.

    ``kind`` says why, so a caller can map it (the proxy answers 502 or 504): ``unreachable``
    (no connection), ``timeout`` (no answer in time), ``status`` (kept answering an error status;
    ``status`` holds it) or ``refused`` (a non-retryable error status).
    """

    def __init__(self, message: str, *, kind: str = "status", status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


def _failure_kind(exc: BaseException) -> tuple[str, int | None]:
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "timeout", None
    if isinstance(exc, openai.APIConnectionError):
        return "unreachable", None
    if isinstance(exc, openai.APIStatusError):
        return "status", exc.status_code
    return "status", None


_RETRY_STATUS = {408, 409, 429}
_MENTIONS_N = re.compile(r"(?<![\w-])n(?![\w-])")
"""The parameter ``n`` named in an error message (not the letter inside a word)."""


def _retryable(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError)):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code >= 500 or exc.status_code in _RETRY_STATUS
    return False


def _describe(exc: BaseException) -> str:
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


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


_OWN_FIELDS = frozenset({"model", "n", "seed", "stream", "stream_options", "messages", "prompt"})
"""Request fields the sampler sets itself; a request's ``overrides`` cannot change them."""


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
    flight; ``timeout`` is per call (seconds); ``max_retries`` retries per call after the first
    attempt, waiting ``backoff * 2**attempt`` seconds (jittered, at most ``max_backoff``).
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
        backoff: float = 0.5,
        max_backoff: float = 20.0,
    ) -> None:
        for name, value, ok, expected in (
            ("concurrency", concurrency, isinstance(concurrency, int) and concurrency >= 1, "an integer >= 1"),
            ("timeout", timeout, isinstance(timeout, (int, float)) and timeout > 0, "a number of seconds > 0"),
            ("max_retries", max_retries, isinstance(max_retries, int) and max_retries >= 0, "an integer >= 0"),
            ("backoff", backoff, isinstance(backoff, (int, float)) and backoff >= 0, "a number of seconds >= 0"),
        ):
            if not ok:
                raise ConfigError(name, value, expected)
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError("base_url", base_url, "an http(s) URL such as http://127.0.0.1:8000/v1")
        self.config = config or SamplingConfig()
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"  # local servers accept any key
        self.concurrency = concurrency
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.native_n: bool | None = {FanOut.NATIVE: True, FanOut.PARALLEL: False}.get(self.config.fan_out)
        """Whether the server takes ``n`` in one call (None: not known yet, found out on first use)."""
        self.logprobs_ok = True
        self.calls = 0
        """HTTP calls made (retries and fan-out included)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._gate: asyncio.Semaphore | None = None
        self._ready: asyncio.Lock | None = None
        self._checked = False
        self.resume_hint = "what finished is in the bank, run the same command again to resume"
        """Appended to give-up errors; an interactive caller (the API, the proxy) replaces it."""

    # -- the client, one per event loop (httpx connections belong to the loop that opened them) --

    def _ensure_client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            import openai

            self._loop = loop
            self._client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=0, timeout=self.timeout)
            self._gate = asyncio.Semaphore(self.concurrency)
            self._ready = asyncio.Lock()
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
        self._client = self._loop = None

    def close(self) -> None:
        self._client = self._loop = None  # an async client can only be closed inside its loop: see aclose

    async def check(self) -> None:
        """Reach the server once (clear error when it is down) and resolve the model name."""
        import openai

        client = self._ensure_client()
        assert self._ready is not None
        async with self._ready:
            if self._checked:
                return
            try:
                models = [m.id async for m in client.models.list()]
            except openai.NotFoundError:
                models = []  # some servers (TGI) have no /models: trust the given name
            except openai.AuthenticationError as exc:
                raise ServerError(f"{self.base_url}: authentication failed ({_describe(exc)}); set OPENAI_API_KEY or --api-key",
                                  kind="refused", status=exc.status_code) from None
            except Exception as exc:
                kind, status = _failure_kind(exc)
                raise ServerError(f"cannot reach an OpenAI-compatible server at {self.base_url}: {_describe(exc)}; is it running, and is --base-url right?",
                                  kind=kind, status=status) from None
            if self.model is None:
                if not models:
                    raise ConfigError("model", None, f"a model name (the server at {self.base_url} lists none)")
                self.model = models[0]
            elif models and self.model not in models:
                raise ConfigError("model", self.model, f"a model the server at {self.base_url} serves: {', '.join(models)}")
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
        start = time.perf_counter()
        calls = 0
        if self.native_n is not False:
            result, calls = await self._native(req)
            if result is not None:
                return result
        seeds = [None if req.seed is None else (req.seed + i) % (MAX_SEED + 1) for i in range(req.n)]
        parts = await _all(self._call(req, 1, s) for s in seeds)
        cands: list[Candidate] = []
        prompt_tokens: int | None = None
        billed = completion = 0
        for (resp, latency, tries), seed in zip(parts, seeds):
            calls += tries
            cands += self._parse(resp, latency, seed)
            usage = resp.get("usage") or {}
            if usage:
                prompt_tokens = usage.get("prompt_tokens")
                billed += usage.get("prompt_tokens") or 0
                completion += usage.get("completion_tokens") or 0
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
            if self.native_n is not True and req.n > 1 and _MENTIONS_N.search(_describe(exc)):
                if self.native_n is False:  # a concurrent request found out first
                    return None, 1
                log.warning("%s rejects n=%d in one request (%s): sending n=1 requests in parallel", self.base_url, req.n, _describe(exc))
                self.native_n = False
                return None, 1
            raise ConfigError("request", req.id, f"a request the server accepts ({_describe(exc)})") from None
        got = len(resp.get("choices") or [])
        if got < req.n and req.n > 1 and self.native_n is None:
            log.warning("%s returned %d of n=%d choices: sending n=1 requests in parallel", self.base_url, got, req.n)
            self.native_n = False
            return None, calls
        if req.n > 1:
            self.native_n = True
        cands = self._parse(resp, latency, req.seed)
        usage = resp.get("usage") or {}
        return SampleResult(
            request=req, candidates=cands, prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens") or sum(c.tokens or 0 for c in cands),
            latency=latency, calls=calls,
        ), calls

    async def _call(self, req: SampleRequest, n: int, seed: int | None) -> tuple[Any, float, int]:
        """One HTTP call with retries: (response, seconds of the successful attempt, attempts)."""
        import openai

        client = self._ensure_client()
        assert self._gate is not None
        attempt = 0
        while True:
            attempt += 1
            self.calls += 1
            async with self._gate:
                start = time.perf_counter()
                try:
                    resp = await self._send(client, req, n, seed)
                    return resp, time.perf_counter() - start, attempt
                except openai.BadRequestError as exc:
                    if self.logprobs_ok and self.config.logprobs and "logprob" in str(exc).lower():
                        log.warning("%s rejects logprobs (%s): sampling without them", self.base_url, _describe(exc))
                        self.logprobs_ok = False
                        continue
                    raise
                except Exception as exc:
                    if not _retryable(exc):
                        if isinstance(exc, openai.APIStatusError):
                            raise ServerError(f"{self.base_url} refused request {req.id!r}: {_describe(exc)}",
                                              kind="refused", status=exc.status_code) from None
                        raise
                    if attempt > self.max_retries:
                        kind, status = _failure_kind(exc)
                        raise ServerError(
                            f"{self.base_url}: request {req.id!r} failed {attempt} times, last: {_describe(exc)}; "
                            + self.resume_hint, kind=kind, status=status,
                        ) from None
                    wait = _retry_after(exc)
                    if wait is None:
                        wait = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                    log.info("%s: %s, retry %d/%d in %.2fs", req.id, _describe(exc), attempt, self.max_retries, wait)
            await asyncio.sleep(min(wait, self.max_backoff))

    def payload(self, req: SampleRequest, n: int, seed: int | None) -> tuple[str, dict[str, Any]]:
        """(endpoint path, JSON body) of one call: the config's fields, then the request's overrides."""
        c = self.config
        body: dict[str, Any] = dict(temperature=c.temperature, top_p=c.top_p, max_tokens=c.max_tokens)
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

    def _parse(self, resp: Any, latency: float, seed: int | None) -> list[Candidate]:
        choices = resp.get("choices") or []
        usage = resp.get("usage") or {}
        n1 = len(choices) == 1 and bool(usage)
        cands = []
        for choice in sorted(choices, key=lambda ch: ch.get("index", 0)):
            lp = choice.get("logprobs") or None
            if "message" in choice:  # chat completion
                text = (choice.get("message") or {}).get("content") or ""
                lps = [t.get("logprob") for t in (lp.get("content") or [])] if lp else None
            else:
                text = choice.get("text") or ""
                lps = list(lp["token_logprobs"]) if lp and lp.get("token_logprobs") is not None else None
            if lps is not None:
                tokens: int | None = len(lps)
                logprob: float | None = float(sum(x for x in lps if x is not None))
            else:
                tokens = usage.get("completion_tokens") if n1 else None
                logprob = None
            cands.append(make_candidate(text, tokens=tokens, logprob=logprob, finish=choice.get("finish_reason"), latency=latency, seed=seed))
        return cands
