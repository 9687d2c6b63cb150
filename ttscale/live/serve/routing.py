"""The two completion endpoints served straight from ASGI, past FastAPI's per-request machinery.

FastAPI answers a request through its router, exception and exit-stack middleware and a
dependency solver that parses the query string, cookies and content type on every call: about a
fifth of the proxy's CPU per request before this. :class:`Direct` reads the body (already size-
and depth-checked by :class:`~ttscale.live.serve.middleware.BodyLimit`) and validates it with the
same pydantic model, and turns failures into the same OpenAI-style errors as the app's handlers
(:mod:`~ttscale.live.serve.errors`); every other path and method goes on to FastAPI.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from ttscale.live.serve.errors import HTTPError, invalid_body

__all__ = ["Direct", "Handler"]

Handler = Callable[[Any, Request], Awaitable[Response]]
"""An endpoint: the validated body and the request (its ``state`` feeds the access log)."""


def read_body(raw: bytes, model: type[BaseModel], path: str) -> Any:
    """``raw`` as ``model``; RequestValidationError with FastAPI's errors (``loc`` under
    ``body``) when it is not JSON or does not fit, HTTPError 400 in FastAPI's words when it
    cannot be decoded."""
    body: Any = None
    if raw:
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RequestValidationError([{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error",
                                           "input": {}, "ctx": {"error": exc.msg}}]) from None
        except ValueError:  # not UTF-8 (or -16/-32)
            raise HTTPError(400, f"POST {path}: There was an error parsing the body") from None
    if body is None:  # no body, or JSON null: a required body is missing
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    try:
        return model.model_validate(body, from_attributes=True)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]) from None


class Direct:
    """ASGI middleware: POSTs to ``routes``' paths answered by their handlers, the rest passed on."""

    def __init__(self, app: Any, routes: dict[str, tuple[type[BaseModel], Handler]]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            return await self.app(scope, receive, send)
        model, handler = route
        request = Request(scope, receive)
        try:
            response = await handler(read_body(await request.body(), model, scope["path"]), request)
        except HTTPError as exc:
            request.state.error = exc.message
            response = exc.response()
        except RequestValidationError as exc:
            error = invalid_body(exc)
            request.state.error = error.message
            response = error.response()
        await response(scope, receive, send)
