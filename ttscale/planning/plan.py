"""Dataset-level planning: predicted accuracy at any N per policy, with intervals, and what it costs.

From a bank holding a few samples per question (a pilot, e.g. 4-16), each policy's curve is fitted
with the curve models of ``ttscale.curves``:

* ``majority``: :class:`~ttscale.curves.DirichletMajorityModel` (per-question Dirichlet posteriors);
* ``pass``: :class:`~ttscale.curves.passk_blend.BlendedPassAtK` (an oracle verifier's ceiling: a
  blend of pass@k models chosen held out across corpora, ``evals/unseen_passk.py``);
* any other policy preset: a bounded curve (:func:`fit_policy_curve`): a vote-type policy gains
  beyond the pilot what the Dirichlet majority model gains (:class:`~ttscale.curves.MajorityAnchoredCurve`),
  a reward-selected one follows a floored power law; both capped by the beta-binomial pass@N, and a
  curve that falls with N is not extrapolated past its best N (:func:`~ttscale.curves.best_n`).

Then: target accuracy T -> the smallest N that reaches it; a budget (samples, tokens or dollars per
question or in all) -> the N it buys and its accuracy; the saturation point, the first N where one
more sample per question adds less than ``epsilon`` accuracy. Costs per question use
``ttscale.planning.cost`` (the prompt prefilled once per request of N).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ttscale.answers.candidates import Candidates
from ttscale.errors import ConfigError, EstimationError
from ttscale.estimate import exact as estimate
from ttscale.planning.cost import ModelCostSpec, Prices, dollars, kinetics_eflops
from ttscale.validation import check_count, is_number

__all__ = ["CostModel", "FittedCurve", "PlanResult", "bank_cost_model", "fit_curve", "fit_policy_curve", "n_grid", "plan"]


def n_grid(max_n: int, observed: int = 0) -> np.ndarray:
    """N values to predict at: every N up to 16 and up to the pilot, then about 12 per decade, and max_n."""
    max_n = int(max_n)
    dense = np.arange(1, min(max(16, observed), max_n) + 1)
    sparse = np.unique(np.round(np.geomspace(1, max_n, int(12 * math.log10(max(max_n, 10))) + 1)).astype(int))
    return np.unique(np.concatenate([dense, sparse, [max_n]]))


@dataclass(frozen=True)
class CostModel:
    """Per-question cost of N samples: tokens (prompt once per request), dollars and eFLOPs."""

    prompt_tokens: float
    """Mean prompt tokens per question."""
    output_tokens: float | None
    """Mean generated tokens per sample; None when unknown (then only sample counts are costed)."""
    prices: Prices | None = None
    """Dollars per million input / output tokens; None: no dollar figures."""
    spec: ModelCostSpec | None = None
    """Model and hardware numbers for Kinetics eFLOPs; None: no eFLOPs."""
    prompt_estimated: bool = False
    """Whether ``prompt_tokens`` was estimated from the problem text (about 4 characters a token)."""

    def tokens(self, n: np.ndarray) -> np.ndarray | None:
        if self.output_tokens is None:
            return None
        n = np.asarray(n, dtype=float)
        return self.prompt_tokens + n * self.output_tokens

    def dollars(self, n: np.ndarray) -> np.ndarray | None:
        if self.output_tokens is None or self.prices is None:
            return None
        n = np.asarray(n, dtype=float)
        return np.array([dollars(self.prompt_tokens, float(k) * self.output_tokens, self.prices) for k in np.atleast_1d(n)])

    def eflops(self, n: np.ndarray) -> np.ndarray | None:
        if self.output_tokens is None or self.spec is None:
            return None
        return np.asarray(kinetics_eflops(self.spec, np.asarray(n, dtype=float), self.prompt_tokens, self.output_tokens))


def bank_cost_model(problems: Sequence[Candidates], problem_texts: Sequence[str | None], *, prompt_tokens: float | None = None,
                    output_tokens: float | None = None, prices: Prices | None = None, spec: ModelCostSpec | None = None) -> CostModel:
    """A :class:`CostModel` with the bank's own figures where none are given: prompt tokens from the
    problem texts (about 4 characters a token), generated tokens per sample from the samples' tokens
    (when every sample has them)."""
    estimated = prompt_tokens is None
    if prompt_tokens is None:
        prompt_tokens = float(np.mean([len(text or "") / 4.0 for text in problem_texts])) if problem_texts else 0.0
    if output_tokens is None and problems and all(p.tokens is not None for p in problems):
        output_tokens = float(np.mean(np.concatenate([p.tokens for p in problems])))
    if output_tokens is not None and not (math.isfinite(output_tokens) and output_tokens > 0):
        raise ConfigError("--output-tokens", output_tokens, "a positive number of tokens per sample")
    return CostModel(prompt_tokens=float(prompt_tokens), output_tokens=output_tokens, prices=prices, spec=spec,
                     prompt_estimated=estimated)


@dataclass
class FittedCurve:
    """One policy's predicted dataset accuracy against N, with an interval."""

    policy: str
    method: str
    """Which model: ``dirichlet-majority``, ``beta-binomial``, or the fitted family's name."""
    observed_k: list[int]
    observed_acc: list[float]
    """The bank's own exact (or resampled) accuracy at k <= the smallest pool."""
    n: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    level: float
    best_n: int | None = None
    """For a curve that falls with N: the N past which more samples hurt (predictions are held there)."""
    supported_n: float | None = None
    """Pass@k only: the largest N the bank's data pin within 2 points (beyond it, problems never
    solved in the bank could add pass@N the model can only assume); None: no such limit."""
    unsupported_mass: Callable[[float], float] | None = field(default=None, repr=False)
    """Pass@k only: upper bound on the accuracy never-solved problems could add at N."""

    def at(self, n: float) -> tuple[float, float, float]:
        """(mean, low, high) at N (linear interpolation on the grid)."""
        return tuple(float(np.interp(n, self.n, arr)) for arr in (self.mean, self.low, self.high))  # type: ignore[return-value]

    @property
    def ceiling(self) -> tuple[float, float]:
        """(accuracy at the largest N, half-width of its interval)."""
        return float(self.mean[-1]), float((self.high[-1] - self.low[-1]) / 2)


