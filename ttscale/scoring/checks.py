"""Checks shared by every scorer's config: names, model folders, batch sizes, templates, finite rewards."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from ttscale.errors import ConfigError, TTScaleError


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_name(name: Any) -> None:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.:+-]+", name or ""):
        raise ConfigError("name", name, "a non-empty scorer name of letters, digits and _ . : + -")


def check_model_dir(parameter: str, model: Any) -> Path:
    path = Path(str(model)) if model is not None else None
    if path is None or not (path / "config.json").is_file():
        raise ConfigError(parameter, None if model is None else str(model),
                          "an existing local model folder with config.json, weights and tokenizer")
    return path


def check_batch(batch_size: Any) -> None:
    if not is_int(batch_size) or batch_size < 1:
        raise ConfigError("batch_size", batch_size, "an integer >= 1")


def check_template(template: Any, fields: tuple[str, ...]) -> str:
    from ttscale.sampling.sampler import TEMPLATES

    template = TEMPLATES.get(template, template) if isinstance(template, str) else template
    if not isinstance(template, str):
        raise ConfigError("template", template, "a string")
    probe = {f: "" for f in fields}
    try:
        template.format(**probe)
    except (KeyError, IndexError, ValueError):
        raise ConfigError("template", template, "only the placeholders " + ", ".join("{" + f + "}" for f in fields)) from None
    return template


def finite(name: str, values: list[list[float]]) -> list[list[float]]:
    for row in values:
        for v in row:
            if not math.isfinite(v):
                raise TTScaleError(f"scorer {name!r} produced a non-finite score ({v}); banks store finite numbers only")
    return values
