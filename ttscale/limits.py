"""Limits on untrusted input: one JSON reader, one number parser, one memory check.

Banks, proxy requests and upstream replies are read by code that must not be made to crash or to
allocate without bound by what it reads. The limits live here so that every reader refuses the same
things with the same words:

* :func:`load_json` parses JSON text nested at most :data:`MAX_JSON_DEPTH` deep whose integers have at
  most :data:`MAX_DIGITS` digits, and raises :class:`~ttscale.errors.InputLimitError` naming the
  field (a dotted path) otherwise -- never ``RecursionError`` or the ``ValueError`` of ``int()``;
* :func:`parse_int` / :func:`parse_fraction` read numbers of at most :data:`MAX_DIGITS` digits and
  give None for longer ones (an answer of 100,000 digits is then compared as a string);
* :func:`check_memory` refuses an option whose value would make one allocation larger than
  :data:`MAX_ARRAY_BYTES`, naming the option, the size and how to change it;
* :func:`env_limit` reads the limits users may raise from the environment (``TTSCALE_MAX_ARRAY_BYTES``,
  ``TTSCALE_MAX_PROBLEM_SAMPLES``, ``TTSCALE_MAX_BANK_SAMPLES``, ``TTSCALE_MAX_LINE_BYTES``; see
  :data:`LIMITS`), so a bank reader stops at the line that passes one instead of filling memory.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from ttscale.errors import ConfigError, InputLimitError

__all__ = [
    "MAX_ARRAY_BYTES",
    "MAX_DIGITS",
    "MAX_JSON_DEPTH",
    "LIMITS",
    "check_json_text",
    "check_memory",
    "env_limit",
    "find_value",
    "format_bytes",
    "load_json",
    "parse_fraction",
    "parse_int",
]

MAX_DIGITS = 4300
"""Digits of the longest integer read from input (Python's own default ``int()`` limit, fixed here
so that a process which raised it with ``sys.set_int_max_str_digits`` reads input the same way)."""

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in JSON input. A bank line is 4 deep
(line, samples, sample, rewards); a chat request about 5. Deeper input is refused before anything
recursive (pydantic, ``json.dumps``, the selectors) can hit Python's recursion limit."""

MAX_ARRAY_BYTES = 4 << 30
"""Default largest single allocation an option may ask for (4 GiB; ``TTSCALE_MAX_ARRAY_BYTES``)."""

LIMITS: dict[str, tuple[int, str]] = {
    "TTSCALE_MAX_ARRAY_BYTES": (MAX_ARRAY_BYTES, "bytes one table built for an option may take"),
    "TTSCALE_MAX_PROBLEM_SAMPLES": (50_000, "samples of one problem in a bank (all its lines together)"),
    "TTSCALE_MAX_BANK_SAMPLES": (4_000_000, "samples in one bank (about 1 KiB of memory each once read)"),
    "TTSCALE_MAX_LINE_BYTES": (256 << 20, "bytes of one bank line"),
}
"""Limits users may raise, by environment variable: (default, what is limited). The sample limits
stop a bank reader at the line that passes them: a 42 MB bank of 2.5 M samples of one problem
used to take 17 s and 2.7 GB before the estimator refused it."""


def env_limit(name: str) -> int:
    """The limit ``name`` (a key of :data:`LIMITS`): its environment variable when set, else the
    default. A value that is not a positive integer is a :class:`ConfigError` naming the variable."""
    default, what = LIMITS[name]
    raw = os.environ.get(name, "").strip().replace("_", "")
    if not raw:
        return default
    value = parse_int(raw)
    if value is None or value < 1:
        raise ConfigError(name, os.environ[name], f"a positive integer: the most {what}", source="environment")
    return value


_NAN_TOKENS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
_STRING_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_TOKEN_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]')
_NOT_BRACKET_RE = re.compile(r"[^\[\]{}]+")
_PAIR_RE = re.compile(r"\[\]|\{\}")
_INT_RE = re.compile(r"[+-]?\d+")
_DECIMAL_RE = re.compile(r"[+-]?\d*\.?\d*")


