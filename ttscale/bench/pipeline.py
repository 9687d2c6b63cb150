"""The pipeline behind ``ttscale bench``: sample, score, evaluate every policy at every k, plan.

One folder holds one benchmark (``bank.jsonl``, ``bench-state.json``, ``bench-cache.json``,
``results.json`` and the report). Every stage is cheap to run again, so the same command can be
repeated after a kill, with another policy or with a larger ``n``:

1. **sample**: :func:`ttscale.sampling.driver.run_sampling` tops the bank up to ``n`` samples per problem;
   the sampler (a model load, a vLLM start-up) is only built when samples are missing.
2. **score**: :func:`ttscale.scoring.resumable.score_bank` runs only when a sample lacks the score.
3. **analyse**: accuracy at every k per policy (:func:`ttscale.estimate.evaluate.evaluate`), per difficulty
   bucket, and the planner's fitted curves (:func:`ttscale.planning.plan.fit_curve`, :func:`ttscale.planning.plan.plan`).
   Results are cached under a key made of the bank's bytes and every setting that changes a
   figure, and per policy, so adding a policy evaluates only that policy.
4. **report**: :mod:`ttscale.bench.report` writes the files, skipped when ``results.json`` already
   holds the same results.

Numbers are computed here (numpy, no plotting); files are read and written at the stage edges.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ttscale.answers.candidates import Candidates
from ttscale.errors import ConfigError, EstimationError
from ttscale.estimate.evaluate import (
    EvalResult,
    PolicyCurve,
    default_k_grid,
    evaluate,
    missing_fields,
)
from ttscale.planning.cost import Prices, dollars
from ttscale.records.datasets import PACKAGED, Problem
from ttscale.records.files import finite_json, write_json
from ttscale.records.models import Record
from ttscale.sampling.driver import (
    RunStats,
    existing_counts,
    plan_requests,
    run_sampling,
)
from ttscale.selection.policy import Policy

BANK = "bank.jsonl"
STATE = "bench-state.json"
CACHE = "bench-cache.json"
RESULTS = "results.json"
CACHE_VERSION = 2
"""Bumped when cached figures would be computed differently (old caches are then recomputed)."""

DIFFICULTY_FIELDS = ("level", "difficulty", "steps")
"""Row fields read as a problem's difficulty, first one present on every problem wins."""
MAX_BUCKETS = 8
"""More distinct difficulty values than this are grouped (numbers by quantile, text by frequency)."""
PLANNED = ("majority", "pass")
"""Curves the planner fits (the Dirichlet majority model and the beta-binomial pass@k model)."""

_ARITH_STEP = re.compile(r"^[A-Z][a-z]+: -?\d+ [+-] \d+ = -?\d+$")


# --- settings --------------------------------------------------------------------------------


def split_policies(values: Sequence[str]) -> list[str]:
    """Policy specs from comma-separated (and repeated) ``--policies`` values, duplicates dropped.

    A piece with ``=`` but no ``:`` continues the previous spec's overrides, so
    ``majority,best-of-majority:alpha=0.3,answers=2`` is two policies, spelled as ``eval -p`` takes them.
    """
    specs: list[str] = []
    for value in values:
        for piece in (p.strip() for p in value.split(",")):
            if not piece:
                continue
            if "=" in piece and ":" not in piece and specs and ":" in specs[-1]:
                specs[-1] += "," + piece
            else:
                specs.append(piece)
    return list(dict.fromkeys(specs))


@dataclass(frozen=True)
class Variant:
    """One evaluated column: a policy and the scorer whose rewards it reads."""

    label: str
    policy: Policy
    scorer: str | None
    """``rewards.NAME`` the policy ranks by; None: the samples' ``reward`` (or no rewards at all)."""

    @property
    def cache_id(self) -> str:
        return json.dumps([self.label, self.policy.model_dump(mode="json"), self.scorer], sort_keys=True)


