"""``ttscale plan``: how many samples, what a budget buys, and how adaptive rules compare on a bank."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from ttscale.cli.console import handle_errors, load_candidates, out, progress_bar
from ttscale.errors import ConfigError

DEFAULT_PILOT = 2
"""Pilot samples per question of the simulated online allocator."""
SIMULATE_TOLERANCE = 0.001
"""``plan --simulate`` without --target: rules' cheapest settings within 0.1 point of majority@K."""


def allocator_budgets(k: int) -> list[float]:
    """Mean samples per question at which the allocators are read off: about 24 points in [1, K]."""
    grid = np.unique(np.round(np.geomspace(1, k, 24) * 4) / 4)
    return [float(b) for b in grid if 1 <= b <= k]


def default_allocators(k: int, budgets: list[float] | None = None) -> dict:
    """Simulated allocators of ``plan --simulate``: online (Blend-ASC style) and static (from pilots)."""
    from ttscale.adaptive.allocate import OnlineAllocator, StaticAllocator
    from ttscale.adaptive.simulate import run_allocator, run_static

    budgets = budgets or allocator_budgets(k)
    return {
        "alloc-online": lambda pool: run_allocator(pool, lambda: OnlineAllocator(max_per_question=k, pilot=DEFAULT_PILOT), budgets),
        "alloc-static": lambda pool: run_static(pool, lambda: StaticAllocator(k), budgets, pilot=4),
    }




def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


