"""Per-question allocation of a global sample budget: static (from pilots) and online (in rounds).

The numeric core is pure: vote counts per question in, how many samples each question gets out.
The driving loop (:func:`ttscale.sampling.allocation.run_allocation`) sits at the edge, in the
sampling layer, and talks to any sampler (a live backend or ``ReplaySampler``), so the same
allocator runs against a model server and against a bank.

The quantity both allocators work with is the *flip probability* of a question: the posterior
probability that its current leader is not the leader after the full horizon of K samples (the
answer majority@K would give). With v1 >= v2 the top two counts, n samples drawn and m = K - n
to come, the leader's share among top-two votes is theta ~ Beta(v1+1, v2+1) and a fraction
s = (v1+v2+1)/(n+2) of the coming samples lands in the top two; the final margin is then about
normal with mean d + M (2 mu - 1) and variance M (1 - (2 mu - 1)^2) + 4 M^2 var(theta), M = m s,
d = v1 - v2 (ties count half). A question whose flip probability is below ``settle`` is settled;
a question whose vote is spread over many answers (top share at most ``hopeless_share`` after
``hopeless_after`` samples) is hopeless: neither gets more samples.

* :class:`OnlineAllocator` (Blend-ASC style): a pilot everywhere, then rounds; each round the
  next samples go to the open questions with the largest flip probability per unit cost.
* :class:`StaticAllocator`: from the pilot alone, the remaining budget is split greedily by the
  expected marginal gain per unit cost (gain = the fall of the flip probability, from a normal
  model of the vote at each added sample).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator, Field, PrivateAttr
from scipy.special import betaln, ndtr

from ttscale.errors import ConfigError
from ttscale.validation import CheckedModel, Float, Int, check_count

__all__ = [
    "OnlineAllocator",
    "StaticAllocator",
    "flip_probability",
    "fit_concentration",
    "top_two",
]


def top_two(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(v1, v2): the largest and second largest count of each row of a (Q, C) matrix."""
    counts = np.asarray(counts)
    if counts.shape[1] == 0:
        z = np.zeros(counts.shape[0], dtype=counts.dtype)
        return z, z
    if counts.shape[1] == 1:
        return counts[:, 0], np.zeros(counts.shape[0], dtype=counts.dtype)
    part = -np.partition(-counts, 1, axis=1)
    return part[:, 0], part[:, 1]


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(32)
_NODES = (_NODES + 1.0) / 2.0
_WEIGHTS = _WEIGHTS / 2.0


def flip_probability(
    v1: np.ndarray, v2: np.ndarray, n: np.ndarray, horizon: int | np.ndarray, prior: tuple[float, float] = (1.0, 1.0)
) -> np.ndarray:
    """Posterior probability that the current leader is not the leader after ``horizon`` samples (module doc).

    ``prior`` = (a0, b0) pseudo-votes of the leader and of its rival: theta ~ Beta(v1 + a0, v2 + b0).
    (1, 1) is the uniform prior of ASC; :func:`fit_concentration` gives the empirical-Bayes
    (0, alpha) of a Dirichlet process whose unseen answers all count as the rival.
    The leader's share theta of top-two votes is integrated over its Beta posterior
    (Gauss-Legendre, 32 nodes); given theta, the M = (horizon - n) s coming top-two votes move the
    margin d = v1 - v2 by a normal with mean M (2 theta - 1) and variance 4 M theta (1 - theta)
    (ties count half). Without a vote yet the flip probability is 1.
    """
    v1 = np.asarray(v1, dtype=float)
    v2 = np.asarray(v2, dtype=float)
    n = np.asarray(n, dtype=float)
    v1, v2, n = np.broadcast_arrays(v1, v2, n)
    m = np.maximum(np.asarray(horizon, dtype=float) - n, 0.0)
    a0, b0 = float(prior[0]), float(prior[1])
    a, b = np.maximum(v1 + a0, 1e-9), np.maximum(v2 + b0, 1e-9)
    s = np.minimum((v1 + v2 + a0 + b0) / np.maximum(n + a0 + b0, 1e-9), 1.0)
    M = (m * s)[..., None]
    d = (v1 - v2)[..., None]
    x = _NODES
    logdens = (a[..., None] - 1) * np.log(x) + (b[..., None] - 1) * np.log1p(-x) - betaln(a, b)[..., None]
    dens = np.exp(logdens) * _WEIGHTS
    sd = 2.0 * np.sqrt(M * x * (1 - x))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (d + M * (2 * x - 1) - 0.5) / sd
    lose = np.where(sd > 0, ndtr(-z), np.where(d > 0, 0.0, 0.5))
    flip = (dens * lose).sum(axis=-1) / np.maximum(dens.sum(axis=-1), 1e-300)
    return np.where(v1 > 0, np.clip(flip, 0.0, 1.0), 1.0)


