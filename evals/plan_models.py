"""Planning across models from pilots, checked on the full banks (issue 18).

For each corpus: every option (majority@N per bank, the default rule's settings, cascades settled
by ASC or by the default rule) scored exactly on the full banks, and the same options predicted
from the first 8 samples per question of each bank. For three targets: the option recommended
from the pilots by the shipped rule (``recommend_for_target`` with ``TARGET_MARGIN``; and by the
point rule, margin 0, where they differ): its predicted accuracy, interval and cost, and its exact
accuracy and cost on the full banks, against the option that truly is the cheapest to reach the
target (exact on the full banks).

Corpora:
* GSM8K, Llama-2-13B PoT (40-48 samples) joined with GPT-4 CoT-PoT (9-12 samples) on 400 shared
  ids. The banks carry no token counts and the prices are assumptions: Llama-2-13B $0.2/$0.2 and
  GPT-4 $30/$60 per million input/output tokens (list prices of a hosted 13B and of GPT-4 8k),
  150 generated tokens per Llama-2 PoT sample and 250 per GPT-4 CoT-PoT sample, prompt tokens =
  problem text / 4 (the few-shot exemplars the banks were drawn with are not counted).
* The embedded model (arith-tiny) at T=1.3 and T=0.7 on the same 500 default-set problems x 64
  samples (real token counts; evals/corpora.py), $0.1 per million tokens for both: the cooler
  temperature is more accurate per sample (0.66 vs 0.48) at about the same tokens (T=0.7 a
  fraction of a token fewer, so its bank goes first in cascades). Default-rule horizons up to 16
  (the K=32 tables of two banks, twice, would take most of the run).

Run: .venv/bin/python evals/plan_models.py   (a few minutes per corpus on 2 cores)
Writes evals/results/plan_models.{json,txt} and plan_models_{gsm8k,embedded}.png.
"""

from __future__ import annotations

import json
import pickle
import sys
from collections.abc import Callable
from pathlib import Path

from ttscale.errors import EstimationError
from ttscale.offline import plan_models
from ttscale.planning.cost import Prices
from ttscale.planning.models import TARGET_MARGIN, ModelPlan, PlanOption, recommend_for_target
from ttscale.cli.models_report import describe, plot_models, short_names

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
CACHE = ROOT.parent / "runs" / "plan_models"
LLAMA = "../shared/data/banks/gsm8k400_llama2-13b_pot.jsonl"
GPT4 = "../shared/data/banks/gsm8k_gpt4_cot-pot.jsonl"
EMBEDDED = ["evals/data/votes-default-T1.3.jsonl", "evals/data/votes-default-T0.7.jsonl"]
PILOT = 8


def cached(name: str, make: Callable[[], tuple[ModelPlan, ModelPlan]]) -> tuple[ModelPlan, ModelPlan]:
    """The (exact, predicted) plans of a corpus, kept in runs/ so the report reruns in seconds
    (delete the file after changing the planner)."""
    path = CACHE / f"{name}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    plans = make()
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(plans))
    return plans


def cheapest_reaching(plan: ModelPlan, target: float) -> int | None:
    reach = [i for i, o in enumerate(plan.options) if o.accuracy >= target]
    return min(reach, key=lambda i: plan.options[i].dollars_per_question) if reach else None


def same_option(plan: ModelPlan, o: PlanOption) -> PlanOption:
    """``o`` as scored in ``plan`` (the pilot plan may replay fewer default-rule horizons)."""
    return next(x for x in plan.options if (x.bank, x.kind, x.policy, x.param) == (o.bank, o.kind, o.policy, o.param))


def row(o: PlanOption, names: dict[str, str]) -> dict:
    return {"option": describe(o, names), "accuracy": o.accuracy, "low": o.low, "high": o.high,
            "tokens_per_question": o.tokens_per_question, "dollars_per_question": o.dollars_per_question}


