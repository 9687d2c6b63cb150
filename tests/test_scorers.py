"""Scorers (confidence, reward model, vLLM pooling, LLM judge), score_bank and ``ttscale score``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import build_tiny_llama, in_process_vllm
from typer.testing import CliRunner

from ttscale.errors import BankFormatError, ConfigError
from ttscale.records.bank import read_bank
from ttscale.sampling.sampler import TEMPLATES
from ttscale.scoring.base import Scorer
from ttscale.scoring.confidence import (
    ConfidenceConfig,
    ConfidenceScorer,
    TeacherForcer,
    lowest_group_confidence,
)
from ttscale.scoring.judge import JudgeConfig, JudgeParseError, JudgeScorer, parse_score
from ttscale.scoring.registry import make_scorer
from ttscale.scoring.resumable import score_bank
from ttscale.scoring.reward_model import RewardModelConfig, SequenceClassifierScorer

REPO = Path(__file__).resolve().parents[1]
ARITH = REPO / "ttscale" / "models" / "arith-tiny"

needs_arith = pytest.mark.skipif(not (ARITH / "config.json").is_file(), reason="packaged arith-tiny model missing")


def build_classifier(path: Path, num_labels: int = 1) -> Path:
    """A random tiny LlamaForSequenceClassification with the arithmetic tokenizer."""
    return build_tiny_llama(path, num_labels=num_labels, max_positions=512)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_classifier(tmp_path_factory.mktemp("rm"))


PROBLEMS = [
    ("p0", "Ann has 3 apples. She buys 4 more. How many apples does Ann have now?", "7",
     ["3 + 4 = 7\n#### 7", "3 + 4 = 8\n#### 8", "3 - 4 = 1\n#### 1"]),
    ("p1", "Bo has 9 cards. He loses 2. How many cards does Bo have now?", "7",
     ["9 - 2 = 7\n#### 7", "9 - 2 = 6\n#### 6"]),
]


def tiny_bank(path: Path, *, logprobs: bool = True, texts: bool = True) -> Path:
    rows = []
    for pid, problem, ref, cands in PROBLEMS:
        samples = []
        for j, text in enumerate(cands):
            s: dict = {"answer": text.rsplit(" ", 1)[-1], "tokens": 10}
            if texts:
                s["text"] = text
            if logprobs:
                s["logprob"] = -1.0 - j
            samples.append(s)
        rows.append({"id": pid, "problem": problem, "reference": ref, "samples": samples})
    # a second line for p0 (append-only growth): merged on read, kept on rewrite
    rows.append({"id": "p0", "samples": [{"answer": "7", "text": "3 + 4 = 7\n#### 7", "tokens": 10, "logprob": -0.5, "extra_field": 1}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- parsing (pure logic; canned texts) ------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("Score: 7/10", 0.7),
    ("The solution is fine.\nScore: 9 / 10", 0.9),
    ("I'd give it 3 out of 5", 0.6),
    ("Score: 8", 0.8),
    ("Rating = 10", 1.0),
    ("7", 0.7),
    ("7.5.", 0.75),
    ("correct", 1.0),
    ("Incorrect.", 0.0),
    ("The answer is wrong, the correct value is 7", 0.0),
    ("Yes", 1.0),
    ("Score: 15/10", 1.0),  # clipped
    ("Score: -2", 0.0),
])
def test_parse_score(text: str, expected: float) -> None:
    assert parse_score(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "I am not sure what to say", "???"])
def test_parse_score_fails_typed(text: str) -> None:
    with pytest.raises(JudgeParseError, match="no score"):
        parse_score(text)


class CannedSampler:
    """Deterministic judge replies (for the parsing/fallback policy only; plumbing uses hf below)."""

    name = "canned"
    batch_size = 4
    concurrency = 1

    def __init__(self, replies: list[str]) -> None:
        from ttscale.sampling.sampler import SamplingConfig

        self.config = SamplingConfig()
        self.replies = list(replies)

    def generate(self, requests):  # type: ignore[no-untyped-def]
        from ttscale.sampling.sampler import SampleResult, make_sample

        out = []
        for r in requests:
            cands = [make_sample(self.replies.pop(0), tokens=1, logprob=None, finish="stop", latency=0.0, seed=r.seed)
                     for _ in range(r.n)]
            out.append(SampleResult(request=r, candidates=cands))
        return out

    def close(self) -> None:
        pass


def test_judge_parse_policy(tmp_path: Path) -> None:
    scorer = JudgeScorer(CannedSampler(["Score: 10/10", "nonsense", "incorrect"]), JudgeConfig(on_unparsed="fallback", fallback=0.25))
    assert scorer.score(["q"], [["a", "b", "c"]]) == [[1.0, 0.25, 0.0]]
    assert scorer.unparsed == 1
    strict = JudgeScorer(CannedSampler(["Score: 10/10", "nonsense"]))
    with pytest.raises(JudgeParseError, match="candidate 1"):
        strict.score(["q"], [["a", "b"]])
    # through score_bank the error names the bank, the problem id and the sample
    bank = tiny_bank(tmp_path / "bank.jsonl")
    replies = ["Score: 1/10", "Score: 2/10", "???", "yes", "no", "correct"]
    with pytest.raises(JudgeParseError, match=r"bank.jsonl, id 'p0', samples\[2\]"):
        score_bank(bank, JudgeScorer(CannedSampler(replies)))
    assert not (tmp_path / "bank.jsonl.score-judge.partial").exists()  # nothing resumable was left
    mean = JudgeScorer(CannedSampler(["Score: 2/10", "Score: 4/10"]), JudgeConfig(n=2))
    assert mean.score(["q"], [["a"]]) == [[pytest.approx(0.3)]]


def test_configs_name_the_parameter(tmp_path: Path) -> None:
    for kwargs, param in [({"window": 0}, "window"), ({"mode": "max"}, "mode"), ({"top_k": -1}, "top_k"),
                          ({"model": str(tmp_path / "nope")}, "model"), ({"template": "{question}"}, "template")]:
        with pytest.raises(ConfigError) as exc:
            ConfidenceConfig(**kwargs)
        assert exc.value.parameter == param
    with pytest.raises(ConfigError) as exc:
        JudgeConfig(on_unparsed="nan")
    assert exc.value.parameter == "on_unparsed"
    with pytest.raises(ConfigError) as exc:
        RewardModelConfig(model=str(tmp_path / "missing"))
    assert exc.value.parameter == "model" and "missing" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        make_scorer("lowest-group-confidence")  # no model: banks hold no per-token distributions
    assert exc.value.parameter == "model"
    with pytest.raises(ConfigError):
        make_scorer("oracle")


def test_configs_are_frozen_strict_and_hashable(classifier: Path) -> None:
    import pydantic

    from ttscale.scoring.judge import OnUnparsed
    from ttscale.scoring.reward_model import VLLMRewardConfig

    c = RewardModelConfig(model=str(classifier))
    assert c == RewardModelConfig(model=str(classifier)) and hash(c) == hash(RewardModelConfig(model=str(classifier)))
    with pytest.raises(pydantic.ValidationError):
        c.batch_size = 2  # type: ignore[misc]
    assert JudgeConfig(on_unparsed="fallback").on_unparsed is OnUnparsed.FALLBACK
    assert ConfidenceConfig(template="arith").template == TEMPLATES["arith"]  # a named template is resolved
    assert VLLMRewardConfig(model=str(classifier), engine_args={"b": 1, "a": 2}).engine_args == (("a", 2), ("b", 1))
    for make, param, value in [(lambda: JudgeConfig(n=True), "n", True),  # a bool is not a count
                               (lambda: JudgeConfig(scale=0), "scale", 0),
                               (lambda: JudgeConfig(fallback=float("nan")), "fallback", float("nan")),
                               (lambda: RewardModelConfig(model=str(classifier), batchsize=2), "batchsize", 2),
                               (lambda: RewardModelConfig(model=str(classifier), max_length=4), "max_length", 4)]:
        with pytest.raises(ConfigError) as exc:
            make()
        assert exc.value.parameter == param and repr(value) in str(exc.value)


def test_lowest_group_confidence() -> None:
    assert lowest_group_confidence([1.0, 2.0, 3.0], 5) == pytest.approx(2.0)
    assert lowest_group_confidence([5.0, 1.0, 1.0, 5.0, 5.0], 2) == pytest.approx(1.0)
    assert lowest_group_confidence([3.0, 1.0, 4.0], 1) == pytest.approx(1.0)


# --- confidence ------------------------------------------------------------------------------


def test_confidence_from_stored_logprobs_and_resume(tmp_path: Path) -> None:
    bank = tiny_bank(tmp_path / "bank.jsonl")
    before = bank.read_bytes()
    scorer = ConfidenceScorer()
    assert isinstance(scorer, Scorer)
    stats = score_bank(bank, scorer, tmp_path / "out.jsonl")
    assert bank.read_bytes() == before  # the input is never touched
    assert stats.scored == 6 and stats.skipped == 0
    out = read_bank(tmp_path / "out.jsonl")
    p0 = out.by_id()["p0"]
    assert [s.rewards["confidence"] for s in p0.samples] == pytest.approx([-0.1, -0.2, -0.3, -0.05])
    assert p0.samples[3].model_extra["extra_field"] == 1
    assert all(s.reward is None for s in p0.samples)
    # idempotent: a rerun on the output scores nothing and changes nothing
    again = score_bank(tmp_path / "out.jsonl", scorer)
    assert again.scored == 0 and again.skipped == 6
    # --default also fills 'reward'
    score_bank(tmp_path / "out.jsonl", ConfidenceScorer(name="conf2"), default=True)
    s = read_bank(tmp_path / "out.jsonl").by_id()["p1"].samples[1]
    assert s.reward == pytest.approx(-0.2) and set(s.rewards) == {"confidence", "conf2"}


def test_resume_after_a_kill(tmp_path: Path) -> None:
    bank = tiny_bank(tmp_path / "bank.jsonl")

    class Dies(ConfidenceScorer):
        calls = 0

        def score_samples(self, problems, samples):  # type: ignore[no-untyped-def]
            Dies.calls += 1
            if Dies.calls == 2:
                raise KeyboardInterrupt
            return super().score_samples(problems, samples)

    with pytest.raises(KeyboardInterrupt):
        score_bank(bank, Dies(), batch_problems=1)
    partial = tmp_path / "bank.jsonl.score-confidence.partial"
    assert partial.exists() and read_bank(bank).by_id()["p0"].samples[0].rewards is None
    with partial.open("ab") as fh:
        fh.write(b'{"id": "p1", "sco')  # a torn line from the kill
    stats = score_bank(bank, ConfidenceScorer(), batch_problems=1)
    assert stats.resumed == 4 and stats.scored == 2 and not partial.exists()
    assert all(s.rewards["confidence"] is not None for r in read_bank(bank) for s in r.samples)


def test_missing_fields_name_file_and_field(tmp_path: Path) -> None:
    bank = tiny_bank(tmp_path / "nolp.jsonl", logprobs=False)
    with pytest.raises(BankFormatError) as exc:
        score_bank(bank, ConfidenceScorer())
    assert "nolp.jsonl" in str(exc.value) and "samples[0].mean_logprob" in str(exc.value) and "'p0'" in str(exc.value)
    notext = tiny_bank(tmp_path / "notext.jsonl", texts=False)

    class TextOnly:
        name = "t"

        def score(self, problems, candidates):  # type: ignore[no-untyped-def]
            return [[0.0] * len(c) for c in candidates]

        def close(self) -> None:
            pass

    with pytest.raises(BankFormatError) as exc:
        score_bank(notext, TextOnly())
    assert "notext.jsonl" in str(exc.value) and "samples[0].text" in str(exc.value)


@needs_arith
def test_teacher_forcing_batching() -> None:
    """Per-token statistics of a text; right-padded batching does not change them."""
    forcer = TeacherForcer(str(ARITH))
    prompt = TEMPLATES["arith"].format(problem=PROBLEMS[0][1])
    (own, conf), = forcer.token_stats([prompt], ["3 + 4 = 7\n#### 7"], top_k=5)
    assert len(own) == len(conf) > 3 and all(x <= 0 for x in own) and all(c > 0 for c in conf)
    # batching (right padding) does not change results
    batch = forcer.token_stats([prompt, "x"], ["3 + 4 = 7\n#### 7", "1 + 1 = 2"], top_k=5)
    assert batch[0][0] == pytest.approx(own, abs=1e-4)


@needs_arith
def test_lowest_group_confidence_forward_pass(tmp_path: Path) -> None:
    bank = tiny_bank(tmp_path / "bank.jsonl", logprobs=False)
    scorer = make_scorer("lowest-group-confidence", str(ARITH), window=4, template="arith")
    stats = score_bank(bank, scorer, tmp_path / "out.jsonl")
    assert stats.scored == 6 and scorer.forced == 6
    vals = [s.rewards["lowest-group-confidence"] for r in read_bank(tmp_path / "out.jsonl") for s in r.samples]
    assert all(math.isfinite(v) for v in vals) and len(set(vals)) > 1
    # mean confidence from a forward pass when the bank has no log-probs
    mean = make_scorer("confidence", str(ARITH), template="arith")
    score_bank(tmp_path / "out.jsonl", mean)
    assert mean.forced == 5  # p0's appended line stores a log-prob: used as is


# --- reward models ---------------------------------------------------------------------------


def test_sequence_classifier(tmp_path: Path, classifier: Path) -> None:
    bank = tiny_bank(tmp_path / "bank.jsonl")
    scorer = make_scorer("reward-model", str(classifier), batch_size=2)
    stats = score_bank(bank, scorer, tmp_path / "out.jsonl")
    assert stats.scored == 6
    vals = [s.rewards["reward-model"] for r in read_bank(tmp_path / "out.jsonl") for s in r.samples]
    assert len(set(vals)) > 1
    # batching and padding do not change a candidate's reward
    one = scorer.score([PROBLEMS[1][1]], [[PROBLEMS[1][3][1]]])[0][0]
    assert one == pytest.approx(vals[5], abs=1e-4)


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_reward(tmp_path: Path, classifier: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real vLLM pooling runner (in-process engine, about 10 s here) agrees with transformers."""
    in_process_vllm(monkeypatch)
    from ttscale.scoring.reward_model import VLLMRewardScorer

    scorer = VLLMRewardScorer(str(classifier), engine_args={"max_model_len": 384})  # ttscale score --engine-arg
    try:
        assert scorer.llm.llm_engine.vllm_config.model_config.max_model_len == 384
        got = scorer.score([PROBLEMS[0][1]], [PROBLEMS[0][3]])
    finally:
        scorer.close()
    ref = SequenceClassifierScorer(str(classifier)).score([PROBLEMS[0][1]], [PROBLEMS[0][3]])
    assert got[0] == pytest.approx(ref[0], abs=1e-3)


