"""The typed content of a bench folder's ``results.json`` (and the figures the analysis cache holds).

:class:`BenchResults` is what the pipeline builds, what the report reads, and, dumped with
``model_dump(mode="json")``, what ``results.json`` holds. Its ``eval`` object is exactly what
``ttscale eval --json`` prints on the same bank. Field order is the file's key order.

Measured numbers are typed ``Num`` (int or float, kept as they came) where a count can arrive as
an int, so that the file holds the same numbers the untyped pipeline wrote.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from ttscale.estimate.evaluate import EvalResult, PolicyCurve
from ttscale.records.files import finite_json
from ttscale.validation import FrozenModel

Num = int | float
"""A JSON number kept as it was: a pydantic ``float`` field would turn 0 into 0.0."""

_OMIT = {"default": None, "exclude_if": lambda v: v is None}
"""A field written only when it has a value (older files lack it)."""


class Section(FrozenModel):
    """Base of the results models: fields like ``pass`` are spelled in Python as ``pass_at_k``."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True, validate_by_alias=True)


class Curve(Section):
    """One policy's accuracy at each k (the entries of ``ttscale eval --json``'s ``policies``)."""

    accuracy: list[float | None]
    stderr: list[float | None] | None
    """Monte Carlo standard error of a resampled estimate; None when exact."""
    method: str
    """``exact`` or ``resampled``."""

    @classmethod
    def of(cls, curve: PolicyCurve) -> Curve:
        """From an evaluation's curve, NaN (no problem has k samples) as None."""
        return cls.model_validate(finite_json({"accuracy": curve.accuracy, "stderr": curve.stderr, "method": curve.method}))

    @property
    def resampled(self) -> bool:
        return self.method != "exact"


class FitError(Section):
    """A curve that could not be fitted, and why."""

    error: str


class Ceiling(Section):
    n: int
    """The largest N predicted."""
    accuracy: float | None
    halfwidth: float | None


class FittedCurve(Section):
    """A fitted accuracy curve with its interval, at each N of its grid."""

    n: list[int]
    mean: list[float | None]
    low: list[float | None]
    high: list[float | None]


class Observed(Section):
    k: list[int]
    accuracy: list[float | None]


class Saturation(Section):
    """The planner's row at the saturation N."""

    epsilon: float
    """Accuracy gain of one more sample below which the curve counts as saturated."""
    n: int
    accuracy: float | None
    low: float | None
    high: float | None
    tokens_per_question: Num | None
    dollars_per_question: Num | None
    eflops_per_question: Num | None


class Within(Section):
    """The planner's row at the smallest N within ``points`` of the predicted ceiling."""

    points: float
    n: int
    accuracy: float | None
    low: float | None
    high: float | None
    tokens_per_question: Num | None
    dollars_per_question: Num | None
    eflops_per_question: Num | None


class PlannerFit(Section):
    """A planner curve (majority's Dirichlet model or pass@k's beta-binomial) and what it recommends."""

    method: str
    level: float
    best_n: int | None
    observed: Observed
    ceiling: Ceiling
    saturation: Saturation
    within: Within | None
    """None when the ceiling is too low to aim below it."""
    curve: FittedCurve


class PolicyFit(Section):
    """A curve family fitted to one policy's observed accuracy (as ``ttscale plan -p NAME``)."""

    method: str
    level: float
    best_n: int | None
    """Set when more samples hurt past this N."""
    ceiling: Ceiling
    curve: FittedCurve


class BucketPass(Section):
    """One difficulty bucket's size and pass@k (policy-independent)."""

    label: str
    problems: int
    pass_at_k: list[float | None] = Field(alias="pass")


class Bucket(BucketPass):
    policies: dict[str, Curve]


class RunInfo(Section):
    """What was run, as the report shows it."""

    model: str | None
    backend: str | None
    dataset: str
    limit: int | None = None
    command: str = "ttscale bench"


class RunSection(RunInfo):
    n: int
    problems: int
    policies: list[str]
    scorers: list[str]
    draws: int
    seed: int
    equivalence: str
    grade: str


class SamplingRun(Section):
    """One sampling run logged in ``bench-state.json`` (a killed run cannot log itself)."""

    model_config = ConfigDict(extra="allow")

    finished_at: str
    backend: str | None
    n: int
    problems: int
    complete: int
    requests: int
    calls: int
    samples: int
    prompt_tokens: int
    completion_tokens: int
    elapsed: Num
    tokens_per_s: Num
    wall_seconds: Num
    completed: bool


class SamplingSection(Section):
    runs: list[SamplingRun]
    wall_seconds: Num
    settings: dict[str, Any] | None
    """The settings the bank was sampled with (a rerun must match them)."""
    samples: int
    generated_tokens: int | None
    output_tokens_per_sample: float | None
    prompt_tokens_per_question: Num
    prompt_tokens_source: str
    """``bank``, ``tokenizer`` or ``estimated (4 characters a token)``."""


