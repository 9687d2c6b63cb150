"""Printing and plotting a :class:`~ttscale.planning.models.ModelPlan` (``ttscale plan A B ...``)."""

from __future__ import annotations

from pathlib import Path

from ttscale.planning.models import ModelPlan, PlanOption, setting_letter

__all__ = ["frontier_rows", "plot_models", "print_models", "short_policy"]


def _banks(option: PlanOption, names: dict[str, str]) -> str:
    if isinstance(option.bank, tuple):
        return " > ".join(names[b] for b in option.bank)
    return names[option.bank]


def short_names(plan: ModelPlan) -> dict[str, str]:
    """Banks as letters (A, B, ...) in command-line order: the table stays narrow."""
    return {b.path: chr(ord("A") + i) if i < 26 else f"B{i}" for i, b in enumerate(plan.banks)}


def describe(option: PlanOption, names: dict[str, str]) -> str:
    """``A maj@4``, ``A default@16 c=0.9``, ``A asc@4 t=0.95 > B maj@1``, ``A default@8 > B default@4 c=0.9 > C maj@1``
    (a cascade's setting, shared by its settle tests, after the last of them)."""
    if option.kind == "cascade":
        stages = option.policy.split(">")
        banks = option.bank if isinstance(option.bank, tuple) else (option.bank,)
        letter = "t" if stages[0].startswith("asc") else "c"
        parts = [f"{names[b]} {p.replace('majority', 'maj')}" for b, p in zip(banks, stages)]
        return " > ".join(parts[:-1]) + f" {letter}={option.param:g} > " + parts[-1]
    policy = short_policy(option.policy)
    return f"{names[str(option.bank)]} {policy}" + ("" if option.param is None else f" {setting_letter(option.policy)}={option.param:g}")


SHORT_POLICIES = {"best-of-n": "BoN", "weighted-majority": "wmaj", "majority": "maj"}
"""Table and plot labels of the fixed policies: ``A BoN@8``, ``A wmaj@8`` (reward-read), ``A maj@8``."""


def short_policy(policy: str) -> str:
    """``best-of-n@8`` -> ``BoN@8``, ``weighted-majority@8`` -> ``wmaj@8``, ``majority@8`` -> ``maj@8``."""
    name, at, rest = policy.partition("@")
    return SHORT_POLICIES.get(name, name.replace("majority", "maj")) + at + rest


def frontier_rows(plan: ModelPlan) -> list[dict]:
    """The frontier as rows: option index, banks, kind, policy, setting, accuracy and interval (%),
    tokens and dollars per question, and (with a pilot) the exact accuracy on the full banks (%)."""
    names = short_names(plan)
    rows = []
    for i in plan.frontier:
        o = plan.options[i]
        rows.append({"option": i, "banks": _banks(o, names), "kind": o.kind, "policy": o.policy,
                     "param": "-" if o.param is None else f"{o.param:g}", "accuracy": 100 * o.accuracy,
                     "low": 100 * o.low, "high": 100 * o.high, "tokens": o.tokens_per_question,
                     "dollars": o.dollars_per_question, "eflops": o.eflops_per_question,
                     "exact": None if o.exact is None else 100 * o.exact})
    return rows


def print_models(plan: ModelPlan, plot: Path | None) -> None:
    from rich.table import Table

    from ttscale.cli.console import out

    what = f"predicted from {plan.pilot}-sample pilots" if plan.pilot else "exact on the banks"
    table = Table(title=f"Pareto frontier of {len(plan.options)} options: {plan.questions} questions, {what}")
    eflops = all(b.cost.spec is not None for b in plan.banks)
    cols = ["#", "option", "acc %", "interval %", "tokens/q", "$/q"] + (["eFLOPs/q"] if eflops else [])
    if plan.pilot:
        cols.append("exact %")
    for col in cols:
        table.add_column(col, justify="left" if col == "option" else "right")
    names = short_names(plan)
    for row in frontier_rows(plan):
        mark = "*" if row["option"] == plan.recommended else ""
        cells = [f"{row['option']}{mark}", describe(plan.options[row["option"]], names), f"{row['accuracy']:.2f}",
                 f"{row['low']:.1f}-{row['high']:.1f}", f"{row['tokens']:.0f}",
                 "-" if row["dollars"] is None else f"{row['dollars']:.5f}"] + ([f"{row['eflops']:.3g}"] if eflops else [])
        if plan.pilot:
            cells.append(f"{row['exact']:.2f}")
        table.add_row(*cells)
    out.print(table)
    for b in plan.banks:
        p = b.cost.prices
        price = "no prices" if p is None else f"${p.input:g}/${p.output:g} per M in/out tokens"
        spec = "" if b.cost.spec is None else f", {b.cost.spec.active_params:.3g} active parameters, {b.cost.spec.kv_bytes_per_token:.3g} KV bytes/token"
        out.print(f"{names[b.path]} = {b.path}: {price}{spec}, {b.cost.prompt_tokens:.0f} prompt + {b.cost.output_tokens:.0f} output "
                  f"tokens per sample ({'from the bank' if b.cost.output_from == 'bank' else 'as given'})", highlight=False)
    o = plan.best
    cost = (f"{o.tokens_per_question:.0f} tokens" + ("" if o.dollars_per_question is None else f", ${o.dollars_per_question:.6f}")
            + ("" if o.eflops_per_question is None else f", {o.eflops_per_question:.3g} eFLOPs"))
    out.print(f"[bold]recommended: option {plan.recommended}, {describe(o, names)}[/] ({plan.reason}): {100 * o.accuracy:.2f}% "
              f"[{100 * o.low:.2f}, {100 * o.high:.2f}], {cost} per question", highlight=False)
    for note in plan.notes:
        out.print(f"note: {note}", highlight=False)
    if plot is not None:
        out.print(f"plot: {plot}")


def plot_models(plan: ModelPlan, path: Path, title: str = "") -> None:
    """Accuracy against cost per question, one colour per option family (bank or cascade, and kind),
    the frontier as a line and the recommended option circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = short_names(plan)
    priced = plan.basis
    fig, ax = plt.subplots(figsize=(8, 5))
    families: dict[str, list[PlanOption]] = {}
    for o in plan.options:
        rule = o.policy.split("@")[0]
        test = f" ({rule})" if o.kind == "cascade" else ""  # ASC- or default-rule-settled
        test = f" {SHORT_POLICIES.get(rule, rule)}" if o.kind == "fixed" else test  # maj, BoN, wmaj: one family each
        families.setdefault(f"{_banks(o, names)} {o.kind}{test}", []).append(o)
    markers = {"fixed": "o", "adaptive": "^", "cascade": "s"}
    layer = {"cascade": 1, "adaptive": 2, "fixed": 3}  # single-bank points over the many cascades
    for label, opts in families.items():
        ax.scatter([o.cost(priced) for o in opts], [100 * o.accuracy for o in opts], s=14, alpha=0.7,
                   marker=markers[opts[0].kind], label=label, zorder=layer[opts[0].kind])
    front = [plan.options[i] for i in plan.frontier]
    ax.plot([o.cost(priced) for o in front], [100 * o.accuracy for o in front], "k-", lw=1, label="frontier", zorder=4)
    b = plan.best
    ax.scatter([b.cost(priced)], [100 * b.accuracy], s=120, facecolors="none", edgecolors="red", label="recommended", zorder=5)
    ax.set_xscale("log")
    ax.set_xlabel({"dollars": "dollars per question", "eflops": "Kinetics eFLOPs per question"}.get(priced, "tokens per question"))
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or f"{plan.questions} questions, {len(plan.banks)} banks")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
