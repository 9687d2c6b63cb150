"""Dataset-level accuracy-vs-k curve families fitted on (k, accuracy) points.

* :class:`ExpPowerLaw` -- c(k) = exp(a k^b), a < 0 (Brown et al. 2024, "Large Language Monkeys";
  -log c(k) is a power law in k). Nonlinear least squares on the accuracies.
* :class:`PowerLawWithFloor` -- err(k) = E + C k^-g, accuracy = 1 - err; E is the error no number
  of samples removes. Nonlinear least squares on the accuracies.
* :class:`LogLogRegression` -- the usual baseline: ordinary least squares of log(-log acc)
  (``transform="neglog"``, the same family as ExpPowerLaw, fitted on the transformed scale) or of
  log(1 - acc) (``transform="err"``, a power law in the error without floor) on log k.

``fit(k, acc)`` takes ``acc`` as a (K,) curve or a (P, K) matrix of per-problem accuracies whose
mean over problems is the curve; with the matrix the bootstrap resamples problems, otherwise it
resamples residuals. ``fit_counts(n, c)`` fits the exact unbiased pass@k of a pilot (k = 1..min n).
A curve that is 0 everywhere (or 1 everywhere) gives a degenerate fit that predicts 0 (or 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import least_squares

from ttscale.curves._base import CurveModel, as_k, check_counts, describe, pass_at_k
from ttscale.errors import ConfigError, EstimationError

_DEGENERATE_ZERO, _DEGENERATE_ONE = "all_zero", "all_one"


class AccuracyCurve(CurveModel):
    """Base of the (k, accuracy) families: input checks, degenerate curves, bootstrap schemes."""

    min_points = 2

    def fit(self, k: Any, acc: Any) -> AccuracyCurve:
        """Fit on sample counts ``k`` (K,) and accuracies ``acc`` (K,) or (P, K) per problem."""
        self._check_common_params()
        self._check_own_params()
        k_arr, _ = as_k(k)
        acc_arr = np.asarray(acc, dtype=float)
        if acc_arr.ndim not in (1, 2) or acc_arr.shape[-1] != k_arr.size:
            raise ConfigError("acc", describe(acc), f"a ({k_arr.size},) curve or a (problems, {k_arr.size}) matrix matching k")
        if not np.all(np.isfinite(acc_arr)) or np.any(acc_arr < 0) or np.any(acc_arr > 1):
            raise ConfigError("acc", describe(acc), "accuracies in [0, 1] (no NaN)")
        if np.unique(k_arr).size < self.min_points:
            raise EstimationError(
                f"{type(self).__name__} needs at least {self.min_points} distinct k to fit; got {np.unique(k_arr).size}"
            )
        per_problem = acc_arr if acc_arr.ndim == 2 else None
        curve = acc_arr.mean(axis=0) if per_problem is not None else acc_arr
        order = np.argsort(k_arr, kind="stable")
        data = (k_arr[order], curve[order], None if per_problem is None else per_problem[:, order])
        params = self._fit_params(data)
        self._set_fitted(data, params)
        self.k_, self.acc_ = data[0], data[1]
        self.degenerate_ = self._degenerate(curve)
        self._set_attributes(params)
        return self

    def fit_counts(self, n: Any, c: Any, k: Any = None) -> AccuracyCurve:
        """Fit on the exact unbiased pass@k of per-problem (n, c) at ``k`` (default 1..min(n))."""
        n_arr, c_arr = check_counts(n, c)
        ks = np.arange(1, int(n_arr.min()) + 1) if k is None else as_k(k)[0]
        return self.fit(ks, pass_at_k(n_arr, c_arr, ks))

    # --- helpers for subclasses ---------------------------------------------------------------------
    def _check_own_params(self) -> None:
        pass

    def _set_attributes(self, params: np.ndarray) -> None:
        pass

    @staticmethod
    def _degenerate(curve: np.ndarray) -> str | None:
        if np.all(curve <= 0):
            return _DEGENERATE_ZERO
        if np.all(curve >= 1):
            return _DEGENERATE_ONE
        return None

    def _usable(self, k: np.ndarray, curve: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points strictly inside (0, 1), where the transformed scales are defined."""
        keep = (curve > 0) & (curve < 1)
        if np.unique(k[keep]).size < self.min_points:
            raise EstimationError(
                f"{type(self).__name__} needs at least {self.min_points} points with 0 < accuracy < 1; "
                f"got {int(np.unique(k[keep]).size)} (accuracies {np.round(curve, 4).tolist()})"
            )
        return k[keep], curve[keep]

    def _resample(self, data: Any, rng: np.random.Generator) -> Any:
        k, curve, per_problem = data
        if per_problem is not None:
            rows = per_problem[rng.integers(0, per_problem.shape[0], per_problem.shape[0])]
            return k, rows.mean(axis=0), rows
        fitted = self._predict_params(self.params_[None, :], k)[0]
        resid = curve - fitted
        return k, np.clip(fitted + rng.choice(resid, size=resid.size, replace=True), 0.0, 1.0), None

    def _fit_params(self, data: Any, warm_start: np.ndarray | None = None) -> np.ndarray:
        k, curve, _ = data
        degenerate = self._degenerate(curve)
        if degenerate is not None:
            return self._degenerate_params(degenerate)
        try:
            return self._fit_curve(k, curve, warm_start)
        except EstimationError:
            if warm_start is None:
                raise
            # A bootstrap resample can lose the points a fit needs; keep the full-data fit for it.
            return warm_start

    def _fit_curve(self, k: np.ndarray, curve: np.ndarray, warm_start: np.ndarray | None) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _degenerate_params(self, which: str) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(slope)