@handle_errors
def plan_command(
    bank: Annotated[Path, typer.Argument(help="Bank file (JSONL): a pilot of a few samples per question.")],
    target: Annotated[float | None, typer.Option("--target", help="Target accuracy (fraction, e.g. 0.94): the N that reaches it; with --simulate, each rule's cheapest setting reaching it.")] = None,
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
    policy: Annotated[str, typer.Option("--policy", "-p", help="majority, pass, or a policy preset name.")] = "majority",
    max_n: Annotated[int, typer.Option("--max-n", help="Largest N to predict.")] = 1024,
    epsilon: Annotated[float, typer.Option("--epsilon", help="Saturation: accuracy gained per extra sample below this.")] = 1e-4,
    level: Annotated[float, typer.Option("--level", help="Interval level.")] = 0.95,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of the fitted curve, its interval and the observed points.")] = None,
    simulate: Annotated[bool, typer.Option("--simulate", help="Replay stopping rules and allocators on the bank instead.")] = False,
    exact: Annotated[bool, typer.Option("--exact", help="--simulate: also score count-reading rules over every sample order (no permutation noise) and the best any vote-only rule can do (seconds on few-answer banks, minutes on scattered ones).")] = False,
    k: Annotated[int | None, typer.Option("--k", help="--simulate: most samples per question (default: the pool size 90% of questions have).")] = None,
    permutations: Annotated[int, typer.Option("--permutations", help="--simulate: seeded orderings of each question's samples.")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Seed of permutations, draws and bootstraps.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    equivalence: Annotated[str, typer.Option("--equivalence", help="Answer equivalence: math or string.")] = "math",
    grade: Annotated[str, typer.Option("--grade", help="Correctness from: auto, reference, field.")] = "auto",
) -> None:
    """Plan sample budgets: N for a target, accuracy for a budget, saturation; or --simulate adaptive rules."""
    if permutations < 2:
        raise ConfigError("--permutations", permutations, "an integer >= 2")
    data, problems = load_candidates(bank, equivalence, grade)
    if simulate:
        _simulate(bank, problems, k, permutations, seed, as_json, target, exact)
        return
    from ttscale.planning.cost import ModelCostSpec, Prices
    from ttscale.planning.plan import CostModel, plan

    prices = None
    if price_in is not None or price_out is not None:
        prices = Prices(input=price_in or 0.0, output=price_out or 0.0)
    spec = None
    if active_params is not None or kv_bytes is not None:
        if active_params is None or kv_bytes is None:
            raise ConfigError("--active-params/--kv-bytes", active_params if active_params is not None else kv_bytes, "both, for eFLOPs")
        spec = ModelCostSpec(active_params=active_params, kv_bytes_per_token=kv_bytes, gqa_ratio=gqa, arithmetic_intensity=intensity)
    estimated = prompt_tokens is None
    if prompt_tokens is None:
        prompt_tokens = float(np.mean([len(r.problem or "") / 4.0 for r in data.records])) if data.records else 0.0
    if output_tokens is None and problems and all(p.tokens is not None for p in problems):
        output_tokens = float(np.mean(np.concatenate([p.tokens for p in problems])))
    if output_tokens is not None and not (math.isfinite(output_tokens) and output_tokens > 0):
        raise ConfigError("--output-tokens", output_tokens, "a positive number of tokens per sample")
    cost = CostModel(prompt_tokens=float(prompt_tokens), output_tokens=output_tokens, prices=prices, spec=spec,
                     prompt_estimated=estimated)
    with progress_bar(disable=as_json) as bar:
        bar.add_task(f"fitting {policy}", total=None)
        result = plan(problems, policy=policy, target=target, budget_samples=budget_samples, budget_tokens=budget_tokens,
                      budget_dollars=budget_dollars, per_question=per_question, cost=cost, epsilon=epsilon,
                      max_n=max_n, level=level, seed=seed)
    if plot is not None:
        _plot(result, plot, bank)
    if as_json:
        print(json.dumps(result.to_json(), allow_nan=False))
        return
    _print_plan(result, bank, plot)


def _print_plan(result, bank: Path, plot: Path | None) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    c = result.curve
    ceiling, half = c.ceiling
    table = Table(title=f"{bank} — {result.questions} questions, {c.policy} ({c.method}), {int(c.level * 100)}% interval")
    for col in ("N", "accuracy %", "interval %", "tokens/q", "$/q", "eFLOPs/q"):
        table.add_column(col, justify="right")
    for n in result.table_ns():
        row = result.row(n)
        mark = " *" if n == result.recommended_n else ""
        table.add_row(
            f"{n}{mark}", f"{100 * row['accuracy']:.2f}", f"{100 * row['low']:.2f}-{100 * row['high']:.2f}",
            "-" if row["tokens_per_question"] is None else f"{row['tokens_per_question']:.0f}",
            "-" if row["dollars_per_question"] is None else f"{row['dollars_per_question']:.5f}",
            "-" if row["eflops_per_question"] is None else f"{row['eflops_per_question']:.3g}",
        )
    out.print(table)
    obs = ", ".join(f"{k}:{100 * a:.1f}" for k, a in zip(c.observed_k, c.observed_acc))
    out.print(f"observed (exact on the bank) k:acc% = {obs}")
    out.print(f"predicted ceiling at N = {int(c.n[-1])}: {100 * ceiling:.2f}% +- {100 * half:.2f}")
    rec = result.row(result.recommended_n)
    out.print(f"[bold]recommended N = {result.recommended_n}[/] ({result.reason}): "
              f"{100 * rec['accuracy']:.2f}% [{100 * rec['low']:.2f}, {100 * rec['high']:.2f}]"
              + ("" if rec["tokens_per_question"] is None else f", {rec['tokens_per_question']:.0f} tokens/question"))
    out.print(f"saturation (gain < {result.epsilon:g} per extra sample): N = {result.saturation_n}")
    for note in result.notes:
        out.print(f"note: {note}")
    if plot is not None:
        out.print(f"plot: {plot}")


def _plot(result, path: Path, bank: Path) -> None:  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = result.curve
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.fill_between(c.n, 100 * c.low, 100 * c.high, alpha=0.25, label=f"{int(c.level * 100)}% interval")
    ax.plot(c.n, 100 * c.mean, label=f"fitted ({c.method})")
    ax.plot(c.observed_k, [100 * a for a in c.observed_acc], "o", ms=4, label="observed (exact)")
    if result.recommended_n:
        ax.axvline(result.recommended_n, ls="--", color="gray", label=f"recommended N = {result.recommended_n}")
    if result.target is not None:
        ax.axhline(100 * result.target, ls=":", color="red", label=f"target {100 * result.target:g}%")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("samples per question N")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{bank.name}: {c.policy}, {result.questions} questions")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _simulate(bank: Path, problems, k: int | None, permutations: int, seed: int, as_json: bool,
              target: float | None = None, exact: bool = False) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    from ttscale.adaptive.simulate import default_max_samples, replay_pool, simulate
    from ttscale.adaptive.stopping import default_rules

    if not problems:
        raise ConfigError("bank", str(bank), "a bank with at least one question")
    if k is not None and k < 1:
        raise ConfigError("--k", k, "an integer >= 1")
    if target is not None and not (math.isfinite(target) and 0.0 < target <= 1.0):
        raise ConfigError("--target", target, "an accuracy as a fraction in (0, 1]")
    K = default_max_samples([p.n for p in problems]) if k is None else k
    rules = default_rules()
    with progress_bar(disable=as_json) as bar:
        task = bar.add_task("simulating", total=len(rules) + 3)
        pool = replay_pool(problems, K, permutations, seed)
        bar.advance(task)
        result = simulate(pool, rules, allocators=default_allocators(pool.k), seed=seed, on_rule=lambda _: bar.advance(task))
        # What a user picks from the table: each rule's cheapest setting that reaches the target
        # (default: majority of all K samples, within 0.1 point).
        goal = max(result.reference - SIMULATE_TOLERANCE, 0.0) if target is None else target
        exact_json, exact_cheapest = None, {}
        if exact:
            bar.update(task, description="exact tables")
            exact_json, exact_cheapest = _exact(problems, pool.k, rules, goal)
    if as_json:
        print(json.dumps({**result.to_json(target=goal), **({"exact": exact_json} if exact else {})}, allow_nan=False))
        return
    table = Table(title=f"{bank} — {result.questions} questions, {result.permutations} permutations; "
                        f"reference majority@{result.k} = {100 * result.reference:.2f}%")
    for col in ("rule", "param", "accuracy %", "stderr", "mean samples", "mean tokens"):
        table.add_column(col, justify="right")
    for name, pts in result.rules.items():
        for p in pts:
            table.add_row(name, f"{p.param:.4g}", f"{100 * p.accuracy:.2f}", f"{100 * p.stderr:.2f}", f"{p.mean_samples:.2f}",
                          "-" if p.mean_tokens is None else f"{p.mean_tokens:.0f}")
    out.print(table)
    what = f"{100 * goal:.2f}%" + (f" (majority@{result.k} - 0.1 point)" if target is None else "")
    cheapest = {n: p for n, p in result.cheapest(goal).items() if p is not None}
    if not cheapest:
        out.print(f"No rule setting reaches {what} on this bank.")
    else:
        out.print(f"Fewest mean samples per question reaching {what}, per rule")
        out.print(f"(saving: majority@{result.k}'s samples / the rule's):")
        _print_cheapest(cheapest, result.k, stderr=True)
        missing = [n for n in result.rules if n not in cheapest]
        if missing:
            out.print(f"  not reached: {', '.join(missing)}")
        out.print(f"Accuracies move by about their stderr between permutation seeds (--permutations {2 * result.permutations} steadies them).")
    if exact_json is not None:
        ex = exact_json
        out.print(f"Exact, over every order of every question's samples ({ex['states']} vote states; no permutation noise):")
        _print_cheapest({n: p for n, p in exact_cheapest.items() if p is not None}, result.k, stderr=False)
        for key, label in (("best", "Live"), ("default_rounds", "Live, default rounds")):
            dep = (ex["deploy"] or {}).get(key)
            if dep is not None:
                b = dep["budget"]
                out.print(f"  {label}: Budget(samples={b['samples']}, adaptive=True, pilot={b['pilot']}, step={b['step']}, "
                          f"confidence={b['confidence']}): {dep['mean_samples']:.2f} samples, {100 * dep['accuracy']:.2f}%")
        bound = ex["bound"]
        if bound["plurality_answer"] is None:
            out.print(f"  No vote-only rule reaches {what}.")
        else:
            any_answer = bound["any_answer"]
            out.print(f"  No vote-only rule or allocator reaches {what} with fewer than {bound['plurality_answer']:.2f} mean samples"
                      f" per question ({any_answer:.2f} if it may answer a non-plurality class): the Bayes-optimal rule that"
                      " knows this bank's answer distributions.")
    if result.dropped:
        out.print(f"note: {result.dropped} questions with fewer than {result.k} samples left out")


