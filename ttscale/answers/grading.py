"""From validated bank records to the numeric core: answer classes, correctness, rewards.

This is the one place where strings become class ids. Correctness is decided per answer class
(its representative against the reference), so every sample of a class agrees with its vote.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from ttscale.answers import AnswerClassifier, EquivalenceConfig, EquivalenceMode
from ttscale.answers.candidates import Candidates
from ttscale.errors import BankFormatError, ConfigError
from ttscale.records.finish import LOW_CONFIDENCE

if TYPE_CHECKING:  # the records layer (pydantic models) loads only when a bank is read
    from ttscale.records.bank import Bank
    from ttscale.records.models import Record, Sample


class GradeSource(str, Enum):
    """Where correctness comes from."""

    AUTO = "auto"
    """The reference when the record has one, else the samples' own ``correct`` flags."""
    REFERENCE = "reference"
    """Answer-class representative checked against the reference (ttscale's equivalence)."""
    FIELD = "field"
    """The source's ``correct`` flag on each sample (a class is correct when most of its samples are)."""


def _optional_array(values: list[float | None], dtype: type, *, path: Path | None, record: Record, field: str) -> np.ndarray | None:
    present = [v is not None for v in values]
    if not any(present):
        return None
    if not all(present):
        missing = present.index(False)
        raise BankFormatError(
            path or "<bank>", None, f"samples.{missing}.{field}",
            f"'{field}' on every sample of problem {record.id!r} or on none",
            f"{sum(present)} of {len(values)} samples have it",
        )
    return np.asarray(values, dtype=dtype)


def record_candidates(
    record: Record,
    classifier: AnswerClassifier,
    *,
    grade: GradeSource = GradeSource.AUTO,
    scorer: str | None = None,
    path: Path | None = None,
    count_stopped: bool = False,
) -> Candidates:
    """One record's :class:`Candidates` (class ids, class correctness, rewards, confidences, tokens).
    ``count_stopped``: traces the online early stop ended vote with the answer their partial text
    had reached (``partial_answer``) instead of none."""
    answers = [_answer(s, count_stopped) for s in record.samples]
    classes, representatives = classifier.classify(answers)
    classes = np.asarray(classes, dtype=np.int64)
    use_reference = grade is GradeSource.REFERENCE or (grade is GradeSource.AUTO and record.reference is not None)
    if use_reference:
        if record.reference is None:
            raise BankFormatError(path or "<bank>", None, "reference", f"a reference answer for problem {record.id!r}")
        class_correct = np.array([classifier.is_correct(rep, record.reference) for rep in representatives], dtype=bool)
    else:
        flags = [s.correct for s in record.samples]
        if any(f is None for f in flags):
            raise BankFormatError(
                path or "<bank>", None, "correct",
                f"a reference for problem {record.id!r} or a 'correct' flag on each of its samples",
            )
        votes = np.zeros(len(representatives))
        totals = np.zeros(len(representatives))
        for cls, flag in zip(classes, flags):
            if cls >= 0:
                votes[cls] += bool(flag)
                totals[cls] += 1
        class_correct = votes * 2 > totals
    return Candidates(
        classes=classes,
        class_correct=class_correct,
        rewards=_optional_array([s.score(scorer) for s in record.samples], float, path=path, record=record,
                                field=f"rewards.{scorer}" if scorer else "reward"),
        logprobs=_optional_array([s.confidence() for s in record.samples], float, path=path, record=record, field="mean_logprob"),
        tokens=_optional_array([s.tokens for s in record.samples], np.int64, path=path, record=record, field="tokens"),
        answers=tuple(representatives),
        token_confidence=_encoded(_optional_array([getattr(s, "token_confidence", None) for s in record.samples], object,
                                                  path=path, record=record, field="token_confidence")),
    )


def _encoded(fields: np.ndarray | None) -> tuple[str, ...] | None:
    """The samples' ``token_confidence`` fields as they are (validated when read; decoded only by the replay)."""
    return None if fields is None else tuple(fields.tolist())


def _answer(sample: Sample, count_stopped: bool) -> str | None:
    if count_stopped and sample.answer is None and sample.finish == LOW_CONFIDENCE:
        partial = (sample.model_extra or {}).get("partial_answer")
        return partial if isinstance(partial, str) else None
    return sample.answer


def bank_candidates(
    records: Sequence[Record],
    classifier: AnswerClassifier,
    *,
    grade: GradeSource = GradeSource.AUTO,
    scorer: str | None = None,
    path: Path | None = None,
    progress: Callable[[int], None] | None = None,
    count_stopped: bool = False,
) -> list[Candidates]:
    """:func:`record_candidates` for every record of a bank."""
    out = []
    for record in records:
        out.append(record_candidates(record, classifier, grade=grade, scorer=scorer, path=path, count_stopped=count_stopped))
        if progress is not None:
            progress(1)
    return out


def load_candidates(
    path: str | Path,
    equivalence: EquivalenceMode | str = EquivalenceMode.MATH,
    grade: GradeSource | str = GradeSource.AUTO,
    scorer: str | None = None,
    progress: Callable[[int], None] | None = None,
    count_stopped: bool = False,
) -> tuple[Bank, list[Candidates]]:
    """Read a bank file and grade it: (the bank's records, one :class:`Candidates` per problem).

    ``equivalence`` decides which answers are one class; ``grade`` where correctness comes from;
    ``scorer`` names the samples' ``rewards[NAME]`` used as their reward (None: ``reward``);
    ``count_stopped`` lets early-stopped traces vote with their partial answers.
    A skipped truncated last line is logged by :func:`~ttscale.records.bank.read_bank` and left in
    ``Bank.truncated_line`` for callers that report it.
    """
    from ttscale.records.bank import read_bank

    mode = _choice("equivalence", equivalence, EquivalenceMode)
    source = _choice("grade", grade, GradeSource)
    data = read_bank(path)
    classifier = AnswerClassifier(EquivalenceConfig(mode=mode))
    problems = bank_candidates(data.records, classifier, grade=source, scorer=scorer, path=data.path, progress=progress,
                               count_stopped=count_stopped)
    return data, problems


E = TypeVar("E", bound=Enum)


def _choice(parameter: str, value: object, kind: type[E]) -> E:
    """An enum member from itself or its value, or a ConfigError naming the parameter and the choices."""
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(parameter, value, "one of " + ", ".join(str(m.value) for m in kind)) from None
