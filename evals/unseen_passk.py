"""Leave-one-corpus-out check of pass@k extrapolation (issue 15, item 3).

Corpora with enough samples per problem that pass@k is known far beyond a pilot:

* ``pythia-small`` / ``-mid`` / ``-large``: ../shared/data/banks/pass_counts_gsm8k_pythia_checkpoints.csv
  by model size (14M-160M, 410M-1.4B, 2.8B-12B); each checkpoint with >= 20 problems of >= 10,000
  samples is one dataset (truth at k = 100, 1,000, 10,000);
* ``arith-*``: evals/data/pass-*.csv (the embedded model, 200 problems x >= 1,024 samples, made by
  evals/corpora.py), each split into 4 datasets of 50 problems (truth at k = 100, 1,000);
* ``micro-*``: evals/data/micro-pass-*.csv, the same from a second, smaller model (arith-micro), 512 samples
  per problem (truth at k = 100).

For every dataset and seed a pilot of 32 samples per problem is drawn without replacement
(hypergeometric, seeded). Every fixed method is fitted on the pilot and predicts pass@k; the truth
is the exact unbiased pass@k of the full counts. Combination rules (a median of methods, a mean, a
stacked blend whose weights are fitted) and their interval width are *fitted on all corpora but
one and scored on the one left out*, in turn: the figure reported for a corpus is always held out.
The "automatic" choice is itself chosen that way (the candidate rule with the lowest error on the
training corpora), which is exactly what ``ttscale plan -p pass`` ships: the same choice made on
all corpora (printed at the end, with the constants to put in ``ttscale.curves.passk_blend``).

``gated@anchored`` is a stacked blend per regime of the pilot: one set of weights for pilots that
solved most problems at least once (share never solved below a split), one for the others, each
fitted on the training pilots of its regime; the split is chosen on the training corpora too (the
lowest mean regret; among tied splits, the middle one). Power laws fitted to the dataset curve of a
pilot whose problems are mostly solved, but rarely, under-shoot; the beta-binomial over the problems'
rates does not.

Run (about 6 minutes):  .venv/bin/python evals/unseen_passk.py [--seeds 20] [--pilot 32]
Writes evals/results/unseen_passk.json and .txt.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ttscale.curves import BetaBinomialPassAtK, ExpPowerLaw, LogLogRegression, PowerLawWithFloor  # noqa: E402
from ttscale.errors import EstimationError  # noqa: E402
from ttscale.estimate.exact import pass_at_k  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "banks"
KS = np.array([100, 1000, 10000])
FIXED = ["BB", "ZI-BB", "BB+shape", "ExpPL", "PL+floor", "LogLog", "LogLog-err"]
SHAPE_GRID = np.exp(np.linspace(np.log(0.03), np.log(30.0), 25))
SHAPE_PRIOR_SD = 0.5
SEEDS = 20
"""Pilots per dataset. The embedded corpora have four datasets each, so with 5 seeds a corpus's figures
rest on 20 pilots of the same 200 problems, and the best fixed method in hindsight (the lowest of 25 noisy
MAEs) is optimistic: on micro-default-T0.7 the beta-binomial's 0.66 at k = 100 became 0.90 with 80 pilots."""
LIBRARY_NAMES = {"BB": "bb", "BB+shape": "bb-shape", "ExpPL": "exp-power-law", "LogLog": "log-log", "PL+floor": "power-law+floor"}
PYTHIA_GROUPS = {"pythia-small": ("14M", "70M", "160M"), "pythia-mid": ("410M", "1B", "1.4B"),
                 "pythia-large": ("2.8B", "6.9B", "12B")}
"""The Pythia checkpoints as three corpora by model size (a rule fitted on small models is scored on large ones)."""
TOLERANCE_POINTS = 0.25  # "within 10% of the best" also holds within this many points (near-zero errors)


