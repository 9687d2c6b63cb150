"""The proxy's HTTP connections: read timeouts (slowloris), and one send per response.

uvicorn closes idle keep-alive connections, but it waits for ever on a client that sends its
request headers one byte every two seconds: 300 such connections hold 300 sockets and tasks.
:func:`timed_protocol` is uvicorn's own HTTP protocol (httptools when installed, else h11) with a
header deadline: from the connection (or the previous response) to the end of the next request's
headers at most ``seconds``, else the connection is closed. The body has its own deadline in
:class:`~ttscale.live.serve.middleware.BodyLimit` (a 408).

uvicorn writes a response's status line and headers, then its body, each straight to the socket:
two ``send`` calls per response, and on loopback each wakes the reader. :class:`CoalescingTransport`
sends what one turn of the event loop wrote in one call (one send per response instead of two:
about a tenth of the proxy's CPU per request on a busy machine).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["CoalescingTransport", "timed_protocol"]


class CoalescingTransport:
    """A connection's transport whose writes made in one event-loop turn go out as one write
    (at the end of the turn, or before a close). Everything else is the transport's own."""

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():  # the peer left: nothing to send to
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _HeaderDeadline:
    """Mixed in before a uvicorn HTTP protocol class: close connections whose headers are late,
    and write through a :class:`CoalescingTransport`."""

    header_seconds: float = 10.0
    _timer: asyncio.TimerHandle | None = None
    _seen: Any = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[misc, attr-defined]
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
    """uvicorn's HTTP protocol class with a ``seconds`` header deadline and coalesced writes
    (pass as ``http=`` to ``uvicorn.run`` or ``uvicorn.Config``)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # httptools is optional: uvicorn's pure-Python h11 then
        from uvicorn.protocols.http.h11_impl import H11Protocol as base  # type: ignore[assignment]
    return type(f"Timed{base.__name__}", (_HeaderDeadline, base), {"header_seconds": float(seconds)})