def _check_problems(problems: Sequence[Candidates]) -> list[Candidates]:
    if not problems:
        raise EstimationError("the bank has no questions to plan for")
    sizes = np.array([p.n for p in problems])
    if sizes.max() < 2:
        raise EstimationError(
            f"too few samples to fit a curve: every question has {int(sizes.max())} sample(s); "
            "a pilot needs at least 2 per question (4-16 recommended)")
    kept = [p for p in problems if p.n >= 2]
    if len(kept) < 2:
        raise EstimationError(f"too few questions to fit a curve: {len(kept)} with at least 2 samples (need 2 or more)")
    correct = np.concatenate([p.correct for p in kept])
    if correct.all():
        raise EstimationError("every sample of every question is correct: accuracy is 100% at any N, "
                              "there is no curve to fit (N = 1 suffices)")
    if not correct.any():
        raise EstimationError("no sample of any question is correct: accuracy is 0% at any N under every "
                              "policy, there is no curve to fit (check the references or the grading)")
    return kept


def fit_curve(problems: Sequence[Candidates], policy: str = "majority", *, max_n: int = 1024, level: float = 0.95,
              seed: int = 0, draws: int = 300) -> FittedCurve:
    """Fit one policy's accuracy-vs-N curve on the bank and predict it on :func:`n_grid`."""
    from ttscale.curves import DirichletMajorityModel
    from ttscale.curves.majority import PILOT_SHIFT_DECAY
    from ttscale.curves.passk_blend import BlendedPassAtK

    kept = _check_problems(problems)
    check_count("max_n", max_n, 2)
    top = int(min(p.n for p in kept))
    ks = list(range(1, top + 1))
    grid = n_grid(int(max_n), top)
    support: dict = {}
    if policy == "majority":
        counts, correct, n = estimate.candidates_to_arrays(kept)
        observed = estimate.majority_at_k(counts, correct, n, ks)
        model = DirichletMajorityModel(n_draws=draws, n_bootstrap=400, random_state=seed,
                                       pilot_shift_decay=PILOT_SHIFT_DECAY).fit(counts, correct, n)
        method = "dirichlet-majority"
    elif policy == "pass":
        n = np.array([p.n for p in kept])
        c = np.array([int(p.correct.sum()) for p in kept])
        observed = estimate.pass_at_k(n, c, ks)
        model = BlendedPassAtK().fit(n, c)
        method = (f"blend for a {model.regime_} pilot: " + ", ".join(f"{name} {w:.2f}" for name, w in model.weights_.items()))
        supported = float(model.max_supported_k_)
        support = dict(supported_n=supported if math.isfinite(supported) else None,
                       unsupported_mass=lambda k: float(model.unseen_mass(k)[0]))
    else:
        return _fit_policy_curve(kept, policy, grid, ks, level, seed)
    mean = np.asarray(model.predict(grid))
    low, high = model.predict_interval(grid, level)
    obs = np.nanmean(observed, axis=0)
    return FittedCurve(policy, method, ks, [float(v) for v in obs], grid, _clean(mean), _clean(np.asarray(low)),
                       _clean(np.asarray(high)), level, **support)


