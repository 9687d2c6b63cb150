"""``ttscale plan``: how many samples, what a budget buys, and when more stop paying off."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ttscale.answers.equivalence import EquivalenceMode
from ttscale.answers.grading import GradeSource
from ttscale.cli.console import (
    deprecated,
    handle_errors,
    progress_bar,
    read_graded_bank,
    renamed_option,
)
from ttscale.errors import ConfigError


@handle_errors
def plan_command(
    bank: Annotated[Path, typer.Argument(help="Bank file (JSONL): a pilot of a few samples per question.")],
    target: Annotated[float | None, typer.Option("--target", help="Target accuracy (fraction, e.g. 0.94): the N that reaches it.")] = None,
    budget_samples: Annotated[float | None, typer.Option("--budget-samples", help="Samples per question: the accuracy they buy.")] = None,
    budget_tokens: Annotated[float | None, typer.Option("--budget-tokens", help="Tokens for all questions (see --per-question).")] = None,
    budget_dollars: Annotated[float | None, typer.Option("--budget-dollars", help="Dollars for all questions (needs prices).")] = None,
    per_question: Annotated[bool, typer.Option("--per-question", help="Token/dollar budgets are per question, not for the whole bank.")] = False,
    price_in: Annotated[float | None, typer.Option("--price-in", help="Dollars per million input (prompt) tokens.")] = None,
    price_out: Annotated[float | None, typer.Option("--price-out", help="Dollars per million output tokens.")] = None,
    prompt_tokens: Annotated[float | None, typer.Option("--prompt-tokens", help="Prompt tokens per question (default: problem text / 4).")] = None,
    output_tokens: Annotated[float | None, typer.Option("--output-tokens", help="Generated tokens per sample (default: the bank's mean).")] = None,
    active_params: Annotated[float | None, typer.Option("--active-params", help="Active parameters (for Kinetics eFLOPs).")] = None,
    kv_bytes: Annotated[float | None, typer.Option("--kv-bytes", help="KV-cache bytes per token (for eFLOPs).")] = None,
    gqa: Annotated[float, typer.Option("--gqa", help="Query heads per KV head (for eFLOPs).")] = 1.0,
    intensity: Annotated[float, typer.Option("--intensity", help="Hardware arithmetic intensity I (B200: 562).")] = 562.0,
    policy: Annotated[str, typer.Option("--policy", "-p", help="The one policy whose curve is fitted: majority, pass, or a policy preset name (eval compares several).")] = "majority",
    max_n: Annotated[int, typer.Option("--max-n", help="Largest N to predict.")] = 1024,
    epsilon: Annotated[float, typer.Option("--epsilon", help="Saturation: accuracy gained per extra sample below this.")] = 1e-4,
    level: Annotated[float, typer.Option("--level", help="Interval level.")] = 0.95,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of the fitted curve, its interval and the observed points.")] = None,
    simulate: Annotated[bool, typer.Option("--simulate", help="Deprecated: `ttscale simulate` (replays stopping rules and allocators).")] = False,
    exact: Annotated[bool, typer.Option("--exact", help="--simulate: see `ttscale simulate --exact`.")] = False,
    max_k: Annotated[int | None, typer.Option("--max-k", min=1, help="--simulate: see `ttscale simulate --max-k`.")] = None,
    k: Annotated[int | None, typer.Option("--k", min=1, hidden=True, help="Deprecated: --max-k.")] = None,
    permutations: Annotated[int, typer.Option("--permutations", min=2, help="--simulate: seeded orderings of each question's samples.")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Seed of draws and bootstraps (and --simulate's permutations).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    equivalence: Annotated[EquivalenceMode, typer.Option("--equivalence", help="Answer equivalence: math or string.")] = EquivalenceMode.MATH,
    grade: Annotated[GradeSource, typer.Option("--grade", help="Correctness from: auto, reference, field.")] = GradeSource.AUTO,
) -> None:
    """Plan sample budgets: N for a target, accuracy for a budget, the saturation point."""
    if simulate:
        from ttscale.cli.report import run_simulation

        deprecated("`ttscale plan --simulate` is deprecated, use `ttscale simulate` (same options)")
        run_simulation(bank, max_k=renamed_option("--max-k", max_k, "--k", k), permutations=permutations, seed=seed,
                       target=target, exact=exact, as_json=as_json, equivalence=equivalence, grade=grade)
        return
    from ttscale.cli.commands.eval import check_plot_path
    from ttscale.cli.report import plot_plan, print_plan
    from ttscale.offline import plan

    check_plot_path(plot)  # before the fit: a path matplotlib would rewrite is refused up front
    from ttscale.planning.cost import ModelCostSpec, Prices

    prices = None
    if price_in is not None or price_out is not None:
        prices = Prices(input=price_in or 0.0, output=price_out or 0.0)
    spec = None
    if active_params is not None or kv_bytes is not None:
        if active_params is None or kv_bytes is None:
            raise ConfigError("--active-params/--kv-bytes", active_params if active_params is not None else kv_bytes, "both, for eFLOPs")
        spec = ModelCostSpec(active_params=active_params, kv_bytes_per_token=kv_bytes, gqa_ratio=gqa, arithmetic_intensity=intensity)
    data = read_graded_bank(bank, equivalence, grade, quiet=True)
    with progress_bar(disable=as_json) as bar:
        bar.add_task(f"fitting {policy}", total=None)
        result = plan(data, policy=policy, target=target, budget_samples=budget_samples, budget_tokens=budget_tokens,
                      budget_dollars=budget_dollars, per_question=per_question, prices=prices, spec=spec,
                      prompt_tokens=prompt_tokens, output_tokens=output_tokens, epsilon=epsilon, max_n=max_n,
                      level=level, seed=seed)
    if plot is not None:
        plot_plan(result, plot, bank)
    if as_json:
        print(json.dumps(result.to_json(), allow_nan=False))
        return
    print_plan(result, bank, plot)
