"""Per-question stopping rules for self-consistency, as pure functions of a vote sequence.

A question's samples arrive one at a time; after t of them the vote is summarized by the top two
counts v1 >= v2, the number K of distinct answers and the current run of identical answers.
Samples without an answer (class ``NO_ANSWER``) cost a sample but never vote. A rule says, after
each sample, whether to stop; the answer is then the majority of the votes so far.

* :class:`ASC` (adaptive-consistency): stop when P(p1 > p2 | v1, v2) = I_{1/2}(v2+1, v1+1) >= threshold.
* :class:`ESC` (early-stopping self-consistency): samples come in windows of w; stop after the first
  window whose w samples all give the same answer.
* :class:`PPR1v1` (prior-posterior ratio, leader against runner-up): stop when the Beta(v1+1, v2+1)
  density at 1/2 is <= delta / max(K-1, 1) (with K = 1 the leader is tested against one rival).
* :class:`FirstToAhead`: stop when the leader is ``margin`` votes ahead of every other answer.
* :class:`SettledMajority`: stop when the leader will still lead after all K samples with
  probability >= confidence (a Dirichlet-multinomial look-ahead to the horizon K); the live default.

No rule stops before some answer has a vote. Every rule works on many sequences at once through
:func:`vote_trajectories` (arrays over (sequences, t)); ``stop_point`` is the one-sequence form.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import ClassVar, Protocol

import numpy as np
from pydantic import Field
from scipy.special import betainc, betaln, gammaln

from ttscale.errors import ConfigError
from ttscale.selection.ahead import DEFAULT_MARGIN, is_ahead
from ttscale.validation import CheckedModel, Float, Int

__all__ = [
    "ASC",
    "ESC",
    "PPR1v1",
    "FirstToAhead",
    "LiveStop",
    "SettledMajority",
    "settled_probability",
    "StoppingRule",
    "VoteTrajectories",
    "vote_trajectories",
    "default_rules",
    "DEFAULT_RULE",
    "RULES",
]


@dataclass(frozen=True)
class VoteTrajectories:
    """The vote after each sample of M sequences of length T (all arrays (M, T); column t is after t+1 samples)."""

    v1: np.ndarray
    """Votes of the leading answer."""
    v2: np.ndarray
    """Votes of the best other answer (0 when there is none)."""
    distinct: np.ndarray
    """Distinct answers seen (no-answer samples excluded)."""
    run: np.ndarray
    """Length of the current run of identical answered samples ending here (0 after a no-answer)."""
    credit: np.ndarray | None = None
    """Tie-credited correctness of the majority so far: (correct classes tied at the top) / (classes
    tied at the top), 0 without a vote. None when correctness was not given."""
    answered: np.ndarray | None = None
    """Samples with an answer so far (None: every sample so far had one)."""
    samples: np.ndarray | None = None
    """Samples consumed after each column when they are not simply 1..T (exact replay tables)."""
    horizon: int | None = None
    """The most samples a question may get (K), for rules that look ahead to it; None: unknown."""

    @property
    def t(self) -> np.ndarray:
        """(1, T) samples consumed after each column (or ``samples`` where given)."""
        if self.samples is not None:
            return self.samples
        return np.arange(1, self.v1.shape[1] + 1)[None, :]


def vote_trajectories(sequences: np.ndarray, class_correct: np.ndarray | None = None) -> VoteTrajectories:
    """Vote summaries after each sample of each sequence.

    Args:
        sequences: int (M, T) answer-class ids in arrival order (``NO_ANSWER`` = -1 for none).
        class_correct: bool (C,) per class, for the tie-credited correctness ``credit``; optional.
    """
    seq = np.asarray(sequences)
    if seq.ndim == 1:
        seq = seq[None, :]
    if seq.ndim != 2:
        raise ConfigError("sequences", f"shape {seq.shape}", "a (sequences, samples) array of class ids")
    M, T = seq.shape
    C = int(seq.max()) + 1 if seq.size else 0
    if class_correct is not None:
        class_correct = np.asarray(class_correct, dtype=bool)
        C = max(C, class_correct.shape[0])
    width = max(C, 1) + 1  # a spare column takes the no-answer samples
    if M * T * width > DENSE_VOTE_CELLS:
        # Many distinct answers: a dense (M, T, classes) count table would not fit; count sample by sample.
        return _vote_trajectories_sparse(seq, class_correct)
    counts = cumulative_votes(seq, C)
    v1, v2 = top_two(counts)
    distinct = (counts > 0).sum(axis=2)
    answered = np.cumsum(seq >= 0, axis=1)
    run = np.zeros((M, T), dtype=np.int32)
    if T:
        run[:, 0] = seq[:, 0] >= 0
        for j in range(1, T):
            same = (seq[:, j] == seq[:, j - 1]) & (seq[:, j] >= 0)
            run[:, j] = np.where(seq[:, j] < 0, 0, np.where(same, run[:, j - 1] + 1, 1))
    credit = None
    if class_correct is not None:
        flags = np.zeros(counts.shape[2], dtype=bool)
        flags[: class_correct.shape[0]] = class_correct
        top = (counts == v1[..., None]) & (v1[..., None] > 0)
        n_top = top.sum(axis=2)
        credit = np.where(n_top > 0, (top & flags).sum(axis=2) / np.maximum(n_top, 1), 0.0)
    return VoteTrajectories(v1=v1, v2=v2, distinct=distinct, run=run, credit=credit, answered=answered)


def cumulative_votes(seq: np.ndarray, classes: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(M, T, classes) votes of each class after each sample of each (M, T) sequence of class ids
    (``NO_ANSWER`` samples count for no class); each sample counts its weight when ``weights``
    (M, T) is given, else 1. Dense: callers check the size against ``DENSE_VOTE_CELLS`` first."""
    M, T = seq.shape
    width = max(int(classes), 1) + 1  # a spare column takes the no-answer samples
    cols = np.where(seq < 0, width - 1, seq)
    table = np.zeros((M, T, width), dtype=np.int32 if weights is None else float)
    np.put_along_axis(table, cols[..., None], 1 if weights is None else weights[..., None], axis=2)
    return np.cumsum(table, axis=1)[..., : width - 1]


