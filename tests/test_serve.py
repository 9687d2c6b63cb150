"""The proxy (``ttscale serve``) as a client sees it: the official openai client and raw HTTP.

Upstream is ``tests/fake_upstream.py``: a real local HTTP server that answers instantly, so these
tests exercise the proxy's protocol and failure handling; the proxy in front of the real vLLM
server with the embedded model is in test_vllm.py.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from fake_upstream import MODEL, FakeUpstream, ThreadServer, free_port, right_answer

from ttscale.errors import ConfigError
from ttscale.live.serve.app import ServeConfig, create_app
from ttscale.live.serve.options import route

KEY = "sk-test-proxy-key-123"


@pytest.fixture(autouse=True)
def _reset(upstream: FakeUpstream) -> None:
    upstream.reset()


def _proxy(upstream_url: str, **kw) -> ThreadServer:
    config = ServeConfig(upstream=upstream_url, **{"max_retries": 1, "timeout": 10.0, **kw})
    return ThreadServer(create_app(config)).start()


@pytest.fixture(scope="module")
def proxy(upstream: FakeUpstream) -> Iterator[str]:
    server = _proxy(upstream.url, n=8, price_in=1.0, price_out=2.0)
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def keyed(upstream: FakeUpstream) -> Iterator[str]:
    server = _proxy(upstream.url, api_key=KEY)
    yield server.url
    server.stop()


def client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30)


PROMPT = "What is 6 times 7? End with #### N."


def test_chat_completion_is_a_valid_openai_response_with_the_vote(proxy: str, upstream: FakeUpstream) -> None:
    before = upstream.samples
    resp = client(proxy).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}], seed=3)
    tts = resp.model_extra["ttscale"]
    assert resp.object == "chat.completion" and len(resp.choices) == 1
    assert resp.choices[0].message.role == "assistant" and resp.choices[0].finish_reason == "stop"
    assert tts["samples"] == 8 and upstream.samples - before == 8
    assert sum(tts["vote"].values()) == 8
    top = max(tts["vote"], key=tts["vote"].get)
    assert tts["answer"] == top and resp.choices[0].message.content.endswith(f"#### {top}")
    # usage counts every upstream token: 8 completions and one prompt (one request with n=8)
    assert resp.usage.prompt_tokens == len(PROMPT.split())
    assert resp.usage.completion_tokens == 8 * len(resp.choices[0].message.content.split())
    assert tts["cost_usd"] == pytest.approx((resp.usage.prompt_tokens * 1.0 + resp.usage.completion_tokens * 2.0) / 1e6)
    # the same seed draws the same samples
    again = client(proxy).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}], seed=3)
    assert again.model_extra["ttscale"]["vote"] == tts["vote"]


def test_majority_beats_one_sample_on_the_fake_model(proxy: str) -> None:
    prompts = [f"Question {i}: compute something. #### N" for i in range(30)]
    resp = client(proxy).completions.create(model=MODEL, prompt=prompts, seed=1, extra_body={"ttscale": {"n": 9}})
    assert len(resp.choices) == 30
    right = [ch.text.endswith(f"#### {right_answer(p)}") for ch, p in zip(resp.choices, prompts)]
    assert sum(right) >= 24  # p_right 0.6 per sample; majority of 9 is right ~90% of the time
    assert resp.model_extra["ttscale"]["prompts"][0]["samples"] == 9


def test_streaming_sends_the_chosen_answer_as_sse(proxy: str) -> None:
    c = client(proxy)
    msgs = [{"role": "user", "content": PROMPT}]
    whole = c.chat.completions.create(model=MODEL, messages=msgs, seed=5)
    chunks = list(c.chat.completions.create(model=MODEL, messages=msgs, seed=5, stream=True, stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == whole.choices[0].message.content
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    streamed = c.completions.create(model=MODEL, prompt=PROMPT, seed=5, stream=True)
    assert "".join(ch.choices[0].text for ch in streamed).endswith("####" + whole.choices[0].message.content.split("####")[1])


def test_model_prefix_and_body_field_choose_policy_and_budget(proxy: str, upstream: FakeUpstream) -> None:
    c = client(proxy)
    resp = c.completions.create(model=f"ttscale/confidence-vote@4/{MODEL}", prompt=PROMPT, seed=1)
    tts = resp.model_extra["ttscale"]
    assert tts["samples"] == 4 and tts["policy"] == "confidence-vote"
    # the body field wins over the prefix
    resp = c.completions.create(model=f"ttscale/majority@4/{MODEL}", prompt=PROMPT, seed=1, extra_body={"ttscale": {"n": 6}})
    assert resp.model_extra["ttscale"]["samples"] == 6
    # adaptive: an easy question settles before the budget
    upstream.p_right = 1.0
    try:
        resp = c.completions.create(model=MODEL, prompt=PROMPT, seed=1, extra_body={"ttscale": {"n": 32, "adaptive": True}})
    finally:
        upstream.p_right = 0.6
    assert resp.model_extra["ttscale"]["stopped"] == "settled" and resp.model_extra["ttscale"]["samples"] < 32
    # n returns several distinct answers, best first
    resp = c.completions.create(model=MODEL, prompt=PROMPT, seed=2, n=2, extra_body={"ttscale": {"n": 16}})
    answers = [ch.text.rsplit("#### ", 1)[1] for ch in resp.choices]
    assert len(resp.choices) == 2 and answers[0] != answers[1]
    assert answers == list(resp.model_extra["ttscale"]["vote"])[:2]


def test_route_parses_prefixes() -> None:
    r = route("ttscale/best-of-majority:answers=2@8,adaptive/Qwen/Qwen2.5-Math-7B", None)
    assert r.model == "Qwen/Qwen2.5-Math-7B"
    assert (r.options.policy, r.options.n, r.options.adaptive) == ("best-of-majority:answers=2", 8, True)
    assert route("plain-model", {"n": 4}).options.n == 4
    with pytest.raises(ConfigError, match="ttscale.n"):
        route("m", {"n": 0})
    with pytest.raises(ConfigError, match="ttscale.bogus"):
        route("m", {"bogus": 1})
    with pytest.raises(ConfigError, match="sample count"):
        route("ttscale/majority@lots/m", None)


def test_models_health_and_metrics(proxy: str) -> None:
    ids = [m.id for m in client(proxy).models.list()]
    assert MODEL in ids and f"ttscale/majority/{MODEL}" in ids and f"ttscale/oracle/{MODEL}" not in ids
    assert httpx.get(proxy + "/health").json()["status"] == "ok"
    metrics = httpx.get(proxy + "/metrics").text
    assert 'ttscale_requests_total{endpoint="/v1/chat/completions",status="200"}' in metrics
    assert "ttscale_upstream_samples_total" in metrics


def _error(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    return err


def test_bad_requests_get_openai_style_400s(proxy: str) -> None:
    url = proxy + "/v1/chat/completions"
    assert "not valid JSON" in _error(httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}), 400)["message"]
    assert _error(httpx.post(url, json={"model": MODEL}), 400)["param"] == "messages"
    assert _error(httpx.post(url, json={"model": MODEL, "messages": [{"role": "user", "content": "x"}], "ttscale": {"n": 1000}}), 400)["param"] == "ttscale.n"
    assert _error(httpx.post(url, json={"model": MODEL, "messages": [{"role": "user", "content": "x"}], "ttscale": {"policy": "oracle"}}), 400)["param"] == "policy"
    bad = _error(httpx.post(url, json={"model": MODEL, "messages": [{"role": "user", "content": "x"}], "ttscale": {"policy": "/etc/passwd"}}), 400)
    assert "preset" in bad["message"]
    assert _error(httpx.post(proxy + "/v1/completions", json={"model": MODEL, "prompt": 3}), 400)["param"] == "prompt"
    assert _error(httpx.get(proxy + "/v1/nothing"), 404)["code"] == "not_found"
    # the upstream's own 4xx is passed on
    assert _error(httpx.post(url, json={"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}), 404)["code"] == "upstream_refused"


def test_request_size_limit(upstream: FakeUpstream) -> None:
    with _proxy(upstream.url, max_request_bytes=2048) as server:
        big = {"model": MODEL, "prompt": "x" * 5000}
        assert _error(httpx.post(server.url + "/v1/completions", json=big), 413)["code"] == "request_too_large"


def test_api_key_required_and_never_logged(keyed: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = keyed + "/v1/chat/completions"
    body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
    assert _error(httpx.post(url, json=body), 401)["code"] == "invalid_api_key"
    assert "incorrect" in _error(httpx.post(url, json=body, headers={"Authorization": "Bearer wrong"}), 401)["message"]
    with pytest.raises(openai.AuthenticationError):
        client(keyed, "wrong").models.list()
    assert client(keyed, KEY).chat.completions.create(**body).choices[0].message.content
    assert httpx.get(keyed + "/health").status_code == 200  # health needs no key
    assert KEY not in caplog.text


def test_upstream_down_is_a_502(upstream: FakeUpstream) -> None:
    with _proxy(f"http://127.0.0.1:{free_port()}/v1") as server:
        err = _error(httpx.post(server.url + "/v1/completions", json={"model": MODEL, "prompt": PROMPT}, timeout=30), 502)
        assert err["code"] == "upstream_unreachable" and "unreachable" in err["message"]
        assert _error(httpx.get(server.url + "/v1/models", timeout=30), 502)["code"] == "upstream_unreachable"


def test_upstream_too_slow_is_a_504_after_the_timeout(upstream: FakeUpstream) -> None:
    upstream.hang = 5.0
    with _proxy(upstream.url, timeout=1.0) as server:
        start = time.perf_counter()
        err = _error(httpx.post(server.url + "/v1/completions", json={"model": MODEL, "prompt": PROMPT}, timeout=30), 504)
        took = time.perf_counter() - start
    assert err["code"] == "upstream_timeout" and 0.9 < took < 4.0


def test_500_for_some_of_the_n_degrades_and_says_so(proxy: str, upstream: FakeUpstream) -> None:
    seed = 100
    upstream.fail_multi = True  # the request with n=8 fails (and its retry)
    upstream.fail_seeds = {seed + 2, seed + 5}  # then 2 of the 8 single requests keep failing
    resp = httpx.post(proxy + "/v1/completions", json={"model": MODEL, "prompt": PROMPT, "seed": seed}, timeout=30)
    assert resp.status_code == 200, resp.text
    tts = resp.json()["ttscale"]
    assert tts["samples"] == 6 and tts["degraded"]["failed_samples"] == 2
    assert any("500" in e for e in tts["degraded"]["errors"])
    # every one of the n failing is an error, not an empty answer
    upstream.fail_seeds = set(range(seed, seed + 8))
    err = _error(httpx.post(proxy + "/v1/completions", json={"model": MODEL, "prompt": PROMPT, "seed": seed}, timeout=30), 502)
    assert "500" in err["message"]


def _run_serve(upstream: FakeUpstream, *args: str) -> tuple[int, str]:
    """``ttscale serve`` on a free port: (port, its stderr) after one completion request through it."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ttscale", "serve", "--upstream", upstream.url, "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "80"})
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() is not None else "timeout"
            time.sleep(0.2)
        resp = client(f"http://127.0.0.1:{port}").completions.create(model=MODEL, prompt=PROMPT)
        assert resp.model_extra["ttscale"]["samples"] == int(args[args.index("--n") + 1])
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    return port, stderr


