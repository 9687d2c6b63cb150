"""The report folder of ``ttscale bench``: report.md, three PNG plots and results.json.

Everything here reads the results dictionary of :func:`ttscale.bench.assemble` (the content of
results.json) and nothing else, so a report can be redrawn from results.json alone.
results.json is written last: its presence means the rest of the report is complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ttscale.records.files import atomic_write, write_json

MARKDOWN = "report.md"
PLOT_SAMPLES = "accuracy_vs_samples.png"
PLOT_TOKENS = "accuracy_vs_tokens.png"
PLOT_DIFFICULTY = "difficulty.png"
RESULTS = "results.json"


def report_files(out_dir: Path) -> list[Path]:
    """The files a complete report consists of (results.json last)."""
    return [out_dir / name for name in (MARKDOWN, PLOT_SAMPLES, PLOT_TOKENS, PLOT_DIFFICULTY, RESULTS)]


def write_report(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write the plots, the markdown report, then results.json (atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_samples(results, out_dir / PLOT_SAMPLES)
    plot_tokens(results, out_dir / PLOT_TOKENS)
    plot_difficulty(results, out_dir / PLOT_DIFFICULTY)
    atomic_write(out_dir / MARKDOWN, markdown(results), fsync=False)
    write_json(out_dir / RESULTS, results)
    return report_files(out_dir)


# --- markdown --------------------------------------------------------------------------------


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}"


def _num(value: float | None, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.6f}" if value < 0.01 else f"${value:,.2f}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A GitHub markdown table; ``align`` has one ``l`` or ``r`` per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---" if a == "l" else "--:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _run_section(results: dict[str, Any]) -> str:
    run, sampling = results["run"], results["sampling"]
    settings = sampling.get("settings") or {}
    sampled_with = ", ".join(f"{k} {settings[k]}" for k in ("temperature", "top_p", "max_tokens", "seed") if k in settings)
    runs = sampling["runs"]
    gen = sampling["generated_tokens"]
    per_sample = sampling["output_tokens_per_sample"]
    rows = [
        ("model", f"`{run.get('model')}`"), ("backend", run.get("backend", "-")),
        ("dataset", f"`{run.get('dataset')}`" + ("" if run.get("limit") is None else f" (first {run['limit']})")),
        ("problems", str(run["problems"])), ("samples per problem (n)", str(run["n"])),
        ("sampling", sampled_with or "-"),
        ("policies", ", ".join(run["policies"])), ("scorers", ", ".join(run["scorers"]) or "-"),
        ("sampling wall time", f"{sampling['wall_seconds']:.1f} s over {len(runs)} run(s), start-up included"),
        ("generated tokens", "-" if gen is None else f"{gen:,} ({per_sample:.1f} per sample)"),
        ("prompt tokens per question", f"{sampling['prompt_tokens_per_question']:.1f} ({sampling['prompt_tokens_source']})"),
        ("analysis time", f"{results['analysis_seconds']:.1f} s (evaluation, difficulty buckets, curve fits)"),
    ]
    text = "## What was run\n\n" + md_table(["", ""], rows, "ll")
    if runs:
        table = [(r.get("finished_at", "-"), r.get("backend", "-"), str(r.get("n")), f"{r.get('samples', 0):,}",
                  str(r.get("requests", 0)), f"{r.get('completion_tokens', 0):,}", f"{r.get('tokens_per_s', 0):,.0f}",
                  f"{r.get('wall_seconds', 0):.1f}", "yes" if r.get("completed", True) else "no (stopped)")
                 for r in runs]
        text += "\n\nSampling runs (a rerun draws only the samples the bank is missing):\n\n" + md_table(
            ["finished (UTC)", "backend", "n", "new samples", "requests", "generated tokens", "tokens/s", "wall s", "completed"], table)
    return text


def _accuracy_section(results: dict[str, Any]) -> str:
    ev = results["eval"]
    header = ["policy", *[f"@{k}" for k in ev["k"]]]
    rows = []
    errors = []
    for name, curve in ev["policies"].items():
        resampled = curve["method"] != "exact"
        if resampled and curve["stderr"]:
            errors += [s for s in curve["stderr"] if s is not None]
        rows.append([f"{name} *" if resampled else name, *[_pct(a, 2) for a in curve["accuracy"]]])
    rows.append(["pass@k (oracle)", *[_pct(a, 2) for a in ev["pass"]]])
    if ev["tokens"] is not None:
        rows.append(["generated tokens / question", *[_num(t) for t in ev["tokens"]]])
    note = (f"\n\n\\* resampled estimate, Monte Carlo standard error at most {100 * max(errors):.2f} points; "
            "the others are exact." if errors else "\n\nAll estimates exact.")
    return (f"## Accuracy (%) at k\n\nOver {ev['problems']} problems, every k from one pool of samples per problem. "
            f"pass@k is the oracle ceiling (some sample correct)." + note + "\n\n" + md_table(header, rows)
            + f"\n\n![accuracy against samples per problem]({PLOT_SAMPLES})")


def _planner_section(results: dict[str, Any]) -> str:
    rows = []
    notes = []
    for name, p in results["planner"].items():
        label = "majority vote" if name == "majority" else "pass@k (oracle)"
        if "error" in p:
            notes.append(f"- {label}: no curve fitted: {p['error']}")
            continue
        sat, near = p["saturation"], p["within"]
        obs = p["observed"]
        rows.append([
            label, p["method"], f"{_pct(obs['accuracy'][-1])} @{obs['k'][-1]}",
            f"{_pct(p['ceiling']['accuracy'])} ± {_pct(p['ceiling']['halfwidth'])} @{p['ceiling']['n']}",
            f"{sat['n']} ({_pct(sat['accuracy'])})",
            "-" if near is None else f"{near['n']} ({_pct(near['accuracy'])}, {_pct(near['low'])}-{_pct(near['high'])})",
            "-" if near is None else _num(near.get("tokens_per_question")),
            "-" if near is None else _usd(near.get("dollars_per_question")),
        ])
    fitted = [p for p in results["planner"].values() if "level" in p]
    level = int(100 * fitted[0]["level"]) if fitted else 95
    epsilon = fitted[0]["saturation"]["epsilon"] if fitted else 1e-4
    within = fitted[0]["within"]["points"] if fitted and fitted[0]["within"] else 1.0
    head = ["curve", "model", "observed", "predicted ceiling", "saturation N (acc)",
            f"N within {within:g} point of the ceiling (acc, interval)", "tokens / question at that N", "$ / question at that N"]
    text = ("## How many samples: the planner's fitted curves\n\n"
            f"Fitted on this bank, {level}% intervals (accuracy in %). Saturation: the first N from which one more "
            f"sample per question adds less than {100 * epsilon:g} points of accuracy. Tokens per question count "
            "the prompt once and N completions.\n\n" + (md_table(head, rows) if rows else "No curve could be fitted."))
    if notes:
        text += "\n\n" + "\n".join(notes)
    text += _policy_fits_table(results)
    return text + f"\n\n![accuracy against generated tokens per question]({PLOT_TOKENS})"


def _policy_fits_table(results: dict[str, Any]) -> str:
    """The other policies: a curve family fitted to each one's observed accuracy (``plan -p`` does the same)."""
    fits = results.get("policy_fits") or {}
    if not fits:
        return ""
    ev = results["eval"]
    rows = []
    for name, fit in fits.items():
        observed = ev["policies"][name]["accuracy"][-1] if name in ev["policies"] else None
        if "error" in fit:
            rows.append([name, "-", _pct(observed), f"not fitted: {fit['error']}", "-"])
            continue
        c = fit["ceiling"]
        rows.append([name, fit["method"], f"{_pct(observed)} @{ev['k'][-1]}",
                     f"{_pct(c['accuracy'])} ± {_pct(c['halfwidth'])} @{c['n']}",
                     "-" if fit["best_n"] is None else f"{fit['best_n']} (more samples hurt past it)"])
    head = ["policy", "curve family", "observed", "predicted at the largest N", "best N"]
    return ("\n\nOther policies: a curve family (power law with a floor or exponentiated power law, chosen by "
            "held-out extrapolation error) fitted to each one's observed accuracy at k; a policy that gets worse with "
            "more samples is held at its best N.\n\n" + md_table(head, rows))


