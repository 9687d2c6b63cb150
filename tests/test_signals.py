"""Signal-reading stopping: calibration on real bank files, weighted votes, fallback to votes, held-out savings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ttscale.adaptive.exact_replay import VoteStates, bayes_frontier, samples_to_reach
from ttscale.adaptive.signals import (
    SIGNAL_RULE,
    available_signals,
    calibrate,
    crossfit_weights,
    weighted_rule_points,
)
from ttscale.adaptive.simulate import replay_pool, run_rule
from ttscale.adaptive.stopping import SettledMajority
from ttscale.answers.grading import load_candidates

REPO = Path(__file__).resolve().parents[1]
VOTES = REPO / "evals" / "data" / "votes-default-T1.3.jsonl"


def signal_bank(path: Path, direction: float, questions: int = 120, n: int = 12, seed: int = 0) -> Path:
    """Questions whose correct samples have log-prob shifted by ``direction`` (0: pure noise) and lengths that carry nothing."""
    rng = np.random.default_rng(seed)
    with path.open("w") as fh:
        for q in range(questions):
            p = rng.uniform(0.2, 0.8)
            samples = []
            for _ in range(n):
                ok = rng.random() < p
                answer = "7" if ok else str(rng.integers(1, 4))
                samples.append({"answer": answer, "tokens": int(rng.integers(20, 40)),
                                "mean_logprob": float(rng.normal(-1.0 + (direction if ok else 0.0), 0.3))})
            fh.write(json.dumps({"id": f"q{q}", "problem": "x", "reference": "7", "samples": samples}) + "\n")
    return path


@pytest.mark.parametrize("direction", [0.4, -0.4])
def test_calibration_finds_the_direction_and_drops_noise(tmp_path: Path, direction: float) -> None:
    _, problems = load_candidates(signal_bank(tmp_path / "b.jsonl", direction))
    assert available_signals(problems) == ["logprob", "length"]
    model = calibrate(problems)
    assert model.names == ("logprob",) and np.sign(model.beta[0]) == np.sign(direction)
    assert "length" in dict(model.dropped) and "not informative" in dict(model.dropped)["length"]
    assert dict(model.dropped)["reward"] == "not in the bank"


def test_uninformative_signals_fall_back_to_plain_votes(tmp_path: Path) -> None:
    _, problems = load_candidates(signal_bank(tmp_path / "b.jsonl", 0.0))
    model = calibrate(problems)
    assert not model.informative and model.names == ()
    pool = replay_pool(problems, 12, permutations=4, seed=1)
    weights, _ = crossfit_weights(problems, pool)
    assert np.all(weights == 1.0)


def test_unit_weights_are_exactly_the_default_rule(tmp_path: Path) -> None:
    _, problems = load_candidates(signal_bank(tmp_path / "b.jsonl", 0.4, seed=3))
    pool = replay_pool(problems, 12, permutations=6, seed=2)
    grid = [0.7, 0.9, 0.97]
    weighted = weighted_rule_points(pool, np.ones(pool.sequences.shape), grid)
    for point, c in zip(weighted, grid):
        plain = run_rule(pool, SettledMajority(c))
        assert point.mean_samples == pytest.approx(plain.mean_samples, abs=1e-12)
        assert point.accuracy == pytest.approx(plain.accuracy, abs=1e-12)


def test_log_probs_of_the_embedded_model_beat_the_vote_only_bound_held_out() -> None:
    """On the embedded model's vote bank (committed), weights calibrated on other questions reach
    majority@8 - 0.1 point with fewer mean samples than any vote-only rule can (the exact bound)."""
    _, problems = load_candidates(VOTES)
    problems = problems[:200]
    K = 8
    pool = replay_pool(problems, K, permutations=10, seed=0)
    target = pool.reference - 0.001
    weights, model = crossfit_weights(problems, pool)
    assert "logprob" in model.names
    points = weighted_rule_points(pool, weights, SettledMajority.grid)
    with_signals = samples_to_reach([(p.mean_samples, p.accuracy) for p in points], target)
    bound = samples_to_reach(bayes_frontier(VoteStates(problems, K)), target)
    assert with_signals is not None and bound is not None
    assert with_signals < bound
    tokens = [p.mean_tokens for p in points]
    assert all(t is not None and t > 0 for t in tokens)


def test_simulate_reports_the_signal_rule_only_when_the_bank_has_signals(tmp_path: Path) -> None:
    from ttscale.planning.simulation import simulate_problems

    _, with_signals = load_candidates(signal_bank(tmp_path / "b.jsonl", 0.4))
    report = simulate_problems(with_signals, max_k=12, permutations=3).to_json()
    assert SIGNAL_RULE in report["rules"] and report["rules"][SIGNAL_RULE][0]["signals"] == "logprob"
    bare = tmp_path / "bare.jsonl"
    bare.write_text("".join(json.dumps({"id": f"q{i}", "reference": "1", "samples": [{"answer": a} for a in "1121"]}) + "\n"
                            for i in range(5)))
    _, plain = load_candidates(bare)
    assert SIGNAL_RULE not in simulate_problems(plain, max_k=4, permutations=3).to_json()["rules"]


def test_weighted_votes_refuse_a_table_too_large_and_simulate_falls_back_to_votes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Weighing votes builds a dense (orders x samples x answers) table: past DENSE_VOTE_CELLS it is a
    clear EstimationError, and simulate leaves the signal rule out instead of allocating it."""
    import ttscale.adaptive.signals as signals
    from ttscale.errors import EstimationError
    from ttscale.planning.simulation import simulate_problems

    _, problems = load_candidates(signal_bank(tmp_path / "b.jsonl", 0.4, questions=40))
    pool = replay_pool(problems, 12, permutations=4, seed=0)
    cells = pool.sequences.size * (signals.weighted_vote_classes(pool) + 1)
    monkeypatch.setattr(signals, "DENSE_VOTE_CELLS", cells - 1)
    assert not signals.fits_weighted_votes(pool)
    with pytest.raises(EstimationError, match="too many distinct answers"):
        weighted_rule_points(pool, np.ones(pool.sequences.shape), [0.9])
    report = simulate_problems(problems, max_k=12, permutations=4, seed=0)
    assert SIGNAL_RULE not in report.to_json()["rules"] and "default" in report.to_json()["rules"]
    monkeypatch.setattr(signals, "DENSE_VOTE_CELLS", cells)
    assert SIGNAL_RULE in simulate_problems(problems, max_k=12, permutations=4, seed=0).to_json()["rules"]
