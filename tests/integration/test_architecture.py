"""The architecture holds: the layer contracts in pyproject.toml, no import cycle anywhere in
the package, and no module importing another module's private names."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from tests.support.paths import ROOT

PACKAGE = ROOT / "uar_stream"


def test_layer_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "import-linter is part of the dev extra"
    r = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "broken" in r.stdout and "0 broken" in r.stdout


def _cycles(graph, modules):
    """Every module on an import cycle (Tarjan's strongly connected components, size > 1)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v) & modules:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for m in sorted(modules):
        if m not in index:
            visit(m)
    return out


def test_no_import_cycles():
    graph = grimp.build_graph("uar_stream", cache_dir=None)
    # The root package re-exports the public API; nothing inside imports it.
    modules = graph.modules - {"uar_stream"}
    assert not graph.find_modules_that_directly_import("uar_stream") & modules
    assert _cycles(graph, modules) == []


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _private_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    me = _module_name(path)
    found, modules = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("uar_stream"):
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__") and node.module != me:
                    found.append(f"{path.name}:{node.lineno} imports {node.module}.{a.name}")
                modules[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("uar_stream"):
                    modules[(a.asname or a.name).split(".")[0]] = a.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in modules and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            found.append(f"{path.name}:{node.lineno} uses {modules[node.value.id]}.{node.attr}")
    return found


@pytest.mark.parametrize("where", ["uar_stream", "tools", "examples"])
def test_no_module_uses_another_modules_private_names(where):
    found = [u for p in sorted((ROOT / where).rglob("*.py")) for u in _private_uses(p)]
    assert found == []


def test_the_private_name_check_can_fail(tmp_path):
    bad = PACKAGE / "pipeline" / "_probe_for_the_test.py"
    try:
        bad.write_text("from uar_stream.pipeline.stream import _RateMeter\n")
        assert _private_uses(bad) == [
            "_probe_for_the_test.py:1 imports uar_stream.pipeline.stream._RateMeter"]
    finally:
        bad.unlink()
