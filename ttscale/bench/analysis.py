"""Stage 3 of ``ttscale bench``: accuracy at every k per policy and difficulty bucket, and the planner's fits.

Results are cached in ``bench-cache.json`` under a key made of the bank's bytes and every setting
that changes a figure, and per policy, so adding a policy evaluates only that policy. A cache
that does not match the key, or that this version cannot read, is recomputed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field, ValidationError

from ttscale.answers.candidates import Candidates
from ttscale.bench.config import AnalysisSettings, BenchConfig, Variant, policy_variants
from ttscale.bench.difficulty import (
    difficulty_from_pass_rate,
    difficulty_from_rows,
    problem_rows,
)
from ttscale.bench.fits import planner_summary, policy_fit
from ttscale.bench.results import (
    BucketPass,
    Curve,
    FitError,
    Num,
    PlannerFit,
    PolicyFit,
    Section,
)
from ttscale.bench.state import bank_digest, read_json
from ttscale.errors import ConfigError
from ttscale.estimate.evaluate import default_k_grid, evaluate
from ttscale.records.files import finite_json, write_json
from ttscale.records.models import Record
from ttscale.validation import is_number

CACHE = "bench-cache.json"
CACHE_VERSION = 2
"""Bumped when cached figures would be computed differently (old caches are then recomputed)."""

PromptCounter = Callable[[list[str]], list[int]]
"""Prompt tokens of each problem text (a tokenizer as the backend builds prompts)."""


# --- the cached figures ----------------------------------------------------------------------


class Pool(Section):
    min: int
    max: int
    samples: int


class DifficultyFigures(Section):
    source: str
    labels: list[str]
    """Each problem's bucket, in the dataset's order."""
    order: list[str]
    buckets: list[BucketPass]


class BaseFigures(Section):
    """Policy-independent figures: pass@k, tokens, difficulty buckets, the planner's fits."""

    problems: int
    k: list[int]
    pass_at_k: list[float | None] = Field(alias="pass")
    tokens: list[Num] | None
    problems_at_k: list[int]
    pool: Pool
    generated_tokens: int | None
    output_tokens_per_sample: float | None
    prompt_tokens_per_question: Num
    prompt_tokens_source: str
    difficulty: DifficultyFigures
    planner: dict[str, PlannerFit | FitError]
    seconds: Num


class VariantFigures(Section):
    """One policy's curve over all problems and each difficulty bucket, and its fitted curve family."""

    label: str
    overall: Curve
    buckets: dict[str, Curve]
    fit: PolicyFit | FitError | None = Field(default=None, exclude_if=lambda v: v is None)
    """None for majority (the planner's Dirichlet model covers it)."""
    seconds: Num


class DroppedVariant(Section):
    """A default policy the bank cannot serve (e.g. no log-probs over HTTP), and why."""

    label: str
    dropped: str


class AnalysisCache(Section):
    """What ``bench-cache.json`` holds."""

    key: dict[str, Any]
    variants: dict[str, VariantFigures | DroppedVariant] = Field(default_factory=dict)
    """By :attr:`Variant.cache_id`."""
    base: BaseFigures | None = Field(default=None, exclude_if=lambda v: v is None)

    @classmethod
    def load(cls, path: Any, key: dict[str, Any]) -> AnalysisCache:
        """The cache in ``path`` when it was made under ``key``, else an empty one."""
        data = read_json(path) or {}
        if data.get("key") == key:
            try:
                return cls.model_validate(data)
            except ValidationError:  # written by another version: recomputed
                pass
        return cls(key=key)

    def save(self, path: Any) -> None:
        write_json(path, self.model_dump(mode="json"))


@dataclass
class Analysis:
    """The figures of every asked-for policy, and what the analysis stage computed this time."""

    base: BaseFigures
    variants: dict[str, VariantFigures | DroppedVariant]
    evaluated: list[str]
    refitted: bool


# --- computing them --------------------------------------------------------------------------


def evaluate_variant(problems: Sequence[Candidates], variant: Variant, ks: list[int], groups: dict[str, np.ndarray],
                     settings: AnalysisSettings, seconds_from: float) -> VariantFigures:
    """One policy's curve over all problems and over each difficulty bucket."""
    def one(subset: Sequence[Candidates]) -> Curve:
        result = evaluate(subset, [variant.policy], ks, draws=settings.draws, seed=settings.seed)
        return Curve.of(result.policies[variant.policy.name])

    overall = one(problems)
    buckets = {lab: one([problems[i] for i in idx]) for lab, idx in groups.items()}
    # majority has the planner's Dirichlet model (the base figures)
    fit = (policy_fit(variant.label, ks, overall.accuracy, len(problems), settings, problems=problems, policy=variant.policy)
           if variant.policy.name != "majority" else None)
    return VariantFigures(label=variant.label, overall=overall, buckets=buckets, fit=fit,
                          seconds=time.perf_counter() - seconds_from)


