"""``ttscale search`` killed with SIGKILL mid-run, then rerun: no finished problem is searched again
and the bank equals an uninterrupted run's except wall time (real vLLM engine, packaged model, oracle)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vllm_server import SERVER_ENV

REPO = Path(__file__).resolve().parents[1]
LIMIT = 8
# One problem in flight: each problem's rounds are its own engine calls, so lines land one by one
# and a seeded problem draws the same steps whether or not the run was interrupted before it.
ARGS = ["search", "--dataset", "arith-hard", "--limit", str(LIMIT), "--method", "beam", "--width", "4", "--keep", "1",
        "--temperature", "1.3", "--seed", "3", "--in-flight", "1", "--quiet"]
ENV = {**os.environ, **SERVER_ENV, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ttscale", *ARGS, "--out", str(out), *extra]


def _run(out: Path) -> dict:
    proc = subprocess.run(_command(out, "--json"), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _without_wall_time(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row["search"]["cost"].pop("seconds")
    return rows


@pytest.mark.vllm
@pytest.mark.slow
def test_killed_search_resumes_without_redoing_finished_problems(tmp_path: Path) -> None:
    if os.environ.get("TTSCALE_SKIP_VLLM") == "1":
        pytest.skip("TTSCALE_SKIP_VLLM=1")
    pytest.importorskip("vllm")
    killed = tmp_path / "killed.jsonl"
    proc = subprocess.Popen(_command(killed), cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if killed.exists() and killed.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the search finished before it could be killed"
    before = killed.read_bytes()
    done = before.count(b"\n")
    assert 2 <= done < LIMIT
    finished = [json.loads(line)["id"] for line in before.splitlines()[:done]]

    resumed = _run(killed)
    assert resumed["complete"] == done and resumed["searched"] == LIMIT - done  # finished problems not redone
    after = killed.read_bytes()
    assert after.startswith(before[: before.rfind(b"\n") + 1])  # their lines are untouched
    assert [json.loads(line)["id"] for line in after.splitlines()][:done] == finished

    full = tmp_path / "full.jsonl"
    whole = _run(full)
    assert whole["searched"] == LIMIT
    assert _without_wall_time(killed) == _without_wall_time(full)
    # The costs of the two runs add up the same (the killed run's lost rounds are not in the bank).
    assert resumed["cost"]["generated_tokens"] == sum(r["search"]["cost"]["generated_tokens"] for r in _without_wall_time(full)[done:])
