"""Early stop through the OpenAI-compatible backend: streamed traces, closed when confidence drops.

Fast cases run against a tiny streaming server made here (FastAPI on uvicorn, like
``fake_upstream.py``) whose traces have known token confidences: even seeds stay confident, odd
seeds drop after a few tokens. It records how many tokens each stream sent before the client
closed it, and it can misbehave (no log-probs, malformed chunks, a stream that never ends).
The real case runs the vLLM OpenAI server on the embedded model (marked ``vllm`` and ``slow``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_upstream import ThreadServer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ttscale.early_stop import LOW_CONFIDENCE, EarlyStopParams, calibrate_threshold
from ttscale.errors import ConfigError
from ttscale.sampling.backends.openai import Failure, OpenAISampler, ServerError
from ttscale.sampling.backends.registry import make_sampler
from ttscale.sampling.sampler import SampleRequest, SamplingConfig

REPO = Path(__file__).resolve().parents[1]
MODEL = "stream-model"
LENGTH = 40
"""Tokens of a full trace of the streaming server."""
HIGH, LOW = 5.0, 1.0
"""Token confidences of the server's traces: even seeds stay at HIGH, odd ones drop to LOW after DROP tokens."""
DROP = 5


def confidences(seed: int) -> list[float]:
    return [HIGH if seed % 2 == 0 or i < DROP else LOW for i in range(LENGTH)]


class StreamServer:
    """A streaming ``/v1/completions`` and ``/v1/chat/completions`` with known confidences.

    Token ``i`` of the trace seeded ``s`` has top-3 log-probs all equal to ``-confidences(s)[i]``
    (so its top-k confidence is that value for any k) and text ``"w{i} "``; the trace ends with
    ``#### {s}``. ``mode`` makes it misbehave; ``sent[seed]`` counts the tokens a stream sent
    (it stops counting when the client disconnects); ``bodies`` keeps the request bodies.
    """

    def __init__(self) -> None:
        self.mode = "ok"
        self.sent: dict[int, int] = {}
        self.bodies: list[dict[str, Any]] = []
        app = FastAPI()

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "test"}]}

        async def complete(request: Request, chat: bool) -> Any:
            body = await request.json()
            self.bodies.append(body)
            if self.mode == "refuse_logprobs":
                return JSONResponse({"error": {"message": "logprobs are not supported by this model", "type": "BadRequestError"}},
                                    status_code=400)
            return StreamingResponse(self._events(body, chat), media_type="text/event-stream")

        @app.post("/v1/completions")
        async def completions(request: Request) -> Any:
            return await complete(request, chat=False)

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Any:
            return await complete(request, chat=True)

        self.app = app

    def _choice(self, chat: bool, text: str, conf: float | None, finish: str | None) -> dict[str, Any]:
        top = {"a": -conf, "b": -conf, "c": -conf} if conf is not None else None
        if chat:
            lp = {"content": [{"token": text, "logprob": -conf, "top_logprobs": [{"token": t, "logprob": v} for t, v in top.items()]}]} \
                if top is not None else None
            return {"index": 0, "delta": {"content": text}, "logprobs": lp, "finish_reason": finish}
        lp = {"tokens": [text], "token_logprobs": [-conf], "top_logprobs": [top], "text_offset": [0]} if top is not None else None
        return {"index": 0, "text": text, "logprobs": lp, "finish_reason": finish}

    async def _events(self, body: dict[str, Any], chat: bool) -> AsyncIterator[str]:
        seed = int(body.get("seed") or 0)
        mode = self.mode
        self.sent[seed] = 0
        confs = confidences(seed)
        length = 10 * body["max_tokens"] if mode == "endless" else min(LENGTH, body["max_tokens"])
        for i in range(length):
            await asyncio.sleep(0.002)
            conf: float | None = confs[i % LENGTH]
            if mode in ("no_logprobs", "no_top"):
                conf = None
            text = f"#### {seed}" if i == LENGTH - 1 else f"w{i} "
            finish = None if mode == "endless" or i < length - 1 else ("stop" if length == LENGTH else "length")
            chunk: dict[str, Any] = {"id": "x", "object": "text_completion", "model": MODEL,
                                     "choices": [self._choice(chat, text, conf, finish)]}
            if mode == "no_top":
                chunk["choices"][0]["logprobs"] = {"tokens": [text], "token_logprobs": [-1.0], "top_logprobs": None}
            if i == 3 and mode == "malformed":
                chunk["choices"][0]["text"] = 42
            if i == 3 and mode == "not_json":
                yield "data: {not json\n\n"
                continue
            if i == 3 and mode == "error_event":
                yield "data: " + json.dumps({"error": {"message": "the engine died", "code": 500}}) + "\n\n"
                return
            if i == 3 and mode == "no_finish":
                yield "data: [DONE]\n\n"
                return
            yield "data: " + json.dumps(chunk) + "\n\n"
            self.sent[seed] += 1
        usage = {"prompt_tokens": 7, "completion_tokens": length, "total_tokens": 7 + length}
        yield "data: " + json.dumps({"id": "x", "object": "text_completion", "model": MODEL, "choices": [], "usage": usage}) + "\n\n"
        yield "data: [DONE]\n\n"


