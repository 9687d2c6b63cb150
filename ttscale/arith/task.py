"""A seeded generator of multi-step add/subtract word problems with a chain of thought.

Each problem starts a person with some items and changes the count a few times; the question
asks how many are left. The solution is one line of arithmetic per step and a final ``#### N``::

    Question: Mia has 45 marbles. First she buys 12 more. Second she gives away 7. How
    many marbles does Mia have now?
    Answer:
    First: 45 + 12 = 57
    Second: 57 - 7 = 50
    #### 50

Each step's sentence starts with an ordinal word and its solution line repeats it, so a small
model finds the operand of step k by content (the matching ordinal) rather than by counting
positions.

Difficulty knobs live in the frozen model :class:`ArithConfig`; named presets are in
:data:`PRESETS` ("default" and "hard" are the fixed test sets' settings). Generation uses
only :class:`random.Random` seeded by the caller, so the same (config, count, seed) gives the
same problems on every machine.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from ttscale.errors import ConfigError
from ttscale.validation import CheckedModel, Int, check_count, is_int, validate

ALLOWED_OPS = ("+", "-")
MAX_VALUE_LIMIT = 1_000_000
MAX_STEPS_LIMIT = 12

DEFAULT_TEMPERATURE = 1.3
"""Sampling temperature at which the committed model's figures are stated (see evals/)."""


class ArithConfig(CheckedModel):
    """Difficulty knobs of the arithmetic word problems.

    The start value lies in ``[1, max_value]`` and every intermediate value in
    ``[0, max_value]``; each step adds or subtracts an operand in
    ``[min_operand, max_operand]``; a problem has ``min_steps..max_steps`` steps (operations
    after the start value), each drawn from ``ops``. Frozen and hashable; a bad value raises
    :class:`ConfigError` naming the knob.
    """

    max_value: Annotated[Int, Field(ge=1, le=MAX_VALUE_LIMIT)] = 99
    """Largest start and intermediate value, in [1, MAX_VALUE_LIMIT] (1,000,000)."""
    min_operand: Annotated[Int, Field(ge=1)] = 1
    """Smallest number added or subtracted in a step, >= 1."""
    max_operand: Int = 20
    """Largest number added or subtracted in a step, in [min_operand, max_value]."""
    min_steps: Annotated[Int, Field(ge=1)] = 2
    """Fewest steps (operations after the start value), >= 1."""
    max_steps: Int = 4
    """Most steps, in [min_steps, MAX_STEPS_LIMIT] (12)."""
    ops: tuple[str, ...] = ALLOWED_OPS
    """The operations a step draws from: distinct entries of ALLOWED_OPS (a list is accepted)."""

    @field_validator("ops", mode="before")
    @classmethod
    def _ops(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str) or not isinstance(value, (tuple, list)):
            raise ConfigError("ops", value, f"a non-empty list drawn from {list(ALLOWED_OPS)}")
        ops = tuple(value)
        if not ops or any(op not in ALLOWED_OPS for op in ops) or len(set(ops)) != len(ops):
            raise ConfigError("ops", value, f"a non-empty list of distinct ops from {list(ALLOWED_OPS)}")
        return ops

    @model_validator(mode="after")
    def _consistent(self) -> ArithConfig:
        if self.max_operand < self.min_operand:
            raise ConfigError(
                "max_operand", self.max_operand, f"an integer >= min_operand ({self.min_operand})"
            )
        if self.max_operand > self.max_value:
            raise ConfigError(
                "max_operand", self.max_operand, f"an integer <= max_value ({self.max_value})"
            )
        if not self.min_steps <= self.max_steps <= MAX_STEPS_LIMIT:
            raise ConfigError(
                "max_steps",
                self.max_steps,
                f"an integer in [min_steps ({self.min_steps}), {MAX_STEPS_LIMIT}]",
            )
        ops = self.ops
        # Every problem must be completable whatever the draws: see _feasible.
        if ops == ("+",) and self.max_value < 1 + self.max_steps * self.min_operand:
            raise ConfigError(
                "max_value",
                self.max_value,
                f"at least 1 + max_steps * min_operand ({1 + self.max_steps * self.min_operand}) "
                "when ops is ['+']",
            )
        if ops == ("-",) and self.max_value < self.max_steps * self.min_operand:
            raise ConfigError(
                "max_value",
                self.max_value,
                f"at least max_steps * min_operand ({self.max_steps * self.min_operand}) "
                "when ops is ['-']",
            )
        if len(ops) == 2 and self.max_value < 2 * self.min_operand - 1:
            raise ConfigError(
                "max_value", self.max_value, f"at least 2 * min_operand - 1 ({2 * self.min_operand - 1})"
            )
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> ArithConfig:
        """Build from a mapping (e.g. a TOML table); unknown keys raise ConfigError."""
        return validate(cls, data, source=source)

    def to_dict(self) -> dict[str, Any]:
        """The knobs as JSON values (``ops`` a list)."""
        return {**self.model_dump(), "ops": list(self.ops)}


PRESETS: dict[str, ArithConfig] = {
    "default": ArithConfig(),
    "hard": ArithConfig(max_value=99, min_operand=1, max_operand=20, min_steps=5, max_steps=7),
}
"""Named difficulty presets; the fixed test sets use "default" and "hard"."""