def test_serve_command_starts_binds_localhost_and_checks_options(upstream: FakeUpstream, tmp_path) -> None:
    port, quiet = _run_serve(upstream, "--n", "4", "--log-level", "warning")
    assert "POST /v1/completions" not in quiet
    banner = quiet.splitlines()[:3]
    assert banner[0] == f"ttscale proxy  http://127.0.0.1:{port}/v1" and upstream.url in banner[1]
    assert all(len(line) <= 80 for line in banner)
    _, loud = _run_serve(upstream, "--n", "3", "--log-level", "info")
    line = next(x for x in loud.splitlines() if "POST /v1/completions" in x)
    assert " 200 " in line and "upstream_requests=1 samples=3 stopped=budget" in line
    bad = subprocess.run([sys.executable, "-m", "ttscale", "serve", "--upstream", "ftp://x", "--n", "4"], capture_output=True, text=True)
    assert bad.returncode == 2 and "upstream='ftp://x'" in bad.stderr and "Traceback" not in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "ttscale", "serve", "--upstream", upstream.url, "--policy", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "policy='nope'" in bad.stderr


def test_serve_help_fits_80_columns() -> None:
    out = subprocess.run([sys.executable, "-m", "ttscale", "serve", "--help"], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "80", "TERMINAL_WIDTH": "80"}).stdout
    assert "--max-request-samples" in out and "--upstream-api-key" in out and "TTSCALE_UPSTREAM_API_KEY" in out
    assert "…" not in out and "..." not in out and max(len(line) for line in out.splitlines()) <= 80


