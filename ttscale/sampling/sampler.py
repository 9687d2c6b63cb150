"""The sampler protocol: one interface for every backend (vLLM, OpenAI-compatible HTTP, transformers, replay).

A caller builds one frozen :class:`SamplingConfig` (validated in one place), sends
:class:`SampleRequest` s (a prompt and how many candidates it needs) and gets one
:class:`SampleResult` per request, holding the drawn answers as bank
:class:`~ttscale.records.models.Sample` s (the record a bank line stores; no conversion).
Every backend asks for the ``n`` candidates of a prompt in one request where it can, so the
prompt is prefilled once.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol, runtime_checkable

from pydantic import Field, field_validator, model_validator

from ttscale.early_stop.params import LOW_CONFIDENCE, EarlyStopParams
from ttscale.errors import ConfigError, TTScaleDeprecationWarning
from ttscale.records.models import Sample
from ttscale.validation import Bool, CheckedModel, Float, Int, validate

MAX_SEED = 2**31 - 1
"""Seeds are kept in [0, 2**31 - 1]: every backend (torch, vLLM, OpenAI's API) accepts those."""


class PromptFormat(str, enum.Enum):
    """How a templated problem becomes the model's input."""

    RAW = "raw"
    """The templated text is the prompt, as is (completion endpoints, base models)."""
    CHAT = "chat"
    """The templated text is one user message; the model's chat template builds the prompt."""


class FanOut(str, enum.Enum):
    """How ``n`` candidates of one prompt are requested from a backend."""

    AUTO = "auto"
    """One request with ``n`` where the backend supports it; parallel n=1 requests otherwise."""
    NATIVE = "native"
    """Always one request with ``n`` (fails on servers that do not support it)."""
    PARALLEL = "parallel"
    """``n`` requests with n=1 each (seeds ``seed, seed+1, ...``)."""


TEMPLATES: dict[str, str] = {
    "plain": "{problem}",
    "arith": "Question: {problem}\nAnswer:\n",
    "boxed": "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}.",
}
"""Named prompt templates (``{problem}`` is replaced by the problem text)."""


Seed = Annotated[Int, Field(ge=0, le=MAX_SEED)]
"""A request or base seed: an integer in [0, MAX_SEED]."""


class SamplingConfig(CheckedModel):
    """Sampling parameters shared by every backend (in the style of vLLM's ``SamplingParams``).

    Frozen and validated on construction: a bad value raises :class:`ConfigError` naming the
    parameter and the value. ``n`` is not here: each :class:`SampleRequest` says how many
    candidates it still needs (a resumed run asks only for what is missing).
    """

    temperature: Annotated[Float, Field(ge=0)] = 0.7
    """Softmax temperature; 0 is greedy decoding (then every candidate of a prompt is the same)."""
    top_p: Annotated[Float, Field(gt=0, le=1)] = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches ``top_p``; in (0, 1]."""
    top_k: Annotated[Int, Field(ge=0)] = 0
    """Keep only the ``top_k`` most likely tokens; 0 keeps all. Not sent to OpenAI's API (it has none)."""
    max_tokens: Annotated[Int, Field(ge=1)] = 256
    """Most tokens generated per candidate; a candidate cut there finishes with ``length``."""
    stop: tuple[str, ...] = ()
    """Strings that end a candidate (not included in its text); one string is a list of one."""
    seed: Seed | None = 0
    """Base seed: each request's seed is derived from it, the problem id and the round
    (:func:`request_seed`), so reruns and resumed runs draw the same candidates. None: unseeded."""
    logprobs: Bool = True
    """Ask for the log-probability of each generated token (cumulative and mean log-prob per candidate)."""
    prompt_format: PromptFormat = PromptFormat.RAW
    """Raw completion prompt or one chat user message (see :class:`PromptFormat`)."""
    template: str = "{problem}"
    """Prompt template with a ``{problem}`` placeholder, or a name from :data:`TEMPLATES`."""
    system: str | None = None
    """System message prepended in chat format (ignored in raw format)."""
    fan_out: FanOut = FanOut.AUTO
    """How ``n`` candidates are requested (see :class:`FanOut`); only HTTP backends can lack native ``n``."""
    early_stop: EarlyStopParams | None = None
    """DeepConf online early stop of low-confidence traces (None: every trace runs to its end);
    vllm, hf and openai backends only. See :class:`~ttscale.early_stop.params.EarlyStopParams`."""
    token_confidence: Annotated[Int, Field(ge=1, le=20)] | None = None
    """Store each sample's per-token confidence from this many top log-probs per token (1-20) as
    ``token_confidence``, so ``ttscale simulate`` can replay online early stop on the bank (None:
    not stored); vllm and openai backends, not together with ``early_stop``."""

    @field_validator("stop", mode="before")
    @classmethod
    def _stop(cls, value: Any) -> tuple[str, ...]:
        stop = (value,) if isinstance(value, str) else value
        if not isinstance(stop, (tuple, list)) or any(not isinstance(s, str) or not s for s in stop):
            raise ConfigError("stop", value, "a list of non-empty strings")
        return tuple(stop)

    @field_validator("template", mode="before")
    @classmethod
    def _template(cls, value: Any) -> str:
        template = TEMPLATES.get(value, value) if isinstance(value, str) else value
        if not isinstance(template, str) or "{problem}" not in template:
            raise ConfigError("template", value, "a string with a {problem} placeholder or one of " + ", ".join(TEMPLATES))
        try:
            template.format(problem="")
        except (KeyError, IndexError, ValueError):
            raise ConfigError("template", value, "only the {problem} placeholder (double other braces: {{ }})") from None
        return template

    @model_validator(mode="after")
    def _early_stop_window(self) -> SamplingConfig:
        if self.early_stop is not None and self.early_stop.window > self.max_tokens:
            raise ConfigError("early_stop.window", self.early_stop.window,
                              f"at most max_tokens ({self.max_tokens}): a trace never fills a longer window, so it could never stop")
        if self.early_stop is not None and self.token_confidence is not None:
            raise ConfigError("token_confidence", self.token_confidence,
                              "no early_stop with it (it stores full traces' confidences to replay the early stop offline)")
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> SamplingConfig:
        """Build from a mapping (a policy's TOML table, JSON); unknown keys raise ConfigError."""
        return validate(cls, data, source=source)

    def to_dict(self) -> dict[str, Any]:
        """The parameters as JSON values (``stop`` a list, enums their values)."""
        return self.model_dump(mode="json")

    def render(self, problem: str) -> str:
        """The templated problem text (a raw prompt, or the user message in chat format)."""
        return self.template.format(problem=problem)

    def messages(self, problem: str) -> list[dict[str, str]]:
        """Chat messages for ``problem`` (system message first when set)."""
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        return msgs + [{"role": "user", "content": self.render(problem)}]


def request_seed(base: int | None, problem_id: str, round_: int) -> int | None:
    """The seed of the request for ``problem_id`` whose first candidate is number ``round_``.

    A hash, not ``base + i``, so neighbouring problems and rounds do not share random streams;
    stable across processes and machines (unlike Python's ``hash``).
    """
    if base is None:
        return None
    digest = hashlib.blake2b(f"{base}\x00{problem_id}\x00{round_}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (MAX_SEED + 1)


class SampleRequest(CheckedModel):
    """Ask for ``n`` candidates of one problem (fields by position or keyword)."""

    id: str
    """Problem id (the bank line's id)."""
    problem: str
    """Problem text before templating (the sampler applies the config's template and format)."""
    n: Annotated[Int, Field(ge=1)]
    """Candidates wanted."""
    seed: Seed | None = None
    """Request seed (see :func:`request_seed`); None: unseeded."""
    round: Annotated[Int, Field(ge=0)] = 0
    """Index of the first candidate this request yields for the problem (the samples it already has)."""
    messages: tuple[Mapping[str, Any], ...] | None = None
    """Chat messages sent as they are instead of templating ``problem`` (a proxy passes a client's
    conversation through). Only chat-capable backends accept it."""
    overrides: Mapping[str, Any] | None = None
    """Backend request fields sent as they are over the config's (``temperature``, ``max_tokens``,
    ``stop``...): a proxy forwards its client's settings. ``n``, ``seed`` and ``model`` stay the caller's."""
    early_stop_warmup: tuple[Float | None, ...] = ()
    """With a calibrated early stop: the lowest group confidences of the problem's warm-up traces
    drawn by earlier requests (the live solver's earlier rounds; None for a trace without
    tokens). They count toward ``warmup``: this request runs only the warm-up traces still missing
    and calibrates on all of them, so a question's threshold carries across rounds instead of
    being calibrated again on each round's first traces. Ignored without early stop."""

    @field_validator("messages", mode="before")
    @classmethod
    def _messages(cls, value: Any) -> Any:
        if value is None:
            return None
        messages = tuple(value) if isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping)) else None
        if messages is None or not all(isinstance(m, Mapping) for m in messages):
            raise ConfigError("messages", value, "a list of chat messages (objects with role and content)")
        return messages


