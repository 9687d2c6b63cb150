"""Tables and plots of accuracy-at-k results (I/O edge: rich and matplotlib)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from ttscale.estimate.evaluate import EvalResult


def _pct(value: float) -> str:
    return "-" if value != value else f"{100 * value:.2f}"


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
