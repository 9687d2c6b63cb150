"""Train the embedded tiny process reward model (PRM) for the arithmetic task and measure it held out.

    python evals/train_arith_prm.py --out runs/arith-prm --install

reproduces ``ttscale/models/arith-prm-tiny`` (defaults: 1,200 sampled training problems, 60,000 synthetic
solutions, 1,200 optimizer steps of 64, lr 2e-3, auxiliary weight 1, seed 0, one torch thread; about
45 minutes of wall time on the shared 2-core machine, roughly 25 minutes of CPU). A train run is not
bit-reproducible across machines (threads, BLAS): the committed weights are the reference.

Stages (each a real code path):

1. sample: ``ttscale sample -b hf`` (``--backend vllm`` works too, under ``flock /tmp/vllm.lock``; it is
   not faster on this CPU) draws ``--n`` solutions per problem from the packaged arith-tiny model at its
   default temperature 1.3, for ``--train-problems`` freshly generated problems (problems of either
   fixed test set are dropped) and for the first ``--eval-problems`` problems of the fixed default test
   set (held out: never trained on).
2. label: every step (line) is labelled automatically by :func:`label_steps`: an ``Ordinal: a op b = c``
   line is good when its ordinal, operation and operand are the problem's step k, ``a`` is the value the
   previous line arrived at (the start value for the first), and ``a op b = c`` is right; the ``#### N``
   line is good when it follows the last step and N is the value the lines arrived at. Any other line is
   bad. Labels are local: a line after a slip is judged from the value the slip arrived at, so ``min``
   (or ``product``) aggregation is the one that flags a chain with any wrong step.
   Besides the sampled solutions and each problem's reference, ``--synthetic`` solutions are written from
   the references of fresh problems (80% default preset, 20% hard; never a test problem) by
   :func:`perturbed_solution`: each step is wrong with probability ``--p-error``, mostly a result off by
   1-3 (the policy's own typical slip), sometimes a wrong carry, operand, operation or ordinal, a skipped
   step or a wrong final line; later lines carry on from the wrong value, as the policy's do.
3. train: a ``Qwen2ForProcessRewardModel`` in vLLM's layout (:mod:`ttscale.scoring.prm`), its backbone
   warm-started from arith-tiny's Llama weights (Qwen2's q/k/v biases start at 0, so the starting backbone
   computes what the policy computes), the vocabulary grown by the ``<extra_0>`` step tag, the ``score``
   head fresh. Loss: cross-entropy of the 2-label head at each tag, plus two auxiliary dense targets at
   the same positions (:func:`train`): the step's arithmetic error ``(a op b) - c`` (11 classes, from the
   score head's hidden layer) and the right result as a token (the tag's output read through the token
   embeddings). Neither adds a saved weight. AdamW, warmup + cosine, fixed step count, seeded.
4. measure on the held-out bank: ``ttscale score prm`` (min aggregation) and ``ttscale score confidence``
   (mean log-prob), then ``ttscale eval`` (single sample, majority@8, best-of-8 and weighted majority@8
   by each scorer, pass@8), and the PRM's step-level agreement with the labels (:func:`step_metrics`).

Results go to ``OUT/summary.json``; ``--install`` copies the model (and the summary as training_info.json)
into ``ttscale/models/arith-prm-tiny``. ``--reuse-banks`` skips the sampling stage when OUT holds both banks.

History. The first recipe (600 sampled problems only, binary labels, 500-1,000 steps) was NEGATIVE:
best-of-8 by the PRM 36.9% against majority@8 65.2%; its loss sat at 0.49-0.50 (base rate 0.61) in every
variant tried (learning rates, bad steps weighted, extra fresh layers). The information is in the
policy's backbone (its probability of ``c`` at the ``=`` separates right and wrong steps with AUC 0.987),
but a linear probe on the warm-started backbone's output at the tag finds none of it (held-out accuracy
63-67% against a 70% base rate, at every layer): the PRM must learn to redo ``a op b`` at the tag and
compare it with ``c``. One bit per step did not teach that in a CPU budget; the dense auxiliary targets
and ~10x more labelled steps do (below).

Measured with the defaults (evals/results/arith_prm_tiny.json; 300 held-out problems x 8 samples at 1.3):
single 49.3%, majority@8 65.1%, weighted majority@8 by mean log-prob 69.0%, best-of-8 by mean log-prob
85.0%, weighted majority@8 by the PRM (min) 80.3%, best-of-8 by the PRM (min) 86.6%, pass@8 97.0%. Step
level: accuracy 98.5% (base rate 68.6% good), 95.4% of bad steps flagged at 99.7% precision. Label loss
0.61 -> 0.28 (flat for the first ~300 steps, then falling).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ttscale.arith import (  # noqa: E402
    DEFAULT_TEMPERATURE,
    PRESETS,
    generate_problems,
    model_dir,
    test_set_path,
)
from ttscale.scoring.prm import (  # noqa: E402
    QWEN_PRM_STEP_TAG,
    prm_input_ids,
    save_tokenizer,
    split_steps,
)

TAG = QWEN_PRM_STEP_TAG
TEMPLATE = "{problem}\n"
"""The PRM's prompt before the steps: PRMConfig's default, so ``ttscale score prm`` needs no option."""
TRAIN_SEED_OFFSET = 7_000_000
"""Training problems come from generate_problems(seed + this): far from the test sets' seeds."""
SYNTH_SEED_OFFSET = 8_000_000
"""Problems of the synthetic (perturbed reference) solutions: generate_problems(seed + this [+ 1 for hard])."""

