"""Which rule should `ttscale plan A B --pilot M --target T` recommend by? Chosen leave-one-corpus-out (issue 18).

The point rule takes the cheapest option whose *predicted* accuracy reaches T; from 8-sample pilots
it missed 3 of 6 targets on the full banks. The margin rule takes the cheapest option whose predicted
accuracy minus z x its lower half-interval (accuracy - low, 95% level) reaches T (z = 0 is the point
rule; if no option clears the margin it falls back to the point rule). Here every z of a grid is
scored on four corpora, each at several targets, pilot sizes and pilot orders (each question's
samples shuffled with a seed before its first M are taken):

* gsm8k: Llama-2-13B PoT + GPT-4 CoT-PoT, 400 shared questions (prices and tokens as in plan_models.py);
* embedded-pair: arith-tiny at T=1.3 and T=0.7 on the 500 default-set problems (real token counts);
* embedded-hard: arith-tiny T=1.3 on the hard set alone;
* math100: Qwen on 100 MATH problems x 8 alone (pilot 4 only).

A recommendation *hits* when its exact accuracy on the full banks reaches T; its *cost ratio* is its
exact cost over that of the truly cheapest option reaching T (exact). For each held-out corpus, z is
chosen on the other three: the smallest z whose mean hit rate over them (each corpus weighted
equally) is at least GOAL, else the z with the highest. The shipped z is chosen the same way on all
four. Options per corpus: majority@N, the default rule, ASC and first-to-ahead at horizons 2-16, and two-bank cascades.

Run: .venv/bin/python evals/plan_models_holdout.py   (predictions cached in runs/plan_models_holdout/;
about 1-3 min per corpus and pilot draw on 2 cores)
Writes evals/results/plan_models_holdout.{json,txt}.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ttscale.errors import EstimationError
from ttscale.offline import read_bank
from ttscale.planning.cost import Prices
from ttscale.planning.models import (ModelBank, PlanOption, adaptive_horizons, join_banks, plan_options, predict_options,
                                     recommend_for_target, rewarded_banks)

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
CACHE = ROOT.parent / "runs" / "plan_models_holdout"
SHARED = "../shared/data/banks/"
ZS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
GOAL = 0.9
"""Hit rate the chosen z must reach on the training corpora (reach the target 9 times in 10)."""
FRACTIONS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
"""Targets: these fractions of the way from the lowest exact accuracy of a corpus's options to its best."""
ORDERS = 3
HORIZON = 16
LEVEL = 0.95


def corpora() -> dict[str, dict]:
    math100 = SHARED + "math100_qwen_rm.jsonl"
    texts = [len(s.text or "") for r in read_bank(math100).bank.records for s in r.samples]
    return {
        "gsm8k": {"banks": [SHARED + "gsm8k400_llama2-13b_pot.jsonl", SHARED + "gsm8k_gpt4_cot-pot.jsonl"],
                  "prices": [(0.2, 0.2), (30, 60)], "tokens": [150.0, 250.0], "pilots": (4, 8)},
        "embedded-pair": {"banks": ["evals/data/votes-default-T1.3.jsonl", "evals/data/votes-default-T0.7.jsonl"],
                          "prices": [(0.1, 0.1)] * 2, "tokens": [None, None], "pilots": (4, 8)},
        "embedded-hard": {"banks": ["evals/data/votes-hard-T1.3.jsonl"], "prices": [(0.1, 0.1)], "tokens": [None], "pilots": (4, 8)},
        # no token counts in this bank: its samples' mean text length / 4
        "math100": {"banks": [math100], "prices": [(0.4, 1.2)], "tokens": [float(np.mean(texts)) / 4], "pilots": (4,)},
    }


def shuffled(banks: list[ModelBank], seed: int) -> list[ModelBank]:
    """Each question's samples in a seeded random order (the pilot is the first M)."""
    rng = np.random.default_rng(seed)
    return [replace(b, candidates=[c.subset(rng.permutation(c.n)) for c in b.candidates]) for b in banks]


def key(o: PlanOption) -> tuple:
    return (o.bank if isinstance(o.bank, str) else tuple(o.bank), o.kind, o.policy, o.param)


