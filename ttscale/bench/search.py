"""Step-level search in ``ttscale bench`` (``--search``): one resumable bank per method and width, and
the comparison with sampling at matched total tokens per problem.

The stage runs :func:`ttscale.search.bank.run_search` into ``search/METHOD-wWIDTH-SCORER.jsonl``
for the problems a bank does not hold yet, so a rerun searches nothing and a killed run redoes at
most the problems in flight. The generator (an engine start) and the step scorer are built only
when some problem is missing. A bank searched with other parameters is refused, not mixed.

The figures are read back from the banks: a search's answer is its best-scored final candidate
(ties credited by the share right), its compute the tokens it generated (pruned steps included)
plus the tokens its step scorer read. Sampling policies are priced the same way: the bank's
generated tokens at k, plus, for a policy ranking by a model scorer's rewards, the tokens that
scorer read (the prompt and each sample). At each width the best search is set against the best
single-answer sampling policy (not the oracle, not top-k-answers) at the tokens it used: it
``beats`` sampling when it is more accurate, by more than one problem, than the best policy at the
smallest k that used at least as many tokens, and ``trails`` when it is less accurate than the best
policy at the largest k that used no more (token counts within 2% count as equal).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ttscale.bench.config import SEARCH_DIR, BenchConfig, policy_variants
from ttscale.bench.results import (
    EvalSection,
    MatchedVerdict,
    SamplingAt,
    SamplingPoint,
    SearchPoint,
    SearchSection,
)
from ttscale.errors import ConfigError
from ttscale.records.files import finite_json
from ttscale.records.models import Record

MODEL_SCORERS = ("reward-model", "vllm-reward", "prm", "vllm-prm", "judge")
"""Bench scorers that run a model over the prompt and the sample (confidence reads stored log-probs)."""


# --- stage: run the searches -----------------------------------------------------------------


@dataclass
class SearchOutcome:
    searched: dict[str, int] = field(default_factory=dict)
    """Problems searched this run, per search bank name (0: the bank already held them all)."""
    seconds: float = 0.0


def _stored_params(records: Sequence[Record]) -> list[tuple[str, dict[str, Any], str]]:
    out = []
    for r in records:
        s = (r.model_extra or {}).get("search")
        if isinstance(s, dict):
            out.append((r.id, s.get("params") or {}, str(s.get("scorer"))))
    return out


def check_search_bank(records: Sequence[Record], expected: dict[str, Any], scorer: str, bank: Any) -> None:
    """Refuse to grow a search bank searched with other parameters or another step scorer."""
    for pid, params, stored_scorer in _stored_params(records):
        if stored_scorer != scorer:
            raise ConfigError("--search-scorer", scorer, f"{stored_scorer!r}, the step scorer {bank} was searched with "
                              "(or another --out folder)")
        diff = sorted(k for k in set(params) | set(expected) if params.get(k) != expected.get(k))
        if diff:
            k = diff[0]
            raise ConfigError("--search", f"{k}={expected.get(k)!r}", f"{params.get(k)!r}, the {k} {bank} was searched with "
                              f"(problem {pid}; or another --out folder)")


def search_stage(config: BenchConfig, make_generator: Callable[[], Any], make_scorer: Callable[[], Any], *,
                 on_step: Callable[[str], None] | None = None) -> SearchOutcome:
    """Search every problem each search bank lacks; build the generator and scorer only when needed."""
    import time

    from ttscale.records.bank import read_bank
    from ttscale.sampling.driver import existing_counts
    from ttscale.search.bank import run_search

    settings = config.search
    outcome = SearchOutcome()
    if settings is None:
        return outcome
    started = time.perf_counter()
    (config.out_dir / SEARCH_DIR).mkdir(parents=True, exist_ok=True)
    built: dict[str, Any] = {}
    try:
        for method, width in settings.runs():
            params = settings.params(method, width)
            bank = config.search_bank(method, width)
            if bank.exists():
                check_search_bank(read_bank(bank).records, params.to_json(), _scorer_name(settings.scorer), bank)
            have = existing_counts(bank, config.problems)
            todo = [p for p in config.problems if not have.get(p.id)]
            outcome.searched[bank.name] = len(todo)
            if not todo:
                continue
            if "generator" not in built:
                if on_step:
                    on_step("starting the search engine")
                built["generator"] = make_generator()
                built["scorer"] = make_scorer()
            if on_step:
                on_step(f"{method.value} search, width {width}: {len(todo)} problems")
            run_search(todo, built["generator"], built["scorer"], params, bank, meta=dict(config.meta),
                       in_flight=settings.in_flight)
    finally:
        for name in ("scorer", "generator"):
            close = getattr(built.get(name), "close", None)
            if close is not None:
                close()
        outcome.seconds = time.perf_counter() - started
    return outcome


def _scorer_name(spec: str) -> str:
    """The name a step scorer writes into a bank (``prm:FOLDER`` writes ``prm``)."""
    return spec.partition(":")[0]


# --- figures ---------------------------------------------------------------------------------


def search_point(config: BenchConfig, method: Any, width: int) -> SearchPoint:
    """One search bank's accuracy and cost over the bench's problems."""
    from ttscale.answers.grading import load_candidates

    assert config.search is not None
    path = config.search_bank(method, width)
    settings = config.analysis
    bank, candidates = load_candidates(path, settings.equivalence, settings.grade)
    at = {r.id: i for i, r in enumerate(bank.records)}
    rows = [at[p.id] for p in config.problems if p.id in at]
    if len(rows) < len(config.problems):
        raise ConfigError("search bank", str(path), f"results for all {len(config.problems)} problems (it has {len(rows)})")
    accuracy, passed, cost = [], [], {k: [] for k in ("generated_tokens", "scored_tokens", "requests", "seconds")}
    for i in rows:
        c = candidates[i]
        correct = c.correct
        rewards = c.rewards if c.rewards is not None else np.zeros(c.n)
        if c.n == 0:
            accuracy.append(0.0)
        else:
            best = rewards == np.max(rewards)
            accuracy.append(float(np.mean(correct[best])))
        passed.append(float(bool(np.any(correct))))
        spent = ((bank.records[i].model_extra or {}).get("search") or {}).get("cost") or {}
        for key, values in cost.items():
            value = spent.get(key, 0)
            values.append(float(value) if isinstance(value, (int, float)) else 0.0)
    mean = {k: float(np.mean(v)) for k, v in cost.items()}
    params = config.search.params(method, width)
    return SearchPoint(method=method.value, width=width, keep=params.keep, bank=f"{SEARCH_DIR}/{path.name}",
                       problems=len(rows), accuracy=float(np.mean(accuracy)), pass_at_n=float(np.mean(passed)),
                       generated_tokens_per_problem=mean["generated_tokens"], scored_tokens_per_problem=mean["scored_tokens"],
                       total_tokens_per_problem=mean["generated_tokens"] + mean["scored_tokens"],
                       requests_per_problem=mean["requests"], seconds_per_problem=mean["seconds"])


def single_answer(policy: Any) -> bool:
    """A policy that submits one answer without reading the reference (the oracle and top-k-answers do not)."""
    answers = getattr(policy.params, "answers", 1)
    return policy.selector != "oracle" and (not isinstance(answers, int) or answers <= 1)


def sampling_points(config: BenchConfig, ev: EvalSection, prompt_tokens: float,
                    output_per_sample: float | None) -> tuple[list[SamplingPoint], list[SamplingPoint]]:
    """Every sampling policy at each k, and pass@k, priced in total tokens per problem."""
    if ev.tokens is None:
        return [], []
    variants = {v.label: v for v in policy_variants(config.policies, config.scorers)}
    per_read = prompt_tokens + (output_per_sample or 0.0)
    points = []
    for name, curve in ev.policies.items():
        variant = variants.get(name)
        model = variant is not None and variant.scorer in MODEL_SCORERS
        single = variant is not None and single_answer(variant.policy)
        for k, acc, gen in zip(ev.k, curve.accuracy, ev.tokens):
            read = k * per_read if model else 0.0
            points.append(SamplingPoint(policy=name, k=k, accuracy=acc, generated_tokens_per_problem=float(gen),
                                        scored_tokens_per_problem=read, total_tokens_per_problem=float(gen) + read,
                                        single_answer=single))
    passes = [SamplingPoint(policy="pass@k", k=k, accuracy=acc, generated_tokens_per_problem=float(gen),
                            scored_tokens_per_problem=0.0, total_tokens_per_problem=float(gen), single_answer=False)
              for k, acc, gen in zip(ev.k, ev.pass_at_k, ev.tokens)]
    return points, passes


def _best_at(points: Sequence[SamplingPoint], k: int) -> SamplingAt | None:
    """The most accurate single-answer policy at ``k`` (multi-answer submissions and the oracle do not compete)."""
    at = [p for p in points if p.k == k and p.accuracy is not None and p.single_answer]
    if not at:
        return None
    best = max(at, key=lambda p: p.accuracy)  # type: ignore[arg-type,return-value]
    return SamplingAt(policy=best.policy, k=k, accuracy=best.accuracy, total_tokens_per_problem=best.total_tokens_per_problem)  # type: ignore[arg-type]


MATCH = 0.02
"""Token counts within this fraction of each other count as equal (means over problems are not exact)."""


def verdicts(points: Sequence[SearchPoint], sampling: Sequence[SamplingPoint], tie: float) -> list[MatchedVerdict]:
    """Per width: the best search against the best sampling policy bracketing its tokens (see the module doc)."""
    best_k = [b for b in (_best_at(sampling, k) for k in sorted({p.k for p in sampling})) if b is not None]
    eps = tie / 100 + 1e-9
    out = []
    for width in sorted({p.width for p in points}):
        s = max((p for p in points if p.width == width), key=lambda p: p.accuracy)
        tokens = s.total_tokens_per_problem
        below = max((b for b in best_k if b.total_tokens_per_problem <= tokens * (1 + MATCH)), key=lambda b: b.k, default=None)
        above = min((b for b in best_k if b.total_tokens_per_problem >= tokens * (1 - MATCH)), key=lambda b: b.k, default=None)
        head = f"width {width}: the best search, {s.method} ({100 * s.accuracy:.1f}% at {tokens:,.0f} tokens/problem),"

        def said(b: SamplingAt) -> str:
            ratio = f", {b.total_tokens_per_problem / tokens:.2f}x the search's" if tokens else ""
            return f"{b.policy}@{b.k} ({100 * b.accuracy:.1f}% at {b.total_tokens_per_problem:,.0f} tokens{ratio})"

        def points_vs(b: SamplingAt) -> str:
            return f"{100 * (s.accuracy - b.accuracy):+.1f} points"

        if above is not None and s.accuracy > above.accuracy + eps:
            word = "beats"
            text = (f"beats the best sampling policy at the same tokens, {said(above)}: {points_vs(above)}" if above is below
                    else f"beats the best sampling policy with at least as many tokens, {said(above)}: {points_vs(above)}")
        elif below is not None and s.accuracy < below.accuracy - eps:
            word = "trails"
            text = (f"trails the best sampling policy at the same tokens, {said(below)}: {points_vs(below)}" if above is below
                    else f"trails the best sampling policy with no more tokens, {said(below)}: {points_vs(below)}")
        elif above is not None and below is not None:
            word = "between"
            text = (f"ties with the best sampling policy at the same tokens, {said(below)}: {points_vs(below)}, "
                    f"within one problem" if above is below else
                    f"lies between the best sampling policies with fewer and with more tokens, {said(below)} and {said(above)}")
        elif below is not None:
            word = "undecided"
            text = (f"is at least as good as {said(below)}, which used fewer tokens; no k of the bank used as many "
                    "tokens as the search (a larger --n would settle it)")
        elif above is not None:
            word, text = "undecided", f"used fewer tokens than one sample and is not better than {said(above)}"
        else:
            word, text = "undecided", "has no single-answer sampling policy to compare with"
        out.append(MatchedVerdict(width=width, method=s.method, accuracy=s.accuracy, total_tokens_per_problem=tokens,
                                  below=below, above=above, verdict=word, text=f"{head} {text}"))
    return out


def search_section(config: BenchConfig, ev: EvalSection, prompt_tokens: float, output_per_sample: float | None) -> SearchSection:
    """The search figures of a run whose banks are complete (after :func:`search_stage`)."""
    settings = config.search
    assert settings is not None
    points = [search_point(config, m, w) for m, w in settings.runs()]
    sampling, passes = sampling_points(config, ev, prompt_tokens, output_per_sample)
    tie = 100 / max(1, ev.problems)
    notes = []
    if settings.scorer == "oracle":
        notes.append("The oracle step checker knows each step's right result (it reads the problem's reference chain): "
                     "search guided by it is a ceiling to compare with pass@k, not with policies that never see the answer.")
    if any(p.scored_tokens_per_problem for p in sampling):
        notes.append("Sampling policies ranking by a model scorer's rewards are charged the prompt plus each sample as "
                     "tokens that scorer read (an estimate: the bank does not log them).")
    if ev.tokens is None:
        notes.append("The bank has no token counts: no matched-compute comparison.")
    left_out = list(dict.fromkeys(p.policy for p in sampling if not p.single_answer))
    if left_out:
        verb = "submits" if len(left_out) == 1 else "submit"
        notes.append(f"{', '.join(left_out)} {verb} several answers or read the reference: shown, but not the best sampling "
                     "policy a search is judged against (a search submits one answer).")
    judged = verdicts(points, sampling, tie) if sampling else []
    if settings.scorer == "oracle":  # the oracle's search is a ceiling: say where pass@k stands at the same tokens
        ceiling = {p.k: p for p in passes if p.accuracy is not None}
        judged = [v.model_copy(update={"text": v.text + f"; pass@{ref.k}, sampling's oracle ceiling there, is {100 * ceiling[ref.k].accuracy:.1f}%"})  # type: ignore[operator]
                  if (ref := v.above or v.below) is not None and ref.k in ceiling else v for v in judged]
    return SearchSection.model_validate(finite_json({
        "scorer": settings.scorer, "settings": settings.model_dump(mode="json"),
        "points": [p.model_dump(mode="json") for p in points],
        "sampling": [p.model_dump(mode="json") for p in sampling],
        "pass": [p.model_dump(mode="json") for p in passes],
        "verdicts": [v.model_dump(mode="json") for v in judged],
        "tie_points": tie, "notes": notes,
    }))
