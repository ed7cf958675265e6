"""The project's shape: short functions, no import cycles, a core free of Dagster, layers
that only import downwards, benchmarks that use the package as any user would."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "brain_pipeline"
MAX_FUNCTION_LINES = 80
BENCHMARKS = sorted(ROOT.glob("benchmarks/*.py"))
# The core's folders, lowest first: a module may import its own folder, a lower one, or the
# core's foundation modules (core/*.py), never a higher folder. The foundation imports no
# folder at all.
CORE_LAYERS = ("imaging", "data", "model", "explain", "serving")
# The package's rooms, and what each may import (besides itself and the core).
ROOMS_MAY_IMPORT = {
    "brain_pipeline.core": set(),
    "brain_pipeline.synthetic": set(),
    "brain_pipeline.defs": set(),
    "brain_pipeline.definitions": {"brain_pipeline.defs"},
    "brain_pipeline.apps": {
        "brain_pipeline.defs",
        "brain_pipeline.definitions",
        "brain_pipeline.synthetic",
    },
}


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
    long = long_functions(_modules()[name])
    assert not long, f"{name}: {long}"


def long_functions(tree: ast.Module) -> list[str]:
    return [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_the_core_does_not_import_dagster() -> None:
    offenders = [
        name
        for name, tree in _modules().items()
        if name.startswith("brain_pipeline.core")
        and any(imported.split(".")[0] == "dagster" for imported in _imports(tree))
    ]
    assert offenders == []


def test_benchmarks_and_experiments_do_not_import_the_dagster_layer() -> None:
    """They use the core, or the entry points (`brain_pipeline.apps`) as a user does; the
    assets and the code location are the pipeline's, not theirs."""
    scripts = [*BENCHMARKS, *ROOT.glob("experiments/*.py")]
    assert scripts
    dagster_layer = ("brain_pipeline.defs", "brain_pipeline.definitions")
    offenders = [
        path.name
        for path in scripts
        if any(m.startswith(dagster_layer) for m in _imports(ast.parse(path.read_text())))
    ]
    assert offenders == []


def core_rank(module: str) -> int:
    """0 for the core's foundation modules (core/*.py), else 1 + the folder's layer."""
    parts = module.split(".")
    if len(parts) == 3 or parts[2] not in CORE_LAYERS:
        return 0
    return 1 + CORE_LAYERS.index(parts[2])


def upward_core_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{source} -> {target}"
        for source, targets in graph.items()
        if source.startswith("brain_pipeline.core.")
        for target in targets
        if target.startswith("brain_pipeline.core.") and core_rank(target) > core_rank(source)
    )


def test_no_core_folder_imports_a_higher_one() -> None:
    graph = import_graph()
    assert core_rank("brain_pipeline.core.artifacts") == 0
    assert core_rank("brain_pipeline.core.serving.guard") == 5
    assert upward_core_imports(graph) == []


def test_the_layer_rule_catches_an_arrow_back_up() -> None:
    graph = {
        "brain_pipeline.core.imaging.preprocessing": {"brain_pipeline.core.data.manifest"},
        "brain_pipeline.core.artifacts": {"brain_pipeline.core.imaging.filters"},
        "brain_pipeline.core.model.training": {"brain_pipeline.core.imaging.preprocessing"},
    }
    assert upward_core_imports(graph) == [
        "brain_pipeline.core.artifacts -> brain_pipeline.core.imaging.filters",
        "brain_pipeline.core.imaging.preprocessing -> brain_pipeline.core.data.manifest",
    ]


def _room(module: str) -> str | None:
    return next((room for room in ROOMS_MAY_IMPORT if module.startswith(room)), None)


def test_each_room_imports_only_the_rooms_below_it() -> None:
    graph = import_graph()
    assert {_room(name) for name in graph} - {None, *ROOMS_MAY_IMPORT} == set()
    offenders = sorted(
        f"{source} -> {target}"
        for source, targets in graph.items()
        for target in targets
        if (room := _room(source))
        and (other := _room(target)) not in {room, "brain_pipeline.core", None}
        and other not in ROOMS_MAY_IMPORT[room]
    )
    assert offenders == []


def test_the_package_root_holds_only_the_code_location() -> None:
    top_level = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert top_level == ["__init__.py", "definitions.py"]


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda path: path.name)
def test_no_benchmark_function_is_longer_than_a_screen(path: Path) -> None:
    long = long_functions(ast.parse(path.read_text()))
    assert not long, f"{path.name}: {long}"


def test_benchmarks_import_the_package_not_each_other() -> None:
    """No `sys.path` games: a benchmark imports the installed package (and the libraries),
    never another script, so each one runs from anywhere as any user would run it."""
    local = {path.stem for path in BENCHMARKS}
    offenders = []
    for path in BENCHMARKS:
        text = path.read_text()
        imported = {name.split(".")[0] for name in _imports(ast.parse(text))}
        if imported & local or "sys.path" in text:
            offenders.append(path.name)
    assert offenders == []


def _artifact_names() -> dict[str, str]:
    from brain_pipeline.core import artifact_names

    return {
        value: name
        for name, value in vars(artifact_names).items()
        if name.isupper() and isinstance(value, str)
    }


def test_artifact_file_and_folder_names_are_spelt_only_in_artifact_names() -> None:
    names = _artifact_names()
    assert "splits.parquet" in names and "tensor_cache" in names
    sources = {**{path.name: path for path in BENCHMARKS}, **_package_files()}
    offenders = sorted(
        f"{where}: {value!r} (artifact_names.{names[value]})"
        for where, path in sources.items()
        if not where.endswith("artifact_names.py")
        for value in _file_like_strings(ast.parse(path.read_text()))
        if value in names
    )
    assert offenders == []


def _file_like_strings(tree: ast.Module) -> list[str]:
    """String constants, less the keys of dicts and subscripts (a record's field names)."""
    keys = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys.update(id(key) for key in node.keys if key is not None)
        elif isinstance(node, ast.Subscript):
            keys.add(id(node.slice))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in keys
    ]


def _package_files() -> dict[str, Path]:
    return {str(path.relative_to(ROOT)): path for path in sorted(PACKAGE.rglob("*.py"))}


def test_a_spelt_out_file_name_is_found_but_a_record_field_is_not() -> None:
    tree = ast.parse('path = folder / "splits.parquet"\nrow = {"neighbours": 5}\nrow["x.json"]')
    assert _file_like_strings(tree) == ["splits.parquet"]
