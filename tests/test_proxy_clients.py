"""The proxy as real clients use it: the official openai SDK, unmodified and with its default
settings, against ``ttscale serve``'s app in front of the real vLLM server with the embedded model.

Each case is a default a client relies on (no ``max_tokens``, ``temperature=0`` with ``n``,
``len(choices) == n``, log-probs, token-id prompts, listing and retrieving models, errors in the
client's words). The server is ``python -m vllm.entrypoints.openai.api_server`` on 127.0.0.1,
float32, one per module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("vllm")

import openai  # noqa: E402
from fake_upstream import ThreadServer, free_port  # noqa: E402
from test_samplers import tiny_model  # noqa: E402,F401
from vllm_server import SERVER_ENV, start, stop, vllm_server_command, wait_healthy  # noqa: E402

from ttscale.live.serve.app import ServeConfig, create_app  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
CHAT_TEMPLATE = "{% for m in messages %}Question: {{ m['content'] }}\n{% endfor %}Answer:\n"
PROBLEM = "Sam has 12 apples. He gets 5 more. How many apples does he have?"
PROMPT = f"Question: {PROBLEM}\nAnswer:\n"


@pytest.fixture(scope="module")
def vllm_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    """The real vLLM server on the embedded model (its base URL with /v1); killed at the end."""
    port = free_port()
    folder = tmp_path_factory.mktemp("vllm")
    log = folder / "server.log"
    cmd = vllm_server_command(tiny_model, port)
    if "chat_template" not in json.loads((tiny_model / "tokenizer_config.json").read_text()):
        (folder / "chat.jinja").write_text(CHAT_TEMPLATE)
        cmd += ["--chat-template", str(folder / "chat.jinja")]
    env = {**os.environ, **SERVER_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = start(cmd, log, env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, log)
        yield url + "/v1"
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def proxy(vllm_server: str) -> Iterator[str]:
    """``ttscale serve``'s app with its defaults (majority of 8) in front of the server."""
    with ThreadServer(create_app(ServeConfig(upstream=vllm_server))) as server:
        yield server.url + "/v1"


@pytest.fixture(scope="module")
def model(vllm_server: str) -> str:
    """The upstream's id of the embedded model (vLLM's: the folder's path)."""
    return httpx.get(vllm_server + "/models").json()["data"][0]["id"]


def sdk(base_url: str) -> openai.OpenAI:
    """The openai client as a user makes it: default retries and timeout."""
    return openai.OpenAI(base_url=base_url, api_key="sk-anything")


def test_no_max_tokens_uses_the_upstreams_defaults(proxy: str, vllm_server: str, model: str) -> None:
    """No max_tokens and no temperature sent: the upstream's own defaults apply (vLLM: the model's
    generation config), so the proxy draws exactly the samples a direct request with n=8 gets."""
    resp = sdk(proxy).completions.create(model=model, prompt=PROMPT, seed=7)
    tts = resp.model_extra["ttscale"]
    assert tts["samples"] == 8 and len(resp.choices) == 1
    direct = sdk(vllm_server).completions.create(model=model, prompt=PROMPT, seed=7, n=8)
    assert resp.choices[0].text in [c.text for c in direct.choices]
    assert resp.usage.completion_tokens == direct.usage.completion_tokens
    # vLLM's /v1/completions stops at 16 tokens by default: every candidate is cut, and the proxy says so.
    if all(c.finish_reason == "length" for c in direct.choices):
        assert any("stopped at max_tokens" in note for note in tts.get("notes", [])), tts
    roomy = sdk(proxy).completions.create(model=model, prompt=PROMPT, seed=7, max_tokens=160).model_extra["ttscale"]
    assert not any("max_tokens" in note for note in roomy.get("notes", []))


def test_greedy_draws_one_sample_and_returns_n_choices(proxy: str, vllm_server: str, model: str) -> None:
    resp = sdk(proxy).completions.create(model=model, prompt=PROMPT, temperature=0, n=3)
    tts = resp.model_extra["ttscale"]
    assert tts["samples"] == 1 and any("greedy" in note for note in tts["notes"])
    assert len(resp.choices) == 3 and len({c.text for c in resp.choices}) == 1
    direct = sdk(vllm_server).completions.create(model=model, prompt=PROMPT, temperature=0)
    assert resp.choices[0].text == direct.choices[0].text


