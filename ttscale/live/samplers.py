"""The samplers live solving runs on: an OpenAI-compatible server, an in-process engine, or any sampler.

:func:`http_sampler` is the one place the API builds its OpenAI-compatible sampler and
:func:`proxy_sampler` the proxy's (which forwards each client request as sent);
:func:`build_sampler` picks the backend of :class:`ttscale.live.api.TTScale`.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Mapping
from typing import Any

from ttscale.errors import ConfigError
from ttscale.records.models import Sample
from ttscale.sampling.backends.openai import _MENTIONS_N, Failure, OpenAISampler, ServerError
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


class UpstreamRefused(ServerError):
    """The upstream refused a request with a 4xx: its own status and error body, passed on as
    they are (the client sees the upstream's words, not ours)."""

    def __init__(self, status: int, error: Mapping[str, Any]) -> None:
        message = str(error.get("message") or f"HTTP {status}")
        super().__init__(message, kind=Failure.REFUSED, status=status)
        self.error = {"message": message, "type": error.get("type"), "param": error.get("param"), "code": error.get("code")}


def _error_body(resp: Any) -> dict[str, Any]:
    """The ``error`` object of an error response (OpenAI's shape), else its text as the message."""
    try:
        body = json.loads(resp.content)
    except ValueError:
        return {"message": resp.text[:500] or f"HTTP {resp.status_code}"}
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

    def payload(self, req: SampleRequest, n: int, seed: int | None) -> tuple[str, dict[str, Any]]:
        body = dict(req.overrides or {})
        prompt = body.pop("prompt", req.problem)
        body["n"] = n
        body.setdefault("model", self.model)
        if seed is not None:
            body["seed"] = seed
        if req.messages is not None:
            body["messages"] = list(req.messages)
            return "/chat/completions", body
        body["prompt"] = prompt
        return "/completions", body

    async def _send(self, client: Any, req: SampleRequest, n: int, seed: int | None) -> Any:
        """One call on the openai client's own HTTP connections (its attempt counting included),
        without the SDK's request building: about 0.4 ms of CPU less per call, the larger part
        of what a proxied request costs. Retries as the SDK would: 408, 409, 429, 5xx, timeouts
        and dropped connections, backing off from 0.5 s (or the server's ``Retry-After``)."""
        import httpx2
        import openai

        path, body = self.payload(req, n, seed)
        data = json.dumps(body).encode()
        headers = {"content-type": "application/json", "accept": "application/json",
                   "authorization": f"Bearer {self.api_key}"}
        http = client._client
        for attempt in range(self.max_retries + 1):
            wait = min(8.0, 0.5 * 2**attempt) * random.uniform(0.75, 1.0)
            try:
                resp = await http.post(self.base_url + path, content=data, headers=headers, timeout=self.timeout)
            except httpx2.TimeoutException:
                failure, kind, status = "timed out", Failure.TIMEOUT, None
            except httpx2.TransportError as exc:
                failure, kind, status = f"connection failed ({type(exc).__name__})", Failure.UNREACHABLE, None
            else:
                status = resp.status_code
                if status < 300:
                    try:
                        return json.loads(resp.content)
                    except ValueError:
                        raise self._malformed(req, "(body)", "a JSON completion object", resp.text[:60]) from None
                error = _error_body(resp)
                if not _retried(status):
                    # A server without ``n`` says so in a 400 naming it: the base class falls back
                    # to n=1 requests (until ``n`` is known to work); every other refusal is the
                    # client's, passed on in the upstream's words.
                    if n > 1 and self.native_n is not True and status == 400 and _MENTIONS_N.search(str(error.get("message"))):
                        raise openai.BadRequestError(f"HTTP 400: {error.get('message')}", response=resp, body=error)
                    raise UpstreamRefused(status, error)
                failure, kind = f"HTTP {status}: {str(error.get('message'))[:200]}", Failure.STATUS
                after = resp.headers.get("retry-after", "")
                if after.replace(".", "", 1).isdigit() and float(after) <= 60:
                    wait = float(after)
            if attempt < self.max_retries:
                await asyncio.sleep(wait)
        attempts = self.max_retries + 1
        raise ServerError(f"{failure}, {attempts} attempt{'s' * (attempts != 1)}", kind=kind, status=status)

    def _parse(self, resp: Any, latency: float, seed: int | None, req: SampleRequest) -> list[Sample]:
        cands = super()._parse(resp, latency, seed, req)
        choices = sorted(resp["choices"], key=lambda c: c.get("index", 0) if is_int(c.get("index", 0)) else 0)
        return [c.model_copy(update={"upstream_logprobs": ch.get("logprobs")}) for c, ch in zip(cands, choices)]


def proxy_sampler(base_url: str, *, api_key: str | None, concurrency: int, timeout: float,
                  max_retries: int) -> OpenAISampler:
    """The proxy's sampler: forwards each client request upstream as sent (see ``ProxySampler``)."""
    return ProxySampler(None, SamplingConfig(logprobs=False), base_url=base_url, api_key=api_key,
                        concurrency=concurrency, timeout=timeout, max_retries=max_retries, resume_hint=NO_ANSWER_HINT)
