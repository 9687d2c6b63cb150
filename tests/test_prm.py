"""Process reward models (ttscale.scoring.prm): steps, aggregation, config, both backends, ``ttscale score``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import build_tiny_llama, build_tiny_prm, in_process_vllm
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from ttscale.errors import ConfigError
from ttscale.records.bank import read_bank
from ttscale.scoring.base import Scorer
from ttscale.scoring.prm import (
    QWEN_PRM_TEMPLATE,
    PRMConfig,
    ProcessRewardScorer,
    StepAggregation,
    aggregate_steps,
    build_prm_text,
    split_steps,
    step_probabilities,
)
from ttscale.scoring.registry import SCORERS, make_scorer
from ttscale.scoring.resumable import score_bank

TAG = "<extra_0>"

PROBLEMS = [
    ("p0", "Mia has 45 marbles. First she buys 12 more. Second she gives away 7. How many marbles does Mia have now?", "50",
     ["First: 45 + 12 = 57\nSecond: 57 - 7 = 50\n#### 50",
      "First: 45 + 12 = 56\nSecond: 56 - 7 = 49\n#### 49",
      "#### 50",
      ""]),
    ("p1", "Tom has 9 cards. First he loses 2. How many cards does Tom have now?", "7",
     ["First: 9 - 2 = 7\n#### 7", "First: 9 - 2 = 6\n\n\n#### 6", "First: 9 + 2 = 11\n#### 11"]),
]


def prm_bank(path: Path) -> Path:
    rows = []
    for pid, problem, ref, cands in PROBLEMS:
        samples = [{"answer": t.rsplit(" ", 1)[-1] if t else None, "text": t, "tokens": 10} for t in cands]
        rows.append({"id": pid, "problem": problem, "reference": ref, "samples": samples})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def prm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_prm(tmp_path_factory.mktemp("prm"))


def _problems() -> list[str]:
    return [p for _, p, _, _ in PROBLEMS]


def _candidates() -> list[list[str]]:
    return [c for _, _, _, c in PROBLEMS]


# --- steps and aggregation (pure) ------------------------------------------------------------


def test_split_steps() -> None:
    text = "First: 45 + 12 = 57\n\n  Second: 57 - 7 = 50  \n#### 50\n"
    assert split_steps(text) == ["First: 45 + 12 = 57", "Second: 57 - 7 = 50", "#### 50"]
    assert split_steps(text, "\n\n") == ["First: 45 + 12 = 57", "Second: 57 - 7 = 50  \n#### 50"]
    assert split_steps("a<extra_0>b\n<extra_0>\nc", step_tag=TAG) == ["ab", "c"]  # the model sees tags only where we put them
    assert split_steps("") == [] and split_steps("\n \n\t") == []
    with pytest.raises(ConfigError) as exc:
        split_steps("a", "")
    assert exc.value.parameter == "separator"


_step = st.text(st.characters(blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), min_size=1).map(str.strip).filter(bool)


@given(st.lists(_step, max_size=8), st.sampled_from(["\n", "\n\n", " || "]))
def test_split_steps_round_trips(steps: list[str], sep: str) -> None:
    steps = [s for s in steps if sep.strip() not in s or not sep.strip()]
    assert split_steps(sep.join(steps), sep) == steps


@given(st.text(max_size=200), st.sampled_from(["\n", "\n\n"]))
def test_split_steps_invariants(text: str, sep: str) -> None:
    steps = split_steps(text, sep, TAG)
    assert all(s and s == s.strip() and sep not in s and TAG not in s for s in steps)


def test_build_prm_text() -> None:
    assert build_prm_text("Q: {problem}\n", "two<extra_0> apples", ["a", "b"], TAG) == f"Q: two apples\na{TAG}b{TAG}"
    assert build_prm_text("{problem}\n", "p", [], TAG) == "p\n"


def test_step_probabilities() -> None:
    got = step_probabilities([[0.0, 0.0], [0.0, math.log(3.0)], [1000.0, -1000.0]], label=1)
    assert got == pytest.approx([0.5, 0.75, 0.0])
    assert step_probabilities([[0.0, math.log(3.0)]], label=0) == pytest.approx([0.25])
    assert step_probabilities([], label=1) == []
    with pytest.raises(ConfigError) as exc:
        step_probabilities([[0.0, 1.0]], label=2)
    assert exc.value.parameter == "label"


@pytest.mark.parametrize("agg,expected", [("min", 0.2), ("last", 0.5), ("mean", (0.9 + 0.2 + 0.5) / 3), ("prod", 0.9 * 0.2 * 0.5)])
def test_aggregate_steps(agg: str, expected: float) -> None:
    assert aggregate_steps([0.9, 0.2, 0.5], agg) == pytest.approx(expected)
    assert aggregate_steps([], StepAggregation(agg)) == 0.0  # no steps: empty_score, never NaN
    assert aggregate_steps([], agg, empty_score=-1.0) == -1.0


@given(st.lists(st.floats(0.0, 1.0), max_size=30))
def test_aggregation_order(probs: list[float]) -> None:
    vals = {a: aggregate_steps(probs, a) for a in StepAggregation}
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in vals.values())
    if probs:
        assert vals[StepAggregation.PROD] <= vals[StepAggregation.MIN] + 1e-12
        assert vals[StepAggregation.MIN] <= vals[StepAggregation.MEAN] + 1e-12 <= max(probs) + 2e-12
        assert vals[StepAggregation.LAST] == probs[-1]


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize("param,value", [
    ("aggregation", "median"),
    ("separator", ""),
    ("step_tag", " "),
    ("label", 1.0),
    ("label", True),
    ("empty_score", float("nan")),
    ("empty_score", "0"),
    ("max_length", 1),
    ("batch_size", 0),
    ("dtype", "int8"),
    ("template", "{question}"),
    ("template", "{problem} <extra_0>"),
    ("engine_args", ["max_model_len"]),
])
def test_bad_config_names_the_parameter(prm: Path, param: str, value: object) -> None:
    with pytest.raises(ConfigError) as exc:
        PRMConfig(model=str(prm), **{param: value})
    assert exc.value.parameter == param and repr(value) in str(exc.value)


def test_config_defaults_and_coercion(prm: Path, tmp_path: Path) -> None:
    c = PRMConfig(model=str(prm), aggregation="last", template="qwen-prm", engine_args={"max_model_len": 384})
    assert c.aggregation is StepAggregation.LAST and c.template == QWEN_PRM_TEMPLATE
    assert c.engine_args == (("max_model_len", 384),)
    assert c.template.format(problem="P").endswith("<|im_start|>user\nP<|im_end|>\n<|im_start|>assistant\n")
    with pytest.raises(ConfigError) as exc:
        PRMConfig(model=str(tmp_path / "nowhere"))
    assert exc.value.parameter == "model"


def test_backends_reject_wrong_inputs(prm: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:  # the step tag must be one token of the tokenizer
        ProcessRewardScorer(str(prm), step_tag="<extra_1>")
    assert exc.value.parameter == "step_tag"
    with pytest.raises(ConfigError) as exc:
        ProcessRewardScorer(str(prm), label=2)
    assert exc.value.parameter == "label"
    with pytest.raises(ConfigError) as exc:
        ProcessRewardScorer(str(prm), engine_args={"max_model_len": 384})
    assert exc.value.parameter == "engine_args"
    from transformers import AutoTokenizer

    llama = build_tiny_llama(tmp_path / "llama", num_labels=2)
    tok = AutoTokenizer.from_pretrained(llama)
    tok.add_special_tokens({"additional_special_tokens": [TAG]})
    tok.save_pretrained(llama)
    with pytest.raises(ConfigError) as exc:  # a sequence classifier is not a PRM
        ProcessRewardScorer(str(llama))
    assert exc.value.parameter == "model" and "Qwen2ForProcessRewardModel" in str(exc.value)


# --- transformers backend --------------------------------------------------------------------


def test_transformers_prm_scores_each_step(prm: Path) -> None:
    scorer = ProcessRewardScorer(str(prm))
    assert isinstance(scorer, Scorer) and scorer.name == "prm"
    # the folder's own tokenizer.json, not transformers 5's Qwen2Tokenizer (which would split numbers into digits)
    assert len(scorer.tokenizer(" 45", add_special_tokens=False)["input_ids"]) == 1
    steps = scorer.score_steps(_problems(), _candidates())
    assert [[len(s) for s in row] for row in steps] == [[3, 3, 1, 0], [2, 2, 2]]
    assert all(0.0 < p < 1.0 for row in steps for c in row for p in c)
    assert len({round(p, 6) for row in steps for c in row for p in c}) > 5  # the random head is not constant
    scores = scorer.score(_problems(), _candidates())
    assert scores == [[min(c) if c else 0.0 for c in row] for row in steps]
    # causal: a step's score depends only on what precedes its tag, so a shared first step scores the same
    a, b = scorer.score_steps([PROBLEMS[0][1]] * 2, [["First: 45 + 12 = 57\nSecond: 57 - 7 = 50"], ["First: 45 + 12 = 57\nSecond: x"]])
    assert a[0][0] == pytest.approx(b[0][0], abs=1e-5) and a[0][1] != pytest.approx(b[0][1], abs=1e-5)
    # batching and padding do not change scores
    single = ProcessRewardScorer(str(prm), batch_size=1).score_steps(_problems(), _candidates())
    for r1, r2 in zip(steps, single):
        for c1, c2 in zip(r1, r2):
            assert c1 == pytest.approx(c2, abs=1e-5)
    last = ProcessRewardScorer(str(prm), aggregation="last", empty_score=-1.0, name="prm-last")
    assert last.score(_problems(), _candidates()) == [[c[-1] if c else -1.0 for c in row] for row in steps]
    scorer.close()


def test_truncation_keeps_the_end(prm: Path) -> None:
    full = ProcessRewardScorer(str(prm))
    text = "\n".join(f"Step {i}: {i} + 1 = {i + 1}" for i in range(12))
    ids = full.encode(PROBLEMS[0][1], text)
    short = ProcessRewardScorer(str(prm), max_length=len(ids) // 2)
    cut = short.encode(PROBLEMS[0][1], text)
    assert cut == ids[-(len(ids) // 2):] and short.truncated == 1
    steps = short.score_steps([PROBLEMS[0][1]], [[text]])[0][0]
    assert 0 < len(steps) < 12  # the first steps' tags were cut off; the rest are still scored


# --- vLLM backend (real engine) --------------------------------------------------------------


def test_vllm_prm_agrees_with_transformers(prm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM's Qwen2ForProcessRewardModel (STEP pooling, token_classify) gives the same step scores."""
    in_process_vllm(monkeypatch)
    from ttscale.scoring.prm import VLLMProcessRewardScorer

    text = "\n".join(f"Step {i}: {i} + 1 = {i + 1}" for i in range(40))  # longer than the engine allows
    scorer = VLLMProcessRewardScorer(str(prm), engine_args={"max_model_len": 384})  # ttscale score --engine-arg
    try:
        assert scorer.llm.llm_engine.vllm_config.model_config.max_model_len == 384
        assert scorer.config.max_length == 384  # cut to fit the engine
        got = scorer.score_steps(_problems() + [PROBLEMS[0][1]], _candidates() + [[text]])
        agg = scorer.score(_problems(), _candidates())
    finally:
        scorer.close()
    ref_scorer = ProcessRewardScorer(str(prm), max_length=384)
    ref = ref_scorer.score_steps(_problems() + [PROBLEMS[0][1]], _candidates() + [[text]])
    assert ref_scorer.truncated == 1
    assert [[len(c) for c in row] for row in got] == [[len(c) for c in row] for row in ref]
    for r1, r2 in zip(got, ref):
        for c1, c2 in zip(r1, r2):
            assert c1 == pytest.approx(c2, abs=1e-4)
    assert agg == [[min(c) if c else 0.0 for c in row] for row in got[:2]]


