"""The selectors' exact closed forms, registered with the selector registry from the estimation layer.

Selection sits below estimation, so a selector cannot import its own closed form; instead this
module (imported by :mod:`ttscale.estimate.evaluate`) fills the registry's ``exact`` slot. A
selector without one, or with parameters its form does not cover, is resampled.

* ``majority`` with one answer: maj@k with tie credit (:func:`~ttscale.estimate.exact.majority_at_k`);
* ``best-of-n`` with one answer: BoN@k (:func:`~ttscale.estimate.exact.best_of_n_at_k`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ttscale.answers.candidates import Candidates
from ttscale.estimate.exact import best_of_n_at_k, candidates_to_arrays, majority_at_k
from ttscale.selection.params import BestOfNParams, MajorityParams
from ttscale.selection.registry import register_exact

__all__ = ["best_of_n_exact", "majority_exact"]


def _one_answer(params: MajorityParams | BestOfNParams) -> bool:
    return params.answers == 1


@register_exact("majority", when=_one_answer)
def majority_exact(problems: Sequence[Candidates], ks: Sequence[int], params: MajorityParams) -> np.ndarray:
    """(P, K) majority-vote accuracy at each k, ties credited uniformly."""
    counts, correct, n = candidates_to_arrays(problems)
    return majority_at_k(counts, correct, n, ks)


@register_exact("best-of-n", when=_one_answer)
def best_of_n_exact(problems: Sequence[Candidates], ks: Sequence[int], params: BestOfNParams) -> np.ndarray:
    """(P, K) Best-of-N accuracy at each k, reward ties credited uniformly."""
    return best_of_n_at_k([p.rewards for p in problems], [p.correct for p in problems], ks)
