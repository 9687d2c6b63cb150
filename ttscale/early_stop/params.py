"""The settings of online early stop (DeepConf, Fu et al. 2025), validated once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field

from ttscale.errors import ConfigError
from ttscale.records.finish import LOW_CONFIDENCE  # noqa: F401  (re-exported as ttscale.early_stop.LOW_CONFIDENCE)
from ttscale.validation import CheckedModel, Float, Int, validate


class EarlyStopParams(CheckedModel):
    """How traces are tracked and when one is stopped.

    Per question, the first ``warmup`` traces run in full; the threshold is calibrated on them
    (:func:`~ttscale.early_stop.confidence.calibrate_threshold` with ``eta``), and every later
    trace of that question stops as soon as its group confidence falls below it. With
    ``threshold`` set there is no warm-up: every trace is tracked against that fixed value.
    A stopped trace keeps its partial text and tokens in the bank, finishes with
    ``low_confidence`` and has ``answer`` None (its extracted partial answer is kept as
    ``partial_answer``), so no vote counts it.
    """

    eta: Annotated[Float, Field(gt=0, le=100)] = 10.0
    """Keep-top percentage of the warm-up traces, in (0, 100]: the threshold is the lowest group
    confidence among the ``eta`` % most confident of them. 10 is DeepConf-low (stops aggressively),
    90 DeepConf-high (stops only traces worse than nearly every warm-up trace)."""
    window: Annotated[Int, Field(ge=1)] = 2048
    """Sliding-window size in tokens of the group confidence (DeepConf uses 2048); at most
    ``max_tokens``. A trace is only judged once it has a full window."""
    top_k: Annotated[Int, Field(ge=1, le=20)] = 20
    """Log-probs per position whose negated mean is the token confidence (vLLM returns at most 20)."""
    warmup: Annotated[Int, Field(ge=1)] = 16
    """Warm-up traces per question (run in full, calibrate the threshold); ignored with ``threshold``."""
    threshold: Float | None = None
    """A fixed group-confidence threshold instead of calibration (None: calibrate per question)."""

    @property
    def calibrated(self) -> bool:
        """Whether the threshold comes from warm-up traces (no fixed ``threshold``)."""
        return self.threshold is None


FIELDS = ", ".join(EarlyStopParams.model_fields)
"""The early-stop fields, as error messages list them."""


def parse_early_stop(value: EarlyStopParams | Mapping[str, Any] | None, parameter: str = "early_stop") -> EarlyStopParams | None:
    """The early stop a caller asked for: None (off), :class:`EarlyStopParams`, or a mapping of its
    fields (a Python API argument, a JSON object). A bad value is a :class:`ConfigError` naming
    ``<parameter>.<field>`` (an unknown field included)."""
    if value is None or isinstance(value, EarlyStopParams):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(parameter, value, f"an object of early-stop fields ({FIELDS}) or null")
    unknown = next((k for k in value if k not in EarlyStopParams.model_fields), None)
    if unknown is not None:
        raise ConfigError(f"{parameter}.{unknown}", value[unknown], f"one of the early-stop fields {FIELDS}")
    return validate(EarlyStopParams, value, prefix=f"{parameter}.")


def phase_split(n: int, params: EarlyStopParams, done: int = 0) -> tuple[int, int]:
    """``(warm-up traces, tracked traces)`` of a request for ``n`` traces of a question that
    already has ``done`` warm-up traces (from earlier requests: the live solver's earlier rounds).

    Only the warm-up traces still missing run in full (all ``n`` when the request is smaller);
    a topped-up bank (``done`` 0) calibrates again on the first traces of the new request.
    """
    warm = 0 if not params.calibrated else min(n, max(0, params.warmup - done))
    return warm, n - warm
