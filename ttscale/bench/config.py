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
from ttscale.search.params import Aggregation, SearchMethod, SearchParams
from ttscale.selection.policy import Policy
from ttscale.validation import Bool, Float, FrozenModel, Int

BANK = "bank.jsonl"
"""The bench folder's bank, topped up to ``n`` samples per problem by each run."""
SEARCH_DIR = "search"
"""The bench folder's search banks, one per method and width (``search/beam-w4-oracle.jsonl``)."""


class SearchSettings(FrozenModel):
    """The step-level searches a bench runs beside sampling (``--search``), one bank per method and width.

    Generation uses the bench's model, prompt template, temperature and seed; a branch is capped at
    the bench's ``max_tokens`` like a sample. Beam search keeps ``width / expansion`` beams and
    expands each ``expansion`` ways; DVTS runs subtrees of ``expansion`` (fewer when the width is
    smaller); particle filtering runs ``width`` particles.
    """

    methods: Annotated[list[SearchMethod], Field(min_length=1)]
    scorer: str = "oracle"
    """The step scorer (``ttscale search --scorer``): oracle, prm, prm:FOLDER, vllm-prm[:FOLDER]."""
    widths: Annotated[list[Annotated[Int, Field(ge=1)]], Field(min_length=1)]
    """Final candidates per problem: the budgets compared with sampling at k."""
    expansion: Annotated[Int, Field(ge=1)] = 4
    max_steps: Annotated[Int, Field(ge=1, le=256)] = 16
    max_step_tokens: Annotated[Int, Field(ge=1)] = 64
    max_tokens: Annotated[Int, Field(ge=1)] | None = None
    """Most generated tokens of one branch (the bench's --max-tokens)."""
    separator: str = "\n"
    aggregation: Aggregation = Aggregation.LAST
    seed: Int | None = 0
    in_flight: Annotated[Int, Field(ge=1)] = 64
    """Problems searched together (one engine call per round for all of them)."""

    def runs(self) -> list[tuple[SearchMethod, int]]:
        """(method, width) of every search, widths ascending within a method."""
        return [(m, w) for m in self.methods for w in sorted(set(self.widths))]

    def params(self, method: SearchMethod, width: int) -> SearchParams:
        keep = min(width, self.expansion) if method is SearchMethod.DVTS else max(1, width // self.expansion)
        if method is SearchMethod.DVTS and width % keep:
            keep = 1  # DVTS needs subtrees that divide the width: one beam per subtree
        expand = None if method is not SearchMethod.BEAM or width % keep == 0 else self.expansion
        return SearchParams(method=method, width=width, keep=keep, expand=expand, max_steps=self.max_steps,
                            max_step_tokens=self.max_step_tokens, max_tokens=self.max_tokens, separator=self.separator,
                            aggregation=self.aggregation, seed=self.seed)

    def bank_name(self, method: SearchMethod, width: int) -> str:
        """The search bank's file name inside :data:`SEARCH_DIR` (the scorer spelled file-safe)."""
        scorer = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.scorer.replace(":", "-"))
        return f"{method.value}-w{width}-{scorer}.jsonl"


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
    search: SearchSettings | None = None
    """Step-level searches compared with sampling at matched tokens (None: sampling only)."""

    @property
    def bank(self) -> Path:
        return self.out_dir / BANK

    def search_bank(self, method: SearchMethod, width: int) -> Path:
        assert self.search is not None
        return self.out_dir / SEARCH_DIR / self.search.bank_name(method, width)


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
