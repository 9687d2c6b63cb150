"""DeepConf's confidences in plain numpy, for the engines' per-token hooks and for calibration.

Token confidence at a position is ``-mean`` of the top-k log-probs there (high when the model's
distribution is peaked); group confidence is the mean token confidence over a sliding window of
the last ``window`` tokens; a trace's lowest group confidence is the minimum over its windows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ttscale.errors import ConfigError

if TYPE_CHECKING:
    from ttscale.early_stop.params import EarlyStopParams


def token_confidence(top_logprobs: np.ndarray | Sequence[float]) -> float | np.ndarray:
    """``-mean`` of the top-k log-probs of one position (1-D) or of each row (2-D, one per position)."""
    arr = np.asarray(top_logprobs, dtype=np.float64)
    out = -arr.mean(axis=-1)
    return float(out) if out.ndim == 0 else out


def top_k_confidence(logprobs: Iterable[float], k: int) -> float | None:
    """Token confidence of one position from the log-probs a server returned for it: the ``-mean``
    of its ``k`` largest (a server adds the sampled token when it is outside the top k; None when
    there are none). Plain Python: called once per streamed token."""
    top = sorted(logprobs, reverse=True)[:k]
    return -math.fsum(top) / len(top) if top else None


TIE_TOLERANCE = 1e-5
"""Relative margin below a threshold a group confidence must reach to stop a trace. The threshold is
some warm-up trace's own lowest group confidence, and a tracked trace identical to it up to that
point has the same value up to rounding (float32 in the engines, float64 from a server's numbers):
without the margin the rounding, not the trace, decides whether it stops."""


def stop_limit(threshold: float) -> float:
    """The group confidence a tracked trace must fall below to stop: ``threshold`` less rounding
    (``TIE_TOLERANCE``)."""
    return threshold - TIE_TOLERANCE * max(1.0, abs(threshold))


def below_threshold(group: float | None, threshold: float | None) -> bool:
    """Whether a group confidence (None: no full window yet) stops a trace tracked against
    ``threshold`` (None: untracked): below it by more than rounding (``TIE_TOLERANCE``)."""
    if group is None or threshold is None:
        return False
    return group < stop_limit(threshold)


class GroupConfidenceTracker:
    """The sliding-window mean of token confidences, updated in O(1) per token.

    A ring buffer of the last ``window`` values and their running sum; the sum is recomputed from
    the buffer every ``window`` tokens so float drift from the add/subtract updates cannot grow
    with the trace length.
    """

    __slots__ = ("window", "_ring", "_sum", "count", "lowest", "_prefix_sum")

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ConfigError("window", window, "an integer >= 1 (tokens)")
        self.window = window
        self._ring = [0.0] * window  # a list: per-token pushes of Python floats are faster than on numpy
        self._sum = 0.0
        self.count = 0
        """Token confidences pushed so far."""
        self.lowest = math.inf
        """Lowest group confidence over the full windows so far (inf before the first)."""
        self._prefix_sum = 0.0  # sum of all values while fewer than a window were pushed

    def push(self, conf: float) -> float | None:
        """Add the next token's confidence; the current group confidence once a window is full, else None."""
        slot = self.count % self.window
        if self.count >= self.window:
            self._sum += conf - self._ring[slot]
        else:
            self._sum += conf
            self._prefix_sum = self._sum
        self._ring[slot] = float(conf)
        self.count += 1
        if slot == self.window - 1:
            self._sum = math.fsum(self._ring)  # resync once per window
        if self.count < self.window:
            return None
        group = float(self._sum / self.window)
        if group < self.lowest:
            self.lowest = group
        return group

    def lowest_group(self) -> float | None:
        """The trace's lowest group confidence: over full windows, or the mean of all tokens when
        fewer than a window were seen (None before any token)."""
        if self.count == 0:
            return None
        if self.count < self.window:
            return float(self._prefix_sum / self.count)
        return float(self.lowest)


def lowest_group_confidence(token_confs: Sequence[float] | np.ndarray, window: int) -> float | None:
    """Lowest group confidence of a whole trace (the tracker's result; None for no tokens)."""
    tracker = GroupConfidenceTracker(window)
    for c in np.asarray(token_confs, dtype=np.float64).tolist():
        tracker.push(c)
    return tracker.lowest_group()


def calibrate_threshold(lowest_confs: Sequence[float], eta: float) -> float:
    """DeepConf's threshold from warm-up traces: the lowest group confidence among the top ``eta`` %.

    The warm-up traces are ranked by their lowest group confidence; the ``ceil(eta/100 * W)`` most
    confident are kept (at least one) and the threshold is the lowest value among those kept.
    """
    if not 0 < eta <= 100:
        raise ConfigError("eta", eta, "a percentage in (0, 100]")
    values = np.sort(np.asarray([v for v in lowest_confs if v is not None], dtype=np.float64))[::-1]
    if values.size == 0:
        raise ConfigError("warmup", 0, "at least one warm-up trace with tokens to calibrate the threshold on")
    keep = max(1, math.ceil(eta / 100.0 * values.size - 1e-9))
    return float(values[keep - 1])


def tracked_threshold(params: EarlyStopParams, warmup_lowest: Sequence[float | None]) -> float | None:
    """The threshold the tracked traces of a question stop below: the fixed ``threshold``, else the
    one calibrated on its warm-up traces' lowest group confidences (None when none of them had a
    token: the tracked traces then run untracked)."""
    if not params.calibrated:
        return params.threshold
    known = [g for g in warmup_lowest if g is not None]
    return calibrate_threshold(known, params.eta) if known else None
