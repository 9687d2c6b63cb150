"""Parent side of the sympy workers: timeouts that work from any thread and inside any process.

math-verify's own timeout uses SIGALRM, which only works in the main thread of the main
interpreter, and a Python thread stuck in sympy cannot be interrupted. So every parse/verify
runs in a persistent child process (``_worker.py``, started with ``subprocess`` so that it also
works inside daemonic ``multiprocessing`` / ``ProcessPoolExecutor`` workers). The caller waits
for the reply with ``select`` and a deadline; on timeout the child is killed (SIGKILL always
works on CPU-bound sympy) and a fresh one is started for the next request. Start-up (importing
sympy, about a second) is not charged to any request's timeout.

Workers are shared by every classifier of the process, one request at a time per worker; up to
``MAX_WORKERS`` run when several threads ask at once. After ``os.fork`` the child process gets a
fresh, empty pool (the inherited workers belong to the parent and are left alone).

POSIX only (``select`` on pipes), like the SIGALRM timeout it replaces.
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ttscale.errors import TTScaleError

_HEADER = struct.Struct(">I")
WORKER_SCRIPT = Path(__file__).with_name("_worker.py")
MAX_WORKERS = max(1, min(4, os.cpu_count() or 1))
STARTUP_TIMEOUT = 120.0
"""Seconds a new worker may take to import math-verify (generous: a loaded machine is slow)."""


class AnswerBackendError(TTScaleError, RuntimeError):
    """The math-verify worker process could not be started (broken environment, not a bad answer)."""


class WorkerTimeout(Exception):
    """A request did not get its reply in time (the worker has been killed)."""


class WorkerDied(Exception):
    """The worker exited or closed its pipe in the middle of a request."""


class _Worker:
    def __init__(self) -> None:
        try:
            self.proc = subprocess.Popen(
                [sys.executable, str(WORKER_SCRIPT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
                close_fds=True,
            )
        except OSError as exc:
            raise AnswerBackendError(f"cannot start the math-verify worker ({sys.executable} {WORKER_SCRIPT}): {exc}") from exc
        self._rfd = self.proc.stdout.fileno()
        self._wfd = self.proc.stdin.fileno()
        self._buf = bytearray()
        try:
            reply = self._recv(time.monotonic() + STARTUP_TIMEOUT)
        except (WorkerTimeout, WorkerDied) as exc:
            self.kill()
            raise AnswerBackendError(
                f"the math-verify worker did not start ({type(exc).__name__}); check that "
                f"'{sys.executable} -c \"import math_verify\"' works"
            ) from exc
        if not (isinstance(reply, tuple) and reply and reply[0] == "ready"):
            self.kill()
            raise AnswerBackendError(f"the math-verify worker sent {reply!r} instead of 'ready'")

    def _recv(self, deadline: float) -> Any:
        while True:
            if len(self._buf) >= _HEADER.size:
                size = _HEADER.unpack_from(self._buf)[0]
                if len(self._buf) >= _HEADER.size + size:
                    body = bytes(self._buf[_HEADER.size : _HEADER.size + size])
                    del self._buf[: _HEADER.size + size]
                    return pickle.loads(body)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerTimeout()
            try:
                ready, _, _ = select.select([self._rfd], [], [], remaining)
            except InterruptedError:  # pragma: no cover - PEP 475 retries, but be safe
                continue
            if not ready:
                raise WorkerTimeout()
            chunk = os.read(self._rfd, 1 << 16)
            if not chunk:
                raise WorkerDied()
            self._buf += chunk

    def request(self, message: tuple, timeout: float) -> Any:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(_HEADER.pack(len(data)) + data)
        try:
            while view:
                written = os.write(self._wfd, view)
                view = view[written:]
        except (BrokenPipeError, OSError) as exc:
            raise WorkerDied() from exc
        return self._recv(time.monotonic() + timeout)

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        self._close_pipes()
        try:
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001
            pass

    def close(self) -> None:
        """Polite shutdown: closing stdin makes the worker exit; kill it if it lingers."""
        self._close_pipes()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()

    def _close_pipes(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class WorkerPool:
    """Hands out idle workers; starts new ones up to ``max_workers``; replaces killed ones."""

    def __init__(self, max_workers: int = MAX_WORKERS) -> None:
        self.max_workers = max_workers
        self._cond = threading.Condition(threading.Lock())
        self._idle: list[_Worker] = []
        self._count = 0  # workers alive or starting
        self._owner = os.getpid()
        self.starts = 0

    def _checkout(self) -> _Worker:
        with self._cond:
            while not self._idle and self._count >= self.max_workers:
                self._cond.wait()
            if self._idle:
                return self._idle.pop()
            self._count += 1
        try:
            worker = _Worker()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise
        with self._cond:
            self.starts += 1
        return worker

    def _checkin(self, worker: _Worker | None) -> None:
        with self._cond:
            if worker is None:
                self._count -= 1
            else:
                self._idle.append(worker)
            self._cond.notify()

    def call(self, message: tuple, timeout: float) -> Any:
        """The worker's reply to ``message``; raises WorkerTimeout (worker killed) or WorkerDied.

        A worker found dead before the request was sent (e.g. killed from outside) is replaced
        once and the request retried.
        """
        for attempt in range(2):
            worker = self._checkout()
            try:
                reply = worker.request(message, timeout)
            except WorkerTimeout:
                worker.kill()
                self._checkin(None)
                raise
            except WorkerDied:
                worker.kill()
                self._checkin(None)
                if attempt == 1:
                    raise
                continue
            except BaseException:  # KeyboardInterrupt mid-request: the reply stream is out of sync
                worker.kill()
                self._checkin(None)
                raise
            self._checkin(worker)
            return reply
        raise WorkerDied()  # pragma: no cover

    def shutdown(self) -> None:
        """Stop every idle worker (busy ones are stopped when their request finishes)."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
        for worker in idle:
            worker.close()

    def abandon(self) -> None:
        """In a forked child: drop the parent's workers without touching the processes."""
        for worker in self._idle:
            worker._close_pipes()  # our copies of the fds only; the parent's stay open
            worker.proc.returncode = 0  # not our child: never wait for it
        _ABANDONED.extend(self._idle)
        self._idle = []


_ABANDONED: list[_Worker] = []
_POOL = WorkerPool()


def pool() -> WorkerPool:
    """The process-wide pool (a fresh one in a forked child)."""
    return _POOL


def shutdown_workers() -> None:
    """Stop this process's idle math-verify workers (they restart on demand). Safe to call anytime."""
    _POOL.shutdown()


def _after_fork_in_child() -> None:
    global _POOL
    old = _POOL
    _POOL = WorkerPool(old.max_workers)
    old.abandon()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(shutdown_workers)
