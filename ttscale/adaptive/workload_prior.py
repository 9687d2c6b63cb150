"""A workload-calibrated prior over question types, and the stopping rule that reads it.

:class:`~ttscale.adaptive.stopping.SettledMajority` asks "will the current leader still lead after
all K samples?" under one Dirichlet prior for every question. A workload is a *mixture*: most
questions unanimous, a few contested, some hopelessly scattered, and one Dirichlet cannot say
that. Here a question's type is the share (a, b, c) of its top answer, its second answer and
everything else (other answers and samples without one), on a fixed grid; the mixture weights
over the grid are fitted by EM (a nonparametric maximum-likelihood prior, NPMLE) from pilot vote
counts: a few samples of many questions, no labels needed.

Two rules read the mixture; both read only vote counts, so ``ttscale.adaptive.exact_replay``
scores them exactly:

* :class:`WorkloadSettled` stops when P(leader still leads at K | votes, mixture) >= ``confidence``:
  the posterior over types given (leader, runner-up, rest) votes and, for each type and each way
  the two observed classes map onto its top two, the exact chance that the remaining K - n samples
  leave the leader ahead (ties half). SettledMajority's question with the mixture as prior.
* :class:`WorkloadBayes` (the ``workload`` rule of ``ttscale simulate``) is backward induction
  over (n, v1, v2) under the mixture's predictive: continue while one more sample is expected to
  buy more than ``price`` of accuracy, an answer's share of its question type taken as its chance
  of being right (no labels). It stops hopeless, scattered questions early, which the hold
  probability alone never does.

Held out (``evals/unseen_allocation.py``: prior fitted on one half of a corpus's questions, rule
scored on the other half, settings chosen leaving one corpus out) ``WorkloadBayes`` needs fewer
mean samples than the live ``default`` on 4 of 5 corpora (not arith-default: 11.34 vs 11.26) and
is within 1.10x of the vote-only bound on 4 (Llama-2 GSM8K: 1.27x); ``WorkloadSettled`` was no
better than ``default`` (GPT-4: 2.50 vs 2.47), so the live default is unchanged.

Pure numpy; the fit is deterministic (EM on a fixed grid is a convex problem; a seed only picks the
questions when there are more than ``max_questions``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from ttscale.adaptive.stopping import SettledMajority, StoppingRule, VoteTrajectories
from ttscale.answers.candidates import Candidates
from ttscale.errors import ConfigError, EstimationError
from ttscale.validation import Float

__all__ = ["DEFAULT_PRICE", "WORKLOAD_RULE", "WorkloadBayes", "WorkloadPrior", "WorkloadSettled", "bayes_policy", "workload_rules", "pilot_counts", "type_grid"]

DEFAULT_PRICE = 6.5e-05
"""The price a live workload stop runs at unless told (``Budget.price``, ``ttscale serve --workload-price``):
the highest price whose stop reached majority@K - 0.1 point on every corpus (6.58e-05 on eight), each fold's
choice scored on the corpus left out (``evals/unseen_allocation.py``); 0.01, an earlier default, lost 1.6-19
points held out."""

SHARE_FLOOR = 0.002
"""Least share a grid type gives any of its three parts, so no vote pattern has probability 0."""


def type_grid(steps: int) -> np.ndarray:
    """(G, 3) question types (a, b, c): top answer share a >= second answer share b, rest c, on a
    grid of 1/``steps``, each share at least ``SHARE_FLOOR`` (renormalised)."""
    pts = [(i, j, steps - i - j) for i in range(steps + 1) for j in range(i + 1) if i + j <= steps and i > 0]
    g = np.maximum(np.array(pts, dtype=float) / steps, SHARE_FLOOR)
    return g / g.sum(axis=1, keepdims=True)


def pilot_counts(problems: Sequence[Candidates], m: int | None = None) -> np.ndarray:
    """(Q, 3) int (top answer, second answer, the rest incl. no-answer samples) of each question's
    first ``m`` samples (all of them when None); questions with fewer than ``m`` samples are skipped."""
    rows = []
    for p in problems:
        if m is not None and p.n < m:
            continue
        cls = np.asarray(p.classes)[: m if m is not None else p.n]
        votes = np.sort(np.bincount(cls[cls >= 0]))[::-1] if (cls >= 0).any() else np.zeros(0, dtype=np.int64)
        top = int(votes[0]) if votes.size else 0
        second = int(votes[1]) if votes.size > 1 else 0
        rows.append((top, second, cls.size - top - second))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def _log_shares(types: np.ndarray) -> np.ndarray:
    return np.log(np.clip(types, 1e-300, None))


def _sorted_loglik(counts: np.ndarray, types: np.ndarray) -> np.ndarray:
    """(Q, G) log P(sorted counts | type), up to a per-question constant: the observed top two
    classes are the type's top two in either order (both orders summed; once when tied)."""
    la = _log_shares(types)
    x1, x2, x3 = (counts[:, i:i + 1].astype(float) for i in range(3))
    ab = x1 * la[None, :, 0] + x2 * la[None, :, 1] + x3 * la[None, :, 2]
    ba = x2 * la[None, :, 0] + x1 * la[None, :, 1] + x3 * la[None, :, 2]
    tied = (counts[:, 0] == counts[:, 1])[:, None]
    return np.where(tied, ab, np.logaddexp(ab, ba))


