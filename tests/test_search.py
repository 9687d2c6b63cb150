"""Step-level search: parameters, the oracle step checker, particle resampling, and every algorithm on
the real vLLM engine with the packaged model and the oracle (one engine for the module)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ttscale.arith.paths import model_dir
from ttscale.errors import ConfigError
from ttscale.records.bank import read_bank
from ttscale.records.datasets import load_dataset
from ttscale.sampling.sampler import SampleRequest, SamplingConfig, request_seed
from ttscale.search import Aggregation, SearchParams, search_problems
from ttscale.search.bank import run_search
from ttscale.search.branch import Branch, SearchError
from ttscale.search.oracle import OracleStepScorer, check_steps, reference_chain
from ttscale.search.steps import Step, StepRequest, StepScores
from ttscale.search.strategies import ParticleState, softmax

CONFIG = SamplingConfig(temperature=1.3, template="arith", seed=0, logprobs=False)
ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
HARD = load_dataset("arith-hard", limit=6)


# --- parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"width": 0}, "width"),
        ({"width": 8, "keep": 9}, "keep"),
        ({"width": 8, "keep": 3}, "keep"),
        ({"method": "dvts", "width": 6, "keep": 4}, "keep"),
        ({"method": "greedy"}, "method"),
        ({"aggregation": "mean"}, "aggregation"),
        ({"separator": ""}, "separator"),
        ({"temperature": 0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"max_steps": 0}, "max_steps"),
        ({"seed": 1.5}, "seed"),
        ({"beams": 2}, "beams"),
    ],
)
def test_bad_params_name_the_field(fields: dict, name: str) -> None:
    with pytest.raises(ConfigError) as info:
        SearchParams(**fields)
    assert info.value.parameter == name


def test_params_defaults_and_expansions() -> None:
    p = SearchParams(width=16, keep=4)
    assert p.expansions == 4 and p.separator == "\n" and p.aggregation is Aggregation.LAST
    assert SearchParams(width=8, keep=3, expand=2).expansions == 2  # explicit expand: width need not divide
    assert SearchParams(method="particle", width=5, keep=7).width == 5  # keep is ignored by particle filtering
    assert Aggregation.MIN([1.0, 0.2, 0.9]) == 0.2 and Aggregation.PRODUCT([0.5, 0.5]) == 0.25 and Aggregation.LAST([0.1, 0.7]) == 0.7


# --- the oracle --------------------------------------------------------------------------------


def test_oracle_accepts_every_reference_solution_and_rejects_wrong_steps() -> None:
    for name in ("arith", "arith-hard"):
        path = Path(__file__).resolve().parents[1] / "ttscale" / "data" / ("arith_test.jsonl" if name == "arith" else "arith_test_hard.jsonl")
        for line in path.read_text().splitlines()[:100]:
            row = json.loads(line)
            lines = row["solution"].split("\n")
            steps = [s + "\n" for s in lines[:-1]] + [lines[-1]]
            assert check_steps(row["problem"], steps) == [1.0] * len(steps)
    problem = "Mia has 45 marbles. First she buys 12 more. Second she gives away 7. How many marbles does Mia have now?"
    assert reference_chain(problem) == (("First", 45, "+", 12, 57), ("Second", 57, "-", 7, 50))
    assert check_steps(problem, ["First: 45 + 12 = 57\n", "Second: 57 - 7 = 50\n", "#### 50"]) == [1, 1, 1]
    assert check_steps(problem, ["First: 45 + 12 = 58\n"]) == [0]  # arithmetic
    assert check_steps(problem, ["Second: 45 + 12 = 57\n"]) == [0]  # ordinal
    assert check_steps(problem, ["First: 45 - 12 = 33\n"]) == [0]  # operation
    assert check_steps(problem, ["First: 45 + 12 = 57\n", "#### 57"]) == [1, 0]  # answer before the last step
    assert check_steps(problem, ["First: 45 + 12 = 57\n", "Second: 57 - 7 = 50\n", "#### 51"]) == [1, 1, 0]
    with pytest.raises(ConfigError, match="arithmetic task problem"):
        reference_chain("What is 2 + 2?")


# --- particle resampling -------------------------------------------------------------------------


def test_particle_resampling_follows_the_softmax_of_scores() -> None:
    params = SearchParams(method="particle", width=4000, temperature=0.5, max_steps=8)
    state = ParticleState(params, np.random.default_rng(3))
    children = []
    for i, p in enumerate(state.pending()):
        child = Branch((Step("good\n" if i % 4 == 0 else "bad\n", 1, "separator"),))
        child.score = 1.0 if i % 4 == 0 else 0.0
        children.append([child])
    state.advance(children)
    good = sum(p.text == "good\n" for p in state.particles) / len(state.particles)
    w = np.exp(1.0 / 0.5)
    expected = w / (w + 3)  # one good particle in four, weight e^(1/T) against 1
    assert good == pytest.approx(expected, abs=0.03)
    assert len(state.particles) == params.width and len({id(p) for p in state.particles}) == params.width  # copies
    assert softmax(np.array([0.0, 0.0]), 1.0).tolist() == [0.5, 0.5]
    assert math.isclose(softmax(np.array([1000.0, 0.0]), 1.0)[0], 1.0)  # no overflow


# --- the real engine -----------------------------------------------------------------------------


class Counting:
    """Wraps the real step generator and counts what it returned, to check the search's accounting."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls = self.requests = self.steps = self.tokens = 0

    def generate_steps(self, requests: Sequence[StepRequest]) -> list[list[Step]]:
        out = self.inner.generate_steps(requests)  # type: ignore[attr-defined]
        self.calls += 1
        self.requests += len(requests)
        self.steps += sum(len(g) for g in out)
        self.tokens += sum(s.tokens for g in out for s in g)
        return out


