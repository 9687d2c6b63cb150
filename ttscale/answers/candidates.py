"""The numeric view of one problem's candidates: what selectors and estimators work on.

Everything here is plain numpy; no text, no files. Answer strings have already been mapped
to equivalence-class ids (``ttscale.answers``), so selectors never compare strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NO_ANSWER = -1
"""Class id of a sample whose final answer could not be extracted; it never wins a vote."""


@dataclass(frozen=True, eq=False)
class Candidates:
    """One problem's n candidates as parallel arrays.

    ``classes[i]`` is the answer-class id of sample i (``NO_ANSWER`` when it has none);
    ids are 0..C-1 and ``class_correct[c]`` says whether class c matches the reference.
    """

    classes: np.ndarray
    """int64 (n,): answer-class id per sample, ``NO_ANSWER`` (-1) when no answer was extracted."""
    class_correct: np.ndarray
    """bool (C,): whether each answer class is correct (equivalent to the reference)."""
    rewards: np.ndarray | None = None
    """float64 (n,): a scorer's reward per sample (higher is better), or None when unscored."""
    logprobs: np.ndarray | None = None
    """float64 (n,): mean token log-probability per sample (a confidence), or None."""
    tokens: np.ndarray | None = None
    """int64 (n,): generated tokens per sample, or None when unknown."""
    answers: tuple[str, ...] = field(default=())
    """Representative answer string per class (for display only; len C)."""
    token_confidence: tuple[str, ...] | None = None
    """Per sample, its token confidences (``-mean`` top-k log-prob at each generated token) as the
    bank stores them (:func:`~ttscale.records.confidences.decode_confidences` reads one), or None:
    what the offline replay of online early stop reads. Kept encoded: 4 bytes a token instead of 8,
    and decoded only by the replay."""

    @property
    def n(self) -> int:
        return int(self.classes.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.class_correct.shape[0])

    @property
    def correct(self) -> np.ndarray:
        """bool (n,): per-sample correctness derived from the sample's class."""
        ok = np.zeros(self.n, dtype=bool)
        answered = self.classes >= 0
        ok[answered] = self.class_correct[self.classes[answered]]
        return ok

    def counts(self) -> np.ndarray:
        """int64 (C,): votes per answer class (samples without an answer excluded)."""
        answered = self.classes[self.classes >= 0]
        return np.bincount(answered, minlength=self.num_classes).astype(np.int64)

    def subset(self, index: np.ndarray) -> "Candidates":
        """The candidates at ``index`` (same class ids, so ``class_correct`` is shared)."""
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return Candidates(
            classes=self.classes[index],
            class_correct=self.class_correct,
            rewards=pick(self.rewards),
            logprobs=pick(self.logprobs),
            tokens=pick(self.tokens),
            answers=self.answers,
            token_confidence=None if self.token_confidence is None else tuple(self.token_confidence[i] for i in np.asarray(index).tolist()),
        )


@dataclass(frozen=True)
class Selection:
    """What a selector returns: one or more chosen answer classes, best first, with their support.

    ``support[i]`` is the selector's score of ``classes[i]`` (votes, summed weight, reward...).
    An empty selection means the selector abstained (no answer at all).
    """

    classes: tuple[int, ...]
    support: tuple[float, ...]
    sample: int | None = None
    """Index of the candidate whose full text represents the chosen answer (for the proxy/API)."""

    def is_correct(self, class_correct: np.ndarray) -> bool:
        """Pass@k semantics: correct when any chosen class is correct."""
        return any(c >= 0 and bool(class_correct[c]) for c in self.classes)
