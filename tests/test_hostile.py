"""Hostile input (issue 14): every probe that once gave a traceback, a hang or a wrong answer.

Banks are real files, CLI runs are real processes, the proxy and its upstreams are real servers on
127.0.0.1. Each test states the probe it keeps fixed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ttscale.answers.equivalence import AnswerClassifier
from ttscale.answers.normalize import is_oversized_number, rational_value
from ttscale.errors import BankFormatError, InputLimitError
from ttscale.limits import (
    MAX_DIGITS,
    MAX_JSON_DEPTH,
    load_json,
    parse_fraction,
    parse_int,
)
from ttscale.records.bank import read_bank, record_line
from ttscale.validation import is_number

HUGE = "1" * 100_000


def ttscale(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ttscale", *args], capture_output=True, text=True, timeout=timeout, check=False)


def one_line(path: Path, obj_text: str) -> Path:
    path.write_text(obj_text + "\n")
    return path


def assert_clean_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for needle in needles:
        assert needle in proc.stderr, proc.stderr[-2000:]


# -- 1. one bank reader: any content gives BankFormatError naming file, line and field ---------------


def deep_line(depth: int) -> str:
    return '{"id": "a", "samples": [{"answer": "1", "x": ' + "[" * depth + "]" * depth + "}]}"


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 900, 100_000])
def test_deep_nesting_is_a_bank_format_error(tmp_path: Path, depth: int) -> None:
    # was: RecursionError traceback (100,000 deep), or a line json accepts but json.dumps/pydantic
    # later overflow the stack on (900 deep)
    bank = one_line(tmp_path / "deep.jsonl", deep_line(depth))
    with pytest.raises(BankFormatError) as info:
        read_bank(bank)
    assert info.value.line == 1 and info.value.field.startswith("samples.0.x")
    assert f"nested at most {MAX_JSON_DEPTH} deep" in str(info.value)


def test_nesting_up_to_the_limit_is_read(tmp_path: Path) -> None:
    depth = MAX_JSON_DEPTH - 3  # the line, samples and the sample itself are 3 levels
    record = read_bank(one_line(tmp_path / "ok.jsonl", deep_line(depth))).records[0]
    assert record_line(record).count(b"[") == depth + 1


def test_a_5000_digit_token_count_names_its_field(tmp_path: Path) -> None:
    # was: ValueError traceback from int() (Python's 4,300-digit limit)
    bank = one_line(tmp_path / "t.jsonl", '{"id": "a", "samples": [{"answer": "1"}, {"answer": "2", "tokens": ' + "9" * 5000 + "}]}")
    with pytest.raises(BankFormatError) as info:
        read_bank(bank)
    assert (info.value.line, info.value.field) == (1, "samples.1.tokens")
    assert "5000 digits" in str(info.value)


@pytest.mark.parametrize("tokens", [2**63, 10**30])
def test_token_counts_beyond_int64_are_refused_at_read(tmp_path: Path, tokens: int) -> None:
    # was: OverflowError traceback ("Python int too large to convert to C long") in eval and plan
    bank = one_line(tmp_path / "t.jsonl", json.dumps({"id": "a", "samples": [{"answer": "1", "tokens": tokens}]}))
    with pytest.raises(BankFormatError) as info:
        read_bank(bank)
    assert info.value.field == "samples.0.tokens"


def test_long_integers_are_found_even_when_python_allows_them() -> None:
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # a host program lifted Python's limit: ours still holds
    try:
        with pytest.raises(InputLimitError) as info:
            load_json('{"a": [1, {"b": ' + "7" * (MAX_DIGITS + 1) + "}]}")
    finally:
        sys.set_int_max_str_digits(before)
    assert info.value.field == "a.1.b"


@pytest.mark.parametrize("kind", ["dir", "fifo", "dev"])
def test_non_regular_banks_are_named_for_what_they_are(tmp_path: Path, kind: str) -> None:
    # was: a directory or FIFO reported as "no such file" (a FIFO opened for reading would hang)
    import os

    if kind == "dir":
        path, what = tmp_path, "a directory"
    elif kind == "fifo":
        path, what = tmp_path / "fifo", "a FIFO"
        os.mkfifo(path)
    else:
        path, what = Path("/dev/zero"), "a character device"
    with pytest.raises(BankFormatError, match=what):
        read_bank(path)


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=30)
SAMPLE_KEYS = ["answer", "text", "tokens", "reward", "rewards", "logprob", "finish", "correct", "latency", "seed"]


def random_record() -> st.SearchStrategy[dict]:
    sample = st.dictionaries(st.sampled_from(SAMPLE_KEYS) | st.text(max_size=4), JSON_VALUES, max_size=5)
    return st.fixed_dictionaries(
        {"id": JSON_VALUES | st.text(min_size=1, max_size=5), "samples": st.lists(sample, max_size=3) | JSON_VALUES},
        optional={"reference": JSON_VALUES, "problem": JSON_VALUES},
    )


def check_reads_or_refuses(path: Path) -> None:
    try:
        bank = read_bank(path)
    except BankFormatError as exc:
        assert exc.path == str(path)
        return
    for record in bank:  # what was read can be written again
        record_line(record)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=80), min_size=1, max_size=4))
def test_fuzz_random_bytes_give_only_bank_format_errors(tmp_path: Path, lines: list[bytes]) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(lines))
    check_reads_or_refuses(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(random_record() | JSON_VALUES, min_size=1, max_size=3), st.integers(0, 200), st.integers(0, 6000))
def test_fuzz_random_json_gives_only_bank_format_errors(tmp_path: Path, objs: list, depth: int, digits: int) -> None:
    path = tmp_path / "fuzz.jsonl"
    text = [json.dumps(o) for o in objs]
    # splice in the two ways a line can be over a limit: deep nesting and a long integer
    text.append('{"id": "d", "samples": [{"answer": "1", "x": ' + "[" * depth + "]" * depth + "}]}")
    text.append('{"id": "n", "samples": [{"answer": "1", "tokens": 1' + "0" * digits + "}]}")
    path.write_text("\n".join(text) + "\n")
    check_reads_or_refuses(path)


# -- 1b. one number parser with a digit limit, used where answers get exact values -------------------


def test_number_parser_limits() -> None:
    assert parse_int("-" + "9" * MAX_DIGITS) == -int("9" * MAX_DIGITS)
    assert parse_int("9" * (MAX_DIGITS + 1)) is None
    assert parse_fraction("-.25") == Fraction(-1, 4)
    assert parse_fraction("1." + "0" * MAX_DIGITS) is None
    assert is_number(10**400) is False and is_number(3) is True  # was: OverflowError from math.isfinite


def test_a_100000_digit_answer_is_compared_as_a_string() -> None:
    # was: ValueError traceback from Fraction(canonical) in eval, plan and plan --simulate --exact
    assert rational_value(HUGE) is None and is_oversized_number(HUGE)
    assert rational_value(f"\\frac{{{HUGE}}}{{3}}") is None
    classifier = AnswerClassifier()
    ids, _ = classifier.classify([HUGE, "4", HUGE, "4.0", "-" + HUGE])
    assert ids.tolist() == [0, 1, 0, 1, 2]
    assert classifier.is_correct("4", "4") and not classifier.is_correct(HUGE, "4")
    assert classifier.stats.parse_calls == 0 and classifier.stats.verify_calls == 0  # sympy never saw it


def test_a_huge_power_is_compared_as_a_string() -> None:
    # was: (x+1)^{1000000} as an answer took 6.5 s and 1.06 GB in sympy
    import time

    classifier = AnswerClassifier()
    start = time.monotonic()
    ids, _ = classifier.classify(["(x+1)^{1000000}", "4", "(x+2)^{1000000}", "(x+1)^{1000000}"])
    assert ids.tolist() == [0, 1, 2, 0] and not classifier.is_correct("(x+1)^{1000000}", "4")
    assert classifier.stats.parse_calls == 0 and classifier.stats.verify_calls == 0
    assert time.monotonic() - start < 1


def test_cli_eval_and_plan_on_hostile_banks(tmp_path: Path) -> None:
    deep = one_line(tmp_path / "deep.jsonl", deep_line(100_000))
    assert_clean_error(ttscale("eval", str(deep)), "deep.jsonl, line 1", "samples.0.x")
    assert_clean_error(ttscale("plan", str(deep)), "nested at most")
    big = tmp_path / "big.jsonl"
    big.write_text("".join(json.dumps({"id": f"p{i}", "reference": "4", "samples": [{"answer": HUGE}, {"answer": "4"}, {"answer": HUGE}]}) + "\n" for i in range(3)))
    proc = ttscale("eval", str(big), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


# -- 2. single-writer banks -------------------------------------------------------------------------


@pytest.fixture
def slow_upstream():
    from fake_upstream import FakeUpstream

    upstream = FakeUpstream(latency=0.25).start()
    yield upstream
    upstream.stop()


def sample_cmd(url: str, out: Path, n: int = 4, limit: int = 12) -> list[str]:
    return [sys.executable, "-m", "ttscale", "sample", "-b", "openai", "--base-url", url, "-d", "arith", "--limit", str(limit),
            "-n", str(n), "--out", str(out), "--concurrency", "1", "--quiet", "--json"]


def wait_for_lock_holder(bank: Path, proc: subprocess.Popen, timeout: float = 60) -> int:
    """The PID written in BANK.lock once ``proc`` holds it (and has written at least one line)."""
    import time

    lock = bank.with_name(bank.name + ".lock")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if lock.exists() and lock.read_text().strip() == str(proc.pid) and bank.exists() and bank.stat().st_size > 0:
            return proc.pid
        time.sleep(0.05)
    raise AssertionError("the first writer never took the lock")


def assert_exact_bank(bank: Path, problems: int, n: int) -> None:
    counts = read_bank(bank).sample_counts()
    assert len(counts) == problems and set(counts.values()) == {n}, counts


def test_a_second_writer_refuses_and_names_the_holder(tmp_path: Path, slow_upstream) -> None:
    # was: both exit 0 and problems end up with 2x the samples; eval then silently reports wrong figures
    bank = tmp_path / "bank.jsonl"
    first = subprocess.Popen(sample_cmd(slow_upstream.url, bank), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pid = wait_for_lock_holder(bank, first)
        second = subprocess.run(sample_cmd(slow_upstream.url, bank), capture_output=True, text=True, timeout=120, check=False)
        assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
        assert f"process {pid} is writing this bank" in second.stderr
        _, errors = first.communicate(timeout=180)
        assert first.returncode == 0, errors
    finally:
        first.kill()
    assert_exact_bank(bank, 12, 4)


def test_a_killed_writer_leaves_no_blocking_lock(tmp_path: Path, slow_upstream) -> None:
    import signal

    bank = tmp_path / "bank.jsonl"
    first = subprocess.Popen(sample_cmd(slow_upstream.url, bank), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_lock_holder(bank, first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert (bank.with_name("bank.jsonl.lock")).read_text().strip() == str(first.pid)  # the stale file stays...
    again = subprocess.run(sample_cmd(slow_upstream.url, bank), capture_output=True, text=True, timeout=180, check=False)
    assert again.returncode == 0, again.stderr  # ...and blocks nothing: the rerun resumes
    assert json.loads(again.stdout)["complete"] >= 1
    assert_exact_bank(bank, 12, 4)


def test_the_lock_is_reentrant_in_one_process_and_exclusive_across(tmp_path: Path) -> None:
    from ttscale.errors import BankLockedError
    from ttscale.records.lock import bank_lock

    bank = tmp_path / "b.jsonl"
    holder = "import sys, time\nfrom ttscale.records.lock import bank_lock\nwith bank_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n"
    with bank_lock(bank), bank_lock(bank):  # the bench pipeline takes it around the driver, which takes it again
        probe = subprocess.run([sys.executable, "-c", "import sys\nfrom ttscale.records.lock import bank_lock\nwith bank_lock(sys.argv[1]): pass", str(bank)],
                               capture_output=True, text=True, timeout=60, check=False)
        assert "BankLockedError" in probe.stderr and f"process {__import__('os').getpid()}" in probe.stderr
    other = subprocess.Popen([sys.executable, "-c", holder, str(bank)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        with pytest.raises(BankLockedError) as info, bank_lock(bank):
            pass
        assert info.value.pid == other.pid
    finally:
        other.kill()
        other.wait()
    with bank_lock(bank):  # released by the kill
        pass


# -- 3. disk full / file size limit: one line, nothing lost, the rerun resumes --------------------


@pytest.fixture
def upstream():
    from fake_upstream import FakeUpstream

    server = FakeUpstream().start()
    yield server
    server.stop()


def test_sample_to_dev_full_is_one_line(upstream) -> None:
    # was: OSError traceback (errno 28)
    proc = subprocess.run(sample_cmd(upstream.url, Path("/dev/full"), limit=3), capture_output=True, text=True, timeout=120, check=False)
    assert_clean_error(proc, "/dev/full: cannot write: No space left on device (errno 28)", "rerun the same command to resume")
    assert not Path("/dev/full.lock").exists()


def test_file_size_limit_then_rerun_gives_the_exact_bank(tmp_path: Path, upstream) -> None:
    # was: OSError traceback (errno 27); the rerun's exact recovery is kept
    import resource

    bank = tmp_path / "bank.jsonl"

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, resource.RLIM_INFINITY))

    cut = subprocess.run(sample_cmd(upstream.url, bank, limit=30), capture_output=True, text=True, timeout=120, check=False,
                         preexec_fn=small_files)
    assert_clean_error(cut, "File too large (errno 27)", "the lines written before are kept")
    kept = read_bank(bank).sample_counts()
    assert kept and set(kept.values()) == {4}
    again = subprocess.run(sample_cmd(upstream.url, bank, limit=30), capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["complete"] == len(kept)
    assert_exact_bank(bank, 30, 4)


def test_atomic_write_refuses_to_replace_a_device(tmp_path: Path) -> None:
    import stat

    from ttscale.errors import DiskWriteError
    from ttscale.records.bank import write_bank

    with pytest.raises(DiskWriteError, match="not a regular file"):
        write_bank("/dev/full", [{"id": "a", "samples": [{"answer": "1"}]}])
    assert stat.S_ISCHR(Path("/dev/full").stat().st_mode)  # was: renamed a regular file over the device node (as root)


# -- 4. bounded live loops: an upstream answering 200 without choices ---------------------------------


class ScriptedUpstream:
    """A real OpenAI-shaped server on 127.0.0.1 whose completion replies a test sets (``reply(body)``
    returns the JSON to answer); counts the completion requests it gets."""

    def __init__(self) -> None:
        from fake_upstream import ThreadServer

        self.requests = 0
        self.reply = lambda body: {"id": "x", "object": "chat.completion", "model": "m"}
        app = FastAPI()

        @app.get("/v1/models")
        async def models() -> dict:
            return {"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "x"}]}

        async def complete(request: Request) -> JSONResponse:
            self.requests += 1
            reply = self.reply(await request.json())
            return reply if isinstance(reply, Response) else JSONResponse(reply)

        app.add_api_route("/v1/chat/completions", complete, methods=["POST"])
        app.add_api_route("/v1/completions", complete, methods=["POST"])
        self.server = ThreadServer(app).start()
        self.url = self.server.url + "/v1"


@pytest.fixture(scope="module")
def scripted():
    up = ScriptedUpstream()
    yield up
    up.server.stop()


def chat_reply(texts: list[str], usage: dict | None = None) -> dict:
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"} for i, t in enumerate(texts)],
            "usage": usage or {"prompt_tokens": 3, "completion_tokens": 3 * len(texts), "total_tokens": 3 + 3 * len(texts)}}


MALFORMED = {
    "no choices": ({"id": "x", "object": "chat.completion"}, "field 'choices'", "no such field"),
    "choices null": ({"id": "x", "choices": None}, "field 'choices'", "got null"),
    "choices empty": ({"id": "x", "choices": []}, "field 'choices'", "got []"),
    "choice a string": ({"id": "x", "choices": ["hi"]}, "field 'choices[0]'", "'hi'"),
    "content a dict": ({"id": "x", "choices": [{"index": 0, "message": {"content": {"a": 1}}}]}, "choices[0].message.content", "a string"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_the_api_fails_fast_on_a_malformed_upstream(scripted: ScriptedUpstream, case: str) -> None:
    # was: TTScale(base_url=..., budget=8).solve('hi') never returned (15,257 upstream requests in 20 s)
    import time

    from ttscale import TTScale
    from ttscale.sampling.backends.openai import Failure, ServerError

    body, field, got = MALFORMED[case]
    scripted.reply = lambda _: body
    before = scripted.requests
    tts = TTScale(base_url=scripted.url, model="m", budget=8, max_retries=0)
    start = time.monotonic()
    try:
        with pytest.raises(ServerError) as info:
            tts.solve("hi")
    finally:
        tts.close()
    assert info.value.kind is Failure.MALFORMED and field in str(info.value) and got in str(info.value)
    assert scripted.requests - before <= 2 and time.monotonic() - start < 10


def logprob_reply(logprobs: object) -> dict:
    reply = chat_reply(["#### 4"])
    reply["choices"][0]["logprobs"] = logprobs
    return reply


TOKEN_LOGPROBS = {  # a chat reply's `logprobs` -> (error type, what the message names)
    "entry a string": ({"content": ["4"]}, "malformed", "choices[0].logprobs.content[0]"),
    "top a dict": ({"content": [{"token": "4", "logprob": -0.1, "top_logprobs": {"4": -0.1}}]}, "malformed",
                   "choices[0].logprobs.content[0].top_logprobs"),
    "top not numbers": ({"content": [{"token": "4", "logprob": -0.1, "top_logprobs": [{"token": "4", "logprob": "x"}]}]},
                        "malformed", "log-probs (numbers)"),
    "content a string": ({"content": "4"}, "malformed", "choices[0].logprobs.content"),
    "content null": ({"content": None}, "config", "choices[0].logprobs.content"),
    "top empty": ({"content": [{"token": "4", "logprob": -0.1, "top_logprobs": []}]}, "config",
                  "choices[0].logprobs.content[0].top_logprobs"),
}


@pytest.mark.parametrize("case", list(TOKEN_LOGPROBS))
def test_token_confidences_from_a_hostile_upstream_are_typed_errors(scripted: ScriptedUpstream, case: str) -> None:
    """--token-confidence reads every token's top log-probs from the reply: a wrongly shaped one is a
    malformed-reply error naming the field, missing ones a ConfigError naming the option."""
    from ttscale.errors import ConfigError
    from ttscale.sampling.backends.openai import Failure, OpenAISampler, ServerError
    from ttscale.sampling.sampler import SampleRequest, SamplingConfig

    logprobs, kind, field = TOKEN_LOGPROBS[case]
    scripted.reply = lambda _: logprob_reply(logprobs)
    sampler = OpenAISampler("m", SamplingConfig(token_confidence=5, prompt_format="chat", max_tokens=8),
                            base_url=scripted.url, max_retries=0)
    expected = ServerError if kind == "malformed" else ConfigError
    with pytest.raises(expected) as info:
        sampler.generate([SampleRequest("q", "What is 2+2?", 1, 0)])
    assert field in str(info.value)
    if kind == "malformed":
        assert info.value.kind is Failure.MALFORMED
    else:
        assert info.value.parameter == "token_confidence"


def test_rounds_with_no_candidates_end_the_question(tmp_path: Path) -> None:
    # A sampler that answers every request with no candidates at all (not only the HTTP one).
    import asyncio

    from ttscale.live.solve import EMPTY_ROUNDS, Budget, Question, SolveError, Solver
    from ttscale.sampling.sampler import SampleResult, SamplingConfig

    class Empty:
        config = SamplingConfig()
        batch_size = 1
        calls = 0

        async def agenerate(self, requests):
            self.calls += 1
            return [SampleResult(request=r, candidates=[], prompt_tokens=1, completion_tokens=0, latency=0.0) for r in requests]

    sampler = Empty()
    solver = Solver(sampler, "majority")
    with pytest.raises(SolveError, match="rounds in a row returned no candidates"):
        asyncio.run(solver.solve([Question(id="q", problem="hi")], Budget(samples=64, adaptive=True, pilot=4, step=2)))
    assert sampler.calls == EMPTY_ROUNDS


def proxy_for(upstream_url: str, **kw):
    from fake_upstream import ThreadServer

    from ttscale.live.serve.app import ServeConfig, create_app

    return ThreadServer(create_app(ServeConfig(upstream=upstream_url, **{"max_retries": 1, "timeout": 10.0, **kw}))).start()


def post(url: str, body: dict | str | bytes, timeout: float = 30) -> tuple[int, dict]:
    import httpx

    content = body if isinstance(body, (str, bytes)) else json.dumps(body)
    resp = httpx.post(url, content=content, headers={"content-type": "application/json"}, timeout=timeout)
    try:
        return resp.status_code, resp.json()
    except ValueError:
        return resp.status_code, {"raw": resp.text}


CHAT = {"model": "m", "messages": [{"role": "user", "content": "What is 2+2? End with #### N."}]}


@pytest.mark.parametrize("adaptive", [False, True])
def test_the_proxy_answers_502_naming_the_field_after_few_upstream_requests(scripted: ScriptedUpstream, adaptive: bool) -> None:
    # was: 4,153 upstream requests in 5.3 s for one client request, then a 504
    import time

    proxy = proxy_for(scripted.url, n=8, adaptive=adaptive)
    try:
        for body, field, _ in MALFORMED.values():
            scripted.reply = lambda _, body=body: body
            before = scripted.requests
            start = time.monotonic()
            status, reply = post(proxy.url + "/v1/chat/completions", CHAT)
            elapsed = time.monotonic() - start
            assert status == 502, reply
            assert reply["error"]["code"] == "upstream_malformed" and field in reply["error"]["message"]
            planned_rounds = 1 + (8 - 4) // 2 if adaptive else 1  # pilot 4 then steps of 2, or one round of 8
            assert scripted.requests - before <= 2 * planned_rounds, scripted.requests - before
            assert elapsed < 5
    finally:
        proxy.stop()


def test_upstream_usage_with_bad_counts_and_a_huge_answer_still_answers(scripted: ScriptedUpstream) -> None:
    # was: HTTP 500 (Prometheus counter refuses a negative increment; int("x"); Fraction of 100,000 digits)
    import httpx

    proxy = proxy_for(scripted.url, n=4)
    try:
        for usage in ({"prompt_tokens": -5, "completion_tokens": -7}, {"prompt_tokens": "12", "completion_tokens": "x"},
                      {"prompt_tokens": 10**30, "completion_tokens": None}):
            scripted.reply = lambda _, usage=usage: chat_reply(["#### 4", f"#### {HUGE}", "#### 4", f"#### {HUGE}"], usage)
            status, reply = post(proxy.url + "/v1/chat/completions", CHAT)
            assert status == 200, reply
            assert reply["ttscale"]["samples"] == 4 and reply["usage"]["prompt_tokens"] >= 0
        metrics = httpx.get(proxy.url + "/metrics", timeout=10).text
        assert 'ttscale_requests_total{endpoint="/v1/chat/completions",status="200"} 3.0' in metrics
    finally:
        proxy.stop()


# -- 5. the proxy's bare 500s and wrong statuses ---------------------------------------------------


@pytest.fixture(scope="module")
def fake_proxy():
    from fake_upstream import FakeUpstream

    upstream = FakeUpstream().start()
    proxy = proxy_for(upstream.url, n=4)
    yield proxy.url, upstream
    proxy.stop()
    upstream.stop()


def chat(**extra) -> dict:
    from fake_upstream import MODEL

    return {"model": MODEL, "messages": [{"role": "user", "content": "What is 2+2? #### N"}], **extra}


def test_a_body_nested_1100_deep_is_a_400(fake_proxy) -> None:
    # was: HTTP 500 (RecursionError in the JSON reader)
    url, upstream = fake_proxy
    before = sum(upstream.calls.values())
    deep = json.dumps(chat())[:-1] + ', "extra": ' + "[" * 1100 + "]" * 1100 + "}"
    status, reply = post(url + "/v1/chat/completions", deep)
    assert status == 400 and reply["error"]["param"].startswith("extra.0.0") and "nested at most" in reply["error"]["message"]
    status, reply = post(url + "/v1/chat/completions", json.dumps(chat())[:-1] + ', "x": ' + "7" * 5000 + "}")
    assert status == 400 and reply["error"]["param"] == "x" and "5000 digits" in reply["error"]["message"]
    assert sum(upstream.calls.values()) == before  # nothing reached the upstream


@pytest.mark.parametrize("field,value", [("temperature", "NaN"), ("temperature", "Infinity"), ("temperature", '"hot"'),
                                         ("temperature", "-1"), ("max_tokens", str(10**12)), ("max_tokens", "-5"),
                                         ("max_tokens", '"x"'), ("top_p", "0"), ("presence_penalty", "9")])
def test_bad_sampling_fields_are_the_clients_400(fake_proxy, field: str, value: str) -> None:
    # was: NaN came back as 502 "upstream failed: Out of range float values"; the rest went upstream unchecked
    url, upstream = fake_proxy
    before = sum(upstream.calls.values())
    status, reply = post(url + "/v1/chat/completions", json.dumps(chat())[:-1] + f', "{field}": {value}}}')
    assert status == 400 and reply["error"]["param"] == field, reply
    assert sum(upstream.calls.values()) == before


def test_nan_inside_messages_or_other_fields_is_a_400(fake_proxy) -> None:
    url, _ = fake_proxy
    body = json.dumps(chat())[:-1] + ', "logit_bias": {"50256": NaN}}'
    status, reply = post(url + "/v1/chat/completions", body)
    assert status == 400 and reply["error"]["param"] == "logit_bias.50256", reply


def test_a_policy_spec_too_long_for_a_file_name_is_a_400(fake_proxy) -> None:
    # was: HTTP 500 (OSError ENAMETOOLONG from Path(spec).is_file())
    url, _ = fake_proxy
    status, reply = post(url + "/v1/chat/completions", chat(ttscale={"policy": "majority:" + "a=1," * 70}))
    assert status == 400 and "expected a known key" in reply["error"]["message"], reply


def test_cli_policy_spec_too_long_and_non_regular_policy_files(tmp_path: Path, banks_dir: Path) -> None:
    # was: -p 'majority:a=1,...' OSError traceback; -p /dev/zero read until MemoryError; -p FIFO hung
    import os

    bank = str(banks_dir / "math100_qwen_rm.jsonl")
    assert_clean_error(ttscale("eval", bank, "-p", "majority:" + "a=1," * 70), "expected a known key")
    fifo = tmp_path / "policy.toml"
    os.mkfifo(fifo)
    assert_clean_error(ttscale("eval", bank, "-p", str(fifo), timeout=60), "got a FIFO")
    assert_clean_error(ttscale("eval", bank, "-p", "/dev/zero", timeout=60), "a regular policy .toml file")
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (2 << 20) + "\n")
    assert_clean_error(ttscale("eval", bank, "-p", str(big)), "at most 1048576 bytes")


def test_the_proxy_follows_no_upstream_redirect(scripted: ScriptedUpstream) -> None:
    # was: a 307 from the upstream made the proxy re-POST the full prompt to the redirect target
    target = ScriptedUpstream()
    target.reply = lambda _: chat_reply(["#### 4"] * 4)
    scripted.reply = lambda _: RedirectResponse(target.url + "/chat/completions", status_code=307)
    proxy = proxy_for(scripted.url, n=4)
    try:
        earlier = scripted.requests  # the upstream is shared by the module's tests
        status, reply = post(proxy.url + "/v1/chat/completions", CHAT)
        assert status == 502 and "307" in reply["error"]["message"], reply
        assert target.requests == 0
        assert scripted.requests - earlier == 1  # a redirect is not retried (nor split into n=1 requests)
    finally:
        proxy.stop()
        target.server.stop()


def test_prompts_times_n_is_capped_and_health_says_only_ok_without_the_key() -> None:
    # was: one /v1/completions request with 2,000 prompts drew 16,000 upstream samples; /health showed the upstream URL
    import httpx
    from fake_upstream import MODEL, FakeUpstream

    upstream = FakeUpstream().start()
    proxy = proxy_for(upstream.url, n=8, max_request_samples=64, api_key="k" * 20)
    try:
        headers = {"authorization": "Bearer " + "k" * 20, "content-type": "application/json"}
        resp = httpx.post(proxy.url + "/v1/completions", json={"model": MODEL, "prompt": ["1+1? #### N"] * 2000}, headers=headers, timeout=30)
        assert resp.status_code == 400 and "2000 prompts x n=8 = 16000 samples" in resp.json()["error"]["message"]
        assert upstream.samples == 0
        resp = httpx.post(proxy.url + "/v1/completions", json={"model": MODEL, "prompt": ["1+1? #### N"] * 8}, headers=headers, timeout=30)
        assert resp.status_code == 200 and upstream.samples == 64
        assert httpx.get(proxy.url + "/health", timeout=10).json() == {"status": "ok"}
        assert httpx.get(proxy.url + "/health", headers=headers, timeout=10).json()["upstream"] == upstream.url
    finally:
        proxy.stop()
        upstream.stop()


# -- 6. options that size work are refused with the number and the option to change -----------------


def test_eval_draws_too_large_is_refused_before_allocating(banks_dir: Path) -> None:
    # was: numpy allocation traceback (7.45 GiB) for --draws 1000000000
    bank = str(banks_dir / "math100_qwen_rm.jsonl")
    proc = ttscale("eval", bank, "-p", "best-of-majority", "--draws", "1000000000")
    assert_clean_error(proc, "--draws=1000000000", "37.3 GiB", "lower --draws")
    assert ttscale("eval", bank, "--draws", "1000000000").returncode == 0  # exact policies never draw


def test_permutation_tables_are_sized_before_they_are_made() -> None:
    # for `plan --simulate --permutations 10000000` / `simulate` (was: numpy traceback, 1.40 TiB)
    from ttscale.errors import ConfigError
    from ttscale.limits import check_permutations

    check_permutations(20, 1319, 12)  # the defaults on a real bank: 6 MB
    with pytest.raises(ConfigError) as info:
        check_permutations(10_000_000, 1319, 12)
    assert info.value.parameter == "--permutations" and "4.6 TiB" in str(info.value) and "lower --permutations" in str(info.value)


# -- 7. answer comparison has a time budget: past it, string classes, said in the response ------------


def test_a_passed_deadline_leaves_comparisons_to_strings() -> None:
    import time

    classifier = AnswerClassifier()
    ids, _ = classifier.classify(["x^2+2x+1", "(x+1)^2", "x^2+2x+1"], deadline=time.monotonic() - 1)
    assert ids.tolist() == [0, 1, 0]  # math-verify would merge them; no time was left to ask it
    assert classifier.stats.over_budget >= 1 and classifier.stats.verify_calls == 0


def test_the_proxy_says_when_answer_comparison_ran_over_its_budget(scripted: ScriptedUpstream) -> None:
    # was: comparison that runs long (pathological LaTeX from the upstream) answered 504 "did not answer within"
    scripted.reply = lambda _: chat_reply(["#### x^2+2x+1", "#### (x+1)^2", "#### (x+1)(x+1)", "#### x^2+2x+1"])
    proxy = proxy_for(scripted.url, n=4, answer_seconds=1e-9)
    try:
        status, reply = post(proxy.url + "/v1/chat/completions", CHAT)
        assert status == 200, reply
        assert "compared as strings" in reply["ttscale"]["notes"][0]
        assert reply["ttscale"]["vote"]["x^2+2x+1"] == 2 and len(reply["ttscale"]["vote"]) == 3
    finally:
        proxy.stop()


# -- 8. slow clients: header and body deadlines; a client that leaves is not a 500 ----------------------


class TimedProxy:
    """The proxy on uvicorn with ttscale's timed HTTP protocol (what ``ttscale serve`` runs)."""

    def __init__(self, upstream_url: str, read_seconds: float) -> None:
        import threading

        import uvicorn
        from fake_upstream import free_port

        from ttscale.live.serve.app import ServeConfig, create_app
        from ttscale.live.serve.protocol import timed_protocol

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = ServeConfig(upstream=upstream_url, n=4, read_seconds=read_seconds, max_retries=0, timeout=10.0)
        self.server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=self.port, log_level="critical",
                                                    http=timed_protocol(config.read_seconds)))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        import time

        while not self.server.started:
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _closed_within(sock, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` while we trickle header bytes (None: still open)."""
    import time

    start = time.monotonic()
    sock.settimeout(0.2)
    trickle = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    i = 0
    while time.monotonic() - start < seconds:
        try:
            sock.send(trickle[i:i + 1])
            i += 1
            data = sock.recv(1024)
            if data == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - start
    return None


def test_slowloris_connections_are_closed_and_others_still_served() -> None:
    # was: 300 connections trickling headers at 1 byte per 2 s all stayed open past 40 s
    import socket
    import statistics
    import threading
    import time

    import httpx
    from fake_upstream import FakeUpstream

    upstream = FakeUpstream().start()
    proxy = TimedProxy(upstream.url, read_seconds=1.0)
    try:
        def p50() -> float:
            times = []
            with httpx.Client(timeout=10) as http:
                for _ in range(20):
                    t = time.monotonic()
                    assert http.post(proxy.url + "/v1/chat/completions", json=chat()).status_code == 200
                    times.append(time.monotonic() - t)
            return statistics.median(times)

        quiet = p50()
        socks = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(40)]
        closed: list[float | None] = [None] * len(socks)

        def watch(i: int) -> None:
            closed[i] = _closed_within(socks[i], 6.0)

        watchers = [threading.Thread(target=watch, args=(i,)) for i in range(len(socks))]
        for w in watchers:
            w.start()
        attacked = p50()
        for w in watchers:
            w.join()
        assert all(c is not None and c < 3.0 for c in closed), closed  # read_seconds=1 (+ scheduling slack)
        assert attacked < max(1.0, 5 * quiet), (quiet, attacked)
        print(f"slowloris: closed after max {max(closed):.2f} s; p50 {quiet * 1000:.1f} ms quiet, {attacked * 1000:.1f} ms under attack")
    finally:
        proxy.stop()
        upstream.stop()


def test_a_trickled_body_gets_408_and_a_vanished_client_is_not_a_500() -> None:
    import socket
    import time

    import httpx
    from fake_upstream import FakeUpstream

    upstream = FakeUpstream().start()
    proxy = TimedProxy(upstream.url, read_seconds=1.0)
    try:
        head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 500\r\n\r\n")
        sock = socket.create_connection(("127.0.0.1", proxy.port))
        sock.sendall(head + b'{"model"')
        start = time.monotonic()
        sock.settimeout(5)
        reply = sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408") and time.monotonic() - start < 3
        sock.close()
        gone = socket.create_connection(("127.0.0.1", proxy.port))
        gone.sendall(head + b'{"model"')
        gone.close()  # leaves mid-body
        time.sleep(0.5)
        metrics = httpx.get(proxy.url + "/metrics", timeout=10).text
        assert 'status="408"} 1.0' in metrics and 'status="499"} 1.0' in metrics and 'status="500"' not in metrics
    finally:
        proxy.stop()
        upstream.stop()


# -- minor probes -----------------------------------------------------------------------------------


def test_cr_only_line_endings_are_named_as_such(tmp_path: Path) -> None:
    # was: reported as "a writer was killed mid-line" (and the whole file skipped as one truncated line)
    bank = tmp_path / "cr.jsonl"
    bank.write_bytes(b'{"id": "a", "samples": [{"answer": "1"}]}\r{"id": "b", "samples": [{"answer": "2"}]}\r')
    with pytest.raises(BankFormatError, match="CR-only line endings"):
        read_bank(bank)


def test_plot_paths_matplotlib_would_rewrite_are_refused(tmp_path: Path, banks_dir: Path) -> None:
    # was: --plot /dev/full wrote /dev/full.png (and --plot DIR wrote DIR.png) and exited 0 naming the path given
    bank = str(banks_dir / "math100_qwen_rm.jsonl")
    assert_clean_error(ttscale("eval", bank, "--plot", str(tmp_path / "curve")), "a file path ending in .png")
    (tmp_path / "d.png").mkdir()
    assert_clean_error(ttscale("eval", bank, "--plot", str(tmp_path / "d.png")), "a regular file")
    assert not (tmp_path / "curve.png").exists()


def test_a_key_on_the_command_line_is_warned_about() -> None:
    proc = ttscale("serve", "--api-key", "sk-secret", "--help")
    assert "--api-key on the command line shows in the process list (ps); set TTSCALE_API_KEY instead" in proc.stderr


def test_proxy_errors_name_presets_not_server_paths(fake_proxy) -> None:
    url, _ = fake_proxy
    status, reply = post(url + "/v1/chat/completions", chat(ttscale={"policy": "majority:a=1"}))
    assert status == 400 and "preset 'majority' with overrides 'a=1'" in reply["error"]["message"]
    assert "/policies/" not in reply["error"]["message"]


def test_simulate_refuses_permutations_whose_tables_would_not_fit(tmp_path: Path) -> None:
    """`simulate --permutations 10000000` sizes the replay tables first and names the option, no numpy traceback."""
    from typer.testing import CliRunner

    from ttscale.cli.app import app

    bank = tmp_path / "b.jsonl"
    bank.write_text("".join(json.dumps({"id": f"q{i}", "reference": "1", "samples": [{"answer": a} for a in "1121"]}) + "\n"
                            for i in range(50)))
    result = CliRunner().invoke(app, ["simulate", str(bank), "--permutations", "10000000", "--json"])
    assert result.exit_code == 2, result.output
    assert "--permutations" in result.output and "Traceback" not in result.output


def test_plan_refuses_a_plot_path_matplotlib_would_rewrite(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ttscale.cli.app import app

    bank = tmp_path / "b.jsonl"
    bank.write_text("".join(json.dumps({"id": f"q{i}", "reference": "1", "samples": [{"answer": a} for a in "1121"]}) + "\n"
                            for i in range(20)))
    for bad in (tmp_path / "curve", tmp_path):  # no suffix (matplotlib would write curve.png), a directory
        result = CliRunner().invoke(app, ["plan", str(bank), "--plot", str(bad)])
        assert result.exit_code == 2 and "--plot" in result.output, result.output
    assert not (tmp_path / "curve.png").exists()


def test_simulate_on_a_question_with_20000_distinct_answers_is_a_clear_error(tmp_path: Path) -> None:
    """Counting votes no longer builds a dense (permutations, samples, classes) table (it needed 6 GiB here)."""
    from typer.testing import CliRunner

    from ttscale.cli.app import app

    bank = tmp_path / "scatter.jsonl"
    bank.write_text(json.dumps({"id": "q0", "reference": "1", "samples": [{"answer": str(i)} for i in range(20000)]}) + "\n"
                    + json.dumps({"id": "q1", "reference": "1", "samples": [{"answer": str(i % 3)} for i in range(20000)]}) + "\n")
    result = CliRunner().invoke(app, ["simulate", str(bank), "--exact", "--permutations", "2", "--json"])
    assert result.exit_code == 2, result.output
    assert "--max-k=20000" in result.output and "at most 2,048 samples per question" in result.output, result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, ["simulate", str(bank), "--permutations", "2", "--json"])  # without --exact: the replay's own limit
    assert result.exit_code == 2 and "at most 1000 samples" in result.output, result.output


# -- 10. exact vote-state tables are sized before they are built ---------------------------------------


def scattered_bank(path: Path, questions: int, samples: int, answers: int) -> Path:
    """Answers drawn from a Zipf-like law over ``answers`` classes: many classes of middling size,
    the worst case for the exact tables (a bank like this took 13.7 GB and 5 minutes before)."""
    import random

    rng = random.Random(0)
    weights = [1 / (i + 1) for i in range(answers)]
    with path.open("w") as f:
        for q in range(questions):
            drawn = rng.choices(range(answers), weights, k=samples)
            f.write(json.dumps({"id": f"q{q}", "reference": "0", "samples": [{"answer": str(a)} for a in drawn]}) + "\n")
    return path


@pytest.mark.parametrize("command", [["simulate"], ["plan", "--simulate"]])
def test_exact_tables_for_scattered_answers_are_refused_with_their_size(tmp_path: Path, command: list[str]) -> None:
    bank = scattered_bank(tmp_path / "scatter.jsonl", 50, 100, 30)
    proc = ttscale(*command, str(bank), "--exact", "--permutations", "2", "--json", timeout=60)
    assert_clean_error(proc, "--max-k=100", "exact vote-state tables", "GiB", "lower --max-k", "TTSCALE_MAX_ARRAY_BYTES",
                       "the largest that fits is --max-k")


def test_exact_tables_a_little_over_the_limit_lower_k_unasked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --max-k, K is the pool size; when its tables are just over the memory limit (the
    Llama-2 GSM8K bank: 48 samples, 4.4 GiB), the simulation runs at the largest K that fits and says so."""
    from ttscale.adaptive.exact_replay import STATE_BYTES, state_bound
    from ttscale.answers.grading import load_candidates
    from ttscale.errors import ConfigError
    from ttscale.planning.simulation import simulate_problems

    bank = scattered_bank(tmp_path / "scatter.jsonl", 20, 24, 6)
    _, problems = load_candidates(bank)
    assert state_bound(problems, 23) < state_bound(problems, 24)
    monkeypatch.setenv("TTSCALE_MAX_ARRAY_BYTES", str(int(STATE_BYTES * state_bound(problems, 23))))
    report = simulate_problems(problems, exact=True, permutations=2)
    assert report.result.k == 23 and report.lowered_from == 24
    assert report.to_json()["k_lowered_from"] == 24 and report.to_json()["exact"]["bound"]["plurality_answer"] is not None
    with pytest.raises(ConfigError, match="exact vote-state tables"):  # asked for, 24 is refused
        simulate_problems(problems, exact=True, permutations=2, max_k=24)
    proc = ttscale("simulate", str(bank), "--exact", "--permutations", "2")  # the child inherits the limit
    assert proc.returncode == 0, proc.stderr
    assert "K = 23, not the pool size 24" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr


def test_state_bound_covers_the_real_tables() -> None:
    """The estimate is an upper bound (within a small factor) of the states the tables really hold."""
    import numpy as np

    from ttscale.adaptive.exact_replay import VoteStates, state_bound
    from ttscale.answers.candidates import Candidates

    rng = np.random.default_rng(3)
    for classes, samples, k in [(2, 12, 12), (6, 20, 15), (12, 30, 30)]:
        problems = []
        for _ in range(8):
            drawn = rng.integers(-1, classes, size=samples)
            problems.append(Candidates(classes=drawn, class_correct=np.arange(classes) == 0))
        real = VoteStates(problems, k).states
        bound = state_bound(problems, k)
        assert real <= bound <= 6 * real, (classes, real, bound)


def test_many_equal_wrong_classes_fold_only_the_draws_that_fit() -> None:
    """1,000 wrong classes of 5 samples each: the fold lists the ways to draw at most K votes, not
    all 10^13 ways to assign 0-5 votes to each class (that enumeration never finished)."""
    import numpy as np

    from ttscale.adaptive.exact_replay import VoteStates
    from ttscale.answers.candidates import Candidates

    classes = np.repeat(np.arange(1000), 5)
    problem = Candidates(classes=classes, class_correct=np.arange(1000) == 0)
    states = VoteStates([problem], 8)
    assert states.states == sum(len(lv) for lv in states.levels) and states.states < 200
    np.testing.assert_allclose([p.sum() for p in states.prob[1:]], 1.0)


# -- 10. very large banks stop at the line that passes a limit ------------------------------------------


def ttscale_env(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "ttscale", *args], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **env})


def test_a_bank_of_2_5_million_samples_of_one_problem_is_refused_fast_and_small(tmp_path: Path) -> None:
    """The issue's 42 MB bank: it took 17 s and 2.7 GB to reach the estimator's error; now the reader
    refuses line 1 from a count of its samples, before parsing it (peak memory measured in the child)."""
    bank = tmp_path / "huge.jsonl"
    bank.write_text(json.dumps({"id": "q0", "reference": "1", "samples": [{"answer": str(i % 7)} for i in range(2_500_000)]},
                               separators=(",", ":")) + "\n")
    # VmHWM, not ru_maxrss: the latter keeps the high-water mark of the forking pytest process
    code = ("import re, sys\nfrom ttscale.cli.app import app\n"
            "try:\n    app(['eval', sys.argv[1]])\nexcept SystemExit as e:\n    code = e.code\n"
            "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
            "print('rss_kb', hwm, 'exit', code, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(bank)], capture_output=True, text=True, timeout=60, check=False)
    rss_kb, exit_code = proc.stderr.split("rss_kb ")[1].split()[::2]
    assert exit_code == "2" and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "line 1" in proc.stderr and "50,000 samples per problem" in proc.stderr and "TTSCALE_MAX_PROBLEM_SAMPLES" in proc.stderr
    assert int(rss_kb) < 500_000, rss_kb


def test_sample_limits_count_merged_lines_and_the_whole_bank(tmp_path: Path) -> None:
    bank = tmp_path / "bank.jsonl"
    bank.write_text("".join(json.dumps({"id": f"q{i % 2}", "samples": [{"answer": "1"}] * 10}) + "\n" for i in range(6)))
    proc = ttscale_env({"TTSCALE_MAX_PROBLEM_SAMPLES": "25"}, "eval", str(bank))
    assert_clean_error(proc, "line 5", "at most 25 samples per problem", "30 for id 'q0'", "TTSCALE_MAX_PROBLEM_SAMPLES")
    proc = ttscale_env({"TTSCALE_MAX_BANK_SAMPLES": "45"}, "eval", str(bank))
    assert_clean_error(proc, "line 5", "at most 45 samples in one bank", "50 by this line", "TTSCALE_MAX_BANK_SAMPLES")
    proc = ttscale_env({"TTSCALE_MAX_LINE_BYTES": "100"}, "eval", str(bank))
    assert_clean_error(proc, "line 1", "a line of at most 100 bytes", "TTSCALE_MAX_LINE_BYTES")
    proc = ttscale_env({"TTSCALE_MAX_BANK_SAMPLES": "lots"}, "eval", str(bank))
    assert_clean_error(proc, "TTSCALE_MAX_BANK_SAMPLES='lots'", "a positive integer")
    assert read_bank(bank).sample_counts() == {"q0": 30, "q1": 30}  # within the defaults


def test_a_line_exactly_at_the_byte_limit_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    line = json.dumps({"id": "q", "samples": [{"answer": "1"}]})
    bank = tmp_path / "bank.jsonl"
    bank.write_text(line + "\n" + line + "\n")
    monkeypatch.setenv("TTSCALE_MAX_LINE_BYTES", str(len(line)))
    assert read_bank(bank).sample_counts() == {"q": 2}
    monkeypatch.setenv("TTSCALE_MAX_LINE_BYTES", str(len(line) - 1))
    with pytest.raises(BankFormatError, match="line 1"):
        read_bank(bank)


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "{tmp}"], "not a model folder (no config.json in it)"),
    (["--stop-at", "25:99"], "--stop-at '25:99': expected HH:MM"),
    (["--stop-at", "7"], "--stop-at '7': expected HH:MM"),
    (["--samples", "0"], "--samples 0: expected a positive whole number"),
    (["--round", "-3"], "--round -3: expected a positive whole number"),
])
def test_corpora_script_usage_errors_name_the_option(tmp_path: Path, args: list[str], message: str) -> None:
    """evals/corpora.py refuses bad options before it starts vLLM: a usage error, not a traceback."""
    script = Path(__file__).resolve().parents[1] / "evals" / "corpora.py"
    done = subprocess.run([sys.executable, str(script), "--compact-only", "--out", str(tmp_path / "out"),
                           *[a.replace("{tmp}", str(tmp_path)) for a in args]], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()  # nothing written
