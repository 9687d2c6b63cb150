"""Sampler protocol, datasets, replay, the resumable driver and ``ttscale sample`` (no vLLM here)."""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
import typer
from pydantic import ValidationError
from conftest import build_tiny_llama, without_chat_template
from typer.testing import CliRunner

from ttscale.cli.commands.sample import sample_command
from ttscale.errors import BankFormatError, ConfigError
from ttscale.records.bank import read_bank
from ttscale.records.bank import record_line
from ttscale.records.datasets import Problem, load_dataset, load_jsonl
from ttscale.records.models import Record, Sample
from ttscale.sampling.backends.registry import make_sampler
from ttscale.sampling.backends.replay import ReplayExhaustedError, ReplaySampler
from ttscale.sampling.driver import plan_requests, run_sampling
from ttscale.sampling.sampler import (
    FanOut,
    PromptFormat,
    Sampler,
    SampleRequest,
    SampleResult,
    SamplingConfig,
    make_sample,
    request_seed,
)

REPO = Path(__file__).resolve().parents[1]
PACKAGED_MODEL = REPO / "ttscale" / "models" / "arith-tiny"


# --- a tiny model for the transformers and vLLM tests ----------------------------------------


def build_random_model(path: Path) -> Path:
    """A random ~0.4M-parameter Llama with the arithmetic tokenizer."""
    return build_tiny_llama(path)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """$TTSCALE_TEST_MODEL, else the packaged arith-tiny model when it is there, else a random model of its shape."""
    if os.environ.get("TTSCALE_TEST_MODEL"):
        return Path(os.environ["TTSCALE_TEST_MODEL"])
    if (PACKAGED_MODEL / "config.json").is_file() and any(PACKAGED_MODEL.glob("*.safetensors")):
        return PACKAGED_MODEL
    return build_random_model(tmp_path_factory.mktemp("tiny-model"))


def arith_problems(count: int) -> list[Problem]:
    from ttscale.arith.task import PRESETS, generate_problems

    return [Problem(p["id"], p["problem"], p["answer"]) for p in generate_problems(PRESETS["default"], count, 7)]


def write_jsonl(path: Path, rows: Sequence[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def source_bank(tmp_path: Path) -> Path:
    """A small bank with 10 distinct samples per problem, to replay."""
    rows = []
    for i in range(4):
        samples = [{"answer": str(j), "text": f"p{i} s{j} #### {j}", "tokens": 5 + j, "logprob": -1.0 - j} for j in range(10)]
        rows.append({"id": f"q{i}", "problem": f"problem {i}", "reference": "3", "samples": samples})
    return write_jsonl(tmp_path / "source.jsonl", rows)


def problems_of(bank: Path) -> list[Problem]:
    return [Problem(r.id, r.problem or "", r.reference) for r in read_bank(bank).records]


# --- SamplingConfig ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("temperature", -0.1), ("temperature", float("nan")), ("temperature", "hot"), ("top_p", 0.0), ("top_p", 1.5),
        ("top_k", -1), ("top_k", 2.5), ("max_tokens", 0), ("max_tokens", True), ("stop", [""]), ("stop", [3]),
        ("seed", -1), ("seed", 2**40), ("logprobs", "yes"), ("prompt_format", "json"), ("fan_out", "sometimes"),
        ("template", "no placeholder"), ("template", "{problem} {other}"),
    ],
)
def test_config_rejects_bad_values_naming_them(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        SamplingConfig(**{field: value})
    assert info.value.parameter == field
    assert field in str(info.value) and repr(value) in str(info.value)


def test_config_coerces_and_freezes() -> None:
    cfg = SamplingConfig(stop="\n\n", prompt_format="chat", fan_out="parallel", template="arith", seed=None)
    assert cfg.stop == ("\n\n",)
    assert cfg.prompt_format is PromptFormat.CHAT and cfg.fan_out is FanOut.PARALLEL
    assert cfg.render("Tom has 3 apples.") == "Question: Tom has 3 apples.\nAnswer:\n"
    with pytest.raises(ValidationError, match="frozen"):
        cfg.temperature = 1.0  # type: ignore[misc]
    assert hash(cfg) == hash(SamplingConfig.from_dict(cfg.to_dict()))  # hashable: usable as a cache key
    # Braces in a problem are text, not placeholders; doubled braces in a template are literal.
    assert SamplingConfig(template="boxed").render("f(x) = {x}").startswith("f(x) = {x}\n")
    assert SamplingConfig(template="boxed").render("p").endswith("\\boxed{}.")
    assert SamplingConfig(system="Be brief.").messages("q") == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q"}]
    assert SamplingConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="tempreature"):
        SamplingConfig.from_dict({"tempreature": 0.5}, source="policy.toml")


