"""Per-token confidences stored with a sample, and the offline replay of online early stop.

A bank sampled with ``--token-confidence K`` carries, per sample, its token confidences (``-mean``
of the top-K log-probs at each generated token) as ``token_confidence``: base64 of little-endian
float32, about 5.3 bytes a token (a JSON list of floats takes 8-20). From them
:func:`replay_early_stop` computes what DeepConf online would have done to each trace (where the
group confidence first falls below the threshold calibrated on the warm-up traces) without
generating anything: ``ttscale simulate`` replays it over every ``eta`` and orders of the samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ttscale.early_stop.confidence import calibrate_threshold, stop_limit
from ttscale.records.confidences import decode_confidences, encode_confidences

__all__ = ["ReplayedTraces", "Trace", "decode_confidences", "encode_confidences", "group_confidences", "replay_early_stop"]


def group_confidences(token_confs: np.ndarray, window: int) -> np.ndarray:
    """Group confidence after each token from the ``window``-th on (sliding mean; empty when the
    trace is shorter than a window)."""
    if token_confs.size < window:
        return np.empty(0)
    sums = np.cumsum(np.concatenate(([0.0], token_confs)))
    return (sums[window:] - sums[:-window]) / window


@dataclass(frozen=True, eq=False)
class Trace:
    """One trace's confidences, prepared for replays at any threshold."""

    tokens: int
    """Generated tokens (the length of its confidence array)."""
    lowest: float | None
    """Its lowest group confidence (a warm-up trace's contribution to the threshold)."""
    window: int
    running_min: np.ndarray
    """Running minimum of the group confidences after each full window (empty: shorter than one)."""

    @classmethod
    def of(cls, token_confs: np.ndarray, window: int) -> Trace:
        running_min = np.minimum.accumulate(group_confidences(token_confs, window))
        # As the online tracker: the lowest full window, or the mean of all tokens when shorter than one.
        lowest = float(running_min[-1]) if running_min.size else float(token_confs.mean()) if token_confs.size else None
        return cls(int(token_confs.size), lowest, window, running_min)

    def stop_at(self, threshold: float | None) -> int | None:
        """Tokens it generates before a tracked run stops it (None: it runs to its end): the first
        full window below ``threshold`` by more than rounding (as :func:`below_threshold`)."""
        if threshold is None or not self.running_min.size:
            return None
        first = int(np.searchsorted(-self.running_min, -stop_limit(threshold), side="right"))  # first window below
        return None if first >= self.running_min.size else first + self.window


@dataclass(frozen=True)
class ReplayedTraces:
    """One question's traces under the replayed early stop."""

    stopped: np.ndarray
    """bool (n,): traces the early stop ends (they do not vote)."""
    tokens: np.ndarray
    """int64 (n,): tokens each trace generates (a stopped one: up to where it stops)."""
    threshold: float | None


def replay_early_stop(traces: Sequence[Trace], *, eta: float, warmup: int) -> ReplayedTraces:
    """DeepConf online on one question's traces in this order: the first ``warmup`` run in full and
    calibrate the threshold (``eta`` % kept), every later one stops where its group confidence first
    falls below it, as the engines do online."""
    n = len(traces)
    tokens = np.array([t.tokens for t in traces], dtype=np.int64)
    stopped = np.zeros(n, dtype=bool)
    warm = min(warmup, n)
    lowest = [t.lowest for t in traces[:warm] if t.lowest is not None]
    threshold = calibrate_threshold(lowest, eta) if lowest else None
    if threshold is None:
        return ReplayedTraces(stopped, tokens, None)
    for i in range(warm, n):
        at = traces[i].stop_at(threshold)
        if at is not None:
            stopped[i], tokens[i] = True, at
    return ReplayedTraces(stopped, tokens, threshold)
