"""Validated records of a bank: one problem with its sampled candidates.

The form is the one in ``../shared/DESIGN.md`` (and of the banks in ``../shared/data``); every
sample field but ``answer`` is optional and unknown fields are kept, so project banks can carry
model, sampling parameters and timings and still read external banks as they are.

:class:`Sample` is also what every sampler returns (``ttscale.sampling``): a drawn answer is the
bank sample from the start, with ``text``, ``latency`` and ``seed`` always set.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_SAMPLE_TOKENS = 10**9
"""The largest token count one sample may claim: far above any real completion, low enough that
the token sums of billions of samples fit the int64 arrays of the estimators and cost models."""


class Sample(BaseModel):
    """One sampled answer: a sample of a bank line, and what a sampler returns for a request."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, coerce_numbers_to_str=True)

    answer: str | None
    """Extracted final answer; None when none could be extracted (the sample never votes)."""
    text: str | None = None
    """Full completion text."""
    tokens: int | None = Field(default=None, ge=0, le=MAX_SAMPLE_TOKENS)
    """Generated (completion) tokens, at most ``MAX_SAMPLE_TOKENS`` (sums over a bank stay in int64)."""
    reward: float | None = None
    """Score of the default scorer (reward model); higher is better."""
    rewards: dict[str, float] | None = None
    """Scores of named scorers (``{"scorer-name": score}``), for banks scored more than once."""
    logprob: float | None = None
    """Cumulative log-probability of the generated tokens."""
    mean_logprob: float | None = None
    """Mean token log-probability (a confidence signal)."""
    finish: str | None = None
    """Why generation stopped: ``stop`` or ``length``."""
    correct: bool | None = None
    """The source's own grading, when it has one."""
    latency: float | None = Field(default=None, ge=0)
    """Seconds from request to this sample's completion."""
    seed: int | None = None
    """Sampling seed of the request that produced this sample."""
    token_confidence: str | None = None
    """Per-token confidence (``-mean`` of the top-k log-probs at each generated token) as base64 of
    little-endian float32: what ``ttscale simulate`` replays online early stop on
    (:mod:`ttscale.early_stop.trajectory`). Written by ``ttscale sample --token-confidence K``."""

    @field_validator("token_confidence")
    @classmethod
    def _token_confidence(cls, value: str | None) -> str | None:
        if value is not None:
            from ttscale.records.confidences import decode_confidences

            decode_confidences(value)  # ValueError: the bank reader names line and field
        return value

    def confidence(self) -> float | None:
        """Mean token log-probability, derived from ``logprob / tokens`` when not stored."""
        if self.mean_logprob is not None:
            return self.mean_logprob
        if self.logprob is not None and self.tokens:
            return self.logprob / self.tokens
        return None

    def score(self, scorer: str | None = None) -> float | None:
        """The reward of the default scorer, or of the named one."""
        if scorer is None:
            return self.reward
        return None if self.rewards is None else self.rewards.get(scorer)


class Record(BaseModel):
    """One bank line: a problem and (some of) its samples."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, coerce_numbers_to_str=True)

    id: str = Field(min_length=1)
    """Problem id, unique within a dataset; several lines with one id are merged in order."""
    problem: str | None = None
    """Problem text (the prompt before templating)."""
    reference: str | None = None
    """Reference final answer."""
    samples: list[Sample] = Field(min_length=1)
    """Candidates; a line carries at least one."""
