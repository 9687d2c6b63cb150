"""The embedded arithmetic reasoning task and its tiny trained model.

A seeded generator of multi-step add/subtract word problems with a short chain of thought
ending in ``#### N`` (:mod:`ttscale.arith.task`), the tokenizer and training script of the
committed tiny Llama model (:mod:`ttscale.arith.tokenizer`, :mod:`ttscale.arith.train`), and
the paths of the packaged model folder and fixed test sets (:mod:`ttscale.arith.paths`).
Nothing here needs a network: the model and the benchmarks ship with the package.
"""

from __future__ import annotations

from ttscale.arith.paths import model_dir, test_set_path
from ttscale.arith.task import (
    DEFAULT_TEMPERATURE,
    PRESETS,
    ArithConfig,
    extract_answer,
    format_prompt,
    generate_problems,
    get_preset,
)

__all__ = [
    "DEFAULT_TEMPERATURE",
    "PRESETS",
    "ArithConfig",
    "extract_answer",
    "format_prompt",
    "generate_problems",
    "get_preset",
    "model_dir",
    "test_set_path",
]
