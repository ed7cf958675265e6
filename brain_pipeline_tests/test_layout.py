"""The project's shape: short functions, no import cycles, a core free of Dagster."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "brain_pipeline"
MAX_FUNCTION_LINES = 80


@functools.cache  # parsed once for the session, not once per parametrized test
def _modules() -> dict[str, ast.Module]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = ast.parse(path.read_text(), filename=str(path))
    return modules


def _imports(tree: ast.Module) -> set[str]:
    """Every module named by an import anywhere in the file (function bodies included)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(tree) & set(modules) - {name} for name, tree in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target, [*path, target])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_no_import_cycle_in_the_package() -> None:
    graph = import_graph()
    assert "brain_pipeline.core.data.dedup" in graph["brain_pipeline.defs.ingestion"]
    assert find_cycle(graph) is None, find_cycle(graph)


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("name", sorted(_modules()))
def test_no_function_is_longer_than_a_screen(name: str) -> None:
    tree = _modules()[name]
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{name}: {long}"


def test_the_core_does_not_import_dagster() -> None:
    offenders = [
        name
        for name, tree in _modules().items()
        if name.startswith("brain_pipeline.core")
        and any(imported.split(".")[0] == "dagster" for imported in _imports(tree))
    ]
    assert offenders == []


def test_benchmarks_and_experiments_do_not_import_the_dagster_layer() -> None:
    scripts = [*ROOT.glob("benchmarks/*.py"), *ROOT.glob("experiments/*.py")]
    assert scripts
    offenders = [
        path.name
        for path in scripts
        if any(m.startswith("brain_pipeline.defs") for m in _imports(ast.parse(path.read_text())))
    ]
    assert offenders == []
