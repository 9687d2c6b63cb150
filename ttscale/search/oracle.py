"""An exact step checker for the embedded arithmetic task: it knows whether each step is right.

A problem's reference chain is read from its own text (start value, then one ordinal sentence per
step whose verb says add or subtract), so no stored solution is needed. Step k of a partial
solution scores 1 when it is exactly the reference line ``Ordinal: a op b = c`` (the right
ordinal, the true running value, the problem's operand for that ordinal, correct arithmetic), and
the final ``#### N`` scores 1 when it comes after every step with the true answer; anything else 0.
Search guided by it should find a right chain whenever sampling would: accuracy near pass@N.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from ttscale.arith.task import ADD_PHRASES, ORDINALS, SUB_PHRASES
from ttscale.errors import ConfigError
from ttscale.search.steps import StepScores

_START_RE = re.compile(r"^\w+ has (\d+) \w+\.")
_ORDINAL_RE = re.compile(r"\b(" + "|".join(ORDINALS) + r") (\w+) ([a-z ]+?) (\d+)")
_LINE_RE = re.compile(r"^\s*(\w+):\s*(-?\d+)\s*([+-])\s*(-?\d+)\s*=\s*(-?\d+)\s*$")
_FINAL_RE = re.compile(r"^\s*####\s*(-?\d+)\s*$")


def _verbs(phrases: tuple[str, ...]) -> set[str]:
    return {p.split("{n}")[0].replace("{p}", "").strip() for p in phrases}


_ADD, _SUB = _verbs(ADD_PHRASES), _verbs(SUB_PHRASES)


@lru_cache(maxsize=4096)
def reference_chain(problem: str) -> tuple[tuple[str, int, str, int, int], ...]:
    """The reference steps ``(ordinal, before, op, operand, after)`` of an arithmetic problem text;
    ConfigError when the text is not one of the task's problems."""
    start = _START_RE.match(problem)
    if start is None:
        raise ConfigError("problem", problem[:80], "an arithmetic task problem ('NAME has N ITEMS. First ...')")
    value = int(start.group(1))
    chain = []
    for ordinal, _pronoun, verb, n in _ORDINAL_RE.findall(problem):
        op = "+" if verb in _ADD else "-" if verb in _SUB else None
        if op is None or ordinal != ORDINALS[len(chain)]:
            raise ConfigError("problem", problem[:80], f"an arithmetic task problem (step {len(chain) + 1}: {ordinal} {verb} {n})")
        after = value + int(n) if op == "+" else value - int(n)
        chain.append((ordinal, value, op, int(n), after))
        value = after
    if not chain:
        raise ConfigError("problem", problem[:80], "an arithmetic task problem with at least one step")
    return tuple(chain)


def check_steps(problem: str, steps: Sequence[str]) -> list[float]:
    """1.0 or 0.0 per step (see the module docstring)."""
    chain = reference_chain(problem)
    out = []
    for k, text in enumerate(steps):
        out.append(1.0 if _step_right(chain, k, text) else 0.0)
    return out


def _step_right(chain: tuple[tuple[str, int, str, int, int], ...], k: int, text: str) -> bool:
    if k < len(chain):
        m = _LINE_RE.match(text)
        if m is None:
            return False
        ordinal, before, op, operand, after = chain[k]
        got = (m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), int(m.group(5)))
        return got == (ordinal, before, op, operand, after)
    m = _FINAL_RE.match(text)
    return k == len(chain) and m is not None and int(m.group(1)) == chain[-1][4]


class OracleStepScorer:
    """The exact checker as a :class:`~ttscale.search.steps.StepScorer` (runs no model: no tokens)."""

    name = "oracle"

    def score_steps(self, items: Sequence[tuple[str, Sequence[str]]]) -> StepScores:
        return StepScores([check_steps(problem, steps) for problem, steps in items])
