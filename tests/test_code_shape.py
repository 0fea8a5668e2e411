"""Shape rules of the house (issue 11), checked on the source so that they hold as the code grows: functions a
reader can hold in their head, one precision table, one place that renames files."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "clipctl"
MAX_FUNCTION_LINES = 80


def _trees() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"))) for path in sorted(PACKAGE.rglob("*.py"))]


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """Functions outside the CLI longer than ``limit`` lines (decorators and docstring included)."""
    found = []
    for path, tree in _trees():
        if "cli" in path.relative_to(PACKAGE).parts[:1]:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    found.append(
                        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({length} lines)"
                    )
    return found


def _assignments_of(name: str) -> list[str]:
    found = []
    for path, tree in _trees():
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and any(
                isinstance(t, ast.Name) and t.id == name for t in targets
            ):
                found.append(str(path.relative_to(PACKAGE.parent)))
    return found


def _calls_of(module: str, functions: tuple[str, ...]) -> list[str]:
    found = []
    for path, tree in _trees():
        for node in ast.walk(tree):
            func = node.func if isinstance(node, ast.Call) else None
            if (
                isinstance(func, ast.Attribute)
                and func.attr in functions
                and isinstance(func.value, ast.Name)
                and func.value.id == module
            ):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def test_no_function_outside_the_cli_is_longer_than_80_lines():
    assert long_functions() == []


def test_the_precision_table_is_defined_once():
    assert _assignments_of("PRECISIONS") == ["clipctl/runtime/precision.py"]


def test_files_are_renamed_into_place_only_by_fileio():
    assert {p.split(":")[0] for p in _calls_of("os", ("replace", "rename"))} <= {"clipctl/fileio.py"}
