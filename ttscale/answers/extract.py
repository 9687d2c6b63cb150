"""Final-answer extraction from a completion's text (plain regex and brace matching, no sympy).

Order of preference, each taking the *last* occurrence in the text:

1. ``\\boxed{...}`` / ``\\fbox{...}`` with nested (and escaped) braces; ``\\boxed 5`` too. A box
   whose braces never close (a truncated completion) is skipped, as is an empty box.
2. GSM8K's ``#### N`` (the rest of that line).
3. "the answer is X" / "answer: X" (case-insensitive): X is a ``$...$``/``\\(...\\)``/``\\[...\\]``
   formula when one follows, else the rest of the sentence.
4. The last number in the text (``-3``, ``1,000``, ``2.5``).

The result is the raw answer string (``"1,000"``, ``"$\\frac{1}{2}$"``); ``normalize_answer``
makes it canonical. None when nothing was found.
"""

from __future__ import annotations

import re

__all__ = ["extract_answer"]

_BOX_CMD_RE = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
_GSM_RE = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_IS_RE = re.compile(
    r"answer(?:\s+is|\s+was|\s*:|\s+would\s+be|\s+should\s+be)\s*:?[ \t]*(?:\*\*|__)?[ \t]*:?[ \t]*",
    re.IGNORECASE,
)
_SENTENCE_END_RE = re.compile(r"\.(?=\s|$)|\n")
_NUMBER_RE = re.compile(r"(?<![\w.])(?:-(?=\d))?(?:\d{1,3}(?:,\d{3})+(?![\d])|\d+)(?:\.\d+)?")


_TOKEN_RE = re.compile(r"[^\s$]+")
_BRACE_TOKEN_RE = re.compile(r"\\.|[{}]", re.DOTALL)


def _closing_braces(text: str, start: int) -> dict[int, int]:
    """Map from each ``{`` at or after ``start`` to its closing ``}`` (one pass; escapes skipped)."""
    stack: list[int] = []
    out: dict[int, int] = {}
    for m in _BRACE_TOKEN_RE.finditer(text, start):
        ch = m.group(0)
        if ch == "{":
            stack.append(m.start())
        elif ch == "}" and stack:
            out[stack.pop()] = m.start()
    return out


def _boxed(text: str) -> str | None:
    starts = [m.end() for m in _BOX_CMD_RE.finditer(text)]
    if not starts:
        return None
    closing: dict[int, int] | None = None
    for pos in reversed(starts):
        i = pos
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "{":
            if closing is None:
                closing = _closing_braces(text, starts[0])
            close = closing.get(i, -1)
            if close < 0:
                continue
            content = text[i + 1 : close].strip()
        else:  # "\boxed 5": one token
            m = _TOKEN_RE.match(text, i)
            content = m.group(0) if m else ""
        if content:
            return content
    return None


def _after_answer_is(rest: str) -> str | None:
    rest = rest.lstrip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if rest.startswith(left):
            end = rest.find(right, len(left))
            if end > len(left):
                return rest[len(left) : end].strip() or None
            return None
    m = _SENTENCE_END_RE.search(rest)
    out = rest[: m.start()] if m else rest
    out = out.strip().rstrip("*_").strip()
    return out or None


def extract_answer(text: str) -> str | None:
    """The final answer of a completion, or None when there is none (see the module docstring)."""
    if not isinstance(text, str):
        raise TypeError(f"extract_answer expects a str, got {type(text).__name__}")
    if not text:
        return None
    boxed = _boxed(text)
    if boxed is not None:
        return boxed
    gsm = [m.group(1).strip() for m in _GSM_RE.finditer(text)]
    for value in reversed(gsm):
        if value:
            return value
    for m in reversed(list(_ANSWER_IS_RE.finditer(text))):
        value = _after_answer_is(text[m.end() :])
        if value:
            return value
    numbers = _NUMBER_RE.findall(text)
    return numbers[-1] if numbers else None
