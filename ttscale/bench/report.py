"""The report folder of ``ttscale bench``: report.md, three PNG plots (:mod:`ttscale.bench.plots`; a fourth,
accuracy against total tokens, when the bench ran searches) and results.json.

Everything here reads a :class:`~ttscale.bench.results.BenchResults` (the content of results.json)
and nothing else, so a report can be redrawn from results.json alone
(``BenchResults.model_validate_json``). results.json is written last: its presence means the
rest of the report is complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ttscale.bench.plots import (
    PLOT_DIFFICULTY,
    PLOT_SAMPLES,
    PLOT_TOKENS,
    PLOT_TOTAL_TOKENS,
    plot_difficulty,
    plot_samples,
    plot_tokens,
    plot_total_tokens,
)
from ttscale.bench.results import BenchResults, FitError
from ttscale.records.files import atomic_write, write_json

MARKDOWN = "report.md"
RESULTS = "results.json"


def report_files(out_dir: Path, *, search: bool = False) -> list[Path]:
    """The files a complete report consists of (results.json last); ``search``: with the searches' plot."""
    names = (MARKDOWN, PLOT_SAMPLES, PLOT_TOKENS, PLOT_DIFFICULTY, *((PLOT_TOTAL_TOKENS,) if search else ()), RESULTS)
    return [out_dir / name for name in names]


