"""`ttscale bench --search`: step-level searches beside sampling, compared at matched total tokens; and what
`ttscale eval` and `ttscale plan` make of a search bank.

A scripted step generator (the arithmetic task's reference steps, each right with a fixed chance)
keeps the pipeline tests instant; one end-to-end run goes through the real vLLM engine.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ttscale.bench.config import AnalysisSettings, BenchConfig, SearchSettings
from ttscale.bench.pipeline import run_bench
from ttscale.bench.results import BenchResults, RunInfo
from ttscale.cli.app import app
from ttscale.errors import ConfigError
from ttscale.records.bank import read_bank, write_bank
from ttscale.records.datasets import load_dataset
from ttscale.sampling.backends.registry import make_sampler
from ttscale.sampling.sampler import SamplingConfig
from ttscale.search.bank import run_search, search_bank_info
from ttscale.search.oracle import OracleStepScorer, reference_chain
from ttscale.search.params import SearchParams
from ttscale.search.steps import Step, StepRequest
from ttscale.selection.policy import load_policy

runner = CliRunner()
PROBLEMS = load_dataset("arith", limit=6)


class ScriptedSteps:
    """Each step is the reference step with chance ``p``, else off by one; ``#### N`` after the chain."""

    def __init__(self, p: float = 0.6, seed: int = 0) -> None:
        self.p, self.rng = p, random.Random(seed)
        self.calls = 0

    def generate_steps(self, requests: Sequence[StepRequest]) -> list[list[Step]]:
        self.calls += 1
        out = []
        for r in requests:
            chain, k = reference_chain(r.problem), len(r.steps)
            steps = []
            for _ in range(r.n):
                if k < len(chain):
                    ordinal, before, op, operand, after = chain[k]
                    after = after if self.rng.random() < self.p else after + 1
                    steps.append(Step(f"{ordinal}: {before} {op} {operand} = {after}\n", 8, "separator", (), 40))
                else:
                    value = after_value(r.steps) if r.steps else chain[-1][4]
                    steps.append(Step(f"#### {value}", 3, "eos", (), 40))
            out.append(steps)
        return out


def after_value(steps: Sequence[Step]) -> int:
    """The running value the branch reached (its last step's result)."""
    return int(steps[-1].text.rsplit("=", 1)[1])


