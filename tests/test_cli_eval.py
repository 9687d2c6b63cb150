"""`ttscale eval` end to end: figures against brute force and plain counting, the JSON contract, bad input."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path
from statistics import mean

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ttscale.cli.app import app

runner = CliRunner()


def brute_force(answers: list[str | None], reference: str, k: int) -> tuple[Fraction, Fraction]:
    """(maj@k with tie credit, pass@k) by enumerating every k-subset."""
    maj = passed = Fraction(0)
    subsets = list(itertools.combinations(range(len(answers)), k))
    for subset in subsets:
        votes: dict[str, int] = {}
        for i in subset:
            if answers[i] is not None:
                votes[answers[i]] = votes.get(answers[i], 0) + 1
        if votes:
            top = max(votes.values())
            tied = [a for a, v in votes.items() if v == top]
            maj += Fraction(int(reference in tied), len(tied))
        passed += any(answers[i] == reference for i in subset)
    return maj / len(subsets), passed / len(subsets)


problem_strategy = st.lists(st.one_of(st.none(), st.sampled_from(["1", "2", "3", "4"])), min_size=1, max_size=8)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(problem_strategy, min_size=1, max_size=4))
def test_eval_json_equals_brute_force(tmp_path_factory: pytest.TempPathFactory, pools: list[list[str | None]]) -> None:
    path = tmp_path_factory.mktemp("bank") / "bank.jsonl"
    with open(path, "w") as fh:
        for i, answers in enumerate(pools):
            fh.write(json.dumps({"id": f"q{i}", "reference": "1", "samples": [{"answer": a} for a in answers]}) + "\n")
    top = max(len(p) for p in pools)
    ks = list(range(1, top + 1))
    result = runner.invoke(app, ["eval", str(path), "--json", "--k", ",".join(map(str, ks))])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["problems"] == len(pools) and data["k"] == ks
    for col, k in enumerate(ks):
        rows = [brute_force(p, "1", k) for p in pools if len(p) >= k]
        maj = float(sum(r[0] for r in rows) / len(rows))
        pas = float(sum(r[1] for r in rows) / len(rows))
        assert abs(data["policies"]["majority"]["accuracy"][col] - maj) < 1e-12
        assert abs(data["pass"][col] - pas) < 1e-12


def test_eval_json_contract_and_plot(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "bank.jsonl"
    with open(path, "w") as fh:
        for i in range(30):
            answers = rng.choice(["7", "8", "9"], size=8, p=[0.5, 0.3, 0.2])
            samples = [{"answer": str(a), "reward": float(rng.normal()), "tokens": int(rng.integers(10, 50))} for a in answers]
            fh.write(json.dumps({"id": str(i), "reference": "7", "samples": samples}) + "\n")
    plot = tmp_path / "acc.png"
    result = runner.invoke(app, ["eval", str(path), "-p", "best-of-n", "-p", "weighted-majority", "--json", "--plot", str(plot), "--draws", "200"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # exactly one JSON object on stdout
    assert data["k"] == [1, 2, 4, 8]
    assert set(data["policies"]) == {"majority", "best-of-n", "weighted-majority"}
    assert data["policies"]["majority"]["stderr"] is None
    assert len(data["policies"]["weighted-majority"]["stderr"]) == 4
    for curve in data["policies"].values():
        assert all(0.0 <= a <= 1.0 for a in curve["accuracy"])
    assert all(m <= p + 1e-12 for m, p in zip(data["policies"]["majority"]["accuracy"], data["pass"]))
    assert data["tokens"][0] == pytest.approx(data["tokens"][3] / 8)
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def plain_class(answer: str | None) -> object:
    """An answer class by plain Python: numbers rounded to 6 decimals (program-of-thought floats such as
    87.999999978 are 88, as math equivalence has them), anything else its stripped text."""
    if answer is None:
        return None
    try:
        value = float(answer)
    except ValueError:
        return answer.strip()
    return round(value, 6) if math.isfinite(value) else answer.strip()


def plain_figures(path: Path, ks: list[int]) -> tuple[Fraction, Fraction, dict[int, Fraction]]:
    """(majority@1, majority of the whole pool with tie credit, pass@k by C(n - c, k) / C(n, k)) of a
    bank whose problems all have the same pool size, by counting."""
    rows = [json.loads(line) for line in path.open()]
    maj1, majn, passed = [], [], {k: [] for k in ks}
    for row in rows:
        ref = plain_class(row["reference"])
        classes = [plain_class(s["answer"]) for s in row["samples"]]
        n, c = len(classes), sum(a == ref for a in classes)
        maj1.append(Fraction(c, n))
        votes = Counter(a for a in classes if a is not None)
        top = max(votes.values(), default=0)
        tied = [a for a, v in votes.items() if v == top]
        majn.append(Fraction(int(ref in tied), len(tied)) if tied else Fraction(0))
        for k in ks:
            passed[k].append(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))
    return mean(maj1), mean(majn), {k: mean(v) for k, v in passed.items()}


def test_llama_bank_figures_equal_plain_counting(banks_dir: Path) -> None:
    path = banks_dir / "gsm8k400_llama2-13b_pot.jsonl"
    ks = [1, 8, 40, 48]  # every problem has 48 samples: majority@48 is the plurality of the whole pool
    maj1, maj48, passed = plain_figures(path, ks)
    result = runner.invoke(app, ["eval", str(path), "--json", "--k", ",".join(map(str, ks))])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["problems"] == 400 and data["k"] == ks and data["problems_at_k"] == [400] * 4
    maj = data["policies"]["majority"]["accuracy"]
    assert maj[0] == pytest.approx(float(maj1), abs=1e-12) and maj[3] == pytest.approx(float(maj48), abs=1e-12)
    for col, k in enumerate(ks):
        assert data["pass"][col] == pytest.approx(float(passed[k]), abs=1e-12)
    # The table prints the same figures (percent, two decimals) in the majority and pass rows.
    result = runner.invoke(app, ["eval", str(path), "--k", ",".join(map(str, ks))])
    assert result.exit_code == 0, result.output
    cells = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
             for line in result.stdout.splitlines() if line.count("│") == len(ks) + 2}
    assert cells["majority"][0] == f"{100 * float(maj1):.2f}" and cells["majority"][3] == f"{100 * float(maj48):.2f}"
    assert cells["pass (oracle)"] == [f"{100 * float(passed[k]):.2f}" for k in ks]


BAD_LINES = {
    "malformed": (b'{"id": "a", "samples": [{"answer": "1"}]}\n{"id": "b", "samples": [\n', "line 2", None),
    "missing-samples": (b'{"id": "a", "samples": [{"answer": "1"}]}\n{"id": "b", "reference": "2"}\n', "line 2", "'samples'"),
    "nan-reward": (b'{"id": "a", "samples": [{"answer": "1", "reward": NaN}]}\n', "line 1", "'samples.0.reward'"),
    "empty-samples": (b'{"id": "a", "samples": [{"answer": "1"}]}\n{"id": "b", "samples": []}\n', "line 2", "'samples'"),
    "bad-utf8": (b'{"id": "a", "samples": [{"answer": "\xc3\x28"}]}\n', "line 1", "UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_input_exits_nonzero_without_traceback(tmp_path: Path, case: str) -> None:
    content, line, field = BAD_LINES[case]
    path = tmp_path / f"{case}.jsonl"
    path.write_bytes(content.replace(b"\n{", b"\n{", 1))
    proc = subprocess.run([sys.executable, "-m", "ttscale", "eval", str(path)], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    message = " ".join(proc.stderr.split())
    assert str(path) in message and line in message
    if field:
        assert field in message
    assert len(proc.stderr.strip().splitlines()) <= 3


def test_bad_options_exit_nonzero(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_text('{"id": "a", "reference": "1", "samples": [{"answer": "1"}]}\n')
    for args, fragment in [
        (["--k", "0"], "--k"),
        (["--k", "5"], "largest pool size"),
        (["-p", "no-such-policy"], "no-such-policy"),
        (["-p", "best-of-n"], "reward"),
    ]:
        result = runner.invoke(app, ["eval", str(path), *args])
        assert result.exit_code == 2, (args, result.output)
        assert fragment in result.stderr, (args, result.stderr)


def test_renamed_preset_works_with_one_note_line(banks_dir: Path):
    # The old preset name gives the same figures as the new one, under its own name, and the CLI says
    # once on stderr (not as a Python warning with a file and line) which name replaces it.
    bank = str(banks_dir / "math100_qwen_rm.jsonl")
    run = lambda name: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "ttscale", "eval", bank, "-p", name, "--k", "1,2,4", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    old, new = run("pass-at-k-majority"), run("top-k-answers")
    assert old.returncode == 0 and new.returncode == 0, old.stderr + new.stderr
    assert json.loads(old.stdout)["policies"]["pass-at-k-majority"] == json.loads(new.stdout)["policies"]["top-k-answers"]
    notes = [line for line in old.stderr.splitlines() if "deprecated" in line]
    assert notes == ["note: policy preset 'pass-at-k-majority' is deprecated; use 'top-k-answers' (the same policy)"]
    assert "Warning" not in old.stderr and "deprecated" not in new.stderr


def test_error_lines_print_brackets_as_text(tmp_path: Path) -> None:
    # Rich markup would swallow "[draft]" (and "[banks]" in the plan's cost message): errors are plain text.
    bad = tmp_path / "bank[draft].jsonl"
    bad.write_text('{"id": "a", "problem": "q", "answer": "1", "samples": [{"text": "x", "answer": 3}]}\n{oops\n')
    result = runner.invoke(app, ["eval", str(bad)])
    assert result.exit_code == 2
    assert "bank[draft].jsonl" in result.output and "line 2" in result.output
