"""Train the tiny arithmetic model on CPU and write a Hugging Face model folder.

    python -m ttscale.arith.train --out DIR [--steps N] [--seed S]
        [--hidden-size H --layers L --heads A --intermediate-size I]

Builds the byte-level BPE tokenizer (:mod:`ttscale.arith.tokenizer`) and a ~1M-parameter
Llama (hidden 128, 4 layers, 4 heads, tied embeddings; the number tokens' embeddings start
with sinusoidal features of their value), then trains it with AdamW (warmup, cosine decay) on
freshly generated problems from a mixture of difficulties that covers both presets, with the
loss on the solution tokens (and the end-of-sequence token) only. Problems whose numbers
match a problem of a committed test set are left out of training. Everything is seeded and
the step count is fixed; the run is deterministic on one machine but not bit-identical across
machines, which is why the trained weights are committed (``ttscale/models/arith-tiny``).

It uses one torch thread by default: on a 2-core machine shared with other work, two threads
were 3-4x slower per step than one. The committed model took 1600 steps, about 22 CPU-minutes
(26 minutes wall-clock on a busy shared machine); a greedy accuracy on 64 probe problems is
logged every 250 steps.

The shape options default to :data:`MODEL_SHAPE` (the packaged model); the head dimension
``hidden / heads`` should stay 32, which vLLM's CPU attention supports. The smaller dev model
``evals/data/models/arith-micro`` (hidden 96, 3 layers, 3 heads, intermediate 288) came from
``--hidden-size 96 --layers 3 --heads 3 --intermediate-size 288`` (see ``evals/corpora.py``).

The folder holds config.json, model.safetensors, generation_config.json, the tokenizer files
and training_info.json (the settings and the loss curve of the run).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

from ttscale.arith.paths import TEST_SET_SEEDS, TEST_SET_SIZE
from ttscale.arith.task import (
    DEFAULT_TEMPERATURE,
    PRESETS,
    ArithConfig,
    format_prompt,
    generate_problems,
    problem_signature,
    sample_problem,
)

DEFAULT_STEPS = 1900
DEFAULT_SEED = 0
DEFAULT_BATCH = 64

TRAIN_MIXTURE: tuple[tuple[float, ArithConfig], ...] = (
    (0.7, ArithConfig(max_value=99, max_operand=20, min_steps=1, max_steps=4)),
    (0.3, ArithConfig(max_value=99, max_operand=20, min_steps=5, max_steps=8)),
)
"""(weight, difficulty) pairs the training problems are drawn from."""

MODEL_SHAPE = dict(
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=256,
)


def _test_signatures() -> set[tuple[int, ...]]:
    sigs = set()
    for name, seed in TEST_SET_SEEDS.items():
        for p in generate_problems(PRESETS[name], TEST_SET_SIZE, seed):
            sigs.add(problem_signature(p["problem"]))
    return sigs


def training_problems(count: int, seed: int) -> list[dict[str, str]]:
    """``count`` training problems from :data:`TRAIN_MIXTURE`, none sharing a test problem's numbers."""
    rng = random.Random(seed)
    weights = [w for w, _ in TRAIN_MIXTURE]
    configs = [c for _, c in TRAIN_MIXTURE]
    banned = _test_signatures()
    out: list[dict[str, str]] = []
    while len(out) < count:
        config = rng.choices(configs, weights)[0]
        p = sample_problem(rng, config)
        if problem_signature(p["problem"]) not in banned:
            out.append(p)
    return out


