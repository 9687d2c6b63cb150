"""`ttscale bench` end to end: report files, figures equal to `ttscale eval`, reuse of bank and cache, kills.

Replay runs (a source bank served as if a model sampled it) keep most tests instant; the tiny
committed model runs through the hf backend on a handful of problems (never vLLM here).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ttscale.answers.candidates import Candidates
from ttscale.answers.equivalence import EquivalenceMode
from ttscale.bench.config import AnalysisSettings
from ttscale.bench.difficulty import (
    arith_steps,
    bucket_values,
    difficulty_from_pass_rate,
)
from ttscale.bench.results import BenchResults
from ttscale.cli.app import app
from ttscale.cli.commands.bench import split_policies
from ttscale.errors import ConfigError
from ttscale.records.bank import read_bank, write_bank
from ttscale.validation import validate

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
REPORT = ("report.md", "accuracy_vs_samples.png", "accuracy_vs_tokens.png", "difficulty.png", "results.json")


def _no_nan(text: str) -> dict:
    def refuse(token: str) -> None:
        raise AssertionError(f"results.json holds {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture()
def replay_source(tmp_path: Path) -> tuple[Path, Path]:
    """A 12-problem dataset with a ``level`` field and a bank of 8 samples per problem to replay."""
    rng = np.random.default_rng(0)
    rows, records = [], []
    for i in range(12):
        level = 1 + i % 3
        answer = 2 * i
        rows.append({"id": f"q{i}", "problem": f"What is {i} + {i}?", "answer": str(answer), "level": level})
        samples = []
        for _ in range(8):
            u = rng.random()
            value = answer if u < (0.85, 0.5, 0.2)[level - 1] else answer + int(rng.integers(1, 3))
            text = f"The answer is {value}."
            samples.append({"answer": None if u > 0.97 else str(value), "text": text, "tokens": int(rng.integers(5, 40)),
                            "logprob": float(-rng.random() * 5), "mean_logprob": float(-rng.random())})
        records.append({"id": f"q{i}", "problem": rows[-1]["problem"], "reference": str(answer), "samples": samples})
    dataset = tmp_path / "data.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = write_bank(tmp_path / "source.jsonl", records)
    return dataset, source


def _bench(out: Path, dataset: Path, source: Path, *args: str) -> dict:
    result = runner.invoke(app, ["bench", "--out", str(out), "--backend", "replay", "--model", str(source),
                                 "--dataset", str(dataset), "--draws", "200", "--max-n", "64", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _eval(bank: Path, *args: str) -> dict:
    result = runner.invoke(app, ["eval", str(bank), "--json", "--draws", "200", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_report_files_and_figures_equal_eval(tmp_path: Path, replay_source: tuple[Path, Path]) -> None:
    dataset, source = replay_source
    out = tmp_path / "run"
    summary = _bench(out, dataset, source, "--n", "4", "-p", "majority", "--policy", "confidence-weighted",
                     "--price-in", "1", "--price-out", "2")
    assert summary["sampled"]["samples"] == 12 * 4 and summary["report"] == "written"
    for name in REPORT:
        assert (out / name).stat().st_size > 500, name
    results = _no_nan((out / "results.json").read_text())
    # The eval section is `ttscale eval --json` on the same bank, number for number.
    assert results["eval"] == _eval(out / "bank.jsonl", "-p", "confidence-weighted")
    assert results["eval"]["k"] == [1, 2, 4]
    # The dataset's level field makes the buckets; they partition the problems.
    diff = results["difficulty"]
    assert diff["source"] == "level"
    assert [b["label"] for b in diff["buckets"]] == ["level 1", "level 2", "level 3"]
    assert sum(b["problems"] for b in diff["buckets"]) == 12
    assert diff["buckets"][0]["pass"][0] > diff["buckets"][2]["pass"][0] + 0.3  # level 1 is the easy one here
    for name in ("majority", "pass"):
        fit = results["planner"][name]
        assert 1 <= fit["saturation"]["n"] <= 64 and fit["within"]["n"] <= 64
        assert fit["within"]["accuracy"] >= fit["ceiling"]["accuracy"] - 0.01 - 1e-9
        assert fit["within"]["dollars_per_question"] > 0
    cost = results["cost"]["table"]
    assert [r["k"] for r in cost] == [1, 2, 4]
    assert cost[-1]["generated_tokens_per_question"] == pytest.approx(results["eval"]["tokens"][-1])
    assert cost[0]["dollars_total"] == pytest.approx(12 * cost[0]["dollars_per_question"])
    report = (out / "report.md").read_text()
    for heading in ("## What was run", "## Accuracy (%) at k", "## How many samples", "## By difficulty", "## Cost"):
        assert heading in report
    assert "| confidence-weighted * |" in report and "(accuracy_vs_samples.png)" in report
    # Policies other than majority get a fitted curve family, the same as `ttscale plan -p NAME` on these points.
    from ttscale.planning.plan import fit_accuracy_curve

    fit = results["policy_fits"]["confidence-weighted"]
    assert set(results["policy_fits"]) == {"confidence-weighted"}
    observed = results["eval"]["policies"]["confidence-weighted"]["accuracy"]
    same = fit_accuracy_curve("confidence-weighted", [1, 2, 4], observed, 12, max_n=64, level=0.95, seed=0)
    assert fit["method"] == same.method and fit["ceiling"]["accuracy"] == pytest.approx(same.ceiling[0])
    assert "Other policies" in report and "| confidence-weighted | " in report
    # results.json is the typed results model's dump: it reads back into the model and dumps to the same file.
    typed = BenchResults.model_validate_json((out / "results.json").read_text())
    assert json.dumps(typed.to_json(), indent=1) + "\n" == (out / "results.json").read_text()
    assert typed.evaluation.to_eval_result().to_json() == results["eval"]


def test_rerun_reuses_bank_and_cache(tmp_path: Path, replay_source: tuple[Path, Path]) -> None:
    dataset, source = replay_source
    out = tmp_path / "run"
    first = _bench(out, dataset, source, "--n", "4", "-p", "majority")
    bank = (out / "bank.jsonl").read_bytes()
    results = json.loads((out / "results.json").read_text())
    assert first["evaluated"] == ["majority"] and first["refitted"]

    again = _bench(out, dataset, source, "--n", "4", "-p", "majority")
    assert again["sampled"]["samples"] == 0 and again["sampled"]["requests"] == 0
    assert again["evaluated"] == [] and not again["refitted"] and again["report"] == "up to date"
    assert (out / "bank.jsonl").read_bytes() == bank

    # Another policy: no sampling, only that policy evaluated, majority's figures untouched.
    more = _bench(out, dataset, source, "--n", "4", "-p", "majority,first-to-ahead")
    assert more["sampled"]["samples"] == 0 and more["evaluated"] == ["first-to-ahead"] and not more["refitted"]
    assert (out / "bank.jsonl").read_bytes() == bank
    grown = json.loads((out / "results.json").read_text())
    assert grown["eval"]["policies"]["majority"] == results["eval"]["policies"]["majority"]
    assert grown["eval"] == _eval(out / "bank.jsonl", "-p", "first-to-ahead")

    # A lost report is redrawn from the cache.
    (out / "difficulty.png").unlink()
    redrawn = _bench(out, dataset, source, "--n", "4", "-p", "majority", "-p", "first-to-ahead")
    assert redrawn["report"] == "written" and redrawn["evaluated"] == [] and (out / "difficulty.png").exists()

    # A cache this version cannot read is recomputed, to the same figures.
    (out / "bench-cache.json").write_text(json.dumps({"key": json.loads((out / "bench-cache.json").read_text())["key"],
                                                       "variants": {"x": {"label": "x", "overall": 3}}}))
    (out / "results.json").unlink()
    recomputed = _bench(out, dataset, source, "--n", "4", "-p", "majority,first-to-ahead")
    assert recomputed["refitted"] and recomputed["evaluated"] == ["majority", "first-to-ahead"]
    assert json.loads((out / "results.json").read_text())["eval"] == grown["eval"]

    # A larger n draws only the missing samples and keeps the first ones.
    bigger = _bench(out, dataset, source, "--n", "8", "-p", "majority")
    assert bigger["sampled"]["samples"] == 12 * 4 and bigger["sampled"]["requests"] == 12
    assert (out / "bank.jsonl").read_bytes().startswith(bank)
    assert set(read_bank(out / "bank.jsonl").sample_counts().values()) == {8}
    final = json.loads((out / "results.json").read_text())
    assert final["eval"]["k"] == [1, 2, 4, 8] and final["eval"] == _eval(out / "bank.jsonl")
    assert [r["samples"] for r in final["sampling"]["runs"]] == [48, 48]


def test_errors_are_one_line(tmp_path: Path, replay_source: tuple[Path, Path]) -> None:
    dataset, source = replay_source
    base = ["bench", "--out", str(tmp_path / "run"), "--backend", "replay", "--model", str(source), "--dataset", str(dataset),
            "--json"]
    for extra, needle in ((["-p", "no-such-policy"], "policy='no-such-policy'"), (["--n", "0"], "--n=0"),
                          (["--n", "9"], "at most 8 samples"),
                          # A scorer model that is no folder and no hub id fails before sampling, not after.
                          (["--scorer", "prm", "--scorer-model", "arith-prm-tin"], "--scorer-model='arith-prm-tin'"),
                          (["--scorer", "prm", "--scorer-model", str(tmp_path / "nowhere")], "a model folder, a hub id"),
                          # A scorer model without a scorer would be ignored: refused rather than silently dropped.
                          (["--scorer-model", "arith-prm-tiny"], "expected a --scorer to use it with")):
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 2, result.output
        assert needle in result.output and "Traceback" not in result.output
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert all(f.stat().st_size == 0 for f in (tmp_path / "run").glob("*.jsonl"))  # nothing sampled
    # Fixed choices are typed options: the command line parser names the option and the choices.
    for option, value in (("--backend", "nope"), ("--equivalence", "fuzzy"), ("--grade", "oracle")):
        result = runner.invoke(app, [*base, option, value])
        assert result.exit_code == 2 and option in result.output and f"'{value}' is not one of" in result.output
        assert "Traceback" not in result.output
    _bench(tmp_path / "run", dataset, source, "--n", "2", "-p", "majority")
    result = runner.invoke(app, [*base, "--n", "4", "--temperature", "1.0"])
    assert result.exit_code == 2 and "--temperature=1.0" in result.output and "0.7" in result.output
    # A policy asked for by name that the bank cannot serve (no rewards, no scorer) is an error, not a gap.
    result = runner.invoke(app, [*base, "--n", "2", "-p", "best-of-n"])
    assert result.exit_code == 2 and "best-of-n" in result.output and "rewards" in result.output


def test_no_curve_to_fit_still_reports(tmp_path: Path, replay_source: tuple[Path, Path]) -> None:
    dataset, source = replay_source
    bank = read_bank(source)
    for record in bank.records:
        for sample in record.samples:
            sample.answer = record.reference  # every sample right: accuracy is flat, nothing to extrapolate
    solved = write_bank(tmp_path / "solved.jsonl", bank.records)
    _bench(tmp_path / "run", dataset, solved, "--n", "2", "-p", "majority")
    results = _no_nan((tmp_path / "run" / "results.json").read_text())
    assert results["eval"]["policies"]["majority"]["accuracy"] == [1.0, 1.0]
    assert "every sample of every question is correct" in results["planner"]["majority"]["error"]
    assert "no curve fitted" in (tmp_path / "run" / "report.md").read_text()
    assert all((tmp_path / "run" / name).exists() for name in REPORT)


def test_default_policies_the_bank_cannot_support_are_left_out(tmp_path: Path, replay_source: tuple[Path, Path]) -> None:
    dataset, source = replay_source
    bank = read_bank(source)
    for record in bank.records:
        for sample in record.samples:
            sample.logprob = sample.mean_logprob = None
    plain = write_bank(tmp_path / "plain.jsonl", bank.records)
    _bench(tmp_path / "run", dataset, plain, "--n", "4")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert "confidence-weighted" not in results["eval"]["policies"] and "first-to-ahead" in results["eval"]["policies"]
    assert any("confidence-weighted" in note and "logprobs" in note for note in results["notes"])


def test_tiny_model_killed_mid_run_then_rerun_with_a_scorer(tmp_path: Path) -> None:
    """The committed model through hf: SIGKILL while sampling, then the rerun draws only the rest and scores."""
    out = tmp_path / "tiny"
    args = ["bench", "--out", str(out), "--backend", "hf", "--limit", "24", "--n", "2", "--batch-size", "1",
            "--draws", "100", "--max-n", "64"]
    proc = subprocess.Popen([sys.executable, "-m", "ttscale", *args, "-p", "majority", "--quiet"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bank = out / "bank.jsonl"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if bank.exists() and bank.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    before = bank.read_bytes()
    kept = before[: before.rfind(b"\n") + 1]
    done = kept.count(b"\n")
    assert 3 <= done < 24

    result = runner.invoke(app, [*args, "--scorer", "confidence", "-p", "best-of-n", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["sampled"]["requests"] == 24 - done  # finished problems are not sampled again
    assert summary["scored"] == {"confidence": 48}
    records = read_bank(bank).records
    assert {r.id: len(r.samples) for r in records} == {f"arith-default-{i:04d}": 2 for i in range(24)}
    assert all(s.rewards["confidence"] == pytest.approx(s.confidence()) for r in records for s in r.samples)
    results = _no_nan((out / "results.json").read_text())
    assert results["eval"] == _eval(bank, "--scorer", "confidence", "-p", "best-of-n")
    assert results["run"]["model"] == "arith-tiny" and results["difficulty"]["source"] == "steps"
    assert results["sampling"]["prompt_tokens_source"] in ("bank", "tokenizer")
    assert len(results["sampling"]["runs"]) == 1  # the killed run could not log itself; its samples still count
    assert results["sampling"]["samples"] == 48
    for name in REPORT:
        assert (out / name).exists(), name


# --- pure helpers ----------------------------------------------------------------------------


def test_split_policies_keeps_overrides_together() -> None:
    assert split_policies(["majority,best-of-majority:alpha=0.3,answers=2", "best-of-n", "majority"]) == [
        "majority", "best-of-majority:alpha=0.3,answers=2", "best-of-n"]


def test_deprecated_policies_option_still_works(tmp_path: Path, replay_source: tuple[Path, Path]) -> None:
    dataset, source = replay_source
    result = runner.invoke(app, ["bench", "--out", str(tmp_path / "run"), "--backend", "replay", "--model", str(source),
                                 "--dataset", str(dataset), "--n", "2", "--draws", "50", "--max-n", "16", "--json",
                                 "--policies", "majority,first-to-ahead"])
    assert result.exit_code == 0, result.output
    assert "--policies is deprecated" in result.stderr
    assert json.loads(result.stdout)["evaluated"] == ["majority", "first-to-ahead"]


def test_backend_choices_are_the_registered_backends() -> None:
    from ttscale.cli.commands.bench import Backend
    from ttscale.sampling.backends.registry import BACKENDS

    assert {b.value for b in Backend} == {"auto", *BACKENDS}


def test_analysis_settings_are_validated() -> None:
    assert AnalysisSettings().equivalence is EquivalenceMode.MATH
    for data, needle in (({"draws": 0}, "--draws=0"), ({"level": 1.5}, "--level=1.5"), ({"grade": "oracle"}, "--grade='oracle'"),
                         ({"draws": True}, "--draws=True"), ({"drawz": 5}, "--drawz")):
        with pytest.raises(ConfigError, match=re.escape(needle)):
            validate(AnalysisSettings, data, prefix="--")


def test_difficulty_buckets() -> None:
    assert arith_steps("First: 16 - 16 = 0\nSecond: 0 + 19 = 19\n#### 19") == 2
    assert arith_steps("Janet sells 16 - 3 - 4 = 9 duck eggs.\n#### 18") is None
    few = bucket_values("level", ["Level 10", "Level 2", "Level 2"])
    assert few.order == ["Level 2", "Level 10"] and few.labels[0] == "Level 10"
    many = bucket_values("steps", list(range(1, 21)))
    assert len(many.order) == 5 and many.labels[0] == "steps 1-4" and many.labels[-1] == many.order[-1]
    pools = [Candidates(np.array([0, 0, 1]), np.array(c)) for c in ([False, False], [True, False], [False, True], [True, True])]
    rate = difficulty_from_pass_rate(pools)
    assert rate.labels == ["solved 0%", "solved 50-99%", "solved <50%", "solved 100%"]
    assert rate.order == ["solved 0%", "solved <50%", "solved 50-99%", "solved 100%"]


def test_packaged_model_names_resolve_to_their_folders() -> None:
    from ttscale.arith.paths import model_dir, prm_dir, require_model_source, resolve_model

    assert resolve_model("arith-tiny") == str(model_dir()) and resolve_model("arith-prm-tiny") == str(prm_dir())
    assert (prm_dir() / "config.json").is_file()
    assert require_model_source("--scorer-model", "arith-prm-tiny") == str(prm_dir())
    assert require_model_source("--scorer-model", "Qwen/Qwen2.5-Math-PRM-7B") == "Qwen/Qwen2.5-Math-PRM-7B"  # a hub id is kept