@dataclass
class SampleResult:
    """The candidates of one request and what they cost."""

    request: SampleRequest
    candidates: list[Sample]
    """The samples drawn, ``request.n`` of them, in draw order (bank samples: text, answer, tokens,
    log-probs, finish, latency and seed set; rewards when the backend's source was scored)."""
    prompt_tokens: int | None = None
    """Prompt tokens (counted once: the prompt is prefilled once for its ``n`` candidates)."""
    completion_tokens: int = 0
    """Generated tokens over all candidates."""
    latency: float = 0.0
    """Seconds the request took (the slowest of its sub-requests when fanned out)."""
    calls: int = 1
    """Backend calls made for it, retries included (HTTP requests for the OpenAI backend)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """What a backend adds about how it served the request (the Ray replica, ...)."""


def make_sample(
    text: str, *, tokens: int | None, logprob: float | None, finish: str | None, latency: float, seed: int | None,
    **extra: Any,
) -> Sample:
    """A generated sample with its answer extracted and its mean log-prob derived.

    A trace ended by the early stop (finish ``low_confidence``) gets ``answer`` None, so no vote
    counts it; what its partial text would have answered is kept as ``partial_answer``. ``extra``
    fields (None values dropped) go on the sample as they are.
    """
    from ttscale.answers import extract_answer  # lazy: answers pulls in math-verify

    mean = logprob / tokens if logprob is not None and tokens else None
    if logprob is not None and not math.isfinite(logprob):
        logprob = mean = None  # -inf from a filtered token: the bank rejects non-finite numbers
    answer = extract_answer(text)
    finish = normalize_finish(finish)
    if finish == LOW_CONFIDENCE:
        extra["partial_answer"], answer = answer, None
    return Sample(
        text=text, answer=answer, tokens=tokens, logprob=logprob, mean_logprob=mean,
        finish=finish, latency=max(0.0, latency), seed=seed, **{k: v for k, v in extra.items() if v is not None},
    )


def normalize_finish(reason: str | None) -> str | None:
    """Backends' finish reasons mapped onto the bank's ``stop`` / ``length``."""
    if reason is None:
        return None
    reason = str(reason).lower()
    if reason in ("stop", "eos", "eos_token", "stop_sequence", "end_turn"):
        return "stop"
    if reason in ("length", "max_tokens", "max_length"):
        return "length"
    return reason


@runtime_checkable
class Sampler(Protocol):
    """What every backend implements.

    ``generate`` returns one result per request, in request order; ``agenerate`` is the same as a
    coroutine. ``batch_size`` and ``concurrency`` tell a driver how to feed the backend: how many
    requests go in one ``generate`` call (an offline engine batches across prompts) and how many
    calls may be in flight at once (an HTTP client overlaps requests).
    """

    name: str
    config: SamplingConfig
    batch_size: int
    concurrency: int

    def generate(self, requests: Sequence[SampleRequest]) -> list[SampleResult]: ...

    async def agenerate(self, requests: Sequence[SampleRequest]) -> list[SampleResult]: ...

    def close(self) -> None: ...


class SyncSamplerMixin:
    """``agenerate`` for a blocking backend: runs ``generate`` in a worker thread."""

    async def agenerate(self, requests: Sequence[SampleRequest]) -> list[SampleResult]:
        return await asyncio.to_thread(self.generate, requests)  # type: ignore[attr-defined]

    def close(self) -> None:
        pass

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_DEPRECATED = {"Candidate": ("Sample", Sample), "make_candidate": ("make_sample", make_sample)}
"""Old names: samplers returned a ``Candidate`` converted to a bank ``Sample``; they return the Sample now."""


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        new, value = _DEPRECATED[name]
        warnings.warn(f"ttscale.sampling.sampler.{name} is deprecated: use {new}", TTScaleDeprecationWarning, stacklevel=2)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
