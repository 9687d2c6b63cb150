"""Shared machinery of the curve models: parameters, fitted checks, bootstrap intervals, input checks.

The models follow scikit-learn's conventions without depending on it: the constructor only stores
its arguments, ``fit`` returns ``self`` and sets attributes whose names end in ``_``, ``predict``
before ``fit`` raises :class:`~ttscale.errors.EstimationError`.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import numpy as np

from ttscale.errors import ConfigError, EstimationError
from ttscale.validation import check_count, is_int


def describe(x: Any) -> str:
    """A short description of an argument for error messages (never the whole array)."""
    arr = np.asarray(x)
    if arr.ndim == 0:
        return repr(arr.item()) if arr.dtype != object else repr(x)
    return f"array of shape {arr.shape}, dtype {arr.dtype}"


def as_k(k: Any, name: str = "k") -> tuple[np.ndarray, bool]:
    """``k`` as a 1-D float array of positive finite values; also whether the input was a scalar."""
    arr = np.asarray(k, dtype=float)
    scalar = arr.ndim == 0
    arr = np.atleast_1d(arr)
    if arr.ndim != 1 or arr.size == 0:
        raise ConfigError(name, describe(k), "a positive number or a non-empty 1-D array of them")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ConfigError(name, describe(k), "positive finite sample counts")
    return arr, scalar


def check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ConfigError("level", level, "a confidence level strictly between 0 and 1 (e.g. 0.95)")
    return level


def check_counts(n: Any, c: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-problem (trials, successes) as int64 arrays with 0 <= c <= n, n >= 1."""
    n_arr = np.asarray(n)
    c_arr = np.asarray(c)
    if n_arr.ndim == 0:
        n_arr = np.full(c_arr.shape, n_arr)
    if n_arr.ndim != 1 or c_arr.ndim != 1 or n_arr.shape != c_arr.shape:
        raise ConfigError("n, c", f"{describe(n)} and {describe(c)}", "two 1-D arrays of the same length (one entry per problem)")
    for name, arr in (("n", n_arr), ("c", c_arr)):
        if arr.size and (not np.all(np.isfinite(arr.astype(float))) or np.any(arr.astype(float) != np.round(arr.astype(float)))):
            raise ConfigError(name, describe(arr), "whole numbers")
    n_arr = n_arr.astype(np.int64)
    c_arr = c_arr.astype(np.int64)
    if np.any(n_arr < 1):
        raise ConfigError("n", describe(n), "at least one trial per problem")
    if np.any(c_arr < 0) or np.any(c_arr > n_arr):
        bad = int(np.flatnonzero((c_arr < 0) | (c_arr > n_arr))[0])
        raise ConfigError("c", f"c[{bad}]={c_arr[bad]} with n[{bad}]={n_arr[bad]}", "0 <= c <= n for every problem")
    return n_arr, c_arr


def pass_at_k(n: Any, c: Any, k: Any) -> np.ndarray:
    """Unbiased per-problem pass@k, 1 - C(n-c, k) / C(n, k), as a (P, K) array (Chen et al. 2021).

    Computed by ``ttscale.estimate.pass_at_k``; this wrapper adds the curves' input checks. Every k
    must be at most every problem's n (a pool of n samples says nothing exact about more),
    otherwise :class:`EstimationError` (``ttscale.estimate.pass_at_k`` returns NaN there instead).
    """
    n_arr, c_arr = check_counts(n, c)
    k_arr, _ = as_k(k)
    if np.any(k_arr != np.round(k_arr)):
        raise ConfigError("k", describe(k), "whole numbers of samples")
    if n_arr.size and k_arr.max() > n_arr.min():
        raise EstimationError(f"pass@k needs k <= n samples per problem; got k up to {int(k_arr.max())} with n as small as {int(n_arr.min())}")
    from ttscale.estimate.exact import (
        pass_at_k as exact_pass_at_k,  # lazy: keeps the curves importable on their own
    )

    return exact_pass_at_k(n_arr, c_arr, [int(k) for k in k_arr])


class CurveModel:
    """Base class: parameters, cloning, fitted checks and bootstrap intervals.

    Subclasses implement ``_fit_params(data) -> params (1-D array)``, ``_predict_params(params, k)``
    (params of shape (B, p), returns (B, K)) and ``_resample(data, rng)`` for the bootstrap.
    ``fit`` stores ``params_`` and the data; bootstrap refits happen on the first interval request.
    """

    n_bootstrap: int
    random_state: int | None

    # --- scikit-learn style parameter handling -------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD]

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> CurveModel:
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise ConfigError(key, value, f"one of the parameters of {type(self).__name__}: {', '.join(valid)}")
            setattr(self, key, value)
        return self

    def clone(self) -> CurveModel:
        """An unfitted copy with the same parameters."""
        return type(self)(**copy.deepcopy(self.get_params()))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # --- fitted state ----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise EstimationError(
                f"this {type(self).__name__} is not fitted yet: call fit(...) before predict, "
                "predict_interval or reading fitted attributes"
            )

    def _check_common_params(self) -> None:
        check_count("n_bootstrap", self.n_bootstrap, 0, "a non-negative integer")
        if self.random_state is not None and not is_int(self.random_state):
            raise ConfigError("random_state", self.random_state, "an integer seed or None")

    def _set_fitted(self, data: Any, params: np.ndarray) -> None:
        self._data = data
        self.params_ = np.asarray(params, dtype=float)
        self._bootstrap_params = None

    # --- prediction -------------------------------------------------------------------------------
    def predict(self, k: Any) -> np.ndarray | float:
        """Dataset accuracy at ``k`` samples (array in, array out; scalar in, float out)."""
        self._check_fitted()
        k_arr, scalar = as_k(k)
        out = self._predict_params(self.params_[None, :], k_arr)[0]
        out = np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0)
        return float(out[0]) if scalar else out

    def bootstrap_params(self) -> np.ndarray:
        """(n_bootstrap, p) parameters refitted on resampled data (seeded, computed once)."""
        self._check_fitted()
        if self.n_bootstrap < 1:
            raise ConfigError("n_bootstrap", self.n_bootstrap, "at least 1 for intervals (set it in the constructor)")
        if self._bootstrap_params is None:
            rng = np.random.default_rng(self.random_state)
            rows = []
            for _ in range(int(self.n_bootstrap)):
                data = self._resample(self._data, rng)
                rows.append(self._fit_params(data, warm_start=self.params_))
            self._bootstrap_params = np.asarray(rows, dtype=float)
        return self._bootstrap_params

    def predict_interval(self, k: Any, level: float = 0.95) -> tuple[np.ndarray, np.ndarray] | tuple[float, float]:
        """Percentile bootstrap interval ``(low, high)`` of the dataset accuracy at ``k``."""
        level = check_level(level)
        k_arr, scalar = as_k(k)
        params = self.bootstrap_params()
        preds = np.clip(np.nan_to_num(self._predict_params(params, k_arr), nan=0.0), 0.0, 1.0)
        lo = np.quantile(preds, (1 - level) / 2, axis=0)
        hi = np.quantile(preds, 1 - (1 - level) / 2, axis=0)
        return (float(lo[0]), float(hi[0])) if scalar else (lo, hi)

    # --- subclass hooks -----------------------------------------------------------------------------
    def _fit_params(self, data: Any, warm_start: np.ndarray | None = None) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _predict_params(self, params: np.ndarray, k: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _resample(self, data: Any, rng: np.random.Generator) -> Any:  # pragma: no cover
        raise NotImplementedError