def _fit_gap(curve: FittedCurve) -> float | None:
    """Fitted minus observed accuracy at the largest observed k (a posterior predictive check), or None."""
    if not curve.observed_k or not math.isfinite(curve.observed_acc[-1]):
        return None
    return curve.at(curve.observed_k[-1])[0] - curve.observed_acc[-1]


def _clean(a: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(np.asarray(a, dtype=float), nan=0.0), 0.0, 1.0)


def _fit_policy_curve(kept: list[Candidates], name: str, grid: np.ndarray, ks: list[int], level: float, seed: int) -> FittedCurve:
    return fit_policy_curve(kept, name, ks=ks, grid=grid, level=level, seed=seed)


def _reads_scores(policy: object) -> bool:
    """Whether a policy selects by a reward or the reference (it may fall with N, or is an oracle),
    rather than among the answers by votes, vote weights or stopping (it saturates with votes)."""
    return bool(set(policy.needs) & {"rewards", "reference"})  # type: ignore[attr-defined]


def fit_policy_curve(problems: Sequence[Candidates], policy: object, *, ks: Sequence[int] | None = None,
                     grid: np.ndarray | None = None, max_n: int = 1024, level: float = 0.95, seed: int = 0,
                     draws: int = 300, name: str | None = None) -> FittedCurve:
    """A policy's bounded accuracy-vs-N curve from a bank (any policy but ``majority`` and ``pass``).

    The policy's per-question accuracy at ``ks`` (default 1..the smallest pool) is computed exactly
    where a closed form exists, else resampled (``draws``, ``seed``: the numbers ``ttscale eval``
    prints; ``name``: the label to report, default the policy's). Then:

    * a vote-type policy (one that needs neither rewards nor the reference) on a bank of at least
      :data:`~ttscale.curves.MIN_ANCHOR_QUESTIONS` questions: :class:`~ttscale.curves.MajorityAnchoredCurve`
      (method ``majority-anchored``): beyond the pilot it gains a fixed multiple
      (:func:`~ttscale.curves.vote_gain` of its selector) of what the Dirichlet majority model
      fitted on the same pilot gains, capped by the pilot's beta-binomial pass@N, so it
      saturates where votes saturate;
    * a reward-selected policy (or the oracle): the bounded curve family of
      :func:`fit_accuracy_curve`, capped by the beta-binomial pass@N; a curve that falls inside the
      pilot is held at its best N;
    * fewer questions: :func:`fit_accuracy_curve` on the points alone.
    """
    from ttscale.curves import (
        MIN_ANCHOR_QUESTIONS,
        BetaBinomialPassAtK,
        DirichletMajorityModel,
        MajorityAnchoredCurve,
        vote_gain,
    )
    from ttscale.estimate.evaluate import exact_form
    from ttscale.estimate.resample import resampled_accuracy
    from ttscale.selection.policy import Policy, load_policy

    pol = policy if isinstance(policy, Policy) else load_policy(str(policy))
    label = name or (pol.name if isinstance(policy, Policy) else str(policy))
    if not problems:
        raise EstimationError("the bank has no questions to plan for")
    top = int(min(p.n for p in problems)) if ks is None else int(max(ks))
    kept = [p for p in problems if p.n >= top]
    ks = list(range(1, top + 1)) if ks is None else sorted({int(k) for k in ks})
    if top < 2 or len(ks) < 2:
        raise EstimationError(f"policy {label!r}: a curve needs at least 2 samples per question (the smallest pool has {top})")
    lacking = sorted(pol.missing(kept))
    if lacking:
        raise ConfigError("policy", label, f"a bank with {' and '.join(lacking)} on every sample (this bank has none)")
    grid = n_grid(int(max_n), ks[-1]) if grid is None else np.asarray(grid)
    exact = exact_form(pol)
    if exact is not None:
        per_q = np.asarray(exact(kept, ks), dtype=float)
    else:
        per_q, _ = resampled_accuracy(kept, pol.selector_fn(), ks, draws=draws, seed=seed)
    observed = per_q.mean(axis=0)
    if len(kept) < MIN_ANCHOR_QUESTIONS:
        return fit_accuracy_curve(label, ks, observed, len(kept), grid=grid, level=level, seed=seed)
    n = np.array([p.n for p in kept])
    c = np.array([int(p.correct.sum()) for p in kept])
    passk = BetaBinomialPassAtK(n_bootstrap=100, random_state=seed).fit(n, c)
    if _reads_scores(pol):
        cap = (np.asarray(passk.predict(grid)), np.asarray(passk.predict_interval(grid, level)[1]))
        return fit_accuracy_curve(label, ks, observed, len(kept), grid=grid, level=level, seed=seed, ceiling=cap)
    counts, correct, sizes = estimate.candidates_to_arrays(kept)
    try:
        majority = DirichletMajorityModel(n_bootstrap=1, random_state=seed).fit(counts, correct, sizes)
    except EstimationError:
        return fit_accuracy_curve(label, ks, observed, len(kept), grid=grid, level=level, seed=seed)
    model = MajorityAnchoredCurve(gain=vote_gain(pol.selector), n_bootstrap=400, random_state=seed)
    model.fit(ks, per_q, majority, ceiling=passk)
    mean = np.asarray(model.predict(grid))
    low, high = model.predict_interval(grid, level)
    return FittedCurve(label, "majority-anchored", ks, [float(v) for v in observed], grid, _clean(mean), _clean(low),
                       _clean(high), level, best_n=model.best_n_)


