"""Selector parameters: one frozen pydantic model per selector, and the enums they use.

Each model validates in one place (strict ``Int``/``Float``/``Bool`` from
:mod:`ttscale.validation`; a bad value is a ``ConfigError`` naming the parameter), documents every
field in a docstring under it, and says which per-sample fields it needs (``needs()``).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel, Field, model_validator

from ttscale.errors import ConfigError
from ttscale.selection.fields import LOGPROBS, REFERENCE, REWARDS
from ttscale.validation import Bool, Float, FrozenModel, Int, validate

__all__ = [
    "DEFAULT_MARGIN",
    "BestOfMajorityParams",
    "BestOfNParams",
    "ClassScore",
    "ConfidenceVoteParams",
    "Fallback",
    "FirstToAheadParams",
    "MajorityOfBestsParams",
    "MajorityParams",
    "OracleParams",
    "SelectorParams",
    "TopKAnswersParams",
    "Transform",
    "WeightSource",
    "WeightedMajorityParams",
    "validate_params",
]

DEFAULT_MARGIN = 2
"""First-to-ahead's default k: votes the leader must be ahead of every other answer by (the
selector, its preset and the stopping rule ``ttscale.adaptive.stopping.FirstToAhead`` share it)."""

M = TypeVar("M", bound=BaseModel)


def validate_params(
    model: type[M], params: Mapping[str, Any] | M, *, source: str | None = None, prefix: str = ""
) -> M:
    """Validate ``params`` against ``model``: :func:`ttscale.validation.validate` (kept under this name)."""
    return validate(model, params, prefix=prefix, source=source)


class WeightSource(str, Enum):
    """Which per-sample signal weighs a vote."""

    REWARD = "reward"
    """The scorer's reward (``Candidates.rewards``)."""
    CONFIDENCE = "confidence"
    """The sample's mean token log-probability (``Candidates.logprobs``)."""


class Transform(str, Enum):
    """How a score s becomes a non-negative vote weight w."""

    SOFTMAX = "softmax"
    """w = exp(s / temperature), normalised over the answered samples. For confidence at
    temperature 1 this is each sample's geometric-mean token probability (normalised)."""
    SIGMOID = "sigmoid"
    """w = 1 / (1 + exp(-s / temperature)): a reward logit read as P(correct)."""
    LINEAR = "linear"
    """w = s as is: rewards that already are non-negative weights (e.g. PRM probabilities)."""


class ClassScore(str, Enum):
    """How an answer class is scored from its samples' rewards."""

    MAX = "max"
    """The best reward among the class's samples."""
    MEAN = "mean"
    """The mean reward of the class's samples."""


class Fallback(str, Enum):
    """What best-of-majority returns when no class passes the frequency filter."""

    MAJORITY = "majority"
    """The most-voted classes (plain majority vote)."""
    REWARD = "reward"
    """The classes with the best class score, ignoring frequency."""
    ABSTAIN = "abstain"
    """Nothing: an empty selection."""


class SelectorParams(FrozenModel):
    """Base of every selector's parameters: frozen, no unknown keys, docstrings as descriptions."""

    answers: Int = Field(default=1, ge=1)
    """Number of answer classes to return, best first (k > 1 for a Pass@k submission)."""

    def needs(self) -> frozenset[str]:
        """Per-sample fields these parameters require ("rewards", "logprobs", "reference")."""
        return frozenset()


class MajorityParams(SelectorParams):
    """Parameters of ``majority``: only the number of answers."""


class TopKAnswersParams(SelectorParams):
    """Parameters of ``top-k-answers``: the number of answers is required."""

    answers: Int = Field(ge=1)
    """k: the number of most-voted answer classes to submit (required)."""


class OracleParams(SelectorParams):
    """Parameters of ``oracle``: only the number of answers."""

    def needs(self) -> frozenset[str]:
        return frozenset({REFERENCE})


class WeightedMajorityParams(SelectorParams):
    """Parameters of ``weighted-majority``."""

    source: WeightSource = WeightSource.REWARD
    """Signal that weighs each vote: 'reward' or 'confidence' (mean token log-prob)."""
    transform: Transform = Transform.SOFTMAX
    """How a score becomes a weight: 'softmax' (exp(s/T)), 'sigmoid' or 'linear' (s >= 0)."""
    temperature: Float = Field(default=1.0, gt=0, allow_inf_nan=False)
    """T in exp(s/T) or sigmoid(s/T): large T tends to plain majority, small T to best-of-n."""

    @model_validator(mode="after")
    def _linear_needs_nonnegative(self) -> WeightedMajorityParams:
        if self.source is WeightSource.CONFIDENCE and self.transform is Transform.LINEAR:
            raise ConfigError(
                "transform",
                self.transform.value,
                "'softmax' or 'sigmoid' when source='confidence' (log-probs are negative)",
            )
        return self

    def needs(self) -> frozenset[str]:
        return frozenset({REWARDS if self.source is WeightSource.REWARD else LOGPROBS})


class BestOfNParams(SelectorParams):
    """Parameters of ``best-of-n``: only the number of answers."""

    def needs(self) -> frozenset[str]:
        return frozenset({REWARDS})


class BestOfMajorityParams(SelectorParams):
    """Parameters of ``best-of-majority`` (BoM)."""

    alpha: Float = Field(default=0.1, ge=0, le=1)
    """Frequency threshold: keep classes with votes / n >= alpha (n counts every sample)."""
    score: ClassScore = ClassScore.MAX
    """How a kept class is ranked by reward: 'max' or 'mean' over its samples."""
    fallback: Fallback = Fallback.MAJORITY
    """When no class passes: 'majority' (top by votes), 'reward' (top by score) or 'abstain'."""
    fill: Bool = False
    """When fewer than `answers` classes pass, fill the rest with the best failing classes by score."""

    def needs(self) -> frozenset[str]:
        return frozenset({REWARDS})


class MajorityOfBestsParams(SelectorParams):
    """Parameters of ``majority-of-bests`` (MoB): m from ``top`` when set, else from ``fraction``."""

    top: Int | None = Field(default=None, ge=1)
    """m: number of highest-reward answered samples that vote (takes precedence over `fraction`)."""
    fraction: Float = Field(default=0.5, gt=0, le=1)
    """Share of the answered samples that vote, m = ceil(fraction * answered); used when `top` is unset."""

    def needs(self) -> frozenset[str]:
        return frozenset({REWARDS})


class ConfidenceVoteParams(SelectorParams):
    """Parameters of ``confidence-vote`` (DeepConf-style offline filtered vote)."""

    fraction: Float = Field(default=0.9, gt=0, le=1)
    """Share of the answered samples kept, most confident first (0.9 ~ DeepConf-high, 0.1 ~ -low)."""
    weighted: Bool = False
    """Weigh each kept vote by exp(mean log-prob) instead of counting it as 1."""

    def needs(self) -> frozenset[str]:
        return frozenset({LOGPROBS})


class FirstToAheadParams(SelectorParams):
    """Parameters of ``first-to-ahead``."""

    margin: Int = Field(default=DEFAULT_MARGIN, ge=1)
    """k: stop at the first class whose votes exceed every other class's by at least k."""