Example = tuple[list[int], list[int], list[int], list[int]]
"""(PRM input token ids, step labels 1 good / 0 bad, and the auxiliary targets of :func:`arith_targets`)."""

_STEP = re.compile(r"(\w+): (-?\d+) ([+-]) (-?\d+) = (-?\d+)")
_FINAL = re.compile(r"#### (-?\d+)")


# --- labels (pure) ----------------------------------------------------------------------------


def reference_steps(solution: str) -> list[tuple[str, int, str, int]]:
    """The reference solution's steps as (ordinal, value before, op, operand)."""
    out = []
    for line in solution.splitlines():
        m = _STEP.fullmatch(line.strip())
        if m:
            out.append((m.group(1), int(m.group(2)), m.group(3), int(m.group(4))))
    return out


def label_steps(solution: str, text: str) -> list[int]:
    """1 (good) or 0 (bad) for each step of ``text`` as :func:`ttscale.scoring.prm.split_steps` splits it (see the module doc)."""
    ref = reference_steps(solution)
    carry = ref[0][1] if ref else None
    labels: list[int] = []
    finished = False
    for k, line in enumerate(split_steps(text, "\n", TAG)):
        good = False
        m = _STEP.fullmatch(line)
        f = _FINAL.fullmatch(line)
        if finished:
            good = False  # nothing may follow the answer line
        elif m and k < len(ref):
            ordinal, a, op, b, c = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), int(m.group(5))
            want_ord, _, want_op, want_b = ref[k]
            good = ordinal == want_ord and a == carry and op == want_op and b == want_b and c == (a + b if op == "+" else a - b)
            carry = c  # judge the next line against what this one arrived at: labels stay local
        elif f:
            good = k == len(ref) and int(f.group(1)) == carry
            finished = True
        labels.append(int(good))
    return labels


SLIP_SIZES = (1, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 10)
"""How far a synthetic arithmetic slip lands from the right result (mostly 1-2, as the policy's slips)."""
ERROR_KINDS = (("result", 70), ("carry", 8), ("operand", 8), ("operation", 5), ("ordinal", 4), ("skip", 5))
"""Kinds of synthetic step errors and their weights (the policy's own bad steps are ~96% wrong results)."""


def _slip(rng: random.Random, value: int) -> int:
    return value + rng.choice(SLIP_SIZES) * rng.choice((-1, 1))