def write_report(results: BenchResults, out_dir: Path) -> list[Path]:
    """Write the plots, the markdown report, then results.json (atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_samples(results, out_dir / PLOT_SAMPLES)
    plot_tokens(results, out_dir / PLOT_TOKENS)
    plot_difficulty(results, out_dir / PLOT_DIFFICULTY)
    if results.search is not None:
        plot_total_tokens(results, out_dir / PLOT_TOTAL_TOKENS)
    atomic_write(out_dir / MARKDOWN, markdown(results), fsync=False)
    write_json(out_dir / RESULTS, results.to_json())
    return report_files(out_dir, search=results.search is not None)


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


def _run_section(results: BenchResults) -> str:
    run, sampling = results.run, results.sampling
    settings = sampling.settings or {}
    sampled_with = ", ".join(f"{k} {settings[k]}" for k in ("temperature", "top_p", "max_tokens", "seed") if k in settings)
    runs = sampling.runs
    gen = sampling.generated_tokens
    rows = [
        ("model", f"`{run.model}`"), ("backend", run.backend or "-"),
        ("dataset", f"`{run.dataset}`" + ("" if run.limit is None else f" (first {run.limit})")),
        ("problems", str(run.problems)), ("samples per problem (n)", str(run.n)),
        ("sampling", sampled_with or "-"),
        ("policies", ", ".join(run.policies)), ("scorers", ", ".join(run.scorers) or "-"),
        ("sampling wall time", f"{sampling.wall_seconds:.1f} s over {len(runs)} run(s), start-up included"),
        ("generated tokens", "-" if gen is None else f"{gen:,} ({sampling.output_tokens_per_sample:.1f} per sample)"),
        ("prompt tokens per question", f"{sampling.prompt_tokens_per_question:.1f} ({sampling.prompt_tokens_source})"),
        ("analysis time", f"{results.analysis_seconds:.1f} s (evaluation, difficulty buckets, curve fits)"),
    ]
    if results.search is not None:
        s = results.search
        methods = ", ".join(dict.fromkeys(p.method for p in s.points))
        widths = ", ".join(str(w) for w in sorted({p.width for p in s.points}))
        rows.insert(8, ("searches", f"{methods} at widths {widths}, step scorer {s.scorer}"))
    text = "## What was run\n\n" + md_table(["", ""], rows, "ll")
    if runs:
        table = [(r.finished_at, r.backend or "-", str(r.n), f"{r.samples:,}", str(r.requests), f"{r.completion_tokens:,}",
                  f"{r.tokens_per_s:,.0f}", f"{r.wall_seconds:.1f}", "yes" if r.completed else "no (stopped)")
                 for r in runs]
        text += "\n\nSampling runs (a rerun draws only the samples the bank is missing):\n\n" + md_table(
            ["finished (UTC)", "backend", "n", "new samples", "requests", "generated tokens", "tokens/s", "wall s", "completed"], table)
    return text


def _accuracy_section(results: BenchResults) -> str:
    ev = results.evaluation
    header = ["policy", *[f"@{k}" for k in ev.k]]
    rows = []
    errors: list[float] = []
    for name, curve in ev.policies.items():
        if curve.resampled and curve.stderr:
            errors += [s for s in curve.stderr if s is not None]
        rows.append([f"{name} *" if curve.resampled else name, *[_pct(a, 2) for a in curve.accuracy]])
    rows.append(["pass@k (oracle)", *[_pct(a, 2) for a in ev.pass_at_k]])
    if ev.tokens is not None:
        rows.append(["generated tokens / question", *[_num(t) for t in ev.tokens]])
    note = (f"\n\n\\* resampled estimate, Monte Carlo standard error at most {100 * max(errors):.2f} points; "
            "the others are exact." if errors else "\n\nAll estimates exact.")
    return (f"## Accuracy (%) at k\n\nOver {ev.problems} problems, every k from one pool of samples per problem. "
            f"pass@k is the oracle ceiling (some sample correct)." + note + "\n\n" + md_table(header, rows)
            + f"\n\n![accuracy against samples per problem]({PLOT_SAMPLES})")


def _planner_section(results: BenchResults) -> str:
    rows = []
    notes = []
    fitted = []
    for name, p in results.planner.items():
        label = "majority vote" if name == "majority" else "pass@k (oracle)"
        if isinstance(p, FitError):
            notes.append(f"- {label}: no curve fitted: {p.error}")
            continue
        fitted.append(p)
        sat, near, obs = p.saturation, p.within, p.observed
        rows.append([
            label, p.method, f"{_pct(obs.accuracy[-1])} @{obs.k[-1]}",
            f"{_pct(p.ceiling.accuracy)} ± {_pct(p.ceiling.halfwidth)} @{p.ceiling.n}",
            f"{sat.n} ({_pct(sat.accuracy)})",
            "-" if near is None else f"{near.n} ({_pct(near.accuracy)}, {_pct(near.low)}-{_pct(near.high)})",
            "-" if near is None else _num(near.tokens_per_question),
            "-" if near is None else _usd(near.dollars_per_question),
        ])
    level = int(100 * fitted[0].level) if fitted else 95
    epsilon = fitted[0].saturation.epsilon if fitted else 1e-4
    within = fitted[0].within.points if fitted and fitted[0].within else 1.0
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


def _policy_fits_table(results: BenchResults) -> str:
    """The other policies: a curve family fitted to each one's observed accuracy (``plan -p`` does the same)."""
    if not results.policy_fits:
        return ""
    ev = results.evaluation
    rows = []
    for name, fit in results.policy_fits.items():
        observed = ev.policies[name].accuracy[-1] if name in ev.policies else None
        if isinstance(fit, FitError):
            rows.append([name, "-", _pct(observed), f"not fitted: {fit.error}", "-"])
            continue
        c = fit.ceiling
        rows.append([name, fit.method, f"{_pct(observed)} @{ev.k[-1]}", f"{_pct(c.accuracy)} ± {_pct(c.halfwidth)} @{c.n}",
                     "-" if fit.best_n is None else f"{fit.best_n} (more samples hurt past it)"])
    head = ["policy", "curve family", "observed", "predicted at the largest N", "best N"]
    return ("\n\nOther policies: a curve family (power law with a floor or exponentiated power law, chosen by "
            "held-out extrapolation error) fitted to each one's observed accuracy at k; a policy that gets worse with "
            "more samples is held at its best N.\n\n" + md_table(head, rows))


def _difficulty_section(results: BenchResults) -> str:
    diff, ev = results.difficulty, results.evaluation
    k_top = ev.k[-1]
    names = list(ev.policies)
    header = ["bucket", "problems", "pass@1", *[f"{n} @{k_top}" for n in names], f"pass@{k_top}"]
    rows = [[b.label, str(b.problems), _pct(b.pass_at_k[0]),
             *[_pct(b.policies[n].accuracy[-1]) for n in names], _pct(b.pass_at_k[-1])] for b in diff.buckets]
    source = {"pass-rate": "the share of each problem's samples that are correct (no difficulty field in the dataset)",
              "steps": "the number of reasoning steps"}.get(diff.source, f"the dataset's `{diff.source}` field")
    return (f"## By difficulty\n\nBuckets by {source}; accuracy in %.\n\n" + md_table(header, rows)
            + f"\n\n![accuracy at k per difficulty bucket]({PLOT_DIFFICULTY})")


