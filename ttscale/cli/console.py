"""Console helpers shared by the CLI commands: typed errors as one line, progress bars on stderr."""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from ttscale.errors import ConfigError, TTScaleError

if TYPE_CHECKING:
    from ttscale.answers.candidates import Candidates
    from ttscale.records.bank import Bank

out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Print ttscale's typed errors as one clear line and exit non-zero, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TTScaleError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def progress_bar(disable: bool = False) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=disable,
    )


E = TypeVar("E", bound=Enum)


def parse_choice(option: str, value: str, kind: type[E]) -> E:
    """An enum member from a CLI string, or a ConfigError naming the option and the choices."""
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(option, value, "one of " + ", ".join(m.value for m in kind)) from None  # type: ignore[attr-defined]


def load_candidates(
    bank: Path,
    equivalence: str = "math",
    grade: str = "auto",
    scorer: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[Bank, list[Candidates]]:
    """Read a bank and turn it into the numeric core (answer classes, correctness, rewards).

    A skipped truncated last line is reported on stderr.
    """
    from ttscale.answers import AnswerClassifier, EquivalenceConfig, EquivalenceMode
    from ttscale.answers.grading import GradeSource, bank_candidates
    from ttscale.records.bank import read_bank

    mode = parse_choice("--equivalence", equivalence, EquivalenceMode)
    source = parse_choice("--grade", grade, GradeSource)
    data = read_bank(bank)
    if data.truncated_line is not None:
        err.print(f"[yellow]warning:[/] {bank}, line {data.truncated_line}: truncated last line skipped")
    classifier = AnswerClassifier(EquivalenceConfig(mode=mode))
    problems = bank_candidates(data.records, classifier, grade=source, scorer=scorer, path=data.path, progress=progress)
    return data, problems
