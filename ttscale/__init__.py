"""ttscale: inference-time compute optimizer for LLM reasoning.

Two Python APIs, imported lazily (``import ttscale`` stays cheap for the CLI and for tools that
only read banks):

* live: :class:`ttscale.TTScale` solves questions against a model within a :class:`ttscale.Budget`;
* offline, on a bank of sampled answers (what the ``ttscale`` commands do):
  ``read_bank``, ``evaluate``, ``plan``, ``plan_models``, ``simulate`` (see :mod:`ttscale.offline`).
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["TTScale", "Budget", "Solution", "read_bank", "evaluate", "plan", "plan_models", "simulate", "__version__"]

_LIVE = ("TTScale", "Budget", "Solution")
_OFFLINE = ("read_bank", "evaluate", "plan", "plan_models", "simulate")


def __getattr__(name: str) -> Any:
    if name in _LIVE:
        from ttscale.live import api

        return getattr(api, name)
    if name in _OFFLINE:
        from ttscale import offline

        return getattr(offline, name)
    raise AttributeError(f"module 'ttscale' has no attribute {name!r}")