def _difficulty_section(results: dict[str, Any]) -> str:
    diff, ev = results["difficulty"], results["eval"]
    k_top = ev["k"][-1]
    names = list(ev["policies"])
    header = ["bucket", "problems", "pass@1", *[f"{n} @{k_top}" for n in names], f"pass@{k_top}"]
    rows = [[b["label"], str(b["problems"]), _pct(b["pass"][0]),
             *[_pct(b["policies"][n]["accuracy"][-1]) for n in names], _pct(b["pass"][-1])] for b in diff["buckets"]]
    source = {"pass-rate": "the share of each problem's samples that are correct (no difficulty field in the dataset)",
              "steps": "the number of reasoning steps"}.get(diff["source"], f"the dataset's `{diff['source']}` field")
    return (f"## By difficulty\n\nBuckets by {source}; accuracy in %.\n\n" + md_table(header, rows)
            + f"\n\n![accuracy at k per difficulty bucket]({PLOT_DIFFICULTY})")


def _cost_section(results: dict[str, Any]) -> str:
    cost = results["cost"]
    if not cost["table"]:
        return "## Cost\n\nThe bank has no token counts."
    priced = cost["prices"] is not None
    header = ["k", "prompt tokens / q", "generated tokens / q", "tokens / q", f"tokens, all {results['eval']['problems']}"]
    if priced:
        header += ["$ / q", "$ all"]
    rows = []
    for r in cost["table"]:
        row = [str(r["k"]), _num(r["prompt_tokens_per_question"]), _num(r["generated_tokens_per_question"]),
               _num(r["tokens_per_question"]), _num(r["tokens_total"])]
        if priced:
            row += [_usd(r["dollars_per_question"]), _usd(r["dollars_total"])]
        rows.append(row)
    prices = (f" Dollars at ${cost['prices']['input']:g} / ${cost['prices']['output']:g} per million input / output tokens."
              if priced else " Pass --price-in and --price-out for dollars.")
    return ("## Cost\n\nExpected tokens of k samples per question, the prompt prefilled once per request."
            + prices + "\n\n" + md_table(header, rows))


