"""The samplers live solving runs on: an OpenAI-compatible server, an in-process engine, or any sampler.

:func:`http_sampler` is the one place the API and the proxy build their OpenAI-compatible
sampler; :func:`build_sampler` picks the backend of :class:`ttscale.live.api.TTScale`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ttscale.errors import ConfigError
from ttscale.sampling.sampler import Sampler, SamplingConfig

if TYPE_CHECKING:
    from ttscale.sampling.backends.openai import OpenAISampler

__all__ = ["build_sampler", "http_sampler"]

NO_ANSWER_HINT = "no answer was chosen for it"
"""How a live caller's give-up error ends (a bank run says how to resume instead)."""


def http_sampler(base_url: str, model: str | None, config: SamplingConfig, *, api_key: str | None, concurrency: int,
                 timeout: float, max_retries: int) -> OpenAISampler:
    """A sampler on an OpenAI-compatible server for live solving (``model`` None: the server's first)."""
    from ttscale.sampling.backends.openai import OpenAISampler

    return OpenAISampler(model, config, base_url=base_url, api_key=api_key, concurrency=concurrency, timeout=timeout,
                         max_retries=max_retries, resume_hint=NO_ANSWER_HINT)


def build_sampler(*, base_url: str | None, model: str | None, engine: Any, backend: str | None, config: SamplingConfig,
                  api_key: str | None, concurrency: int, timeout: float, max_retries: int,
                  engine_args: Mapping[str, Any] | None) -> Sampler:
    """The sampler of exactly one way in: ``base_url`` (HTTP), ``engine`` (a ``vllm.LLM``) or
    ``backend`` (``"vllm"`` or ``"hf"``, an engine built from ``model``)."""
    if base_url is not None:
        return http_sampler(base_url, model, config, api_key=api_key, concurrency=concurrency, timeout=timeout,
                            max_retries=max_retries)
    if engine is not None:
        from ttscale.sampling.backends.vllm import VLLMSampler

        return VLLMSampler(model, config, llm=engine)
    from ttscale.sampling.backends.registry import make_sampler, resolve_model

    if backend not in ("vllm", "hf"):
        raise ConfigError("backend", backend, "'vllm' or 'hf' (an in-process engine built from model=...)")
    options: dict[str, Any] = {"engine_args": dict(engine_args or {})} if backend == "vllm" else {}
    return make_sampler(backend, resolve_model(model), config, **options)
