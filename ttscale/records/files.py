"""Writing files so that a kill leaves the old file or the new one, never half of either."""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ttscale.errors import DiskWriteError


def atomic_write(path: Path, chunks: str | bytes | Iterable[bytes], *, fsync: bool = True) -> None:
    """Write ``chunks`` to a temporary file beside ``path``, then rename it over ``path``.

    The temporary name carries the process id, so two writers never share one; the rename is atomic
    on POSIX and Windows (``os.replace``).
    A failed write (disk full, file size limit) raises :class:`~ttscale.errors.DiskWriteError` and
    leaves ``path`` as it was. A ``path`` that is a device or FIFO (``/dev/full``) is refused: the
    rename would replace the device node itself.
    """
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise DiskWriteError(path, None, "not a regular file (a rename would replace it)")
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if isinstance(chunks, str):
        chunks = [chunks.encode("utf-8")]
    elif isinstance(chunks, bytes):
        chunks = [chunks]
    try:
        with open(tmp, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DiskWriteError.from_os_error(path, exc, "the file's previous content is unchanged") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def finite_json(obj: Any) -> Any:
    """A JSON-ready copy with NaN/inf as None and numpy values as Python ones (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return finite_json(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write of ``finite_json(obj)``, indented."""
    atomic_write(path, json.dumps(finite_json(obj), indent=1, allow_nan=False) + "\n", fsync=False)