def _print_cheapest(cheapest: dict, k: int, stderr: bool) -> None:  # type: ignore[type-arg]
    """One line per rule's cheapest setting (RulePoints), fewest samples first, with the saving vs majority@k."""
    for name, p in sorted(cheapest.items(), key=lambda kv: kv[1].mean_samples):
        se = f" +- {100 * p.stderr:.2f}" if stderr else ""
        out.print(f"  {name:<15} {p.param:<7.4g} {p.mean_samples:6.2f} samples  {100 * p.accuracy:6.2f}%{se}  {k / p.mean_samples:4.1f}x")


DEPLOY_CONFIDENCES = (0.75, 0.8, 0.85, 0.875, 0.9, 0.925, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995, 0.999)
"""ASC thresholds tried for the live solver's adaptive budget."""


def _deploy(states, k: int, goal: float) -> dict | None:  # type: ignore[no-untyped-def]
    """The cheapest adaptive ``Budget`` (ASC checked after each round, as the live solver draws)
    that reaches ``goal`` exactly on this bank, over a few round sizes (``best``), and with the
    default rounds (``default_rounds``: fewer round trips); None when no setting reaches it."""
    from ttscale.adaptive.stopping import ASC
    from ttscale.live.solve import Budget

    base = Budget()
    default = (min(base.pilot, k), base.step)
    found: dict[str, dict] = {}
    for pilot, step in sorted({default, (min(2, k), 1), (1, 1)}):
        for c in DEPLOY_CONFIDENCES:
            samples, acc = states.evaluate(ASC(c), pilot=pilot, step=step)
            if acc < goal:
                continue
            row = {"budget": {"samples": k, "adaptive": True, "pilot": pilot, "step": step, "confidence": c},
                   "mean_samples": samples, "accuracy": acc}
            for key in ("best", "default_rounds") if (pilot, step) == default else ("best",):
                if key not in found or samples < found[key]["mean_samples"] - 1e-9:
                    found[key] = row
    return found or None


def _exact(problems, k: int, rules: dict, goal: float) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    """``plan --simulate --exact``: count-reading rules scored over every order, and the vote-only
    bound; (the JSON, each rule's cheapest exact point)."""
    from ttscale.adaptive.exact_replay import (
        VoteStates,
        bayes_frontier,
        exact_rule_points,
        samples_to_reach,
    )
    from ttscale.adaptive.simulate import cheapest_points, points_json

    states = VoteStates(problems, k)
    points = exact_rule_points(states, rules)
    cheapest = cheapest_points(points, goal)
    return {
        "states": states.states,
        "deploy": _deploy(states, k, goal),
        "rules": {name: [p.to_json() for p in pts] for name, pts in points.items()},
        "cheapest": points_json(cheapest),
        "bound": {"target": goal, "plurality_answer": samples_to_reach(bayes_frontier(states), goal),
                  "any_answer": samples_to_reach(bayes_frontier(states, plurality=False), goal)},
    }, cheapest
