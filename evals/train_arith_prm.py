"""Train a tiny process reward model (PRM) for the embedded arithmetic task and measure best-of-8.

    python evals/train_arith_prm.py --out runs/arith-prm [--train-problems 600] [--steps 500] [--eval-problems 300]

Stages (each a real code path; about 10-15 minutes on 2 CPU cores with the defaults):

1. sample: ``ttscale sample -b vllm`` draws ``--n`` solutions per problem from the packaged arith-tiny
   model at its default temperature 1.3, for ``--train-problems`` freshly generated problems (seed
   ``--seed``; problems that also occur in the fixed test set are dropped) and for the first
   ``--eval-problems`` problems of the fixed default test set (held out: never trained on).
2. label: every step (line) of every training solution is labelled automatically by
   :func:`label_steps`: an ``Ordinal: a op b = c`` line is good when its ordinal, operation and
   operand are the problem's step k, ``a`` is the value the previous line arrived at (the start
   value for the first), and ``a op b = c`` is right; the ``#### N`` line is good when it follows
   the last step and N is the value the lines arrived at. Any other line is bad. A solution's steps
   are all good exactly when the solution is right.
3. train: a ``Qwen2ForProcessRewardModel`` in vLLM's layout (:mod:`ttscale.scoring.prm`), its backbone
   warm-started from arith-tiny's Llama weights (same layer layout; Qwen2's q/k/v biases start at 0, so the
   starting backbone computes what the policy computes), the vocabulary grown by the ``<extra_0>`` step tag, the
   ``score`` head fresh. Loss: cross-entropy of the 2-label head at each tag position, on the unique
   labelled solutions plus each problem's reference solution. AdamW, warmup + cosine, fixed step
   count, seeded, one torch thread. Saved to ``OUT/model``.
4. measure: ``ttscale score`` (PRM, min aggregation; and mean log-prob confidence as a baseline) and
   ``ttscale eval`` on the held-out bank: single sample (k=1), majority@8, best-of-8 by PRM, best-of-8
   by confidence, pass@8. Also the PRM's step-level accuracy on the held-out solutions' labels.

Results go to ``OUT/summary.json``. A run is not bit-reproducible across machines (threads, BLAS).

Measured here with the defaults (300 held-out problems x 8, temperature 1.3): single 48.8%, majority@8
65.2%, best-of-8 by mean log-prob 83.3%, pass@8 96.3%, but best-of-8 by this PRM (min) only 36.9%
(lr 1e-3) / 39.9% (``--lr 3e-4``). NEGATIVE: at this size and CPU budget the trained PRM is not useful.

What was checked (diagnosis, not fixed by any recipe tried):

- Plumbing is right. Training and scoring token ids are identical (``build_model``'s tokenizer vs
  :func:`ttscale.scoring.prm.load_tokenizer` on the saved folder); the warm-started backbone reproduces the
  policy's hidden states exactly (max difference 0.0); the tag follows each step, so under causal
  attention its position sees the whole step; all parameters are trained (nothing frozen).
- Labels are right (``--self-check``; by hand on examples). Of 3,865 bad training steps, 3,709 are pure
  arithmetic slips (``a op b = c`` with the wrong ``c``, mostly off by 1-2); wrong carry, operand, operation
  or final line together make up ~4%. So the PRM's job is almost only to check ``a op b = c``.
- Recipe changes do not help (held-out step metrics on 100 problems; base rate 70% good): lr 3e-3 for
  600 steps: loss 0.50, accuracy 70%, bad-step recall 0.40 at precision 0.49; head lr 1e-2 + bad steps
  weighted 2x: recall 0.89 at precision 0.46 (flags nearly everything, accuracy 65%); two extra fresh
  layers on top of the backbone (frozen or not): loss 0.49, recall 0.11-0.27 at precision ~0.5. The loss
  sits at 0.49-0.50 against 0.61 for the base rate in every variant.
- The information is in the backbone, in a form the PRM cannot easily read. The policy's own
  probability of ``c`` at the ``=`` position separates the steps almost perfectly (AUC 0.987; p < 0.3
  flags 88% of bad steps at 100% precision; best-of-8 by the smallest step probability: 82% on 100
  held-out problems), but the raw logit of ``c`` does not (AUC 0.56): the signal is "is ``c`` near the
  arg-max of a softmax over the whole vocabulary at the previous position". The PRM must recompute that
  at the tag from the step's tokens with 4 layers of width 128, and it does not learn to do so in a few
  hundred to a thousand steps on CPU. Sampled at 1.3, the policy's slips are low-probability tokens, so
  a confidence scorer (``ttscale score confidence``) is the strong verifier for this model, not a PRM.

The plumbing (sample, label, train, save, ``ttscale score prm``, ``ttscale eval``) works end
to end; ``--reuse-banks`` skips the sampling stage when OUT already holds both banks.
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


def _sample(dataset: Path, out: Path, n: int, seed: int, env: dict[str, str]) -> None:
    _run(_ttscale() + ["sample", "-m", "arith-tiny", "-d", str(dataset), "-b", "vllm", "--n", str(n),
                       "--temperature", str(DEFAULT_TEMPERATURE), "--max-tokens", "96", "--seed", str(seed),
                       "--dtype", "float32", "--max-model-len", "256", "--engine-arg", "max_num_batched_tokens=16384",
                       "--engine-arg", "enforce_eager=true", "-o", str(out), "--json", "-q"], env)


def _examples(bank: Path, solutions: dict[str, str], tokenizer: Any, tag_id: int) -> list[tuple[list[int], list[int]]]:
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
            out.append((ids, labels))
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


def train(model: Any, examples: list[tuple[list[int], list[int]]], tag_id: int, pad_id: int, *, steps: int,
          batch: int, lr: float, seed: int) -> list[float]:
    """Cross-entropy of the step labels at the tag positions; returns the loss every 25 steps."""
    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
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
        width = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (r, _) in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        target = torch.tensor([lab for _, labels in rows for lab in labels])
        logits = model(input_ids=ids, attention_mask=mask)
        at = ids == tag_id  # row-major order matches the labels' order
        loss = torch.nn.functional.cross_entropy(logits[at], target)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
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
    return {"good_steps": good, "bad_steps": bad, "good_recall": good_hit / max(good, 1), "bad_recall": bad_hit / max(bad, 1),
            "bad_precision": bad_hit / max(flagged, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="Output folder (model/, banks, summary.json); required unless --self-check.")
    ap.add_argument("--train-problems", type=int, default=600)
    ap.add_argument("--eval-problems", type=int, default=300, help="First problems of the fixed default test set.")
    ap.add_argument("--n", type=int, default=8, help="Samples per problem (train and eval).")
    ap.add_argument("--steps", type=int, default=500, help="Optimizer steps.")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse-banks", action="store_true",
                    help="Keep OUT/train.bank.jsonl and OUT/eval.bank.jsonl when they exist (skip sampling).")
    ap.add_argument("--self-check", action="store_true", help="Only check the labeller and exit.")
    args = ap.parse_args()
    _self_check()
    if args.self_check:
        print("labeller ok")
        return
    if args.out is None:
        ap.error("--out is required")
    import torch

    torch.set_num_threads(1)  # shared 2-core machine: one thread trains as fast as two and leaves a core free
    started = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    timings: dict[str, float] = {}

    # 1. sample
    t = time.perf_counter()
    every_test = [json.loads(line) for line in test_set_path("default").read_text().splitlines()]
    test = every_test[: args.eval_problems]
    test_texts = {p["problem"] for p in every_test}
    pool = generate_problems(PRESETS["default"], args.train_problems, args.seed + TRAIN_SEED_OFFSET, id_prefix="prm-train")
    train_set = [p for p in pool if p["problem"] not in test_texts]
    solutions = {p["id"]: p["solution"] for p in train_set + test}
    train_bank, eval_bank = out / "train.bank.jsonl", out / "eval.bank.jsonl"
    train_file, eval_file = _write_jsonl(out / "train.jsonl", train_set), _write_jsonl(out / "eval.jsonl", test)
    if not (args.reuse_banks and train_bank.is_file()):
        _sample(train_file, train_bank, args.n, args.seed, env)
    if not (args.reuse_banks and eval_bank.is_file()):
        _sample(eval_file, eval_bank, args.n, args.seed + 1, env)
    timings["sample"] = time.perf_counter() - t

    # 2. label, 3. train
    t = time.perf_counter()
    model, tok = build_model()
    tag_id = tok.convert_tokens_to_ids(TAG)
    examples = _examples(train_bank, solutions, tok, tag_id)
    n_steps = sum(len(lab) for _, lab in examples)
    n_bad = sum(lab.count(0) for _, lab in examples)
    print(f"{len(examples)} unique labelled solutions, {n_steps} steps ({n_bad} bad)", flush=True)
    losses = train(model, examples, tag_id, tok.pad_token_id, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed)
    model_path = out / "model"
    model.save_pretrained(model_path)
    save_tokenizer(tok, model_path)
    timings["train"] = time.perf_counter() - t

    # 4. measure on the held-out bank with the CLI
    t = time.perf_counter()
    _run(_ttscale() + ["score", "prm", str(eval_bank), "-m", str(model_path), "--aggregation", "min",
                       "--batch-size", "32", "--json", "-q"], env)
    _run(_ttscale() + ["score", "confidence", str(eval_bank), "--json", "-q"], env)
    evals = {}
    for scorer in ("prm", "confidence"):
        evals[scorer] = json.loads(_run(_ttscale() + ["eval", str(eval_bank), "--scorer", scorer, "-p", "best-of-n",
                                                      "-p", "majority", "--k", f"1,{args.n}", "--json"], env))
    steps = step_metrics(model_path, eval_bank, solutions)
    timings["measure"] = time.perf_counter() - t

    e = evals["prm"]
    summary = {
        "eval_problems": e["problems"], "n": args.n, "temperature": DEFAULT_TEMPERATURE,
        "single": e["policies"]["majority"]["accuracy"][0],
        f"majority@{args.n}": e["policies"]["majority"]["accuracy"][1],
        f"best_of_{args.n}_prm_min": e["policies"]["best-of-n"]["accuracy"][1],
        f"best_of_{args.n}_confidence": evals["confidence"]["policies"]["best-of-n"]["accuracy"][1],
        f"pass@{args.n}": e["pass"][1],
        "prm_steps_on_eval": steps,
        "train": {"problems": len(train_set), "solutions": len(examples), "steps_labelled": n_steps, "bad_steps": n_bad,
                  "optimizer_steps": args.steps, "batch": args.batch, "lr": args.lr, "seed": args.seed, "loss_every_25": losses},
        "seconds": {k: round(v, 1) for k, v in timings.items()} | {"total": round(time.perf_counter() - started, 1)},
        "commands": [f"ttscale score prm {eval_bank} -m {model_path} --aggregation min",
                     f"ttscale eval {eval_bank} --scorer prm -p best-of-n -p majority --k 1,{args.n}"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k not in ("train", "commands")}, indent=2))


if __name__ == "__main__":
    main()
