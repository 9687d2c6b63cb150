"""The lines ``ttscale demo`` ends with: what only the optimizer answers, from the demo's own bank.

The predicted majority-vote ceiling with its interval and the fixed N a target needs (the
planner, :func:`ttscale.offline.plan`), and the samples the live adaptive budget
(``Budget(adaptive=True)``, the ``default`` rule) spends for the accuracy of a fixed N, scored
exactly over every order of the bank's samples (:func:`ttscale.planning.simulation.cheapest_live_budget`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ttscale.answers.candidates import Candidates

TOLERANCE = 0.001
"""The adaptive budget counts as matching fixed majority@N within 0.1 point (as ``ttscale simulate``)."""


@dataclass(frozen=True)
class OptimizerSummary:
    n: int
    majority: float
    """Exact majority@N on the bank."""
    ceiling: float
    halfwidth: float
    ceiling_n: int
    level: float
    target: float
    recommended_n: int | None
    reason: str
    adaptive_samples: float | None
    adaptive_accuracy: float | None
    adaptive_confidence: float | None

    def lines(self) -> list[str]:
        pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
        out = [f"What the optimizer says (majority vote; fixed N = {self.n} gets {pct(self.majority)} here):",
               f"  ceiling  {pct(self.ceiling)} +/- {100 * self.halfwidth:.1f} predicted at N = {self.ceiling_n} "
               f"({self.level:.0%} interval)"]
        if self.recommended_n is not None:
            out.append(f"  target   {pct(self.target)} needs N = {self.recommended_n} samples per question (fixed)")
        else:
            out.append(f"  target   {pct(self.target)}: {self.reason}")
        if self.adaptive_samples is not None and self.adaptive_accuracy is not None:
            saved = 1 - self.adaptive_samples / self.n
            out.append(f"  adaptive {self.adaptive_samples:.1f} samples per question instead of {self.n} for "
                       f"{pct(self.adaptive_accuracy)} ({saved:.0%} fewer):")
            out.append(f"           Budget(samples={self.n}, adaptive=True, confidence={self.adaptive_confidence:g})")
        else:
            out.append(f"  adaptive no setting of the default rule matches majority@{self.n} on this bank")
        return out


def default_target(majority: float, ceiling: float) -> float:
    """Halfway from what N gets to the ceiling, in whole points (at least one point above N's)."""
    return max(math.floor(100 * (majority + ceiling) / 2) / 100, min(math.floor(100 * majority + 1) / 100, ceiling))


def optimizer_summary(bank: Path, candidates: Sequence[Candidates], n: int, *, target: float | None = None,
                      seed: int = 0) -> OptimizerSummary:
    from ttscale.adaptive.exact_replay import VoteStates
    from ttscale.estimate.exact import candidates_to_arrays, majority_at_k
    from ttscale.offline import plan
    from ttscale.planning.simulation import cheapest_live_budget

    kept = [p for p in candidates if p.n >= n]
    counts, correct, sizes = candidates_to_arrays(kept)
    majority = float(majority_at_k(counts, correct, sizes, [n]).mean())
    live = cheapest_live_budget(VoteStates(kept, n), n, max(majority - TOLERANCE, 0.0))
    curve = plan(bank, equivalence="string", seed=seed).curve  # the fitted majority curve, as `ttscale plan` fits it
    ceiling, half = curve.ceiling
    goal = default_target(majority, ceiling) if target is None else target
    reach = np.flatnonzero(curve.mean >= goal)  # plan's rule for a target: the first N the curve reaches it
    recommended = int(curve.n[reach[0]]) if reach.size else None
    return OptimizerSummary(
        n=n, majority=majority, ceiling=ceiling, halfwidth=half, ceiling_n=int(curve.n[-1]), level=float(curve.level),
        target=goal, recommended_n=recommended, reason="above the predicted ceiling; lower --target",
        adaptive_samples=None if live is None else live.mean_samples,
        adaptive_accuracy=None if live is None else live.accuracy,
        adaptive_confidence=None if live is None else live.confidence,
    )
