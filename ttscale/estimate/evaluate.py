"""Accuracy at k for several policies over one pool of samples (sample once, decide many).

Exact estimators where the policy's selector has a closed form for its parameters (registered in
:mod:`ttscale.estimate.closed_forms`: majority, Best-of-N), pass@k for the oracle coverage; a
seeded resampling estimate with its standard error for every other policy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ttscale.answers.candidates import Candidates
from ttscale.errors import ConfigError, EstimationError
from ttscale.estimate import closed_forms  # noqa: F401  (registers the selectors' exact forms)
from ttscale.estimate.exact import dataset_mean, pass_at_k
from ttscale.estimate.resample import resampled_accuracy
from ttscale.selection.policy import Policy
from ttscale.selection.registry import get_selector


@dataclass(frozen=True)
class PolicyCurve:
    """One policy's dataset accuracy at each k."""

    accuracy: list[float]
    stderr: list[float] | None
    """Monte Carlo standard error of a resampled estimate; None for exact estimates."""
    method: str
    """``exact`` or ``resampled``."""


@dataclass(frozen=True)
class EvalResult:
    """Accuracy-at-k table of a bank: what ``ttscale eval --json`` prints."""

    problems: int
    k: list[int]
    pass_at_k: list[float]
    tokens: list[float] | None
    """Expected generated tokens per problem at k samples (mean over problems), when the bank has tokens."""
    policies: dict[str, PolicyCurve]
    problems_at_k: list[int] = field(default_factory=list)
    """Problems with at least k samples (the ones each column averages over)."""

    def to_json(self) -> dict:
        return {
            "problems": self.problems,
            "k": self.k,
            "pass": self.pass_at_k,
            "tokens": self.tokens,
            "policies": {
                name: {"accuracy": c.accuracy, "stderr": c.stderr, "method": c.method}
                for name, c in self.policies.items()
            },
            "problems_at_k": self.problems_at_k,
        }


def default_k_grid(sizes: Sequence[int]) -> list[int]:
    """1, 2, 4, ... up to the smallest pool size, and that size itself."""
    top = int(min(sizes))
    grid = [1 << i for i in range(top.bit_length()) if (1 << i) <= top]
    if grid[-1] != top:
        grid.append(top)
    return grid


def check_k_grid(ks: Sequence[int], sizes: Sequence[int]) -> list[int]:
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ConfigError("k", ks, "positive integers")
    if ks[-1] > max(sizes):
        raise ConfigError("k", ks[-1], f"at most the largest pool size in the bank ({max(sizes)})")
    return ks


def _floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in values]


def exact_form(policy: Policy) -> Callable[[Sequence[Candidates], Sequence[int]], np.ndarray] | None:
    """The policy's exact ``(problems, ks) -> (P, K)`` accuracy from the registry, or None (resampled)."""
    return get_selector(policy.selector).exact_form(policy.params)


def evaluate(
    problems: Sequence[Candidates],
    policies: Sequence[Policy],
    ks: Sequence[int] | None = None,
    *,
    draws: int = 1000,
    seed: int = 0,
    on_policy: Callable[[str], None] | None = None,
) -> EvalResult:
    """Accuracy at every k in ``ks`` for each policy, pass@k (oracle) and expected tokens."""
    if not problems:
        raise EstimationError("no problems to evaluate")
    sizes = [p.n for p in problems]
    ks = default_k_grid(sizes) if ks is None else check_k_grid(ks, sizes)
    size_arr = np.asarray(sizes)
    correct_counts = np.array([int(p.correct.sum()) for p in problems])
    # Problems with fewer than k samples are NaN at k and left out of that column's mean.
    pass_curve = _floats(dataset_mean(pass_at_k(size_arr, correct_counts, ks))[0])

    tokens = None
    if all(p.tokens is not None for p in problems):
        mean_tokens = np.array([float(p.tokens.mean()) for p in problems])
        tokens = [float(k * mean_tokens[size_arr >= k].mean()) for k in ks]

    curves: dict[str, PolicyCurve] = {}
    for policy in policies:
        lacking = sorted(policy.missing(problems))
        if lacking:
            raise ConfigError("policy", policy.name, f"a bank with {' and '.join(lacking)} on every sample (this bank has none)")
        exact = exact_form(policy)
        if exact is not None:
            curves[policy.name] = PolicyCurve(_floats(dataset_mean(exact(problems, ks))[0]), None, "exact")
        else:
            acc, se = resampled_accuracy(problems, policy.selector_fn(), ks, draws=draws, seed=seed)
            mean, mean_se = dataset_mean(acc, se)
            curves[policy.name] = PolicyCurve(_floats(mean), _floats(mean_se), "resampled")
        if on_policy is not None:
            on_policy(policy.name)
    return EvalResult(
        problems=len(problems),
        k=ks,
        pass_at_k=pass_curve,
        tokens=tokens,
        policies=curves,
        problems_at_k=[int((size_arr >= k).sum()) for k in ks],
    )