class ExpPowerLaw(AccuracyCurve):
    """c(k) = exp(a k^b) with a < 0: a rising, saturating curve when b < 0.

    ``scale="linear"`` fits least squares on the accuracies, ``"log"`` on their logs (relative
    errors; better when the curve is tiny, as for pass@k of weak models).
    Fitted attributes: ``a_``, ``b_``, ``k_``, ``acc_``, ``degenerate_``.
    """

    def __init__(self, scale: str = "linear", n_bootstrap: int = 200, random_state: int | None = 0) -> None:
        self.scale = scale
        self.n_bootstrap = n_bootstrap
        self.random_state = random_state

    def _check_own_params(self) -> None:
        if self.scale not in ("linear", "log"):
            raise ConfigError("scale", self.scale, "'linear' or 'log'")

    def _degenerate_params(self, which: str) -> np.ndarray:
        return np.array([-np.inf if which == _DEGENERATE_ZERO else 0.0, 0.0])

    def _set_attributes(self, params: np.ndarray) -> None:
        self.a_, self.b_ = float(params[0]), float(params[1])

    def _fit_curve(self, k: np.ndarray, curve: np.ndarray, warm_start: np.ndarray | None) -> np.ndarray:
        ku, cu = self._usable(k, curve)
        log_k = np.log(k)
        log_neg_a0, b0 = _ols(np.log(ku), np.log(-np.log(cu)))
        starts = [np.array([log_neg_a0, b0])]
        if warm_start is not None and np.isfinite(warm_start[0]) and warm_start[0] < 0:
            starts.append(np.array([np.log(-warm_start[0]), warm_start[1]]))

        def resid(theta: np.ndarray) -> np.ndarray:
            log_c = -np.exp(theta[0] + theta[1] * log_k)
            return (log_c - np.log(np.maximum(curve, 1e-300))) if self.scale == "log" else (np.exp(log_c) - curve)

        if self.scale == "log" and np.any(curve <= 0):
            raise EstimationError("ExpPowerLaw(scale='log') needs accuracies > 0 at every k")
        best = min((least_squares(resid, s, bounds=([-50.0, -10.0], [50.0, 10.0]), method="trf") for s in starts), key=lambda r: r.cost)
        return np.array([-np.exp(best.x[0]), best.x[1]])

    def _predict_params(self, params: np.ndarray, k: np.ndarray) -> np.ndarray:
        a, b = params[:, :1], params[:, 1:2]
        with np.errstate(invalid="ignore", over="ignore"):
            expo = np.where(a == 0, 0.0, a * k[None, :] ** b)
        return np.exp(expo)


