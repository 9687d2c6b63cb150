"""Per-sample fields a selector may need beyond the votes, and the one check of what is missing.

A selector's parameters say which fields they need (``SelectorParams.needs()``): rewards from a
scorer, mean token log-probs from the sampler, or the reference answer (evaluation only). Whoever
holds candidates (a bank, a live batch, a proxy's sampling settings) says which fields it has, and
:func:`missing_fields` is the one place that compares the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet

from ttscale.answers.candidates import Candidates
from ttscale.errors import ConfigError

__all__ = ["FIELDS", "LOGPROBS", "REFERENCE", "REWARDS", "Available", "MissingFieldError", "fields_of", "missing_fields"]

REWARDS = "rewards"
"""A scorer's reward per sample (``Candidates.rewards``)."""
LOGPROBS = "logprobs"
"""The mean token log-probability per sample (``Candidates.logprobs``)."""
REFERENCE = "reference"
"""The reference answer (``Candidates.class_correct``): only an evaluation has it."""
FIELDS = (REFERENCE, REWARDS, LOGPROBS)

Available = Candidates | Sequence[Candidates] | AbstractSet[str]
"""What a caller has: candidates (one problem's or a bank's), or the set of field names it can provide."""


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


def fields_of(have: Available) -> frozenset[str]:
    """The fields ``have`` provides: a set of field names as given, or those every candidate set carries.

    Candidates always carry class correctness (the reference; in live use it is unknown, but a
    selector needing it is refused before sampling), and rewards / log-probs when every one of
    them has them.
    """
    if isinstance(have, AbstractSet):
        return frozenset(have)
    items = [have] if isinstance(have, Candidates) else list(have)
    if not all(isinstance(c, Candidates) for c in items):
        raise TypeError("expected Candidates, a sequence of Candidates or field names")
    out = {REFERENCE}
    if all(c.rewards is not None for c in items):
        out.add(REWARDS)
    if all(c.logprobs is not None for c in items):
        out.add(LOGPROBS)
    return frozenset(out)


def missing_fields(needs: Iterable[str], have: Available) -> frozenset[str]:
    """The needed fields ``have`` does not provide (empty when the selector can run)."""
    return frozenset(needs) - fields_of(have)
