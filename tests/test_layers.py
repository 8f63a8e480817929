"""The import contract of docs/architecture.md, checked on the source tree.

import-linter (the contracts in pyproject.toml) says which package may import
which; these tests add what it does not check: no cycle between any two
modules, and no import hidden inside a function (a deferred import is how a
cycle or an upward import hides). `.ci/run` also runs `lint-imports` itself.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import grimp
import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "synack"

# Modules over this many lines are split by concern (docs/architecture.md).
MAX_LINES = 800


def _modules() -> list[pathlib.Path]:
    return sorted(SRC.rglob("*.py"))


def test_import_linter_contracts_hold() -> None:
    exe = pathlib.Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("lint-imports not installed (the dev extra installs import-linter)")
    root = SRC.parents[1]
    out = subprocess.run(
        [str(exe), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "BROKEN" not in out.stdout
    assert out.stdout.count("KEPT") >= 2


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles_between_modules() -> None:
    graph = grimp.build_graph("synack")
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle() -> None:
    # The check above must be able to fail: a graph with a -> b -> a.
    graph = grimp.ImportGraph()
    for name in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(name)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.a")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert _cycles(graph) == [["pkg.a", "pkg.b"]]


def _deferred_synack_imports(path: pathlib.Path) -> list[str]:
    return _deferred_synack_imports_at(path, SRC)


def _deferred_synack_imports_at(path: pathlib.Path, base: pathlib.Path) -> list[str]:
    """``import synack...`` / ``from synack...`` statements inside a def."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.ImportFrom) and node.level:
                names = ["(relative)"]
            for name in names:
                if name == "synack" or name.startswith("synack.") or name == "(relative)":
                    found.append(f"{path.relative_to(base)}:{node.lineno} {name}")
    return found


def test_no_synack_import_inside_a_function() -> None:
    # The one exception is the top layer: a command imports its machinery when
    # it runs (start-up time of `synack stack serve`, `synack trace`), and
    # nothing sits above cli/ for such an import to reach upward to.
    hidden = [
        hit for p in _modules() if p.parent.name != "cli" for hit in _deferred_synack_imports(p)
    ]
    assert hidden == []


def test_deferred_import_finder_finds_one(tmp_path: pathlib.Path) -> None:
    mod = tmp_path / "m.py"
    mod.write_text("import os\n\ndef f():\n    from synack.stack import host\n    return host\n")
    assert [h.split(" ")[1] for h in _deferred_synack_imports_at(mod, tmp_path)] == ["synack.stack"]


def test_every_module_says_what_it_is_and_its_layer() -> None:
    missing = []
    for path in _modules():
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if not doc.strip():
            missing.append(f"{path.relative_to(SRC)}: no docstring")
        elif "Layer:" not in doc:
            missing.append(f"{path.relative_to(SRC)}: no 'Layer:' line")
    assert missing == []


def test_modules_stay_small() -> None:
    big = {
        str(p.relative_to(SRC)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert big == {}
