"""Stopping that reads per-sample signals as well as votes: weighted votes, calibrated per bank.

A vote treats every sample alike. Many samples carry a signal of their own correctness: the mean
token log-probability (or DeepConf's group confidence), the output length, a reward or PRM score.
Their direction and strength differ between models (longer answers are more often right on one
model and less on another), so nothing here is fixed in advance: :func:`calibrate` fits, on a graded
pilot bank, how the signals move the odds that a sample is right *within its question* (each
question's signals centred on their mean, so a hard question's low log-probs do not count as
evidence), by logistic regression, and keeps a signal only when its coefficient is clearly away
from zero (otherwise the weights are plain votes: the fallback).

A sample then votes with weight ``exp(beta . z)`` (z = its standardized signals), normalized so a
question's weights average 1; :class:`WeightedSettledMajority` is the live ``default`` rule
(:class:`~ttscale.adaptive.stopping.SettledMajority`) run on those weighted counts, answering the
weighted leader. Scored on :class:`~ttscale.adaptive.simulate.ReplayPool` orders (the weights
depend on the order, so there are no exact tables).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from ttscale.adaptive.simulate import ReplayPool, RulePoint, summarize
from ttscale.adaptive.stopping import DEFAULT_ALPHA, DEFAULT_REST, DENSE_VOTE_CELLS, SettledMajority, cumulative_votes, top_two
from ttscale.answers.candidates import Candidates
from ttscale.errors import EstimationError

__all__ = ["SIGNALS", "SignalModel", "calibrate", "crossfit_weights", "signal_values", "weighted_rule_points"]

SIGNALS = ("logprob", "length", "reward")
"""Per-sample signals a bank may hold: mean token log-probability, generated tokens, reward."""
Z_KEEP = 2.0
"""A signal is kept only when its coefficient is this many standard errors from zero."""


def signal_values(problem: Candidates, name: str) -> np.ndarray | None:
    """One question's per-sample values of signal ``name`` (None when the bank lacks it)."""
    if name == "logprob":
        return None if problem.logprobs is None else np.asarray(problem.logprobs, dtype=float)
    if name == "length":
        return None if problem.tokens is None else np.log1p(np.asarray(problem.tokens, dtype=float))
    if name == "reward":
        return None if problem.rewards is None else np.asarray(problem.rewards, dtype=float)
    raise KeyError(name)