# --- bank and CLI ----------------------------------------------------------------------------


def test_score_bank_resumes_after_a_kill(prm: Path, tmp_path: Path) -> None:
    bank = prm_bank(tmp_path / "bank.jsonl")
    fresh = score_bank(bank, make_scorer("prm", str(prm)), tmp_path / "fresh.jsonl", batch_problems=1)
    assert fresh.scored == 7

    class Dies(ProcessRewardScorer):
        calls = 0

        def score(self, problems, candidates):  # type: ignore[no-untyped-def]
            Dies.calls += 1
            if Dies.calls == 2:
                raise KeyboardInterrupt  # as a kill between two batches
            return super().score(problems, candidates)

    with pytest.raises(KeyboardInterrupt):
        score_bank(bank, Dies(str(prm)), batch_problems=1)
    partial = tmp_path / "bank.jsonl.score-prm.partial"
    assert partial.exists() and all(s.rewards is None for r in read_bank(bank) for s in r.samples)
    stats = score_bank(bank, make_scorer("prm", str(prm)), batch_problems=1)
    assert stats.resumed == 4 and stats.scored == 3 and not partial.exists()
    want = [s.rewards["prm"] for r in read_bank(tmp_path / "fresh.jsonl") for s in r.samples]
    assert [s.rewards["prm"] for r in read_bank(bank) for s in r.samples] == pytest.approx(want, abs=1e-6)