def test_reward_policy_through_a_scorer(upstream: FakeUpstream, tmp_path) -> None:
    """--scorer: best-of-n picks the candidate a real (tiny, random) reward model scores highest."""
    from conftest import build_tiny_llama

    from ttscale.scoring.registry import make_scorer

    rm = build_tiny_llama(tmp_path / "rm", num_labels=1)
    with pytest.raises(ConfigError, match="scorer"):
        ServeConfig(upstream=upstream.url, policy="best-of-n")  # a reward policy needs a scorer
    with pytest.raises(ConfigError, match="scorer_model"):
        ServeConfig(upstream=upstream.url, scorer_model=str(rm))
    plain = _proxy(upstream.url, n=6)
    server = _proxy(upstream.url, n=6, scorer="reward-model", scorer_model=str(rm))
    try:
        with pytest.raises(openai.BadRequestError, match="scorer"):
            client(plain.url).chat.completions.create(model=f"ttscale/best-of-n/{MODEL}", messages=[{"role": "user", "content": PROMPT}])
        ids = {m.id for m in client(plain.url).models.list().data}
        assert f"ttscale/majority/{MODEL}" in ids and f"ttscale/best-of-n/{MODEL}" not in ids
        assert f"ttscale/best-of-n/{MODEL}" in {m.id for m in client(server.url).models.list().data}
        resp = client(server.url).chat.completions.create(
            model=f"ttscale/best-of-n/{MODEL}", messages=[{"role": "user", "content": PROMPT}], seed=5,
            extra_body={"ttscale": {"candidates": True}})
        tts = resp.model_extra["ttscale"]
        cands = tts["candidates"]
        assert len(cands) == 6 and all("reward" in c for c in cands)
        # the rewards are the reward model's own scores of (question, candidate) ...
        ref = make_scorer("reward-model", str(rm)).score([PROMPT], [[c["text"] for c in cands]])[0]
        assert [c["reward"] for c in cands] == pytest.approx(ref, abs=1e-5)
        # ... and the answer is the best-scored candidate's
        best = max(cands, key=lambda c: c["reward"])
        assert tts["answer"] == best["answer"] and resp.choices[0].message.content == best["text"]
    finally:
        server.stop()
        plain.stop()


