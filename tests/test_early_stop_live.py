"""Online early stop in live solving: ``TTScale(early_stop=...)`` and the proxy's
``"ttscale": {"early_stop": {...}}``.

Fast cases: validation (typed errors and 400s naming the field), the proxy and the API in front
of the streaming fake of ``test_early_stop_http`` (known token confidences: even seeds stay
confident, odd seeds drop), and the threshold of a question calibrated once over the solver's
rounds (on the fake and on transformers). The real cases (marked ``vllm`` and ``slow``) put the
proxy and the API in front of vLLM's OpenAI server on the embedded model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_upstream import ThreadServer
from test_early_stop_http import HIGH, LOW, MODEL, StreamServer, vllm_url  # noqa: F401  (the real vLLM server fixture)

from ttscale import TTScale
from ttscale.early_stop import (
    LOW_CONFIDENCE,
    EarlyStopParams,
    below_threshold,
    calibrate_threshold,
    parse_early_stop,
)
from ttscale.errors import ConfigError
from ttscale.live.serve.app import ServeConfig, create_app
from ttscale.live.serve.options import parse_options, route

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]
ROUNDS = {"samples": 8, "pilot": 2, "step": 2, "tokens": 10**6}
"""A budget drawn in rounds of 2 (a token cap makes the solver draw in rounds without adaptive stopping)."""


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[StreamServer, str]]:
    server = StreamServer()
    with ThreadServer(server.app) as running:
        yield server, running.url + "/v1"


@pytest.fixture(scope="module")
def proxy(fake: tuple[StreamServer, str]) -> Iterator[str]:
    with ThreadServer(create_app(ServeConfig(upstream=fake[1], max_retries=0))) as running:
        yield running.url + "/v1"


def extra(sample: Any) -> dict[str, Any]:
    return sample.model_extra or {}


# -- validation ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "name"), [
    ({"eta": 0}, "early_stop.eta"), ({"eta": 101}, "early_stop.eta"), ({"window": 0}, "early_stop.window"),
    ({"warmup": 0}, "early_stop.warmup"), ({"top_k": 21}, "early_stop.top_k"), ({"bogus": 1}, "early_stop.bogus"),
    ({"threshold": "high"}, "early_stop.threshold"), (5, "early_stop"),
])
def test_bad_early_stop_names_the_field(value: Any, name: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_early_stop(value)
    assert info.value.parameter == name
    with pytest.raises(ConfigError) as info:
        TTScale(base_url="http://127.0.0.1:9/v1", model="m", early_stop=value)
    assert info.value.parameter == name


def test_api_early_stop_goes_into_the_sampling_config() -> None:
    es = EarlyStopParams(eta=10, window=8, warmup=4)
    with TTScale(base_url="http://127.0.0.1:9/v1", model="m", early_stop={"eta": 10, "window": 8, "warmup": 4}) as tts:
        assert tts.sampler.config.early_stop == es
    with TTScale(base_url="http://127.0.0.1:9/v1", model="m", early_stop=es, sampling={"max_tokens": 64}) as tts:
        assert tts.sampler.config.early_stop == es and tts.sampler.config.max_tokens == 64


@pytest.mark.parametrize(("kwargs", "name", "expected"), [
    ({"early_stop": {"window": 300}, "sampling": {"max_tokens": 256}}, "early_stop.window", "at most max_tokens"),
    ({"early_stop": {"window": 8}, "sampling": {"early_stop": {"window": 4}}}, "early_stop", "not both"),
    ({"early_stop": {"window": 8}, "search": {"method": "beam", "width": 2}, "prm": "oracle"}, "early_stop", "search"),
])
def test_early_stop_that_would_not_apply_is_refused(kwargs: dict[str, Any], name: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        TTScale(base_url="http://127.0.0.1:9/v1", model="m", **kwargs)
    assert info.value.parameter == name and expected in str(info.value)


def test_a_sampler_that_cannot_early_stop_says_so(tmp_path: Path) -> None:
    from ttscale.sampling.backends.registry import make_sampler
    from ttscale.sampling.sampler import SamplingConfig

    with pytest.raises(ConfigError, match="early_stop='replay'"):
        make_sampler("replay", str(tmp_path / "bank.jsonl"), SamplingConfig(early_stop=EarlyStopParams(window=8)))
    plain = make_sampler("openai", None, SamplingConfig(), base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match="sampler's own SamplingConfig"):
        TTScale(sampler=plain, early_stop={"window": 8})


def test_request_options_parse_early_stop() -> None:
    opts = parse_options({"n": 4, "early_stop": {"eta": 10, "window": 8}})
    assert opts.early_stop == EarlyStopParams(eta=10, window=8)
    assert opts.early_stop_or(None) == opts.early_stop
    default = EarlyStopParams(window=16)
    assert parse_options({"n": 4}).early_stop_or(default) == default
    assert parse_options({"early_stop": None}).early_stop_or(default) is None  # null turns a server default off
    # The model-name prefix and the body field merge; the body's early stop survives the merge.
    routed = route("ttscale/majority@4/m", {"early_stop": {"threshold": 2.0, "window": 4}})
    assert routed.options.n == 4 and routed.options.early_stop == EarlyStopParams(threshold=2.0, window=4)
    for raw, name in (({"eta": 0}, "ttscale.early_stop.eta"), ({"window": 0}, "ttscale.early_stop.window"),
                      ({"bogus": 1}, "ttscale.early_stop.bogus")):
        with pytest.raises(ConfigError) as info:
            parse_options({"early_stop": raw})
        assert info.value.parameter == name
    with pytest.raises(ConfigError, match="the early_stop fields are eta, window"):
        parse_options({"early_stop": {"bogus": 1}})


def test_serve_config_takes_a_default_early_stop() -> None:
    config = ServeConfig(upstream="http://127.0.0.1:9/v1", early_stop=EarlyStopParams(window=8))
    assert config.early_stop == EarlyStopParams(window=8)
    with pytest.raises(ConfigError) as info:
        ServeConfig(upstream="http://127.0.0.1:9/v1", max_tokens=4, early_stop=EarlyStopParams(window=8))
    assert info.value.parameter == "early_stop.window"


def _error(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 400, resp.text
    return resp.json()["error"]


@pytest.mark.parametrize(("block", "param"), [
    ({"eta": 0}, "ttscale.early_stop.eta"), ({"window": 0}, "ttscale.early_stop.window"),
    ({"bogus": 1}, "ttscale.early_stop.bogus"), ({"top_k": 0}, "ttscale.early_stop.top_k"),
])
def test_proxy_bad_early_stop_block_is_a_400_naming_the_field(proxy: str, block: dict[str, Any], param: str) -> None:
    for path, body in (("/chat/completions", {"messages": MESSAGES}), ("/completions", {"prompt": "2 + 2 ="})):
        error = _error(httpx.post(proxy + path, json={"model": MODEL, **body, "ttscale": {"early_stop": block}}))
        assert error["param"] == param and param in error["message"]
    if "bogus" in block:
        assert "the early_stop fields are eta, window" in error["message"]


def test_proxy_window_longer_than_max_tokens_is_a_400(proxy: str) -> None:
    error = _error(httpx.post(proxy + "/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 4,
                                                             "ttscale": {"early_stop": {"window": 8}}}))
    assert error["param"] == "ttscale.early_stop.window" and "max_tokens (4)" in error["message"]


# -- the proxy and the API on the streaming fake --------------------------------------------------

def test_proxy_stops_low_confidence_traces(fake: tuple[StreamServer, str], proxy: str) -> None:
    server, _ = fake
    server.mode = "ok"
    # The fake only streams: the run to compare with is one whose threshold no trace falls below.
    body: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "seed": 20, "max_tokens": 64,
                            "ttscale": {"n": 6, "candidates": True, "early_stop": {"threshold": 0.0, "window": 2}}}
    plain = httpx.post(proxy + "/chat/completions", json=body, timeout=30).json()
    assert plain["ttscale"]["early_stop"]["stopped"] == 0
    server.sent.clear()
    # A fixed threshold between the fake's two confidences: the odd seeds (20 + 1, 3, 5) drop below it.
    body["ttscale"]["early_stop"] = {"threshold": (HIGH + LOW) / 2, "window": 2}
    cut = httpx.post(proxy + "/chat/completions", json=body, timeout=30).json()
    report = cut["ttscale"]["early_stop"]
    assert report["stopped"] == 3 and report["warmup"] == 0 and report["threshold"] == (HIGH + LOW) / 2
    finishes = [c["finish"] for c in cut["ttscale"]["candidates"]]
    assert finishes == ["stop", LOW_CONFIDENCE] * 3
    assert [c["answer"] for c in cut["ttscale"]["candidates"][1::2]] == [None] * 3  # stopped traces do not vote
    assert sum(cut["ttscale"]["vote"].values()) == 3
    # Tokens: every generated token, stopped traces' included, and fewer than without the early stop.
    stopped_tokens = sum(c["tokens"] for c in cut["ttscale"]["candidates"] if c["finish"] == LOW_CONFIDENCE)
    assert report["stopped_tokens"] == stopped_tokens > 0
    assert cut["usage"]["completion_tokens"] == cut["ttscale"]["completion_tokens"] == 3 * 40 + stopped_tokens
    assert cut["usage"]["completion_tokens"] < plain["usage"]["completion_tokens"] == 6 * 40
    assert all(server.sent[s] < 40 for s in (21, 23, 25))  # the upstream's streams were closed early
    assert server.bodies[-1]["stream"] is True and server.bodies[-1]["top_logprobs"] == 20


def test_proxy_server_default_and_null(fake: tuple[StreamServer, str]) -> None:
    default = EarlyStopParams(threshold=(HIGH + LOW) / 2, window=2)
    with ThreadServer(create_app(ServeConfig(upstream=fake[1], max_retries=0, early_stop=default))) as running:
        url = running.url + "/v1/completions"
        body: dict[str, Any] = {"model": MODEL, "prompt": "2 + 2 =", "seed": 20, "max_tokens": 64, "ttscale": {"n": 4}}
        assert httpx.post(url, json=body, timeout=30).json()["ttscale"]["early_stop"]["stopped"] == 2
        body["ttscale"]["early_stop"] = None  # off: a plain (non-streamed) call, which this fake does not serve
        assert httpx.post(url, json=body, timeout=30).status_code == 502
        assert len(fake[0].bodies[-1]) and "stream" not in fake[0].bodies[-1]


def test_api_calibrates_once_per_question_over_rounds(fake: tuple[StreamServer, str]) -> None:
    """Rounds of 2 with warmup 3: the warm-up ends inside the second round, and every later trace
    of the question is held to the threshold of those 3 traces (not recalibrated each round)."""
    fake[0].mode = "ok"
    es = {"eta": 10, "window": 2, "warmup": 3}
    with TTScale(base_url=fake[1], model=MODEL, early_stop=es, budget=ROUNDS, seed=5, sampling={"max_tokens": 64}) as tts:
        sols = tts.solve_many(["What is 2 + 2?", "What is 3 + 3?", "What is 4 + 4?"])
    for sol in sols:
        assert sol.samples == 8 and sol.requests == 4
        warm = [c for c in sol.candidates if "lowest_group_confidence" in extra(c)]
        assert sol.candidates[:3] == warm  # the first three traces, over two rounds
        limit = calibrate_threshold([extra(c)["lowest_group_confidence"] for c in warm], 10)
        tracked = sol.candidates[3:]
        assert {extra(c)["early_stop_threshold"] for c in tracked} == {limit}
        for c in tracked:
            assert (c.finish == LOW_CONFIDENCE) == (c.seed % 2 == 1 and below_threshold(LOW, limit))
        assert sol.early_stop == {"stopped": sol.stopped_traces, "stopped_tokens": sum(c.tokens for c in tracked if c.finish == LOW_CONFIDENCE),
                                  "warmup": 3, "threshold": limit, "params": EarlyStopParams(**es).model_dump()}
        assert sum(sol.vote.values()) == 8 - sol.stopped_traces
        assert sol.completion_tokens == sum(c.tokens for c in sol.candidates)
    assert sum(s.stopped_traces for s in sols) > 0


# -- transformers ----------------------------------------------------------------------------------

def test_api_on_transformers_carries_the_threshold_across_rounds() -> None:
    pytest.importorskip("transformers")
    es = {"eta": 100, "window": 6, "warmup": 3}
    with TTScale(backend="hf", model="arith-tiny", early_stop=es, budget={**ROUNDS, "samples": 6}, seed=3,
                 sampling={"temperature": 1.3, "max_tokens": 96}) as tts:
        sol = tts.solve("Start with 45. Add 12. Subtract 7. Add 19. What is the result?")
    assert sol.samples == 6 and sol.requests == 3
    lowest = [extra(c).get("lowest_group_confidence") for c in sol.candidates[:3]]
    assert all(v is not None for v in lowest)
    assert {extra(c)["early_stop_threshold"] for c in sol.candidates[3:]} == {min(lowest)}  # eta 100: the lowest
    assert sol.early_stop is not None and sol.early_stop["warmup"] == 3 and sol.early_stop["threshold"] == min(lowest)


# -- the real vLLM server ------------------------------------------------------------------------------

@pytest.mark.vllm
@pytest.mark.slow
def test_proxy_and_api_stop_traces_on_the_vllm_server(vllm_url: str) -> None:  # noqa: F811
    from test_early_stop_http import generation_tokens

    from ttscale.arith.paths import resolve_model
    from ttscale.records.datasets import load_dataset
    from ttscale.sampling.model_defaults import sampling_defaults

    model = httpx.get(vllm_url + "/models").json()["data"][0]["id"]
    own = sampling_defaults(resolve_model("arith-tiny"))
    problem = load_dataset("arith-hard", limit=1)[0].problem
    prompt = own["template"].format(problem=problem)
    # Two upstream calls at a time: with many streams in flight on busy cores the tiny model
    # finishes traces before the proxy can read a chunk and close them (see test_early_stop_http).
    with ThreadServer(create_app(ServeConfig(upstream=vllm_url, concurrency=2))) as running:
        url = running.url + "/v1/completions"
        body: dict[str, Any] = {"model": model, "prompt": prompt, "seed": 3, "temperature": own["temperature"],
                                "max_tokens": own["max_tokens"], "ttscale": {"n": 8, "candidates": True}}
        before = generation_tokens(vllm_url)
        full = httpx.post(url, json=body, timeout=120).json()
        full_server = generation_tokens(vllm_url) - before
        # A threshold above every group confidence: each trace stops at its first full window.
        body["ttscale"]["early_stop"] = {"threshold": 1e9, "window": 8}
        before = generation_tokens(vllm_url)
        cut = httpx.post(url, json=body, timeout=120).json()
        cut_server = generation_tokens(vllm_url) - before
        error = httpx.post(url, json={**body, "ttscale": {"early_stop": {"eta": 0}}}, timeout=30).json()["error"]
        assert error["param"] == "ttscale.early_stop.eta"
    report = cut["ttscale"]["early_stop"]
    stopped = [c for c in cut["ttscale"]["candidates"] if c["finish"] == LOW_CONFIDENCE]
    assert stopped and report["stopped"] == len(stopped) and report["warmup"] == 0
    assert all(c["tokens"] <= 8 for c in cut["ttscale"]["candidates"] if c["finish"] != LOW_CONFIDENCE)  # ended before a window
    assert all(c["answer"] is None and c["tokens"] >= 8 for c in stopped)
    assert cut["ttscale"]["samples"] == 8 and sum(cut["ttscale"]["vote"].values()) <= 8 - len(stopped)
    assert cut["usage"]["completion_tokens"] == cut["ttscale"]["completion_tokens"] < 0.5 * full["usage"]["completion_tokens"]
    assert cut_server < 0.5 * full_server  # the server stopped generating, not only the proxy reading
    print(f"proxy, 8 traces: {full['usage']['completion_tokens']} tokens without early stop, "
          f"{cut['usage']['completion_tokens']} with ({report['stopped']} stopped); server counted {full_server:g} vs {cut_server:g}")

    # The API through the same server: calibrated on the first 4 traces over rounds of 2.
    with TTScale(base_url=vllm_url, model=model, early_stop={"eta": 10, "window": 8, "warmup": 4}, budget=ROUNDS, seed=1,
                 concurrency=2) as tts:
        sol = tts.solve(problem)
    assert sol.samples == 8 and sol.early_stop is not None and sol.early_stop["warmup"] == 4
    tracked = sol.candidates[4:]
    assert len({extra(c).get("early_stop_threshold") for c in tracked}) == 1
    assert sum(sol.vote.values()) == 8 - sol.stopped_traces
    print(f"API, 8 traces (4 warm-up): {sol.stopped_traces} stopped, threshold {sol.early_stop['threshold']}, "
          f"{sol.completion_tokens} tokens")
