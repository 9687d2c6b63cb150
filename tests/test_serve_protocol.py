"""The proxy's HTTP protocol (serve/protocol.py): writes of one event-loop turn go out as one,
and the responses a client reads over real sockets are whole (keep-alive, pipelined, closed,
streamed)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fake_upstream import FakeUpstream, free_port

from ttscale.live.serve.app import ServeConfig, create_app
from ttscale.live.serve.protocol import CoalescingTransport, timed_protocol


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_writes_of_one_turn_are_one_write_and_close_flushes_first() -> None:
    async def main() -> tuple[list[bytes], list[bytes], list[bytes], int]:
        raw = _Transport()
        t = CoalescingTransport(raw, asyncio.get_running_loop())
        head = bytearray(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(head)
        head[:4] = b"XXXX"  # a caller reusing its buffer does not change what was written
        t.write(b"body")
        assert raw.writes == [] and t.get_write_buffer_size() == len(b"HTTP/1.1 200 OK\r\n\r\nbody")
        await asyncio.sleep(0)
        first = list(raw.writes)
        t.write(b"a")
        t.writelines([b"b", b"c"])
        await asyncio.sleep(0)
        second = raw.writes[1:]
        t.write(b"last")
        t.close()  # a close right after a write (Connection: close) sends it first
        closing = raw.writes[2:]
        raw.closed = False
        t.write(b"after")
        raw.closed = True  # the peer left before the turn ended: dropped, not an error
        await asyncio.sleep(0)
        return first, second, closing, len(raw.writes)

    first, second, closing, total = asyncio.run(main())
    assert first == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    assert second == [b"abc"]
    assert closing == [b"last"]
    assert total == 3
    assert CoalescingTransport(_Transport(), None).get_extra_info("peername") == "info:peername"  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """The proxy app on uvicorn with the protocol ``ttscale serve`` uses, in front of the fake upstream."""
    up = FakeUpstream().start()
    config = ServeConfig(upstream=up.url, n=4, max_retries=1, timeout=10.0)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning",
                                           http=timed_protocol(config.read_seconds)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    up.stop()


def _request(body: dict, *, close: bool = False) -> bytes:
    raw = json.dumps(body).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + (b"Connection: close\r\n" if close else b"") + b"Content-Length: %d\r\n\r\n" % len(raw) + raw)


def _responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """``count`` whole responses (status, body) read off ``sock`` (Content-Length or chunked)."""
    data, out = b"", []
    while len(out) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(out)} responses"
            data += chunk
        head, data = data.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(b":", 1) for line in head.split(b"\r\n")[1:])}
        if b"content-length" in headers:
            size = int(headers[b"content-length"])
            while len(data) < size:
                data += sock.recv(65536)
            out.append((status, data[:size]))
            data = data[size:]
        else:  # chunked: read to the last chunk
            while b"0\r\n\r\n" not in data:
                data += sock.recv(65536)
            body, data = data.split(b"0\r\n\r\n", 1)
            out.append((status, body))
    return out


def test_keep_alive_pipelined_closed_and_streamed_responses_are_whole(served: str) -> None:
    host, port = served.split(":")
    msgs = [{"role": "user", "content": "What is 2 + 2?"}]
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for _ in range(3):  # keep-alive, one after another
            sock.sendall(_request({"model": "fake-model", "messages": msgs, "seed": 1}))
            [(status, body)] = _responses(sock, 1)
            assert status == 200 and json.loads(body)["ttscale"]["samples"] == 4
        # pipelined: two requests in one write, two whole answers in order
        sock.sendall(_request({"model": "fake-model", "messages": msgs, "n": 2}) + _request({"model": "fake-model", "messages": msgs}))
        first, second = _responses(sock, 2)
        assert len(json.loads(first[1])["choices"]) == 2 and len(json.loads(second[1])["choices"]) == 1
        # a bad body: the 400 is whole too
        sock.sendall(_request({"model": "fake-model"}))
        [(status, body)] = _responses(sock, 1)
        assert status == 400 and json.loads(body)["error"]["param"] == "messages"
        # streamed: every event, through [DONE]
        sock.sendall(_request({"model": "fake-model", "messages": msgs, "stream": True}))
        [(status, body)] = _responses(sock, 1)
        assert status == 200 and b"data: [DONE]" in body and b'"ttscale"' in body
        # Connection: close: the answer arrives before the close
        sock.sendall(_request({"model": "fake-model", "messages": msgs}, close=True))
        [(status, body)] = _responses(sock, 1)
        assert status == 200 and json.loads(body)["choices"][0]["message"]["content"]
        assert sock.recv(1) == b""
