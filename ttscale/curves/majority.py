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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import betaln, exp1, gammainc, gammaincc, gammaincinv, gammaln
from scipy.special import gamma as gamma_fn

from ttscale.curves._base import CurveModel, as_k, check_level, describe
from ttscale.curves._optim import minimize_box, numeric_fun_grad
from ttscale.errors import ConfigError, EstimationError

_AUTO = "auto"
_SAME = "same"


@dataclass(frozen=True)
class MajorityData:
    """Pilot votes per question, padded: counts (Q, C), correct (Q, C), unanswered (Q,)."""

    counts: np.ndarray
    correct: np.ndarray
    unanswered: np.ndarray

    @property
    def n(self) -> np.ndarray:
        return self.counts.sum(axis=1) + self.unanswered


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
    # A class with no vote says nothing: move seen classes to the front of each row (classes are
    # exchangeable apart from their flags) and drop columns no question uses, so the width is the
    # largest number of classes any pilot saw rather than the bank's.
    cor_b = cor_b & (cnt_i > 0)
    order = np.argsort(cnt_i == 0, axis=1, kind="stable")
    cnt_i = np.take_along_axis(cnt_i, order, axis=1)
    cor_b = np.take_along_axis(cor_b, order, axis=1)
    width = max(int((cnt_i > 0).sum(axis=1).max()), 1)
    return MajorityData(cnt_i[:, :width], cor_b[:, :width], (n_i - answered).astype(np.int64))


_NAMES = ("discount", "correct_discount", "new_mass", "correct_share", "none_prior")
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


def _loo_loglik(values: dict[str, float], data: MajorityData) -> float:
    """Pooled leave-one-out predictive log-likelihood of every pilot sample (see the class doc)."""
    d, dc, theta, gamma, a0 = (values[k] for k in _NAMES)
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
    d, dc, theta, gamma, a0 = (values[k] for k in _NAMES)
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
    unknown = set(given) - set(_NAMES)
    if unknown:
        raise ConfigError(sorted(unknown)[0], given[sorted(unknown)[0]], f"one of {', '.join(_NAMES)}")
    tied = isinstance(given.get("correct_discount"), str) and given["correct_discount"] == _SAME
    fixed = {k: float(v) for k, v in given.items() if not isinstance(v, str)}
    free = [k for k in _NAMES if k not in fixed and not (tied and k == "correct_discount")]
    if tied and "discount" in fixed:
        fixed["correct_discount"] = fixed["discount"]
    if not free:
        return {k: fixed[k] for k in _NAMES}
    if np.all(data.n < 2):
        raise EstimationError("calibrating the prior needs questions with at least 2 pilot samples (leave-one-out)")

    def unpack(x: np.ndarray) -> dict[str, float]:
        vals = dict(fixed)
        vals.update({k: _from_search(k, xi) for k, xi in zip(free, x)})
        if tied:
            vals["correct_discount"] = vals["discount"]
        return {k: vals[k] for k in _NAMES}

    def objective(x: np.ndarray) -> float:
        value = _loo_loglik(unpack(x), data)
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


