"""Majority-vote accuracy beyond the pilot: per-question Dirichlet posteriors over answer classes.

A pilot of n_i samples for question i gives votes ``v_ij`` for its observed answer classes,
``u_i`` samples without an answer (they fill a slot but never vote) and which class is correct.
The question's answer distribution gets the posterior

    p_i ~ Dirichlet(v_i1 + alpha, ..., v_iK + alpha,  u_i + alpha,  alpha_c [correct unseen],  theta [other unseen])

* every observed class, and the no-answer class, gets ``alpha`` extra pseudo-votes;
* ``alpha_c`` is the mass of the correct answer when the pilot has not seen it (the slot is
  absent once a pilot sample is correct);
* ``theta`` is the mass of wrong answers not seen yet. They are treated as all distinct
  (a weak model's stray answers rarely repeat): each such vote is a singleton class, which can
  win only a vote where every class has one vote.

maj@N is then the expected tie-credited majority of N fresh samples: Monte Carlo over
(p ~ posterior, votes ~ Multinomial(N, p)), vectorized over questions and draws, with common
random numbers across N so the predicted curve is smooth in N.

The three prior masses decide the extrapolation. ``"auto"`` (the default) calibrates them on the
pilot alone by maximizing the leave-one-out predictive likelihood of every pilot sample given the
question's other samples, pooled over questions: the prior that best predicts a *new* sample from
a few is the one that should be trusted to predict N new samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

from ..errors import ConfigError, EstimationError
from ._base import CurveModel, as_k, check_level, describe

_AUTO = "auto"
_LOG_BOUNDS = (np.log(1e-4), np.log(1e3))


@dataclass(frozen=True)
class MajorityData:
    """Pilot votes per question, padded: counts (Q, C), correct (Q, C), unanswered (Q,)."""

    counts: np.ndarray
    correct: np.ndarray
    unanswered: np.ndarray

    @property
    def n(self) -> np.ndarray:
        return self.counts.sum(axis=1) + self.unanswered

    def take(self, index: np.ndarray) -> "MajorityData":
        return MajorityData(self.counts[index], self.correct[index], self.unanswered[index])


def _pad(rows: Sequence[Any], dtype: Any, name: str) -> np.ndarray:
    arrs = [np.asarray(r) for r in rows]
    if any(a.ndim != 1 for a in arrs):
        raise ConfigError(name, "ragged rows", "one 1-D array per question")
    width = max((a.size for a in arrs), default=0)
    out = np.zeros((len(arrs), max(width, 1)), dtype=dtype)
    for i, a in enumerate(arrs):
        out[i, : a.size] = a
    return out


def as_majority_data(counts: Any, correct: Any, n: Any = None) -> MajorityData:
    """Validate pilot votes: ``counts`` and ``correct`` as (Q, C) arrays or ragged per-question lists,
    ``n`` (Q,) pilot samples per question including unanswered ones (default: the vote totals)."""
    if isinstance(counts, np.ndarray) and counts.ndim == 2:
        cnt = counts
    elif isinstance(counts, (list, tuple)):
        cnt = _pad(counts, np.float64, "counts")
    else:
        raise ConfigError("counts", describe(counts), "a (questions, classes) array or a list of per-question vote arrays")
    if isinstance(correct, np.ndarray) and correct.ndim == 2:
        cor = correct
    elif isinstance(correct, (list, tuple)):
        cor = _pad(correct, bool, "correct")
    else:
        raise ConfigError("correct", describe(correct), "a (questions, classes) boolean array or a list of per-question arrays")
    if cor.shape != cnt.shape:
        if isinstance(correct, (list, tuple)) and cor.shape[0] == cnt.shape[0] and cor.shape[1] <= cnt.shape[1]:
            cor = np.pad(cor, ((0, 0), (0, cnt.shape[1] - cor.shape[1])))
        else:
            raise ConfigError("correct", describe(correct), f"the shape of counts {cnt.shape}")
    cnt_f = np.asarray(cnt, dtype=float)
    if not np.all(np.isfinite(cnt_f)) or np.any(cnt_f < 0) or np.any(cnt_f != np.round(cnt_f)):
        raise ConfigError("counts", describe(counts), "non-negative whole vote counts")
    cnt_i = cnt_f.astype(np.int64)
    cor_b = np.asarray(cor)
    if cor_b.dtype != bool:
        if cor_b.size and not np.isin(cor_b, (0, 1)).all():
            raise ConfigError("correct", describe(correct), "booleans (or 0/1)")
        cor_b = cor_b.astype(bool)
    if cnt_i.shape[0] == 0:
        raise EstimationError("no questions to fit: counts has 0 rows")
    answered = cnt_i.sum(axis=1)
    if n is None:
        n_i = answered
    else:
        n_i = np.asarray(n)
        if n_i.ndim == 0:
            n_i = np.full(cnt_i.shape[0], n_i)
        if n_i.shape != (cnt_i.shape[0],) or np.any(n_i != np.round(n_i)):
            raise ConfigError("n", describe(n), f"({cnt_i.shape[0]},) whole pilot sizes, one per question")
        n_i = n_i.astype(np.int64)
        if np.any(n_i < answered):
            i = int(np.flatnonzero(n_i < answered)[0])
            raise ConfigError("n", f"n[{i}]={n_i[i]}", f"at least the {answered[i]} votes in counts[{i}] (n counts every sample)")
    if np.any(n_i < 1):
        i = int(np.flatnonzero(n_i < 1)[0])
        raise EstimationError(f"question {i} has no pilot sample; every question needs at least one")
    # A class with no vote and a correct flag says nothing; drop flags of empty classes.
    return MajorityData(cnt_i, cor_b & (cnt_i > 0), (n_i - answered).astype(np.int64))


def _loo_loglik(log_params: np.ndarray, data: MajorityData, fixed: dict[str, float]) -> float:
    """Pooled leave-one-out predictive log-likelihood of every pilot sample (see the module doc)."""
    names = [k for k in ("prior", "unseen_correct", "unseen_other") if k not in fixed]
    vals = dict(fixed)
    vals.update({k: float(np.exp(v)) for k, v in zip(names, log_params)})
    alpha, alpha_c, theta = vals["prior"], vals["unseen_correct"], vals["unseen_other"]
    v, cor, u = data.counts, data.correct, data.unanswered
    n = data.n.astype(float)
    seen = v > 0
    k_seen = seen.sum(axis=1).astype(float)
    n_correct = (v * cor).sum(axis=1)
    correct_seen = n_correct > 0
    total = 0.0
    # Sample in an answered class j, left out: the class keeps v_j - 1 votes.
    single = seen & (v == 1)
    multi = seen & (v >= 2)
    # Classes seen among the other n - 1 samples, and whether the correct one still is.
    k_other = k_seen[:, None] - single  # per left-out class
    cseen_other = np.where(cor, n_correct[:, None] - 1 > 0, correct_seen[:, None])
    denom = (n[:, None] - 1) + alpha * (k_other + 1) + alpha_c * (~cseen_other) + theta
    numer = np.where(multi, v - 1 + alpha, np.where(cor, alpha_c, theta))
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(seen, v * (np.log(numer) - np.log(denom)), 0.0)
    total += float(terms.sum())
    # A no-answer sample left out: the no-answer class always has alpha.
    has_u = u > 0
    denom_u = (n - 1) + alpha * (k_seen + 1) + alpha_c * (~correct_seen) + theta
    total += float(np.sum(np.where(has_u, u * (np.log(u - 1 + alpha) - np.log(denom_u)), 0.0)))
    return total


def calibrate_prior(
    data: MajorityData, prior: Any = _AUTO, unseen_correct: Any = _AUTO, unseen_other: Any = _AUTO
) -> dict[str, float]:
    """Prior masses maximizing the pooled leave-one-out likelihood (only those set to ``"auto"``)."""
    given = {"prior": prior, "unseen_correct": unseen_correct, "unseen_other": unseen_other}
    fixed = {k: float(v) for k, v in given.items() if not (isinstance(v, str) and v == _AUTO)}
    free = [k for k in given if k not in fixed]
    if not free:
        return fixed
    if np.all(data.n < 2):
        raise EstimationError("calibrating the prior needs questions with at least 2 pilot samples (leave-one-out)")
    x0 = np.log(np.array([{"prior": 0.5, "unseen_correct": 0.1, "unseen_other": 1.0}[k] for k in free]))
    best = None
    for shift in (0.0, -2.0, 2.0):
        res = minimize(lambda x: -_loo_loglik(x, data, fixed), x0 + shift, method="L-BFGS-B", bounds=[_LOG_BOUNDS] * len(free))
        if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
            best = res
    if best is None:
        raise EstimationError("the leave-one-out likelihood is not finite for any prior; check the pilot votes")
    out = dict(fixed)
    out.update({k: float(np.exp(x)) for k, x in zip(free, best.x)})
    return out


def _check_prior_value(name: str, value: Any) -> None:
    if isinstance(value, str):
        if value != _AUTO:
            raise ConfigError(name, value, "a non-negative number or 'auto'")
        return
    if not np.isfinite(value) or value < 0:
        raise ConfigError(name, value, "a non-negative number or 'auto'")


class DirichletMajorityModel(CurveModel):
    """maj@N for N beyond the pilot from per-question Dirichlet posteriors (see the module doc).

    Parameters
    ----------
    prior, unseen_correct, unseen_other:
        The pseudo-votes ``alpha`` (each observed class and the no-answer class), ``alpha_c``
        (the correct answer while unseen) and ``theta`` (unseen wrong answers); numbers or
        ``"auto"`` (calibrated on the pilot by leave-one-out likelihood).
    n_draws:
        Posterior draws per question for the Monte Carlo (its error on the dataset mean is about
        0.5 / sqrt(n_draws * questions)).
    n_bootstrap, random_state:
        Bootstrap over questions for :meth:`predict_interval`; seed of draws and bootstrap.

    Fitted attributes: ``prior_``, ``unseen_correct_``, ``unseen_other_`` (the masses used),
    ``loo_loglik_`` (pooled leave-one-out log-likelihood per pilot sample), ``n_questions_``,
    ``pilot_size_`` (median pilot size).
    """

    def __init__(
        self,
        prior: float | str = _AUTO,
        unseen_correct: float | str = _AUTO,
        unseen_other: float | str = _AUTO,
        n_draws: int = 4000,
        n_bootstrap: int = 1000,
        random_state: int | None = 0,
    ) -> None:
        self.prior = prior
        self.unseen_correct = unseen_correct
        self.unseen_other = unseen_other
        self.n_draws = n_draws
        self.n_bootstrap = n_bootstrap
        self.random_state = random_state

    def fit(self, counts: Any, correct: Any, n: Any = None) -> "DirichletMajorityModel":
        """Fit on pilot votes per question: ``counts`` (Q, C) or ragged, ``correct`` alike, ``n`` (Q,)."""
        self._check_common_params()
        for name in ("prior", "unseen_correct", "unseen_other"):
            _check_prior_value(name, getattr(self, name))
        if not isinstance(self.n_draws, (int, np.integer)) or self.n_draws < 1:
            raise ConfigError("n_draws", self.n_draws, "a positive integer")
        data = as_majority_data(counts, correct, n)
        masses = calibrate_prior(data, self.prior, self.unseen_correct, self.unseen_other)
        self.prior_ = masses["prior"]
        self.unseen_correct_ = masses["unseen_correct"]
        self.unseen_other_ = masses["unseen_other"]
        self._data = data
        self.params_ = np.array([self.prior_, self.unseen_correct_, self.unseen_other_])
        self.n_questions_ = int(data.counts.shape[0])
        self.pilot_size_ = float(np.median(data.n))
        log_params = np.log(np.maximum(self.params_, 1e-300))
        samples = float(data.n.sum())
        self.loo_loglik_ = _loo_loglik(log_params, data, {}) / samples if np.all(self.params_ > 0) else float("nan")
        if not np.isfinite(self.loo_loglik_):
            self.loo_loglik_ = float("-inf")
        return self

    # --- prediction --------------------------------------------------------------------------------
    def _concentrations(self) -> tuple[np.ndarray, np.ndarray]:
        """(Q, C + 3) Dirichlet parameters [classes..., no answer, correct unseen, other unseen] and
        the (Q, C + 3) flags [correct classes..., False, True, False]."""
        d = self._data
        alpha, alpha_c, theta = self.params_
        seen = d.counts > 0
        conc_classes = np.where(seen, d.counts + alpha, 0.0)
        correct_seen = (d.correct & seen).any(axis=1)
        q = d.counts.shape[0]
        conc = np.concatenate(
            [conc_classes, (d.unanswered + alpha)[:, None], np.where(correct_seen, 0.0, alpha_c)[:, None], np.full((q, 1), theta)],
            axis=1,
        )
        flags = np.concatenate([d.correct & seen, np.zeros((q, 1), bool), ~correct_seen[:, None], np.zeros((q, 1), bool)], axis=1)
        return conc, flags

    def predict_questions(self, k: Any) -> np.ndarray:
        """(Q, K) predicted maj@k per question (Monte Carlo, seeded)."""
        self._check_fitted()
        k_arr, _ = as_k(k)
        if np.any(k_arr != np.round(k_arr)):
            raise ConfigError("k", describe(k), "whole numbers of samples")
        conc, flags = self._concentrations()
        rng = np.random.default_rng(self.random_state)
        q, width = conc.shape
        total = np.zeros((q, k_arr.size))
        chunk = max(1, int(2_000_000 // max(q * width, 1)))
        done = 0
        while done < self.n_draws:
            s = min(chunk, self.n_draws - done)
            g = rng.standard_gamma(np.broadcast_to(conc, (s, q, width)))
            mass = g.sum(axis=2, keepdims=True)
            # All-zero concentration rows cannot occur (the no-answer class always has u + alpha > 0
            # or a seen class); guard anyway so a zero row yields no votes rather than NaN.
            p = np.divide(g, mass, out=np.zeros_like(g), where=mass > 0)
            for j, kk in enumerate(k_arr.astype(np.int64)):
                votes = _multinomial(rng, int(kk), p)
                total[:, j] += _tie_credit(votes, flags).sum(axis=0)
            done += s
        return total / self.n_draws

    def predict(self, k: Any) -> np.ndarray | float:
        """Dataset maj@k (mean over questions of the per-question prediction)."""
        k_arr, scalar = as_k(k)
        out = self.predict_questions(k_arr).mean(axis=0)
        return float(out[0]) if scalar else out

    def predict_interval(self, k: Any, level: float = 0.95) -> tuple[np.ndarray, np.ndarray] | tuple[float, float]:
        """Percentile bootstrap over questions of the dataset maj@k (prior held at its fitted value)."""
        level = check_level(level)
        if self.n_bootstrap < 1:
            raise ConfigError("n_bootstrap", self.n_bootstrap, "at least 1 for intervals (set it in the constructor)")
        k_arr, scalar = as_k(k)
        per_q = self.predict_questions(k_arr)
        rng = np.random.default_rng(None if self.random_state is None else self.random_state + 1)
        q = per_q.shape[0]
        idx = rng.integers(0, q, size=(int(self.n_bootstrap), q))
        means = per_q[idx].mean(axis=1)
        lo = np.quantile(means, (1 - level) / 2, axis=0)
        hi = np.quantile(means, 1 - (1 - level) / 2, axis=0)
        return (float(lo[0]), float(hi[0])) if scalar else (lo, hi)

    def bootstrap_params(self) -> np.ndarray:  # the interval resamples predictions, not parameters
        raise NotImplementedError("DirichletMajorityModel bootstraps per-question predictions; use predict_interval")


def _multinomial(rng: np.random.Generator, n: int, p: np.ndarray) -> np.ndarray:
    """Multinomial(n, p) over the last axis by sequential conditional binomials (vectorized)."""
    out = np.zeros(p.shape, dtype=np.int64)
    left = np.full(p.shape[:-1], n, dtype=np.int64)
    rest = np.ones(p.shape[:-1])
    for c in range(p.shape[-1] - 1):
        pc = p[..., c]
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(rest > 0, np.clip(pc / rest, 0.0, 1.0), 0.0)
        x = rng.binomial(left, frac)
        out[..., c] = x
        left -= x
        rest = np.maximum(rest - pc, 0.0)
    out[..., -1] = left
    return out


def _tie_credit(votes: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Tie-credited correctness of the vote (..., C + 3) laid out as in ``_concentrations``."""
    classes = votes[..., :-3]
    new_correct = votes[..., -2]
    singles = votes[..., -1]
    voting = np.concatenate([classes, new_correct[..., None]], axis=-1)
    is_correct = np.concatenate([flags[:, :-3], flags[:, -2:-1]], axis=-1)
    top = np.max(voting, axis=-1)
    top = np.maximum(top, (singles > 0).astype(top.dtype))
    at_top = (voting == top[..., None]) & (top[..., None] > 0)
    n_tied = at_top.sum(axis=-1) + np.where(top == 1, singles, 0)
    n_correct = (at_top & is_correct).sum(axis=-1)
    return np.divide(n_correct, n_tied, out=np.zeros(n_tied.shape, dtype=float), where=n_tied > 0)