def parse_int(text: str) -> int | None:
    """``int(text)`` for an integer literal of at most :data:`MAX_DIGITS` digits; None when it is
    longer (or not an integer literal)."""
    text = text.strip()
    if not _INT_RE.fullmatch(text) or len(text.lstrip("+-")) > MAX_DIGITS:
        return None
    return int(text)


def parse_fraction(text: str) -> Fraction | None:
    """The exact value of a decimal literal (``-12``, ``3.25``, ``.5``) of at most :data:`MAX_DIGITS`
    digits; None when it is longer or not a decimal literal."""
    text = text.strip()
    if not _DECIMAL_RE.fullmatch(text) or not any(ch.isdigit() for ch in text):
        return None
    if sum(ch.isdigit() for ch in text) > MAX_DIGITS:
        return None
    return Fraction(text)


class _LongInt(str):
    """An integer literal over the digit limit, kept as its text while looking for its field."""


def _long_int(text: str) -> Any:
    return _LongInt(text) if len(text.lstrip("-")) > MAX_DIGITS else int(text)


def load_json(text: str) -> Any:
    """``json.loads(text)`` within :data:`MAX_JSON_DEPTH` and :data:`MAX_DIGITS`.

    ``NaN`` and ``Infinity`` are read as floats, as Python's json does, so that a validator can
    name the field holding one (:func:`find_value` finds them in free-form parts). Raises
    ``json.JSONDecodeError`` for text that is not JSON, and :class:`InputLimitError` (naming the
    field as a dotted path, e.g. ``samples.0.tokens``) for JSON over a limit.
    """
    try:
        obj = json.loads(text, parse_constant=_NAN_TOKENS.__getitem__)
    except RecursionError:
        raise _too_deep(text) from None
    except json.JSONDecodeError:
        raise
    except ValueError:
        # int() refused a literal over Python's digit limit: parse again to name its field.
        obj = json.loads(text, parse_constant=_NAN_TOKENS.__getitem__, parse_int=_long_int)
        path, value = find_value(obj, lambda v: isinstance(v, _LongInt))
        raise InputLimitError(path, f"an integer of at most {MAX_DIGITS} digits", f"{len(value.lstrip('-'))} digits") from None
    if _deeper_than(text, MAX_JSON_DEPTH):
        raise _too_deep(text)
    if not 0 < sys.get_int_max_str_digits() <= MAX_DIGITS and isinstance(obj, (dict, list)):
        # Python's own limit was raised (or lifted): longer literals got through json.loads.
        path, value = find_value(obj, lambda v: type(v) is int and len(str(abs(v))) > MAX_DIGITS)
        if path is not None or value is not None:
            raise InputLimitError(path, f"an integer of at most {MAX_DIGITS} digits", f"{len(str(abs(value)))} digits")
    return obj


_LONG_RUN_RE = re.compile(rf"\d{{{MAX_DIGITS + 1}}}")


