"""Majority-vote extrapolation held out (issue 15): maj@K from small pilots on every vote corpus.

``ttscale plan BANK`` (policy majority) fits :class:`ttscale.curves.DirichletMajorityModel` on the
bank and predicts maj@N beyond it with a 95% interval. ``evals/extrapolate_majority.py`` checks
that on the two GSM8K banks; this runs the same check on every vote corpus of
``evals/policy_curves.py`` (three banks in ../shared/data and five made by the project's
embedded models), leaving one corpus out for every choice.

Per corpus and seed, a pilot of m samples per question (8; 4 on math100, which has 8) is drawn
without replacement; the model sees only the pilot and predicts maj@K at the bank's largest
common K; the truth is the exact tie-credited maj@K of the whole bank.

Choices, each made on all corpora but one and scored on the one left out (the figure reported
for a corpus is always its held-out one):

* centre: ``plain`` (the model's prediction) or ``anchored`` (shifted by the pilot's exact maj@m
  minus the model's: the model is matched to maj@1, not to maj@m, on small pilots);
* the interval's extrapolation term: ``spread`` x the predicted gain from m to K, in quadrature
  with the question bootstrap; the smallest spread of the grid whose intervals cover the truth at
  least 90% of the time on every training corpus (a corpus no spread reaches is named instead).

The library's default (``ttscale.curves.majority.EXTRAPOLATION_SPREAD``) is the choice on all corpora.

    .venv/bin/python evals/unseen_majority.py            # about 4 minutes on 2 cores
    .venv/bin/python evals/unseen_majority.py --reuse    # re-make the choices from the saved cases

Writes evals/results/unseen_majority.json and .txt.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from scipy.stats import norm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "evals"))

from policy_curves import CORPORA  # noqa: E402  (the same vote corpora and pilot sizes)

from ttscale.answers.grading import load_candidates  # noqa: E402
from ttscale.curves import DirichletMajorityModel  # noqa: E402
from ttscale.estimate import exact as est  # noqa: E402

RESULTS = ROOT / "evals" / "results"
LEVEL = 0.95
SPREADS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.0)
CENTRES = ("plain", "anchored")
GOAL = 0.9
TARGET_ZS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
TARGET_MIN_K = 32
"""Corpora with at least this K check --target (targets up to maj@(K/2), answers up to K)."""
TARGET_FRACTIONS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
"""--target check: targets these fractions of the way from the bank's exact maj@1 to its maj@(K/2)."""


def corpus_cases(name: str, path: Path, m: int, seeds: int, say) -> tuple[dict, list[dict]]:
    _, problems = load_candidates(path)
    problems = list(problems)
    K = int(min(p.n for p in problems))
    counts, correct, n = est.candidates_to_arrays(problems)
    truth = float(est.majority_at_k(counts, correct, n, [K])[:, 0].mean())
    ns = np.arange(1, K + 1)
    info = {"corpus": name, "questions": len(problems), "K": K, "pilot": m, "truth": truth,
            "exact_curve": [float(v) for v in est.majority_at_k(counts, correct, n, list(ns)).mean(axis=0)]}
    cases = []
    for seed in range(seeds):
        rng = np.random.default_rng(1000 + seed)
        pilot = [p.subset(rng.choice(p.n, size=m, replace=False)) for p in problems]
        c, k, nn = est.candidates_to_arrays(pilot)
        model = DirichletMajorityModel(n_bootstrap=400, random_state=seed, extrapolation_spread=0.0).fit(c, k, nn)
        pred_m, pred_k = (float(v) for v in model.predict([m, K]))
        lo, hi = (float(v) for v in model.predict_interval(K, LEVEL))
        pilot_m = float(np.nanmean(est.majority_at_k(c, k, nn, [m])[:, 0]))
        # the whole curve N = 1..K with the shipped interval, for the --target check
        wide = DirichletMajorityModel(n_bootstrap=400, random_state=seed).fit(c, k, nn)
        curve_low = [float(v) for v in wide.predict_interval(ns, LEVEL)[0]]
        cases.append({"corpus": name, "seed": seed, "K": K, "m": m, "truth": truth, "pred": pred_k, "boot": (lo, hi),
                      "pred_m": pred_m, "pilot_m": pilot_m, "curve": [float(v) for v in wide.predict(ns)],
                      "curve_low": curve_low})
    preds = [100 * x["pred"] for x in cases]
    say(f"{name}: {len(problems)} questions, K = {K}, pilot {m}, maj@K {100 * truth:.2f}%, "
        f"predicted {np.mean(preds):.2f} (sd {np.std(preds):.2f} over {seeds} pilots)")
    return info, cases


