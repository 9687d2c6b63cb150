"""Dataset-level planning and `ttscale plan`: known curves, target/budget answers, bad input, JSON without NaN."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.special import betaln
from typer.testing import CliRunner

from ttscale.answers.candidates import Candidates
from ttscale.cli.app import app
from ttscale.errors import EstimationError, TTScaleError
from ttscale.planning.plan import (
    CostModel,
    FittedCurve,
    fit_curve,
    n_grid,
    plan,
    saturation_point,
)

runner = CliRunner()
A, B = 0.6, 1.2  # per-question solve rate p ~ Beta(A, B)


def true_pass(k: np.ndarray) -> np.ndarray:
    return 1 - np.exp(betaln(A, B + k) - betaln(A, B))


def beta_bank(questions: int = 400, n: int = 16, seed: int = 0) -> list[Candidates]:
    rng = np.random.default_rng(seed)
    out = []
    for p in rng.beta(A, B, size=questions):
        ok = rng.random(n) < p
        # correct samples vote class 0; wrong ones scatter over 1..5
        cls = np.where(ok, 0, rng.integers(1, 6, size=n))
        out.append(Candidates(classes=cls, class_correct=np.array([True] + [False] * 5)))
    return out


def write_bank(path: Path, pools: list[list[str | None]], reference: str = "1") -> Path:
    with open(path, "w") as fh:
        for i, answers in enumerate(pools):
            fh.write(json.dumps({"id": f"q{i}", "problem": "x" * 40, "reference": reference,
                                 "samples": [{"answer": a} for a in answers]}) + "\n")
    return path


@pytest.fixture(scope="module")
def pass_curve() -> FittedCurve:
    return fit_curve(beta_bank(), "pass", max_n=256)


def test_pass_curve_recovers_known_curve(pass_curve: FittedCurve) -> None:
    for k in (1, 16, 64, 256):
        mean, low, high = pass_curve.at(k)
        assert abs(mean - true_pass(np.array([k]))[0]) < 0.04
        assert low <= mean <= high


def test_target_and_budget_answers(pass_curve: FittedCurve) -> None:
    probs = beta_bank()
    t = 0.8
    res = plan(probs, target=t, curve=pass_curve)
    reach = pass_curve.n[pass_curve.mean >= t]
    assert res.recommended_n == int(reach[0])
    # the truth crosses the target near the recommended N
    assert true_pass(np.array([res.recommended_n * 2]))[0] > t - 0.03
    assert true_pass(np.array([max(res.recommended_n // 2, 1)]))[0] < t + 0.03
    res = plan(probs, budget_samples=8, curve=pass_curve)
    assert res.recommended_n == 8 and abs(res.row(8)["accuracy"] - true_pass(np.array([8]))[0]) < 0.04
    cost = CostModel(prompt_tokens=50, output_tokens=100)
    res = plan(probs, budget_tokens=850 * 400, cost=cost, curve=pass_curve)  # (850 - 50) / 100 = 8 per question
    assert res.recommended_n == 8 and res.row(8)["tokens_per_question"] == 850
    res = plan(probs, budget_tokens=850, per_question=True, cost=cost, curve=pass_curve)
    assert res.recommended_n == 8
    assert saturation_point(pass_curve, 1e-4) == res.saturation_n
    json.dumps(res.to_json(), allow_nan=False)


def test_target_above_ceiling_and_bad_budgets(pass_curve: FittedCurve) -> None:
    probs = beta_bank()
    ceiling, half = pass_curve.ceiling
    with pytest.raises(EstimationError, match=rf"target 0.999 is above the predicted ceiling {ceiling:.3f} \+- {half:.3f}"):
        plan(probs, target=0.999, curve=pass_curve)
    with pytest.raises(TTScaleError, match="less than one sample"):
        plan(probs, budget_tokens=10, cost=CostModel(prompt_tokens=50, output_tokens=100), curve=pass_curve)
    with pytest.raises(TTScaleError, match="--output-tokens"):
        plan(probs, budget_tokens=1e6, curve=pass_curve)
    with pytest.raises(TTScaleError, match="at most one"):
        plan(probs, target=0.5, budget_samples=3, curve=pass_curve)


def test_bad_banks_give_clear_errors() -> None:
    ones = [Candidates(classes=np.zeros(1, dtype=int), class_correct=np.array([True]))] * 5
    with pytest.raises(EstimationError, match="too few samples"):
        fit_curve(ones)
    right = [Candidates(classes=np.zeros(4, dtype=int), class_correct=np.array([True]))] * 5
    with pytest.raises(EstimationError, match="every sample of every question is correct"):
        fit_curve(right)
    wrong = [Candidates(classes=np.array([0, 1, -1, 0]), class_correct=np.array([False, False]))] * 5
    with pytest.raises(EstimationError, match="no sample of any question is correct"):
        fit_curve(wrong)
    assert n_grid(100, 20).tolist()[:20] == list(range(1, 21)) and n_grid(100)[-1] == 100


@pytest.mark.parametrize(
    "pools, args, message",
    [
        ([["1"]] * 4, [], "too few samples"),
        ([["1", "1", "1"]] * 4, [], "every sample of every question is correct"),
        ([["2", "3", None]] * 4, [], "no sample of any question is correct"),
        ([["2", "3", "3", "2"], ["1", "1", "2", "3"]] * 4, ["--target", "0.99", "--policy", "pass", "--max-n", "16"],
         "target 0.99 is above the predicted ceiling"),
        ([["1", "2", "2", "3"]] * 4, ["--target", "1.5"], "target=1.5"),
        ([["1", "2", "2", "3"]] * 4, ["--budget-dollars", "3"], "--output-tokens"),
    ],
)
def test_cli_errors_exit_2_without_traceback(tmp_path: Path, pools, args, message) -> None:
    bank = write_bank(tmp_path / "bank.jsonl", pools)
    result = runner.invoke(app, ["plan", str(bank), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_cli_plan_json_and_plot(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pools = [[str(a) for a in rng.choice(["1", "2", "3"], size=6, p=p)] for p in rng.dirichlet([1, 1, 1], size=25)]
    bank = write_bank(tmp_path / "bank.jsonl", pools)
    result = runner.invoke(app, ["plan", str(bank), "--budget-samples", "8", "--max-n", "64", "--json",
                                 "--output-tokens", "200", "--price-in", "1", "--price-out", "4",
                                 "--active-params", "1e9", "--kv-bytes", "1e5"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    json.dumps(data, allow_nan=False)
    assert data["recommended"]["n"] == 8 and data["policy"] == "majority"
    assert data["recommended"]["dollars_per_question"] > 0 and data["recommended"]["eflops_per_question"] > 0
    result = runner.invoke(app, ["plan", str(bank), "--target", "0.3", "--max-n", "64", "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    assert "recommended N" in result.output and (tmp_path / "p.png").stat().st_size > 1000


def test_cli_simulate_json(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    pools = [[str(a) if rng.random() > 0.1 else None for a in rng.choice(["1", "2", "3"], size=8, p=p)]
             for p in rng.dirichlet([0.5, 0.5, 0.5], size=20)]
    pools.append(["1", "1", "1"])  # too short for K = 8: left out
    bank = write_bank(tmp_path / "bank.jsonl", pools)
    result = runner.invoke(app, ["plan", str(bank), "--simulate", "--json", "--k", "8", "--permutations", "3"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    json.dumps(data, allow_nan=False)
    assert data["reference"]["k"] == 8 and 0 <= data["reference"]["accuracy"] <= 1
    assert data["dropped_questions"] == 1
    assert {"asc", "esc", "ppr-1v1", "first-to-ahead", "alloc-online", "alloc-static"} <= set(data["rules"])
    for pts in data["rules"].values():
        for p in pts:
            assert set(p) >= {"param", "accuracy", "stderr", "mean_samples", "mean_tokens"}
            assert p["mean_tokens"] is None and 0 <= p["accuracy"] <= 1 and p["mean_samples"] <= 8
    # Each rule's cheapest setting reaching the default target (majority@K - 0.1 point).
    cheap = data["cheapest"]
    assert cheap["target"] == pytest.approx(data["reference"]["accuracy"] - 0.001)
    for name, pts in data["rules"].items():
        reaching = [p for p in pts if p["accuracy"] >= cheap["target"]]
        if reaching:
            assert cheap["rules"][name]["mean_samples"] == min(p["mean_samples"] for p in reaching)
        else:
            assert cheap["rules"][name] is None
    result = runner.invoke(app, ["plan", str(bank), "--simulate", "--k", "8", "--permutations", "3", "--target", "0.05"])
    assert result.exit_code == 0, result.output
    assert "Fewest mean samples per question reaching 5.00%" in result.output
    result = runner.invoke(app, ["plan", str(bank), "--simulate", "--target", "40"])
    assert result.exit_code != 0 and "--target=40" in result.output and "Traceback" not in result.output
    # --exact: count-reading rules over every order, and the vote-only bound below every rule
    result = runner.invoke(app, ["plan", str(bank), "--simulate", "--exact", "--json", "--k", "8", "--permutations", "3"])
    assert result.exit_code == 0, result.output
    ex = json.loads(result.stdout)["exact"]
    assert set(ex["rules"]) == {"asc", "ppr-1v1", "first-to-ahead"} and ex["states"] > 8
    assert all(p["stderr"] == 0 and p["mean_samples"] <= 8 for pts in ex["rules"].values() for p in pts)
    bound = ex["bound"]["plurality_answer"]
    assert bound is not None and bound <= min(p["mean_samples"] for p in ex["cheapest"].values() if p is not None) + 1e-9
    assert ex["bound"]["any_answer"] <= bound + 1e-9
    dep = ex["deploy"]
    if dep is not None:  # the live adaptive budget reaching the target, exactly
        best = dep["best"]
        assert best["budget"]["adaptive"] and best["budget"]["samples"] == 8 and best["accuracy"] >= ex["bound"]["target"]
        assert best["mean_samples"] >= bound - 1e-9
        if "default_rounds" in dep:
            assert (dep["default_rounds"]["budget"]["pilot"], dep["default_rounds"]["budget"]["step"]) == (4, 2)
            assert dep["default_rounds"]["mean_samples"] >= best["mean_samples"] - 1e-9
    result = runner.invoke(app, ["plan", str(bank), "--simulate", "--exact", "--k", "8", "--permutations", "3"])
    assert result.exit_code == 0 and "No vote-only rule or allocator reaches" in result.output
    # all-correct banks simulate fine (nothing to fit): accuracy 1 everywhere, no NaN
    bank = write_bank(tmp_path / "right.jsonl", [["1"] * 4] * 3)
    result = runner.invoke(app, ["plan", str(bank), "--simulate", "--json", "--permutations", "2"])
    assert result.exit_code == 0, result.output
    assert all(p["accuracy"] == 1 for pts in json.loads(result.stdout)["rules"].values() for p in pts)


def test_plan_for_a_reward_policy_on_the_math100_bank() -> None:
    """Presets beyond majority/pass go through evaluate + held-out curve choice (non-monotone aware)."""
    bank = Path(__file__).resolve().parents[2] / "shared/data/banks/math100_qwen_rm.jsonl"
    if not bank.is_file():
        pytest.skip("../shared/data is not beside the repository")
    result = runner.invoke(app, ["plan", str(bank), "--policy", "weighted-majority", "--budget-samples", "8", "--max-n", "64", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["policy"] == "weighted-majority" and data["method"] in ("power-law+floor", "exp-power-law")
    observed = dict(zip(data["observed"]["k"], data["observed"]["accuracy"]))
    assert abs(observed[8] - 0.95) < 0.01  # weighted majority@8 on this bank (ttscale eval: 95.00)


def test_pass_extrapolation_beyond_the_data_is_flagged() -> None:
    # Beta(0.6, 1.2) puts many problems near p = 0: with 16 samples a share of them is never solved,
    # so pass@N far beyond 16 rests on the model's assumption about those problems.
    probs = beta_bank()
    curve = fit_curve(probs, "pass", max_n=1024)
    never = sum(int(p.correct.sum() == 0) for p in probs) / len(probs)
    assert never > 0.02 and curve.supported_n is not None
    assert curve.supported_n == pytest.approx(0.02 * len(probs) * 16 / 3)  # rule of three over their trials
    inside = plan(probs, budget_samples=int(curve.supported_n), curve=curve)
    assert not any("extrapolation" in n for n in inside.notes)
    far = plan(probs, budget_samples=1024, curve=curve)
    note = next(n for n in far.notes if "extrapolation the data do not pin" in n)
    assert f"N <= {int(curve.supported_n)}" in note
    json.dumps(far.to_json(), allow_nan=False)


def test_a_curve_that_misses_the_observed_points_is_flagged() -> None:
    probs = beta_bank()
    good = fit_curve(probs, "pass", max_n=256)
    assert not any("points off" in n for n in plan(probs, budget_samples=8, curve=good).notes)
    # the same curve shifted 3 points up: the check against the bank's exact pass@16 catches it
    shifted = FittedCurve(good.policy, good.method, good.observed_k, good.observed_acc, good.n,
                          np.clip(good.mean + 0.03, 0, 1), good.low, good.high, good.level)
    note = next(n for n in plan(probs, budget_samples=8, curve=shifted).notes if "points off" in n)
    base = good.at(16)[0] - good.observed_acc[-1]  # the honest fit's own small miss
    assert f"{100 * (base + 0.03):+.1f} points off the bank's exact pass@16" in note