# --- judge through a real backend ------------------------------------------------------------


@needs_arith
def test_judge_through_hf_backend(tmp_path: Path) -> None:
    """Plumbing with a real sampler: the tiny model's replies are garbage, so the fallback policy applies."""
    from ttscale.sampling.backends.registry import make_sampler
    from ttscale.sampling.sampler import SamplingConfig

    sampler = make_sampler("hf", str(ARITH), SamplingConfig(temperature=0.0, max_tokens=4, logprobs=False))
    scorer = JudgeScorer(sampler, JudgeConfig(template="{problem} {candidate}", on_unparsed="fallback", fallback=0.0))
    bank = tiny_bank(tmp_path / "bank.jsonl")
    stats = score_bank(bank, scorer, tmp_path / "out.jsonl", batch_problems=2)
    scorer.close()
    assert stats.scored == 6 and len(scorer.replies) == 6  # one batch: both problems' candidates
    # a random-ish tiny model does not grade: every unparsable reply got the finite fallback, none NaN
    assert scorer.unparsed == sum(1 for r in scorer.replies if not _parses(r))
    vals = [s.rewards["judge"] for r in read_bank(tmp_path / "out.jsonl") for s in r.samples]
    assert all(0.0 <= v <= 1.0 for v in vals)


def _parses(text: str) -> bool:
    try:
        parse_score(text)
    except JudgeParseError:
        return False
    return True


