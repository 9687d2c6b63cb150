"""``ttscale search``: step-level search (beam, DVTS, particle filtering) into a resumable bank."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ttscale.cli.console import err, handle_errors, progress_bar
from ttscale.cli.sampling_options import engine_args, parse_seed
from ttscale.errors import ConfigError

BACKENDS = ("vllm", "openai")
SCORERS = ("oracle", "prm", "prm:FOLDER", "vllm-prm", "vllm-prm:FOLDER")
"""Step scorers the command knows (see ttscale.search.prm_steps.resolve_step_scorer)."""


def _params(**fields: Any) -> Any:
    from ttscale.search.params import SearchParams

    try:
        return SearchParams(**fields)
    except ConfigError as exc:  # name the option the user typed
        raise ConfigError("--" + exc.parameter.replace("_", "-"), exc.value, exc.expected) from None


def _generator(backend: str, model: str | None, config: Any, separator: str, *, base_url: str, api_key: str | None, concurrency: int,
               timeout: float, max_retries: int, engine_arg: list[str] | None, max_model_len: int | None, dtype: str | None) -> Any:
    if backend == "openai":
        from ttscale.search.openai_steps import OpenAIStepGenerator

        return OpenAIStepGenerator(model, config, separator=separator, base_url=base_url, api_key=api_key, concurrency=concurrency,
                                   timeout=timeout, max_retries=max_retries)
    from ttscale.search.vllm_steps import VLLMStepGenerator

    engine = engine_args(engine_arg)
    for key, value in (("max_model_len", max_model_len), ("dtype", dtype)):
        if value is not None:
            engine[key] = value
    return VLLMStepGenerator(model, config, separator=separator, engine_args=engine)


@handle_errors
def search_command(
    method: Annotated[str, typer.Option("--method", help="beam, dvts or particle.")] = "beam",
    width: Annotated[int, typer.Option("--width", "-n", help="N: final candidates per problem (particles for particle filtering).")] = 8,
    keep: Annotated[int, typer.Option("--keep", help="M: beams kept per step (beam); DVTS runs N/M subtrees expanded M ways.")] = 2,
    expand: Annotated[int | None, typer.Option("--expand", help="beam: continuations per kept beam (default N/M).")] = None,
    max_steps: Annotated[int, typer.Option("--max-steps", help="Most steps per branch; unfinished branches are returned as they are.")] = 16,
    max_step_tokens: Annotated[int, typer.Option("--max-step-tokens", help="Most tokens of one step.")] = 64,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Most generated tokens of one branch (default: the context length).")] = None,
    separator: Annotated[str, typer.Option("--separator", help="String that ends a step (\\n for a newline).")] = "\\n",
    resample_temperature: Annotated[float, typer.Option("--resample-temperature", help="particle: temperature of the resampling softmax.")] = 1.0,
    aggregation: Annotated[str, typer.Option("--aggregation", help="Branch score from step scores: last, min or product.")] = "last",
    scorer: Annotated[str, typer.Option("--scorer", help="Step scorer: oracle (the arithmetic task's exact checker), prm (the embedded arith-prm-tiny), prm:FOLDER, vllm-prm[:FOLDER].")] = "oracle",
    backend: Annotated[str, typer.Option("--backend", "-b", help="vllm (in-process engine) or openai (a completions endpoint at --base-url).")] = "vllm",
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model folder or name for vllm ('arith-tiny', the default, is the packaged model); the served model name for openai (default: the server's first).")] = None,
    base_url: Annotated[str, typer.Option("--base-url", help="openai: OpenAI-compatible server URL (its /completions continues each branch).")] = "http://127.0.0.1:8000/v1",
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="OPENAI_API_KEY", help="openai: API key (default $OPENAI_API_KEY).")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", help="openai: HTTP requests in flight.")] = 32,
    timeout: Annotated[float, typer.Option("--timeout", help="openai: seconds per HTTP request.")] = 120.0,
    max_retries: Annotated[int, typer.Option("--max-retries", help="openai: retries on 429/5xx/timeouts.")] = 5,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="JSONL file (id, problem, answer), 'arith' or 'arith-hard'.")] = "arith",
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first LIMIT problems.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Bank file to create or continue (problems already in it are skipped).")] = Path("bank.jsonl"),
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature of steps (default: the model folder's ttscale.json, else 0.7).")] = None,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass.")] = 1.0,
    seed: Annotated[str, typer.Option("--seed", help="Base seed of steps and resampling ('none': unseeded).")] = "0",
    template: Annotated[str, typer.Option("--template", help="Prompt template with {problem}, or plain, arith, boxed; 'auto': the model folder's.")] = "auto",
    in_flight: Annotated[int, typer.Option("--in-flight", help="Problems searched together (one engine call per round for all of them).")] = 64,
    max_model_len: Annotated[int | None, typer.Option("--max-model-len", help="vllm engine argument.")] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help="vllm engine argument.")] = None,
    engine_arg: Annotated[list[str] | None, typer.Option("--engine-arg", help="Other vllm engine argument KEY=VALUE (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as one JSON object.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Search over reasoning steps with a step scorer; the same command again resumes."""
    from ttscale.arith.paths import auto_template, resolve_model
    from ttscale.records.datasets import load_dataset
    from ttscale.sampling.model_defaults import sampling_defaults
    from ttscale.sampling.sampler import SamplingConfig
    from ttscale.search.bank import run_search
    from ttscale.search.prm_steps import resolve_step_scorer

    base_seed = parse_seed(seed)
    sep = separator.replace("\\n", "\n").replace("\\t", "\t")  # typed as \n on a command line
    params = _params(method=method, width=width, keep=keep, expand=expand, max_steps=max_steps, max_step_tokens=max_step_tokens,
                     max_tokens=max_tokens, separator=sep, temperature=resample_temperature, aggregation=aggregation, seed=base_seed)
    if scorer.partition(":")[0] not in ("oracle", "prm", "vllm-prm"):
        raise ConfigError("--scorer", scorer, "one of " + ", ".join(SCORERS))
    if in_flight < 1:
        raise ConfigError("--in-flight", in_flight, "an integer >= 1")
    if backend not in BACKENDS:
        raise ConfigError("--backend", backend, "one of " + ", ".join(BACKENDS))
    if backend == "vllm" and model is None:
        model = "arith-tiny"
    resolved = resolve_model(model)
    own = sampling_defaults(resolved)  # the model folder's template and temperature (none for a served name)
    if template == "auto":
        template = own.get("template") or auto_template(model, dataset)
    config = SamplingConfig(temperature=own.get("temperature", 0.7) if temperature is None else temperature, top_p=top_p,
                            seed=base_seed, template=template, logprobs=False)
    problems = load_dataset(dataset, limit=limit)
    if scorer == "oracle":  # a clear error now, not after the engine has loaded
        from ttscale.search.oracle import reference_chain

        for p in problems:
            try:
                reference_chain(p.problem)
            except ConfigError:
                raise ConfigError("--scorer", "oracle", f"problems of the arithmetic task ({dataset}, id {p.id!r} is not one)") from None
    try:
        step_scorer = resolve_step_scorer(scorer)
    except ConfigError as exc:
        raise ConfigError("--scorer", scorer, exc.expected) from None
    generator = _generator(backend, resolved, config, params.separator, base_url=base_url, api_key=api_key, concurrency=concurrency,
                           timeout=timeout, max_retries=max_retries, engine_arg=engine_arg, max_model_len=max_model_len, dtype=dtype)
    meta = {"backend": backend, **({"model": str(model)} if model is not None else {})}
    try:
        with progress_bar(disable=quiet) as bar:
            task = bar.add_task(f"{params.method.value} search", total=len(problems))

            def on_result(result: Any, stats: Any) -> None:
                bar.update(task, completed=stats.complete + stats.searched)

            stats = run_search(problems, generator, step_scorer, params, out, meta=meta, in_flight=in_flight, on_result=on_result)
    finally:
        generator.close()
        getattr(step_scorer, "close", lambda: None)()
    summary = {"out": str(out), "method": params.method.value, "width": params.width, **stats.to_json()}
    if as_json:
        print(json.dumps(summary))
        return
    if stats.searched == 0:
        err.print(f"{out}: all {stats.problems} problems already searched; nothing to do")
        return
    cost = stats.cost
    err.print(
        f"{out}: searched {stats.searched} problems ({stats.complete} already done) in {stats.elapsed:.1f}s: "
        f"{cost.generated_tokens} generated tokens in {cost.expansions} steps, {cost.requests} step requests, {cost.rounds} problem-rounds",
        soft_wrap=True,
    )