def check_json_text(text: str) -> None:
    """Raise :class:`InputLimitError` when JSON ``text`` is over a limit, as :func:`load_json` would,
    for a reader that parses the text itself (a web framework): two C-speed passes decide whether
    the full parse that names the field is needed. Text that is not JSON passes (its reader says so)."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH and not _LONG_RUN_RE.search(text):
        return
    try:
        load_json(text)
    except json.JSONDecodeError:
        return


def _deeper_than(text: str, limit: int) -> bool:
    """Whether valid JSON ``text`` nests arrays/objects more than ``limit`` deep (C-speed passes:
    strings dropped, then innermost bracket pairs removed once per level)."""
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_BRACKET_RE.sub("", _STRING_RE.sub("", text))
    for _ in range(limit):
        brackets = _PAIR_RE.sub("", brackets)
        if not brackets:
            return False
    return True


def _too_deep(text: str) -> InputLimitError:
    return InputLimitError(_deep_path(text), f"JSON nested at most {MAX_JSON_DEPTH} deep", "deeper nesting")


def _deep_path(text: str) -> str | None:
    """The dotted path of the first value nested deeper than :data:`MAX_JSON_DEPTH` (a token scan
    of the text, run only on the error path)."""
    stack: list[list[Any]] = []
    last_string = ""
    for m in _TOKEN_RE.finditer(text):
        tok = m.group()
        if tok in "[{":
            stack.append([tok, 0 if tok == "[" else None])
            if len(stack) > MAX_JSON_DEPTH:
                return _dotted([entry[1] for entry in stack[:-1]])
        elif tok in "]}":
            if stack:
                stack.pop()
        elif tok == ",":
            if stack and stack[-1][0] == "[":
                stack[-1][1] += 1
        elif tok == ":":
            if stack:
                stack[-1][1] = last_string
        else:
            try:
                last_string = json.loads(tok)
            except ValueError:
                last_string = tok[1:-1]
    return None


def _dotted(parts: list[Any], keep: int = 6) -> str | None:
    names = [str(p) for p in parts if p is not None]
    if not names:
        return None
    return ".".join(names[:keep]) + (".…" if len(names) > keep else "")


def find_value(obj: Any, match: Callable[[Any], bool]) -> tuple[str | None, Any]:
    """(dotted path, value) of the first value ``match`` accepts, depth first, without recursion."""
    todo: list[tuple[list[Any], Any]] = [([], obj)]
    while todo:
        path, value = todo.pop()
        if match(value):
            return _dotted(path, keep=12), value
        if isinstance(value, dict):
            todo.extend((path + [k], v) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            todo.extend((path + [i], v) for i, v in reversed(list(enumerate(value))))
    return None, None


def format_bytes(n: float) -> str:
    """``n`` bytes as ``12.3 GiB`` (or MiB, KiB, B)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def check_memory(option: str, value: Any, nbytes: float, *, what: str, limit: int | None = None) -> None:
    """Refuse ``option=value`` when the allocation it implies (``nbytes``, estimated before any
    work) is over ``limit`` (default: ``TTSCALE_MAX_ARRAY_BYTES``, 4 GiB).

    The :class:`ConfigError` names the option, its value, the size and the limit, and says what to
    change: ``--permutations=10000000: expected a smaller value: the permutation table would need
    1.4 TiB, over the 4.0 GiB limit (lower --permutations, or raise TTSCALE_MAX_ARRAY_BYTES)``.
    """
    cap = env_limit("TTSCALE_MAX_ARRAY_BYTES") if limit is None else limit
    if nbytes > cap:
        raise ConfigError(
            option,
            value,
            f"a smaller value: {what} would need {format_bytes(nbytes)}, over the {format_bytes(cap)} limit "
            f"(lower {option}, or raise TTSCALE_MAX_ARRAY_BYTES)",
        )


def check_draws(draws: int, k_count: int, option: str = "--draws") -> None:
    """Refuse a resampling ``draws`` count whose per-problem tables ((draws, k values) float64 hits,
    plus one column of scratch) would be over :data:`MAX_ARRAY_BYTES`."""
    check_memory(option, draws, 8.0 * draws * (k_count + 1), what=f"the resampling table ({draws:,} draws x {k_count} k values)")


def check_permutations(permutations: int, questions: int, max_samples: int, option: str = "--permutations") -> None:
    """Refuse a replay ``permutations`` count whose permutation tables (four (questions, permutations,
    max_samples) arrays of 8-byte values: answer classes, orders, tokens, vote credit) would be over
    :data:`MAX_ARRAY_BYTES`. Call it before ``ttscale.adaptive.simulate.replay_pool``."""
    check_memory(option, permutations, 32.0 * questions * permutations * max_samples,
                 what=f"the permutation tables ({questions:,} questions x {permutations:,} permutations x {max_samples:,} samples)")
