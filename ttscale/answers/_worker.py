"""The sympy side of ``ttscale.answers``: a child process that parses and compares answers.

Run as a script (``python _worker.py``) by ``ttscale.answers._pool``; it imports nothing from
ttscale, only math-verify. It reads requests from stdin and writes replies to a private copy
of stdout (fd 1 itself is pointed at stderr, so a stray print cannot corrupt the protocol).
Each message is a 4-byte big-endian length and a pickle.

Requests and replies:

* startup: the worker sends ``("ready", pid)`` once math-verify is imported and warmed up;
* ``("sig", s, budget)`` -> ``("ok", signature)``: parse ``s`` (cached) and describe it for
  cheap pruning: ``("num", x)`` for a real number or a one-letter-variable expression (x is its
  value with every variable set to a fixed point derived from its name: equal expressions
  agree there), ``("inf", sign)``, ``("set", size)`` (two or more elements, or a tuple), ``("interval",)``,
  ``("empty",)``, else None. The
  evaluation has a soft time ``budget`` (SIGALRM, fine in this process) and gives None past it;
* ``("verify", gold, target, float_rounding)`` -> ``("ok", bool)``: math-verify's verdict.
* any exception -> ``("err", message)``.

math-verify's own timeouts (SIGALRM) are disabled here: the parent enforces the timeout by
killing this process. The worker exits when stdin closes (its parent went away).
"""

from __future__ import annotations

import os
import sys

# Running as a script puts this package directory first on sys.path: drop it so that none of
# the sibling modules can shadow a top-level module.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import logging  # noqa: E402
import pickle  # noqa: E402
import signal  # noqa: E402
import struct  # noqa: E402
import zlib  # noqa: E402

_HEADER = struct.Struct(">I")
_PARSE_CACHE_MAX = 20_000
_MEMORY_LIMIT_BYTES = 4 << 30


class _Budget(BaseException):  # not an Exception: sympy must not swallow it
    """The soft time budget of a signature evaluation ran out."""


def _read_exact(stream, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _send(out, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_HEADER.pack(len(data)) + data)
    out.flush()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    try:  # a runaway expression (2^{2^{2^{40}}}) should fail with MemoryError, not eat the machine
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY or soft > _MEMORY_LIMIT_BYTES:
            resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_LIMIT_BYTES, hard))
    except Exception:  # noqa: BLE001 - best effort (not every platform has RLIMIT_AS)
        pass

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout is disabled" is on purpose
    from latex2sympy2_extended.latex2sympy2 import NormalizationConfig
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    # math-verify's default LaTeX normalization strips "units" from the end of an answer, and its
    # unit list has one-letter entries (t, h, c, m, s, g, d, l, o): "4t" would equal "4". Answers
    # arrive here already normalized by ttscale (\text{ unit} suffixes gone), so units are kept.
    extraction = [
        LatexExtractionConfig(
            normalization_config=NormalizationConfig(
                basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all", equations=False
            )
        ),
        ExprExtractionConfig(),
    ]
    from sympy import (
        Basic,
        Expr,
        FiniteSet,
        Float,
        Interval,
        MatrixBase,
        S,
        Tuple,
        UnevaluatedExpr,
        oo,
    )
    from sympy.core.relational import Relational

    def _on_alarm(signum, frame):
        raise _Budget()

    signal.signal(signal.SIGALRM, _on_alarm)

    cache: dict[str, list] = {}

    def parsed(s: str) -> list:
        hit = cache.get(s)
        if hit is None:
            if len(cache) >= _PARSE_CACHE_MAX:
                cache.clear()
            hit = parse("$" + s + "$", extraction_config=extraction, parsing_timeout=None)
            cache[s] = hit
        return hit

    def signature(s: str, budget: float):
        exprs = [e for e in parsed(s) if isinstance(e, (Basic, MatrixBase))]
        if len(exprs) != 1:
            return None
        # The evaluation gets a soft time budget (this is the worker's main thread, so SIGALRM
        # works); the parent's hard timeout stays the backstop.
        signal.setitimer(signal.ITIMER_REAL, budget)
        try:
            return _signature(exprs[0])
        except _Budget:
            return None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _signature(e):
        if isinstance(e, FiniteSet) and len(e) == 1:  # math-verify equates {5} with 5
            return _signature(next(iter(e)))
        if isinstance(e, (FiniteSet, Tuple)) and len(e) >= 2:
            return ("set", len(e))
        if isinstance(e, Interval):
            return ("interval",)
        if e == S.EmptySet:
            return ("empty",)
        if not isinstance(e, Expr) or isinstance(e, Relational) or e.has(UnevaluatedExpr):
            return None
        if e == oo or e == -oo:
            return ("inf", 1 if e == oo else -1)
        symbols = e.free_symbols
        if any(len(sym.name) != 1 for sym in symbols):
            return None  # e.g. a \text{word} that math-verify compares letter by letter
        if symbols:  # equal expressions agree at any point: evaluate at a fixed one
            e = e.subs({sym: Float(_point(sym.name), 30) for sym in symbols})
        try:
            z = complex(e.evalf(30))
        except (OverflowError, TypeError, ValueError):  # beyond float range, or not a number
            return None
        if z != z or abs(z.real) == float("inf") or abs(z.imag) > 1e-12 * max(1.0, abs(z.real)):
            return None
        return ("num", float(z.real))

    def _point(name: str) -> float:
        return 0.5 + (zlib.crc32(name.encode()) % 1_000_003) / 1_000_003

    # Warm up the LaTeX grammar so the first real request is not charged for it.
    verify(parsed("\\frac{1}{2}"), parsed("0.5"), timeout_seconds=None)
    signature("\\sqrt{2}+x", 1.0)

    _send(out, ("ready", os.getpid()))
    while True:
        header = _read_exact(inp, _HEADER.size)
        if header is None:
            return
        body = _read_exact(inp, _HEADER.unpack(header)[0])
        if body is None:
            return
        try:
            request = pickle.loads(body)
            kind = request[0]
            if kind == "verify":
                _, gold, target, float_rounding = request
                reply = ("ok", bool(verify(parsed(gold), parsed(target), float_rounding=float_rounding, timeout_seconds=None)))
            elif kind == "sig":
                reply = ("ok", signature(request[1], request[2]))
            else:
                reply = ("err", f"unknown request {kind!r}")
        except _Budget:  # the alarm fired just as the evaluation finished
            reply = ("ok", None)
        except MemoryError:
            cache.clear()
            reply = ("err", "MemoryError")
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which counts it
            reply = ("err", f"{type(exc).__name__}: {exc}"[:500])
        _send(out, reply)


if __name__ == "__main__":
    main()
