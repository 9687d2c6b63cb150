"""Scorers: give every candidate of a bank a reward, stored under the scorer's name.

A :class:`Scorer` scores candidates in batches: ``score(problems, candidates)`` takes the problem
texts and, per problem, its candidates' texts, and returns one finite float per candidate (higher
is better). Implementations:

- :class:`ConfidenceScorer` — log-prob confidence. ``mode=MEAN``: the mean token log-prob the
  sampler stored on each sample (``mean_logprob``, or ``logprob / tokens``); samples without one
  are scored by a teacher-forced forward pass of ``model`` when given. ``mode=LOWEST_GROUP``:
  DeepConf's lowest group confidence (Fu et al. 2025): token confidence
  ``C_i = -mean(top-k log-probs at position i)``, group confidence = mean ``C_i`` over a sliding
  window of ``window`` tokens, score = the lowest group (a text shorter than the window is one
  group). Banks store only the sampled tokens' cumulative log-prob, never the per-token
  distributions, so this mode always runs a teacher-forced forward pass of a transformers causal
  LM (``model``, batched, CPU) over ``template(problem) + text`` (text re-tokenized, no EOS
  appended). With ``token_metric="logprob"`` the token confidence is the text token's own
  log-prob instead; then samples carrying a per-token list ``token_logprobs`` use it without a model.
- :class:`SequenceClassifierScorer` — a reward model as ``AutoModelForSequenceClassification``
  (``num_labels=1``: the logit is the reward; more labels: log-prob of ``label``), batched, CPU.
- :class:`VLLMRewardScorer` — the same through vLLM's pooling runner
  (``LLM(model, runner="pooling").classify(...)`` with the activation off: raw logits).
- process reward models (per-step scores, aggregated): :mod:`ttscale.scoring.prm` (kinds ``prm``, ``vllm-prm``).
- :class:`JudgeScorer` — an LLM judge through any :class:`~ttscale.sampling.sampler.Sampler` backend; the
  reply is parsed by :func:`parse_score` into [0, 1]. Unparsable replies raise
  :class:`JudgeParseError` (``on_unparsed="error"``) or get the finite ``fallback`` score
  (``on_unparsed="fallback"``, counted in ``scorer.unparsed``); never NaN.

:func:`score_bank` fills ``rewards[name]`` on every sample of a bank, resumably: finished batches
go to an append-only side file ``OUT.score-NAME.partial`` that a rerun picks up; the result is
written to a temporary file and renamed over ``OUT`` atomically, so the input is never lost.
"""

from __future__ import annotations

import enum
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ttscale.errors import BankFormatError, ConfigError, TTScaleError
from ttscale.records.bank import write_bank
from ttscale.records.models import Record, Sample
from ttscale.scoring.checks import (
    check_batch,
    check_model_dir,
    check_name,
    check_template,
    finite,
    is_int,
)

# --- protocol ------------------------------------------------------------------------------


@runtime_checkable
class Scorer(Protocol):
    """Scores candidates in batches; higher is better; every score is finite."""

    name: str

    def score(self, problems: list[str], candidates: list[list[str]]) -> list[list[float]]: ...

    def close(self) -> None: ...


class SampleScorer(Protocol):
    """A scorer that can also use what a bank stores on samples besides the text (log-probs)."""

    name: str

    def score_samples(self, problems: list[str], samples: list[list[Sample]]) -> list[list[float]]: ...


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


