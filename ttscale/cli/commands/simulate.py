"""``ttscale simulate``: replay adaptive stopping rules and allocators on a bank; each rule's
cheapest setting reaching a target; with ``--exact``, scored over every sample order."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ttscale.answers.equivalence import EquivalenceMode
from ttscale.answers.grading import GradeSource
from ttscale.cli.console import handle_errors, renamed_option

TARGET_HELP = "Target accuracy (fraction): each rule's cheapest setting reaching it (default: majority@K - 0.1 point)."
EXACT_HELP = ("Also score count-reading rules over every sample order (no permutation noise), the cheapest live adaptive "
              "Budget and the best any vote-only rule can do (seconds on few-answer banks, minutes on scattered ones).")
MAX_K_HELP = "Most samples per question a rule may read, K (default: the pool size 90% of questions have)."
PERMUTATIONS_HELP = "Seeded orderings of each question's samples."


@handle_errors
def simulate_command(
    bank: Annotated[Path, typer.Argument(help="Bank file (JSONL) with the samples to replay.")],
    target: Annotated[float | None, typer.Option("--target", help=TARGET_HELP)] = None,
    exact: Annotated[bool, typer.Option("--exact", help=EXACT_HELP)] = False,
    max_k: Annotated[int | None, typer.Option("--max-k", min=1, help=MAX_K_HELP)] = None,
    k: Annotated[int | None, typer.Option("--k", min=1, hidden=True, help="Deprecated: --max-k.")] = None,
    permutations: Annotated[int, typer.Option("--permutations", min=2, help=PERMUTATIONS_HELP)] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the permutations.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    equivalence: Annotated[EquivalenceMode, typer.Option("--equivalence", help="Answer equivalence: math or string.")] = EquivalenceMode.MATH,
    grade: Annotated[GradeSource, typer.Option("--grade", help="Correctness from: auto, reference, field.")] = GradeSource.AUTO,
    early_stop_window: Annotated[int | None, typer.Option("--early-stop-window", help="Replayed early stop (banks sampled with --token-confidence): sliding window of the group confidence, in tokens (default 2048).")] = None,
    early_stop_warmup: Annotated[int | None, typer.Option("--early-stop-warmup", help="Replayed early stop: traces per question run in full to calibrate the threshold (default 16).")] = None,
) -> None:
    """Replay stopping rules and allocators on a bank: accuracy against mean samples per rule setting."""
    from ttscale.cli.report import run_simulation
    from ttscale.cli.sampling_options import early_stop_params

    early_stop = early_stop_params(window=early_stop_window, warmup=early_stop_warmup)
    run_simulation(bank, max_k=renamed_option("--max-k", max_k, "--k", k), permutations=permutations, seed=seed, target=target,
                   exact=exact, as_json=as_json, equivalence=equivalence, grade=grade, early_stop=early_stop)