def markdown(results: dict[str, Any]) -> str:
    """The whole report.md text."""
    run = results["run"]
    parts = [
        f"# ttscale bench: {run.get('model_name', run.get('model'))} on {run.get('dataset_name', run.get('dataset'))}",
        f"{run['problems']} problems, n = {run['n']} samples per problem. Machine-readable figures: [{RESULTS}]({RESULTS}).",
        _run_section(results), _accuracy_section(results), _planner_section(results), _difficulty_section(results),
        _cost_section(results),
    ]
    if results.get("notes"):
        parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in results["notes"]))
    return "\n\n".join(parts) + "\n"


# --- plots -----------------------------------------------------------------------------------


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
    ticks = [2**i for i in range(0, int(top).bit_length()) if 2**i <= top]
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


def _observed(ax: Any, xs: Sequence[float], curve: dict[str, Any], label: str, color: str, marker: str) -> None:
    acc = [None if a is None else 100 * a for a in curve["accuracy"]]
    style = dict(marker=marker, ms=6, mfc="none", mew=1.3, color=color, lw=1.4, zorder=3)
    if curve["method"] != "exact" and curve["stderr"]:
        err = [0 if s is None else 196 * s for s in curve["stderr"]]  # 95% interval in points
        ax.errorbar(xs, acc, yerr=err, capsize=2, label=f"{label} (resampled)", **style)
    else:
        ax.plot(xs, acc, label=label, **style)


def _fitted(ax: Any, xs: Sequence[float], fit: dict[str, Any], label: str, color: str, style: str) -> None:
    c = fit["curve"]
    ax.fill_between(xs, [100 * v for v in c["low"]], [100 * v for v in c["high"]], color=color,
                    alpha=0.15 if color != "black" else 0.07, lw=0, zorder=1)
    ax.plot(xs, [100 * v for v in c["mean"]], style, color=color, lw=1.3, zorder=2,
            label=f"{label}: fitted ({fit['method']}), {int(100 * fit['level'])}% interval")


