"""The early stop inside transformers' ``generate``: a confidence monitor and a stopping criterion.

:class:`ConfidenceMonitor` is a logits processor placed before the temperature and top-p warpers
(:func:`processors` builds the whole list, so the samples equal those of the plain warpers), so it
reads raw logits like vLLM's raw log-probs; it pushes each row's token confidence into the row's
tracker and records the step at which the row's group confidence first fell below the row's
threshold. :class:`LowConfidenceStop` ends those rows (transformers pads them from then on and
skips nothing else: a batch still runs until its last row is done, which is where vLLM saves more).
A stopped row keeps the token of the step that dropped it, so its length is that step + 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from ttscale.early_stop.confidence import GroupConfidenceTracker, below_threshold


class ConfidenceMonitor(LogitsProcessor):
    """Tracks the group confidence of each row (``thresholds[row]`` None: not tracked)."""

    def __init__(self, thresholds: Sequence[float | None], window: int, top_k: int) -> None:
        self.thresholds = list(thresholds)
        self.top_k = top_k
        self.trackers = [GroupConfidenceTracker(window) for _ in self.thresholds]
        self.stop_step: list[int | None] = [None] * len(self.thresholds)
        """Per row: the generation step (0-based) at which it fell below its threshold."""
        self.step = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logp = torch.log_softmax(scores.float(), dim=-1)
        confs = (-logp.topk(min(self.top_k, logp.shape[-1]), dim=-1).values.mean(dim=-1)).tolist()
        for row, (limit, conf) in enumerate(zip(self.thresholds, confs)):
            if limit is None or self.stop_step[row] is not None:
                continue
            group = self.trackers[row].push(conf)
            if below_threshold(group, limit):
                self.stop_step[row] = self.step
        self.step += 1
        return scores


class LowConfidenceStop(StoppingCriteria):
    """Ends the rows the monitor flagged (after the token of the flagging step is appended)."""

    def __init__(self, monitor: ConfidenceMonitor) -> None:
        self.monitor = monitor

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        flags = [s is not None for s in self.monitor.stop_step]
        return torch.tensor(flags, dtype=torch.bool, device=input_ids.device)


def processors(monitor: ConfidenceMonitor, temperature: float, top_p: float) -> LogitsProcessorList:
    """The monitor, then the warpers ``generate`` would add itself for these settings (the caller
    leaves temperature and top_p out of its GenerationConfig so they are not applied twice)."""
    out = LogitsProcessorList([monitor])
    if temperature > 0 and temperature != 1.0:
        out.append(TemperatureLogitsWarper(float(temperature)))
    if temperature > 0 and top_p < 1.0:
        out.append(TopPLogitsWarper(top_p=float(top_p), min_tokens_to_keep=1))
    return out
