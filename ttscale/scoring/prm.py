"""Process reward models (PRMs): one probability of "this step is good" per reasoning step.

A candidate's text is split into steps (:func:`split_steps`: the non-empty pieces between
``separator``, by default lines; Qwen2.5-Math-PRM uses ``"\\n\\n"``). The PRM reads

    template(problem) + step_1 + TAG + step_2 + TAG + ... + step_n + TAG

where TAG is the model's step-separator token (``step_tag``; Qwen2.5-Math-PRM: ``<extra_0>``). At
each TAG position the model's 2-label head gives logits; the softmax probability of label ``label``
(Qwen2.5-Math-PRM: 1, "good") is the step's score (:func:`step_probabilities`), and
:func:`aggregate_steps` turns the list into one reward (:class:`StepAggregation`: MIN, LAST, MEAN,
PROD). A candidate with no steps gets ``empty_score`` (default 0.0, the lowest probability: a
candidate without reasoning ranks below every scored one), never NaN.

Both backends tokenize on our side with the model folder's tokenizer (the whole string at once, as
the reference implementation does) and read the same positions, so they agree to float precision:

- :class:`ProcessRewardScorer` — transformers on CPU. transformers has no built-in
  ``Qwen2ForProcessRewardModel`` (the hub's checkpoints use remote code), so
  :class:`Qwen2ForProcessRewardModel` here is ``Qwen2Model`` plus the score head with vLLM's weight
  names: ``score.0`` Linear(hidden, hidden), ReLU, ``score.2`` Linear(hidden, 2).
- :class:`VLLMProcessRewardScorer` — vLLM's pooling runner: ``LLM(model, runner="pooling").encode(
  [{"prompt_token_ids": ids}], pooling_task="token_classify", pooling_params=PoolingParams(
  step_tag_id=TAG, use_activation=False))``. vLLM's ``Qwen2ForProcessRewardModel`` uses STEP
  pooling: each output's ``outputs.data`` is a ``[number of TAG tokens, 2]`` tensor of raw logits.

Occurrences of the tag text inside the problem or a step are removed before building the input, so
the TAG positions are exactly one per step. Inputs longer than ``max_length`` tokens are cut on the
left (the end of the candidate is kept; steps whose tags are cut off are not scored; counted in
``scorer.truncated``).
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from ttscale.errors import ConfigError, TTScaleError
from ttscale.scoring.base import (
    DType,
    ModelDir,
    ScorerConfig,
    check_model_dir,
    check_name,
    check_template,
    engine_args_tuple,
    finite,
)
from ttscale.validation import Float, Int

# --- steps and aggregation (pure) -------------------------------------------------------------

QWEN_PRM_STEP_TAG = "<extra_0>"
"""Qwen2.5-Math-PRM's step separator token."""

QWEN_PRM_TEMPLATE = (
    "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{{}}.<|im_end|>\n"
    "<|im_start|>user\n{problem}<|im_end|>\n<|im_start|>assistant\n"
)
"""Qwen2.5-Math-PRM's chat prompt up to the assistant's reply (use with ``separator="\\n\\n"``)."""

PRM_TEMPLATES: dict[str, str] = {"qwen-prm": QWEN_PRM_TEMPLATE}
"""Named PRM prompt templates (the sampler's TEMPLATES names work too)."""


class StepAggregation(str, enum.Enum):
    """How per-step probabilities become one reward."""

    MIN = "min"
    """The weakest step (a chain is as good as its worst step; the usual PRM best-of-N choice)."""
    LAST = "last"
    """The last step's probability (the PRM's view of the whole chain)."""
    MEAN = "mean"
    """The mean over steps."""
    PROD = "prod"
    """The product over steps (probability that every step is good, if independent)."""


def split_steps(text: str, separator: str = "\n", step_tag: str | None = None) -> list[str]:
    """The steps of ``text``: the pieces between ``separator``, stripped, empty ones dropped.

    Occurrences of ``step_tag`` are removed first (the model must see the tag only where we put it).
    """
    if not isinstance(separator, str) or not separator:
        raise ConfigError("separator", separator, "a non-empty string")
    if step_tag:
        text = text.replace(step_tag, "")
    return [s for s in (piece.strip() for piece in text.split(separator)) if s]


def build_prm_text(template: str, problem: str, steps: Sequence[str], step_tag: str) -> str:
    """``template(problem) + step_1 + TAG + ... + step_n + TAG`` (the tag removed from the problem)."""
    return template.format(problem=problem.replace(step_tag, "")) + "".join(s + step_tag for s in steps)