def test_n_choices_always(proxy: str, model: str) -> None:
    """n=3 gives 3 choices even when the vote is unanimous (then more candidates of the winner)."""
    for temperature in (0.01, None):
        extra = {} if temperature is None else {"temperature": temperature}
        resp = sdk(proxy).completions.create(model=model, prompt=PROMPT, n=3, seed=3, **extra)
        assert len(resp.choices) == 3 and [c.index for c in resp.choices] == [0, 1, 2]
        assert resp.choices[0].text.rsplit("#### ", 1)[-1].strip() == resp.model_extra["ttscale"]["answer"]


def test_logprobs_come_back_for_the_chosen_candidate(proxy: str, model: str) -> None:
    resp = sdk(proxy).completions.create(model=model, prompt=PROMPT, logprobs=2, seed=1)
    lp = resp.choices[0].logprobs
    assert lp is not None and lp.tokens and len(lp.tokens) == len(lp.token_logprobs)
    assert "".join(lp.tokens).startswith(resp.choices[0].text) and all(len(t) >= 1 for t in lp.top_logprobs)  # + "</s>"
    chat = sdk(proxy).chat.completions.create(model=model, messages=[{"role": "user", "content": PROBLEM}],
                                              logprobs=True, top_logprobs=2, seed=1)
    content = chat.choices[0].logprobs.content
    assert content and all(len(t.top_logprobs) == 2 for t in content)
    assert "".join(t.token for t in content).startswith(chat.choices[0].message.content)
    plain = sdk(proxy).completions.create(model=model, prompt=PROMPT, seed=1)
    assert plain.choices[0].logprobs is None  # not asked for, not sent


def test_token_id_prompts_are_forwarded_as_they_are(proxy: str, vllm_server: str, model: str) -> None:
    ids = httpx.post(vllm_server.removesuffix("/v1") + "/tokenize", json={"model": model, "prompt": PROMPT}).json()["tokens"]
    by_text = sdk(proxy).completions.create(model=model, prompt=PROMPT, seed=5, max_tokens=60)
    by_ids = sdk(proxy).completions.create(model=model, prompt=ids, seed=5, max_tokens=60)
    assert by_ids.model_extra["ttscale"]["vote"] == by_text.model_extra["ttscale"]["vote"]
    assert by_ids.choices[0].text == by_text.choices[0].text
    both = sdk(proxy).completions.create(model=model, prompt=[ids, ids[:-1]], seed=5, max_tokens=60)
    assert len(both.choices) == 2 and len(both.model_extra["ttscale"]["prompts"]) == 2


def test_models_list_and_retrieve_with_clean_ids(proxy: str, model: str) -> None:
    ids = [m.id for m in sdk(proxy).models.list()]
    name = Path(model).name
    assert model in ids and f"ttscale/majority/{name}" in ids and f"ttscale/majority@8+adaptive/{name}" in ids
    assert not any("//" in i for i in ids)
    got = sdk(proxy).models.retrieve(f"ttscale/majority@16+adaptive/{name}")
    assert got.id == f"ttscale/majority@16+adaptive/{name}" and got.owned_by == "ttscale"
    with pytest.raises(openai.NotFoundError):
        sdk(proxy).models.retrieve(f"ttscale/majority/{name}-nope")
    resp = sdk(proxy).completions.create(model=f"ttscale/majority@4+adaptive/{name}", prompt=PROMPT, seed=2)
    assert 1 <= resp.model_extra["ttscale"]["samples"] <= 4


def test_errors_in_the_clients_words(proxy: str, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        sdk(proxy).completions.create(model=model, prompt=PROMPT, extra_body={"ttscale": {"k": 3}})
    assert "unknown field ttscale.k" in str(err.value) and "Extra inputs" not in str(err.value)
    # the upstream's own refusal, with its own status and words (not wrapped)
    with pytest.raises(openai.BadRequestError) as err:
        sdk(proxy).completions.create(model=model, prompt=PROMPT, max_tokens=100_000)
    message = err.value.body["message"]
    assert "max_tokens" in message and "256" in message and not message.startswith(("request=", "upstream"))
    # a reward policy on a server without a scorer: the way to get one is the server's flag
    with pytest.raises(openai.BadRequestError) as err:
        sdk(proxy).completions.create(model=model, prompt=PROMPT, extra_body={"ttscale": {"policy": "best-of-n"}})
    assert "ttscale serve --scorer" in err.value.body["message"] and "scorer=..." not in err.value.body["message"]