def model_shape(
    hidden_size: int = MODEL_SHAPE["hidden_size"],
    num_hidden_layers: int = MODEL_SHAPE["num_hidden_layers"],
    num_attention_heads: int = MODEL_SHAPE["num_attention_heads"],
    intermediate_size: int = MODEL_SHAPE["intermediate_size"],
) -> dict[str, int]:
    """:data:`MODEL_SHAPE` with the given width, depth, heads (as many key/value heads) and MLP width."""
    for name, value in (("hidden size", hidden_size), ("layers", num_hidden_layers), ("heads", num_attention_heads),
                        ("intermediate size", intermediate_size)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, not {value}")
    if hidden_size % num_attention_heads:
        raise ValueError(f"hidden size {hidden_size} is not a multiple of {num_attention_heads} heads")
    return {
        **MODEL_SHAPE,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_attention_heads,
    }


def build_model(tokenizer, seed: int, shape: dict[str, int] | None = None):  # type: ignore[no-untyped-def]
    """A fresh Llama of ``shape`` (default :data:`MODEL_SHAPE`) with value-aware number embeddings."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
        initializer_range=0.02,
        **(MODEL_SHAPE if shape is None else shape),
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    init_number_embeddings(model, tokenizer)
    return model


NUMBER_PERIODS = (2, 3, 4, 5, 7, 10, 12, 16, 20, 25, 32, 50, 64, 100, 128, 200)
"""Periods of the sinusoidal value features written into the number tokens' embeddings."""
NUMBER_FEATURE_SCALE = 0.05


def init_number_embeddings(model, tokenizer) -> None:
    """Give every number token an embedding that starts out knowing its value.

    The first ``2 * len(NUMBER_PERIODS)`` coordinates of the embedding of ``N`` and ``" N"``
    become ``scale * (cos 2 pi N / T, sin 2 pi N / T)`` for each period T (the other coordinates
    keep their random initialization). Adding a number then rotates these phases, and with
    tied input/output embeddings nearby values start out similar; both make arithmetic much
    faster to learn from a few minutes of CPU training. Only the initialization changes: the
    result is an ordinary Llama checkpoint.
    """
    import torch

    from ttscale.arith.tokenizer import NUMBER_CAP

    emb = model.get_input_embeddings().weight
    width = 2 * len(NUMBER_PERIODS)
    if emb.shape[1] < width:
        return
    periods = torch.tensor(NUMBER_PERIODS, dtype=torch.float32)
    with torch.no_grad():
        for value in range(NUMBER_CAP + 1):
            angle = 2 * math.pi * value / periods
            features = NUMBER_FEATURE_SCALE * torch.cat([torch.cos(angle), torch.sin(angle)])
            for text in (str(value), f" {value}"):
                ids = tokenizer(text, add_special_tokens=False)["input_ids"]
                if len(ids) == 1:
                    emb[ids[0], :width] = features


def _encode(tokenizer, problems):
    """Token ids of prompt+solution+EOS per problem, and the index where the solution starts."""
    prompts = tokenizer([format_prompt(p["problem"]) for p in problems])["input_ids"]
    solutions = tokenizer([p["solution"] for p in problems], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return [(pr + so + [eos], len(pr)) for pr, so in zip(prompts, solutions)]


def _bucketed(encoded, batch_size: int, seed: int, group: int = 16):
    """Split into batches of similar length (less padding): sort each run of ``group`` batches
    by length, cut it into batches, and shuffle the batches with ``seed``."""
    rng = random.Random(seed)
    batches = []
    span = batch_size * group
    for start in range(0, len(encoded), span):
        part = sorted(encoded[start : start + span], key=lambda e: len(e[0]))
        chunk = [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
        rng.shuffle(chunk)
        batches.extend(chunk)
    return batches


def _batch(encoded, pad_id):
    import torch

    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), -100, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (ids, start) in enumerate(encoded):
        t = torch.tensor(ids, dtype=torch.long)
        input_ids[row, : len(ids)] = t
        mask[row, : len(ids)] = 1
        labels[row, start : len(ids)] = t[start:]
    return input_ids, mask, labels


def train(
    out: str | Path,
    *,
    steps: int = DEFAULT_STEPS,
    seed: int = DEFAULT_SEED,
    batch_size: int = DEFAULT_BATCH,
    lr: float = 3e-3,
    threads: int = 1,
    log_every: int = 50,
    eval_every: int = 250,
    shape: dict[str, int] | None = None,
) -> dict:
    """Train and write the model folder to ``out``; returns the training summary.

    ``shape`` is the model's :data:`MODEL_SHAPE`-like dict (default :data:`MODEL_SHAPE`; see :func:`model_shape`).
    """
    import torch

    from ttscale.arith.tokenizer import build_tokenizer

    t0 = time.perf_counter()
    torch.set_num_threads(threads)
    random.seed(seed)
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(seed=seed)
    model = build_model(tokenizer, seed, shape)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters, vocabulary {len(tokenizer)}", flush=True)

    batches = _bucketed(_encode(tokenizer, training_problems(steps * batch_size, seed + 1)), batch_size, seed + 2)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.98),
    )
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    probes = {
        name: generate_problems(PRESETS[name], 64, seed=10_000 + i) for i, name in enumerate(("default", "hard"))
    }
    model.train()
    losses = []
    evals: list = []
    running = 0.0
    for step in range(steps):
        input_ids, mask, labels = _batch(batches[step], tokenizer.pad_token_id)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        running += loss.item()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            n = (step % log_every) + 1
            losses.append([step + 1, round(running / n, 5)])
            print(f"step {step + 1}/{steps} loss {running / n:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
            running = 0.0
        if eval_every and ((step + 1) % eval_every == 0 or step + 1 == steps):
            accuracy = greedy_accuracy(model, tokenizer, probes)
            model.train()
            print(f"step {step + 1}: greedy accuracy on 64 probe problems {accuracy}", flush=True)
            evals.append([step + 1, accuracy])
    model.eval()
    summary = {
        "steps": steps,
        "seed": seed,
        "batch_size": batch_size,
        "lr": lr,
        "parameters": n_params,
        **({} if shape is None or shape == MODEL_SHAPE else {"shape": shape}),
        "vocab_size": len(tokenizer),
        "mixture": [{"weight": w, **c.to_dict()} for w, c in TRAIN_MIXTURE],
        "loss_curve": losses,
        "probe_greedy_accuracy": evals,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "torch": torch.__version__,
    }
    save(model, tokenizer, out, summary)
    return summary


def greedy_accuracy(model, tokenizer, probes: dict[str, list[dict[str, str]]]) -> dict[str, float]:
    """Greedy-decoding accuracy per probe set (a progress signal; not the committed figures)."""
    import torch

    from ttscale.arith.task import extract_answer

    model.eval()
    out = {}
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    for name, problems in probes.items():
        enc = tokenizer([format_prompt(p["problem"]) for p in problems], return_tensors="pt", padding=True)
        with torch.inference_mode():
            gen = model.generate(
                **enc, do_sample=False, max_new_tokens=96, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        texts = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        out[name] = sum(extract_answer(t) == p["answer"] for t, p in zip(texts, problems)) / len(problems)
    tokenizer.padding_side = side
    return out


def save(model, tokenizer, out: str | Path, summary: dict) -> None:
    from transformers import GenerationConfig

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        temperature=DEFAULT_TEMPERATURE,
        top_p=1.0,
        max_new_tokens=64,
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    # Name the class every transformers version knows (5.x writes its new "TokenizersBackend").
    tok_config_path = out / "tokenizer_config.json"
    tok_config = json.loads(tok_config_path.read_text())
    tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_config_path.write_text(json.dumps(tok_config, indent=2) + "\n")
    (out / "training_info.json").write_text(json.dumps(summary, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ttscale.arith.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the Hugging Face model to")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"optimizer steps (default {DEFAULT_STEPS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed (default {DEFAULT_SEED})")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help=f"problems per step (default {DEFAULT_BATCH})")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: faster than 2 on a shared 2-core machine)"
    )
    parser.add_argument("--hidden-size", type=int, default=MODEL_SHAPE["hidden_size"],
                        help=f"model width (default {MODEL_SHAPE['hidden_size']}; keep hidden/heads = 32)")
    parser.add_argument("--layers", type=int, default=MODEL_SHAPE["num_hidden_layers"],
                        help=f"transformer layers (default {MODEL_SHAPE['num_hidden_layers']})")
    parser.add_argument("--heads", type=int, default=MODEL_SHAPE["num_attention_heads"],
                        help=f"attention heads, as many key/value heads (default {MODEL_SHAPE['num_attention_heads']})")
    parser.add_argument("--intermediate-size", type=int, default=MODEL_SHAPE["intermediate_size"],
                        help=f"MLP width (default {MODEL_SHAPE['intermediate_size']})")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    try:
        shape = model_shape(args.hidden_size, args.layers, args.heads, args.intermediate_size)
    except ValueError as exc:
        parser.error(str(exc))
    summary = train(args.out, steps=args.steps, seed=args.seed, batch_size=args.batch_size, threads=args.threads,
                    shape=shape)
    print(f"wrote {args.out} in {summary['train_seconds']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
