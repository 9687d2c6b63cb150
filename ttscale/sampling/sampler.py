"""The sampler protocol: one interface for every backend (vLLM, OpenAI-compatible HTTP, transformers, replay).

A caller builds one frozen :class:`SamplingConfig` (validated in one place), sends
:class:`SampleRequest` s (a prompt and how many candidates it needs) and gets one
:class:`SampleResult` per request, holding :class:`Candidate` s that convert to bank samples.
Every backend asks for the ``n`` candidates of a prompt in one request where it can, so the
prompt is prefilled once.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

from ttscale.errors import ConfigError
from ttscale.records.models import Sample

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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling parameters shared by every backend (in the style of vLLM's ``SamplingParams``).

    Frozen and validated on construction: a bad value raises :class:`ConfigError` naming the
    parameter and the value. ``n`` is not here: each :class:`SampleRequest` says how many
    candidates it still needs (a resumed run asks only for what is missing).
    """

    temperature: float = 0.7
    """Softmax temperature; 0 is greedy decoding (then every candidate of a prompt is the same)."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches ``top_p``; in (0, 1]."""
    top_k: int = 0
    """Keep only the ``top_k`` most likely tokens; 0 keeps all. Not sent to OpenAI's API (it has none)."""
    max_tokens: int = 256
    """Most tokens generated per candidate; a candidate cut there finishes with ``length``."""
    stop: tuple[str, ...] = ()
    """Strings that end a candidate (not included in its text)."""
    seed: int | None = 0
    """Base seed: each request's seed is derived from it, the problem id and the round
    (:func:`request_seed`), so reruns and resumed runs draw the same candidates. None: unseeded."""
    logprobs: bool = True
    """Ask for the log-probability of each generated token (cumulative and mean log-prob per candidate)."""
    prompt_format: PromptFormat = PromptFormat.RAW
    """Raw completion prompt or one chat user message (see :class:`PromptFormat`)."""
    template: str = "{problem}"
    """Prompt template with a ``{problem}`` placeholder, or a name from :data:`TEMPLATES`."""
    system: str | None = None
    """System message prepended in chat format (ignored in raw format)."""
    fan_out: FanOut = FanOut.AUTO
    """How ``n`` candidates are requested (see :class:`FanOut`); only HTTP backends can lack native ``n``."""

    def __post_init__(self) -> None:
        # Coerce before checking, so the config is usable from CLI strings and TOML alike.
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        if not _is_number(self.temperature) or self.temperature < 0:
            raise ConfigError("temperature", self.temperature, "a finite number >= 0")
        if not _is_number(self.top_p) or not 0 < self.top_p <= 1:
            raise ConfigError("top_p", self.top_p, "a number in (0, 1]")
        if not _is_int(self.top_k) or self.top_k < 0:
            raise ConfigError("top_k", self.top_k, "an integer >= 0 (0 keeps all tokens)")
        if not _is_int(self.max_tokens) or self.max_tokens < 1:
            raise ConfigError("max_tokens", self.max_tokens, "an integer >= 1")
        stop = (self.stop,) if isinstance(self.stop, str) else self.stop
        if not isinstance(stop, (tuple, list)) or any(not isinstance(s, str) or not s for s in stop):
            raise ConfigError("stop", self.stop, "a list of non-empty strings")
        set_("stop", tuple(stop))
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED):
            raise ConfigError("seed", self.seed, f"an integer in [0, {MAX_SEED}] or None")
        if not isinstance(self.logprobs, bool):
            raise ConfigError("logprobs", self.logprobs, "true or false")
        for name, kind in (("prompt_format", PromptFormat), ("fan_out", FanOut)):
            value = getattr(self, name)
            try:
                set_(name, kind(value))
            except ValueError:
                raise ConfigError(name, value, "one of " + ", ".join(m.value for m in kind)) from None
        template = TEMPLATES.get(self.template, self.template)
        if not isinstance(template, str) or "{problem}" not in template:
            raise ConfigError("template", self.template, "a string with a {problem} placeholder or one of " + ", ".join(TEMPLATES))
        try:
            template.format(problem="")
        except (KeyError, IndexError, ValueError):
            raise ConfigError("template", self.template, "only the {problem} placeholder (double other braces: {{ }})") from None
        set_("template", template)
        if self.system is not None and not isinstance(self.system, str):
            raise ConfigError("system", self.system, "a string or None")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> SamplingConfig:
        """Build from a mapping (a policy's TOML table, JSON); unknown keys raise ConfigError."""
        known = {f.name for f in fields(cls)}
        for key, value in data.items():
            if key not in known:
                raise ConfigError(key, value, f"one of the keys {sorted(known)}", source=source)
        try:
            return cls(**dict(data))
        except ConfigError as exc:
            raise ConfigError(exc.parameter, exc.value, exc.expected, source=source) from None

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["stop"] = list(self.stop)
        out["prompt_format"] = self.prompt_format.value
        out["fan_out"] = self.fan_out.value
        return out

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


