"""Console helpers shared by the CLI commands: typed errors as one line, progress bars on stderr."""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from ttscale.errors import TTScaleError

if TYPE_CHECKING:
    from ttscale.answers.equivalence import EquivalenceMode
    from ttscale.answers.grading import GradeSource
    from ttscale.offline import GradedBank

out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EIO}
"""Disk full, file size limit, quota, read-only or failing disk: the machine's trouble, told in one line."""
T = TypeVar("T")


def handle_errors(fn: F) -> F:
    """Print ttscale's typed errors as one clear line and exit non-zero, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TTScaleError as exc:
            # escape: a message quoting "[banks]" or a file named "a[1].jsonl" is text, not rich markup
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:
            if exc.errno not in _WRITE_ERRNOS:
                raise
            # A write the code did not wrap (a plot, a report): still one line, not a traceback.
            where = f"{escape(str(exc.filename))}: " if exc.filename else ""
            err.print(f"[bold red]error:[/] {where}cannot write: {exc.strerror} (errno {exc.errno}); free space and rerun",
                      highlight=False, soft_wrap=True)
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


def read_graded_bank(
    bank: Path,
    equivalence: EquivalenceMode,
    grade: GradeSource,
    scorer: str | None = None,
    *,
    quiet: bool = False,
    count_stopped: bool = False,
) -> GradedBank:
    """:func:`ttscale.offline.read_bank` with a progress bar on stderr, and a skipped truncated last
    line reported there."""
    from ttscale.offline import read_bank

    with progress_bar(disable=quiet) as bar:
        task = bar.add_task("answer classes", total=None)
        data = read_bank(bank, equivalence=equivalence, grade=grade, scorer=scorer, count_stopped=count_stopped,
                         progress=lambda step: bar.advance(task, step))
    if data.bank.truncated_line is not None:
        err.print(f"[yellow]warning:[/] {bank}, line {data.bank.truncated_line}: truncated last line skipped")
    return data


def deprecated(note: str) -> None:
    """One line on stderr about a deprecated option, command or name (stdout, JSON included, unchanged)."""
    err.print(f"note: {note}", highlight=False, soft_wrap=True)


def show_deprecations() -> None:
    """Print ttscale's own deprecation warnings (a renamed preset or selector) as :func:`deprecated` lines,
    once each; other libraries' warnings keep Python's defaults (hidden unless ``-W`` says otherwise)."""
    import warnings

    from ttscale.errors import TTScaleDeprecationWarning

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if issubclass(category, TTScaleDeprecationWarning):
            deprecated(str(message))
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.filterwarnings("default", category=TTScaleDeprecationWarning)


def renamed_option(new: str, new_value: T | None, old: str, old_value: T | None) -> T | None:
    """The value of option ``new``, or of ``old``, its former name (with a deprecation note)."""
    if old_value is None:
        return new_value
    deprecated(f"{old} is deprecated here, use {new}")
    return old_value if new_value is None else new_value


_SECRET_OPTIONS = {"--api-key": "OPENAI_API_KEY", "--upstream-api-key": "TTSCALE_UPSTREAM_API_KEY"}
"""Options holding a key, and the environment variable that keeps it out of ``ps``."""


def warn_secrets_in_argv(argv: list[str]) -> None:
    """One warning line per key given on the command line: any user of the machine can read it in
    the process list; the environment variable named keeps it private."""
    command = argv[0] if argv else ""
    for option, env in _SECRET_OPTIONS.items():
        if any(a == option or a.startswith(option + "=") for a in argv):
            env = "TTSCALE_API_KEY" if command == "serve" and option == "--api-key" else env
            err.print(f"[yellow]warning:[/] {option} on the command line shows in the process list (ps); set {env} instead",
                      highlight=False, soft_wrap=True)


_LIBRARIES = r"(vllm|torch|transformers|ray|huggingface_hub|datasets)(\.|$)"
"""Modules whose Python warnings -v shows and a plain run hides."""


def third_party_logs(verbose: bool) -> None:
    """Hide the engines' start-up chatter (vLLM's INFO/WARNING lines, torch's and transformers'
    warnings, weight-loading bars) unless ``-v``; with it, show vLLM's INFO lines.

    Set in the environment before any command imports vLLM or transformers, which read it once;
    a variable the user set wins. vLLM logs to stdout by default: sent to stderr here either way,
    so ``--json`` output stays one JSON object.
    """
    import os
    import warnings

    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    if verbose:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO")
        return
    quiet = {
        "VLLM_LOGGING_LEVEL": "ERROR",
        "TRANSFORMERS_VERBOSITY": "error",
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TQDM_DISABLE": "1",  # vLLM's and transformers' weight-loading bars (ttscale's own bars are rich's)
        "TORCH_CPP_LOG_LEVEL": "ERROR",
        "RAY_BACKEND_LOG_LEVEL": "error",
        "RAY_DEDUP_LOGS": "1",
    }
    for key, value in quiet.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", module=_LIBRARIES)
    # torch resets its own top logger's level on import, not its children's.
    for name in ("torch._library", "torch.distributed", "transformers", "ray", "vllm"):
        logging.getLogger(name).setLevel(logging.ERROR)