def test_request_model_errors_are_400s_naming_the_field(proxy: str) -> None:
    """The request bodies are pydantic models: a field that does not fit is a 400 naming it (never a 422)."""
    url = proxy + "/v1/chat/completions"
    msgs = [{"role": "user", "content": PROMPT}]
    assert _error(httpx.post(url, json={"model": MODEL, "messages": [{"content": "x"}]}), 400)["param"] == "messages[0].role"
    assert _error(httpx.post(url, json={"model": MODEL, "messages": msgs, "n": 17}), 400)["param"] == "n"
    assert _error(httpx.post(url, json={"model": MODEL, "messages": msgs, "seed": -1}), 400)["param"] == "seed"
    assert _error(httpx.post(url, json={"model": MODEL, "messages": msgs, "stream": "yes"}), 400)["param"] == "stream"
    assert _error(httpx.post(url, json={"model": MODEL, "messages": msgs, "ttscale": {"bogus": 1}}), 400)["param"] == "ttscale.bogus"
    assert _error(httpx.post(url, json={"messages": msgs}), 400)["param"] == "model"
    assert _error(httpx.post(url, json=[1, 2]), 400)["code"] == "invalid_json"
    # fields ttscale does not read go upstream as sent; a JSON body sent as a form (curl -d) is read as JSON
    import json

    body = json.dumps({"model": MODEL, "prompt": PROMPT, "seed": 4, "stop": ["\n\n"], "user": "me"}).encode()
    resp = httpx.post(proxy + "/v1/completions", content=body, headers={"content-type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 200 and resp.json()["ttscale"]["samples"] == 8


def test_streamed_choices_match_the_whole_response(proxy: str) -> None:
    """Several prompts and n=2 answers each: the stream carries the same choices as the whole response."""
    body = {"model": MODEL, "prompt": ["first [hard]", "second [hard]"], "seed": 9, "n": 2}
    whole = httpx.post(proxy + "/v1/completions", json=body, timeout=30).json()
    with httpx.stream("POST", proxy + "/v1/completions", json={**body, "stream": True}, timeout=30) as resp:
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    import json

    chunks = [json.loads(e) for e in events[:-1]]
    texts: dict[int, str] = {}
    finish: dict[int, str] = {}
    for chunk in chunks:
        for ch in chunk["choices"]:
            texts[ch["index"]] = texts.get(ch["index"], "") + ch["text"]
            if ch["finish_reason"]:
                finish[ch["index"]] = ch["finish_reason"]
    assert [texts[i] for i in range(4)] == [ch["text"] for ch in whole["choices"]]
    assert [finish[i] for i in range(4)] == [ch["finish_reason"] for ch in whole["choices"]]
    assert chunks[-1]["ttscale"]["prompts"][0]["vote"] == whole["ttscale"]["prompts"][0]["vote"]


def test_chunked_body_over_the_limit_is_a_413(upstream: FakeUpstream) -> None:
    with _proxy(upstream.url, max_request_bytes=2048) as server:
        def body():
            yield b'{"model": "m", "prompt": "'
            yield b"x" * 4096
            yield b'"}'

        assert _error(httpx.post(server.url + "/v1/completions", content=body()), 413)["code"] == "request_too_large"


def test_forwards_only_what_the_client_sent(proxy: str, upstream: FakeUpstream) -> None:
    """No temperature or max_tokens of the proxy's own: the upstream's defaults apply (unless the
    server sets them), and a request the upstream refuses comes back in its own words and status."""
    client(proxy).completions.create(model=MODEL, prompt=PROMPT, seed=1, stop=["\n\n"])
    sent = upstream.bodies[-1]
    assert sent == {"model": MODEL, "prompt": PROMPT, "n": 8, "seed": 1, "stop": ["\n\n"]}
    with _proxy(upstream.url, temperature=0.5, max_tokens=64) as server:
        client(server.url).completions.create(model=MODEL, prompt=PROMPT, temperature=0.9)
    assert (upstream.bodies[-1]["temperature"], upstream.bodies[-1]["max_tokens"]) == (0.9, 64)
    err = _error(httpx.post(proxy + "/v1/completions", json={"model": MODEL, "prompt": PROMPT, "max_tokens": 1000}), 400)
    assert err == {"message": "max_tokens=1000 cannot be greater than max_model_len=256", "type": "BadRequestError",
                   "param": "max_tokens", "code": 400}


def test_greedy_draws_one_sample_and_n_choices_come_back(proxy: str, upstream: FakeUpstream) -> None:
    before = upstream.samples
    resp = client(proxy).completions.create(model=MODEL, prompt=PROMPT, temperature=0, n=3)
    tts = resp.model_extra["ttscale"]
    assert upstream.samples - before == 1 and upstream.bodies[-1]["n"] == 1 and tts["samples"] == 1
    assert tts["notes"] == ["temperature 0 is greedy decoding: 1 upstream sample instead of 8 (every sample would be the same)"]
    assert len(resp.choices) == 3 and len({c.text for c in resp.choices}) == 1
    adaptive = client(proxy).completions.create(model=f"ttscale/majority@16+adaptive/{MODEL}", prompt=PROMPT, temperature=0)
    assert adaptive.model_extra["ttscale"]["samples"] == 1 and upstream.bodies[-1]["n"] == 1
    # unanimous: n=4 choices are the winner's candidates; then the vote's order
    upstream.p_right = 1.0
    try:
        resp = client(proxy).completions.create(model=MODEL, prompt=PROMPT, n=4, seed=3)
    finally:
        upstream.p_right = 0.6
    assert len(resp.choices) == 4 and len({c.text.rsplit("#### ", 1)[1] for c in resp.choices}) == 1
    resp = client(proxy).completions.create(model=MODEL, prompt="q [hard]", n=12, seed=3)
    answers = [c.text.rsplit("#### ", 1)[1] for c in resp.choices]
    vote = resp.model_extra["ttscale"]["vote"]
    # distinct answers first: the chosen one, then the rest by votes
    assert len(answers) == 12 and answers[0] == resp.model_extra["ttscale"]["answer"] and set(answers[:len(vote)]) == set(vote)
    assert sorted(answers[:8]) == sorted(a for a, k in vote.items() for _ in range(k))  # every sample once
    assert answers[8:] == answers[:4]  # more choices than samples: from the first again


def test_token_id_prompts_and_logprobs(proxy: str, upstream: FakeUpstream) -> None:
    resp = httpx.post(proxy + "/v1/completions", json={"model": MODEL, "prompt": [5, 6, 7], "logprobs": 2, "seed": 1}).json()
    assert upstream.bodies[-1]["prompt"] == [5, 6, 7] and upstream.bodies[-1]["logprobs"] == 2
    assert resp["choices"][0]["logprobs"]["tokens"] == resp["choices"][0]["text"].split()
    resp = httpx.post(proxy + "/v1/completions", json={"model": MODEL, "prompt": [[5, 6], [7]], "seed": 1}).json()
    assert len(resp["choices"]) == 2 and resp["choices"][0]["logprobs"] is None
    for bad in ([], [1, "a"], [[1], []], [-1], [[1.5]], {"a": 1}):
        err = _error(httpx.post(proxy + "/v1/completions", json={"model": MODEL, "prompt": bad}), 400)
        assert err["param"] == "prompt" and "token ids" in err["message"]
    chat = client(proxy).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}], n=2,
                                                 logprobs=True, top_logprobs=3)
    assert upstream.bodies[-1]["logprobs"] is True and upstream.bodies[-1]["top_logprobs"] == 3
    assert all(c.logprobs.content[-1].token == c.message.content.split()[-1] for c in chat.choices)
    streamed = list(client(proxy).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}],
                                                          logprobs=True, stream=True))
    assert any(c.choices and c.choices[0].logprobs for c in streamed)