def run_corpus(name: str, spec: dict) -> dict:
    """Exact options once, predicted options per (pilot, order): cached as JSON."""
    CACHE.mkdir(parents=True, exist_ok=True)
    paths = spec["banks"]
    prices = {p: Prices(input=a, output=b) for p, (a, b) in zip(paths, spec["prices"])}
    tokens = {p: t for p, t in zip(paths, spec["tokens"]) if t is not None}
    graded = [read_bank(p) for p in paths]
    banks, _ = join_banks([(p, [r.id for r in g.bank.records], g.candidates, [r.problem for r in g.bank.records])
                           for p, g in zip(paths, graded)], prices=prices, output_tokens=tokens)
    horizons = {b.path: adaptive_horizons(b, HORIZON) for b in banks}
    f = CACHE / f"{name}-exact.json"
    if not f.exists():
        f.write_text(json.dumps([o.to_json() for o in plan_options(banks, horizon=HORIZON).options]))
    out = {"questions": len(banks[0].candidates), "exact": json.loads(f.read_text()), "draws": []}
    for pilot in spec["pilots"]:
        for order in range(ORDERS):
            f = CACHE / f"{name}-p{pilot}-o{order}.json"
            if f.exists():
                out["draws"].append(json.loads(f.read_text()))
                continue
            t0 = time.time()
            # banks whose samples all carry rewards also get reward options (BoN@N, wmaj@N), as `ttscale plan` gives
            pred = predict_options(shuffled(banks, 1000 + order), pilot, level=LEVEL, horizons=horizons,
                                   cascade_max_n=16, seed=order, rewarded=rewarded_banks(banks)[0])
            assert [key(p) for p in pred] == [key(option(d)) for d in out["exact"]]
            draw = {"pilot": pilot, "order": order, "seconds": round(time.time() - t0, 1), "predicted": [p.to_json() for p in pred]}
            f.write_text(json.dumps(draw))
            print(f"  {name} pilot {pilot} order {order}: {len(pred)} options in {draw['seconds']}s", flush=True)
            out["draws"].append(draw)
    return out


def option(d: dict) -> PlanOption:
    bank = tuple(d["bank"]) if isinstance(d["bank"], list) else d["bank"]
    return PlanOption(bank, d["kind"], d["policy"], d["n"], d["param"], d["accuracy"], d["low"], d["high"],
                      d["tokens_per_question"], d["dollars_per_question"])


def score(data: dict) -> list[dict]:
    """One row per (draw, target, z): the recommendation's exact accuracy, hit and cost ratio."""
    exact = [option(d) for d in data["exact"]]
    top, low = max(o.accuracy for o in exact), min(o.accuracy for o in exact)
    rows = []
    for f in FRACTIONS:
        t = round(low + f * (top - low), 4)
        true = min((o.cost(True) for o in exact if o.accuracy >= t))
        for draw in data["draws"]:
            pred = [option(d) for d in draw["predicted"]]
            for z in ZS:
                try:
                    i, _, _ = recommend_for_target(pred, t, True, z)
                except EstimationError:
                    rows.append({"pilot": draw["pilot"], "order": draw["order"], "target": t, "z": z, "answered": False})
                    continue
                e = exact[i]
                rows.append({"pilot": draw["pilot"], "order": draw["order"], "target": t, "z": z, "answered": True,
                             "option": e.label, "predicted": pred[i].accuracy, "low": pred[i].low, "exact": e.accuracy,
                             "hit": e.accuracy >= t, "cost_ratio": e.cost(True) / true})
    return rows


def summary(rows: list[dict], z: float) -> dict:
    mine = [r for r in rows if r["z"] == z and r["answered"]]
    ratios = np.array([r["cost_ratio"] for r in mine])
    return {"cases": len(mine), "hit_rate": float(np.mean([r["hit"] for r in mine])) if mine else float("nan"),
            "cost_ratio_mean": float(ratios.mean()) if mine else float("nan"),
            "cost_ratio_median": float(np.median(ratios)) if mine else float("nan"),
            "unanswered": sum(1 for r in rows if r["z"] == z and not r["answered"])}


