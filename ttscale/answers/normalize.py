"""Canonical answer strings, and exact values of the answers that are plain rational numbers.

``normalize_answer`` is a string-to-string map with no sympy in it: two answers that normalize
to the same string are the same answer, without further checks. It is idempotent
(``normalize_answer(normalize_answer(s)) == normalize_answer(s)``), so a class representative
can be normalized again (e.g. when graded against a reference) and stays itself.

Decisions (documented here because graders differ on them):

* ``x=5`` and ``x \\in (1,2]`` become ``5`` and ``(1,2]``: a single-letter variable assigned a
  value is the value. Answers with more than one relation (``x=1,y=2``, ``1<x<2``) are kept.
* A percent sign is dropped: ``50\\%`` is ``50`` (not ``0.5``). Degrees (``90^\\circ``) and dollar
  signs are dropped the same way.
* A trailing ``\\text{...}`` after a value is a unit and dropped (``5\\text{ cm}`` -> ``5``,
  ``4:30 \\text{ p.m.}`` -> ``4:30``); any other ``\\text{X}`` is unwrapped to ``X``.
* A multiple-choice letter in parentheses, ``(A)`` or ``\\text{(B)}``, becomes the bare letter.
* Plain numbers: thousands separators go (``1,000`` and ``10{,}000`` -> ``1000``/``10000``; only
  well-formed groups of three, so ``1,2`` stays a list), leading zeros of the integer part go
  (``025`` -> ``25``), trailing zeros of the decimals go (``18.0`` -> ``18``, ``37.50`` -> ``37.5``),
  ``.5`` -> ``0.5``, ``+5`` -> ``5``, ``-0`` -> ``0``.
* ``a/b`` of two integers becomes ``\\frac{a}{b}``; ``\\dfrac``/``\\tfrac`` become ``\\frac``;
  ``\\frac34`` becomes ``\\frac{3}{4}`` and ``\\sqrt2`` becomes ``\\sqrt{2}``.
* All whitespace is removed (LaTeX math ignores it), as are ``\\left``/``\\right``, ``\\!``, ``\\,``,
  ``\\;``, ``\\:``, ``\\quad``, ``\\displaystyle`` and ``~``.
"""

from __future__ import annotations

import re
from fractions import Fraction

from ttscale.limits import MAX_DIGITS, parse_fraction, parse_int

__all__ = ["is_choice_letter", "is_decimal", "is_oversized_number", "normalize_answer", "rational_value"]

_UNICODE = {
    "\u2212": "-",  # minus sign
    "\u2013": "-",
    "\u2014": "-",
    "\u00a0": " ",
    "\u2009": " ",
    "\u202f": " ",
    "\u00b0": "^\\circ",
    "\u03c0": "\\pi",
    "\u221e": "\\infty",
    "\u221a": "\\sqrt",
    "\u00b7": "\\cdot",
    "\u00d7": "\\times",
    "\u2264": "\\le",
    "\u2265": "\\ge",
    "\u2260": "\\ne",
}
_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE)))

_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_BOX_RE = re.compile(r"^\\(?:boxed|fbox)\s*\{")


def _keeping_row_breaks(pattern: str) -> re.Pattern[str]:
    """``pattern`` with a first alternative, group 1, that matches a LaTeX row break (two
    backslashes) so that substitutions keep it: in a row break followed by a space or a dollar,
    the second backslash is not a control space or an escaped dollar."""
    return re.compile(r"(\\\\)|(?:" + pattern + ")")


def _sub(pattern: re.Pattern[str], repl: str, s: str) -> str:
    return pattern.sub(lambda m: m.group(1) or repl, s)


