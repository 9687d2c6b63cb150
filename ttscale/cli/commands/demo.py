"""``ttscale demo``: the main job on the embedded default, nothing downloaded.

Samples N candidates per problem of the packaged arithmetic test set with the packaged tiny
model (the real vLLM engine when it is installed, else transformers), writes a resumable bank,
then prints every applicable policy's exact accuracy-at-k table and writes a plot, and ends with
what the optimizer answers from that bank (:mod:`ttscale.cli.commands.demo_summary`): the predicted
ceiling, the fixed N a target needs, and the samples the adaptive budget saves.
"""

from __future__ import annotations

import dataclasses
import json
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ttscale.cli.console import err, handle_errors, out, progress_bar
from ttscale.cli.sampling_options import (
    DEMO_POLICIES,
    auto_backend,
    cpu_engine_defaults,
)
from ttscale.errors import ConfigError


class DemoBackend(str, Enum):
    AUTO = "auto"
    """vllm when it is installed, else hf."""
    VLLM = "vllm"
    HF = "hf"


class DemoSet(str, Enum):
    DEFAULT = "default"
    HARD = "hard"
    """Longer chains of steps."""


@handle_errors
def demo_command(
    n: Annotated[int, typer.Option("--n", "-n", help="Samples per problem.")] = 16,
    difficulty: Annotated[DemoSet, typer.Option("--difficulty", help="Test set.")] = DemoSet.DEFAULT,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first LIMIT problems (default: all 500).")] = None,
    backend: Annotated[DemoBackend, typer.Option("--backend", "-b", help="Sampling backend: auto is vllm if installed, else hf.")] = DemoBackend.AUTO,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the bank, results.json and the plot.")] = Path("runs/demo"),
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature (default: the model's).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Base sampling seed.")] = 0,
    target: Annotated[float | None, typer.Option("--target", help="Accuracy (0-1) whose fixed N the closing lines give (default: halfway to the predicted ceiling).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the accuracy table as one JSON object.")] = False,
) -> None:
    """Sample the embedded arithmetic model on its test set, then evaluate every policy at every k."""
    from ttscale.answers import EquivalenceMode
    from ttscale.answers.grading import load_candidates
    from ttscale.arith.paths import model_dir
    from ttscale.cli.commands.demo_summary import optimizer_summary
    from ttscale.cli.report import eval_table, plot_eval
    from ttscale.estimate.evaluate import evaluate
    from ttscale.records.datasets import load_dataset
    from ttscale.sampling.backends.registry import make_sampler
    from ttscale.sampling.driver import run_sampling
    from ttscale.sampling.model_defaults import sampling_defaults
    from ttscale.sampling.sampler import SamplingConfig
    from ttscale.selection.policy import load_policy

    started = time.perf_counter()
    if n < 1:
        raise ConfigError("--n", n, "an integer >= 1")
    if target is not None and not 0 < target <= 1:
        raise ConfigError("--target", target, "an accuracy as a fraction in (0, 1], e.g. 0.8")
    test_set = difficulty.value
    engine = auto_backend() if backend is DemoBackend.AUTO else backend.value
    problems = load_dataset("arith" if difficulty is DemoSet.DEFAULT else "arith-hard", limit=limit)
    # The model folder's template, temperature and max_tokens (ttscale.json), as the API and bench use.
    own = sampling_defaults(model_dir())
    config = SamplingConfig.from_dict({**own, **({} if temperature is None else {"temperature": temperature}),
                                       "seed": seed, "logprobs": True}, source="demo")
    options: dict[str, Any] = {"engine_args": cpu_engine_defaults()} if engine == "vllm" else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    bank_path = out_dir / f"arith-{test_set}-n{n}.jsonl"
    err.print(f"[bold]ttscale demo[/]: {len(problems)} problems x {n} samples, model {model_dir().name}, backend {engine}")
    with progress_bar() as bar:
        task = bar.add_task(f"starting {engine}", total=None)
        sampler = make_sampler(engine, str(model_dir()), config, **options)
        try:
            def on_start(requests: int, samples: int) -> None:
                bar.update(task, total=samples, description="sampling")

            def on_result(result: Any, stats: Any) -> None:
                bar.update(task, advance=len(result.candidates), description=f"sampling {stats.tokens_per_s:,.0f} tok/s")

            stats = run_sampling(sampler, problems, bank_path, n, meta={"model": model_dir().name, "backend": engine},
                                 on_start=on_start, on_result=on_result)
        finally:
            sampler.close()
    sampled = time.perf_counter()
    _, candidates = load_candidates(bank_path, equivalence=EquivalenceMode.STRING)
    result = evaluate(candidates, [load_policy(p) for p in DEMO_POLICIES], draws=500, seed=seed)
    plot = plot_eval(result, out_dir / f"arith-{test_set}-n{n}.png", title=f"embedded arithmetic model, {test_set} test set")
    summary = optimizer_summary(bank_path, candidates, n, target=target, seed=seed)
    payload = {**result.to_json(), "optimizer": dataclasses.asdict(summary)}
    (out_dir / "results.json").write_text(json.dumps(payload, indent=1))
    done = time.perf_counter()
    if as_json:
        print(json.dumps(payload))
    else:
        out.print(eval_table(result, title=f"{bank_path} — {result.problems} problems, accuracy (%) at k"))
        out.print("\n".join(summary.lines()), highlight=False, soft_wrap=True)
        out.print(f"bank: {bank_path}\nplot: {plot}\nresults: {out_dir / 'results.json'}")
    err.print(
        f"sampled {stats.samples} new samples ({stats.completion_tokens} tokens, {stats.tokens_per_s:,.0f} tok/s) "
        f"in {sampled - started:.1f}s including start-up; evaluated in {done - sampled:.1f}s",
        soft_wrap=True,
    )