def choose(per: dict[str, list[dict]], names: list[str]) -> float:
    """The smallest z whose mean hit rate over ``names`` reaches GOAL, else the one with the highest."""
    rates = {z: float(np.mean([summary(per[n], z)["hit_rate"] for n in names])) for z in ZS}
    ok = [z for z in ZS if rates[z] >= GOAL]
    return min(ok) if ok else max(ZS, key=lambda z: (rates[z], -z))


def main() -> int:
    RESULTS.mkdir(exist_ok=True)
    specs = corpora()
    only = sys.argv[1:] or list(specs)
    per: dict[str, list[dict]] = {}
    info = {}
    for name in only:
        t0 = time.time()
        data = run_corpus(name, specs[name])
        per[name] = score(data)
        info[name] = {"questions": data["questions"], "options": len(data["exact"]), "banks": specs[name]["banks"],
                      "pilots": list(specs[name]["pilots"]), "orders": ORDERS, "seconds": round(time.time() - t0, 1),
                      "targets": sorted({r["target"] for r in per[name]})}
        print(f"{name}: {info[name]['options']} options, targets {info[name]['targets']} ({info[name]['seconds']}s)", flush=True)
    names = list(per)
    lines = [f"plan A B --pilot M --target T: point rule (z = 0) vs margin rule (accuracy - z x lower half-interval >= T,",
             f"{LEVEL:.0%} interval), z chosen leave-one-corpus-out: smallest z with mean hit rate >= {GOAL:g} on the other corpora.",
             "hit = the recommendation's exact accuracy on the full banks reaches T; cost ratio = its exact cost / the truly",
             "cheapest option's reaching T (exact). Cases = targets x pilot sizes x pilot orders.", ""]
    held = {}
    for name in names:
        z = choose(per, [n for n in names if n != name]) if len(names) > 1 else choose(per, names)
        old, new = summary(per[name], 0.0), summary(per[name], z)
        held[name] = {"z": z, "point": old, "margin": new}
        lines.append(f"{name:<14} held out: z = {z:g}; point rule hits {old['hit_rate']:.2f} at cost ratio {old['cost_ratio_mean']:.2f} "
                     f"(median {old['cost_ratio_median']:.2f}); margin rule hits {new['hit_rate']:.2f} at {new['cost_ratio_mean']:.2f} "
                     f"(median {new['cost_ratio_median']:.2f}); {old['cases']} cases")
    pooled_old = float(np.mean([held[n]["point"]["hit_rate"] for n in names]))
    pooled_new = float(np.mean([held[n]["margin"]["hit_rate"] for n in names]))
    cost_old = float(np.mean([held[n]["point"]["cost_ratio_mean"] for n in names]))
    cost_new = float(np.mean([held[n]["margin"]["cost_ratio_mean"] for n in names]))
    shipped = choose(per, names)
    lines += ["", f"mean over held-out corpora: point rule hits {pooled_old:.2f} at cost ratio {cost_old:.2f}; "
                  f"margin rule hits {pooled_new:.2f} at {cost_new:.2f}",
              f"z chosen on all corpora (shipped as TARGET_MARGIN if the margin rule wins held out): {shipped:g}", "",
              "hit rate / mean cost ratio per z:", f"  {'corpus':<14} " + " ".join(f"{'z=' + format(z, 'g'):>11}" for z in ZS)]
    for name in names:
        lines.append(f"  {name:<14} " + " ".join(f"{summary(per[name], z)['hit_rate']:5.2f}/{summary(per[name], z)['cost_ratio_mean']:<5.2f}"
                                                 for z in ZS))
    text = "\n".join(lines)
    print(text)
    (RESULTS / "plan_models_holdout.txt").write_text(text + "\n")
    out = {"goal": GOAL, "level": LEVEL, "zs": list(ZS), "fractions": list(FRACTIONS), "corpora": info, "held_out": held,
           "mean_held_out": {"point_hit_rate": pooled_old, "margin_hit_rate": pooled_new,
                             "point_cost_ratio": cost_old, "margin_cost_ratio": cost_new},
           "shipped_z": shipped, "per_z": {n: {str(z): summary(per[n], z) for z in ZS} for n in names},
           "rows": per}
    (RESULTS / "plan_models_holdout.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
