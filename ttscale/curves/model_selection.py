"""Choosing a curve model by held-out extrapolation error, and the best N of a non-monotone curve.

In-sample fit says little about extrapolation: every family here fits a pilot's k <= 32 curve
to a fraction of a point and they still disagree by tens of points at k = 10,000. So a model is
scored the way it will be used: fitted on the small-k part of the data and scored on the
larger-k part it did not see.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ttscale.curves._base import CurveModel, as_k, check_counts, describe, pass_at_k
from ttscale.errors import ConfigError, EstimationError
from ttscale.validation import check_count, is_number


@dataclass
class CurveSelection:
    """Result of a model choice: held-out scores (mean absolute error, accuracy units), best first."""

    scores: dict[str, float]
    """Held-out extrapolation error per model name (``inf`` when the model could not be fitted)."""
    ranking: list[str]
    """Model names sorted by held-out error, best first (ties keep the order given)."""
    best_name: str
    best: CurveModel
    """The best model refitted on all the data."""
    train_k: np.ndarray
    test_k: np.ndarray
    failures: dict[str, str] = field(default_factory=dict)
    """Why a model could not be fitted on the training part, per name."""


def _named(models: Mapping[str, CurveModel] | Sequence[CurveModel]) -> dict[str, CurveModel]:
    if isinstance(models, Mapping):
        named = dict(models)
    else:
        named = {}
        for model in models:
            name = type(model).__name__
            if name in named:
                name = repr(model)
            i = 2
            base = name
            while name in named:
                name, i = f"{base}#{i}", i + 1
            named[name] = model
    if not named:
        raise ConfigError("models", "[]", "at least one curve model")
    for name, model in named.items():
        if not isinstance(model, CurveModel):
            raise ConfigError("models", f"{name}: {type(model).__name__}", "ttscale curve models (fit/predict)")
    return named


def _holdout(holdout_fraction: float) -> float:
    if not is_number(holdout_fraction) or not 0.0 < holdout_fraction < 1.0:
        raise ConfigError("holdout_fraction", holdout_fraction, "a fraction strictly between 0 and 1")
    return float(holdout_fraction)


def _rank(scores: dict[str, float]) -> list[str]:
    names = list(scores)
    return sorted(names, key=lambda n: (scores[n], names.index(n)))


def select_curve_model(
    models: Mapping[str, CurveModel] | Sequence[CurveModel],
    k: Any,
    acc: Any,
    holdout_fraction: float = 0.5,
) -> CurveSelection:
    """Fit each (k, accuracy) model on the smallest k and score it on the largest ``holdout_fraction``.

    ``acc`` is a (K,) curve or a (P, K) per-problem matrix (its mean is the curve). The score is
    the mean absolute error over the held-out k; the best model is then refitted on every point.
    """
    named = _named(models)
    frac = _holdout(holdout_fraction)
    k_arr, _ = as_k(k)
    acc_arr = np.asarray(acc, dtype=float)
    if acc_arr.ndim not in (1, 2) or acc_arr.shape[-1] != k_arr.size:
        raise ConfigError("acc", describe(acc), f"a ({k_arr.size},) curve or a (problems, {k_arr.size}) matrix matching k")
    order = np.argsort(k_arr, kind="stable")
    k_arr, acc_arr = k_arr[order], acc_arr[..., order]
    n_test = max(1, int(round(frac * k_arr.size)))
    n_train = k_arr.size - n_test
    if n_train < 2:
        raise EstimationError(f"held-out selection needs at least 3 points (2 to fit, 1 to score); got {k_arr.size}")
    curve = acc_arr.mean(axis=0) if acc_arr.ndim == 2 else acc_arr
    scores: dict[str, float] = {}
    failures: dict[str, str] = {}
    for name, model in named.items():
        try:
            fitted = model.clone().fit(k_arr[:n_train], acc_arr[..., :n_train])
            pred = np.asarray(fitted.predict(k_arr[n_train:]))
            scores[name] = float(np.mean(np.abs(pred - curve[n_train:])))
        except EstimationError as exc:
            scores[name], failures[name] = float("inf"), str(exc)
    ranking = _rank(scores)
    if not np.isfinite(scores[ranking[0]]):
        raise EstimationError("no model could be fitted on the training part: " + "; ".join(f"{n}: {m}" for n, m in failures.items()))
    best = named[ranking[0]].clone().fit(k_arr, acc_arr)
    return CurveSelection(scores, ranking, ranking[0], best, k_arr[:n_train], k_arr[n_train:], failures)


def select_pass_at_k_model(
    models: Mapping[str, CurveModel] | Sequence[CurveModel],
    n: Any,
    c: Any,
    holdout_fraction: float = 0.5,
    n_repeats: int = 5,
    random_state: int | None = 0,
) -> CurveSelection:
    """Choose among pass@k models (anything with ``fit_counts(n, c)``) by held-out extrapolation.

    From per-problem (n, c) with m = min(n) samples each, every repeat draws a sub-pilot of
    m' = (1 - holdout_fraction) m samples per problem (hypergeometric, seeded); each model is
    fitted on it and scored on the exact pass@k of the full data at k = m'+1..m (mean absolute
    error, averaged over repeats). The best is refitted on the full data. Count models (the
    beta-binomial) and curve models (fitted on the sub-pilot's exact pass@k curve) compete on the
    same sub-pilots.
    """
    named = _named(models)
    frac = _holdout(holdout_fraction)
    n_arr, c_arr = check_counts(n, c)
    check_count("n_repeats", n_repeats, 1, "a positive integer")
    for name, model in named.items():
        if not hasattr(model, "fit_counts"):
            raise ConfigError("models", f"{name}: {type(model).__name__}", "pass@k models with fit_counts(n, c)")
    m = int(n_arr.min())
    m_train = int(np.floor((1.0 - frac) * m))
    if m_train < 3 or m_train >= m:
        raise EstimationError(f"held-out pass@k selection needs at least 4 samples per problem; got {m}")
    test_k = np.arange(m_train + 1, m + 1)
    target = pass_at_k(n_arr, c_arr, test_k).mean(axis=0)
    rng = np.random.default_rng(random_state)
    errors: dict[str, list[float]] = {name: [] for name in named}
    failures: dict[str, str] = {}
    for _ in range(int(n_repeats)):
        c_sub = rng.hypergeometric(c_arr, n_arr - c_arr, m_train)
        for name, model in named.items():
            if name in failures:
                continue
            try:
                fitted = model.clone().fit_counts(np.full(n_arr.size, m_train), c_sub)
                errors[name].append(float(np.mean(np.abs(np.asarray(fitted.predict(test_k)) - target))))
            except EstimationError as exc:
                failures[name] = str(exc)
    scores = {name: (float(np.mean(errs)) if name not in failures else float("inf")) for name, errs in errors.items()}
    ranking = _rank(scores)
    if not np.isfinite(scores[ranking[0]]):
        raise EstimationError("no model could be fitted on the sub-pilots: " + "; ".join(f"{n}: {m}" for n, m in failures.items()))
    best = named[ranking[0]].clone().fit_counts(n_arr, c_arr)
    return CurveSelection(scores, ranking, ranking[0], best, np.arange(1, m_train + 1), test_k, failures)


@dataclass(frozen=True)
class BestN:
    """The best number of samples on a curve that need not rise with N."""

    k: float
    """The N with the highest accuracy (the smallest such N on ties)."""
    acc: float
    """Accuracy at that N."""
    monotone: bool
    """Whether the curve never falls by more than the tolerance as N grows."""
    largest_drop: float
    """The largest fall from a running maximum (0 for a non-decreasing curve)."""
    final_gap: float
    """Accuracy at the best N minus accuracy at the largest N (what more samples lose)."""


def best_n(k: Any, acc: Any, tolerance: float = 0.0) -> BestN:
    """Argmax of an accuracy-vs-N curve with a non-monotonicity flag.

    Reward-selected policies (Best-of-N, reward-weighted vote) can get worse with more samples
    when the reward is misspecified, so the best N is not necessarily the largest. ``acc`` is a
    (K,) curve, a (P, K) per-problem matrix (averaged) or a fitted curve model (predicted at k).
    """
    k_arr, _ = as_k(k)
    if isinstance(acc, CurveModel):
        acc_arr = np.asarray(acc.predict(k_arr), dtype=float)
    else:
        acc_arr = np.asarray(acc, dtype=float)
        if acc_arr.ndim == 2:
            acc_arr = acc_arr.mean(axis=0)
    if acc_arr.shape != k_arr.shape:
        raise ConfigError("acc", describe(acc), f"a ({k_arr.size},) curve matching k")
    if not np.all(np.isfinite(acc_arr)):
        raise ConfigError("acc", describe(acc), "finite accuracies (no NaN)")
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ConfigError("tolerance", tolerance, "a non-negative number")
    order = np.argsort(k_arr, kind="stable")
    k_sorted, a_sorted = k_arr[order], acc_arr[order]
    i = int(np.argmax(a_sorted))
    drops = np.maximum.accumulate(a_sorted) - a_sorted
    largest = float(drops.max())
    return BestN(
        k=float(k_sorted[i]),
        acc=float(a_sorted[i]),
        monotone=bool(largest <= tolerance),
        largest_drop=largest,
        final_gap=float(a_sorted[i] - a_sorted[-1]),
    )
