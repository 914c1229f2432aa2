"""The package graph points down: no import cycle between modules, no arrow against the layers.

Layers (docs/architecture.md): ``robot`` at the bottom; ``sim`` and ``firmware_bridge`` on it
(neither imports the other); ``policies`` on ``sim``; ``launch`` above all. Every ``.py`` file
under the five top-level folders is parsed with :mod:`ast`; an import counts wherever it
is written (module level, inside a function: a lazy import is still an arrow), and so does a
string literal given to ``importlib.import_module`` (an f-string counts by its constant
prefix). A failure names the offending import as ``file:line``.

An import under ``if TYPE_CHECKING:`` never runs: it counts for the layering (a type named
from above is still an upward arrow) but not for cycles, where it cannot close an import
loop (set :data:`CYCLES_INCLUDE_TYPE_CHECKING` to count it there too).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("robot", "sim", "policies", "firmware_bridge", "launch")

#: What each top-level package may import besides itself.
ALLOWED: dict[str, frozenset[str]] = {
    "robot": frozenset(),
    "firmware_bridge": frozenset({"robot"}),
    "sim": frozenset({"robot"}),
    "policies": frozenset({"robot", "sim"}),
    "launch": frozenset({"robot", "sim", "policies", "firmware_bridge"}),
}

Edge = tuple[str, str, str, int]  # (importer module, imported module, file, line)

#: Count ``if TYPE_CHECKING:`` imports when looking for cycles (they always count for layers).
CYCLES_INCLUDE_TYPE_CHECKING = False


def module_name(path: Path, root: Path = ROOT) -> str:
    """``robot/spec.py`` -> ``karakuri.robot.spec``; a package's ``__init__`` -> its name."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["karakuri", *parts])


def discover(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the five packages: {dotted name: file}."""
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            if "__pycache__" not in path.parts:
                out[module_name(path, root)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The most specific known module ``name`` lies in (``a.b.Attr`` -> ``a.b``), or None."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _import_module_literal(node: ast.Call) -> str | None:
    """``importlib.import_module("karakuri.x")`` (or an f-string's constant prefix)."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if called != "import_module" or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values:
        head = arg.values[0]
        if isinstance(head, ast.Constant) and isinstance(head.value, str):
            return head.value.rstrip(".")
    return None


def _typing_only(tree: ast.Module) -> set[int]:
    """``id()`` of every node inside an ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", "")
            if name == "TYPE_CHECKING":
                out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path], root: Path = ROOT,
               runtime_only: bool = False) -> Iterator[Edge]:
    """Every arrow from module ``name`` to another known module, with its file and line.

    ``runtime_only`` leaves out imports under ``if TYPE_CHECKING:``.
    """
    is_pkg = path.name == "__init__.py"
    rel = str(path.relative_to(root))
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _typing_only(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                stem = ".".join([*base, *([node.module] if node.module else [])])
            else:
                stem = node.module or ""
            targets = [f"{stem}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call):
            literal = _import_module_literal(node)
            targets = [literal] if literal else []
        for target in targets:
            if not target.startswith("karakuri."):
                continue
            hit = _resolve(target, modules)
            if hit is not None and hit != name:
                yield name, hit, rel, node.lineno


def graph(modules: dict[str, Path], root: Path = ROOT, runtime_only: bool = False) -> list[Edge]:
    """All arrows between the given modules (``runtime_only``: not ``TYPE_CHECKING`` ones)."""
    return [e for name, path in modules.items()
            for e in imports_of(name, path, modules, root, runtime_only)]


def package_of(module: str) -> str:
    """``karakuri.sim.tasks.reach`` -> ``sim``."""
    return module.split(".")[1]


def layer_violations(edges: list[Edge]) -> list[str]:
    """``file:line: a imports b (x may import only ...)`` for every arrow against the layers."""
    out = []
    for src, dst, file, line in edges:
        a, b = package_of(src), package_of(dst)
        if a != b and b not in ALLOWED[a]:
            allowed = sorted(ALLOWED[a]) or ["nothing above it"]
            out.append(f"{file}:{line}: {src} imports {dst} ({a}/ may import only "
                       f"{', '.join(allowed)})")
    return sorted(out)


def cycles(edges: list[Edge]) -> list[list[Edge]]:
    """One cycle (as its arrows) per strongly connected component of more than one module."""
    succ: dict[str, list[Edge]] = {}
    for e in edges:
        succ.setdefault(e[0], []).append(e)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan; the graph has a few hundred nodes
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for _, w, _, _ in succ.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(succ):
        if v not in index:
            visit(v)
    return [_one_cycle(sorted(c)[0], c, succ) for c in comps]


def _one_cycle(start: str, comp: set[str], succ: dict[str, list[Edge]]) -> list[Edge]:
    """A shortest path of arrows inside ``comp`` from ``start`` back to itself (BFS)."""
    prev: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for e in succ.get(v, []):
                w = e[1]
                if w not in comp or w in prev:
                    continue
                prev[w] = e
                if w == start:
                    path = [e]
                    while path[0][0] != start:
                        path.insert(0, prev[path[0][0]])
                    return path
                nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover


def _describe(cycle: list[Edge]) -> str:
    names = " -> ".join([cycle[0][0], *(e[1] for e in cycle)])
    where = "; ".join(f"{f}:{ln} imports {dst}" for _, dst, f, ln in cycle)
    return f"{names}  ({where})"


def test_no_import_cycle_between_modules():
    found = cycles(graph(discover(), runtime_only=not CYCLES_INCLUDE_TYPE_CHECKING))
    assert not found, "import cycles (lazy imports count):\n" + "\n".join(map(_describe, found))


def test_every_import_points_down_the_layers():
    bad = layer_violations(graph(discover()))
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_the_walker_sees_lazy_relative_and_importlib_imports(tmp_path):
    """The checker itself: a lazy import, a relative one and import_module all count."""
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "robot" / "a.py").write_text(
        "def f():\n    from karakuri.sim import b\n    return b\n")
    (tmp_path / "sim" / "b.py").write_text("from . import c\n")
    (tmp_path / "sim" / "c.py").write_text(
        "import importlib\nimportlib.import_module('karakuri.robot.a')\n")
    (tmp_path / "launch" / "d.py").write_text(
        "import importlib\nm = 'x'\nimportlib.import_module(f'karakuri.sim.{m}')\n")
    (tmp_path / "sim" / "e.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from karakuri.launch import d\n")
    edges = graph(discover(tmp_path), tmp_path)
    assert {(s, d) for s, d, _, _ in edges} == {
        ("karakuri.robot.a", "karakuri.sim.b"), ("karakuri.sim.b", "karakuri.sim.c"),
        ("karakuri.sim.c", "karakuri.robot.a"), ("karakuri.launch.d", "karakuri.sim"),
        ("karakuri.sim.e", "karakuri.launch.d")}
    assert layer_violations(edges) == [
        "robot/a.py:2: karakuri.robot.a imports karakuri.sim.b (robot/ may import only "
        "nothing above it)",
        "sim/e.py:3: karakuri.sim.e imports karakuri.launch.d (sim/ may import only robot)"]
    runtime = graph(discover(tmp_path), tmp_path, runtime_only=True)
    assert set(edges) - set(runtime) == {("karakuri.sim.e", "karakuri.launch.d", "sim/e.py", 3)}
    (cycle,) = cycles(edges)
    assert [e[0] for e in cycle] == ["karakuri.robot.a", "karakuri.sim.b", "karakuri.sim.c"]
    assert "sim/c.py:2 imports karakuri.robot.a" in _describe(cycle)
