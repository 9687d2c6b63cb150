"""Argument checks and work-array sizing shared by the estimators (exact and resampled)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ttscale.errors import ConfigError
from ttscale.validation import is_int

CHUNK_ELEMENTS = 1 << 22
"""Work arrays are cut into pieces of about this many float64 (32 MB) to bound peak memory."""


def check_ks(ks: Sequence[int]) -> np.ndarray:
    """The requested k as an int64 array; every k must be an integer >= 1 (order kept)."""
    if isinstance(ks, (int, np.integer)):
        raise ConfigError("ks", ks, "a sequence of integers >= 1 (e.g. [1, 2, 4]), not a single int")
    out = []
    for k in ks:
        if not is_int(k):
            if isinstance(k, (float, np.floating)) and float(k).is_integer():
                k = int(k)
            else:
                raise ConfigError("k", k, "an integer >= 1")
        if k < 1:
            raise ConfigError("k", int(k), "an integer >= 1 (the number of samples drawn)")
        out.append(int(k))
    return np.asarray(out, dtype=np.int64)
