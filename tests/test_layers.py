"""The layers of DESIGN.md: imports point down. A lower layer never imports a job or the CLI, a job never
imports the CLI, and evaluation never imports training (training may use evaluation). Every import counts,
including the ones inside functions that keep start-up fast."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "clipctl"

# the lower layers: io, models, config, data, and what every layer shares
LOWER = (
    "clipctl.errors",
    "clipctl.constants",
    "clipctl._lazy",
    "clipctl.fileio",
    "clipctl.runtime",
    "clipctl.models",
    "clipctl.tokenizer",
    "clipctl.transforms",
    "clipctl.checkpoint",
    "clipctl.pickle_globals",
    "clipctl.download",
    "clipctl.config",
    "clipctl.data",
)
CLI = ("clipctl.cli", "clipctl.__main__")


def _module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "clipctl":  # from clipctl import train: names that are modules count as such
                found += [(node.lineno, _clipctl_attribute(alias.name)) for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.startswith("clipctl")]


def _clipctl_attribute(name: str) -> str:
    is_module = (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name / "__init__.py").is_file()
    return f"clipctl.{name}" if is_module else "clipctl"


def _within(name: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _is_job(name: str) -> bool:
    return name != "clipctl" and not _within(name, LOWER) and not _within(name, CLI)


def layer_violations(package: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        importer = _module_name(path, package)
        for line, imported in _imports(path):
            where = f"{path.relative_to(package.parent)}:{line} imports {imported}"
            if _within(importer, LOWER) and not _within(imported, LOWER) and imported != "clipctl":
                problems.append(f"{where} (a lower layer importing a job or the CLI)")
            elif _is_job(importer) and _within(imported, CLI):
                problems.append(f"{where} (a job importing the CLI)")
            elif _within(importer, "clipctl.eval") and _within(imported, "clipctl.train"):
                problems.append(f"{where} (evaluation importing training)")
    return problems


def test_imports_point_down():
    assert layer_violations() == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("models/bad.py", "def f():\n    from clipctl.train.trainer import Trainer\n", "a lower layer"),
        ("data/bad.py", "import clipctl.cli.console\n", "a lower layer"),
        ("embed/bad.py", "from clipctl.cli import console\n", "a job importing the CLI"),
        ("eval/bad.py", "from clipctl.train.data_csv import CsvItems\n", "evaluation importing training"),
    ],
)
def test_the_check_catches_each_kind_of_upward_import(tmp_path, module, source, expected):
    package = tmp_path / "clipctl"
    (package / module).parent.mkdir(parents=True)
    (package / module).write_text(source)
    problems = layer_violations(package)
    assert len(problems) == 1 and expected in problems[0]
