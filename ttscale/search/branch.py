"""A branch: a partial solution as a list of steps, with the scores of its steps."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ttscale.errors import TTScaleError
from ttscale.search.params import SearchParams
from ttscale.search.steps import Step

_FINAL_RE = re.compile(r"####[ \t]*\S|\\boxed\s*\{")


class SearchError(TTScaleError, RuntimeError):
    """A generator or scorer answered something the search cannot use (wrong count, NaN, no scores)."""


def has_final_answer(text: str) -> bool:
    """Whether a step states a final answer: GSM8K's ``#### N`` or a ``\\boxed{...}``."""
    return _FINAL_RE.search(text) is not None


@dataclass
class Branch:
    steps: tuple[Step, ...] = ()
    step_scores: list[float] = field(default_factory=list)
    score: float = 0.0
    """The aggregated step scores (see ``SearchParams.aggregation``)."""
    finish: str | None = None
    """None while live; ``answer`` (a final answer or the model stopped), ``length`` (token or step
    limit, or a step without the separator), ``pruned`` (DVTS: a sibling of the kept branch)."""

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.steps]

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.steps)

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.steps)

    @property
    def live(self) -> bool:
        return self.finish is None

    def extend(self, step: Step, params: SearchParams) -> Branch:
        """This branch plus ``step``, finished when the step ends it (a step without the separator
        that hit its token limit ends the branch too: the documented fallback for a separator the
        model never writes)."""
        child = Branch(self.steps + (step,))
        if has_final_answer(step.text) or step.finish == "eos":
            child.finish = "answer"
        elif step.finish == "length" or not step.text.endswith(params.separator):
            child.finish = "length"
        elif params.max_tokens is not None and child.tokens >= params.max_tokens:
            child.finish = "length"
        return child