class WorkloadPrior:
    """Empirical-Bayes mixture over question types, fitted by EM from pilot vote counts.

    sklearn-style: the constructor only stores parameters; :meth:`fit` sets ``types_`` (G, 3),
    ``weights_`` (G,), ``log_likelihood_``, ``n_iter_``, ``converged_`` and ``n_questions_``.

    Args:
        grid: steps of the share grid (1/grid apart; 20 gives 121 types), 2..100.
        max_iter: most EM iterations (>= 1).
        tol: stop when the mean log-likelihood per question improves by less than this.
        floor: share of the fitted weights spread evenly over the grid after the fit, in [0, 1):
            keeps every type possible, so a question unlike any pilot question (say a contested
            one when every pilot question was unanimous) still gets a sensible posterior.
        max_questions: pilot questions used at most (a seeded subsample beyond it).
        seed: seed of that subsample.
    """

    def __init__(self, grid: int = 20, max_iter: int = 2000, tol: float = 1e-7, floor: float = 1e-3,
                 max_questions: int = 100_000, seed: int = 0) -> None:
        self.grid = grid
        self.max_iter = max_iter
        self.tol = tol
        self.floor = floor
        self.max_questions = max_questions
        self.seed = seed

    def _check_params(self) -> None:
        if isinstance(self.grid, bool) or not isinstance(self.grid, (int, np.integer)) or not 2 <= self.grid <= 100:
            raise ConfigError("grid", self.grid, "an integer in 2..100 (steps of the share grid)")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise ConfigError("max_iter", self.max_iter, "an integer >= 1")
        if not (isinstance(self.tol, (int, float)) and np.isfinite(self.tol) and self.tol >= 0):
            raise ConfigError("tol", self.tol, "a finite number >= 0")
        if not (isinstance(self.floor, (int, float)) and 0 <= self.floor < 1):
            raise ConfigError("floor", self.floor, "a number in [0, 1)")
        if isinstance(self.max_questions, bool) or not isinstance(self.max_questions, (int, np.integer)) or self.max_questions < 1:
            raise ConfigError("max_questions", self.max_questions, "an integer >= 1")

    def fit(self, counts: Any) -> "WorkloadPrior":
        """Fit the mixture weights on ``counts``: (Q, C) vote counts per question and answer class
        (any order; a no-answer count belongs in the columns past the top two), e.g. from
        :func:`pilot_counts`.

        Raises:
            ConfigError: counts not a 2-D array of non-negative integers.
            EstimationError: no question with at least 2 samples (one vote says nothing about how
                a question's votes split).
        """
        self._check_params()
        arr = np.asarray(counts)
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ConfigError("counts", f"array of shape {arr.shape}", "a non-empty (questions, classes) array of vote counts")
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)) or (arr < 0).any() or np.any(arr != np.round(arr)):
            raise ConfigError("counts", "values", "non-negative integer vote counts")
        arr = np.sort(arr.astype(np.int64), axis=1)[:, ::-1]
        top = np.zeros((arr.shape[0], 3), dtype=np.int64)
        top[:, 0] = arr[:, 0]
        if arr.shape[1] > 1:
            top[:, 1] = arr[:, 1]
            top[:, 2] = arr[:, 2:].sum(axis=1)
        keep = top.sum(axis=1) >= 2
        if not keep.any():
            raise EstimationError(f"a workload prior needs pilot questions with at least 2 samples each; "
                                  f"all {arr.shape[0]} have fewer")
        top = top[keep]
        if top.shape[0] > self.max_questions:
            pick = np.random.default_rng(self.seed).choice(top.shape[0], self.max_questions, replace=False)
            top = top[np.sort(pick)]
        # Identical count rows share one likelihood row: EM over the distinct rows, weighted.
        rows, mult = np.unique(top, axis=0, return_counts=True)
        types = type_grid(int(self.grid))
        loglik = _sorted_loglik(rows, types)
        shift = loglik.max(axis=1, keepdims=True)
        lik = np.exp(loglik - shift)
        w = np.full(types.shape[0], 1.0 / types.shape[0])
        n = mult.sum()
        prev = -np.inf
        converged = False
        it = 0
        for it in range(1, int(self.max_iter) + 1):
            mix = lik @ w
            ll = float((mult * (np.log(mix) + shift[:, 0])).sum() / n)
            w = w * ((mult / mix) @ lik) / n
            w /= w.sum()
            if ll - prev < self.tol:
                converged = True
                break
            prev = ll
        w = (1 - self.floor) * w + self.floor / w.size
        self.types_ = types
        self.weights_ = w
        self.log_likelihood_ = ll
        self.n_iter_ = it
        self.converged_ = converged
        self.n_questions_ = int(n)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise EstimationError("WorkloadPrior is not fitted: call fit(counts) first")

    def components(self, min_weight: float = 0.0) -> tuple[tuple[float, float, float, float], ...]:
        """The fitted mixture as (weight, a, b, c) tuples (weights renormalised over the kept ones):
        what :class:`WorkloadSettled` stores."""
        self._check_fitted()
        keep = self.weights_ > min_weight
        w = self.weights_[keep] / self.weights_[keep].sum()
        return tuple((float(x), *map(float, t)) for x, t in zip(w, self.types_[keep]))

    def rule(self, confidence: float = 0.95) -> "WorkloadSettled":
        """The stopping rule on this prior at ``confidence``."""
        return WorkloadSettled(confidence, components=self.components())

    def mean_shares(self) -> np.ndarray:
        """(3,) mixture mean of (top, second, rest) shares."""
        self._check_fitted()
        return self.weights_ @ self.types_


