"""The samplers live solving runs on: an OpenAI-compatible server, an in-process engine, or any sampler.

:func:`http_sampler` is the one place the API builds its OpenAI-compatible sampler and
:func:`proxy_sampler` the proxy's (which forwards each client request as sent);
:func:`build_sampler` picks the backend of :class:`ttscale.live.api.TTScale`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import random
from collections.abc import Mapping
from typing import Any

from ttscale.errors import ConfigError
from ttscale.records.models import Sample
from ttscale.sampling.backends.openai import (
    _ATTEMPTS,
    _MENTIONS_N,
    Failure,
    OpenAISampler,
    ServerError,
    sent_max_tokens,
)
from ttscale.sampling.sampler import Sampler, SampleRequest, SamplingConfig
from ttscale.validation import is_int

__all__ = ["UpstreamRefused", "build_sampler", "http_sampler", "proxy_sampler"]

NO_ANSWER_HINT = "no answer was chosen for it"
"""How a live caller's give-up error ends (a bank run says how to resume instead)."""


def http_sampler(base_url: str, model: str | None, config: SamplingConfig, *, api_key: str | None, concurrency: int,
                 timeout: float, max_retries: int) -> OpenAISampler:
    """A sampler on an OpenAI-compatible server for live solving (``model`` None: the server's first)."""
    return OpenAISampler(model, config, base_url=base_url, api_key=api_key, concurrency=concurrency, timeout=timeout,
                         max_retries=max_retries, resume_hint=NO_ANSWER_HINT)


def build_sampler(*, base_url: str | None, model: str | None, engine: Any, backend: str | None, config: SamplingConfig,
                  api_key: str | None, concurrency: int, timeout: float, max_retries: int,
                  engine_args: Mapping[str, Any] | None) -> Sampler:
    """The sampler of exactly one way in: ``base_url`` (HTTP), ``engine`` (a ``vllm.LLM``) or
    ``backend`` (``"vllm"`` or ``"hf"``, an engine built from ``model``)."""
    if base_url is not None:
        return http_sampler(base_url, model, config, api_key=api_key, concurrency=concurrency, timeout=timeout,
                            max_retries=max_retries)
    if engine is not None:
        from ttscale.sampling.backends.vllm import VLLMSampler

        return VLLMSampler(model, config, llm=engine)
    from ttscale.sampling.backends.registry import make_sampler, resolve_model

    if backend not in ("vllm", "hf"):
        raise ConfigError("backend", backend, "'vllm' or 'hf' (an in-process engine built from model=...)")
    options: dict[str, Any] = {"engine_args": dict(engine_args or {})} if backend == "vllm" else {}
    return make_sampler(backend, resolve_model(model), config, **options)


UNBOUNDED_TOKENS = 10_000_000
"""The token bound of a streamed trace whose request sets no ``max_tokens`` (above any context)."""


class UpstreamRefused(ServerError):
    """The upstream refused a request with a 4xx: its own status and error body, passed on as
    they are (the client sees the upstream's words, not ours)."""

    def __init__(self, status: int, error: Mapping[str, Any]) -> None:
        message = str(error.get("message") or f"HTTP {status}")
        super().__init__(message, kind=Failure.REFUSED, status=status)
        self.error = {"message": message, "type": error.get("type"), "param": error.get("param"), "code": error.get("code")}


def _error_body(status: int, content: bytes) -> dict[str, Any]:
    """The ``error`` object of an error response (OpenAI's shape), else its text as the message."""
    try:
        body = json.loads(content)
    except ValueError:
        return {"message": content[:500].decode(errors="replace") or f"HTTP {status}"}
    error = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), dict) else body
    if isinstance(error, dict) and "message" not in error and isinstance(body, dict) and "detail" in body:
        error = {"message": str(body["detail"])}  # FastAPI's own errors
    return error if isinstance(error, dict) else {"message": str(error)}


def _retried(status: int) -> bool:
    """Whether the openai client retries this status (then it is an upstream failure, not a refusal)."""
    return status >= 500 or status in (408, 409, 429)


