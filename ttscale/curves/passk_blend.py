"""The automatic pass@k extrapolation: a fixed blend of curve models, chosen held out across corpora.

No single pass@k model wins everywhere. On held-out corpora (``evals/unseen_passk.py``: each choice
fitted on all corpora but one, scored on the one left out, in turn: three groups of Pythia
checkpoints, four of the embedded model and four of a second, smaller one; 20 pilots per dataset)
the beta-binomial with a prior on its shape and the exponentiated power law err on opposite sides at
large k, and their blend, each anchored at the pilot, beats the best single model in hindsight where
errors are large (Pythia at k = 10,000: 8.9-13.1 points against 10.2-18.3). Where
most of the pilot's problems were solved at least once (fewer than ``unsolved_split`` never were),
the power laws fitted to the dataset curve under-shoot (a pilot that solves most problems only once
or twice: 6-12 points at k = 100) and the beta-binomial over the problems' rates alone does best;
so the blend has one set of weights per regime. Held out, it stayed within 10% (or 0.25 point) of
the best single model on all eleven corpora, its 95% intervals covering 98-100%. The weights, the split, the shape prior and the
interval scale below are that evaluation's choice fitted on all corpora; they are data, not tuned on
any bank a user brings.

Interval: the blend -/+ ``interval_scale`` x (the largest distance from the blend to any component,
plus one point), in quadrature with the sampling error of a dataset mean over the pilot's problems,
the upper end raised by what problems never solved in the pilot could add (rule of
three: at most min(P0, 3k/m) / P for P0 of P problems unsolved in m samples) and the lower end kept
at the pilot's own pass@m minus 5 points (pass@k never falls with k). The scale was calibrated for
95% coverage of 95% intervals on the training corpora with 32-sample pilots; other levels scale it by the normal
quantile ratio.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import norm

from ttscale.curves._base import CurveModel, as_k, check_counts, check_level, pass_at_k
from ttscale.curves.parametric import ExpPowerLaw, LogLogRegression, PowerLawWithFloor
from ttscale.curves.passk import SUPPORT_TOLERANCE, BetaBinomialPassAtK
from ttscale.errors import ConfigError, EstimationError
from ttscale.validation import is_number

__all__ = ["BlendedPassAtK", "DEFAULT_WEIGHTS", "DEFAULT_SOLVED_WEIGHTS", "DEFAULT_UNSOLVED_SPLIT", "DEFAULT_SHAPE_PRIOR",
           "DEFAULT_INTERVAL_SCALE"]

DEFAULT_WEIGHTS: tuple[tuple[str, float], ...] = (("bb-shape", 0.5746), ("exp-power-law", 0.4254))
"""Component weights for pilots where many problems were never solved (``evals/unseen_passk.py``, fitted on
every corpus's pilots with an unsolved share at or above the split)."""
DEFAULT_SOLVED_WEIGHTS: tuple[tuple[str, float], ...] = (("bb-shape", 1.0),)
"""Component weights for pilots where most problems were solved at least once (unsolved share below the split)."""
DEFAULT_UNSOLVED_SPLIT = 0.5
"""The share of a pilot's problems never solved at which the blend switches from ``DEFAULT_SOLVED_WEIGHTS``
to ``DEFAULT_WEIGHTS`` (chosen held out with the weights)."""
DEFAULT_SHAPE_PRIOR: tuple[float, float] = (1.05, 0.5)
"""Log-normal prior on the Beta shape of the ``bb-shape`` component: (median, sd of log a)."""
DEFAULT_INTERVAL_SCALE = 0.5
"""Interval half-width in units of the components' spread (95% level)."""

COMPONENTS = ("bb", "bb-shape", "exp-power-law", "log-log", "power-law+floor")


def _component(name: str, shape_prior: tuple[float, float]) -> CurveModel:
    if name == "bb":
        return BetaBinomialPassAtK(n_bootstrap=0)
    if name == "bb-shape":
        return BetaBinomialPassAtK(shape_prior=tuple(shape_prior), n_bootstrap=0)  # type: ignore[arg-type]
    if name == "exp-power-law":
        return ExpPowerLaw(n_bootstrap=0)
    if name == "log-log":
        return LogLogRegression(transform="neglog", n_bootstrap=0)
    return PowerLawWithFloor(n_bootstrap=0)


class BlendedPassAtK(CurveModel):
    """Dataset pass@k beyond the pilot as a weighted blend of pass@k models fitted on per-problem
    counts, each anchored at the pilot's exact pass@m (m = the smallest pool).

    Parameters
    ----------
    weights:
        ``((component, weight), ...)`` over ``bb``, ``bb-shape``, ``exp-power-law``, ``log-log``,
        ``power-law+floor``; non-negative, summing to 1. Used when at least ``unsolved_split`` of the
        pilot's problems were never solved.
    solved_weights:
        The same, used when fewer than ``unsolved_split`` of the problems were never solved (the
        power laws fitted to such a pilot's curve under-shoot; the beta-binomial over the problems'
        rates does not).
    unsolved_split:
        Share of never-solved problems in [0, 1] at which ``weights`` replace ``solved_weights``.
    shape_prior:
        ``(median, sd)`` of the log-normal prior on the ``bb-shape`` component's Beta shape.
    interval_scale:
        Half-width of the 95% interval in units of the components' spread.

    Fitted attributes: ``components_`` (name -> fitted model), ``pilot_`` (smallest samples per
    problem), ``zero_share_`` (share of problems never solved), ``regime_`` (``"mostly solved"`` or
    ``"often unsolved"``: which weights apply), ``weights_`` (those weights over the fitted
    components), ``failed_`` (components that could not be fitted; their weight goes to the others).
    """

    def __init__(self, weights: tuple[tuple[str, float], ...] = DEFAULT_WEIGHTS,
                 solved_weights: tuple[tuple[str, float], ...] = DEFAULT_SOLVED_WEIGHTS,
                 unsolved_split: float = DEFAULT_UNSOLVED_SPLIT,
                 shape_prior: tuple[float, float] = DEFAULT_SHAPE_PRIOR,
                 interval_scale: float = DEFAULT_INTERVAL_SCALE) -> None:
        self.weights = weights
        self.solved_weights = solved_weights
        self.unsolved_split = unsolved_split
        self.shape_prior = shape_prior
        self.interval_scale = interval_scale
        self.n_bootstrap = 0
        self.random_state = None

    @staticmethod
    def _checked_weights(param: str, weights: Any) -> dict[str, float]:
        try:
            w = {str(name): float(v) for name, v in weights}
        except (TypeError, ValueError):
            raise ConfigError(param, weights, "pairs of (component name, weight)") from None
        bad = [n for n in w if n not in COMPONENTS]
        if bad:
            raise ConfigError(param, bad[0], f"a component among {', '.join(COMPONENTS)}")
        if any(not np.isfinite(v) or v < 0 for v in w.values()) or abs(sum(w.values()) - 1) > 1e-3:
            raise ConfigError(param, weights, "non-negative weights summing to 1")
        return {n: v for n, v in w.items() if v > 0}

    def fit(self, n: Any, c: Any) -> BlendedPassAtK:
        """Fit every weighted component on per-problem trials ``n`` and successes ``c``."""
        often_unsolved = self._checked_weights("weights", self.weights)
        mostly_solved = self._checked_weights("solved_weights", self.solved_weights)
        if not is_number(self.unsolved_split) or not 0 <= self.unsolved_split <= 1:
            raise ConfigError("unsolved_split", self.unsolved_split, "a share of problems in [0, 1]")
        prior = self.shape_prior
        if not (isinstance(prior, (tuple, list)) and len(prior) == 2 and all(is_number(v) and v > 0 for v in prior)):
            raise ConfigError("shape_prior", prior, "(median of a > 0, sd of log a > 0)")
        if not is_number(self.interval_scale) or not self.interval_scale >= 0:
            raise ConfigError("interval_scale", self.interval_scale, "a non-negative number")
        n_arr, c_arr = check_counts(n, c)
        if n_arr.size < 2:
            raise EstimationError(f"pass@k extrapolation needs at least 2 problems; got {n_arr.size}")
        m = int(n_arr.min())
        if m < 2:
            raise EstimationError(f"pass@k extrapolation needs at least 2 samples per problem; the smallest pool has {m}")
        fitted: dict[str, CurveModel] = {}
        failed: dict[str, str] = {}
        # Every component is fitted: the weighted ones make the curve, all of them the interval.
        for name in COMPONENTS:
            try:
                fitted[name] = _component(name, tuple(prior)).fit_counts(n_arr, c_arr)
            except EstimationError as exc:
                failed[name] = str(exc)
        zero_share = float(np.mean(c_arr == 0))
        self.regime_ = "mostly solved" if zero_share < self.unsolved_split else "often unsolved"
        weights = mostly_solved if self.regime_ == "mostly solved" else often_unsolved
        if not any(name in fitted for name in weights):
            raise EstimationError("no pass@k model could be fitted: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))
        total = sum(weights[k] for k in weights if k in fitted)
        self.components_ = fitted
        self.weights_ = {k: weights[k] / total for k in weights if k in fitted}
        self.failed_ = failed
        self.pilot_ = m
        self.n_problems_ = int(n_arr.size)
        self.zero_share_ = zero_share
        self.observed_ = float(pass_at_k(n_arr, c_arr, [m]).mean())
        # The largest k at which never-solved problems could add at most SUPPORT_TOLERANCE (2 points).
        zeros = self.zero_share_ * self.n_problems_
        self.max_supported_k_ = (float("inf") if zeros <= SUPPORT_TOLERANCE * self.n_problems_
                                 else SUPPORT_TOLERANCE * self.n_problems_ * m / 3.0)
        self._counts = (n_arr, c_arr)
        self._set_fitted(None, np.zeros(1))
        return self

    def fit_counts(self, n: Any, c: Any) -> BlendedPassAtK:
        """Same as :meth:`fit` (the name every pass@k model shares)."""
        return self.fit(n, c)

    def _parts(self, k_arr: np.ndarray) -> np.ndarray:
        """Each component's prediction at ``k_arr``, anchored at the pilot: its failure rate
        rescaled so it passes through the data's exact pass@m (a model that over-shoots the
        pilot's own end would carry that error into every extrapolation)."""
        rows = []
        for name in self.components_:
            pred = np.asarray(self.components_[name].predict(np.concatenate([[self.pilot_], k_arr])), dtype=float)
            at_m, pred = pred[0], pred[1:]
            if at_m < 1.0:
                pred = 1.0 - (1.0 - pred) * (1.0 - self.observed_) / (1.0 - at_m)
            rows.append(np.clip(pred, 0.0, 1.0))
        return np.stack(rows)

    def predict(self, k: Any) -> np.ndarray | float:
        """Blended dataset pass@k (the exact pass@k of the data where k is within the pilot)."""
        self._check_fitted()
        k_arr, scalar = as_k(k)
        w = np.array([self.weights_.get(name, 0.0) for name in self.components_])
        out = np.clip(w @ self._parts(k_arr), 0.0, 1.0)
        inside = k_arr <= self.pilot_
        if np.any(inside):
            n_arr, c_arr = self._counts
            ks = np.round(k_arr[inside]).astype(int)
            out[inside] = pass_at_k(n_arr, c_arr, np.maximum(ks, 1)).mean(axis=0)
        return float(out[0]) if scalar else out

    def unseen_mass(self, k: Any) -> np.ndarray:
        """Rule-of-three bound on what problems never solved could add at k (share of problems)."""
        self._check_fitted()
        k_arr, _ = as_k(k)
        zeros = self.zero_share_ * self.n_problems_
        return np.minimum(zeros, 3.0 * k_arr / self.pilot_) / self.n_problems_

    def predict_interval(self, k: Any, level: float = 0.95) -> tuple[np.ndarray, np.ndarray] | tuple[float, float]:
        """(low, high): the blend -/+ scaled component spread, widened up by :meth:`unseen_mass`."""
        level = check_level(level)
        k_arr, scalar = as_k(k)
        center = np.atleast_1d(self.predict(k_arr))
        spread = np.max(np.abs(self._parts(k_arr) - center), axis=0) + 0.01
        z = float(norm.ppf(0.5 + level / 2))
        scale = float(self.interval_scale) * z / float(norm.ppf(0.975))
        # Which problems the pilot holds is uncertain too: a dataset mean of values in [0, 1] varies
        # at most like coin flips with the same mean (added in quadrature).
        sampling = z * np.sqrt(center * (1 - center) / self.n_problems_)
        half = np.hypot(scale * spread, sampling)
        lo = np.clip(center - half, max(self.observed_ - 0.05, 0.0), 1.0)
        hi = np.clip(center + half + self.unseen_mass(k_arr), 0.0, 1.0)
        inside = k_arr <= self.pilot_
        lo = np.where(inside, np.minimum(lo, center), np.minimum(lo, center))
        hi = np.maximum(hi, center)
        return (float(lo[0]), float(hi[0])) if scalar else (lo, hi)
