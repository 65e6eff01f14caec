"""The library reads in small units: no function or method in ``ontology``, ``kg``, ``gnn`` or
``transfer`` is longer than 80 lines (its docstring and decorators included)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ["ontology", "kg", "gnn", "transfer"]
MAX_LINES = 80


def long_functions(path: Path, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """(name, lines) of every function in the file longer than ``limit`` lines, nested ones too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            lines = node.end_lineno - start + 1
            if lines > limit:
                found.append((node.name, lines))
    return found


def test_no_library_function_is_over_80_lines() -> None:
    too_long = [
        f"{path.relative_to(ROOT)}:{name} ({lines} lines)"
        for package in LIBRARY
        for path in sorted((ROOT / package).rglob("*.py"))
        for name, lines in long_functions(path)
    ]
    assert too_long == []


def test_the_count_sees_a_long_method(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    body = "".join(f"        x = {i}\n" for i in range(80))
    module.write_text(f"class C:\n    @staticmethod\n    def f():\n{body}\n    def g():\n        pass\n")
    assert long_functions(module) == [("f", 82)]