@dataclass(frozen=True)
class ConfidenceConfig:
    mode: ConfidenceMode = ConfidenceMode.MEAN
    window: int = 2048
    """Sliding-window size in tokens (DeepConf uses 2048); shorter texts form one group."""
    top_k: int = 20
    """Top-k log-probs per position for the DeepConf token confidence."""
    token_metric: TokenMetric = TokenMetric.DEEPCONF
    model: str | None = None
    """transformers causal LM folder for teacher-forced log-probs (required by LOWEST_GROUP)."""
    template: str = "{problem}"
    """Prompt the candidate text is conditioned on (the sampling template; a name from TEMPLATES works)."""
    batch_size: int = 8
    dtype: str = "float32"

    def __post_init__(self) -> None:
        for name, kind in (("mode", ConfidenceMode), ("token_metric", TokenMetric)):
            try:
                object.__setattr__(self, name, kind(getattr(self, name)))
            except ValueError:
                raise ConfigError(name, getattr(self, name), "one of " + ", ".join(m.value for m in kind)) from None
        if not is_int(self.window) or self.window < 1:
            raise ConfigError("window", self.window, "an integer >= 1 (tokens per group)")
        if not is_int(self.top_k) or self.top_k < 1:
            raise ConfigError("top_k", self.top_k, "an integer >= 1")
        check_batch(self.batch_size)
        if self.model is not None:
            check_model_dir("model", self.model)
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError("dtype", self.dtype, "float32, bfloat16 or float16")
        object.__setattr__(self, "template", check_template(self.template, ("problem",)))


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
        c = self.config
        if c.mode is ConfidenceMode.LOWEST_GROUP and c.token_metric is TokenMetric.DEEPCONF and c.model is None:
            raise ConfigError("model", None, "a causal LM folder (--model): banks hold no per-token distributions, "
                              "so lowest-group confidence is computed by a teacher-forced forward pass")
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
        it = iter(self._from_tokens(own, conf) for own, conf in stats)
        return finite(self.name, [[next(it) for _ in cs] for cs in candidates])

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
                raise _MissingField(i, j, field, f"stored log-probs for scorer {self.name!r}, or --model for a forward pass")
            texts = []
            for i, j in need:
                if samples[i][j].text is None:
                    raise _MissingField(i, j, "text", f"candidate text for the forward pass of scorer {self.name!r}")
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


class _MissingField(Exception):
    """Raised inside a batch; score_bank turns it into a BankFormatError naming file, id and field."""

    def __init__(self, problem: int, sample: int, field: str, expected: str) -> None:
        self.problem, self.sample, self.field, self.expected = problem, sample, field, expected


# --- reward models -------------------------------------------------------------------------

DEFAULT_RM_TEMPLATE = "{problem}\n{candidate}"


@dataclass(frozen=True)
class RewardModelConfig:
    model: str
    """Local model folder (a sequence-classification head)."""
    template: str = DEFAULT_RM_TEMPLATE
    """How problem and candidate become the classifier's input ({problem}, {candidate})."""
    batch_size: int = 16
    max_length: int = 4096
    """Inputs are truncated on the left to keep the end of the candidate (where the answer is)."""
    label: int = -1
    """With num_labels > 1: the class whose log-prob is the reward (default the last)."""
    dtype: str = "float32"

    def __post_init__(self) -> None:
        check_model_dir("model", self.model)
        object.__setattr__(self, "template", check_template(self.template, ("problem", "candidate")))
        check_batch(self.batch_size)
        if not is_int(self.max_length) or self.max_length < 8:
            raise ConfigError("max_length", self.max_length, "an integer >= 8")
        if not is_int(self.label):
            raise ConfigError("label", self.label, "a class index")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError("dtype", self.dtype, "float32, bfloat16 or float16")


def _rm_inputs(template: str, problems: list[str], candidates: list[list[str]]) -> list[str]:
    return [template.format(problem=p, candidate=t) for p, cs in zip(problems, candidates) for t in cs]


def _unflatten(values: list[float], candidates: list[list[str]]) -> list[list[float]]:
    it = iter(values)
    return [[next(it) for _ in cs] for cs in candidates]


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
        return finite(self.name, _unflatten(values, candidates))

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]


