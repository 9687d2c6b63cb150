"""Answer equivalence classes: normalized strings first, math-verify on class representatives.

``AnswerClassifier.classify`` maps one problem's answers to class ids in three steps:

1. every answer becomes its canonical string (``normalize_answer``, cached per raw string);
   equal canonical strings are one class, with no further check;
2. (MATH mode) the canonical classes are merged greedily in first-seen order: each is compared
   with the representative of every group formed so far and joins the first equivalent one.
   Only representatives are compared, never pairs of samples, and equivalence is taken to be
   transitive through the representative;
3. a comparison is decided as cheaply as possible: plain rational numbers (integers, decimals,
   fractions, mixed numbers) exactly in Python; multiple-choice letters by identity; then, if
   both sides have a numeric value (evaluated once per canonical string by the worker), values
   that are clearly apart are unequal without a comparison; only what remains goes to
   math-verify's ``verify``. Every result is cached.

Plain integers and identical strings never reach sympy. Sympy runs in a worker process with a
hard timeout (see ``_pool``): a timeout counts as "not equivalent", is cached as such and is
counted in ``stats.timeouts``; it never hangs the caller, from any thread or process. An answer
whose parsing times out, or that takes part in ``POISON_AFTER`` timed-out comparisons, is then
equal to nothing but itself (no more worker calls for it).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from fractions import Fraction
from typing import Annotated, Any, NamedTuple

import numpy as np
from pydantic import Field

from ttscale.answers import _pool
from ttscale.answers.normalize import (
    is_choice_letter,
    is_decimal,
    is_oversized_number,
    normalize_answer,
    rational_value,
)
from ttscale.errors import ConfigError
from ttscale.validation import CheckedModel, Float, Int

__all__ = ["EquivalenceMode", "EquivalenceConfig", "AnswerStats", "AnswerClassifier"]


class EquivalenceMode(str, Enum):
    """How two canonical answers are compared."""

    MATH = "math"
    """Mathematical equivalence (exact rationals in Python, math-verify for the rest)."""
    STRING = "string"
    """Equal canonical strings (``normalize_answer``) only; never starts sympy."""


class EquivalenceConfig(CheckedModel):
    """How answers are compared. Frozen and hashable (a cache key, sent to worker processes);
    invalid values raise ``ConfigError`` naming the parameter."""

    mode: EquivalenceMode = EquivalenceMode.MATH
    """``math`` (default) or ``string``; a plain string is accepted and converted."""
    timeout_seconds: Annotated[Float, Field(gt=0)] = 2.0
    """Wall-clock limit of one math-verify call (parsing one answer, or comparing two), in
    seconds, > 0. On timeout the worker process is killed and the pair counts as not equivalent."""
    float_rounding: Annotated[Int, Field(ge=0, le=15)] = 6
    """Decimal places kept when a decimal number is compared with another number (math-verify's
    ``float_rounding``): with 6, ``0.333333`` equals ``1/3`` but ``0.33`` does not. 0..15."""
    cache_size: Annotated[Int, Field(ge=1)] = 200_000
    """Entries kept in each cache (raw -> canonical string, numeric values, pair verdicts), >= 1.
    The oldest tenth is dropped when a cache is full."""


@dataclass
class AnswerStats:
    """Counters for reporting (cumulative over the classifier's life)."""

    answers: int = 0
    """Answers passed to ``classify`` (None included)."""
    normalize_calls: int = 0
    """Raw strings normalized (canonical-string cache misses)."""
    normalize_cache_hits: int = 0
    """Raw strings whose canonical string came from the cache."""
    fast_decisions: int = 0
    """Comparisons decided in Python: two plain rationals, or a multiple-choice letter."""
    pruned_by_value: int = 0
    """Comparisons ruled out by the two answers' signatures (e.g. numeric values clearly apart)."""
    pair_cache_hits: int = 0
    """Comparisons answered from the pair cache."""
    parse_calls: int = 0
    """Worker requests to parse one canonical string and compute its signature (once per string)."""
    verify_calls: int = 0
    """Worker requests to run math-verify's ``verify`` on a pair."""
    timeouts: int = 0
    """Worker requests that hit ``timeout_seconds`` (the worker was killed and restarted)."""
    errors: int = 0
    """Worker requests that failed (an exception in math-verify, or the worker died)."""
    over_budget: int = 0
    """Comparisons left to string equality because ``classify``'s deadline had passed."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Info(NamedTuple):
    value: Fraction | None
    decimal: bool
    letter: bool
    oversized: bool
    """A number too long to parse (ttscale.limits.MAX_DIGITS): equal only to the same string."""


_TIMED_OUT = object()
POISON_AFTER = 2
"""Timeouts after which an answer counts as unparseable (equal to nothing but itself): a
pathological answer costs at most this many timeouts, not one per class it meets."""
_MISSING = object()


class _Cache:
    """A dict with a size bound (drops the oldest tenth when full); safe to share between threads."""

    __slots__ = ("_data", "_max", "_lock")

    def __init__(self, max_size: int) -> None:
        self._data: dict[Hashable, Any] = {}
        self._max = max_size
        self._lock = threading.Lock()

    def get(self, key: Hashable, default: Any = _MISSING) -> Any:
        return self._data.get(key, default)

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            data = self._data
            if key not in data and len(data) >= self._max:
                for old in list(itertools.islice(data, max(1, self._max // 10))):
                    del data[old]
            data[key] = value

    def __len__(self) -> int:
        return len(self._data)


_DEFAULT_CONFIG = EquivalenceConfig()


class AnswerClassifier:
    """Answer equivalence classes, equivalence and correctness under one ``EquivalenceConfig``.

    Reuse one classifier across problems: its caches (canonical strings, numeric values, pair
    verdicts) make repeated answers cheap. Safe to call from several threads; picklable (a copy
    starts with empty caches).
    """

    def __init__(self, config: EquivalenceConfig = _DEFAULT_CONFIG) -> None:
        if not isinstance(config, EquivalenceConfig):
            raise ConfigError("config", config, "an EquivalenceConfig")
        self.config = config
        self.stats = AnswerStats()
        self._init_state()

    def _init_state(self) -> None:
        size = self.config.cache_size
        self._stats_lock = threading.Lock()
        self._canon = _Cache(size)
        self._info = _Cache(size)
        self._values = _Cache(size)
        self._pairs = _Cache(size)
        self._strikes = _Cache(size)
        self._local = threading.local()  # the deadline of the classify call running in this thread

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = state["config"]
        self.stats = AnswerStats()
        self._init_state()

    def __repr__(self) -> str:
        return f"AnswerClassifier({self.config!r})"

    # -- public API -------------------------------------------------------------------------

    def canonical(self, answer: str) -> str:
        """``normalize_answer(answer)``, cached."""
        c = self._canon.get(answer)
        if c is _MISSING:
            c = normalize_answer(answer)
            self._canon.put(answer, c)
            self._count("normalize_calls")
        else:
            self._count("normalize_cache_hits")
        return c

    def classify(self, answers: Sequence[str | None], *, deadline: float | None = None) -> tuple[np.ndarray, list[str]]:
        """Class id per answer (int64; -1 for None or an answer that normalizes to nothing) and
        the representative (canonical string of the first member) of each class.

        Ids are 0..C-1 in order of first appearance. ``deadline`` (a ``time.monotonic()`` value):
        once past it, the comparisons that would need math-verify are left to string equality
        (counted in ``stats.over_budget``; a call already running may take up to
        ``timeout_seconds`` more), so pathological answers cannot hold a caller with a time budget.
        """
        self._local.deadline = deadline
        try:
            return self._classify(answers)
        finally:
            self._local.deadline = None

    def _classify(self, answers: Sequence[str | None]) -> tuple[np.ndarray, list[str]]:
        n = len(answers)
        string_class = np.full(n, -1, dtype=np.int64)
        index: dict[str, int] = {}
        reps: list[str] = []
        canon_get = self._canon.get
        hits = 0
        for i, answer in enumerate(answers):
            if answer is None:
                continue
            if not isinstance(answer, str):
                raise TypeError(f"answers[{i}] is a {type(answer).__name__}; expected str or None")
            c = canon_get(answer)
            if c is _MISSING:
                c = self.canonical(answer)
            else:
                hits += 1
            if not c:
                continue
            j = index.get(c)
            if j is None:
                j = index[c] = len(reps)
                reps.append(c)
            string_class[i] = j
        self._count("answers", n)
        self._count("normalize_cache_hits", hits)
        if self.config.mode is EquivalenceMode.STRING or len(reps) <= 1:
            return string_class, reps
        group_of, group_reps = self._merge(reps)
        ids = np.where(string_class >= 0, group_of[np.maximum(string_class, 0)], -1).astype(np.int64)
        return ids, group_reps

    def equivalent(self, a: str, b: str) -> bool:
        """Whether two answers are the same (symmetric in intent; math-verify sees ``a`` as gold).

        An answer that normalizes to nothing is equivalent to nothing.
        """
        ca, cb = self.canonical(a), self.canonical(b)
        return bool(ca) and bool(cb) and self._equivalent_canon(ca, cb)

    def is_correct(self, answer: str | None, reference: str) -> bool:
        """Whether ``answer`` matches the ``reference`` (the gold side of math-verify). None is wrong."""
        if answer is None:
            return False
        return self.equivalent(reference, answer)

    # -- internals --------------------------------------------------------------------------

    def _count(self, name: str, k: int = 1) -> None:
        if k:
            with self._stats_lock:
                setattr(self.stats, name, getattr(self.stats, name) + k)

    def _info_of(self, c: str) -> _Info:
        info = self._info.get(c)
        if info is _MISSING:
            value = rational_value(c)
            oversized = value is None and is_oversized_number(c)
            info = _Info(value, value is not None and is_decimal(c), is_choice_letter(c), oversized)
            self._info.put(c, info)
        return info

    def _merge(self, reps: list[str]) -> tuple[np.ndarray, list[str]]:
        """Greedy grouping of canonical classes (first-seen order) by comparing representatives.

        A plain rational joins a group with the same exact value, else one whose rounded value
        matches when either side is a decimal, else the first equivalent non-rational group
        (all found through dicts, without comparing it to every rational group). Anything else
        is compared with every group's representative in order and joins the first match.
        """
        r = self.config.float_rounding
        groups: list[str] = []
        decimal_group: list[bool] = []
        symbolic: list[int] = []  # groups whose representative is not a plain rational
        exact: dict[Fraction, int] = {}
        rounded: dict[Fraction, list[int]] = {}
        group_of = np.empty(len(reps), dtype=np.int64)
        for j, c in enumerate(reps):
            info = self._info_of(c)
            value = info.value
            g = -1
            if value is not None:
                g = exact.get(value, -1)
                if g < 0:
                    key = round(value, r)
                    for h in rounded.get(key, ()):
                        if info.decimal or decimal_group[h]:
                            self._count("fast_decisions")
                            g = h
                            break
                if g < 0:
                    for h in symbolic:
                        if self._equivalent_canon(groups[h], c):
                            g = h
                            break
            else:
                for h, rep in enumerate(groups):
                    if self._equivalent_canon(rep, c):
                        g = h
                        break
            if g < 0:
                g = len(groups)
                groups.append(c)
                decimal_group.append(info.decimal)
                if value is None:
                    symbolic.append(g)
            if value is not None:
                exact.setdefault(value, g)
                rounded.setdefault(round(value, r), []).append(g)
            group_of[j] = g
        return group_of, groups

    def _equivalent_canon(self, gold: str, target: str) -> bool:
        if gold == target:
            return True
        if self.config.mode is EquivalenceMode.STRING:
            return False
        ig, it = self._info_of(gold), self._info_of(target)
        if ig.value is not None and it.value is not None:
            self._count("fast_decisions")
            if ig.value == it.value:
                return True
            if ig.decimal or it.decimal:
                r = self.config.float_rounding
                return round(ig.value, r) == round(it.value, r)
            return False
        if ig.letter or it.letter or ig.oversized or it.oversized:
            self._count("fast_decisions")
            return False
        key = (gold, target)
        verdict = self._pairs.get(key)
        if verdict is _MISSING:
            verdict = self._pairs.get((target, gold))
        if verdict is not _MISSING:
            self._count("pair_cache_hits")
            return verdict
        deadline = getattr(self._local, "deadline", None)
        if deadline is not None and time.monotonic() > deadline:
            self._count("over_budget")
            return False  # not cached: another call, with time, may decide it
        sg, st = self._signature(gold), self._signature(target)
        if sg is _TIMED_OUT or st is _TIMED_OUT:
            verdict = False  # it could not even be parsed in time
        elif self._apart(sg, st):
            self._count("pruned_by_value")
            verdict = False
        else:
            verdict = self._verify(gold, target)
            if verdict is _TIMED_OUT:
                self._blame(gold)
                self._blame(target)
                verdict = False
        self._pairs.put(key, verdict)
        return verdict

    def _blame(self, c: str) -> None:
        """Count a timeout against an answer; at POISON_AFTER it is treated as unparseable."""
        n = self._strikes.get(c, 0) + 1
        self._strikes.put(c, n)
        if n >= POISON_AFTER:
            self._values.put(c, _TIMED_OUT)

    def _apart(self, a: Any, b: Any) -> bool:
        """Whether two signatures prove the answers unequal under math-verify (else: verify).

        Numbers (one-letter variables set to a fixed point) further apart than math-verify's
        rounding and float error allow; a number against a set of two or more elements, an
        interval, the empty set or an infinity; infinities of opposite sign; finite sets or
        tuples of different sizes. (A one-element set is its element: math-verify says {5} = 5.)
        """
        if a is None or b is None:
            return False
        ka, kb = a[0], b[0]
        if ka == "num" and kb == "num":
            x, y = a[1], b[1]
            tolerance = 2.0 * 10.0 ** -self.config.float_rounding + 1e-9 * max(1.0, abs(x), abs(y))
            return abs(x - y) > tolerance
        if ka == "inf" and kb == "inf":
            return a[1] != b[1]
        if ka == "set" and kb == "set":  # math-verify compares finite sets element by element
            return a[1] != b[1]
        return "num" in (ka, kb) and ka != kb

    def _signature(self, c: str) -> Any:
        """A canonical answer's signature (see ``_worker``): a tuple, None (unknown) or _TIMED_OUT."""
        sig = self._values.get(c)
        if sig is not _MISSING:
            return sig
        info = self._info_of(c)
        if info.value is not None:
            try:
                sig = ("num", float(info.value))
            except OverflowError:
                sig = None
        else:
            self._count("parse_calls")
            sig = self._call(("sig", c, self.config.timeout_seconds / 2))
            if sig is _MISSING or not (sig is None or sig is _TIMED_OUT or _valid_signature(sig)):
                sig = None
        self._values.put(c, sig)
        return sig

    def _verify(self, gold: str, target: str) -> Any:
        """True, False, or _TIMED_OUT."""
        self._count("verify_calls")
        verdict = self._call(("verify", gold, target, self.config.float_rounding))
        return verdict if verdict is _TIMED_OUT else verdict is True

    def _call(self, message: tuple) -> Any:
        """The worker's answer, _TIMED_OUT, or _MISSING (an error), with the stats updated."""
        try:
            status, payload = _pool.pool().call(message, self.config.timeout_seconds)
        except _pool.WorkerTimeout:
            self._count("timeouts")
            return _TIMED_OUT
        except _pool.WorkerDied:
            self._count("errors")
            return _MISSING
        if status != "ok":
            self._count("errors")
            return _MISSING
        return payload



def _valid_signature(sig: Any) -> bool:
    if not isinstance(sig, tuple) or not sig:
        return False
    if sig[0] == "num":
        return len(sig) == 2 and isinstance(sig[1], float) and math.isfinite(sig[1])
    if sig[0] == "set":
        return len(sig) == 2 and isinstance(sig[1], int)
    return sig[0] in ("inf", "interval", "empty")
