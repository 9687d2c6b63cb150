"""The bench folder's run state (``bench-state.json``): the sampling settings and the log of sampling runs.

The state is written before the first sample of a run, so that a killed run is still checked the
next time: a bank is never grown with other sampling settings (the pool would mix two
distributions). Each run that drew samples is logged (a killed run cannot log itself; its samples
still count).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from ttscale.bench.results import SamplingRun
from ttscale.errors import ConfigError
from ttscale.records.files import finite_json, write_json
from ttscale.sampling.driver import RunStats
from ttscale.validation import FrozenModel, config_error

STATE = "bench-state.json"


def read_json(path: Path) -> dict | None:
    """The JSON object in ``path``; None when the file is missing, unreadable or not an object."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def bank_digest(path: Path, ids: Sequence[str]) -> str:
    """Digest of the bank's bytes and of the selected ids: any new sample or score changes it."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    h.update("\x00".join(ids).encode())
    return h.hexdigest()


class BenchState(FrozenModel):
    """What ``bench-state.json`` holds."""

    sampling: dict[str, Any] | None = None
    """The settings the bank was sampled with (None before the first sample)."""
    runs: list[SamplingRun] = Field(default_factory=list)
    """Every sampling run that drew samples, oldest first."""

    @classmethod
    def load(cls, path: Path) -> BenchState:
        """The state in ``path`` (empty when there is none); a state that is not ttscale's is an error."""
        data = read_json(path)
        if data is None:
            return cls()
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise config_error(exc, cls, prefix="bench state ", source=str(path)) from None

    def save(self, path: Path) -> None:
        write_json(path, self.model_dump(mode="json", exclude_none=False))

    def check_sampling(self, sampling: dict[str, Any], bank: Path) -> None:
        """Refuse to grow a bank with other sampling settings than it was sampled with."""
        if not self.sampling:
            return
        for key, value in sampling.items():
            if key in self.sampling and self.sampling[key] != finite_json(value):
                raise ConfigError(f"--{key.replace('_', '-')}", value,
                                  f"{self.sampling[key]!r}, the setting {bank} was sampled with (or another --out folder)")

    def with_sampling(self, sampling: dict[str, Any]) -> BenchState:
        return self.model_copy(update={"sampling": finite_json(sampling)})

    def with_run(self, *, backend: str | None, n: int, stats: RunStats, wall: float, finished: bool) -> BenchState:
        """The state with one more logged run."""
        run = SamplingRun(finished_at=datetime.now(UTC).isoformat(timespec="seconds"), backend=backend, n=n,
                          **stats.to_json(), wall_seconds=wall, completed=finished)
        return self.model_copy(update={"runs": [*self.runs, run]})
