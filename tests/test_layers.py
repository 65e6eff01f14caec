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
