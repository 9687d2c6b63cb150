"""One validation mechanism: pydantic models with strict scalar types, errors translated to ConfigError.

Every config, params object and request-options model of ttscale is a frozen pydantic model (or a
pydantic dataclass) built from the types below; :func:`validate` is the one place a pydantic
``ValidationError`` becomes a :class:`~ttscale.errors.ConfigError` that names the parameter, the
value and what was expected.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

import numpy as np
from pydantic import (
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Strict,
    ValidationError,
)

from ttscale.errors import ConfigError

__all__ = [
    "Bool",
    "CheckedModel",
    "Float",
    "FrozenModel",
    "Int",
    "check_count",
    "config_error",
    "describe_error",
    "is_int",
    "is_number",
    "validate",
]

def _from_numpy(value: Any) -> Any:
    """numpy's integer and float scalars as Python's (a notebook passes ``np.int64(8)``); numpy bools
    stay bools, which the strict types refuse."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


# Strict scalars: `answers = true` or `alpha = "0.3"` in a policy file, or n=2.5 in a request, is a
# mistake to report, not to coerce. A Float accepts an int (1 -> 1.0) but never a bool, NaN or inf;
# numpy scalars count as the Python numbers they hold.
Int = Annotated[int, Strict(), BeforeValidator(_from_numpy)]
Float = Annotated[float, Strict(), AllowInfNan(False), BeforeValidator(_from_numpy)]
Bool = Annotated[bool, Strict()]


class FrozenModel(BaseModel):
    """Base of ttscale's config models: immutable, hashable, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class CheckedModel(FrozenModel):
    """A :class:`FrozenModel` built like a function call: fields by position or by keyword, and a bad
    value raises :class:`ConfigError` naming the parameter (not pydantic's ``ValidationError``).

    For objects code builds directly (``SampleRequest(id, problem, n)``); configs read from files go
    through :func:`validate`, which names the file too.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args:
            names = list(type(self).model_fields)
            if len(args) > len(names):
                raise TypeError(f"{type(self).__name__} takes at most {len(names)} positional arguments ({len(args)} given)")
            for name, value in zip(names, args):
                if name in kwargs:
                    raise TypeError(f"{type(self).__name__} got multiple values for argument {name!r}")
                kwargs[name] = value
        try:
            super().__init__(**kwargs)
        except ValidationError as exc:
            raise config_error(exc, type(self)) from None


M = TypeVar("M", bound=BaseModel)

_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def is_int(value: Any) -> bool:
    """An integer (Python's or numpy's) that is not a bool (``True`` is an int to Python, never a count
    to ttscale)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_number(value: Any) -> bool:
    """A finite real number (Python's or numpy's) that is not a bool, and within float range (an
    integer of 400 digits is not a number any float computation can use)."""
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # int too large to convert to float
        return False


def check_count(name: str, value: Any, low: int, expected: str | None = None) -> int:
    """``value`` as an int when it is an integer (:func:`is_int`) >= ``low``; else
    ``ConfigError(name, value, expected or "an integer >= low")``. For counts passed to functions
    (models declare ``Int`` fields with bounds instead)."""
    if not is_int(value) or value < low:
        raise ConfigError(name, value, expected or f"an integer >= {low}")
    return int(value)


def describe_error(exc: ValidationError, model: type[BaseModel] | None = None) -> tuple[str, Any, str]:
    """(dotted field path, offending value, what was expected) of the first problem in ``exc``."""
    err = exc.errors()[0]
    kind, ctx = err["type"], err.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, ConfigError):  # raised by a model validator: it already names the parameter
        return inner.parameter, inner.value, inner.expected
    loc = ".".join(str(p) for p in err["loc"])
    value = "<missing>" if kind == "missing" else err.get("input")
    if kind == "extra_forbidden" and model is not None:
        what = f"a known key ({', '.join(model.model_fields)})"
    elif kind in _BOUNDS:
        what = f"a number {_BOUNDS[kind]} {next(iter(ctx.values()))}"
    elif kind == "missing":
        what = "a value (this parameter is required)"
    elif kind == "enum":
        what = str(ctx.get("expected"))
    elif kind in ("int_parsing", "int_type", "int_from_float"):
        what = "an integer"
    elif kind in ("float_parsing", "float_type", "finite_number"):
        what = "a finite number"
    elif kind in ("bool_parsing", "bool_type"):
        what = "true or false"
    else:
        msg = str(err["msg"])
        what = msg[len("Input should be "):] if msg.startswith("Input should be ") else msg
    info = model.model_fields.get(str(err["loc"][0])) if model is not None and err["loc"] else None
    doc = info.description if info is not None else None
    return loc, value, f"{what} ({doc})" if doc else what


def config_error(exc: ValidationError, model: type[BaseModel] | None = None, *, prefix: str = "",
                 source: str | None = None) -> ConfigError:
    """The :class:`ConfigError` for the first problem of a pydantic ``ValidationError``."""
    loc, value, expected = describe_error(exc, model)
    return ConfigError(prefix + (loc or "params"), value, expected, source=source)


def validate(model: type[M], data: Mapping[str, Any] | M, *, prefix: str = "", source: str | None = None) -> M:
    """``model`` validated from ``data`` (a mapping, or an instance returned as is).

    Raises ``ConfigError(prefix + parameter, value, expected, source=source)`` for the first problem
    (unknown key, wrong type, out of range, inconsistent combination).
    """
    if isinstance(data, model):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(prefix.rstrip(".") or "params", data, "a table of parameters", source=source)
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise config_error(exc, model, prefix=prefix, source=source) from None
