"""The package layout: data flows one way through the layers, with no import cycles.

Every ``import`` of a ttscale module anywhere in a module's source (function-level lazy imports
included) counts. A subpackage may import from its own layer and the ones below it, never from a
higher one; nothing outside ``cli`` imports from ``cli``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ttscale"

LAYERS: list[set[str]] = [
    {"errors", "validation", "limits"},  # typed errors, strict field types, pydantic-error translation, input limits
    {"arith"},  # the embedded task and model (files, prompt format)
    {"records"},  # bank lines, banks, datasets
    {"answers"},  # extraction, equivalence, grading into Candidates
    {"selection"},  # tie-breaking, selectors, their registry, policy presets
    {"estimate"},  # accuracy at k: exact forms, resampling, evaluate
    {"curves"},  # accuracy-vs-samples models
    {"early_stop"},  # DeepConf online: group confidence, calibration, its offline replay, the engines' logits processors
    {"adaptive"},  # stopping rules, allocators, replays
    {"planning"},  # plan and cost
    {"offline"},  # the public offline API (read_bank, evaluate, plan, simulate)
    {"sampling"},  # sampler protocol, backends, driver
    {"scoring"},  # reward models, PRMs, judge
    {"search"},  # step-level search (beam, DVTS, particle filtering) over generated steps
    {"live"},  # solve, the Python API, the proxy
    {"bench"},  # the bench pipeline and its report
    {"cli"},  # the ttscale command
]
"""Lowest first. The top-level ``ttscale/__init__.py`` and ``__main__.py`` are entry points, above all."""

LAYER_OF = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The ttscale modules ``path`` imports (``from a.b import c`` counts ``a.b`` and ``a.b.c``)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "ttscale" or target.startswith("ttscale."):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name == "ttscale" or a.name.startswith("ttscale."))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        # keep only real modules ("from ttscale.x import func" also yields "ttscale.x.func")
        graph[name] = {t for t in _imports(path) if t in modules and t != name}
    return graph


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_subpackage_has_a_layer_and_says_what_it_is_for():
    for path in PACKAGE.iterdir():
        name = path.stem if path.suffix == ".py" else path.name
        if name.startswith("__") or path.name in ("models", "data") or not (path.suffix == ".py" or path.is_dir()):
            continue
        if path.is_dir() and not any(path.rglob("*.py")):
            continue  # a stale folder of caches
        assert name in LAYER_OF, f"ttscale/{path.name} is in no layer of tests/test_layout.py"
        if path.is_dir():
            init = path / "__init__.py"
            assert init.exists(), f"{path} has no __init__.py"
            doc = ast.get_docstring(ast.parse(init.read_text()))
            assert doc and len(doc) > 40, f"{init} does not say what the subpackage is for"


def test_no_upward_imports():
    wrong = []
    for module, targets in _graph().items():
        here = _subpackage(module)
        if here is None or here.startswith("__"):
            continue  # ttscale/__init__.py, __main__.py: entry points
        for target in targets:
            there = _subpackage(target)
            if there is None:
                if target == "ttscale":
                    wrong.append(f"{module} -> ttscale (the top-level package: import the module itself)")
                continue
            if LAYER_OF[there] > LAYER_OF[here]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports from a higher layer:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    graph = _graph()
    # Tarjan's strongly connected components: any component of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            # a package's __init__ re-exporting its own modules is not a cycle worth reporting
            real = [m for m in component if not any(o.startswith(m + ".") for o in component)]
            if len(real) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", ["ttscale.selection.registry", "ttscale.estimate.exact", "ttscale.records.bank"])
def test_checker_sees_imports(module):
    # The walk finds real edges (guards against a checker that passes because it sees nothing).
    graph = _graph()
    assert "ttscale.errors" in graph[module]