@dataclass(frozen=True)
class SampleRequest:
    """Ask for ``n`` candidates of one problem."""

    id: str
    """Problem id (the bank line's id)."""
    problem: str
    """Problem text before templating (the sampler applies the config's template and format)."""
    n: int
    """Candidates wanted."""
    seed: int | None = None
    """Request seed (see :func:`request_seed`); None: unseeded."""
    round: int = 0
    """Index of the first candidate this request yields for the problem (the samples it already has)."""
    messages: tuple[Mapping[str, Any], ...] | None = None
    """Chat messages sent as they are instead of templating ``problem`` (a proxy passes a client's
    conversation through). Only chat-capable backends accept it."""
    overrides: Mapping[str, Any] | None = None
    """Backend request fields sent as they are over the config's (``temperature``, ``max_tokens``,
    ``stop``...): a proxy forwards its client's settings. ``n``, ``seed`` and ``model`` stay the caller's."""

    def __post_init__(self) -> None:
        if self.messages is not None:
            if isinstance(self.messages, (str, bytes)) or not all(isinstance(m, Mapping) for m in self.messages):
                raise ConfigError("messages", self.messages, "a list of chat messages (objects with role and content)")
            object.__setattr__(self, "messages", tuple(self.messages))
        if self.overrides is not None and not isinstance(self.overrides, Mapping):
            raise ConfigError("overrides", self.overrides, "a mapping of request fields")
        if not _is_int(self.n) or self.n < 1:
            raise ConfigError("n", self.n, "an integer >= 1")
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED):
            raise ConfigError("seed", self.seed, f"an integer in [0, {MAX_SEED}] or None")


@dataclass(frozen=True)
class Candidate:
    """One generated candidate of a request."""

    text: str
    answer: str | None
    """Extracted final answer (``ttscale.answers.extract_answer``); None when none was found."""
    tokens: int | None
    """Generated tokens."""
    logprob: float | None
    """Cumulative log-probability of the generated tokens (None when the backend gave none)."""
    mean_logprob: float | None
    """``logprob / tokens``: the per-token confidence."""
    finish: str | None
    """``stop`` (stop string or end of sequence) or ``length`` (``max_tokens`` reached)."""
    latency: float
    """Seconds from sending the request to receiving this candidate."""
    seed: int | None
    """Seed of the request that produced this candidate."""
    reward: float | None = None
    """Default scorer's reward, when the candidate comes scored (a replayed scored bank)."""
    rewards: dict[str, float] | None = None
    """Named scorers' rewards, likewise."""

    def to_sample(self) -> Sample:
        return Sample(
            answer=self.answer, text=self.text, tokens=self.tokens, logprob=self.logprob,
            mean_logprob=self.mean_logprob, finish=self.finish, latency=max(0.0, self.latency), seed=self.seed,
            reward=self.reward, rewards=dict(self.rewards) if self.rewards else None,
        )


@dataclass
class SampleResult:
    """The candidates of one request and what they cost."""

    request: SampleRequest
    candidates: list[Candidate]
    prompt_tokens: int | None = None
    """Prompt tokens (counted once: the prompt is prefilled once for its ``n`` candidates)."""
    completion_tokens: int = 0
    """Generated tokens over all candidates."""
    latency: float = 0.0
    """Seconds the request took (the slowest of its sub-requests when fanned out)."""
    calls: int = 1
    """Backend calls made for it, retries included (HTTP requests for the OpenAI backend)."""
    extra: dict[str, Any] = field(default_factory=dict)


def make_candidate(
    text: str, *, tokens: int | None, logprob: float | None, finish: str | None, latency: float, seed: int | None
) -> Candidate:
    """A candidate with its answer extracted and its mean log-prob derived."""
    from ttscale.answers import extract_answer  # lazy: answers pulls in math-verify

    mean = logprob / tokens if logprob is not None and tokens else None
    if logprob is not None and not math.isfinite(logprob):
        logprob = mean = None  # -inf from a filtered token: the bank rejects non-finite numbers
    return Candidate(
        text=text, answer=extract_answer(text), tokens=tokens, logprob=logprob, mean_logprob=mean,
        finish=normalize_finish(finish), latency=latency, seed=seed,
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
