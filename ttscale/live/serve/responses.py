"""OpenAI-style responses of the proxy: one builder for chat and text completions, whole or streamed.

A response carries exactly ``count`` (the client's ``n``) choices per solved prompt: first one
candidate per distinct answer, best first (the policy's answers, then the others by votes), then
further candidates of the winning answer, then of the others by votes, then those without an
answer; fewer samples than ``n`` (a greedy request draws one) repeat from the first. A choice's
``logprobs`` is its candidate's, as the upstream sent them, when the client asked for them (else
null). ``usage`` counts every upstream token and the ``ttscale`` field the vote, samples and cost. Streamed, each choice is sent as the chunks an
OpenAI server would send for it (the text in one piece: it is known once the answer is chosen),
the ``ttscale`` field rides on the last choice chunk, and a usage chunk follows when asked for.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from fastapi.responses import JSONResponse, Response, StreamingResponse

from ttscale.live.solution import Solution
from ttscale.records.models import Sample

__all__ = ["Endpoint", "completion_response"]


@dataclass(frozen=True)
class _Shape:
    object: str
    chunk_object: str
    id_prefix: str
    chat: bool


class Endpoint(Enum):
    """The two completion endpoints: what their objects are called and how a choice is written."""

    CHAT = _Shape("chat.completion", "chat.completion.chunk", "chatcmpl", chat=True)
    TEXT = _Shape("text_completion", "text_completion", "cmpl", chat=False)

    def content(self, text: str) -> dict[str, Any]:
        """A whole choice's text."""
        return {"message": {"role": "assistant", "content": text}} if self.value.chat else {"text": text}

    def deltas(self, text: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """A streamed choice's text chunks, and its closing chunk (which carries the finish reason)."""
        if self.value.chat:
            return [{"delta": {"role": "assistant", "content": ""}}, {"delta": {"content": text}}], {"delta": {}}
        return [{"text": text}], {"text": ""}


def picks(sol: Solution, count: int) -> list[Sample | None]:
    """The candidates of the ``count`` choices (see the module docstring); [None] * count when
    nothing was drawn."""
    if not sol.candidates:
        return [None] * count
    order = list(sol.answers) + [a for a in sol.vote if a not in sol.answers]
    first = [i for i in (sol.representative(a) for a in order) if i is not None]
    rank = {a: r for r, a in enumerate(order)}
    answers = sol.candidate_answers or [None] * len(sol.candidates)
    taken = set(first)
    rest = sorted((i for i in range(len(sol.candidates)) if i not in taken),
                  key=lambda i: (rank.get(answers[i], len(rank)), i))  # type: ignore[arg-type]
    indices = first + rest
    return [sol.candidates[indices[k % len(indices)]] for k in range(count)]


def usage(sols: list[Solution]) -> dict[str, int]:
    """Upstream tokens of every sample of every prompt."""
    p = sum(s.prompt_tokens for s in sols)
    c = sum(s.completion_tokens for s in sols)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def ttscale_field(sols: list[Solution], candidates: bool) -> dict[str, Any]:
    """The ``ttscale`` field: one solution's summary, or ``{"prompts": [...]}`` for several prompts."""
    if len(sols) == 1:
        return sols[0].to_dict(candidates=candidates)
    return {"prompts": [s.to_dict(candidates=candidates) for s in sols]}


def completion_response(endpoint: Endpoint, sols: list[Solution], *, model: str, count: int, stream: bool,
                        include_usage: bool, candidates: bool, logprobs: bool = False) -> Response:
    """The response to a completion request whose prompts were solved into ``sols``."""
    # the id is unique, not secret: random bits, not uuid4's urandom call
    head = {"id": f"{endpoint.value.id_prefix}-{random.getrandbits(128):032x}", "object": endpoint.value.object,
            "created": int(time.time()), "model": model}
    extra = ttscale_field(sols, candidates)
    choices = []
    for sol in sols:
        for cand in picks(sol, count):
            lp = (cand.model_extra or {}).get("upstream_logprobs") if cand is not None and logprobs else None
            choices.append((cand.text if cand else "", (cand.finish if cand else None) or "stop", lp))
    if not stream:
        body = [{"index": i, **endpoint.content(text), "finish_reason": finish, "logprobs": lp}
                for i, (text, finish, lp) in enumerate(choices)]
        return JSONResponse({**head, "choices": body, "usage": usage(sols), "ttscale": extra})
    head["object"] = endpoint.value.chunk_object
    chunks = []
    for i, (text, finish, lp) in enumerate(choices):
        parts, closing = endpoint.deltas(text)
        for k, (part, reason) in enumerate([(p, None) for p in parts] + [(closing, finish)]):
            # the log-probs ride on the chunk with the text (the last of ``parts``)
            chunk_lp = lp if k == len(parts) - 1 else None
            chunks.append({**head, "choices": [{"index": i, **part, "logprobs": chunk_lp, "finish_reason": reason}]})
    chunks[-1]["ttscale"] = extra
    if include_usage:
        chunks.append({**head, "choices": [], "usage": usage(sols)})
    return _sse(chunks)


def _sse(chunks: list[dict[str, Any]]) -> StreamingResponse:
    async def events() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