def prm_input_ids(tokenizer: Any, problem: str, text: str, *, template: str = "{problem}\n", separator: str = "\n",
                  step_tag: str = QWEN_PRM_STEP_TAG) -> list[int]:
    """Token ids of the PRM input for one candidate (no truncation): what both backends score and what to train on."""
    steps = split_steps(text, separator, step_tag)
    return list(tokenizer(build_prm_text(template, problem, steps, step_tag))["input_ids"])


def step_probabilities(logits: Sequence[Sequence[float]], label: int = 1) -> list[float]:
    """Softmax over the labels of each ``[n_steps, n_labels]`` row; the probability of ``label``."""
    out = []
    for row in logits:
        if not row or not -len(row) <= label < len(row):
            raise ConfigError("label", label, f"a label index of this {len(row)}-label head")
        top = max(row)
        exps = [math.exp(v - top) for v in row]
        out.append(exps[label] / sum(exps))
    return out


def aggregate_steps(probs: Sequence[float], aggregation: StepAggregation | str = StepAggregation.MIN,
                    empty_score: float = 0.0) -> float:
    """One reward from the step probabilities; ``empty_score`` when there are no steps."""
    agg = StepAggregation(aggregation)
    if not probs:
        return float(empty_score)
    if agg is StepAggregation.MIN:
        return float(min(probs))
    if agg is StepAggregation.LAST:
        return float(probs[-1])
    if agg is StepAggregation.MEAN:
        return float(math.fsum(probs) / len(probs))
    return float(math.prod(probs))


# --- config ---------------------------------------------------------------------------------


class PRMConfig(ScorerConfig):
    model: ModelDir
    """Local model folder: a ``Qwen2ForProcessRewardModel`` checkpoint (config.json, safetensors, tokenizer)."""
    template: str = "{problem}\n"
    """Prompt before the steps ({problem}); ``qwen-prm`` is Qwen2.5-Math-PRM's chat prompt; sampler TEMPLATES names work."""
    separator: Annotated[str, Field(min_length=1)] = "\n"
    """Steps are the non-empty pieces of a candidate between this string (default lines; Qwen2.5-Math-PRM: blank lines)."""
    step_tag: str = QWEN_PRM_STEP_TAG
    """The model's step-separator token, appended after every step; must be one token of the tokenizer."""
    label: Int = 1
    """Which of the head's labels is "good" (softmax over the labels; Qwen2.5-Math-PRM: 1)."""
    aggregation: StepAggregation = StepAggregation.MIN
    """How step probabilities become the reward (min, last, mean, prod)."""
    empty_score: Float = 0.0
    """Reward of a candidate with no steps (finite; 0.0 ranks it below every candidate with steps)."""
    max_length: Annotated[Int, Field(ge=2)] = 4096
    """Most input tokens; longer inputs are cut on the left (steps whose tag is cut off are not scored)."""
    batch_size: Annotated[Int, Field(ge=1)] = 8
    """transformers backend: sequences per forward pass (vLLM batches by itself)."""
    dtype: DType = "float32"
    """Weights' dtype (vLLM: the engine dtype unless ``engine_args`` sets one)."""
    engine_args: tuple[tuple[str, Any], ...] = ()
    """vLLM backend only: extra ``vllm.LLM`` keyword arguments (defaults: eager, max_model_len 512)."""

    @field_validator("template", mode="before")
    @classmethod
    def _template(cls, value: Any) -> str:
        return check_template(value, ("problem",), PRM_TEMPLATES)

    @field_validator("step_tag")
    @classmethod
    def _step_tag(cls, value: str) -> str:
        if not value.strip():
            raise ConfigError("step_tag", value, "a non-empty token string such as <extra_0>")
        return value

    @field_validator("engine_args", mode="before")
    @classmethod
    def _engine_args(cls, value: Any) -> tuple[tuple[str, Any], ...]:
        return engine_args_tuple(value)

    @model_validator(mode="after")
    def _tag_not_in_template(self) -> PRMConfig:
        if self.step_tag in self.template:
            raise ConfigError("template", self.template, f"a prompt without the step tag {self.step_tag!r}")
        return self


# --- shared scoring -------------------------------------------------------------------------


