"""The map of the code, kept: package directions, no import circles, small files, pure apply.

Imports are read from the source with `ast` (every `import` and `from ... import`,
also those under `if TYPE_CHECKING:` and inside functions), so a circle cannot hide
behind a type-checking guard or a late import. `from pkg import name` counts as an
import of `pkg.name` when that is a module of ours, else of `pkg`.

The directions (docs/architecture.md draws them): each package of ours may import
only the packages listed for it (and the standard library and third-party ones).
A new package gets a line here when it is made.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = ("cluster", "node", "harness", "benchmarks", "tests")
MAX_LINES = 600

# package -> the packages of ours it may import (a package may always import itself)
ALLOWED: dict[str, set[str]] = {
    "cluster": set(),
    "node.config": set(),
    "node.logs": set(),
    "node.auth": {"node.config"},
    "node.nats": {"node.config", "node.auth"},
    "node.mq9": {"node.nats", "node.config", "cluster"},
    "node.ops": {"node.nats", "node.mq9", "node.auth", "node.config", "cluster"},
    "node.app": {"node.nats", "node.mq9", "node.ops", "node.auth", "node.config", "node.logs", "cluster"},
    "node.cli": {"node.config", "node.auth", "node.app", "node.logs"},
    "node": set(),  # node/__init__.py
    "harness": set(),  # starts nodes as processes, never imports them
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    out = {}
    for top in OURS:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "node_modules" not in path.parts:
                out[_module_name(path)] = path
    return out


MODULES = _sources()


def _imports(path: Path) -> set[str]:
    """Every module this file imports (ours resolved to modules, others as written)."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                names.add(sub if sub in MODULES else node.module)
    return names


GRAPH = {name: {m for m in _imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def _package_of(module: str) -> str | None:
    """The longest ALLOWED key that is the module or a package containing it."""
    best = None
    for pkg in ALLOWED:
        if (module == pkg or module.startswith(pkg + ".")) and (best is None or len(pkg) > len(best)):
            best = pkg
    return best


def test_every_module_of_node_and_cluster_belongs_to_a_package_of_the_map():
    stray = [m for m in MODULES if m.split(".")[0] in ("node", "cluster", "harness") and _package_of(m) is None]
    assert not stray, f"give these a line in ALLOWED: {stray}"


def test_packages_import_only_downwards():
    wrong = []
    for module, imported in GRAPH.items():
        pkg = _package_of(module)
        if pkg is None:
            continue
        for target in imported:
            tpkg = _package_of(target)
            if tpkg is None or tpkg == pkg or target == "node" or module.startswith(tpkg + "."):
                continue
            if tpkg not in ALLOWED[pkg]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the map: " + ", ".join(sorted(wrong))


def test_no_import_circles():
    """Tarjan's strongly connected components over every module of ours."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_no_python_file_over_600_lines():
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    files = [ROOT / f for f in tracked] if tracked else list(MODULES.values())
    long = {str(f.relative_to(ROOT)): n for f in files if f.exists() and (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def _package_files(*packages: str) -> list[Path]:
    return [path for name, path in MODULES.items() if name.split(".")[0] in packages]


def test_only_raft_imports_pysyncobj():
    for path in _package_files("cluster", "node"):
        if path != ROOT / "cluster" / "raft.py":
            assert "pysyncobj" not in _top(_imports(path)), path


def test_the_nats_protocol_core_is_sans_io():
    for name in ("parser.py", "ops.py", "errors.py", "subjects.py", "wire.py"):
        assert not _top(_imports(ROOT / "node" / "nats" / name)) & {"asyncio", "uvloop", "socket"}, name


def test_apply_has_no_clock_randomness_or_threads():
    forbidden = {"time", "random", "asyncio", "threading", "os", "uuid", "datetime", "pysyncobj", "secrets"}
    for name in ("state.py", "groups.py", "commands.py", "effects.py", "keys.py", "records.py"):
        assert not _top(_imports(ROOT / "cluster" / name)) & forbidden, name


def test_every_module_starts_with_a_docstring():
    for path in _package_files("cluster", "node", "harness", "benchmarks"):
        assert ast.get_docstring(ast.parse(path.read_text())), f"{path.relative_to(ROOT)} has no docstring"
