"""Reward models: one score per candidate from a sequence-classification head over problem + candidate.

- :class:`SequenceClassifierScorer` — ``AutoModelForSequenceClassification`` in transformers
  (``num_labels=1``: the logit is the reward; more labels: the log-prob of ``label``), batched, CPU.
- :class:`VLLMRewardScorer` — the same through vLLM's pooling runner
  (``LLM(model, runner="pooling").classify(...)`` with the activation off: raw logits).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator

from ttscale.errors import ConfigError
from ttscale.scoring.base import (
    DType,
    ModelDir,
    ScorerConfig,
    check_name,
    check_template,
    engine_args_tuple,
    finite,
    unflatten,
)
from ttscale.validation import Int

DEFAULT_RM_TEMPLATE = "{problem}\n{candidate}"


class _ClassifierInput(ScorerConfig):
    model: ModelDir
    """Local model folder (a sequence-classification head)."""
    template: str = DEFAULT_RM_TEMPLATE
    """How problem and candidate become the classifier's input ({problem}, {candidate})."""

    @field_validator("template", mode="before")
    @classmethod
    def _template(cls, value: Any) -> str:
        return check_template(value, ("problem", "candidate"))


class RewardModelConfig(_ClassifierInput):
    batch_size: Annotated[Int, Field(ge=1)] = 16
    """Sequences per forward pass."""
    max_length: Annotated[Int, Field(ge=8)] = 4096
    """Inputs are truncated on the left to keep the end of the candidate (where the answer is)."""
    label: Int = -1
    """With num_labels > 1: the class whose log-prob is the reward (default the last)."""
    dtype: DType = "float32"
    """Weights' dtype."""


class VLLMRewardConfig(_ClassifierInput):
    label: Int = 0
    """Which output of the classification head is the reward (num_labels=1: 0)."""
    engine_args: tuple[tuple[str, Any], ...] = ()
    """Extra ``vllm.LLM`` keyword arguments (defaults: float32, eager, max_model_len 512)."""

    @field_validator("engine_args", mode="before")
    @classmethod
    def _engine_args(cls, value: Any) -> tuple[tuple[str, Any], ...]:
        return engine_args_tuple(value)


def _rm_inputs(template: str, problems: list[str], candidates: list[list[str]]) -> list[str]:
    return [template.format(problem=p, candidate=t) for p, cs in zip(problems, candidates) for t in cs]



class SequenceClassifierScorer:
    """Reward model through transformers ``AutoModelForSequenceClassification`` (batched, CPU)."""

    def __init__(self, config: RewardModelConfig | str, *, name: str = "reward-model", **kwargs: Any) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.config = config if isinstance(config, RewardModelConfig) else RewardModelConfig(model=config, **kwargs)
        self.name = name
        check_name(name)
        path = Path(self.config.model)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.tokenizer.padding_side = "right"
        self.tokenizer.truncation_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(path, dtype=getattr(torch, self.config.dtype), local_files_only=True)
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.eval()
        labels = self.model.config.num_labels
        if labels > 1 and not -labels <= self.config.label < labels:
            raise ConfigError("label", self.config.label, f"a class index of this {labels}-label model")

    def score(self, problems: list[str], candidates: list[list[str]]) -> list[list[float]]:
        import torch

        texts = _rm_inputs(self.config.template, problems, candidates)
        values: list[float] = []
        bs = self.config.batch_size
        for first in range(0, len(texts), bs):
            enc = self.tokenizer(texts[first:first + bs], return_tensors="pt", padding=True, truncation=True,
                                 max_length=self.config.max_length)
            with torch.inference_mode():
                logits = self.model(**enc).logits.float()
            if logits.shape[-1] == 1:
                values += logits[:, 0].tolist()
            else:
                values += torch.log_softmax(logits, -1)[:, self.config.label].tolist()
        return finite(self.name, unflatten(values, candidates))

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]



class VLLMRewardScorer:
    """Reward model through vLLM's pooling runner: ``LLM(runner="pooling").classify`` with raw logits."""

    def __init__(self, config: VLLMRewardConfig | str, *, name: str = "vllm-reward", **kwargs: Any) -> None:
        self.config = config if isinstance(config, VLLMRewardConfig) else VLLMRewardConfig(model=config, **kwargs)
        self.name = name
        check_name(name)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from vllm import LLM

        args: dict[str, Any] = {"dtype": "float32", "enforce_eager": True, "max_model_len": 512, "max_num_batched_tokens": 16384}
        args.update(dict(self.config.engine_args))
        self.llm = LLM(model=self.config.model, runner="pooling", **args)

    def score(self, problems: list[str], candidates: list[list[str]]) -> list[list[float]]:
        from vllm import PoolingParams

        texts = _rm_inputs(self.config.template, problems, candidates)
        outs = self.llm.classify(texts, pooling_params=PoolingParams(use_activation=False), use_tqdm=False)
        values = [float(o.outputs.probs[self.config.label]) for o in outs]
        return finite(self.name, unflatten(values, candidates))

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            del llm