def perturbed_solution(rng: random.Random, solution: str, p_error: float) -> str:
    """A solution text written from the reference, each step wrong with probability ``p_error``
    (a kind from :data:`ERROR_KINDS`); later lines carry on from the value a wrong line arrived at,
    as the policy's own solutions do. Its labels come from :func:`label_steps` like any sample's."""
    ref = reference_steps(solution)
    carry = ref[0][1]
    lines = []
    ordinals = [o for o, _, _, _ in ref]
    for k, (ordinal, _, op, b) in enumerate(ref):
        a = carry
        kind = rng.choices([n for n, _ in ERROR_KINDS], [w for _, w in ERROR_KINDS])[0] if rng.random() < p_error else None
        if kind == "skip":
            continue
        if kind == "carry":
            a = _slip(rng, a)
        elif kind == "operand":
            others = [x for _, _, _, x in ref if x != b]
            b = rng.choice(others) if others and rng.random() < 0.5 else max(0, _slip(rng, b))
        elif kind == "operation":
            op = "-" if op == "+" else "+"
        elif kind == "ordinal":
            ordinal = rng.choice([o for o in ordinals + ["Fifth", "Sixth"] if o != ordinal])
        c = a + b if op == "+" else a - b
        if kind == "result":
            c = _slip(rng, c)
        lines.append(f"{ordinal}: {a} {op} {b} = {c}")
        carry = c
    final = carry
    if rng.random() < p_error * 0.15:
        final = _slip(rng, final)
    lines.append(f"#### {final}")
    return "\n".join(lines)


OFFSET_RANGE = 5
"""An auxiliary head classifies a step line's arithmetic error ``(a op b) - c`` into -5..5 (clipped)."""


def arith_targets(text: str, tokenizer: Any) -> tuple[list[int], list[int]]:
    """The auxiliary targets per step of ``text``: the class of its arithmetic error (``(a op b) - c``
    clipped to +-OFFSET_RANGE, shifted to 0..2*OFFSET_RANGE) and the token id of the right result
    ``" {a op b}"``; -100 (ignored) for a line that is not ``Ordinal: a op b = c`` or a result that is
    not one token."""
    offsets, results = [], []
    for line in split_steps(text, "\n", TAG):
        m = _STEP.fullmatch(line)
        if m is None:
            offsets.append(-100)
            results.append(-100)
            continue
        a, op, b, c = int(m.group(2)), m.group(3), int(m.group(4)), int(m.group(5))
        right = a + b if op == "+" else a - b
        offsets.append(max(-OFFSET_RANGE, min(OFFSET_RANGE, right - c)) + OFFSET_RANGE)
        ids = tokenizer(f" {right}", add_special_tokens=False)["input_ids"]
        results.append(ids[0] if len(ids) == 1 else -100)
    return offsets, results


def _self_check() -> None:
    sol = "First: 45 + 12 = 57\nSecond: 57 - 7 = 50\n#### 50"
    assert label_steps(sol, sol) == [1, 1, 1]
    assert label_steps(sol, "First: 45 + 12 = 56\nSecond: 56 - 7 = 49\n#### 49") == [0, 1, 1]
    assert label_steps(sol, "First: 45 + 11 = 56\nSecond: 56 - 7 = 49\n#### 50") == [0, 1, 0]
    assert label_steps(sol, "First: 45 + 12 = 57\n#### 57") == [1, 0]
    assert label_steps(sol, "First: 45 + 12 = 57\nSecond: 57 - 7 = 50\nThird: 50 - 1 = 49\n#### 49") == [1, 1, 0, 0]
    assert label_steps(sol, "First: 45 + 12 = 57\nSecond: 57 - 7 = 50\n#### 50\n#### 50") == [1, 1, 1, 0]
    assert label_steps(sol, "Second: 45 + 12 = 57\nhello") == [0, 0]


# --- stages ---------------------------------------------------------------------------------