def _lead_tables(types: np.ndarray, horizon: int) -> np.ndarray:
    """(G, 2, horizon + 1, horizon + 1) P(the leader ends ahead, ties half) for type g with the
    leader as its top (0) or second (1) answer, m more samples and a lead of d: the lead changes by
    +1 (leader's class), -1 (runner-up's) or 0 (anything else) per sample."""
    G, K = types.shape[0], int(horizon)
    out = np.zeros((G, 2, K + 1, K + 1))
    for s, (lead, chase) in enumerate(((0, 1), (1, 0))):
        pl, pr = types[:, lead:lead + 1], types[:, chase:chase + 1]
        po = 1 - pl - pr
        dist = np.zeros((G, 2 * K + 1))
        dist[:, K] = 1.0  # change of lead 0 after 0 samples (index K)
        for m in range(K + 1):
            if m:
                nxt = dist * po
                nxt[:, 1:] += dist[:, :-1] * pl
                nxt[:, :-1] += dist[:, 1:] * pr
                dist = nxt
            # P(d + change > 0) + P(d + change = 0) / 2, for d = 0..K
            above = np.cumsum(dist[:, ::-1], axis=1)[:, ::-1]  # above[:, i] = P(change index >= i)
            above = np.concatenate([above, np.zeros((G, 1))], axis=1)
            at = K - np.arange(K + 1)  # index of change = -d
            out[:, s, m, :] = above[:, at + 1] + 0.5 * dist[:, at]
    return out


