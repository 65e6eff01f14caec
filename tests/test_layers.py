"""The layers ``ontology`` <- ``kg`` <- ``gnn`` <- ``transfer``: no module imports a higher layer, not
even inside a function (every ``import`` statement in the file is read, wherever it stands)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["ontology", "kg", "gnn", "transfer"]


def imported_packages(path: Path) -> set[tuple[int, str]]:
    """(line, top-level package) of every absolute import in the file, at any depth."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {(node.lineno, alias.name.split(".")[0]) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.lineno, node.module.split(".")[0]))
    return found


def test_no_module_imports_a_higher_layer() -> None:
    wrong = []
    for rank, layer in enumerate(LAYERS):
        higher = set(LAYERS[rank + 1 :])
        for path in sorted((ROOT / layer).rglob("*.py")):
            for line, package in imported_packages(path):
                if package in higher:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {package}")
    assert wrong == []


def test_the_walk_sees_function_level_imports(tmp_path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from transfer.loop import plan\n    import gnn.scores\n")
    assert imported_packages(module) == {(2, "transfer"), (3, "gnn")}


def module_imports(root: Path = ROOT) -> dict[str, set[str]]:
    """Every library module's imports of other library modules, at any depth (function-level ones too),
    leaving out those under ``if TYPE_CHECKING:`` (they never run)."""
    modules: dict[str, Path] = {}
    for layer in LAYERS:
        for path in (root / layer).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {known(alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, *([node.module] if node.module else [])])
                # ``from pkg import sub`` imports ``pkg.sub``; ``from mod import name`` imports ``mod``
                targets |= {known(f"{base}.{alias.name}") for alias in node.names}
        graph[name] = {t for t in targets if t and t != name}
    return graph


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except what an ``if TYPE_CHECKING:`` block holds."""
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        if (
            isinstance(node, ast.If)
            and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING"
        ):
            stack.extend(node.orelse)
            continue
        found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (each holds an import cycle)."""
    import networkx as nx

    g = nx.DiGraph([(a, b) for a, targets in graph.items() for b in targets])
    return sorted(sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1)


def test_no_import_cycles_even_through_function_level_imports() -> None:
    """A function-level import must not hide a cycle: ``kg.store`` does not open its backends (that is
    ``kg.connect``), ``transfer.data.croissant`` does not call back into ``load_dataset``, and
    ``transfer.zoo.loading`` and the ccexam records do not import each other."""
    assert import_cycles(module_imports()) == []


def test_the_cycle_walk_sees_a_function_level_cycle(tmp_path: Path) -> None:
    (tmp_path / "kg").mkdir()
    for layer in LAYERS:
        (tmp_path / layer).mkdir(exist_ok=True)
    (tmp_path / "kg" / "a.py").write_text("from kg.b import f\n")
    (tmp_path / "kg" / "b.py").write_text("def f():\n    from kg import a\n")
    (tmp_path / "kg" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from kg import a\n"
    )
    graph = module_imports(tmp_path)
    assert graph["kg.b"] == {"kg.a"} and graph["kg.c"] == set()
    assert import_cycles(graph) == [["kg.a", "kg.b"]]