def test_request_seeds_are_stable_and_distinct() -> None:
    seeds = {request_seed(0, f"p{i}", r) for i in range(100) for r in (0, 8)}
    assert len(seeds) == 200
    assert request_seed(0, "p1", 0) == request_seed(0, "p1", 0) != request_seed(1, "p1", 0)
    assert request_seed(None, "p1", 0) is None
    assert all(0 <= s < 2**31 for s in seeds)
    with pytest.raises(ConfigError, match="n=0"):
        SampleRequest("p", "x", 0)


def test_old_candidate_names_warn_and_give_the_sample() -> None:
    import ttscale.sampling.sampler as sampler_module

    with pytest.warns(DeprecationWarning, match="use Sample"):
        assert sampler_module.Candidate is Sample
    with pytest.warns(DeprecationWarning, match="use make_sample"):
        assert sampler_module.make_candidate is make_sample


@pytest.mark.parametrize(
    ("changes", "parameter"),
    [({"n": 0}, "n"), ({"n": True}, "n"), ({"n": 2.0}, "n"), ({"seed": -1}, "seed"), ({"seed": 2**31}, "seed"),
     ({"round": -1}, "round"), ({"id": 3}, "id"), ({"messages": "hi"}, "messages"), ({"messages": [["user", "hi"]]}, "messages"),
     ({"overrides": 3}, "overrides")],
)
def test_request_rejects_bad_values_naming_them(changes: dict, parameter: str) -> None:
    with pytest.raises(ConfigError) as info:
        SampleRequest(**{"id": "p", "problem": "x", "n": 2, **changes})
    assert info.value.parameter == parameter and repr(changes[parameter]) in str(info.value)


def test_request_takes_fields_by_position() -> None:
    req = SampleRequest("p", "x", 2, 7, 3, [{"role": "user", "content": "hi"}])
    assert (req.id, req.problem, req.n, req.seed, req.round) == ("p", "x", 2, 7, 3)
    assert req.messages == ({"role": "user", "content": "hi"},)
    assert req == SampleRequest(id="p", problem="x", n=2, seed=7, round=3, messages=({"role": "user", "content": "hi"},))
    with pytest.raises(TypeError, match="multiple values"):
        SampleRequest("p", "x", 2, n=3)
    with pytest.raises(TypeError, match="at most 8"):
        SampleRequest("p", "x", 2, 7, 3, None, None, (), "extra")


def test_a_generated_sample_is_the_bank_sample() -> None:
    sample = make_sample("3 + 4 = 7\n#### 7", tokens=8, logprob=-4.0, finish="eos", latency=0.5, seed=11)
    assert isinstance(sample, Sample)
    assert (sample.answer, sample.tokens, sample.logprob, sample.mean_logprob, sample.finish) == ("7", 8, -4.0, -0.5, "stop")
    assert (sample.seed, sample.latency, sample.text) == (11, 0.5, "3 + 4 = 7\n#### 7")
    line = json.loads(record_line(Record(id="p", samples=[sample])))
    assert line["samples"] == [{"answer": "7", "text": "3 + 4 = 7\n#### 7", "tokens": 8, "logprob": -4.0, "mean_logprob": -0.5,
                                "finish": "stop", "latency": 0.5, "seed": 11}]
    # A -inf log-prob (a filtered token) would make the bank line invalid JSON: it is dropped.
    bad = make_sample("no answer", tokens=3, logprob=-math.inf, finish="length", latency=0.1, seed=None)
    assert bad.answer is None and bad.logprob is None and bad.mean_logprob is None and bad.finish == "length"
    # A clock that stepped back never makes a negative latency (the bank refuses one).
    assert make_sample("x", tokens=1, logprob=None, finish="stop", latency=-0.01, seed=None).latency == 0.0