@dataclass(frozen=True)
class VLLMRewardConfig:
    model: str
    template: str = DEFAULT_RM_TEMPLATE
    label: int = 0
    """Which output of the classification head is the reward (num_labels=1: 0)."""
    engine_args: tuple[tuple[str, Any], ...] = ()
    """Extra ``vllm.LLM`` keyword arguments (defaults: float32, eager, max_model_len 512)."""

    def __post_init__(self) -> None:
        check_model_dir("model", self.model)
        object.__setattr__(self, "template", check_template(self.template, ("problem", "candidate")))
        if not is_int(self.label):
            raise ConfigError("label", self.label, "an output index")
        if isinstance(self.engine_args, dict):
            object.__setattr__(self, "engine_args", tuple(sorted(self.engine_args.items())))


class VLLMRewardScorer:
    """Reward model through vLLM's pooling runner: ``LLM(runner="pooling").classify`` with raw logits."""

    def __init__(self, config: VLLMRewardConfig | str, *, name: str = "vllm-reward", **kwargs: Any) -> None:
        self.config = config if isinstance(config, VLLMRewardConfig) else VLLMRewardConfig(model=config, **kwargs)
        self.name = name
        check_name(name)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from vllm import LLM

        args: dict[str, Any] = dict(dtype="float32", enforce_eager=True, max_model_len=512, max_num_batched_tokens=16384)
        args.update(dict(self.config.engine_args))
        self.llm = LLM(model=self.config.model, runner="pooling", **args)

    def score(self, problems: list[str], candidates: list[list[str]]) -> list[list[float]]:
        from vllm import PoolingParams

        texts = _rm_inputs(self.config.template, problems, candidates)
        outs = self.llm.classify(texts, pooling_params=PoolingParams(use_activation=False), use_tqdm=False)
        values = [float(o.outputs.probs[self.config.label]) for o in outs]
        return finite(self.name, _unflatten(values, candidates))

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            del llm


# --- LLM judge -----------------------------------------------------------------------------

DEFAULT_JUDGE_TEMPLATE = (
    "Problem:\n{problem}\n\nProposed solution:\n{candidate}\n\n"
    "Is the proposed solution correct? Grade it from 0 to 10 and end with a line 'Score: N/10'.\n"
)


class JudgeParseError(TTScaleError, ValueError):
    """A judge reply held no score."""

    def __init__(self, text: str, where: str = "", *, problem: int | None = None, sample: int | None = None) -> None:
        self.text = text
        self.problem, self.sample = problem, sample
        """Position in the scored batch (problem index, candidate index), when known."""
        short = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(f"{where}judge reply has no score ('Score: N/M', a number, correct/incorrect): {short!r}")


_FRACTION = re.compile(r"(-?\d+(?:\.\d+)?)\s*(?:/|out of)\s*(\d+(?:\.\d+)?)", re.I)
_LABELLED = re.compile(r"(?:score|grade|rating)\s*[:=]?\s*(?:is\s*)?\**\s*(-?\d+(?:\.\d+)?)", re.I)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_NEGATIVE = re.compile(r"\b(incorrect|not correct|wrong|false|no)\b", re.I)
_POSITIVE = re.compile(r"\b(correct|right|true|yes)\b", re.I)


def parse_score(text: str, scale: float = 10.0) -> float:
    """A judge reply as a score in [0, 1].

    In order: the last ``X/Y`` or ``X out of Y`` (X/Y); the last ``Score: X`` (X/scale); a reply that
    is a bare number (X/scale); a verdict word (``incorrect``/``wrong``/``false``/``no`` → 0,
    ``correct``/``right``/``true``/``yes`` → 1; the first verdict word wins). Results are clipped to
    [0, 1]. Raises :class:`JudgeParseError` when none matches.
    """
    if not isinstance(scale, (int, float)) or not scale > 0:
        raise ConfigError("scale", scale, "a number > 0")
    t = text.strip()
    frac = _FRACTION.findall(t)
    value: float | None = None
    if frac:
        num, den = frac[-1]
        if float(den) > 0:
            value = float(num) / float(den)
    if value is None:
        lab = _LABELLED.findall(t)
        if lab:
            value = float(lab[-1]) / scale
    if value is None and _NUMBER.fullmatch(t.rstrip(".")):
        value = float(t.rstrip(".")) / scale
    if value is None:
        neg, pos = _NEGATIVE.search(t), _POSITIVE.search(t)
        if neg and (not pos or neg.start() <= pos.start()):
            value = 0.0
        elif pos:
            value = 1.0
    if value is None or not math.isfinite(value):
        raise JudgeParseError(text)
    return min(1.0, max(0.0, value))


