"""The public offline API: what ``ttscale eval``, ``plan`` and ``simulate`` do, as functions.

For a notebook, without shelling out (the commands call these same functions, so the two agree)::

    from ttscale import evaluate, plan, read_bank, simulate

    bank = read_bank("bank.jsonl", equivalence="math")      # read and grade once
    evaluate(bank, ["majority", "best-of-n"], k=[1, 4, 16]).to_json()
    plan(bank, target=0.9).recommended_n
    simulate(bank, exact=True).cheapest()

Every function takes a bank file path or a :class:`GradedBank` from :func:`read_bank`; with a path
it reads and grades the file first (``equivalence``, ``grade``, ``scorer`` as in ``read_bank``).
Results are the typed objects the commands print; their ``to_json()`` is the commands' ``--json``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from ttscale.answers.candidates import Candidates
from ttscale.answers.equivalence import EquivalenceMode
from ttscale.answers.grading import GradeSource, load_candidates
from ttscale.early_stop.params import EarlyStopParams
from ttscale.errors import BankFormatError, ConfigError
from ttscale.estimate.evaluate import EvalResult
from ttscale.planning.cost import ModelCostSpec, Prices
from ttscale.planning.models import ModelPlan
from ttscale.planning.plan import PlanResult
from ttscale.planning.simulation import SimulationReport
from ttscale.records.bank import Bank
from ttscale.selection.policy import Policy
from ttscale.validation import check_count

__all__ = ["GradedBank", "evaluate", "plan", "plan_models", "read_bank", "read_bank_for_plan", "simulate"]


@dataclass(frozen=True)
class GradedBank:
    """A bank file read and graded once: its records and, per problem, its answer classes,
    their correctness and the samples' rewards (:class:`~ttscale.answers.candidates.Candidates`)."""

    bank: Bank
    """The records (lines with one id merged), the file and a skipped truncated last line, if any."""
    candidates: list[Candidates]
    """One per problem, in the bank's order."""
    equivalence: EquivalenceMode
    """Which answers were taken as one class."""
    grade: GradeSource
    """Where correctness came from."""
    scorer: str | None
    """The samples' ``rewards[NAME]`` used as their reward (None: ``reward``)."""
    count_stopped: bool = False
    """Whether early-stopped traces vote with their partial answers (default: they do not vote)."""

    @property
    def path(self) -> Path:
        return self.bank.path

    @property
    def questions(self) -> int:
        return len(self.candidates)


BankLike = Union[str, "os.PathLike[str]", GradedBank]
"""A bank file's path, or a bank already read by :func:`read_bank`."""


def read_bank(
    path: str | os.PathLike[str],
    *,
    equivalence: EquivalenceMode | str = EquivalenceMode.MATH,
    grade: GradeSource | str = GradeSource.AUTO,
    scorer: str | None = None,
    progress: Callable[[int], None] | None = None,
    count_stopped: bool = False,
) -> GradedBank:
    """Read a bank file (JSONL, one problem per line) and grade every problem's samples.

    ``equivalence``: ``math`` (math-verify) or ``string``; ``grade``: correctness from ``auto`` (the
    reference when there is one), ``reference`` or ``field`` (the samples' ``correct``); ``scorer``:
    reward name. ``count_stopped``: traces the online early stop ended vote with the answer their
    partial text reached (by default they do not vote). ``progress`` is called with 1 after each problem.
    """
    bank, candidates = load_candidates(Path(path), equivalence, grade, scorer, progress=progress, count_stopped=count_stopped)
    return GradedBank(bank, candidates, EquivalenceMode(equivalence), GradeSource(grade), scorer, count_stopped)


def _graded(bank: BankLike, equivalence: EquivalenceMode | str | None, grade: GradeSource | str | None,
            scorer: str | None = None) -> GradedBank:
    """``bank`` read with these settings; a :class:`GradedBank` only when it was read with them."""
    if not isinstance(bank, GradedBank):
        return read_bank(bank, equivalence=equivalence or EquivalenceMode.MATH, grade=grade or GradeSource.AUTO, scorer=scorer)
    for name, asked, have in (("equivalence", equivalence, bank.equivalence), ("grade", grade, bank.grade)):
        if asked is not None and asked != have:
            raise ConfigError(name, asked, f"{have.value}, as the bank was read (read_bank(path, {name}=...) to change it)")
    if scorer is not None and scorer != bank.scorer:
        raise ConfigError("scorer", scorer, f"{bank.scorer!r}, as the bank was read (read_bank(path, scorer=...) to change it)")
    return bank


