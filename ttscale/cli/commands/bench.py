"""``ttscale bench``: one command from a model and a dataset to a report folder.

Samples into a resumable bank (the driver of ``ttscale sample``), optionally scores it (the
scorers of ``ttscale score``), evaluates every policy exactly at every k (``ttscale eval``), fits
the planner's curves (``ttscale plan``) and writes report.md, plots and results.json. Run again, it
only does what is missing: see :mod:`ttscale.bench`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ttscale.answers.equivalence import EquivalenceMode
from ttscale.answers.grading import GradeSource
from ttscale.arith.paths import EMBEDDED_NAMES, MODEL_NAME, auto_template, require_model_source
from ttscale.cli.console import deprecated, err, handle_errors, out, progress_bar
from ttscale.errors import ConfigError
from ttscale.sampling.model_defaults import sampling_defaults
from ttscale.validation import validate

if TYPE_CHECKING:
    from ttscale.bench.pipeline import BenchOutcome


class Backend(str, Enum):
    """Where ``ttscale bench`` samples from."""

    AUTO = "auto"
    """vllm when it is installed, else hf."""
    VLLM = "vllm"
    HF = "hf"
    OPENAI = "openai"
    REPLAY = "replay"
    """Serve a bank file's samples as if a model drew them (tests, reruns of old banks)."""
    RAY = "ray"


def split_policies(values: Sequence[str]) -> list[str]:
    """Policy specs from repeated ``-p`` values, each possibly a comma list, duplicates dropped.

    A piece with ``=`` but no ``:`` continues the previous spec's overrides, so
    ``majority,best-of-majority:alpha=0.3,answers=2`` is two policies, spelled as ``eval -p`` takes them.
    """
    specs: list[str] = []
    for value in values:
        for piece in (p.strip() for p in value.split(",")):
            if not piece:
                continue
            if "=" in piece and ":" not in piece and specs and ":" in specs[-1]:
                specs[-1] += "," + piece
            else:
                specs.append(piece)
    return list(dict.fromkeys(specs))


def _is_embedded(model: str | None) -> bool:
    return model is None or model in EMBEDDED_NAMES  # bench's default model is the embedded one


def _template(template: str, model: str | None, dataset: str, own: dict[str, Any]) -> str:
    """'auto': the model folder's (ttscale.json), the arithmetic prompt for the arith data, else plain
    (as ``ttscale sample`` decides)."""
    if template != "auto":
        return template
    return own.get("template") or auto_template(MODEL_NAME if model is None else model, dataset)


def _scorer_factory(model_dir: str | None, scorer_model: str | None, template: str, batch_size: int):  # type: ignore[no-untyped-def]
    """Scorers by kind, with the options ``ttscale score`` gives them by default."""
    from ttscale.sampling.backends.registry import resolve_model
    from ttscale.sampling.sampler import SamplingConfig
    from ttscale.scoring.registry import make_scorer

    def build(kind: str) -> Any:
        if kind in ("confidence", "lowest-group-confidence"):
            # Stored log-probs need no model; the sampled model (if local) serves a forward pass otherwise.
            model = resolve_model(scorer_model) if scorer_model else (model_dir if model_dir and Path(model_dir).is_dir() else None)
            return make_scorer(kind, model, template=template, batch_size=batch_size)
        model = resolve_model(scorer_model)
        if model is None:
            raise ConfigError("--scorer-model", None, f"a model folder for scorer {kind!r}")
        if kind in ("reward-model", "prm"):
            return make_scorer(kind, model, batch_size=batch_size)
        if kind == "judge":
            sampling = SamplingConfig(temperature=0.0, max_tokens=64, logprobs=False)
            return make_scorer(kind, model, backend="hf", sampling=sampling, backend_options={"batch_size": batch_size})
        return make_scorer(kind, model)

    return build


SEARCH_BACKENDS = ("vllm", "openai")