def _finish(fig: Any, ax: Any, path: Path, title: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")


def _observed_points(ax: Any, ev: dict[str, Any], xs: list[float], colors: dict[str, str]) -> None:
    """Every policy's observed accuracy and pass@k at ``xs`` (samples or tokens at each k)."""
    markers = _markers(list(ev["policies"]))
    for name, curve in ev["policies"].items():
        _observed(ax, xs, curve, name, colors[name], markers[name])
    ax.plot(xs, [100 * v for v in ev["pass"]], "x", color="black", ms=6, zorder=4, label="pass@k observed")


def plot_samples(results: dict[str, Any], path: Path) -> Path:
    """Accuracy against samples per problem: every policy observed (k <= n), the planner's fitted curves to N_max."""
    plt = _pyplot()
    ev, planner = results["eval"], results["planner"]
    colors = _colors(list(ev["policies"]))
    fig, ax = plt.subplots(figsize=(10, 5))
    top = float(ev["k"][-1])
    for name, fit in planner.items():
        if "error" in fit:
            continue
        color = colors.get("majority", "C0") if name == "majority" else "black"
        _fitted(ax, fit["curve"]["n"], fit, "majority" if name == "majority" else "pass@k", color, "-" if name == "majority" else "--")
        top = max(top, float(fit["curve"]["n"][-1]))
        if name == "majority":
            for key, ls in (("saturation", ":"), ("within", "-.")):
                row = fit.get(key)
                if row:
                    what = "saturation" if key == "saturation" else f"within {row['points']:g} pt of the ceiling"
                    ax.axvline(row["n"], color="grey", ls=ls, lw=1, label=f"majority {what}: N = {row['n']}")
    labelled = False
    for name, fit in (results.get("policy_fits") or {}).items():
        if "error" not in fit and name in colors:
            label = None if labelled else "other policies: fitted curve family (thin dashed)"
            ax.plot(fit["curve"]["n"], [100 * v for v in fit["curve"]["mean"]], ls=(0, (3, 2)), lw=1, color=colors[name],
                    label=label)
            labelled = True
            top = max(top, float(fit["curve"]["n"][-1]))
    _observed_points(ax, ev, ev["k"], colors)
    _log2_axis(ax, top)
    ax.set_xlim(0.9, top * 1.1)
    ax.set_xlabel("samples per problem (N); points observed up to n, lines fitted beyond")
    ax.set_ylabel("accuracy (%)")
    _finish(fig, ax, path, f"accuracy against samples, {ev['problems']} problems (n = {ev['k'][-1]})")
    plt.close(fig)
    return path


def plot_tokens(results: dict[str, Any], path: Path) -> Path:
    """Accuracy against mean generated tokens per question (k samples cost k times a sample's tokens)."""
    plt = _pyplot()
    ev, planner = results["eval"], results["planner"]
    per_sample = results["sampling"]["output_tokens_per_sample"]
    fig, ax = plt.subplots(figsize=(10, 5))
    if ev["tokens"] is None or not per_sample:
        ax.text(0.5, 0.5, "the bank has no token counts", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        return path
    colors = _colors(list(ev["policies"]))
    top_n = float(ev["k"][-1])
    for name, fit in planner.items():
        if "error" in fit:
            continue
        # Beyond the observed n the fitted curve is shown up to 8n: further out it is all extrapolation.
        keep = [i for i, n in enumerate(fit["curve"]["n"]) if n <= 8 * top_n]
        sub = {**fit, "curve": {k: [fit["curve"][k][i] for i in keep] for k in ("n", "mean", "low", "high")}}
        xs = [n * per_sample for n in sub["curve"]["n"]]
        color = colors.get("majority", "C0") if name == "majority" else "black"
        _fitted(ax, xs, sub, "majority" if name == "majority" else "pass@k", color, "-" if name == "majority" else "--")
    _observed_points(ax, ev, ev["tokens"], colors)
    _plain_log_axis(ax)
    ax.set_xlabel(f"generated tokens per question (mean; {per_sample:.1f} per sample)")
    ax.set_ylabel("accuracy (%)")
    _finish(fig, ax, path, f"accuracy against compute, {ev['problems']} problems")
    plt.close(fig)
    return path


def plot_difficulty(results: dict[str, Any], path: Path) -> Path:
    """One panel per difficulty bucket: each policy's accuracy at k and pass@k, on a shared y axis."""
    plt = _pyplot()
    ev, buckets = results["eval"], results["difficulty"]["buckets"]
    colors = _colors(list(ev["policies"]))
    markers = _markers(list(ev["policies"]))
    cols = min(len(buckets), 4) or 1
    rows = (len(buckets) + cols - 1) // cols or 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols + 2.2, 2.8 * rows + 0.6), sharey=True, squeeze=False)
    for ax, b in zip(axes.flat, buckets):
        for name, curve in b["policies"].items():
            ax.plot(ev["k"], [None if a is None else 100 * a for a in curve["accuracy"]], marker=markers[name], ms=5,
                    mfc="none", color=colors[name], label=name)
        ax.plot(ev["k"], [100 * v for v in b["pass"]], "--", color="black", lw=1, label="pass@k (oracle)")
        if len(ev["k"]) > 1:
            _log2_axis(ax, ev["k"][-1])
        ax.set_title(f"{b['label']} ({b['problems']} problem{'s' if b['problems'] != 1 else ''})", fontsize=9)
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
    fig.suptitle(f"accuracy at k by difficulty ({results['difficulty']['source']})", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.79, 0.97))
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
