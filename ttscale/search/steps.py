"""What the search asks of a generator and a scorer: one step at a time, in batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Step:
    """One generated step of a branch."""

    text: str
    """The step's text, the separator included when the step ended on it."""
    tokens: int
    """Generated tokens of the step."""
    finish: str
    """``separator`` (ended on it), ``eos`` (the model stopped) or ``length`` (hit the step's token limit)."""
    token_ids: tuple[int, ...] = field(default=(), repr=False)
    """The step's token ids when the generator has them: an engine continues a branch from these
    exactly (re-tokenizing the text could split it differently and miss the prefix cache)."""
    prompt_tokens: int = 0
    """Tokens of the prompt its request sent (the templated problem plus the branch so far), the
    same for every continuation of one request; 0 when the generator does not say."""


@dataclass(frozen=True)
class StepRequest:
    """Continue one partial solution by one step, ``n`` ways."""

    problem: str
    """The problem text (before the prompt template)."""
    steps: tuple[Step, ...]
    """The branch so far (empty: the first step)."""
    n: int
    """Continuations wanted."""
    seed: int | None = None
    """Seed of this request (None: unseeded)."""
    max_tokens: int = 64
    """Most tokens of the step."""


@dataclass(frozen=True)
class StepScores:
    """A scorer's answer for a batch: one score per step of each partial solution."""

    scores: list[list[float]]
    tokens: list[int] | None = None
    """Tokens the scorer read per partial solution (None: it runs no model)."""


class StepGenerator(Protocol):
    """Returns ``request.n`` one-step continuations per request, in order."""

    def generate_steps(self, requests: Sequence[StepRequest]) -> list[list[Step]]: ...


class StepScorer(Protocol):
    """Scores every step of each (problem, steps) pair; ``name`` labels the scores in a bank."""

    name: str

    def score_steps(self, items: Sequence[tuple[str, Sequence[str]]]) -> StepScores: ...