def policy_variants(policies: Sequence[Policy], scorers: Sequence[str]) -> list[Variant]:
    """A reward policy is evaluated once per scorer (labelled ``policy[scorer]`` when there are several)."""
    out: dict[str, Variant] = {}
    for p in policies:
        if "rewards" in p.needs and len(scorers) > 1:
            for s in scorers:
                out.setdefault(f"{p.name}[{s}]", Variant(f"{p.name}[{s}]", p, s))
        else:
            scorer = scorers[0] if scorers and "rewards" in p.needs else None
            out.setdefault(p.name, Variant(p.name, p, scorer))
    return list(out.values())


@dataclass(frozen=True)
class AnalysisSettings:
    """Everything besides the bank that changes a reported figure."""

    draws: int = 1000
    seed: int = 0
    equivalence: str = "math"
    grade: str = "auto"
    max_n: int = 1024
    level: float = 0.95
    epsilon: float = 1e-4
    within: float = 0.01
    """Recommend the smallest N within this much accuracy of the predicted ceiling."""

    def __post_init__(self) -> None:
        from ttscale.answers import EquivalenceMode
        from ttscale.answers.grading import GradeSource

        for option, value, kind in (("--equivalence", self.equivalence, EquivalenceMode), ("--grade", self.grade, GradeSource)):
            if value not in {m.value for m in kind}:
                raise ConfigError(option, value, "one of " + ", ".join(m.value for m in kind))


@dataclass
class BenchConfig:
    """A resolved ``ttscale bench`` invocation (the command fills it in from the CLI options)."""

    out_dir: Path
    problems: list[Problem]
    dataset: str
    n: int
    sampling: dict[str, Any]
    """The settings that fix the bank's distribution (model, dataset, temperature, ...): a rerun must match."""
    meta: dict[str, Any]
    """Fields written on each bank line (model, backend)."""
    seed: int | None
    """Base sampling seed (request seeds derive from it)."""
    policies: list[Policy]
    explicit_policies: bool
    """User-chosen policies fail when the bank lacks what they need; defaults are dropped with a note."""
    scorers: list[str] = field(default_factory=list)
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    prices: Prices | None = None
    run_info: dict[str, Any] = field(default_factory=dict)
    """What the report shows as 'what was run' (model, backend, dataset, ...)."""

    @property
    def bank(self) -> Path:
        return self.out_dir / BANK


# --- small I/O helpers -----------------------------------------------------------------------


