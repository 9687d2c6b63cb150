"""Where the packaged model folder and the fixed arithmetic test sets are."""

from __future__ import annotations

from pathlib import Path

from ttscale.errors import ConfigError

_PACKAGE = Path(__file__).resolve().parent.parent

MODEL_NAME = "arith-tiny"
TEST_SETS = {"default": "arith_test.jsonl", "hard": "arith_test_hard.jsonl"}
TEST_SET_SEEDS = {"default": 20240601, "hard": 20240602}
"""Seeds of ``generate_problems`` that made the committed test sets (500 problems each)."""
TEST_SET_SIZE = 500


def model_dir() -> Path:
    """The committed Hugging Face folder of the tiny arithmetic model (config, weights, tokenizer)."""
    return _PACKAGE / "models" / MODEL_NAME


def test_set_path(name: str = "default") -> Path:
    """The committed JSONL test set for difficulty preset ``name`` ("default" or "hard")."""
    try:
        return _PACKAGE / "data" / TEST_SETS[name]
    except KeyError:
        raise ConfigError("test_set", name, f"one of {sorted(TEST_SETS)}") from None