def fit_accuracy_curve(name: str, ks: Sequence[int], accuracy: Sequence[float], questions: int, *,
                       grid: np.ndarray | None = None, max_n: int = 1024, level: float = 0.95, seed: int = 0,
                       ceiling: tuple[np.ndarray, np.ndarray] | None = None) -> FittedCurve:
    """Fit a bounded curve family to a policy's observed dataset accuracy at ``ks`` (exact or
    resampled) and predict it on ``grid`` (default :func:`n_grid` up to ``max_n``): the power law
    with a floor, err(k) = E + C k^-g, which saturates at 1 - E. (The exponentiated power law,
    which this used to choose by held-out error inside the pilot, tends to 100% and ran away on
    vote policies; the floored power law alone was chosen on every leave-one-corpus-out split of
    evals/policy_curves.py, 3.36 against 3.84 points of mean absolute error over all corpora.)
    A policy whose accuracy falls past some k (a misspecified reward) is held at its best N
    instead of extrapolating the fall. ``ceiling``: (mean, upper bound) on ``grid`` that the
    prediction beyond the observed ks may not exceed (e.g. the pilot's beta-binomial pass@N)."""
    from ttscale.curves import PowerLawWithFloor, best_n

    ks = [int(k) for k in ks]
    acc = np.asarray(accuracy, dtype=float)
    if len(ks) < 3:
        raise EstimationError(f"policy {name!r}: a curve fit needs at least 3 samples per question (the smallest pool has {len(ks)})")
    if not np.all(np.isfinite(acc)):
        raise EstimationError(f"policy {name!r}: accuracy is undefined at some k (too few questions with that many samples)")
    grid = n_grid(int(max_n), ks[-1]) if grid is None else grid
    k_arr = np.asarray(ks, dtype=float)
    best = best_n(k_arr, acc, tolerance=0.005)
    if not best.monotone:
        # More samples hurt past best.k: hold the curve there instead of extrapolating a fall.
        cut = k_arr <= best.k
        kk, aa = k_arr[cut], acc[cut]
    else:
        kk, aa = k_arr, acc
    method = "power-law+floor"
    try:
        model = PowerLawWithFloor(n_bootstrap=100, random_state=seed).fit(kk, aa)
        eval_n = grid if best.monotone else np.minimum(grid, best.k)
        mean = np.asarray(model.predict(eval_n))
        low, high = model.predict_interval(eval_n, level)
    except EstimationError:
        if best.monotone:
            raise
        # a fall right after the first points leaves too few to fit: hold the best accuracy
        method = "held at best N"
        mean = np.where(grid <= best.k, np.interp(grid, k_arr, acc), best.acc)
        low, high = mean.copy(), mean.copy()
    # The curve's bootstrap only sees the k-points; which questions the bank holds is uncertain too.
    # Add it in quadrature with the binomial bound on a dataset mean's standard error (per-question
    # accuracies in [0, 1] vary at most as much as coin flips with the same mean).
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    m = np.clip(mean, 0.0, 1.0)
    q_half = z * np.sqrt(m * (1 - m) / max(int(questions), 1))
    low = mean - np.hypot(mean - np.asarray(low), q_half)
    high = mean + np.hypot(np.asarray(high) - mean, q_half)
    if ceiling is not None:
        cap_mean, cap_high = (np.asarray(a, dtype=float) for a in ceiling)
        far = np.asarray(grid) > ks[-1]
        floor = float(acc[k_arr <= best.k][-1]) if not best.monotone else float(acc[-1])
        mean = np.where(far, np.minimum(mean, np.maximum(cap_mean, floor)), mean)
        high = np.where(far, np.minimum(high, np.maximum(cap_high, mean)), high)
        low = np.minimum(low, mean)
    return FittedCurve(name, method, ks, [float(v) for v in acc], grid, _clean(mean), _clean(np.asarray(low)),
                       _clean(np.asarray(high)), level, best_n=None if best.monotone else int(best.k))


