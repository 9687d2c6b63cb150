"""A small local HTTP proxy in front of an OpenAI-compatible server that injects faults.

Tests queue faults for the next completion requests (``"429"``, ``"500"``, ``"503"``, ``"hang"``: hold the
request longer than the client's timeout),
add a delay to every request, or refuse ``n > 1`` like a server without native ``n``. Every
request is logged (path, prompt, n, seed, status) so tests can count what was sent.

Runs in a thread of the test process (``FaultProxy(...).start()``), or stand-alone:
``python tests/fault_proxy.py --upstream http://127.0.0.1:8000 --port 9000 --fault 429 --fault 500``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

FAULTS = ("429", "500", "503", "hang", "ok")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LogEntry:
    path: str
    prompt: Any
    n: int | None
    seed: int | None
    status: int | str
    fault: str | None
    t: float = field(default_factory=time.time)


class FaultProxy:
    def __init__(self, upstream: str, *, port: int | None = None, delay: float = 0.0, hang: float = 30.0, max_n: int | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.delay = delay
        """Seconds added before forwarding every completion request (makes runs killable mid-way)."""
        self.hang = hang
        self.max_n = max_n
        """Refuse requests with n above this with HTTP 400 (a server without native n)."""
        self.faults: deque[str] = deque()
        self.log: list[LogEntry] = []
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = self._make_app()

    def inject(self, *faults: str) -> None:
        """Queue faults for the next completion requests, in order."""
        for f in faults:
            if f not in FAULTS:
                raise ValueError(f"fault {f!r}: expected one of {FAULTS}")
        with self._lock:
            self.faults.extend(faults)

    def completions(self, status: int | None = 200) -> list[LogEntry]:
        """Logged completion requests (with the given status; None for all)."""
        with self._lock:
            return [e for e in self.log if e.path.endswith("completions") and (status is None or e.status == status)]

    def _next_fault(self) -> str | None:
        with self._lock:
            return self.faults.popleft() if self.faults else None

    def _make_app(self) -> FastAPI:
        app = FastAPI()
        client = httpx.AsyncClient(base_url=self.upstream, timeout=None)

        @app.api_route("/{path:path}", methods=["GET", "POST"])
        async def forward(path: str, request: Request) -> Response:
            body = await request.body()
            is_completion = path.endswith("completions")
            payload: dict[str, Any] = {}
            if is_completion and body:
                payload = json.loads(body)
            entry = LogEntry(path, payload.get("prompt", payload.get("messages")), payload.get("n"), payload.get("seed"), 0, None)
            with self._lock:
                self.log.append(entry)
            if is_completion:
                if self.delay:
                    await asyncio.sleep(self.delay)
                if self.max_n is not None and (payload.get("n") or 1) > self.max_n:
                    entry.status = 400
                    return JSONResponse({"error": {"message": f"n > {self.max_n} is not supported", "type": "invalid_request_error"}}, status_code=400)
                fault = entry.fault = self._next_fault()
                if fault in ("429", "500", "503"):
                    entry.status = int(fault)
                    headers = {"retry-after": "0.05"} if fault == "429" else {}
                    return JSONResponse({"error": {"message": f"injected {fault}"}}, status_code=int(fault), headers=headers)
                if fault == "hang":
                    entry.status = "hang"
                    await asyncio.sleep(self.hang)
                    return JSONResponse({"error": {"message": "hung"}}, status_code=504)
            try:
                upstream = await client.request(request.method, "/" + path, content=body, headers={"content-type": request.headers.get("content-type", "application/json")})
            except httpx.HTTPError as exc:
                entry.status = 502
                return JSONResponse({"error": {"message": f"upstream: {type(exc).__name__}"}}, status_code=502)
            entry.status = upstream.status_code
            return Response(upstream.content, status_code=upstream.status_code, media_type=upstream.headers.get("content-type"))

        return app

    def start(self) -> "FaultProxy":
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="critical", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.time() + 10
        while not self._server.started:
            if time.time() > deadline:
                raise RuntimeError("fault proxy did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--max-n", type=int, default=None)
    parser.add_argument("--fault", action="append", default=[], choices=FAULTS)
    args = parser.parse_args()
    proxy = FaultProxy(args.upstream, port=args.port, delay=args.delay, max_n=args.max_n)
    proxy.inject(*args.fault)
    print(f"fault proxy on {proxy.url} -> {proxy.upstream}", flush=True)
    uvicorn.run(proxy.app, host="127.0.0.1", port=proxy.port, log_level="warning")


if __name__ == "__main__":
    main()
