"""DeepConf online early stop: end a trace while it is generated once its confidence drops.

``params`` holds the validated settings, ``confidence`` the pure-numpy core (token and group
confidence, the incremental tracker, threshold calibration); ``vllm_processor`` and
``hf_processor`` put the tracker inside the engines. Only the first two are imported here: the
engine modules need vLLM or transformers.
"""

from ttscale.early_stop.confidence import (
    GroupConfidenceTracker,
    calibrate_threshold,
    lowest_group_confidence,
    token_confidence,
)
from ttscale.early_stop.params import LOW_CONFIDENCE, EarlyStopParams, phase_split

__all__ = [
    "LOW_CONFIDENCE",
    "EarlyStopParams",
    "GroupConfidenceTracker",
    "calibrate_threshold",
    "lowest_group_confidence",
    "phase_split",
    "token_confidence",
]