class EvalSection(Section):
    """Accuracy at k of every policy: exactly ``ttscale eval --json`` on the same bank."""

    problems: int
    k: list[int]
    pass_at_k: list[float | None] = Field(alias="pass")
    tokens: list[Num] | None
    policies: dict[str, Curve]
    problems_at_k: list[int]

    def to_eval_result(self) -> EvalResult:
        """The :class:`EvalResult` these figures came from (for the console table)."""
        policies = {name: PolicyCurve(c.accuracy, c.stderr, c.method) for name, c in self.policies.items()}  # type: ignore[arg-type]
        return EvalResult(self.problems, self.k, self.pass_at_k, self.tokens, policies, self.problems_at_k)  # type: ignore[arg-type]


class DifficultySection(Section):
    source: str
    """The dataset field the buckets come from (``level``, ``steps``, ...) or ``pass-rate``."""
    buckets: list[Bucket]


class PricesSection(Section):
    input: float
    output: float


class CostRow(Section):
    """Tokens (and dollars, when priced) of k samples per question."""

    k: int
    prompt_tokens_per_question: Num
    generated_tokens_per_question: Num | None
    tokens_per_question: Num
    tokens_total: Num
    dollars_per_question: Num | None = Field(**_OMIT)
    dollars_total: Num | None = Field(**_OMIT)


class CostSection(Section):
    prices: PricesSection | None
    table: list[CostRow]
    """Empty when the bank has no token counts."""


class SearchPoint(Section):
    """One search (a method at a width) over the bench's problems, read from its bank."""

    method: str
    width: int
    keep: int
    bank: str
    """The search bank, relative to the bench folder."""
    problems: int
    accuracy: float
    """The best-scored final candidate's answer (ties credited by the share right among them)."""
    pass_at_n: float = Field(alias="pass")
    """Some final candidate right: the ceiling of any pick among them."""
    generated_tokens_per_problem: float
    """Every generated step, pruned ones included."""
    scored_tokens_per_problem: float
    """Tokens the step scorer read (0 for the oracle)."""
    total_tokens_per_problem: float
    requests_per_problem: float
    """Step requests (one per live branch per round)."""
    seconds_per_problem: float
    """The problem's share of the search's wall time, scoring included."""


class SamplingPoint(Section):
    """A sampling policy at k samples, priced like a search: generated tokens plus tokens its scorer read."""

    policy: str
    k: int
    accuracy: float | None
    generated_tokens_per_problem: float
    scored_tokens_per_problem: float
    """A model scorer reads the prompt and each sample (estimated as prompt + sample tokens); 0 otherwise."""
    total_tokens_per_problem: float
    single_answer: bool = True
    """Submits one answer without reading the reference: it competes in the verdicts (top-k-answers does not)."""


class SamplingAt(Section):
    """The best sampling policy at one k, for a matched-compute verdict."""

    policy: str
    k: int
    accuracy: float
    total_tokens_per_problem: float


class MatchedVerdict(Section):
    """At one width: the best search against the best sampling policy at the tokens it used."""

    width: int
    method: str
    accuracy: float
    total_tokens_per_problem: float
    below: SamplingAt | None
    """The best single-answer policy at the largest k that used no more tokens than the search (within 2%;
    None: even k = 1 used more)."""
    above: SamplingAt | None
    """The best single-answer policy at the smallest k that used at least as many tokens (within 2%; None: even
    k = n used fewer). Both are the same k when sampling at that k used the search's tokens."""
    verdict: str
    """``beats`` (more accurate, by more than one problem, than sampling with at least as many tokens),
    ``trails`` (less accurate than sampling with no more tokens), ``between`` (neither: a tie when both are
    the same k) or ``undecided`` (outside the sampled token range)."""
    text: str


class SearchSection(Section):
    """Step-level search against the sampling policies at matched total tokens per problem."""

    scorer: str
    settings: dict[str, Any]
    points: list[SearchPoint]
    sampling: list[SamplingPoint]
    pass_at_k: list[SamplingPoint] = Field(alias="pass")
    """pass@k of the samples (a ceiling, not a policy), priced by generated tokens."""
    verdicts: list[MatchedVerdict]
    tie_points: float
    """A difference of at most this many accuracy points (one problem) is a tie."""
    notes: list[str]


class BenchResults(Section):
    """Everything ``ttscale bench`` reports; ``results.json`` is its JSON dump."""

    ttscale_bench: int
    """The results format version."""
    run: RunSection
    sampling: SamplingSection
    evaluation: EvalSection = Field(alias="eval")
    difficulty: DifficultySection
    planner: dict[str, PlannerFit | FitError]
    """``majority`` and ``pass``: the planner's fitted curves."""
    policy_fits: dict[str, PolicyFit | FitError]
    """The other policies' fitted curve families."""
    cost: CostSection
    analysis_seconds: Num
    notes: list[str]
    search: SearchSection | None = Field(**_OMIT)
    """Present when the bench ran step-level searches (``--search``)."""

    def to_json(self) -> dict[str, Any]:
        """The content of ``results.json``."""
        return self.model_dump(mode="json")