@dataclass
class PlanResult:
    """What ``ttscale plan`` reports (``to_json`` for ``--json``)."""

    questions: int
    curve: FittedCurve
    cost: CostModel
    recommended_n: int | None
    reason: str
    saturation_n: int
    epsilon: float
    target: float | None = None
    budget: dict | None = None
    notes: list[str] = field(default_factory=list)

    def row(self, n: int) -> dict:
        mean, low, high = self.curve.at(n)
        out: dict = {"n": int(n), "accuracy": mean, "low": low, "high": high}
        tok = self.cost.tokens(np.array([n]))
        out["tokens_per_question"] = None if tok is None else float(tok[0])
        usd = self.cost.dollars(np.array([n]))
        out["dollars_per_question"] = None if usd is None else float(usd[0])
        ef = self.cost.eflops(np.array([n]))
        out["eflops_per_question"] = None if ef is None else float(np.atleast_1d(ef)[0])
        return out

    def table_ns(self) -> list[int]:
        ns = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, self.saturation_n}
        if self.recommended_n:
            ns.add(self.recommended_n)
        return sorted(n for n in ns if n <= int(self.curve.n[-1]))

    def to_json(self) -> dict:
        ceiling, half = self.curve.ceiling
        return {
            "policy": self.curve.policy,
            "method": self.curve.method,
            "questions": self.questions,
            "level": self.curve.level,
            "observed": {"k": self.curve.observed_k, "accuracy": self.curve.observed_acc},
            "ceiling": {"n": int(self.curve.n[-1]), "accuracy": ceiling, "halfwidth": half},
            "target": self.target,
            "budget": self.budget,
            "recommended": None if self.recommended_n is None else self.row(self.recommended_n),
            "reason": self.reason,
            "saturation": {"epsilon": self.epsilon, **self.row(self.saturation_n)},
            "best_n": self.curve.best_n,
            "cost": {"prompt_tokens": self.cost.prompt_tokens, "output_tokens_per_sample": self.cost.output_tokens,
                     "prompt_estimated": self.cost.prompt_estimated},
            "table": [self.row(n) for n in self.table_ns()],
            "notes": self.notes,
        }


