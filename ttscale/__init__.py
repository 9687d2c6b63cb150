"""ttscale: inference-time compute optimizer for LLM reasoning.

The Python API is :class:`ttscale.TTScale` (imported lazily: ``import ttscale`` stays cheap for
the CLI and for tools that only read banks).
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["TTScale", "Budget", "Solution", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("TTScale", "Budget", "Solution"):
        from ttscale.live import api

        return getattr(api, name)
    raise AttributeError(f"module 'ttscale' has no attribute {name!r}")