def _search_settings(methods: str | None, scorer: str, widths: str | None, expansion: int, max_steps: int, *, n: int,
                     max_tokens: int, seed: int, backend: str, dataset: str, problems: Sequence[Any]) -> Any:
    """The --search options as :class:`~ttscale.bench.config.SearchSettings` (None without --search), checked
    before any sampling: a typo should not cost a sampling run."""
    from ttscale.bench.config import SearchSettings
    from ttscale.cli.commands.eval import parse_k_list
    from ttscale.estimate.evaluate import default_k_grid
    from ttscale.search.params import SearchMethod
    from ttscale.search.prm_steps import SCORER_NAMES

    if methods is None:
        return None
    names = list(dict.fromkeys(m.strip() for m in methods.split(",") if m.strip()))
    choices = ", ".join(m.value for m in SearchMethod)
    if not names or any(m not in {c.value for c in SearchMethod} for m in names):
        raise ConfigError("--search", methods, f"a comma list of {choices}")
    if backend not in SEARCH_BACKENDS:
        raise ConfigError("--backend", backend, f"{' or '.join(SEARCH_BACKENDS)} with --search (the searches generate steps through an engine)")
    if scorer.partition(":")[0] not in ("oracle", "prm", "vllm-prm") or (":" in scorer and not scorer.partition(":")[2]) \
            or scorer.startswith("oracle:"):
        raise ConfigError("--search-scorer", scorer, "one of " + ", ".join(SCORER_NAMES))
    if scorer == "oracle":  # a clear error now, not after sampling
        from ttscale.search.oracle import reference_chain

        for p in problems:
            try:
                reference_chain(p.problem)
            except ConfigError:
                raise ConfigError("--search-scorer", "oracle",
                                  f"problems of the arithmetic task ({dataset}, id {p.id!r} is not one)") from None
    grid = parse_k_list(widths) if widths is not None else [k for k in default_k_grid([n]) if k >= 2] or [1]
    try:
        built = SearchSettings(methods=names, scorer=scorer, widths=grid, expansion=expansion, max_steps=max_steps,
                               max_tokens=max_tokens, seed=seed)
        for method, width in built.runs():
            built.params(method, width)
    except ConfigError as exc:
        raise ConfigError("--search-" + exc.parameter.replace("_", "-"), exc.value, exc.expected) from None
    except ValueError as exc:  # pydantic's, from a bound of SearchSettings
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            from ttscale.validation import config_error

            raise config_error(exc, SearchSettings, prefix="--search-") from None
        raise
    return built


def _step_generator(backend: str, model: str | None, config: Any, settings: Any, llm: Any, options: dict[str, Any]) -> Any:
    """Steps from the bench's model: the vllm engine sampling started (or a new one), or the completions endpoint."""
    from ttscale.sampling.sampler import SamplingConfig

    steps = SamplingConfig(temperature=config.temperature, top_p=config.top_p, seed=config.seed, template=config.template,
                           prompt_format=config.prompt_format, logprobs=False)
    if backend == "openai":
        from ttscale.search.openai_steps import OpenAIStepGenerator

        return OpenAIStepGenerator(model, steps, separator=settings.separator, base_url=options.get("base_url"),
                                   api_key=options.get("api_key"), concurrency=options.get("concurrency", 32),
                                   timeout=options.get("timeout", 120.0), max_retries=options.get("max_retries", 5))
    from ttscale.search.vllm_steps import VLLMStepGenerator

    return VLLMStepGenerator(None if llm is not None else model, steps, separator=settings.separator,
                             engine_args=options.get("engine_args"), llm=llm)