# --- CLI -------------------------------------------------------------------------------------


def test_cli_score_then_eval(tmp_path: Path, classifier: Path) -> None:
    from ttscale.cli.app import app

    bank = tiny_bank(tmp_path / "bank.jsonl")
    out = tmp_path / "out.jsonl"
    runner = CliRunner()
    res = runner.invoke(app, ["score", str(bank), "--scorer", "reward-model", "-m", str(classifier), "--name", "rm",
                              "--out", str(out), "--json", "-q"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["scored"] == 6 and summary["name"] == "rm"
    res = runner.invoke(app, ["score", str(bank), "--scorer", "reward-model", "-m", str(classifier), "--name", "rm",
                              "--out", str(out), "--json", "-q"])
    assert res.exit_code == 0 and json.loads(res.stdout.strip().splitlines()[-1])["skipped"] == 6
    res = runner.invoke(app, ["eval", str(out), "--scorer", "rm", "-p", "best-of-n", "--json"])
    assert res.exit_code == 0, res.output
    assert "best-of-n" in res.stdout
    # errors: one line naming what is wrong, exit 2
    res = runner.invoke(app, ["score", str(bank), "--scorer", "reward-model", "-m", str(tmp_path / "nomodel")])
    assert res.exit_code == 2 and "nomodel" in res.output
    res = runner.invoke(app, ["score", str(tiny_bank(tmp_path / "b2.jsonl", logprobs=False)), "--scorer", "confidence", "-q"])
    assert res.exit_code == 2 and "mean_logprob" in res.output
    res = runner.invoke(app, ["score", str(bank), "--scorer", "bogus"])
    assert res.exit_code == 2 and "--scorer" in res.output


def test_cli_subcommands(tmp_path: Path, classifier: Path) -> None:
    """``ttscale score KIND BANK``: each kind with its own options; the old ``--scorer`` form gives the same bank."""
    from ttscale.cli.app import app

    runner = CliRunner()
    bank = tiny_bank(tmp_path / "bank.jsonl")
    res = runner.invoke(app, ["score", "confidence", str(bank), "--out", str(tmp_path / "conf.jsonl"), "--json", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["scored"] == 6 and "deprecated" not in res.stderr
    p0 = read_bank(tmp_path / "conf.jsonl").by_id()["p0"]
    assert [s.rewards["confidence"] for s in p0.samples] == pytest.approx([-0.1, -0.2, -0.3, -0.05])
    new = tmp_path / "new.jsonl"
    res = runner.invoke(app, ["score", "reward-model", str(bank), "-m", str(classifier), "--name", "rm", "--batch-size", "2",
                              "--out", str(new), "--default", "--json", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {
        "out": str(new), "name": "rm", "problems": 2, "samples": 6, "scored": 6, "skipped": 0, "resumed": 0}
    got = [s.rewards["rm"] for r in read_bank(new) for s in r.samples]
    want = [v for row in make_scorer("reward-model", str(classifier)).score(
        [p for _, p, _, _ in PROBLEMS], [[*c, *(["3 + 4 = 7\n#### 7"] if pid == "p0" else [])] for pid, _, _, c in PROBLEMS])
        for v in row]
    assert got == pytest.approx(want, abs=1e-4)
    assert [s.reward for r in read_bank(new) for s in r.samples] == got  # --default
    # the old form still works, with a deprecation note on stderr, and writes the same scores
    old = tmp_path / "old.jsonl"
    res = runner.invoke(app, ["score", str(bank), "--scorer", "reward-model", "-m", str(classifier), "--name", "rm",
                              "--out", str(old), "--default", "--json", "-q"])
    assert res.exit_code == 0, res.output
    assert "deprecated" in res.stderr and "ttscale score reward-model BANK" in res.stderr
    assert [s.rewards["rm"] for r in read_bank(old) for s in r.samples] == pytest.approx(got, abs=1e-5)
    # ... and drops, naming them, the options its scorer never used (they were ignored before)
    res = runner.invoke(app, ["score", str(bank), "--window", "5", "--judge-n", "3", "--out", str(tmp_path / "c2.jsonl"), "-q"])
    assert res.exit_code == 0, res.output
    assert "ignored: --window, --judge-n (not options of confidence)" in res.stderr
    assert read_bank(tmp_path / "c2.jsonl").by_id()["p1"].samples[0].rewards == {"confidence": pytest.approx(-0.1)}
    # a subcommand takes only its own options; fixed choices are checked by the option's type
    res = runner.invoke(app, ["score", "confidence", str(bank), "--window", "5"])
    assert res.exit_code == 2 and "--window" in res.output
    res = runner.invoke(app, ["score", "lowest-group-confidence", str(bank), "--token-metric", "max"])
    assert res.exit_code == 2 and "deepconf" in res.output and "logprob" in res.output
    res = runner.invoke(app, ["score", "judge", str(bank), "--on-unparsed", "ignore"])
    assert res.exit_code == 2 and "fallback" in res.output
    res = runner.invoke(app, ["score", "reward-model", str(bank)])
    assert res.exit_code == 2 and "--model" in res.output
    res = runner.invoke(app, ["score", "judge", str(bank), "--engine-arg", "max_model_len=64"])
    assert res.exit_code == 2 and "--engine-arg" in res.output and "vllm" in res.output
    res = runner.invoke(app, ["score", "reward-model", str(tmp_path / "none.jsonl"), "-m", str(classifier)])
    assert res.exit_code == 2 and "none.jsonl" in res.output


@needs_arith
def test_teacher_forcing_reproduces_sampled_logprobs() -> None:
    """The forward pass over a sampled text gives the log-probs the hf sampler recorded (EOS aside: ~0 here)."""
    from ttscale.sampling.backends.registry import make_sampler
    from ttscale.sampling.sampler import SampleRequest, SamplingConfig

    config = SamplingConfig(temperature=0.7, max_tokens=48, template="arith", seed=3)
    sampler = make_sampler("hf", str(ARITH), config)
    problem = PROBLEMS[1][1]
    cands = sampler.generate([SampleRequest(id="p1", problem=problem, n=2, seed=3)])[0].candidates
    scorer = ConfidenceScorer(ConfidenceConfig(model=str(ARITH), template="arith"))
    forced = scorer.score([problem], [[c.text for c in cands]])[0]
    stats = scorer._force().token_stats([config.render(problem)] * 2, [c.text for c in cands], top_k=1)
    for c, (own, _), mean in zip(cands, stats, forced):
        assert c.finish == "stop"
        assert sum(own) == pytest.approx(c.logprob, abs=0.05)
        assert mean == pytest.approx(sum(own) / len(own))


def test_judge_cli_over_http_with_sampling_options(tmp_path: Path) -> None:
    """``ttscale score judge --backend openai`` against a local OpenAI-compatible server
    (tests/fake_upstream.py, which answers the judge prompt with 'Score: X/10')."""
    import subprocess
    import sys

    from fake_upstream import MODEL, FakeUpstream

    bank = tiny_bank(tmp_path / "bank.jsonl")
    with FakeUpstream() as up:
        cmd = [sys.executable, "-m", "ttscale", "score", "judge", str(bank), "--backend", "openai",
               "--base-url", up.url, "--model", MODEL, "--chat", "--temperature", "0.5",
               "--n", "2", "--seed", "3", "--out", str(tmp_path / "judged.jsonl"), "--json", "--quiet"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        assert summary["scored"] == 6 and summary["unparsed"] == 0
        assert up.calls["200"] == 6  # one request with n=2 per candidate
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)  # a rerun over the same output works
        vals = [s.rewards["judge"] for r in read_bank(tmp_path / "judged.jsonl") for s in r.samples]
        assert all(0.0 <= v <= 1.0 for v in vals) and len(set(vals)) > 1
        # the deprecated form with the old option names: the same requests, the same scores, and a note
        old = [sys.executable, "-m", "ttscale", "score", str(bank), "--scorer", "judge", "--backend", "openai",
               "--base-url", up.url, "--judge-model", MODEL, "--judge-chat", "--judge-temperature", "0.5",
               "--judge-n", "2", "--judge-seed", "3", "--out", str(tmp_path / "old.jsonl"), "--json", "--quiet"]
        done = subprocess.run(old, check=False, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "deprecated" in done.stderr and "ttscale score judge BANK" in done.stderr and "--judge-seed -> --seed" in done.stderr
        assert json.loads(done.stdout)["scored"] == 6
        assert [s.rewards["judge"] for r in read_bank(tmp_path / "old.jsonl") for s in r.samples] == vals
    bad = subprocess.run(cmd[:-4] + ["--seed", "x", "--out", str(tmp_path / "x.jsonl")], capture_output=True, text=True)
    assert bad.returncode == 2 and "--seed='x'" in bad.stderr
    assert again.returncode == 0
