"""Majority-vote accuracy beyond the pilot: per-question Dirichlet posteriors over answer classes.

A pilot of n_i samples for question i gives the votes of its observed answer classes, the
samples without an answer (they fill a slot but never vote) and which class is correct. Each
question's answer distribution gets a Dirichlet posterior over [seen classes, no answer, the
correct answer while unseen, unseen wrong answers] (weights in :class:`DirichletMajorityModel`),
and maj@N is the expected tie-credited vote of N fresh samples under the posterior predictive
(a Polya urn; new wrong answers seat as a Pitman-Yor Chinese restaurant). It is computed exactly
for N <= 95 by generating functions: condition on the correct answer's count j, and the other
votes are a product of power series truncated at j (tie credit by Gauss-Legendre in a marker y,
new wrong answers by the closed form (1 - d W(x))^(-beta/d)); no Monte Carlo, so the curve is
smooth in N and deterministic. Beyond N = 95 it is the exact limit maj@infinity (the probability
that the correct answer has the largest posterior share, one-dimensional quadrature) plus
a/N + b/N^2 matched to the exact values at N = 47 and 95 (about 0.01 points on real banks).

What decides the extrapolation is the prior, and two things matter on real banks:

* wrong answers scatter: many are one-offs. A Pitman-Yor discount d (a class seen once counts
  1 - d, and d per seen class moves to the unseen mass) captures that heavy tail;
* the correct answer is one coherent mode, so the same pilot count means more for it than for a
  wrong answer: it gets its own discount d_c (negative = extra pseudo-votes).

With the correct answer treated as any other class (``correct_discount="same"``) the model
predicts maj@40 of the Llama-2-13B GSM8K bank about 9 points too low from 8-sample pilots; with
its own discount the error is about 1.6 points low from leave-one-out values alone, and about 0
(sd 0.8-1.2 from the pilot's own noise) once the correct share is matched (below;
evals/extrapolate_majority.py).

All prior values default to ``"auto"``: calibrated on the pilot alone by maximizing the
leave-one-out predictive likelihood of every pilot sample given the rest of its question's
pilot, pooled over questions; then correct_discount is re-set so the model's maj@1 (the posterior
mean correct share, averaged over questions) equals the pilot's observed correct share, which a
well-specified prior satisfies and the leave-one-out optimum misses by 1-1.5 points on Llama.
The family is still mis-specified (one prior for questions whose wrong answers scatter and
questions with a wrong mode): fitted on all 48 samples of the Llama bank, the share-matched
model over-predicts maj@8/40/48 by 1.1/2.4/2.3 points (the plain leave-one-out one
under-predicts every maj@N by 1.3-1.5), so the share match is tuned for 8-sample pilots, not a
cure. Large pilots can pin the curve's shape as well: with ``match_pool`` (on by default once at
least 95% of questions have 24 or more samples) the discount is re-set so the model's maj@n_ref
equals the pilot's own exact maj@n_ref at the pilot size n_ref, correct_discount re-matched to
maj@1 alongside; on the full Llama bank that gives maj@1/8/40/48 29.78/39.67/44.88/45.22 against
the exact 29.78/39.35/44.66/45.21. On 8-sample pilots the discount is poorly pinned by maj@8
(unstable), so the match stays off there.

This module holds the model; its parts live beside it: ``majority_data`` (the pilot votes),
``majority_prior`` (calibration and the two matches) and ``majority_math`` (maj@N and its limit).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import norm

from ttscale.curves._base import CurveModel, as_k, check_level, describe
from ttscale.curves.majority_data import as_majority_data
from ttscale.curves.majority_math import EXACT_MAX, exact_majority, limit_majority
from ttscale.curves.majority_prior import (
    AUTO,
    POOL_MIN,
    PRIOR_NAMES,
    SAME,
    calibrate_prior,
    check_prior_value,
    is_auto,
    loo_loglik,
    match_pool_discount,
    pool_exact,
    pool_reference,
    posterior_urn,
)
from ttscale.errors import ConfigError
from ttscale.validation import check_count, is_number

__all__ = ["DirichletMajorityModel", "EXTRAPOLATION_SPREAD", "PILOT_SHIFT_DECAY"]

EXTRAPOLATION_SPREAD = 1.0
"""Extrapolation term of :meth:`DirichletMajorityModel.predict_interval`: this fraction of the
predicted gain from the pilot size to N, in quadrature with the question bootstrap. The smallest
spread whose 95% intervals cover maj@K at least 90% of the time on every vote corpus, from 8-sample
pilots (4 on math100), chosen leaving one corpus out (``evals/unseen_majority.py``; every fold
chose 1.0: the tiny models' hard banks are over-predicted by 4.5 points of a 7.5-point gain)."""


PILOT_SHIFT_DECAY = 0.25
"""``ttscale plan BANK``'s ``pilot_shift_decay``: from small pilots the model's curve misses the
pilot's own exact maj@m (8-sample pilots of the embedded models' banks: 1.5-4.9 points high) and
so rises too early; shifting the dataset curve by that gap, fading as (m / N)^0.25 beyond the pilot,
cut the mean error over N in (m, K] from 2.09 to 1.65 points held out (``evals/unseen_majority.py``:
0.25 or 0.5 on every fold, 0.25 on all corpora; worse on Llama-2 GSM8K, 0.94 -> 1.23)."""


def z_ratio(level: float) -> float:
    """The normal quantile of ``level`` relative to 95%'s (the spread was chosen for 95% intervals)."""
    return float(norm.ppf(0.5 + level / 2) / norm.ppf(0.975))


class DirichletMajorityModel(CurveModel):
    """maj@N for N beyond the pilot from per-question Dirichlet posteriors.

    Each question's answer distribution is a Pitman-Yor-style posterior given its pilot votes:
    the observed classes, the no-answer class and the answers not seen yet get

        Dirichlet(v_w - d, ..., v_c - d_c, u + a0, gamma * M, (1 - gamma) * M)

    with v_w the votes of each seen wrong class, v_c those of the correct class, u the samples
    without an answer and M = theta + d+ K_w + d_c+ K_c the mass of unseen answers (K: seen
    classes; x+ = max(x, 0)). ``gamma * M`` is the correct answer while unseen (absent once seen);
    the rest of M is split among new wrong answers by Pitman-Yor stick breaking (discount d+),
    so an unseen wrong answer can also repeat. A discount d in (0, 1) is the Pitman-Yor one (a
    class seen once counts for 1 - d, the heavy tail of stray answers); a negative d adds |d|
    pseudo-votes (the symmetric Dirichlet prior). The correct class has its own discount: in real
    banks the correct answer is one coherent mode while wrong answers scatter, so the same count
    means more for it.

    Parameters
    ----------
    discount, correct_discount, new_mass, correct_share, none_prior:
        d, d_c, theta, gamma, a0 above: numbers, or ``"auto"`` (the default), calibrated on the
        pilot alone by maximizing the pooled leave-one-out predictive likelihood of every pilot
        sample given the rest of its question's pilot.
    match_share:
        When correct_discount is ``"auto"``, re-set it after the leave-one-out fit so that the
        model's maj@1 (the posterior mean correct share, averaged over questions) equals the
        pilot's observed correct share (see :func:`calibrate_prior`). False: the plain
        leave-one-out values (1-2 points low on the Llama bank).
    match_pool:
        Re-set ``discount`` (kept ``"auto"``) after that so the model's dataset maj@n_ref equals
        the pilot's exact maj@n_ref (``ttscale.estimate.majority_at_k``), with correct_discount
        re-matched to maj@1 at every trial value (or tied, for ``"same"``); both sides are
        averaged over the questions with at least n_ref samples. n_ref = the lower 5% quantile of
        the per-question pilot sizes (at least 95% of questions reach it; for a common pilot
        size, that size), capped at 95. Root finding on the discount in [-5, 0.95] to within
        0.05 point (secant steps from the fitted value, then Illinois regula falsi; typically
        3-6 evaluations of maj@n_ref alone). When no sign change is found the leave-one-out /
        share-matched values are kept. ``"auto"`` (the default): on when n_ref >= 24, i.e. at
        least 95% of questions have 24 or more pilot samples (off for 8-sample pilots, where
        maj@8 pins the discount poorly and the match is unstable); True: on whenever n_ref >= 2
        (a ConfigError if discount is held fixed); False: off.
    n_draws:
        Ignored: predictions are computed exactly (kept so older call sites keep working).
    extrapolation_spread:
        Extrapolation term of :meth:`predict_interval` beyond the pilot: this fraction of the
        predicted gain from the pilot size to N, in quadrature with the question bootstrap (default
        :data:`EXTRAPOLATION_SPREAD`; 0 gives the bootstrap alone).
    pilot_shift_decay:
        None (the default): the dataset curve is the mean of the per-question predictions. A
        number beta >= 0: it is shifted by ``pilot_gap_`` (the pilot's exact maj@m minus the
        model's, m the pool reference size below) at N <= m, fading as (m / N)^beta beyond (0: a
        constant shift); :meth:`predict_questions` is never shifted. ``ttscale plan BANK`` uses
        :data:`PILOT_SHIFT_DECAY`.
    n_bootstrap, random_state:
        Bootstrap over questions for :meth:`predict_interval`; seed of draws and bootstrap.

    Fitted attributes: ``prior_`` (dict of the values used), ``loo_loglik_`` (pooled leave-one-out
    log-likelihood per pilot sample), ``n_questions_``, ``pilot_size_`` (median pilot size),
    ``pool_match_`` ("matched"; "no root": no sign change, the fitted values were kept; "off":
    not requested, below the auto threshold or discount held fixed), ``pool_match_n_`` (n_ref, or
    None when off) and ``pool_match_gap_`` (predicted minus exact maj@n_ref for the values kept,
    None when off).

    Intervals (:meth:`predict_interval`) bootstrap questions with the prior held at ``prior_``,
    i.e. after both matches: no refit per replicate, whether or not the pool match ran. That
    misses how far the prior itself is off, which dominates far beyond the pilot (8 -> 64 samples
    on the embedded models' banks: errors of 1.6-4.5 points, 0-80% coverage by the bootstrap alone), so
    beyond the pilot the interval is widened by ``extrapolation_spread`` x the predicted gain.
    A symmetric Dirichlet with concentration alpha is approximately ``discount=correct_discount=-alpha,
    correct_share=alpha_c / (alpha_c + theta), new_mass=alpha_c + theta, none_prior=alpha``.
    """

    def __init__(
        self,
        discount: float | str = AUTO,
        correct_discount: float | str = AUTO,
        new_mass: float | str = AUTO,
        correct_share: float | str = AUTO,
        none_prior: float | str = AUTO,
        match_share: bool = True,
        match_pool: bool | str = AUTO,
        n_draws: int = 2000,
        n_bootstrap: int = 1000,
        random_state: int | None = 0,
        extrapolation_spread: float = EXTRAPOLATION_SPREAD,
        pilot_shift_decay: float | None = None,
    ) -> None:
        self.discount = discount
        self.correct_discount = correct_discount
        self.new_mass = new_mass
        self.correct_share = correct_share
        self.none_prior = none_prior
        self.match_share = match_share
        self.match_pool = match_pool
        self.n_draws = n_draws
        self.n_bootstrap = n_bootstrap
        self.random_state = random_state
        self.extrapolation_spread = extrapolation_spread
        self.pilot_shift_decay = pilot_shift_decay

    def fit(self, counts: Any, correct: Any, n: Any = None) -> DirichletMajorityModel:
        """Fit on pilot votes per question: ``counts`` (Q, C) or ragged, ``correct`` alike, ``n`` (Q,)
        pilot samples per question including those without an answer (default: the vote totals)."""
        self._check_common_params()
        for name in PRIOR_NAMES:
            check_prior_value(name, getattr(self, name))
        check_count("n_draws", self.n_draws, 1, "a positive integer")
        spread = self.extrapolation_spread
        if not (is_number(spread) and np.isfinite(spread) and spread >= 0):
            raise ConfigError("extrapolation_spread", spread, "a non-negative number")
        decay = self.pilot_shift_decay
        if decay is not None and not (is_number(decay) and np.isfinite(decay) and decay >= 0):
            raise ConfigError("pilot_shift_decay", decay, "None or a non-negative number")
        if not isinstance(self.match_share, bool):
            raise ConfigError("match_share", self.match_share, "True or False")
        if not (isinstance(self.match_pool, bool) or is_auto(self.match_pool)):
            raise ConfigError("match_pool", self.match_pool, "True, False or 'auto'")
        if self.match_pool is True and not is_auto(self.discount):
            raise ConfigError("match_pool", self.match_pool, "False or 'auto' when discount is held fixed (the match re-sets it)")
        data = as_majority_data(counts, correct, n)
        prior = calibrate_prior(data, self.match_share, **{k: getattr(self, k) for k in PRIOR_NAMES})
        n_ref = pool_reference(data)
        self.pool_match_n_: int | None = None
        self.pool_match_gap_: float | None = None
        self.pool_match_ = "off"
        on = (self.match_pool is True or (is_auto(self.match_pool) and n_ref >= POOL_MIN)) and n_ref >= 2
        if on and is_auto(self.discount):
            tied = self.correct_discount == SAME  # a number or a string: checked above
            rematch = self.match_share and is_auto(self.correct_discount)
            prior, self.pool_match_, self.pool_match_gap_ = match_pool_discount(prior, data, n_ref, rematch, tied)
            self.pool_match_n_ = n_ref
        self.prior_ = prior
        self._data = data
        self._curve = np.zeros((data.counts.shape[0], 0))
        self._limit: np.ndarray | None = None
        self.params_ = np.array([self.prior_[k] for k in PRIOR_NAMES])
        self.n_questions_ = int(data.counts.shape[0])
        self.pilot_size_ = float(np.median(data.n))
        self.loo_loglik_ = loo_loglik(self.prior_, data) / float(data.n.sum())
        self.pilot_gap_, self.pilot_ref_ = self._pilot_gap(data) if decay is not None else (0.0, None)
        return self

    # --- prediction --------------------------------------------------------------------------------
    def _posterior(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
        """Posterior-predictive urn per question (see :func:`posterior_urn`)."""
        return posterior_urn(self.prior_, self._data)

    def _exact_curve(self, nmax: int) -> np.ndarray:
        """(Q, nmax) exact maj@N for N = 1..nmax, cached (extended on demand)."""
        have = self._curve.shape[1]
        if nmax > have:
            self._curve = exact_majority(*self._posterior(), np.arange(1, nmax + 1))
        return self._curve[:, :nmax]

    def predict_questions(self, k: Any) -> np.ndarray:
        """(Q, K) predicted maj@k per question: exact for k <= 95, limit + a/k + b/k^2 beyond."""
        self._check_fitted()
        k_arr, _ = as_k(k)
        if np.any(k_arr != np.round(k_arr)):
            raise ConfigError("k", describe(k), "whole numbers of samples")
        ks = k_arr.astype(np.int64)
        top = int(ks.max())
        curve = self._exact_curve(min(top, EXACT_MAX))
        out = np.empty((curve.shape[0], ks.size))
        small = ks <= EXACT_MAX
        out[:, small] = curve[:, ks[small] - 1]
        if not small.all():
            if self._limit is None:
                self._limit = limit_majority(*self._posterior())
            n1, n2 = EXACT_MAX, EXACT_MAX // 2 | 1
            y1, y2 = curve[:, n1 - 1] - self._limit, curve[:, n2 - 1] - self._limit
            # y = a / N + b / N^2 through (n1, y1) and (n2, y2): N y = a + b / N.
            b_ = (n1 * y1 - n2 * y2) / (1.0 / n1 - 1.0 / n2)
            a_ = n1 * y1 - b_ / n1
            big = ks[~small].astype(float)
            out[:, ~small] = self._limit[:, None] + a_[:, None] / big[None, :] + b_[:, None] / big[None, :] ** 2
        return np.clip(out, 0.0, 1.0)

    def _pilot_gap(self, data: Any) -> tuple[float, int | None]:
        """(the pilot's exact maj@n_ref minus the model's, n_ref): over the questions with at least
        n_ref samples, n_ref the pool reference size (see ``match_pool``)."""
        n_ref = pool_reference(data)
        pool = pool_exact(data, n_ref)
        if pool is None:
            return 0.0, None
        sel, exact = pool
        return exact - float(self.predict_questions([n_ref])[sel, 0].mean()), int(n_ref)

    def _shift(self, k_arr: np.ndarray) -> np.ndarray:
        """The dataset curve's shift at each k (0 unless ``pilot_shift_decay`` is set)."""
        if self.pilot_shift_decay is None or self.pilot_ref_ is None:
            return np.zeros(k_arr.shape)
        ref = float(self.pilot_ref_)
        return self.pilot_gap_ * np.where(k_arr <= ref, 1.0, (ref / np.maximum(k_arr, ref)) ** float(self.pilot_shift_decay))

    def predict(self, k: Any) -> np.ndarray | float:
        """Dataset maj@k (mean over questions of the per-question prediction, shifted toward the
        pilot's own exact value when ``pilot_shift_decay`` is set)."""
        k_arr, scalar = as_k(k)
        out = np.clip(self.predict_questions(k_arr).mean(axis=0) + self._shift(k_arr), 0.0, 1.0)
        return float(out[0]) if scalar else out

    def predict_interval(self, k: Any, level: float = 0.95) -> tuple[np.ndarray, np.ndarray] | tuple[float, float]:
        """Percentile bootstrap over questions of the dataset maj@k (prior held at its fitted value,
        including the share and pool matches: the prior is not refitted per replicate), widened
        beyond the pilot size by ``extrapolation_spread`` x the predicted gain from it (in quadrature;
        at another ``level`` the term scales with the normal quantile)."""
        level = check_level(level)
        if self.n_bootstrap < 1:
            raise ConfigError("n_bootstrap", self.n_bootstrap, "at least 1 for intervals (set it in the constructor)")
        k_arr, scalar = as_k(k)
        per_q = self.predict_questions(k_arr)
        rng = np.random.default_rng(None if self.random_state is None else self.random_state + 1)
        q = per_q.shape[0]
        idx = rng.integers(0, q, size=(int(self.n_bootstrap), q))
        shift = self._shift(k_arr)
        means = per_q[idx].mean(axis=1) + shift
        lo = np.clip(np.quantile(means, (1 - level) / 2, axis=0), 0.0, 1.0)
        hi = np.clip(np.quantile(means, 1 - (1 - level) / 2, axis=0), 0.0, 1.0)
        if self.extrapolation_spread > 0:
            centre = np.clip(per_q.mean(axis=0) + shift, 0.0, 1.0)
            pilot = int(round(self.pilot_size_))
            gain = np.where(k_arr > pilot, np.abs(centre - self.predict(pilot)), 0.0)
            extra = float(self.extrapolation_spread) * z_ratio(level) * gain
            lo = np.clip(centre - np.hypot(np.maximum(centre - lo, 0.0), extra), 0.0, 1.0)
            hi = np.clip(centre + np.hypot(np.maximum(hi - centre, 0.0), extra), 0.0, 1.0)
        return (float(lo[0]), float(hi[0])) if scalar else (lo, hi)

    def bootstrap_params(self) -> np.ndarray:
        raise NotImplementedError("DirichletMajorityModel bootstraps per-question predictions; use predict_interval")