def _no_nan(text: str) -> dict:
    def refuse(token: str) -> None:
        raise AssertionError(f"results.json holds {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture()
def replay_bank(tmp_path: Path) -> Path:
    """4 samples per problem to replay: right with chance 0.4, 30 tokens each."""
    rng = random.Random(1)
    records = []
    for p in PROBLEMS:
        samples = []
        for _ in range(4):
            value = p.answer if rng.random() < 0.4 else str(int(p.answer) + rng.randint(1, 3))
            samples.append({"answer": value, "text": f"#### {value}", "tokens": 30, "logprob": -rng.random(), "mean_logprob": -rng.random()})
        records.append({"id": p.id, "problem": p.problem, "reference": p.answer, "samples": samples})
    return write_bank(tmp_path / "source.jsonl", records)


def _config(out: Path, search: SearchSettings) -> BenchConfig:
    return BenchConfig(
        out_dir=out, problems=PROBLEMS, dataset="arith", n=4, sampling={"model": "scripted"},
        meta={"model": "scripted", "backend": "replay"}, seed=0, policies=[load_policy("majority")], explicit_policies=True,
        run_info=RunInfo(model="scripted", backend="replay", dataset="arith"),
        analysis=AnalysisSettings(draws=50, max_n=32), search=search)


def _run(config: BenchConfig, source: Path, generator: ScriptedSteps):  # type: ignore[no-untyped-def]
    return run_bench(config, make_sampler=lambda: make_sampler("replay", str(source), SamplingConfig()),
                     make_search_generator=lambda: generator, make_step_scorer=OracleStepScorer)


def test_bench_search_report_verdicts_and_rerun(tmp_path: Path, replay_bank: Path) -> None:
    out = tmp_path / "run"
    config = _config(out, SearchSettings(methods=["beam", "dvts", "particle"], widths=[2, 4]))
    gen = ScriptedSteps()
    first = _run(config, replay_bank, gen)
    assert first.searched is not None and set(first.searched.searched.values()) == {6}  # type: ignore[union-attr]
    for name in ("beam-w2-oracle.jsonl", "beam-w4-oracle.jsonl", "dvts-w4-oracle.jsonl", "particle-w2-oracle.jsonl"):
        assert len(read_bank(out / "search" / name).records) == 6
    assert (out / "accuracy_vs_total_tokens.png").stat().st_size > 5000
    results = _no_nan((out / "results.json").read_text())
    search = results["search"]
    assert [(p["method"], p["width"]) for p in search["points"]] == [
        ("beam", 2), ("beam", 4), ("dvts", 2), ("dvts", 4), ("particle", 2), ("particle", 4)]
    for p in search["points"]:
        assert 0 <= p["accuracy"] <= p["pass"] <= 1 and p["generated_tokens_per_problem"] > 0
        assert p["scored_tokens_per_problem"] == 0 and p["total_tokens_per_problem"] == p["generated_tokens_per_problem"]
    assert [(p["policy"], p["k"]) for p in search["sampling"]] == [("majority", 1), ("majority", 2), ("majority", 4)]
    assert search["sampling"][-1]["total_tokens_per_problem"] == pytest.approx(120)
    assert [v["width"] for v in search["verdicts"]] == [2, 4]
    assert all(v["verdict"] in ("beats", "trails", "between", "undecided") for v in search["verdicts"])
    report = (out / "report.md").read_text()
    assert "## Search vs sampling at matched tokens" in report and "(accuracy_vs_total_tokens.png)" in report
    assert "| beam | width 4 (keep 1) |" in report and "| majority | k = 4 |" in report
    for v in search["verdicts"]:
        assert v["text"] in report
    assert "oracle step checker" in report
    typed = BenchResults.model_validate_json((out / "results.json").read_text())
    assert typed.search is not None and typed.to_json() == results

    # A rerun searches nothing (the generator is not even built) and finds the report up to date.
    banks = {p: p.read_bytes() for p in (out / "search").iterdir()}
    again = run_bench(config, make_sampler=lambda: make_sampler("replay", str(replay_bank), SamplingConfig()),
                      make_search_generator=lambda: pytest.fail("the search generator was built on a rerun"),
                      make_step_scorer=OracleStepScorer)
    assert again.report == "up to date" and set(again.searched.searched.values()) == {0}  # type: ignore[union-attr]
    assert {p: p.read_bytes() for p in (out / "search").iterdir()} == banks

    # A killed run (a bank missing its last problem) searches only that problem.
    beam4 = out / "search" / "beam-w4-oracle.jsonl"
    beam4.write_text("".join(beam4.read_text().splitlines(keepends=True)[:-1]))
    third = _run(config, replay_bank, ScriptedSteps())
    assert third.searched.searched["beam-w4-oracle.jsonl"] == 1 and third.searched.searched["beam-w2-oracle.jsonl"] == 0  # type: ignore[union-attr]


def test_a_search_bank_with_other_parameters_is_refused(tmp_path: Path, replay_bank: Path) -> None:
    out = tmp_path / "run"
    _run(_config(out, SearchSettings(methods=["beam"], widths=[4])), replay_bank, ScriptedSteps())
    with pytest.raises(ConfigError, match="max_steps"):
        _run(_config(out, SearchSettings(methods=["beam"], widths=[4], max_steps=3)), replay_bank, ScriptedSteps())


def test_verdicts_bracket_the_search_tokens() -> None:
    from ttscale.bench.results import SamplingPoint, SearchPoint
    from ttscale.bench.search import verdicts

    def sp(k: int, acc: float, single: bool = True) -> SamplingPoint:
        return SamplingPoint(policy="majority" if single else "top-k-answers", k=k, accuracy=acc,
                             generated_tokens_per_problem=100.0 * k, scored_tokens_per_problem=0.0,
                             total_tokens_per_problem=100.0 * k, single_answer=single)

    # top-k-answers submits several answers: shown, never the policy a search is judged against
    sampling = [sp(1, 0.5), sp(2, 0.6), sp(4, 0.7), sp(2, 0.99, single=False), sp(4, 0.99, single=False)]

    def search(acc: float, tokens: float) -> SearchPoint:
        return SearchPoint(method="beam", width=2, keep=1, bank="b", problems=100, accuracy=acc, pass_at_n=1.0,
                           generated_tokens_per_problem=tokens, scored_tokens_per_problem=0.0, total_tokens_per_problem=tokens,
                           requests_per_problem=1.0, seconds_per_problem=0.0)

    def word(acc: float, tokens: float) -> str:
        return verdicts([search(acc, tokens)], sampling, tie=1.0)[0].verdict

    assert word(0.65, 190) == "beats"  # better than majority@2, which used more tokens
    assert word(0.55, 210) == "trails"  # worse than majority@2, which used fewer
    assert word(0.65, 300) == "between"  # between @2 (0.6) and @4 (0.7)
    assert word(0.605, 200) == "between"  # a tie at equal tokens
    assert word(0.62, 203) == "beats"  # token counts within 2% are the same budget
    same = verdicts([search(0.62, 203)], sampling, tie=1.0)[0]
    assert same.above is not None and same.above.k == same.below.k == 2 and "at the same tokens" in same.text  # type: ignore[union-attr]
    assert word(0.9, 500) == "undecided"  # more tokens than k = n used
    assert word(0.6, 500) == "trails"


def test_bench_search_options_fail_before_sampling(tmp_path: Path, replay_bank: Path) -> None:
    base = ["bench", "--out", str(tmp_path / "o"), "--limit", "6", "--n", "4"]
    cases = [
        (["--backend", "replay", "--model", str(replay_bank), "--search", "beam"], "--backend"),
        (["--backend", "vllm", "--search", "beam,greedy"], "--search"),
        (["--backend", "vllm", "--search", "beam", "--search-scorer", "magic"], "--search-scorer"),
        (["--backend", "vllm", "--search", "beam", "--search-widths", "0"], "--k"),
        (["--backend", "vllm", "--search", "dvts", "--search-expansion", "0"], "--search-expansion"),
    ]
    for args, name in cases:
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code != 0
        assert name in result.output and "Traceback" not in result.output, result.output
        assert not (tmp_path / "o" / "bank.jsonl").exists()


# --- eval and plan on a search bank ------------------------------------------------------------


@pytest.fixture()
def search_bank(tmp_path: Path) -> Path:
    out = tmp_path / "search.jsonl"
    run_search(PROBLEMS, ScriptedSteps(p=0.5), OracleStepScorer(), SearchParams(width=4, keep=1, seed=0), out)
    return out


def test_eval_reads_a_search_bank_as_a_pool_of_candidates(search_bank: Path) -> None:
    info = search_bank_info(read_bank(search_bank).records)
    assert info is not None and info.methods == ("beam",) and info.widths == (4,) and info.scorers == ("oracle",)
    result = runner.invoke(app, ["eval", str(search_bank), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["problems"] == 6 and data["k"] == [1, 2, 4]
    assert "beam search, width 4, step scorer oracle" in result.stderr and "one pool" in result.stderr
    table = runner.invoke(app, ["eval", str(search_bank), "-p", "best-of-n"])
    assert table.exit_code == 0 and "best-of-n" in table.stdout
    plain = write_bank(search_bank.parent / "plain.jsonl", [{"id": p.id, "problem": p.problem, "reference": p.answer,
                                                            "samples": [{"answer": p.answer, "tokens": 5}]} for p in PROBLEMS])
    assert search_bank_info(read_bank(plain).records) is None


def test_plan_and_simulate_refuse_a_search_bank_in_one_line(search_bank: Path) -> None:
    for args in ([str(search_bank)], [str(search_bank), "--json"], [str(search_bank), str(search_bank)]):
        result = runner.invoke(app, ["plan", *args])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output
        assert "not a sample pool" in lines[0] and "ttscale bench --search" in lines[0]
    # Stopping-rule replays assume exchangeable samples too: simulate (and plan --simulate) refuse it.
    for args in (["simulate", str(search_bank)], ["simulate", str(search_bank), "--exact", "--json"], ["plan", str(search_bank), "--simulate"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "replay stopping rules over" in errors[0] and "not a sample pool" in errors[0], result.output
        assert "Traceback" not in result.output


# --- the real engine --------------------------------------------------------------------------


@pytest.mark.vllm
@pytest.mark.slow
def test_bench_search_end_to_end_on_the_vllm_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import in_process_vllm

    in_process_vllm(monkeypatch)
    out = tmp_path / "bench"
    args = ["bench", "--out", str(out), "--backend", "vllm", "--limit", "6", "--n", "4", "-p", "majority",
            "--search", "beam", "--draws", "100", "--max-n", "32", "--json", "--quiet"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["sampled"]["samples"] == 24
    assert summary["searched"]["problems"] == {
        "beam-w2-oracle.jsonl": 6, "beam-w4-oracle.jsonl": 6}
    results = _no_nan((out / "results.json").read_text())
    points = results["search"]["points"]
    assert [(p["method"], p["width"]) for p in points] == [("beam", 2), ("beam", 4)]
    for p in points:
        assert p["generated_tokens_per_problem"] > 0 and p["requests_per_problem"] >= 1 and 0 <= p["accuracy"] <= p["pass"]
    assert [v["width"] for v in results["search"]["verdicts"]] == [2, 4]
    report = (out / "report.md").read_text()
    assert "## Search vs sampling at matched tokens" in report and "| beam | width 4 (keep 1) |" in report
    assert (out / "accuracy_vs_total_tokens.png").stat().st_size > 5000
    banks = {p.name: p.read_bytes() for p in (out / "search").iterdir()}

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    rerun = json.loads(again.stdout)
    assert rerun["sampled"]["samples"] == 0 and rerun["report"] == "up to date"
    assert rerun["searched"]["problems"] == {
        "beam-w2-oracle.jsonl": 0, "beam-w4-oracle.jsonl": 0}
    assert {p.name: p.read_bytes() for p in (out / "search").iterdir()} == banks
    assert os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0"
