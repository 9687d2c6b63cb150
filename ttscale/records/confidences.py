"""The ``token_confidence`` field of a bank sample: per-token confidences, compact.

Base64 of little-endian float32, about 5.3 bytes a token (a JSON list of floats takes 8-20).
The values are ``-mean`` of the top-k log-probs at each generated token (DeepConf's token
confidence); :mod:`ttscale.early_stop.trajectory` replays online early stop on them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

import numpy as np

_DTYPE = np.dtype("<f4")


def encode_confidences(values: Sequence[float] | np.ndarray) -> str:
    """Token confidences as base64 of little-endian float32 (the ``token_confidence`` field)."""
    return base64.b64encode(np.asarray(values, dtype=_DTYPE).tobytes()).decode("ascii")


def decode_confidences(text: str) -> np.ndarray:
    """The float64 token confidences of a ``token_confidence`` field; ValueError when it is not
    base64 of whole float32 values, or holds a value that is not finite and >= 0."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("base64 of little-endian float32 token confidences") from None
    if len(raw) % _DTYPE.itemsize:
        raise ValueError(f"whole float32 values (a multiple of 4 bytes, not {len(raw)})")
    values = np.frombuffer(raw, dtype=_DTYPE).astype(np.float64)
    if values.size and not (np.isfinite(values).all() and (values >= 0).all()):
        raise ValueError("finite token confidences >= 0 (-mean of top-k log-probs)")
    return values
