"""Policy presets: small validated documents naming a selector and its parameters.

A policy file is TOML::

    name = "best-of-majority"            # optional; defaults to the file name
    description = "BoM for Pass@k ..."   # optional
    selector = "best-of-majority"        # a name from ttscale.selection.registry.list_selectors()

    [params]                             # the selector's parameters (validated by its model)
    alpha = 0.1
    answers = 1

Later sections (sampling settings, a stopping/allocation rule, a budget) become optional
fields of :class:`Policy`, validated when present; any other top-level key is an error
listing the known ones.

Presets live in the top-level ``policies/`` folder of a source checkout and ship inside the
installed package as ``ttscale/policies_data/`` (see :func:`preset_dirs`).
:func:`load_policy` takes a preset name, a path to a ``.toml`` file, and either one followed
by overrides: ``"best-of-majority:alpha=0.3,answers=2"``.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import stat
import tomllib
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import Field, PrivateAttr, SerializeAsAny, model_validator

from ttscale.answers.candidates import Candidates, Selection
from ttscale.errors import BankFormatError, ConfigError, TTScaleDeprecationWarning
from ttscale.selection.fields import Available, MissingFieldError, missing_fields
from ttscale.selection.params import SelectorParams
from ttscale.selection.registry import canonical_name, get_selector, list_selectors
from ttscale.validation import FrozenModel, validate

__all__ = ["Policy", "list_policies", "load_policy", "parse_spec", "preset_dirs", "preset_names"]

PACKAGED_DIR = "policies_data"
"""Folder inside the installed ``ttscale`` package that holds the presets (from ``policies/``)."""


class _Dir(Protocol):  # pathlib.Path or an importlib.resources Traversable
    name: str

    def iterdir(self) -> Any: ...
    def is_dir(self) -> bool: ...


RENAMED_PRESETS = {"pass-at-k-majority": "top-k-answers"}
"""Old preset name -> its current name: the old one still loads, with a DeprecationWarning."""


class Policy(FrozenModel):
    """A selection policy: a selector and its validated parameters, with a name and description."""

    name: str = Field(min_length=1)
    """Name used by the CLI, the API and reports (a preset's name is its file name)."""
    description: str = ""
    """What the policy does and when to use it."""
    selector: str
    """Registered selector name (see ttscale.selection.registry.list_selectors())."""
    params: SerializeAsAny[SelectorParams] = Field(default_factory=SelectorParams)
    """The selector's parameters, validated against its parameter model."""

    _source: str | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _params_for_selector(cls, data: Any) -> Any:
        # The selector decides the parameter model, so it is checked (and a deprecated name
        # replaced by the current one) before the fields are.
        if isinstance(data, Mapping):
            data = dict(data)
            name = data.get("selector", "<missing>")
            if not isinstance(name, str) or name == "<missing>":
                raise ConfigError("selector", name, "a selector name: one of " + ", ".join(list_selectors()))
            spec = get_selector(canonical_name(name, stacklevel=2))
            data["selector"] = spec.name
            data["params"] = spec.validate(data.get("params") or {}, prefix="params.")
        return data

    @model_validator(mode="after")
    def _params_match_selector(self) -> Policy:
        model = get_selector(self.selector).params_model
        if type(self.params) is not model:
            raise ConfigError("params", self.params, f"parameters of {self.selector} ({model.__name__})")
        return self

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None, text: str | None = None) -> Policy:
        """Validate a policy document; ConfigError names ``source`` (and line, given ``text``)."""
        data = dict(data)

        def where(parameter: str) -> str | None:
            line = _locate(text, parameter) if text is not None else None
            return source if line is None or source is None else f"{source}, line {line}"

        try:
            policy = validate(cls, data)
        except ConfigError as exc:
            raise ConfigError(exc.parameter, exc.value, exc.expected, source=where(exc.parameter)) from None
        policy._source = source
        return policy

    @classmethod
    def from_file(cls, path: str | Path, *, overrides: Mapping[str, Any] | None = None) -> Policy:
        """Read and validate a policy TOML file (then apply ``overrides``, if any)."""
        return _load_file(Path(path), str(path), overrides=overrides)

    def with_params(self, **overrides: Any) -> Policy:
        """A copy with some selector parameters changed (validated)."""
        merged = {**self.params.model_dump(exclude_unset=True), **overrides}
        data = {**self.model_dump(exclude={"params"}), "params": merged}
        return Policy.from_dict(data, source=self.source)

    # ------------------------------------------------------------------ use

    @property
    def source(self) -> str | None:
        """The file this policy was read from (None when built in code)."""
        return self._source

    @property
    def needs(self) -> frozenset[str]:
        """Per-sample fields the policy requires: a subset of {"rewards", "logprobs", "reference"}."""
        return self.params.needs()

    def missing(self, have: Available) -> frozenset[str]:
        """The needed per-sample fields ``have`` lacks (empty when the policy can run).

        ``have``: one problem's candidates, a bank's (a field counts when every problem has it),
        or the set of field names a caller can provide (e.g. ``{"rewards"}`` with a scorer).
        """
        return missing_fields(self.needs, have)

    def check(self, have: Available) -> None:
        """Raise MissingFieldError when ``have`` lacks a field this policy needs."""
        for field in sorted(self.missing(have)):
            raise MissingFieldError(field, f"policy '{self.name}' ({self.selector})", "needs them")

    def selector_fn(self) -> Callable[[Candidates, np.random.Generator], Selection]:
        """``(cands, rng) -> Selection`` bound to this policy's parameters."""
        return get_selector(self.selector).bind(self.params)

    def select(self, cands: Candidates, rng: np.random.Generator) -> Selection:
        """Run the policy on one problem's candidates."""
        return get_selector(self.selector).run(cands, rng, self.params)