@pytest.fixture(scope="module")
def generator() -> Iterator[object]:
    if os.environ.get("TTSCALE_SKIP_VLLM") == "1":
        pytest.skip("TTSCALE_SKIP_VLLM=1")
    pytest.importorskip("vllm")
    from ttscale.search.vllm_steps import VLLMStepGenerator

    with pytest.MonkeyPatch.context() as mp:
        for key, value in ENV.items():
            mp.setenv(key, value)
        gen = VLLMStepGenerator(str(model_dir()), CONFIG)
        yield gen
        gen.close()


@pytest.fixture(scope="module")
def sampling_pass1(generator: object) -> float:
    """Plain sampling's single-sample accuracy on the same problems, same engine and temperature."""
    from ttscale.sampling.backends.vllm import VLLMSampler

    sampler = VLLMSampler(None, CONFIG.model_copy(update={"max_tokens": 160}), llm=generator.sampler.llm)  # type: ignore[attr-defined]
    results = sampler.generate([SampleRequest(p.id, p.problem, 8, request_seed(0, p.id, 0)) for p in HARD])
    return float(np.mean([np.mean([c.answer == p.answer for c in r.candidates]) for r, p in zip(results, HARD)]))


def _best_right(result) -> bool:  # type: ignore[no-untyped-def]
    best = result.candidates[0]
    return best.finish == "answer" and best.text.rstrip().endswith(f"#### {result.problem.answer}")


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.parametrize("method", ["beam", "dvts", "particle"])
def test_search_with_the_oracle_beats_single_samples_and_accounts_for_every_step(
    generator: object, sampling_pass1: float, method: str
) -> None:
    params = SearchParams(method=method, width=8, keep=2, seed=5)
    counted = Counting(generator)
    results = list(search_problems(HARD, counted, OracleStepScorer(), params))
    assert sorted(r.problem.id for r in results) == sorted(p.id for p in HARD)
    accuracy = np.mean([_best_right(r) for r in results])
    assert accuracy >= sampling_pass1, (accuracy, sampling_pass1)
    assert accuracy >= 0.8  # oracle-guided search finds a right chain on nearly every problem
    # Accounting: every generated step (pruned ones too) and request is counted once, in some problem.
    assert sum(r.cost.generated_tokens for r in results) == counted.tokens
    assert sum(r.cost.expansions for r in results) == counted.steps
    assert sum(r.cost.requests for r in results) == counted.requests
    assert max(r.cost.rounds for r in results) == counted.calls  # one generator call per round for all problems
    for r in results:
        assert len(r.candidates) <= params.width and r.candidates
        assert all(c.score == c.step_scores[-1] for c in r.candidates)  # aggregation LAST
        assert r.cost.expansions >= sum(len(c.steps) for c in r.candidates[:1])
        if method != "beam":
            assert len(r.candidates) == params.width
    # Same seed, same search.
    again = {r.problem.id: [c.text for c in r.candidates] for r in search_problems(HARD, generator, OracleStepScorer(), params)}
    assert again == {r.problem.id: [c.text for c in r.candidates] for r in results}


