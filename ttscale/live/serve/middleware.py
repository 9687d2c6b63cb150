"""What every request of the proxy goes through before its endpoint, as plain ASGI middleware
(Starlette's ``BaseHTTPMiddleware`` costs a task and a stream per request).

:class:`Guard` checks the API key and counts requests, latency and requests in flight;
:class:`BodyLimit` answers 413 to a body over the limit before anything reads it, and 400 to JSON
over the limits of :mod:`ttscale.limits` (nesting, digits) before the JSON reader crashes on it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Sequence
from typing import Any

from ttscale.errors import InputLimitError
from ttscale.limits import check_json_text
from ttscale.live.serve.errors import HTTPError
from ttscale.live.serve.metrics import Metrics
from ttscale.live.solution import Solution

__all__ = ["ENDPOINTS", "BodyLimit", "Guard", "access", "authorized"]

log = logging.getLogger("ttscale.serve.access")
"""One line per proxied request at INFO (``ttscale serve --log-level``)."""

PROXIED = frozenset({"/v1/chat/completions", "/v1/completions"})
"""Paths whose every request gets an access-log line (errors included)."""


def access(request: Any, sols: Sequence[Solution]) -> None:
    """Note what answering a request drew upstream, for its access-log line."""
    stopped = sorted({s.stopped for s in sols})
    request.state.access = (sum(s.requests for s in sols), sum(s.samples for s in sols), ",".join(stopped))


def noted_error(scope: dict, error: HTTPError) -> HTTPError:
    """``error``, noted in the request's state for its access-log line."""
    scope.setdefault("state", {})["error"] = error.message
    return error


def _log_line(scope: dict, status: str, seconds: float) -> None:
    state = scope.get("state") or {}
    line = f"{scope['method']} {scope['path']} {status} {seconds * 1000:.1f} ms"
    if "access" in state:
        requests, samples, stopped = state["access"]
        line += f" upstream_requests={requests} samples={samples} stopped={stopped}"
    if "error" in state:
        line += f" error={state['error'][:160]!r}"
    log.info(line)

ENDPOINTS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics"})
"""Paths counted under their own name in the metrics (every other one is ``other``)."""


def authorized(header: str | bytes, key: str | bytes) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <key>`` (compared in constant time)."""
    header = header.encode("latin-1") if isinstance(header, str) else header
    key = key.encode() if isinstance(key, str) else key
    given = header[7:] if header[:7].lower() == b"bearer " else b""
    return hmac.compare_digest(given, key)


CLIENT_GONE = "499"
"""The status counted for a request whose client disconnected before any answer (nginx's code)."""


class Guard:
    """Key check (every path but ``/health``), metrics and in-flight count for every request."""

    def __init__(self, app: Any, api_key: str | None, metrics: Metrics) -> None:
        self.app = app
        self.key = None if api_key is None else api_key.encode()
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        if self.key is not None and path != "/health":
            header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            given = header[7:] if header[:7].lower() == b"bearer " else b""
            if not authorized(header, self.key):
                self.metrics.answered(endpoint, "401", None)
                why = "no API key given" if not given else "incorrect API key"
                response = HTTPError(401, f"{why}: send 'Authorization: Bearer <key>'", code="invalid_api_key").response()
                await response(scope, receive, send)
                if path in PROXIED and log.isEnabledFor(logging.INFO):
                    _log_line({**scope, "state": {"error": why}}, "401", time.perf_counter() - start)
                return
        status = "500"
        started = gone = False

        async def sending(message: dict) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = str(message["status"]), True
            await send(message)

        async def receiving() -> dict:
            nonlocal gone
            message = await receive()
            gone = gone or message["type"] == "http.disconnect"
            return message

        scope.setdefault("state", {})
        self.metrics.inflight.inc()
        try:
            await self.app(scope, receiving, sending)
        finally:
            if not started and gone:
                status = CLIENT_GONE  # the client left before an answer: not the proxy's error
            seconds = time.perf_counter() - start
            self.metrics.inflight.dec()
            self.metrics.answered(endpoint, status, seconds)
            if path in PROXIED and log.isEnabledFor(logging.INFO):
                _log_line(scope, status, seconds)


class BodyLimit:
    """Read a POST body up to ``limit`` bytes (413 above), then hand it on as JSON.

    The body is declared ``application/json`` whatever the client said: ``curl -d`` sends JSON as
    a form, and the proxy has always read every body as JSON.
    """

    def __init__(self, app: Any, limit: int, read_seconds: float | None = None) -> None:
        self.app = app
        self.limit = limit
        self.read_seconds = read_seconds
        """Time the whole body may take to arrive (408 after it: a client trickling its body)."""

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
        if declared.isdigit() and int(declared) > self.limit:
            error = noted_error(scope, HTTPError(413, f"request body of {int(declared)} bytes is over the limit of {self.limit} bytes", code="request_too_large"))
            return await error.response()(scope, receive, send)
        chunks, size = [], 0
        # asyncio.timeout, not wait_for: no task per message (20 us each)
        deadline = None if self.read_seconds is None else asyncio.get_running_loop().time() + self.read_seconds
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                error = noted_error(scope, HTTPError(408, f"request body not received within {self.read_seconds:g} s", code="request_timeout"))
                return await error.response()(scope, receive, send)
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                error = noted_error(scope, HTTPError(413, f"request body is over the limit of {self.limit} bytes", code="request_too_large"))
                return await error.response()(scope, receive, send)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        try:  # nesting 1,100 deep or a 5,000-digit integer would crash the JSON reader: a 400 instead
            check_json_text(body.decode("utf-8"))
        except UnicodeDecodeError:
            pass  # not UTF-8: the JSON reader answers 400 for it
        except InputLimitError as exc:
            where = f"{exc.field}: " if exc.field else ""
            error = noted_error(scope, HTTPError(400, f"request body: {where}expected {exc.expected} (got {exc.got})", param=exc.field, code="invalid_json"))
            return await error.response()(scope, receive, send)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # the disconnect, when it comes

        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await self.app({**scope, "headers": headers}, replay, send)