def step_tag_id(tokenizer: Any, step_tag: str) -> int:
    """The token id of ``step_tag``; ConfigError unless the tokenizer encodes it as exactly one token."""
    ids = tokenizer(step_tag, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ConfigError("step_tag", step_tag, f"a single token of this model's tokenizer (it encodes as {len(ids)} tokens)")
    return int(ids[0])


def load_tokenizer(model_dir: str | Path) -> Any:
    """The folder's tokenizer: ``AutoTokenizer``, except that a folder whose tokenizer_config.json names
    ``PreTrainedTokenizerFast`` gets exactly that class.

    transformers 5 swaps in the model type's own class for some model types whatever the folder says
    (``qwen2`` becomes ``Qwen2Tokenizer``, whose pre-tokenizer splits numbers into digits). A PRM
    trained with a custom tokenizer.json (the arithmetic PRM, the tests' tiny PRM) must be scored on the
    tokens it was trained on; hub Qwen checkpoints name ``Qwen2Tokenizer`` and are unaffected.
    """
    import json

    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = Path(model_dir)
    declared = None
    cfg = path / "tokenizer_config.json"
    if cfg.is_file():
        declared = json.loads(cfg.read_text(encoding="utf-8")).get("tokenizer_class")
    if declared == "PreTrainedTokenizerFast":
        return PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def save_tokenizer(tokenizer: Any, model_dir: str | Path) -> None:
    """Save a fast tokenizer so that :func:`load_tokenizer` loads it back as is (pins ``PreTrainedTokenizerFast``)."""
    import json

    tokenizer.save_pretrained(model_dir)
    cfg_path = Path(model_dir) / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")


class _PRMScorer:
    """Splitting, tokenizing and aggregation shared by both backends; they supply ``_logits``."""

    config: PRMConfig
    name: str
    tokenizer: Any
    tag_id: int

    def _setup(self, config: PRMConfig, name: str, tokenizer: Any) -> None:
        self.config = config
        self.name = name
        check_name(name)
        self.tokenizer = tokenizer
        self.tag_id = step_tag_id(tokenizer, config.step_tag)
        if not -2 <= config.label < 2:
            raise ConfigError("label", config.label, "0 or 1 (the head of Qwen2ForProcessRewardModel has 2 labels)")
        self.truncated = 0
        """Inputs cut on the left to ``max_length`` tokens so far."""

    def _logits(self, inputs: list[list[int]]) -> list[list[list[float]]]:
        """Per input: the head's logits ``[n_labels]`` at each step-tag position, in order."""
        raise NotImplementedError

    def encode(self, problem: str, text: str) -> list[int]:
        """Token ids of the PRM input for one candidate (left-truncated to ``max_length``)."""
        c = self.config
        ids = prm_input_ids(self.tokenizer, problem, text, template=c.template, separator=c.separator, step_tag=c.step_tag)
        tags, steps = ids.count(self.tag_id), len(split_steps(text, c.separator, c.step_tag))
        if tags != steps:  # a tag that is not a special token can merge with the text next to it
            raise ConfigError("step_tag", c.step_tag, f"a special token the tokenizer keeps apart ({tags} tags for {steps} steps)")
        if len(ids) > c.max_length:
            self.truncated += 1
            ids = ids[-c.max_length:]
        return ids

    def score_steps(self, problems: list[str], candidates: list[list[str]]) -> list[list[list[float]]]:
        """Per problem, per candidate: the probability of label ``label`` at each step, in order."""
        inputs = [self.encode(p, t) for p, cs in zip(problems, candidates) for t in cs]
        logits = self._logits(inputs) if inputs else []
        flat = []
        for ids, rows in zip(inputs, logits):
            tags = sum(1 for t in ids if t == self.tag_id)
            if len(rows) != tags:
                raise TTScaleError(f"scorer {self.name!r}: {len(rows)} step scores for {tags} step tags")
            flat.append(step_probabilities(rows, self.config.label))
        it = iter(flat)
        return [[next(it) for _ in cs] for cs in candidates]

    def score(self, problems: list[str], candidates: list[list[str]]) -> list[list[float]]:
        """One reward per candidate: the step probabilities aggregated (``empty_score`` without steps)."""
        c = self.config
        steps = self.score_steps(problems, candidates)
        return finite(self.name, [[aggregate_steps(p, c.aggregation, c.empty_score) for p in row] for row in steps])


# --- transformers backend -------------------------------------------------------------------


def _model_class() -> type:
    """``Qwen2ForProcessRewardModel`` for transformers (defined lazily: importing torch is slow)."""
    global _QWEN2_PRM
    if _QWEN2_PRM is not None:
        return _QWEN2_PRM
    import torch
    from transformers.models.qwen2.modeling_qwen2 import (
        Qwen2Model,
        Qwen2PreTrainedModel,
    )

    class Qwen2ForProcessRewardModel(Qwen2PreTrainedModel):
        """``Qwen2Model`` + ``score`` = Linear(hidden, hidden), ReLU, Linear(hidden, 2): vLLM's layout and names."""

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            config.num_labels = 2  # as vLLM's Qwen2ForProcessRewardModel forces
            self.model = Qwen2Model(config)
            self.score = torch.nn.Sequential(
                torch.nn.Linear(config.hidden_size, config.hidden_size),
                torch.nn.ReLU(),
                torch.nn.Linear(config.hidden_size, 2),
            )
            self.post_init()

        def forward(self, input_ids: Any = None, attention_mask: Any = None, **kwargs: Any) -> Any:
            """Per-token label logits ``[batch, tokens, 2]``."""
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
            return self.score(hidden)

    _QWEN2_PRM = Qwen2ForProcessRewardModel
    return _QWEN2_PRM


_QWEN2_PRM: type | None = None


def __getattr__(name: str) -> Any:
    if name == "Qwen2ForProcessRewardModel":
        return _model_class()
    raise AttributeError(name)


def load_process_reward_model(model_dir: str | Path, dtype: str = "float32") -> Any:
    """The folder's ``Qwen2ForProcessRewardModel`` in transformers (eval mode); every weight must be present."""
    import torch
    from transformers import AutoConfig

    path = check_model_dir("model", model_dir)
    cfg = AutoConfig.from_pretrained(path, local_files_only=True)
    arch = list(getattr(cfg, "architectures", None) or [])
    if cfg.model_type != "qwen2" or "Qwen2ForProcessRewardModel" not in arch:
        raise ConfigError("model", str(path), f"a Qwen2ForProcessRewardModel folder (found model_type={cfg.model_type!r}, "
                          f"architectures={arch})")
    model, info = _model_class().from_pretrained(path, dtype=getattr(torch, dtype), local_files_only=True,
                                                 output_loading_info=True)
    missing = [k for k in info.get("missing_keys", []) if not k.startswith("lm_head")]
    if missing:
        raise ConfigError("model", str(path), f"a checkpoint with every PRM weight (missing {sorted(missing)[:4]})")
    model.eval()
    return model


class ProcessRewardScorer(_PRMScorer):
    """A PRM through transformers on CPU (batched; see the module docstring)."""

    def __init__(self, config: PRMConfig | str, *, name: str = "prm", **kwargs: Any) -> None:
        config = config if isinstance(config, PRMConfig) else PRMConfig(model=config, **kwargs)
        if config.engine_args:
            raise ConfigError("engine_args", dict(config.engine_args), "none: engine arguments are for the vllm-prm backend")
        path = Path(config.model)
        self._setup(config, name, load_tokenizer(path))
        self.model = load_process_reward_model(path, config.dtype)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.tokenizer.eos_token_id or 0)

    def _logits(self, inputs: list[list[int]]) -> list[list[list[float]]]:
        import torch

        out: list[list[list[float]]] = []
        bs = self.config.batch_size
        for first in range(0, len(inputs), bs):
            rows = inputs[first:first + bs]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, r in enumerate(rows):  # right padding: positions of real tokens are unchanged
                ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
                mask[i, : len(r)] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask).float()
            for i, r in enumerate(rows):
                at = [k for k, t in enumerate(r) if t == self.tag_id]
                out.append(logits[i, at].tolist())
        return out

    def close(self) -> None:
        self.model = None


