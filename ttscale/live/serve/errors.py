"""OpenAI-style error bodies of the proxy, and how each failure maps onto one.

Every error is ``{"error": {"message", "type", "param", "code"}}``: 400 bad request (``param``
names the field), 401 bad key, 404 unknown path, 413 body too large, 502 upstream down or
failing, 504 upstream too slow. FastAPI's own 422 for a body that does not fit the request model
becomes a 400 naming the field.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ttscale.early_stop.params import EarlyStopParams
from ttscale.errors import ConfigError
from ttscale.live.samplers import UpstreamRefused
from ttscale.live.serve.options import UnknownField
from ttscale.live.serve.requests import PROMPT_EXPECTED
from ttscale.live.solve import SolveError
from ttscale.sampling.backends.openai import Failure, ServerError
from ttscale.validation import describe_error

__all__ = ["HTTPError", "install_error_handlers", "upstream_error"]


class HTTPError(Exception):
    """An error answered with an OpenAI-style body."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    @classmethod
    def bad_request(cls, exc: ConfigError) -> HTTPError:
        """The 400 of a bad parameter."""
        return cls(400, str(exc), param=exc.parameter)

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(body, status_code=self.status, headers=headers)


def upstream_error(exc: BaseException, upstream: str) -> HTTPError:
    """The error answered for a failure of solving: the upstream's own 4xx, 502, 504, or a 400."""
    if isinstance(exc, SolveError) and exc.cause is not None:
        exc = exc.cause
    if isinstance(exc, UpstreamRefused):  # the upstream's own words and status, as a client would see them directly
        e = exc.error
        return HTTPError(exc.status or 400, e["message"], type_=e["type"] or "invalid_request_error", param=e["param"],
                         code=e["code"] or "upstream_refused")
    if isinstance(exc, ServerError):
        if exc.kind is Failure.TIMEOUT:
            return HTTPError(504, f"upstream {upstream} did not answer in time: {exc}", type_="upstream_error", code="upstream_timeout")
        if exc.kind is Failure.REFUSED and exc.status is not None and 400 <= exc.status < 500:
            return HTTPError(exc.status, f"upstream refused the request: {exc}", code="upstream_refused")
        if exc.kind is Failure.MALFORMED:
            return HTTPError(502, f"upstream {upstream} sent a malformed reply: {exc}", type_="upstream_error", code="upstream_malformed")
        if exc.kind is Failure.UNREACHABLE:
            return HTTPError(502, f"upstream {upstream} is unreachable ({exc}): is it running, and is ttscale serve "
                                  "--upstream right?", type_="upstream_error", code="upstream_unreachable")
        return HTTPError(502, f"upstream {upstream} failed: {exc}", type_="upstream_error", code="upstream_failed")
    if isinstance(exc, ConfigError):
        return HTTPError.bad_request(exc)
    return HTTPError(502, f"upstream {upstream} failed: {exc}", type_="upstream_error", code="upstream_failed")


def _param(loc: tuple[Any, ...]) -> str:
    """``("body", "messages", 0, "role")`` -> ``messages[0].role``."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


_EXPECTED = {
    "prompt": PROMPT_EXPECTED,
    "messages": "a non-empty list of chat messages (objects with a string 'role')",
}
"""What a field holds, said better than the type error would."""


def invalid_body(exc: RequestValidationError) -> HTTPError:
    """The 400 for a request body that is not JSON, not an object, or does not fit the request model."""
    err = exc.errors()[0]
    if err["type"] == "json_invalid":
        return HTTPError(400, f"request body is not valid JSON: {(err.get('ctx') or {}).get('error', err['msg'])}", code="invalid_json")
    param = _param(tuple(err["loc"]))
    if not param:
        return HTTPError(400, "request body must be a JSON object", code="invalid_json")
    _, value, expected = describe_error(exc)  # type: ignore[arg-type]  (the same errors() as pydantic's)
    inner = (err.get("ctx") or {}).get("error")
    if isinstance(inner, ConfigError) and "." in inner.parameter:
        # A field's own validator names what inside it is wrong (ttscale.early_stop -> ttscale.early_stop.eta).
        param = ".".join([*param.split(".")[:-1], inner.parameter])
        if param.startswith("ttscale.early_stop.") and param.rsplit(".", 1)[1] not in EarlyStopParams.model_fields:
            return HTTPError(400, str(UnknownField(param, value)), param=param)
    if err["type"] == "extra_forbidden":
        return HTTPError(400, str(UnknownField(param, value)) if param.startswith("ttscale.") else f"unknown field {param}",
                         param=param)
    expected = _EXPECTED.get(param, expected)
    return HTTPError(400, f"{param}={value!r}: expected {expected}", param=param)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with an OpenAI-style body."""

    @app.exception_handler(HTTPError)
    async def _http_error(request: Request, exc: HTTPError) -> JSONResponse:
        request.state.error = exc.message  # for the access log
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        error = invalid_body(exc)
        request.state.error = error.message
        return error.response()

    @app.exception_handler(StarletteHTTPException)
    async def _starlette_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else None
        return HTTPError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code=kind).response()