@dataclass(frozen=True)
class JudgeConfig:
    template: str = DEFAULT_JUDGE_TEMPLATE
    """Judge prompt with {problem} and {candidate}; the sampler's own template then wraps it."""
    n: int = 1
    """Judge replies per candidate; the score is their mean."""
    scale: float = 10.0
    """Denominator for bare and 'Score: X' numbers."""
    on_unparsed: str = "error"
    """``error``: raise JudgeParseError; ``fallback``: use ``fallback`` (counted in ``unparsed``)."""
    fallback: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "template", check_template(self.template, ("problem", "candidate")))
        if not is_int(self.n) or self.n < 1:
            raise ConfigError("n", self.n, "an integer >= 1")
        if not isinstance(self.scale, (int, float)) or not (math.isfinite(self.scale) and self.scale > 0):
            raise ConfigError("scale", self.scale, "a finite number > 0")
        if self.on_unparsed not in ("error", "fallback"):
            raise ConfigError("on_unparsed", self.on_unparsed, "error or fallback")
        if not isinstance(self.fallback, (int, float)) or not math.isfinite(self.fallback):
            raise ConfigError("fallback", self.fallback, "a finite number")


class JudgeScorer:
    """An LLM judge through any sampler backend (one request per candidate, ``n`` replies each)."""

    def __init__(self, sampler: Any, config: JudgeConfig | None = None, *, name: str = "judge",
                 parse: Callable[[str], float] | None = None, **kwargs: Any) -> None:
        self.sampler = sampler
        self.config = config or JudgeConfig(**kwargs)
        self.name = name
        check_name(name)
        self.parse = parse or (lambda text: parse_score(text, self.config.scale))
        self.unparsed = 0
        self.replies: list[str] = []
        """The last batch's replies (for inspection)."""

    def score(self, problems: list[str], candidates: list[list[str]]) -> list[list[float]]:
        from ttscale.sampling.sampler import SampleRequest, request_seed

        c = self.config
        base = getattr(getattr(self.sampler, "config", None), "seed", None)
        reqs = []
        for i, (p, cs) in enumerate(zip(problems, candidates)):
            for j, t in enumerate(cs):
                prompt = c.template.format(problem=p, candidate=t)
                key = f"judge:{hash_text(prompt)}"
                reqs.append(SampleRequest(id=key, problem=prompt, n=c.n, seed=request_seed(base, key, 0)))
        bs = max(1, int(getattr(self.sampler, "batch_size", 16) or 16))
        results = []
        for first in range(0, len(reqs), bs):
            results += self.sampler.generate(reqs[first:first + bs])
        self.replies = []
        values = []
        where = [(i, j) for i, cs in enumerate(candidates) for j in range(len(cs))]
        for k, res in enumerate(results):
            scores = []
            for cand in res.candidates:
                self.replies.append(cand.text)
                try:
                    scores.append(float(self.parse(cand.text)))
                except JudgeParseError as exc:
                    if c.on_unparsed == "error":
                        i, j = where[k]
                        raise JudgeParseError(cand.text, f"problem {i}, candidate {j} of this batch: ", problem=i, sample=j) from exc
                    self.unparsed += 1
                    scores.append(float(c.fallback))
            values.append(sum(scores) / len(scores) if scores else float(c.fallback))
        return finite(self.name, _unflatten(values, candidates))

    def close(self) -> None:
        self.sampler.close()


def hash_text(text: str) -> str:
    import hashlib

    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


# --- bank integration ----------------------------------------------------------------------


