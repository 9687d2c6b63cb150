"""The validated parameters of a step-level search."""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from ttscale.errors import ConfigError
from ttscale.validation import CheckedModel, Float, Int

MAX_WIDTH = 4096
"""Most final candidates per problem: far above useful search widths, low enough that a typo
(``--width 1000000``) is an error rather than an engine call of a million sequences."""


class SearchMethod(str, Enum):
    BEAM = "beam"
    """Keep the ``keep`` best partial solutions of each round, expand each ``expand`` ways."""
    DVTS = "dvts"
    """Diverse verifier tree search: ``width / keep`` independent subtrees, one beam each, expanded ``keep`` ways."""
    PARTICLE = "particle"
    """``width`` particles, one step each per round, resampled by softmax(score / temperature)."""


class Aggregation(str, Enum):
    LAST = "last"
    """The last step's score (Hugging Face's search-and-learn default)."""
    MIN = "min"
    """The weakest step's score: one wrong step sinks the branch."""
    PRODUCT = "product"
    """The product of step scores (probabilities that every step is right)."""

    def __call__(self, scores: Sequence[float]) -> float:
        if not scores:
            return 0.0
        if self is Aggregation.LAST:
            return float(scores[-1])
        if self is Aggregation.MIN:
            return float(min(scores))
        return float(math.prod(scores))


class SearchParams(CheckedModel):
    """How a search runs; frozen, and a bad value raises :class:`ConfigError` naming field and value."""

    method: SearchMethod = SearchMethod.BEAM
    """beam, dvts or particle (a string is accepted)."""
    width: Annotated[Int, Field(ge=1, le=MAX_WIDTH)] = 8
    """N: final candidates per problem, and expansions of the first round."""
    keep: Annotated[Int, Field(ge=1)] = 2
    """M: beam search keeps the M best partial solutions per round; DVTS runs N/M subtrees and expands
    each M ways; ignored by particle filtering."""
    expand: Annotated[Int, Field(ge=1)] | None = None
    """Beam search: continuations per kept beam per round (default N/M, so a round costs N steps)."""
    max_steps: Annotated[Int, Field(ge=1, le=256)] = 16
    """Rounds (steps per branch) before unfinished branches are returned as they are (finish "length")."""
    max_step_tokens: Annotated[Int, Field(ge=1)] = 64
    """Most tokens of one step; a step that reaches it without the separator ends its branch."""
    max_tokens: Annotated[Int, Field(ge=1)] | None = None
    """Most generated tokens of one branch (None: only the engine's context length bounds it)."""
    separator: str = "\n"
    """The string a step ends with (kept in the step's text)."""
    temperature: Annotated[Float, Field(gt=0)] = 1.0
    """Particle filtering: temperature of the resampling softmax over aggregated scores."""
    aggregation: Aggregation = Aggregation.LAST
    """How a branch's per-step scores make its score: last, min or product."""
    seed: Int | None = 0
    """Base seed of generation and resampling (None: unseeded, not reproducible)."""

    @field_validator("method", "aggregation", mode="before")
    @classmethod
    def _enum(cls, value: Any, info: Any) -> Any:
        kind = SearchMethod if info.field_name == "method" else Aggregation
        if isinstance(value, kind):
            return value
        try:
            return kind(value)
        except (ValueError, TypeError):
            raise ConfigError(info.field_name, value, "one of " + ", ".join(m.value for m in kind)) from None

    @field_validator("separator", mode="before")
    @classmethod
    def _separator(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value or len(value) > 32:
            raise ConfigError("separator", value, "a non-empty string of at most 32 characters")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SearchParams:
        if self.method is SearchMethod.PARTICLE:
            return self
        if self.keep > self.width:
            raise ConfigError("keep", self.keep, f"an integer <= width ({self.width})")
        if self.method is SearchMethod.DVTS and self.width % self.keep:
            raise ConfigError("keep", self.keep, f"a divisor of width ({self.width}) for DVTS (width/keep subtrees)")
        if self.method is SearchMethod.BEAM and self.expand is None and self.width % self.keep:
            raise ConfigError("keep", self.keep, f"a divisor of width ({self.width}), or pass expand")
        return self

    @property
    def expansions(self) -> int:
        """Beam search: continuations per kept beam per round."""
        return self.expand if self.expand is not None else max(1, self.width // self.keep)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
