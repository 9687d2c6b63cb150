"""Online early stop (DeepConf) replayed on a bank that stores per-token confidences.

A ``simulate`` runner like the allocators: on each seeded order of a question's K samples, the
first ``warmup`` run in full and set the threshold, every later one is cut where its group
confidence first falls below it (:func:`~ttscale.early_stop.trajectory.replay_early_stop`), and
the majority of the traces left answers. Every trace is started, so the rule costs K samples a
question; what it saves is tokens (``mean_tokens`` counts a stopped trace up to its stop).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ttscale.adaptive.simulate import ReplayPool, RulePoint, summarize
from ttscale.adaptive.stopping import vote_trajectories
from ttscale.answers.candidates import NO_ANSWER, Candidates
from ttscale.early_stop.params import EarlyStopParams
from ttscale.early_stop.trajectory import Trace, replay_early_stop
from ttscale.records.confidences import decode_confidences

EARLY_STOP_RULE = "deepconf-online"
"""The replayed rule's name in ``simulate``'s output; its ``param`` is ``eta``."""
ETA_GRID = (10.0, 25.0, 50.0, 75.0, 90.0)
"""Keep-top percentages replayed: 10 is DeepConf-low, 90 DeepConf-high."""


def early_stop_rule(problems: Sequence[Candidates], params: EarlyStopParams | None = None,
                    etas: Sequence[float] = ETA_GRID) -> Callable[[ReplayPool], list[RulePoint]] | None:
    """A simulate runner (pool -> one point per ``eta``) of the early stop with ``params``' window
    and warm-up (default :class:`EarlyStopParams`'), or None when a question lacks per-token
    confidences (``token_confidence`` on its samples)."""
    if not problems or any(p.token_confidence is None for p in problems):
        return None
    es = params or EarlyStopParams()

    def run(pool: ReplayPool) -> list[RulePoint]:
        assert pool.orders is not None
        kept = [p for p in problems if p.n >= pool.k]  # the questions the pool kept, in order
        traces = [[Trace.of(decode_confidences(c), es.window) for c in p.token_confidence or ()] for p in kept]
        Q, R, K = pool.sequences.shape
        points = []
        for eta in etas:
            credit, tokens, stopped = np.zeros((Q, R)), np.zeros((Q, R)), 0
            for q in range(Q):
                votes = pool.sequences[q].copy()  # (R, K) class ids in arrival order
                for r in range(R):
                    replay = replay_early_stop([traces[q][j] for j in pool.orders[q, r]], eta=eta, warmup=es.warmup)
                    votes[r, replay.stopped] = NO_ANSWER  # a stopped trace does not vote
                    tokens[q, r] = replay.tokens.sum()
                    stopped += int(replay.stopped.sum())
                credit[q] = vote_trajectories(votes, pool.class_correct[q]).credit[:, -1]
            points.append(summarize(pool, np.full((Q, R), K), credit, eta, tokens=tokens, window=es.window,
                                    warmup=es.warmup, stopped=stopped / (Q * R * K)))
        return points

    return run
