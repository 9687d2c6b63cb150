"""Settings of ``ttscale serve``: one frozen, validated :class:`ServeConfig`."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import Field, StrictStr, field_validator, model_validator

from ttscale.adaptive.workload_prior import DEFAULT_PRICE
from ttscale.answers import EquivalenceMode
from ttscale.early_stop.params import EarlyStopParams
from ttscale.errors import ConfigError
from ttscale.live.solve import check_policy_needs
from ttscale.planning.cost import Prices
from ttscale.sampling.sampler import SamplingConfig
from ttscale.selection.policy import Policy, load_policy, preset_names
from ttscale.validation import Bool, CheckedModel, Float, Int

__all__ = ["ServeConfig", "preset"]


@functools.cache
def _preset_names() -> tuple[str, ...]:
    return tuple(preset_names())  # the package's files: read once (0.4 ms a call)


def preset(spec: str, parameter: str) -> Policy:
    """A preset policy (with optional ``:key=value`` overrides); over HTTP no file paths, so no file reads."""
    name = spec.split(":", 1)[0]
    if name not in _preset_names():
        raise ConfigError(parameter, spec, "a policy preset: " + ", ".join(_preset_names()))
    try:
        return _load_preset(spec)
    except ConfigError as exc:
        if exc.source is None or "/" not in exc.source and "\\" not in exc.source:
            raise
        # The preset's path on the server is none of a client's business: name the preset instead.
        source = f"preset {name!r}" + exc.source[exc.source.find(" with overrides"):] if " with overrides" in exc.source else f"preset {name!r}"
        raise ConfigError(exc.parameter, exc.value, exc.expected, source=source) from None


@functools.lru_cache(maxsize=256)
def _load_preset(spec: str) -> Policy:
    """A request's policy: loading a preset took 1.6 ms, and a Policy is frozen, so requests naming
    the same one share it (a ConfigError is not kept)."""
    return load_policy(spec)


class ServeConfig(CheckedModel):
    """Settings of ``ttscale serve``; a bad value raises :class:`ConfigError` naming the setting."""

    upstream: StrictStr
    """Base URL of the OpenAI-compatible upstream, e.g. http://127.0.0.1:8000/v1."""
    upstream_api_key: StrictStr | None = Field(None, repr=False)
    """Key sent upstream (never logged)."""
    api_key: StrictStr | None = Field(None, repr=False)
    """When set, clients must send ``Authorization: Bearer <key>`` (401 otherwise)."""
    policy: StrictStr = "majority"
    """Default policy preset (a request may choose another)."""
    n: Int = Field(8, ge=1)
    """Default samples per request."""
    max_n: Int = Field(64, ge=1)
    """Most samples one request may ask for, per prompt."""
    max_request_samples: Int = Field(1024, ge=1)
    """Most upstream samples one request may draw in all (prompts x n): a list of 2,000 prompts
    must not turn one client request into 16,000 upstream samples."""
    adaptive: Bool = False
    """Default: stop early when the vote is settled."""
    workload: tuple[tuple[Float, Float, Float, Float], ...] | None = Field(None, repr=False)
    """Adaptive requests stop by the Bayes-optimal rule under this workload prior (``Budget.workload``,
    fitted on a pilot bank by ``ttscale serve --workload-pilot BANK``) instead of the ``default``
    rule; None: the ``default`` rule."""
    workload_price: Float = Field(DEFAULT_PRICE, gt=0, lt=1)
    """With ``workload``: the accuracy one more sample must buy (``Budget.price``); lower spends more."""
    timeout: Float = Field(120.0, gt=0)
    """Seconds a client request may wait for the upstream before a 504."""
    max_retries: Int = Field(2, ge=0)
    """Retries of a failing upstream call (429, 5xx, dropped connection) before giving up or degrading."""
    concurrency: Int = Field(256, ge=1)
    """Upstream calls in flight, over all clients."""
    max_request_bytes: Int = Field(1_000_000, ge=1024)
    """Largest request body accepted (413 above)."""
    read_seconds: Float = Field(10.0, gt=0)
    """Seconds a client may take to send a request's headers (then the connection is closed), and
    again its body (then a 408): slow clients (slowloris) cannot hold connections open."""
    temperature: Float | None = Field(None, ge=0)
    """Sampling temperature sent when the client sends none; None: send none, so the upstream's
    own default applies (vLLM: the model's generation config), as it would without the proxy."""
    max_tokens: Int | None = Field(None, ge=1)
    """max_tokens sent when the client sends none; None: the upstream's own default."""
    price_in: Float | None = Field(None, ge=0)
    """Dollars per million prompt tokens (for the ``cost_usd`` of responses)."""
    price_out: Float | None = Field(None, ge=0)
    """Dollars per million generated tokens."""
    equivalence: EquivalenceMode = EquivalenceMode.MATH
    """Answer equivalence: ``math`` or ``string``."""
    answer_seconds: Float = Field(3.0, gt=0)
    """Seconds math-verify may spend comparing one prompt's answers; past it the rest are compared
    as strings and the response's ``ttscale.notes`` says so (pathological LaTeX from the upstream
    must not turn a fast reply into a 504)."""
    scorer: StrictStr | None = None
    """Scorer kind (``ttscale.scoring.registry.SCORERS``: ``reward-model``, ``vllm-reward``, ``prm``, ``vllm-prm``,
    ...) that scores every candidate so reward policies (best-of-n, weighted-majority) can choose;
    None: requests for reward policies get a 400."""
    scorer_model: StrictStr | None = None
    """Local model folder of the scorer (reward model or PRM)."""
    early_stop: EarlyStopParams | None = None
    """Default online early stop of requests that send no ``ttscale.early_stop`` (None: off)."""

    @field_validator("upstream")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ConfigError("upstream", value, "an http(s) URL such as http://127.0.0.1:8000/v1")
        return value

    @field_validator("policy")
    @classmethod
    def _policy(cls, value: str) -> str:
        preset(value, "policy")
        return value

    @field_validator("scorer")
    @classmethod
    def _scorer(cls, value: str | None) -> str | None:
        from ttscale.scoring.registry import SCORERS

        if value is not None and value not in SCORERS:
            raise ConfigError("scorer", value, "one of " + ", ".join(SCORERS))
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Any:
        if self.n > self.max_n:
            raise ConfigError("n", self.n, f"at most max_n ({self.max_n})")
        if self.n > self.max_request_samples:
            raise ConfigError("n", self.n, f"at most max_request_samples ({self.max_request_samples})")
        SamplingConfig(temperature=0.7 if self.temperature is None else self.temperature,
                       max_tokens=self.max_tokens or 1)  # the sampler's own checks
        if (self.price_in is None) != (self.price_out is None):
            raise ConfigError("price_out" if self.price_out is None else "price_in", None, "both prices or neither")
        if self.early_stop is not None and self.max_tokens is not None and self.early_stop.window > self.max_tokens:
            raise ConfigError("early_stop.window", self.early_stop.window, f"at most max_tokens ({self.max_tokens})")
        if self.scorer is None and self.scorer_model is not None:
            raise ConfigError("scorer_model", self.scorer_model, "no model without a scorer kind (--scorer)")
        # The solver's check, here at start-up (the solver is built on the first request).
        check_policy_needs(preset(self.policy, "policy"), scorer=self.scorer is not None, logprobs=True, scorer_option="--scorer")
        return self

    @property
    def prices(self) -> Prices | None:
        """The prices of ``cost_usd``, when both are set."""
        return None if self.price_in is None else Prices(self.price_in, self.price_out or 0.0)
