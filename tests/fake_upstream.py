"""A fast local OpenAI-compatible server for proxy tests and the proxy load benchmark.

A real HTTP server (FastAPI on uvicorn, 127.0.0.1) that answers ``/v1/models``,
``/v1/completions`` and ``/v1/chat/completions`` instantly (or after ``latency`` seconds) with
``n`` choices ending in ``#### <answer>``: the prompt's "right" answer (a hash of the prompt)
with probability ``p_right`` (1 for prompts containing "[easy]", 0.4 for "[hard]"), else one of
three wrong ones. Seeded requests are reproducible.
It stands in for a model only where the model is not what is measured (the proxy's overhead,
its handling of failures); the proxy's tests against the real vLLM server live in test_vllm.py.

Like vLLM it refuses ``max_tokens`` over 256 and ``n`` > 1 at temperature 0 (400s in its words);
``bodies`` keeps the request bodies it got (what a proxy forwarded).
Faults: ``fail_multi`` answers 500 to every request with n > 1; ``fail_seeds`` answers 500 to
requests with those seeds (so retries fail too); ``hang`` holds every request that long.
Run stand-alone: ``python tests/fake_upstream.py --port 9001 [--latency 0.01]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import socket
import threading
import time
from collections import Counter
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

MODEL = "fake-model"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def right_answer(prompt: str) -> int:
    return int.from_bytes(hashlib.blake2b(prompt.encode(), digest_size=4).digest(), "big") % 1000


class FakeUpstream:
    def __init__(self, *, port: int | None = None, p_right: float = 0.6, latency: float = 0.0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.p_right = p_right
        self.latency = latency
        self.reset()
        self.calls: Counter[str] = Counter()
        """Requests per status ("200", "500", ...)."""
        self.samples = 0
        self.bodies: list[dict[str, Any]] = []
        """Bodies of the completion requests received, in order (what the proxy forwarded)."""
        self._server: ThreadServer | None = None
        self.app = self._make_app()

    def reset(self) -> None:
        """No faults: every request answered at once (tests call it between cases)."""
        self.fail_multi = False
        self.fail_seeds: set[int] = set()
        self.hang = 0.0

    def _choices(self, prompt: str, n: int, seed: int | None) -> list[str]:
        rng = random.Random(f"{seed}:{prompt}") if seed is not None else random.Random()
        right = right_answer(prompt)
        p_right = 1.0 if "[easy]" in prompt else 0.4 if "[hard]" in prompt else self.p_right
        out = []
        for _ in range(n):
            value = right if rng.random() < p_right else (right + rng.choice((1, 7, 13))) % 1000
            if "Score: N/10" in prompt:  # ttscale's judge prompt: answer like a judge
                out.append(f"Checked the steps. Score: {value % 11}/10")
            else:
                out.append(f"Let me think step by step. The result is {value}.\n#### {value}")
        return out

    def _make_app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "fake"}]}

        async def complete(request: Request, chat: bool) -> JSONResponse:
            body = await request.json()
            self.bodies.append(body)
            del self.bodies[:-100]
            n = int(body.get("n") or 1)
            seed = body.get("seed")
            if self.hang:
                await asyncio.sleep(self.hang)
            if self.latency:
                await asyncio.sleep(self.latency)
            if body.get("model") != MODEL:
                self.calls["404"] += 1
                return JSONResponse({"error": {"message": f"model {body.get('model')!r} does not exist", "type": "NotFoundError"}}, status_code=404)
            if body.get("max_tokens", 1) > 256:  # vLLM's words for a request over the context
                self.calls["400"] += 1
                return JSONResponse({"error": {"message": f"max_tokens={body['max_tokens']} cannot be greater than max_model_len=256",
                                               "type": "BadRequestError", "param": "max_tokens", "code": 400}}, status_code=400)
            if body.get("temperature") == 0 and n > 1:
                self.calls["400"] += 1
                return JSONResponse({"error": {"message": f"n must be 1 when using greedy sampling, got {n}.",
                                               "type": "BadRequestError", "param": None, "code": 400}}, status_code=400)
            if (self.fail_multi and n > 1) or (seed is not None and seed in self.fail_seeds):
                self.calls["500"] += 1
                return JSONResponse({"error": {"message": "injected 500", "type": "InternalServerError"}}, status_code=500)
            self.calls["200"] += 1
            self.samples += n
            if chat:
                prompt = "\n".join(str(m.get("content", "")) for m in body["messages"])
            else:
                prompt = body["prompt"]
                if isinstance(prompt, list):  # token ids: the "text" is the ids, one word each
                    prompt = " ".join(map(str, prompt))
            texts = self._choices(prompt, n, seed)
            lp = body.get("logprobs") not in (None, False)
            choices = []
            for i, text in enumerate(texts):
                words = text.split()
                if chat:
                    logprobs = {"content": [{"token": w, "logprob": -0.1, "bytes": None, "top_logprobs": []} for w in words]} if lp else None
                    choices.append({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": logprobs})
                else:
                    logprobs = {"tokens": words, "token_logprobs": [-0.1] * len(words), "top_logprobs": None, "text_offset": []} if lp else None
                    choices.append({"index": i, "text": text, "finish_reason": "stop", "logprobs": logprobs})
            prompt_tokens = len(prompt.split())
            completion = sum(len(t.split()) for t in texts)
            return JSONResponse({
                "id": "fake", "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
                "model": MODEL, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion},
            })

        @app.post("/v1/completions")
        async def completions(request: Request) -> JSONResponse:
            return await complete(request, chat=False)

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> JSONResponse:
            return await complete(request, chat=True)

        return app

    def start(self) -> "FakeUpstream":
        self._server = ThreadServer(self.app, self.port).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> "FakeUpstream":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ThreadServer:
    """Any ASGI app on uvicorn in a daemon thread of this process, on 127.0.0.1."""

    def __init__(self, app: Any, port: int | None = None, *, log_level: str = "critical") -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level=log_level))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> "ThreadServer":
        if self._thread.is_alive():
            return self
        self._thread.start()
        deadline = time.time() + 10
        while not self._server.started:
            if time.time() > deadline or not self._thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> "ThreadServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--p-right", type=float, default=0.6)
    args = parser.parse_args()
    up = FakeUpstream(port=args.port, p_right=args.p_right, latency=args.latency)
    print(f"fake upstream on {up.url}", flush=True)
    uvicorn.run(up.app, host="127.0.0.1", port=up.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
