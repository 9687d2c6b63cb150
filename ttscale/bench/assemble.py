"""Stage 4 of ``ttscale bench``: the :class:`~ttscale.bench.results.BenchResults` of a run.

What was run, the eval table (``ttscale eval --json``'s object), difficulty buckets, the planner's
fits with dollars at the recommended N, and the cost table, from the analysis and the run state.
"""

from __future__ import annotations

from ttscale.bench.analysis import (
    CACHE_VERSION,
    Analysis,
    BaseFigures,
    DroppedVariant,
    VariantFigures,
)
from ttscale.bench.config import BenchConfig, policy_variants
from ttscale.bench.results import (
    BenchResults,
    Bucket,
    CostRow,
    CostSection,
    DifficultySection,
    EvalSection,
    FitError,
    PlannerFit,
    PolicyFit,
    PricesSection,
    RunSection,
    SamplingSection,
    Saturation,
    Within,
)
from ttscale.bench.search import search_section
from ttscale.bench.state import BenchState
from ttscale.planning.cost import Prices, dollars


def cost_rows(base: BaseFigures, prices: Prices | None) -> list[CostRow]:
    """Tokens (and dollars) of k samples per question: the prompt prefilled once, k completions."""
    if base.tokens is None:
        return []
    prompt, problems = base.prompt_tokens_per_question, base.problems
    rows = []
    for k, generated in zip(base.k, base.tokens):
        priced = {}
        if prices is not None:
            per_q = dollars(prompt, generated, prices)
            priced = {"dollars_per_question": per_q, "dollars_total": problems * per_q}
        rows.append(CostRow(k=k, prompt_tokens_per_question=prompt, generated_tokens_per_question=generated,
                            tokens_per_question=prompt + generated, tokens_total=problems * (prompt + generated), **priced))
    return rows


def _with_dollars(row: Saturation | Within | None, base: BaseFigures, prices: Prices | None):  # type: ignore[no-untyped-def]
    """A planner row with the dollars of its N at ``prices`` (the fit itself is priced without them)."""
    if row is None or prices is None or base.output_tokens_per_sample is None:
        return row
    usd = dollars(base.prompt_tokens_per_question, row.n * base.output_tokens_per_sample, prices)
    return row.model_copy(update={"dollars_per_question": usd})


def _priced(fit: PlannerFit | FitError, base: BaseFigures, prices: Prices | None) -> PlannerFit | FitError:
    if isinstance(fit, FitError):
        return fit
    return fit.model_copy(update={"saturation": _with_dollars(fit.saturation, base, prices),
                                  "within": _with_dollars(fit.within, base, prices)})


def sampling_section(state: BenchState, base: BaseFigures) -> SamplingSection:
    return SamplingSection(
        runs=state.runs, wall_seconds=float(sum(r.wall_seconds for r in state.runs)), settings=state.sampling,
        samples=base.pool.samples, generated_tokens=base.generated_tokens,
        output_tokens_per_sample=base.output_tokens_per_sample,
        prompt_tokens_per_question=base.prompt_tokens_per_question, prompt_tokens_source=base.prompt_tokens_source)


def assemble(config: BenchConfig, analysis: Analysis, state: BenchState) -> BenchResults:
    """results.json: what was run, the eval table, difficulty buckets, the planner, costs (no NaN)."""
    base = analysis.base
    known = [(v, analysis.variants[v.cache_id]) for v in policy_variants(config.policies, config.scorers)
             if v.cache_id in analysis.variants]
    notes = [f"default policy {v.label} left out: {figures.dropped}" for v, figures in known
             if isinstance(figures, DroppedVariant)]
    cached = {v.label: figures for v, figures in known if isinstance(figures, VariantFigures)}
    curves = {label: figures.overall for label, figures in cached.items()}
    buckets = [Bucket(label=b.label, problems=b.problems, pass_at_k=b.pass_at_k,
                      policies={label: figures.buckets[b.label] for label, figures in cached.items()})
               for b in base.difficulty.buckets]
    settings = config.analysis
    policy_fits: dict[str, PolicyFit | FitError] = {label: f.fit for label, f in cached.items() if f.fit is not None}
    prices = None if config.prices is None else PricesSection(input=config.prices.input, output=config.prices.output)
    evaluation = EvalSection(problems=base.problems, k=base.k, pass_at_k=base.pass_at_k, tokens=base.tokens,
                             policies=curves, problems_at_k=base.problems_at_k)
    search = (None if config.search is None else
              search_section(config, evaluation, base.prompt_tokens_per_question, base.output_tokens_per_sample))
    return BenchResults(
        ttscale_bench=CACHE_VERSION,
        run=RunSection(**config.run_info.model_dump(), n=config.n, problems=base.problems, policies=list(curves),
                       scorers=config.scorers, draws=settings.draws, seed=settings.seed,
                       equivalence=settings.equivalence.value, grade=settings.grade.value),
        sampling=sampling_section(state, base),
        evaluation=evaluation,
        difficulty=DifficultySection(source=base.difficulty.source, buckets=buckets),
        planner={name: _priced(fit, base, config.prices) for name, fit in base.planner.items()},
        policy_fits=policy_fits,
        cost=CostSection(prices=prices, table=cost_rows(base, config.prices)),
        analysis_seconds=base.seconds + sum(f.seconds for f in cached.values()),
        notes=notes,
        search=search,
    )