# ---------------------------------------------------------------------- files


def _locate(text: str, parameter: str) -> int | None:
    """1-based line of ``parameter`` ("selector", "params.alpha") in TOML ``text``, if findable."""
    *tables, key = parameter.split(".")
    table = ".".join(tables)
    current = ""
    header = re.compile(r"^\s*\[\s*([^\]\[]+?)\s*\]")
    for lineno, line in enumerate(text.splitlines(), 1):
        m = header.match(line)
        if m:
            current = m.group(1).replace('"', "").replace(" ", "")
            if current == parameter:  # the parameter is a whole table: [sampling]
                return lineno
            continue
        if current == table and re.match(rf'^\s*"?{re.escape(key)}"?\s*=', line):
            return lineno
    if tables:  # `params = { alpha = 2 }` or a dotted key `params.alpha = 2`, or just the table
        for lineno, line in enumerate(text.splitlines(), 1):
            if re.match(rf"^\s*(\[\s*)?{re.escape(tables[0])}\b", line):
                return lineno
    return None


def _load_file(
    path: Path | Any, label: str, *, overrides: Mapping[str, Any] | None = None, preset: bool = False
) -> Policy:
    try:
        text = _read_policy_text(path)
    except FileNotFoundError:
        raise ConfigError("policy", label, "an existing policy .toml file or a preset name") from None
    except OSError as exc:
        raise ConfigError("policy", label, f"a readable policy file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError("policy", label, f"a UTF-8 text file (invalid byte at offset {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        line = int(m.group(1)) if m else None
        detail = msg[: m.start()].strip() if m else msg
        if m:
            detail += f" at column {m.group(2)}"
        raise BankFormatError(label, line, None, "valid TOML", got=detail) from None
    stem = Path(path.name).stem
    data.setdefault("name", stem)
    policy = Policy.from_dict(data, source=label, text=text)
    if preset and policy.name != stem:
        raise ConfigError("name", policy.name, f"'{stem}' (a preset's name must match its file name)", source=label)
    if overrides:
        merged = _merge(policy.model_dump(exclude_unset=True), overrides)
        merged["name"] = policy.name + ":" + ",".join(f"{k}={_fmt(v)}" for k, v in overrides.items())
        shown = ",".join(f"{k}={_fmt(v)}" for k, v in overrides.items())
        policy = Policy.from_dict(merged, source=f"{label} with overrides '{shown}'")
    return policy


MAX_POLICY_BYTES = 1 << 20
"""Largest policy file read (a policy is a few lines; ``-p /dev/zero`` must not read until memory runs out)."""


def _read_policy_text(path: Path | Any) -> str:
    """The text of a policy file: a regular file of at most MAX_POLICY_BYTES (a FIFO would hang,
    a device never end), read as UTF-8. Packaged presets (not plain paths) are read as they are."""
    if not isinstance(path, Path):
        return path.read_text(encoding="utf-8")
    with open(path, "rb", opener=_nonblocking) as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or other non-regular file"
            raise ConfigError("policy", str(path), f"a regular policy .toml file (got {kind})")
        data = fh.read(MAX_POLICY_BYTES + 1)
    if len(data) > MAX_POLICY_BYTES:
        raise ConfigError("policy", str(path), f"a policy file of at most {MAX_POLICY_BYTES} bytes")
    return data.decode("utf-8")


def _nonblocking(path: str, flags: int) -> int:
    # O_NONBLOCK: opening a FIFO with no writer returns at once (then refused) instead of hanging
    return os.open(path, flags | os.O_NONBLOCK)


def _is_file(path: str) -> bool:
    """``Path(path).is_file()``, False for a name the system refuses (too long, a NUL byte) rather
    than an OSError: ``majority:`` followed by a long override list is a spec, not a file."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _merge(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``{"alpha": 0.3, "params.answers": 2}``; a key without a dot is a selector parameter."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        section = section or "params"
        table = out.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(key, value, f"a key inside a table; '{section}' is not a table")
        table[name] = value
    return out


_OVERRIDE = re.compile(r"^\s*[A-Za-z_][\w.\-]*\s*(=|,|$)")


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name-or-path:key=value,key=value"`` into the base and typed overrides.

    Values are read as TOML values (``2`` -> int, ``0.3`` -> float, ``true`` -> bool,
    ``"x"`` -> str); anything else is kept as a bare string (``source=confidence``).
    """
    base, rest = spec, ""
    if not _is_file(spec):  # a file whose name has a colon is taken as is
        for m in re.finditer(":", spec):  # skip drive letters like C:\ (no key after the colon)
            tail = spec[m.end():]
            if tail.strip() == "" or _OVERRIDE.match(tail):
                base, rest = spec[: m.start()], tail
                break
    overrides: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not eq or not key or not raw:
            raise ConfigError(
                "override", item,
                "key=value pairs separated by commas, e.g. 'best-of-majority:alpha=0.3,answers=2'",
            )
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        overrides[key] = value
    return base.strip(), overrides


# ---------------------------------------------------------------------- presets


def preset_dirs() -> list[_Dir]:
    """Folders searched for presets, first match wins.

    1. ``policies/`` next to the ``ttscale`` package (a source checkout or editable install, where
       users edit presets);
    2. ``ttscale/policies_data/`` inside an installed wheel (a link to ``policies/`` in the
       repository, so the wheel carries the same files).
    """
    dirs: list[_Dir] = []
    checkout = Path(__file__).resolve().parents[2] / "policies"  # ttscale/selection/policy.py -> the checkout
    if checkout.is_dir():
        dirs.append(checkout)
    packaged = importlib.resources.files("ttscale") / PACKAGED_DIR
    if packaged.is_dir():
        dirs.append(packaged)
    return dirs


def _preset_files() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for folder in preset_dirs():
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".toml") and entry.is_file():
                found.setdefault(entry.name[: -len(".toml")], entry)
    return found


def preset_names() -> list[str]:
    """Names of the shipped presets, sorted."""
    return sorted(_preset_files())


def list_policies() -> list[Policy]:
    """Every shipped preset, loaded and validated, sorted by name."""
    files = _preset_files()
    return [_load_file(files[n], _label(files[n]), preset=True) for n in sorted(files)]


def _label(entry: Any) -> str:
    return str(entry)


def _is_path(base: str) -> bool:
    return base.endswith(".toml") or "/" in base or "\\" in base


def load_policy(name_or_path: str | Path) -> Policy:
    """A policy from a preset name, a ``.toml`` path, either followed by ``:key=value,...``.

    ``load_policy("majority")``, ``load_policy("my/policy.toml")``,
    ``load_policy("best-of-majority:alpha=0.3,answers=2")``. Errors are ConfigError (unknown
    preset, unknown or bad parameter: naming the file, line and field) or BankFormatError
    (TOML syntax, naming the file and line).
    """
    if isinstance(name_or_path, Path):
        return _load_file(name_or_path, str(name_or_path))
    base, overrides = parse_spec(name_or_path)
    if _is_path(base) or _is_file(base) and base not in _preset_files():
        return _load_file(Path(base), base, overrides=overrides)
    files = _preset_files()
    if base not in files and base in RENAMED_PRESETS:
        new = RENAMED_PRESETS[base]
        warnings.warn(f"policy preset {base!r} is deprecated; use {new!r} (the same policy)", TTScaleDeprecationWarning, stacklevel=2)
        policy = _load_file(files[new], _label(files[new]), overrides=overrides, preset=True)
        # keep the name the caller used, so results stay keyed as before
        return policy.model_copy(update={"name": base + policy.name[len(new):]})
    if base not in files:
        known = ", ".join(sorted(files)) or "(none found)"
        raise ConfigError("policy", base, f"a preset name (one of {known}) or a path to a .toml file")
    return _load_file(files[base], _label(files[base]), overrides=overrides, preset=True)
