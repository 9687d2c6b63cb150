"""Typed errors. Every error names where the problem is and what was expected."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class TTScaleError(Exception):
    """Base class of every error ttscale raises on purpose (the CLI prints these without a traceback)."""

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle rebuilds an exception by calling its class with ``args`` (the message), which a
        # subclass taking other constructor arguments (ConfigError, JudgeParseError, ...) would
        # misread; rebuild from the message and fields instead, so every typed error crosses
        # process boundaries (Ray actors, worker pools) as itself.
        return (_rebuild, (type(self), self.args, vars(self)))


class ConfigError(TTScaleError, ValueError):
    """A parameter has an invalid value: names the parameter, the value and what was expected."""

    def __init__(self, parameter: str, value: Any, expected: str, *, source: str | None = None) -> None:
        self.parameter = parameter
        self.value = value
        self.expected = expected
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{parameter}={value!r}: expected {expected}")


class BankFormatError(TTScaleError, ValueError):
    """A bank, dataset or table file has bad content at a known file, line and field."""

    def __init__(
        self,
        path: str | Path,
        line: int | None,
        field: str | None,
        expected: str,
        got: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.expected = expected
        self.got = got
        where = self.path if line is None else f"{self.path}, line {line}"
        what = f"field '{field}': " if field else ""
        tail = f" (got {got})" if got else ""
        super().__init__(f"{where}: {what}expected {expected}{tail}")


def _rebuild(cls: type[TTScaleError], args: tuple[Any, ...], state: dict[str, Any]) -> TTScaleError:
    """Unpickle a typed error: message and fields restored as they were, ``__init__`` not called."""
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class InputLimitError(TTScaleError, ValueError):
    """Input is over a limit of :mod:`ttscale.limits` (JSON nesting depth, digits of a number):
    names the field (a dotted path, or None for the whole input), what was expected and what came."""

    def __init__(self, field: str | None, expected: str, got: str | None = None) -> None:
        self.field = field
        self.expected = expected
        self.got = got
        what = f"field '{field}': " if field else ""
        tail = f" (got {got})" if got else ""
        super().__init__(f"{what}expected {expected}{tail}")


class BankLockedError(TTScaleError, RuntimeError):
    """Another process is writing the bank: names the bank, the lock file and the holder's PID."""

    def __init__(self, path: str | Path, lock: str | Path, pid: int | None) -> None:
        self.path = str(path)
        self.lock = str(lock)
        self.pid = pid
        holder = f"process {pid}" if pid else "another process"
        super().__init__(
            f"{self.path}: {holder} is writing this bank (lock {self.lock}); wait for it to finish or stop it "
            "(one writer per bank: two would double the samples of every problem)"
        )


class DiskWriteError(TTScaleError, RuntimeError):
    """Writing a file failed (disk full, file size limit, read-only or failing disk): names the file
    and the system's reason, and says what survives."""

    def __init__(self, path: str | Path, errno: int | None, reason: str, kept: str = "") -> None:
        self.path = str(path)
        self.errno = errno
        self.reason = reason
        self.kept = kept
        code = f" (errno {errno})" if errno is not None else ""
        tail = f"; {kept}" if kept else ""
        super().__init__(f"{self.path}: cannot write: {reason}{code}{tail}")

    @classmethod
    def from_os_error(cls, path: str | Path, exc: OSError, kept: str = "") -> DiskWriteError:
        return cls(getattr(exc, "filename", None) or path, exc.errno, exc.strerror or str(exc), kept)


class AnswerTimeoutError(TTScaleError, TimeoutError):
    """Answer parsing or equivalence checking took longer than its timeout."""


class EstimationError(TTScaleError, ValueError):
    """An estimator was asked for something the data cannot give (e.g. k larger than the pool)."""


class TTScaleDeprecationWarning(DeprecationWarning):
    """A renamed name (selector, preset, function) still works but will go: the warning names the new one.

    The ``ttscale`` command shows these as one ``note:`` line on stderr (Python hides
    DeprecationWarnings outside ``__main__`` by default); third-party ones stay hidden.
    """