_SPACING_RE = _keeping_row_breaks(r"\\(?:left|right|displaystyle|textstyle|!|,|;|:|quad|qquad)(?![a-zA-Z])|~|\\ ")
_FRAC_CMD_RE = re.compile(r"\\[dt]frac(?![a-zA-Z])")
_BINOM_CMD_RE = re.compile(r"\\[dt]binom(?![a-zA-Z])")
_REL_ALIASES = (
    (re.compile(r"\\leq(?![a-zA-Z])"), r"\\le"),
    (re.compile(r"\\geq(?![a-zA-Z])"), r"\\ge"),
    (re.compile(r"\\neq(?![a-zA-Z])"), r"\\ne"),
    (re.compile(r"\\varnothing(?![a-zA-Z])"), r"\\emptyset"),
)
_DEGREE_RE = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![a-zA-Z])|\\circ(?![a-zA-Z])|\\degree(?![a-zA-Z])")
_PERCENT_RE = _keeping_row_breaks(r"\\?%")
_DOLLAR_SIGN_RE = _keeping_row_breaks(r"\\\$")
_TEXT_CMD = r"\\(?:text|textrm|textnormal|textbf|textit|mbox|mathrm)\s*"
# A unit: \text{...} at the very end after some value, optionally squared/cubed.
_UNIT_RE = re.compile(_TEXT_CMD + r"\{[^{}]*\}(?:\^\{?\d\}?)?\s*\.?\s*$")
_TEXT_UNWRAP_RE = re.compile(_TEXT_CMD + r"\{([^{}]*)\}")
_WS_RE = re.compile(r"\s+")
_FRAC_SHORT_RE = re.compile(r"\\frac(\d)(\d)")
_FRAC_SHORT1_RE = re.compile(r"\\frac(\d)\{")
_FRAC_SHORT2_RE = re.compile(r"\\frac(\{[^{}]*\})(\d)")
_SQRT_SHORT_RE = re.compile(r"\\sqrt(\w)")
_SUPSUB_BRACE_RE = re.compile(r"([\^_])\{(\w)\}")
_CHOICE_RE = re.compile(r"^\(([A-Z])\)$")
_ASSIGN_RE = re.compile(r"^[a-zA-Z](?:=|\\in(?![a-zA-Z]))(.+)$")
_RELATION_RE = re.compile(r"=|<|>|\\le(?![a-zA-Z])|\\ge(?![a-zA-Z])|\\ne(?![a-zA-Z])|\\in(?![a-zA-Z])|\\lt|\\gt")
_NUMBER_RE = re.compile(r"^([+-]?)(\d{1,3}(?:,\d{3})+|\d*)(?:\.(\d*))?$")
_SLASH_FRAC_RE = re.compile(r"^(-?)(\d+)/(\d+)$")
_NEG_NUM_FRAC_RE = re.compile(r"^\\frac\{-(\d+)\}\{(\d+)\}$")

_INT_RE = re.compile(r"^-?\d+$")
_DEC_RE = re.compile(r"^-?\d+\.\d+$")
_FRAC_RE = re.compile(r"^(-?)\\frac\{(\d+)\}\{(\d+)\}$")
_MIXED_RE = re.compile(r"^(-?)(\d+)\\frac\{(\d+)\}\{(\d+)\}$")
_LETTER_RE = re.compile(r"^[A-Z]$")


