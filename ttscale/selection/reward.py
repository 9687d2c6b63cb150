"""Reward selectors: best-of-n, best-of-majority (BoM) and majority-of-bests (MoB).

Each ranks by a scorer's reward per sample (``Candidates.rewards``) and is registered by name
with its batched twin (see :mod:`ttscale.selection.registry`).
"""

from __future__ import annotations

import numpy as np

from ttscale.answers.candidates import NO_ANSWER, Candidates, Selection
from ttscale.selection.fields import REWARDS
from ttscale.selection.params import (
    BestOfMajorityParams,
    BestOfNParams,
    Fallback,
    MajorityOfBestsParams,
)
from ttscale.selection.registry import register_batched, register_selector
from ttscale.selection.tally import (
    class_score,
    class_score_rows,
    class_table,
    hits,
    keep_count,
    keep_counts,
    scores_of,
    selection_of,
    top_votes_rows,
    vote,
)
from ttscale.selection.ties import (
    rank_random,
    rank_rows,
    top1_rows,
    top_k_random,
    topk_rows,
)

__all__ = ["best_of_majority", "best_of_n", "majority_of_bests"]


@register_selector("best-of-n", BestOfNParams)
def best_of_n(cands: Candidates, rng: np.random.Generator, p: BestOfNParams) -> Selection:
    """The highest-reward sample's class; reward ties uniform over samples. Support = reward.

    With k answers: distinct classes in the order of their best sample.
    """
    rewards = scores_of(cands, REWARDS)
    answered = cands.classes >= 0
    if p.answers == 1:
        best = top_k_random(rewards, 1, rng, answered)
    else:
        order = rank_random(rewards, rng, answered)
        _, first = np.unique(cands.classes[order], return_index=True)
        best = order[np.sort(first)][: p.answers]  # best sample of each class, best first
    if best.size == 0:
        return Selection((), ())
    classes = tuple(int(cands.classes[i]) for i in best)
    return Selection(classes, tuple(float(rewards[i]) for i in best), sample=int(best[0]))


@register_batched("best-of-n")
def _best_of_n_batched(cands: Candidates, idx: np.ndarray, rng: np.random.Generator, p: BestOfNParams) -> np.ndarray:
    rewards = scores_of(cands, REWARDS)[idx]
    cls = cands.classes[idx]
    ok = cands.correct[idx]
    if p.answers == 1:
        pick, has = top1_rows(rewards, cls >= 0, rng)
        return has & ok[np.arange(idx.shape[0]), pick]
    order, count = rank_rows(rewards, cls >= 0, rng)
    ranked = np.take_along_axis(cls, order, axis=1)
    first = _first_occurrence(ranked) & (np.arange(idx.shape[1]) < count[:, None])
    chosen = first & (np.cumsum(first, axis=1) <= p.answers)  # best sample of each class, best first
    return (chosen & np.take_along_axis(ok, order, axis=1)).any(axis=1)


def _first_occurrence(values: np.ndarray) -> np.ndarray:
    """bool (D, m): whether values[d, j] differs from every values[d, :j]."""
    order = np.argsort(values, axis=1, kind="stable")
    v = np.take_along_axis(values, order, axis=1)
    starts = np.ones(v.shape, dtype=bool)
    starts[:, 1:] = v[:, 1:] != v[:, :-1]
    out = np.empty(v.shape, dtype=bool)
    np.put_along_axis(out, order, starts, axis=1)
    return out


@register_selector("best-of-majority", BestOfMajorityParams)
def best_of_majority(cands: Candidates, rng: np.random.Generator, p: BestOfMajorityParams) -> Selection:
    """BoM for Pass@k: keep classes with votes / n >= alpha, submit the top k by class reward.

    n counts every sample (also those without an answer). Support = the class score
    (max or mean reward). Returns fewer than k classes when fewer pass, unless ``fill``.
    """
    counts = cands.counts()
    score = class_score(cands, p.score)
    present = counts > 0
    passing = present & (counts >= p.alpha * cands.n - 1e-12)
    chosen = top_k_random(score, p.answers, rng, passing)
    if chosen.size == 0:
        if p.fallback is Fallback.ABSTAIN:
            return Selection((), ())
        if p.fallback is Fallback.MAJORITY:
            return vote(cands, rng, p.answers)
        chosen = top_k_random(score, p.answers, rng, present)
    elif p.fill and chosen.size < p.answers:
        rest = top_k_random(score, p.answers - chosen.size, rng, present & ~passing)
        chosen = np.concatenate((chosen, rest))
    return selection_of(cands, chosen, score)


@register_batched("best-of-majority")
def _best_of_majority_batched(
    cands: Candidates, idx: np.ndarray, rng: np.random.Generator, p: BestOfMajorityParams
) -> np.ndarray:
    cls = cands.classes[idx]
    C, correct = cands.num_classes, cands.class_correct
    counts = class_table(cls, C)
    score = class_score_rows(cls, scores_of(cands, REWARDS)[idx], C, p.score)
    present = counts > 0
    passing = present & (counts >= p.alpha * idx.shape[1] - 1e-12)  # n = the draw's size
    chosen = topk_rows(score, passing, p.answers, rng)
    hit = hits(chosen, correct)
    none = np.flatnonzero(~passing.any(axis=1))
    if none.size and p.fallback is not Fallback.ABSTAIN:
        if p.fallback is Fallback.MAJORITY:
            hit[none] = hits(top_votes_rows(counts[none], p.answers, rng), correct)
        else:
            hit[none] = hits(topk_rows(score[none], present[none], p.answers, rng), correct)
    if p.fill and p.answers > 1:
        need = p.answers - chosen.sum(axis=1)
        short = np.flatnonzero(passing.any(axis=1) & (need > 0))
        if short.size:
            rest = topk_rows(score[short], present[short] & ~passing[short], need[short], rng)
            hit[short] |= hits(rest, correct)
    return hit


@register_selector("majority-of-bests", MajorityOfBestsParams)
def majority_of_bests(cands: Candidates, rng: np.random.Generator, p: MajorityOfBestsParams) -> Selection:
    """MoB: the m highest-reward answered samples vote (ties at the cut uniform). Support = votes."""
    rewards = scores_of(cands, REWARDS)
    answered = cands.classes >= 0
    n_ans = int(answered.sum())
    if n_ans == 0:
        return Selection((), ())
    m = min(p.top, n_ans) if p.top is not None else keep_count(p.fraction, n_ans)
    return vote(cands, rng, p.answers, index=top_k_random(rewards, m, rng, answered))


@register_batched("majority-of-bests")
def _majority_of_bests_batched(
    cands: Candidates, idx: np.ndarray, rng: np.random.Generator, p: MajorityOfBestsParams
) -> np.ndarray:
    cls = cands.classes[idx]
    answered = cls >= 0
    n_ans = answered.sum(axis=1)
    m = np.minimum(p.top, n_ans) if p.top is not None else keep_counts(p.fraction, n_ans)
    keep = topk_rows(scores_of(cands, REWARDS)[idx], answered, m, rng)  # rows without answers keep none
    votes = class_table(np.where(keep, cls, NO_ANSWER), cands.num_classes)
    return hits(top_votes_rows(votes, p.answers, rng), cands.class_correct)