def test_model_ids_without_commas_listed_and_retrieved(proxy: str) -> None:
    from ttscale.live.serve.app import aliases

    assert aliases(["/srv/models/a", "/old/a", "/srv/b", "plain"]) == {"srv/models/a": "/srv/models/a", "old/a": "/old/a", "b": "/srv/b"}
    ids = [m.id for m in client(proxy).models.list()]
    assert f"ttscale/majority@8+adaptive/{MODEL}" in ids and f"ttscale/top-k-answers@64/{MODEL}" in ids
    assert client(proxy).models.retrieve(f"ttscale/majority@5+adaptive/{MODEL}").owned_by == "ttscale"
    assert client(proxy).models.retrieve(MODEL).id == MODEL
    for missing in (f"ttscale/oracle/{MODEL}", "nope", f"ttscale/majority@x/{MODEL}"):
        assert _error(httpx.get(f"{proxy}/v1/models/{missing}"), 404)["code"] == "model_not_found"
    assert route("ttscale/majority@8+adaptive/m", None).options.adaptive is True
    assert route("ttscale/majority@8,adaptive/m", None).options.n == 8  # the older form still works
    with pytest.raises(ConfigError, match="unknown field ttscale.k"):
        route("m", {"k": 3})


def test_access_log_line_per_proxied_request(proxy: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ttscale.serve.access")
    client(proxy).completions.create(model=MODEL, prompt=PROMPT, seed=1)
    httpx.post(proxy + "/v1/completions", json={"model": MODEL, "prompt": PROMPT, "ttscale": {"k": 1}})
    httpx.get(proxy + "/health")
    lines = [r.getMessage() for r in caplog.records if r.name == "ttscale.serve.access"]
    assert len(lines) == 2
    assert lines[0].startswith("POST /v1/completions 200 ") and "upstream_requests=1 samples=8 stopped=budget" in lines[0]
    assert lines[1].startswith("POST /v1/completions 400 ") and "unknown field ttscale.k" in lines[1]
    with _proxy(f"http://127.0.0.1:{free_port()}/v1", max_retries=0) as server:
        httpx.post(server.url + "/v1/completions", json={"model": MODEL, "prompt": PROMPT}, timeout=30)
    line = [r.getMessage() for r in caplog.records if r.name == "ttscale.serve.access"][-1]
    assert " 502 " in line and "--upstream" in line


@pytest.mark.parametrize("aiohttp", [True, False])
def test_both_http_clients_forward_retry_and_refuse_alike(upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch, aiohttp: bool) -> None:
    """The proxy sends upstream with aiohttp when installed, else on httpx: the same answers,
    retries, degrading and refusals either way."""
    from ttscale.live.samplers import ProxySampler

    if aiohttp:
        pytest.importorskip("aiohttp")
    monkeypatch.setattr(ProxySampler, "use_aiohttp", aiohttp)
    with _proxy(upstream.url, n=8) as server:
        url = server.url + "/v1/completions"
        before = upstream.calls["200"]
        ok = httpx.post(url, json={"model": MODEL, "prompt": PROMPT, "seed": 4}, timeout=30).json()
        assert ok["ttscale"]["samples"] == 8 and ok["ttscale"]["requests"] == 1 and upstream.calls["200"] == before + 1
        assert _error(httpx.post(url, json={"model": MODEL, "prompt": PROMPT, "max_tokens": 999}), 400)["param"] == "max_tokens"
        upstream.fail_multi = True  # 500 for n=8 (retried once), then 8 single requests
        before = upstream.calls["500"]
        resp = httpx.post(url, json={"model": MODEL, "prompt": PROMPT, "seed": 4}, timeout=30).json()
        assert upstream.calls["500"] == before + 2 and resp["ttscale"]["samples"] == 8
        assert resp["ttscale"]["requests"] == 8  # one by one
    with _proxy(f"http://127.0.0.1:{free_port()}/v1", max_retries=0) as server:
        err = _error(httpx.post(server.url + "/v1/completions", json={"model": MODEL, "prompt": PROMPT}, timeout=30), 502)
        assert err["code"] == "upstream_unreachable" and "connection failed" in err["message"]


def test_direct_endpoints_answer_bad_bodies_as_fastapi_did(upstream: FakeUpstream) -> None:
    """The completion endpoints skip FastAPI's request machinery (routing.Direct): every bad body
    gets the same status and error as the FastAPI route of the same app answers without it."""
    from ttscale.live.serve.routing import Direct

    fast = ThreadServer(create_app(ServeConfig(upstream=upstream.url, max_retries=1, timeout=10.0))).start()
    app = create_app(ServeConfig(upstream=upstream.url, max_retries=1, timeout=10.0))
    app.user_middleware = [m for m in app.user_middleware if m.cls is not Direct]
    slow = ThreadServer(app).start()
    msgs = [{"role": "user", "content": "x"}]
    bodies = [b"", b"null", b"[]", b"3", b"{not json", b'{"model": "m", "messages": [}', b"\xff\xfe{\x00}\x00", b"\x80abc",
              b'{"model": 1, "messages": []}', b'{"model": "m"}', b'{"model": "m", "messages": [{"content": "x"}]}',
              b'{"model": "m", "messages": [{"role": "user"}], "n": 0, "seed": -1}', b'{"model": "m", "prompt": [[]]}',
              f'{{"model": "m", "messages": {msgs}, "ttscale": {{"k": 3}}}}'.replace("'", '"').encode(),
              b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes", "logprobs": 3}']
    try:
        seen = set()
        for path in ("/v1/chat/completions", "/v1/completions"):
            for body in bodies:
                got, want = (httpx.post(s.url + path, content=body, headers={"content-type": "application/json"})
                             for s in (fast, slow))
                assert (got.status_code, got.json()) == (want.status_code, want.json()), (path, body)
                seen.add(got.status_code)
            got, want = (httpx.get(s.url + path) for s in (fast, slow))
            assert (got.status_code, got.json()) == (want.status_code, want.json()) and got.status_code == 405
        assert seen == {400}
    finally:
        fast.stop()
        slow.stop()