def _matching_brace(s: str, open_index: int) -> int:
    """Index of the ``}`` closing the ``{`` at ``open_index`` (escaped braces skipped); -1 if none."""
    depth = 0
    i = open_index
    n = len(s)
    while i < n:
        ch = s[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _strip_wrappers(s: str) -> str:
    """Remove outer $...$, \\(...\\), \\[...\\], \\boxed{...}, {...} and trailing periods until stable."""
    while True:
        before = s
        s = s.strip()
        while s.endswith(".") and not s.endswith("\\."):
            s = s[:-1].rstrip()
        for left, right in _WRAPPERS:
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                inner = s[len(left) : len(s) - len(right)]
                if left not in inner and right not in inner:  # not "$1$ and $2$"
                    s = inner.strip()
                break
        m = _BOX_RE.match(s)
        if m and _matching_brace(s, m.end() - 1) == len(s) - 1:
            s = s[m.end() : -1]
        if s.startswith("{") and _matching_brace(s, 0) == len(s) - 1:
            s = s[1:-1]
        if s == before:
            return s


def _normalize_number(s: str) -> str | None:
    """Canonical form of a plain decimal number, or None when ``s`` is not one."""
    m = _NUMBER_RE.match(s)
    if not m:
        return None
    sign, whole, frac = m.group(1), m.group(2), m.group(3)
    if not whole and not frac:
        return None
    whole = whole.replace(",", "").lstrip("0") or "0"
    frac = (frac or "").rstrip("0")
    out = whole + ("." + frac if frac else "")
    if sign == "-" and out != "0":
        out = "-" + out
    return out


def normalize_answer(answer: str) -> str:
    """The canonical string of an extracted answer (see the module docstring for every rule).

    ``"$\\dfrac{1}{2}$."`` -> ``"\\frac{1}{2}"``; ``"1,000"`` -> ``"1000"``; ``"025"`` -> ``"25"``;
    ``"18.0"`` -> ``"18"``; ``"x = 5"`` -> ``"5"``; ``"\\left( 1, 2 \\right]"`` -> ``"(1,2]"``.
    The empty string means "no answer".
    """
    if not isinstance(answer, str):
        raise TypeError(f"normalize_answer expects a str, got {type(answer).__name__}")
    # One pass can expose another rule's pattern (a "{,}" inside "{...}"): repeat to a fixpoint,
    # which makes the function idempotent. Real answers settle in one or two passes.
    s = _normalize_once(answer)
    for _ in range(_MAX_PASSES):
        again = _normalize_once(s)
        if again == s:
            break
        s = again
    return s


_MAX_PASSES = 8


def _normalize_once(answer: str) -> str:
    s = _UNICODE_RE.sub(lambda m: _UNICODE[m.group(0)], answer)
    s = _strip_wrappers(s)
    s = _sub(_SPACING_RE, " ", s)
    s = _FRAC_CMD_RE.sub(r"\\frac", s)
    s = _BINOM_CMD_RE.sub(r"\\binom", s)
    for pattern, repl in _REL_ALIASES:
        s = pattern.sub(repl, s)
    s = _DEGREE_RE.sub("", s)
    s = _sub(_PERCENT_RE, "", s)
    s = _sub(_DOLLAR_SIGN_RE, "", s)
    s = s.replace("{,}", ",")
    # A trailing \text{unit} after a value goes; other \text{X} are unwrapped.
    m = _UNIT_RE.search(s)
    if m and m.start() > 0 and s[: m.start()].strip():
        s = s[: m.start()]
    prev = None
    while prev != s:
        prev = s
        s = _TEXT_UNWRAP_RE.sub(r"\1", s)
    s = _WS_RE.sub("", s)
    s = _strip_wrappers(s)
    s = _FRAC_SHORT_RE.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_SHORT1_RE.sub(r"\\frac{\1}{", s)
    s = _FRAC_SHORT2_RE.sub(r"\\frac\1{\2}", s)
    s = _SQRT_SHORT_RE.sub(r"\\sqrt{\1}", s)
    s = _SUPSUB_BRACE_RE.sub(r"\1\2", s)
    m = _CHOICE_RE.match(s)
    if m:
        s = m.group(1)
    m = _ASSIGN_RE.match(s)
    if m and not _RELATION_RE.search(m.group(1)):
        s = _strip_wrappers(m.group(1))
    number = _normalize_number(s)
    if number is not None:
        return number
    m = _SLASH_FRAC_RE.match(s)
    if m:
        num = _normalize_number(m.group(2))
        den = _normalize_number(m.group(3))
        return f"{m.group(1)}\\frac{{{num}}}{{{den}}}"
    m = _NEG_NUM_FRAC_RE.match(s)
    if m:
        s = f"-\\frac{{{m.group(1)}}}{{{m.group(2)}}}"
    return s


def rational_value(canonical: str) -> Fraction | None:
    """The exact value of a canonical answer that is a plain rational number, else None.

    Recognized: integers, decimals, ``\\frac{a}{b}`` (optionally negative) and mixed numbers
    ``a\\frac{b}{c}`` = a + b/c (MATH's convention, and math-verify's reading too). Everything
    else (surds, pi, expressions, sets...) is None and goes to math-verify. A number with more than
    :data:`~ttscale.limits.MAX_DIGITS` digits is None too (:func:`is_oversized_number` tells it
    apart): it is compared as a string, never parsed.
    """
    if _INT_RE.match(canonical) or _DEC_RE.match(canonical):
        return parse_fraction(canonical)
    m = _FRAC_RE.match(canonical) or _MIXED_RE.match(canonical)
    if not m:
        return None
    parts = [parse_int(g) for g in m.groups()[1:]]
    if any(p is None for p in parts) or parts[-1] == 0:
        return None
    value = Fraction(parts[-2], parts[-1]) + (parts[0] if len(parts) == 3 else 0)
    return -value if m.group(1) else value


_HUGE_POWER_RE = re.compile(r"\^\{?-?\d{5,}")
"""An exponent of 10,000 or more: ``(x+1)^{1000000}`` costs sympy seconds and a gigabyte to expand."""


def is_oversized_number(canonical: str) -> bool:
    """An answer too big to reason about: a plain number (integer, decimal, fraction or mixed number)
    too long to parse, or an expression with an exponent of 10,000 or more. It equals only the same
    string (sympy would choke on it as ``int()`` does, or take seconds and a gigabyte to expand it)."""
    if _HUGE_POWER_RE.search(canonical):
        return True
    if len(canonical) <= MAX_DIGITS:
        return False
    return bool(_INT_RE.match(canonical) or _DEC_RE.match(canonical) or _FRAC_RE.match(canonical) or _MIXED_RE.match(canonical))


def is_decimal(canonical: str) -> bool:
    """Whether a canonical plain number is written with a decimal point (compared after rounding)."""
    return "." in canonical


def is_choice_letter(canonical: str) -> bool:
    """A single capital letter: a multiple-choice answer, equal only to the same letter."""
    return bool(_LETTER_RE.match(canonical))
