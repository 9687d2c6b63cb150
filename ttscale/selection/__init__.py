"""Selection: which of a problem's candidates to answer with. Tie-breaking (``ties``), the
per-sample fields a selector needs (``fields``), parameter models (``params``), the registry by
name (``registry``), the selectors themselves (``vote``, ``reward``, ``oracle``, ``ahead``; each
a pure function on :class:`~ttscale.answers.candidates.Candidates` with a batched twin) and policy
presets (``policy``: TOML files in ``policies/``).
"""

# Importing the implementations registers them: any import of ttscale.selection.<module> runs this first.
from ttscale.selection import ahead, oracle, reward, vote  # noqa: F401