@pytest.fixture(scope="module")
def stream_server() -> Iterator[tuple[StreamServer, str]]:
    fake = StreamServer()
    with ThreadServer(fake.app) as server:
        yield fake, server.url + "/v1"


@pytest.fixture
def server(stream_server: tuple[StreamServer, str]) -> tuple[StreamServer, str]:
    fake, url = stream_server
    fake.mode = "ok"
    fake.sent.clear()
    fake.bodies.clear()
    return fake, url


def sampler(url: str, es: EarlyStopParams, **config: Any) -> OpenAISampler:
    cfg = SamplingConfig(max_tokens=config.pop("max_tokens", 64), early_stop=es, **config)
    return OpenAISampler(None, cfg, base_url=url, max_retries=0, timeout=10)


def test_openai_backend_accepts_early_stop(server: tuple[StreamServer, str]) -> None:
    _, url = server
    made = make_sampler("openai", None, SamplingConfig(max_tokens=64, early_stop=EarlyStopParams(window=4)), base_url=url)
    assert isinstance(made, OpenAISampler)


@pytest.mark.parametrize("chat", [False, True])
def test_fixed_threshold_closes_the_streams_of_low_confidence_traces(server: tuple[StreamServer, str], chat: bool) -> None:
    fake, url = server
    s = sampler(url, EarlyStopParams(threshold=3.0, window=4, top_k=3), prompt_format="chat" if chat else "raw")
    [result] = s.generate([SampleRequest(id="p", problem="q", n=6, seed=10)])
    assert [c.seed for c in result.candidates] == list(range(10, 16))
    for c in result.candidates:
        if c.seed % 2 == 0:  # confident all along: runs to its end
            assert (c.finish, c.tokens, c.answer) == ("stop", LENGTH, str(c.seed))
        else:  # windows of 4: (5,5,5,1)=4, (5,5,1,1)=3, (5,1,1,1)=2 < 3 at the 8th token
            assert (c.finish, c.tokens, c.answer) == (LOW_CONFIDENCE, DROP + 3, None)
            assert c.text == "".join(f"w{i} " for i in range(DROP + 3))
            assert c.model_extra["early_stop_threshold"] == 3.0
            # The server stopped sending soon after the client closed the stream, far from the end.
            assert fake.sent[c.seed] < LENGTH // 2
    assert result.completion_tokens == 3 * LENGTH + 3 * (DROP + 3)
    assert result.extra["stopped"] == 3
    body = fake.bodies[0]
    assert body["stream"] is True and body["n"] == 1
    if chat:
        assert body["logprobs"] is True and body["top_logprobs"] == 3
    else:
        assert body["logprobs"] == 3