class PowerLawWithFloor(AccuracyCurve):
    """err(k) = E + C k^-g (E in [0, 1], C >= 0, g > 0); predicts accuracy 1 - err(k).

    Fitted attributes: ``E_``, ``C_``, ``g_`` (the floor, scale and exponent), ``k_``, ``acc_``,
    ``degenerate_``. Three parameters: needs at least 3 distinct k.
    """

    min_points = 3

    def __init__(self, n_bootstrap: int = 200, random_state: int | None = 0) -> None:
        self.n_bootstrap = n_bootstrap
        self.random_state = random_state

    def _degenerate_params(self, which: str) -> np.ndarray:
        return np.array([1.0 if which == _DEGENERATE_ZERO else 0.0, 0.0, 1.0])

    def _set_attributes(self, params: np.ndarray) -> None:
        self.E_, self.C_, self.g_ = (float(x) for x in params)

    def _fit_curve(self, k: np.ndarray, curve: np.ndarray, warm_start: np.ndarray | None) -> np.ndarray:
        if np.unique(k).size < self.min_points:
            raise EstimationError(f"PowerLawWithFloor needs at least {self.min_points} distinct k; got {np.unique(k).size}")
        err = 1.0 - curve
        log_k = np.log(k)
        starts = []
        lowest = float(err.min())
        for frac in (0.0, 0.5, 0.9, 0.99):
            e0 = frac * lowest
            gap = err - e0
            if np.sum(gap > 0) >= 2:
                icpt, slope = _ols(log_k[gap > 0], np.log(gap[gap > 0]))
                starts.append(np.array([e0, np.exp(icpt), min(max(-slope, 1e-4), 9.0)]))
        if warm_start is not None:
            starts.append(np.clip(warm_start, [0.0, 0.0, 1e-4], [1.0, 1e6, 9.0]))
        if not starts:
            starts.append(np.array([lowest, 1e-3, 0.5]))

        def resid(theta: np.ndarray) -> np.ndarray:
            return (theta[0] + theta[1] * np.exp(-theta[2] * log_k)) - err

        fits = [least_squares(resid, np.clip(s, [0.0, 0.0, 1e-4], [1.0, 1e6, 9.0]), bounds=([0.0, 0.0, 1e-6], [1.0, 1e6, 10.0])) for s in starts]
        return min(fits, key=lambda r: r.cost).x

    def _predict_params(self, params: np.ndarray, k: np.ndarray) -> np.ndarray:
        e, c, g = params[:, :1], params[:, 1:2], params[:, 2:3]
        return 1.0 - (e + c * k[None, :] ** (-g))


class LogLogRegression(AccuracyCurve):
    """Baseline: ordinary least squares on log k of log(-log acc) or log(1 - acc).

    ``transform="neglog"``: log(-log acc) = alpha + beta log k, i.e. acc = exp(-e^alpha k^beta)
    (the exponentiated power law fitted on its linearizing scale, as in Brown et al. 2024).
    ``transform="err"``: log(1 - acc) = alpha + beta log k (power law in the error, no floor).
    Only points with 0 < acc < 1 enter the regression. Fitted: ``intercept_``, ``slope_``.
    """

    def __init__(self, transform: str = "neglog", n_bootstrap: int = 200, random_state: int | None = 0) -> None:
        self.transform = transform
        self.n_bootstrap = n_bootstrap
        self.random_state = random_state

    def _check_own_params(self) -> None:
        if self.transform not in ("neglog", "err"):
            raise ConfigError("transform", self.transform, "'neglog' (log(-log acc)) or 'err' (log(1 - acc))")

    def _degenerate_params(self, which: str) -> np.ndarray:
        # neglog: acc = exp(-exp(intercept) k^slope); err: acc = 1 - exp(intercept) k^slope.
        zero = which == _DEGENERATE_ZERO
        if self.transform == "neglog":
            return np.array([np.inf if zero else -np.inf, 0.0])
        return np.array([0.0 if zero else -np.inf, 0.0])

    def _set_attributes(self, params: np.ndarray) -> None:
        self.intercept_, self.slope_ = float(params[0]), float(params[1])

    def _fit_curve(self, k: np.ndarray, curve: np.ndarray, warm_start: np.ndarray | None) -> np.ndarray:
        ku, cu = self._usable(k, curve)
        y = np.log(-np.log(cu)) if self.transform == "neglog" else np.log1p(-cu)
        return np.array(_ols(np.log(ku), y))

    def _predict_params(self, params: np.ndarray, k: np.ndarray) -> np.ndarray:
        icpt, slope = params[:, :1], params[:, 1:2]
        with np.errstate(over="ignore", invalid="ignore"):
            lin = icpt + slope * np.log(k[None, :])
            lin = np.where(np.isfinite(icpt), lin, icpt)
            if self.transform == "neglog":
                return np.exp(-np.exp(lin))
            return 1.0 - np.exp(lin)
