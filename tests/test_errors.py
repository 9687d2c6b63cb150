"""Every typed error survives pickling as itself: same class, message and fields.

Ray actors and worker pools send errors back pickled; a typed error that came back as another
class, or with its fields lost, would reach the CLI as a traceback instead of a one-line message.
"""

from __future__ import annotations

import importlib
import pickle
import pkgutil

import pytest

import ttscale
from ttscale.errors import TTScaleError


def _all_error_classes() -> set[type[TTScaleError]]:
    for info in pkgutil.walk_packages(ttscale.__path__, "ttscale."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    found: set[type[TTScaleError]] = set()
    todo = [TTScaleError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("ttscale.") and sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def _examples() -> list[TTScaleError]:
    from ttscale.answers._pool import AnswerBackendError
    from ttscale.errors import (
        AnswerTimeoutError,
        BankFormatError,
        BankLockedError,
        ConfigError,
        DiskWriteError,
        EstimationError,
        InputLimitError,
    )
    from ttscale.live.samplers import UpstreamRefused
    from ttscale.live.serve.options import UnknownField
    from ttscale.live.solve import SolveError
    from ttscale.search.branch import SearchError
    from ttscale.sampling.backends.openai import ServerError
    from ttscale.sampling.backends.ray import ReplicaError
    from ttscale.sampling.backends.replay import ReplayExhaustedError
    from ttscale.scoring.judge import JudgeParseError
    from ttscale.selection.fields import MissingFieldError

    return [
        TTScaleError("plain"),
        ConfigError("top_p", 1.5, "a number in (0, 1]", source="policy.toml"),
        BankFormatError("bank.jsonl", 3, "samples.0.tokens", "an integer", "'x'"),
        AnswerTimeoutError("parsing took longer than 5s"),
        EstimationError("k=9 is larger than the pool (8)"),
        AnswerBackendError("the math-verify worker did not start"),
        SolveError("every request failed", cause=None),
        ServerError("503 after 3 retries", kind="status", status=503),
        ReplicaError("replica 1 of 2 died"),
        ReplayExhaustedError("n", 9, "at most 8 samples of 'q1'"),
        JudgeParseError("no number here", "judge: ", problem=2, sample=5),
        MissingFieldError("rewards", "best-of-n", "ranks by reward"),
        InputLimitError("samples.0.tokens", "an integer of at most 4300 digits", "5000 digits"),
        BankLockedError("bank.jsonl", "bank.jsonl.lock", 4242),
        DiskWriteError("bank.jsonl", 28, "No space left on device", "the lines written before are kept"),
        SearchError("the scorer returned 3 step scores for 4 steps"),
        UnknownField("ttscale.k", 3),
        UpstreamRefused(400, {"message": "max_tokens=100000 cannot be greater than max_model_len=256", "type": "BadRequestError"}),
    ]


def test_the_examples_cover_every_error_class() -> None:
    """A new error class needs an example here (and must pickle)."""
    assert {type(e) for e in _examples()} == _all_error_classes() | {TTScaleError}


@pytest.mark.parametrize("error", _examples(), ids=lambda e: type(e).__name__)
def test_error_pickles_as_itself(error: TTScaleError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error) and copy.args == error.args
    assert vars(copy) == vars(error)