@dataclass
class ScoreStats:
    out: Path
    problems: int
    samples: int
    scored: int
    """Samples scored in this run."""
    skipped: int
    """Samples that already had a score under the name (or in the resume file)."""
    resumed: int


def _partial_path(out: Path, name: str) -> Path:
    return out.with_name(f"{out.name}.score-{name}.partial")


def score_bank(
    bank_path: str | Path,
    scorer: Any,
    out_path: str | Path | None = None,
    *,
    default: bool = False,
    batch_problems: int = 8,
    on_batch: Callable[[int, int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ScoreStats:
    """Fill ``rewards[scorer.name]`` (and ``reward`` when ``default``) on every sample; see the module doc.

    ``out_path`` None rewrites the bank in place (temp file + atomic rename). An existing ``out_path``
    that is not the bank is taken as the source when it holds the bank's problems (a rerun adds to it).
    ``on_start(samples to score)``, ``on_batch(samples done, samples to score)`` report progress.
    """
    from ttscale.records.bank import read_bank

    check_name(getattr(scorer, "name", None))
    if not is_int(batch_problems) or batch_problems < 1:
        raise ConfigError("batch_problems", batch_problems, "an integer >= 1")
    bank_path = Path(bank_path)
    out = Path(out_path) if out_path is not None else bank_path
    data = read_bank(bank_path)
    source = data
    if out.exists() and out.resolve() != bank_path.resolve():
        prev = read_bank(out)
        if {r.id for r in prev.records} != {r.id for r in data.records}:
            raise ConfigError("--out", str(out), f"a new file, or an earlier scoring of {bank_path} (same problem ids)")
        source = prev
    name = scorer.name
    partial = _partial_path(out, name)
    done: dict[str, dict[int, float]] = {}
    resumed = 0
    if partial.exists():
        good = 0
        with open(partial, "rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break  # a killed writer's partial line: cut below
                obj = json.loads(raw)
                done.setdefault(obj["id"], {}).update({int(k): float(v) for k, v in obj["scores"].items()})
                good += len(raw)
        os.truncate(partial, good)
    records: list[Record] = source.records
    todo: list[tuple[Record, list[int]]] = []
    skipped = 0
    for rec in records:
        have = done.get(rec.id, {})
        idx = []
        for j, s in enumerate(rec.samples):
            if s.score(name) is not None:
                skipped += 1
            elif j in have:
                resumed += 1
            else:
                idx.append(j)
        if idx:
            todo.append((rec, idx))
    total = sum(len(i) for _, i in todo)
    if on_start:
        on_start(total)
    use_samples = hasattr(scorer, "score_samples")
    try:
        _score_batches(source.path, scorer, todo, batch_problems, partial, done, on_batch, total, use_samples)
    except BaseException:
        if partial.exists() and partial.stat().st_size == 0:
            partial.unlink()  # nothing resumable was written
        raise
    for rec in records:
        have = done.get(rec.id, {})
        for j, s in enumerate(rec.samples):
            value = have.get(j, s.score(name))
            if value is None:
                continue
            s.rewards = {**(s.rewards or {}), name: value}
            if default:
                s.reward = value
    write_bank(out, records)
    partial.unlink(missing_ok=True)
    return ScoreStats(out=out, problems=len(records), samples=sum(len(r.samples) for r in records),
                      scored=total, skipped=skipped, resumed=resumed)


def _score_batches(path: Path, scorer: Any, todo: list[tuple[Record, list[int]]], batch_problems: int, partial: Path,
                   done: dict[str, dict[int, float]], on_batch: Callable[[int, int], None] | None, total: int,
                   use_samples: bool) -> None:
    name = scorer.name
    finished = 0
    with open(partial, "ab") as pf:
        for first in range(0, len(todo), batch_problems):
            chunk = todo[first:first + batch_problems]
            problems = []
            for rec, _ in chunk:
                if rec.problem is None and not use_samples:
                    raise BankFormatError(path, None, f"id {rec.id!r}: problem", f"the problem text for scorer {name!r}")
                problems.append(rec.problem or "")
            try:
                if use_samples:
                    scores = scorer.score_samples(problems, [[rec.samples[j] for j in idx] for rec, idx in chunk])
                else:
                    texts = []
                    for rec, idx in chunk:
                        row = []
                        for j in idx:
                            t = rec.samples[j].text
                            if t is None:
                                raise BankFormatError(path, None, f"id {rec.id!r}: samples[{j}].text",
                                                      f"candidate text for scorer {name!r}")
                            row.append(t)
                        texts.append(row)
                    scores = scorer.score(problems, texts)
            except _MissingField as exc:
                rec, idx = chunk[exc.problem]
                raise BankFormatError(path, None, f"id {rec.id!r}: samples[{idx[exc.sample]}].{exc.field}", exc.expected) from None
            except JudgeParseError as exc:
                if exc.problem is None or exc.sample is None:
                    raise
                rec, idx = chunk[exc.problem]
                raise JudgeParseError(exc.text, f"{path}, id {rec.id!r}, samples[{idx[exc.sample]}] "
                                      "(--on-unparsed fallback scores it instead): ") from None
            if len(scores) != len(chunk):
                raise TTScaleError(f"scorer {name!r} returned {len(scores)} rows for {len(chunk)} problems")
            for (rec, idx), row in zip(chunk, scores):
                if len(row) != len(idx):
                    raise TTScaleError(f"scorer {name!r} returned {len(row)} scores for {len(idx)} candidates")
                done.setdefault(rec.id, {}).update(zip(idx, row))
                pf.write(json.dumps({"id": rec.id, "scores": {str(j): v for j, v in zip(idx, row)}}, allow_nan=False).encode() + b"\n")
            pf.flush()
            os.fsync(pf.fileno())
            finished += sum(len(i) for _, i in chunk)
            if on_batch:
                on_batch(finished, total)


# --- by name ---------------------------------------------------------------------------------

SCORERS = ("confidence", "lowest-group-confidence", "reward-model", "vllm-reward", "prm", "vllm-prm", "judge")


def make_scorer(kind: str, model: str | None = None, *, name: str | None = None, **options: Any) -> Any:
    """A scorer by CLI name; ``options`` go to the scorer's config (and ``backend``/``sampling`` for the judge)."""
    if kind == "confidence":
        return ConfidenceScorer(ConfidenceConfig(mode=ConfidenceMode.MEAN, model=model, **options), name=name or kind)
    if kind == "lowest-group-confidence":
        return ConfidenceScorer(ConfidenceConfig(mode=ConfidenceMode.LOWEST_GROUP, model=model, **options), name=name or kind)
    if kind == "reward-model":
        check_model_dir("model", model)
        return SequenceClassifierScorer(RewardModelConfig(model=model, **options), name=name or kind)  # type: ignore[arg-type]
    if kind == "vllm-reward":
        check_model_dir("model", model)
        return VLLMRewardScorer(VLLMRewardConfig(model=model, **options), name=name or kind)  # type: ignore[arg-type]
    if kind in ("prm", "vllm-prm"):
        from ttscale.scoring.prm import (
            PRMConfig,
            ProcessRewardScorer,
            VLLMProcessRewardScorer,
        )

        check_model_dir("model", model)
        backend = ProcessRewardScorer if kind == "prm" else VLLMProcessRewardScorer
        return backend(PRMConfig(model=model, **options), name=name or kind)  # type: ignore[arg-type]
    if kind == "judge":
        from ttscale.sampling.backends.registry import make_sampler
        from ttscale.sampling.sampler import SamplingConfig

        backend = options.pop("backend", "hf")
        sampling = options.pop("sampling", None) or SamplingConfig(temperature=0.0, max_tokens=64, logprobs=False)
        backend_options = options.pop("backend_options", {})
        config = JudgeConfig(**options)
        return JudgeScorer(make_sampler(backend, model, sampling, **backend_options), config, name=name or kind)
    raise ConfigError("scorer", kind, "one of " + ", ".join(SCORERS))