def interval(case: dict, centre: str, spread: float) -> tuple[float, float, float]:
    """(mean, low, high) of a case: the centre, the bootstrap half-widths and ``spread`` x the gain."""
    shift = case["pilot_m"] - case["pred_m"] if centre == "anchored" else 0.0
    mean = case["pred"] + shift
    lo, hi = case["boot"][0] + shift, case["boot"][1] + shift
    extra = spread * abs(case["pred"] - case["pred_m"])
    low = mean - np.hypot(max(mean - lo, 0.0), extra)
    high = mean + np.hypot(max(hi - mean, 0.0), extra)
    return float(np.clip(mean, 0, 1)), float(np.clip(low, 0, 1)), float(np.clip(high, 0, 1))


def mae(cases: list[dict], centre: str) -> float:
    by: dict[str, list[float]] = {}
    for c in cases:
        by.setdefault(c["corpus"], []).append(abs(interval(c, centre, 0.0)[0] - c["truth"]))
    return float(np.mean([np.mean(v) for v in by.values()]))


def coverage(cases: list[dict], centre: str, spread: float) -> float:
    return float(np.mean([lo - 1e-9 <= c["truth"] <= hi + 1e-9 for c in cases for _, lo, hi in [interval(c, centre, spread)]]))


def width(cases: list[dict], centre: str, spread: float) -> float:
    return float(np.mean([hi - lo for c in cases for _, lo, hi in [interval(c, centre, spread)]]))


def choose(cases: list[dict], corpora: list[str]) -> dict:
    train = [c for c in cases if c["corpus"] in corpora]
    scores = {x: mae(train, x) for x in CENTRES}
    centre = min(scores, key=lambda x: scores[x])
    cover = {x: [coverage([c for c in train if c["corpus"] == x], centre, s) for s in SPREADS] for x in corpora}
    reachable = [x for x in corpora if max(cover[x]) >= GOAL]
    ok = [s for i, s in enumerate(SPREADS) if all(cover[x][i] >= GOAL for x in reachable)] if reachable else []
    return {"centre": centre, "spread": ok[0] if ok else SPREADS[-1], "train_mae": scores,
            "uncovered": {x: max(cover[x]) for x in corpora if x not in reachable}}


def recommend(curve: np.ndarray, low: np.ndarray, target: float, z: float) -> int | None:
    """`ttscale plan BANK --target T`'s N (index into 1..K) under margin z: the smallest N whose
    predicted maj@N minus z lower half-widths reaches T; if none does, the smallest whose point does;
    None when no N up to K is predicted to reach it."""
    reach = np.flatnonzero(curve >= target)
    if reach.size == 0:
        return None
    ok = reach[(curve - z * np.maximum(curve - low, 0.0))[reach] >= target]
    return int(ok[0]) if ok.size else int(reach[0])


