"""Curve models for accuracy vs number of samples: fit on a pilot, predict far beyond it.

scikit-learn style: constructors store parameters, ``fit(...)`` returns the model and sets
attributes ending in ``_``, ``predict(k)`` gives dataset accuracy at k (array in, array out),
``predict_interval(k, level)`` a seeded bootstrap interval. Predicting before fitting raises
:class:`ttscale.errors.EstimationError`.

* pass@k from per-problem success counts: :class:`BetaBinomialPassAtK` (optionally
  zero-inflated, optionally with a prior on the Beta shape) and :class:`BlendedPassAtK`, the
  held-out-chosen blend ``ttscale plan -p pass`` uses.
* (k, accuracy) curve families: :class:`ExpPowerLaw` c(k) = exp(a k^b),
  :class:`PowerLawWithFloor` err(k) = E + C k^-g, and the :class:`LogLogRegression` baseline.
* majority vote beyond the pilot: :class:`DirichletMajorityModel`.
* any other vote-type policy beyond the pilot, bounded by what votes reach:
  :class:`MajorityAnchoredCurve` (anchored on a fitted majority model, capped by pass@k).
* model choice by held-out extrapolation error: :func:`select_curve_model`,
  :func:`select_pass_at_k_model`; the best N of a non-monotone curve: :func:`best_n`.
"""

from ttscale.curves._base import CurveModel, pass_at_k
from ttscale.curves.majority import (
    DirichletMajorityModel,
    as_majority_data,
    calibrate_prior,
)
from ttscale.curves.parametric import (
    AccuracyCurve,
    ExpPowerLaw,
    LogLogRegression,
    PowerLawWithFloor,
)
from ttscale.curves.passk import BetaBinomialPassAtK, beta_binomial_pass_at_k
from ttscale.curves.passk_blend import BlendedPassAtK
from ttscale.curves.policy_curve import (
    EXTRAPOLATION_SPREAD,
    MIN_ANCHOR_QUESTIONS,
    VOTE_GAIN,
    VOTE_GAINS,
    MajorityAnchoredCurve,
    smooth_majority,
    vote_gain,
)
from ttscale.curves.model_selection import (
    BestN,
    CurveSelection,
    best_n,
    select_curve_model,
    select_pass_at_k_model,
)

__all__ = [
    "EXTRAPOLATION_SPREAD",
    "MIN_ANCHOR_QUESTIONS",
    "VOTE_GAIN",
    "VOTE_GAINS",
    "AccuracyCurve",
    "BestN",
    "BetaBinomialPassAtK",
    "BlendedPassAtK",
    "CurveModel",
    "CurveSelection",
    "DirichletMajorityModel",
    "ExpPowerLaw",
    "LogLogRegression",
    "MajorityAnchoredCurve",
    "PowerLawWithFloor",
    "as_majority_data",
    "best_n",
    "beta_binomial_pass_at_k",
    "calibrate_prior",
    "pass_at_k",
    "select_curve_model",
    "select_pass_at_k_model",
    "smooth_majority",
    "vote_gain",
]
