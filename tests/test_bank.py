from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ttscale.errors import BankFormatError
from ttscale.records.bank import BankWriter, read_bank, read_pass_counts, write_bank

GOOD = {"id": "p1", "problem": "1+1?", "reference": "2", "samples": [{"answer": "2", "reward": 0.5}, {"answer": None}]}


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path


def line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


@pytest.mark.parametrize(
    "name,size,lo,hi",
    [
        ("gsm8k400_llama2-13b_pot.jsonl", 400, 48, 48),
        ("gsm8k_gpt4_cot-pot.jsonl", 1319, 9, 12),
        ("math100_qwen_rm.jsonl", 100, 8, 8),
    ],
)
def test_reads_every_shared_bank_as_it_is(banks_dir: Path, name: str, size: int, lo: int, hi: int) -> None:
    bank = read_bank(banks_dir / name)
    sizes = [len(r.samples) for r in bank]
    assert len(bank) == size and min(sizes) == lo and max(sizes) == hi
    assert bank.truncated_line is None


def test_reads_pass_counts(banks_dir: Path) -> None:
    table = read_pass_counts(banks_dir / "pass_counts_gsm8k_pythia_checkpoints.csv")
    assert len(table.n) == 10273
    assert (table.correct <= table.n).all() and table.n.max() >= 10000
    n, c = table.for_model(table.models()[0])
    assert len(n) == len(c) > 0


def test_lines_with_one_id_merge_in_order(tmp_path: Path) -> None:
    second = {"id": "p1", "samples": [{"answer": "3"}]}
    bank = read_bank(write_lines(tmp_path / "b.jsonl", [line(GOOD), line({"id": "p2", "samples": [{"answer": "1"}]}), line(second)]))
    assert [r.id for r in bank] == ["p1", "p2"]
    assert [s.answer for s in bank.by_id()["p1"].samples] == ["2", None, "3"]
    assert bank.by_id()["p1"].reference == "2"


def test_conflicting_reference_is_an_error(tmp_path: Path) -> None:
    other = {"id": "p1", "reference": "5", "samples": [{"answer": "3"}]}
    with pytest.raises(BankFormatError) as exc:
        read_bank(write_lines(tmp_path / "b.jsonl", [line(GOOD), line(other)]))
    assert exc.value.line == 2 and exc.value.field == "reference"


def test_truncated_last_line_is_reported_and_skipped(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "b.jsonl", [line(GOOD), line({"id": "p2", "samples": [{"answer": "1"}]})[:-12]])
    bank = read_bank(path)
    assert [r.id for r in bank] == ["p1"]
    assert bank.truncated_line == 2


def test_writer_cuts_partial_tail_and_appends(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "b.jsonl", [line(GOOD), b'{"id": "p2", "samp'])
    with BankWriter(path) as writer:
        assert writer.repaired_bytes == len(b'{"id": "p2", "samp')
        writer.append({"id": "p2", "samples": [{"answer": "7"}]})
    bank = read_bank(path)
    assert [r.id for r in bank] == ["p1", "p2"] and bank.truncated_line is None
    assert bank.by_id()["p2"].samples[0].answer == "7"


def test_write_then_read_roundtrip(tmp_path: Path) -> None:
    path = write_bank(tmp_path / "out" / "b.jsonl", [GOOD])
    record = read_bank(path).records[0]
    assert record.samples[0].reward == 0.5 and record.samples[1].answer is None


@pytest.mark.parametrize(
    "content,line_no,field,fragment",
    [
        ([line(GOOD), b'{"id": "p2", "samples": [}\n'], 2, None, "one JSON object per line"),
        ([line(GOOD), line({"id": "p2", "reference": "1"})], 2, "samples", "field required"),
        ([line({"id": "p2", "samples": [{"answer": "1", "reward": float("nan")}]})], 1, "samples.0.reward", "finite"),
        ([line(GOOD), line(GOOD), line({"id": "p3", "samples": []})], 3, "samples", "at least 1"),
        ([line(GOOD), b'{"id": "p2", "samples": [{"answer": "\xff"}]}\n'], 2, None, "UTF-8"),
        ([line([1, 2])], 1, None, "a JSON object"),
        ([line({"id": "p2", "samples": [{"answer": "1", "tokens": -3}]})], 1, "samples.0.tokens", "greater than or equal"),
    ],
)
def test_bad_input_names_file_line_and_field(tmp_path: Path, content: list[bytes], line_no: int, field: str | None, fragment: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", content)
    with pytest.raises(BankFormatError) as exc:
        read_bank(path)
    assert exc.value.line == line_no
    assert exc.value.field == field
    message = str(exc.value)
    assert str(path) in message and f"line {line_no}" in message and fragment.lower() in message.lower()


def test_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(BankFormatError, match="empty bank"):
        read_bank(write_lines(tmp_path / "empty.jsonl", [b"\n"]))
    with pytest.raises(BankFormatError, match="no such file"):
        read_bank(tmp_path / "nope.jsonl")


def test_bad_pass_count_rows(tmp_path: Path) -> None:
    path = tmp_path / "pc.csv"
    path.write_text("model,problem,n,correct\nm,p1,10,3\nm,p2,10,eleven\n")
    with pytest.raises(BankFormatError) as exc:
        read_pass_counts(path)
    assert exc.value.line == 3 and exc.value.field == "correct"
    path.write_text("model,problem,n,correct\nm,p1,10,13\n")
    with pytest.raises(BankFormatError, match="line 2"):
        read_pass_counts(path)


WRITER_SCRIPT = r"""
import sys, time
from ttscale.records.bank import BankWriter
with BankWriter(sys.argv[1]) as w:
    for i in range(100000):
        w.append({"id": f"p{i}", "samples": [{"answer": str(i), "text": "x" * 2000}]})
"""


def test_killed_writer_loses_at_most_the_line_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(path)])
    deadline = time.time() + 30
    while time.time() < deadline and (not path.exists() or path.stat().st_size < 200_000):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    bank = read_bank(path)
    ids = [r.id for r in bank]
    assert ids == [f"p{i}" for i in range(len(ids))] and len(ids) > 10
    # Resume: the writer repairs any partial tail and continues on a fresh line.
    with BankWriter(path) as w:
        w.append({"id": "resumed", "samples": [{"answer": "1"}]})
    again = read_bank(path)
    assert [r.id for r in again][-1] == "resumed" and again.truncated_line is None
    assert len(again) == len(ids) + 1
