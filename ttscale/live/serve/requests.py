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

__all__ = ["MAX_TOKENS", "NOT_FORWARDED", "PROMPT_EXPECTED", "Prompt", "ChatMessage", "ChatRequest", "CompletionRequest", "StreamOptions", "check_forwarded"]

NOT_FORWARDED = frozenset({"echo", "best_of"})
"""Client fields neither typed here nor sent upstream: the answer is chosen among the upstream's
samples, so echo and best_of of those samples mean nothing to the client. (``logprobs`` and
``top_logprobs`` are typed: they are sent upstream and come back for the chosen candidates.)"""

MAX_LOGPROBS = 100
"""Most top log-probs per token a client may ask for (servers allow far fewer; vLLM 20)."""

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


Prompt = str | tuple[int, ...]
"""One completion prompt: text, or token ids (what lm-eval sends with ``tokenized_requests``)."""

PROMPT_EXPECTED = "a string, a non-empty list of strings, a list of token ids (integers >= 0) or a list of such lists"


def _token_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(is_int(t) and t >= 0 for t in value)


def _prompts(value: Any) -> list[Prompt]:
    """The prompts of a completion request: a string or a list of token ids is one prompt (the
    response then has ``n`` choices for it), a list of either is several; anything else is a
    ValueError (a 400 naming ``prompt``)."""
    if isinstance(value, str):
        return [value]
    if _token_ids(value):
        return [tuple(value)]
    if isinstance(value, list) and value and all(isinstance(p, str) or _token_ids(p) for p in value):
        return [p if isinstance(p, str) else tuple(p) for p in value]
    raise ValueError(PROMPT_EXPECTED)


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
    logprobs: Bool | None = None
    """Return the chosen candidates' token log-probs (the upstream's own, as it sent them)."""
    top_logprobs: Int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    """With ``logprobs``: this many top alternatives per token."""

    @property
    def wants_logprobs(self) -> bool:
        return bool(self.logprobs)


class CompletionRequest(_Completion):
    """The body of ``POST /v1/completions``."""

    prompt: Annotated[list[Any], BeforeValidator(_prompts)]
    """A prompt (text or token ids), or several (each gets its own samples and answers); token ids
    go upstream as they are and the answer is read from the text the upstream returns."""
    logprobs: Int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    """Return the chosen candidates' token log-probs with this many top alternatives per token."""

    @property
    def wants_logprobs(self) -> bool:
        return self.logprobs is not None
