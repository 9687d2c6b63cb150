"""The oracle selector: an evaluation upper bound that reads the reference (pass@k coverage).

It picks a correct class whenever a drawn sample has one, so its accuracy at k is pass@k. It is
a benchmark tool, not a policy to deploy (it needs ``reference``).
"""

from __future__ import annotations

import numpy as np

from ttscale.answers.candidates import Candidates, Selection
from ttscale.selection.params import OracleParams
from ttscale.selection.registry import register_batched, register_selector
from ttscale.selection.tally import selection_of
from ttscale.selection.ties import top_k_random

__all__ = ["oracle"]


@register_selector("oracle", OracleParams)
def oracle(cands: Candidates, rng: np.random.Generator, p: OracleParams) -> Selection:
    """Upper bound for benchmarks (pass@n): a correct class if any sample has one, then by votes.

    Reads ``class_correct`` (the reference), so it is an evaluation tool, not a policy to deploy.
    """
    counts = cands.counts().astype(np.float64)
    present = counts > 0
    score = counts + np.where(np.asarray(cands.class_correct, bool), counts.sum() + 1, 0)
    return selection_of(cands, top_k_random(score, p.answers, rng, present), counts)


@register_batched("oracle", prefixes=True)
def _oracle_prefixes(
    cands: Candidates, orders: np.ndarray, ks: np.ndarray, rng: np.random.Generator, p: OracleParams
) -> np.ndarray:
    # a correct class, when one has votes, outranks every other: correct iff a drawn sample is
    seen = np.logical_or.accumulate(cands.correct[orders[:, : ks.max()]], axis=1)
    return seen[:, ks - 1]
