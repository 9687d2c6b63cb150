"""First-to-ahead: read samples in order and stop at the first answer ``margin`` votes ahead of every other.

The one implementation of the rule: :func:`is_ahead` (the test), :func:`first_to_ahead` (one
sequence, pure), the ``first-to-ahead`` selector with its one-pass batched twin, and the default
margin :data:`~ttscale.selection.params.DEFAULT_MARGIN`. The stopping rule
``ttscale.adaptive.stopping.FirstToAhead`` applies the same test and default to vote trajectories.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ttscale.answers.candidates import NO_ANSWER, Candidates, Selection
from ttscale.selection.params import DEFAULT_MARGIN, FirstToAheadParams
from ttscale.selection.registry import (
    register_alias,
    register_batched,
    register_selector,
)
from ttscale.selection.tally import hits, top_votes_rows, vote

__all__ = ["DEFAULT_MARGIN", "first_to_ahead", "first_to_ahead_selector", "is_ahead"]


def is_ahead(leader_votes: Any, other_votes: Any, margin: int) -> Any:
    """The rule itself: the leader's votes exceed the best other answer's by at least ``margin``.

    Works on ints and on arrays (the stopping rule applies it to whole vote trajectories).
    """
    return leader_votes - other_votes >= margin


def first_to_ahead(classes: np.ndarray, margin: int = DEFAULT_MARGIN) -> tuple[int, int] | None:
    """(class, index of the deciding sample) for the first class ahead of all others by ``margin``.

    Samples are read in order, NO_ANSWER ones skipped; None when no class ever gets that far
    ahead. ``index + 1`` samples were consumed to decide.
    """
    counts: dict[int, int] = {}
    top1 = top2 = 0  # the best count, and the best count of any other class
    leader = NO_ANSWER
    for i, c in enumerate(np.asarray(classes).tolist()):
        if c < 0:
            continue
        v = counts.get(c, 0) + 1
        counts[c] = v
        if c == leader:
            top1 = v
        elif v > top1:
            leader, top2, top1 = c, top1, v
        else:
            top2 = max(top2, v)
        if c == leader and is_ahead(top1, top2, margin):
            return c, i
    return None


@register_selector("first-to-ahead", FirstToAheadParams)
def first_to_ahead_selector(cands: Candidates, rng: np.random.Generator, p: FirstToAheadParams) -> Selection:
    """Read samples in order; return the first class ahead of every other by ``margin`` votes.

    ``Selection.sample`` is then the deciding sample (``sample + 1`` samples were used) and the
    support is the votes at that point. Without such a moment: plain majority over all samples.
    """
    hit = first_to_ahead(cands.classes, p.margin)
    if hit is None:
        return vote(cands, rng, p.answers)
    cls, stop = hit
    seen = np.arange(stop + 1)
    votes_sel = vote(cands, rng, p.answers, index=seen)
    # the leader is strictly ahead, so it is first; the rest are ranked by votes at the stop
    assert votes_sel.classes[0] == cls
    return Selection(votes_sel.classes, votes_sel.support, sample=stop)


register_alias("first-to-ahead-by-k", "first-to-ahead")  # its name until 0.x (the preset was already first-to-ahead)


@register_batched("first-to-ahead", ordered=True, prefixes=True)
def _first_to_ahead_prefixes(
    cands: Candidates, orders: np.ndarray, ks: np.ndarray, rng: np.random.Generator, p: FirstToAheadParams
) -> np.ndarray:
    """One scan along the orderings serves every k: a draw decided at sample t is decided for all k > t.

    The scalar ``first_to_ahead`` bookkeeping (leader, its votes, the best other votes) runs
    on every row at once; a row leaves the scan when its leader gets ``margin`` ahead. At each
    k the rows still open fall back to plain majority over their first k samples.
    """
    D = orders.shape[0]
    C = cands.num_classes
    W = C + 1  # a spare column takes NO_ANSWER and finished rows
    correct = np.asarray(cands.class_correct, dtype=bool)
    cols = np.ascontiguousarray(np.where(cands.classes < 0, C, cands.classes)[orders[:, : ks.max()]].T)
    counts = np.zeros(D * W, dtype=np.int64)
    base = np.arange(D, dtype=np.int64) * W
    leader = np.full(D, C, dtype=np.int64)
    top1 = np.zeros(D, dtype=np.int64)  # the leader's votes
    top2 = np.zeros(D, dtype=np.int64)  # the best votes of any other class
    open_ = np.ones(D, dtype=bool)
    won = np.zeros(D, dtype=bool)  # decided rows: is their selection correct
    out = np.empty((D, ks.size), dtype=bool)
    t = 0
    for j in np.argsort(ks, kind="stable"):
        while t < ks[j] and open_.any():
            c = cols[t]
            live = open_ & (c < C)
            flat = base + np.where(live, c, C)
            counts[flat] += 1
            v = counts[flat]
            was = c == leader
            takes = live & ~was & (v > top1)
            top2 = np.where(takes, top1, np.where(live & ~was, np.maximum(top2, v), top2))
            top1 = np.where(live & (was | takes), v, top1)
            leader = np.where(takes, c, leader)
            hit = live & (c == leader) & is_ahead(top1, top2, p.margin)
            if hit.any():
                if p.answers == 1:
                    won[hit] = correct[c[hit]]
                else:  # the leader is strictly ahead, so it is first; the rest by votes at the stop
                    won[hit] = hits(top_votes_rows(counts.reshape(D, W)[hit, :C], p.answers, rng), correct)
                open_ &= ~hit
            t += 1
        out[:, j] = won
        rest = np.flatnonzero(open_)  # never decided in the first k: plain majority over them
        if rest.size:
            out[rest, j] = hits(top_votes_rows(counts.reshape(D, W)[rest, :C], p.answers, rng), correct)
    return out
