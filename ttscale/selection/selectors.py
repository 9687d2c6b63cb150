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

Every selector also has a batched twin (``@register_batched``) for estimators: for one problem
and an index matrix of D draws it returns, vectorized, whether each draw's selection is correct,
with the same semantics and tie-breaking distribution (``Selector.run_batched``; ``bind``
attaches it to the bound function as ``.batched``). The scalar selectors are the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Callable, Generic, Mapping, TypeVar

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from ttscale.answers.candidates import NO_ANSWER, Candidates, Selection
from ttscale.errors import ConfigError
from ttscale.validation import Bool, Float, Int, validate

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
    "rank_rows",
    "register_batched",
    "register_selector",
    "top1_rows",
    "top_k_random",
    "topk_rows",
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


def _eligible_scores(scores: np.ndarray, eligible: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the eligible entries, their scores as float64 with NaN as -inf)."""
    scores = np.asarray(scores, dtype=np.float64)
    idx = np.arange(scores.shape[0]) if eligible is None else np.flatnonzero(eligible)
    s = scores[idx]
    s[np.isnan(s)] = -np.inf
    return idx, s


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
    idx, s = _eligible_scores(scores, eligible)
    if idx.size <= 1:
        return idx
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
    idx, s = _eligible_scores(scores, eligible)
    if idx.size <= 1:
        return idx
    best = s.max()
    tied = idx[s >= best - rtol * abs(best)] if np.isfinite(best) else idx[s == best]
    if tied.size == 1:
        return tied
    return tied[[rng.integers(tied.size)]]


def _keep_count(fraction: float, n: int) -> int:
    """ceil(fraction * n), at least 1, robust to 0.7 * 10 = 7.000000000000001."""
    return max(1, min(n, math.ceil(fraction * n - 1e-9)))


# --------------------------------------------------------------------------- parameters



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
BatchedImpl = Callable[[Candidates, np.ndarray, np.random.Generator, Any], np.ndarray]
PrefixImpl = Callable[[Candidates, np.ndarray, np.ndarray, np.random.Generator, Any], np.ndarray]


def validate_params(
    model: type[M], params: Mapping[str, Any] | M, *, source: str | None = None, prefix: str = ""
) -> M:
    """Validate ``params`` against ``model`` (selector parameters, policy documents): see
    :func:`ttscale.validation.validate`, the one place pydantic errors become ConfigErrors."""
    return validate(model, params, prefix=prefix, source=source)


@dataclass(frozen=True)
class Selector(Generic[P]):
    """A registered selector: its name, implementation and parameter model.

    Batched twins for estimators (see ``register_batched``), optional: ``batched`` takes an
    index matrix ``idx`` (D, k) (D draws, each a k-subset of the samples in the order read) and
    returns bool (D,), whether the selection on ``cands.subset(idx[d])`` is correct (Pass@k
    semantics), with the same parameters, tie-breaking distribution and fallbacks as ``impl``;
    ``prefixes`` does the same for several sizes at once: given orderings (D, m) and sizes ks,
    bool (D, K) for the draws ``orders[:, :k]``. ``ordered`` says the selector reads samples in
    order (the order of a draw matters).
    """

    name: str
    impl: Callable[[Candidates, np.random.Generator, Any], Selection]
    params_model: type[P]
    doc: str
    batched: BatchedImpl | None = None
    prefixes: PrefixImpl | None = None
    ordered: bool = False

    def __call__(self, cands: Candidates, rng: np.random.Generator, **params: Any) -> Selection:
        """Validate ``params`` and select."""
        return self.run(cands, rng, self.validate(params))

    def validate(self, params: Mapping[str, Any] | P, *, source: str | None = None, prefix: str = "") -> P:
        """The validated parameter model (ConfigError naming the parameter otherwise)."""
        return validate_params(self.params_model, params, source=source, prefix=prefix)

    def _check_fields(self, cands: Candidates, params: P) -> None:
        for field in params.needs():
            if field in (REWARDS, LOGPROBS) and getattr(cands, field) is None:
                raise MissingFieldError(field, self.name, f"with {_brief(params)} needs them")

    def run(self, cands: Candidates, rng: np.random.Generator, params: P) -> Selection:
        """Select with already-validated parameters; checks the fields they need."""
        self._check_fields(cands, params)
        return self.impl(cands, rng, params)

    @property
    def has_batched(self) -> bool:
        return self.batched is not None or self.prefixes is not None

    def run_batched(self, cands: Candidates, idx: np.ndarray, rng: np.random.Generator, params: P) -> np.ndarray:
        """bool (D,): is the selection on each row of ``idx`` (D, k) correct (batched twin of ``run``)."""
        idx = self._check_batch(cands, idx, params)
        if idx.shape[0] == 0 or idx.shape[1] == 0:
            return np.zeros(idx.shape[0], dtype=bool)
        if self.batched is None:
            return self.prefixes(cands, idx, np.array([idx.shape[1]]), rng, params)[:, 0]
        return self.batched(cands, idx, rng, params)

    def run_prefixes(
        self, cands: Candidates, orders: np.ndarray, ks: np.ndarray, rng: np.random.Generator, params: P
    ) -> np.ndarray:
        """bool (D, K): ``run_batched`` on ``orders[:, :k]`` for each k in ``ks`` (1 <= k <= m)."""
        orders = self._check_batch(cands, orders, params)
        ks = np.asarray(ks, dtype=np.int64)
        if ks.ndim != 1 or (ks.size and (ks.min() < 1 or ks.max() > orders.shape[1])):
            raise ValueError(f"ks must lie in 1..{orders.shape[1]}, got {ks.tolist()}")
        if orders.shape[0] == 0 or ks.size == 0:
            return np.zeros((orders.shape[0], ks.size), dtype=bool)
        if self.prefixes is not None:
            return self.prefixes(cands, orders, ks, rng, params)
        return np.stack([self.batched(cands, orders[:, :k], rng, params) for k in ks], axis=1)

    def _check_batch(self, cands: Candidates, idx: np.ndarray, params: P) -> np.ndarray:
        if not self.has_batched:
            raise NotImplementedError(f"selector {self.name!r} has no batched implementation")
        self._check_fields(cands, params)
        idx = np.asarray(idx)
        if idx.ndim != 2:
            raise ValueError(f"idx must be a (draws, k) index matrix, got shape {idx.shape}")
        return idx

    def bind(self, params: Mapping[str, Any] | P) -> Callable[[Candidates, np.random.Generator], Selection]:
        """``(cands, rng) -> Selection`` with these parameters validated once.

        When the selector has batched twins, the returned function carries them as
        ``.batched(cands, idx, rng) -> bool (D,)``, with ``.batched.prefixes(cands, orders, ks,
        rng) -> bool (D, K)`` and ``.batched.ordered``; ``estimate.resampled_accuracy`` uses them
        instead of calling the selector once per draw.
        """
        p = self.validate(params)

        def selector(cands: Candidates, rng: np.random.Generator) -> Selection:
            return self.run(cands, rng, p)

        selector.__name__ = self.name
        if self.has_batched:

            def batched(cands: Candidates, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
                return self.run_batched(cands, idx, rng, p)

            def prefixes(cands: Candidates, orders: np.ndarray, ks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
                return self.run_prefixes(cands, orders, ks, rng, p)

            batched.__name__ = self.name + "[batched]"
            batched.prefixes = prefixes  # type: ignore[attr-defined]
            batched.ordered = self.ordered  # type: ignore[attr-defined]
            selector.batched = batched  # type: ignore[attr-defined]
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


def register_batched(
    name: str, *, ordered: bool = False, prefixes: bool = False
) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Decorator: the vectorized twin of selector ``name`` (see ``Selector``).

    ``impl(cands, idx, rng, params) -> bool (D,)``; or, with ``prefixes=True``, the prefix form
    ``impl(cands, orders, ks, rng, params) -> bool (D, K)`` (correctness on ``orders[:, :k]``
    for each k), for selectors where one pass along the orderings serves every k.
    ``ordered=True`` when the selector reads samples in order (a draw's order matters).
    """

    def deco(impl: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        sel = get_selector(name)
        if sel.has_batched:
            raise ValueError(f"selector {name!r} already has a batched implementation")
        form = {"prefixes": impl} if prefixes else {"batched": impl}
        _REGISTRY[name] = replace(sel, ordered=ordered, **form)
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


# --------------------------------------------------------------------------- batched twins
#
# Vectorized selectors for estimators: one problem, D draws at once. ``idx`` (D, k) holds the
# draws (row d is the subset ``cands.subset(idx[d])``, in that order); a batched selector
# returns bool (D,), whether each draw's selection is correct (any chosen class correct). Each
# mirrors its scalar twin above it step by step; the helpers below are row-wise versions of
# ``top_k_random`` / ``rank_random`` / ``_vote`` with the same tolerance and uniform ties.


def _offsets(cls: np.ndarray, width: int) -> np.ndarray:
    """Flat indices into a (D, width + 1) table: row d, column cls (NO_ANSWER -> the spare last column)."""
    col = np.where(cls < 0, width, cls)
    return (np.arange(cls.shape[0], dtype=np.int64)[:, None] * (width + 1) + col).ravel()


def _class_table(cls: np.ndarray, width: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(D, width) per-row bincount of ``cls`` (D, m), optionally weighted; NO_ANSWER entries dropped.

    Within a row the weights are summed in row order, as ``np.bincount`` does for one subset.
    """
    D = cls.shape[0]
    w = None if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    table = np.bincount(_offsets(cls, width), weights=w, minlength=D * (width + 1))
    return table.reshape(D, width + 1)[:, :width]


def _prefix_votes(cands: Candidates, orders: np.ndarray, ks: np.ndarray):
    """Yield (j, votes) for each ks[j], smallest k first: (D, C) vote counts of ``orders[:, :k]``.

    Counted incrementally (each sample once for all k); ``votes`` is only valid until the next step.
    """
    D, C = orders.shape[0], cands.num_classes
    col = np.where(cands.classes < 0, C, cands.classes)  # NO_ANSWER -> the spare column
    base = np.arange(D, dtype=np.int64)[:, None] * (C + 1)
    counts = np.zeros(D * (C + 1), dtype=np.int64)
    done = 0
    for j in np.argsort(ks, kind="stable"):
        k = int(ks[j])
        if k > done:
            counts += np.bincount((base + col[orders[:, done:k]]).ravel(), minlength=D * (C + 1))
            done = k
        yield j, counts.reshape(D, C + 1)[:, :C]


def _class_score_rows(cls: np.ndarray, rewards: np.ndarray, width: int, how: ClassScore) -> np.ndarray:
    """Row-wise ``_class_score``: (D, width) max or mean reward per class, NaN ignored, -inf when none."""
    ok = (cls >= 0) & ~np.isnan(rewards)
    flat = _offsets(np.where(ok, cls, NO_ANSWER), width)
    D = cls.shape[0]
    if how is ClassScore.MAX:
        out = np.full(D * (width + 1), -np.inf)
        np.maximum.at(out, flat, np.where(ok, rewards, -np.inf).ravel())
    else:
        tot = np.bincount(flat, weights=np.where(ok, rewards, 0.0).ravel(), minlength=D * (width + 1))
        cnt = np.bincount(flat, minlength=D * (width + 1))
        out = np.full(D * (width + 1), -np.inf)
        np.divide(tot, cnt, out=out, where=cnt > 0)
    return out.reshape(D, width + 1)[:, :width]


def _clean_rows(scores: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """float64 copy of ``scores`` with NaN and ineligible entries at -inf."""
    s = np.array(scores, dtype=np.float64)
    s[np.isnan(s) | ~eligible] = -np.inf
    return s


def top1_rows(
    scores: np.ndarray, eligible: np.ndarray, rng: np.random.Generator, rtol: float = TIE_RTOL
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise ``top_k_random(scores, 1, rng, eligible)``: per row of (D, m), the best eligible entry.

    Returns (pick, has): int64 (D,) column of the pick and bool (D,) whether the row had an
    eligible entry (``pick`` is meaningless where it has not). Entries within ``rtol`` of the
    row's best are tied and one is picked uniformly at random; NaN ranks with -inf.
    """
    D, m = scores.shape
    if m == 0:
        return np.zeros(D, dtype=np.int64), np.zeros(D, dtype=bool)
    s = _clean_rows(scores, eligible)
    best = s.max(axis=1)[:, None]
    with np.errstate(invalid="ignore"):
        near = np.where(np.isfinite(best), s >= best - rtol * np.abs(best), s == best)
    tied = eligible & near
    keys = rng.random((D, m))
    keys[~tied] = -1.0
    return keys.argmax(axis=1), tied.any(axis=1)


def rank_rows(
    scores: np.ndarray, eligible: np.ndarray, rng: np.random.Generator, rtol: float = TIE_RTOL
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise ``rank_random``: (order, count) for a (D, m) score matrix.

    ``order[d]`` lists row d's eligible columns best first (tie groups, by the same adjacent-gap
    rule, in uniformly random order), then its ineligible ones; ``count[d]`` is how many are
    eligible, so ``order[d, :count[d]]`` is ``rank_random(scores[d], rng, eligible[d])``.
    """
    D, m = scores.shape
    s = _clean_rows(scores, eligible)
    order = np.lexsort((-s, ~eligible), axis=-1)
    ss = np.take_along_axis(s, order, axis=1)
    el = np.take_along_axis(eligible, order, axis=1)
    hi, lo = ss[:, :-1], ss[:, 1:]
    finite = np.isfinite(hi) & np.isfinite(lo)
    gap = np.subtract(hi, lo, out=np.zeros_like(hi), where=finite)
    tied = el[:, 1:] & ((hi == lo) | (finite & (gap <= rtol * np.maximum(np.abs(hi), np.abs(lo)))))
    group = np.zeros((D, m), dtype=np.int64)
    np.cumsum(~tied, axis=1, out=group[:, 1:])
    shuffled = np.lexsort((rng.random((D, m)), group), axis=-1)
    return np.take_along_axis(order, shuffled, axis=1), eligible.sum(axis=1)


def topk_rows(
    scores: np.ndarray,
    eligible: np.ndarray,
    k: int | np.ndarray,
    rng: np.random.Generator,
    rtol: float = TIE_RTOL,
) -> np.ndarray:
    """Row-wise ``top_k_random``: bool (D, m) marking each row's k best eligible entries.

    ``k`` is one int or one per row (D,); fewer are marked where fewer are eligible, none
    where k is 0. Rows with k == 1 use the argmax rule of ``top_k_random`` (``top1_rows``),
    the others ``rank_rows``, exactly as the scalar function does.
    """
    D, m = scores.shape
    kk = np.broadcast_to(np.asarray(k, dtype=np.int64), (D,))
    out = np.zeros((D, m), dtype=bool)
    if m == 0 or D == 0:
        return out
    one = kk == 1
    if one.any():
        rows = np.arange(D) if one.all() else np.flatnonzero(one)
        pick, has = top1_rows(scores[rows], eligible[rows], rng, rtol)
        out[rows[has], pick[has]] = True
    many = kk > 1
    if many.any():
        rows = np.arange(D) if many.all() else np.flatnonzero(many)
        order, count = rank_rows(scores[rows], eligible[rows], rng, rtol)
        sub = np.zeros((rows.size, m), dtype=bool)
        np.put_along_axis(sub, order, np.arange(m) < np.minimum(kk[rows], count)[:, None], axis=1)
        out[rows] = sub
    return out


def _top_votes_rows(votes: np.ndarray, answers: int, rng: np.random.Generator) -> np.ndarray:
    """Row-wise ``_vote`` on integer vote counts (D, C): bool (D, C), the ``answers`` most-voted classes.

    Only classes with votes are eligible. Counts are whole numbers, so ties are exact equality
    (as within ``TIE_RTOL`` for the scalar): a random key in [0, 0.5) added to each count orders
    every tie group uniformly without ever reordering different counts.
    """
    D, C = votes.shape
    present = votes > 0
    if C == 0:
        return present
    if answers >= C:
        return present
    comp = np.where(present, votes + 0.5 * rng.random((D, C)), -1.0)
    if answers == 1:
        out = np.zeros((D, C), dtype=bool)
        pick = comp.argmax(axis=1)
        has = present.any(axis=1)
        out[np.flatnonzero(has), pick[has]] = True
        return out
    cut = np.partition(comp, C - answers, axis=1)[:, C - answers, None]  # the answers-th largest
    return present & (comp >= cut)


def _hit(chosen: np.ndarray, class_correct: np.ndarray) -> np.ndarray:
    """bool (D,): does each row's chosen set (D, C) hold a correct class (Pass@k semantics)."""
    return (chosen & np.asarray(class_correct, dtype=bool)[None, :]).any(axis=1)


def _keep_counts(fraction: float, n: np.ndarray) -> np.ndarray:
    """Element-wise ``_keep_count``."""
    return np.maximum(1, np.minimum(n, np.ceil(fraction * n - 1e-9).astype(np.int64)))


# --------------------------------------------------------------------------- selectors


@register_selector("majority", MajorityParams)
def majority(cands: Candidates, rng: np.random.Generator, p: MajorityParams) -> Selection:
    """Self-consistency: the most-voted classes; ties uniformly at random. Support = votes."""
    return _vote(cands, rng, p.answers)


@register_selector("pass-at-k", PassAtKParams)
def pass_at_k(cands: Candidates, rng: np.random.Generator, p: PassAtKParams) -> Selection:
    """Pass@k by majority: the k most-voted classes (k = `answers`, required). Support = votes."""
    return _vote(cands, rng, p.answers)


@register_batched("majority", prefixes=True)
@register_batched("pass-at-k", prefixes=True)
def _vote_prefixes(
    cands: Candidates, orders: np.ndarray, ks: np.ndarray, rng: np.random.Generator, p: SelectorParams
) -> np.ndarray:
    out = np.empty((orders.shape[0], ks.size), dtype=bool)
    for j, votes in _prefix_votes(cands, orders, ks):
        out[:, j] = _hit(_top_votes_rows(votes, p.answers, rng), cands.class_correct)
    return out


@register_selector("oracle", OracleParams)
def oracle(cands: Candidates, rng: np.random.Generator, p: OracleParams) -> Selection:
    """Upper bound for benchmarks (pass@n): a correct class if any sample has one, then by votes.

    Reads ``class_correct`` (the reference), so it is an evaluation tool, not a policy to deploy.
    """
    counts = cands.counts().astype(np.float64)
    present = counts > 0
    score = counts + np.where(np.asarray(cands.class_correct, bool), counts.sum() + 1, 0)
    return _select(cands, top_k_random(score, p.answers, rng, present), counts)


@register_batched("oracle", prefixes=True)
def _oracle_prefixes(
    cands: Candidates, orders: np.ndarray, ks: np.ndarray, rng: np.random.Generator, p: OracleParams
) -> np.ndarray:
    # a correct class, when one has votes, outranks every other: correct iff a drawn sample is
    seen = np.logical_or.accumulate(cands.correct[orders[:, : ks.max()]], axis=1)
    return seen[:, ks - 1]


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


@register_batched("weighted-majority")
def _weighted_majority_batched(
    cands: Candidates, idx: np.ndarray, rng: np.random.Generator, p: WeightedMajorityParams
) -> np.ndarray:
    s = _scores(cands, REWARDS if p.source is WeightSource.REWARD else LOGPROBS)[idx]
    cls = cands.classes[idx]
    ans = cls >= 0
    good = ans & ~np.isnan(s)
    with np.errstate(invalid="ignore", over="ignore"):
        if p.transform is Transform.LINEAR:
            bad = np.flatnonzero((good & (s < 0)).any(axis=1))
            if bad.size:  # the first draw the scalar selector would refuse
                row = bad[0]
                raise ConfigError(
                    "transform", "linear",
                    f"non-negative rewards for linear weights (min is {s[row][good[row]].min():g}); "
                    "use 'softmax' or 'sigmoid'",
                )
            w = np.where(good, s, 0.0)
        elif p.transform is Transform.SIGMOID:
            w = np.where(good, 0.5 * (1.0 + np.tanh(s / (2.0 * p.temperature))), 0.0)
        else:
            top = np.where(good, s, -np.inf).max(axis=1, keepdims=True)
            w = np.where(good, np.exp((s - top) / p.temperature), 0.0)
        total = w.sum(axis=1)
    plain = (total <= 0) | ~np.isfinite(total)  # every weight 0 (or unscored): plain votes
    if plain.any():
        w[plain] = ans[plain]
        total[plain] = w[plain].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # total 0: no class present, nothing chosen
        sums = _class_table(cls, cands.num_classes, w) / total[:, None]
    present = _class_table(cls, cands.num_classes) > 0
    return _hit(topk_rows(sums, present, p.answers, rng), cands.class_correct)


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


@register_batched("best-of-n")
def _best_of_n_batched(cands: Candidates, idx: np.ndarray, rng: np.random.Generator, p: BestOfNParams) -> np.ndarray:
    rewards = _scores(cands, REWARDS)[idx]
    cls = cands.classes[idx]
    ok = cands.correct[idx]
    if p.answers == 1:
        pick, has = top1_rows(rewards, cls >= 0, rng)
        return has & ok[np.arange(idx.shape[0]), pick]
    order, count = rank_rows(rewards, cls >= 0, rng)
    ranked = np.take_along_axis(cls, order, axis=1)
    first = _first_occurrence(ranked) & (np.arange(idx.shape[1]) < count[:, None])
    chosen = first & (np.cumsum(first, axis=1) <= p.answers)  # best sample of each class, best first
    return (chosen & np.take_along_axis(ok, order, axis=1)).any(axis=1)


def _first_occurrence(values: np.ndarray) -> np.ndarray:
    """bool (D, m): whether values[d, j] differs from every values[d, :j]."""
    order = np.argsort(values, axis=1, kind="stable")
    v = np.take_along_axis(values, order, axis=1)
    starts = np.ones(v.shape, dtype=bool)
    starts[:, 1:] = v[:, 1:] != v[:, :-1]
    out = np.empty(v.shape, dtype=bool)
    np.put_along_axis(out, order, starts, axis=1)
    return out


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


@register_batched("best-of-majority")
def _best_of_majority_batched(
    cands: Candidates, idx: np.ndarray, rng: np.random.Generator, p: BestOfMajorityParams
) -> np.ndarray:
    cls = cands.classes[idx]
    C, correct = cands.num_classes, cands.class_correct
    counts = _class_table(cls, C)
    score = _class_score_rows(cls, _scores(cands, REWARDS)[idx], C, p.score)
    present = counts > 0
    passing = present & (counts >= p.alpha * idx.shape[1] - 1e-12)  # n = the draw's size
    chosen = topk_rows(score, passing, p.answers, rng)
    hit = _hit(chosen, correct)
    none = np.flatnonzero(~passing.any(axis=1))
    if none.size and p.fallback is not Fallback.ABSTAIN:
        if p.fallback is Fallback.MAJORITY:
            hit[none] = _hit(_top_votes_rows(counts[none], p.answers, rng), correct)
        else:
            hit[none] = _hit(topk_rows(score[none], present[none], p.answers, rng), correct)
    if p.fill and p.answers > 1:
        need = p.answers - chosen.sum(axis=1)
        short = np.flatnonzero(passing.any(axis=1) & (need > 0))
        if short.size:
            rest = topk_rows(score[short], present[short] & ~passing[short], need[short], rng)
            hit[short] |= _hit(rest, correct)
    return hit


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


@register_batched("majority-of-bests")
def _majority_of_bests_batched(
    cands: Candidates, idx: np.ndarray, rng: np.random.Generator, p: MajorityOfBestsParams
) -> np.ndarray:
    cls = cands.classes[idx]
    answered = cls >= 0
    n_ans = answered.sum(axis=1)
    m = np.minimum(p.top, n_ans) if p.top is not None else _keep_counts(p.fraction, n_ans)
    keep = topk_rows(_scores(cands, REWARDS)[idx], answered, m, rng)  # rows without answers keep none
    votes = _class_table(np.where(keep, cls, NO_ANSWER), cands.num_classes)
    return _hit(_top_votes_rows(votes, p.answers, rng), cands.class_correct)


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


@register_batched("confidence-vote")
def _confidence_vote_batched(
    cands: Candidates, idx: np.ndarray, rng: np.random.Generator, p: ConfidenceVoteParams
) -> np.ndarray:
    logprobs = _scores(cands, LOGPROBS)[idx]
    cls = cands.classes[idx]
    answered = cls >= 0
    keep = topk_rows(logprobs, answered, _keep_counts(p.fraction, answered.sum(axis=1)), rng)
    kept = np.where(keep, cls, NO_ANSWER)
    C = cands.num_classes
    if not p.weighted:
        return _hit(_top_votes_rows(_class_table(kept, C), p.answers, rng), cands.class_correct)
    with np.errstate(over="ignore"):
        weights = np.nan_to_num(np.exp(logprobs), nan=0.0)
    present = _class_table(kept, C) > 0
    return _hit(topk_rows(_class_table(kept, C, weights), present, p.answers, rng), cands.class_correct)


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


@register_batched("first-to-ahead-by-k", ordered=True, prefixes=True)
def _first_to_ahead_prefixes(
    cands: Candidates, orders: np.ndarray, ks: np.ndarray, rng: np.random.Generator, p: FirstToAheadParams
) -> np.ndarray:
    """One scan along the orderings serves every k: a draw decided at sample t is decided for all k > t.

    The scalar ``first_to_ahead`` bookkeeping (leader, its votes, the best other votes) runs
    on every row at once; a row leaves the scan when its leader gets ``margin`` ahead. At each
    k the rows still open fall back to plain majority over their first k samples.
    """
    D = orders.shape[0]
    C = cands.num_classes
    W = C + 1  # a spare column takes NO_ANSWER and finished rows
    correct = np.asarray(cands.class_correct, dtype=bool)
    cols = np.ascontiguousarray(np.where(cands.classes < 0, C, cands.classes)[orders[:, : ks.max()]].T)
    counts = np.zeros(D * W, dtype=np.int64)
    base = np.arange(D, dtype=np.int64) * W
    leader = np.full(D, C, dtype=np.int64)
    top1 = np.zeros(D, dtype=np.int64)  # the leader's votes
    top2 = np.zeros(D, dtype=np.int64)  # the best votes of any other class
    open_ = np.ones(D, dtype=bool)
    won = np.zeros(D, dtype=bool)  # decided rows: is their selection correct
    out = np.empty((D, ks.size), dtype=bool)
    t = 0
    for j in np.argsort(ks, kind="stable"):
        while t < ks[j] and open_.any():
            c = cols[t]
            live = open_ & (c < C)
            flat = base + np.where(live, c, C)
            counts[flat] += 1
            v = counts[flat]
            was = c == leader
            takes = live & ~was & (v > top1)
            top2 = np.where(takes, top1, np.where(live & ~was, np.maximum(top2, v), top2))
            top1 = np.where(live & (was | takes), v, top1)
            leader = np.where(takes, c, leader)
            hit = live & (c == leader) & (top1 - top2 >= p.margin)
            if hit.any():
                if p.answers == 1:
                    won[hit] = correct[c[hit]]
                else:  # the leader is strictly ahead, so it is first; the rest by votes at the stop
                    won[hit] = _hit(_top_votes_rows(counts.reshape(D, W)[hit, :C], p.answers, rng), correct)
                open_ &= ~hit
            t += 1
        out[:, j] = won
        rest = np.flatnonzero(open_)  # never decided in the first k: plain majority over them
        if rest.size:
            out[rest, j] = _hit(_top_votes_rows(counts.reshape(D, W)[rest, :C], p.answers, rng), correct)
    return out
