"""What the live solver takes and gives: a :class:`Question` and its :class:`Solution`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ttscale.records.models import Sample

__all__ = ["Question", "Solution", "last_user_text"]


@dataclass(frozen=True)
class Question:
    """One question to solve: a prompt (or chat messages) and per-request backend fields."""

    id: str
    problem: str
    """Prompt text (templated by the sampler's config), also shown to a reward scorer."""
    messages: tuple[Mapping[str, Any], ...] | None = None
    """Chat messages sent as they are (then ``problem`` is only what a scorer sees)."""
    overrides: Mapping[str, Any] | None = None
    """Request fields sent as they are (temperature, max_tokens, stop...)."""
    seed: int | None = None
    """Seed of the question's first request, sent as it is (a proxied request with a seed draws
    what the upstream would give it directly); later rounds derive theirs from it. None: unseeded."""


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The last user message's content: what a chat question shows a reward scorer."""
    return next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")


@dataclass
class Solution:
    """What solving one question produced."""

    answer: str | None
    """The chosen answer (canonical form of its class); None when no sample had one."""
    answers: list[str]
    """Chosen answers, best first (several for multi-answer policies such as best-of-majority:answers=k)."""
    support: list[float]
    """The policy's score of each chosen answer (votes, summed weights, reward...)."""
    text: str | None
    """Full text of the candidate that represents the chosen answer."""
    vote: dict[str, int]
    """Samples per answer (canonical form), most first; samples without an answer are not in it."""
    samples: int
    """Samples drawn."""
    requests: int
    """Requests sent to the backend (each prefills its prompt once)."""
    prompt_tokens: int
    """Prompt tokens billed over all requests (a request with n counts its prompt once)."""
    completion_tokens: int
    """Generated tokens over all samples."""
    cost: float | None
    """Dollars, when prices are known."""
    policy: str
    stopped: str
    """Why drawing stopped: ``budget`` (all samples drawn), ``settled`` (adaptive stop), ``tokens``
    or ``dollars`` (a cap), ``allocator`` (the online allocator gave no more)."""
    candidates: list[Sample] = field(repr=False)
    """Every candidate drawn, in order."""
    chosen_index: int | None = None
    """Index into ``candidates`` of the representative candidate (its text is ``text``)."""
    candidate_answers: list[str | None] = field(default_factory=list, repr=False)
    """Canonical answer of each candidate's class (None: no answer), parallel to ``candidates``."""
    failed_samples: int = 0
    """Samples asked for that the backend never delivered (degraded answers; see ``errors``)."""
    errors: list[str] = field(default_factory=list)
    """Backend failures survived by degrading (some of the n failed after retries)."""
    notes: list[str] = field(default_factory=list)
    """How the answer was reached when not the usual way (e.g. answer comparison over its time budget)."""
    search: dict[str, Any] | None = None
    """Step-level search (``TTScale(search=...)``): method, scorer, parameters and cost (tokens
    generated, pruned included; prompt and scored tokens; requests; rounds); None for sampling."""
    early_stop: dict[str, Any] | None = None
    """Online early stop (DeepConf): ``stopped`` traces (drawn, counted in ``samples``, never
    voting), the ``stopped_tokens`` they generated (counted in ``completion_tokens``, which is
    every generated token), ``warmup`` traces run in full, the ``threshold`` the others were held
    to (None: not calibrated, no trace tracked) and the ``params``; None when it was off."""

    @property
    def stopped_traces(self) -> int:
        """Traces the early stop ended (0 when it was off)."""
        return int(self.early_stop["stopped"]) if self.early_stop else 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def representative(self, answer: str | None) -> int | None:
        """Index of the candidate standing for ``answer``: the chosen one for the top answer, else
        the first candidate of that answer's class."""
        if self.chosen_index is not None and answer == self.answer:
            return self.chosen_index
        return next((i for i, a in enumerate(self.candidate_answers) if a == answer), None)

    def to_dict(self, *, candidates: bool = False) -> dict[str, Any]:
        """JSON-ready summary (the proxy's ``ttscale`` field); candidates' texts only when asked."""
        out: dict[str, Any] = {
            "policy": self.policy, "answer": self.answer, "answers": self.answers, "support": self.support,
            "vote": self.vote, "samples": self.samples, "requests": self.requests,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost, "stopped": self.stopped,
        }
        if self.failed_samples or self.errors:
            out["degraded"] = {"failed_samples": self.failed_samples, "errors": self.errors}
        if self.notes:
            out["notes"] = self.notes
        if self.search is not None:
            out["search"] = self.search
        if self.early_stop is not None:
            out["early_stop"] = self.early_stop
        if candidates:
            out["candidates"] = [
                {"text": c.text, "answer": c.answer, "tokens": c.tokens, "mean_logprob": c.mean_logprob, "finish": c.finish,
                 **({} if c.reward is None else {"reward": c.reward})}
                for c in self.candidates
            ]
        return out
