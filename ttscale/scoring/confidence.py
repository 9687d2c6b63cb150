"""Log-prob confidence: a candidate's score from its token log-probs (higher is more confident).

``mode=MEAN``: the mean token log-prob the sampler stored on each sample (``mean_logprob``, or
``logprob / tokens``); samples without one are scored by a teacher-forced forward pass of ``model``
when given. ``mode=LOWEST_GROUP``: DeepConf's lowest group confidence (Fu et al. 2025): token
confidence ``C_i = -mean(top-k log-probs at position i)``, group confidence = mean ``C_i`` over a
sliding window of ``window`` tokens, score = the lowest group (a text shorter than the window is one
group). Banks store only the sampled tokens' cumulative log-prob, never the per-token distributions,
so this mode always runs a teacher-forced forward pass of a transformers causal LM (``model``,
batched, CPU) over ``template(problem) + text`` (text re-tokenized, no EOS appended). With
``token_metric="logprob"`` the token confidence is the text token's own log-prob instead; then
samples carrying a per-token list ``token_logprobs`` use it without a model.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from ttscale.errors import ConfigError
from ttscale.records.models import Sample
from ttscale.scoring.base import (
    DType,
    MissingField,
    ScorerConfig,
    check_model_dir,
    check_name,
    check_template,
    finite,
    unflatten,
)
from ttscale.validation import Int


class ConfidenceMode(str, enum.Enum):
    MEAN = "mean"
    """Mean token log-prob of the candidate."""
    LOWEST_GROUP = "lowest-group"
    """DeepConf lowest group confidence over a sliding window."""


class TokenMetric(str, enum.Enum):
    DEEPCONF = "deepconf"
    """``-mean`` of the top-k log-probs at the position (DeepConf's token confidence)."""
    LOGPROB = "logprob"
    """The text token's own log-prob."""


class ConfidenceConfig(ScorerConfig):
    mode: ConfidenceMode = ConfidenceMode.MEAN
    """Mean token log-prob, or DeepConf's lowest group confidence."""
    window: Annotated[Int, Field(ge=1)] = 2048
    """Sliding-window size in tokens (DeepConf uses 2048); shorter texts form one group."""
    top_k: Annotated[Int, Field(ge=1)] = 20
    """Top-k log-probs per position for the DeepConf token confidence."""
    token_metric: TokenMetric = TokenMetric.DEEPCONF
    """Token confidence of the lowest-group mode."""
    model: str | None = None
    """transformers causal LM folder for teacher-forced log-probs (required by LOWEST_GROUP)."""
    template: str = "{problem}"
    """Prompt the candidate text is conditioned on (the sampling template; a name from TEMPLATES works)."""
    batch_size: Annotated[Int, Field(ge=1)] = 8
    """Sequences per forward pass."""
    dtype: DType = "float32"
    """Weights' dtype of the forward pass."""

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any) -> Any:
        if value is not None:
            check_model_dir("model", value)
            value = str(value)
        return value

    @field_validator("template", mode="before")
    @classmethod
    def _template(cls, value: Any) -> str:
        return check_template(value, ("problem",))

    @model_validator(mode="after")
    def _model_when_needed(self) -> ConfidenceConfig:
        if self.mode is ConfidenceMode.LOWEST_GROUP and self.token_metric is TokenMetric.DEEPCONF and self.model is None:
            raise ConfigError("model", None, "a causal LM folder (--model): banks hold no per-token distributions, "
                              "so lowest-group confidence is computed by a teacher-forced forward pass")
        return self


class TeacherForcer:
    """Per-position token statistics of ``template(problem) + text`` under a causal LM (batched, CPU)."""

    def __init__(self, model_dir: str, *, dtype: str = "float32", batch_size: int = 8) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = check_model_dir("model", model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), local_files_only=True)
        self.model.eval()
        self.batch_size = batch_size
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.tokenizer.eos_token_id or 0)

    def token_stats(self, prompts: list[str], texts: list[str], top_k: int) -> list[tuple[list[float], list[float]]]:
        """Per text: (log-prob of each text token, DeepConf confidence -mean top-k log-prob at each)."""
        import torch

        tok = self.tokenizer
        out: list[tuple[list[float], list[float]]] = []
        for first in range(0, len(texts), self.batch_size):
            rows = []
            for prompt, text in zip(prompts[first:first + self.batch_size], texts[first:first + self.batch_size]):
                p = tok(prompt)["input_ids"]
                t = tok(text, add_special_tokens=False)["input_ids"]
                rows.append((p, t))
            width = max(len(p) + len(t) for p, t in rows)
            ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, (p, t) in enumerate(rows):
                seq = p + t
                ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
                mask[i, : len(seq)] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
            k = min(top_k, logits.shape[-1])
            for i, (p, t) in enumerate(rows):
                if not t:
                    out.append(([], []))
                    continue
                # Position j predicts token j+1: text tokens are predicted at positions len(p)-1 .. len(p)+len(t)-2.
                lp = torch.log_softmax(logits[i, len(p) - 1 : len(p) + len(t) - 1], dim=-1)
                own = lp.gather(-1, torch.tensor(t).unsqueeze(-1)).squeeze(-1)
                conf = -lp.topk(k, dim=-1).values.mean(-1)
                out.append((own.tolist(), conf.tolist()))
        return out

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]


