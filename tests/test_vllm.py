"""The real vLLM engine: offline ``vllm.LLM`` in-process and the OpenAI-compatible server over HTTP.

One server (``python -m vllm.entrypoints.openai.api_server`` on 127.0.0.1) is started for the
module, while the offline engine loads; a fault proxy sits in front of it where faults are
injected. The last test kills the server mid-run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("vllm")

from fault_proxy import FaultProxy, free_port  # noqa: E402
from test_samplers import arith_problems, tiny_model, write_jsonl  # noqa: E402,F401
from vllm_server import SERVER_ENV, start, stop, vllm_server_command, wait_healthy  # noqa: E402

from ttscale.errors import ConfigError  # noqa: E402
from ttscale.records.bank import read_bank  # noqa: E402
from ttscale.sampling.backends.openai import OpenAISampler, ServerError  # noqa: E402
from ttscale.sampling.backends.vllm import VLLMSampler  # noqa: E402
from ttscale.sampling.driver import plan_requests, run_sampling  # noqa: E402
from ttscale.sampling.sampler import FanOut, SampleRequest, SamplingConfig, request_seed  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
ENGINE = dict(dtype="float32", enforce_eager=True, max_model_len=256, max_num_batched_tokens=16384)
CONFIG = SamplingConfig(temperature=0.8, max_tokens=32, template="arith", seed=1234)
N = 8
PROBLEMS = arith_problems(6)
CHAT_TEMPLATE = "{% for m in messages %}Question: {{ m['content'] }}\n{% endfor %}Answer:"  # Jinja drops a trailing newline


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **SERVER_ENV, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def server_proc(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    """Starts the server (not waiting: the offline engine loads meanwhile); killed at the end."""
    port = free_port()
    folder = tmp_path_factory.mktemp("server")
    log = folder / "server.log"
    (folder / "chat.jinja").write_text(CHAT_TEMPLATE)
    proc = start(vllm_server_command(tiny_model, port, "--chat-template", str(folder / "chat.jinja")), log, _env())
    yield proc, f"http://127.0.0.1:{port}", log
    stop(proc)


@pytest.fixture(scope="module")
def server(server_proc: tuple[subprocess.Popen, str, Path]) -> str:
    proc, url, log = server_proc
    wait_healthy(proc, url, log)
    return url


@pytest.fixture(scope="module")
def engine(tiny_model: Path, server_proc: object) -> Iterator[VLLMSampler]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**SERVER_ENV, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}.items():
            mp.setenv(key, value)
        sampler = VLLMSampler(str(tiny_model), CONFIG, engine_args=ENGINE)
        yield sampler
        sampler.close()


@pytest.fixture(scope="module")
def offline_bank(engine: VLLMSampler, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("offline") / "bank.jsonl"
    stats = run_sampling(engine, PROBLEMS, out, N, meta={"backend": "vllm"})
    assert stats.samples == len(PROBLEMS) * N and stats.requests == len(PROBLEMS)
    assert stats.tokens_per_s == pytest.approx(stats.completion_tokens / stats.elapsed)
    return out


def texts(result_candidates: list) -> list[str]:
    return [c.text for c in result_candidates]


def test_offline_engine_samples_n_per_prompt(engine: VLLMSampler, offline_bank: Path) -> None:
    llm_config = engine.llm.llm_engine.vllm_config
    assert llm_config.cache_config.enable_prefix_caching
    bank = read_bank(offline_bank)
    assert bank.sample_counts() == {p.id: N for p in PROBLEMS}
    for record in bank.records:
        assert record.model_extra["prompt_tokens"] > 10
        assert {s.seed for s in record.samples} == {request_seed(CONFIG.seed, record.id, 0)}
        for s in record.samples:
            assert 0 < s.tokens <= 32 and s.logprob < 0 and s.mean_logprob == pytest.approx(s.logprob / s.tokens)
            assert s.finish in ("stop", "length")
    # Seeded per request: alone, in another batch order, the same candidates come back.
    lone = engine.generate(plan_requests(PROBLEMS[::-1], {}, N, CONFIG.seed)[-1:])[0]
    assert texts(lone.candidates) == [s.text for s in bank.by_id()[PROBLEMS[0].id].samples]
    # n sampled candidates, not one repeated: some problem has several distinct texts.
    assert len({s.text for r in bank.records for s in r.samples}) > len(PROBLEMS)


def test_seeded_cpu_calls_are_cut_so_no_prefill_is_chunked(engine: VLLMSampler) -> None:
    assert engine.cpu and engine.max_num_batched_tokens == 16384
    ids = [[1] * 100] * 30  # 30 prompts of 100 tokens: 163 sequences fit one step's budget
    seeded = [SampleRequest(f"p{i}", "x", 8, seed=i) for i in range(30)]
    assert [len(c) for c in engine.engine_calls(seeded, ids)] == [15, 15]  # 240 sequences in two even calls
    assert [len(c) for c in engine.engine_calls([SampleRequest(f"p{i}", "x", 8) for i in range(30)], ids)] == [30]
    with pytest.raises(ConfigError, match="max_num_batched_tokens=16384"):
        engine.engine_calls([SampleRequest("p", "x", 200, seed=1)], ids[:1])


def test_offline_chat_template_and_stop_strings(engine: VLLMSampler) -> None:
    config = SamplingConfig(prompt_format="chat", stop=("\n",), max_tokens=32, seed=5)
    req = SampleRequest("a", PROBLEMS[0].problem, 4, seed=1)
    if not engine.chat_template:
        with pytest.raises(ConfigError, match="chat template"):
            VLLMSampler(None, config, llm=engine.llm).generate([req])
    chat = VLLMSampler(None, config, llm=engine.llm, chat_template=CHAT_TEMPLATE)
    text = f"Question: {PROBLEMS[0].problem}\nAnswer:"
    assert chat.prompt_ids(req) == chat.tokenizer(text, add_special_tokens=False)["input_ids"]
    (result,) = chat.generate([req])
    assert len(result.candidates) == 4
    for cand in result.candidates:
        assert "\n" not in cand.text and (cand.finish == "stop" or cand.tokens == 32)


def test_server_gives_the_offline_texts_and_logprobs(server: str, offline_bank: Path) -> None:
    sampler = OpenAISampler(None, CONFIG, base_url=server + "/v1")
    results = sampler.generate(plan_requests(PROBLEMS, {}, N, CONFIG.seed))
    assert sampler.calls == len(PROBLEMS) and sampler.native_n is True  # one HTTP request with n=8 per prompt
    offline = read_bank(offline_bank).by_id()
    for result in results:
        ref = offline[result.request.id]
        assert texts(result.candidates) == [s.text for s in ref.samples]
        assert [c.tokens for c in result.candidates] == [s.tokens for s in ref.samples]
        assert [c.logprob for c in result.candidates] == pytest.approx([s.logprob for s in ref.samples], abs=1e-3)
        assert result.prompt_tokens == ref.model_extra["prompt_tokens"]  # from usage
        assert result.completion_tokens == sum(s.tokens for s in ref.samples)


def test_server_chat_endpoint_matches_offline_chat(server: str, engine: VLLMSampler) -> None:
    config = SamplingConfig(prompt_format="chat", temperature=0.8, max_tokens=24, seed=9)
    reqs = plan_requests(PROBLEMS[:3], {}, 4, config.seed)
    offline = VLLMSampler(None, config, llm=engine.llm, chat_template=CHAT_TEMPLATE).generate(reqs)
    over_http = OpenAISampler(None, config, base_url=server + "/v1").generate(reqs)
    for a, b in zip(offline, over_http):
        assert texts(a.candidates) == texts(b.candidates) and a.prompt_tokens == b.prompt_tokens
        assert [c.logprob for c in a.candidates] == pytest.approx([c.logprob for c in b.candidates], abs=1e-3)


def test_parallel_fan_out_and_fallback_when_n_is_refused(server: str) -> None:
    req = plan_requests(PROBLEMS[:2], {}, N, CONFIG.seed)
    with FaultProxy(server, max_n=1) as proxy:
        auto = OpenAISampler(None, CONFIG, base_url=proxy.url + "/v1")
        results = auto.generate(req)
        assert auto.native_n is False
        sent = proxy.completions(status=200)
        assert len(sent) == 2 * N and {e.n for e in sent} == {1}
        assert len(proxy.completions(status=400)) >= 1
    for result in results:
        assert len(result.candidates) == N
        assert [c.seed for c in result.candidates] == [result.request.seed + i for i in range(N)]
    assert len({t for r in results for t in texts(r.candidates)}) > len(results)  # seeds differ: so do samples
    direct = OpenAISampler(None, SamplingConfig.from_dict({**CONFIG.to_dict(), "fan_out": "parallel"}), base_url=server + "/v1")
    assert texts(direct.generate(req[:1])[0].candidates) == texts(results[0].candidates)
    assert direct.config.fan_out is FanOut.PARALLEL and direct.calls == N


def test_429_500_503_and_timeouts_are_retried(server: str, offline_bank: Path) -> None:
    reqs = plan_requests(PROBLEMS, {}, N, CONFIG.seed)
    with FaultProxy(server, hang=3) as proxy:
        proxy.inject("429", "500", "hang", "503", "429")
        sampler = OpenAISampler(None, CONFIG, base_url=proxy.url + "/v1", timeout=2.5, concurrency=2)
        results = sampler.generate(reqs)
        statuses = [e.status for e in proxy.completions(status=None)]
    assert sorted(map(str, statuses[:5])) == sorted(["429", "500", "hang", "503", "429"])
    assert statuses.count(200) == len(PROBLEMS) and sampler.calls == len(PROBLEMS) + 5
    offline = read_bank(offline_bank).by_id()
    assert all(texts(r.candidates) == [s.text for s in offline[r.request.id].samples] for r in results)
    # Retries exhausted: a clear error naming the server and the last failure.
    with FaultProxy(server) as proxy:
        proxy.inject(*["500"] * 3)
        failing = OpenAISampler(None, CONFIG, base_url=proxy.url + "/v1", max_retries=2)
        with pytest.raises(ServerError, match=r"failed 3 times, last: HTTP 500: injected 500"):
            failing.generate(reqs[:1])


def _sample_cmd(base_url: str, dataset: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "ttscale.cli.commands.sample", "--backend", "openai", "--base-url", base_url, "--dataset", str(dataset),
        "--out", str(out), "--n", str(N), "--temperature", "0.8", "--max-tokens", "32", "--template", "arith", "--seed", "1234",
        "--quiet", *extra,
    ]


def _wait_lines(path: Path, lines: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= lines:
            return
        if proc.poll() is not None:
            pytest.fail(f"sampler exited early ({proc.returncode}): {proc.stderr.read().decode() if proc.stderr else ''}")
        time.sleep(0.05)
    pytest.fail(f"{path} did not reach {lines} lines")


def test_sigkill_then_resume_sends_no_finished_request_again(server: str, engine: VLLMSampler, tmp_path: Path) -> None:
    problems = arith_problems(12)
    dataset = write_jsonl(tmp_path / "ds.jsonl", [{"id": p.id, "problem": p.problem, "answer": p.answer} for p in problems])
    out = tmp_path / "bank.jsonl"
    prompt_id = {CONFIG.render(p.problem): p.id for p in problems}
    with FaultProxy(server, delay=0.5) as proxy:
        cmd = _sample_cmd(proxy.url + "/v1", dataset, out, "--concurrency", "2")
        first = subprocess.Popen(cmd, env=_env(), stderr=subprocess.PIPE, start_new_session=True)
        _wait_lines(out, 3, first)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        written = {r.id for r in read_bank(out).records}
        assert 3 <= len(written) < len(problems)
        before = len(proxy.log)
        proxy.delay = 0
        second = subprocess.run(cmd, env=_env(), capture_output=True, timeout=120)
        assert second.returncode == 0, second.stderr.decode()
        resent = [prompt_id[e.prompt] for e in proxy.log[before:] if e.path.endswith("completions")]
    bank = read_bank(out)
    assert bank.sample_counts() == {p.id: N for p in problems}  # exactly N each: nothing dropped or doubled
    assert not written & set(resent)  # no finished request was sent again
    assert sorted(resent) == sorted({p.id for p in problems} - written)  # each missing one once
    # Seeds per (problem, round): the resumed bank is what one uninterrupted run draws (here: offline vLLM).
    offline = engine.generate(plan_requests(problems, {}, N, CONFIG.seed))
    assert all([s.text for s in bank.by_id()[r.request.id].samples] == texts(r.candidates) for r in offline)


def test_server_down_at_start_is_a_clear_error(tmp_path: Path) -> None:
    dataset = write_jsonl(tmp_path / "ds.jsonl", [{"id": "a", "problem": "Tom has 3 apples. How many apples does Tom have now?"}])
    out = tmp_path / "bank.jsonl"
    res = subprocess.run(_sample_cmd(f"http://127.0.0.1:{free_port()}/v1", dataset, out), env=_env(), capture_output=True, timeout=120)
    err = res.stderr.decode()
    assert res.returncode == 2 and "cannot reach an OpenAI-compatible server" in err and "Traceback" not in err
    assert not out.exists() or out.stat().st_size == 0


def test_proxy_in_front_of_the_vllm_server_answers_the_openai_client(server: str, tiny_model: Path) -> None:
    """Chat and completions, streaming and not, through ``ttscale serve``'s app to the real server."""
    import openai
    from fake_upstream import ThreadServer

    from ttscale.answers import extract_answer
    from ttscale.live.serve.app import ServeConfig, create_app

    model = str(tiny_model)
    prompt = CONFIG.render(PROBLEMS[0].problem)
    with ThreadServer(create_app(ServeConfig(upstream=server + "/v1", n=N, max_tokens=48, temperature=0.8))) as proxy:
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        resp = client.completions.create(model=model, prompt=prompt, seed=11, max_tokens=48)
        tts = resp.model_extra["ttscale"]
        # the proxy's request with the client's seed is the request a client would send directly
        direct = openai.OpenAI(base_url=server + "/v1", api_key="unused").completions.create(
            model=model, prompt=prompt, seed=11, n=N, max_tokens=48, temperature=0.8)
        votes: dict[str, int] = {}
        for ch in direct.choices:
            if (a := extract_answer(ch.text)) is not None:
                votes[a] = votes.get(a, 0) + 1
        assert tts["samples"] == N and tts["vote"] == votes
        assert resp.usage.completion_tokens == direct.usage.completion_tokens
        assert resp.usage.prompt_tokens == direct.usage.prompt_tokens
        assert resp.choices[0].text in [ch.text for ch in direct.choices]
        streamed = "".join(ch.choices[0].text for ch in client.completions.create(model=model, prompt=prompt, seed=11, max_tokens=48, stream=True) if ch.choices)
        assert streamed == resp.choices[0].text
        msgs = [{"role": "user", "content": PROBLEMS[1].problem}]
        chat = client.chat.completions.create(model=f"ttscale/majority@4/{model}", messages=msgs, seed=5, max_tokens=48)
        assert chat.model_extra["ttscale"]["samples"] == 4 and "####" in chat.choices[0].message.content
        chunks = list(client.chat.completions.create(model=f"ttscale/majority@4/{model}", messages=msgs, seed=5, max_tokens=48, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == chat.choices[0].message.content


def test_api_on_the_in_process_vllm_engine(engine: VLLMSampler) -> None:
    from ttscale import TTScale

    with TTScale(engine=engine.llm, policy="majority", budget=N, sampling=CONFIG.to_dict(), seed=3) as tts:
        sols = tts.solve_many([p.problem for p in PROBLEMS])
        adaptive = tts.solve_many([p.problem for p in PROBLEMS], budget={"samples": 16, "adaptive": True})
    for sol in sols:
        assert sol.samples == N and sol.requests == 1 and sol.prompt_tokens > 0
        answers = [c.answer for c in sol.candidates if c.answer is not None]
        assert sol.answer is None or answers.count(sol.answer) == max(answers.count(a) for a in answers)
    assert all(4 <= s.samples <= 16 for s in adaptive)


def test_server_killed_mid_run_retries_then_fails_clearly(server: str, server_proc: tuple, tmp_path: Path) -> None:
    """Runs last: it kills the module's server."""
    problems = arith_problems(400)
    dataset = write_jsonl(tmp_path / "ds.jsonl", [{"id": p.id, "problem": p.problem} for p in problems])
    out = tmp_path / "bank.jsonl"
    cmd = _sample_cmd(server + "/v1", dataset, out, "--concurrency", "1", "--max-retries", "2", "--timeout", "5")
    run = subprocess.Popen(cmd, env=_env(), stderr=subprocess.PIPE, start_new_session=True)
    _wait_lines(out, 3, run)
    os.killpg(server_proc[0].pid, signal.SIGKILL)
    _, stderr = run.communicate(timeout=60)
    err = stderr.decode()
    assert run.returncode == 2 and "failed 3 times" in err and "connection failed" in err and "Traceback" not in err, err
    bank = read_bank(out)  # what was written stays, whole
    assert 3 <= len(bank) < len(problems) and set(bank.sample_counts().values()) == {N}


PLAIN_SCRIPT = """
import json
from ttscale import TTScale
from ttscale.arith import test_set_path

rows = [json.loads(line) for line in open(test_set_path())][:4]
tts = TTScale(backend="vllm", model="arith-tiny", budget=4, seed=0)
sols = tts.solve_many([r["problem"] for r in rows])
print(json.dumps({"samples": [s.samples for s in sols], "right": sum(s.answer == str(r["answer"]) for s, r in zip(sols, rows)),
                  "template": tts.sampler.config.template}))
"""


def test_api_from_a_plain_script_without_a_main_guard(tmp_path: Path) -> None:
    """vLLM spawns its engine core unless told not to, re-importing an unguarded script: ttscale keeps it in-process."""
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_SCRIPT)
    env = _env()
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bootstrapping phase" not in proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["samples"] == [4, 4, 4, 4] and result["template"] == "Question: {problem}\nAnswer:\n"
    assert result["right"] >= 1


VLLM_LOG_LINE = re.compile(r"\b(INFO|WARNING)\b.*\[[\w./]+\.py:\d+\]")
"""A vLLM log line: ``(EngineCore pid=1) INFO 12-05 07:11:33 [model.py:733] ...``."""


def test_cli_hides_vllm_logs_unless_verbose(tmp_path: Path) -> None:
    def run(*flags: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "ttscale.cli.app", *flags, "sample", "--backend", "vllm", "--model", "arith-tiny",
               "--limit", "2", "--n", "2", "--out", str(tmp_path / f"bank{len(flags)}.jsonl"), "--json"]
        env = _env()
        for key in ("VLLM_LOGGING_LEVEL", "VLLM_LOGGING_STREAM", "TQDM_DISABLE", "TRANSFORMERS_VERBOSITY"):
            env.pop(key, None)
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)

    quiet = run()
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert json.loads(quiet.stdout)["samples"] == 4  # stdout is the JSON summary alone
    noise = [line for line in quiet.stderr.splitlines() if VLLM_LOG_LINE.search(line) or "Loading" in line or "Warning" in line]
    assert noise == [], noise[:5]
    loud = run("-v")
    assert loud.returncode == 0, loud.stderr[-3000:]
    assert json.loads(loud.stdout)["samples"] == 4  # vLLM's lines go to stderr, not into the JSON
    assert sum(bool(VLLM_LOG_LINE.search(line)) for line in loud.stderr.splitlines()) >= 5


def test_demo_ends_with_what_the_optimizer_answers(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "ttscale.cli.app", "demo", "--backend", "vllm", "--limit", "40", "--n", "8", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**_env(), "COLUMNS": "100"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("What the optimizer says"))
    ceiling, target, adaptive = lines[start + 1:start + 4]
    assert re.search(r"ceiling +\d+\.\d% \+/- \d+\.\d predicted at N = \d+ \(95% interval\)", ceiling), ceiling
    assert re.search(r"target +\d+\.\d% (needs N = \d+ samples per question \(fixed\)|: above)", target), target
    assert re.search(r"adaptive +(\d+\.\d samples per question instead of 8 for|no setting)", adaptive), adaptive
    saved = json.loads((tmp_path / "results.json").read_text())["optimizer"]
    assert saved["n"] == 8 and 0 < saved["majority"] <= 1 and saved["ceiling"] >= saved["majority"] - 0.1
    assert saved["adaptive_samples"] is None or 1 <= saved["adaptive_samples"] <= 8
