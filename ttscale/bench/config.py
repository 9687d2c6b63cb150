"""What one ``ttscale bench`` run is asked to do: the resolved invocation and the analysis settings.

Both are frozen pydantic models (:mod:`ttscale.validation`): a wrong value fails where the object
is built, with a :class:`~ttscale.errors.ConfigError` naming the field when built through
:func:`ttscale.validation.validate`. A :class:`Variant` is one evaluated column of the report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from ttscale.answers.equivalence import EquivalenceMode
from ttscale.answers.grading import GradeSource
from ttscale.bench.results import RunInfo
from ttscale.planning.cost import Prices
from ttscale.records.datasets import Problem
from ttscale.selection.policy import Policy
from ttscale.validation import Bool, Float, FrozenModel, Int

BANK = "bank.jsonl"
"""The bench folder's bank, topped up to ``n`` samples per problem by each run."""


class AnalysisSettings(FrozenModel):
    """Everything besides the bank that changes a reported figure (part of the analysis cache's key)."""

    draws: Annotated[Int, Field(ge=1)] = 1000
    """Resampling draws per problem and k for policies without a closed form."""
    seed: Int = 0
    """Seed of resampled estimates and curve fits."""
    equivalence: EquivalenceMode = EquivalenceMode.MATH
    """How two answers are compared (math-verify or plain strings)."""
    grade: GradeSource = GradeSource.AUTO
    """Where correctness comes from."""
    max_n: Annotated[Int, Field(ge=1)] = 1024
    """Largest N the planner predicts."""
    level: Annotated[Float, Field(gt=0, lt=1)] = 0.95
    """Confidence level of the fitted curves' intervals."""
    epsilon: Annotated[Float, Field(gt=0)] = 1e-4
    """Saturation: one more sample per question adds less accuracy than this."""
    within: Annotated[Float, Field(ge=0)] = 0.01
    """Recommend the smallest N within this much accuracy of the predicted ceiling."""


class BenchConfig(FrozenModel):
    """A resolved ``ttscale bench`` invocation (the command fills it in from the CLI options)."""

    out_dir: Path
    """The bench folder (bank, state, cache, report)."""
    problems: list[Problem]
    dataset: str
    """The dataset's name or path (its rows give the difficulty buckets)."""
    n: Annotated[Int, Field(ge=1)]
    """Samples per problem."""
    sampling: dict[str, Any]
    """The settings that fix the bank's distribution (model, dataset, temperature, ...): a rerun must match."""
    meta: dict[str, Any]
    """Fields written on each bank line (model, backend)."""
    seed: Int | None
    """Base sampling seed (request seeds derive from it)."""
    policies: list[Policy]
    explicit_policies: Bool
    """User-chosen policies fail when the bank lacks what they need; defaults are dropped with a note."""
    run_info: RunInfo
    """What the report shows as 'what was run' (model, backend, dataset, ...)."""
    scorers: list[str] = Field(default_factory=list)
    """Scorers whose rewards the bank gets (reward policies are evaluated once per scorer)."""
    analysis: AnalysisSettings = AnalysisSettings()
    prices: Prices | None = None
    """Dollars per million tokens, for the cost table."""

    @property
    def bank(self) -> Path:
        return self.out_dir / BANK


class Variant(FrozenModel):
    """One evaluated column: a policy and the scorer whose rewards it reads."""

    label: str
    policy: Policy
    scorer: str | None
    """``rewards.NAME`` the policy ranks by; None: the samples' ``reward`` (or no rewards at all)."""

    @property
    def cache_id(self) -> str:
        # The description is prose: rewording it must not invalidate cached figures.
        return json.dumps([self.label, self.policy.model_dump(mode="json", exclude={"description"}), self.scorer],
                          sort_keys=True)


def policy_variants(policies: Sequence[Policy], scorers: Sequence[str]) -> list[Variant]:
    """A reward policy is evaluated once per scorer (labelled ``policy[scorer]`` when there are several)."""
    out: dict[str, Variant] = {}
    for p in policies:
        if "rewards" in p.needs and len(scorers) > 1:
            for s in scorers:
                out.setdefault(f"{p.name}[{s}]", Variant(label=f"{p.name}[{s}]", policy=p, scorer=s))
        else:
            scorer = scorers[0] if scorers and "rewards" in p.needs else None
            out.setdefault(p.name, Variant(label=p.name, policy=p, scorer=scorer))
    return list(out.values())
