"""The ``ttscale`` command."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from ttscale.cli.console import handle_errors, load_candidates, out, progress_bar
from ttscale.errors import ConfigError

app = typer.Typer(
    name="ttscale",
    help="Inference-time compute optimizer: which answer to trust, how many samples, what a budget buys.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
def parse_k_list(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        ks = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise ConfigError("--k", text, "comma-separated positive integers, e.g. 1,2,4,8") from None
    if not ks or min(ks) < 1:
        raise ConfigError("--k", text, "comma-separated positive integers, e.g. 1,2,4,8")
    return ks


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command("eval")
@handle_errors
def eval_command(
    bank: Annotated[Path, typer.Argument(help="Bank file (JSONL, one problem per line).")],
    policy: Annotated[list[str] | None, typer.Option("--policy", "-p", help="Policy preset name or TOML path (repeatable); NAME:key=value overrides params.")] = None,
    k: Annotated[str | None, typer.Option("--k", help="Comma-separated k grid (default 1,2,4,...,n).")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG plot of accuracy against k.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    equivalence: Annotated[str, typer.Option("--equivalence", help="Answer equivalence: math (math-verify) or string.")] = "math",
    grade: Annotated[str, typer.Option("--grade", help="Correctness from: auto, reference, field (the samples' 'correct').")] = "auto",
    scorer: Annotated[str | None, typer.Option("--scorer", help="Named reward (samples' rewards.NAME) instead of 'reward'.")] = None,
    draws: Annotated[int, typer.Option("--draws", help="Resampling draws per problem and k for policies without a closed form.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of resampling estimates.")] = 0,
) -> None:
    """Accuracy at k for each policy from one pool of samples: exact where possible."""
    from ttscale.cli.report import eval_table, plot_eval
    from ttscale.estimate.evaluate import evaluate
    from ttscale.selection.policy import load_policy

    ks = parse_k_list(k)
    if draws < 1:
        raise ConfigError("--draws", draws, "a positive integer")
    names = list(dict.fromkeys(["majority", *(policy or [])]))
    policies = [load_policy(name) for name in names]
    with progress_bar() as bar:
        task = bar.add_task("answer classes", total=None)
        _, problems = load_candidates(bank, equivalence, grade, scorer, progress=lambda step: bar.advance(task, step))
        ptask = bar.add_task("policies", total=len(policies))
        result = evaluate(problems, policies, ks, draws=draws, seed=seed, on_policy=lambda _: bar.advance(ptask))
    if plot is not None:
        plot_eval(result, plot, title=f"{bank.name}: accuracy at k ({result.problems} problems)")
    if as_json:
        print(json.dumps(result.to_json()))
        return
    out.print(eval_table(result, title=f"{bank} — {result.problems} problems, accuracy (%) at k"))
    if plot is not None:
        out.print(f"plot: {plot}")


def _register_commands() -> None:
    # Command modules import this one (for err/handle_errors), so they are attached last.
    from ttscale.cli.commands.bench import bench_command
    from ttscale.cli.commands.demo import demo_command
    from ttscale.cli.commands.plan import plan_command
    from ttscale.cli.commands.sample import sample_command
    from ttscale.cli.commands.score import score_command
    from ttscale.cli.commands.serve import serve_command

    app.command("sample")(sample_command)
    app.command("score")(score_command)
    app.command("demo")(demo_command)
    app.command("plan")(plan_command)
    app.command("bench")(bench_command)
    app.command("serve")(serve_command)


_register_commands()


if __name__ == "__main__":  # pragma: no cover
    app()