@pytest.mark.vllm
@pytest.mark.slow
def test_fallbacks_max_steps_and_a_separator_never_written(generator: object) -> None:
    # Hard problems take 6-8 steps: after 2 every branch is cut and returned without an answer.
    cut = list(search_problems(HARD[:2], generator, OracleStepScorer(), SearchParams(width=4, keep=2, max_steps=2)))
    for r in cut:
        assert r.cost.rounds == 2 and len(r.candidates) == 4
        assert all(c.finish == "length" and len(c.steps) == 2 for c in r.candidates)
    # A separator the model never writes: each step runs to its token limit and ends its branch.
    never = SearchParams(method="dvts", width=4, keep=2, separator="@@", max_step_tokens=6)
    for r in search_problems(HARD[:2], generator, OracleStepScorer(), never):
        assert r.cost.rounds == 1
        assert all(c.finish == "length" and c.steps[0].finish == "length" and c.steps[0].tokens == 6 for c in r.candidates)


class NaNScorer:
    name = "nan-prm"

    def score_steps(self, items):  # type: ignore[no-untyped-def]
        return StepScores([[float("nan")] * len(steps) for _, steps in items])


class NoScores:
    name = "empty-prm"

    def score_steps(self, items):  # type: ignore[no-untyped-def]
        return StepScores([[] for _ in items])


@pytest.mark.vllm
@pytest.mark.slow
def test_a_scorer_returning_nan_or_no_step_scores_is_a_clear_error(generator: object) -> None:
    with pytest.raises(SearchError, match=r"'nan-prm': problem 'arith-hard-0000', step 1: score nan"):
        list(search_problems(HARD[:1], generator, NaNScorer(), SearchParams(width=2, keep=1)))
    with pytest.raises(SearchError, match=r"'empty-prm': problem 'arith-hard-0000': 0 step scores for 1 steps"):
        list(search_problems(HARD[:1], generator, NoScores(), SearchParams(width=2, keep=1)))


@pytest.mark.vllm
@pytest.mark.slow
def test_bank_is_resumable_and_reads_as_a_bank(generator: object, tmp_path: Path) -> None:
    out = tmp_path / "search.jsonl"
    params = SearchParams(width=4, keep=1, seed=1)
    first = run_search(HARD[:3], generator, OracleStepScorer(), params, out, meta={"model": "arith-tiny"})
    assert first.searched == 3 and first.complete == 0
    before = out.read_bytes()
    second = run_search(HARD[:5], generator, OracleStepScorer(), params, out)
    assert second.complete == 3 and second.searched == 2
    assert out.read_bytes().startswith(before)  # finished problems are not redone
    bank = read_bank(out)
    assert sorted(r.id for r in bank.records) == sorted(p.id for p in HARD[:5])  # written as they finish
    record = bank.records[0]
    assert record.search["method"] == "beam" and record.search["cost"]["generated_tokens"] > 0  # type: ignore[attr-defined]
    sample = record.samples[0]
    assert sample.rewards == {"oracle": sample.reward} and sample.reward in (0.0, 1.0)
    assert third_run_is_empty(generator, out, params)


def third_run_is_empty(generator: object, out: Path, params: SearchParams) -> bool:
    stats = run_search(HARD[:5], generator, OracleStepScorer(), params, out)
    return stats.searched == 0 and stats.complete == 5


# --- the command ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--width", "0"], "--width=0: expected a number >= 1"),
        (["--method", "greedy"], "--method='greedy': expected one of beam, dvts, particle"),
        (["--width", "8", "--keep", "3"], "--keep=3: expected a divisor of width (8)"),
        (["--scorer", "nope"], "--scorer='nope': expected one of oracle"),
        (["--separator", ""], "--separator='': expected a non-empty string"),
        (["--max-steps", "0"], "--max-steps=0: expected a number >= 1"),
        (["--backend", "tgi"], "--backend='tgi': expected one of vllm, openai"),
        (["--dataset", "missing.jsonl"], "missing.jsonl"),
    ],
)
def test_command_refuses_bad_options_in_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    from ttscale.cli.app import app

    result = CliRunner().invoke(app, ["search", *args, "--out", str(tmp_path / "b.jsonl")])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert message in text and "Traceback" not in text


