"""A batched sampler on Hugging Face transformers (CPU or GPU), for small local models.

``HFSampler(model_dir).generate(prompts, n=8, temperature=0.7, ...)`` returns, for every
prompt, ``n`` :class:`Generation` records. Prompts are batched together (left padding) and
each prompt's row is repeated ``n`` times, so one ``model.generate`` call samples
``prompts_per_batch x n`` sequences.

Log-probabilities are those of the *raw model* (temperature 1, no top-p): the
log-softmax of the model's logits at each step, read at the sampled token, like vLLM's default
``logprobs`` (``raw_logprobs``). They are not the probabilities under the tempered sampling
distribution. ``cumulative_logprob`` sums them over every generated token including the
end-of-sequence token (or the token that completed a stop string); ``mean_logprob`` divides
that sum by ``tokens``.

Reproducibility: the sampling RNG is seeded per batch with ``seed + index of the batch's first
prompt`` inside a forked torch RNG (the global RNG is left untouched). The same prompts, ``n``,
settings, seed and ``batch_size`` give the same generations; a different ``batch_size``
regroups prompts and so gives different (equally valid) samples.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttscale.early_stop import (
    LOW_CONFIDENCE,
    EarlyStopParams,
    lowest_group_confidence,
    phase_split,
    tracked_threshold,
)
from ttscale.errors import ConfigError
from ttscale.validation import is_int, is_number

_DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Generation:
    """One sampled continuation of a prompt."""

    text: str
    """The generated text, without the end-of-sequence token and without a matched stop string."""
    tokens: int
    """Generated tokens, counting the end-of-sequence token or the token that completed a stop string."""
    cumulative_logprob: float
    """Sum of the raw model's log-probabilities of the generated tokens."""
    mean_logprob: float
    """``cumulative_logprob / tokens`` (0.0 when no token was generated)."""
    finish: str
    """"stop" (end-of-sequence token or stop string) or "length" (max_new_tokens reached)."""
    latency_s: float
    """Wall-clock seconds of the batched ``generate`` call that produced this generation."""
    seed: int
    """Seed of the torch RNG for the batch that produced this generation."""
    lowest_group_confidence: float | None = None
    """Early stop, warm-up traces: the trace's lowest group confidence (calibrates the threshold)."""
    early_stop_threshold: float | None = None
    """Early stop, tracked traces: the threshold the trace was held to (finish ``low_confidence`` when it fell below)."""


ProgressCallback = Callable[[int, int, int], None]
"""``on_batch(done, total, tokens)``: prompts done, prompts in all, tokens generated so far."""


