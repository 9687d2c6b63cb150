"""Selection policies: pure functions from one problem's candidates to the chosen answer(s).

A selector is registered by name (``@register_selector("majority", MajorityParams)``) and
looked up with :func:`get_selector`. Calling it validates the keyword parameters against the
selector's frozen parameter model and runs it::

    sel = get_selector("best-of-majority")(cands, rng, alpha=0.2, answers=2)

Every selector:

* works on answer-class ids, rewards and mean token log-probs only (``Candidates``);
* never lets a sample without an answer (``NO_ANSWER``) win;
* breaks ties uniformly at random with the ``rng`` it is given (one shared helper,
  :func:`rank_random`), so estimators can reproduce the tie credit exactly;
* returns up to ``answers`` classes, best first, each with its support, and sets
  ``Selection.sample`` to a representative candidate of the first class;
* abstains (an empty ``Selection``) only when no sample has an answer.

Scores that are NaN (a sample the scorer skipped) rank below every scored sample and get
zero weight; they never raise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Callable, Generic, Mapping, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from ttscale.candidates import NO_ANSWER, Candidates, Selection
from ttscale.errors import ConfigError

__all__ = [
    "BestOfMajorityParams",
    "BestOfNParams",
    "ClassScore",
    "ConfidenceVoteParams",
    "Fallback",
    "FirstToAheadParams",
    "MajorityOfBestsParams",
    "MajorityParams",
    "MissingFieldError",
    "OracleParams",
    "PassAtKParams",
    "WeightedMajorityParams",
    "first_to_ahead",
    "SelectorParams",
    "Selector",
    "Transform",
    "WeightSource",
    "get_selector",
    "list_selectors",
    "rank_random",
    "register_selector",
    "top_k_random",
    "validate_params",
]

REWARDS = "rewards"
LOGPROBS = "logprobs"
REFERENCE = "reference"

TIE_RTOL = 1e-9
"""Scores within this relative distance count as tied (summed float weights differ in the last ulp)."""


# --------------------------------------------------------------------------- errors


class MissingFieldError(ConfigError):
    """A selector needs a per-sample field (rewards, log-probs) that these candidates lack."""

    def __init__(self, field: str, selector: str, why: str) -> None:
        self.field = field
        self.selector = selector
        super().__init__(
            field,
            None,
            f"candidates with {field} ({selector} {why}); score the bank first or pick a "
            f"policy that does not need {field}",
        )


# --------------------------------------------------------------------------- tie-breaking


def rank_random(
    scores: np.ndarray,
    rng: np.random.Generator,
    eligible: np.ndarray | None = None,
    rtol: float = TIE_RTOL,
) -> np.ndarray:
    """Indices of the eligible entries of ``scores``, best (highest) first, ties in random order.

    Entries within ``rtol`` (relative) of each other are tied, and each tie group comes out
    in a uniformly random order drawn from ``rng``; so ``rank_random(...)[:k]`` is a top-k
    with uniform tie-breaking at the boundary. NaN ranks below every number (with -inf).
    """
    scores = np.asarray(scores, dtype=np.float64)
    idx = np.arange(scores.shape[0]) if eligible is None else np.flatnonzero(eligible)
    if idx.size <= 1:
        return idx
    s = scores[idx]
    s[np.isnan(s)] = -np.inf
    order = np.argsort(-s, kind="stable")
    ss = s[order]
    hi, lo = ss[:-1], ss[1:]
    finite = np.isfinite(hi) & np.isfinite(lo)
    gap = np.subtract(hi, lo, out=np.zeros_like(hi), where=finite)
    tied = (hi == lo) | (finite & (gap <= rtol * np.maximum(np.abs(hi), np.abs(lo))))
    group = np.concatenate(([0], np.cumsum(~tied)))
    shuffled = np.lexsort((rng.random(idx.size), group))
    return idx[order[shuffled]]


def top_k_random(
    scores: np.ndarray,
    k: int,
    rng: np.random.Generator,
    eligible: np.ndarray | None = None,
    rtol: float = TIE_RTOL,
) -> np.ndarray:
    """The k best eligible indices (fewer if fewer are eligible), ties broken uniformly at random.

    ``k == 1`` is the argmax with uniform random tie-breaking (a fast path of ``rank_random``).
    """
    if k != 1:
        return rank_random(scores, rng, eligible, rtol)[:k]
    scores = np.asarray(scores, dtype=np.float64)
    idx = np.arange(scores.shape[0]) if eligible is None else np.flatnonzero(eligible)
    if idx.size <= 1:
        return idx
    s = scores[idx]
    s[np.isnan(s)] = -np.inf
    best = s.max()
    tied = idx[s >= best - rtol * abs(best)] if np.isfinite(best) else idx[s == best]
    if tied.size == 1:
        return tied
    return tied[[rng.integers(tied.size)]]


def _keep_count(fraction: float, n: int) -> int:
    """ceil(fraction * n), at least 1, robust to 0.7 * 10 = 7.000000000000001."""
    return max(1, min(n, math.ceil(fraction * n - 1e-9)))


# --------------------------------------------------------------------------- parameters

# Strict scalars: a policy file saying `answers = true` or `alpha = "0.3"` is a mistake to report.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]


class WeightSource(str, Enum):
    """Which per-sample signal weighs a vote."""

    REWARD = "reward"
    """The scorer's reward (``Candidates.rewards``)."""
    CONFIDENCE = "confidence"
    """The sample's mean token log-probability (``Candidates.logprobs``)."""