def read_json(path: Path) -> dict | None:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def bank_digest(path: Path, ids: Sequence[str]) -> str:
    """Digest of the bank's bytes and of the selected ids: any new sample or score changes it."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    h.update("\x00".join(ids).encode())
    return h.hexdigest()


# --- stage 1: sampling -----------------------------------------------------------------------


def check_sampling_settings(state: dict, sampling: dict[str, Any], bank: Path) -> None:
    """Refuse to grow a bank with other sampling settings: the pool would mix two distributions."""
    before = state.get("sampling")
    if not before:
        return
    for key, value in sampling.items():
        if key in before and before[key] != finite_json(value):
            raise ConfigError(f"--{key.replace('_', '-')}", value,
                              f"{before[key]!r}, the setting {bank} was sampled with (or another --out folder)")


def missing_samples(bank: Path, problems: Sequence[Problem], n: int, seed: int | None) -> int:
    """Samples the bank still owes (0: nothing to sample, no sampler needed)."""
    return sum(r.n for r in plan_requests(problems, existing_counts(bank, problems), n, seed))


@dataclass
class SampleOutcome:
    stats: RunStats
    wall: float
    """Seconds from building the sampler to closing it (start-up included); 0 when nothing was sampled."""
    finished: bool = True


def sample_stage(config: BenchConfig, make_sampler: Callable[[], Any], *,
                 on_start: Callable[[int, int], None] | None = None,
                 on_result: Callable[[Any, RunStats], None] | None = None) -> SampleOutcome:
    """Top the bank up to ``n`` with the resumable driver; log the run in the state file (even a failed one)."""
    state_path = config.out_dir / STATE
    state = read_json(state_path) or {}
    check_sampling_settings(state, config.sampling, config.bank)
    if missing_samples(config.bank, config.problems, config.n, config.seed) == 0:
        return SampleOutcome(RunStats(problems=len(config.problems), complete=len(config.problems)), 0.0)
    state["sampling"] = finite_json(config.sampling)
    write_json(state_path, state)  # before the first sample: a killed run is still checked next time
    started = time.perf_counter()
    seen: list[RunStats] = []

    def track(result: Any, stats: RunStats) -> None:
        if not seen:
            seen.append(stats)
        if on_result is not None:
            on_result(result, stats)

    outcome = SampleOutcome(RunStats(problems=len(config.problems)), 0.0, finished=False)
    try:
        sampler = make_sampler()
        try:
            outcome.stats = run_sampling(sampler, config.problems, config.bank, config.n, meta=config.meta,
                                         on_start=on_start, on_result=track)
            outcome.finished = True
        finally:
            sampler.close()
    finally:
        outcome.wall = time.perf_counter() - started
        stats = outcome.stats if outcome.finished else (seen[0] if seen else outcome.stats)
        if stats.requests:
            _log_run(state_path, state, config, stats, outcome.wall, outcome.finished)
    return outcome


def _log_run(path: Path, state: dict, config: BenchConfig, stats: RunStats, wall: float, finished: bool) -> None:
    entry = {"finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "backend": config.meta.get("backend"), "n": config.n, **stats.to_json(), "wall_seconds": wall,
             "completed": finished}
    state.setdefault("runs", []).append(entry)
    write_json(path, state)


# --- stage 2: scoring ------------------------------------------------------------------------


def unscored(records: Sequence[Record], name: str) -> int:
    """Samples without a score under ``name``."""
    return sum(1 for r in records for s in r.samples if s.score(name) is None)


def score_stage(bank: Path, scorers: Sequence[str], make_scorer: Callable[[str], Any], *,
                on_start: Callable[[str, int], None] | None = None,
                on_batch: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Scores every unscored sample in place with each scorer (resumable); returns samples scored per scorer."""
    from ttscale.records.bank import read_bank
    from ttscale.scoring.resumable import score_bank

    scored: dict[str, int] = {}
    for kind in scorers:
        if unscored(read_bank(bank).records, kind) == 0:
            scored[kind] = 0
            continue
        scorer = make_scorer(kind)
        try:
            stats = score_bank(bank, scorer, on_start=None if on_start is None else (lambda total, k=kind: on_start(k, total)),
                               on_batch=on_batch)
        finally:
            scorer.close()
        scored[kind] = stats.scored
    return scored


# --- difficulty ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difficulty:
    """A bucket label per problem, and the buckets in display order (easy to hard where known)."""

    source: str
    """The field the labels come from (``level``, ``steps``, ...) or ``pass-rate``."""
    labels: list[str]
    order: list[str]


def _natural_key(text: str) -> tuple:
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def bucket_values(name: str, values: Sequence[Any]) -> Difficulty:
    """Labels from raw difficulty values; more than :data:`MAX_BUCKETS` distinct ones are grouped."""
    nums = [_number(v) for v in values]
    numeric = all(v is not None for v in nums)
    if numeric:
        arr = np.asarray(nums, dtype=float)
        if np.unique(arr).size <= MAX_BUCKETS:
            labels = [f"{name} {v:g}" for v in arr]
        else:
            edges = np.unique(np.quantile(arr, np.linspace(0, 1, 6)))
            group = np.clip(np.searchsorted(edges, arr, side="right") - 1, 0, max(edges.size - 2, 0))
            spans = {g: (arr[group == g].min(), arr[group == g].max()) for g in np.unique(group)}
            labels = [f"{name} {spans[g][0]:g}-{spans[g][1]:g}" for g in group]
        order = sorted(set(labels), key=lambda lab: _number(lab.split(" ")[-1].split("-")[0]) or 0.0)
        return Difficulty(name, labels, order)
    labels = [str(v) for v in values]
    common = [lab for lab, _ in Counter(labels).most_common()]
    if len(common) > MAX_BUCKETS:
        keep = set(common[: MAX_BUCKETS - 1])
        labels = [lab if lab in keep else "other" for lab in labels]
    order = sorted(set(labels), key=lambda lab: (lab == "other", _natural_key(lab)))
    return Difficulty(name, labels, order)


