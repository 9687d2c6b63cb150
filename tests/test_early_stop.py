"""DeepConf online early stop: the numpy core, its validation, and the real engines stopping traces.

The engine tests run the packaged arith-tiny model on the real transformers ``generate`` and the
real in-process vLLM engine (no mocks). A threshold above any reachable group confidence must
stop every tracked trace as soon as it has a full window, which is what they check.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ttscale.early_stop import (
    LOW_CONFIDENCE,
    EarlyStopParams,
    GroupConfidenceTracker,
    calibrate_threshold,
    lowest_group_confidence,
    phase_split,
    token_confidence,
)
from ttscale.errors import ConfigError
from ttscale.records.bank import BankWriter
from ttscale.records.models import Record
from ttscale.sampling.sampler import SampleRequest, SamplingConfig, make_sample

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "ttscale" / "models" / "arith-tiny"
PROMPT_PROBLEM = "Start with 45. Add 12. Subtract 7. Add 19. What is the result?"


# -- core -----------------------------------------------------------------------------------------

def _direct_groups(values: np.ndarray, window: int) -> list[float]:
    return [float(values[i - window + 1 : i + 1].mean()) for i in range(window - 1, len(values))]


@pytest.mark.parametrize("window", [1, 3, 16])
def test_tracker_equals_a_direct_sliding_window(window: int) -> None:
    values = np.random.default_rng(window).normal(10.0, 3.0, size=500)
    tracker = GroupConfidenceTracker(window)
    online = [tracker.push(float(v)) for v in values]
    assert online[: window - 1] == [None] * (window - 1)
    direct = _direct_groups(values, window)
    assert np.allclose(online[window - 1 :], direct, rtol=0, atol=1e-9)
    assert tracker.lowest_group() == pytest.approx(min(direct), abs=1e-9)
    assert lowest_group_confidence(values, window) == pytest.approx(min(direct), abs=1e-9)


def test_short_trace_is_one_group_and_token_confidence_is_the_negated_top_k_mean() -> None:
    assert lowest_group_confidence([1.0, 2.0, 6.0], 8) == pytest.approx(3.0)
    assert lowest_group_confidence([], 8) is None
    assert token_confidence([-0.5, -1.5, -4.0]) == pytest.approx(2.0)
    assert np.allclose(token_confidence(np.array([[-1.0, -3.0], [-2.0, -2.0]])), [2.0, 2.0])


def test_calibration_on_hand_made_traces() -> None:
    lowest = [3.0, 9.0, 5.0, 7.0, 1.0, 8.0, 2.0, 6.0, 4.0, 10.0]
    assert calibrate_threshold(lowest, 10) == 10.0  # DeepConf-low: only the best trace kept
    assert calibrate_threshold(lowest, 90) == 2.0  # DeepConf-high: the 9 best kept, the lowest of them
    assert calibrate_threshold(lowest, 100) == 1.0
    assert calibrate_threshold(lowest, 25) == 8.0  # ceil(2.5) = 3 kept: 10, 9, 8
    # Two hand-made traces, window 2: lowest groups 1.5 and 4.5; eta 50 keeps the better one.
    traces = [[3.0, 1.0, 2.0, 4.0], [5.0, 4.0, 6.0, 5.0]]
    assert calibrate_threshold([lowest_group_confidence(t, 2) for t in traces], 50) == 4.5
    with pytest.raises(ConfigError, match="eta"):
        calibrate_threshold(lowest, 0)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"eta": 0}, "eta"), ({"eta": 100.5}, "eta"), ({"eta": -3}, "eta"), ({"window": 0}, "window"),
    ({"warmup": 0}, "warmup"), ({"top_k": 21}, "top_k"), ({"eta": True}, "eta"), ({"threshold": math.nan}, "threshold"),
])
def test_params_validation_names_field_and_value(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        EarlyStopParams(**kwargs)
    assert info.value.parameter == field
    assert info.value.value == next(iter(kwargs.values())) or math.isnan(info.value.value)


def test_window_longer_than_max_tokens_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"early_stop.window=200: expected at most max_tokens \(100\)"):
        SamplingConfig(max_tokens=100, early_stop=EarlyStopParams(window=200))
    assert EarlyStopParams(eta=100).eta == 100.0


def test_phase_split() -> None:
    assert phase_split(16, EarlyStopParams(warmup=4)) == (4, 12)
    assert phase_split(3, EarlyStopParams(warmup=4)) == (3, 0)
    assert phase_split(16, EarlyStopParams(warmup=4, threshold=1.0)) == (0, 16)


def test_backends_that_cannot_stop_early_say_so() -> None:
    from ttscale.sampling.backends.registry import make_sampler

    config = SamplingConfig(max_tokens=64, early_stop=EarlyStopParams(window=8))
    for backend in ("replay", "ray"):
        with pytest.raises(ConfigError, match="early_stop.*vllm, hf, openai") as info:
            make_sampler(backend, "x", config)
        assert info.value.value == backend


def test_cli_errors_name_the_options(tmp_path: Path) -> None:
    def run(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ttscale", "sample", "-o", str(tmp_path / "b.jsonl"), "--limit", "1", "-q", *flags],
                              capture_output=True, text=True, cwd=REPO, timeout=120)

    for flags, message in [
        (("--backend", "replay", "-m", "bank.jsonl", "--early-stop-eta", "10", "--early-stop-window", "8"), "--early-stop-* with --backend='replay'"),
        (("--backend", "hf", "-m", "arith-tiny", "--early-stop-eta", "0"), "--early-stop-eta=0.0: expected a number > 0"),
        (("--backend", "hf", "-m", "arith-tiny", "--early-stop-window", "500"), "--early-stop-window=500: expected at most max_tokens (160)"),
    ]:
        done = run(*flags)
        assert done.returncode != 0
        assert message in done.stderr
        assert "Traceback" not in done.stderr


# -- bank and votes -------------------------------------------------------------------------------

def _stopped_bank(path: Path) -> Path:
    good = [make_sample("First: 45 + 12 = 57\n#### 5", tokens=9, logprob=-2.0, finish="stop", latency=0.1, seed=3,
                        lowest_group_confidence=12.5) for _ in range(2)]
    bad = [make_sample("First: 45 + 12 = 57\n#### 7", tokens=8, logprob=-6.0, finish=LOW_CONFIDENCE, latency=0.1, seed=7,
                       early_stop_threshold=12.4) for _ in range(3)]
    with BankWriter(path) as writer:
        writer.append(Record(id="p1", problem="q", reference="5", samples=good + bad))
    return path


def test_stopped_traces_round_trip_through_the_bank(tmp_path: Path) -> None:
    from ttscale.records.bank import read_bank

    samples = read_bank(_stopped_bank(tmp_path / "bank.jsonl")).records[0].samples
    stopped = [s for s in samples if s.finish == LOW_CONFIDENCE]
    assert len(stopped) == 3
    for s in stopped:
        assert s.answer is None and s.tokens == 8 and s.text.endswith("#### 7")
        assert s.model_extra == {"early_stop_threshold": 12.4, "partial_answer": "7"}
    assert samples[0].answer == "5" and samples[0].model_extra == {"lowest_group_confidence": 12.5}


def test_stopped_traces_do_not_vote(tmp_path: Path) -> None:
    from ttscale import evaluate, read_bank

    bank = read_bank(_stopped_bank(tmp_path / "bank.jsonl"))
    result = evaluate(bank, ["majority", "confidence-weighted"], k=[5]).to_json()
    # Three stopped traces would outvote the two finished ones for "7" if they voted.
    assert result["policies"]["majority"]["accuracy"] == [1.0]
    assert result["policies"]["confidence-weighted"]["accuracy"] == [1.0]
    assert result["tokens"] == [42.0]  # their tokens are still paid


def test_stopped_traces_vote_with_their_partial_answers_when_asked(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ttscale import evaluate, read_bank
    from ttscale.cli.app import app

    path = _stopped_bank(tmp_path / "bank.jsonl")
    counted = read_bank(path, count_stopped=True)
    assert counted.count_stopped and counted.candidates[0].counts().tolist() == [2, 3]  # "5" twice, partial "7" thrice
    assert evaluate(counted, ["majority"], k=[5]).to_json()["policies"]["majority"]["accuracy"] == [0.0]
    runner = CliRunner()
    default = json.loads(runner.invoke(app, ["eval", str(path), "--json"]).stdout)
    asked = json.loads(runner.invoke(app, ["eval", str(path), "--json", "--count-stopped"]).stdout)
    assert default["policies"]["majority"]["accuracy"][-1] == 1.0 and asked["policies"]["majority"]["accuracy"][-1] == 0.0


# -- transformers -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hf_sampler():  # type: ignore[no-untyped-def]
    pytest.importorskip("transformers")
    from ttscale.sampling.backends.hf import HFSampler

    return HFSampler(MODEL)


def _hf(sampler, **kwargs):  # type: ignore[no-untyped-def]
    prompt = f"Question: {PROMPT_PROBLEM}\nAnswer:\n"
    return sampler.generate([prompt], n=6, temperature=1.3, max_new_tokens=160, seed=11, **kwargs)[0]


def test_transformers_stops_traces_below_a_threshold_that_must_trigger(hf_sampler) -> None:  # type: ignore[no-untyped-def]
    plain = _hf(hf_sampler)
    stopped = _hf(hf_sampler, early_stop=EarlyStopParams(window=6, threshold=1e6))
    assert min(g.tokens for g in plain) > 6
    for g in stopped:
        assert g.finish == LOW_CONFIDENCE and g.tokens == 6 and g.early_stop_threshold == 1e6
    # Same seed, nothing stopped: the monitor and its warpers sample exactly what generate's own do.
    never = _hf(hf_sampler, early_stop=EarlyStopParams(window=6, threshold=-1e6))
    assert [g.text for g in never] == [g.text for g in plain]
    assert [g.finish for g in never] == [g.finish for g in plain]


def test_transformers_calibrates_on_warmup_traces(hf_sampler) -> None:  # type: ignore[no-untyped-def]
    gens = _hf(hf_sampler, early_stop=EarlyStopParams(window=6, warmup=3, eta=100))
    warm, tracked = gens[:3], gens[3:]
    lowest = [g.lowest_group_confidence for g in warm]
    assert all(v is not None and v > 0 for v in lowest)
    assert {g.early_stop_threshold for g in tracked} == {min(lowest)}  # eta 100: the lowest warm-up value
    assert all(g.lowest_group_confidence is None for g in tracked)


def test_cli_hf_bank_has_stopped_traces(tmp_path: Path) -> None:
    out = tmp_path / "bank.jsonl"
    done = subprocess.run([sys.executable, "-m", "ttscale", "sample", "--backend", "hf", "-m", "arith-tiny", "-o", str(out),
                           "--limit", "2", "-n", "4", "-q", "--json", "--early-stop-threshold", "1e6", "--early-stop-window", "5"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["early_stop"]["threshold"] == 1e6 and summary["stopped"] == 8
    samples = [s for line in out.read_text().splitlines() for s in json.loads(line)["samples"]]
    assert len(samples) == 8
    assert all(s["finish"] == LOW_CONFIDENCE and s["tokens"] == 5 and s["answer"] is None for s in samples)


# -- vLLM -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vllm_engine():  # type: ignore[no-untyped-def]
    pytest.importorskip("vllm")
    from ttscale.cli.sampling_options import cpu_engine_defaults
    from ttscale.early_stop.vllm_processor import EarlyStopLogitsProcessor
    from ttscale.sampling.backends.vllm import in_process

    in_process()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    import vllm

    llm = vllm.LLM(model=str(MODEL), **cpu_engine_defaults(), logits_processors=[EarlyStopLogitsProcessor])
    yield llm
    del llm


def _vllm(llm, early_stop: EarlyStopParams | None, n: int = 6):  # type: ignore[no-untyped-def]
    from ttscale.sampling.backends.vllm import VLLMSampler

    config = SamplingConfig(template="arith", temperature=1.3, max_tokens=160, seed=5, early_stop=early_stop)
    sampler = VLLMSampler(str(MODEL), config, llm=llm)
    return sampler.generate([SampleRequest("a", PROMPT_PROBLEM, n, 1234), SampleRequest("b", "Start with 88. Subtract 9. What is the result?", n, 99)])


@pytest.mark.vllm
def test_vllm_engine_ends_tracked_requests_early(vllm_engine) -> None:  # type: ignore[no-untyped-def]
    full = _vllm(vllm_engine, None)
    stopped = _vllm(vllm_engine, EarlyStopParams(window=6, threshold=1e6))
    for f, s in zip(full, stopped):
        assert min(c.tokens for c in f.candidates) > 6
        for fc, sc in zip(f.candidates, s.candidates):
            # The engine generated 6 tokens (5 of the trace and the marker), not the whole trace.
            assert sc.finish == LOW_CONFIDENCE and sc.tokens == 6 and sc.answer is None
            assert fc.text.startswith(sc.text) and len(sc.text) < len(fc.text)  # same seeds: a prefix
        assert s.completion_tokens == 6 * len(s.candidates) < f.completion_tokens
    never = _vllm(vllm_engine, EarlyStopParams(window=6, threshold=-1e6))
    assert [c.text for r in never for c in r.candidates] == [c.text for r in full for c in r.candidates]


@pytest.mark.vllm
def test_vllm_calibrated_run_into_a_bank(vllm_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from ttscale.records.bank import read_bank
    from ttscale.sampling.backends.vllm import VLLMSampler
    from ttscale.sampling.driver import run_sampling
    from test_samplers import arith_problems

    es = EarlyStopParams(window=8, warmup=4, eta=10)
    config = SamplingConfig(template="arith", temperature=1.3, max_tokens=160, seed=0, early_stop=es)
    sampler = VLLMSampler(str(MODEL), config, llm=vllm_engine)
    stats = run_sampling(sampler, arith_problems(6), tmp_path / "bank.jsonl", 12)
    records = read_bank(tmp_path / "bank.jsonl").records
    assert stats.samples == 72 and len(records) == 6
    stopped = 0
    for rec in records:
        warm, tracked = rec.samples[:4], rec.samples[4:]
        lowest = [s.model_extra["lowest_group_confidence"] for s in warm]
        assert all(s.finish != LOW_CONFIDENCE for s in warm)
        assert {s.model_extra["early_stop_threshold"] for s in tracked} == {max(lowest)}  # eta 10 of 4: the best one
        stopped += sum(s.finish == LOW_CONFIDENCE for s in tracked)
        assert all(s.answer is None for s in tracked if s.finish == LOW_CONFIDENCE)
    assert stopped > 0  # DeepConf-low stops most traces below the best warm-up trace


@pytest.mark.vllm
def test_replay_on_stored_token_confidences_stops_what_the_engine_stopped(vllm_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A bank sampled in full with ``token_confidence`` and replayed offline stops the same traces, at
    the same token, as the online run with the same seeds (the engine's own stops)."""
    from ttscale.early_stop.trajectory import Trace, decode_confidences, replay_early_stop
    from ttscale.records.bank import read_bank
    from ttscale.sampling.backends.vllm import VLLMSampler
    from ttscale.sampling.driver import run_sampling
    from test_samplers import arith_problems

    base = dict(template="arith", temperature=1.3, max_tokens=160, seed=0)
    es = EarlyStopParams(window=8, warmup=4, eta=10)
    full = VLLMSampler(str(MODEL), SamplingConfig(**base, token_confidence=20), llm=vllm_engine)
    run_sampling(full, arith_problems(6), tmp_path / "full.jsonl", 12)
    online = VLLMSampler(str(MODEL), SamplingConfig(**base, early_stop=es), llm=vllm_engine)
    run_sampling(online, arith_problems(6), tmp_path / "online.jsonl", 12)
    stopped = 0
    for f, o in zip(read_bank(tmp_path / "full.jsonl").records, read_bank(tmp_path / "online.jsonl").records):
        traces = [decode_confidences(s.token_confidence or "") for s in f.samples]
        assert [t.size for t in traces] == [s.tokens for s in f.samples]
        replay = replay_early_stop([Trace.of(t, es.window) for t in traces], eta=es.eta, warmup=es.warmup)
        assert replay.threshold == pytest.approx(o.samples[4].model_extra["early_stop_threshold"], rel=1e-5)
        assert replay.stopped.tolist() == [s.finish == LOW_CONFIDENCE for s in o.samples]
        assert replay.tokens.tolist() == [s.tokens for s in o.samples]
        stopped += int(replay.stopped.sum())
    assert stopped > 0