@dataclass(frozen=True)
class SignalModel:
    """How signals weigh a sample's vote: weight = exp(sum_i beta_i (x_i - mean_i) / sd_i)."""

    names: tuple[str, ...]
    """Signals kept (empty: plain votes)."""
    beta: tuple[float, ...]
    mean: tuple[float, ...]
    sd: tuple[float, ...]
    dropped: tuple[tuple[str, str], ...] = ()
    """Signals left out and why (absent, constant, or not informative on this bank)."""

    @property
    def informative(self) -> bool:
        return bool(self.names)

    def weights(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """Un-normalized weights of samples whose signals are ``values[name]`` (same shapes)."""
        shape = next(iter(values.values())).shape if values else ()
        score = np.zeros(shape)
        for name, b, m, s in zip(self.names, self.beta, self.mean, self.sd):
            score = score + b * (np.nan_to_num(values[name], nan=m) - m) / s
        return np.exp(np.clip(score, -20, 20))

    def to_json(self) -> dict:
        return {"signals": {n: {"beta": b, "mean": m, "sd": s} for n, b, m, s in zip(self.names, self.beta, self.mean, self.sd)},
                "dropped": dict(self.dropped)}


def calibrate(problems: Sequence[Candidates], names: Sequence[str] = SIGNALS) -> SignalModel:
    """Fit, on graded questions, how each available signal moves the within-question odds of a
    correct sample (logistic regression on per-question-centred, standardized signals); keep
    signals whose coefficient is at least ``Z_KEEP`` standard errors from zero."""
    cols: list[np.ndarray] = []
    kept: list[str] = []
    dropped: list[tuple[str, str]] = []
    stats: list[tuple[float, float]] = []
    for name in names:
        per_q = [signal_values(p, name) for p in problems]
        if any(v is None for v in per_q) or not per_q:
            dropped.append((name, "not in the bank"))
            continue
        flat = np.concatenate(per_q)
        finite = np.isfinite(flat)
        if finite.sum() < 10 or np.nanstd(flat[finite]) == 0:
            dropped.append((name, "constant or missing"))
            continue
        mean, sd = float(np.mean(flat[finite])), float(np.std(flat[finite]))
        centred = np.concatenate([_centred(v) for v in per_q]) / sd
        cols.append(centred)
        kept.append(name)
        stats.append((mean, sd))
    if not kept:
        return SignalModel((), (), (), (), tuple(dropped))
    # Only questions with both right and wrong samples say anything about the within-question contrast.
    y = np.concatenate([p.correct.astype(float) for p in problems])
    mixed = np.concatenate([np.full(p.n, 0 < p.correct.sum() < p.n) for p in problems])
    X = np.stack(cols, axis=1)[mixed]
    y = y[mixed]
    if y.size < 20:
        return SignalModel((), (), (), (), tuple(dropped) + tuple((n, "too few questions with right and wrong samples") for n in kept))
    beta, se = _logistic(X, y)
    names_out, betas, means, sds = [], [], [], []
    for i, name in enumerate(kept):
        if abs(beta[i]) >= Z_KEEP * se[i]:
            names_out.append(name)
            betas.append(float(beta[i]))
            means.append(stats[i][0])
            sds.append(stats[i][1])
        else:
            dropped.append((name, f"not informative (coefficient {beta[i]:+.2f} +- {se[i]:.2f})"))
    return SignalModel(tuple(names_out), tuple(betas), tuple(means), tuple(sds), tuple(dropped))


def _centred(values: np.ndarray) -> np.ndarray:
    """One question's signal minus its mean over the finite values; a missing value counts as the mean."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros_like(values)
    return np.nan_to_num(values - values[finite].mean(), nan=0.0)


def _logistic(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression with an intercept: (coefficients without it, their standard errors)."""
    A = np.column_stack([np.ones(len(y)), X])

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = A @ w
        p = 1.0 / (1.0 + np.exp(-z))
        value = float(np.sum(np.logaddexp(0.0, z) - y * z))
        return value, A.T @ (p - y)

    res = minimize(loss, np.zeros(A.shape[1]), jac=True, method="L-BFGS-B")
    p = 1.0 / (1.0 + np.exp(-(A @ res.x)))
    info = (A * (p * (1 - p))[:, None]).T @ A
    try:
        cov = np.linalg.inv(info + 1e-9 * np.eye(info.shape[0]))
    except np.linalg.LinAlgError:
        cov = np.full(info.shape, np.inf)
    return res.x[1:], np.sqrt(np.maximum(np.diag(cov)[1:], 0.0))


def weighted_rule_points(pool: ReplayPool, weights: np.ndarray, grid: Sequence[float],
                         alpha: float = DEFAULT_ALPHA, rest: float = DEFAULT_REST) -> list[RulePoint]:
    """The ``default`` rule on weighted votes, one point per confidence in ``grid``: after each
    sample the weights so far are normalized to average 1 over answered samples, the settled test
    runs on the weighted top two, and the stop answers the weighted leader (tie-credited)."""
    Q, R, K = pool.sequences.shape
    seq = pool.sequences.reshape(Q * R, K)
    C = weighted_vote_classes(pool)
    if Q * R * K * (C + 1) > DENSE_VOTE_CELLS:
        raise EstimationError(f"{SIGNAL_RULE}: {Q * R * K * (C + 1):,} (order, sample, answer) cells exceed {DENSE_VOTE_CELLS:,}; "
                              "too many distinct answers to weigh votes densely (lower --max-k or --permutations)")
    wcounts = cumulative_votes(seq, C, weights.reshape(Q * R, K))  # (M, K, C) weighted votes
    answered = np.cumsum(seq >= 0, axis=1)
    total = wcounts.sum(axis=2)
    scale = np.where(total > 0, answered / np.maximum(total, 1e-300), 0.0)
    norm = wcounts * scale[..., None]
    w1, w2 = top_two(norm)
    others = np.maximum(answered - w1 - w2, 0.0)
    n = np.arange(1, K + 1)[None, :]
    remaining = np.broadcast_to(K - n, w1.shape)
    # Weighted-leader credit: correct classes among those tied at the top of the weighted count.
    flags = np.zeros((Q, C), dtype=bool)
    for q, cc in enumerate(pool.class_correct):
        flags[q, : min(cc.size, C)] = cc[:C]
    flags = np.repeat(flags, R, axis=0)
    top = (norm >= w1[..., None] - 1e-9) & (w1[..., None] > 0)
    n_top = top.sum(axis=2)
    credit = np.where(n_top > 0, (top & flags[:, None, :]).sum(axis=2) / np.maximum(n_top, 1), 0.0)
    # Round the weighted counts so the look-ahead table stays small (a quarter vote is far below the rule's resolution).
    r1, r2, ro = (np.round(x * 4) / 4 for x in (w1, w2, others))
    points = []
    for c in grid:
        rule = SettledMajority(float(c), alpha=alpha, rest=rest)
        hold = rule.hold_probability(r1, r2, ro, remaining)
        mask = ((hold >= rule.confidence) | (remaining == 0)) & (w1 > 0)
        stop = np.where(mask.any(axis=1), mask.argmax(axis=1), K - 1)
        got = np.take_along_axis(credit, stop[:, None], axis=1)[:, 0]
        points.append(summarize(pool, (stop + 1).reshape(Q, R), got.reshape(Q, R), float(c)))
    return points


SIGNAL_RULE = "default+signals"
"""Name of the signal-weighted ``default`` rule in simulation reports."""


def available_signals(problems: Sequence[Candidates]) -> list[str]:
    """Signals every question of the bank carries."""
    return [name for name in SIGNALS if problems and all(signal_values(p, name) is not None for p in problems)]


def crossfit_weights(problems: Sequence[Candidates], pool: ReplayPool, folds: int = 2, seed: int = 0,
                     names: Sequence[str] = SIGNALS) -> tuple[np.ndarray, SignalModel]:
    """Vote weights of the pool's samples with each question's weights calibrated on the *other*
    questions (``folds``-fold, seeded), so a simulated figure never rests on its own question's
    correctness; also the model calibrated on every question (what a live run would use).
    ``names``: the signals to consider (default: every one the bank carries)."""
    kept = [p for p in problems if p.n >= pool.k]
    fold = np.random.default_rng(seed).permutation(len(kept)) % folds
    weights = np.ones(pool.orders.shape)  # type: ignore[union-attr]
    for f in range(folds):
        model = calibrate([p for p, g in zip(kept, fold) if g != f], names)
        if not model.informative:
            continue
        for q in np.flatnonzero(fold == f):
            p = kept[q]
            weights[q] = model.weights({name: signal_values(p, name)[pool.orders[q]] for name in model.names})  # type: ignore[index]
    return weights, calibrate(kept, names)


def weighted_vote_classes(pool: ReplayPool) -> int:
    """Answer classes the weighted vote table of ``pool`` needs (one per class id seen)."""
    return max(int(pool.sequences.max()) + 1 if pool.sequences.size else 1, 1)


def fits_weighted_votes(pool: ReplayPool) -> bool:
    """Whether :func:`weighted_rule_points` can weigh ``pool``'s votes in a dense table (banks with
    very many distinct answers per question cannot; simulate then leaves the signal rule out)."""
    Q, R, K = pool.sequences.shape
    return Q * R * K * (weighted_vote_classes(pool) + 1) <= DENSE_VOTE_CELLS


def signal_rule(problems: Sequence[Candidates], grid: Sequence[float] = SettledMajority.grid, seed: int = 0):  # type: ignore[no-untyped-def]
    """A simulate-compatible runner (pool -> points) of the signal-weighted ``default`` rule, or None
    when the bank carries no signal. The calibrated model lands in the points' ``extra``."""
    if not available_signals(problems):
        return None

    def run(pool: ReplayPool) -> list[RulePoint]:
        weights, model = crossfit_weights(problems, pool, seed=seed)
        points = weighted_rule_points(pool, weights, grid)
        signals = ",".join(model.names) or "none (votes only)"
        return [RulePoint(p.param, p.accuracy, p.stderr, p.mean_samples, p.mean_tokens, {"signals": signals}) for p in points]

    return run
