"""Scorers by name: the kinds ``ttscale score``, ``ttscale bench`` and the proxy accept, and one factory."""

from __future__ import annotations

import enum
from typing import Any

from ttscale.errors import ConfigError
from ttscale.scoring.base import check_model_dir
from ttscale.scoring.confidence import (
    ConfidenceConfig,
    ConfidenceMode,
    ConfidenceScorer,
)
from ttscale.scoring.judge import JudgeConfig, JudgeScorer
from ttscale.scoring.prm import PRMConfig, ProcessRewardScorer, VLLMProcessRewardScorer
from ttscale.scoring.reward_model import (
    RewardModelConfig,
    SequenceClassifierScorer,
    VLLMRewardConfig,
    VLLMRewardScorer,
)


class ScorerKind(str, enum.Enum):
    CONFIDENCE = "confidence"
    """Mean token log-prob (stored, or by a forward pass of a causal LM)."""
    LOWEST_GROUP_CONFIDENCE = "lowest-group-confidence"
    """DeepConf's lowest group confidence (a forward pass of a causal LM)."""
    REWARD_MODEL = "reward-model"
    """A sequence-classification reward model in transformers."""
    VLLM_REWARD = "vllm-reward"
    """The same through vLLM's pooling runner."""
    PRM = "prm"
    """A process reward model (per-step scores, aggregated) in transformers."""
    VLLM_PRM = "vllm-prm"
    """The same through vLLM's pooling runner."""
    JUDGE = "judge"
    """An LLM judge through any sampler backend."""


SCORERS = tuple(kind.value for kind in ScorerKind)
"""Every scorer kind's name."""


def make_scorer(kind: str, model: str | None = None, *, name: str | None = None, **options: Any) -> Any:
    """A scorer by kind; ``options`` go to the scorer's config (and ``backend``/``sampling`` for the judge)."""
    try:
        kind = ScorerKind(kind)
    except ValueError:
        raise ConfigError("scorer", kind, "one of " + ", ".join(SCORERS)) from None
    name = name or kind.value
    if kind in (ScorerKind.CONFIDENCE, ScorerKind.LOWEST_GROUP_CONFIDENCE):
        mode = ConfidenceMode.MEAN if kind is ScorerKind.CONFIDENCE else ConfidenceMode.LOWEST_GROUP
        return ConfidenceScorer(ConfidenceConfig(mode=mode, model=model, **options), name=name)
    if kind is ScorerKind.JUDGE:
        from ttscale.sampling.backends.registry import make_sampler
        from ttscale.sampling.sampler import SamplingConfig

        backend = options.pop("backend", "hf")
        sampling = options.pop("sampling", None) or SamplingConfig(temperature=0.0, max_tokens=64, logprobs=False)
        backend_options = options.pop("backend_options", {})
        config = JudgeConfig(**options)
        return JudgeScorer(make_sampler(backend, model, sampling, **backend_options), config, name=name)
    check_model_dir("model", model)
    if kind is ScorerKind.REWARD_MODEL:
        return SequenceClassifierScorer(RewardModelConfig(model=model, **options), name=name)
    if kind is ScorerKind.VLLM_REWARD:
        return VLLMRewardScorer(VLLMRewardConfig(model=model, **options), name=name)
    backend = ProcessRewardScorer if kind is ScorerKind.PRM else VLLMProcessRewardScorer
    return backend(PRMConfig(model=model, **options), name=name)