def corpus(name: str, exact: ModelPlan, pred: ModelPlan, targets: list[float], lines: list[str]) -> dict:
    names = short_names(exact)
    lines.append(f"== {name}: {exact.questions} questions, {len(exact.options)} options; "
                 + "; ".join(f"{names[b.path]} = {b.path} (${b.cost.prices.input:g}/${b.cost.prices.output:g} per M, "
                             f"{b.cost.prompt_tokens:.0f} prompt + {b.cost.output_tokens:.0f} output tokens/sample)"
                             for b in exact.banks if b.cost.prices is not None))
    lines.append("frontier, exact on the full banks:")
    lines.append(f"  {'option':<34} {'acc %':>6} {'interval %':>12} {'tokens/q':>9} {'$/q':>9}")
    for i in exact.frontier:
        o = exact.options[i]
        lines.append(f"  {describe(o, names):<34} {100 * o.accuracy:6.2f} {100 * o.low:5.1f}-{100 * o.high:5.1f} "
                     f"{o.tokens_per_question:9.0f} {o.dollars_per_question:9.6f}")
    lines.append(f"frontier, predicted from {PILOT}-sample pilots (exact % on the full banks beside):")
    lines.append(f"  {'option':<34} {'pred %':>6} {'interval %':>12} {'exact %':>7} {'$/q pred':>9}")
    for i in pred.frontier:
        o = pred.options[i]
        lines.append(f"  {describe(o, names):<34} {100 * o.accuracy:6.2f} {100 * o.low:5.1f}-{100 * o.high:5.1f} "
                     f"{100 * (o.exact or 0):7.2f} {o.dollars_per_question:9.6f}")
    rows = []
    lines.append(f"targets: recommended from {PILOT}-sample pilots (margin {TARGET_MARGIN:g} x lower half-interval; point rule "
                 "where it differs) vs the truly cheapest option reaching the target (exact)")
    for t in targets:
        true_i = cheapest_reaching(exact, t)
        true = None if true_i is None else exact.options[true_i]
        entry: dict = {"target": t, "truly_cheapest": None if true is None else row(true, names)}
        texts = []
        for rule, margin in (("recommended_from_pilot", TARGET_MARGIN), ("point_rule_from_pilot", 0.0)):
            try:
                rec = pred.options[recommend_for_target(pred.options, t, True, margin)[0]]
            except EstimationError:
                rec = None
            if rule == "point_rule_from_pilot" and margin == TARGET_MARGIN:
                break
            rec_exact = None if rec is None else same_option(exact, rec)  # the option scored on the full banks
            entry[rule] = None if rec is None else {**row(rec, names), "exact_accuracy": rec_exact.accuracy,
                                                    "exact_dollars_per_question": rec_exact.dollars_per_question,
                                                    "reaches_target_exactly": rec_exact.accuracy >= t,
                                                    "cost_ratio": None if true is None else rec_exact.dollars_per_question / true.dollars_per_question}
            texts.append(f"{'pilot' if margin == TARGET_MARGIN else 'point rule'} -> " + (
                "none predicted to reach it" if rec is None else
                f"{describe(rec, names)}: predicted {100 * rec.accuracy:.2f}% [{100 * rec.low:.1f}, {100 * rec.high:.1f}] "
                f"${rec.dollars_per_question:.6f}/q; exact {100 * rec_exact.accuracy:.2f}% ${rec_exact.dollars_per_question:.6f}/q"
                + ("" if rec_exact.accuracy >= t else " (misses the target on the full banks)")
                + ("" if true is None else f"; cost ratio to the truly cheapest {rec_exact.dollars_per_question / true.dollars_per_question:.2f}")))
        rows.append(entry)
        tr = "none reaches it" if true is None else f"{describe(true, names)}: {100 * true.accuracy:.2f}% ${true.dollars_per_question:.6f}/q"
        lines.append(f"  target {t:g}:\n" + "".join(f"    {x}\n" for x in texts) + f"    truly cheapest -> {tr}")
    lines.append("")
    return {"questions": exact.questions, "options": len(exact.options), "banks": exact.to_json()["banks"],
            "frontier_exact": [row(exact.options[i], names) for i in exact.frontier],
            "frontier_pilot": [{**row(pred.options[i], names), "exact_accuracy": pred.options[i].exact} for i in pred.frontier],
            "targets": rows}


def main() -> int:
    RESULTS.mkdir(exist_ok=True)
    lines: list[str] = [f"plan_models: options exact on the full banks vs predicted from {PILOT}-sample pilots", ""]
    out: dict = {"pilot": PILOT, "target_margin": TARGET_MARGIN, "assumptions": {
        "gsm8k_prices_per_million": {"llama2-13b": [0.2, 0.2], "gpt4": [30, 60]},
        "gsm8k_output_tokens_per_sample": {"llama2-13b": 150, "gpt4": 250},
        "prompt_tokens": "problem text / 4", "embedded_price_per_million": [0.1, 0.1]}}
    prices = {LLAMA: Prices(input=0.2, output=0.2), GPT4: Prices(input=30, output=60)}
    tokens = {LLAMA: 150.0, GPT4: 250.0}
    exact, pred = cached("gsm8k", lambda: (plan_models([LLAMA, GPT4], prices=prices, output_tokens=tokens),
                                           plan_models([LLAMA, GPT4], prices=prices, output_tokens=tokens, pilot=PILOT)))
    out["gsm8k"] = corpus("GSM8K Llama-2-13B + GPT-4", exact, pred, [0.9, 0.95, 0.965], lines)
    plot_models(exact, RESULTS / "plan_models_gsm8k.png", "GSM8K (400): Llama-2-13B PoT (A) and GPT-4 CoT-PoT (B), exact")
    price = Prices(input=0.1, output=0.1)
    emb = {p: price for p in EMBEDDED}
    exact, pred = cached("embedded", lambda: (plan_models(EMBEDDED, prices=emb, horizon=16),
                                              plan_models(EMBEDDED, prices=emb, horizon=16, pilot=PILOT)))
    top = max(o.accuracy for o in exact.options)
    targets = [round(x, 3) for x in (top - 0.05, top - 0.02, top - 0.005)]
    out["embedded"] = corpus("embedded arith-tiny T=1.3 + T=0.7", exact, pred, targets, lines)
    plot_models(exact, RESULTS / "plan_models_embedded.png", "arith-tiny T=1.3 (A) and T=0.7 (B), 500 x 64, exact")
    text = "\n".join(lines)
    print(text)
    (RESULTS / "plan_models.txt").write_text(text + "\n")
    (RESULTS / "plan_models.json").write_text(json.dumps(out, indent=1, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
