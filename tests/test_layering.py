"""The data path's import rules: one direction, and apply free of clocks and randomness."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def test_cluster_never_imports_node():
    for path in (ROOT / "cluster").glob("*.py"):
        assert "node" not in _top(_imports(path)), path.name


def test_only_raft_imports_pysyncobj():
    for package in ("cluster", "node"):
        for path in (ROOT / package).glob("*.py"):
            if path.name != "raft.py":
                assert "pysyncobj" not in _top(_imports(path)), path


def test_parser_is_sans_io():
    for name in ("parser.py", "ops.py", "errors.py", "subjects.py", "wire.py"):
        assert not _top(_imports(ROOT / "node" / name)) & {"asyncio", "uvloop", "socket"}, name


def test_apply_has_no_clock_randomness_or_threads():
    forbidden = {"time", "random", "asyncio", "threading", "os", "uuid", "datetime", "pysyncobj", "secrets"}
    for name in ("state.py", "groups.py", "commands.py", "effects.py", "keys.py", "records.py"):
        assert not _top(_imports(ROOT / "cluster" / name)) & forbidden, name


def test_every_module_starts_with_a_docstring():
    for package in ("cluster", "node"):
        for path in (ROOT / package).glob("*.py"):
            if path.name == "__init__.py":
                continue
            assert ast.get_docstring(ast.parse(path.read_text())), f"{package}/{path.name} has no docstring"
