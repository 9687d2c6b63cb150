"""Calibrating the majority curve's prior on the pilot alone.

Three steps, each documented where it lives: the pooled leave-one-out predictive likelihood of every
pilot sample picks the prior values (:func:`calibrate_prior`); the correct class's discount is then
re-set so the model's maj@1 equals the pilot's correct share; on large pilots the discount is
re-set so the model's maj@n_ref equals the pilot's exact maj@n_ref (:func:`match_pool_discount`).
:func:`posterior_urn` turns the prior and the pilot votes into each question's posterior-predictive urn.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ttscale.curves._optim import minimize_box, numeric_fun_grad
from ttscale.curves.majority_data import MajorityData
from ttscale.curves.majority_math import EXACT_MAX, exact_majority
from ttscale.errors import ConfigError, EstimationError
from ttscale.validation import is_number

AUTO = "auto"
"""A prior value searched on the pilot (the default of every value)."""
SAME = "same"
"""correct_discount tied to discount: the correct class is then one class like the others."""

PRIOR_NAMES = ("discount", "correct_discount", "new_mass", "correct_share", "none_prior")
_DEFAULTS = {"discount": 0.5, "correct_discount": 0.0, "new_mass": 1.0, "correct_share": 0.2, "none_prior": 0.5}
# Search space: discounts as they are, masses on log scale, the share on logit scale.
_SEARCH_BOUNDS = {
    "discount": (-5.0, 0.99),
    "correct_discount": (-5.0, 0.99),
    "new_mass": (np.log(1e-4), np.log(1e3)),
    "correct_share": (-9.0, 9.0),
    "none_prior": (np.log(1e-4), np.log(1e3)),
}


def _to_search(name: str, value: float) -> float:
    if name in ("new_mass", "none_prior"):
        return float(np.log(value))
    if name == "correct_share":
        return float(np.log(value) - np.log1p(-value))
    return float(value)


def _from_search(name: str, x: float) -> float:
    if name in ("new_mass", "none_prior"):
        return float(np.exp(x))
    if name == "correct_share":
        return float(1.0 / (1.0 + np.exp(-x)))
    return float(x)


def loo_loglik(values: dict[str, float], data: MajorityData) -> float:
    """Pooled leave-one-out predictive log-likelihood of every pilot sample (see the class doc)."""
    d, dc, theta, gamma, a0 = (values[k] for k in PRIOR_NAMES)
    dp, dcp = max(d, 0.0), max(dc, 0.0)  # discounts feed the new-answer mass, pseudo-counts do not
    dm, dcm = max(-d, 0.0), max(-dc, 0.0)
    v, cor, u = data.counts.astype(float), data.correct, data.unanswered.astype(float)
    n = data.n.astype(float)
    seen = v > 0
    wrong = seen & ~cor
    right = seen & cor
    k_w = wrong.sum(axis=1).astype(float)
    k_c = right.sum(axis=1).astype(float)

    def total_and_new(kw: np.ndarray, kc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Weights over the n - 1 remaining samples: seen classes v - d, no answer u + a0, new mass.
        new = theta + dp * kw + dcp * kc
        total = (n[:, None] - 1) + a0 + theta + dm * kw + dcm * kc
        return total, new

    kw_after = k_w[:, None] - (wrong & (v == 1))
    kc_after = k_c[:, None] - (right & (v == 1))
    total, new = total_and_new(kw_after, kc_after)
    correct_unseen_after = kc_after == 0
    numer = np.where(
        v >= 2,
        v - 1 - np.where(cor, dc, d),
        np.where(cor, gamma * new, new * (1.0 - gamma * correct_unseen_after)),
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(seen, v * (np.log(numer) - np.log(total)), 0.0)
        total_u, _ = total_and_new(k_w[:, None], k_c[:, None])
        terms_u = np.where(u > 0, u * (np.log(u - 1 + a0) - np.log(total_u[:, 0])), 0.0)
    out = float(terms.sum() + terms_u.sum())
    return out if np.isfinite(out) else -np.inf


def _mean_correct_share(values: dict[str, float], data: MajorityData) -> np.ndarray:
    """(Q,) posterior mean of each question's correct-answer share: its maj@1 under the model."""
    d, dc, theta, gamma, a0 = (values[k] for k in PRIOR_NAMES)
    v, cor = data.counts.astype(float), data.correct
    seen = v > 0
    k_w = (seen & ~cor).sum(axis=1)
    k_c = (seen & cor).sum(axis=1)
    new = theta + max(d, 0.0) * k_w + max(dc, 0.0) * k_c
    total = data.n + a0 + theta + max(-d, 0.0) * k_w + max(-dc, 0.0) * k_c
    numer = np.where(k_c > 0, (v * cor).sum(axis=1) - dc * k_c, gamma * new)
    return numer / total