def arith_steps(solution: Any) -> int | None:
    """Steps of a worked solution in the embedded arithmetic task's form (``First: 16 - 16 = 0``)."""
    if not isinstance(solution, str):
        return None
    steps = sum(1 for line in solution.splitlines() if _ARITH_STEP.match(line.strip()))
    return steps or None


def difficulty_from_rows(rows: Sequence[dict[str, Any]]) -> Difficulty | None:
    """Difficulty from a field every row has (level, difficulty, steps), or from arithmetic solutions."""
    if not rows:
        return None
    for name in DIFFICULTY_FIELDS:
        values = [r.get(name) for r in rows]
        if all(v is not None and not isinstance(v, (dict, list)) for v in values):
            return bucket_values(name, values)
    steps = [arith_steps(r.get("solution")) for r in rows]
    if all(s is not None for s in steps):
        return bucket_values("steps", steps)
    return None


PASS_RATE_BUCKETS = ("solved 0%", "solved <50%", "solved 50-99%", "solved 100%")


def difficulty_from_pass_rate(problems: Sequence[Candidates]) -> Difficulty:
    """Buckets by the share of a problem's samples that are correct (the model's own difficulty)."""
    rate = np.array([float(p.correct.mean()) if p.n else 0.0 for p in problems])
    index = np.select([rate <= 0, rate < 0.5, rate < 1], [0, 1, 2], 3)
    labels = [PASS_RATE_BUCKETS[i] for i in index]
    return Difficulty("pass-rate", labels, [b for b in PASS_RATE_BUCKETS if b in set(labels)])


def problem_rows(dataset: str, records: Sequence[Record]) -> list[dict[str, Any]]:
    """Each record's dataset row (any extra fields: level, solution, ...) over the bank line's extras."""
    if dataset in PACKAGED:
        from ttscale.arith.paths import test_set_path

        path: Path | None = test_set_path(PACKAGED[dataset])
    else:
        path = Path(dataset) if Path(dataset).is_file() else None
    rows: dict[str, dict[str, Any]] = {}
    if path is not None:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    obj = json.loads(line)
                    rows[str(obj.get("id"))] = obj
    return [{**(r.model_extra or {}), **rows.get(r.id, {})} for r in records]


# --- stage 3: analysis -----------------------------------------------------------------------


def curve_json(curve: PolicyCurve) -> dict[str, Any]:
    return {"accuracy": curve.accuracy, "stderr": curve.stderr, "method": curve.method}


def evaluate_variant(problems: Sequence[Candidates], variant: Variant, ks: list[int], groups: dict[str, np.ndarray],
                     settings: AnalysisSettings) -> dict[str, Any]:
    """One policy's curve over all problems and over each difficulty bucket."""
    def one(subset: Sequence[Candidates]) -> dict[str, Any]:
        result = evaluate(subset, [variant.policy], ks, draws=settings.draws, seed=settings.seed)
        return curve_json(result.policies[variant.policy.name])

    overall = one(problems)
    out = {"overall": overall, "buckets": {lab: one([problems[i] for i in idx]) for lab, idx in groups.items()}}
    if variant.policy.name != "majority":  # majority has the planner's Dirichlet model (the base figures)
        out["fit"] = policy_fit(variant.label, ks, overall["accuracy"], len(problems), settings)
    return out


def policy_fit(label: str, ks: list[int], accuracy: list[float | None], questions: int,
               settings: AnalysisSettings) -> dict[str, Any]:
    """A curve family fitted to one policy's observed accuracy (``plan.fit_accuracy_curve``): its ceiling,
    its best N when more samples hurt, and the predicted curve; ``{"error": ...}`` when it cannot be fitted."""
    from ttscale.planning.plan import fit_accuracy_curve

    acc = [float("nan") if a is None else float(a) for a in accuracy]
    try:
        curve = fit_accuracy_curve(label, ks, acc, questions, max_n=settings.max_n, level=settings.level, seed=settings.seed)
    except EstimationError as exc:
        return {"error": str(exc)}
    ceiling, half = curve.ceiling
    return {"method": curve.method, "level": curve.level, "best_n": curve.best_n,
            "ceiling": {"n": int(curve.n[-1]), "accuracy": ceiling, "halfwidth": half},
            "curve": {"n": curve.n, "mean": curve.mean, "low": curve.low, "high": curve.high}}


