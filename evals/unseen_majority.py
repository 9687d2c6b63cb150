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

Then, on the same pilots: ``pilot_shift_decay`` (the dataset curve shifted by the pilot's exact
maj@m minus the model's, fading as (m / N)^beta), beta chosen leaving one corpus out by the mean
error over N in (m, K]; and ``ttscale plan BANK --target T``'s N on the plain and shifted curves,
scored on the banks with K >= 32 (targets up to maj@(K/2), so the answer is known up to K).

The library's defaults (``ttscale.curves.majority.EXTRAPOLATION_SPREAD``, ``PILOT_SHIFT_DECAY``) are
the choices on all corpora.

    .venv/bin/python evals/unseen_majority.py            # about 2 minutes on 2 cores
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "evals"))

from policy_curves import CORPORA, smallest_covering  # noqa: E402  (the same vote corpora and pilot sizes)

from ttscale.answers.grading import load_candidates  # noqa: E402
from ttscale.curves import DirichletMajorityModel  # noqa: E402
from ttscale.estimate import exact as est  # noqa: E402

RESULTS = ROOT / "evals" / "results"
LEVEL = 0.95
SPREADS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.0)
CENTRES = ("plain", "anchored")
GOAL = 0.9
DECAYS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, float("inf"))
"""pilot_shift_decay candidates (inf: no shift)."""
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
        cases.append({"corpus": name, "seed": seed, "K": K, "m": m, "truth": truth, "pred": pred_k, "boot": (lo, hi),
                      "pred_m": pred_m, "pilot_m": pilot_m, "curve": [float(v) for v in model.predict(ns)]})
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
    spread, uncovered = smallest_covering(cover, SPREADS, GOAL)
    return {"centre": centre, "spread": spread, "train_mae": scores, "uncovered": uncovered}


def shifted(case: dict, beta: float) -> np.ndarray:
    """A case's curve (N = 1..K) shifted by the pilot's exact maj@m minus the model's, fading as
    (m / N)^beta beyond m (``DirichletMajorityModel(pilot_shift_decay=beta)``); inf: no shift."""
    curve = np.asarray(case["curve"])
    if not np.isfinite(beta):
        return curve
    n = np.arange(1, curve.size + 1)
    w = np.where(n <= case["m"], 1.0, (case["m"] / n) ** beta)
    return np.clip(curve + w * (case["pilot_m"] - case["pred_m"]), 0.0, 1.0)


def curve_mae(infos: list[dict], cases: list[dict], beta: float) -> dict[str, float]:
    """Per corpus: mean |predicted - exact maj@N| over N in (m, K] and pilots."""
    out = {}
    for info in infos:
        exact = np.asarray(info["exact_curve"])
        mine = [c for c in cases if c["corpus"] == info["corpus"]]
        out[info["corpus"]] = float(np.mean([np.abs(shifted(c, beta) - exact)[c["m"]:] for c in mine]))
    return out