_SHARE_DISCOUNT_RANGE = (-50.0, 0.99)


def _match_correct_share(values: dict[str, float], data: MajorityData) -> float:
    """The correct_discount that makes the pooled posterior mean of the correct share equal the
    pilot's observed correct share (calibration in the large; see :func:`calibrate_prior`).

    The pooled mean is decreasing in correct_discount (it only moves questions whose pilot saw the
    correct answer), so bisection; a target out of reach gives the nearest end of the range, and
    a pilot that never saw the correct answer keeps the given value."""
    have = dict(values)
    if not np.any(data.correct & (data.counts > 0)):
        return float(values["correct_discount"])
    target = float(((data.counts * data.correct).sum(axis=1) / data.n).mean())

    def gap(dc: float) -> float:
        have["correct_discount"] = dc
        return float(_mean_correct_share(have, data).mean()) - target

    lo, hi = _SHARE_DISCOUNT_RANGE
    if gap(lo) <= 0.0:
        return lo
    if gap(hi) >= 0.0:
        return hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if gap(mid) > 0.0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def calibrate_prior(data: MajorityData, match_share: bool = True, **given: Any) -> dict[str, float]:
    """The prior values maximizing the pooled leave-one-out likelihood of the pilot samples, then
    (``match_share``, when correct_discount is searched) the correct class's discount re-set so
    that the posterior mean of the correct share, averaged over questions, equals the pilot's
    observed correct share.

    Why the second step: under a well-specified prior the average posterior mean of a question's
    correct share equals the average observed share (law of total expectation), i.e. the model's
    maj@1 must match the pilot's. The leave-one-out optimum does not honour that: it adds
    pseudo-votes (negative discounts) to every seen class, which shrinks a dominant correct class
    toward the others, and on the Llama-2-13B bank its maj@1 is 1-1.5 points low at every pilot
    size, with maj@N low by as much beyond the pilot. Re-setting correct_discount alone (the other
    values barely move when the constraint is imposed jointly) removes that level error.

    ``given`` maps each of discount, correct_discount, new_mass, correct_share, none_prior to a
    number (held fixed) or ``"auto"`` (searched); missing names are searched. ``correct_discount``
    may also be ``"same"``: tied to ``discount`` (the correct class is then one class like the others).
    """
    unknown = set(given) - set(PRIOR_NAMES)
    if unknown:
        first = min(unknown)
        raise ConfigError(first, given[first], f"one of {', '.join(PRIOR_NAMES)}")
    tied = isinstance(given.get("correct_discount"), str) and given["correct_discount"] == SAME
    fixed = {k: float(v) for k, v in given.items() if not isinstance(v, str)}
    free = [k for k in PRIOR_NAMES if k not in fixed and not (tied and k == "correct_discount")]
    if tied and "discount" in fixed:
        fixed["correct_discount"] = fixed["discount"]
    if not free:
        return {k: fixed[k] for k in PRIOR_NAMES}
    if np.all(data.n < 2):
        raise EstimationError("calibrating the prior needs questions with at least 2 pilot samples (leave-one-out)")

    def unpack(x: np.ndarray) -> dict[str, float]:
        vals = dict(fixed)
        vals.update({k: _from_search(k, xi) for k, xi in zip(free, x)})
        if tied:
            vals["correct_discount"] = vals["discount"]
        return {k: vals[k] for k in PRIOR_NAMES}

    def objective(x: np.ndarray) -> float:
        value = loo_loglik(unpack(x), data)
        return -value if np.isfinite(value) else 1e300

    lows = np.array([_SEARCH_BOUNDS[k][0] for k in free])
    highs = np.array([_SEARCH_BOUNDS[k][1] for k in free])
    best = None
    for start in ({}, {"discount": -0.5, "correct_discount": -0.5}, {"discount": 0.8, "new_mass": 0.3}):
        x0 = np.clip(np.array([_to_search(k, start.get(k, _DEFAULTS[k])) for k in free]), lows, highs)
        res = minimize_box(numeric_fun_grad(objective), x0, lows, highs)
        if res.fun < 1e300 and (best is None or res.fun < best.fun):
            best = res
    if best is None:
        raise EstimationError("the leave-one-out likelihood is not finite for any prior; check the pilot votes")
    values = unpack(best.x)
    if match_share and "correct_discount" in free:
        values["correct_discount"] = _match_correct_share(values, data)
    return values