def target_rows(infos: list[dict], cases: list[dict]) -> list[dict]:
    """One row per (corpus, pilot, target, z): the recommended N's exact maj@N, hit, N over the
    smallest N that truly reaches T. Targets lie between the exact maj@1 and maj@(K/2), so an N up
    to K can be scored; an N past K is "beyond" (unscored)."""
    rows = []
    for info in infos:
        exact = np.asarray(info["exact_curve"])
        half = exact[: max(len(exact) // 2, 1)]
        for c in (x for x in cases if x["corpus"] == info["corpus"]):
            curve, low = np.asarray(c["curve"]), np.asarray(c["curve_low"])
            for f in TARGET_FRACTIONS:
                t = half[0] + f * (half[-1] - half[0])
                true_n = int(np.flatnonzero(exact >= t - 1e-12)[0]) + 1
                for z in TARGET_ZS:
                    i = recommend(curve, low, t, z)
                    row = {"corpus": info["corpus"], "seed": c["seed"], "fraction": f, "target": float(t), "z": z,
                           "answered": i is not None}
                    if i is not None:
                        row.update(n=i + 1, exact=float(exact[i]), hit=bool(exact[i] >= t - 1e-12), n_ratio=(i + 1) / true_n)
                    rows.append(row)
    return rows


def target_summary(rows: list[dict], corpora: list[str], z: float) -> tuple[float, float, int]:
    """(hit rate, median N ratio) per corpus then averaged over corpora, and how many were beyond K."""
    hits, ratios, beyond = [], [], 0
    for x in corpora:
        mine = [r for r in rows if r["corpus"] == x and r["z"] == z]
        done = [r for r in mine if r["answered"]]
        beyond += len(mine) - len(done)
        if done:
            hits.append(np.mean([r["hit"] for r in done]))
            ratios.append(np.median([r["n_ratio"] for r in done]))
    return (float(np.mean(hits)) if hits else float("nan"), float(np.mean(ratios)) if ratios else float("nan"), beyond)


def choose_z(rows: list[dict], corpora: list[str]) -> float:
    """The smallest z whose mean hit rate over ``corpora`` reaches GOAL, else the one with the highest."""
    rates = {z: target_summary(rows, corpora, z)[0] for z in TARGET_ZS}
    ok = [z for z in TARGET_ZS if rates[z] >= GOAL]
    return ok[0] if ok else max(TARGET_ZS, key=lambda z: rates[z])


def describe(ch: dict) -> str:
    extra = "".join(f"; uncovered: {x} (best {v:.0%})" for x, v in ch["uncovered"].items())
    return f"{ch['centre']}, spread {ch['spread']:g}{extra}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="Pilots per corpus (seeds 0..SEEDS-1).")
    parser.add_argument("--out", type=Path, default=RESULTS / "unseen_majority")
    parser.add_argument("--reuse", action="store_true", help="Re-make the choices and tables from the cases in OUT.json.")
    args = parser.parse_args()
    t0 = time.time()
    if args.reuse:
        old = json.loads(args.out.with_suffix(".json").read_text())
        infos, cases, args.seeds = old["corpora"], old["cases"], old["seeds"]
    else:
        infos, cases = [], []
        for name, path, m in CORPORA:
            if not path.exists():
                print(f"{name}: {path} not found, skipped", flush=True)
                continue
            info, got = corpus_cases(name, path, m, args.seeds, lambda s: print(s, flush=True))
            infos.append(info)
            cases.extend(got)
    names = [i["corpus"] for i in infos]
    held = {x: choose(cases, [y for y in names if y != x]) for x in names}
    everything = choose(cases, names)
    from ttscale.curves.majority import EXTRAPOLATION_SPREAD

    lines = [f"maj@K from pilots of m samples per question ({args.seeds} pilots per corpus), DirichletMajorityModel; "
             f"points; {100 * LEVEL:.0f}% intervals.",
             "before = the model's prediction and question-bootstrap interval (what `ttscale plan` gave); "
             "held out = centre and spread chosen on the other corpora.", "",
             "| corpus | K | m | maj@K | before: pred [interval] | err | cover | held out: pred [interval] | err | cover | width | chosen on the others |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    summary = {}
    for info in infos:
        x = info["corpus"]
        mine = [c for c in cases if c["corpus"] == x]
        ch = held[x]
        before = [interval(c, "plain", 0.0) for c in mine]
        after = [interval(c, ch["centre"], ch["spread"]) for c in mine]
        t = info["truth"]
        row = {}
        for key, vals in (("before", before), ("held_out", after)):
            row[key] = {"mean": float(np.mean([v[0] for v in vals])), "low": float(np.mean([v[1] for v in vals])),
                        "high": float(np.mean([v[2] for v in vals])), "mae": float(np.mean([abs(v[0] - t) for v in vals])),
                        "coverage": float(np.mean([v[1] - 1e-9 <= t <= v[2] + 1e-9 for v in vals])),
                        "width": float(np.mean([v[2] - v[1] for v in vals]))}
        summary[x] = row
        b, a = row["before"], row["held_out"]
        lines.append(f"| {x} | {info['K']} | {info['pilot']} | {100 * t:.2f} | {100 * b['mean']:.2f} [{100 * b['low']:.2f}, "
                     f"{100 * b['high']:.2f}] | {100 * b['mae']:.2f} | {b['coverage']:.0%} | {100 * a['mean']:.2f} "
                     f"[{100 * a['low']:.2f}, {100 * a['high']:.2f}] | {100 * a['mae']:.2f} | {a['coverage']:.0%} | "
                     f"{100 * a['width']:.2f} | {describe(ch)} |")
    mean = lambda key, f: float(np.mean([summary[x][key][f] for x in names]))
    lines.append(f"| mean over corpora | | | | | {100 * mean('before', 'mae'):.2f} | {mean('before', 'coverage'):.0%} | | "
                 f"{100 * mean('held_out', 'mae'):.2f} | {mean('held_out', 'coverage'):.0%} | {100 * mean('held_out', 'width'):.2f} | |")
    lines.append("")
    lines.append(f"Chosen on all corpora: {describe(everything)}; in-sample MAE (points) "
                 + ", ".join(f"{k} {100 * v:.2f}" for k, v in everything["train_mae"].items()) + ".")
    same = everything["centre"] == "plain" and everything["spread"] == EXTRAPOLATION_SPREAD
    lines.append(f"The library's default (ttscale.curves.majority.EXTRAPOLATION_SPREAD = {EXTRAPOLATION_SPREAD:g}, plain centre) "
                 f"{'equals' if same else 'DIFFERS FROM'} this choice.")
    lines.append("")
    big = [i for i in infos if i["K"] >= TARGET_MIN_K]
    tnames = [i["corpus"] for i in big]
    trows = target_rows(big, cases)
    lines.append(f"`ttscale plan BANK --target T` from the same pilots, on the corpora with K >= {TARGET_MIN_K}: the smallest N "
                 "whose predicted maj@N minus z lower half-widths of its interval reaches T (none: the smallest whose point "
                 "does); targets " + ", ".join(f"{f:g}" for f in TARGET_FRACTIONS) + " of the way from the exact maj@1 to "
                 "maj@(K/2), so an answer up to K is scored on the bank; hit = the exact maj@N reaches T; N ratio = N / the "
                 f"smallest N that truly does (median); z chosen leaving one corpus out (smallest with mean hit rate >= {GOAL:g}).")
    lines.append("")
    lines.append("| corpus | point rule: hit | N ratio | held-out z | hit | N ratio | beyond K (point / z) |")
    lines.append("|---|---|---|---|---|---|---|")
    held_z = {}
    for x in tnames:
        z = held_z[x] = choose_z(trows, [y for y in tnames if y != x])
        p, q = target_summary(trows, [x], 0.0), target_summary(trows, [x], z)
        lines.append(f"| {x} | {p[0]:.2f} | {p[1]:.2f} | {z:g} | {q[0]:.2f} | {q[1]:.2f} | {p[2]} / {q[2]} |")
    pm = [target_summary(trows, [x], 0.0) for x in tnames]
    zm = [target_summary(trows, [x], held_z[x]) for x in tnames]
    lines.append(f"| mean | {np.mean([v[0] for v in pm]):.2f} | {np.mean([v[1] for v in pm]):.2f} | | "
                 f"{np.mean([v[0] for v in zm]):.2f} | {np.mean([v[1] for v in zm]):.2f} | |")
    z_every = choose_z(trows, tnames)
    lines.append(f"z chosen on all of them: {z_every:g}; hit rate / N ratio per z: "
                 + ", ".join(f"{z:g} {target_summary(trows, tnames, z)[0]:.2f}/{target_summary(trows, tnames, z)[1]:.2f}" for z in TARGET_ZS)
                 + f". Not shipped (`ttscale plan` keeps the point rule): no z reaches a {GOAL:g} hit rate; near the plateau "
                 "the interval's lower end never clears the target, so larger z falls back to the point rule.")
    lines.append(f"({time.time() - t0:.0f} s)")
    text = "\n".join(lines)
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".txt").write_text(text + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(
        {"seeds": args.seeds, "level": LEVEL, "spreads": SPREADS, "corpora": infos, "summary": summary,
         "held_out_choices": held, "all_corpora_choice": everything, "target_z_held_out": held_z, "target_z_all": z_every,
         "cases": cases}, indent=1) + "\n")


if __name__ == "__main__":
    main()