def test_warmup_traces_run_in_full_and_calibrate(server: tuple[StreamServer, str]) -> None:
    fake, url = server
    es = EarlyStopParams(eta=90, window=4, warmup=4, top_k=3)
    [result] = sampler(url, es).generate([SampleRequest(id="p", problem="q", n=8, seed=0)])
    warm, tracked = result.candidates[:4], result.candidates[4:]
    assert all(c.tokens == LENGTH and c.finish == "stop" for c in warm)  # seeds 1 and 3 drop, but run in full
    lowest = [c.model_extra["lowest_group_confidence"] for c in warm]
    assert lowest == [HIGH, LOW, HIGH, LOW]
    limit = calibrate_threshold(lowest, 90)
    assert limit == LOW
    # Nothing falls below the lowest warm-up trace: the tracked traces all run in full too.
    assert all(c.finish == "stop" and c.model_extra["early_stop_threshold"] == limit for c in tracked)
    es10 = EarlyStopParams(eta=10, window=4, warmup=4, top_k=3)
    [result] = sampler(url, es10).generate([SampleRequest(id="p", problem="q", n=8, seed=0)])
    assert [c.finish for c in result.candidates[4:]] == ["stop", LOW_CONFIDENCE, "stop", LOW_CONFIDENCE]


@pytest.mark.parametrize(("mode", "kind", "field"), [
    ("malformed", Failure.MALFORMED, "field 'choices[0].text': expected a string (got 42)"),
    ("not_json", Failure.MALFORMED, "field '(chunk)': expected JSON data"),
    ("endless", Failure.MALFORMED, "expected at most max_tokens=16 tokens in the stream"),
    ("no_finish", Failure.MALFORMED, "field 'choices[0].finish_reason': expected a finish reason before the stream ended"),
    ("error_event", Failure.STATUS, "the engine died"),
])
def test_bad_streams_give_typed_errors(server: tuple[StreamServer, str], mode: str, kind: Failure, field: str) -> None:
    fake, url = server
    fake.mode = mode
    with pytest.raises(ServerError) as info:
        sampler(url, EarlyStopParams(threshold=3.0, window=4, top_k=3), max_tokens=16).generate(
            [SampleRequest(id="p", problem="q", n=2, seed=0)])
    assert info.value.kind is kind
    assert field in str(info.value)
    assert "request 'p'" in str(info.value)


@pytest.mark.parametrize("mode", ["no_logprobs", "no_top", "refuse_logprobs"])
def test_a_server_without_logprobs_names_the_option(server: tuple[StreamServer, str], mode: str) -> None:
    fake, url = server
    fake.mode = mode
    with pytest.raises(ConfigError) as info:
        sampler(url, EarlyStopParams(threshold=3.0, window=4, top_k=3)).generate([SampleRequest(id="p", problem="q", n=2, seed=0)])
    assert info.value.parameter == "early_stop"
    assert "logprobs" in str(info.value) and "top-3" in str(info.value)


def test_cli_openai_bank_has_stopped_traces(server: tuple[StreamServer, str], tmp_path: Path) -> None:
    _, url = server
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "problem": f"question {i}", "answer": "0"}) + "\n" for i in range(2)))
    bank = tmp_path / "bank.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "ttscale", "sample", "--dataset", str(data), "-o", str(bank), "-q", "--backend", "openai",
         "--base-url", url, "-n", "4", "--max-tokens", "64", "--seed", "0", "--early-stop-threshold", "3",
         "--early-stop-window", "4", "--early-stop-top-k", "3"],
        capture_output=True, text=True, cwd=REPO, timeout=120, env={**os.environ, "TQDM_DISABLE": "1"})
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in bank.read_text().splitlines() if line.strip()]
    finishes = [s["finish"] for r in records if "samples" in r for s in r["samples"]]
    assert finishes.count(LOW_CONFIDENCE) == 4 and finishes.count("stop") == 4