def lowest_group_confidence(token_conf: Sequence[float], window: int) -> float:
    """The lowest mean of ``window`` consecutive token confidences (the mean of all when fewer)."""
    n = len(token_conf)
    if n == 0:
        raise ValueError("no tokens")
    if n <= window:
        return float(sum(token_conf) / n)
    acc = sum(token_conf[:window])
    best = acc
    for i in range(window, n):
        acc += token_conf[i] - token_conf[i - window]
        best = min(best, acc)
    return float(best / window)


class ConfidenceScorer:
    """Log-prob confidence (see the module docstring for which signal comes from where)."""

    def __init__(self, config: ConfidenceConfig | None = None, *, name: str | None = None, **kwargs: Any) -> None:
        self.config = config or ConfidenceConfig(**kwargs)
        self.name = name or ("confidence" if self.config.mode is ConfidenceMode.MEAN else "lowest-group-confidence")
        check_name(self.name)
        self._forcer: TeacherForcer | None = None
        self.forced = 0
        """Candidates scored by a forward pass (not from stored log-probs)."""

    def _force(self) -> TeacherForcer:
        if self._forcer is None:
            self._forcer = TeacherForcer(self.config.model, dtype=self.config.dtype, batch_size=self.config.batch_size)  # type: ignore[arg-type]
        return self._forcer

    def _from_tokens(self, own: Sequence[float], conf: Sequence[float] | None) -> float:
        c = self.config
        if not own:
            return 0.0  # an empty text: no evidence either way
        if c.mode is ConfidenceMode.MEAN:
            return float(sum(own) / len(own))
        values = conf if c.token_metric is TokenMetric.DEEPCONF else own
        return lowest_group_confidence(values, c.window)  # type: ignore[arg-type]

    def score(self, problems: list[str], candidates: list[list[str]]) -> list[list[float]]:
        """Scores from texts alone: always a teacher-forced forward pass (needs ``model``)."""
        if self.config.model is None:
            raise ConfigError("model", None, f"a causal LM folder: scorer {self.name!r} scores bare texts by a forward pass")
        flat_p = [self.config.template.format(problem=p) for p, cs in zip(problems, candidates) for _ in cs]
        flat_t = [t for cs in candidates for t in cs]
        stats = self._force().token_stats(flat_p, flat_t, self.config.top_k)
        self.forced += len(stats)
        return finite(self.name, unflatten([self._from_tokens(own, conf) for own, conf in stats], candidates))

    def score_samples(self, problems: list[str], samples: list[list[Sample]]) -> list[list[float]]:
        c = self.config
        out: list[list[float | None]] = []
        need: list[tuple[int, int]] = []
        for i, row in enumerate(samples):
            vals: list[float | None] = []
            for j, s in enumerate(row):
                v: float | None = None
                if c.mode is ConfidenceMode.MEAN:
                    v = s.confidence()
                elif c.token_metric is TokenMetric.LOGPROB:
                    toks = (s.model_extra or {}).get("token_logprobs")
                    if isinstance(toks, list) and toks and all(isinstance(x, (int, float)) for x in toks):
                        v = lowest_group_confidence([float(x) for x in toks], c.window)
                if v is None:
                    need.append((i, j))
                vals.append(v)
            out.append(vals)
        if need:
            if c.model is None:
                i, j = need[0]
                field = "mean_logprob (or logprob and tokens)" if c.mode is ConfidenceMode.MEAN else "token_logprobs"
                raise MissingField(i, j, field, f"stored log-probs for scorer {self.name!r}, or --model for a forward pass")
            texts = []
            for i, j in need:
                if samples[i][j].text is None:
                    raise MissingField(i, j, "text", f"candidate text for the forward pass of scorer {self.name!r}")
                texts.append(samples[i][j].text)
            prompts = [c.template.format(problem=problems[i]) for i, _ in need]
            stats = self._force().token_stats(prompts, texts, c.top_k)
            self.forced += len(stats)
            for (i, j), (own, conf) in zip(need, stats):
                out[i][j] = self._from_tokens(own, conf)
        return finite(self.name, out)  # type: ignore[arg-type]

    def close(self) -> None:
        if self._forcer is not None:
            self._forcer.close()
            self._forcer = None
