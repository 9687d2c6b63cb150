"""lm-evaluation-harness scores on the embedded model: direct (one sample) vs through ``ttscale serve`` (majority@8).

Starts the real vLLM server (``ttscale serve-model``) and the proxy in front of it, writes the
packaged arithmetic test set as a local lm-eval task (``ttscale.bench.lm_eval_task``), then runs
lm-eval's ``local-completions`` (default ``tokenized_requests``: token-id prompts) and
``local-chat-completions`` (``--apply_chat_template``) against each, with the same seeds
(lm-eval sends its ``seed`` in every request). Sampling at the model's temperature (1.3).

    flock /tmp/vllm.lock .venv/bin/python evals/lm_eval_proxy.py [--problems 30] [--seeds 0,1,2,3,4] [--n 8]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[key] = "1"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def wait(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not come up:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=30)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--n", type=int, default=8, help="Samples the proxy votes over.")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]

    import lm_eval
    from lm_eval.tasks import TaskManager

    from ttscale.bench.lm_eval_task import TASK_NAME, write_task
    from ttscale.arith.paths import model_dir

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_task(folder / "task", limit=args.problems)
        vllm_port, proxy_port = free_port(), free_port()
        vllm_url, proxy_url = f"http://127.0.0.1:{vllm_port}", f"http://127.0.0.1:{proxy_port}"
        ttscale = [sys.executable, "-m", "ttscale.cli.app"]
        vllm = start([*ttscale, "serve-model", "--port", str(vllm_port)], folder / "vllm.log")
        proxy = start([*ttscale, "serve", "--upstream", vllm_url + "/v1", "--port", str(proxy_port), "--log-level", "warning"],
                      folder / "proxy.log")
        try:
            wait(vllm, vllm_url, folder / "vllm.log")
            wait(proxy, proxy_url, folder / "proxy.log")
            manager = TaskManager(include_path=str(folder / "task"))
            runs = {
                ("completions", "direct, 1 sample"): ("local-completions", vllm_url + "/v1/completions", "arith-tiny"),
                ("completions", f"proxy, majority@{args.n}"): ("local-completions", proxy_url + "/v1/completions",
                                                              f"ttscale/majority@{args.n}/arith-tiny"),
                ("chat", "direct, 1 sample"): ("local-chat-completions", vllm_url + "/v1/chat/completions", "arith-tiny"),
                ("chat", f"proxy, majority@{args.n}"): ("local-chat-completions", proxy_url + "/v1/chat/completions",
                                                       f"ttscale/majority@{args.n}/arith-tiny"),
            }
            scores: dict[tuple[str, str], list[float]] = {}
            seconds: dict[tuple[str, str], float] = {}
            for key, (model, url, model_id) in runs.items():
                chat = model == "local-chat-completions"
                t0 = time.perf_counter()
                for seed in seeds:
                    model_args: dict[str, str | int | float] = {"model": model_id, "base_url": url, "num_concurrent": 8,
                                                                "max_retries": 1, "seed": seed}
                    if not chat:
                        # tokenized_requests (the default) needs the tokenizer; the model expects its <s>, which
                        # lm-eval leaves out of token-id prompts unless add_bos_token=True
                        model_args.update(tokenizer=str(model_dir()), add_bos_token=True)
                    out = lm_eval.simple_evaluate(model=model, model_args=model_args, tasks=[TASK_NAME], task_manager=manager,
                                                  apply_chat_template=chat, log_samples=False, random_seed=seed)
                    scores.setdefault(key, []).append(float(out["results"][TASK_NAME]["exact_match,answer"]))
                seconds[key] = time.perf_counter() - t0
        finally:
            stop(proxy)
            stop(vllm)
    print(f"lm-eval {lm_eval.__version__}, task {TASK_NAME}: first {args.problems} problems of the packaged test set, "
          f"seeds {seeds}, temperature 1.3")
    print(f"{'endpoint':12} {'run':22} {'mean':>6} {'per seed':30} {'seconds':>8}")
    for (endpoint, run), values in scores.items():
        per = " ".join(f"{v:.2f}" for v in values)
        print(f"{endpoint:12} {run:22} {statistics.mean(values):6.3f} {per:30} {seconds[(endpoint, run)]:8.1f}")


if __name__ == "__main__":
    main()