def planner_summary(problems: Sequence[Candidates], *, prompt_tokens: float, output_tokens: float | None,
                    settings: AnalysisSettings) -> dict[str, Any]:
    """Fitted majority and pass@k curves with the saturation N and the N within ``within`` of the ceiling."""
    from ttscale.planning.plan import CostModel, fit_curve, plan

    cost = CostModel(prompt_tokens=prompt_tokens, output_tokens=output_tokens)
    out: dict[str, Any] = {}
    for name in PLANNED:
        try:
            curve = fit_curve(problems, name, max_n=settings.max_n, level=settings.level, seed=settings.seed)
            common = dict(policy=name, curve=curve, cost=cost, epsilon=settings.epsilon, max_n=settings.max_n,
                          level=settings.level, seed=settings.seed)
            saturation = plan(problems, **common)
            ceiling, half = curve.ceiling
            target = ceiling - settings.within
            near = plan(problems, target=target, **common) if target > 0 else None
        except EstimationError as exc:
            out[name] = {"error": str(exc)}
            continue
        out[name] = {
            "method": curve.method, "level": curve.level, "best_n": curve.best_n,
            "observed": {"k": curve.observed_k, "accuracy": curve.observed_acc},
            "ceiling": {"n": int(curve.n[-1]), "accuracy": ceiling, "halfwidth": half},
            "saturation": {"epsilon": settings.epsilon, **saturation.row(saturation.saturation_n)},
            "within": None if near is None or near.recommended_n is None else
                      {"points": 100 * settings.within, **near.row(near.recommended_n)},
            "curve": {"n": curve.n, "mean": curve.mean, "low": curve.low, "high": curve.high},
        }
    return out


def prompt_tokens_per_question(records: Sequence[Record], counter: Callable[[list[str]], list[int]] | None) -> tuple[float, str]:
    """Mean prompt tokens per question and where the number comes from (bank, tokenizer or estimate)."""
    if not records:
        return 0.0, "none"
    logged = [(r.model_extra or {}).get("prompt_tokens") for r in records]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in logged):
        return float(np.mean(logged)), "bank"
    if counter is not None:
        try:
            return float(np.mean(counter([r.problem or "" for r in records]))), "tokenizer"
        except Exception:  # a tokenizer that fails on some text: fall back to the estimate below
            pass
    return float(np.mean([len(r.problem or "") / 4.0 for r in records])), "estimated (4 characters a token)"


def local_prompt_counter(model_dir: str, config: Any) -> Callable[[list[str]], list[int]]:
    """Prompt tokens under a local model's tokenizer, as the backends build prompts (the hf backend logs none).

    The tokenizer is loaded only when called, i.e. only when the analysis is not cached.
    """
    def count(problems: list[str]) -> list[int]:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        if getattr(config.prompt_format, "value", config.prompt_format) == "chat":
            texts = [tok.apply_chat_template(config.messages(p), add_generation_prompt=True, tokenize=False) for p in problems]
        else:
            texts = [config.render(p) for p in problems]
        return [len(ids) for ids in tok(texts)["input_ids"]]

    return count


@dataclass
class Analysis:
    """What the analysis stage computed this time (the rest came from the cache)."""

    base: dict[str, Any]
    variants: dict[str, dict[str, Any]]
    evaluated: list[str]
    refitted: bool