class Transform(str, Enum):
    """How a score s becomes a non-negative vote weight w."""

    SOFTMAX = "softmax"
    """w = exp(s / temperature), normalised over the answered samples. For confidence at
    temperature 1 this is each sample's geometric-mean token probability (normalised)."""
    SIGMOID = "sigmoid"
    """w = 1 / (1 + exp(-s / temperature)): a reward logit read as P(correct)."""
    LINEAR = "linear"
    """w = s as is: rewards that already are non-negative weights (e.g. PRM probabilities)."""


class ClassScore(str, Enum):
    """How an answer class is scored from its samples' rewards."""

    MAX = "max"
    """The best reward among the class's samples."""
    MEAN = "mean"
    """The mean reward of the class's samples."""


class Fallback(str, Enum):
    """What best-of-majority returns when no class passes the frequency filter."""

    MAJORITY = "majority"
    """The most-voted classes (plain majority vote)."""
    REWARD = "reward"
    """The classes with the best class score, ignoring frequency."""
    ABSTAIN = "abstain"
    """Nothing: an empty selection."""


class SelectorParams(BaseModel):
    """Base of every selector's parameters: frozen, no unknown keys, docstrings as descriptions."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    answers: Int = Field(default=1, ge=1)
    """Number of answer classes to return, best first (k > 1 for a Pass@k submission)."""

    def needs(self) -> frozenset[str]:
        """Per-sample fields these parameters require ("rewards", "logprobs", "reference")."""
        return frozenset()


class MajorityParams(SelectorParams):
    """Parameters of ``majority``: only the number of answers."""


class PassAtKParams(SelectorParams):
    """Parameters of ``pass-at-k``: the number of answers is required."""

    answers: Int = Field(ge=1)
    """k: the number of most-voted answer classes to submit (required)."""


class OracleParams(SelectorParams):
    """Parameters of ``oracle``: only the number of answers."""

    def needs(self) -> frozenset[str]:
        return frozenset({REFERENCE})


class WeightedMajorityParams(SelectorParams):
    """Parameters of ``weighted-majority``."""

    source: WeightSource = WeightSource.REWARD
    """Signal that weighs each vote: 'reward' or 'confidence' (mean token log-prob)."""
    transform: Transform = Transform.SOFTMAX
    """How a score becomes a weight: 'softmax' (exp(s/T)), 'sigmoid' or 'linear' (s >= 0)."""
    temperature: Float = Field(default=1.0, gt=0, allow_inf_nan=False)
    """T in exp(s/T) or sigmoid(s/T): large T tends to plain majority, small T to best-of-n."""

    @model_validator(mode="after")
    def _linear_needs_nonnegative(self) -> "WeightedMajorityParams":
        if self.source is WeightSource.CONFIDENCE and self.transform is Transform.LINEAR:
            raise ConfigError(
                "transform",
                self.transform.value,
                "'softmax' or 'sigmoid' when source='confidence' (log-probs are negative)",
            )
        return self

    def needs(self) -> frozenset[str]:
        return frozenset({REWARDS if self.source is WeightSource.REWARD else LOGPROBS})


class BestOfNParams(SelectorParams):
    """Parameters of ``best-of-n``: only the number of answers."""

    def needs(self) -> frozenset[str]:
        return frozenset({REWARDS})


class BestOfMajorityParams(SelectorParams):
    """Parameters of ``best-of-majority`` (BoM)."""

    alpha: Float = Field(default=0.1, ge=0, le=1)
    """Frequency threshold: keep classes with votes / n >= alpha (n counts every sample)."""
    score: ClassScore = ClassScore.MAX
    """How a kept class is ranked by reward: 'max' or 'mean' over its samples."""
    fallback: Fallback = Fallback.MAJORITY
    """When no class passes: 'majority' (top by votes), 'reward' (top by score) or 'abstain'."""
    fill: Bool = False
    """When fewer than `answers` classes pass, fill the rest with the best failing classes by score."""

    def needs(self) -> frozenset[str]:
        return frozenset({REWARDS})


class MajorityOfBestsParams(SelectorParams):
    """Parameters of ``majority-of-bests`` (MoB): m from ``top`` when set, else from ``fraction``."""

    top: Int | None = Field(default=None, ge=1)
    """m: number of highest-reward answered samples that vote (takes precedence over `fraction`)."""
    fraction: Float = Field(default=0.5, gt=0, le=1)
    """Share of the answered samples that vote, m = ceil(fraction * answered); used when `top` is unset."""

    def needs(self) -> frozenset[str]:
        return frozenset({REWARDS})


class ConfidenceVoteParams(SelectorParams):
    """Parameters of ``confidence-vote`` (DeepConf-style offline filtered vote)."""

    fraction: Float = Field(default=0.9, gt=0, le=1)
    """Share of the answered samples kept, most confident first (0.9 ~ DeepConf-high, 0.1 ~ -low)."""
    weighted: Bool = False
    """Weigh each kept vote by exp(mean log-prob) instead of counting it as 1."""

    def needs(self) -> frozenset[str]:
        return frozenset({LOGPROBS})


class FirstToAheadParams(SelectorParams):
    """Parameters of ``first-to-ahead-by-k``."""

    margin: Int = Field(default=2, ge=1)
    """k: stop at the first class whose votes exceed every other class's by at least k."""


