"""What every scorer shares: the Scorer protocols, the config base and the checks of names, model
folders, templates and scores.

A :class:`Scorer` scores candidates in batches: ``score(problems, candidates)`` takes the problem
texts and, per problem, its candidates' texts, and returns one finite float per candidate (higher
is better). A :class:`SampleScorer` may also read what a bank stores on samples besides the text.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BeforeValidator

from ttscale.errors import ConfigError, TTScaleError
from ttscale.records.models import Sample
from ttscale.validation import CheckedModel


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


DType = Literal["float32", "bfloat16", "float16"]
"""Weights' dtype of a scorer's model."""


class ScorerConfig(CheckedModel):
    """Base of the scorers' configs: building one with a bad value raises the ConfigError naming it."""


class MissingField(Exception):
    """Raised inside a batch; score_bank turns it into a BankFormatError naming file, id and field."""

    def __init__(self, problem: int, sample: int, field: str, expected: str) -> None:
        self.problem, self.sample, self.field, self.expected = problem, sample, field, expected


def check_name(name: Any) -> None:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.:+-]+", name or ""):
        raise ConfigError("name", name, "a non-empty scorer name of letters, digits and _ . : + -")


def check_model_dir(parameter: str, model: Any) -> Path:
    path = Path(str(model)) if model is not None else None
    if path is None or not (path / "config.json").is_file():
        raise ConfigError(parameter, None if model is None else str(model),
                          "an existing local model folder with config.json, weights and tokenizer")
    return path


def _model_dir_field(value: Any) -> str:
    check_model_dir("model", value)
    return str(value)


ModelDir = Annotated[str, BeforeValidator(_model_dir_field)]
"""A config's ``model`` field: a local model folder with ``config.json`` (ConfigError naming ``model`` otherwise)."""


def check_template(template: Any, fields: tuple[str, ...], named: dict[str, str] | None = None) -> str:
    """``template`` (or the named template it stands for) once it formats with exactly ``fields``."""
    from ttscale.sampling.sampler import TEMPLATES

    if isinstance(template, str):
        template = (named or {}).get(template) or TEMPLATES.get(template, template)
    if not isinstance(template, str):
        raise ConfigError("template", template, "a string")
    probe = {f: "" for f in fields}
    try:
        template.format(**probe)
    except (KeyError, IndexError, ValueError):
        raise ConfigError("template", template, "only the placeholders " + ", ".join("{" + f + "}" for f in fields)) from None
    return template


def engine_args_tuple(value: Any) -> tuple[tuple[str, Any], ...]:
    """vLLM engine arguments as sorted (key, value) pairs (a mapping works too): hashable in a frozen config."""
    if isinstance(value, dict):
        value = tuple(sorted(value.items()))
    if not isinstance(value, tuple) or not all(isinstance(kv, tuple) and len(kv) == 2 and isinstance(kv[0], str) for kv in value):
        raise ConfigError("engine_args", value, "a mapping of vllm.LLM keyword arguments")
    return value


def finite(name: str, values: list[list[float]]) -> list[list[float]]:
    for row in values:
        for v in row:
            if not math.isfinite(v):
                raise TTScaleError(f"scorer {name!r} produced a non-finite score ({v}); banks store finite numbers only")
    return values


def unflatten(values: list[float], candidates: list[list[str]]) -> list[list[float]]:
    """A flat list of one value per candidate, back in the problems' rows."""
    it = iter(values)
    return [[next(it) for _ in cs] for cs in candidates]


def hash_text(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