# --- the OpenAI-compatible completions endpoint (a real vLLM server on 127.0.0.1) ---------------------


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from fault_proxy import free_port
    from vllm_server import SERVER_ENV, start, stop, vllm_server_command, wait_healthy

    if os.environ.get("TTSCALE_SKIP_VLLM") == "1":
        pytest.skip("TTSCALE_SKIP_VLLM=1")
    pytest.importorskip("vllm")
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    proc = start(vllm_server_command(model_dir(), port), log, {**os.environ, **SERVER_ENV})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, log)
        yield url + "/v1"
    finally:
        stop(proc)


@pytest.mark.vllm
@pytest.mark.slow
def test_beam_search_through_the_completions_endpoint(server_url: str) -> None:
    from ttscale.search.openai_steps import OpenAIStepGenerator

    gen = OpenAIStepGenerator(None, CONFIG, base_url=server_url, max_retries=0)
    counted = Counting(gen)
    try:
        results = list(search_problems(HARD[:3], counted, OracleStepScorer(), SearchParams(width=4, keep=1, seed=2)))
    finally:
        gen.close()
    assert sum(_best_right(r) for r in results) >= 2
    assert sum(r.cost.generated_tokens for r in results) == counted.tokens > 0
    for r in results:
        best = r.candidates[0]
        assert all(s.text.endswith("\n") and s.finish == "separator" for s in best.steps[:-1])
        assert best.steps[-1].text.startswith("####")


@pytest.mark.vllm
@pytest.mark.slow
def test_search_command_through_the_completions_endpoint(server_url: str, tmp_path: Path) -> None:
    from ttscale.cli.app import app
    from ttscale.search.openai_steps import OpenAIStepGenerator

    out = tmp_path / "openai.jsonl"
    args = ["search", "--backend", "openai", "--base-url", server_url, "--max-retries", "0", "--dataset", "arith-hard", "--limit", "3",
            "--width", "4", "--keep", "1", "--seed", "2", "--temperature", "1.3", "--template", "arith", "--out", str(out), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["searched"] == 3 and summary["cost"]["generated_tokens"] > 0
    bank = read_bank(out)
    assert sorted(r.id for r in bank.records) == [p.id for p in HARD[:3]]
    assert all(r.backend == "openai" and r.search["method"] == "beam" for r in bank.records)  # type: ignore[attr-defined]
    assert sum(r.samples[0].answer == r.reference for r in bank.records) >= 2
    # The command runs the same seeded search as the generator called directly.
    gen = OpenAIStepGenerator(None, CONFIG, base_url=server_url, max_retries=0)
    try:
        direct = {r.problem.id: [c.text for c in r.candidates]
                  for r in search_problems(HARD[:3], gen, OracleStepScorer(), SearchParams(width=4, keep=1, seed=2))}
    finally:
        gen.close()
    assert {r.id: [s.text for s in r.samples] for r in bank.records} == direct
    again = CliRunner().invoke(app, args)
    assert json.loads(again.stdout.strip().splitlines()[-1])["complete"] == 3  # resumable: nothing redone


@pytest.mark.vllm
@pytest.mark.slow
def test_bench_search_through_the_completions_endpoint_by_the_packaged_models_name(server_url: str, tmp_path: Path) -> None:
    """``ttscale bench --backend openai --model arith-tiny --search beam`` against a server that loaded
    the packaged model by its folder path: the name resolves to the server's id, sampling and search
    both go through the endpoint."""
    from ttscale.cli.app import app

    out = tmp_path / "bench"
    args = ["bench", "--out", str(out), "--backend", "openai", "--base-url", server_url, "--model", "arith-tiny",
            "--dataset", "arith-hard", "--limit", "4", "--n", "4", "--search", "beam", "-p", "majority", "--json", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["sampled"]["samples"] == 16
    assert summary["searched"]["problems"] == {"beam-w2-oracle.jsonl": 4, "beam-w4-oracle.jsonl": 4}
    results = json.loads((out / "results.json").read_text())
    assert [(p["method"], p["width"]) for p in results["search"]["points"]] == [("beam", 2), ("beam", 4)]
    # A name the server does not serve is still refused, naming what it serves.
    bad_args = ["bench", "--out", str(tmp_path / "bad"), "--backend", "openai", "--base-url", server_url, "--model", "no-such-model",
                "--dataset", "arith-hard", "--limit", "4", "--n", "4", "-p", "majority"]
    bad = CliRunner().invoke(app, bad_args)
    assert bad.exit_code == 2 and "a model the server" in bad.output and "Traceback" not in bad.output
