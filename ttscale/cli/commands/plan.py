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
    banks: Annotated[list[Path], typer.Argument(help="Bank file (JSONL): a pilot of a few samples per question. Several banks of the same questions (models, temperatures): plan across them.", metavar="BANK...")],
    target: Annotated[float | None, typer.Option("--target", help="Target accuracy (fraction, e.g. 0.94): the N that reaches it.")] = None,
    budget_samples: Annotated[float | None, typer.Option("--budget-samples", help="Samples per question: the accuracy they buy.")] = None,
    budget_tokens: Annotated[float | None, typer.Option("--budget-tokens", help="Tokens for all questions (see --per-question).")] = None,
    budget_dollars: Annotated[float | None, typer.Option("--budget-dollars", help="Dollars for all questions (needs prices).")] = None,
    per_question: Annotated[bool, typer.Option("--per-question", help="Token/dollar budgets are per question, not for the whole bank.")] = False,
    price_in: Annotated[float | None, typer.Option("--price-in", help="Dollars per million input (prompt) tokens.")] = None,
    price_out: Annotated[float | None, typer.Option("--price-out", help="Dollars per million output tokens.")] = None,
    prompt_tokens: Annotated[float | None, typer.Option("--prompt-tokens", help="Prompt tokens per question (default: problem text / 4).")] = None,
    output_tokens: Annotated[list[str] | None, typer.Option("--output-tokens", help="Generated tokens per sample (default: the bank's mean); with several banks T or BANK=T, repeatable.")] = None,
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
    cost: Annotated[list[str] | None, typer.Option("--cost", help="Several banks: BANK=IN,OUT dollars per million input/output tokens (repeatable).")] = None,
    costs: Annotated[Path | None, typer.Option("--costs", help='Several banks: a TOML of [banks."PATH"] price_in, price_out, output_tokens, prompt_tokens; active_params, kv_bytes (gqa, intensity) for eFLOPs.')] = None,
    pilot: Annotated[int | None, typer.Option("--pilot", min=2, help="Several banks: predict every option from the first M samples per question (and compare with the full banks).")] = None,
    horizon: Annotated[int | None, typer.Option("--horizon", min=2, help="Several banks: the default rule's largest horizon K (default: the largest whose exact tables stay small).")] = None,
    cascade_max_n: Annotated[int, typer.Option("--cascade-max-n", min=1, help="Several banks: largest N (or default-rule horizon K) of a cascade's earlier banks.")] = 16,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    equivalence: Annotated[EquivalenceMode, typer.Option("--equivalence", help="Answer equivalence: math or string.")] = EquivalenceMode.MATH,
    grade: Annotated[GradeSource, typer.Option("--grade", help="Correctness from: auto, reference, field.")] = GradeSource.AUTO,
    scorer: Annotated[str | None, typer.Option("--scorer", help="Named reward (samples' rewards.NAME) instead of 'reward': reward policies, and with several banks their Best-of-N and weighted-majority options.")] = None,
) -> None:
    """Plan sample budgets: N for a target, accuracy for a budget, the saturation point."""
    if len(banks) > 1:
        _plan_models(banks, target=target, budget_samples=budget_samples, budget_tokens=budget_tokens, budget_dollars=budget_dollars,
                     per_question=per_question, price_in=price_in, price_out=price_out, prompt_tokens=prompt_tokens,
                     output_tokens=output_tokens, spec_given=active_params is not None or kv_bytes is not None, policy=policy,
                     level=level, plot=plot, simulate=simulate, cost=cost, costs=costs, pilot=pilot, horizon=horizon,
                     cascade_max_n=cascade_max_n, seed=seed, as_json=as_json, equivalence=equivalence, grade=grade, scorer=scorer)
        return
    bank = banks[0]
    if cost or costs is not None or pilot is not None:
        raise ConfigError("--cost/--costs/--pilot", "one bank", "two or more banks (one bank: --price-in/--price-out)")
    one_output = _one_output_tokens(output_tokens)
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
    from ttscale.search.bank import refuse_search_bank

    data = read_graded_bank(bank, equivalence, grade, scorer, quiet=True)
    refuse_search_bank(bank, data.bank.records, "fit curves over N")
    with progress_bar(disable=as_json) as bar:
        bar.add_task(f"fitting {policy}", total=None)
        result = plan(data, policy=policy, target=target, budget_samples=budget_samples, budget_tokens=budget_tokens,
                      budget_dollars=budget_dollars, per_question=per_question, prices=prices, spec=spec,
                      prompt_tokens=prompt_tokens, output_tokens=one_output, epsilon=epsilon, max_n=max_n,
                      level=level, seed=seed)
    if plot is not None:
        plot_plan(result, plot, bank)
    if as_json:
        print(json.dumps(result.to_json(), allow_nan=False))
        return
    print_plan(result, bank, plot)


def _one_output_tokens(values: list[str] | None) -> float | None:
    """One bank's --output-tokens: one number."""
    if not values:
        return None
    if len(values) > 1:
        raise ConfigError("--output-tokens", values, "one number of tokens per sample for one bank")
    try:
        return float(values[0])
    except ValueError:
        raise ConfigError("--output-tokens", values[0], "a number of tokens per sample") from None