# --- datasets --------------------------------------------------------------------------------------


def test_local_benchmarks_load(shared_data: Path) -> None:
    gsm = load_dataset(shared_data / "benchmarks" / "gsm8k_test.jsonl")
    assert len(gsm) == 1319 and gsm[0].id == "gsm8k-test-0" and gsm[0].answer == "18"
    assert len(load_dataset(str(shared_data / "benchmarks" / "math500.jsonl"), limit=5)) == 5


@pytest.mark.parametrize(
    "line, field, expected",
    [
        ('{"id": "b", "problem": "x"', None, "one JSON object per line"),
        ('["b", "x"]', None, "a JSON object"),
        ('{"id": "b"}', "problem", "a non-empty string"),
        ('{"id": "", "problem": "x"}', "id", "a non-empty string"),
        ('{"id": "b", "problem": "x", "answer": [1]}', "answer", "a string"),
        ('{"id": "a", "problem": "again"}', "id", "unique"),
    ],
)
def test_malformed_dataset_line_names_file_and_line(tmp_path: Path, line: str, field: str | None, expected: str) -> None:
    path = tmp_path / "ds.jsonl"
    path.write_text('{"id": "a", "problem": "1+1", "answer": 2}\n\n' + line + "\n")
    with pytest.raises(BankFormatError) as info:
        load_jsonl(path)
    assert info.value.line == 3 and info.value.field == field and expected in info.value.expected
    assert str(path) in str(info.value) and "line 3" in str(info.value)


def test_hub_rows_convert_to_problems() -> None:
    from ttscale.records.datasets import HUB

    gsm = HUB["gsm8k"].convert(3, {"question": "How many?", "answer": "2 + 2 = 4\n#### 1,234"})
    assert gsm == Problem("gsm8k-test-3", "How many?", "1234")
    math500 = HUB["math500"].convert(0, {"problem": "p", "answer": "\\frac{1}{2}", "unique_id": "test/algebra/1.json"})
    assert math500 == Problem("test/algebra/1.json", "p", "\\frac{1}{2}")
    assert HUB["aime2025"].convert(0, {"problem_idx": 7, "problem": "p", "answer": 70}) == Problem("aime2025-7", "p", "70")


def test_dataset_names() -> None:
    with pytest.raises(ConfigError, match="gsm8k"):
        load_dataset("no_such_benchmark")
    with pytest.raises(BankFormatError, match="no such file"):
        load_dataset("missing/file.jsonl")
    try:
        import datasets  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="datasets"):
            load_dataset("gsm8k")
    arith = REPO / "ttscale" / "data" / "arith_test.jsonl"
    if arith.is_file():
        probs = load_dataset("arith", limit=3)
        assert len(probs) == 3 and probs[0].answer is not None


# --- replay ---------------------------------------------------------------------------------------


