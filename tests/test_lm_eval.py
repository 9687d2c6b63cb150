"""lm-evaluation-harness as an outside client: its OpenAI-compatible models through ``ttscale serve``
in front of the real vLLM server (started by ``ttscale serve-model``) on the embedded model.

The task is the packaged arithmetic test set written as a local lm-eval task
(:mod:`ttscale.bench.lm_eval_task`, 20 problems, exact match on the ``####`` answer); nothing comes
from a hub. ``local-completions`` keeps lm-eval's default ``tokenized_requests`` (token-id prompts);
``local-chat-completions`` runs with ``--apply_chat_template`` on the model's own chat template.
The model's tokenizer starts every prompt with ``<s>``: lm-eval adds it to token-id prompts only
with ``add_bos_token=True`` (as for any such model), so the completions run passes it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("vllm")
pytest.importorskip("lm_eval")

from fault_proxy import free_port  # noqa: E402
from vllm_server import start, stop, wait_healthy  # noqa: E402

from ttscale.bench.lm_eval_task import TASK_NAME, write_task  # noqa: E402
from ttscale.arith.paths import model_dir  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
PROBLEMS = 20
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _env() -> dict[str, str]:
    env = {**os.environ, **OFFLINE}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("VLLM_LOGGING_LEVEL", None)
    return env


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """(vLLM server URL, proxy URL, vLLM's log): ``ttscale -v serve-model`` (its log kept) and ``ttscale serve``."""
    folder = tmp_path_factory.mktemp("servers")
    vllm_port, proxy_port = free_port(), free_port()
    vllm_log, proxy_log = folder / "vllm.log", folder / "proxy.log"
    vllm = start([sys.executable, "-m", "ttscale.cli.app", "-v", "serve-model", "--port", str(vllm_port)], vllm_log, _env())
    vllm_url, proxy_url = f"http://127.0.0.1:{vllm_port}", f"http://127.0.0.1:{proxy_port}"
    proxy = start([sys.executable, "-m", "ttscale.cli.app", "serve", "--upstream", vllm_url + "/v1", "--port", str(proxy_port)],
                  proxy_log, _env())
    try:
        wait_healthy(vllm, vllm_url, vllm_log, poll=0.5)
        wait_healthy(proxy, proxy_url, proxy_log, poll=0.5)
        yield vllm_url, proxy_url, vllm_log
    finally:
        stop(proxy, graceful=True)
        stop(vllm, graceful=True)


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("task")
    write_task(folder, limit=PROBLEMS)
    return folder


def test_serve_model_loads_float32_and_answers_chat(servers: tuple[str, str, Path]) -> None:
    vllm_url, proxy_url, log = servers
    problem = "Tom has 34 flowers. First he loses 19. Second he gets 15 more. How many flowers does Tom have now?"
    messages = [{"role": "user", "content": problem}]
    direct = httpx.post(vllm_url + "/v1/chat/completions", json={"model": "arith-tiny", "messages": messages, "temperature": 0},
                        timeout=60)
    assert direct.status_code == 200, direct.text
    chat_text = direct.json()["choices"][0]["message"]["content"]
    assert chat_text.endswith("#### 30"), chat_text
    # The chat template gives the prompt the model was trained on: greedy chat == greedy raw completion.
    raw = httpx.post(vllm_url + "/v1/completions", json={"model": "arith-tiny", "prompt": f"Question: {problem}\nAnswer:\n",
                                                         "temperature": 0, "max_tokens": 160}, timeout=60)
    assert raw.status_code == 200 and raw.json()["choices"][0]["text"] == chat_text
    proxied = httpx.post(proxy_url + "/v1/chat/completions", json={"model": "ttscale/majority@4/arith-tiny", "messages": messages},
                         timeout=60)
    assert proxied.status_code == 200, proxied.text
    assert proxied.json()["ttscale"]["samples"] == 4 and "####" in proxied.json()["choices"][0]["message"]["content"]
    text = log.read_text()
    assert "dtype=torch.float32" in text  # -v shows vLLM's start-up lines, so the check below means something
    assert "bfloat16" not in text


def _lm_eval(model: str, model_args: dict[str, object], task_dir: Path, out: Path, *extra: str) -> float:
    args = ",".join(f"{k}={v}" for k, v in model_args.items())
    cmd = [sys.executable, "-m", "lm_eval", "run", "--model", model, "--model_args", args, "--tasks", TASK_NAME,
           "--include_path", str(task_dir), "--output_path", str(out), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    results = sorted(out.rglob("results_*.json"))
    assert results, proc.stderr[-3000:]
    task = json.loads(results[-1].read_text())["results"][TASK_NAME]
    return float(task["exact_match,answer"])


def test_lm_eval_completions_with_token_ids_through_the_proxy(servers: tuple[str, str, Path], task_dir: Path,
                                                                tmp_path: Path) -> None:
    _, proxy_url, _ = servers
    score = _lm_eval("local-completions", {
        "model": "ttscale/majority@8/arith-tiny", "base_url": proxy_url + "/v1/completions", "tokenizer": model_dir(),
        # lm-eval sends token ids without the tokenizer's <s> unless told: without it 0.40, with it 0.60 here.
        "add_bos_token": True, "num_concurrent": 4, "max_retries": 1, "seed": 0,
    }, task_dir, tmp_path)
    assert score >= 0.45, score  # the vote of 8: 0.60 with seed 0; a single sample direct gets 0.30


def test_lm_eval_chat_with_the_models_chat_template_through_the_proxy(servers: tuple[str, str, Path], task_dir: Path,
                                                                       tmp_path: Path) -> None:
    _, proxy_url, _ = servers
    score = _lm_eval("local-chat-completions", {
        "model": "ttscale/majority@8/arith-tiny", "base_url": proxy_url + "/v1/chat/completions", "num_concurrent": 4,
        "max_retries": 1, "seed": 0,
    }, task_dir, tmp_path, "--apply_chat_template")
    assert score >= 0.45, score  # as the completions run: the chat template gives the same prompt, <s> included