def _per_bank_tokens(values: list[str] | None, paths: list[str]) -> dict[str, float]:
    """--output-tokens T (every bank) or BANK=T, repeatable."""
    out: dict[str, float] = {}
    for text in values or []:
        bank, sep, num = text.rpartition("=")
        try:
            value = float(num)
        except ValueError:
            raise ConfigError("--output-tokens", text, "T or BANK=T, a number of generated tokens per sample") from None
        if not (value > 0 and value < float("inf")):
            raise ConfigError("--output-tokens", text, "a positive number of tokens per sample")
        for p in (paths if not sep else [bank]):
            out[p] = value
    return out


def _plan_models(banks: list[Path], *, target: float | None, budget_samples: float | None, budget_tokens: float | None,
                 budget_dollars: float | None, per_question: bool, price_in: float | None, price_out: float | None,
                 prompt_tokens: float | None, output_tokens: list[str] | None, spec_given: bool, policy: str, level: float,
                 plot: Path | None, simulate: bool, cost: list[str] | None, costs: Path | None, pilot: int | None, horizon: int | None,
                 cascade_max_n: int, seed: int, as_json: bool, equivalence: EquivalenceMode, grade: GradeSource,
                 scorer: str | None = None) -> None:
    """``ttscale plan A B ...``: options across banks of the same questions, their frontier, the answer."""
    from ttscale.cli.commands.eval import check_plot_path
    from ttscale.cli.console import err
    from ttscale.offline import plan_models
    from ttscale.planning.cost import Prices
    from ttscale.planning.models import load_costs, parse_cost, parse_spec
    from ttscale.cli.models_report import plot_models, print_models

    for flag, value in (("--budget-samples", budget_samples), ("--price-in", price_in), ("--price-out", price_out)):
        if value is not None:
            raise ConfigError(flag, value, "one bank only; with several banks give --cost BANK=IN,OUT per bank"
                              + (" and --budget-dollars/--budget-tokens" if flag == "--budget-samples" else ""))
    if spec_given:
        raise ConfigError("--active-params/--kv-bytes", "several banks",
                          'one bank; with several banks give active_params and kv_bytes per bank in --costs ([banks."PATH"])')
    if simulate:
        raise ConfigError("--simulate", True, "one bank (`ttscale simulate BANK`)")
    if policy != "majority":
        raise ConfigError("--policy", policy, "majority with several banks (options are majority@N, the default rule and cascades)")
    check_plot_path(plot)
    paths = [str(b) for b in banks]
    prices: dict[str, Prices] = {}
    tokens: dict[str, float] = {}
    prompts: dict[str, float] = {} if prompt_tokens is None else {p: float(prompt_tokens) for p in paths}
    specs = {}
    if costs is not None:
        for bank, entry in load_costs(costs).items():
            if (spec := parse_spec(bank, entry, str(costs))) is not None:
                specs[bank] = spec
            if "price_in" in entry:
                prices[bank] = Prices(input=entry["price_in"], output=entry["price_out"])
            if "output_tokens" in entry:
                tokens[bank] = entry["output_tokens"]
            if "prompt_tokens" in entry:
                prompts[bank] = entry["prompt_tokens"]
    for text in cost or []:
        bank, price = parse_cost(text)
        prices[bank] = price
    tokens.update(_per_bank_tokens(output_tokens, paths))
    from ttscale.search.bank import refuse_search_bank

    graded, read_notes = [], []
    for b in banks:
        g, note = _read_plan_bank(b, equivalence, grade, scorer, as_json)
        refuse_search_bank(b, g.bank.records, "fit curves over N")
        graded.append(g)
        read_notes += [note] if note else []
    with progress_bar(disable=as_json) as bar:
        bar.add_task("options", total=None)
        result = plan_models(graded, labels=paths, prices=prices, output_tokens=tokens, prompt_tokens=prompts, specs=specs, pilot=pilot,
                             target=target, budget_dollars=budget_dollars, budget_tokens=budget_tokens,
                             per_question=per_question, level=level, horizon=horizon, cascade_max_n=cascade_max_n, seed=seed)
    result.notes[:0] = read_notes + _named_reward_hints(graded, paths, scorer)
    if plot is not None:
        plot_models(result, plot)
    if as_json:
        for note in result.notes:
            err.print(f"note: {note}", highlight=False)
        print(json.dumps(result.to_json(), allow_nan=False))
        return
    print_models(result, plot)


def _read_plan_bank(bank: Path, equivalence: EquivalenceMode, grade: GradeSource, scorer: str | None,
                    quiet: bool) -> tuple[object, str | None]:
    """A bank read for planning: a file with rewards on only some samples of a question is read
    without them there (and a note says so) rather than refused, since only reward options need them."""
    from ttscale.errors import BankFormatError
    from ttscale.offline import read_bank_for_plan

    try:
        return read_graded_bank(bank, equivalence, grade, scorer, quiet=quiet), None
    except BankFormatError as exc:
        field = exc.field or ""
        if not (field.endswith(".reward") or ".rewards." in field):
            raise
    return read_bank_for_plan(bank, equivalence, grade, scorer)


def _named_reward_hints(graded: list, paths: list[str], scorer: str | None) -> list[str]:
    """Banks with no rewards under the name read but every sample scored under another: name it."""
    notes = []
    for path, g in zip(paths, graded):
        if any(c.rewards is not None for c in g.candidates):
            continue
        names = None
        for r in g.bank.records:
            for s in r.samples:
                have = set(s.rewards or {})
                names = have if names is None else names & have
        if names:
            name = min(names)
            notes.append(f"{path}: no '{'rewards.' + scorer if scorer else 'reward'}' on its samples, but every sample has "
                         f"rewards.{name}: --scorer {name} for Best-of-N and weighted-majority options")
    return notes