def test_replay_serves_bank_samples_by_round(source_bank: Path) -> None:
    sampler = ReplaySampler(source_bank)
    assert isinstance(sampler, Sampler)
    first, later = sampler.generate([SampleRequest("q1", "problem 1", 3, seed=5), SampleRequest("q1", "problem 1", 2, round=3)])
    assert [c.answer for c in first.candidates] == ["0", "1", "2"]
    assert [c.answer for c in later.candidates] == ["3", "4"]
    assert first.candidates[0].seed == 5 and first.completion_tokens == 5 + 6 + 7
    assert asyncio.run(sampler.agenerate([SampleRequest("q0", "problem 0", 1)]))[0].candidates[0].text == "p0 s0 #### 0"
    with pytest.raises(ReplayExhaustedError, match="at most 10"):
        sampler.generate([SampleRequest("q1", "problem 1", 3, round=8)])
    with pytest.raises(ConfigError, match="id='nope'"):
        sampler.generate([SampleRequest("nope", "x", 1)])
    shuffled = [c.answer for c in ReplaySampler(source_bank, shuffle_seed=1).generate([SampleRequest("q1", "p", 10)])[0].candidates]
    again = [c.answer for c in ReplaySampler(source_bank, shuffle_seed=1).generate([SampleRequest("q1", "p", 10)])[0].candidates]
    assert shuffled == again and sorted(shuffled) == sorted(map(str, range(10))) and shuffled != list(map(str, range(10)))



def test_replay_keeps_rewards_of_a_scored_bank(tmp_path: Path) -> None:
    rows = [{"id": "q0", "problem": "p", "reference": "1",
             "samples": [{"answer": "1", "text": "#### 1", "reward": 0.9, "rewards": {"rm": 0.9, "judge": 0.2}},
                         {"answer": "2", "text": "#### 2", "reward": -0.5}, {"answer": "1", "text": "#### 1"}]}]
    src = write_jsonl(tmp_path / "scored.jsonl", rows)
    out = tmp_path / "replayed.jsonl"
    run_sampling(ReplaySampler(src), problems_of(src), out, 3)
    samples = read_bank(out).records[0].samples
    assert [s.reward for s in samples] == [0.9, -0.5, None]
    assert samples[0].rewards == {"rm": 0.9, "judge": 0.2} and samples[1].rewards is None

# --- the resumable driver ------------------------------------------------------------------------


def test_driver_resumes_and_grows_without_duplicates(source_bank: Path, tmp_path: Path) -> None:
    out = tmp_path / "bank.jsonl"
    problems = problems_of(source_bank)
    replay = ReplaySampler(source_bank)
    stats = run_sampling(replay, problems, out, 3, meta={"model": "m"})
    assert (stats.requests, stats.samples, stats.complete) == (4, 12, 0)
    assert run_sampling(replay, problems, out, 3).requests == 0  # nothing missing: nothing sent
    assert replay.calls == 4
    stats = run_sampling(replay, problems, out, 7)
    assert (stats.requests, stats.samples) == (4, 16)
    bank = read_bank(out)
    assert bank.sample_counts() == {f"q{i}": 7 for i in range(4)}
    # Growing continued each problem's stream where it stopped: samples 0..6 in order, none twice.
    assert [s.answer for s in bank.by_id()["q2"].samples] == [str(j) for j in range(7)]
    assert bank.records[0].model_extra["model"] == "m" and bank.records[0].reference == "3"


def test_driver_cuts_a_torn_line_and_redoes_only_that_request(source_bank: Path, tmp_path: Path) -> None:
    out = tmp_path / "bank.jsonl"
    problems = problems_of(source_bank)
    run_sampling(ReplaySampler(source_bank), problems[:3], out, 4)
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:2]) + lines[2][:40])  # a writer killed mid-line on q2
    replay = ReplaySampler(source_bank)
    stats = run_sampling(replay, problems, out, 4)
    assert stats.requests == 2 and replay.calls == 2  # q2 (torn) and q3 (never asked)
    assert read_bank(out).sample_counts() == {f"q{i}": 4 for i in range(4)}


def test_driver_refuses_a_bank_of_another_dataset(source_bank: Path, tmp_path: Path) -> None:
    out = tmp_path / "bank.jsonl"
    run_sampling(ReplaySampler(source_bank), problems_of(source_bank), out, 2)
    other = [Problem("q0", "a different problem")]
    with pytest.raises(BankFormatError, match="another dataset"):
        run_sampling(ReplaySampler(source_bank), other, out, 4)


