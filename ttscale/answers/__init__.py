"""Final answers: extraction from completions, canonical strings, and equivalence classes.

A tiny API in the spirit of math-verify's ``parse``/``verify``, with extraction kept apart from
equivalence::

    from ttscale.answers import AnswerClassifier, EquivalenceConfig, extract_answer, normalize_answer

    extract_answer("... so the answer is \\\\boxed{\\\\dfrac{1}{2}}.")    # '\\\\dfrac{1}{2}'
    normalize_answer("$\\\\dfrac{1}{2}$.")                                 # '\\\\frac{1}{2}'
    clf = AnswerClassifier(EquivalenceConfig(mode="math", timeout_seconds=2.0))
    ids, reps = clf.classify(["0.5", "\\\\frac{1}{2}", None, "1/3"])     # [0, 0, -1, 1], ['0.5', '\\\\frac{1}{3}']
    clf.is_correct("x = 5", "5")                                         # True
    clf.stats.as_dict()                                                  # cache hits, verify calls, timeouts...

Modules: ``extract`` (text -> raw answer), ``normalize`` (raw -> canonical string, exact values
of plain rationals), ``equivalence`` (config, classifier), ``_pool``/``_worker`` (math-verify in
a child process, for timeouts that work in threads and subprocesses).
"""

from __future__ import annotations

from ttscale.answers._pool import AnswerBackendError, shutdown_workers
from ttscale.answers.equivalence import (
    AnswerClassifier,
    AnswerStats,
    EquivalenceConfig,
    EquivalenceMode,
)
from ttscale.answers.extract import extract_answer
from ttscale.answers.normalize import normalize_answer

__all__ = [
    "AnswerBackendError",
    "AnswerClassifier",
    "AnswerStats",
    "EquivalenceConfig",
    "EquivalenceMode",
    "extract_answer",
    "normalize_answer",
    "shutdown_workers",
]
