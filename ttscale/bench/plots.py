"""The PNG plots of a ``ttscale bench`` report, drawn from a :class:`~ttscale.bench.results.BenchResults`.

Accuracy against samples per problem (observed points and the fitted curves beyond), against
generated tokens per question, per difficulty bucket, and (with ``--search``) search and sampling
against total tokens per problem. Matplotlib is imported only to draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ttscale.bench.results import (
    BenchResults,
    Curve,
    EvalSection,
    FitError,
    FittedCurve,
    PlannerFit,
)

PLOT_SAMPLES = "accuracy_vs_samples.png"
PLOT_TOKENS = "accuracy_vs_tokens.png"
PLOT_DIFFICULTY = "difficulty.png"
PLOT_TOTAL_TOKENS = "accuracy_vs_total_tokens.png"


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(names: Sequence[str]) -> dict[str, str]:
    """One colour per policy, the same in every plot (black is kept for pass@k)."""
    return {name: f"C{i % 10}" for i, name in enumerate(names)}


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")


def _markers(names: Sequence[str]) -> dict[str, str]:
    """One open marker shape per policy, so policies that agree (lines on top of each other) stay visible."""
    return {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(names)}


def _log2_axis(ax: Any, top: float) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_xscale("log", base=2)
    ticks = [2**i for i in range(int(top).bit_length()) if 2**i <= top]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _plain_log_axis(ax: Any) -> None:
    """Log x axis labelled 10, 20, 50, 100, ... in plain numbers (no 3x10^1 clutter)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _observed(ax: Any, xs: Sequence[float], curve: Curve, label: str, color: str, marker: str) -> None:
    acc = [None if a is None else 100 * a for a in curve.accuracy]
    style = dict(marker=marker, ms=6, mfc="none", mew=1.3, color=color, lw=1.4, zorder=3)
    if curve.resampled and curve.stderr:
        err = [0 if s is None else 196 * s for s in curve.stderr]  # 95% interval in points
        ax.errorbar(xs, acc, yerr=err, capsize=2, label=f"{label} (resampled)", **style)
    else:
        ax.plot(xs, acc, label=label, **style)


def _fitted(ax: Any, xs: Sequence[float], fit: PlannerFit, c: FittedCurve, label: str, color: str, style: str) -> None:
    """The fitted curve ``c`` (of ``fit``, or a stretch of it) with its interval band."""
    ax.fill_between(xs, [100 * v for v in c.low], [100 * v for v in c.high], color=color,
                    alpha=0.15 if color != "black" else 0.07, lw=0, zorder=1)
    ax.plot(xs, [100 * v for v in c.mean], style, color=color, lw=1.3, zorder=2,
            label=f"{label}: fitted ({fit.method}), {int(100 * fit.level)}% interval")


