"""Reward-reading options of `ttscale plan A B ...`: Best-of-N and reward-weighted majority per bank
whose samples carry rewards, equal to `ttscale eval`'s figures; banks with some or no rewards."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import ttscale
from ttscale.answers.candidates import Candidates
from ttscale.cli.app import app
from ttscale.planning.models import complete_from_pilot

runner = CliRunner()


def write_bank(path: Path, seed: int, questions: int, n: int, p_right: float, tokens: int,
               reward: str | None = "reward", drop: dict[int, int] | None = None) -> Path:
    """A bank where the right answer ("1") is often outvoted by one wrong answer ("2") but carries
    the higher reward: Best-of-N beats majority. ``reward``: where the score goes (``reward``,
    ``rewards.NAME`` or None); ``drop``: question index -> how many of its samples lose their reward."""
    rng = np.random.default_rng(seed)
    drop = drop or {}
    with open(path, "w") as fh:
        for q in range(questions):
            samples = []
            for j in range(n):
                right = rng.random() < p_right
                s: dict = {"answer": "1" if right else str(2 + int(rng.random() < 0.3)), "tokens": tokens}
                score = round(float(rng.normal(0.8 if right else 0.3, 0.1)), 4)
                if reward is not None and j >= drop.get(q, 0):
                    if reward == "reward":
                        s["reward"] = score
                    else:
                        s["rewards"] = {reward.split(".", 1)[1]: score}
                samples.append(s)
            fh.write(json.dumps({"id": f"q{q}", "problem": "x" * 40, "reference": "1", "samples": samples}) + "\n")
    return path


@pytest.fixture()
def rewarded_pair(tmp_path: Path) -> tuple[Path, Path]:
    return (write_bank(tmp_path / "small.jsonl", 0, 40, 8, 0.35, 100),
            write_bank(tmp_path / "large.jsonl", 1, 40, 4, 0.45, 400))


def plan_json(*args: str) -> tuple[dict, str]:
    res = runner.invoke(app, ["plan", *args, "--json"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    return json.loads(lines[-1]), res.stderr


def eval_curve(bank: Path, policy: str, *extra: str) -> dict[int, float]:
    res = runner.invoke(app, ["eval", str(bank), "-p", policy, "--json", *extra])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return dict(zip(out["k"], out["policies"][policy]["accuracy"]))


def by_policy(options: list[dict], bank: Path, name: str) -> dict[int, dict]:
    return {o["n"]: o for o in options if o["bank"] == str(bank) and o["kind"] == "fixed" and o["policy"].startswith(name + "@")}


def test_reward_options_equal_eval(rewarded_pair: tuple[Path, Path]) -> None:
    small, large = rewarded_pair
    plan, _ = plan_json(str(small), str(large), "--cost", f"{small}=0.1,0.1", "--cost", f"{large}=1,1")
    for bank, ns in ((small, [1, 2, 4, 8]), (large, [1, 2, 4])):
        bon = by_policy(plan["options"], bank, "best-of-n")
        wmaj = by_policy(plan["options"], bank, "weighted-majority")
        maj = by_policy(plan["options"], bank, "majority")
        assert sorted(bon) == sorted(wmaj) == ns
        for policy, got in (("best-of-n", bon), ("weighted-majority", wmaj)):
            want = eval_curve(bank, policy)
            for n in ns:
                assert got[n]["accuracy"] == pytest.approx(want[n], abs=1e-12)
                assert got[n]["low"] <= got[n]["accuracy"] <= got[n]["high"]
                # the same N samples as majority@N: the same cost
                assert got[n]["tokens_per_question"] == maj[n]["tokens_per_question"]
                assert got[n]["dollars_per_question"] == maj[n]["dollars_per_question"]
        assert bon[ns[-1]]["accuracy"] > maj[ns[-1]]["accuracy"] + 0.2  # rewards pick the outvoted right answer
    # the frontier and the recommendation weigh them like any other option
    front = [plan["options"][i] for i in plan["frontier"]]
    assert any(o["policy"].startswith("best-of-n@") for o in front)
    rec = plan["options"][plan["recommended"]["option"]]
    assert not rec["policy"].startswith("majority@")
    assert all(o["kind"] == "cascade" and all(p.split("@")[0] in ("asc", "default", "majority") for p in o["policy"].split(">"))
               for o in plan["options"] if isinstance(o["bank"], list))  # cascades stay vote-gated


def test_pilot_predicts_reward_options_from_the_pilot_only(rewarded_pair: tuple[Path, Path], tmp_path: Path) -> None:
    small, large = rewarded_pair
    plan = ttscale.plan_models([small, large], pilot=2, adaptive=False)
    # the first 2 samples per question as a bank of their own: eval's figures are the predictions at N <= 2
    head = tmp_path / "head.jsonl"
    with open(small) as src, open(head, "w") as dst:
        for line in src:
            row = json.loads(line)
            row["samples"] = row["samples"][:2]
            dst.write(json.dumps(row) + "\n")
    pilot_bon, full_bon = eval_curve(head, "best-of-n"), eval_curve(small, "best-of-n")
    opts = {o.policy: o for o in plan.options if o.bank == str(small) and o.kind == "fixed"}
    for n in (1, 2):
        assert opts[f"best-of-n@{n}"].accuracy == pytest.approx(pilot_bon[n], abs=1e-12)
    for n in (1, 2, 4, 8):
        o = opts[f"best-of-n@{n}"]
        assert o.exact == pytest.approx(full_bon[n], abs=1e-12)  # checked against the full bank
        assert 0 <= o.low <= o.accuracy <= o.high <= 1 and math.isfinite(o.accuracy)
    assert opts["best-of-n@8"].accuracy > opts["majority@8"].accuracy  # beyond the pilot too


def test_bank_without_rewards_gets_no_reward_options(rewarded_pair: tuple[Path, Path], tmp_path: Path) -> None:
    small = rewarded_pair[0]
    plain = write_bank(tmp_path / "plain.jsonl", 2, 40, 4, 0.45, 400, reward=None)
    plan, err = plan_json(str(small), str(plain))
    assert not [o for o in plan["options"] if o["bank"] == str(plain) and not o["policy"].startswith("majority@")
                and o["kind"] == "fixed"]
    assert by_policy(plan["options"], small, "best-of-n")
    assert "reward" not in err


def test_rewards_on_some_samples_are_noted_not_fatal(rewarded_pair: tuple[Path, Path], tmp_path: Path) -> None:
    small = rewarded_pair[0]
    partial = write_bank(tmp_path / "partial.jsonl", 1, 40, 4, 0.45, 400, drop={3: 2, 7: 4})
    plan, err = plan_json(str(small), str(partial))
    flat = " ".join(err.split())
    assert f"{partial}: 6 of 160 samples carry no 'reward' (on 1 of 40 questions only some samples have it)" in flat
    assert f"{partial}: 2 of 40 joined questions carry no rewards on their samples: no best-of-n, weighted-majority options" in flat
    assert not by_policy(plan["options"], partial, "best-of-n") and by_policy(plan["options"], small, "best-of-n")
    assert by_policy(plan["options"], partial, "majority")
    # the API reads the file the same way
    api = ttscale.plan_models([small, partial], adaptive=False)
    assert any("6 of 160 samples carry no 'reward'" in n for n in api.notes)
    assert all(math.isfinite(o.accuracy) for o in api.options)


def test_named_rewards_need_scorer(tmp_path: Path) -> None:
    a = write_bank(tmp_path / "a.jsonl", 0, 30, 4, 0.35, 100, reward="rewards.prm")
    b = write_bank(tmp_path / "b.jsonl", 1, 30, 4, 0.45, 300, reward="rewards.prm")
    plan, err = plan_json(str(a), str(b))
    assert not by_policy(plan["options"], a, "best-of-n")
    assert "--scorer prm" in " ".join(err.split())
    plan, _ = plan_json(str(a), str(b), "--scorer", "prm")
    want = eval_curve(a, "best-of-n", "--scorer", "prm")
    got = by_policy(plan["options"], a, "best-of-n")
    assert {n: o["accuracy"] for n, o in got.items()} == pytest.approx({n: want[n] for n in got}, abs=1e-12)


def test_table_and_plot_label_reward_options(rewarded_pair: tuple[Path, Path], tmp_path: Path) -> None:
    small, large = rewarded_pair
    png = tmp_path / "front.png"
    res = runner.invoke(app, ["plan", str(small), str(large), "--plot", str(png)], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "BoN@" in res.stdout and png.stat().st_size > 0


def test_completed_pilot_carries_rewards() -> None:
    rng = np.random.default_rng(0)
    cands = []
    for _ in range(20):
        classes = rng.integers(-1, 3, size=6)
        cands.append(Candidates(classes=classes, class_correct=np.array([True, False, False]),
                                rewards=np.round(rng.normal(size=6), 3)))
    plain = [Candidates(classes=c.classes, class_correct=c.class_correct) for c in cands]
    done, _ = complete_from_pilot(cands, 4, [12] * 20, seed=3)
    bare, _ = complete_from_pilot(plain, 4, [12] * 20, seed=3)
    for c, d, b in zip(cands, done, bare):
        np.testing.assert_array_equal(d.classes, b.classes)  # rewards draw apart: the classes are unchanged
        assert b.rewards is None and d.rewards is not None and d.rewards.shape == d.classes.shape
        np.testing.assert_array_equal(d.rewards[:4], c.rewards[:4])
        for i in range(4, 12):
            seen = d.rewards[:4][d.classes[:4] == d.classes[i]]
            if seen.size:  # a class the pilot saw: one of its pilot rewards
                assert d.rewards[i] in seen
        assert np.isfinite(d.rewards).all()
