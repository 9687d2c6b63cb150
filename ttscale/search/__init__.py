"""Step-level search over reasoning steps: beam search, DVTS and particle filtering.

A step ends at a separator (a newline by default). A :class:`StepGenerator` continues partial
solutions by one step, a :class:`StepScorer` scores every step of a partial solution; the
algorithms (:mod:`ttscale.search.algorithms`) call each once per round for all live branches of
all problems and count what it cost. :mod:`ttscale.search.oracle` is an exact step checker for the
embedded arithmetic task; :mod:`ttscale.search.vllm_steps` generates steps with the vLLM engine;
:mod:`ttscale.search.bank` writes results into a resumable bank.
"""

from __future__ import annotations

from ttscale.search.algorithms import ProblemResult, search_problems
from ttscale.search.cost import SearchCost
from ttscale.search.params import Aggregation, SearchMethod, SearchParams
from ttscale.search.steps import Step, StepGenerator, StepRequest, StepScorer, StepScores

__all__ = [
    "Aggregation",
    "ProblemResult",
    "SearchCost",
    "SearchMethod",
    "SearchParams",
    "Step",
    "StepGenerator",
    "StepRequest",
    "StepScorer",
    "StepScores",
    "search_problems",
]
