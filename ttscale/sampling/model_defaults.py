"""Settings that travel with a model folder: ``ttscale.json`` next to its weights.

::

    {"sampling": {"template": "Question: {problem}\\nAnswer:\\n", "temperature": 1.3, "max_tokens": 160},
     "engine": {"dtype": "float32", "max_model_len": 256}}

``sampling`` holds :class:`~ttscale.sampling.sampler.SamplingConfig` fields the model was trained or
measured with (its prompt template above all: a model trained on one prompt format answers
little else); ``engine`` holds ``vllm.LLM`` / ``vllm serve`` arguments it needs (vLLM loads float32
weights as bfloat16 unless told). The CLI, the Python API, ``bench`` and ``serve-model`` read them
here, so one file decides; anything the caller sets explicitly wins.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from ttscale.errors import ConfigError

FILE_NAME = "ttscale.json"
SECTIONS = ("sampling", "engine")

__all__ = ["FILE_NAME", "engine_defaults", "model_settings", "sampling_defaults", "with_model_defaults"]


def _folder(model: str | Path | None) -> Path | None:
    if model is None:
        return None
    from ttscale.arith.paths import resolve_model

    resolved = resolve_model(str(model))
    path = Path(resolved) if resolved else None
    return path if path is not None and path.is_dir() else None


@lru_cache(maxsize=32)
def _read(path: Path, mtime_ns: int) -> dict[str, dict[str, Any]]:  # the file's mtime in the key: an edit is re-read
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError("model settings", str(path), f"a readable JSON object ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError("model settings", str(path), "a JSON object with 'sampling' and/or 'engine' tables")
    for key, value in data.items():
        if key not in SECTIONS:
            raise ConfigError(f"{path}: {key}", value, "only the tables " + ", ".join(repr(s) for s in SECTIONS))
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: {key}", value, "a JSON object of fields")
    return {section: dict(data.get(section) or {}) for section in SECTIONS}


def model_settings(model: str | Path | None) -> dict[str, dict[str, Any]]:
    """``{"sampling": {...}, "engine": {...}}`` of a model folder (empty tables when it has no ttscale.json,
    or ``model`` is not a local folder: a hub name or a served model name)."""
    folder = _folder(model)
    path = folder / FILE_NAME if folder is not None else None
    if path is None or not path.is_file():
        return {section: {} for section in SECTIONS}
    settings = _read(path, path.stat().st_mtime_ns)
    if settings["sampling"]:
        from ttscale.sampling.sampler import SamplingConfig

        SamplingConfig.from_dict(settings["sampling"], source=f"{path}: sampling")  # a bad field names the file
    return {section: dict(table) for section, table in settings.items()}


def sampling_defaults(model: str | Path | None) -> dict[str, Any]:
    """The model folder's sampling fields (template, temperature, max_tokens, ...); ``{}`` when none."""
    return model_settings(model)["sampling"]


def engine_defaults(model: str | Path | None) -> dict[str, Any]:
    """The model folder's vLLM engine arguments (dtype, max_model_len, ...); ``{}`` when none."""
    return model_settings(model)["engine"]


def with_model_defaults(model: str | Path | None, given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` sampling fields over the model folder's: what the caller set wins."""
    return {**sampling_defaults(model), **dict(given)}