def saturation_point(curve: FittedCurve, epsilon: float) -> int:
    """The first N from which more samples add less than ``epsilon`` accuracy per extra sample.

    Robust to flat stretches of a noisy prediction: at N the best average gain per sample over
    every larger N' on the grid, (acc(N') - acc(N)) / (N' - N), must be below ``epsilon``.
    """
    n, mean = curve.n.astype(float), curve.mean
    for i in range(n.size - 1):
        if float(np.max((mean[i + 1 :] - mean[i]) / (n[i + 1 :] - n[i]))) < epsilon:
            return int(n[i])
    return int(n[-1])


def plan(
    problems: Sequence[Candidates],
    *,
    policy: str = "majority",
    target: float | None = None,
    budget_samples: float | None = None,
    budget_tokens: float | None = None,
    budget_dollars: float | None = None,
    per_question: bool = False,
    cost: CostModel | None = None,
    epsilon: float = 1e-4,
    max_n: int = 1024,
    level: float = 0.95,
    seed: int = 0,
    curve: FittedCurve | None = None,
) -> PlanResult:
    """Answer one planning question (a target, a budget, or neither: the saturation point).

    Budgets in tokens or dollars are for all questions of the bank (``per_question``: for one).
    """
    given = [x is not None for x in (target, budget_samples, budget_tokens, budget_dollars)]
    if sum(given) > 1:
        raise ConfigError("--target/--budget-*", "several", "at most one of --target, --budget-samples, --budget-tokens, --budget-dollars")
    if not (is_number(epsilon) and epsilon > 0):
        raise ConfigError("epsilon", epsilon, "a positive number (accuracy gained per extra sample)")
    if target is not None and not (math.isfinite(target) and 0 < target <= 1):
        raise ConfigError("target", target, "an accuracy in (0, 1] (e.g. 0.94 for 94%)")
    cost = cost or CostModel(prompt_tokens=0.0, output_tokens=None)
    curve = curve or fit_curve(problems, policy, max_n=max_n, level=level, seed=seed)
    Q = len([p for p in problems if p.n >= 2])
    sat = saturation_point(curve, epsilon)
    notes: list[str] = []
    budget: dict | None = None
    if target is not None:
        ceiling, half = curve.ceiling
        reach = np.flatnonzero(curve.mean >= target)
        if reach.size == 0:
            raise EstimationError(
                f"target {target:g} is above the predicted ceiling {ceiling:.3f} +- {half:.3f} "
                f"({curve.policy} at N = {int(curve.n[-1])}); lower the target or use another policy")
        rec = int(curve.n[reach[0]])
        if rec > sat:
            notes.append(f"N = {rec} is past the saturation point N = {sat} (gain < {epsilon:g} per sample)")
        reason = f"smallest N whose predicted accuracy reaches {target:g}"
    elif any(x is not None for x in (budget_samples, budget_tokens, budget_dollars)):
        n_float, budget = _budget_to_n(budget_samples, budget_tokens, budget_dollars, cost, Q, per_question)
        if n_float < 1:
            raise EstimationError(f"the budget buys {n_float:.2f} samples per question, less than one sample "
                                  f"(one sample per question costs {_one_sample(cost, budget)})")
        rec = int(math.floor(n_float))
        if rec > int(curve.n[-1]):
            notes.append(f"the budget buys {rec} samples per question; predictions stop at N = {int(curve.n[-1])}")
            rec = int(curve.n[-1])
        if curve.best_n is not None and rec > curve.best_n:
            notes.append(f"{curve.policy} gets worse past N = {curve.best_n}: spend no more than that")
            rec = curve.best_n
        if rec > sat:
            notes.append(f"past N = {sat} each extra sample adds less than {epsilon:g} accuracy (saturated)")
        reason = "most samples per question the budget buys"
    else:
        rec = sat
        reason = f"saturation: first N where one more sample adds less than {epsilon:g} accuracy"
    gap = _fit_gap(curve)
    if gap is not None and abs(gap) >= 0.01:
        k = curve.observed_k[-1]
        notes.append(f"the fitted curve is {100 * gap:+.1f} points off the bank's exact {curve.policy}@{k} "
                     f"({100 * curve.observed_acc[-1]:.1f}%): predictions beyond N = {k} may be off by as much")
    if curve.supported_n is not None and rec > curve.supported_n and curve.unsupported_mass is not None:
        notes.append(f"{curve.policy}@{rec} is an extrapolation the data do not pin: problems never solved in the bank "
                     f"could add up to {100 * curve.unsupported_mass(rec):.1f} points the model can only assume "
                     f"(the data support N <= {int(curve.supported_n)} within 2 points; sample more per question)")
    if cost.prompt_estimated and cost.output_tokens is not None:
        notes.append("prompt tokens estimated from the problem text (about 4 characters a token)")
    return PlanResult(Q, curve, cost, rec, reason, sat, float(epsilon), target, budget, notes)