def _cost_section(results: BenchResults) -> str:
    cost = results.cost
    if not cost.table:
        return "## Cost\n\nThe bank has no token counts."
    header = ["k", "prompt tokens / q", "generated tokens / q", "tokens / q", f"tokens, all {results.evaluation.problems}"]
    if cost.prices is not None:
        header += ["$ / q", "$ all"]
    rows = []
    for r in cost.table:
        row = [str(r.k), _num(r.prompt_tokens_per_question), _num(r.generated_tokens_per_question),
               _num(r.tokens_per_question), _num(r.tokens_total)]
        if cost.prices is not None:
            row += [_usd(r.dollars_per_question), _usd(r.dollars_total)]
        rows.append(row)
    prices = (f" Dollars at ${cost.prices.input:g} / ${cost.prices.output:g} per million input / output tokens."
              if cost.prices is not None else " Pass --price-in and --price-out for dollars.")
    return ("## Cost\n\nExpected tokens of k samples per question, the prompt prefilled once per request."
            + prices + "\n\n" + md_table(header, rows))


def _search_section(results: BenchResults) -> str:
    """Search against sampling at matched total tokens per problem (``--search``)."""
    search = results.search
    if search is None:
        return ""
    rows = []
    for p in search.points:
        rows.append([p.method, f"width {p.width}" + ("" if p.method == "particle" else f" (keep {p.keep})"), _pct(p.accuracy), _pct(p.pass_at_n), _num(p.generated_tokens_per_problem),
                     _num(p.scored_tokens_per_problem), _num(p.total_tokens_per_problem), _num(p.requests_per_problem, ",.1f"),
                     _num(p.seconds_per_problem, ",.3f")])
    for p in [*search.sampling, *search.pass_at_k]:
        rows.append([p.policy, f"k = {p.k}", _pct(p.accuracy), "-", _num(p.generated_tokens_per_problem),
                     _num(p.scored_tokens_per_problem), _num(p.total_tokens_per_problem), "1.0", "-"])
    head = ["method / policy", "budget", "accuracy", "some candidate right", "generated tok / q", "scorer tok / q",
            "total tok / q", "requests / q", "search s / q"]
    verdicts = "\n".join(f"- {v.text}." for v in search.verdicts) or "- No sampling point to compare with."
    settings = search.settings
    text = (f"## Search vs sampling at matched tokens\n\nStep-level search (step scorer `{search.scorer}`, steps end at "
            f"{settings.get('separator')!r}, at most {settings.get('max_steps')} steps) over the same problems, one bank per "
            "method and width in `search/`. A search's answer is its best-scored final candidate; its tokens are every "
            "generated step (pruned ones included) plus the tokens its step scorer read. Sampling policies are priced the "
            "same way from this bank. Accuracy in %; a difference of at most "
            f"{search.tie_points:.1f} points (one problem) is a tie.\n\n" + md_table(head, rows)
            + "\n\nDoes the best search beat the best sampling policy at the same tokens?\n\n" + verdicts)
    if search.notes:
        text += "\n\n" + "\n".join(f"- {n}" for n in search.notes)
    return text + f"\n\n![accuracy against total tokens per problem]({PLOT_TOTAL_TOKENS})"


def markdown(results: BenchResults) -> str:
    """The whole report.md text."""
    run = results.run
    parts = [
        f"# ttscale bench: {run.model} on {run.dataset}",
        f"{run.problems} problems, n = {run.n} samples per problem. Machine-readable figures: [{RESULTS}]({RESULTS}).",
        _run_section(results), _accuracy_section(results), _planner_section(results), _difficulty_section(results),
        _cost_section(results),
    ]
    if results.search is not None:
        parts.append(_search_section(results))
    if results.notes:
        parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in results.notes))
    return "\n\n".join(parts) + "\n"
