"""How a proxy request chooses its policy and budget: the ``ttscale`` body field or a model-name prefix.

Body field (extra fields are refused, with their name)::

    {"model": "m", "messages": [...], "ttscale": {"policy": "best-of-majority", "n": 16, "adaptive": true}}

``"early_stop": {"eta": 10, "window": 512, "warmup": 8}`` (the fields of
:class:`~ttscale.early_stop.params.EarlyStopParams`) ends low-confidence traces while the upstream
generates them; ``null`` turns a server default (``ttscale serve --early-stop-*``) off.

Model-name prefix, for clients that cannot add body fields: ``ttscale/<policy>[@<n>[+adaptive]]/<model>``,
e.g. ``ttscale/majority@16/Qwen/Qwen2.5-Math-7B`` or ``ttscale/confidence-vote@8+adaptive/m``
(no commas: lm-eval splits its ``model_args`` on them; the older ``@8,adaptive`` still works).
The body field wins over the prefix; both over the server's defaults.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from ttscale.early_stop.params import FIELDS as EARLY_STOP_FIELDS
from ttscale.early_stop.params import EarlyStopParams, parse_early_stop
from ttscale.errors import ConfigError
from ttscale.validation import Bool, Float, FrozenModel, Int, validate

PREFIX = "ttscale/"


class RequestOptions(FrozenModel):
    """The ``ttscale`` field of a request body. Every field is optional (server defaults apply)."""

    policy: str | None = Field(default=None, min_length=1)
    """Policy preset name with optional ``:key=value`` overrides (a TOML path is not accepted over HTTP)."""
    n: Int | None = Field(default=None, ge=1)
    """Most samples drawn for the request (all of them unless adaptive)."""
    adaptive: Bool | None = None
    """Stop early once the vote is settled (the ``default`` rule: the leader still leads after all
    ``n`` samples with probability >= ``confidence``)."""
    pilot: Int | None = Field(default=None, ge=1)
    """Adaptive: the fewest samples in the first round."""
    step: Int | None = Field(default=None, ge=1)
    """Adaptive: the fewest samples per later round."""
    confidence: Float | None = Field(default=None, gt=0.5, lt=1.0)
    """Adaptive: the ``default`` rule's confidence in (0.5, 1)."""
    candidates: Bool = False
    """Include every candidate's text and answer in the response's ``ttscale`` field."""
    early_stop: Annotated[EarlyStopParams | None, BeforeValidator(parse_early_stop)] = None
    """Online early stop (DeepConf): each trace is streamed from the upstream with its top-k
    log-probs and closed once its group confidence falls below the threshold (calibrated on the
    request's first ``warmup`` traces, or the fixed ``threshold``); stopped traces do not vote.
    Unset: the server's default (``--early-stop-*``); null: off."""

    def early_stop_or(self, default: EarlyStopParams | None) -> EarlyStopParams | None:
        """The request's early stop: its own when it sent the field (null: off), else ``default``."""
        return self.early_stop if "early_stop" in self.model_fields_set else default


FIELDS = ", ".join(RequestOptions.model_fields)


class UnknownField(ConfigError):
    """A ``ttscale`` field (or ``ttscale.early_stop`` field) that does not exist, said in the client's words."""

    def __init__(self, parameter: str, value: Any) -> None:
        self.block, self.fields = ("early_stop", EARLY_STOP_FIELDS) if parameter.startswith("ttscale.early_stop.") else ("ttscale", FIELDS)
        super().__init__(parameter, value, f"one of the fields {self.fields}")

    def __str__(self) -> str:
        return f"unknown field {self.parameter} (the {self.block} fields are {self.fields})"


@dataclass(frozen=True)
class Routed:
    """A request's upstream model and options after reading the prefix and the body field."""

    model: str
    options: RequestOptions


NO_OPTIONS = RequestOptions()
"""A request without a ``ttscale`` field (frozen: one for all)."""


def parse_options(raw: Any) -> RequestOptions:
    """Validate the ``ttscale`` body field (a mapping, or options already validated); ConfigError
    names the first bad field."""
    if raw is None:
        return NO_OPTIONS
    if isinstance(raw, RequestOptions):
        return raw
    if not isinstance(raw, dict):
        raise ConfigError("ttscale", raw, "an object such as {\"policy\": \"majority\", \"n\": 8}")
    unknown = next((k for k in raw if k not in RequestOptions.model_fields), None)
    if unknown is not None:
        raise UnknownField(f"ttscale.{unknown}", raw[unknown])
    early_stop = raw.get("early_stop")
    unknown = next((k for k in early_stop if k not in EarlyStopParams.model_fields), None) if isinstance(early_stop, dict) else None
    if unknown is not None:
        raise UnknownField(f"ttscale.early_stop.{unknown}", early_stop[unknown])
    return validate(RequestOptions, raw, prefix="ttscale.")


def route(model: Any, raw_options: Any) -> Routed:
    """Split a model name's ``ttscale/...`` prefix off and merge it under the body's options."""
    if not isinstance(model, str) or not model:
        raise ConfigError("model", model, "a model name (string)")
    if raw_options is None:
        return _route_name(model)
    return _route(model, parse_options(raw_options))


@functools.lru_cache(maxsize=1024)
def _route_name(model: str) -> Routed:
    """:func:`route` of a request without a ``ttscale`` field: the same for every request naming
    ``model`` (a ConfigError is not kept)."""
    return _route(model, NO_OPTIONS)


def _route(model: str, body: RequestOptions) -> Routed:
    if not model.startswith(PREFIX):
        return Routed(model, body)
    spec, sep, upstream = model[len(PREFIX):].partition("/")
    if not sep or not spec or not upstream:
        raise ConfigError("model", model, f"{PREFIX}<policy>[@<n>[+adaptive]]/<model>, e.g. {PREFIX}majority@8/my-model")
    policy, _, tail = spec.rpartition("@") if "@" in spec else (spec, "", "")
    fields: dict[str, Any] = {"policy": policy}
    for part in filter(None, tail.replace(",", "+").split("+")):
        if part.isdigit():
            fields["n"] = int(part)
        elif part == "adaptive":
            fields["adaptive"] = True
        else:
            raise ConfigError("model", model, f"'@' followed by a sample count and/or 'adaptive' (got {part!r})")
    prefix = parse_options(fields)
    merged = {**prefix.model_dump(exclude_unset=True), **body.model_dump(exclude_unset=True)}
    return Routed(upstream, RequestOptions.model_validate(merged))
