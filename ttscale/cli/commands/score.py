"""``ttscale score``: fill ``rewards[NAME]`` on every sample of a bank with a scorer, resumably."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ttscale.cli.commands.sample import _engine_args
from ttscale.cli.console import err, handle_errors, progress_bar
from ttscale.errors import ConfigError


@handle_errors
def score_command(
    bank: Annotated[Path, typer.Argument(help="Bank file (JSONL) to score.")],
    scorer: Annotated[str, typer.Option("--scorer", "-s", help="confidence, lowest-group-confidence, reward-model, vllm-reward, prm, vllm-prm (process reward models) or judge.")] = "confidence",
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model folder: causal LM (confidence forward pass; judge), sequence classifier (reward-model, vllm-reward), Qwen2ForProcessRewardModel (prm, vllm-prm); 'arith-tiny' is the packaged model.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Name the scores are stored under (default: the scorer's).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output bank (default: rewrite BANK in place, atomically).")] = None,
    default: Annotated[bool, typer.Option("--default", help="Also set each sample's 'reward' (the default scorer).")] = False,
    window: Annotated[int, typer.Option("--window", help="lowest-group-confidence: tokens per sliding group (DeepConf: 2048).")] = 2048,
    top_k: Annotated[int, typer.Option("--top-k", help="lowest-group-confidence: top-k log-probs per token confidence.")] = 20,
    token_metric: Annotated[str, typer.Option("--token-metric", help="lowest-group-confidence: deepconf (-mean top-k log-prob) or logprob (the token's own).")] = "deepconf",
    template: Annotated[str | None, typer.Option("--template", help="confidence: the sampling prompt template ({problem}; 'auto': arith for arith-tiny); reward-model/vllm-reward/judge: {problem} and {candidate}; prm/vllm-prm: the prompt before the steps, {problem} ('qwen-prm': Qwen2.5-Math-PRM's).")] = None,
    aggregation: Annotated[str, typer.Option("--aggregation", help="prm/vllm-prm: step scores to one reward: min, last, mean or prod.")] = "min",
    separator: Annotated[str, typer.Option("--separator", help="prm/vllm-prm: steps are the non-empty pieces between this (escapes such as \\n\\n understood; default one step per line).")] = "\\n",
    step_tag: Annotated[str, typer.Option("--step-tag", help="prm/vllm-prm: the model's step-separator token.")] = "<extra_0>",
    label: Annotated[int, typer.Option("--label", help="prm/vllm-prm: index of the 'good' label of the 2-label head.")] = 1,
    empty_score: Annotated[float, typer.Option("--empty-score", help="prm/vllm-prm: reward of a candidate with no steps.")] = 0.0,
    backend: Annotated[str, typer.Option("--backend", "-b", help="judge: sampler backend (hf, vllm, openai).")] = "hf",
    judge_n: Annotated[int, typer.Option("--judge-n", help="judge: replies per candidate (scores averaged).")] = 1,
    judge_max_tokens: Annotated[int, typer.Option("--judge-max-tokens", help="judge: most tokens per reply.")] = 64,
    on_unparsed: Annotated[str, typer.Option("--on-unparsed", help="judge: error, or fallback (score --fallback).")] = "error",
    fallback: Annotated[float, typer.Option("--fallback", help="judge: score of an unparsable reply with --on-unparsed fallback.")] = 0.0,
    judge_temperature: Annotated[float | None, typer.Option("--judge-temperature", help="judge: sampling temperature (default 0 with --judge-n 1, else 0.7).")] = None,
    judge_seed: Annotated[str, typer.Option("--judge-seed", help="judge: base seed of the judge's replies ('none': unseeded).")] = "0",
    judge_chat: Annotated[bool, typer.Option("--judge-chat/--judge-raw", help="judge: send the prompt as a chat message (instruction-tuned judges).")] = False,
    judge_system: Annotated[str | None, typer.Option("--judge-system", help="judge: system message (with --judge-chat).")] = None,
    judge_model: Annotated[str | None, typer.Option("--judge-model", help="judge with openai: served model name (default: --model, else the server's first).")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="OPENAI_API_KEY", help="judge with openai: API key (default $OPENAI_API_KEY).")] = None,
    engine_arg: Annotated[list[str] | None, typer.Option("--engine-arg", help="vllm-reward, vllm-prm (and judge with vllm): vllm.LLM argument KEY=VALUE (repeatable), e.g. max_model_len=4096, dtype=bfloat16, tensor_parallel_size=2.")] = None,
    base_url: Annotated[str, typer.Option("--base-url", help="judge with openai: server URL.")] = "http://127.0.0.1:8000/v1",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Sequences per forward pass.")] = 8,
    batch_problems: Annotated[int, typer.Option("--batch-problems", help="Problems per scoring batch (a kill loses at most one).")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Score every sample of a bank and store it under the scorer's name; rerunning resumes (scored samples are skipped)."""
    from ttscale.sampling.backends.registry import resolve_model
    from ttscale.sampling.sampler import SamplingConfig
    from ttscale.scoring.registry import SCORERS, make_scorer
    from ttscale.scoring.resumable import score_bank

    if scorer not in SCORERS:
        raise ConfigError("--scorer", scorer, "one of " + ", ".join(SCORERS))
    resolved = resolve_model(model)
    options: dict[str, Any] = {}
    if scorer in ("confidence", "lowest-group-confidence"):
        if template in (None, "auto"):
            template = "arith" if "arith" in str(model or "") else "{problem}"
        options.update(template=template, batch_size=batch_size)
        if scorer == "lowest-group-confidence":
            options.update(window=window, top_k=top_k, token_metric=token_metric)
    elif scorer == "reward-model":
        options.update(batch_size=batch_size)
        if template:
            options["template"] = template
    elif scorer in ("prm", "vllm-prm"):
        try:
            # Shells pass "\n\n" as backslashes; backslashreplace keeps non-ASCII text intact through the decode.
            sep = separator.encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeDecodeError:
            raise ConfigError("--separator", separator, "a string with valid escapes such as \\n") from None
        options.update(aggregation=aggregation, separator=sep, step_tag=step_tag, label=label, empty_score=empty_score)
        if scorer == "prm":
            options["batch_size"] = batch_size
        if template:
            options["template"] = template
        if engine_arg and scorer == "vllm-prm":
            options["engine_args"] = _engine_args(engine_arg)
    elif scorer == "vllm-reward":
        if template:
            options["template"] = template
        if engine_arg:
            options["engine_args"] = _engine_args(engine_arg)
    else:
        if judge_seed.lower() in ("none", "null", ""):
            seed: int | None = None
        else:
            try:
                seed = int(judge_seed)
            except ValueError:
                raise ConfigError("--judge-seed", judge_seed, "an integer or 'none'") from None
        temperature = judge_temperature if judge_temperature is not None else (0.0 if judge_n == 1 else 0.7)
        sampling = SamplingConfig(temperature=temperature, max_tokens=judge_max_tokens, logprobs=False, seed=seed,
                                  prompt_format="chat" if judge_chat else "raw", system=judge_system)
        options.update(backend=backend, n=judge_n, on_unparsed=on_unparsed, fallback=fallback, sampling=sampling)
        if backend == "openai":
            options["backend_options"] = {"base_url": base_url, "api_key": api_key}
            if judge_model is not None:
                resolved = judge_model
        elif backend in ("hf", "vllm"):
            options["backend_options"] = {"batch_size": batch_size}
            if backend == "vllm" and engine_arg:
                options["backend_options"]["engine_args"] = _engine_args(engine_arg)
        if template:
            options["template"] = template
    if engine_arg and not (scorer in ("vllm-reward", "vllm-prm") or (scorer == "judge" and backend == "vllm")):
        raise ConfigError("--engine-arg", engine_arg, "only with --scorer vllm-reward, vllm-prm or a judge on --backend vllm")
    if not bank.is_file():
        raise ConfigError("BANK", str(bank), "an existing bank file (JSONL)")
    instance = make_scorer(scorer, resolved, name=name, **options)
    try:
        with progress_bar(disable=quiet) as bar:
            task = bar.add_task(f"scoring ({instance.name})", total=None)
            stats = score_bank(bank, instance, out, default=default, batch_problems=batch_problems,
                               on_start=lambda total: bar.update(task, total=total),
                               on_batch=lambda done, total: bar.update(task, completed=done))
    finally:
        instance.close()
    summary = {"out": str(stats.out), "name": instance.name, "problems": stats.problems, "samples": stats.samples,
               "scored": stats.scored, "skipped": stats.skipped, "resumed": stats.resumed}
    if hasattr(instance, "unparsed"):
        summary["unparsed"] = instance.unparsed
    if hasattr(instance, "truncated"):
        summary["truncated"] = instance.truncated
    if hasattr(instance, "forced"):
        summary["forward_pass"] = instance.forced
    if as_json:
        print(json.dumps(summary))
        return
    err.print(f"{stats.out}: {stats.scored} samples scored as rewards.{instance.name} "
              f"({stats.skipped} already scored, {stats.resumed} resumed) over {stats.problems} problems", soft_wrap=True)