# --- vLLM backend ---------------------------------------------------------------------------


class VLLMProcessRewardScorer(_PRMScorer):
    """A PRM through vLLM's pooling runner (STEP pooling at the tag token; see the module docstring)."""

    def __init__(self, config: PRMConfig | str, *, name: str = "vllm-prm", **kwargs: Any) -> None:
        config = config if isinstance(config, PRMConfig) else PRMConfig(model=config, **kwargs)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoConfig
        from vllm import LLM

        path = Path(config.model)
        arch = list(getattr(AutoConfig.from_pretrained(path, local_files_only=True), "architectures", None) or [])
        if "Qwen2ForProcessRewardModel" not in arch:
            # vLLM would load another architecture with a different pooler (or refuse): say so up front.
            raise ConfigError("model", str(path), f"a Qwen2ForProcessRewardModel folder (architectures={arch})")
        self._setup(config, name, load_tokenizer(path))
        args: dict[str, Any] = {"dtype": config.dtype, "enforce_eager": True, "max_model_len": 512, "max_num_batched_tokens": 16384}
        args.update(dict(config.engine_args))
        self.llm = LLM(model=str(path), runner="pooling", **args)
        engine_len = self.llm.llm_engine.vllm_config.model_config.max_model_len
        # The engine refuses longer prompts: cut them ourselves, the same way the transformers backend does.
        self.config = config.model_copy(update={"max_length": min(config.max_length, engine_len)})

    def _logits(self, inputs: list[list[int]]) -> list[list[list[float]]]:
        from vllm import PoolingParams

        params = PoolingParams(step_tag_id=self.tag_id, use_activation=False)  # raw logits; softmax is ours
        outs = self.llm.encode([{"prompt_token_ids": ids} for ids in inputs], pooling_params=params,
                               pooling_task="token_classify", use_tqdm=False)
        return [o.outputs.data.float().reshape(-1, o.outputs.data.shape[-1]).tolist() for o in outs]

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            del llm