def _finish(fig: Any, ax: Any, path: Path, title: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")


def _observed_points(ax: Any, ev: EvalSection, xs: Sequence[float], colors: dict[str, str]) -> None:
    """Every policy's observed accuracy and pass@k at ``xs`` (samples or tokens at each k)."""
    markers = _markers(list(ev.policies))
    for name, curve in ev.policies.items():
        _observed(ax, xs, curve, name, colors[name], markers[name])
    ax.plot(xs, [100 * v for v in ev.pass_at_k], "x", color="black", ms=6, zorder=4, label="pass@k observed")


def plot_samples(results: BenchResults, path: Path) -> Path:
    """Accuracy against samples per problem: every policy observed (k <= n), the planner's fitted curves to N_max."""
    plt = _pyplot()
    ev = results.evaluation
    colors = _colors(list(ev.policies))
    fig, ax = plt.subplots(figsize=(10, 5))
    top = float(ev.k[-1])
    for name, fit in results.planner.items():
        if isinstance(fit, FitError):
            continue
        color = colors.get("majority", "C0") if name == "majority" else "black"
        _fitted(ax, fit.curve.n, fit, fit.curve, "majority" if name == "majority" else "pass@k", color,
                "-" if name == "majority" else "--")
        top = max(top, float(fit.curve.n[-1]))
        if name == "majority":
            ax.axvline(fit.saturation.n, color="grey", ls=":", lw=1, label=f"majority saturation: N = {fit.saturation.n}")
            if fit.within:
                ax.axvline(fit.within.n, color="grey", ls="-.", lw=1,
                           label=f"majority within {fit.within.points:g} pt of the ceiling: N = {fit.within.n}")
    labelled = False
    for name, other in results.policy_fits.items():
        if not isinstance(other, FitError) and name in colors:
            label = None if labelled else "other policies: fitted curve family (thin dashed)"
            ax.plot(other.curve.n, [100 * v for v in other.curve.mean], ls=(0, (3, 2)), lw=1, color=colors[name],
                    label=label)
            labelled = True
            top = max(top, float(other.curve.n[-1]))
    _observed_points(ax, ev, ev.k, colors)
    _log2_axis(ax, top)
    ax.set_xlim(0.9, top * 1.1)
    ax.set_xlabel("samples per problem (N); points observed up to n, lines fitted beyond")
    ax.set_ylabel("accuracy (%)")
    _finish(fig, ax, path, f"accuracy against samples, {ev.problems} problems (n = {ev.k[-1]})")
    plt.close(fig)
    return path


def plot_tokens(results: BenchResults, path: Path) -> Path:
    """Accuracy against mean generated tokens per question (k samples cost k times a sample's tokens)."""
    plt = _pyplot()
    ev = results.evaluation
    per_sample = results.sampling.output_tokens_per_sample
    fig, ax = plt.subplots(figsize=(10, 5))
    if ev.tokens is None or not per_sample:
        ax.text(0.5, 0.5, "the bank has no token counts", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        return path
    colors = _colors(list(ev.policies))
    top_n = float(ev.k[-1])
    for name, fit in results.planner.items():
        if isinstance(fit, FitError):
            continue
        # Beyond the observed n the fitted curve is shown up to 8n: further out it is all extrapolation.
        keep = [i for i, n in enumerate(fit.curve.n) if n <= 8 * top_n]
        sub = FittedCurve(**{k: [getattr(fit.curve, k)[i] for i in keep] for k in ("n", "mean", "low", "high")})
        xs = [n * per_sample for n in sub.n]
        color = colors.get("majority", "C0") if name == "majority" else "black"
        _fitted(ax, xs, fit, sub, "majority" if name == "majority" else "pass@k", color, "-" if name == "majority" else "--")
    _observed_points(ax, ev, ev.tokens, colors)
    _plain_log_axis(ax)
    ax.set_xlabel(f"generated tokens per question (mean; {per_sample:.1f} per sample)")
    ax.set_ylabel("accuracy (%)")
    _finish(fig, ax, path, f"accuracy against compute, {ev.problems} problems")
    plt.close(fig)
    return path


def plot_difficulty(results: BenchResults, path: Path) -> Path:
    """One panel per difficulty bucket: each policy's accuracy at k and pass@k, on a shared y axis."""
    plt = _pyplot()
    ev, buckets = results.evaluation, results.difficulty.buckets
    colors = _colors(list(ev.policies))
    markers = _markers(list(ev.policies))
    cols = min(len(buckets), 4) or 1
    rows = (len(buckets) + cols - 1) // cols or 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols + 2.2, 2.8 * rows + 0.6), sharey=True, squeeze=False)
    for ax, b in zip(axes.flat, buckets):
        for name, curve in b.policies.items():
            ax.plot(ev.k, [None if a is None else 100 * a for a in curve.accuracy], marker=markers[name], ms=5,
                    mfc="none", color=colors[name], label=name)
        ax.plot(ev.k, [100 * v for v in b.pass_at_k], "--", color="black", lw=1, label="pass@k (oracle)")
        if len(ev.k) > 1:
            _log2_axis(ax, ev.k[-1])
        ax.set_title(f"{b.label} ({b.problems} problem{'s' if b.problems != 1 else ''})", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("k", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in axes.flat[len(buckets):]:
        ax.set_axis_off()
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)", fontsize=8)
    axes.flat[0].set_ylim(-2, 102)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7.5, loc="upper left", bbox_to_anchor=(0.80, 0.93))
    fig.suptitle(f"accuracy at k by difficulty ({results.difficulty.source})", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.79, 0.97))
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_total_tokens(results: BenchResults, path: Path) -> Path:
    """Accuracy against total tokens per problem (generated + read by the scorer): every sampling policy at
    each k (dotted), pass@k (black dashed) and each search method at each width (solid, labelled N)."""
    plt = _pyplot()
    search = results.search
    fig, ax = plt.subplots(figsize=(10, 5))
    if search is None or not search.points:
        ax.text(0.5, 0.5, "no search was run", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        return path
    policies = list(dict.fromkeys(p.policy for p in search.sampling))
    methods = list(dict.fromkeys(p.method for p in search.points))
    colors = _colors([*policies, *methods])
    markers = _markers(policies)
    for name in policies:
        pts = [p for p in search.sampling if p.policy == name and p.accuracy is not None and p.total_tokens_per_problem > 0]
        ax.plot([p.total_tokens_per_problem for p in pts], [100 * p.accuracy for p in pts], ls=":", marker=markers[name],  # type: ignore[operator]
                ms=5, mfc="none", color=colors[name], lw=1.2, label=f"{name} (sampling, k)")
    passes = [p for p in search.pass_at_k if p.accuracy is not None and p.total_tokens_per_problem > 0]
    if passes:
        ax.plot([p.total_tokens_per_problem for p in passes], [100 * p.accuracy for p in passes], "--x", color="black",  # type: ignore[operator]
                lw=1, ms=5, label="pass@k (oracle ceiling)")
    for i, method in enumerate(methods):
        pts = sorted((p for p in search.points if p.method == method), key=lambda p: p.width)
        xs = [max(p.total_tokens_per_problem, 1e-9) for p in pts]
        ys = [100 * p.accuracy for p in pts]
        # Shrinking markers and lines: methods that agree (on top of each other) stay visible.
        ax.plot(xs, ys, "-", marker=("o", "D", "^")[i % 3], color=colors[method], lw=max(0.8, 2.4 - 0.6 * i),
                ms=max(4, 9 - 2 * i), zorder=4 + i, label=f"{method} search (width N)")
        for p, x, y in zip(pts, xs, ys):
            ax.annotate(f"N={p.width}", (x, y), textcoords="offset points", xytext=(4, -11), fontsize=7, color=colors[method])
    _plain_log_axis(ax)
    ax.set_xlabel("total tokens per problem (generated, pruned search steps included, + read by the scorer)")
    ax.set_ylabel("accuracy (%)")
    _finish(fig, ax, path, f"search (step scorer {search.scorer}) vs sampling at matched tokens, {results.evaluation.problems} problems")
    plt.close(fig)
    return path