def prompt_tokens_per_question(records: Sequence[Record], counter: PromptCounter | None) -> tuple[float, str]:
    """Mean prompt tokens per question and where the number comes from (bank, tokenizer or estimate)."""
    if not records:
        return 0.0, "none"
    logged = [(r.model_extra or {}).get("prompt_tokens") for r in records]
    if all(is_number(v) for v in logged):
        return float(np.mean(logged)), "bank"
    if counter is not None:
        try:
            return float(np.mean(counter([r.problem or "" for r in records]))), "tokenizer"
        except Exception:  # a tokenizer that fails on some text: fall back to the estimate below
            pass
    return float(np.mean([len(r.problem or "") / 4.0 for r in records])), "estimated (4 characters a token)"


def local_prompt_counter(model_dir: str, config: Any) -> PromptCounter:
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


def analyse(config: BenchConfig, *, prompt_counter: PromptCounter | None = None,
            on_step: Callable[[str], None] | None = None) -> Analysis:
    """Accuracy at every k per policy and difficulty bucket, and the planner's fits, computing only what
    the cache (keyed by the bank's digest and the settings) does not already hold."""
    from ttscale.answers.grading import load_candidates

    settings = config.analysis
    ids = [p.id for p in config.problems]
    ks = default_k_grid([config.n])
    key = {"version": CACHE_VERSION, "bank": bank_digest(config.bank, ids), "k": ks, **settings.model_dump(mode="json")}
    cache_path = config.out_dir / CACHE
    cache = AnalysisCache.load(cache_path, key)
    variants = policy_variants(config.policies, config.scorers)
    todo = [v for v in variants if v.cache_id not in cache.variants]
    if cache.base is not None and not todo:
        return Analysis(cache.base, cache.variants, [], False)

    pools: dict[str | None, tuple[list[Record], list[Candidates]]] = {}

    def pool(scorer: str | None) -> tuple[list[Record], list[Candidates]]:
        """The selected problems' records and candidates (rewards from ``scorer``), in the dataset's order."""
        if scorer not in pools:
            if on_step:
                on_step("answer classes" + (f" ({scorer})" if scorer else ""))
            bank, candidates = load_candidates(config.bank, settings.equivalence, settings.grade, scorer=scorer)
            at = {r.id: i for i, r in enumerate(bank.records)}
            found = [at[i] for i in ids if i in at]
            if len(found) < len(ids):
                raise ConfigError("bank", str(config.bank), f"samples for all {len(ids)} problems (it has {len(found)})")
            pools[scorer] = [bank.records[i] for i in found], [candidates[i] for i in found]
        return pools[scorer]

    refitted = cache.base is None
    base = cache.base or base_figures(pool(None)[1], pool(None)[0], config, ks, prompt_counter, on_step)
    labels = np.asarray(base.difficulty.labels)
    groups = {lab: np.flatnonzero(labels == lab) for lab in base.difficulty.order}
    evaluated = []
    for v in todo:
        problems = pool(v.scorer)[1]
        lacking = sorted(v.policy.missing(problems))
        if lacking and not config.explicit_policies:
            # A default the bank cannot support (e.g. no log-probs over HTTP): say so instead of failing.
            cache.variants[v.cache_id] = DroppedVariant(label=v.label, dropped=f"the bank has no {' or '.join(lacking)}")
            continue
        if on_step:
            on_step(f"evaluating {v.label}")
        cache.variants[v.cache_id] = evaluate_variant(problems, v, ks, groups, settings, time.perf_counter())
        evaluated.append(v.label)
        cache.model_copy(update={"base": base}).save(cache_path)  # per policy: a kill loses at most the one in progress
    cache = cache.model_copy(update={"base": base})
    cache.save(cache_path)
    return Analysis(base, cache.variants, evaluated, refitted)


def base_figures(problems: list[Candidates], records: Sequence[Record], config: BenchConfig, ks: list[int],
                 prompt_counter: PromptCounter | None, on_step: Callable[[str], None] | None) -> BaseFigures:
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
    return BaseFigures.model_validate({**finite_json({
        "problems": overall.problems, "k": overall.k, "pass": overall.pass_at_k, "tokens": overall.tokens,
        "problems_at_k": overall.problems_at_k,
        "pool": {"min": int(samples.min()), "max": int(samples.max()), "samples": int(samples.sum())},
        "generated_tokens": None if output is None else int(sum(int(t.sum()) for t in tokens)),
        "output_tokens_per_sample": output,
        "prompt_tokens_per_question": prompt, "prompt_tokens_source": prompt_source,
        "difficulty": {"source": difficulty.source, "labels": difficulty.labels, "order": difficulty.order, "buckets": buckets},
    }), "planner": planner, "seconds": time.perf_counter() - started})
