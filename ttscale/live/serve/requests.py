"""The request bodies the proxy accepts, as pydantic models FastAPI validates.

Fields ttscale reads are typed (a wrong one is a 400 naming it); every other field OpenAI's API
allows (``temperature``, ``max_tokens``, ``stop``, ...) is kept as sent and goes upstream as it is,
except the few the proxy answers itself (:data:`NOT_FORWARDED`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr

from ttscale.errors import ConfigError
from ttscale.limits import find_value
from ttscale.live.serve.options import RequestOptions
from ttscale.validation import Bool, Int, is_int, is_number

__all__ = ["MAX_TOKENS", "NOT_FORWARDED", "ChatMessage", "ChatRequest", "CompletionRequest", "StreamOptions", "check_forwarded"]

NOT_FORWARDED = frozenset({"logprobs", "top_logprobs", "echo", "best_of"})
"""Client fields neither typed here nor sent upstream: the answer is one chosen candidate, so
per-token log-probs, echo and best_of of the upstream's samples mean nothing to the client."""

MAX_CHOICES = 16
"""Most answers (``n``) one request may get back."""


MAX_TOKENS = 10_000_000
"""Most tokens a request may ask per sample (``max_tokens``): above any model's context."""


def _between(lo: float, hi: float, *, integer: bool = False, low_open: bool = False) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        return (is_int(v) if integer else is_number(v)) and (lo < v if low_open else lo <= v) and v <= hi
    return ok


_SAMPLING: dict[str, tuple[Callable[[Any], bool], str]] = {
    "temperature": (_between(0, 1e6), "a finite number >= 0"),
    "top_p": (_between(0, 1, low_open=True), "a number in (0, 1]"),
    "min_p": (_between(0, 1), "a number in [0, 1]"),
    "top_k": (_between(-1, 1 << 31, integer=True), "an integer >= -1 (-1 or 0: all tokens)"),
    "max_tokens": (_between(1, MAX_TOKENS, integer=True), f"an integer from 1 to {MAX_TOKENS:,}"),
    "max_completion_tokens": (_between(1, MAX_TOKENS, integer=True), f"an integer from 1 to {MAX_TOKENS:,}"),
    "presence_penalty": (_between(-2, 2), "a number in [-2, 2]"),
    "frequency_penalty": (_between(-2, 2), "a number in [-2, 2]"),
    "repetition_penalty": (_between(0, 1e6, low_open=True), "a finite number > 0"),
}
"""Sampling fields the proxy forwards, checked first: a bad one is the client's 400 naming it, not
an upstream failure (a NaN temperature cannot even be encoded as JSON)."""


def check_forwarded(fields: dict[str, Any], messages: Any = None) -> dict[str, Any]:
    """``fields`` (what goes upstream as it is) when the sampling fields are in range and nothing in
    them or in ``messages`` is NaN or infinite; else :class:`ConfigError` naming the field."""
    for name, (ok, expected) in _SAMPLING.items():
        value = fields.get(name)
        if value is not None and not ok(value):
            raise ConfigError(name, value, expected)
    path, value = find_value({**fields, "messages": messages}, lambda v: isinstance(v, float) and not math.isfinite(v))
    if value is not None:
        raise ConfigError(path or "body", value, "a finite number (JSON has no NaN or Infinity)")
    return fields


class _Open(BaseModel):
    """A body part where OpenAI allows more fields than ttscale reads (kept, unvalidated)."""

    model_config = ConfigDict(extra="allow", frozen=True)


class ChatMessage(_Open):
    """One chat message; sent upstream as it is (content parts, names, tool calls...)."""

    role: StrictStr


class StreamOptions(_Open):
    include_usage: Bool | None = None
    """Send a last chunk with the usage of the whole request."""


def _prompts(value: Any) -> Any:
    """A prompt string is a list of one (the response then has one choice per prompt)."""
    return [value] if isinstance(value, str) else value


class _Completion(_Open):
    model: StrictStr = Field(min_length=1)
    """The upstream model, or ``ttscale/<policy>[@<n>[,adaptive]]/<model>``."""
    n: Int | None = Field(1, ge=1, le=MAX_CHOICES)
    """Answers returned: the policy's, then the next by votes (distinct answers, best first)."""
    seed: Int | None = Field(None, ge=0, le=2**31 - 1)
    """Seed of the first upstream request (the same seeded request draws the same samples)."""
    stream: Bool | None = False
    """Send the chosen answer as server-sent events (once it is chosen)."""
    stream_options: StreamOptions | None = None
    ttscale: RequestOptions | None = None
    """Policy and budget of this request (see :mod:`ttscale.live.serve.options`)."""

    @property
    def forwarded(self) -> dict[str, Any]:
        """The fields sent upstream as they are (everything not typed here)."""
        return {k: v for k, v in (self.model_extra or {}).items() if k not in NOT_FORWARDED}

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options is not None and self.stream_options.include_usage)


class ChatRequest(_Completion):
    """The body of ``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)


class CompletionRequest(_Completion):
    """The body of ``POST /v1/completions``."""

    prompt: Annotated[list[StrictStr], BeforeValidator(_prompts), Field(min_length=1)]
    """A prompt, or several (each gets its own samples and answers)."""