def test_plan_requests_asks_only_for_missing_samples_with_round_seeds() -> None:
    problems = [Problem("a", "x"), Problem("b", "y"), Problem("c", "z")]
    reqs = plan_requests(problems, {"a": 8, "b": 3}, 8, seed=0)
    assert [(r.id, r.n, r.round) for r in reqs] == [("b", 5, 3), ("c", 8, 0)]
    assert reqs[0].seed == request_seed(0, "b", 3) and reqs[1].seed == request_seed(0, "c", 0)


class FlakyConcurrentReplay(ReplaySampler):
    """Replay fed concurrently, failing on one problem: the async driver path's error handling."""

    concurrency = 4

    def __init__(self, bank: Path, fail_on: str | None) -> None:
        super().__init__(bank, batch_size=1)
        self.fail_on = fail_on

    async def agenerate(self, requests: Sequence[SampleRequest]) -> list[SampleResult]:
        if requests[0].id == self.fail_on:
            await asyncio.sleep(0.05)  # the others finish first
            raise ConfigError("server", "down", "a server that answers")
        return self.generate(requests)


def test_async_driver_keeps_what_finished_when_a_request_fails(source_bank: Path, tmp_path: Path) -> None:
    out = tmp_path / "bank.jsonl"
    problems = problems_of(source_bank)
    with pytest.raises(ConfigError, match="server"):
        run_sampling(FlakyConcurrentReplay(source_bank, fail_on="q1"), problems, out, 5)
    assert read_bank(out).sample_counts() == {"q0": 5, "q2": 5, "q3": 5}
    healed = FlakyConcurrentReplay(source_bank, fail_on=None)
    assert run_sampling(healed, problems, out, 5).requests == 1 and healed.calls == 1
    assert read_bank(out).sample_counts() == {f"q{i}": 5 for i in range(4)}


# --- the command -----------------------------------------------------------------------------------


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("sample")(sample_command)
    app.command("noop")(lambda: None)  # two commands: typer then dispatches by name
    return app


def test_sample_command_replay_resume_and_errors(cli: typer.Typer, source_bank: Path, tmp_path: Path) -> None:
    dataset = write_jsonl(tmp_path / "ds.jsonl", [{"id": f"q{i}", "problem": f"problem {i}", "answer": "3"} for i in range(4)])
    out = tmp_path / "out.jsonl"
    args = ["sample", "--backend", "replay", "--model", str(source_bank), "--dataset", str(dataset), "--out", str(out), "-q"]
    runner = CliRunner()
    first = runner.invoke(cli, [*args, "--n", "4", "--json"])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["samples"] == 16 and summary["requests"] == 4
    again = runner.invoke(cli, [*args, "--n", "4", "--json"])
    assert json.loads(again.stdout.strip().splitlines()[-1])["requests"] == 0
    grown = runner.invoke(cli, [*args, "--n", "6"])
    assert grown.exit_code == 0 and read_bank(out).sample_counts() == {f"q{i}": 6 for i in range(4)}
    too_many = runner.invoke(cli, [*args, "--n", "11"])
    assert too_many.exit_code == 2 and "at most 10" in too_many.output
    assert read_bank(out).sample_counts() == {f"q{i}": 6 for i in range(4)}  # the failure wrote nothing partial

    good = dataset.read_text()
    dataset.write_text(good + '{"id": "q9", "problem": \n')
    bad = runner.invoke(cli, [*args, "--n", "6"])
    assert bad.exit_code == 2 and f"{dataset}, line 5" in bad.output.replace("\n", "")
    dataset.write_text(good)
    for extra, needle in ((["--backend", "tgi"], "'tgi' is not one of"), (["--temperature", "-1"], "temperature=-1"),
                          (["--seed", "abc"], "--seed='abc'"), (["--engine-arg", "x"], "KEY=VALUE")):
        res = runner.invoke(cli, [*args, *extra])
        assert res.exit_code == 2 and needle in res.output, (extra, res.output)