@handle_errors
def bench_command(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Report folder (bank.jsonl, report.md, plots, results.json); rerunning resumes.")] = Path("runs/bench"),
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model folder or name (vllm, hf), served name (openai), bank file (replay); default: the packaged arith-tiny.")] = None,
    backend: Annotated[Backend, typer.Option("--backend", "-b", help="Sampling backend: auto is vllm if installed, else hf.")] = Backend.AUTO,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="JSONL file (id, problem, answer; level/difficulty/steps used for buckets), 'arith', 'arith-hard' or a hub name.")] = "arith",
    n: Annotated[int, typer.Option("--n", "-n", help="Samples per problem (a bank with fewer is topped up).")] = 16,
    policy: Annotated[list[str] | None, typer.Option("--policy", "-p", help="Policy preset name or TOML path (repeatable, or a comma list; NAME:key=value overrides); majority is always included.")] = None,
    policies: Annotated[list[str] | None, typer.Option("--policies", hidden=True, help="Deprecated: -p/--policy.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first LIMIT problems.")] = None,
    scorer: Annotated[list[str] | None, typer.Option("--scorer", help="Score the bank with this scorer (repeatable): confidence, lowest-group-confidence, reward-model, vllm-reward, prm, vllm-prm, judge.")] = None,
    scorer_model: Annotated[str | None, typer.Option("--scorer-model", help="Model folder of reward-model, vllm-reward, prm, vllm-prm or judge (confidence: default the sampled model).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Base sampling seed, and the seed of resampled estimates and fits.")] = 0,
    temperature: Annotated[float | None, typer.Option("--temperature", help="Sampling temperature (default: the model folder's ttscale.json, 1.3 for arith-tiny, else 0.7).")] = None,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass.")] = 1.0,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Most tokens per sample (default: the model folder's ttscale.json, 160 for arith-tiny, else 256).")] = None,
    template: Annotated[str, typer.Option("--template", help="Prompt template with {problem}, or plain, arith, boxed; 'auto' as in ttscale sample.")] = "auto",
    chat: Annotated[bool, typer.Option("--chat/--raw", help="Apply the model's chat template.")] = False,
    price_in: Annotated[float | None, typer.Option("--price-in", help="Dollars per million input tokens (cost table).")] = None,
    price_out: Annotated[float | None, typer.Option("--price-out", help="Dollars per million output tokens (cost table).")] = None,
    draws: Annotated[int, typer.Option("--draws", help="Resampling draws per problem and k for policies without a closed form.")] = 1000,
    equivalence: Annotated[EquivalenceMode, typer.Option("--equivalence", help="Answer equivalence: math (math-verify) or string.")] = EquivalenceMode.MATH,
    grade: Annotated[GradeSource, typer.Option("--grade", help="Correctness from the reference, the samples' own flags, or auto (reference when present).")] = GradeSource.AUTO,
    max_n: Annotated[int, typer.Option("--max-n", help="Largest N the planner predicts.")] = 1024,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="vllm/hf: requests per engine call (a kill loses at most one batch).")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="hf: torch CPU threads (default 1 for the embedded model, else torch's).")] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help="vllm engine / hf dtype.")] = None,
    engine_arg: Annotated[list[str] | None, typer.Option("--engine-arg", help="vllm engine argument KEY=VALUE (repeatable).")] = None,
    base_url: Annotated[str, typer.Option("--base-url", help="openai: server URL.")] = "http://127.0.0.1:8000/v1",
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="OPENAI_API_KEY", help="openai: API key.")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", help="openai: HTTP requests in flight.")] = 32,
    search: Annotated[str | None, typer.Option("--search", help="Also run step-level searches (comma list: beam, dvts, particle) at each width, one resumable bank per method and width in OUT/search/, and compare them with sampling at matched total tokens (vllm and openai backends).")] = None,
    search_scorer: Annotated[str, typer.Option("--search-scorer", help="Step scorer of the searches: oracle (the arithmetic task's exact checker), prm (the embedded arith-prm-tiny), prm:FOLDER, vllm-prm[:FOLDER].")] = "oracle",
    search_widths: Annotated[str | None, typer.Option("--search-widths", help="Comma list of search widths (final candidates per problem); default the k grid from 2 up to --n.")] = None,
    search_expansion: Annotated[int, typer.Option("--search-expansion", help="beam keeps width/E beams expanded E ways; DVTS runs subtrees of E.")] = 4,
    search_max_steps: Annotated[int, typer.Option("--search-max-steps", help="Most steps per search branch.")] = 16,
    as_json: Annotated[bool, typer.Option("--json", help="Print what each stage did as one JSON object.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Benchmark a model: sample, score, evaluate every policy at every k, fit budgets, write a report."""
    from ttscale.bench.analysis import local_prompt_counter
    from ttscale.bench.config import AnalysisSettings, BenchConfig
    from ttscale.bench.pipeline import run_bench
    from ttscale.records.lock import bank_lock
    from ttscale.bench.results import RunInfo
    from ttscale.cli.report import eval_table
    from ttscale.cli.sampling_options import (
        DEMO_POLICIES,
        auto_backend,
        backend_options,
        cpu_engine_defaults,
        engine_args,
    )
    from ttscale.planning.cost import Prices
    from ttscale.records.datasets import load_dataset
    from ttscale.sampling.backends.registry import make_sampler, resolve_model
    from ttscale.sampling.sampler import SamplingConfig
    from ttscale.scoring.registry import SCORERS
    from ttscale.selection.policy import load_policy

    started = time.perf_counter()
    if n < 1:
        raise ConfigError("--n", n, "an integer >= 1")
    settings = validate(AnalysisSettings, {"draws": draws, "seed": seed, "equivalence": equivalence, "grade": grade,
                                           "max_n": max_n}, prefix="--")
    if threads is not None and threads < 1:
        raise ConfigError("--threads", threads, "an integer >= 1")
    if policies:
        deprecated("--policies is deprecated: use -p/--policy (repeatable, or a comma list)")
    chosen = [*(policy or []), *(policies or [])]
    backend_name = auto_backend() if backend is Backend.AUTO else backend.value
    embedded = _is_embedded(model)
    resolved = resolve_model(MODEL_NAME if embedded else model)
    explicit = bool(chosen)
    specs = list(dict.fromkeys(["majority", *split_policies(chosen or list(DEMO_POLICIES))]))
    loaded = [load_policy(spec) for spec in specs]  # a bad name fails here, before any sampling
    scorers = list(dict.fromkeys(scorer or []))
    for kind in scorers:  # before sampling: a typo should not cost a sampling run
        if kind not in SCORERS:
            raise ConfigError("--scorer", kind, "one of " + ", ".join(SCORERS))
        if kind in ("reward-model", "vllm-reward", "prm", "vllm-prm", "judge") and scorer_model is None:
            raise ConfigError("--scorer-model", None, f"a model folder for scorer {kind!r}")
    if scorer_model is not None and not scorers:  # it would be ignored: say so before a sampling run
        raise ConfigError("--scorer-model", scorer_model, "a --scorer to use it with (reward-model, vllm-reward, prm, vllm-prm, "
                                                          "judge or confidence)")
    if scorer_model is not None:
        require_model_source("--scorer-model", scorer_model)
    prices = None if price_in is None and price_out is None else Prices(input=price_in or 0.0, output=price_out or 0.0)
    own = sampling_defaults(resolved)  # the model folder's (ttscale.json); none for a bank file (replay)
    config = SamplingConfig(
        temperature=own.get("temperature", 0.7) if temperature is None else temperature, top_p=top_p,
        max_tokens=own.get("max_tokens", 256) if max_tokens is None else max_tokens, seed=seed, logprobs=True,
        prompt_format="chat" if chat else "raw", template=_template(template, model, dataset, own),
    )
    problems = load_dataset(dataset, limit=limit)
    engine = {**(cpu_engine_defaults() if backend_name == "vllm" and embedded else {}), **engine_args(engine_arg)}
    if dtype is not None:
        engine["dtype"] = dtype
    options = backend_options(backend_name, base_url=base_url, api_key=api_key, concurrency=concurrency, timeout=120.0,
                               max_retries=5, batch_size=batch_size, engine=engine)
    if backend_name == "hf":
        # The tiny model's matrices are too small to gain from threads, and on a shared CPU extra
        # threads wait on each other: 0.2 s against 12 s per request measured on 2 busy cores.
        options["threads"] = threads if threads is not None else (1 if embedded else None)
    display = MODEL_NAME if embedded else str(model or backend_name)
    search_settings = _search_settings(search, search_scorer, search_widths, search_expansion, search_max_steps, n=n,
                                       max_tokens=config.max_tokens, seed=seed, backend=backend_name, dataset=dataset,
                                       problems=problems)
    bench = BenchConfig(
        out_dir=out_dir, problems=problems, dataset=dataset, n=n,
        sampling={"model": str(resolved or display), "dataset": dataset, **{k: v for k, v in config.to_dict().items()
                  if k not in ("logprobs", "fan_out")}},
        meta={"model": display, "backend": backend_name}, seed=seed, policies=loaded, explicit_policies=explicit,
        scorers=scorers, prices=prices, search=search_settings,
        analysis=settings,
        run_info=RunInfo(model=display, backend=backend_name, dataset=dataset, limit=limit, command="ttscale bench"),
    )
    make_scorer = _scorer_factory(resolved, scorer_model, config.template, batch_size or 8) if scorers else None
    local = backend_name in ("hf", "vllm") and resolved is not None and Path(resolved).is_dir()
    counter = local_prompt_counter(resolved, config) if local else None  # type: ignore[arg-type]
    if not as_json:
        err.print(f"[bold]ttscale bench[/]: {len(problems)} problems x {n} samples, model {display}, backend {backend_name} -> {out_dir}",
                  soft_wrap=True)
    with progress_bar(disable=quiet or as_json) as bar:
        task = bar.add_task("checking the bank", total=None)

        def on_start(requests: int, samples: int) -> None:
            bar.update(task, total=samples, completed=0, description=f"sampling {requests} problems")

        def on_result(result: Any, stats: Any) -> None:
            bar.update(task, advance=len(result.candidates), description=f"sampling {stats.tokens_per_s:,.0f} tok/s")

        def on_step(text: str) -> None:
            bar.update(task, total=None, completed=0, description=text)

        engine: dict[str, Any] = {}  # the vllm engine sampling built, reused by the searches (one start-up)

        def sampler() -> Any:
            built = make_sampler(backend_name, resolved, config, **options)
            if backend_name == "vllm":
                engine["llm"] = built.llm
            return built

        def step_generator() -> Any:
            return _step_generator(backend_name, resolved if backend_name == "vllm" else model, config, search_settings,
                                   engine.get("llm"), options)

        def step_scorer() -> Any:
            from ttscale.search.prm_steps import resolve_step_scorer

            return resolve_step_scorer(search_scorer)

        with bank_lock(bench.bank):  # one bench per folder: sampling, scoring, searches and the report under one lock
            outcome = run_bench(bench, make_sampler=sampler, make_scorer=make_scorer, prompt_counter=counter,
                                make_search_generator=step_generator if search_settings else None,
                                make_step_scorer=step_scorer if search_settings else None,
                                on_sample_start=on_start, on_sample_result=on_result, on_step=on_step)
    if as_json:
        print(json.dumps({"out": str(out_dir), **outcome.summary(), "seconds": time.perf_counter() - started}, allow_nan=False))
        return
    ev = outcome.results.evaluation
    out.print(f"[bold]{display}[/] on [bold]{dataset}[/]: {ev.problems} problems, accuracy (%) at k")
    _print_summary(outcome, out_dir, time.perf_counter() - started, eval_table(ev.to_eval_result()))


def _print_summary(outcome: BenchOutcome, out_dir: Path, seconds: float, table: Any) -> None:
    from ttscale.bench.results import FitError

    results = outcome.results
    out.print(table)
    for name, fit in results.planner.items():
        label = "majority" if name == "majority" else "pass@k"
        if isinstance(fit, FitError):
            out.print(f"{label}: no fitted curve ({fit.error})", soft_wrap=True)
            continue
        sat, near, ceiling = fit.saturation, fit.within, fit.ceiling
        line = (f"{label}: predicted ceiling {100 * ceiling.accuracy:.1f}% +- {100 * ceiling.halfwidth:.1f} at N = {ceiling.n}; "  # type: ignore[operator]
                f"saturation N = {sat.n} ({100 * sat.accuracy:.1f}%)")  # type: ignore[operator]
        if near:
            line += f"; within 1 point of the ceiling: N = {near.n} ({100 * near.accuracy:.1f}%)"  # type: ignore[operator]
        out.print(line, soft_wrap=True)
    for note in results.notes:
        out.print(f"note: {note}", soft_wrap=True)
    stats = outcome.sampled.stats
    sampled = (f"sampled {stats.samples} new samples for {stats.requests} problems in {outcome.sampled.wall:.1f}s "
               f"({stats.completion_tokens} tokens, {stats.tokens_per_s:,.0f} tok/s)" if stats.requests
               else f"bank complete ({stats.problems} problems x {results.run.n}): nothing sampled")
    scored = "".join(f"; scored {v} samples ({k})" for k, v in outcome.scored.items() if v)
    if outcome.searched is not None:
        done = {name: count for name, count in outcome.searched.searched.items() if count}
        scored += (f"; searched {sum(done.values())} problems in {len(done)} search bank(s) in {outcome.searched.seconds:.1f}s"
                   if done else "; search banks complete: nothing searched")
    evaluated = f"; evaluated {', '.join(outcome.evaluated)}" if outcome.evaluated else "; evaluation cached"
    err.print(f"{sampled}{scored}{evaluated}; report {outcome.report}; {seconds:.1f}s in all", soft_wrap=True)
    out.print(f"report: {out_dir / 'report.md'}\nresults: {out_dir / 'results.json'}")