# -- the real vLLM server -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def vllm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("vllm")
    from fake_upstream import free_port
    from vllm_server import SERVER_ENV, start, stop, vllm_server_command, wait_healthy

    from ttscale.arith.paths import resolve_model

    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {**os.environ, **SERVER_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = start(vllm_server_command(Path(resolve_model("arith-tiny")), port), log, env)
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}", log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)


def generation_tokens(url: str) -> float:
    """The server's count of generated tokens so far (its Prometheus ``/metrics``)."""
    text = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=10).text
    return sum(float(m.group(1)) for m in re.finditer(r"^vllm:generation_tokens_total\{[^}]*\} (\S+)$", text, re.M))


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_server_stops_generating_closed_streams(vllm_url: str) -> None:
    from ttscale.arith.paths import resolve_model
    from ttscale.records.datasets import load_dataset
    from ttscale.sampling.model_defaults import sampling_defaults

    own = sampling_defaults(resolve_model("arith-tiny"))
    base = dict(template=own["template"], temperature=own["temperature"], max_tokens=own["max_tokens"])
    problems = load_dataset("arith-hard", limit=4)
    requests = [SampleRequest(id=p.id, problem=p.problem, n=8, seed=100 * i) for i, p in enumerate(problems)]
    # A threshold no group confidence reaches (it is >= 0): every trace is streamed in full.
    never = EarlyStopParams(threshold=0.0, window=8)
    before = generation_tokens(vllm_url)
    # Two streams at a time: the tiny model writes a 50-token trace in well under a second, so with
    # 32 streams in flight on 2 busy cores the server finished traces before the client could read
    # a chunk and close them (measured: 1,652 of 1,696 tokens generated anyway).
    full = OpenAISampler(None, SamplingConfig(**base, early_stop=never), base_url=vllm_url, concurrency=2).generate(requests)
    full_server = generation_tokens(vllm_url) - before
    # A threshold above every group confidence: each trace stops at its first full window.
    always = EarlyStopParams(threshold=1e9, window=8)
    before = generation_tokens(vllm_url)
    cut = OpenAISampler(None, SamplingConfig(**base, early_stop=always), base_url=vllm_url, concurrency=2).generate(requests)
    cut_server = generation_tokens(vllm_url) - before
    full_tokens = sum(r.completion_tokens for r in full)
    cut_tokens = sum(r.completion_tokens for r in cut)
    assert full_server == pytest.approx(full_tokens, abs=len(requests) * 8)  # the client saw what the server generated
    for f, c in zip(full, cut):
        for a, b in zip(f.candidates, c.candidates):
            assert a.seed == b.seed
            if (a.tokens or 0) > 8:
                # Stopped in the chunk that filled the first window: under load the server packs
                # several tokens into one chunk (15 seen), and the trace keeps every token it received.
                assert b.finish == LOW_CONFIDENCE and b.answer is None
                assert 8 <= (b.tokens or 0) <= (a.tokens or 0)
                assert (a.text or "").startswith(b.text or "")  # same seed: the stopped trace is a prefix of the full one
            else:
                assert b.finish == a.finish  # ended before its first window
    assert cut_tokens < 0.5 * full_tokens
    # The server really stopped: well short of the full traces (a server that ignored the closed
    # streams would generate them all, ratio 1). Its lag behind the client grows with load: 0.55 of
    # the full run's tokens measured with an eval busy on the other core.
    assert cut_server < 0.75 * full_server
    # The server runs a few steps ahead of the client before it sees the closed stream; on a loaded
    # 2-core machine that lag reached ~7 tokens per trace, so the bound allows 16 (traces run to ~50).
    assert cut_server <= cut_tokens + len(requests) * 8 * 16

    # Calibrated: the warm-up traces match the full run's same-seed traces token for token.
    es = EarlyStopParams(eta=10, window=8, warmup=4)
    calibrated = OpenAISampler(None, SamplingConfig(**base, early_stop=es), base_url=vllm_url).generate(requests)
    for f, c in zip(full, calibrated):
        assert [x.text for x in c.candidates[:4]] == [x.text for x in f.candidates[:4]]
        for a, b in zip(f.candidates[4:], c.candidates[4:]):
            assert (a.text or "").startswith(b.text or "")
            assert (b.tokens or 0) <= (a.tokens or 0)