def top_two(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The largest and second-largest count along the last axis (0 where there is no second class)."""
    if counts.shape[-1] >= 2:
        part = -np.partition(-counts, 1, axis=-1)
        return part[..., 0], part[..., 1]
    if counts.shape[-1] == 1:
        return counts[..., 0], np.zeros(counts.shape[:-1], dtype=counts.dtype)
    return np.zeros(counts.shape[:-1], dtype=counts.dtype), np.zeros(counts.shape[:-1], dtype=counts.dtype)


DEFAULT_ALPHA = 4.0
"""SettledMajority's pseudo-votes for the top two answers (chosen leaving one corpus out: evals/unseen_allocation.py)."""
DEFAULT_REST = 1.0
"""SettledMajority's pseudo-votes for all other answers together (chosen leaving one corpus out: evals/unseen_allocation.py)."""
DEFAULT_CONFIDENCE = 0.975
"""SettledMajority's confidence unless told (and the live ``Budget``'s): the lowest whose stop reached majority@K - 0.1
point on every corpus (0.9741 on eight; 0.96 on the seven before the embedded model's K = 40 bank at T = 0.7, where
0.96 lands 0.15 point short), each fold's choice scored on the corpus left out (evals/unseen_allocation.py)."""


DENSE_VOTE_CELLS = 50_000_000
"""Above this many (sequence, sample, class) cells, vote trajectories are counted one sample at a
time (memory O(classes) per sequence) instead of with a dense cumulative table."""


def _vote_trajectories_sparse(seq: np.ndarray, class_correct: np.ndarray | None) -> VoteTrajectories:
    """:func:`vote_trajectories` for sequences with very many distinct answers, in O(M T) time and
    O(classes) memory: the top two counts, distinct answers and tie-credited correctness are kept
    up to date as each sample arrives (counts per class, and how many classes hold each count)."""
    M, T = seq.shape
    v1 = np.zeros((M, T), dtype=np.int64)
    v2 = np.zeros((M, T), dtype=np.int64)
    distinct = np.zeros((M, T), dtype=np.int64)
    run = np.zeros((M, T), dtype=np.int64)
    credit = np.zeros((M, T)) if class_correct is not None else None
    for m in range(M):
        counts: dict[int, int] = {}
        freq: dict[int, int] = {}
        freq_ok: dict[int, int] = {}
        lead, a, b, d, r, prev = -1, 0, 0, 0, 0, None
        for t in range(T):
            c = int(seq[m, t])
            if c >= 0:
                x = counts.get(c, 0) + 1
                counts[c] = x
                ok = int(class_correct is not None and c < class_correct.shape[0] and bool(class_correct[c]))
                if x == 1:
                    d += 1
                else:
                    freq[x - 1] -= 1
                    freq_ok[x - 1] = freq_ok.get(x - 1, 0) - ok
                freq[x] = freq.get(x, 0) + 1
                freq_ok[x] = freq_ok.get(x, 0) + ok
                if c == lead:
                    a = x
                elif x > a:
                    lead, b, a = c, a, x
                elif x > b:
                    b = x
                r = r + 1 if c == prev else 1
            else:
                r = 0
            prev = c if c >= 0 else None
            v1[m, t], v2[m, t], distinct[m, t], run[m, t] = a, b, d, r
            if credit is not None and a > 0:
                credit[m, t] = freq_ok.get(a, 0) / freq[a]
    answered = np.cumsum(seq >= 0, axis=1)
    return VoteTrajectories(v1=v1, v2=v2, distinct=distinct, run=run, credit=credit, answered=answered)


class StoppingRule(CheckedModel):
    """Base class: ``stop_mask`` over trajectories; ``stop_index`` / ``stop_point`` derived from it.

    A rule is a frozen, hashable model of its one parameter (``ASC(0.9)`` or ``ASC(threshold=0.9)``);
    a bad value raises :class:`ConfigError` naming it.
    """

    name: ClassVar[str]
    param_name: ClassVar[str]
    grid: ClassVar[tuple[float, ...]]
    reads_order: ClassVar[bool] = False
    """Whether the rule reads the order of the votes, not only their counts (then
    ``ttscale.adaptive.exact_replay`` cannot score it exactly)."""

    @property
    def param(self) -> float:
        return getattr(self, self.param_name)

    def score_key(self) -> tuple | None:
        """For rules that stop where ``score(traj) >= param``: what the score depends on (exact tables
        cache scores by it across a parameter sweep); None for the others."""
        return None

    def stop_mask(self, traj: VoteTrajectories) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def stop_index(self, traj: VoteTrajectories) -> np.ndarray:
        """(M,) index of the column where each sequence stops (the last column if it never does)."""
        mask = self.stop_mask(traj) & (traj.v1 > 0)
        hit = mask.any(axis=1)
        return np.where(hit, mask.argmax(axis=1), traj.v1.shape[1] - 1)

    def stop_point(self, classes: np.ndarray, max_samples: int | None = None) -> int:
        """Samples one sequence consumes under this rule (at most ``max_samples``, default all of it,
        which is also the horizon of rules that look ahead to it)."""
        seq = np.asarray(classes)
        if max_samples is not None:
            seq = seq[:max_samples]
        if seq.size == 0:
            return 0
        traj = vote_trajectories(seq[None, :])
        return int(self.stop_index(replace(traj, horizon=seq.size))[0]) + 1

    @classmethod
    def with_grid(cls) -> list["StoppingRule"]:
        return [cls(p) for p in cls.grid]  # type: ignore[call-arg]


class ASC(StoppingRule):
    """Adaptive-consistency: stop when I_{1/2}(v2+1, v1+1) = P(p1 > p2 | v1, v2) >= ``threshold``."""

    threshold: Float = Field(0.95, gt=0.5, lt=1.0)
    """Posterior probability that the leader beats the runner-up, in (0.5, 1)."""
    name: ClassVar[str] = "asc"
    param_name: ClassVar[str] = "threshold"
    grid: ClassVar[tuple[float, ...]] = (0.75, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)

    def confidence(self, v1: np.ndarray, v2: np.ndarray) -> np.ndarray:
        return betainc(np.asarray(v2, float) + 1, np.asarray(v1, float) + 1, 0.5)

    def stop_mask(self, traj: VoteTrajectories) -> np.ndarray:
        return self.confidence(traj.v1, traj.v2) >= self.threshold


class ESC(StoppingRule):
    """Early-stopping self-consistency: windows of ``window`` samples; stop after a unanimous window."""

    window: Int = Field(5, ge=1)
    """Samples per window (>= 1); a window with a no-answer sample is not unanimous."""
    name: ClassVar[str] = "esc"
    param_name: ClassVar[str] = "window"
    reads_order: ClassVar[bool] = True
    grid: ClassVar[tuple[float, ...]] = (2, 3, 4, 5, 6, 8, 10)

    def stop_mask(self, traj: VoteTrajectories) -> np.ndarray:
        return (traj.t % self.window == 0) & (traj.run >= self.window)


class PPR1v1(StoppingRule):
    """Prior-posterior ratio, leader vs runner-up: stop when Beta(v1+1, v2+1) density at 1/2 <= delta / max(K-1, 1)."""

    delta: Float = Field(0.1, gt=0.0, lt=1.0)
    """Ratio bound in (0, 1): the posterior density of an even split, over the uniform prior's 1,
    must fall below it (divided among the K-1 rivals)."""
    name: ClassVar[str] = "ppr-1v1"
    param_name: ClassVar[str] = "delta"
    grid: ClassVar[tuple[float, ...]] = (0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01, 0.005, 0.002, 0.001)

    @staticmethod
    def log_density_at_half(v1: np.ndarray, v2: np.ndarray) -> np.ndarray:
        """log Beta(v1+1, v2+1) density at 1/2 = -(v1+v2) log 2 - log B(v1+1, v2+1)."""
        a, b = np.asarray(v1, float) + 1, np.asarray(v2, float) + 1
        return -(a + b - 2) * np.log(2.0) - betaln(a, b)

    def stop_mask(self, traj: VoteTrajectories) -> np.ndarray:
        bound = np.log(self.delta) - np.log(np.maximum(traj.distinct - 1, 1))
        return self.log_density_at_half(traj.v1, traj.v2) <= bound


class FirstToAhead(StoppingRule):
    """Stop when the leader has ``margin`` more votes than any other answer.

    The rule and its default are the ``first-to-ahead`` selector's (:mod:`ttscale.selection.ahead`),
    applied to whole vote trajectories.
    """

    margin: Int = Field(DEFAULT_MARGIN, ge=1)
    """Votes the leader must be ahead by (>= 1; 1 stops at the first vote)."""
    name: ClassVar[str] = "first-to-ahead"
    param_name: ClassVar[str] = "margin"
    grid: ClassVar[tuple[float, ...]] = (2, 3, 4, 5, 6, 7, 8, 10)

    def stop_mask(self, traj: VoteTrajectories) -> np.ndarray:
        return is_ahead(traj.v1, traj.v2, self.margin)


class LiveStop(Protocol):
    """A rule the live solver runs (``ttscale.live.solve``): it reads a question's (leader, runner-up,
    other) votes after n of at most ``horizon`` samples, and says how many to draw at once next."""

    def live_stops(self, top: tuple[int, int, int], n: int, horizon: int) -> bool:
        """Whether the question stops now."""
        ...

    def live_samples_to_stop(self, top: tuple[int, int, int], n: int, horizon: int) -> int:
        """The fewest further samples after which it could stop (drawn at once: the same stop as
        checking after every sample, in fewer round trips)."""
        ...


class SettledMajority(StoppingRule):
    """Stop when the current plurality will, with probability >= ``confidence``, still lead after all
    K samples (the horizon) -- i.e. when the remaining samples are unlikely to change majority@K.

    The remaining K - n samples are predicted from a Dirichlet posterior over (leader, runner-up,
    every other answer) with pseudo-votes ``alpha`` for each of the top two and ``rest`` for the
    others (Dirichlet-multinomial); a tie at K counts half. Unlike ASC, which asks whether the
    leader is the better answer with unlimited samples, this asks whether it is majority@K's
    answer, so close to the horizon a small lead is enough. Needs the horizon (``traj.horizon``);
    without one it never stops early. This is what the live solver's adaptive ``Budget`` runs.
    """

    confidence: Float = Field(DEFAULT_CONFIDENCE, gt=0.5, lt=1.0)
    """Probability that the leader still leads at K, in (0.5, 1); higher spends more to be surer."""
    alpha: Float = Field(DEFAULT_ALPHA, gt=0.0)
    """Dirichlet pseudo-votes of the leader and of the runner-up."""
    rest: Float = Field(DEFAULT_REST, gt=0.0)
    """Dirichlet pseudo-votes of all other answers together."""
    name: ClassVar[str] = "settled-majority"
    param_name: ClassVar[str] = "confidence"
    grid: ClassVar[tuple[float, ...]] = (0.6, 0.7, 0.8, 0.85, 0.9, 0.92, 0.93, 0.94, 0.95, 0.955, 0.96, 0.965, 0.97, 0.975,
                                         0.98, 0.985, 0.99, 0.995, 0.998, 0.999, 0.9995)

    def hold_probability(self, v1: np.ndarray, v2: np.ndarray, others: np.ndarray, remaining: np.ndarray) -> np.ndarray:
        """P(leader >= runner-up after ``remaining`` more samples, ties half) per entry. Counts may
        be fractional (signal-weighted votes); each distinct state is computed once."""
        v1, v2, others, remaining = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (v1, v2, others, remaining)))
        keys = np.stack([v1.ravel(), v2.ravel(), others.ravel(), remaining.ravel()], axis=1)
        uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        values = np.array([settled_probability(float(a), float(b), float(r), int(m), float(self.alpha), float(self.rest)) for a, b, r, m in uniq])
        return values[inverse.ravel()].reshape(v1.shape) if values.size else np.zeros(v1.shape)

    def score_key(self) -> tuple:
        """What :meth:`score` depends on (not the confidence)."""
        return (self.name, float(self.alpha), float(self.rest))

    def score(self, traj: VoteTrajectories) -> np.ndarray:
        """The hold probability after each sample (1 at the horizon, 0 without a horizon)."""
        if traj.horizon is None:
            return np.zeros(traj.v1.shape)
        n = np.broadcast_to(traj.t, traj.v1.shape)
        answered = n if traj.answered is None else traj.answered
        others = np.maximum(answered - traj.v1 - traj.v2, 0)
        remaining = np.maximum(int(traj.horizon) - n, 0)
        return np.where(remaining == 0, 1.0, self.hold_probability(traj.v1, traj.v2, others, remaining))

    def stop_mask(self, traj: VoteTrajectories) -> np.ndarray:
        return self.stop_on_score(self.score(traj))

    def stop_on_score(self, score: np.ndarray) -> np.ndarray:
        return score >= self.confidence

    def samples_to_stop(self, v1: int, v2: int, others: int, n: int, horizon: int) -> int:
        """Fewest further samples after which the rule could stop (if all go to the leader), at
        most ``horizon - n``: the live solver draws that many at once, which stops at exactly the
        sample a one-at-a-time check would (a vote for anyone else only delays the stop)."""
        left = max(int(horizon) - int(n), 0)
        for j in range(1, left + 1):
            if self.hold_probability(v1 + j, v2, others, left - j) >= self.confidence or j == left:
                return j
        return left

    def live_stops(self, top: tuple[int, int, int], n: int, horizon: int) -> bool:
        """:class:`LiveStop`: stop with (leader, runner-up, other) votes after ``n`` samples?"""
        return bool(self.hold_probability(*top, int(horizon) - int(n)) >= self.confidence)

    def live_samples_to_stop(self, top: tuple[int, int, int], n: int, horizon: int) -> int:
        """:class:`LiveStop`: :meth:`samples_to_stop` on (leader, runner-up, other) votes."""
        return self.samples_to_stop(*top, n, horizon)