def _run(cmd: list[str], env: dict[str, str]) -> str:
    started = time.perf_counter()
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"command failed ({done.returncode}): {' '.join(cmd)}")
    print(f"  ({time.perf_counter() - started:.0f}s)", flush=True)
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def _ttscale() -> list[str]:
    return [sys.executable, "-m", "ttscale"]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _sample(dataset: Path, out: Path, n: int, seed: int, env: dict[str, str], backend: str = "hf") -> None:
    cmd = _ttscale() + ["sample", "-m", "arith-tiny", "-d", str(dataset), "-b", backend, "--n", str(n),
                        "--temperature", str(DEFAULT_TEMPERATURE), "--max-tokens", "96", "--seed", str(seed),
                        "-o", str(out), "--json", "-q"]
    if backend == "vllm":
        cmd += ["--dtype", "float32", "--max-model-len", "256", "--engine-arg", "max_num_batched_tokens=16384",
                "--engine-arg", "enforce_eager=true"]
    else:
        cmd += ["--batch-size", "64"]
    _run(cmd, env)


def _examples(bank: Path, solutions: dict[str, str], tokenizer: Any, tag_id: int) -> list[Example]:
    """Unique (token ids, step labels) pairs from a bank's solutions plus each problem's reference."""
    seen: set[tuple[str, str]] = set()
    out = []
    for line in bank.read_text().splitlines():
        rec = json.loads(line)
        sol = solutions[rec["id"]]
        for text in [sol] + [s.get("text") or "" for s in rec["samples"]]:
            if (rec["id"], text) in seen:
                continue
            seen.add((rec["id"], text))
            labels = label_steps(sol, text)
            if not labels:
                continue
            ids = prm_input_ids(tokenizer, rec["problem"], text, template=TEMPLATE, step_tag=TAG)
            assert sum(t == tag_id for t in ids) == len(labels)
            out.append((ids, labels, *arith_targets(text, tokenizer)))
    return out


