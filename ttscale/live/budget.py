"""What one question may cost in the live solver, and whether it stops early: :class:`Budget`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from ttscale.adaptive.stopping import DEFAULT_CONFIDENCE
from ttscale.adaptive.workload_prior import DEFAULT_PRICE
from ttscale.answers.candidates import Candidates
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
    confidence: Float = Field(DEFAULT_CONFIDENCE, gt=0.5, lt=1)
    """Adaptive: the ``default`` rule's confidence in (0.5, 1); higher spends more to be surer.
    ``ttscale simulate BANK --exact`` says which value reaches a target on a pilot bank."""
    tokens: Int | None = Field(None, ge=1)
    """Cap on generated tokens per question: no round starts that would, at the mean tokens per
    sample so far, pass it (draws then go in rounds, as when adaptive). None: no cap. Not applied
    under a total budget (the allocator spends that in samples)."""
    dollars: Float | None = Field(None, gt=0)
    """Cap on dollars per question (needs prices), applied like ``tokens``. None: no cap."""
    workload: tuple[tuple[Float, Float, Float, Float], ...] | None = None
    """Adaptive: a workload prior's mixture, (weight, top share, second share, rest) per question
    type, fitted on a pilot bank of the same workload (:meth:`from_pilot`). The stop is then the
    Bayes-optimal one under it (``workload`` in ``ttscale simulate``, :class:`~ttscale.adaptive.
    workload_prior.WorkloadBayes` at ``price``) instead of the ``default`` rule; ``confidence`` is
    not read. None: the ``default`` rule."""
    price: Float = Field(DEFAULT_PRICE, gt=0, lt=1)
    """Adaptive with ``workload``: the accuracy one more sample must buy, in (0, 1); lower spends more."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except ConfigError as exc:  # name the parameter as a caller passes it: budget.samples, ...
            raise ConfigError(f"budget.{exc.parameter}", exc.value, exc.expected) from None

    @model_validator(mode="after")
    def _workload(self) -> Budget:
        if self.workload is not None:
            if not self.adaptive:
                raise ConfigError("workload", "a prior", "adaptive=True as well (the prior decides when a question stops)")
            from ttscale.adaptive.workload_prior import WorkloadBayes

            WorkloadBayes(self.price, components=self.workload)  # weights and shares checked once, here
        return self

    @classmethod
    def from_pilot(cls, bank: str | Path, *, samples: int | None = None, price: float = DEFAULT_PRICE, **fields: Any) -> Budget:
        """An adaptive budget whose stop reads a workload prior fitted on ``bank`` (a pilot of the
        same kind of questions: their vote counts, no labels): ``samples`` per question at most
        (default: the pool size 90% of the bank's questions have), ``price`` as in :attr:`price`,
        other ``fields`` as the constructor's. ``ttscale simulate PILOT --exact`` shows which price
        reaches a target (rule ``workload``)."""
        from ttscale.adaptive.simulate import default_max_samples
        from ttscale.adaptive.workload_prior import fit_workload_prior

        problems = _pilot_votes(Path(bank))
        horizon = default_max_samples([p.n for p in problems]) if samples is None else int(samples)
        prior = fit_workload_prior(problems, horizon)
        return cls(samples=horizon, adaptive=True, workload=prior.components(), price=price, **fields)

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


def _pilot_votes(bank: Path) -> list[Candidates]:
    """Each question's answer classes in ``bank`` (math equivalence), without grading: a pilot for a
    workload prior needs no reference answers."""
    from ttscale.answers import AnswerClassifier, EquivalenceConfig
    from ttscale.records.bank import read_bank

    classifier = AnswerClassifier(EquivalenceConfig())
    out = []
    for record in read_bank(bank).records:
        classes, representatives = classifier.classify([s.answer for s in record.samples])
        out.append(Candidates(classes=np.asarray(classes, dtype=np.int64), class_correct=np.zeros(len(representatives), dtype=bool)))
    if not out:
        raise ConfigError("bank", str(bank), "a pilot bank with at least one question")
    return out