def analyse(config: BenchConfig, *, prompt_counter: Callable[[list[str]], list[int]] | None = None,
            on_step: Callable[[str], None] | None = None) -> Analysis:
    """Accuracy at every k per policy and difficulty bucket, and the planner's fits, computing only what
    the cache (keyed by the bank's digest and the settings) does not already hold."""
    from ttscale.answers import AnswerClassifier, EquivalenceConfig, EquivalenceMode
    from ttscale.answers.grading import GradeSource, bank_candidates
    from ttscale.records.bank import read_bank

    settings = config.analysis
    mode = EquivalenceMode(settings.equivalence)  # checked by AnalysisSettings
    grade = GradeSource(settings.grade)
    ids = [p.id for p in config.problems]
    ks = default_k_grid([config.n])
    key = {"version": CACHE_VERSION, "bank": bank_digest(config.bank, ids), "k": ks, "draws": settings.draws,
           "seed": settings.seed, "equivalence": settings.equivalence, "grade": settings.grade,
           "max_n": settings.max_n, "level": settings.level, "epsilon": settings.epsilon, "within": settings.within}
    cache_path = config.out_dir / CACHE
    cache = read_json(cache_path) or {}
    if cache.get("key") != key:
        cache = {"key": key, "variants": {}}
    variants = policy_variants(config.policies, config.scorers)
    todo = [v for v in variants if v.cache_id not in cache["variants"]]
    if "base" in cache and not todo:
        return Analysis(cache["base"], cache["variants"], [], False)

    by_id = read_bank(config.bank).by_id()
    records = [by_id[i] for i in ids if i in by_id]
    if len(records) < len(ids):
        raise ConfigError("bank", str(config.bank), f"samples for all {len(ids)} problems (it has {len(records)})")
    classifier = AnswerClassifier(EquivalenceConfig(mode=mode))
    pools: dict[str | None, list[Candidates]] = {}

    def candidates(scorer: str | None) -> list[Candidates]:
        if scorer not in pools:
            if on_step:
                on_step("answer classes" + (f" ({scorer})" if scorer else ""))
            pools[scorer] = bank_candidates(records, classifier, grade=grade, scorer=scorer, path=config.bank)
        return pools[scorer]

    base = cache.get("base") or _base(candidates(None), records, config, ks, prompt_counter, on_step)
    groups = {lab: np.flatnonzero(np.asarray(base["difficulty"]["labels"]) == lab) for lab in base["difficulty"]["order"]}
    evaluated = []
    for v in todo:
        problems = candidates(v.scorer)
        lacking = missing_fields(v.policy, problems)
        if lacking and not config.explicit_policies:
            # A default the bank cannot support (e.g. no log-probs over HTTP): say so instead of failing.
            cache["variants"][v.cache_id] = {"label": v.label, "dropped": f"the bank has no {' or '.join(lacking)}"}
            continue
        if on_step:
            on_step(f"evaluating {v.label}")
        started = time.perf_counter()
        figures = evaluate_variant(problems, v, ks, groups, settings)
        cache["variants"][v.cache_id] = {"label": v.label, **figures, "seconds": time.perf_counter() - started}
        evaluated.append(v.label)
        write_json(cache_path, {**cache, "base": base})  # per policy: a kill loses at most the one in progress
    refitted = "base" not in cache
    cache["base"] = base
    write_json(cache_path, cache)
    return Analysis(base, cache["variants"], evaluated, refitted)