def get_preset(name: str) -> ArithConfig:
    """The preset called ``name``; ConfigError names the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError("preset", name, f"one of {sorted(PRESETS)}") from None


# --- the words -------------------------------------------------------------------------------

NAMES: tuple[tuple[str, str], ...] = (
    ("Mia", "she"), ("Tom", "he"), ("Ana", "she"), ("Sam", "he"), ("Lily", "she"),
    ("Ben", "he"), ("Zoe", "she"), ("Max", "he"), ("Emma", "she"), ("Leo", "he"),
    ("Nora", "she"), ("Omar", "he"), ("Ivy", "she"), ("Raj", "he"), ("Eva", "she"),
    ("Jack", "he"),
)
ITEMS: tuple[str, ...] = (
    "apples", "marbles", "stickers", "books", "coins", "cards", "pencils", "shells",
    "stamps", "cookies", "balloons", "beads", "eggs", "toys", "rocks", "flowers",
)
ADD_PHRASES: tuple[str, ...] = (
    "{p} buys {n} more",
    "{p} finds {n} more",
    "{p} gets {n} more",
    "{p} wins {n} more",
)
SUB_PHRASES: tuple[str, ...] = (
    "{p} gives away {n}",
    "{p} sells {n}",
    "{p} loses {n}",
    "{p} uses {n}",
)
ORDINALS: tuple[str, ...] = (
    "First", "Second", "Third", "Fourth", "Fifth", "Sixth",
    "Seventh", "Eighth", "Ninth", "Tenth", "Eleventh", "Twelfth",
)
"""Each step's sentence starts with its ordinal, and the solution line of the step repeats it."""


def _feasible(value: int, op: str, config: ArithConfig) -> tuple[int, int] | None:
    """The operand range [lo, hi] that keeps the value in [0, max_value], or None."""
    lo = config.min_operand
    hi = config.max_operand
    if op == "+":
        hi = min(hi, config.max_value - value)
    else:
        hi = min(hi, value)
    return (lo, hi) if hi >= lo else None


def _one_problem(rng: random.Random, config: ArithConfig) -> tuple[int, list[tuple[str, int]]]:
    for _ in range(1000):
        start = rng.randint(1, config.max_value)
        steps = rng.randint(config.min_steps, config.max_steps)
        value = start
        ops: list[tuple[str, int]] = []
        for _ in range(steps):
            choices = [(op, rng_range) for op in config.ops if (rng_range := _feasible(value, op, config))]
            if not choices:
                break
            op, (lo, hi) = choices[rng.randrange(len(choices))]
            operand = rng.randint(lo, hi)
            value = value + operand if op == "+" else value - operand
            ops.append((op, operand))
        else:
            return start, ops
    raise ConfigError("config", config, "settings under which a problem can be completed")  # pragma: no cover


def _render(rng: random.Random, start: int, ops: list[tuple[str, int]]) -> tuple[str, str, int]:
    name, pronoun = NAMES[rng.randrange(len(NAMES))]
    item = ITEMS[rng.randrange(len(ITEMS))]
    sentences = [f"{name} has {start} {item}."]
    lines = []
    value = start
    for ordinal, (op, operand) in zip(ORDINALS, ops):
        phrases = ADD_PHRASES if op == "+" else SUB_PHRASES
        verb = phrases[rng.randrange(len(phrases))].format(n=operand, p=pronoun)
        sentences.append(f"{ordinal} {verb}.")
        new = value + operand if op == "+" else value - operand
        lines.append(f"{ordinal}: {value} {op} {operand} = {new}")
        value = new
    sentences.append(f"How many {item} does {name} have now?")
    lines.append(f"#### {value}")
    return " ".join(sentences), "\n".join(lines), value


def generate_problems(
    config: ArithConfig, count: int, seed: int, *, id_prefix: str = "arith"
) -> list[dict[str, str]]:
    """``count`` problems drawn with ``random.Random(seed)``.

    Each is a dict with ``id`` (``{id_prefix}-{i:04d}``), ``problem`` (the word problem),
    ``answer`` (the final value as a string) and ``solution`` (one line per step, ending in
    ``#### answer``).
    """
    if not isinstance(config, ArithConfig):
        raise ConfigError("config", config, "an ArithConfig")
    count = check_count("count", count, 0)
    if not is_int(seed):
        raise ConfigError("seed", seed, "an integer")
    rng = random.Random(int(seed))
    out = []
    for i in range(count):
        out.append({"id": f"{id_prefix}-{i:04d}", **sample_problem(rng, config)})
    return out


def sample_problem(rng: random.Random, config: ArithConfig) -> dict[str, str]:
    """One problem drawn from ``rng``: a dict with ``problem``, ``answer`` and ``solution``."""
    start, ops = _one_problem(rng, config)
    problem, solution, value = _render(rng, start, ops)
    return {"problem": problem, "answer": str(value), "solution": solution}


def problem_signature(problem: str) -> tuple[int, ...]:
    """The numbers of a problem in order (start value and operands): its arithmetic content."""
    return tuple(int(x) for x in re.findall(r"\d+", problem))


def format_prompt(problem: str | Mapping[str, Any]) -> str:
    """The prompt the model is trained on and sampled with (a problem text or a problem dict)."""
    text = problem["problem"] if isinstance(problem, Mapping) else problem
    return f"Question: {text}\nAnswer:\n"


_ANSWER_RE = re.compile(r"####\s*(-?\d+)")


def extract_answer(text: str) -> str | None:
    """The integer after the last ``####`` in ``text`` as a string, or None when there is none."""
    found = _ANSWER_RE.findall(text)
    if not found:
        return None
    return str(int(found[-1]))