def decision_accuracy(v1: np.ndarray, v2: np.ndarray, n: np.ndarray, extra: np.ndarray, prior: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """(Q, J): posterior probability that the majority of n + extra[j] samples picks the better of the top two.

    theta ~ Beta(v1 + a0, v2 + b0) is the leader's share of top-two votes; a fraction s of samples
    lands in the top two; given theta, N = (n + j) s top-two votes pick the better one with
    probability Phi(|2 theta - 1| sqrt(N) / (2 sqrt(theta (1 - theta)))) (normal approximation).
    """
    v1 = np.asarray(v1, dtype=float)[:, None]
    v2 = np.asarray(v2, dtype=float)[:, None]
    n = np.asarray(n, dtype=float)[:, None]
    a, b = v1 + prior[0], v2 + prior[1]
    s = (v1 + v2 + prior[0] + prior[1]) / (n + prior[0] + prior[1])
    N = (n + np.asarray(extra, dtype=float)[None, :]) * s  # (Q, J)
    x = _NODES
    dens = np.exp((a - 1) * np.log(x) + (b - 1) * np.log1p(-x) - betaln(a, b)) * _WEIGHTS  # (Q, nodes)
    dens /= np.maximum(dens.sum(axis=1, keepdims=True), 1e-300)
    z = np.abs(2 * x - 1) / (2 * np.sqrt(x * (1 - x)))  # (nodes,)
    right = ndtr(z[None, None, :] * np.sqrt(N)[..., None])  # (Q, J, nodes)
    return (right * dens[:, None, :]).sum(axis=-1)


def fit_concentration(counts: np.ndarray) -> float:
    """Empirical-Bayes concentration alpha of a Dirichlet process over each question's answers.

    Maximizes the pooled leave-one-out likelihood of every answered sample given the rest of its
    question's votes: P(same class as c) = (v_c - 1) / (n - 1 + alpha), P(a class not among the
    rest) = alpha / (n - 1 + alpha). Small alpha: answers repeat (a strong model); large: they scatter.
    Returns a value in [1e-3, 1e3] (questions with fewer than two answered votes say nothing).
    """
    from scipy.optimize import minimize_scalar

    counts = np.asarray(counts, dtype=float)
    n = counts.sum(axis=1)
    use = n >= 2
    if not use.any():
        return 1.0
    counts, n = counts[use], n[use]
    repeat = (counts * np.log(np.maximum(counts - 1, 1.0)) * (counts >= 2)).sum()
    singles = float((counts == 1).sum())

    def nll(log_alpha: float) -> float:
        alpha = math.exp(log_alpha)
        return -(repeat + singles * log_alpha - float((n * np.log(n - 1 + alpha)).sum()))

    res = minimize_scalar(nll, bounds=(math.log(1e-3), math.log(1e3)), method="bounded")
    return float(math.exp(res.x))


def _array_to_list(value: Any) -> Any:
    """A numpy array of per-question costs as a list of Python numbers (validated as a tuple of
    Floats, which keeps the settings hashable)."""
    return value.tolist() if isinstance(value, np.ndarray) else value


Costs = Annotated[tuple[Annotated[Float, Field(gt=0)], ...] | None, BeforeValidator(_array_to_list)]
"""Cost per sample of each question (an array or sequence of positive numbers), or None: 1 each."""


@dataclass
class _Votes:
    """Vote counts of Q questions, growing as samples arrive (class ids are per question)."""

    counts: np.ndarray  # (Q, C) int
    n: np.ndarray  # (Q,) samples drawn, no-answers included

    @classmethod
    def empty(cls, questions: int, width: int = 8) -> "_Votes":
        return cls(np.zeros((questions, width), dtype=np.int64), np.zeros(questions, dtype=np.int64))

    def _grow(self, top: int) -> None:
        if top > self.counts.shape[1]:
            grown = np.zeros((self.counts.shape[0], max(top, 2 * self.counts.shape[1])), dtype=np.int64)
            grown[:, : self.counts.shape[1]] = self.counts
            self.counts = grown

    def add(self, q: int, classes: np.ndarray) -> None:
        """Samples of question ``q`` (class ids, ``NO_ANSWER`` for none)."""
        classes = np.asarray(classes, dtype=np.int64).ravel()
        self.n[q] += classes.size
        ok = classes[classes >= 0]
        if ok.size:
            self._grow(int(ok.max()) + 1)
            np.add.at(self.counts[q], ok, 1)

    def add_many(self, qs: np.ndarray, classes: np.ndarray) -> None:
        """One sample for each entry of ``qs`` (a question may repeat), class ``classes[i]``."""
        qs = np.asarray(qs, dtype=np.int64)
        classes = np.asarray(classes, dtype=np.int64)
        np.add.at(self.n, qs, 1)
        ok = classes >= 0
        if ok.any():
            self._grow(int(classes[ok].max()) + 1)
            np.add.at(self.counts, (qs[ok], classes[ok]), 1)


class OnlineAllocator(CheckedModel):
    """Blend-ASC-style rounds under a global budget: samples go where the vote is least settled.

    Use: ``start(Q)``, then ``next_round(budget_left)`` -> samples per question (int (Q,)),
    ``observe(q, classes)`` for what came back, until ``next_round`` returns all zeros.

    The settings are frozen fields, validated on construction (a bad value raises
    :class:`ConfigError` naming it); the votes of the current run are private state that
    ``start`` resets, so one allocator object is one run at a time.
    """

    max_per_question: Int = Field(ge=1)
    """K: the most samples any question gets (also the horizon of the flip probability)."""
    pilot: Int = Field(3, ge=1)
    """Samples every question gets first."""
    round_share: Float = Field(0.05, ge=0.0, le=1.0)
    """Share of the questions that get a sample in each round (at least one question)."""
    step: Int = Field(1, ge=1)
    """Samples a chosen question gets per round."""
    settle: Float = Field(0.01, ge=0.0, le=1.0)
    """A question whose flip probability is below this is settled (no more samples)."""
    hopeless_share: Float = Field(0.0, ge=0.0, le=1.0)
    """After ``hopeless_after`` samples, a question whose leader holds at most this share of its
    samples is hopeless (no more samples); 0 disables."""
    hopeless_after: Int = Field(8, ge=1)
    """Samples after which the hopeless test applies."""
    focus: Float = 0.0
    """Priorities are multiplied by ((v1 + v2) / n) ** focus: the share of samples in the top two.
    A vote spread over many answers rarely settles on the one that majority@K would pick, and
    when it does it is rarely the correct one; 0 ignores the spread."""
    prior: Literal["auto"] | tuple[Float, Float] = "auto"
    """Pseudo-votes (leader, rival) of the flip probability's Beta posterior, or ``"auto"``: the
    empirical-Bayes (0, alpha) of :func:`fit_concentration`, fitted once on the pilot votes of all
    questions (what a per-question rule cannot do: a strong model's 2 agreeing samples settle it)."""
    costs: Costs = None
    """Cost per sample of each question (e.g. its mean tokens); priorities are divided by it. None: 1."""

    # The run's state (not settings): votes so far, the prior fitted on the pilot, costs as an array.
    _votes: _Votes = PrivateAttr(default_factory=lambda: _Votes.empty(0))
    _prior_fit: tuple[float, float] | None = PrivateAttr(None)
    _cost_array: np.ndarray | None = PrivateAttr(None)

    @property
    def votes(self) -> _Votes:
        """Vote counts of the current run (since :meth:`start`)."""
        return self._votes

    @property
    def prior_(self) -> tuple[float, float] | None:
        """The Beta prior in use: ``prior``, or the fitted one once the pilot is in (None before)."""
        return self._prior_fit

    def start(self, questions: int) -> None:
        self._votes = _Votes.empty(check_count("questions", questions, 1))
        self._prior_fit = None if self.prior == "auto" else (float(self.prior[0]), float(self.prior[1]))
        self._cost_array = None
        if self.costs is not None:
            if len(self.costs) != questions:
                raise ConfigError("costs", "array", f"{questions} positive costs per sample, one per question")
            self._cost_array = np.asarray(self.costs, dtype=float)

    def observe(self, q: int, classes: Sequence[int] | np.ndarray) -> None:
        self._votes.add(q, np.asarray(classes, dtype=np.int64))

    def _prior(self) -> tuple[float, float]:
        if self._prior_fit is None:  # fitted once, when the pilot is in
            self._prior_fit = (0.0, fit_concentration(self._votes.counts))
        return self._prior_fit

    def open_mask(self) -> np.ndarray:
        """Questions that may still get samples (not capped, settled or hopeless)."""
        v = self.votes
        v1, v2 = top_two(v.counts)
        flip = flip_probability(v1, v2, v.n, self.max_per_question, self._prior())
        open_ = (v.n < self.max_per_question) & (flip >= self.settle)
        if self.hopeless_share > 0:
            open_ &= ~((v.n >= self.hopeless_after) & (v1 <= self.hopeless_share * v.n))
        return open_

    def priorities(self) -> np.ndarray:
        v = self.votes
        v1, v2 = top_two(v.counts)
        pr = flip_probability(v1, v2, v.n, self.max_per_question, self._prior())
        if self.focus:
            pr = pr * (np.divide(v1 + v2, np.maximum(v.n, 1)) ** self.focus)
        return pr / self._cost_array if self._cost_array is not None else pr

    def next_round(self, budget_left: int) -> np.ndarray:
        """Samples per question for the next round (sums to at most ``budget_left``; zeros: done)."""
        Q = self.votes.n.size
        out = np.zeros(Q, dtype=np.int64)
        budget_left = int(budget_left)
        if budget_left <= 0:
            return out
        short = (self.votes.n < min(self.pilot, self.max_per_question)).astype(np.int64)
        if short.any():  # the pilot first, one sample per question per round, while the budget lasts
            return short * (np.cumsum(short) <= budget_left)
        open_ = self.open_mask()
        if not open_.any():
            return out
        pr = np.where(open_, self.priorities(), -np.inf)
        m = max(1, int(round(self.round_share * Q)))
        m = min(m, int(open_.sum()))
        chosen = np.argsort(-pr, kind="stable")[:m]
        give = np.minimum(self.step, self.max_per_question - self.votes.n[chosen])
        cum = np.cumsum(give)
        give = np.minimum(give, np.maximum(budget_left - (cum - give), 0))
        out[chosen] = give
        return out


class StaticAllocator(CheckedModel):
    """From pilot votes, split the remaining budget by expected marginal gain per unit cost (greedy).

    The gain of a question's j-th extra sample is the rise of :func:`decision_accuracy`: the
    posterior probability that the majority of its n + j samples picks the better of its top two.
    Frozen settings, validated on construction; :meth:`allocate` is a pure function of its inputs.
    """

    max_per_question: Int = Field(ge=1)
    """The most samples any question gets (pilot included)."""
    costs: Costs = None
    """Cost per sample of each question; None: 1."""

    def allocate(self, counts: np.ndarray, n: np.ndarray, budget: int) -> np.ndarray:
        """Extra samples per question (int (Q,)): sums to min(budget, room), each n + extra <= K."""
        counts = np.asarray(counts)
        n = np.asarray(n, dtype=np.int64)
        Q = n.size
        budget = check_count("budget", budget, 0)
        K = self.max_per_question
        room = np.maximum(K - n, 0)
        costs = np.ones(Q) if self.costs is None else np.asarray(self.costs, dtype=float)
        if costs.shape != (Q,) or not np.all(costs > 0):
            raise ConfigError("costs", "array", f"{Q} positive costs per sample, one per question")
        v1, v2 = top_two(counts)
        settled = decision_accuracy(v1, v2, n, np.arange(K + 1))  # (Q, K+1) at n + j samples
        flip = 1.0 - settled
        gain = (flip[:, :-1] - flip[:, 1:]) / costs[:, None]  # (Q, K): gain of the (j+1)-th extra sample
        # Greedy over the concave envelope is approximated by a running minimum (gains never rise).
        gain = np.minimum.accumulate(np.maximum(gain, 0.0), axis=1)
        allowed = np.arange(K)[None, :] < room[:, None]
        gain = np.where(allowed, gain, -np.inf)
        total = int(min(budget, room.sum()))
        if total == 0:
            return np.zeros(Q, dtype=np.int64)
        flat = np.argsort(-gain, axis=None, kind="stable")[:total]
        return np.bincount(flat // K, minlength=Q).astype(np.int64)


def pilot_sizes(questions: int, pilot: int, max_per_question: int, budget: int) -> np.ndarray:
    """Pilot samples per question for a static allocation: ``pilot`` each when the budget allows,
    else as many full layers as it buys and one more sample for the first questions."""
    per = min(int(pilot), int(max_per_question), int(budget) // questions)
    out = np.full(questions, per, dtype=np.int64)
    if per < min(int(pilot), int(max_per_question)):
        out[: int(budget) - per * questions] += 1
    return out