def evaluate(
    bank: BankLike,
    policies: Sequence[str | Policy] = ("majority",),
    k: Sequence[int] | None = None,
    *,
    draws: int = 1000,
    seed: int = 0,
    equivalence: EquivalenceMode | str | None = None,
    grade: GradeSource | str | None = None,
    scorer: str | None = None,
    on_policy: Callable[[str], None] | None = None,
) -> EvalResult:
    """Accuracy at each k for each policy from the bank's one pool of samples, with pass@k (the
    oracle ceiling) and tokens at k: exact where a closed form exists, else a seeded resampling
    estimate (``draws`` per problem and k) with its standard error.

    ``policies``: preset names (``NAME:key=value`` overrides params), TOML paths or
    :class:`~ttscale.selection.policy.Policy` objects; ``k``: default 1, 2, 4, ... up to the
    smallest pool, and that size.
    """
    from ttscale.estimate.evaluate import evaluate as evaluate_candidates
    from ttscale.selection.policy import load_policy

    draws = check_count("draws", draws, 1, "a positive integer")
    loaded = [p if isinstance(p, Policy) else load_policy(p) for p in policies]
    data = _graded(bank, equivalence, grade, scorer)
    return evaluate_candidates(data.candidates, loaded, k, draws=draws, seed=seed, on_policy=on_policy)


def plan(
    bank: BankLike,
    *,
    policy: str = "majority",
    target: float | None = None,
    budget_samples: float | None = None,
    budget_tokens: float | None = None,
    budget_dollars: float | None = None,
    per_question: bool = False,
    prices: Prices | None = None,
    spec: ModelCostSpec | None = None,
    prompt_tokens: float | None = None,
    output_tokens: float | None = None,
    epsilon: float = 1e-4,
    max_n: int = 1024,
    level: float = 0.95,
    seed: int = 0,
    equivalence: EquivalenceMode | str | None = None,
    grade: GradeSource | str | None = None,
) -> PlanResult:
    """Fit ``policy``'s accuracy against samples per question N (up to ``max_n``, with a ``level``
    interval) and answer one question: the smallest N reaching ``target``, what a budget buys
    (samples per question, or tokens/dollars for the whole bank, ``per_question`` for one), or,
    with neither, the saturation point (gain per extra sample below ``epsilon``).

    Costs: ``prompt_tokens`` (default: problem text / 4) and ``output_tokens`` (default: the
    bank's mean) per question; ``prices`` for dollars, ``spec`` for Kinetics eFLOPs.
    """
    from ttscale.planning.plan import bank_cost_model
    from ttscale.planning.plan import plan as plan_candidates

    data = _graded(bank, equivalence, grade)
    cost = bank_cost_model(data.candidates, [r.problem for r in data.bank.records], prompt_tokens=prompt_tokens,
                           output_tokens=output_tokens, prices=prices, spec=spec)
    return plan_candidates(data.candidates, policy=policy, target=target, budget_samples=budget_samples,
                           budget_tokens=budget_tokens, budget_dollars=budget_dollars, per_question=per_question,
                           cost=cost, epsilon=epsilon, max_n=max_n, level=level, seed=seed)


def plan_models(
    banks: Sequence[BankLike],
    *,
    labels: Sequence[str] | None = None,
    prices: dict[str, Prices] | None = None,
    output_tokens: dict[str, float] | None = None,
    prompt_tokens: dict[str, float] | None = None,
    specs: dict[str, ModelCostSpec] | None = None,
    pilot: int | None = None,
    target: float | None = None,
    budget_dollars: float | None = None,
    budget_tokens: float | None = None,
    per_question: bool = False,
    level: float = 0.95,
    horizon: int | None = None,
    cascade_max_n: int = 16,
    adaptive: bool = True,
    seed: int = 0,
    equivalence: EquivalenceMode | str | None = None,
    grade: GradeSource | str | None = None,
    scorer: str | None = None,
) -> "ModelPlan":
    """Plan across banks of the same questions (models, temperatures; one bank: no cascades): every bank's
    majority@N and ``default`` rule setting and every cascade through two or more banks, cheapest
    first (votes settled by ASC or the default rule, else the next bank), scored exactly on the banks joined by
    question id, or predicted from the first ``pilot`` samples per question; the Pareto frontier
    of accuracy against cost and the option answering ``target`` or a budget.

    ``prices``, ``output_tokens`` (mean generated tokens per sample, for banks without ``tokens``)
    and ``prompt_tokens`` and ``specs`` (Kinetics eFLOPs, every bank or none) are keyed by the bank's label:
    ``labels`` (default: its path as given, ``str(path)``).

    A bank whose samples all carry rewards (``reward``, or ``rewards[scorer]``) also gets Best-of-N and
    reward-weighted majority at each N; a bank file with rewards on only some samples is read without
    them on those questions (a note says how many) and gets none.
    """
    from ttscale.planning.models import join_banks, plan_options

    graded, read_notes = [], []
    for b in banks:
        data, note = read_bank_for_plan(b, equivalence, grade, scorer)
        graded.append(data)
        read_notes += [note] if note else []
    if labels is None:
        labels = [str(b.path) if isinstance(b, GradedBank) else str(b) for b in banks]
    elif len(labels) != len(banks):
        raise ConfigError("labels", len(labels), f"one label per bank ({len(banks)})")
    joined, notes = join_banks([(label, [r.id for r in g.bank.records], g.candidates, [r.problem for r in g.bank.records])
                                for label, g in zip(labels, graded)],
                               prices=prices, output_tokens=output_tokens, prompt_tokens=prompt_tokens, specs=specs)
    return plan_options(joined, pilot=pilot, target=target, budget_dollars=budget_dollars, budget_tokens=budget_tokens,
                        per_question=per_question, level=level, horizon=horizon, cascade_max_n=cascade_max_n,
                        adaptive=adaptive, seed=seed, notes=read_notes + notes)


