"""``ttscale sample``: fill a bank with N samples per problem from any backend, resumably."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ttscale.arith.paths import auto_template
from ttscale.sampling.model_defaults import sampling_defaults
from ttscale.cli.console import err, handle_errors, progress_bar
from ttscale.cli.sampling_options import (
    ReplicaBackend,
    SampleBackend,
    backend_options,
    early_stop_option_error,
    early_stop_params,
    engine_args,
    parse_seed,
)
from ttscale.errors import ConfigError


@handle_errors
def sample_command(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model folder or name (vllm, hf), served model name (openai; default: the server's first), bank file (replay); 'arith-tiny' is the packaged model.")] = None,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="JSONL file (id, problem, answer), 'arith', or a hub name: gsm8k, math500, aime2024, aime2025.")] = "arith",
    out: Annotated[Path, typer.Option("--out", "-o", help="Bank file to create or continue (JSONL, append-only).")] = Path("bank.jsonl"),
    n: Annotated[int, typer.Option("--n", "-n", help="Samples per problem; a bank with fewer is topped up.")] = 8,
    backend: Annotated[SampleBackend, typer.Option("--backend", "-b", help="vllm, openai, hf, replay, or ray (replicas of --ray-backend on a Ray cluster).")] = SampleBackend.VLLM,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first LIMIT problems.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature (0: greedy; default: the model folder's ttscale.json, else 0.7).")] = None,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass.")] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", help="Top-k tokens (0: all).")] = 0,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Most tokens per sample (default: the model folder's ttscale.json, else 256).")] = None,
    stop: Annotated[list[str] | None, typer.Option("--stop", help="Stop string (repeatable).")] = None,
    seed: Annotated[str, typer.Option("--seed", help="Base seed ('none': unseeded). Request seeds derive from it, the id and the round.")] = "0",
    logprobs: Annotated[bool, typer.Option("--logprobs/--no-logprobs", help="Record token log-probs.")] = True,
    template: Annotated[str, typer.Option("--template", help="Prompt template with {problem}, or plain, arith, boxed; 'auto': the model folder's (ttscale.json), arith for the arith data, else plain.")] = "auto",
    chat: Annotated[bool, typer.Option("--chat/--raw", help="Apply the model's chat template (chat endpoint over HTTP).")] = False,
    system: Annotated[str | None, typer.Option("--system", help="System message (chat only).")] = None,
    chat_template: Annotated[Path | None, typer.Option("--chat-template", help="vllm/hf with --chat: a Jinja chat template file used instead of the tokenizer's (a server uses its own: vllm serve --chat-template).")] = None,
    fan_out: Annotated[str, typer.Option("--fan-out", help="openai: auto, native (one request with n) or parallel (n requests).")] = "auto",
    base_url: Annotated[str, typer.Option("--base-url", help="OpenAI-compatible server URL.")] = "http://127.0.0.1:8000/v1",
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="OPENAI_API_KEY", help="API key (default $OPENAI_API_KEY).")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", help="openai: HTTP requests in flight.")] = 32,
    timeout: Annotated[float, typer.Option("--timeout", help="openai: seconds per HTTP request.")] = 120.0,
    max_retries: Annotated[int, typer.Option("--max-retries", help="openai: retries on 429/5xx/timeouts.")] = 5,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="vllm/hf: requests per engine call (a kill loses at most one batch).")] = None,
    tensor_parallel_size: Annotated[int | None, typer.Option("--tensor-parallel-size", help="vllm engine argument.")] = None,
    data_parallel_size: Annotated[int | None, typer.Option("--data-parallel-size", help="vllm engine argument.")] = None,
    gpu_memory_utilization: Annotated[float | None, typer.Option("--gpu-memory-utilization", help="vllm engine argument.")] = None,
    max_model_len: Annotated[int | None, typer.Option("--max-model-len", help="vllm engine argument.")] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help="vllm engine argument (auto, float32, bfloat16, ...); also the hf backend's dtype.")] = None,
    engine_arg: Annotated[list[str] | None, typer.Option("--engine-arg", help="Other vllm engine argument KEY=VALUE (repeatable).")] = None,
    ray_backend: Annotated[ReplicaBackend, typer.Option("--ray-backend", help="ray: what each replica runs, hf or vllm (engine options above apply per replica).")] = ReplicaBackend.HF,
    replicas: Annotated[int, typer.Option("--replicas", help="ray: sampler replicas (data parallel; each takes --tensor-parallel-size GPUs on a GPU cluster).")] = 2,
    ray_address: Annotated[str | None, typer.Option("--ray-address", envvar="RAY_ADDRESS", help="ray: cluster to join (default $RAY_ADDRESS; none: a local cluster).")] = None,
    early_stop_eta: Annotated[float | None, typer.Option("--early-stop-eta", help="Early stop (DeepConf online, vllm/hf/openai): keep-top percentage of the warm-up traces whose lowest group confidence is the threshold, in (0, 100]; 10 stops aggressively, 90 gently (default 10 once any --early-stop-* is given).")] = None,
    early_stop_window: Annotated[int | None, typer.Option("--early-stop-window", help="Early stop: sliding window of the group confidence, in tokens (<= --max-tokens; default 2048).")] = None,
    early_stop_warmup: Annotated[int | None, typer.Option("--early-stop-warmup", help="Early stop: traces per problem run in full to calibrate the threshold (default 16); the rest stop once below it.")] = None,
    early_stop_threshold: Annotated[float | None, typer.Option("--early-stop-threshold", help="Early stop: a fixed group-confidence threshold instead of warm-up calibration.")] = None,
    early_stop_top_k: Annotated[int | None, typer.Option("--early-stop-top-k", help="Early stop: top log-probs per token of the token confidence (1-20, default 20).")] = None,
    token_confidence: Annotated[int | None, typer.Option("--token-confidence", help="vllm, openai: store each sample's per-token confidence from this many top log-probs (1-20), so `ttscale simulate` replays the early stop on the bank.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as one JSON object.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Sample N candidates per problem into a bank; the same command again resumes, a larger --n grows it."""
    from ttscale.records.datasets import load_dataset
    from ttscale.sampling.backends.registry import make_sampler, resolve_model
    from ttscale.sampling.driver import run_sampling
    from ttscale.sampling.sampler import SamplingConfig

    base_seed = parse_seed(seed)
    if n < 1:
        raise ConfigError("--n", n, "an integer >= 1")
    backend, ray_backend = SampleBackend(backend).value, ReplicaBackend(ray_backend).value  # plain strings below
    if backend == "ray" and replicas < 1:
        raise ConfigError("--replicas", replicas, "an integer >= 1")
    resolved = resolve_model(model)
    own = sampling_defaults(resolved)  # the model folder's (ttscale.json); none for a bank file (replay)
    if template == "auto":
        template = own.get("template") or auto_template(model, dataset)
    early_stop = early_stop_params(eta=early_stop_eta, window=early_stop_window, warmup=early_stop_warmup,
                                   threshold=early_stop_threshold, top_k=early_stop_top_k)
    try:
        config = SamplingConfig(
            temperature=own.get("temperature", 0.7) if temperature is None else temperature, top_p=top_p, top_k=top_k,
            max_tokens=own.get("max_tokens", 256) if max_tokens is None else max_tokens, stop=tuple(stop or ()), seed=base_seed,
            logprobs=logprobs, prompt_format="chat" if chat else "raw", template=template, system=system, fan_out=fan_out,
            early_stop=early_stop, token_confidence=token_confidence,
        )
    except ConfigError as exc:
        raise early_stop_option_error(exc) from None
    engine = engine_args(engine_arg)
    for key, value in (("tensor_parallel_size", tensor_parallel_size), ("data_parallel_size", data_parallel_size),
                       ("gpu_memory_utilization", gpu_memory_utilization), ("max_model_len", max_model_len), ("dtype", dtype)):
        if value is not None:
            engine[key] = value
    if chat_template is not None:
        if backend not in ("vllm", "hf") and not (backend == "ray" and ray_backend in ("vllm", "hf")):
            raise ConfigError("--chat-template", str(chat_template), "vllm or hf backends only (an HTTP server applies its own template)")
        if not chat:
            raise ConfigError("--chat-template", str(chat_template), "--chat as well (raw prompts use no chat template)")
        try:
            template_text = chat_template.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("--chat-template", str(chat_template), f"a readable UTF-8 Jinja file ({exc})") from None
        if not template_text.strip():
            raise ConfigError("--chat-template", str(chat_template), "a non-empty Jinja template")
    problems = load_dataset(dataset, limit=limit)
    options = backend_options(ray_backend if backend == "ray" else backend, base_url=base_url, api_key=api_key,
                               concurrency=concurrency, timeout=timeout, max_retries=max_retries, batch_size=batch_size, engine=engine)
    if chat_template is not None:
        options["chat_template"] = template_text
    if backend == "ray":
        options.update(backend=ray_backend, replicas=replicas, address=ray_address)
    try:
        sampler = make_sampler(backend, resolved, config, **options)
    except ConfigError as exc:
        raise early_stop_option_error(exc) from None
    meta = {"model": str(getattr(sampler, "model", None) or model or backend), "backend": backend}
    try:
        with progress_bar(disable=quiet) as bar:
            task = bar.add_task("sampling", total=None)

            def on_start(requests: int, samples: int) -> None:
                bar.update(task, total=samples, description=f"sampling {requests} problems")

            def on_result(result: Any, stats: Any) -> None:
                bar.update(task, advance=len(result.candidates), description=f"sampling {stats.tokens_per_s:,.0f} tok/s")

            stats = run_sampling(sampler, problems, out, n, meta=meta, on_start=on_start, on_result=on_result)
    finally:
        sampler.close()
    summary = {"out": str(out), "n": n, "backend": backend, **stats.to_json()}
    if early_stop is not None:
        summary["early_stop"] = early_stop.model_dump()
    if as_json:
        print(json.dumps(summary))
        return
    if stats.requests == 0:
        err.print(f"{out}: all {stats.problems} problems already have {n} samples; nothing to do")
        return
    err.print(
        f"{out}: wrote {stats.samples} samples for {stats.requests} problems ({stats.complete} already complete) "
        f"in {stats.elapsed:.1f}s, {stats.completion_tokens} tokens, {stats.tokens_per_s:,.0f} tok/s, {stats.calls} backend calls"
        + (f", {stats.stopped} traces stopped early (low confidence)" if early_stop is not None else ""),
        soft_wrap=True,
    )


def main() -> None:
    """Run ``sample`` as a stand-alone command (``python -m ttscale.cli.commands.sample``)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(sample_command)
    app()


if __name__ == "__main__":
    main()
