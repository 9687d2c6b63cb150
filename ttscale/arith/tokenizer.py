"""The tokenizer of the tiny arithmetic model: byte-level BPE trained with ``tokenizers``.

Trained on synthetic problem text plus every number ``0..NUMBER_CAP`` (with and without a
leading space), with a vocabulary budget large enough that BPE merges every pre-token it saw
into one token: each number up to the cap, each word of the templates, ``####`` and the
newline are single tokens, and any other text still encodes byte by byte (no unknown token).
Wrapped as :class:`transformers.PreTrainedTokenizerFast` so transformers and vLLM load it from
the model folder.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from ttscale.arith.task import (
    ORDINALS,
    PRESETS,
    ArithConfig,
    format_prompt,
    sample_problem,
)

NUMBER_CAP = 299
"""Every integer 0..NUMBER_CAP is one token (with or without a leading space)."""

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPECIAL_TOKENS = (PAD, BOS, EOS)
VOCAB_BUDGET = 4096
"""Upper bound given to the BPE trainer; training stops earlier, once every pre-token is whole."""


def _corpus(configs: Iterable[ArithConfig], per_config: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for config in configs:
        for _ in range(per_config):
            p = sample_problem(rng, config)
            texts.append(format_prompt(p["problem"]) + p["solution"])
    # Every ordinal both as a sentence start (" First") and as a solution line start ("First:").
    for _ in range(4):
        texts.append(" ".join(ORDINALS) + "\n" + "\n".join(f"{o}:" for o in ORDINALS))
    numbers = [str(i) for i in range(NUMBER_CAP + 1)]
    # Each number alone on a line (no leading space) and after a space, a few times over.
    for _ in range(4):
        texts.append("\n".join(numbers))
        texts.append(" " + " ".join(numbers))
    return texts


def build_tokenizer(configs: Iterable[ArithConfig] | None = None, *, seed: int = 0, per_config: int = 2000):
    """Train the byte-level BPE tokenizer and wrap it as ``PreTrainedTokenizerFast``.

    ``configs`` are the difficulty settings whose text the vocabulary is learned from (all
    presets by default). Adds ``<s>`` at the start of every encoded text (as Llama does).
    """
    from transformers import PreTrainedTokenizerFast

    configs = list(PRESETS.values()) if configs is None else list(configs)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_BUDGET,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(configs, per_config, seed), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="left",
        model_max_length=256,
        clean_up_tokenization_spaces=False,
    )
    check_tokenizer(wrapped)
    return wrapped


def check_tokenizer(tokenizer) -> None:
    """Raise AssertionError unless every number 0..NUMBER_CAP is one token and text round-trips."""
    for i in range(NUMBER_CAP + 1):
        for text in (str(i), f" {i}"):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise AssertionError(f"number {text!r} is {len(ids)} tokens, expected 1")
    sample = "Question: Mia has 45 marbles.\nAnswer:\n45 + 12 = 57\n#### 57"
    ids = tokenizer(sample, add_special_tokens=False)["input_ids"]
    if tokenizer.decode(ids) != sample:
        raise AssertionError("tokenizer does not round-trip text")