def load_corpora(min_n: int = 500) -> dict[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    """corpus -> [(dataset name, n, c)]; problems with fewer than ``min_n`` samples are dropped."""
    out: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    rows: dict[str, list[tuple[int, int]]] = {}
    with open(SHARED / "pass_counts_gsm8k_pythia_checkpoints.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            if int(r["n"]) >= 10_000:
                rows.setdefault(r["model"], []).append((int(r["n"]), int(r["correct"])))
    for group, sizes in PYTHIA_GROUPS.items():
        out[group] = [(m, np.array([x[0] for x in v]), np.array([x[1] for x in v]))
                      for m, v in sorted(rows.items()) if len(v) >= 20 and m.split("_")[1] in sizes]
    for path in sorted((REPO / "evals" / "data").glob("*pass-*.csv")):
        table: list[tuple[int, int]] = []
        with open(path, newline="") as fh:
            for r in csv.DictReader(fh):
                table.append((int(r["n"]), int(r["correct"])))
        arr = np.array([t for t in table if t[0] >= min_n])
        if len(arr) < 100:
            continue
        model, _, setting = path.stem.partition("pass-")  # pass-SET-T (arith-tiny), micro-pass-SET-T (arith-micro)
        name = f"{model.rstrip('-') or 'arith'}-{setting}"
        parts = np.array_split(np.arange(len(arr)), 4)
        out[name] = [(f"{name}/{i}", arr[p, 0], arr[p, 1]) for i, p in enumerate(parts)]
    return out


def shape_profile(c: np.ndarray, m: int) -> np.ndarray:
    """Pilot log-likelihood at each shape of SHAPE_GRID (mean refitted); zeros when uninformative."""
    if c.sum() == 0 or c.sum() == c.size * m:
        return np.zeros(SHAPE_GRID.size)
    return np.array([BetaBinomialPassAtK(shape_prior=(a, 1e-3), n_bootstrap=0).fit(m, c).loglik_ for a in SHAPE_GRID])


def fixed_predictions(c: np.ndarray, m: int, shape: float, ks: np.ndarray) -> dict[str, np.ndarray]:
    n = np.full(c.size, m)
    models = {
        "BB": BetaBinomialPassAtK(n_bootstrap=0),
        "ZI-BB": BetaBinomialPassAtK(zero_inflated=True, n_bootstrap=0),
        "BB+shape": BetaBinomialPassAtK(shape_prior=(shape, SHAPE_PRIOR_SD), n_bootstrap=0),
        "ExpPL": ExpPowerLaw(n_bootstrap=0),
        "PL+floor": PowerLawWithFloor(n_bootstrap=0),
        "LogLog": LogLogRegression(transform="neglog", n_bootstrap=0),
        "LogLog-err": LogLogRegression(transform="err", n_bootstrap=0),
    }
    out = {}
    exact_m = float(pass_at_k(n, c, [m]).mean())
    for name, model in models.items():
        try:
            pred = np.asarray(model.fit_counts(n, c).predict(np.concatenate([[m], ks])), dtype=float)
            out[name] = pred[1:]
            out[name + "@anchored"] = anchor(pred[1:], pred[0], exact_m)
        except EstimationError:
            out[name] = out[name + "@anchored"] = np.full(ks.size, np.nan)
    return out


def anchor(pred: np.ndarray, pred_m: float, exact_m: float) -> np.ndarray:
    """Rescale a curve's failure rate so it passes through the pilot's exact pass@m:
    1 - p(k) -> (1 - p(k)) (1 - exact(m)) / (1 - p(m))."""
    if pred_m >= 1.0 or not np.isfinite(pred_m):
        return pred
    return 1.0 - (1.0 - pred) * (1.0 - exact_m) / (1.0 - pred_m)


def collect(corpora, seeds: int, m: int) -> list[dict]:
    """One row per (corpus, dataset, seed): pilot summary, truth, each fixed method's prediction.
    BB+shape needs a shape fitted on *other* corpora, so its prediction is stored per held-out
    corpus via the pilot's shape profile (combined in ``shape_for``)."""
    rows = []
    for corpus, datasets in corpora.items():
        for name, n, c in datasets:
            ks = KS[KS <= n.min()]
            truth = pass_at_k(n, c, ks).mean(axis=0)
            for seed in range(seeds):
                rng = np.random.default_rng(1000 * seed + 17)
                pilot = rng.hypergeometric(c, n - c, m)
                rows.append({"corpus": corpus, "dataset": name, "seed": seed, "ks": ks, "truth": truth,
                             "pilot": pilot, "m": m, "profile": shape_profile(pilot, m),
                             "pilot_pass": float(pass_at_k(np.full(pilot.size, m), pilot, [m]).mean()),
                             "zero_share": float(np.mean(pilot == 0))})
    return rows


def shape_for(rows: list[dict], held_out: str) -> float:
    """A shared Beta shape from the other corpora: each corpus's shape maximising its pooled pilot
    likelihood, then their geometric mean (each corpus counts once, however many problems it has)."""
    corpora = sorted({r["corpus"] for r in rows if r["corpus"] != held_out})
    logs = []
    for corpus in corpora:
        total = sum(r["profile"] for r in rows if r["corpus"] == corpus)
        if np.ptp(total) > 0:
            logs.append(np.log(SHAPE_GRID[int(np.argmax(total))]))
    return float(np.exp(np.mean(logs))) if logs else 1.0


# ------------------------------------------------------------------------------ combination rules
def combine(rule: str, preds: dict[str, np.ndarray], weights: dict[str, float] | None = None) -> np.ndarray:
    if rule in preds:
        return preds[rule]
    if rule == "median3":
        return np.nanmedian(np.stack([preds["BB"], preds["ExpPL"], preds["LogLog"]]), axis=0)
    if rule == "median-all":
        return np.nanmedian(np.stack([preds[f] for f in FIXED]), axis=0)
    if rule == "mean(ExpPL,LogLog)":
        return np.nanmean(np.stack([preds["ExpPL"], preds["LogLog"]]), axis=0)
    if rule == "median(ExpPL,LogLog,BB+shape)":
        return np.nanmedian(np.stack([preds["ExpPL"], preds["LogLog"], preds["BB+shape"]]), axis=0)
    if rule.startswith(("stack", "gated")):
        assert weights is not None
        suffix = "@anchored" if rule.endswith("@anchored") else ""
        w = weights[suffix]
        stacked = np.stack([np.nan_to_num(preds[f + suffix], nan=0.0) for f in w])
        return np.tensordot(np.array(list(w.values())), stacked, axes=1)
    if rule.endswith("@anchored"):
        base = rule.removesuffix("@anchored")
        anchored = {k.removesuffix("@anchored"): v for k, v in preds.items() if k.endswith("@anchored")}
        return combine(base, anchored, weights)
    raise KeyError(rule)


COMBOS = ["median3", "median-all", "mean(ExpPL,LogLog)", "median(ExpPL,LogLog,BB+shape)", "stack"]
FIXED_ALL = FIXED + [f + "@anchored" for f in FIXED]
"""Every single method, plain and anchored at the pilot: "the best fixed method in hindsight" is the best of these."""
RULES = FIXED_ALL + COMBOS + [c + "@anchored" for c in COMBOS] + ["gated@anchored"]
STACK_BASE = ["BB", "BB+shape", "ExpPL", "LogLog", "PL+floor"]
SPLITS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Candidate splits of the gated stack: the share of the pilot's problems never solved."""


def row_weights(rule: str, r: dict, weights):
    """The stack weights ``rule`` uses on row ``r``: the gated stack has one set for pilots with most
    problems solved at least once (unsolved share below its split) and one for the others."""
    if rule.startswith("gated"):
        gate = weights["gated"]
        return gate["low"] if r["zero_share"] < gate["split"] else gate["high"]
    return weights


def fit_gated(rows: list[dict], split: float) -> dict:
    """A stack per regime (pilots with an unsolved share below / at or above ``split``), each fitted on
    that regime's rows (on all rows when a regime has none)."""
    low = [r for r in rows if r["zero_share"] < split]
    high = [r for r in rows if r["zero_share"] >= split]
    every = fit_stack(rows) if not (low and high) else None
    return {"split": split, "low": fit_stack(low) if low else every, "high": fit_stack(high) if high else every}


def choose_split(rows: list[dict], by_corpus: dict[str, list[dict]], best_fixed: dict, corpora: list[str],
                 weights: dict) -> tuple[dict, dict[float, float]]:
    """The gated stack's split: the lowest mean regret over ``corpora`` (stacks refitted per split on
    ``rows``); among splits tied within 0.001 the middle one (training pilots leave gaps in the unsolved
    share, and the middle of a gap is the choice that leans on neither side)."""
    scores, gates = {}, {}
    for split in SPLITS:
        gates[split] = fit_gated(rows, split)
        trial = {**weights, "gated": gates[split]}
        scores[split] = float(np.mean([regret(corpus_mae(by_corpus[h], "gated@anchored", trial), best_fixed[h]) for h in corpora]))
    low = min(scores.values())
    tied = [split for split in SPLITS if scores[split] <= low + 1e-3]
    return gates[tied[len(tied) // 2]], scores


def fit_stack(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Simplex weights over STACK_BASE minimising mean absolute error (points) on ``rows``, for
    the plain and the anchored curves."""
    return {suffix: _fit_stack(rows, suffix) for suffix in ("", "@anchored")}


def _fit_stack(rows: list[dict], suffix: str) -> dict[str, float]:
    # Each corpus counts once (its mean absolute error), however many pilots it has.
    parts = []
    for corpus in sorted({r["corpus"] for r in rows}):
        mine = [r for r in rows if r["corpus"] == corpus]
        P = np.concatenate([np.stack([np.nan_to_num(r["pred"][f + suffix], nan=0.0) for f in STACK_BASE]) for r in mine], axis=1)
        parts.append((P, np.concatenate([r["truth"] for r in mine])))

    def loss(z: np.ndarray) -> float:
        w = np.exp(z - z.max())
        w /= w.sum()
        return float(np.mean([np.mean(np.abs(w @ P - T)) for P, T in parts]))

    best = min((minimize(loss, z0, method="Nelder-Mead", options={"maxiter": 2000, "xatol": 1e-4, "fatol": 1e-7})
                for z0 in [np.zeros(len(STACK_BASE))] + [np.eye(len(STACK_BASE))[i] * 3 for i in range(len(STACK_BASE))]),
               key=lambda r: r.fun)
    w = np.exp(best.x - best.x.max())
    return {k: float(v) for k, v in zip(STACK_BASE, (w / w.sum()).round(4))}


def describe(weights: dict) -> str:
    """The anchored stack weights (non-zero ones), and the gated stack's per regime."""
    def one(w: dict[str, float]) -> str:
        return "{" + ", ".join(f"{k} {v:.3f}" for k, v in w["@anchored"].items() if v >= 5e-4) + "}"
    text = "stack " + one(weights)
    if "gated" in weights:
        g = weights["gated"]
        text += f"; gated: unsolved share < {g['split']:.1f} {one(g['low'])}, else {one(g['high'])}"
    return text


def corpus_mae(rows: list[dict], rule: str, weights=None) -> dict[int, float]:
    """Mean absolute error in points per k over a corpus's rows."""
    errs: dict[int, list[float]] = {}
    for r in rows:
        p = combine(rule, r["pred"], row_weights(rule, r, weights))
        for k, pk, t in zip(r["ks"], p, r["truth"]):
            errs.setdefault(int(k), []).append(100 * abs((0.0 if not np.isfinite(pk) else pk) - t))
    return {k: float(np.mean(v)) for k, v in errs.items()}


def choose_rule(by_corpus: dict[str, list[dict]], best_fixed: dict[str, dict[int, float]], corpora: list[str],
                weights) -> tuple[str, dict[str, float]]:
    """The "automatic" rule: the lowest mean regret over ``corpora``; also every rule's score."""
    scores = {rule: float(np.mean([regret(corpus_mae(by_corpus[h], rule, weights), best_fixed[h]) for h in corpora]))
              for rule in RULES}
    return min(RULES, key=lambda r: scores[r]), scores


def regret(mae: dict[int, float], best: dict[int, float]) -> float:
    """Mean over k of the error relative to the best fixed method (with a small-error floor)."""
    return float(np.mean([(mae[k] + TOLERANCE_POINTS) / (best[k] + TOLERANCE_POINTS) for k in mae]))


def interval(r: dict, center: np.ndarray, scale: float, anchored: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """center -/+ scale x (spread of the fixed methods around it + 1 point) in quadrature with the
    sampling error of a mean over the pilot's problems, the upper end also
    raised by what never-solved problems could add (rule of three: at most min(P0, 3k/m) / P);
    never below the pilot's own pass@m (pass@k only rises with k) nor above 1."""
    suffix = "@anchored" if anchored else ""
    stack = np.stack([np.nan_to_num(r["pred"][f + suffix], nan=0.0) for f in STACK_BASE])
    spread = np.max(np.abs(stack - center), axis=0) + 0.01
    pilot = r["pilot"]
    zero = int(np.sum(pilot == 0))
    unseen = np.minimum(zero, 3.0 * r["ks"] / r["m"]) / pilot.size
    sampling = 1.96 * np.sqrt(np.clip(center, 0, 1) * (1 - np.clip(center, 0, 1)) / pilot.size)
    half = np.hypot(scale * spread, sampling)
    lo = np.clip(center - half, r["pilot_pass"] - 0.05, 1.0)
    hi = np.clip(center + half + unseen, 0.0, 1.0)
    return np.maximum(lo, 0.0), hi


def coverage(rows: list[dict], rule: str, weights, scale: float) -> float:
    hit, total = 0, 0
    for r in rows:
        c = np.nan_to_num(combine(rule, r["pred"], row_weights(rule, r, weights)), nan=0.0)
        lo, hi = interval(r, c, scale, anchored=rule.endswith("@anchored"))
        hit += int(np.sum((lo - 1e-9 <= r["truth"]) & (r["truth"] <= hi + 1e-9)))
        total += r["truth"].size
    return hit / max(total, 1)


def calibrate_scale(rows: list[dict], rule: str, weights, goal: float = 0.95) -> float:
    for scale in np.arange(0.5, 6.01, 0.25):  # at least half the spread: the components disagree for a reason
        if coverage(rows, rule, weights, float(scale)) >= goal:
            return float(scale)
    return 6.0


def library_matches(shipped: dict) -> bool:
    """Whether ``ttscale.curves.passk_blend``'s defaults are the choice made on all corpora (to the digits shipped)."""
    from ttscale.curves import passk_blend as lib

    def as_lib(w: dict) -> dict:
        return {LIBRARY_NAMES[k]: round(v, 4) for k, v in w.items() if round(v, 4) > 0}

    gated = shipped["weights"]["gated"]
    return (shipped["auto"] == "gated@anchored"
            and as_lib(gated["high"]["@anchored"]) == dict(lib.DEFAULT_WEIGHTS)
            and as_lib(gated["low"]["@anchored"]) == dict(lib.DEFAULT_SOLVED_WEIGHTS)
            and abs(gated["split"] - lib.DEFAULT_UNSOLVED_SPLIT) < 1e-9
            and abs(shipped["shape"] - lib.DEFAULT_SHAPE_PRIOR[0]) < 0.005 and lib.DEFAULT_SHAPE_PRIOR[1] == SHAPE_PRIOR_SD
            and abs(shipped["scale"] - lib.DEFAULT_INTERVAL_SCALE) < 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=SEEDS)
    ap.add_argument("--pilot", type=int, default=32)
    ap.add_argument("--out", type=Path, default=REPO / "evals" / "results" / "unseen_passk")
    args = ap.parse_args()
    t0 = time.time()
    corpora = load_corpora()
    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    say(f"pilot {args.pilot} samples/problem, {args.seeds} seeds; corpora: "
        + ", ".join(f"{k} ({len(v)} datasets, {sum(len(d[1]) for d in v)} problems)" for k, v in corpora.items()))
    rows = collect(corpora, args.seeds, args.pilot)
    names = list(corpora)
    # Fixed-method predictions; BB+shape with the shape fitted on the other corpora.
    shapes = {h: shape_for(rows, h) for h in names}
    for r in rows:
        r["pred"] = fixed_predictions(r["pilot"], args.pilot, shapes[r["corpus"]], r["ks"])
    say(f"fixed methods fitted ({time.time() - t0:.0f}s); BB+shape prior shape per held-out corpus: "
        + ", ".join(f"{h} {shapes[h]:.2f}" for h in names))

    by_corpus = {h: [r for r in rows if r["corpus"] == h] for h in names}
    # The best single method in hindsight per corpus and k (fixed methods need no training).
    best_fixed = {}
    for h in names:
        maes = [corpus_mae(by_corpus[h], f) for f in FIXED_ALL]
        best_fixed[h] = {k: min(m[k] for m in maes) for k in maes[0]}
    report: dict = {"pilot": args.pilot, "seeds": args.seeds, "corpora": {}, "ks": KS.tolist()}
    for held in names:
        train = [r for r in rows if r["corpus"] != held]
        train_names = [h for h in names if h != held]
        weights = fit_stack(train)
        weights["gated"], split_scores = choose_split(train, by_corpus, best_fixed, train_names, weights)
        auto, train_scores = choose_rule(by_corpus, best_fixed, train_names, weights)
        scale = calibrate_scale(train, auto, weights)
        test = by_corpus[held]
        mae = {rule: corpus_mae(test, rule, weights) for rule in RULES}
        best_fixed_name = {k: min(FIXED_ALL, key=lambda f: mae[f][k]) for k in mae["BB"]}
        cov = coverage(test, auto, weights, scale)
        report["corpora"][held] = {"auto": auto, "weights": weights, "scale": scale, "coverage": cov,
                                   "mae": mae, "best_fixed": best_fixed_name, "train_scores": train_scores,
                                   "split_scores": split_scores}
        say()
        say(f"held out: {held} ({len(test)} pilots, unsolved share {np.mean([r['zero_share'] for r in test]):.2f}); "
            f"automatic choice (from the other corpora): {auto}; interval scale {scale:.2f}")
        say(f"  stack weights {describe(weights)}")
        say(f"  gated stack: split {weights['gated']['split']:.1f} (training regret by split: "
            + ", ".join(f"{k:.1f} {v:.3f}" for k, v in split_scores.items()) + ")")
        ks = sorted(mae["BB"])
        say(f"  {'method':32s}" + "".join(f"{'k=' + str(k):>10s}" for k in ks))
        for rule in RULES:
            mark = " <- auto" if rule == auto else ""
            say(f"  {rule:32s}" + "".join(f"{mae[rule][k]:10.2f}" for k in ks) + mark)
        ok = all(mae[auto][k] <= 1.10 * mae[best_fixed_name[k]][k] + TOLERANCE_POINTS for k in ks)
        say("  best fixed per k: " + ", ".join(f"k={k} {best_fixed_name[k]} {mae[best_fixed_name[k]][k]:.2f}" for k in ks)
            + f"; auto within 10% (or {TOLERANCE_POINTS} pt): {'yes' if ok else 'NO'}; 95% interval coverage {cov:.3f}")
    # The shipped choice: the same selection on all corpora.
    weights = fit_stack(rows)
    weights["gated"], split_scores = choose_split(rows, by_corpus, best_fixed, names, weights)
    auto, scores = choose_rule(by_corpus, best_fixed, names, weights)
    scale = calibrate_scale(rows, auto, weights)
    report["shipped"] = {"auto": auto, "weights": weights, "scale": scale, "shape": shape_for(rows, ""),
                         "scores": scores}
    say()
    say(f"shipped (fitted on all corpora): {auto}, stack weights {describe(weights)}, interval scale {scale:.2f}, "
        f"BB+shape prior shape {report['shipped']['shape']:.2f}; mean regret by rule: "
        + ", ".join(f"{r} {s:.3f}" for r, s in sorted(scores.items(), key=lambda x: x[1])))
    say(f"library constants (ttscale.curves.passk_blend) equal this choice: {'yes' if library_matches(report['shipped']) else 'NO'}")
    say(f"total {time.time() - t0:.0f}s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=float))
    args.out.with_suffix(".txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
