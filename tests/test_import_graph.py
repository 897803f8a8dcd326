"""The package's import graph has no circle, counting imports inside functions.

A function-level import hides a circle from Python (the module is complete by the time the
function runs) but not from a reader: the two modules still depend on each other and cannot be
understood, tested or moved one without the other. Imports under `if TYPE_CHECKING:` are left
out: they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

from graphlib import CycleError, TopologicalSorter

PACKAGE = Path(__file__).resolve().parents[1] / "resnet_bench"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _runtime_imports(tree: ast.Module):
    """Every import statement that can run, with whether it sits inside a function."""
    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.orelse:
                    yield from walk(ast.Module(body=[sub], type_ignores=[]), in_function)
                continue
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                       ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, inner
            yield from walk(child, inner)
    yield from walk(tree, False)


def _targets(module: str, path: Path, node, mods) -> list[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            base = ".".join(package[:len(package) - node.level + 1] +
                            ([node.module] if node.module else []))
        else:
            base = node.module or ""
        # `from pkg import sub` imports the submodule; `from pkg import name` the package.
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
    out = []
    for name in names:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        if name and name != module:
            out.append(name)
    return out


def import_graph() -> tuple[dict[str, set[str]], int]:
    """Each module's package-internal imports, and how many import statements sit in functions."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    function_level = 0
    for module, path in mods.items():
        for node, in_function in _runtime_imports(ast.parse(path.read_text())):
            targets = _targets(module, path, node, mods)
            function_level += bool(targets) and in_function
            graph[module].update(targets)
    return graph, function_level


def circle(graph) -> list[str] | None:
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as e:
        return e.args[1]
    return None


def test_the_graph_sees_the_package_and_its_edges():
    graph, _ = import_graph()
    assert {"resnet_bench.cli", "resnet_bench.models.spec", "resnet_bench.train.loop"} <= set(graph)
    assert "resnet_bench.train.step" in graph["resnet_bench.train.loop"]


def test_no_import_circle_in_the_package():
    graph, _ = import_graph()
    found = circle(graph)
    assert found is None, "import circle: " + " -> ".join(found or [])


def test_the_detector_finds_a_circle_hidden_in_a_function(tmp_path, monkeypatch):
    package = tmp_path / "resnet_bench"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from resnet_bench.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from .. import a\n    return a\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", package)
    graph, function_level = import_graph()
    assert function_level == 1
    assert set(circle(graph)) == {"resnet_bench.a", "resnet_bench.sub.b"}


def test_infrastructure_imports_nothing_above_it():
    graph, _ = import_graph()
    infra = {m for m in graph if m.startswith("resnet_bench.infra")}
    assert infra and all(graph[m] <= infra for m in infra), {m: graph[m] - infra for m in infra}


def test_the_package_root_holds_the_contracts_and_the_command_line():
    root = {p.stem for p in PACKAGE.glob("*.py")}
    assert root == {"__init__", "cli", "record", "schema", "public_data"}