def _reward_field(exc: BankFormatError) -> bool:
    """Whether a bank was refused for rewards on only some samples of a problem."""
    field = exc.field or ""
    return field.endswith(".reward") or ".rewards." in field


def read_bank_for_plan(bank: BankLike, equivalence: EquivalenceMode | str | None, grade: GradeSource | str | None,
                       scorer: str | None = None, progress: Callable[[int], None] | None = None) -> tuple[GradedBank, str | None]:
    """``bank`` read as :func:`read_bank` does, except that a file whose problems carry rewards on only
    some of their samples is not refused: those problems are read without rewards (a planner needs them
    only for its reward options) and the note returned names the file and how many samples lack them."""
    from ttscale.answers import AnswerClassifier, EquivalenceConfig
    from ttscale.answers.grading import bank_candidates
    from ttscale.records.bank import read_bank as read_records

    try:
        return _graded(bank, equivalence, grade, scorer), None
    except BankFormatError as exc:
        if isinstance(bank, GradedBank) or not _reward_field(exc):
            raise
    data = read_records(Path(bank))
    lacking = total = partial = 0
    kept = []
    for r in data.records:
        have = [s.score(scorer) is not None for s in r.samples]
        lacking += have.count(False)
        total += len(have)
        if any(have) and not all(have):
            partial += 1
            r = r.model_copy(update={"samples": [s.model_copy(update={"reward": None, "rewards": None}) for s in r.samples]})
        kept.append(r)
    eq, gr = EquivalenceMode(equivalence or EquivalenceMode.MATH), GradeSource(grade or GradeSource.AUTO)
    cands = bank_candidates(kept, AnswerClassifier(EquivalenceConfig(mode=eq)), grade=gr, scorer=scorer, path=data.path,
                            progress=progress)
    field = f"rewards.{scorer}" if scorer else "reward"
    note = (f"{bank}: {lacking} of {total} samples carry no '{field}' (on {partial} of {len(kept)} questions only some samples "
            "have it): those questions are read without rewards")
    return GradedBank(data, cands, eq, gr, scorer), note


def simulate(
    bank: BankLike,
    *,
    exact: bool = False,
    target: float | None = None,
    max_k: int | None = None,
    permutations: int = 20,
    seed: int = 0,
    equivalence: EquivalenceMode | str | None = None,
    grade: GradeSource | str | None = None,
    early_stop: EarlyStopParams | None = None,
    on_step: Callable[[str], None] | None = None,
) -> SimulationReport:
    """Replay the adaptive stopping rules and allocators on the bank (``permutations`` seeded orders
    of each question's first ``max_k`` samples; default: the pool size 90% of questions have) and
    find each rule's cheapest setting reaching ``target`` (default: majority@K - 0.1 point).

    ``exact``: also score the count-reading rules over every order (no permutation noise), the
    cheapest live adaptive ``Budget`` and the best any vote-only rule can do (seconds on banks with
    a few answers per question, minutes on scattered ones).

    ``early_stop``: the window and warm-up of the online early stop replayed (over eta) on banks
    whose samples store per-token confidences (``ttscale sample --token-confidence``).
    """
    from ttscale.planning.simulation import simulate_problems

    data = _graded(bank, equivalence, grade)
    return simulate_problems(data.candidates, max_k=max_k, permutations=permutations, seed=seed, target=target,
                             exact=exact, early_stop=early_stop, on_step=on_step)
