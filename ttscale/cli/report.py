"""What the commands print: tables and plots of eval, plan and simulate results (I/O edge: rich
and matplotlib)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from ttscale.cli.console import out
from ttscale.estimate.evaluate import EvalResult

if TYPE_CHECKING:
    from ttscale.adaptive.simulate import RulePoint
    from ttscale.answers.equivalence import EquivalenceMode
    from ttscale.answers.grading import GradeSource
    from ttscale.planning.plan import PlanResult
    from ttscale.planning.simulation import SimulationReport


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.2f}"


def eval_table(result: EvalResult, title: str | None = None) -> Table:
    """Accuracy (%) per policy and k; pass@k as the oracle ceiling; tokens at k when known."""
    errors = [se for c in result.policies.values() if c.stderr is not None for se in c.stderr]
    caption = (
        f"* resampled estimate (Monte Carlo standard error <= {100 * max(errors):.2f} points); others exact"
        if errors else None
    )
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    table.add_column("policy", style="bold", no_wrap=True)
    for k in result.k:
        table.add_column(f"@{k}", justify="right")
    for name, curve in result.policies.items():
        label = name if curve.method == "exact" else f"{name} *"
        table.add_row(label, *[_pct(acc) for acc in curve.accuracy])
    table.add_row("pass (oracle)", *[_pct(v) for v in result.pass_at_k], style="dim")
    if result.tokens is not None:
        table.add_row("tokens", *[f"{t:,.0f}" for t in result.tokens], style="dim")
    if len(set(result.problems_at_k)) > 1:
        table.add_row("problems", *[str(p) for p in result.problems_at_k], style="dim")
    return table


def plot_eval(result: EvalResult, path: str | Path, title: str | None = None) -> Path:
    """Accuracy against k per policy (log2 k axis), pass@k dashed as the oracle ceiling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
    ks = result.k
    ax.plot(ks, [100 * v for v in result.pass_at_k], "k--", label="pass@k (oracle)", linewidth=1.2)
    for name, curve in result.policies.items():
        acc = [100 * v for v in curve.accuracy]
        if curve.stderr is not None:
            err = [196 * s for s in curve.stderr]  # 95% interval in points
            ax.errorbar(ks, acc, yerr=err, marker="o", markersize=3, capsize=2, label=f"{name} (resampled)")
        else:
            ax.plot(ks, acc, marker="o", markersize=3, label=name)
    if len(ks) > 1 and ks[-1] / ks[0] >= 8:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("samples per problem (k)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or f"accuracy at k ({result.problems} problems)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def print_plan(result: PlanResult, bank: Path, plot: Path | None) -> None:
    """``ttscale plan``'s table of N against accuracy, interval and costs, and its advice."""
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


def plot_plan(result: PlanResult, path: Path, bank: Path) -> None:
    """The fitted curve, its interval, the observed points, the recommended N and the target."""
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


def print_simulation(report: SimulationReport, bank: Path) -> None:
    """``ttscale simulate``'s table of every rule setting, each rule's cheapest setting reaching the
    target and, with the exact tables, the live budget and the vote-only bound."""
    result = report.result
    table = Table(title=f"{bank} — {result.questions} questions, {result.permutations} permutations; "
                        f"reference majority@{result.k} = {100 * result.reference:.2f}%")
    for col in ("rule", "param", "accuracy %", "stderr", "mean samples", "mean tokens"):
        table.add_column(col, justify="right")
    for name, pts in result.rules.items():
        for p in pts:
            table.add_row(name, f"{p.param:.4g}", f"{100 * p.accuracy:.2f}", f"{100 * p.stderr:.2f}", f"{p.mean_samples:.2f}",
                          "-" if p.mean_tokens is None else f"{p.mean_tokens:.0f}")
    out.print(table)
    what = f"{100 * report.target:.2f}%" + (f" (majority@{result.k} - 0.1 point)" if report.default_target else "")
    cheapest = {n: p for n, p in report.cheapest().items() if p is not None}
    if not cheapest:
        out.print(f"No rule setting reaches {what} on this bank.")
    else:
        out.print(f"Fewest mean samples per question reaching {what}, per rule")
        out.print(f"(saving: majority@{result.k}'s samples / the rule's; mean tokens per question where the bank has them):")
        _print_cheapest(cheapest, result.k, stderr=True)
        missing = [n for n in result.rules if n not in cheapest]
        if missing:
            out.print(f"  not reached: {', '.join(missing)}")
        out.print(f"Accuracies move by about their stderr between permutation seeds (--permutations {2 * result.permutations} steadies them).")
    ex = report.exact
    if ex is not None:
        out.print(f"Exact, over every order of every question's samples ({ex.states} vote states; no permutation noise):")
        _print_cheapest({n: p for n, p in ex.cheapest.items() if p is not None}, result.k, stderr=False)
        b = ex.deploy
        if b is not None:
            out.print(f"  Live: Budget(samples={b.samples}, adaptive=True, confidence={b.confidence}) runs the default rule:"
                      f" {b.mean_samples:.2f} samples, {100 * b.accuracy:.2f}%")
        if ex.bound.plurality_answer is None:
            out.print(f"  No vote-only rule reaches {what}.")
        else:
            out.print(f"  No vote-only rule or allocator reaches {what} with fewer than {ex.bound.plurality_answer:.2f} mean samples"
                      f" per question ({ex.bound.any_answer:.2f} if it may answer a non-plurality class): the Bayes-optimal rule that"
                      " knows this bank's answer distributions.")
        h = ex.bound.held_out
        if h is not None:
            splits = f"{h.splits} random halvings" if h.splits > 1 else "a random halving"
            if h.samples is not None:
                out.print(f"  Held out, that rule learnt on half of the questions and scored on the other half ({splits}, both"
                          f" ways) needs {h.samples:.2f}: what knowing other questions of this workload buys.")
            else:
                out.print(f"  Held out, that rule learnt on half of the questions never reaches {what} on the other half ({splits},"
                          f" both ways; best {100 * h.best_accuracy:.2f}%): its vote states nearly identify the questions, so the"
                          " bound above is out of reach for a rule that has not seen them.")
    if result.dropped:
        out.print(f"note: {result.dropped} questions with fewer than {result.k} samples left out")
    if report.lowered_from is not None:
        out.print(f"note: K = {result.k}, not the pool size {report.lowered_from}: the exact tables at {report.lowered_from} samples"
                  " would not fit in memory (TTSCALE_MAX_ARRAY_BYTES); --max-k chooses K")


def _print_cheapest(cheapest: dict[str, RulePoint], k: int, stderr: bool) -> None:
    """One line per rule's cheapest setting, fewest samples first, with the saving vs majority@k."""
    for name, p in sorted(cheapest.items(), key=lambda kv: kv[1].mean_samples):
        se = f" +- {100 * p.stderr:.2f}" if stderr else ""
        tokens = f"  {p.mean_tokens:,.0f} tokens" if p.mean_tokens is not None else ""
        out.print(f"  {name:<15} {p.param:<7.4g} {p.mean_samples:6.2f} samples  {100 * p.accuracy:6.2f}%{se}  {k / p.mean_samples:4.1f}x{tokens}")


def run_simulation(bank: Path, *, max_k: int | None, permutations: int, seed: int, target: float | None, exact: bool,
                   as_json: bool, equivalence: EquivalenceMode, grade: GradeSource, early_stop: Any = None) -> None:
    """Read and grade ``bank``, run :func:`ttscale.offline.simulate` under a progress bar, print the
    JSON or the tables (``ttscale simulate`` and its ``plan --simulate`` alias). ``early_stop``: the
    window and warm-up of the replayed online early stop (an ``EarlyStopParams``, None: defaults)."""
    import json

    from ttscale.cli.console import progress_bar, read_graded_bank
    from ttscale.offline import simulate
    from ttscale.search.bank import refuse_search_bank

    data = read_graded_bank(bank, equivalence, grade, quiet=as_json)
    refuse_search_bank(bank, data.bank.records, "replay stopping rules over")
    with progress_bar(disable=as_json) as bar:
        task = bar.add_task("simulating", total=None)
        report = simulate(data, exact=exact, target=target, max_k=max_k, permutations=permutations, seed=seed,
                          early_stop=early_stop, on_step=lambda name: bar.update(task, description=name))
    if as_json:
        print(json.dumps(report.to_json(), allow_nan=False))
        return
    print_simulation(report, bank)
