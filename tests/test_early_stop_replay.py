"""Online early stop replayed offline: the stored per-token confidences, the replay of one
question against the online tracker, and ``ttscale simulate``'s ``deepconf-online`` rule on a
bank written to a real file. (The replay against the real vLLM engine's online run is in
tests/test_early_stop.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ttscale.cli.app import app
from ttscale.early_stop import GroupConfidenceTracker, below_threshold, calibrate_threshold
from ttscale.early_stop.trajectory import Trace, decode_confidences, encode_confidences, replay_early_stop
from ttscale.records.bank import BankWriter
from ttscale.records.models import Record, Sample

runner = CliRunner()


def test_confidences_round_trip_as_float32_and_bad_fields_are_named(tmp_path: Path) -> None:
    values = np.random.default_rng(0).uniform(0, 20, size=37)
    text = encode_confidences(values)
    assert len(text) <= 4 * 37 * 4 / 3 + 4  # base64 of 4 bytes a token
    assert np.array_equal(decode_confidences(text), values.astype(np.float32).astype(np.float64))
    assert decode_confidences(encode_confidences([])).size == 0
    for bad, expected in (("not base64!", "base64"), (encode_confidences([1.0])[:-4] + "AAA=", "whole float32"),
                          (encode_confidences([1.0, float("nan")]), "finite"), (encode_confidences([-1.0]), ">= 0")):
        bank = tmp_path / "bad.jsonl"
        line = {"id": "q1", "reference": "1", "samples": [{"answer": "1", "token_confidence": "AACAPw=="},
                                                          {"answer": "1", "token_confidence": bad}]}
        bank.write_text(json.dumps(line) + "\n")
        result = runner.invoke(app, ["simulate", str(bank)])
        assert result.exit_code == 2, result.output
        assert "line 1" in result.output and "samples.1.token_confidence" in result.output and expected in result.output
        assert "Traceback" not in result.output


def _online_stop(values: np.ndarray, window: int, threshold: float) -> int | None:
    """Tokens the online tracker lets a trace generate before it stops it (None: never)."""
    tracker = GroupConfidenceTracker(window)
    for i, v in enumerate(values.tolist()):
        if below_threshold(tracker.push(v), threshold):
            return i + 1
    return None


@pytest.mark.parametrize("window", [1, 4, 8])
def test_replayed_stops_equal_the_online_tracker(window: int) -> None:
    rng = np.random.default_rng(window)
    traces = [rng.uniform(5, 15, size=int(rng.integers(1, 60))) for _ in range(200)]
    for threshold in (6.0, 9.0, 10.0, 12.0):
        for t in traces:
            assert Trace.of(t, window).stop_at(threshold) == _online_stop(t, window, threshold)
    # A trace identical to the one that set the threshold reaches it exactly: it is not stopped.
    t = traces[0]
    prepared = Trace.of(t, window)
    assert prepared.lowest is not None and prepared.stop_at(prepared.lowest) is None


def test_replay_calibrates_on_the_warmup_traces_and_cuts_the_rest() -> None:
    window = 2
    steady = np.full(10, 10.0)  # lowest group 10
    weaker = np.full(10, 8.0)  # lowest group 8
    dip = np.array([10.0, 10.0, 4.0, 4.0, 10.0, 10.0])  # groups 10, 7, 4, 7, 10 after tokens 2-6
    traces = [Trace.of(x, window) for x in (steady, weaker, dip, steady, dip)]
    low = replay_early_stop(traces, eta=50, warmup=2)  # top half of the warm-up: threshold 10
    assert low.threshold == calibrate_threshold([10.0, 8.0], 50) == 10.0
    assert low.stopped.tolist() == [False, False, True, False, True]
    assert low.tokens.tolist() == [10, 10, 3, 10, 3]  # the first window below 10 (tokens 2-3, mean 7) ends at token 3
    high = replay_early_stop(traces, eta=100, warmup=2)  # keep both: threshold 8, still above 7
    assert high.threshold == 8.0 and high.stopped.tolist() == [False, False, True, False, True]
    assert high.tokens.tolist() == [10, 10, 3, 10, 3]
    shallow = [Trace.of(x, window) for x in (steady, weaker, np.array([10.0, 10.0, 7.0, 10.0, 10.0]))]
    assert replay_early_stop(shallow, eta=100, warmup=2).stopped.tolist() == [False, False, False]  # 8.5 > 8
    assert replay_early_stop(shallow, eta=50, warmup=2).tokens.tolist() == [10, 10, 3]  # 8.5 < 10
    none = replay_early_stop(traces, eta=10, warmup=5)  # everything is warm-up
    assert not none.stopped.any() and none.tokens.sum() == 10 * 3 + 6 * 2


def _bank(path: Path, questions: int = 30, n: int = 8, seed: int = 0) -> Path:
    """Right traces are confident throughout; wrong ones dip in the middle (as DeepConf assumes)."""
    rng = np.random.default_rng(seed)
    with BankWriter(path) as writer:
        for q in range(questions):
            samples = []
            for _ in range(n):
                right = rng.random() < 0.55
                length = int(rng.integers(30, 50))
                conf = rng.normal(12.0, 0.3, size=length)
                if not right:
                    conf[8:16] -= 4.0
                answer = "1" if right else str(int(rng.integers(2, 4)))
                samples.append(Sample(answer=answer, tokens=length, token_confidence=encode_confidences(conf)))
            writer.append(Record(id=f"q{q}", problem="p", reference="1", samples=samples))
    return path


def test_simulate_replays_the_early_stop_on_a_bank_with_token_confidences(tmp_path: Path) -> None:
    bank = _bank(tmp_path / "bank.jsonl")
    result = runner.invoke(app, ["simulate", str(bank), "--json", "--early-stop-window", "4", "--early-stop-warmup", "3"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    points = data["rules"]["deepconf-online"]
    assert [p["param"] for p in points] == [10.0, 25.0, 50.0, 75.0, 90.0]
    full_tokens = data["rules"]["deepconf-online"][0]["mean_samples"]
    assert full_tokens == 8  # every trace is started
    reference = data["reference"]["accuracy"]
    majority_tokens = max(p["mean_tokens"] for p in data["rules"]["ppr-1v1"])  # a rule that may read all 8
    for p in points:
        assert p["window"] == 4 and p["warmup"] == 3 and 0 < p["stopped"] < 1
        assert p["mean_tokens"] < majority_tokens  # stopped traces pay only up to their stop
        # Wrong traces dip and stop, right ones do not: the survivors' vote is at least as good.
        assert p["accuracy"] >= reference - 0.02
    # Its table lists it among the rules.
    table = runner.invoke(app, ["simulate", str(bank), "--early-stop-window", "4", "--early-stop-warmup", "3"])
    assert table.exit_code == 0 and "deepconf-online" in table.stdout


def test_simulate_without_token_confidences_has_no_early_stop_rule_and_bad_options_are_named(tmp_path: Path) -> None:
    plain = tmp_path / "plain.jsonl"
    with BankWriter(plain) as writer:
        for q in range(5):
            writer.append(Record(id=f"q{q}", reference="1", samples=[Sample(answer=a, tokens=5) for a in "11212"]))
    data = json.loads(runner.invoke(app, ["simulate", str(plain), "--json"]).stdout)
    assert "deepconf-online" not in data["rules"]
    bank = _bank(tmp_path / "bank.jsonl", questions=3)
    for option, value in (("--early-stop-window", "0"), ("--early-stop-warmup", "0")):
        result = runner.invoke(app, ["simulate", str(bank), option, value])
        assert result.exit_code == 2 and option in result.output and "Traceback" not in result.output, result.output
    # On some samples only: the bank reader names the first sample without it.
    half = tmp_path / "half.jsonl"
    half.write_text(json.dumps({"id": "q", "reference": "1", "samples": [
        {"answer": "1", "token_confidence": encode_confidences([1.0, 2.0])}, {"answer": "1"}]}) + "\n")
    result = runner.invoke(app, ["simulate", str(half)])
    assert result.exit_code == 2 and "samples.1.token_confidence" in result.output and "Traceback" not in result.output


def test_sampling_option_is_validated_and_refused_where_it_cannot_work(tmp_path: Path) -> None:
    from ttscale.errors import ConfigError
    from ttscale.sampling.backends.registry import make_sampler
    from ttscale.sampling.sampler import SamplingConfig

    with pytest.raises(ConfigError, match="token_confidence"):
        SamplingConfig(token_confidence=0)
    with pytest.raises(ConfigError, match="token_confidence"):
        SamplingConfig(token_confidence=4, early_stop={"window": 8})
    with pytest.raises(ConfigError, match="token_confidence"):
        make_sampler("hf", "arith-tiny", SamplingConfig(token_confidence=4))
    result = runner.invoke(app, ["sample", "--backend", "hf", "--model", "arith-tiny", "--dataset", "arith", "--limit", "1",
                                 "--n", "2", "--token-confidence", "4", "--out", str(tmp_path / "b.jsonl")])
    assert result.exit_code == 2 and "--token-confidence" in result.output and "Traceback" not in result.output
