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


EMBEDDED_NAMES = ("arith", "arith-tiny")
"""Model names that mean the packaged tiny arithmetic model."""
ARITH_DATASETS = ("arith", "arith-hard")
"""Dataset names of the packaged arithmetic test sets."""


def is_embedded_model(model: str | Path | None) -> bool:
    """Whether ``model`` names the packaged model: by name, or its folder (any path ending in it)."""
    if model is None:
        return False
    return str(model) in EMBEDDED_NAMES or Path(str(model)).name == MODEL_NAME


PRM_NAME = "arith-prm-tiny"
"""The packaged tiny arithmetic process reward model (scores each step of a solution)."""


def prm_dir() -> Path:
    """The committed folder of the tiny arithmetic PRM (a ``Qwen2ForProcessRewardModel``)."""
    return _PACKAGE / "models" / PRM_NAME


def resolve_model(model: str | None) -> str | None:
    """``arith-tiny`` (or ``arith``) names the packaged tiny arithmetic model's folder, ``arith-prm-tiny``
    the packaged PRM's; anything else is kept."""
    if model in EMBEDDED_NAMES:
        return str(model_dir())
    return str(prm_dir()) if model == PRM_NAME else model


def require_model_source(option: str, model: str) -> str:
    """``model`` resolved to a folder, or kept as a hub id (``org/name``): a name that is neither (a
    typo, a missing folder) is a :class:`ConfigError` now, before any sampling it would follow."""
    resolved = resolve_model(model) or model
    path = Path(resolved)
    if path.is_dir():
        return resolved
    if path.exists() or path.is_absolute() or resolved.startswith((".", "~")) or resolved.count("/") != 1:
        raise ConfigError(option, model, f"a model folder, a hub id (org/name) or {PRM_NAME} (the packaged PRM)")
    return resolved


def auto_template(model: str | Path | None, dataset: str | None = None) -> str:
    """The prompt template ``auto`` stands for: ``arith`` for the embedded model or its test sets, else ``plain``."""
    return "arith" if is_embedded_model(model) or dataset in ARITH_DATASETS else "plain"