# --------------------------------------------------------------------------- registry

P = TypeVar("P", bound=SelectorParams)
M = TypeVar("M", bound=BaseModel)
SelectorImpl = Callable[[Candidates, np.random.Generator, P], Selection]


def _expected_from_error(err: Mapping[str, Any], model: type[BaseModel]) -> str:
    """A short 'what was expected' for one pydantic error, with the field's description."""
    kind, ctx = err["type"], err.get("ctx") or {}
    field = str(err["loc"][0]) if err["loc"] else ""
    names = ", ".join(model.model_fields)
    if kind == "extra_forbidden":
        return f"a known key ({names})"
    bounds = {
        "greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<=",
    }
    if kind in bounds:
        what = f"a number {bounds[kind]} {next(iter(ctx.values()))}"
    elif kind == "missing":
        what = "a value (this parameter is required)"
    elif kind == "enum":
        what = str(ctx.get("expected"))
    elif kind in ("int_parsing", "int_type", "int_from_float"):
        what = "an integer"
    elif kind in ("float_parsing", "float_type", "finite_number"):
        what = "a finite number"
    elif kind in ("bool_parsing", "bool_type"):
        what = "true or false"
    else:
        msg = str(err["msg"])
        what = msg[len("Input should be "):] if msg.startswith("Input should be ") else msg
    info = model.model_fields.get(field)
    doc = info.description if info is not None else None
    return f"{what} ({doc})" if doc else what


