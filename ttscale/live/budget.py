"""What one question may cost in the live solver, and whether it stops early: :class:`Budget`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from ttscale.errors import ConfigError
from ttscale.validation import Bool, CheckedModel, Float, Int, is_int

__all__ = ["Budget"]


class Budget(CheckedModel):
    """How much one question may cost, and whether to stop early.

    Frozen and validated on construction: a bad value raises :class:`ConfigError` naming
    ``budget.<field>``.
    """

    samples: Int = Field(8, ge=1)
    """The most samples a question gets (all of them when not adaptive)."""
    adaptive: Bool = False
    """Stop drawing once the vote is settled (the ``default`` rule,
    :class:`~ttscale.adaptive.stopping.SettledMajority`: the leader still leads after all ``samples``
    with probability >= ``confidence``), or, with a total budget over many questions, let the
    online allocator give the next samples to the least settled questions."""
    pilot: Int = Field(1, ge=1)
    """Adaptive: the fewest samples in the first round. Each round draws at least this (then
    ``step``) and otherwise the fewest samples after which the vote could settle, so with the
    defaults the stop is exactly where checking after every sample would put it, in few rounds."""
    step: Int = Field(1, ge=1)
    """Adaptive: the fewest samples per later round."""
    confidence: Float = Field(0.95, gt=0.5, lt=1)
    """Adaptive: the ``default`` rule's confidence in (0.5, 1); higher spends more to be surer.
    ``ttscale simulate BANK --exact`` says which value reaches a target on a pilot bank."""
    tokens: Int | None = Field(None, ge=1)
    """Cap on generated tokens per question: no round starts that would, at the mean tokens per
    sample so far, pass it (draws then go in rounds, as when adaptive). None: no cap. Not applied
    under a total budget (the allocator spends that in samples)."""
    dollars: Float | None = Field(None, gt=0)
    """Cap on dollars per question (needs prices), applied like ``tokens``. None: no cap."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except ConfigError as exc:  # name the parameter as a caller passes it: budget.samples, ...
            raise ConfigError(f"budget.{exc.parameter}", exc.value, exc.expected) from None

    @classmethod
    def of(cls, value: int | Budget | Mapping[str, Any] | None, default: Budget | None = None) -> Budget:
        """A budget from an int (samples), a mapping of fields, a Budget, or None (``default``)."""
        if value is None:
            return default or cls()
        if isinstance(value, Budget):
            return value
        base = default.model_dump() if default is not None else {}
        if is_int(value):
            return cls(**{**base, "samples": value})
        if isinstance(value, Mapping):
            return cls(**{**base, **{str(k): v for k, v in value.items()}})
        raise ConfigError("budget", value, "a number of samples, a Budget, or a mapping of its fields")

    @property
    def in_rounds(self) -> bool:
        """Whether samples are drawn in rounds (adaptive, or a token or dollar cap to check)."""
        return self.adaptive or self.tokens is not None or self.dollars is not None