def test_cli_score_prm_then_eval(prm: Path, tmp_path: Path) -> None:
    from ttscale.cli.app import app

    assert {"prm", "vllm-prm"} <= set(SCORERS)
    bank = prm_bank(tmp_path / "bank.jsonl")
    out = tmp_path / "out.jsonl"
    runner = CliRunner()
    res = runner.invoke(app, ["score", str(bank), "--scorer", "prm", "-m", str(prm), "--out", str(out),
                              "--aggregation", "mean", "--json", "-q"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["scored"] == 7 and summary["name"] == "prm" and summary["truncated"] == 0
    steps = ProcessRewardScorer(str(prm)).score_steps(_problems(), _candidates())
    want = [sum(c) / len(c) if c else 0.0 for row in steps for c in row]
    assert [s.rewards["prm"] for r in read_bank(out) for s in r.samples] == pytest.approx(want, abs=1e-6)
    # --separator with shell escapes: blank-line steps; the last candidate of p1 is then one step
    res = runner.invoke(app, ["score", str(out), "--scorer", "prm", "-m", str(prm), "--name", "prm-para",
                              "--separator", "\\n\\n", "--aggregation", "last", "--json", "-q"])
    assert res.exit_code == 0, res.output
    para = ProcessRewardScorer(str(prm), separator="\n\n", aggregation="last").score(_problems(), _candidates())
    assert [s.rewards["prm-para"] for r in read_bank(out) for s in r.samples] == pytest.approx(
        [v for row in para for v in row], abs=1e-6)
    res = runner.invoke(app, ["eval", str(out), "--scorer", "prm", "-p", "best-of-n", "--json"])
    assert res.exit_code == 0, res.output
    assert "best-of-n" in res.stdout
    # errors: one line naming the parameter, exit 2
    res = runner.invoke(app, ["score", str(bank), "--scorer", "prm", "-m", str(prm), "--aggregation", "median"])
    assert res.exit_code == 2 and "aggregation" in res.output
    res = runner.invoke(app, ["score", str(bank), "--scorer", "prm", "-m", str(prm), "--engine-arg", "max_model_len=64"])
    assert res.exit_code == 2 and "--engine-arg" in res.output
    res = runner.invoke(app, ["score", str(bank), "--scorer", "vllm-prm", "-m", str(tmp_path / "nomodel")])
    assert res.exit_code == 2 and "nomodel" in res.output


def test_cli_score_prm_subcommand(prm: Path, tmp_path: Path) -> None:
    """``ttscale score prm BANK``: the PRM's options only, an Enum for --aggregation; scores as the scorer gives them."""
    from ttscale.cli.app import app

    bank = prm_bank(tmp_path / "bank.jsonl")
    runner = CliRunner()
    res = runner.invoke(app, ["score", "prm", str(bank), "-m", str(prm), "--separator", "\\n\\n", "--aggregation", "prod",
                              "--empty-score", "-1", "--batch-size", "2", "--name", "p", "--json", "-q"])
    assert res.exit_code == 0, res.output
    assert "deprecated" not in res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["scored"] == 7
    want = ProcessRewardScorer(str(prm), separator="\n\n", aggregation="prod", empty_score=-1.0).score(_problems(), _candidates())
    got = [s.rewards["p"] for r in read_bank(bank) for s in r.samples]
    assert got == pytest.approx([v for row in want for v in row], abs=1e-6) and got[3] == -1.0  # the empty candidate
    res = runner.invoke(app, ["score", "prm", str(bank), "-m", str(prm), "--aggregation", "median"])
    assert res.exit_code == 2 and all(a in res.output for a in ("min", "last", "mean", "prod"))
    res = runner.invoke(app, ["score", "prm", str(bank), "-m", str(prm), "--engine-arg", "max_model_len=64"])
    assert res.exit_code == 2 and "--engine-arg" in res.output  # the vllm-prm subcommand's option only
    res = runner.invoke(app, ["score", "vllm-prm", str(bank), "-m", str(prm), "--batch-size", "2"])
    assert res.exit_code == 2 and "--batch-size" in res.output  # vLLM batches by itself


def test_cli_score_vllm_prm(prm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ttscale score vllm-prm`` on the real engine writes the transformers backend's rewards."""
    in_process_vllm(monkeypatch)
    from ttscale.cli.app import app

    bank = prm_bank(tmp_path / "bank.jsonl")
    res = CliRunner().invoke(app, ["score", "vllm-prm", str(bank), "-m", str(prm), "--name", "v",
                                   "--engine-arg", "max_model_len=256", "--default", "--json", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["scored"] == 7
    want = [v for row in ProcessRewardScorer(str(prm)).score(_problems(), _candidates()) for v in row]
    samples = [s for r in read_bank(bank) for s in r.samples]
    assert [s.rewards["v"] for s in samples] == pytest.approx(want, abs=1e-4)
    assert [s.reward for s in samples] == [s.rewards["v"] for s in samples]


def test_arith_prm_labeller() -> None:
    """evals/train_arith_prm.py labels steps automatically; its self-check runs the labeller's cases."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "evals" / "train_arith_prm.py"
    done = subprocess.run([sys.executable, str(script), "--out", "unused", "--self-check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "labeller ok" in done.stdout, done.stderr
