"""Component boundaries, read from the source: no import cycles (late imports and TYPE_CHECKING ones count too,
since they only hide a cycle), and no component reaching into another one it must not know.

The module names come from pyproject's package-dir mapping, so `runtime/x.py` is `openscore.runtime.x`.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# component -> the components it may import (besides itself and the shared `openscore` top package)
ALLOWED = {
    "openscore": set(),
    "openscore.accelerators": set(),
    "openscore.runtime": {"openscore.accelerators"},
    "openscore.router": set(),  # replicas are `openscore serve` processes, never imported code
    "openscore.images": set(),  # builds and pushes images: imports no other component
}


def modules() -> dict[str, Path]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        package_dir = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    found: dict[str, Path] = {}
    for pkg, folder in package_dir.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            found[pkg if path.stem == "__init__" else f"{pkg}.{path.stem}"] = path
    return found


def component(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and ".".join(parts[:2]) in ALLOWED else "openscore"


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The openscore modules `module` imports anywhere in its file."""
    is_package = path.stem == "__init__"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in known:  # `from openscore.runtime import metrics` is the module metrics
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    # a package's __init__ is imported with each of its modules: only its own imports are edges
    return {m: {d for d in imports(m, p, known) if not m.startswith(d + ".")} for m, p in mods.items()}


def test_no_import_cycles(graph):
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append([*stack[stack.index(d):], d])
            elif d not in state:
                visit(d, [*stack, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_components_import_only_what_they_may(graph):
    wrong = sorted(f"{m} imports {d}" for m, deps in graph.items() for d in deps
                   if component(d) not in {component(m), "openscore"} | ALLOWED[component(m)])
    assert not wrong, wrong
    shared = sorted(f"{m} imports {d}" for m, deps in graph.items() if component(m) == "openscore"
                    for d in deps if component(d) != "openscore")
    assert not shared, f"the shared top package must not import components: {shared}"


def test_the_graph_sees_real_imports(graph):
    """Guards the two tests above against a parser that finds nothing."""
    assert "openscore.runtime.data_plane" in graph["openscore.runtime.web_server"]
    assert "openscore.http_server" in graph["openscore.router.server"]
    assert "openscore.accelerators.devices" in graph["openscore.accelerators.cli"]  # a relative import
