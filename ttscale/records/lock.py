"""Single-writer banks: an advisory lock on a sidecar file ``BANK.lock``.

Two writers on one bank (two ``ttscale sample --out same.jsonl`` started together) would each read
the same sample counts and each append the missing samples, doubling every problem. Whoever writes
a bank (the sampling driver, ``score_bank``, the bench pipeline) holds :func:`bank_lock` from
reading the bank to its last write; a second writer gets :class:`~ttscale.errors.BankLockedError`
naming the holder's PID at once instead of waiting.

The lock is ``flock`` on ``BANK.lock`` (a sidecar, because scoring replaces the bank by rename, which
would drop a lock held on the bank's own inode). The kernel releases it when the holder's process
dies, SIGKILL included, so a stale ``BANK.lock`` file left behind never blocks: only its PID text
remains, and the next writer overwrites it. The file is not deleted on release (unlinking a lock file
races with a writer that has just opened it). Within one process the lock is re-entrant (the bench
pipeline holds it around the driver and the scorer, which take it again).

A path that exists and is not a regular file (``/dev/full``, a FIFO) is not locked: it is no bank
anyone can resume, and its directory is no place for a sidecar.
"""

from __future__ import annotations

import fcntl
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ttscale.errors import BankLockedError

__all__ = ["bank_lock", "lock_path"]

_held: dict[str, list[int]] = {}  # real path of the lock file -> [fd, depth]
_guard = threading.Lock()


def lock_path(bank: str | Path) -> Path:
    """The sidecar lock file of ``bank``: ``bank.jsonl`` -> ``bank.jsonl.lock``."""
    bank = Path(bank)
    return bank.with_name(bank.name + ".lock")


def _holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _not_regular(bank: Path) -> bool:
    try:
        return not stat.S_ISREG(bank.stat().st_mode)
    except OSError:
        return False


@contextmanager
def bank_lock(bank: str | Path) -> Iterator[Path | None]:
    """Hold the write lock of ``bank`` for the ``with`` block; yields the lock file's path.

    Raises :class:`BankLockedError` at once when another process holds it.
    """
    bank = Path(bank)
    if _not_regular(bank):
        yield None
        return
    lock = lock_path(bank)
    lock.parent.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(lock)
    with _guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
        else:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _holder(fd)
                os.close(fd)
                raise BankLockedError(bank, lock, pid) from None
            except BaseException:
                os.close(fd)
                raise
            # one fixed-width write: a reader sees the old PID or the new one, never a mix
            os.pwrite(fd, f"{os.getpid():>10}\n".encode(), 0)
            os.ftruncate(fd, 11)
            _held[key] = [fd, 1]
    try:
        yield lock
    finally:
        with _guard:
            entry = _held[key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                os.close(entry[0])  # closing the last descriptor releases the flock
