"""Pass@k from per-problem success counts: the beta-binomial model and its zero-inflated form.

Per-problem success probability p ~ Beta(a, b) (optionally with a point mass pi at p = 0 for the
problems a model never solves). With n trials and c successes per problem the likelihood is the
beta-binomial one, maximized over (log a, log b[, logit pi]) with analytic gradients. Then

    E[pass@k] = (1 - pi) * (1 - B(a, b + k) / B(a, b))

for any k, including k far beyond the trials in the data (the point of the model). A Beta density
~ p^(a-1) near 0 makes -log pass@k fall as a power law in k (Schaeffer et al. 2025), so ``a``
governs the extrapolation and the data must hold some problems with several successes to pin it.

What no model can check: problems never solved in the data. Their share of pass@k is anywhere
between 0 (they are unsolvable) and, by the rule of three and the union bound, about
3 k / (n P) for P problems of n trials (their per-trial rates sum to at most ~3/n at 95%), capped
at their share of the problems. :meth:`BetaBinomialPassAtK.unidentified_mass` gives that bound,
``max_supported_k_`` the largest k where it stays within 2 points, and
``predict_interval(k, robust=True)`` widens the bootstrap interval by it. With 128 problems of 32
trials and more than 2% of them never solved, for instance, predictions beyond k ~ 27 rest on the
model's assumption about those problems, not on the data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import betaln, digamma, expit, logit

from ttscale.curves._base import CurveModel, as_k, check_counts
from ttscale.curves._optim import minimize_box
from ttscale.errors import ConfigError, EstimationError
from ttscale.validation import is_number

_LOG_A = (np.log(1e-3), np.log(1e4))
_LOG_ODDS = (-20.0, 30.0)  # log(b / a) = -logit(E[p | not in the zero mass])
_LOGIT_PI = (-25.0, 25.0)

# Internal parameter vector: (a, b, pi, mode); mode 0 = fitted, 1 = all wrong, 2 = all correct.
_NORMAL, _ALL_WRONG, _ALL_CORRECT = 0.0, 1.0, 2.0

SUPPORT_TOLERANCE = 0.02  # max_supported_k_: the model-free uncertainty at k stays within 2 points
_RULE_OF_THREE = 3.0  # zero events in N trials: rate <= 3 / N at about 95%


def beta_binomial_pass_at_k(a: Any, b: Any, k: Any, pi: Any = 0.0) -> np.ndarray:
    """E[pass@k] = (1 - pi) (1 - B(a, b+k) / B(a, b)), broadcasting a, b, pi against k."""
    a, b, k, pi = (np.asarray(x, dtype=float) for x in (a, b, k, pi))
    return (1.0 - pi) * -np.expm1(betaln(a, b + k) - betaln(a, b))


class BetaBinomialPassAtK(CurveModel):
    """Dataset pass@k from per-problem (trials, successes) under a (zero-inflated) beta-binomial.

    Parameters
    ----------
    zero_inflated:
        Add a point mass ``pi`` at p = 0 (problems never solved).
    shape_prior:
        ``None`` (maximum likelihood) or ``(a0, s)``: a log-normal prior on the shape ``a`` with
        median ``a0`` and log-scale sd ``s`` (maximum a posteriori). Small pilots pin the mean
        pass rate but hardly the shape, and the shape decides the extrapolation; a prior taken
        from related runs (other checkpoints, an earlier model) fills that gap.
    n_bootstrap, random_state:
        Size and seed of the bootstrap over problems behind :meth:`predict_interval`.

    Fitted attributes: ``a_``, ``b_``, ``pi_`` (0 unless zero-inflated), ``mean_`` (E[p], the
    pass@1), ``loglik_`` (log-likelihood without the binomial coefficients), ``n_problems_``,
    ``at_bound_`` (a parameter sits on its search bound: the data barely constrain it) and
    ``degenerate_`` (``None``, ``"all_wrong"`` or ``"all_correct"``: no success at all predicts 0
    for every k, no failure predicts 1), ``n_successes_`` (successes in the data), ``zero_share_``
    (share of problems never solved in the data) and ``max_supported_k_`` (the largest k at which
    the pass@k those never-solved problems could add, :meth:`unidentified_mass`, stays within
    ``SUPPORT_TOLERANCE`` = 2 points; ``inf`` when their share is below that). Beyond
    ``max_supported_k_`` the prediction rests on the Beta model's assumption about problems the
    data never saw solved; :meth:`extrapolation_supported` checks other k and tolerances.
    """

    def __init__(
        self,
        zero_inflated: bool = False,
        shape_prior: tuple[float, float] | None = None,
        n_bootstrap: int = 200,
        random_state: int | None = 0,
    ) -> None:
        self.zero_inflated = zero_inflated
        self.shape_prior = shape_prior
        self.n_bootstrap = n_bootstrap
        self.random_state = random_state

    # --- public API -------------------------------------------------------------------------------
    def fit(self, n: Any, c: Any) -> BetaBinomialPassAtK:
        """Fit on ``n`` (trials per problem, an array or one number) and ``c`` (successes per problem)."""
        self._check_common_params()
        if not isinstance(self.zero_inflated, bool):
            raise ConfigError("zero_inflated", self.zero_inflated, "True or False")
        prior = self.shape_prior
        if prior is not None and not (isinstance(prior, (tuple, list)) and len(prior) == 2 and all(is_number(v) and v > 0 for v in prior)):
            raise ConfigError("shape_prior", prior, "None or (median of a > 0, sd of log a > 0)")
        n_arr, c_arr = check_counts(n, c)
        if n_arr.size < 2:
            raise EstimationError(f"the beta-binomial needs at least 2 problems to fit; got {n_arr.size}")
        # Identical (n, c) rows are grouped: the likelihood is a weighted sum over unique rows and the
        # bootstrap over problems becomes a multinomial draw of the weights.
        pairs, weights = np.unique(np.stack([n_arr, c_arr], axis=1), axis=0, return_counts=True)
        data = (pairs[:, 0].astype(float), pairs[:, 1].astype(float), weights.astype(float))
        params = self._fit_params(data)
        self._set_fitted(data, params)
        a, b, pi, mode = params
        self.a_, self.b_, self.pi_ = float(a), float(b), float(pi)
        self.degenerate_ = {_NORMAL: None, _ALL_WRONG: "all_wrong", _ALL_CORRECT: "all_correct"}[mode]
        self.mean_ = float(self.predict(1))
        self.n_problems_ = int(n_arr.size)
        self.loglik_ = float(-self._objective(self._to_theta(params), *data, with_prior=False)[0] * weights.sum()) if mode == _NORMAL else 0.0
        theta = self._to_theta(params)
        bounds = self._bounds()
        self.at_bound_ = bool(mode == _NORMAL and any(abs(t - lo) < 1e-6 or abs(t - hi) < 1e-6 for t, (lo, hi) in zip(theta, bounds)))
        self.n_successes_ = int(c_arr.sum())
        self.zero_share_ = float(np.mean(c_arr == 0))
        self.max_supported_k_ = self._max_supported_k(SUPPORT_TOLERANCE)
        return self

    def fit_counts(self, n: Any, c: Any) -> BetaBinomialPassAtK:
        """Same as :meth:`fit` (the name every pass@k model shares, see ``select_pass_at_k_model``)."""
        return self.fit(n, c)

    def log_likelihood(self, n: Any, c: Any) -> float:
        """Log-likelihood of held-out (n, c) under the fitted model (binomial coefficients omitted)."""
        self._check_fitted()
        n_arr, c_arr = check_counts(n, c)
        mode = self.params_[3]
        if mode == _ALL_WRONG:
            return 0.0 if np.all(c_arr == 0) else -np.inf
        if mode == _ALL_CORRECT:
            return 0.0 if np.all(c_arr == n_arr) else -np.inf
        theta = self._to_theta(self.params_)
        return float(-self._objective(theta, n_arr.astype(float), c_arr.astype(float), np.ones(n_arr.size), with_prior=False)[0] * n_arr.size)

    def unidentified_mass(self, k: Any) -> np.ndarray | float:
        """About 95% upper bound on the dataset pass@k carried by problems never solved in the data.

        Model-free: zero successes in their N0 trials put the sum of their per-trial rates at
        most ~3 / (smallest n among them) (rule of three), and pass@k <= k p for each, so they add
        at most ``min(P0, 3 k / n0) / P`` (P0 of P problems never solved, n0 their smallest n).
        Their true share lies between 0 and this bound whatever the model says.
        """
        self._check_fitted()
        k_arr, scalar = as_k(k)
        n, c, w = self._data
        zero = c == 0
        p0, total = float(w[zero].sum()), float(w.sum())
        if p0 == 0:
            out = np.zeros(k_arr.size)
        else:
            out = np.minimum(p0, _RULE_OF_THREE * k_arr / float(n[zero].min())) / total
        return float(out[0]) if scalar else out

    def extrapolation_supported(self, k: Any, tolerance: float = SUPPORT_TOLERANCE) -> np.ndarray | bool:
        """Whether the data, not the model's assumption about never-solved problems, pin pass@k
        within ``tolerance`` (``unidentified_mass(k) <= tolerance``)."""
        tolerance = float(tolerance)
        if not 0.0 < tolerance <= 1.0:
            raise ConfigError("tolerance", tolerance, "a share of problems in (0, 1] (e.g. 0.02 for 2 points)")
        mass = np.atleast_1d(self.unidentified_mass(k)) <= tolerance + 1e-15
        return bool(mass[0]) if np.ndim(k) == 0 else mass

    def _max_supported_k(self, tolerance: float) -> float:
        n, c, w = self._data
        zero = c == 0
        p0, total = float(w[zero].sum()), float(w.sum())
        if p0 <= tolerance * total:
            return float("inf")
        return float(tolerance * total * float(n[zero].min()) / _RULE_OF_THREE)

    def zero_problem_mass(self, k: Any) -> np.ndarray | float:
        """The fitted model's own pass@k share from the problems never solved in the data
        (posterior expectation given c = 0 per problem); 0 for a degenerate fit."""
        self._check_fitted()
        k_arr, scalar = as_k(k)
        n, c, w = self._data
        a, b, pi, mode = self.params_
        zero = c == 0
        if mode != _NORMAL or not np.any(zero):
            out = np.zeros(k_arr.size)
        else:
            nz, wz = n[zero][:, None], w[zero][:, None]
            log_beta0 = betaln(a, b + nz) - betaln(a, b)  # P(c = 0 | Beta component)
            keep = 1.0 if pi <= 0 else (1 - pi) * np.exp(log_beta0) / (pi + (1 - pi) * np.exp(log_beta0))
            solved = -np.expm1(betaln(a, b + nz + k_arr[None, :]) - betaln(a, b + nz))
            out = np.sum(wz * keep * solved, axis=0) / float(w.sum())
        return float(out[0]) if scalar else out

    def predict_interval(self, k: Any, level: float = 0.95, robust: bool = False) -> tuple[np.ndarray, np.ndarray] | tuple[float, float]:
        """Percentile bootstrap interval of dataset pass@k; ``robust=True`` widens it by what the
        data cannot check: down by the model's own share from never-solved problems
        (:meth:`zero_problem_mass`, they may be unsolvable) and up to the model-free bound
        (:meth:`unidentified_mass`). Without any success the robust interval is ``[0, bound]``."""
        lo, hi = super().predict_interval(k, level=level)
        if not robust:
            return lo, hi
        _, scalar = as_k(k)
        z = np.atleast_1d(self.zero_problem_mass(k))
        u = np.atleast_1d(self.unidentified_mass(k))
        lo_r = np.clip(np.atleast_1d(lo) - z, 0.0, 1.0)
        hi_r = np.clip(np.atleast_1d(hi) + np.maximum(u - z, 0.0), 0.0, 1.0)
        return (float(lo_r[0]), float(hi_r[0])) if scalar else (lo_r, hi_r)

    # --- hooks ------------------------------------------------------------------------------------
    def _bounds(self) -> list[tuple[float, float]]:
        return [_LOG_A, _LOG_ODDS] + ([_LOGIT_PI] if self.zero_inflated else [])

    def _to_theta(self, params: np.ndarray) -> np.ndarray:
        """Search coordinates: log a, log(b / a) (minus the logit of the mean: near-orthogonal to
        log a, which keeps L-BFGS off the likelihood's a-b ridge) and, if zero-inflated, logit pi."""
        a, b, pi, _ = params
        theta = [np.log(a), np.log(b) - np.log(a)]
        if self.zero_inflated:
            theta.append(float(logit(np.clip(pi, expit(_LOGIT_PI[0]), expit(_LOGIT_PI[1])))))
        return np.clip(theta, [lo for lo, _ in self._bounds()], [hi for _, hi in self._bounds()])

    def _from_theta(self, theta: np.ndarray) -> np.ndarray:
        a = np.exp(theta[0])
        pi = float(expit(theta[2])) if self.zero_inflated else 0.0
        return np.array([a, a * np.exp(theta[1]), pi, _NORMAL])

    def _objective(
        self, theta: np.ndarray, n: np.ndarray, c: np.ndarray, w: np.ndarray, with_prior: bool = True
    ) -> tuple[float, np.ndarray]:
        """Mean negative log-likelihood over problems (plus the shape prior) and its gradient."""
        a = np.exp(theta[0])
        b = a * np.exp(theta[1])
        f = n - c
        ll = betaln(c + a, f + b) - betaln(a, b)
        psi_ab, psi_nab = digamma(a + b), digamma(n + a + b)
        da = digamma(c + a) - psi_nab - digamma(a) + psi_ab
        db = digamma(f + b) - psi_nab - digamma(b) + psi_ab
        # d/d log a holds log(b/a) fixed, so b moves with a; d/d log(b/a) moves b alone.
        d0, d1 = a * da + b * db, b * db
        total = w.sum()
        if not self.zero_inflated:
            value = -np.sum(w * ll) / total
            grad = -np.array([np.sum(w * d0), np.sum(w * d1)]) / total
        else:
            pi = expit(theta[2])
            zero = c == 0
            log_pi, log_1m = -np.logaddexp(0.0, -theta[2]), -np.logaddexp(0.0, theta[2])
            mix = np.logaddexp(log_pi, log_1m + ll)  # log(pi + (1-pi) e^ll), used where c == 0
            rows = np.where(zero, mix, log_1m + ll)
            # d rows / d ll: the posterior weight of the beta component for zero rows, 1 otherwise.
            resp = np.where(zero, np.exp(log_1m + ll - mix), 1.0)
            # d rows / d logit(pi): zero rows pi(1-pi)(1 - e^ll) / (pi + (1-pi)e^ll); others -pi.
            dpi = np.where(zero, np.exp(log_pi + log_1m - mix) * -np.expm1(np.minimum(ll, 0.0)), -pi)
            value = -np.sum(w * rows) / total
            grad = -np.array([np.sum(w * resp * d0), np.sum(w * resp * d1), np.sum(w * dpi)]) / total
        if self.shape_prior is not None and with_prior:
            loc, scale = np.log(self.shape_prior[0]), self.shape_prior[1]
            z = (theta[0] - loc) / scale
            value += 0.5 * z * z / total
            grad[0] += z / scale / total
        return float(value), grad

    def _fit_params(self, data: Any, warm_start: np.ndarray | None = None) -> np.ndarray:
        n, c, w = data
        successes, trials = float(np.sum(w * c)), float(np.sum(w * n))
        if successes == 0:
            return np.array([1.0, 1.0, 1.0, _ALL_WRONG])
        if successes == trials:
            return np.array([np.inf, 1.0, 0.0, _ALL_CORRECT])
        bounds = self._bounds()
        lows, highs = [lo for lo, _ in bounds], [hi for _, hi in bounds]
        starts = []
        if warm_start is not None and warm_start[3] == _NORMAL:
            starts.append(self._to_theta(warm_start))
        frac_zero = float(np.sum(w * (c == 0)) / w.sum())
        a_starts = (0.05, 0.3, 2.0) if warm_start is None else (0.3,)
        if self.shape_prior is not None:
            a_starts = (float(self.shape_prior[0]),) + a_starts
        pi_starts = (0.0,) if not self.zero_inflated else (0.5 * frac_zero, 0.9 * frac_zero)
        for a0 in a_starts:
            for pi0 in pi_starts:
                mu = successes / trials / max(1.0 - pi0, 1e-3)
                mu = min(max(mu, 1e-12), 1 - 1e-9)
                theta = [np.log(a0), np.log((1 - mu) / mu)]
                if self.zero_inflated:
                    theta.append(float(logit(min(max(pi0, 1e-6), 1 - 1e-6))))
                starts.append(np.clip(theta, lows, highs))
        best = None
        for theta0 in starts:
            res = minimize_box(lambda t: self._objective(t, n, c, w), theta0, lows, highs)
            if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
                best = res
        if best is None:
            raise EstimationError("the beta-binomial likelihood could not be maximized (non-finite at every start)")
        return self._from_theta(best.x)

    def _predict_params(self, params: np.ndarray, k: np.ndarray) -> np.ndarray:
        a, b, pi, mode = (params[:, i : i + 1] for i in range(4))
        normal = mode == _NORMAL
        safe_a = np.where(normal, a, 1.0)
        safe_b = np.where(normal, b, 1.0)
        value = beta_binomial_pass_at_k(safe_a, safe_b, k[None, :], np.where(normal, pi, 0.0))
        return np.where(normal, value, np.where(mode == _ALL_CORRECT, 1.0, 0.0))

    def _resample(self, data: Any, rng: np.random.Generator) -> Any:
        n, c, w = data
        total = int(round(w.sum()))
        return n, c, rng.multinomial(total, w / w.sum()).astype(float)

