from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
BANKS = SHARED / "banks"


def require_shared(path: Path = SHARED) -> Path:
    """``path`` (under ../shared/data, beside the repository) when it exists. Missing: a failure
    when TTSCALE_REQUIRE_SHARED_DATA=1 (CI has the data, so a silent skip would hide tests), else
    a skip."""
    if not path.exists():
        message = f"shared data not found at {path}"
        if os.environ.get("TTSCALE_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"{message} (TTSCALE_REQUIRE_SHARED_DATA=1)", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (benchmarks, banks): see :func:`require_shared`."""
    return require_shared(SHARED)


@pytest.fixture(scope="session")
def banks_dir() -> Path:
    """../shared/data/banks: see :func:`require_shared`."""
    return require_shared(BANKS)


def build_tiny_llama(path: Path, *, num_labels: int | None = None, max_positions: int = 256) -> Path:
    """A random tiny Llama with the arithmetic tokenizer, saved as a Hugging Face folder.

    A causal LM by default; with ``num_labels`` a sequence classifier (a reward model when 1).
    head_dim 32: vLLM-cpu needs it.
    """
    import torch
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        LlamaForSequenceClassification,
    )

    from ttscale.arith.tokenizer import build_tokenizer

    tok = build_tokenizer(per_config=200)
    torch.manual_seed(0)
    head = {} if num_labels is None else {"num_labels": num_labels}
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        intermediate_size=256, max_position_embeddings=max_positions, tie_word_embeddings=num_labels is None,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **head,
    )
    model = LlamaForCausalLM(cfg) if num_labels is None else LlamaForSequenceClassification(cfg)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_tiny_prm(path: Path, *, step_tag: str = "<extra_0>", max_positions: int = 512, seed: int = 0) -> Path:
    """A random tiny ``Qwen2ForProcessRewardModel`` (vLLM's layout) with the arithmetic tokenizer plus
    ``step_tag`` as a special token, saved as a Hugging Face folder. head_dim 32: vLLM-cpu needs it."""
    import torch
    from transformers import Qwen2Config

    from ttscale.arith.tokenizer import build_tokenizer
    from ttscale.scoring.prm import Qwen2ForProcessRewardModel, save_tokenizer

    tok = build_tokenizer(per_config=200)
    tok.add_special_tokens({"additional_special_tokens": [step_tag]})
    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=len(tok), hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        intermediate_size=256, max_position_embeddings=max_positions, tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        architectures=["Qwen2ForProcessRewardModel"],
    )
    model = Qwen2ForProcessRewardModel(cfg)
    with torch.no_grad():  # random heads give near-0.5 everywhere; a wider head spreads the scores out
        model.score[2].weight.mul_(20.0)
    model.save_pretrained(path)
    save_tokenizer(tok, path)  # else transformers 5 reloads it as Qwen2Tokenizer (model_type qwen2): other tokens
    return path


def in_process_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip without vLLM (or with TTSCALE_SKIP_VLLM=1); otherwise the CPU settings of an in-process engine."""
    import os

    if os.environ.get("TTSCALE_SKIP_VLLM") == "1":
        pytest.skip("TTSCALE_SKIP_VLLM=1")
    pytest.importorskip("vllm")
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process engine: ~10 s instead of ~23 s
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def upstream():
    """A fast local OpenAI-compatible server (tests/fake_upstream.py), one per test module."""
    from fake_upstream import FakeUpstream

    with FakeUpstream(p_right=0.6) as up:
        yield up


def without_chat_template(model: Path, dest: Path) -> Path:
    """A copy of the model folder at ``dest`` without the chat template in its tokenizer config (the
    packaged model has one; tests of what happens without one need a copy)."""
    shutil.copytree(model, dest)
    config = json.loads((dest / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (dest / "tokenizer_config.json").write_text(json.dumps(config))
    return dest
