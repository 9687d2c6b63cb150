"""The embedded tiny PRM as the search's step scorer: transformers and the real vLLM pooling engine."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ttscale.errors import ConfigError
from ttscale.records.bank import read_bank
from ttscale.search.branch import SearchError
from ttscale.search.prm_steps import PRMStepScorer, prm_model_dir, resolve_step_scorer

ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}

PROBLEM = "Mia has 45 apples. First she buys 12 more. Second she sells 7. How many apples does Mia have now?"
RIGHT = ["First: 45 + 12 = 57\n", "Second: 57 - 7 = 50\n", "#### 50"]

# (problem, steps before, a right next step, a wrong next step): the wrong ones are the policy's usual
# slips (a result off by 1-3) and a wrong operand.
PAIRS = [
    (PROBLEM, [], "First: 45 + 12 = 57\n", "First: 45 + 12 = 58\n"),
    (PROBLEM, ["First: 45 + 12 = 57\n"], "Second: 57 - 7 = 50\n", "Second: 57 - 7 = 48\n"),
    (PROBLEM, ["First: 45 + 12 = 57\n"], "Second: 57 - 7 = 50\n", "Second: 57 - 9 = 48\n"),
    ("Tom has 80 coins. First he loses 19. Second he wins 6 more. Third he uses 13. How many coins does Tom have now?",
     ["First: 80 - 19 = 61\n"], "Second: 61 + 6 = 67\n", "Second: 61 + 6 = 66\n"),
    ("Ivy has 23 beads. First she gets 18 more. Second she gives away 5. How many beads does Ivy have now?",
     [], "First: 23 + 18 = 41\n", "First: 23 + 18 = 43\n"),
]


@pytest.fixture(scope="module")
def scorer() -> Iterator[PRMStepScorer]:
    s = resolve_step_scorer("prm")
    assert isinstance(s, PRMStepScorer)
    yield s
    s.close()


def test_packaged_prm_loads_through_transformers_and_scores_every_step(scorer: PRMStepScorer) -> None:
    assert (prm_model_dir() / "model.safetensors").is_file() and (prm_model_dir() / "README.md").is_file()
    out = scorer.score_steps([(PROBLEM, RIGHT), (PROBLEM, RIGHT[:1]), (PROBLEM, ["\n"])])
    assert [len(s) for s in out.scores] == [3, 1, 1]  # a blank step is still a step: one score each
    assert all(0.0 <= p <= 1.0 for s in out.scores for p in s)
    assert out.tokens == [len(scorer.encode(PROBLEM, RIGHT)), len(scorer.encode(PROBLEM, RIGHT[:1])), len(scorer.encode(PROBLEM, ["\n"]))]
    # A step's score depends only on what came before it (causal): scoring a prefix gives the same number.
    assert out.scores[1][0] == pytest.approx(out.scores[0][0], abs=1e-5)
    # The bank label is the kind; errors name what was typed.
    assert scorer.name == "prm" and scorer.label == "prm"


def test_a_right_step_scores_above_a_wrong_one(scorer: PRMStepScorer) -> None:
    items = [(p, before + [step]) for p, before, right, wrong in PAIRS for step in (right, wrong)]
    scores = scorer.score_steps(items).scores
    for i, (_, before, right, wrong) in enumerate(PAIRS):
        good, bad = scores[2 * i][-1], scores[2 * i + 1][-1]
        assert good > bad, (right, good, wrong, bad)
    assert scores[0][-1] > 0.5 and scores[1][-1] < 0.5


def test_nan_scores_and_missing_step_scores_are_search_errors(scorer: PRMStepScorer) -> None:
    import torch

    from ttscale.scoring.prm import ProcessRewardScorer

    broken = ProcessRewardScorer(str(prm_model_dir()))
    with torch.no_grad():
        broken.model.score[2].bias.fill_(float("nan"))  # a real model whose head answers NaN
    with pytest.raises(SearchError, match=r"step scorer 'prm:broken': a non-finite step score .* 'Mia has 45"):
        PRMStepScorer(broken, label="prm:broken").score_steps([(PROBLEM, RIGHT)])

    class Dropping(ProcessRewardScorer):
        def _logits(self, inputs):  # type: ignore[no-untyped-def]
            return [rows[:-1] for rows in super()._logits(inputs)]  # a backend that loses the last tag

    dropping = Dropping.__new__(Dropping)
    dropping.__dict__.update(scorer.prm.__dict__)
    with pytest.raises(SearchError, match=r"step scorer 'prm': 2 step scores for 3 steps"):
        PRMStepScorer(dropping).score_steps([(PROBLEM, RIGHT)])
    too_long = [f"Step: {i} + 1 = {i + 1}\n" for i in range(400)]
    with pytest.raises(SearchError, match=r"step scorer 'prm': a partial solution of \d+ tokens is longer than the PRM's max_length 512"):
        scorer.score_steps([(PROBLEM, too_long)])


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("nope", "one of oracle, prm, prm:FOLDER, vllm-prm, vllm-prm:FOLDER"),
        ("prm:", "one of oracle"),
        ("oracle:x", "one of oracle"),
        ("prm:/no/such/folder", "a PRM model folder with config.json (/no/such/folder has none)"),
    ],
)
def test_unknown_scorer_names_are_config_errors(spec: str, expected: str) -> None:
    with pytest.raises(ConfigError, match="scorer=") as info:
        resolve_step_scorer(spec)
    assert expected in str(info.value)


def test_search_command_names_a_bad_scorer_in_one_line(tmp_path: Path) -> None:
    from ttscale.cli.app import app

    for spec, message in (("nope", "--scorer='nope': expected one of oracle, prm"),
                          ("prm:/no/such", "--scorer='prm:/no/such': expected a PRM model folder")):
        result = CliRunner().invoke(app, ["search", "--scorer", spec, "--out", str(tmp_path / "b.jsonl")])
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and message in text and "Traceback" not in text, text


# --- the real vLLM engine (run under flock /tmp/vllm.lock) ---------------------------------------------


def _need_vllm() -> None:
    if os.environ.get("TTSCALE_SKIP_VLLM") == "1":
        pytest.skip("TTSCALE_SKIP_VLLM=1")
    pytest.importorskip("vllm")


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_pooling_engine_scores_steps_as_transformers_does(scorer: PRMStepScorer, monkeypatch: pytest.MonkeyPatch) -> None:
    _need_vllm()
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    engine = resolve_step_scorer("vllm-prm", engine_args={"max_model_len": 256})
    try:
        items = [(p, before + [step]) for p, before, right, wrong in PAIRS for step in (right, wrong)] + [(PROBLEM, RIGHT)]
        got, want = engine.score_steps(items), scorer.score_steps(items)
        assert got.tokens == want.tokens
        for g, w in zip(got.scores, want.scores):
            assert len(g) == len(w) and all(math.isclose(a, b, abs_tol=1e-4) for a, b in zip(g, w)), (g, w)
        assert engine.name == "vllm-prm"
    finally:
        engine.close()


@pytest.mark.vllm
@pytest.mark.slow
def test_beam_search_with_the_embedded_prm_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _need_vllm()
    from ttscale.cli.app import app

    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "beam.jsonl"
    args = ["search", "--scorer", "prm", "--method", "beam", "--width", "4", "--keep", "2", "--aggregation", "min",
            "--dataset", "arith", "--limit", "4", "--out", str(out), "--dtype", "float32", "--max-model-len", "256",
            "--engine-arg", "enforce_eager=true", "--json", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    records = read_bank(out).records
    assert len(records) == 4
    for rec in records:
        search = rec.search  # type: ignore[attr-defined]
        assert search["scorer"] == "prm" and search["params"]["aggregation"] == "min"
        cost = search["cost"]
        assert cost["scored_tokens"] > cost["generated_tokens"] > 0  # the PRM rereads the problem and every prefix
        assert 1 <= len(rec.samples) <= 4
        rewards = [s.rewards["prm"] for s in rec.samples]
        assert all(0.0 <= r <= 1.0 for r in rewards) and rewards == sorted(rewards, reverse=True)
