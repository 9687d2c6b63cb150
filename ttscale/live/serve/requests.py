"""The request bodies the proxy accepts, as pydantic models FastAPI validates.

Fields ttscale reads are typed (a wrong one is a 400 naming it); every other field OpenAI's API
allows (``temperature``, ``max_tokens``, ``stop``, ...) is kept as sent and goes upstream as it is,
except the few the proxy answers itself (:data:`NOT_FORWARDED`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr

from ttscale.live.serve.options import RequestOptions
from ttscale.validation import Bool, Int

__all__ = ["NOT_FORWARDED", "ChatMessage", "ChatRequest", "CompletionRequest", "StreamOptions"]

NOT_FORWARDED = frozenset({"logprobs", "top_logprobs", "echo", "best_of"})
"""Client fields neither typed here nor sent upstream: the answer is one chosen candidate, so
per-token log-probs, echo and best_of of the upstream's samples mean nothing to the client."""

MAX_CHOICES = 16
"""Most answers (``n``) one request may get back."""


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