def test_a_trace_tied_with_the_threshold_is_not_stopped() -> None:
    from ttscale.early_stop import below_threshold

    limit = 14.806750401845878  # a warm-up trace's lowest group confidence
    assert not below_threshold(limit, limit)
    assert not below_threshold(limit * (1 - 1e-7), limit)  # the same trace, rounded in float32 by an engine
    assert below_threshold(limit - 0.01, limit)
    assert not below_threshold(None, limit) and not below_threshold(1.0, None)


@pytest.mark.vllm
@pytest.mark.slow
def test_token_confidences_over_http_replay_what_the_streamed_early_stop_does(vllm_url: str) -> None:
    """``token_confidence`` through the server (one call with n and top log-probs per token), replayed
    offline, stops the traces the streamed early stop with the same seeds stops, at the same token
    or a few later (a stream is closed at the chunk that crossed the threshold)."""
    from ttscale.arith.paths import resolve_model
    from ttscale.early_stop.trajectory import Trace, decode_confidences, replay_early_stop
    from ttscale.records.datasets import load_dataset
    from ttscale.sampling.model_defaults import sampling_defaults

    own = sampling_defaults(resolve_model("arith-tiny"))
    base = dict(template=own["template"], temperature=own["temperature"], max_tokens=own["max_tokens"])
    problems = load_dataset("arith-hard", limit=3)
    requests = [SampleRequest(id=p.id, problem=p.problem, n=8, seed=100 * i) for i, p in enumerate(problems)]
    stored = OpenAISampler(None, SamplingConfig(**base, token_confidence=20), base_url=vllm_url).generate(requests)
    es = EarlyStopParams(eta=10, window=8, warmup=4)
    online = OpenAISampler(None, SamplingConfig(**base, early_stop=es), base_url=vllm_url, concurrency=2).generate(requests)
    stopped = 0
    for s, o in zip(stored, online):
        traces = [decode_confidences(c.token_confidence or "") for c in s.candidates]
        assert [t.size for t in traces] == [c.tokens for c in s.candidates]
        replay = replay_early_stop([Trace.of(t, es.window) for t in traces], eta=es.eta, warmup=es.warmup)
        assert [c.text for c in s.candidates[:4]] == [c.text for c in o.candidates[:4]]  # same seeds, same warm-up traces
        assert replay.threshold == pytest.approx(o.candidates[4].early_stop_threshold, rel=1e-5)  # type: ignore[attr-defined]
        assert replay.stopped.tolist() == [c.finish == LOW_CONFIDENCE for c in o.candidates]
        for at, c in zip(replay.tokens.tolist(), o.candidates):
            assert at <= (c.tokens or 0)  # the client saw the drop at this token or in a later chunk
        stopped += int(replay.stopped.sum())
    assert stopped > 0


def test_token_confidences_need_top_logprobs_from_the_server() -> None:
    """A server that returns log-probs but not the top ones (completions: null; chat: empty lists):
    a ConfigError naming ``token_confidence``, not samples without it."""
    from fake_upstream import MODEL, FakeUpstream

    with FakeUpstream() as up:
        for chat in (False, True):
            config = SamplingConfig(token_confidence=5, prompt_format="chat" if chat else "raw", max_tokens=32)
            with pytest.raises(ConfigError, match="token_confidence") as err:
                OpenAISampler(MODEL, config, base_url=up.url, max_retries=0).generate([SampleRequest("q", "What is 2+2?", 2, 1)])
            assert "top-5 log-probs" in str(err.value)