def _posterior_urn(values: dict[str, float], data: MajorityData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Posterior-predictive urn per question: class concentrations (Q, C), their correct flags
    (Q, C), no-answer mass (Q,), the correct answer while unseen (Q,), the lumped mass of new
    wrong answers (Q,) and its Pitman-Yor discount."""
    d, dc, theta, gamma, a0 = (values[k] for k in _NAMES)
    v, cor = data.counts.astype(float), data.correct
    seen = v > 0
    alpha = np.where(seen, v - np.where(cor, dc, d), 0.0)
    k_w = (seen & ~cor).sum(axis=1)
    k_c = (seen & cor).sum(axis=1)
    new = theta + max(d, 0.0) * k_w + max(dc, 0.0) * k_c
    unseen_correct = np.where(k_c == 0, gamma * new, 0.0)
    none = data.unanswered + a0
    return alpha, seen & cor, none, unseen_correct, new - unseen_correct, max(d, 0.0)


_POOL_MIN = 24
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
    return int(min(np.quantile(data.n, _POOL_QUANTILE, method="lower"), _EXACT_MAX))


def _match_pool(values: dict[str, float], data: MajorityData, n_ref: int, rematch_share: bool,
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
    from ttscale.estimate.exact import MAJORITY_MAX_POOL, majority_at_k

    sel = (data.n >= n_ref) & (data.n <= MAJORITY_MAX_POOL)
    if not sel.any():
        return values, "off", float("nan")
    sub = MajorityData(data.counts[sel], data.correct[sel], data.unanswered[sel])
    target = float(majority_at_k(sub.counts, sub.correct, sub.n, [n_ref])[:, 0].mean())
    ks = np.array([n_ref])

    def trial(x: float) -> tuple[float, dict[str, float]]:
        vals = dict(values)
        vals["discount"] = float(x)
        if tied:
            vals["correct_discount"] = float(x)
        elif rematch_share:
            vals["correct_discount"] = _match_correct_share(vals, data)
        pred = float(_exact_majority(*_posterior_urn(vals, sub), ks)[:, 0].mean())
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


def _check_prior_value(name: str, value: Any) -> None:
    if isinstance(value, str):
        if value == _SAME and name == "correct_discount":
            return
        if value != _AUTO:
            extra = " or 'same' (tied to discount)" if name == "correct_discount" else ""
            raise ConfigError(name, value, f"a number or 'auto'{extra}")
        return
    lo, hi = {
        "discount": (-np.inf, 1.0),
        "correct_discount": (-np.inf, 1.0),
        "new_mass": (0.0, np.inf),
        "correct_share": (0.0, 1.0),
        "none_prior": (0.0, np.inf),
    }[name]
    ok = isinstance(value, (int, float, np.integer, np.floating)) and np.isfinite(value)
    if name in ("discount", "correct_discount"):
        ok = ok and value < hi
        expected = "a number below 1 (negative: an added pseudo-count) or 'auto'"
    elif name == "correct_share":
        ok = ok and lo < value < hi
        expected = "a number strictly between 0 and 1 or 'auto'"
    else:
        ok = ok and value > lo
        expected = "a positive number or 'auto'"
    if not ok:
        raise ConfigError(name, value, expected)


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
    n_bootstrap, random_state:
        Bootstrap over questions for :meth:`predict_interval`; seed of draws and bootstrap.

    Fitted attributes: ``prior_`` (dict of the values used), ``loo_loglik_`` (pooled leave-one-out
    log-likelihood per pilot sample), ``n_questions_``, ``pilot_size_`` (median pilot size),
    ``pool_match_`` ("matched"; "no root": no sign change, the fitted values were kept; "off":
    not requested, below the auto threshold or discount held fixed), ``pool_match_n_`` (n_ref, or
    None when off) and ``pool_match_gap_`` (predicted minus exact maj@n_ref for the values kept,
    None when off).

    Intervals (:meth:`predict_interval`) bootstrap questions with the prior held at ``prior_``,
    i.e. after both matches: no refit per replicate, whether or not the pool match ran.
    A symmetric Dirichlet with concentration alpha is approximately ``discount=correct_discount=-alpha,
    correct_share=alpha_c / (alpha_c + theta), new_mass=alpha_c + theta, none_prior=alpha``.
    """

    def __init__(
        self,
        discount: float | str = _AUTO,
        correct_discount: float | str = _AUTO,
        new_mass: float | str = _AUTO,
        correct_share: float | str = _AUTO,
        none_prior: float | str = _AUTO,
        match_share: bool = True,
        match_pool: bool | str = _AUTO,
        n_draws: int = 2000,
        n_bootstrap: int = 1000,
        random_state: int | None = 0,
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

    def fit(self, counts: Any, correct: Any, n: Any = None) -> "DirichletMajorityModel":
        """Fit on pilot votes per question: ``counts`` (Q, C) or ragged, ``correct`` alike, ``n`` (Q,)
        pilot samples per question including those without an answer (default: the vote totals)."""
        self._check_common_params()
        for name in _NAMES:
            _check_prior_value(name, getattr(self, name))
        if not isinstance(self.n_draws, (int, np.integer)) or self.n_draws < 1:
            raise ConfigError("n_draws", self.n_draws, "a positive integer")
        data = as_majority_data(counts, correct, n)
        if not isinstance(self.match_share, (bool, np.bool_)):
            raise ConfigError("match_share", self.match_share, "True or False")
        if not (isinstance(self.match_pool, (bool, np.bool_)) or (isinstance(self.match_pool, str) and self.match_pool == _AUTO)):
            raise ConfigError("match_pool", self.match_pool, "True, False or 'auto'")
        explicit = isinstance(self.match_pool, (bool, np.bool_)) and bool(self.match_pool)
        if explicit and not (isinstance(self.discount, str) and self.discount == _AUTO):
            raise ConfigError("match_pool", self.match_pool, "False or 'auto' when discount is held fixed (the match re-sets it)")
        given = {k: getattr(self, k) for k in _NAMES}
        prior = calibrate_prior(data, bool(self.match_share), **given)
        n_ref = pool_reference(data)
        self.pool_match_n_: int | None = None
        self.pool_match_gap_: float | None = None
        self.pool_match_ = "off"
        on = (explicit or (isinstance(self.match_pool, str) and n_ref >= _POOL_MIN)) and n_ref >= 2
        if on and isinstance(self.discount, str) and self.discount == _AUTO:
            tied = isinstance(self.correct_discount, str) and self.correct_discount == _SAME
            rematch = bool(self.match_share) and isinstance(self.correct_discount, str) and self.correct_discount == _AUTO
            prior, self.pool_match_, self.pool_match_gap_ = _match_pool(prior, data, n_ref, rematch, tied)
            self.pool_match_n_ = n_ref
        self.prior_ = prior
        self._data = data
        self._curve = np.zeros((data.counts.shape[0], 0))
        self._limit: np.ndarray | None = None
        self.params_ = np.array([self.prior_[k] for k in _NAMES])
        self.n_questions_ = int(data.counts.shape[0])
        self.pilot_size_ = float(np.median(data.n))
        self.loo_loglik_ = _loo_loglik(self.prior_, data) / float(data.n.sum())
        return self

    # --- prediction --------------------------------------------------------------------------------
    def _posterior(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
        """Posterior-predictive urn per question (see :func:`_posterior_urn`)."""
        return _posterior_urn(self.prior_, self._data)

    def _exact_curve(self, nmax: int) -> np.ndarray:
        """(Q, nmax) exact maj@N for N = 1..nmax, cached (extended on demand)."""
        have = self._curve.shape[1]
        if nmax > have:
            self._curve = _exact_majority(*self._posterior(), np.arange(1, nmax + 1))
        return self._curve[:, :nmax]

    def predict_questions(self, k: Any) -> np.ndarray:
        """(Q, K) predicted maj@k per question: exact for k <= 95, limit + a/k + b/k^2 beyond."""
        self._check_fitted()
        k_arr, _ = as_k(k)
        if np.any(k_arr != np.round(k_arr)):
            raise ConfigError("k", describe(k), "whole numbers of samples")
        ks = k_arr.astype(np.int64)
        top = int(ks.max())
        curve = self._exact_curve(min(top, _EXACT_MAX))
        out = np.empty((curve.shape[0], ks.size))
        small = ks <= _EXACT_MAX
        out[:, small] = curve[:, ks[small] - 1]
        if not small.all():
            if self._limit is None:
                self._limit = _limit_majority(*self._posterior())
            n1, n2 = _EXACT_MAX, _EXACT_MAX // 2 | 1
            y1, y2 = curve[:, n1 - 1] - self._limit, curve[:, n2 - 1] - self._limit
            # y = a / N + b / N^2 through (n1, y1) and (n2, y2): N y = a + b / N.
            b_ = (n1 * y1 - n2 * y2) / (1.0 / n1 - 1.0 / n2)
            a_ = n1 * y1 - b_ / n1
            big = ks[~small].astype(float)
            out[:, ~small] = self._limit[:, None] + a_[:, None] / big[None, :] + b_[:, None] / big[None, :] ** 2
        return np.clip(out, 0.0, 1.0)

    def predict(self, k: Any) -> np.ndarray | float:
        """Dataset maj@k (mean over questions of the per-question prediction)."""
        k_arr, scalar = as_k(k)
        out = self.predict_questions(k_arr).mean(axis=0)
        return float(out[0]) if scalar else out

    def predict_interval(self, k: Any, level: float = 0.95) -> tuple[np.ndarray, np.ndarray] | tuple[float, float]:
        """Percentile bootstrap over questions of the dataset maj@k (prior held at its fitted value,
        including the share and pool matches: the prior is not refitted per replicate)."""
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

    def bootstrap_params(self) -> np.ndarray:
        raise NotImplementedError("DirichletMajorityModel bootstraps per-question predictions; use predict_interval")


_TOL = 1e-11
"""A rival (or the new wrong answers) whose chance of reaching j votes at the largest N is below
this is left unconstrained at j (error at most about N * _TOL per question)."""
_MAX_NODES = 8
"""Gauss-Legendre nodes for the tie credit: exact up to 15 answers tied at the top with 2+ votes."""
_EXACT_MAX = 95
"""Largest N computed exactly (odd, like the second matching point 47, so the two-answer parity
sawtooth maj@2m = maj@2m-1 does not tilt the tail); beyond it the curve is the limit plus
a/N + b/N^2 through the exact values at N = 95 and 47."""



def _log_coef(alpha, n, logrho):
    """log[(alpha)^(n) / n!] + n log(rho) (alpha > 0)."""
    return gammaln(alpha + n) - gammaln(alpha) - gammaln(n + 1.0) + n * logrho


def _coef(alpha, n, logrho):
    """(alpha)^(n)/n! rho^n, broadcasting; alpha == 0 gives [n == 0]."""
    alpha = np.asarray(alpha, float)
    n = np.asarray(n, float)
    safe = np.where(alpha > 0, alpha, 1.0)
    out = np.exp(_log_coef(safe, n, logrho))
    return np.where(alpha > 0, out, (n == 0).astype(float))


def _bb_survival(alpha, total, nmax):
    """P(X >= j), j = 0..nmax, X ~ BetaBinomial(nmax, alpha, total - alpha); alpha (...,)."""
    alpha = np.asarray(alpha, float)[..., None]
    rest = np.asarray(total, float)[..., None] - alpha
    x = np.arange(nmax + 1, dtype=float)
    safe_a = np.where(alpha > 0, alpha, 1.0)
    safe_b = np.where(rest > 0, rest, 1.0)
    logpmf = (gammaln(nmax + 1.0) - gammaln(x + 1) - gammaln(nmax - x + 1)
              + betaln(x + safe_a, nmax - x + safe_b) - betaln(safe_a, safe_b))
    pmf = np.exp(logpmf)
    pmf = np.where(alpha > 0, np.where(rest > 0, pmf, (x == nmax)), (x == 0))
    surv = np.cumsum(pmf[..., ::-1], axis=-1)[..., ::-1]
    return np.minimum(surv, 1.0)


def _conv(acc, t):
    """Truncated product of power series along the last axis: acc (..., D+1) times t (..., e+1)."""
    e = t.shape[-1] - 1
    if e == 0:
        return acc * t
    D1 = acc.shape[-1]
    pad = np.concatenate([np.zeros(acc.shape[:-1] + (e,)), acc], axis=-1)
    win = sliding_window_view(pad, e + 1, axis=-1)
    return np.einsum("...ni,...i->...n", win, t[..., ::-1])


def _new_wrong_series(beta, d, w, length):
    """Coefficients 0..length-1 of (1 - d W(x))^(-beta/d) (exp(beta W) for d = 0); W = sum_k w_k x^k,
    w (B, K) holding w_1..w_K. Miller's recurrence n f_n = sum_k (d (n-k) + beta k) w_k f_{n-k}:
    every term is nonnegative."""
    B, K = w.shape
    f = np.zeros((B, length))
    f[:, 0] = 1.0
    k = np.arange(1, K + 1, dtype=float)
    bk = beta[:, None] * k * w  # (B, K)
    dw = d * w
    for n in range(1, length):
        m = min(n, K)
        prev = f[:, n - 1 :: -1][:, :m] if n - 1 >= 0 else None
        coef = dw[:, :m] * (n - k[:m]) + bk[:, :m]
        f[:, n] = np.einsum("bk,bk->b", coef, prev) / n
    return f


def _exact_majority(alpha, flags, a_u, alpha_cu, beta, d, ks, tol=_TOL):
    """(Q, K): E[tie-credited majority of N new samples], N in ks, under the posterior predictive
    (Polya urn): Dirichlet classes `alpha` (Q, C) with correct `flags`, no-answer mass a_u (Q,),
    the correct answer while unseen alpha_cu (Q,), and new wrong answers: lumped mass beta (Q,)
    split as a Pitman-Yor(d, beta) Chinese restaurant."""
    alpha = np.asarray(alpha, float)
    flags = np.asarray(flags, bool) & (alpha > 0)
    ks = np.asarray(ks, dtype=np.int64)
    Q = alpha.shape[0]
    out = np.zeros((Q, ks.size))
    nmax = int(ks.max())
    item_q, alpha_c, rivals = _correct_items(alpha, flags, alpha_cu)
    rivals = -np.sort(-rivals, axis=1)
    width = int((rivals > 0).sum(axis=1).max()) if rivals.size else 0
    rivals = rivals[:, :width]
    A = alpha[item_q].sum(axis=1) + a_u[item_q] + alpha_cu[item_q] + beta[item_q]
    au_i, beta_i = a_u[item_q], beta[item_q]
    n_items = item_q.size
    if n_items == 0:
        return out
    logc_max = _log_coef(A, nmax, 0.0)
    logrho = -logc_max / nmax
    log_norm = _log_coef(A[:, None], ks[None, :].astype(float), logrho[:, None])  # (I, K)
    surv_c = _bb_survival(alpha_c, A, nmax)
    surv_r = _bb_survival(rivals, A[:, None], nmax)
    surv_o = _bb_survival(beta_i, A, nmax)
    win = np.zeros((n_items, ks.size))
    lw = np.arange(1, nmax + 1, dtype=float)
    logw = gammaln(1 - d + lw - 1) - gammaln(1 - d) - gammaln(lw + 1)  # (1-d)^(k-1)/k!
    for j in range(1, nmax + 1):
        sel = np.flatnonzero(surv_c[:, j] > tol)
        if sel.size == 0:
            break
        D = nmax - j
        kmask = ks >= j
        if not kmask.any():
            continue
        kk = np.flatnonzero(kmask)
        lr = logrho[sel]
        lc = _log_coef(alpha_c[sel], float(j), lr)  # (m,)
        if 2 * j > D:
            # At most one rival (or one new wrong answer) can reach j among the other N - j <= D
            # votes: the product of truncated series is the full one minus one tail at a time.
            E = A[sel] - alpha_c[sel]
            n_need = ks[kk] - j  # coefficient wanted per N
            tot = _coef(E[:, None], n_need[None, :].astype(float), lr[:, None])  # (m, K)
            L = D - j + 1  # degrees j..D of a tail
            if L >= 1 and width:
                deg = np.arange(L, dtype=float)
                ra = rivals[sel]  # (m, R)
                tails = _coef(ra[:, :, None], (j + deg)[None, None, :], lr[:, None, None])
                tails[:, :, 0] *= 0.5
                g = _coef((E[:, None] - ra)[:, :, None], deg[None, None, :], lr[:, None, None])
                prod = _conv(g, tails).sum(axis=1)  # (m, L): coefficient j + i
                ok = n_need >= j
                tot[:, ok] -= prod[:, n_need[ok] - j]
            if L >= 1:
                b = beta_i[sel]
                deg = np.arange(L, dtype=float)
                kb = j + deg
                wb = np.exp((gammaln(1 - d + kb - 1) - gammaln(1 - d) - gammaln(kb + 1))[None, :] + kb[None, :] * lr[:, None])
                wb[:, 0] *= 0.5
                g = _coef((E + d)[:, None], deg[None, :], lr[:, None])
                prod = b[:, None] * _conv(g, wb)
                ok = n_need >= j
                tot[:, ok] -= prod[:, n_need[ok] - j]
            win[np.ix_(sel, kk)] += np.maximum(tot, 0.0) * np.exp(lc[:, None] - log_norm[sel][:, kk])
            continue
        act_r = surv_r[sel, :, j] > tol if width else np.zeros((sel.size, 0), bool)
        S = int(act_r.sum(axis=1).max()) if width else 0
        act_o = (surv_o[sel, j] > tol) & (beta_i[sel] > 0)
        ties = S + (D // j if act_o.any() else 0)
        ties = min(ties, D // j)
        if j == 1:
            # Every voter has one vote: the y-degree of a term is its number of voters, so one pass
            # at y = 1 and a credit of 1/(1 + voters) per degree are exact.
            free = au_i[sel]
            voters = np.ones((sel.size, D + 1))
            voters[:, 1:] = 0.0
            for s_ in range(width):
                a1 = _coef(rivals[sel, s_], 1.0, lr)
                voters[:, 1:] = voters[:, 1:] + a1[:, None] * voters[:, :-1]
            b = beta_i[sel]
            if np.any(b > 0) and D >= 1:
                w1 = np.exp(lr)[:, None] * np.ones((1, 1))
                h = _new_wrong_series(b, d, w1, D + 1)
                voters = _conv(voters, h)
            voters /= 1.0 + np.arange(D + 1)[None, :]
            tot = _conv(_coef(free[:, None], np.arange(D + 1.0)[None, :], lr[:, None]), voters)
            win[np.ix_(sel, kk)] += tot[:, ks[kk] - j] * np.exp(lc[:, None] - log_norm[sel][:, kk])
            continue
        n_y = max(1, min((ties + 2) // 2, _MAX_NODES))
        x, wy = np.polynomial.legendre.leggauss(n_y)
        y, wy = (x + 1) / 2, wy / 2
        free = au_i[sel] + np.where(act_r, 0.0, rivals[sel]).sum(axis=1) + np.where(act_o, 0.0, beta_i[sel])
        nn = np.arange(D + 1, dtype=float)
        acc = _coef(free[:, None], nn[None, :], lr[:, None])  # (m, D+1)
        acc = np.broadcast_to(acc[:, None, :], (sel.size, n_y, D + 1)).copy()
        e = min(j, D)
        ne = np.arange(e + 1, dtype=float)
        for s in range(S):
            a_s = np.where(act_r[:, s], rivals[sel, s], 0.0)
            t = _coef(a_s[:, None], ne[None, :], lr[:, None])  # (m, e+1)
            t = np.broadcast_to(t[:, None, :], (sel.size, n_y, e + 1)).copy()
            if j <= D:
                t[:, :, j] *= y[None, :]
            acc = _conv(acc, t)
        if act_o.any():
            K = e
            if K >= 1:
                w = np.exp(logw[None, :K] + lw[None, :K] * lr[:, None])  # (m, K)
                w = np.broadcast_to(w[:, None, :], (sel.size, n_y, K)).copy()
                if j <= K:
                    w[:, :, j - 1] *= y[None, :]
                b = np.broadcast_to(np.where(act_o, beta_i[sel], 0.0)[:, None], (sel.size, n_y)).reshape(-1)
                h = _new_wrong_series(b, d, w.reshape(-1, K), D + 1).reshape(sel.size, n_y, D + 1)
                acc = _conv(acc, h)
        tot = np.einsum("myn,y->mn", acc, wy)  # (m, D+1)
        vals = tot[:, ks[kk] - j] * np.exp(lc[:, None] - log_norm[sel][:, kk])
        win[np.ix_(sel, kk)] += vals
    np.add.at(out, item_q, win)
    return out



def _correct_items(alpha: np.ndarray, flags: np.ndarray, alpha_cu: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items (question, correct class), the correct answer while unseen being a class too: each item's
    question, the correct class's concentration and its rivals' (the row with the correct class zeroed)."""
    iq, ia = np.nonzero(flags)
    cu_q = np.flatnonzero(alpha_cu > 0)
    item_q = np.concatenate([iq, cu_q])
    alpha_c = np.concatenate([alpha[iq, ia], alpha_cu[cu_q]])
    rivals = alpha[item_q].copy()
    rivals[np.arange(iq.size), ia] = 0.0
    return item_q, alpha_c, rivals


def _limit_majority(alpha, flags, a_u, alpha_cu, beta, d, nodes=200):
    """(Q,) maj@infinity: P(the correct answer has the largest probability) under the posterior."""
    alpha = np.asarray(alpha, float)
    flags = np.asarray(flags, bool) & (alpha > 0)
    Q = alpha.shape[0]
    item_q, alpha_c, rivals = _correct_items(alpha, flags, alpha_cu)
    b = beta[item_q]
    x, w = np.polynomial.legendre.leggauss(nodes)
    u, w = (x + 1) / 2, w / 2
    g = gammaincinv(alpha_c[:, None], u[None, :])  # (I, nodes)
    logf = np.zeros_like(g)
    for r in range(rivals.shape[1]):
        a = rivals[:, r][:, None]
        with np.errstate(divide="ignore"):
            logf += np.where(a > 0, np.log(gammainc(np.where(a > 0, a, 1.0), g)), 0.0)
    gs = np.maximum(g, 1e-300)
    if d > 0:
        upper = (gs ** (-d) * np.exp(-gs) - gammaincc(1 - d, gs) * gamma_fn(1 - d)) / d / gamma_fn(1 - d)
    else:
        upper = exp1(gs)
    logf -= b[:, None] * upper
    val = (np.exp(logf) * w).sum(axis=1)
    out = np.zeros(Q)
    np.add.at(out, item_q, val)
    return out