@pytest.mark.vllm
def test_api_on_the_vllm_engine_calibrates_once_per_question(vllm_engine) -> None:  # type: ignore[no-untyped-def]
    """``TTScale(engine=..., early_stop=...)`` drawing in rounds of 2: the first 3 traces of each
    question are its warm-up (over two rounds), every later trace is held to their threshold."""
    from ttscale import TTScale

    es = {"eta": 10, "window": 8, "warmup": 3}
    budget = {"samples": 6, "pilot": 2, "step": 2, "tokens": 10**6}  # a token cap: drawn in rounds, not adaptive
    with TTScale(engine=vllm_engine, early_stop=es, budget=budget, seed=2,
                 sampling={"template": "arith", "temperature": 1.3, "max_tokens": 160}) as tts:
        sols = tts.solve_many([PROMPT_PROBLEM, "Start with 88. Subtract 9. What is the result?"])
    for sol in sols:
        assert sol.samples == 6 and sol.requests == 3
        lowest = [(c.model_extra or {}).get("lowest_group_confidence") for c in sol.candidates[:3]]
        assert all(v is not None for v in lowest)
        limit = calibrate_threshold(lowest, 10)
        assert {(c.model_extra or {}).get("early_stop_threshold") for c in sol.candidates[3:]} == {limit}
        assert sol.early_stop is not None and sol.early_stop["warmup"] == 3 and sol.early_stop["threshold"] == limit
        assert sol.early_stop["stopped"] == sum(c.finish == LOW_CONFIDENCE for c in sol.candidates[3:])
        assert sum(sol.vote.values()) <= 6 - sol.early_stop["stopped"]
