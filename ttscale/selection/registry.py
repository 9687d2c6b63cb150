"""The selector registry: selectors by name, with their parameter models, batched twins and exact forms.

A selector is a pure function from one problem's candidates to the chosen answer(s), registered
by name (``@register_selector("majority", MajorityParams)``) and looked up with
:func:`get_selector`. Calling it validates the keyword parameters against the selector's frozen
parameter model and runs it::

    sel = get_selector("best-of-majority")(cands, rng, alpha=0.2, answers=2)

Every selector:

* works on answer-class ids, rewards and mean token log-probs only (``Candidates``);
* never lets a sample without an answer (``NO_ANSWER``) win;
* breaks ties uniformly at random with the ``rng`` it is given (:mod:`ttscale.selection.ties`),
  so estimators can reproduce the tie credit exactly;
* returns up to ``answers`` classes, best first, each with its support, and sets
  ``Selection.sample`` to a representative candidate of the first class;
* abstains (an empty ``Selection``) only when no sample has an answer.

Scores that are NaN (a sample the scorer skipped) rank below every scored sample and get
zero weight; they never raise.

Every selector also has a batched twin (``@register_batched``) for estimators: for one problem
and an index matrix of D draws it returns, vectorized, whether each draw's selection is correct,
with the same semantics and tie-breaking distribution (``Selector.run_batched``; ``bind``
attaches it to the bound function as ``.batched``). The scalar selectors are the reference.
A selector with a closed form for its expected accuracy carries it as ``exact``
(``@register_exact``, filled in by the estimation layer).

The implementations live in :mod:`~ttscale.selection.vote`, :mod:`~ttscale.selection.reward`,
:mod:`~ttscale.selection.oracle` and :mod:`~ttscale.selection.ahead`; the package
``ttscale.selection`` imports them, so they are registered whenever this module is.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

import numpy as np

from ttscale.answers.candidates import Candidates, Selection
from ttscale.errors import ConfigError, TTScaleDeprecationWarning
from ttscale.selection.fields import MissingFieldError, missing_fields
from ttscale.selection.params import SelectorParams, validate_params

__all__ = [
    "Selector",
    "canonical_name",
    "get_selector",
    "list_selectors",
    "register_alias",
    "register_batched",
    "register_exact",
    "register_selector",
]

P = TypeVar("P", bound=SelectorParams)
SelectorImpl = Callable[[Candidates, np.random.Generator, P], Selection]
BatchedImpl = Callable[[Candidates, np.ndarray, np.random.Generator, Any], np.ndarray]
PrefixImpl = Callable[[Candidates, np.ndarray, np.ndarray, np.random.Generator, Any], np.ndarray]
ExactImpl = Callable[[Sequence[Candidates], Sequence[int], Any], np.ndarray]


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

    ``exact``, optional, is the selector's closed form for estimators (see ``register_exact``):
    per-problem expected accuracy (P, K) at each k over uniformly random k-subsets, for the
    parameters ``exact_when(params)`` accepts. The estimation layer registers it (selection sits
    below estimation); ``exact_form`` hands it out bound to parameters.
    """

    name: str
    impl: Callable[[Candidates, np.random.Generator, Any], Selection]
    params_model: type[P]
    doc: str
    batched: BatchedImpl | None = None
    prefixes: PrefixImpl | None = None
    ordered: bool = False
    exact: ExactImpl | None = None
    exact_when: Callable[[Any], bool] | None = None

    def __call__(self, cands: Candidates, rng: np.random.Generator, **params: Any) -> Selection:
        """Validate ``params`` and select."""
        return self.run(cands, rng, self.validate(params))

    def validate(self, params: Mapping[str, Any] | P, *, source: str | None = None, prefix: str = "") -> P:
        """The validated parameter model (ConfigError naming the parameter otherwise)."""
        return validate_params(self.params_model, params, source=source, prefix=prefix)

    def _check_fields(self, cands: Candidates, params: P) -> None:
        for field in sorted(missing_fields(params.needs(), cands)):
            raise MissingFieldError(field, self.name, f"with {_brief(params)} needs them")

    def exact_form(self, params: Mapping[str, Any] | P) -> Callable[[Sequence[Candidates], Sequence[int]], np.ndarray] | None:
        """``(problems, ks) -> (P, K)`` exact accuracy with these parameters, or None without a closed form."""
        p = self.validate(params)
        if self.exact is None or (self.exact_when is not None and not self.exact_when(p)):
            return None
        exact = self.exact

        def form(problems: Sequence[Candidates], ks: Sequence[int]) -> np.ndarray:
            return exact(problems, ks, p)

        form.__name__ = self.name + "[exact]"
        return form

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
_ALIASES: dict[str, str] = {}
"""Old selector name -> its current name (see ``register_alias``)."""


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


def register_exact(
    name: str, *, when: Callable[[Any], bool] | None = None
) -> Callable[[ExactImpl], ExactImpl]:
    """Decorator: the closed form ``impl(problems, ks, params) -> (P, K)`` of selector ``name``.

    ``when(params)`` says which parameters it covers (all when None); the others are resampled.
    """

    def deco(impl: ExactImpl) -> ExactImpl:
        sel = get_selector(name)
        if sel.exact is not None:
            raise ValueError(f"selector {name!r} already has an exact form")
        _REGISTRY[name] = replace(sel, exact=impl, exact_when=when)
        return impl

    return deco


def register_alias(old: str, new: str) -> None:
    """Keep a renamed selector working under its ``old`` name, with a DeprecationWarning."""
    if old in _REGISTRY or old in _ALIASES:
        raise ValueError(f"selector {old!r} is already registered")
    _ALIASES[old] = new


def canonical_name(name: str, *, stacklevel: int = 3) -> str:
    """``name``, or the current name of a renamed selector (warning that the old one is deprecated)."""
    new = _ALIASES.get(name)
    if new is None:
        return name
    warnings.warn(
        f"selector {name!r} is deprecated; use {new!r} (same selector and parameters)",
        TTScaleDeprecationWarning,
        stacklevel=stacklevel,
    )
    return new


def get_selector(name: str) -> Selector[Any]:
    """The selector registered under ``name`` (ConfigError listing the known names otherwise).

    A deprecated name gives the renamed selector, with a DeprecationWarning naming the new one.
    """
    try:
        return _REGISTRY[canonical_name(name)]
    except KeyError:
        raise ConfigError("selector", name, "one of " + ", ".join(list_selectors())) from None


def list_selectors() -> list[str]:
    """Names of every registered selector, sorted (deprecated aliases left out)."""
    return sorted(_REGISTRY)