def _base(problems: list[Candidates], records: Sequence[Record], config: BenchConfig, ks: list[int],
          prompt_counter: Callable[[list[str]], list[int]] | None, on_step: Callable[[str], None] | None) -> dict[str, Any]:
    """Policy-independent figures: pass@k, tokens, difficulty buckets, the planner's fits."""
    started = time.perf_counter()
    settings = config.analysis
    overall = evaluate(problems, [], ks, draws=settings.draws, seed=settings.seed)
    difficulty = difficulty_from_rows(problem_rows(config.dataset, records)) or difficulty_from_pass_rate(problems)
    labels = np.asarray(difficulty.labels)
    buckets = []
    for lab in difficulty.order:
        sub = [problems[i] for i in np.flatnonzero(labels == lab)]
        res = evaluate(sub, [], ks, draws=settings.draws, seed=settings.seed)
        buckets.append({"label": lab, "problems": len(sub), "pass": res.pass_at_k})
    prompt, prompt_source = prompt_tokens_per_question(records, prompt_counter)
    tokens = [p.tokens for p in problems]
    output = float(np.mean(np.concatenate(tokens))) if all(t is not None for t in tokens) else None
    if on_step:
        on_step("fitting the planner's curves")
    planner = planner_summary(problems, prompt_tokens=prompt, output_tokens=output, settings=settings)
    samples = np.array([p.n for p in problems])
    return {
        "problems": overall.problems, "k": overall.k, "pass": overall.pass_at_k, "tokens": overall.tokens,
        "problems_at_k": overall.problems_at_k,
        "pool": {"min": int(samples.min()), "max": int(samples.max()), "samples": int(samples.sum())},
        "generated_tokens": None if output is None else int(sum(int(t.sum()) for t in tokens)),
        "output_tokens_per_sample": output,
        "prompt_tokens_per_question": prompt, "prompt_tokens_source": prompt_source,
        "difficulty": {"source": difficulty.source, "labels": difficulty.labels, "order": difficulty.order, "buckets": buckets},
        "planner": planner, "seconds": time.perf_counter() - started,
    }


# --- assembling results.json -----------------------------------------------------------------


