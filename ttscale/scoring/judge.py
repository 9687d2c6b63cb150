"""An LLM judge: each candidate graded by a model through any sampler backend, parsed into [0, 1].

:class:`JudgeScorer` sends one request per candidate (``n`` replies each; the score is their mean);
:func:`parse_score` reads a reply. Unparsable replies raise :class:`JudgeParseError`
(``on_unparsed="error"``) or get the finite ``fallback`` score (``on_unparsed="fallback"``, counted
in ``scorer.unparsed``); never NaN.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field, field_validator

from ttscale.errors import ConfigError, TTScaleError
from ttscale.scoring.base import (
    ScorerConfig,
    check_name,
    check_template,
    finite,
    hash_text,
    unflatten,
)
from ttscale.validation import Float, Int

DEFAULT_JUDGE_TEMPLATE = (
    "Problem:\n{problem}\n\nProposed solution:\n{candidate}\n\n"
    "Is the proposed solution correct? Grade it from 0 to 10 and end with a line 'Score: N/10'.\n"
)


class JudgeParseError(TTScaleError, ValueError):
    """A judge reply held no score."""

    def __init__(self, text: str, where: str = "", *, problem: int | None = None, sample: int | None = None) -> None:
        self.text = text
        self.problem, self.sample = problem, sample
        """Position in the scored batch (problem index, candidate index), when known."""
        short = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(f"{where}judge reply has no score ('Score: N/M', a number, correct/incorrect): {short!r}")


_FRACTION = re.compile(r"(-?\d+(?:\.\d+)?)\s*(?:/|out of)\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_LABELLED = re.compile(r"(?:score|grade|rating)\s*[:=]?\s*(?:is\s*)?\**\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_NEGATIVE = re.compile(r"\b(incorrect|not correct|wrong|false|no)\b", re.IGNORECASE)
_POSITIVE = re.compile(r"\b(correct|right|true|yes)\b", re.IGNORECASE)


def parse_score(text: str, scale: float = 10.0) -> float:
    """A judge reply as a score in [0, 1].

    In order: the last ``X/Y`` or ``X out of Y`` (X/Y); the last ``Score: X`` (X/scale); a reply that
    is a bare number (X/scale); a verdict word (``incorrect``/``wrong``/``false``/``no`` → 0,
    ``correct``/``right``/``true``/``yes`` → 1; the first verdict word wins). Results are clipped to
    [0, 1]. Raises :class:`JudgeParseError` when none matches.
    """
    if not isinstance(scale, (int, float)) or not scale > 0:
        raise ConfigError("scale", scale, "a number > 0")
    t = text.strip()
    frac = _FRACTION.findall(t)
    value: float | None = None
    if frac:
        num, den = frac[-1]
        if float(den) > 0:
            value = float(num) / float(den)
    if value is None:
        lab = _LABELLED.findall(t)
        if lab:
            value = float(lab[-1]) / scale
    if value is None and _NUMBER.fullmatch(t.rstrip(".")):
        value = float(t.rstrip(".")) / scale
    if value is None:
        neg, pos = _NEGATIVE.search(t), _POSITIVE.search(t)
        if neg and (not pos or neg.start() <= pos.start()):
            value = 0.0
        elif pos:
            value = 1.0
    if value is None or not math.isfinite(value):
        raise JudgeParseError(text)
    return min(1.0, max(0.0, value))


class OnUnparsed(str, enum.Enum):
    """What a judge reply without a score becomes."""

    ERROR = "error"
    """Raise JudgeParseError naming the bank, problem and sample."""
    FALLBACK = "fallback"
    """Score it ``fallback`` (counted in ``scorer.unparsed``)."""


class JudgeConfig(ScorerConfig):
    template: str = DEFAULT_JUDGE_TEMPLATE
    """Judge prompt with {problem} and {candidate}; the sampler's own template then wraps it."""
    n: Annotated[Int, Field(ge=1)] = 1
    """Judge replies per candidate; the score is their mean."""
    scale: Annotated[Float, Field(gt=0)] = 10.0
    """Denominator for bare and 'Score: X' numbers."""
    on_unparsed: OnUnparsed = OnUnparsed.ERROR
    """``error``: raise JudgeParseError; ``fallback``: use ``fallback`` (counted in ``unparsed``)."""
    fallback: Float = 0.0
    """Score of an unparsable reply with ``on_unparsed="fallback"``."""

    @field_validator("template", mode="before")
    @classmethod
    def _template(cls, value: Any) -> str:
        return check_template(value, ("problem", "candidate"))


class JudgeScorer:
    """An LLM judge through any sampler backend (one request per candidate, ``n`` replies each)."""

    def __init__(self, sampler: Any, config: JudgeConfig | None = None, *, name: str = "judge",
                 parse: Callable[[str], float] | None = None, **kwargs: Any) -> None:
        self.sampler = sampler
        self.config = config or JudgeConfig(**kwargs)
        self.name = name
        check_name(name)
        self.parse = parse or (lambda text: parse_score(text, self.config.scale))
        self.unparsed = 0
        self.replies: list[str] = []
        """The last batch's replies (for inspection)."""

    def score(self, problems: list[str], candidates: list[list[str]]) -> list[list[float]]:
        from ttscale.sampling.sampler import SampleRequest, request_seed

        c = self.config
        base = getattr(getattr(self.sampler, "config", None), "seed", None)
        reqs = []
        for i, (p, cs) in enumerate(zip(problems, candidates)):
            for j, t in enumerate(cs):
                prompt = c.template.format(problem=p, candidate=t)
                key = f"judge:{hash_text(prompt)}"
                reqs.append(SampleRequest(id=key, problem=prompt, n=c.n, seed=request_seed(base, key, 0)))
        bs = max(1, int(getattr(self.sampler, "batch_size", 16) or 16))
        results = []
        for first in range(0, len(reqs), bs):
            results += self.sampler.generate(reqs[first:first + bs])
        self.replies = []
        values = []
        where = [(i, j) for i, cs in enumerate(candidates) for j in range(len(cs))]
        for k, res in enumerate(results):
            scores = []
            for cand in res.candidates:
                self.replies.append(cand.text)
                try:
                    scores.append(float(self.parse(cand.text)))
                except JudgeParseError as exc:
                    if c.on_unparsed is OnUnparsed.ERROR:
                        i, j = where[k]
                        raise JudgeParseError(cand.text, f"problem {i}, candidate {j} of this batch: ", problem=i, sample=j) from exc
                    self.unparsed += 1
                    scores.append(float(c.fallback))
            values.append(sum(scores) / len(scores) if scores else float(c.fallback))
        return finite(self.name, unflatten(values, candidates))

    def close(self) -> None:
        self.sampler.close()
