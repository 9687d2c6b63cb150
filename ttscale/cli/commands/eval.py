"""``ttscale eval``: accuracy at k for each policy from one pool of samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ttscale.answers.equivalence import EquivalenceMode
from ttscale.answers.grading import GradeSource
from ttscale.cli.console import handle_errors, out, progress_bar, read_graded_bank
from ttscale.errors import ConfigError

K_LIST_HELP = "comma-separated positive integers, e.g. 1,2,4,8"


def parse_k_list(text: str | None) -> list[int] | None:
    """``--k 1,2,4``: the k values, or None for the default grid."""
    if text is None:
        return None
    try:
        ks = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise ConfigError("--k", text, K_LIST_HELP) from None
    if not ks or min(ks) < 1:
        raise ConfigError("--k", text, K_LIST_HELP)
    return ks


PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def check_plot_path(plot: Path | None) -> None:
    """Refuse a --plot path matplotlib would not write as given (without a known suffix it writes
    PATH.png, beside a directory of that name or a device) before any work is done."""
    if plot is None:
        return
    if plot.suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError("--plot", str(plot), f"a file path ending in {', '.join(PLOT_SUFFIXES)}")
    if plot.exists() and not plot.is_file():
        raise ConfigError("--plot", str(plot), "a path to a regular file (this is a directory or device)")


def _note_search_bank(bank: Path, records: list) -> None:  # type: ignore[type-arg]
    """A search bank is evaluated as a pool of its final candidates: say what that means (stderr only)."""
    from ttscale.cli.console import err
    from ttscale.search.bank import search_bank_info

    info = search_bank_info(records)
    if info is None:
        return
    err.print(f"note: {bank} holds {info.describe()}: each problem's final candidates are evaluated as one pool "
              "(k below the width is a subset of one search, not a smaller search); tokens are the candidates' own, "
              f"while the search generated {info.generated_tokens_per_problem:,.0f} per problem (pruned steps included) "
              f"and its scorer read {info.scored_tokens_per_problem:,.0f}", highlight=False, markup=False, soft_wrap=True)


@handle_errors
def eval_command(
    bank: Annotated[Path, typer.Argument(help="Bank file (JSONL, one problem per line).")],
    policy: Annotated[list[str] | None, typer.Option("--policy", "-p", help="Policy preset name or TOML path (repeatable; majority is always included); NAME:key=value overrides params.")] = None,
    k: Annotated[str | None, typer.Option("--k", help="Comma-separated k grid (default 1,2,4,...,n).")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG plot of accuracy against k.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    equivalence: Annotated[EquivalenceMode, typer.Option("--equivalence", help="Answer equivalence: math (math-verify) or string.")] = EquivalenceMode.MATH,
    grade: Annotated[GradeSource, typer.Option("--grade", help="Correctness from: auto, reference, field (the samples' 'correct').")] = GradeSource.AUTO,
    scorer: Annotated[str | None, typer.Option("--scorer", help="Named reward (samples' rewards.NAME) instead of 'reward'.")] = None,
    count_stopped: Annotated[bool, typer.Option("--count-stopped", help="Traces the online early stop ended vote with the answer their partial text reached (by default they do not vote).")] = False,
    draws: Annotated[int, typer.Option("--draws", min=1, help="Resampling draws per problem and k for policies without a closed form.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of resampling estimates.")] = 0,
) -> None:
    """Accuracy at k for each policy from one pool of samples: exact where possible."""
    from ttscale.cli.report import eval_table, plot_eval
    from ttscale.estimate.evaluate import default_k_grid, exact_form
    from ttscale.limits import check_draws
    from ttscale.offline import evaluate
    from ttscale.selection.policy import load_policy

    ks = parse_k_list(k)
    check_plot_path(plot)
    policies = [load_policy(name) for name in dict.fromkeys(["majority", *(policy or [])])]
    data = read_graded_bank(bank, equivalence, grade, scorer, count_stopped=count_stopped)
    _note_search_bank(bank, data.bank.records)
    sizes = [c.n for c in data.candidates]
    if sizes and any(exact_form(p) is None for p in policies):  # only resampled policies use --draws
        check_draws(draws, len(ks) if ks is not None else len(default_k_grid(sizes)))
    with progress_bar() as bar:
        task = bar.add_task("policies", total=len(policies))
        result = evaluate(data, policies, ks, draws=draws, seed=seed, on_policy=lambda _: bar.advance(task))
    if plot is not None:
        plot_eval(result, plot, title=f"{bank.name}: accuracy at k ({result.problems} problems)")
    if as_json:
        print(json.dumps(result.to_json()))
        return
    out.print(eval_table(result, title=f"{bank} — {result.problems} problems, accuracy (%) at k"))
    if plot is not None:
        out.print(f"plot: {plot}")