def eval_section(base: dict[str, Any], curves: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The ``ttscale eval --json`` object (same fields, same numbers)."""
    return {"problems": base["problems"], "k": base["k"], "pass": base["pass"], "tokens": base["tokens"],
            "policies": curves, "problems_at_k": base["problems_at_k"]}


def cost_rows(base: dict[str, Any], prices: Prices | None) -> list[dict[str, Any]]:
    """Tokens (and dollars) of k samples per question: the prompt prefilled once, k completions."""
    if base["tokens"] is None:
        return []
    prompt, problems = base["prompt_tokens_per_question"], base["problems"]
    rows = []
    for k, generated in zip(base["k"], base["tokens"]):
        row: dict[str, Any] = {"k": k, "prompt_tokens_per_question": prompt, "generated_tokens_per_question": generated,
                               "tokens_per_question": prompt + generated, "tokens_total": problems * (prompt + generated)}
        if prices is not None:
            per_q = dollars(prompt, generated, prices)
            row.update(dollars_per_question=per_q, dollars_total=problems * per_q)
        rows.append(row)
    return rows


def _with_dollars(row: dict[str, Any] | None, base: dict[str, Any], prices: Prices | None) -> dict[str, Any] | None:
    if row is None or prices is None or base["output_tokens_per_sample"] is None:
        return row
    usd = dollars(base["prompt_tokens_per_question"], row["n"] * base["output_tokens_per_sample"], prices)
    return {**row, "dollars_per_question": usd}


def sampling_section(state: dict, base: dict[str, Any]) -> dict[str, Any]:
    runs = state.get("runs", [])
    return {"runs": runs, "wall_seconds": float(sum(r.get("wall_seconds", 0.0) for r in runs)),
            "settings": state.get("sampling"), "samples": base["pool"]["samples"],
            "generated_tokens": base["generated_tokens"],
            "output_tokens_per_sample": base["output_tokens_per_sample"],
            "prompt_tokens_per_question": base["prompt_tokens_per_question"],
            "prompt_tokens_source": base["prompt_tokens_source"]}


def assemble(config: BenchConfig, analysis: Analysis) -> dict[str, Any]:
    """results.json: what was run, the eval table, difficulty buckets, the planner, costs (no NaN)."""
    base = analysis.base
    known = [v for v in policy_variants(config.policies, config.scorers) if v.cache_id in analysis.variants]
    notes = [f"default policy {v.label} left out: {analysis.variants[v.cache_id]['dropped']}"
             for v in known if "dropped" in analysis.variants[v.cache_id]]
    variants = [v for v in known if "dropped" not in analysis.variants[v.cache_id]]
    cached = [analysis.variants[v.cache_id] for v in variants]
    curves = {v.label: c["overall"] for v, c in zip(variants, cached)}
    buckets = [{**b, "policies": {v.label: c["buckets"][b["label"]] for v, c in zip(variants, cached)}}
               for b in base["difficulty"]["buckets"]]
    planner = {}
    for name, summary in base["planner"].items():
        if "error" in summary:
            planner[name] = summary
            continue
        planner[name] = {**summary, "saturation": _with_dollars(summary["saturation"], base, config.prices),
                         "within": _with_dollars(summary["within"], base, config.prices)}
    state = read_json(config.out_dir / STATE) or {}
    return finite_json({
        "ttscale_bench": CACHE_VERSION,
        "run": {**config.run_info, "n": config.n, "problems": base["problems"], "policies": list(curves),
                "scorers": config.scorers, "draws": config.analysis.draws, "seed": config.analysis.seed,
                "equivalence": config.analysis.equivalence, "grade": config.analysis.grade},
        "sampling": sampling_section(state, base),
        "eval": eval_section(base, curves),
        "difficulty": {"source": base["difficulty"]["source"], "buckets": buckets},
        "planner": planner,
        "policy_fits": {v.label: c["fit"] for v, c in zip(variants, cached) if "fit" in c},
        "cost": {"prices": None if config.prices is None else {"input": config.prices.input, "output": config.prices.output},
                 "table": cost_rows(base, config.prices)},
        "analysis_seconds": base["seconds"] + sum(c.get("seconds", 0.0) for c in cached),
        "notes": notes,
    })


def eval_result(results: dict[str, Any]) -> EvalResult:
    """results.json's eval section as an :class:`EvalResult` (for the console table)."""
    ev = results["eval"]
    policies = {name: PolicyCurve(c["accuracy"], c["stderr"], c["method"]) for name, c in ev["policies"].items()}
    return EvalResult(ev["problems"], ev["k"], ev["pass"], ev["tokens"], policies, ev["problems_at_k"])


# --- the whole run ---------------------------------------------------------------------------


@dataclass
class BenchOutcome:
    results: dict[str, Any]
    sampled: SampleOutcome
    scored: dict[str, int]
    evaluated: list[str]
    refitted: bool
    report: str
    """``written`` or ``up to date``."""
    files: list[Path]

    def summary(self) -> dict[str, Any]:
        """What ``ttscale bench --json`` prints: what each stage did this time."""
        return finite_json({"sampled": {**self.sampled.stats.to_json(), "wall_seconds": self.sampled.wall},
                            "scored": self.scored, "evaluated": self.evaluated, "refitted": self.refitted,
                            "report": self.report, "files": [str(f) for f in self.files]})


def run_bench(config: BenchConfig, *, make_sampler: Callable[[], Any], make_scorer: Callable[[str], Any] | None = None,
              prompt_counter: Callable[[list[str]], list[int]] | None = None,
              on_sample_start: Callable[[int, int], None] | None = None,
              on_sample_result: Callable[[Any, RunStats], None] | None = None,
              on_step: Callable[[str], None] | None = None) -> BenchOutcome:
    """Sample, score, analyse and report; each stage skips what an earlier run already did."""
    from ttscale.bench.report import report_files, write_report

    config.out_dir.mkdir(parents=True, exist_ok=True)
    sampled = sample_stage(config, make_sampler, on_start=on_sample_start, on_result=on_sample_result)
    scored: dict[str, int] = {}
    if config.scorers:
        if make_scorer is None:
            raise ConfigError("scorer", config.scorers, "a scorer factory")
        scored = score_stage(config.bank, config.scorers, make_scorer,
                             on_start=None if on_step is None else (lambda k, total: on_step(f"scoring {total} samples ({k})")))
    analysis = analyse(config, prompt_counter=prompt_counter, on_step=on_step)
    results = assemble(config, analysis)
    files = report_files(config.out_dir)
    previous = read_json(config.out_dir / RESULTS)
    if previous == results and all(f.exists() for f in files):
        return BenchOutcome(results, sampled, scored, analysis.evaluated, analysis.refitted, "up to date", files)
    if on_step:
        on_step("writing the report")
    files = write_report(results, config.out_dir)
    return BenchOutcome(results, sampled, scored, analysis.evaluated, analysis.refitted, "written", files)
