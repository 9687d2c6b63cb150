"""What N samples cost: tokens (the prompt prefilled once per request), dollars, Kinetics eFLOPs.

Pure functions over numbers and arrays; no model, no files. A request for ``n`` candidates of one
prompt prefills the prompt once (every backend asks for the n candidates in one request), so the
prompt's tokens are counted once per request, not once per sample.

eFLOPs follow Kinetics (arXiv 2506.05333): cost = compute + I x memory traffic, I the hardware's
arithmetic intensity. For N samples of L_out tokens after an L_in-token prompt, with P active
parameters, D the KV size per token and r the GQA ratio::

    C = 2 N P L_out                 (parameter FLOPs of decoding)
      + 2 r N L_in D L_out          (attention FLOPs over the prompt's KV)
      + r N D L_out^2               (attention FLOPs over each sample's own KV)
      + 2 I L_in D L_out            (reading the prompt's KV: shared by the N samples, no N)
      + I N D L_out^2               (reading each sample's own growing KV)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from ttscale.errors import ConfigError
from ttscale.validation import CheckedModel, Float, check_count, is_number

__all__ = [
    "B200_ARITHMETIC_INTENSITY",
    "ModelCostSpec",
    "Prices",
    "RequestCost",
    "request_cost",
    "dollars",
    "kinetics_eflops",
]

B200_ARITHMETIC_INTENSITY = 562.0
"""FLOPs per byte of memory traffic at which a B200 is balanced (the Kinetics paper's I)."""


def _check_nonneg(name: str, value: Any) -> float:
    if not is_number(value) or value < 0:
        raise ConfigError(name, value, "a finite number >= 0")
    return float(value)


class ModelCostSpec(CheckedModel):
    """The model and hardware numbers the Kinetics eFLOPs count needs (frozen; a bad value raises
    :class:`ConfigError` naming it)."""

    active_params: Float = Field(ge=0)
    """P: parameters active per generated token (all of them for a dense model; the routed experts'
    share plus shared layers for a mixture of experts), e.g. 8e9."""
    kv_bytes_per_token: Float = Field(ge=0)
    """D: size of the KV cache of one token over all layers, as the formula counts it (Kinetics uses
    2 x layers x kv_heads x head_dim x bytes per element); the same D enters the attention FLOPs."""
    gqa_ratio: Float = Field(1.0, ge=0)
    """r: query heads per KV head (grouped-query attention); attention FLOPs scale with it, KV
    traffic does not (the KV is read once per group)."""
    arithmetic_intensity: Float = Field(B200_ARITHMETIC_INTENSITY, ge=0)
    """I: FLOPs the hardware does per byte it moves (about 562 for a B200); converts memory traffic
    into FLOP-equivalents."""


class Prices(CheckedModel):
    """Prices in dollars per million tokens (frozen; a bad value raises :class:`ConfigError` naming
    ``price_in`` or ``price_out``, as the command-line options are called)."""

    input: Float = Field(0.0, ge=0)
    """Dollars per million prompt (input) tokens."""
    output: Float = Field(0.0, ge=0)
    """Dollars per million generated (output) tokens."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except ConfigError as exc:
            name = {"input": "price_in", "output": "price_out"}.get(exc.parameter, exc.parameter)
            raise ConfigError(name, exc.value, exc.expected) from None


@dataclass(frozen=True)
class RequestCost:
    """Tokens of ``requests`` requests that drew ``samples`` samples in all."""

    prompt_tokens: float
    """Prompt tokens prefilled: once per request (not once per sample)."""
    completion_tokens: float
    """Generated tokens over all samples."""

    @property
    def total_tokens(self) -> float:
        return self.prompt_tokens + self.completion_tokens

    def dollars(self, prices: Prices) -> float:
        return dollars(self.prompt_tokens, self.completion_tokens, prices)


def request_cost(prompt_tokens: float, output_tokens: Any, n: int | None = None, requests: int = 1) -> RequestCost:
    """Token cost of sampling for one prompt.

    Args:
        prompt_tokens: L_in, the prompt's tokens.
        output_tokens: either the generated tokens of each sample (a sequence; ``n`` is then its
            length) or the mean generated tokens per sample (a number, with ``n``).
        n: samples drawn (needed when ``output_tokens`` is a mean).
        requests: how many requests the samples came in (each prefills the prompt once); an
            adaptive rule that asks in rounds pays the prompt once per round.
    """
    l_in = _check_nonneg("prompt_tokens", prompt_tokens)
    check_count("requests", requests, 0)
    arr = np.asarray(output_tokens, dtype=float)
    if arr.ndim == 0:
        if n is None:
            raise ConfigError("n", n, "the number of samples when output_tokens is a mean per sample")
        check_count("n", n, 0)
        completion = _check_nonneg("output_tokens", float(arr)) * int(n)
    else:
        if arr.size and (not np.all(np.isfinite(arr)) or arr.min() < 0):
            raise ConfigError("output_tokens", "array", "finite token counts >= 0")
        completion = float(arr.sum())
    return RequestCost(prompt_tokens=l_in * int(requests), completion_tokens=completion)


def dollars(prompt_tokens: float, completion_tokens: float, prices: Prices) -> float:
    """Dollars for the given tokens at ``prices`` (per million tokens)."""
    return (_check_nonneg("prompt_tokens", prompt_tokens) * prices.input
            + _check_nonneg("completion_tokens", completion_tokens) * prices.output) / 1e6


def kinetics_eflops(spec: ModelCostSpec, n: Any, prompt_tokens: Any, output_tokens: Any) -> np.ndarray | float:
    """Kinetics eFLOPs of N samples of L_out tokens after one L_in-token prompt (formula in the module doc).

    ``n``, ``prompt_tokens`` and ``output_tokens`` broadcast (numbers in, float out). The prompt's
    KV traffic term has no N: the prefix is shared by the N samples of the request.
    """
    N = np.asarray(n, dtype=float)
    L_in = np.asarray(prompt_tokens, dtype=float)
    L_out = np.asarray(output_tokens, dtype=float)
    for name, arr in (("n", N), ("prompt_tokens", L_in), ("output_tokens", L_out)):
        if arr.size and (not np.all(np.isfinite(arr)) or arr.min() < 0):
            raise ConfigError(name, "value", "finite numbers >= 0")
    P, D, r, I = spec.active_params, spec.kv_bytes_per_token, spec.gqa_ratio, spec.arithmetic_intensity
    out = (2 * N * P * L_out + 2 * r * N * L_in * D * L_out + r * N * D * L_out**2
           + 2 * I * L_in * D * L_out + I * N * D * L_out**2)
    return float(out) if out.ndim == 0 else out
