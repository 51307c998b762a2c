"""The layer rules of docs/architecture.md, read from the source (lazy imports inside functions included):
who may import whom, no import loops, no private names reached from outside the package, and the size
limits that keep modules readable (no function over 60 lines, no class over 250)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sage_backend", "training", "blender_addon")
# package -> top-level modules it must never import (docs/architecture.md, "Layers")
FORBIDDEN = {
    "sage_backend": {"bpy", "training", "blender_addon"},
    "training": {"bpy", "blender_addon"},
    "blender_addon": {"torch", "sage_backend", "training"},
}
MAX_FUNCTION_LINES, MAX_CLASS_LINES = 60, 250


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(*roots: str) -> dict[str, Path]:
    return {module_name(p): p for root in roots for p in sorted((ROOT / root).rglob("*.py"))}


def imported_names(name: str, path: Path) -> set[str]:
    """Every absolute dotted name `path` imports, relative imports resolved (`from . import x` gives pkg.x)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports, leaving out its own packages (a submodule that imports
    `from . import sibling` runs its package's __init__, which is not a dependency on the package's contents)."""
    graph = {}
    for name, path in modules.items():
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = {m for m in imported_names(name, path) if m in modules and m != name and m not in parents}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_layers_import_only_downward(package: str) -> None:
    offences = [f"{name} imports {m}" for name, path in sources(package).items()
                for m in imported_names(name, path) if m.split(".")[0] in FORBIDDEN[package]]
    assert offences == []


def test_no_import_loops() -> None:
    assert cycles(import_graph(sources(*PACKAGES))) == []


def test_the_cycle_finder_finds_a_loop() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_benchmarks_and_tests_use_public_names_of_the_package() -> None:
    offences = []
    for name, path in sources("benchmarks", "tests").items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PACKAGES:
                offences += [f"{name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert offences == []


def test_functions_and_classes_stay_short() -> None:
    long = []
    for name, path in sources(*PACKAGES, "benchmarks").items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.end_lineno - node.lineno + 1 > limit:
                long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines (limit {limit})")
    assert long == []
