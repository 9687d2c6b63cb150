"""DeepConf online early stop: end a trace while it is generated once its confidence drops.

``params`` holds the validated settings, ``confidence`` the pure-numpy core (token and group
confidence, the incremental tracker, threshold calibration); ``vllm_processor`` and
``hf_processor`` put the tracker inside the engines, and the OpenAI-compatible backend
(``ttscale.sampling.backends.openai``) feeds it streamed top-k log-probs. Only the first two are
imported here: the engine modules need vLLM or transformers.
"""

from ttscale.early_stop.confidence import (
    GroupConfidenceTracker,
    below_threshold,
    calibrate_threshold,
    lowest_group_confidence,
    token_confidence,
    top_k_confidence,
    tracked_threshold,
)
from ttscale.early_stop.params import (
    LOW_CONFIDENCE,
    EarlyStopParams,
    parse_early_stop,
    phase_split,
)

__all__ = [
    "LOW_CONFIDENCE",
    "EarlyStopParams",
    "GroupConfidenceTracker",
    "below_threshold",
    "calibrate_threshold",
    "lowest_group_confidence",
    "parse_early_stop",
    "phase_split",
    "token_confidence",
    "top_k_confidence",
    "tracked_threshold",
]
