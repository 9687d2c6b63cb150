"""Pass@k from per-problem success counts: the beta-binomial model and its zero-inflated form.

Per-problem success probability p ~ Beta(a, b) (optionally with a point mass pi at p = 0 for the
problems a model never solves). With n trials and c successes per problem the likelihood is the
beta-binomial one, maximized over (log a, log b[, logit pi]) with analytic gradients. Then

    E[pass@k] = (1 - pi) * (1 - B(a, b + k) / B(a, b))

for any k, including k far beyond the trials in the data (the point of the model). A Beta density
~ p^(a-1) near 0 makes -log pass@k fall as a power law in k (Schaeffer et al. 2025), so ``a``
governs the extrapolation and the data must hold some problems with several successes to pin it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import betaln, digamma, expit, logit

from ..errors import ConfigError, EstimationError
from ._base import CurveModel, check_counts
from ._optim import minimize_box

_LOG_A = (np.log(1e-3), np.log(1e4))
_LOG_ODDS = (-20.0, 30.0)  # log(b / a) = -logit(E[p | not in the zero mass])
_LOGIT_PI = (-25.0, 25.0)

# Internal parameter vector: (a, b, pi, mode); mode 0 = fitted, 1 = all wrong, 2 = all correct.
_NORMAL, _ALL_WRONG, _ALL_CORRECT = 0.0, 1.0, 2.0


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
    for every k, no failure predicts 1).
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
    def fit(self, n: Any, c: Any) -> "BetaBinomialPassAtK":
        """Fit on ``n`` (trials per problem, an array or one number) and ``c`` (successes per problem)."""
        self._check_common_params()
        if not isinstance(self.zero_inflated, (bool, np.bool_)):
            raise ConfigError("zero_inflated", self.zero_inflated, "True or False")
        if self.shape_prior is not None:
            ok = isinstance(self.shape_prior, (tuple, list)) and len(self.shape_prior) == 2
            if not ok or not (np.isfinite(self.shape_prior[0]) and self.shape_prior[0] > 0 and np.isfinite(self.shape_prior[1]) and self.shape_prior[1] > 0):
                raise ConfigError("shape_prior", self.shape_prior, "None or (median of a > 0, sd of log a > 0)")
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
        return self

    def fit_counts(self, n: Any, c: Any) -> "BetaBinomialPassAtK":
        """Same as :meth:`fit` (the name every pass@k model shares, see ``select_pass_at_k_model``)."""
        return self.fit(n, c)

    def log_likelihood(self, n: Any, c: Any) -> float:
        """Log-likelihood of held-out (n, c) under the fitted model (binomial coefficients omitted)."""
        self._check_fitted()
        n_arr, c_arr = check_counts(n, c)
        a, b, pi, mode = self.params_
        if mode == _ALL_WRONG:
            return 0.0 if np.all(c_arr == 0) else -np.inf
        if mode == _ALL_CORRECT:
            return 0.0 if np.all(c_arr == n_arr) else -np.inf
        theta = self._to_theta(self.params_)
        return float(-self._objective(theta, n_arr.astype(float), c_arr.astype(float), np.ones(n_arr.size), with_prior=False)[0] * n_arr.size)

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