def _budget_to_n(samples: float | None, tokens: float | None, usd: float | None, cost: CostModel, Q: int,
                 per_question: bool) -> tuple[float, dict]:
    scale = 1 if per_question else Q
    if samples is not None:
        if not (math.isfinite(samples) and samples > 0):
            raise ConfigError("--budget-samples", samples, "a positive number of samples per question")
        return float(samples), {"samples_per_question": float(samples)}
    if cost.output_tokens is None:
        raise ConfigError("--budget-tokens/--budget-dollars", tokens if tokens is not None else usd,
                          "a bank with 'tokens' on its samples, or --output-tokens (mean generated tokens per sample)")
    if tokens is not None:
        if not (math.isfinite(tokens) and tokens > 0):
            raise ConfigError("--budget-tokens", tokens, "a positive number of tokens")
        per_q = tokens / scale
        return (per_q - cost.prompt_tokens) / cost.output_tokens, {"tokens": float(tokens), "per_question": per_question,
                                                                    "tokens_per_question": per_q}
    assert usd is not None
    if not (math.isfinite(usd) and usd > 0):
        raise ConfigError("--budget-dollars", usd, "a positive amount of dollars")
    if cost.prices is None or (cost.prices.input == 0 and cost.prices.output == 0):
        raise ConfigError("--budget-dollars", usd, "prices too: --price-in and --price-out (dollars per million tokens)")
    per_q = usd / scale
    prompt_usd = cost.prompt_tokens * cost.prices.input / 1e6
    per_sample = cost.output_tokens * cost.prices.output / 1e6
    n = (per_q - prompt_usd) / per_sample if per_sample > 0 else float(1 << 30)
    return n, {"dollars": float(usd), "per_question": per_question, "dollars_per_question": per_q}


def _one_sample(cost: CostModel, budget: dict) -> str:
    if "dollars" in budget and cost.prices is not None and cost.output_tokens is not None:
        return f"${dollars(cost.prompt_tokens, cost.output_tokens, cost.prices):.6f} per question"
    if cost.output_tokens is not None:
        return f"{cost.prompt_tokens + cost.output_tokens:.0f} tokens per question"
    return "1 sample per question"
