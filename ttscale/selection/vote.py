"""Vote selectors: majority, top-k answers, weighted majority and the confidence-filtered vote.

Each is registered by name with its batched twin (see :mod:`ttscale.selection.registry`).
"""

from __future__ import annotations

import numpy as np

from ttscale.answers.candidates import NO_ANSWER, Candidates, Selection
from ttscale.errors import ConfigError
from ttscale.selection.fields import LOGPROBS, REWARDS
from ttscale.selection.params import (
    ConfidenceVoteParams,
    MajorityParams,
    SelectorParams,
    TopKAnswersParams,
    Transform,
    WeightedMajorityParams,
    WeightSource,
)
from ttscale.selection.registry import (
    register_alias,
    register_batched,
    register_selector,
)
from ttscale.selection.tally import (
    class_table,
    hits,
    keep_count,
    keep_counts,
    prefix_votes,
    scores_of,
    selection_of,
    top_votes_rows,
    vote,
)
from ttscale.selection.ties import top_k_random, topk_rows

__all__ = ["confidence_vote", "majority", "top_k_answers", "weighted_majority"]


@register_selector("majority", MajorityParams)
def majority(cands: Candidates, rng: np.random.Generator, p: MajorityParams) -> Selection:
    """Self-consistency: the most-voted classes; ties uniformly at random. Support = votes."""
    return vote(cands, rng, p.answers)


@register_selector("top-k-answers", TopKAnswersParams)
def top_k_answers(cands: Candidates, rng: np.random.Generator, p: TopKAnswersParams) -> Selection:
    """The k most-voted classes (k = `answers`, required), for a k-answer submission. Support = votes."""
    return vote(cands, rng, p.answers)


register_alias("pass-at-k", "top-k-answers")  # its name until 0.x: "pass@k" now means only oracle coverage


@register_batched("majority", prefixes=True)
@register_batched("top-k-answers", prefixes=True)
def _vote_prefixes(
    cands: Candidates, orders: np.ndarray, ks: np.ndarray, rng: np.random.Generator, p: SelectorParams
) -> np.ndarray:
    out = np.empty((orders.shape[0], ks.size), dtype=bool)
    for j, votes in prefix_votes(cands, orders, ks):
        out[:, j] = hits(top_votes_rows(votes, p.answers, rng), cands.class_correct)
    return out


@register_selector("weighted-majority", WeightedMajorityParams)
def weighted_majority(cands: Candidates, rng: np.random.Generator, p: WeightedMajorityParams) -> Selection:
    """Votes weighted by reward or confidence; support = share of the total weight (0..1).

    Weights: softmax w = exp((s - max s) / T) over the answered samples, sigmoid(s / T), or
    the raw score (linear; must be >= 0). NaN scores weigh 0.
    """
    s = scores_of(cands, REWARDS if p.source is WeightSource.REWARD else LOGPROBS)
    ans = cands.classes >= 0
    good = ans & ~np.isnan(s)
    w = np.zeros(cands.n)
    if p.transform is Transform.LINEAR:
        if np.any(s[good] < 0):
            raise ConfigError(
                "transform", "linear",
                f"non-negative rewards for linear weights (min is {s[good].min():g}); use 'softmax' or 'sigmoid'",
            )
        w[good] = s[good]
    elif p.transform is Transform.SIGMOID:
        w[good] = 0.5 * (1.0 + np.tanh(s[good] / (2.0 * p.temperature)))
    elif good.any():
        w[good] = np.exp((s[good] - s[good].max()) / p.temperature)
    total = w.sum()
    if total <= 0 or not np.isfinite(total):  # every weight 0 (or unscored): plain votes
        w = ans.astype(np.float64)
        total = w.sum()
    if total == 0:
        return Selection((), ())
    # summation order can differ in the last ulp: rank ties within TIE_RTOL absorb that
    sums = np.bincount(cands.classes[ans], weights=w[ans], minlength=cands.num_classes) / total
    present = np.bincount(cands.classes[ans], minlength=cands.num_classes) > 0
    return selection_of(cands, top_k_random(sums, p.answers, rng, present), sums)


@register_batched("weighted-majority")
def _weighted_majority_batched(
    cands: Candidates, idx: np.ndarray, rng: np.random.Generator, p: WeightedMajorityParams
) -> np.ndarray:
    s = scores_of(cands, REWARDS if p.source is WeightSource.REWARD else LOGPROBS)[idx]
    cls = cands.classes[idx]
    ans = cls >= 0
    good = ans & ~np.isnan(s)
    with np.errstate(invalid="ignore", over="ignore"):
        if p.transform is Transform.LINEAR:
            bad = np.flatnonzero((good & (s < 0)).any(axis=1))
            if bad.size:  # the first draw the scalar selector would refuse
                row = bad[0]
                raise ConfigError(
                    "transform", "linear",
                    f"non-negative rewards for linear weights (min is {s[row][good[row]].min():g}); "
                    "use 'softmax' or 'sigmoid'",
                )
            w = np.where(good, s, 0.0)
        elif p.transform is Transform.SIGMOID:
            w = np.where(good, 0.5 * (1.0 + np.tanh(s / (2.0 * p.temperature))), 0.0)
        else:
            top = np.where(good, s, -np.inf).max(axis=1, keepdims=True)
            w = np.where(good, np.exp((s - top) / p.temperature), 0.0)
        total = w.sum(axis=1)
    plain = (total <= 0) | ~np.isfinite(total)  # every weight 0 (or unscored): plain votes
    if plain.any():
        w[plain] = ans[plain]
        total[plain] = w[plain].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # total 0: no class present, nothing chosen
        sums = class_table(cls, cands.num_classes, w) / total[:, None]
    present = class_table(cls, cands.num_classes) > 0
    return hits(topk_rows(sums, present, p.answers, rng), cands.class_correct)


@register_selector("confidence-vote", ConfidenceVoteParams)
def confidence_vote(cands: Candidates, rng: np.random.Generator, p: ConfidenceVoteParams) -> Selection:
    """DeepConf-style: keep the most confident ``fraction`` of answered samples, then vote.

    Confidence is the mean token log-prob. Support = votes, or summed exp(log-prob) if weighted.
    """
    logprobs = scores_of(cands, LOGPROBS)
    answered = cands.classes >= 0
    n_ans = int(answered.sum())
    if n_ans == 0:
        return Selection((), ())
    keep = top_k_random(logprobs, keep_count(p.fraction, n_ans), rng, answered)
    weights = np.nan_to_num(np.exp(logprobs), nan=0.0) if p.weighted else None
    return vote(cands, rng, p.answers, index=keep, weights=weights)


@register_batched("confidence-vote")
def _confidence_vote_batched(
    cands: Candidates, idx: np.ndarray, rng: np.random.Generator, p: ConfidenceVoteParams
) -> np.ndarray:
    logprobs = scores_of(cands, LOGPROBS)[idx]
    cls = cands.classes[idx]
    answered = cls >= 0
    keep = topk_rows(logprobs, answered, keep_counts(p.fraction, answered.sum(axis=1)), rng)
    kept = np.where(keep, cls, NO_ANSWER)
    C = cands.num_classes
    if not p.weighted:
        return hits(top_votes_rows(class_table(kept, C), p.answers, rng), cands.class_correct)
    with np.errstate(over="ignore"):
        weights = np.nan_to_num(np.exp(logprobs), nan=0.0)
    present = class_table(kept, C) > 0
    return hits(topk_rows(class_table(kept, C, weights), present, p.answers, rng), cands.class_correct)