def validate_params(
    model: type[M], params: Mapping[str, Any] | M, *, source: str | None = None, prefix: str = ""
) -> M:
    """Validate ``params`` against ``model``; the one place selector parameters (and policy
    documents) are checked.

    Raises ``ConfigError(parameter, value, expected, source=source)`` for the first problem
    (unknown key, wrong type, out of range, inconsistent combination).
    """
    if isinstance(params, model):
        return params
    if not isinstance(params, Mapping):
        raise ConfigError(prefix.rstrip(".") or "params", params, "a table of parameters", source=source)
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        err = exc.errors()[0]
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, ConfigError):
            raise ConfigError(
                prefix + inner.parameter, inner.value, inner.expected, source=source
            ) from None
        name = ".".join(str(p) for p in err["loc"]) or "params"
        value = "<missing>" if err["type"] == "missing" else err.get("input")
        raise ConfigError(
            prefix + name, value, _expected_from_error(err, model), source=source
        ) from None


@dataclass(frozen=True)
class Selector(Generic[P]):
    """A registered selector: its name, implementation and parameter model."""

    name: str
    impl: Callable[[Candidates, np.random.Generator, Any], Selection]
    params_model: type[P]
    doc: str

    def __call__(self, cands: Candidates, rng: np.random.Generator, **params: Any) -> Selection:
        """Validate ``params`` and select."""
        return self.run(cands, rng, self.validate(params))

    def validate(self, params: Mapping[str, Any] | P, *, source: str | None = None, prefix: str = "") -> P:
        """The validated parameter model (ConfigError naming the parameter otherwise)."""
        return validate_params(self.params_model, params, source=source, prefix=prefix)

    def run(self, cands: Candidates, rng: np.random.Generator, params: P) -> Selection:
        """Select with already-validated parameters; checks the fields they need."""
        for field in params.needs():
            if field in (REWARDS, LOGPROBS) and getattr(cands, field) is None:
                raise MissingFieldError(field, self.name, f"with {_brief(params)} needs them")
        return self.impl(cands, rng, params)

    def bind(self, params: Mapping[str, Any] | P) -> Callable[[Candidates, np.random.Generator], Selection]:
        """``(cands, rng) -> Selection`` with these parameters validated once."""
        p = self.validate(params)

        def selector(cands: Candidates, rng: np.random.Generator) -> Selection:
            return self.run(cands, rng, p)

        selector.__name__ = self.name
        return selector


def _brief(params: SelectorParams) -> str:
    return ", ".join(f"{k}={getattr(v, 'value', v)}" for k, v in params.model_dump().items()) or "defaults"


_REGISTRY: dict[str, Selector[Any]] = {}


def register_selector(name: str, params: type[P]) -> Callable[[SelectorImpl], SelectorImpl]:
    """Decorator: register ``impl(cands, rng, params) -> Selection`` under ``name``."""

    def deco(impl: SelectorImpl) -> SelectorImpl:
        if name in _REGISTRY:
            raise ValueError(f"selector {name!r} is already registered")
        _REGISTRY[name] = Selector(name, impl, params, (impl.__doc__ or "").strip())
        return impl

    return deco


