"""Backends by name: ``make_sampler("vllm" | "openai" | "hf" | "replay" | "ray", model, config, **options)``.

``ray`` runs replicas of ``hf`` or ``vllm`` on a Ray cluster:
``make_sampler("ray", model, config, backend="hf", replicas=2, ...)`` (see ``ttscale.sampling.backends.ray``).

Each backend module is imported only when asked for, so ``replay`` works without torch and
``openai`` without vLLM. The transformers backend adapts :class:`ttscale.sampling.backends.hf.HFSampler`
(batched ``generate`` with ``num_return_sequences``) to the sampler protocol here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ttscale.arith.paths import resolve_model
from ttscale.errors import ConfigError
from ttscale.sampling.sampler import (
    MAX_SEED,
    PromptFormat,
    Sampler,
    SampleRequest,
    SampleResult,
    SamplingConfig,
    SyncSamplerMixin,
    make_sample,
)


class HFAdapter(SyncSamplerMixin):
    """transformers ``generate`` through the arithmetic colleague's ``HFSampler``.

    ``HFSampler`` takes one seed per call, so seeded requests go one prompt per call (its ``n``
    candidates batched as ``num_return_sequences``): a request's candidates then depend only on
    its own seed, never on which other prompts shared the batch, and a resumed run redraws the
    same ones. Unseeded requests are batched across prompts.
    """

    name = "hf"
    concurrency = 1

    def __init__(self, model: str, config: SamplingConfig | None = None, *, batch_size: int = 16,
                 chat_template: str | None = None, **options: Any) -> None:
        from ttscale.sampling.backends.hf import HFSampler

        self.config = config or SamplingConfig()
        self.batch_size = batch_size
        self.hf = HFSampler(model, **options)
        self.chat_template = chat_template
        """A Jinja chat template overriding the tokenizer's (None: the tokenizer's own)."""

    def _prompt(self, req: SampleRequest) -> str:
        if req.messages is not None or self.config.prompt_format is PromptFormat.CHAT:
            messages = list(req.messages) if req.messages is not None else self.config.messages(req.problem)
            template = self.chat_template or getattr(self.hf.tokenizer, "chat_template", None)
            if not template:
                raise ConfigError("prompt_format", "chat", "a model with a chat template (pass --chat-template FILE, or use raw prompts)")
            return self.hf.tokenizer.apply_chat_template(messages, chat_template=template, add_generation_prompt=True, tokenize=False)
        return self.config.render(req.problem)

    def generate(self, requests: Sequence[SampleRequest]) -> list[SampleResult]:
        results: dict[int, SampleResult] = {}
        unseeded = [i for i, r in enumerate(requests) if r.seed is None]
        groups = [[i] for i, r in enumerate(requests) if r.seed is not None]
        # Unseeded prompts share calls only when they want the same n (num_return_sequences is per call)
        # and have as many earlier warm-up traces (the warm-up/tracked split is per call too).
        by_n: dict[tuple[int, int], list[int]] = {}
        for i in unseeded:
            by_n.setdefault((requests[i].n, len(requests[i].early_stop_warmup)), []).append(i)
        groups += list(by_n.values())
        c = self.config
        for group in groups:
            reqs = [requests[i] for i in group]
            prompts = [self._prompt(r) for r in reqs]
            start = time.perf_counter()
            gens = self.hf.generate(
                prompts, n=reqs[0].n, temperature=c.temperature, top_p=c.top_p,
                max_new_tokens=c.max_tokens, stop=list(c.stop) or None,
                # HFSampler needs an int seed; an unseeded group gets a fresh one (recorded on its samples).
                seed=reqs[0].seed if reqs[0].seed is not None else random.randrange(MAX_SEED + 1),
                early_stop=c.early_stop, warmup_done=[r.early_stop_warmup for r in reqs],
            )
            elapsed = time.perf_counter() - start
            for i, req, prompt, outs in zip(group, reqs, prompts, gens):
                cands = [
                    make_sample(
                        g.text, tokens=g.tokens, logprob=g.cumulative_logprob if c.logprobs else None,
                        finish=g.finish, latency=g.latency_s, seed=g.seed,
                        lowest_group_confidence=g.lowest_group_confidence, early_stop_threshold=g.early_stop_threshold,
                    )
                    for g in outs
                ]
                results[i] = SampleResult(
                    request=req, candidates=cands, prompt_tokens=len(self.hf.tokenizer(prompt)["input_ids"]),
                    completion_tokens=sum(x.tokens or 0 for x in cands), latency=elapsed,
                )
        return [results[i] for i in range(len(requests))]


def _vllm(model: str | None, config: SamplingConfig, **options: Any) -> Sampler:
    from ttscale.sampling.backends.vllm import VLLMSampler

    return VLLMSampler(model, config, **options)


def _openai(model: str | None, config: SamplingConfig, **options: Any) -> Sampler:
    from ttscale.sampling.backends.openai import OpenAISampler

    return OpenAISampler(model, config, **options)


def _hf(model: str | None, config: SamplingConfig, **options: Any) -> Sampler:
    if not model:
        raise ConfigError("model", model, "a local Hugging Face model folder for the hf backend")
    if not Path(model).is_dir():
        raise ConfigError("model", model, "an existing local model folder (config.json, weights, tokenizer)")
    return HFAdapter(model, config, **options)


def _replay(model: str | None, config: SamplingConfig, **options: Any) -> Sampler:
    from ttscale.sampling.backends.replay import ReplaySampler

    bank = options.pop("bank", None) or model
    if not bank:
        raise ConfigError("model", bank, "the bank file to replay (--model BANK)")
    return ReplaySampler(bank, config, **options)


def _ray(model: str | None, config: SamplingConfig, **options: Any) -> Sampler:
    from ttscale.sampling.backends.ray import RaySampler

    # The replicas build their inner samplers with this registry's make_sampler (passed in, so
    # ray.py does not import the registry that imports it).
    return RaySampler(model, config, build=make_sampler, **options)


EARLY_STOP_BACKENDS = ("vllm", "hf", "openai")
"""Backends that can end a trace early (``SamplingConfig.early_stop``)."""
TOKEN_CONFIDENCE_BACKENDS = ("vllm", "openai")
"""Backends that store per-token confidences (``SamplingConfig.token_confidence``)."""

BACKENDS: dict[str, Callable[..., Sampler]] = {"vllm": _vllm, "openai": _openai, "hf": _hf, "replay": _replay, "ray": _ray}


def make_sampler(backend: str, model: str | None, config: SamplingConfig | None = None, /, **options: Any) -> Sampler:
    """A sampler of the named backend; ``options`` are the backend's keyword arguments.

    The first three are positional-only, so ``backend=`` among the options reaches the ``ray``
    backend (the backend each replica runs) instead of colliding with the first argument.
    """
    try:
        factory = BACKENDS[backend]
    except KeyError:
        raise ConfigError("backend", backend, "one of " + ", ".join(BACKENDS)) from None
    if config is not None and config.early_stop is not None and backend not in EARLY_STOP_BACKENDS:
        raise ConfigError("early_stop", backend, "a backend that stops traces while generating: "
                          + ", ".join(EARLY_STOP_BACKENDS) + " (not the replay or ray backends)")
    if config is not None and config.token_confidence is not None and backend not in TOKEN_CONFIDENCE_BACKENDS:
        raise ConfigError("token_confidence", backend, "a backend that stores per-token confidences: "
                          + ", ".join(TOKEN_CONFIDENCE_BACKENDS))
    return factory(resolve_model(model), config or SamplingConfig(), **options)
