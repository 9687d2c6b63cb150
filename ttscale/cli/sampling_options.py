"""Option parsing and defaults shared by the commands that sample (sample, score, demo, bench):
engine arguments, each backend's keyword options, the automatic backend, vLLM-on-CPU settings."""

from __future__ import annotations

import importlib.util
import json
import os
from enum import Enum
from typing import Any

from ttscale.errors import ConfigError

DEMO_POLICIES = ("majority", "confidence-weighted", "confidence-vote", "first-to-ahead", "top-k-answers")
"""Policies that need no reward model (the tiny model gives log-probs, not rewards): demo's and bench's default."""


class SampleBackend(str, Enum):
    """Where ``ttscale sample`` draws from (``ttscale.sampling.backends.registry.BACKENDS``)."""

    VLLM = "vllm"
    OPENAI = "openai"
    HF = "hf"
    REPLAY = "replay"
    """A bank file's samples served as if a model drew them."""
    RAY = "ray"
    """Replicas of ``--ray-backend`` on a Ray cluster."""


class ReplicaBackend(str, Enum):
    """What each Ray replica runs."""

    HF = "hf"
    VLLM = "vllm"


def auto_backend() -> str:
    """vLLM when it is importable, transformers otherwise."""
    return "vllm" if importlib.util.find_spec("vllm") is not None else "hf"


def cpu_engine_defaults() -> dict[str, Any]:
    """Engine arguments of the embedded model on the real vLLM engine on CPU (sets its environment too)."""
    # Settings seen working for the real vLLM engine on CPU (../shared/VLLM-CPU.md).
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # keep the demo's output readable
    return {"dtype": "float32", "enforce_eager": True, "max_model_len": 256, "max_num_batched_tokens": 16384}


def engine_args(pairs: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values parsed as JSON when they are (numbers, true/false), else strings."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--engine-arg", pair, "KEY=VALUE, e.g. gpu_memory_utilization=0.85")
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out


def backend_options(backend: str, *, base_url: str, api_key: str | None, concurrency: int, timeout: float,
                    max_retries: int, batch_size: int | None, engine: dict[str, Any]) -> dict[str, Any]:
    """The keyword options of ``make_sampler`` for ``backend`` from the command's options."""
    if backend == "openai":
        return {"base_url": base_url, "api_key": api_key, "concurrency": concurrency, "timeout": timeout, "max_retries": max_retries}
    opts: dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}
    if backend == "vllm":
        opts["engine_args"] = engine
        return opts
    if backend == "hf" and "dtype" in engine:
        opts["dtype"] = engine.pop("dtype")
    if engine:
        raise ConfigError("--engine-arg", engine, "engine arguments only with --backend vllm")
    return opts


def parse_seed(value: str) -> int | None:
    """``--seed``: an integer, or ``none`` (also ``null`` or empty) for unseeded sampling."""
    if value.lower() in ("none", "null", ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError("--seed", value, "an integer or 'none'") from None


EARLY_STOP_OPTIONS = {"eta": "--early-stop-eta", "window": "--early-stop-window", "warmup": "--early-stop-warmup",
                      "threshold": "--early-stop-threshold", "top_k": "--early-stop-top-k"}
"""Each early-stop parameter's command-line option (errors name the option the user typed)."""


def early_stop_params(**given: Any) -> Any:
    """``EarlyStopParams`` from the ``--early-stop-*`` options given (None when none is: no early stop)."""
    from ttscale.early_stop import EarlyStopParams

    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return None
    try:
        return EarlyStopParams(**given)
    except ConfigError as exc:
        raise ConfigError(EARLY_STOP_OPTIONS.get(exc.parameter, exc.parameter), exc.value, exc.expected) from None


def early_stop_option_error(exc: ConfigError) -> ConfigError:
    """A SamplingConfig or backend error about ``early_stop`` re-worded with the option's name."""
    if exc.parameter == "early_stop.window":
        return ConfigError("--early-stop-window", exc.value, exc.expected + " (--max-tokens)")
    if exc.parameter == "early_stop":
        return ConfigError("--early-stop-* with --backend", exc.value, exc.expected)
    if exc.parameter == "token_confidence":
        return ConfigError("--token-confidence", exc.value, exc.expected)
    return exc