# --- transformers ------------------------------------------------------------------------------


@pytest.mark.slow
def test_hf_backend_samples_reproducibly_and_resumes(tiny_model: Path, tmp_path: Path) -> None:
    config = SamplingConfig(max_tokens=16, template="arith", seed=3)
    sampler = make_sampler("hf", str(tiny_model), config)
    problems = arith_problems(2)
    out = tmp_path / "hf.jsonl"
    stats = run_sampling(sampler, problems, out, 8)
    assert stats.samples == 16 and stats.completion_tokens > 0 and stats.tokens_per_s > 0
    bank = read_bank(out)
    assert bank.sample_counts() == {p.id: 8 for p in problems}
    for record in bank.records:
        assert all(s.tokens and 0 < s.tokens <= 16 and s.logprob is not None and s.logprob < 0 for s in record.samples)
        assert {s.seed for s in record.samples} == {request_seed(3, record.id, 0)}
        assert all(s.finish in ("stop", "length") for s in record.samples)
    # The same request again draws the same candidates (a resumed run redraws what it lost).
    again = sampler.generate([SampleRequest(problems[1].id, problems[1].problem, 8, request_seed(3, problems[1].id, 0))])[0]
    assert [c.text for c in again.candidates] == [s.text for s in bank.by_id()[problems[1].id].samples]
    run_sampling(sampler, problems, out, 10)
    assert read_bank(out).sample_counts() == {p.id: 10 for p in problems}


def test_sample_command_chat_template_file(cli: typer.Typer, tiny_model: Path, tmp_path: Path) -> None:
    """--chat with a model that has no chat template: a clear error, then the same run with a template file."""
    runner = CliRunner()
    model = without_chat_template(tiny_model, tmp_path / "no-chat-template")  # the packaged model has one
    args = ["sample", "--backend", "hf", "--model", str(model), "--dataset", "arith", "--limit", "2", "--n", "2",
            "--max-tokens", "8", "--chat", "--out", str(tmp_path / "chat.jsonl"), "--quiet"]
    missing = runner.invoke(cli, args)
    assert missing.exit_code == 2 and "chat template" in missing.output
    template = tmp_path / "chat.jinja"
    template.write_text("{% for m in messages %}Question: {{ m['content'] }}\n{% endfor %}Answer:")
    done = runner.invoke(cli, [*args, "--chat-template", str(template)])
    assert done.exit_code == 0, done.output
    counts = read_bank(tmp_path / "chat.jsonl").sample_counts()
    assert len(counts) == 2 and set(counts.values()) == {2}
    raw = runner.invoke(cli, [*args[:-3], "--raw", "--chat-template", str(template), "--out", str(tmp_path / "x.jsonl")])
    assert raw.exit_code == 2 and "--chat as well" in raw.output
    http = runner.invoke(cli, ["sample", "--backend", "openai", "--chat", "--chat-template", str(template), "--out", str(tmp_path / "y.jsonl")])
    assert http.exit_code == 2 and "an HTTP server applies its own template" in http.output


def test_data_parallel_in_process_is_a_clear_error(cli: typer.Typer, tmp_path: Path) -> None:
    pytest.importorskip("vllm")
    res = CliRunner().invoke(cli, ["sample", "--backend", "vllm", "--model", "arith-tiny", "--limit", "1", "--n", "1",
                                   "--data-parallel-size", "2", "--out", str(tmp_path / "dp.jsonl"), "-q"])
    assert res.exit_code == 2 and "data_parallel_size=2" in res.output and "--replicas" in res.output


def test_sample_backend_choices_are_the_registered_backends() -> None:
    from ttscale.cli.sampling_options import ReplicaBackend, SampleBackend
    from ttscale.sampling.backends.registry import BACKENDS

    assert {b.value for b in SampleBackend} == set(BACKENDS)
    assert {b.value for b in ReplicaBackend} <= set(BACKENDS) - {"ray", "replay", "openai"}
