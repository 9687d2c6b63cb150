from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
BANKS = SHARED / "banks"


@pytest.fixture(scope="session")
def banks_dir() -> Path:
    if not BANKS.is_dir():
        pytest.skip(f"shared data not found at {BANKS}")
    return BANKS
