"""The public offline API (``from ttscale import read_bank, evaluate, plan, simulate``) on the real
banks: the same JSON, byte for byte, as the commands that call it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ttscale
from ttscale import offline
from ttscale.cli.app import app
from ttscale.errors import BankFormatError, ConfigError

runner = CliRunner()


def cli_json(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


@pytest.fixture(scope="module")
def math100(banks_dir: Path) -> Path:
    return banks_dir / "math100_qwen_rm.jsonl"


@pytest.fixture(scope="module")
def llama(banks_dir: Path) -> Path:
    return banks_dir / "gsm8k400_llama2-13b_pot.jsonl"


def test_evaluate_is_eval_json(math100: Path) -> None:
    policies = ["majority", "best-of-n", "weighted-majority", "best-of-majority:answers=2"]
    got = ttscale.evaluate(math100, policies, k=[1, 2, 8], draws=200)
    expected = cli_json("eval", str(math100), "-p", "best-of-n", "-p", "weighted-majority", "-p", "best-of-majority:answers=2",
                        "--k", "1,2,8", "--draws", "200", "--json")
    assert json.dumps(got.to_json()) == expected
    assert got.policies["best-of-n"].method == "exact" and got.policies["weighted-majority"].method == "resampled"


def test_plan_is_plan_json(llama: Path) -> None:
    got = ttscale.plan(llama, target=0.44)
    assert json.dumps(got.to_json(), allow_nan=False) == cli_json("plan", str(llama), "--target", "0.44", "--json")
    assert got.target == 0.44 and got.curve.at(got.recommended_n)[0] >= 0.44


def test_simulate_is_simulate_json(math100: Path) -> None:
    got = ttscale.simulate(math100, exact=True, permutations=4)
    expected = cli_json("simulate", str(math100), "--exact", "--permutations", "4", "--json")
    assert json.dumps(got.to_json(), allow_nan=False) == expected
    assert got.default_target and got.target == pytest.approx(got.result.reference - 0.001)
    assert got.exact is not None and set(got.exact.rules) == {"asc", "ppr-1v1", "first-to-ahead", "default", "workload"}


def test_a_bank_read_once_serves_every_call(math100: Path) -> None:
    bank = ttscale.read_bank(math100)
    assert isinstance(bank, offline.GradedBank) and bank.questions == 100 and bank.path == math100
    assert bank.equivalence.value == "math" and bank.grade.value == "auto" and bank.scorer is None
    assert ttscale.evaluate(bank, k=[1, 8]).to_json() == ttscale.evaluate(math100, k=[1, 8]).to_json()
    assert ttscale.plan(bank, budget_samples=4).to_json() == ttscale.plan(math100, budget_samples=4).to_json()
    # settings that would need another reading of the file are refused, naming the parameter
    with pytest.raises(ConfigError, match="equivalence"):
        ttscale.evaluate(bank, equivalence="string")
    with pytest.raises(ConfigError, match="scorer"):
        ttscale.evaluate(bank, scorer="prm")
    assert ttscale.evaluate(bank, equivalence="math", grade="auto").problems == 100  # the same settings are fine


def test_bad_arguments_name_the_parameter(math100: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="draws"):
        ttscale.evaluate(math100, draws=0)
    with pytest.raises(ConfigError, match="equivalence"):
        ttscale.read_bank(math100, equivalence="fuzzy")
    with pytest.raises(ConfigError, match="max_k"):
        ttscale.simulate(math100, max_k=0)
    with pytest.raises(ConfigError, match="target"):
        ttscale.simulate(math100, target=40)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(BankFormatError, match="at least one problem line"):
        ttscale.simulate(empty)


def test_the_api_is_exported_lazily() -> None:
    assert (ttscale.read_bank, ttscale.evaluate, ttscale.plan, ttscale.simulate) == \
        (offline.read_bank, offline.evaluate, offline.plan, offline.simulate)
    assert {"read_bank", "evaluate", "plan", "simulate"} <= set(ttscale.__all__)
    code = "import sys, ttscale; print(sorted(m for m in ('numpy', 'ttscale.offline', 'ttscale.live.api') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_missing_shared_data_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from conftest import require_shared

    missing = tmp_path / "shared" / "data"
    monkeypatch.setenv("TTSCALE_REQUIRE_SHARED_DATA", "1")
    with pytest.raises(pytest.fail.Exception, match="TTSCALE_REQUIRE_SHARED_DATA=1"):
        require_shared(missing)
    monkeypatch.delenv("TTSCALE_REQUIRE_SHARED_DATA")
    with pytest.raises(pytest.skip.Exception, match="shared data not found"):
        require_shared(missing)
    assert require_shared(tmp_path) == tmp_path
