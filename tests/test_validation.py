"""ttscale.validation: the one mechanism every config goes through (strict types, ConfigError naming the field)."""

from __future__ import annotations

import pickle
from typing import Annotated

import numpy as np
import pytest
from pydantic import Field

from ttscale.errors import ConfigError
from ttscale.validation import (
    Bool,
    CheckedModel,
    Float,
    FrozenModel,
    Int,
    check_count,
    is_int,
    is_number,
    validate,
)


class Knobs(CheckedModel):
    n: Annotated[Int, Field(ge=1)] = 1
    """Samples per question."""
    rate: Float = 0.5
    """A rate."""
    adaptive: Bool = False
    """Stop early."""


class Doc(FrozenModel):
    name: str
    size: Annotated[Int, Field(ge=0)] = 0


def test_strict_scalars_refuse_coercion_but_take_numpy_numbers():
    assert Knobs(np.int64(3), np.float32(0.25), True) == Knobs(n=3, rate=0.25, adaptive=True)
    assert type(Knobs(np.int64(3)).n) is int and Knobs(rate=1).rate == 1.0
    for field, value in [("n", True), ("n", 2.5), ("n", "3"), ("n", np.bool_(True)), ("rate", "0.3"),
                         ("rate", float("nan")), ("rate", float("inf")), ("rate", False), ("adaptive", 1)]:
        with pytest.raises(ConfigError) as info:
            Knobs(**{field: value})
        assert info.value.parameter == field and info.value.value is value


def test_errors_name_bounds_unknown_keys_and_the_field_doc():
    with pytest.raises(ConfigError, match=r"n=0: expected a number >= 1 \(Samples per question.\)"):
        Knobs(n=0)
    with pytest.raises(ConfigError, match=r"bogus=1: expected a known key \(name, size\)"):
        validate(Doc, {"name": "x", "bogus": 1})
    with pytest.raises(ConfigError, match=r"policy.name='<missing>': expected a value") as info:
        validate(Doc, {}, prefix="policy.", source="p.toml")
    assert info.value.source == "p.toml" and str(info.value).startswith("p.toml: ")
    with pytest.raises(ConfigError, match="a table of parameters"):
        validate(Doc, ["name"])
    with pytest.raises(TypeError, match="at most 3 positional"):
        Knobs(1, 0.5, False, 4)


def test_models_are_frozen_hashable_and_pickle():
    k = Knobs(4, 0.1)
    assert hash(k) == hash(Knobs(n=4, rate=0.1)) and pickle.loads(pickle.dumps(k)) == k
    with pytest.raises(Exception):
        k.n = 5  # type: ignore[misc]


def test_count_and_number_checks():
    assert [is_int(v) for v in (3, np.int16(3), True, np.bool_(True), 3.0)] == [True, True, False, False, False]
    assert [is_number(v) for v in (1, 0.5, np.float32(2), float("nan"), float("inf"), False, "1")] == [True, True, True, False, False, False, False]
    assert check_count("draws", np.int64(5), 1) == 5 and type(check_count("draws", np.int64(5), 1)) is int
    for bad in (0, True, 1.0, None):
        with pytest.raises(ConfigError, match="draws"):
            check_count("draws", bad, 1)