def build_model(tag: str = TAG) -> tuple[Any, Any]:
    """A Qwen2ForProcessRewardModel warm-started from arith-tiny's backbone, and its tokenizer (+ the tag)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    from ttscale.scoring.prm import Qwen2ForProcessRewardModel

    tok = AutoTokenizer.from_pretrained(model_dir(), local_files_only=True)
    tok.add_special_tokens({"additional_special_tokens": [tag]})
    policy = AutoModelForCausalLM.from_pretrained(model_dir(), dtype=torch.float32, local_files_only=True)
    pc = policy.config
    cfg = Qwen2Config(
        vocab_size=len(tok), hidden_size=pc.hidden_size, num_hidden_layers=pc.num_hidden_layers,
        num_attention_heads=pc.num_attention_heads, num_key_value_heads=pc.num_key_value_heads,
        intermediate_size=pc.intermediate_size, max_position_embeddings=512, rms_norm_eps=pc.rms_norm_eps,
        rope_parameters=dict(pc.rope_parameters), tie_word_embeddings=False, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, architectures=["Qwen2ForProcessRewardModel"],
    )
    model = Qwen2ForProcessRewardModel(cfg)
    src = {k: v for k, v in policy.state_dict().items() if k.startswith("model.")}
    emb = src.pop("model.embed_tokens.weight")
    with torch.no_grad():
        model.model.embed_tokens.weight[: emb.shape[0]] = emb
        model.model.embed_tokens.weight[emb.shape[0]:] = emb.mean(0)  # the tag starts as an average token
        for name in ("q_proj", "k_proj", "v_proj"):  # Llama has no q/k/v bias: start at 0
            for layer in model.model.layers:
                getattr(layer.self_attn, name).bias.zero_()
    missing, unexpected = model.load_state_dict(src, strict=False)
    assert not unexpected, unexpected
    assert all(k.startswith("score.") or k.endswith("_proj.bias") or k == "model.embed_tokens.weight" for k in missing), missing
    return model, tok


def train(model: Any, examples: list[Example], tag_id: int, pad_id: int, *, steps: int,
          batch: int, lr: float, seed: int, aux_weight: float = 1.0) -> list[float]:
    """Cross-entropy of the step labels at the tag positions, plus ``aux_weight`` x two auxiliary
    cross-entropies at the same positions (:func:`arith_targets`): a head on the score head's hidden layer
    names the step's arithmetic error, and the backbone's output at the tag, read through the token
    embeddings as a language model would, names the right result. A right/wrong label is one bit per step;
    these are dense targets that make the backbone redo the arithmetic at the tag. Neither head adds a
    saved weight (the checkpoint keeps vLLM's layout). Returns the label loss every 25 steps."""
    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed)
    aux = torch.nn.Linear(model.config.hidden_size, 2 * OFFSET_RANGE + 1)
    params = list(model.parameters()) + (list(aux.parameters()) if aux_weight else [])
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    model.train()
    losses, window = [], []
    order: list[int] = []
    for step in range(steps):
        if len(order) < batch:
            order += rng.sample(range(len(examples)), len(examples))
        rows = [examples[i] for i in order[:batch]]
        del order[:batch]
        width = max(len(r[0]) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (r, *_) in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        target = torch.tensor([lab for _, labels, _, _ in rows for lab in labels])
        offsets = torch.tensor([o for _, _, offs, _ in rows for o in offs])
        results = torch.tensor([o for _, _, _, res in rows for o in res])
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        at = ids == tag_id  # row-major order matches the labels' order
        feats = model.score[1](model.score[0](hidden[at]))
        loss = torch.nn.functional.cross_entropy(model.score[2](feats), target)
        total = loss
        if aux_weight and (offsets >= 0).any():
            ce = torch.nn.functional.cross_entropy
            words = hidden[at] @ model.model.embed_tokens.weight.T
            total = loss + aux_weight * (ce(aux(feats), offsets, ignore_index=-100) + ce(words, results, ignore_index=-100))
        opt.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        window.append(loss.item())
        if (step + 1) % 25 == 0:
            losses.append(sum(window) / len(window))
            window = []
            print(f"  step {step + 1}/{steps}: loss {losses[-1]:.4f}", flush=True)
    model.eval()
    return losses


def step_metrics(model_path: Path, bank: Path, solutions: dict[str, str]) -> dict[str, float]:
    """The PRM's step-level agreement with the automatic labels on a held-out bank (threshold 0.5)."""
    from ttscale.scoring.prm import ProcessRewardScorer

    scorer = ProcessRewardScorer(str(model_path), batch_size=32)
    good = bad = good_hit = bad_hit = flagged = 0
    for line in bank.read_text().splitlines():
        rec = json.loads(line)
        texts = sorted({s.get("text") or "" for s in rec["samples"]})
        probs = scorer.score_steps([rec["problem"]], [texts])[0]
        for text, ps in zip(texts, probs):
            for lab, p in zip(label_steps(solutions[rec["id"]], text), ps):
                flagged += p < 0.5
                if lab:
                    good += 1
                    good_hit += p >= 0.5
                else:
                    bad += 1
                    bad_hit += p < 0.5
    return {"good_steps": good, "bad_steps": bad, "accuracy": (good_hit + bad_hit) / max(good + bad, 1),
            "base_rate": good / max(good + bad, 1), "good_recall": good_hit / max(good, 1), "bad_recall": bad_hit / max(bad, 1),
            "bad_precision": bad_hit / max(flagged, 1)}


def synthetic_examples(count: int, seed: int, p_error: float, tokenizer: Any, tag_id: int,
                       banned: set[str]) -> list[Example]:
    """``count`` perturbed reference solutions (:func:`perturbed_solution`) of fresh problems, 80%
    from the default preset and 20% from the hard one, none of them a test-set problem."""
    rng = random.Random(seed)
    n_hard = count // 5
    pool = (generate_problems(PRESETS["default"], count - n_hard, seed + SYNTH_SEED_OFFSET, id_prefix="prm-synth")
            + generate_problems(PRESETS["hard"], n_hard, seed + SYNTH_SEED_OFFSET + 1, id_prefix="prm-synth-hard"))
    out = []
    for p in pool:
        if p["problem"] in banned:
            continue
        text = perturbed_solution(rng, p["solution"], p_error)
        ids = prm_input_ids(tokenizer, p["problem"], text, template=TEMPLATE, step_tag=TAG)
        labels = label_steps(p["solution"], text)
        assert sum(t == tag_id for t in ids) == len(labels)
        out.append((ids, labels, *arith_targets(text, tokenizer)))
    return out


def install(model_path: Path, summary: dict[str, Any]) -> Path:
    """Copy the trained folder's files into the package (ttscale/models/arith-prm-tiny) with training_info.json."""
    import shutil

    dest = Path(__file__).resolve().parent.parent / "ttscale" / "models" / "arith-prm-tiny"
    dest.mkdir(parents=True, exist_ok=True)
    for f in model_path.iterdir():
        if f.is_file():
            shutil.copy2(f, dest / f.name)
    cfg_path, positions = dest / "tokenizer_config.json", json.loads((dest / "config.json").read_text())["max_position_embeddings"]
    cfg = json.loads(cfg_path.read_text())
    cfg["model_max_length"] = positions  # the policy's 256 would warn on long partial solutions the PRM can read
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    (dest / "training_info.json").write_text(json.dumps(summary, indent=2) + "\n")
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="Output folder (model/, banks, summary.json); required unless --self-check.")
    ap.add_argument("--train-problems", type=int, default=1200, help="Problems whose sampled solutions are trained on.")
    ap.add_argument("--synthetic", type=int, default=60000, help="Perturbed reference solutions trained on (0: none).")
    ap.add_argument("--p-error", type=float, default=0.35, help="Chance that a synthetic step is wrong.")
    ap.add_argument("--eval-problems", type=int, default=300, help="First problems of the fixed default test set.")
    ap.add_argument("--n", type=int, default=8, help="Samples per problem (train and eval).")
    ap.add_argument("--backend", choices=("hf", "vllm"), default="hf",
                    help="Sampler of the policy's solutions (hf is as fast on CPU; wrap vllm in flock /tmp/vllm.lock).")
    ap.add_argument("--steps", type=int, default=1200, help="Optimizer steps.")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--aux-weight", type=float, default=1.0, help="Weight of the arithmetic-error auxiliary loss (0: off).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared).")
    ap.add_argument("--reuse-banks", action="store_true",
                    help="Keep OUT/train.bank.jsonl and OUT/eval.bank.jsonl when they exist (skip sampling).")
    ap.add_argument("--install", action="store_true", help="Copy the trained model into ttscale/models/arith-prm-tiny.")
    ap.add_argument("--self-check", action="store_true", help="Only check the labeller and exit.")
    args = ap.parse_args()
    _self_check()
    if args.self_check:
        print("labeller ok")
        return
    if args.out is None:
        ap.error("--out is required")
    import torch

    torch.set_num_threads(args.threads)  # shared 2-core machine
    started = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": str(args.threads)}
    timings: dict[str, float] = {}

    # 1. sample
    t = time.perf_counter()
    every_test = [json.loads(line) for name in ("default", "hard") for line in test_set_path(name).read_text().splitlines()]
    test = every_test[: args.eval_problems]
    test_texts = {p["problem"] for p in every_test}
    pool = generate_problems(PRESETS["default"], args.train_problems, args.seed + TRAIN_SEED_OFFSET, id_prefix="prm-train")
    train_set = [p for p in pool if p["problem"] not in test_texts]
    solutions = {p["id"]: p["solution"] for p in train_set + test}
    train_bank, eval_bank = out / "train.bank.jsonl", out / "eval.bank.jsonl"
    train_file, eval_file = _write_jsonl(out / "train.jsonl", train_set), _write_jsonl(out / "eval.jsonl", test)
    if not (args.reuse_banks and train_bank.is_file()):
        _sample(train_file, train_bank, args.n, args.seed, env, args.backend)
    if not (args.reuse_banks and eval_bank.is_file()):
        _sample(eval_file, eval_bank, args.n, args.seed + 1, env, args.backend)
    timings["sample"] = time.perf_counter() - t

    # 2. label, 3. train
    t = time.perf_counter()
    model, tok = build_model()
    tag_id = tok.convert_tokens_to_ids(TAG)
    sampled = _examples(train_bank, solutions, tok, tag_id) if args.train_problems else []
    synthetic = synthetic_examples(args.synthetic, args.seed, args.p_error, tok, tag_id, test_texts) if args.synthetic else []
    examples = sampled + synthetic
    counts = {name: {"solutions": len(ex), "steps": sum(len(e[1]) for e in ex), "bad_steps": sum(e[1].count(0) for e in ex)}
              for name, ex in (("sampled", sampled), ("synthetic", synthetic))}
    print(f"labelled solutions: {counts}", flush=True)
    losses = train(model, examples, tag_id, tok.pad_token_id, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                   aux_weight=args.aux_weight)
    model_path = out / "model"
    model.save_pretrained(model_path)
    tok.model_max_length = model.config.max_position_embeddings
    save_tokenizer(tok, model_path)
    timings["train"] = time.perf_counter() - t

    # 4. measure on the held-out bank with the CLI
    t = time.perf_counter()
    _run(_ttscale() + ["score", "prm", str(eval_bank), "-m", str(model_path), "--aggregation", "min",
                       "--batch-size", "64", "--json", "-q"], env)
    _run(_ttscale() + ["score", "confidence", str(eval_bank), "--json", "-q"], env)
    evals = {}
    for scorer in ("prm", "confidence"):
        evals[scorer] = json.loads(_run(_ttscale() + ["eval", str(eval_bank), "--scorer", scorer, "-p", "best-of-n",
                                                      "-p", "weighted-majority", "-p", "majority", "--k", f"1,{args.n}",
                                                      "--json"], env))
    steps = step_metrics(model_path, eval_bank, solutions)
    timings["measure"] = time.perf_counter() - t

    e, c = evals["prm"]["policies"], evals["confidence"]["policies"]
    summary = {
        "eval_problems": evals["prm"]["problems"], "eval_set": f"first {args.eval_problems} of the fixed default test set",
        "n": args.n, "temperature": DEFAULT_TEMPERATURE,
        "single": e["majority"]["accuracy"][0],
        f"majority@{args.n}": e["majority"]["accuracy"][1],
        f"best_of_{args.n}_prm_min": e["best-of-n"]["accuracy"][1],
        f"weighted_majority@{args.n}_prm_min": e["weighted-majority"]["accuracy"][1],
        f"best_of_{args.n}_mean_logprob": c["best-of-n"]["accuracy"][1],
        f"weighted_majority@{args.n}_mean_logprob": c["weighted-majority"]["accuracy"][1],
        f"pass@{args.n}": evals["prm"]["pass"][1],
        "prm_steps_on_eval": steps,
        "train": {"sampled_problems": len(train_set), **counts, "p_error": args.p_error, "optimizer_steps": args.steps, "aux_weight": args.aux_weight,
                  "batch": args.batch, "lr": args.lr, "seed": args.seed, "threads": args.threads, "loss_every_25": losses},
        "seconds": {k: round(v, 1) for k, v in timings.items()} | {"total": round(time.perf_counter() - started, 1)},
        "commands": [" ".join(["python evals/train_arith_prm.py", *sys.argv[1:]]),
                     f"ttscale score prm {eval_bank} -m {model_path} --aggregation min",
                     f"ttscale eval {eval_bank} --scorer prm -p best-of-n -p weighted-majority -p majority --k 1,{args.n}"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.install:
        print(f"installed into {install(model_path, summary)}")
    print(json.dumps({k: v for k, v in summary.items() if k not in ("train", "commands")}, indent=2))


if __name__ == "__main__":
    main()