def get_selector(name: str) -> Selector[Any]:
    """The selector registered under ``name`` (ConfigError listing the known names otherwise)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError("selector", name, "one of " + ", ".join(list_selectors())) from None


def list_selectors() -> list[str]:
    """Names of every registered selector, sorted."""
    return sorted(_REGISTRY)


# --------------------------------------------------------------------------- shared pieces


def _scores(cands: Candidates, field: str) -> np.ndarray:
    arr = getattr(cands, field)
    if arr is None:  # run() checks needs(); this guards direct impl calls
        raise MissingFieldError(field, "this selector", "needs them")
    return np.asarray(arr, dtype=np.float64)


def _representative(cands: Candidates, cls: int, among: np.ndarray | None = None) -> int:
    """A deterministic representative sample of class ``cls`` (optionally within ``among``).

    The highest-reward sample when rewards exist, else the most confident, else the first.
    """
    mask = cands.classes == cls
    if among is not None:
        inside = np.zeros(cands.n, dtype=bool)
        inside[among] = True
        mask &= inside
    members = np.flatnonzero(mask)
    for arr in (cands.rewards, cands.logprobs):
        if arr is not None:
            vals = np.asarray(arr, dtype=np.float64)[members]
            nan = np.isnan(vals)
            if not nan.all():
                vals[nan] = -np.inf
                return int(members[vals.argmax()])
    return int(members[0])


def _select(
    cands: Candidates,
    chosen: np.ndarray,
    support: np.ndarray,
    sample: int | None = None,
    among: np.ndarray | None = None,
) -> Selection:
    """Build a Selection of classes ``chosen`` with ``support[c]`` per class."""
    classes = tuple(int(c) for c in chosen)
    if not classes:
        return Selection(classes=(), support=(), sample=None)
    if sample is None:
        sample = _representative(cands, classes[0], among)
    return Selection(classes=classes, support=tuple(float(support[c]) for c in classes), sample=sample)


def _vote(
    cands: Candidates,
    rng: np.random.Generator,
    k: int,
    index: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> Selection:
    """Top-k classes by (weighted) votes among samples ``index`` (all by default)."""
    idx = np.arange(cands.n) if index is None else np.asarray(index)
    cls = cands.classes[idx]
    ok = cls >= 0
    w = None if weights is None else np.asarray(weights, dtype=np.float64)[idx][ok]
    votes = np.bincount(cls[ok], weights=w, minlength=cands.num_classes).astype(np.float64)
    present = votes > 0 if w is None else np.bincount(cls[ok], minlength=cands.num_classes) > 0
    return _select(cands, top_k_random(votes, k, rng, present), votes, among=idx)


def _answered(cands: Candidates) -> np.ndarray:
    return np.flatnonzero(cands.classes != NO_ANSWER)


def _class_score(cands: Candidates, how: ClassScore) -> np.ndarray:
    """Per-class reward score (max or mean over its samples, NaN ignored; -inf when none)."""
    rewards = _scores(cands, REWARDS)
    out = np.full(cands.num_classes, -np.inf)
    ok = (cands.classes >= 0) & ~np.isnan(rewards)
    cls, r = cands.classes[ok], rewards[ok]
    if how is ClassScore.MAX:
        np.maximum.at(out, cls, r)
    else:
        tot = np.bincount(cls, weights=r, minlength=cands.num_classes)
        cnt = np.bincount(cls, minlength=cands.num_classes)
        np.divide(tot, cnt, out=out, where=cnt > 0)
    return out


# --------------------------------------------------------------------------- selectors


@register_selector("majority", MajorityParams)
def majority(cands: Candidates, rng: np.random.Generator, p: MajorityParams) -> Selection:
    """Self-consistency: the most-voted classes; ties uniformly at random. Support = votes."""
    return _vote(cands, rng, p.answers)


@register_selector("pass-at-k", PassAtKParams)
def pass_at_k(cands: Candidates, rng: np.random.Generator, p: PassAtKParams) -> Selection:
    """Pass@k by majority: the k most-voted classes (k = `answers`, required). Support = votes."""
    return _vote(cands, rng, p.answers)


@register_selector("oracle", OracleParams)
def oracle(cands: Candidates, rng: np.random.Generator, p: OracleParams) -> Selection:
    """Upper bound for benchmarks (pass@n): a correct class if any sample has one, then by votes.

    Reads ``class_correct`` (the reference), so it is an evaluation tool, not a policy to deploy.
    """
    counts = cands.counts().astype(np.float64)
    present = counts > 0
    score = counts + np.where(np.asarray(cands.class_correct, bool), counts.sum() + 1, 0)
    return _select(cands, top_k_random(score, p.answers, rng, present), counts)


@register_selector("weighted-majority", WeightedMajorityParams)
def weighted_majority(cands: Candidates, rng: np.random.Generator, p: WeightedMajorityParams) -> Selection:
    """Votes weighted by reward or confidence; support = share of the total weight (0..1).

    Weights: softmax w = exp((s - max s) / T) over the answered samples, sigmoid(s / T), or
    the raw score (linear; must be >= 0). NaN scores weigh 0.
    """
    s = _scores(cands, REWARDS if p.source is WeightSource.REWARD else LOGPROBS)
    ans = cands.classes >= 0
    good = ans & ~np.isnan(s)
    w = np.zeros(cands.n)
    if p.transform is Transform.LINEAR:
        if np.any(s[good] < 0):
            raise ConfigError(
                "transform", "linear",
                f"non-negative rewards for linear weights (min is {s[good].min():g}); use 'softmax' or 'sigmoid'",
            )
        w[good] = s[good]
    elif p.transform is Transform.SIGMOID:
        w[good] = 0.5 * (1.0 + np.tanh(s[good] / (2.0 * p.temperature)))
    elif good.any():
        w[good] = np.exp((s[good] - s[good].max()) / p.temperature)
    total = w.sum()
    if total <= 0 or not np.isfinite(total):  # every weight 0 (or unscored): plain votes
        w = ans.astype(np.float64)
        total = w.sum()
    if total == 0:
        return Selection((), ())
    # summation order can differ in the last ulp: rank ties within TIE_RTOL absorb that
    sums = np.bincount(cands.classes[ans], weights=w[ans], minlength=cands.num_classes) / total
    present = np.bincount(cands.classes[ans], minlength=cands.num_classes) > 0
    return _select(cands, top_k_random(sums, p.answers, rng, present), sums)


@register_selector("best-of-n", BestOfNParams)
def best_of_n(cands: Candidates, rng: np.random.Generator, p: BestOfNParams) -> Selection:
    """The highest-reward sample's class; reward ties uniform over samples. Support = reward.

    With k answers: distinct classes in the order of their best sample.
    """
    rewards = _scores(cands, REWARDS)
    answered = cands.classes >= 0
    if p.answers == 1:
        best = top_k_random(rewards, 1, rng, answered)
    else:
        order = rank_random(rewards, rng, answered)
        _, first = np.unique(cands.classes[order], return_index=True)
        best = order[np.sort(first)][: p.answers]  # best sample of each class, best first
    if best.size == 0:
        return Selection((), ())
    classes = tuple(int(cands.classes[i]) for i in best)
    return Selection(classes, tuple(float(rewards[i]) for i in best), sample=int(best[0]))


@register_selector("best-of-majority", BestOfMajorityParams)
def best_of_majority(cands: Candidates, rng: np.random.Generator, p: BestOfMajorityParams) -> Selection:
    """BoM for Pass@k: keep classes with votes / n >= alpha, submit the top k by class reward.

    n counts every sample (also those without an answer). Support = the class score
    (max or mean reward). Returns fewer than k classes when fewer pass, unless ``fill``.
    """
    counts = cands.counts()
    score = _class_score(cands, p.score)
    present = counts > 0
    passing = present & (counts >= p.alpha * cands.n - 1e-12)
    chosen = top_k_random(score, p.answers, rng, passing)
    if chosen.size == 0:
        if p.fallback is Fallback.ABSTAIN:
            return Selection((), ())
        if p.fallback is Fallback.MAJORITY:
            return _vote(cands, rng, p.answers)
        chosen = top_k_random(score, p.answers, rng, present)
    elif p.fill and chosen.size < p.answers:
        rest = top_k_random(score, p.answers - chosen.size, rng, present & ~passing)
        chosen = np.concatenate((chosen, rest))
    return _select(cands, chosen, score)


@register_selector("majority-of-bests", MajorityOfBestsParams)
def majority_of_bests(cands: Candidates, rng: np.random.Generator, p: MajorityOfBestsParams) -> Selection:
    """MoB: the m highest-reward answered samples vote (ties at the cut uniform). Support = votes."""
    rewards = _scores(cands, REWARDS)
    answered = cands.classes >= 0
    n_ans = int(answered.sum())
    if n_ans == 0:
        return Selection((), ())
    m = min(p.top, n_ans) if p.top is not None else _keep_count(p.fraction, n_ans)
    return _vote(cands, rng, p.answers, index=top_k_random(rewards, m, rng, answered))


@register_selector("confidence-vote", ConfidenceVoteParams)
def confidence_vote(cands: Candidates, rng: np.random.Generator, p: ConfidenceVoteParams) -> Selection:
    """DeepConf-style: keep the most confident ``fraction`` of answered samples, then vote.

    Confidence is the mean token log-prob. Support = votes, or summed exp(log-prob) if weighted.
    """
    logprobs = _scores(cands, LOGPROBS)
    answered = cands.classes >= 0
    n_ans = int(answered.sum())
    if n_ans == 0:
        return Selection((), ())
    keep = top_k_random(logprobs, _keep_count(p.fraction, n_ans), rng, answered)
    weights = np.nan_to_num(np.exp(logprobs), nan=0.0) if p.weighted else None
    return _vote(cands, rng, p.answers, index=keep, weights=weights)


def first_to_ahead(classes: np.ndarray, margin: int) -> tuple[int, int] | None:
    """(class, index of the deciding sample) for the first class ahead of all others by ``margin``.

    Samples are read in order, NO_ANSWER ones skipped; None when no class ever gets that far
    ahead. ``index + 1`` samples were consumed to decide.
    """
    counts: dict[int, int] = {}
    top1 = top2 = 0  # the best count, and the best count of any other class
    leader = NO_ANSWER
    for i, c in enumerate(np.asarray(classes).tolist()):
        if c < 0:
            continue
        v = counts.get(c, 0) + 1
        counts[c] = v
        if c == leader:
            top1 = v
        elif v > top1:
            leader, top2, top1 = c, top1, v
        else:
            top2 = max(top2, v)
        if c == leader and top1 - top2 >= margin:
            return c, i
    return None


@register_selector("first-to-ahead-by-k", FirstToAheadParams)
def first_to_ahead_by_k(cands: Candidates, rng: np.random.Generator, p: FirstToAheadParams) -> Selection:
    """Read samples in order; return the first class ahead of every other by ``margin`` votes.

    ``Selection.sample`` is then the deciding sample (``sample + 1`` samples were used) and the
    support is the votes at that point. Without such a moment: plain majority over all samples.
    """
    hit = first_to_ahead(cands.classes, p.margin)
    if hit is None:
        return _vote(cands, rng, p.answers)
    cls, stop = hit
    seen = np.arange(stop + 1)
    votes_sel = _vote(cands, rng, p.answers, index=seen)
    # the leader is strictly ahead, so it is first; the rest are ranked by votes at the stop
    assert votes_sel.classes[0] == cls
    return Selection(votes_sel.classes, votes_sel.support, sample=stop)
