"""Read timeouts for the proxy's HTTP connections (slowloris).

uvicorn closes idle keep-alive connections, but it waits for ever on a client that sends its
request headers one byte every two seconds: 300 such connections hold 300 sockets and tasks.
:func:`timed_protocol` is uvicorn's own HTTP protocol (httptools when installed, else h11) with a
header deadline: from the connection (or the previous response) to the end of the next request's
headers at most ``seconds``, else the connection is closed. The body has its own deadline in
:class:`~ttscale.live.serve.middleware.BodyLimit` (a 408).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["timed_protocol"]


class _HeaderDeadline:
    """Mixed in before a uvicorn HTTP protocol class: close connections whose headers are late."""

    header_seconds: float = 10.0
    _timer: asyncio.TimerHandle | None = None
    _seen: Any = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        self._headers_done()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self._headers_done() and not self.transport.is_closing():  # type: ignore[attr-defined]
            self._arm()  # waiting for the next request's headers

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)  # type: ignore[misc]

    def _headers_done(self) -> bool:
        """Whether a request's headers completed since the last look (a new request cycle started;
        a pipelined one may start inside ``on_response_complete``)."""
        cycle = self.cycle  # type: ignore[attr-defined]
        if cycle is not None and cycle is not self._seen:
            self._seen = cycle
            self._cancel()
            return True
        return False

    def _arm(self) -> None:
        self._cancel()
        self._timer = self.loop.call_later(self.header_seconds, self._late)  # type: ignore[attr-defined]

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _late(self) -> None:
        self._timer = None
        if not self.transport.is_closing():  # type: ignore[attr-defined]
            self.transport.close()  # type: ignore[attr-defined]


def timed_protocol(seconds: float) -> type:
    """uvicorn's HTTP protocol class with a ``seconds`` header deadline (pass as ``http=`` to
    ``uvicorn.run`` or ``uvicorn.Config``)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # httptools is optional: uvicorn's pure-Python h11 then
        from uvicorn.protocols.http.h11_impl import H11Protocol as base  # type: ignore[assignment]
    return type(f"Timed{base.__name__}", (_HeaderDeadline, base), {"header_seconds": float(seconds)})
