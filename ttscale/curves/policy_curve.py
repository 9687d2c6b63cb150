"""Bounded accuracy curves for selection policies other than majority and pass@k.

A curve family fitted to a policy's own pilot curve (k = 1..m) says little about N >> m: on the
embedded hard set an exponentiated power law fitted to five points predicted confidence-vote at
75% for N = 1,024 while majority saturates at 55%. A vote-type policy (any policy that picks among
the answers the samples give, by votes, weights or stopping: first-to-ahead, confidence-vote,
confidence-weighted, top-k-answers) can only gain from more samples what more votes give, so its
extrapolation is anchored on the majority model fitted to the same pilot
(:class:`~ttscale.curves.DirichletMajorityModel`), which saturates where votes saturate:

    acc(N) = min(pass(N), acc(m) + gain * (S(N) - S(m)))     for N > m,

with acc(m) the policy's exact (or resampled) accuracy at the pilot size m, S the majority
model's dataset curve with the two-answer parity sawtooth (maj@2j = maj@2j-1) smoothed out, gain
a fixed transfer ratio per selector and pass(N) an optional ceiling (the pilot's beta-binomial pass@N: no
single-answer policy beats an oracle). For N <= m the curve is the observed one. A policy whose
observed curve falls past some k (a misspecified reward or confidence) is held at its best N.

The gain is not estimated per pilot: the in-pilot ratio of the policy's gain to majority's is
noisy (k = m/2..m) and misleading for policies that break vote ties (their small-k head start
shrinks as N grows); the fixed ratios (:data:`VOTE_GAINS`, :data:`VOTE_GAIN`) and the interval's extrapolation
spread (:data:`EXTRAPOLATION_SPREAD`) are chosen leave-one-corpus-out (``evals/policy_curves.py``:
each corpus's figure comes from values chosen on the other corpora).

Intervals: a bootstrap over questions (the policy's per-question pilot accuracy and the majority
model's per-question predictions resampled together), widened in quadrature by ``spread`` times
the extrapolated gain (how far the transfer ratio may be off), and capped by the ceiling's
upper bound.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ttscale.curves._base import CurveModel, as_k, check_level, describe
from ttscale.curves.model_selection import best_n
from ttscale.errors import ConfigError, EstimationError
from ttscale.validation import is_number

__all__ = ["EXTRAPOLATION_SPREAD", "MIN_ANCHOR_QUESTIONS", "VOTE_GAIN", "VOTE_GAINS", "MajorityAnchoredCurve",
           "smooth_majority", "vote_gain"]

VOTE_GAIN = 0.75
"""Transfer ratio of a vote-type policy's gain beyond the pilot to the majority model's gain, for a
selector without its own entry in :data:`VOTE_GAINS` (chosen on every vote-type policy of the dev
corpora among 0.5-1.5; see ``evals/policy_curves.py``)."""

VOTE_GAINS: dict[str, float] = {"first-to-ahead": 0.5, "top-k-answers": 1.5, "confidence-vote": 0.75, "weighted-majority": 0.75}
"""Transfer ratio per selector, chosen on the dev corpora where the selector runs (two or more of
them): a stopping rule (first-to-ahead) decides early and saturates below majority; a k-answer
submission (top-k-answers) gains more than one answer can. Leave-one-corpus-out, ratios per
selector beat one ratio for all (mean absolute error 2.05 vs 2.52 points at the bank's largest k)."""

EXTRAPOLATION_SPREAD = 0.75
"""Half-width of the interval's extrapolation term, as a fraction of the predicted gain beyond the
pilot (the smallest whose 95% intervals cover the truth at least 90% of the time on every dev corpus)."""

MIN_ANCHOR_QUESTIONS = 20
"""Fewer questions than this and the majority model's prior (pooled over questions) is too poorly
pinned to anchor another policy on: the planner falls back to a curve family."""

FALL_TOLERANCE = 0.005
"""A pilot curve that drops more than this below its running maximum is held at its best N."""


def vote_gain(selector: str) -> float:
    """The transfer ratio the planner uses for a selector (:data:`VOTE_GAINS`, else :data:`VOTE_GAIN`)."""
    return float(VOTE_GAINS.get(selector, VOTE_GAIN))


def smooth_majority(model: Any, k: Any) -> np.ndarray:
    """(Q, K) per-question majority prediction at ``k`` with the parity sawtooth smoothed out.

    With two answers maj@2j equals maj@2j-1 (a tie at 2j is a coin flip), so even N sit below the
    trend; an even N gets the mean of its odd neighbours, an odd N its own value. ``model`` is a
    fitted :class:`~ttscale.curves.DirichletMajorityModel` (anything with ``predict_questions``).
    """
    k_arr, _ = as_k(k)
    ks = np.round(k_arr).astype(np.int64)
    need = np.unique(np.concatenate([ks[ks % 2 == 1], ks[ks % 2 == 0] - 1, ks[ks % 2 == 0] + 1]))
    need = need[need >= 1]
    pred = np.asarray(model.predict_questions(need), dtype=float)
    col = {int(v): i for i, v in enumerate(need)}
    out = np.empty((pred.shape[0], ks.size))
    for j, kk in enumerate(ks):
        if kk % 2 == 1:
            out[:, j] = pred[:, col[int(kk)]]
        else:
            out[:, j] = 0.5 * (pred[:, col[int(kk) - 1]] + pred[:, col[int(kk) + 1]])
    return out


class MajorityAnchoredCurve(CurveModel):
    """A vote-type policy's dataset accuracy at any N, anchored on a fitted majority model.

    Parameters
    ----------
    gain:
        Transfer ratio: the policy gains ``gain`` times the majority model's gain from the pilot
        size m to N (default :data:`VOTE_GAIN`).
    spread:
        Extrapolation term of the interval: ``spread`` times the predicted gain beyond m, added in
        quadrature to the question bootstrap (default :data:`EXTRAPOLATION_SPREAD`).
    n_bootstrap, random_state:
        Bootstrap over questions for :meth:`predict_interval`.

    ``fit(k, acc, majority, ceiling=None)``: ``k`` the pilot's sample counts (1..m), ``acc`` a
    (Q, K) matrix of the policy's per-question accuracy at ``k`` (exact or resampled), ``majority``
    a :class:`~ttscale.curves.DirichletMajorityModel` fitted on the same Q questions in the same
    order, ``ceiling`` an optional fitted pass@k model (``predict``; ``predict_interval`` used
    when present) bounding the curve from above.

    Fitted attributes: ``k_``, ``acc_`` (the observed dataset curve), ``pilot_n_`` (m),
    ``start_`` (the accuracy extrapolated from: at m, or at the best N), ``best_n_`` (the best N
    when the observed curve falls, else None), ``n_questions_``.
    """

    def __init__(self, gain: float = VOTE_GAIN, spread: float = EXTRAPOLATION_SPREAD, n_bootstrap: int = 200,
                 random_state: int | None = 0) -> None:
        self.gain = gain
        self.spread = spread
        self.n_bootstrap = n_bootstrap
        self.random_state = random_state

    def fit(self, k: Any, acc: Any, majority: Any, ceiling: Any = None) -> MajorityAnchoredCurve:
        self._check_common_params()
        for name in ("gain", "spread"):
            value = getattr(self, name)
            if not (is_number(value) and np.isfinite(value) and value >= 0):
                raise ConfigError(name, value, "a non-negative number")
        k_arr, _ = as_k(k)
        if np.any(k_arr != np.round(k_arr)):
            raise ConfigError("k", describe(k), "whole numbers of samples")
        acc_arr = np.asarray(acc, dtype=float)
        if acc_arr.ndim != 2 or acc_arr.shape[1] != k_arr.size:
            raise ConfigError("acc", describe(acc), f"a (questions, {k_arr.size}) matrix of per-question accuracies matching k")
        if acc_arr.shape[0] < 2:
            raise EstimationError(f"a policy curve needs at least 2 questions; got {acc_arr.shape[0]}")
        if not np.all(np.isfinite(acc_arr)) or np.any(acc_arr < 0) or np.any(acc_arr > 1):
            raise ConfigError("acc", describe(acc), "accuracies in [0, 1] (no NaN: every question needs the largest k)")
        if not hasattr(majority, "predict_questions"):
            raise ConfigError("majority", type(majority).__name__, "a fitted DirichletMajorityModel")
        order = np.argsort(k_arr, kind="stable")
        k_arr, acc_arr = k_arr[order], acc_arr[:, order]
        if k_arr.size < 2:
            raise EstimationError(f"a policy curve needs the accuracy at 2 or more k; got k = {k_arr.tolist()}")
        start = smooth_majority(majority, k_arr[-1:])
        if start.shape[0] != acc_arr.shape[0]:
            raise ConfigError("majority", f"a model of {start.shape[0]} questions",
                              f"the majority model fitted on the same {acc_arr.shape[0]} questions")
        curve = acc_arr.mean(axis=0)
        best = best_n(k_arr, curve, tolerance=FALL_TOLERANCE)
        self._majority, self._ceiling, self._per_q = majority, ceiling, acc_arr
        self.k_, self.acc_ = k_arr, curve
        self.pilot_n_ = int(k_arr[-1])
        self.best_n_ = None if best.monotone else int(best.k)
        self._start_col = k_arr.size - 1 if best.monotone else int(np.flatnonzero(k_arr == best.k)[0])
        self.start_ = float(curve[self._start_col])
        self.n_questions_ = int(acc_arr.shape[0])
        self._base = start[:, 0]
        self.params_ = np.array([float(self.gain), float(self.spread)])
        return self

    # --- prediction ---------------------------------------------------------------------------------
    def _gain_questions(self, k: np.ndarray) -> np.ndarray:
        """(Q, K) per-question majority gain from m to k (0 at k <= m, 0 everywhere for a held curve)."""
        out = np.zeros((self.n_questions_, k.size))
        if self.best_n_ is not None:
            return out
        far = k > self.pilot_n_
        if far.any():
            out[:, far] = smooth_majority(self._majority, k[far]) - self._base[:, None]
        return out

    def _observed(self, rows: np.ndarray, k: np.ndarray) -> np.ndarray:
        """(B, K) observed curve of resampled question sets, interpolated at k <= m, held at the start beyond."""
        per = rows.mean(axis=1) if rows.ndim == 3 else rows  # (B, Kobs)
        out = np.empty((per.shape[0], k.size))
        top = self.k_[self._start_col]
        for j, kk in enumerate(k):
            if kk <= self.pilot_n_ and (self.best_n_ is None or kk <= top):
                out[:, j] = [np.interp(kk, self.k_, row) for row in per]
            else:
                out[:, j] = per[:, self._start_col]
        return out

    def _ceiling_at(self, k: np.ndarray, level: float | None = None) -> np.ndarray | None:
        if self._ceiling is None:
            return None
        if level is not None and hasattr(self._ceiling, "predict_interval"):
            return np.asarray(self._ceiling.predict_interval(k, level)[1], dtype=float)
        return np.asarray(self._ceiling.predict(k), dtype=float)

    def _cap(self, pred: np.ndarray, k: np.ndarray, cap: np.ndarray | None) -> np.ndarray:
        if cap is None:
            return pred
        # the cap only binds beyond the pilot: inside it the observed curve is the answer
        far = k > self.pilot_n_
        return np.where(far, np.minimum(pred, np.maximum(cap, self.start_)), pred)

    def predict(self, k: Any) -> np.ndarray | float:
        """Dataset accuracy at ``k``: observed up to the pilot size, anchored on majority beyond it."""
        self._check_fitted()
        k_arr, scalar = as_k(k)
        base = self._observed(self.acc_[None, :], k_arr)[0]
        pred = base + float(self.gain) * self._gain_questions(k_arr).mean(axis=0)
        out = np.clip(self._cap(pred, k_arr, self._ceiling_at(k_arr)), 0.0, 1.0)
        return float(out[0]) if scalar else out

    def extrapolated_gain(self, k: Any) -> np.ndarray:
        """Predicted gain beyond the pilot (before the ceiling), per k: what the interval widens with."""
        self._check_fitted()
        k_arr, _ = as_k(k)
        return float(self.gain) * self._gain_questions(k_arr).mean(axis=0)

    def predict_interval(self, k: Any, level: float = 0.95) -> tuple[np.ndarray, np.ndarray] | tuple[float, float]:
        """Bootstrap over questions (policy and majority resampled together), widened by ``spread``
        times the extrapolated gain, capped by the ceiling's upper bound."""
        level = check_level(level)
        self._check_fitted()
        if self.n_bootstrap < 1:
            raise ConfigError("n_bootstrap", self.n_bootstrap, "at least 1 for intervals (set it in the constructor)")
        k_arr, scalar = as_k(k)
        mean = np.asarray(self.predict(k_arr), dtype=float)
        gains = self._gain_questions(k_arr)
        rng = np.random.default_rng(None if self.random_state is None else self.random_state + 7)
        q = self.n_questions_
        idx = rng.integers(0, q, size=(int(self.n_bootstrap), q))
        per = np.stack([self._per_q[i].mean(axis=0) for i in idx])  # (B, Kobs)
        reps = self._observed(per, k_arr) + float(self.gain) * gains[idx].mean(axis=1)
        lo_b = np.quantile(reps, (1 - level) / 2, axis=0)
        hi_b = np.quantile(reps, 1 - (1 - level) / 2, axis=0)
        centre = self._observed(self.acc_[None, :], k_arr)[0] + float(self.gain) * gains.mean(axis=0)
        extra = float(self.spread) * np.abs(float(self.gain) * gains.mean(axis=0))
        low = centre - np.hypot(np.maximum(centre - lo_b, 0.0), extra)
        high = centre + np.hypot(np.maximum(hi_b - centre, 0.0), extra)
        cap = self._ceiling_at(k_arr, level)
        high = self._cap(high, k_arr, cap)
        low = np.minimum(low, mean)
        high = np.maximum(high, mean)
        low, high = np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)
        return (float(low[0]), float(high[0])) if scalar else (low, high)

    def bootstrap_params(self) -> np.ndarray:
        raise NotImplementedError("MajorityAnchoredCurve bootstraps questions; use predict_interval")