class HFSampler:
    """Batched sampling from a local Hugging Face causal LM folder (no network)."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        dtype: str = "float32",
        device: str = "cpu",
        batch_size: int = 256,
        threads: int | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if dtype not in _DTYPES:
            raise ConfigError("dtype", dtype, f"one of {list(_DTYPES)}")
        if not is_int(batch_size) or batch_size < 1:
            raise ConfigError("batch_size", batch_size, "an integer >= 1 (sequences per generate call)")
        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise ConfigError("model_dir", str(model_dir), "a folder with config.json, weights and tokenizer files")
        if threads is not None:
            torch.set_num_threads(threads)
        self.model_dir = path
        self.device = device
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            path, dtype=getattr(torch, dtype), local_files_only=True
        ).to(device)
        self.model.eval()

    def generate(
        self,
        prompts: Sequence[str],
        n: int = 1,
        temperature: float = 0.7,
        top_p: float = 1.0,
        max_new_tokens: int = 64,
        seed: int = 0,
        stop: list[str] | None = None,
        on_batch: ProgressCallback | None = None,
        early_stop: EarlyStopParams | None = None,
        warmup_done: Sequence[Sequence[float | None]] | None = None,
    ) -> list[list[Generation]]:
        """``n`` generations for each prompt, in prompt order.

        ``temperature`` 0 means greedy decoding (all ``n`` generations are then equal).
        ``early_stop``: per prompt, the first ``warmup`` generations run in full and calibrate a
        threshold; the others end (finish ``low_confidence``) once their group confidence drops
        below it (see :mod:`ttscale.early_stop`). ``warmup_done``: per prompt, the lowest group
        confidences of its warm-up traces drawn before (as many for every prompt); they count
        toward ``warmup`` and calibrate the threshold with the new ones.
        """
        if isinstance(prompts, str):
            raise ConfigError("prompts", prompts, "a list of prompt strings, not one string")
        if not is_int(n) or n < 1:
            raise ConfigError("n", n, "an integer >= 1")
        if not is_number(temperature) or temperature < 0:
            raise ConfigError("temperature", temperature, "a number >= 0")
        if not is_number(top_p) or not 0 < top_p <= 1:
            raise ConfigError("top_p", top_p, "a number in (0, 1]")
        if not is_int(max_new_tokens) or max_new_tokens < 1:
            raise ConfigError("max_new_tokens", max_new_tokens, "an integer >= 1")
        stop = [s for s in (stop or []) if s]
        if early_stop is not None and early_stop.window > max_new_tokens:
            raise ConfigError("early_stop.window", early_stop.window, f"at most max_new_tokens ({max_new_tokens})")
        prior = [list(w) for w in warmup_done] if warmup_done is not None else [[] for _ in prompts]
        if len(prior) != len(prompts) or len({len(w) for w in prior}) > 1:
            raise ConfigError("warmup_done", warmup_done, "one list per prompt, all of the same length")
        settings = (temperature, top_p, max_new_tokens, stop)
        per_batch = max(1, self.batch_size // n)
        results: list[list[Generation]] = []
        total_tokens = 0
        for first in range(0, len(prompts), per_batch):
            chunk = list(prompts[first : first + per_batch])
            if early_stop is None:
                gens = self._rows(chunk, n, seed + first, settings)
            else:
                gens = self._early_stop_rows(chunk, n, seed + first, settings, early_stop, prior[first : first + per_batch])
            total_tokens += sum(g.tokens for row in gens for g in row)
            results.extend(gens)
            if on_batch is not None:
                on_batch(len(results), len(prompts), total_tokens)
        return results

    def _early_stop_rows(self, chunk: list[str], n: int, batch_seed: int, settings: tuple[Any, ...],
                         es: EarlyStopParams, prior: list[list[float | None]]) -> list[list[Generation]]:
        """Warm-up traces in full (calibrating each prompt's threshold with its ``prior`` ones),
        then the tracked ones (seeded ``batch_seed + warm-up count``), per prompt warm-up first."""
        warm, tracked = phase_split(n, es, len(prior[0]) if prior else 0)
        out: list[list[Generation]] = [[] for _ in chunk]
        lowest = [list(p) for p in prior]
        if warm:
            for i, row in enumerate(self._rows(chunk, warm, batch_seed, settings, conf_top_k=es.top_k, window=es.window)):
                out[i] = row
                lowest[i] += [g.lowest_group_confidence for g in row]
        limits = [tracked_threshold(es, w) for w in lowest]
        if tracked:
            rows = self._rows(chunk, tracked, batch_seed + warm, settings, track=(es, [t for t in limits for _ in range(tracked)]))
            for i, row in enumerate(rows):
                out[i] += row
        return out

    def _rows(self, chunk: list[str], n: int, batch_seed: int, settings: tuple[Any, ...], *,
              conf_top_k: int | None = None, window: int = 1,
              track: tuple[EarlyStopParams, list[float | None]] | None = None) -> list[list[Generation]]:
        """One ``generate`` call: ``n`` generations for each prompt of ``chunk``.

        ``conf_top_k``: also each trace's lowest group confidence (over ``window``) from the raw
        logits; ``track``: the early stop's params and each row's threshold.
        """
        import torch
        from transformers import GenerationConfig, StoppingCriteriaList

        temperature, top_p, max_new_tokens, stop = settings
        tok = self.tokenizer
        eos_id = tok.eos_token_id
        pad_id = tok.pad_token_id
        greedy = temperature == 0
        extra: dict[str, Any] = {}
        monitor = None
        if track is not None:
            from ttscale.early_stop.hf_processor import ConfidenceMonitor, LowConfidenceStop, processors

            monitor = ConfidenceMonitor(track[1], track[0].window, track[0].top_k)
            # The monitor must read raw logits: it goes first and brings the warpers along (see processors).
            extra = {"logits_processor": processors(monitor, temperature, top_p),
                     "stopping_criteria": StoppingCriteriaList([LowConfidenceStop(monitor)])}
        warp_here = track is None and not greedy
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=not greedy,
            # 1.0, not None: None would take the model folder's generation_config.json values.
            temperature=None if greedy else (float(temperature) if warp_here else 1.0),
            top_p=None if greedy else (float(top_p) if warp_here else 1.0),
            top_k=0,  # 0 disables top-k (transformers would fill in its default of 50)
            num_beams=1,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            bos_token_id=tok.bos_token_id,
            output_logits=True,
            return_dict_in_generate=True,
            stop_strings=stop or None,
        )
        enc = tok(chunk, return_tensors="pt", padding=True)
        input_ids = enc["input_ids"].repeat_interleave(n, dim=0).to(self.device)
        mask = enc["attention_mask"].repeat_interleave(n, dim=0).to(self.device)
        width = input_ids.shape[1]
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(batch_seed)
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                generation_config=config,
                tokenizer=tok if stop else None,
                **extra,
            )
        latency = time.perf_counter() - t0
        new = out.sequences[:, width:]
        steps = len(out.logits)
        logits = torch.stack(out.logits, dim=1).float()  # (rows, steps, vocab)
        all_logp = torch.log_softmax(logits, dim=-1)
        logp = all_logp.gather(-1, new[:, :steps].unsqueeze(-1)).squeeze(-1)
        token_conf = None
        if conf_top_k is not None:
            token_conf = -all_logp.topk(min(conf_top_k, all_logp.shape[-1]), dim=-1).values.mean(-1)
        batch_gens: list[Generation] = []
        for row in range(new.shape[0]):
            ids = new[row, :steps].tolist()
            length, finish = _length(ids, eos_id, pad_id, max_new_tokens)
            stopped_at = monitor.stop_step[row] if monitor is not None else None
            text = None
            if stopped_at is not None:
                # Flagged rows keep running in the batch: it was the early stop only if the row had
                # not ended by itself (EOS or a stop string) by the flagging step.
                prefix = ids[: stopped_at + 1]
                partial = tok.decode(prefix, skip_special_tokens=True)
                if eos_id not in prefix and _cut_at_stop(partial, stop) is None:
                    length, finish, text = len(prefix), LOW_CONFIDENCE, partial
            if text is None:
                text_ids = ids[:length]
                if finish == "stop" and text_ids and text_ids[-1] == eos_id:
                    text_ids = text_ids[:-1]
                text = tok.decode(text_ids, skip_special_tokens=True)
                cut = _cut_at_stop(text, stop)
                if cut is not None:
                    text, finish = cut, "stop"
            lp = float(logp[row, :length].sum()) if length else 0.0
            lowest = None
            if token_conf is not None and length:
                lowest = lowest_group_confidence(token_conf[row, :length].tolist(), window)
            batch_gens.append(
                Generation(
                    text=text,
                    tokens=length,
                    cumulative_logprob=lp,
                    mean_logprob=lp / length if length else 0.0,
                    finish=finish,
                    latency_s=latency,
                    seed=batch_seed,
                    lowest_group_confidence=lowest,
                    early_stop_threshold=None if track is None else track[1][row],
                )
            )
        return [batch_gens[i * n : (i + 1) * n] for i in range(len(chunk))]


def _length(ids: list[int], eos_id: int | None, pad_id: int | None, max_new_tokens: int) -> tuple[int, str]:
    """Generated length (through the first EOS) and the finish reason of one row."""
    if eos_id is not None and eos_id in ids:
        return ids.index(eos_id) + 1, "stop"
    length = len(ids)
    if pad_id is not None and pad_id != eos_id:
        # A row stopped by a stop string is padded afterwards.
        while length and ids[length - 1] == pad_id:
            length -= 1
    return length, ("length" if length >= max_new_tokens else "stop")


def _cut_at_stop(text: str, stop: list[str]) -> str | None:
    positions = [text.find(s) for s in stop]
    positions = [p for p in positions if p >= 0]
    if not positions:
        return None
    return text[: min(positions)]


def describe(gen: Generation) -> dict[str, Any]:
    """A JSON-ready dict of a generation."""
    return {
        "text": gen.text,
        "tokens": gen.tokens,
        "cumulative_logprob": gen.cumulative_logprob,
        "mean_logprob": gen.mean_logprob,
        "finish": gen.finish,
        "latency_s": gen.latency_s,
        "seed": gen.seed,
        **({"lowest_group_confidence": gen.lowest_group_confidence} if gen.lowest_group_confidence is not None else {}),
        **({"early_stop_threshold": gen.early_stop_threshold} if gen.early_stop_threshold is not None else {}),
    }
