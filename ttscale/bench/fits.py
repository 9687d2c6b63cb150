"""The planner's fitted curves in a bench report: majority and pass@k, and a curve family per other policy.

Majority has the planner's Dirichlet model and pass@k its beta-binomial one
(:func:`ttscale.planning.plan.fit_curve`), with the saturation N and the smallest N within a few
points of the predicted ceiling (:func:`ttscale.planning.plan.plan`). Any other policy gets the
bounded curve ``ttscale plan -p NAME`` fits (:func:`ttscale.planning.plan.fit_policy_curve`: a
vote-type policy anchored on the majority model, a reward-selected one a floored power law, both
capped by pass@N; on fewer than 20 questions the floored power law on the observed points).
"""

from __future__ import annotations

from collections.abc import Sequence

from ttscale.answers.candidates import Candidates
from ttscale.bench.config import AnalysisSettings
from ttscale.bench.results import FitError, PlannerFit, PolicyFit
from ttscale.errors import EstimationError
from ttscale.records.files import finite_json

PLANNED = ("majority", "pass")
"""Curves the planner fits (the Dirichlet majority model and the beta-binomial pass@k model)."""


def _curve(curve: object) -> dict:
    return {"n": curve.n, "mean": curve.mean, "low": curve.low, "high": curve.high}  # type: ignore[attr-defined]


def policy_fit(label: str, ks: list[int], accuracy: Sequence[float | None], questions: int,
               settings: AnalysisSettings, *, problems: Sequence[Candidates] | None = None,
               policy: object | None = None) -> PolicyFit | FitError:
    """One policy's bounded curve: with the bank's ``problems`` and the ``policy``, what ``ttscale plan
    -p NAME`` fits (``plan.fit_policy_curve``); without them, the curve family on the observed accuracy
    (``plan.fit_accuracy_curve``). Its ceiling, its best N when more samples hurt, and the predicted
    curve; a :class:`FitError` when it cannot be fitted."""
    from ttscale.planning.plan import fit_accuracy_curve, fit_policy_curve

    acc = [float("nan") if a is None else float(a) for a in accuracy]
    try:
        if problems is not None and policy is not None:
            curve = fit_policy_curve(problems, policy, ks=ks, max_n=settings.max_n, level=settings.level, seed=settings.seed,
                                     draws=settings.draws, name=label)
        else:
            curve = fit_accuracy_curve(label, ks, acc, questions, max_n=settings.max_n, level=settings.level, seed=settings.seed)
    except EstimationError as exc:
        return FitError(error=str(exc))
    ceiling, half = curve.ceiling
    return PolicyFit.model_validate(finite_json({
        "method": curve.method, "level": curve.level, "best_n": curve.best_n,
        "ceiling": {"n": int(curve.n[-1]), "accuracy": ceiling, "halfwidth": half}, "curve": _curve(curve)}))


def planner_summary(problems: Sequence[Candidates], *, prompt_tokens: float, output_tokens: float | None,
                    settings: AnalysisSettings) -> dict[str, PlannerFit | FitError]:
    """Fitted majority and pass@k curves with the saturation N and the N within ``within`` of the ceiling."""
    from ttscale.planning.plan import CostModel, fit_curve, plan

    cost = CostModel(prompt_tokens=prompt_tokens, output_tokens=output_tokens)
    out: dict[str, PlannerFit | FitError] = {}
    for name in PLANNED:
        try:
            curve = fit_curve(problems, name, max_n=settings.max_n, level=settings.level, seed=settings.seed)
            common = {"policy": name, "curve": curve, "cost": cost, "epsilon": settings.epsilon, "max_n": settings.max_n,
                      "level": settings.level, "seed": settings.seed}
            saturation = plan(problems, **common)
            ceiling, half = curve.ceiling
            target = ceiling - settings.within
            near = plan(problems, target=target, **common) if target > 0 else None
        except EstimationError as exc:
            out[name] = FitError(error=str(exc))
            continue
        out[name] = PlannerFit.model_validate(finite_json({
            "method": curve.method, "level": curve.level, "best_n": curve.best_n,
            "observed": {"k": curve.observed_k, "accuracy": curve.observed_acc},
            "ceiling": {"n": int(curve.n[-1]), "accuracy": ceiling, "halfwidth": half},
            "saturation": {"epsilon": settings.epsilon, **saturation.row(saturation.saturation_n)},
            "within": None if near is None or near.recommended_n is None else
                      {"points": 100 * settings.within, **near.row(near.recommended_n)},
            "curve": _curve(curve),
        }))
    return out