def _unpack(components: tuple[tuple[float, float, float, float], ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log weights (G,), types (G, 3), log shares (G, 3)) of a component tuple."""
    arr = np.array(components, dtype=float)
    types = arr[:, 1:]
    return np.log(arr[:, 0] / arr[:, 0].sum()), types, _log_shares(types)


def _posterior(a: np.ndarray, b: np.ndarray, o: np.ndarray, logw: np.ndarray, la: np.ndarray) -> np.ndarray:
    """(U, G, 2) posterior of (type g, leader = its top [0] or second [1] answer) given leader,
    runner-up and other votes (a, b, o), each (U,)."""
    a, b, o = (np.asarray(x, dtype=float) for x in (a, b, o))
    lp = np.stack([a[:, None] * la[:, 0] + b[:, None] * la[:, 1],
                   b[:, None] * la[:, 0] + a[:, None] * la[:, 1]], axis=2) + (o[:, None] * la[:, 2] + logw)[:, :, None]
    lp -= lp.max(axis=(1, 2), keepdims=True)
    post = np.exp(lp)
    return post / post.sum(axis=(1, 2), keepdims=True)


class WorkloadSettled(StoppingRule):
    """Stop when P(the leader still leads after all K samples | votes, workload mixture) >= ``confidence``.

    ``components`` is the mixture of question types as (weight, top share, second share, rest
    share) tuples, from :meth:`WorkloadPrior.components`; the posterior over them, given the votes
    (leader, runner-up, everything else incl. samples without an answer), weighs each type's exact
    look-ahead. Needs the horizon (``traj.horizon``); without one it never stops early.
    """

    confidence: Float = Field(0.95, gt=0.5, lt=1.0)
    """Probability that the leader still leads at K, in (0.5, 1); higher spends more to be surer."""
    components: tuple[tuple[float, float, float, float], ...] = Field(min_length=1)
    """(weight, a, b, c) per question type: weights > 0, shares > 0 summing to 1."""
    name: ClassVar[str] = "workload-settled"
    param_name: ClassVar[str] = "confidence"
    grid: ClassVar[tuple[float, ...]] = SettledMajority.grid

    def model_post_init(self, context: Any) -> None:
        arr = np.array(self.components, dtype=float)
        if arr.ndim != 2 or arr.shape[1] != 4 or not np.all(np.isfinite(arr)) or (arr <= 0).any() \
                or not np.allclose(arr[:, 1:].sum(axis=1), 1.0, atol=1e-6):
            raise ConfigError("components", "values", "(weight, a, b, c) tuples with every value > 0 and a + b + c = 1")

    def score_key(self) -> tuple:
        return (self.name, self.components)

    def hold_probability(self, v1: np.ndarray, v2: np.ndarray, others: np.ndarray, remaining: np.ndarray) -> np.ndarray:
        """P(leader >= runner-up after ``remaining`` more samples, ties half) per entry (integer votes;
        ``others`` counts every sample that is neither, no-answer samples included)."""
        v1, v2, others, remaining = np.broadcast_arrays(*(np.asarray(x, dtype=np.int64) for x in (v1, v2, others, remaining)))
        if v1.size == 0:
            return np.zeros(v1.shape)
        keys = np.stack([v1.ravel(), v2.ravel(), others.ravel(), remaining.ravel()], axis=1)
        uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        logw, types, la = _unpack(self.components)
        a, b, o, m = (uniq[:, i] for i in range(4))
        d = np.clip(a - b, 0, None)
        tables = _lead_tables(types, int(max(m.max(), d.max())))
        post = _posterior(a, b, o, logw, la)
        hold = tables[:, :, m, d]  # (G, 2, U)
        values = np.einsum("ugs,gsu->u", post, hold)
        values = np.where(m <= 0, np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0)), values)
        return values[inverse.ravel()].reshape(v1.shape)

    def score(self, traj: VoteTrajectories) -> np.ndarray:
        """The hold probability after each sample (1 at the horizon, 0 without a horizon)."""
        if traj.horizon is None:
            return np.zeros(traj.v1.shape)
        n = np.broadcast_to(traj.t, traj.v1.shape)
        others = np.maximum(n - traj.v1 - traj.v2, 0)
        remaining = np.maximum(int(traj.horizon) - n, 0)
        return np.where(remaining == 0, 1.0, self.hold_probability(traj.v1, traj.v2, others, remaining))

    def stop_mask(self, traj: VoteTrajectories) -> np.ndarray:
        return self.stop_on_score(self.score(traj))

    def stop_on_score(self, score: np.ndarray) -> np.ndarray:
        return score >= self.confidence


@lru_cache(maxsize=64)
def bayes_policy(components: tuple[tuple[float, float, float, float], ...], price: float, horizon: int,
                 objective: str = "accuracy") -> np.ndarray:
    """bool (K + 1, K + 1, K + 1) continue? at (samples n, leader votes v1, runner-up votes v2):
    backward induction maximising P(the answer at the stop is majority@K's answer) - ``price`` x
    samples, the next sample predicted from the mixture posterior (leader, runner-up or anything
    else), stopping worth the hold probability. Never continues at the horizon."""
    K = int(horizon)
    logw, types, la = _unpack(components)
    rule = WorkloadSettled(0.75, components=components)
    go = np.zeros((K + 1, K + 1, K + 1), dtype=bool)
    def states(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        v1, v2 = np.array([(x, y) for x in range(n + 1) for y in range(min(x, n - x) + 1)]).T
        return v1, v2, n - v1 - v2

    def leader_share(v1: np.ndarray, v2: np.ndarray, o: np.ndarray) -> np.ndarray:
        post = _posterior(v1, v2, o, logw, la)
        return np.where(v1 > 0, np.einsum("ugs,gs->u", post, types[:, [0, 1]]), 0.0)

    value = np.ones((K + 2, K + 2))  # at n = K the answer is majority@K's: worth 1 (indexed [v1, v2])
    if objective == "accuracy":
        v1, v2, o = states(K)
        value[v1, v2] = leader_share(v1, v2, o)
    for n in range(K - 1, 0, -1):
        v1, v2, o = states(n)
        if objective == "accuracy":
            stop = leader_share(v1, v2, o)
        else:
            stop = rule.hold_probability(v1, v2, o, np.full_like(v1, K - n))
        post = _posterior(v1, v2, o, logw, la)
        p_lead = np.einsum("ugs,gs->u", post, types[:, [0, 1]])
        p_chase = np.einsum("ugs,gs->u", post, types[:, [1, 0]])
        up = np.where(v2 + 1 > v1, v2 + 1, v1), np.where(v2 + 1 > v1, v1, v2 + 1)
        cont = p_lead * value[v1 + 1, v2] + p_chase * value[up] + (1 - p_lead - p_chase) * value[v1, v2] - price
        go_on = cont > stop
        go[n, v1, v2] = go_on
        nxt = np.zeros((K + 2, K + 2))
        nxt[v1, v2] = np.where(go_on, cont, stop)
        value = nxt
    return go


class WorkloadBayes(StoppingRule):
    """The Bayes-optimal stop under a workload mixture: continue while the expected gain in agreement
    with majority@K from one more sample (and acting optimally after it) exceeds ``price``.

    Same prior and state as :class:`WorkloadSettled` (leader, runner-up, other votes; ``components``
    from :meth:`WorkloadPrior.components`); it weighs a flip's risk against the samples it would take
    to rule it out, where :class:`WorkloadSettled` looks only at the risk. Needs the horizon.
    """

    price: Float = Field(DEFAULT_PRICE, gt=0.0, lt=1.0)
    """Agreement with majority@K one more sample must buy, in (0, 1); lower spends more."""
    components: tuple[tuple[float, float, float, float], ...] = Field(min_length=1)
    """(weight, a, b, c) per question type: weights > 0, shares > 0 summing to 1."""
    objective: Literal["accuracy", "agreement"] = "accuracy"
    """What a stop is worth: agreement with majority@K (the hold probability), or accuracy with each
    answer's share of its question type taken as its chance of being right (no labels needed)."""
    name: ClassVar[str] = "workload-bayes"
    param_name: ClassVar[str] = "price"
    grid: ClassVar[tuple[float, ...]] = tuple(float(x) for x in np.geomspace(0.02, 1e-6, 49))

    def model_post_init(self, context: Any) -> None:
        WorkloadSettled(0.75, components=self.components)  # the same checks

    def stop_mask(self, traj: VoteTrajectories) -> np.ndarray:
        if traj.horizon is None:
            return np.zeros(traj.v1.shape, dtype=bool)
        K = int(traj.horizon)
        go = bayes_policy(self.components, float(self.price), K, self.objective)
        n = np.minimum(np.broadcast_to(traj.t, traj.v1.shape), K)
        v1, v2 = np.minimum(traj.v1, K), np.minimum(traj.v2, K)
        return ~go[n, v1, v2]

    def stops(self, v1: int, v2: int, n: int, horizon: int) -> bool:
        """Whether a question with leader / runner-up votes (v1, v2) after n samples (no-answer
        ones included) stops here; always at the horizon, never without a vote."""
        K = int(horizon)
        if n >= K:
            return True
        if v1 <= 0:
            return False
        return not bool(bayes_policy(self.components, float(self.price), K, self.objective)[n, v1, v2])

    def samples_to_stop(self, v1: int, v2: int, n: int, horizon: int) -> int:
        """Fewest further samples after which the rule could stop, however they vote (x more for the
        leader, y for the runner-up, the rest elsewhere), at most ``horizon - n``: the live solver
        draws that many at once, so it never passes the stop a one-at-a-time check would make."""
        left = max(int(horizon) - int(n), 0)
        for j in range(1, left + 1):
            for x in range(j + 1):
                for y in range(j - x + 1):
                    a, b = sorted((v1 + x, v2 + y), reverse=True)
                    if self.stops(a, b, n + j, horizon):
                        return j
        return left

    def live_stops(self, top: tuple[int, int, int], n: int, horizon: int) -> bool:
        """``ttscale.adaptive.stopping.LiveStop``: :meth:`stops` (the other answers' votes do not count)."""
        return self.stops(top[0], top[1], n, horizon)

    def live_samples_to_stop(self, top: tuple[int, int, int], n: int, horizon: int) -> int:
        """``ttscale.adaptive.stopping.LiveStop``: :meth:`samples_to_stop`."""
        return self.samples_to_stop(top[0], top[1], n, horizon)


WORKLOAD_RULE = "workload"
"""Name of :class:`WorkloadBayes` on a prior fitted on the bank's own votes, in simulation reports."""


LIVE_GRID = 20
"""Share-grid steps of the prior the live solver fits on a pilot (``Budget.from_pilot``): the setting
chosen held out across corpora (``evals/unseen_allocation.py``, objective accuracy, pilot K, grid 20 on
eight corpora; 40 on seven)."""


def fit_workload_prior(problems: Sequence[Candidates], horizon: int, grid: int = LIVE_GRID) -> WorkloadPrior:
    """A :class:`WorkloadPrior` on the first ``min(horizon, pool)`` votes of each pilot question that
    has them (the pool size 90% of questions have); a :class:`ConfigError` when fewer than two
    votes per question are there to fit on."""
    from ttscale.adaptive.simulate import default_max_samples

    m = min(int(horizon), default_max_samples([p.n for p in problems]))
    if m < 2:
        raise ConfigError("pilot", m, "a pilot with at least 2 samples per question to fit a workload prior on")
    return WorkloadPrior(grid=grid).fit(pilot_counts(problems, m))


def workload_rules(problems: Sequence[Candidates], horizon: int, grid: int = LIVE_GRID) -> list[WorkloadBayes] | None:
    """:class:`WorkloadBayes` at every price of its grid, on the prior :func:`fit_workload_prior` fits
    (no labels read), so simulate scores the rule the live solver runs from the same pilot bank.
    None when no question has 2 votes to fit on."""
    try:
        prior = fit_workload_prior(problems, horizon, grid)
    except (ConfigError, EstimationError):
        return None
    comps = prior.components()
    return [WorkloadBayes(p, components=comps) for p in WorkloadBayes.grid]