def posterior_urn(values: dict[str, float], data: MajorityData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Posterior-predictive urn per question: class concentrations (Q, C), their correct flags
    (Q, C), no-answer mass (Q,), the correct answer while unseen (Q,), the lumped mass of new
    wrong answers (Q,) and its Pitman-Yor discount."""
    d, dc, theta, gamma, a0 = (values[k] for k in PRIOR_NAMES)
    v, cor = data.counts.astype(float), data.correct
    seen = v > 0
    alpha = np.where(seen, v - np.where(cor, dc, d), 0.0)
    k_w = (seen & ~cor).sum(axis=1)
    k_c = (seen & cor).sum(axis=1)
    new = theta + max(d, 0.0) * k_w + max(dc, 0.0) * k_c
    unseen_correct = np.where(k_c == 0, gamma * new, 0.0)
    none = data.unanswered + a0
    return alpha, seen & cor, none, unseen_correct, new - unseen_correct, max(d, 0.0)


POOL_MIN = 24
"""match_pool="auto" is on when the low quantile below of the pilot sizes is at least this."""
_POOL_QUANTILE = 0.05
"""The pilot size at least 95% of questions reach (lower 5% quantile): n_ref of the pool match."""
_POOL_TOL = 5e-4
"""Pool match: stop when the predicted maj@n_ref is within this of the exact one (0.05 point)."""
_POOL_RANGE = (-5.0, 0.95)
_POOL_MAX_EVALS = 9


def pool_reference(data: MajorityData) -> int:
    """The pilot size n_ref of the pool match: the lower 5% quantile of the per-question pilot
    sizes (at least 95% of questions have n_ref samples or more), capped at the largest exactly
    computed N."""
    return int(min(np.quantile(data.n, _POOL_QUANTILE, method="lower"), EXACT_MAX))


def pool_exact(data: MajorityData, n_ref: int) -> tuple[np.ndarray, float] | None:
    """(the questions with n_ref <= n_i samples, at most the exact estimator's pool limit; the
    pilot's exact maj@n_ref averaged over them), or None when no question qualifies."""
    from ttscale.estimate.exact import MAJORITY_MAX_POOL, majority_at_k

    sel = (data.n >= n_ref) & (data.n <= MAJORITY_MAX_POOL)
    if n_ref < 1 or not sel.any():
        return None
    return sel, float(majority_at_k(data.counts[sel], data.correct[sel], data.n[sel], [n_ref])[:, 0].mean())


def match_pool_discount(values: dict[str, float], data: MajorityData, n_ref: int, rematch_share: bool,
                        tied: bool) -> tuple[dict[str, float], str, float]:
    """Re-set ``discount`` so that the model's maj@n_ref equals the pilot's exact maj@n_ref.

    Both sides are averaged over the questions with n_ref <= n_i samples (at most the exact
    estimator's pool limit). At each trial discount, correct_discount is re-matched to the pilot's
    correct share (``rematch_share``) or tied to the discount (``tied``), so maj@1 stays matched.
    The gap (predicted minus exact maj@n_ref) falls as the discount rises over the pseudo-count
    range (d < 0) but is not monotone overall, so the search walks from the fitted discount
    downhill in |gap| (secant steps, trying the other direction if the first step goes uphill)
    until the sign changes, then closes the bracket by Illinois regula falsi to within
    0.05 point. Returns (values, status, gap): status "matched", or "no root" with the given
    values unchanged when no sign change is found within discount in [-5, 0.95].
    """
    pool = pool_exact(data, n_ref)
    if pool is None:
        return values, "off", float("nan")
    sel, target = pool
    sub = MajorityData(data.counts[sel], data.correct[sel], data.unanswered[sel])
    ks = np.array([n_ref])

    def trial(x: float) -> tuple[float, dict[str, float]]:
        vals = dict(values)
        vals["discount"] = float(x)
        if tied:
            vals["correct_discount"] = float(x)
        elif rematch_share:
            vals["correct_discount"] = _match_correct_share(vals, data)
        pred = float(exact_majority(*posterior_urn(vals, sub), ks)[:, 0].mean())
        return pred - target, vals

    lo, hi = min(_POOL_RANGE[0], values["discount"]), max(_POOL_RANGE[1], values["discount"])
    x0 = float(values["discount"])
    g0, v0 = trial(x0)
    if abs(g0) <= _POOL_TOL:
        return v0, "matched", g0
    evals = 1
    best = (abs(g0), g0, v0)
    bracket = None
    for direction in ((1.0, -1.0) if g0 > 0 else (-1.0, 1.0)):
        xa, ga, step = x0, g0, 0.5
        while evals < _POOL_MAX_EVALS:
            xb = float(np.clip(xa + direction * step, lo, hi))
            if xb == xa:
                break
            gb, vb = trial(xb)
            evals += 1
            if abs(gb) < best[0]:
                best = (abs(gb), gb, vb)
            if abs(gb) <= _POOL_TOL:
                return vb, "matched", gb
            if np.sign(gb) != np.sign(ga):
                bracket = (xa, ga, xb, gb)
                break
            if abs(gb) >= abs(ga):
                break  # uphill: no root this way (near here)
            # Secant estimate of the distance to the root, overshot a little to bracket it.
            dist = abs(gb * (xb - xa) / (gb - ga))
            xa, ga, step = xb, gb, float(np.clip(1.3 * dist, 0.05, 4.0 * step))
        if bracket is not None or evals >= _POOL_MAX_EVALS:
            break
    if bracket is None:
        return values, "no root", float(g0)
    a, fa, b, fb = bracket
    while evals < _POOL_MAX_EVALS and abs(b - a) > 1e-3:
        c = b - fb * (b - a) / (fb - fa)
        fc, vc = trial(c)
        evals += 1
        if abs(fc) < best[0]:
            best = (abs(fc), fc, vc)
        if abs(fc) <= _POOL_TOL:
            break
        if np.sign(fc) == np.sign(fb):
            fa *= 0.5  # Illinois: the retained end is halved so the bracket closes from both sides
        else:
            a, fa = b, fb
        b, fb = c, fc
    return best[2], "matched", float(best[1])


_PRIOR_RANGES = {
    "discount": (-np.inf, 1.0, "a number below 1 (negative: an added pseudo-count)"),
    "correct_discount": (-np.inf, 1.0, "a number below 1 (negative: an added pseudo-count)"),
    "new_mass": (0.0, np.inf, "a positive number"),
    "correct_share": (0.0, 1.0, "a number strictly between 0 and 1"),
    "none_prior": (0.0, np.inf, "a positive number"),
}
"""Open range of each prior value and what the error message asks for."""


def is_auto(value: Any) -> bool:
    """Whether a parameter is ``"auto"`` (searched on the pilot)."""
    return isinstance(value, str) and value == AUTO


def check_prior_value(name: str, value: Any) -> None:
    """A prior value as the model takes it: a finite number in its open range, ``"auto"``, or for
    correct_discount also ``"same"``; otherwise :class:`ConfigError` naming the value."""
    if is_auto(value) or (name == "correct_discount" and isinstance(value, str) and value == SAME):
        return
    lo, hi, expected = _PRIOR_RANGES[name]
    if not (is_number(value) and lo < value < hi):
        same = " or 'same' (tied to discount)" if name == "correct_discount" else ""
        raise ConfigError(name, value, f"{expected}, 'auto'{same}")