class ProxySampler(OpenAISampler):
    """An :class:`OpenAISampler` that forwards a client's request: only the fields the client
    sent (``overrides``) go upstream, so the upstream's own defaults (temperature,
    ``max_tokens``) apply; the prompt (text or token ids, ``overrides["prompt"]``) and
    messages go as they are, untemplated; a 4xx comes back as :class:`UpstreamRefused`; each
    candidate keeps its choice's ``logprobs`` object (extra field ``upstream_logprobs``)."""

    async def check(self) -> None:
        self.client()  # every request names its model: nothing to resolve, no listing call

    def payload(self, req: SampleRequest, n: int, seed: int | None, *, stream: bool = False) -> tuple[str, dict[str, Any]]:
        body = dict(req.overrides or {})
        prompt = body.pop("prompt", req.problem)
        body["n"] = n
        body.setdefault("model", self.model)
        if seed is not None:
            body["seed"] = seed
        es = self.config.early_stop
        if stream and es is not None:  # an early-stopped trace: streamed with its top-k log-probs
            body.update(stream=True, stream_options={"include_usage": True})
            if req.messages is not None:
                body.update(logprobs=True, top_logprobs=es.top_k)
            else:
                body["logprobs"] = es.top_k
        if req.messages is not None:
            body["messages"] = list(req.messages)
            return "/chat/completions", body
        body["prompt"] = prompt
        return "/completions", body

    def token_limit(self, req: SampleRequest) -> int:
        """The client's ``max_tokens``; without one the upstream's default applies, which only the
        upstream knows (the request's timeout bounds a stream that does not end)."""
        return sent_max_tokens(req.overrides) or UNBOUNDED_TOKENS

    use_aiohttp: bool = importlib.util.find_spec("aiohttp") is not None
    """Send upstream with aiohttp when it is installed (its C parser costs about 0.35 ms of CPU
    less per call than httpx's pure-Python one), else on the openai client's httpx connections."""

    _session: Any = None
    _session_loop: asyncio.AbstractEventLoop | None = None

    async def _post(self, client: Any, url: str, data: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
        """(status, Retry-After, body) of one POST, without redirects; TimeoutError when it timed
        out, ConnectionError (its message the failure's name) when the connection failed."""
        if self.use_aiohttp:
            import aiohttp

            loop = asyncio.get_running_loop()
            if self._session is None or self._session_loop is not loop:
                self._session_loop = loop
                self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.concurrency))
            attempts = _ATTEMPTS.get()
            if attempts is not None:  # what the httpx client's event hook counts on the other path
                attempts[0] += 1
                self.calls += 1
            try:
                async with self._session.post(url, data=data, headers=headers, allow_redirects=False,
                                              timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp:
                    return resp.status, resp.headers.get("retry-after", ""), await resp.read()
            except TimeoutError:
                raise
            except aiohttp.ClientError as exc:
                raise ConnectionError(type(exc).__name__) from None
        import httpx2

        try:
            resp = await client._client.post(url, content=data, headers=headers, timeout=self.timeout)
        except httpx2.TimeoutException:
            raise TimeoutError from None
        except httpx2.TransportError as exc:
            raise ConnectionError(type(exc).__name__) from None
        return resp.status_code, resp.headers.get("retry-after", ""), resp.content

    async def aclose(self) -> None:
        if self._session is not None and self._session_loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = self._session_loop = None
        await super().aclose()

    async def _send(self, client: Any, req: SampleRequest, n: int, seed: int | None) -> Any:
        """One call without the SDK's request building (about 0.4 ms of CPU less per call, the
        larger part of what a proxied request costs). Retries as the SDK would: 408, 409, 429,
        5xx, timeouts and dropped connections, backing off from 0.5 s (or the server's
        ``Retry-After``); then a :class:`ServerError` saying what failed."""
        import httpx2
        import openai

        path, body = self.payload(req, n, seed)
        url = self.base_url + path
        data = json.dumps(body).encode()
        headers = {"content-type": "application/json", "accept": "application/json",
                   "authorization": f"Bearer {self.api_key}"}
        for attempt in range(self.max_retries + 1):
            wait = min(8.0, 0.5 * 2**attempt) * random.uniform(0.75, 1.0)
            try:
                status, after, content = await self._post(client, url, data, headers)
            except TimeoutError:
                failure, kind, status = "timed out", Failure.TIMEOUT, None
            except ConnectionError as exc:
                failure, kind, status = f"connection failed ({exc})", Failure.UNREACHABLE, None
            else:
                if status < 300:
                    try:
                        return json.loads(content)
                    except ValueError:
                        raise self._malformed(req, "(body)", "a JSON completion object", content[:60].decode(errors="replace")) from None
                if status < 400:  # a redirect, not followed (it would re-send the prompt elsewhere); not retried either
                    raise ServerError(f"HTTP {status}: the upstream answered with a redirect (not followed)", kind=Failure.REFUSED, status=status)
                error = _error_body(status, content)
                if not _retried(status):
                    # A server without ``n`` says so in a 400 naming it: the base class falls back
                    # to n=1 requests (until ``n`` is known to work); every other refusal is the
                    # client's, passed on in the upstream's words.
                    if n > 1 and self.native_n is not True and status == 400 and _MENTIONS_N.search(str(error.get("message"))):
                        resp = httpx2.Response(status, content=content, request=httpx2.Request("POST", url))
                        raise openai.BadRequestError(f"HTTP 400: {error.get('message')}", response=resp, body=error)
                    raise UpstreamRefused(status, error)
                failure, kind = f"HTTP {status}: {str(error.get('message'))[:200]}", Failure.STATUS
                if after.replace(".", "", 1).isdigit() and float(after) <= 60:
                    wait = float(after)
            if attempt < self.max_retries:
                await asyncio.sleep(wait)
        attempts = self.max_retries + 1
        raise ServerError(f"{failure}, {attempts} attempt{'s' * (attempts != 1)}", kind=kind, status=status)

    def _parse(self, resp: Any, latency: float, seed: int | None, req: SampleRequest) -> list[Sample]:
        cands = super()._parse(resp, latency, seed, req)
        choices = resp["choices"]
        if not any(ch.get("logprobs") is not None for ch in choices):
            return cands  # the common case: nothing to keep
        choices = sorted(choices, key=lambda c: c.get("index", 0) if is_int(c.get("index", 0)) else 0)
        return [c.model_copy(update={"upstream_logprobs": ch.get("logprobs")}) for c, ch in zip(cands, choices)]


def proxy_sampler(base_url: str, *, api_key: str | None, concurrency: int, timeout: float,
                  max_retries: int) -> OpenAISampler:
    """The proxy's sampler: forwards each client request upstream as sent (see ``ProxySampler``)."""
    return ProxySampler(None, SamplingConfig(logprobs=False), base_url=base_url, api_key=api_key,
                        concurrency=concurrency, timeout=timeout, max_retries=max_retries, resume_hint=NO_ANSWER_HINT)