@lru_cache(maxsize=200_000)
def settled_probability(v1: float, v2: float, others: float, m: int, alpha: float, rest: float) -> float:
    """P(v1 + x > v2 + y, ties half) when the next ``m`` samples split (x, y, rest) by a Dirichlet-
    multinomial with parameters (v1 + alpha, v2 + alpha, others + rest); counts may be fractional
    (weighted votes)."""
    if m <= 0:
        return 1.0 if v1 > v2 else 0.5 if v1 == v2 else 0.0
    x = np.arange(m + 1)[:, None]
    y = np.arange(m + 1)[None, :]
    z = m - x - y
    ok = z >= 0
    zc = np.where(ok, z, 0)
    a1, a2, a3 = v1 + alpha, v2 + alpha, others + rest
    log_p = (gammaln(m + 1) - gammaln(x + 1) - gammaln(y + 1) - gammaln(zc + 1)
             + gammaln(a1 + x) + gammaln(a2 + y) + gammaln(a3 + zc) - gammaln(a1 + a2 + a3 + m)
             - gammaln(a1) - gammaln(a2) - gammaln(a3) + gammaln(a1 + a2 + a3))
    p = np.where(ok, np.exp(log_p), 0.0)
    lead = (v1 + x) - (v2 + y)
    return float(p[lead > 0].sum() + 0.5 * p[lead == 0].sum())


RULES: dict[str, type[StoppingRule]] = {r.name: r for r in (ASC, ESC, PPR1v1, FirstToAhead, SettledMajority)}
"""Stopping rules by name."""


DEFAULT_RULE = "default"
"""Name of the live solver's rule in simulation reports: :class:`SettledMajority` with its default
priors, checked after every sample (what an adaptive ``Budget`` with its defaults does)."""


def default_rules() -> dict[str, list[StoppingRule]]:
    """The literature's rules (ASC, ESC, PPR-1v1, first-to-ahead) and the live ``default``, each
    with its parameter grid (loosest to strictest)."""
    rules = {name: cls.with_grid() for name, cls in RULES.items() if cls is not SettledMajority}
    rules[DEFAULT_RULE] = SettledMajority.with_grid()
    return rules