def target_rows(infos: list[dict], cases: list[dict], betas: dict[str, float]) -> list[dict]:
    """`ttscale plan BANK --target T`'s N (the smallest whose predicted maj@N reaches T) per pilot and
    target, on the plain curve and on the shifted one (``betas[corpus]``): hit = the exact maj@N
    reaches T, N ratio = N / the smallest N that truly does. Targets lie between the exact maj@1 and
    maj@(K/2), so an N up to K is scored; past K is "beyond" (unscored)."""
    rows = []
    for info in infos:
        exact = np.asarray(info["exact_curve"])
        half = exact[: max(len(exact) // 2, 1)]
        for c in (x for x in cases if x["corpus"] == info["corpus"]):
            for f in TARGET_FRACTIONS:
                t = half[0] + f * (half[-1] - half[0])
                true_n = int(np.flatnonzero(exact >= t - 1e-12)[0]) + 1
                for kind, beta in (("plain", np.inf), ("shifted", betas[info["corpus"]])):
                    reach = np.flatnonzero(shifted(c, beta) >= t)
                    row = {"corpus": info["corpus"], "seed": c["seed"], "fraction": f, "kind": kind, "answered": bool(reach.size)}
                    if reach.size:
                        i = int(reach[0])
                        row.update(n=i + 1, hit=bool(exact[i] >= t - 1e-12), n_ratio=(i + 1) / true_n)
                    rows.append(row)
    return rows


def target_summary(rows: list[dict], corpus: str, kind: str) -> tuple[float, float, int]:
    """(hit rate, median N ratio, how many were beyond K) for one corpus and curve."""
    mine = [r for r in rows if r["corpus"] == corpus and r["kind"] == kind]
    done = [r for r in mine if r["answered"]]
    if not done:
        return float("nan"), float("nan"), len(mine)
    return float(np.mean([r["hit"] for r in done])), float(np.median([r["n_ratio"] for r in done])), len(mine) - len(done)


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
    from ttscale.curves.majority import PILOT_SHIFT_DECAY

    maes = {b: curve_mae(infos, cases, b) for b in DECAYS}
    pick = lambda train: min(DECAYS, key=lambda b: np.mean([maes[b][x] for x in train]))  # noqa: E731
    betas = {x: pick([y for y in names if y != x]) for x in names}
    beta_all = pick(names)
    lines.append("The curve between the pilot and K: mean |predicted - exact maj@N| over N in (m, K] (points), the model's "
                 "dataset curve plain and shifted by the pilot's exact maj@m minus the model's, fading as (m / N)^beta "
                 "(beta chosen leaving one corpus out, by that error).")
    lines.append("")
    lines.append("| corpus | gap at m (pilot - model) | plain | held-out beta | shifted |")
    lines.append("|---|---|---|---|---|")
    for x in names:
        gap = np.mean([c["pilot_m"] - c["pred_m"] for c in cases if c["corpus"] == x])
        lines.append(f"| {x} | {100 * gap:+.2f} | {100 * maes[float('inf')][x]:.2f} | {betas[x]:g} | {100 * maes[betas[x]][x]:.2f} |")
    lines.append(f"| mean | | {100 * np.mean([maes[float('inf')][x] for x in names]):.2f} | | "
                 f"{100 * np.mean([maes[betas[x]][x] for x in names]):.2f} |")
    lines.append(f"beta chosen on all corpora: {beta_all:g}; ttscale.curves.majority.PILOT_SHIFT_DECAY = {PILOT_SHIFT_DECAY:g} "
                 f"({'equal' if beta_all == PILOT_SHIFT_DECAY else 'DIFFERENT'}); mean error per beta on all corpora: "
                 + ", ".join(f"{b:g} {100 * np.mean(list(maes[b].values())):.2f}" for b in DECAYS))
    lines.append("")
    big = [i for i in infos if i["K"] >= TARGET_MIN_K]
    trows = target_rows(big, cases, betas)
    lines.append(f"`ttscale plan BANK --target T` from the same pilots, on the corpora with K >= {TARGET_MIN_K}: the smallest N "
                 "whose predicted maj@N reaches T; targets " + ", ".join(f"{f:g}" for f in TARGET_FRACTIONS) + " of the way "
                 "from the exact maj@1 to maj@(K/2), so an N up to K is scored on the bank; hit = the exact maj@N reaches T "
                 "(an unbiased N hits about half the time); N ratio = N / the smallest N that truly does (median).")
    lines.append("")
    lines.append("| corpus | plain: hit | N ratio | shifted (held-out beta): hit | N ratio | beyond K (plain / shifted) |")
    lines.append("|---|---|---|---|---|---|")
    for x in (i["corpus"] for i in big):
        p, q = target_summary(trows, x, "plain"), target_summary(trows, x, "shifted")
        lines.append(f"| {x} | {p[0]:.2f} | {p[1]:.2f} | {q[0]:.2f} | {q[1]:.2f} | {p[2]} / {q[2]} |")
    lines.append(f"({time.time() - t0:.0f} s)")
    text = "\n".join(lines)
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".txt").write_text(text + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(
        {"seeds": args.seeds, "level": LEVEL, "spreads": SPREADS, "corpora": infos, "summary": summary,
         "held_out_choices": held, "all_corpora_choice": everything, "shift_decay_held_out": betas, "shift_decay_all": beta_all,
         "cases": cases}, indent=1) + "\n")


if __name__ == "__main__":
    main()
