"""The architecture, held: what may import what (docs/architecture.md draws it).

Read from the code with `ast`, never by running it (except the start-up probe, which runs
a fresh interpreter and reads ``sys.modules``):

- `tcplife.core` imports only the standard library and itself, at any depth (module
  level, ``if TYPE_CHECKING:``, inside functions, ``importlib.import_module("...")``);
- nothing outside `tcplife/core/` (the other packages, tests, benchmarks, examples) takes
  an underscore name from a core module, by import or as ``module._name``;
- ``import tcplife.core.tracker`` loads none of the heavy packages;
- the modules of tcplife import one another without a circle, counting module-level,
  ``TYPE_CHECKING`` and function-level imports (the few function-level ones that would
  close a circle are listed in `ALLOWED_LAZY`, each with its reason), and the packages
  import one way only, as `MAY_IMPORT` says;
- no module of tcplife is over `MAX_LINES` lines.

The first tests check the checks: each finds a planted fault in a few lines of source.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "tcplife"
#: the other places whose Python must keep out of the core's private names
OUTSIDE = [REPO / "tests", REPO / "benchmarks", REPO / "examples"]
MAX_LINES = 700
#: what a reader of the core must not pay for
HEAVY = ("numpy", "pandas", "rich", "click", "dpkt", "pyarrow")

ROOT = ""  # the package `tcplife` itself (tcplife/__init__.py), as a layer name

#: package -> the packages its modules may import (besides their own package). Read it
#: bottom to top: core is the sans-IO floor; capture (bytes -> segments), peers (the
#: Zeek/Suricata/Wireshark replays, observers of the tracker) and detect (anomalies from
#: finished connections) stand on it side by side, none importing another; output builds
#: tables from events and renders them; the engines drive capture -> core -> detect ->
#: output and hand back `Result`s that hold the tables; the command line is on top. The
#: root package is the public facade (PEP 562: it imports nothing when loaded, see
#: `test_the_package_root_imports_nothing_when_loaded`); samples is data.
#: the compiled engine's module (built from engine/*.c: no Python source to read)
COMPILED = "tcplife._engine"
MAY_IMPORT: dict[str, set[str]] = {
    "core": set(),
    "version": set(),
    "_engine": set(),  # the compiled engine (engine/*.c): imports no Python module
    "native": {"core", "_engine"},  # its loader and generated tables
    "capture": {"core", "native", "_engine"},
    "peers": {"core", "native", "_engine"},
    "detect": {"core", "native", "_engine"},
    "samples": set(),
    "output": {"core", "capture", "peers", "detect", "version", "native", "_engine"},
    "engines": {"core", "capture", "peers", "detect", "output", "version", "native",
                "_engine"},
    "cli": {"core", "capture", "peers", "detect", "output", "engines", "samples", "version",
            "native", ROOT},
    ROOT: {"core", "capture", "peers", "detect", "output", "engines", "cli", "samples",
           "version"},
    "__main__": {"cli"},
}

#: (importing module, imported module) -> why this function-level import is left out of
#: the import graph. Only imports that would otherwise close a circle or cross the layers
#: upward need to be here: none today (the version constant lives in `tcplife.version`,
#: which imports nothing).
ALLOWED_LAZY: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    """One imported name (or module), where and how it is imported."""

    module: str  #: the importing module, dotted
    source: str  #: the module named in the statement (``from SOURCE import name``)
    name: str | None  #: the name taken from it (None for ``import SOURCE``)
    kind: str  #: "module" (module level), "typing" (if TYPE_CHECKING) or "lazy" (in a function)
    line: int
    path: Path


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


class _Finder(ast.NodeVisitor):
    """Every import of one module, with its kind."""

    def __init__(self, module: str, is_package: bool, path: Path) -> None:
        self.module, self.path = module, path
        self.base = module.split(".") if is_package else module.split(".")[:-1]
        self.kind = "module"
        self.found: list[Import] = []

    def _within(self, kind: str, nodes: Iterable[ast.AST]) -> None:
        outer = self.kind
        if outer != "lazy":  # a function inside TYPE_CHECKING is still lazy, and so on
            self.kind = kind
        for node in nodes:
            self.visit(node)
        self.kind = outer

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._within("lazy", [*node.decorator_list, *node.body])

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._within("lazy", [*node.decorator_list, *node.body])

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._within("lazy", [node.body])

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self._within("typing", node.body)
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def _add(self, source: str, name: str | None, node: ast.AST) -> None:
        self.found.append(Import(self.module, source, name, self.kind,
                                 getattr(node, "lineno", 0), self.path))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, None, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.base[:len(self.base) - (node.level - 1)]
            source = ".".join([*base, *([node.module] if node.module else [])])
        else:
            source = node.module or ""
        for alias in node.names:
            self._add(source, alias.name, node)

    def visit_Call(self, node: ast.Call) -> None:
        """``importlib.import_module("x")`` and ``__import__("x")`` with a literal name."""
        func = node.func
        called = (func.attr if isinstance(func, ast.Attribute)
                  else func.id if isinstance(func, ast.Name) else "")
        if (called in ("import_module", "__import__") and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)):
            self._add(node.args[0].value, None, node)
        self.generic_visit(node)


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, *, is_package: bool = False,
               path: Path = Path("<source>")) -> list[Import]:
    finder = _Finder(module, is_package, path)
    finder.visit(ast.parse(source))
    return finder.found


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Every module under ``root`` (a package folder), dotted name -> file."""
    return {module_name(p): p for p in sorted(root.rglob("*.py"))}


def all_imports(mods: dict[str, Path]) -> list[Import]:
    out: list[Import] = []
    for name, path in mods.items():
        out += imports_of(path.read_text(encoding="utf-8"), name,
                          is_package=path.name == "__init__.py", path=path)
    return out


def target(imp: Import, known: Iterable[str]) -> str | None:
    """The module of ``known`` that ``imp`` loads (``from a.b import c`` loads a.b.c if
    that is a module, else a.b), or None if it names none of them."""
    known = set(known)
    dotted = f"{imp.source}.{imp.name}" if imp.name and imp.name != "*" else imp.source
    while dotted and dotted not in known:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def layer(module: str) -> str:
    """The package a tcplife module belongs to (ROOT for `tcplife` itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _where(imp: Import) -> str:
    return f"{imp.path.relative_to(REPO) if imp.path.is_absolute() else imp.path}:{imp.line}"


# --- the rules, as functions of the imports (so a test can plant a fault) ------------


def core_outside_imports(imps: Iterable[Import]) -> list[str]:
    """Imports in `tcplife.core` of anything but the standard library and the core."""
    bad = []
    for imp in imps:
        top = imp.source.split(".")[0]
        inside = imp.source == "tcplife.core" or imp.source.startswith("tcplife.core.")
        if not inside and top not in sys.stdlib_module_names:
            bad.append(f"{_where(imp)}: {imp.module} imports {imp.source} ({imp.kind})")
    return bad


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def private_core_uses(source: str, where: str, core_modules: set[str]) -> list[str]:
    """``from tcplife.core.x import _y``, ``import tcplife.core._x`` and ``x._y`` where
    ``x`` is bound to a core module, in one file."""
    tree = ast.parse(source)
    bad: list[str] = []
    bound: dict[str, str] = {}  # local name -> core module it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            if node.module != "tcplife" and node.module.split(".")[:2] != ["tcplife", "core"]:
                continue
            for alias in node.names:
                dotted = f"{node.module}.{alias.name}"
                if node.module != "tcplife" and _is_private(alias.name):
                    bad.append(f"{where}:{node.lineno}: from {node.module} import "
                               f"{alias.name}")
                if dotted in core_modules:
                    bound[alias.asname or alias.name] = dotted
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[:2] != ["tcplife", "core"]:
                    continue
                if any(_is_private(part) for part in alias.name.split(".")):
                    bad.append(f"{where}:{node.lineno}: import {alias.name}")
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    bound["tcplife"] = "tcplife"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            dotted = _dotted(node.value)
            if dotted is None:
                continue
            head, _, rest = dotted.partition(".")
            if head not in bound:
                continue
            full = bound[head] + (f".{rest}" if rest else "")
            if full in core_modules:
                bad.append(f"{where}:{node.lineno}: {dotted}.{node.attr}")
    return bad


def graph(imps: Iterable[Import], known: Iterable[str],
          allowed: dict[tuple[str, str], str] | None = None) -> dict[str, dict[str, Import]]:
    """module -> {module it imports: the first such import}, over the modules ``known``;
    function-level imports listed in ``allowed`` are left out."""
    known = set(known)
    allowed = ALLOWED_LAZY if allowed is None else allowed
    edges: dict[str, dict[str, Import]] = {m: {} for m in known}
    for imp in imps:
        to = target(imp, known)
        if to is None or to == imp.module:
            continue
        if imp.kind == "lazy" and (imp.module, to) in allowed:
            continue
        edges[imp.module].setdefault(to, imp)
    return edges


def circles(edges: dict[str, dict[str, Import]]) -> list[list[str]]:
    """The import circles: each strongly connected set of modules (Tarjan), as one closed
    path through it, ``[a, b, ..., a]``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth: the number of modules, ~100
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(_closed_path(sorted(group), edges))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _closed_path(group: list[str], edges: dict[str, dict[str, Import]]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start, members = group[0], set(group)
    came: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges.get(v, {})):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(came[path[-1]])
                    return [*reversed(path), start]
                if w in members and w not in came:
                    came[w] = v
                    nxt.append(w)
        frontier = nxt
    return group  # pragma: no cover - a strongly connected group always has a cycle


def describe(path: list[str], edges: dict[str, dict[str, Import]]) -> str:
    steps = [f"{a} -> {b} ({_where(edges[a][b])}, {edges[a][b].kind})"
             for a, b in zip(path, path[1:], strict=False)]
    return "; ".join(steps)


def upward(edges: dict[str, dict[str, Import]]) -> list[str]:
    """Imports that cross the layers against `MAY_IMPORT`."""
    bad = []
    for a, outs in sorted(edges.items()):
        for b, imp in sorted(outs.items()):
            la, lb = layer(a), layer(b)
            if la != lb and lb not in MAY_IMPORT.get(la, set()):
                bad.append(f"{_where(imp)}: {a} ({la or 'tcplife'}) imports {b} "
                           f"({lb or 'tcplife'}, {imp.kind})")
    return bad


def python_files(roots: Iterable[Path]) -> Iterator[Path]:
    for root in roots:
        if root.is_dir():
            yield from sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


# --- the checks can fail ---------------------------------------------------------------

PLANTED = '''
from __future__ import annotations
import heapq
from typing import TYPE_CHECKING
from .seq import seq_lt
if TYPE_CHECKING:
    import pandas as pd
    def f():
        import click
def absorb():
    import numpy as np
    importlib.import_module("rich")
class T:
    def m(self):
        from tcplife.output import frames
'''


def test_the_import_finder_sees_every_kind_of_import() -> None:
    found = imports_of(PLANTED, "tcplife.core.tracker")
    got = {(i.source, i.name, i.kind) for i in found}
    assert ("tcplife.core.seq", "seq_lt", "module") in got  # relative, resolved
    assert ("pandas", None, "typing") in got
    assert ("click", None, "lazy") in got  # a function under TYPE_CHECKING
    assert ("numpy", None, "lazy") in got
    assert ("rich", None, "lazy") in got  # importlib.import_module("rich")
    assert ("tcplife.output", "frames", "lazy") in got  # in a method
    outside = core_outside_imports(found)
    assert [line.split(" imports ")[1] for line in outside] == [
        "pandas (typing)", "click (lazy)", "numpy (lazy)", "rich (lazy)",
        "tcplife.output (lazy)"]


def test_the_private_name_check_sees_imports_and_attributes() -> None:
    core = {"tcplife.core", "tcplife.core.tracker", "tcplife.core.timers"}
    source = '''
import tcplife.core.tracker
import tcplife.core.timers as tm
from tcplife.core import tracker as tr
from tcplife.core.tracker import Tracker, _COMPACT_MIN, __doc__
from tcplife.core import timers
from tcplife import __version__
x = tcplife.core.tracker._advance
y = tm._push, tr._flows, timers._heap, timers.Timers, Tracker._out
'''
    bad = private_core_uses(source, "t.py", core)
    assert [b.split(": ", 1)[1] for b in bad] == [
        "from tcplife.core.tracker import _COMPACT_MIN", "tcplife.core.tracker._advance",
        "tm._push", "tr._flows", "timers._heap"]  # a class's own names are not followed


def test_the_circle_and_layer_checks_see_a_planted_fault() -> None:
    def imp(a: str, b: str, kind: str = "module") -> Import:
        return Import(a, b, None, kind, 1, Path("x.py"))

    known = {"tcplife.core.a", "tcplife.output.plot", "tcplife.engines.analysis",
             "tcplife.capture.b"}
    imps = [imp("tcplife.engines.analysis", "tcplife.output.plot", "lazy"),
            imp("tcplife.output.plot", "tcplife.engines.analysis", "typing"),
            imp("tcplife.capture.b", "tcplife.core.a")]
    edges = graph(imps, known, allowed={})
    assert circles(edges) == [["tcplife.engines.analysis", "tcplife.output.plot",
                               "tcplife.engines.analysis"]]
    assert [b.split(": ", 1)[1] for b in upward(edges)] == [
        "tcplife.output.plot (output) imports tcplife.engines.analysis (engines, typing)"]
    # an allowed lazy import is no edge
    allowed = {("tcplife.engines.analysis", "tcplife.output.plot"): "planted"}
    assert circles(graph(imps, known, allowed=allowed)) == []


# --- the architecture ------------------------------------------------------------------


def test_the_core_imports_only_the_standard_library_and_itself() -> None:
    core = modules(PACKAGE / "core")
    assert "tcplife.core.tracker" in core
    bad = core_outside_imports(all_imports(core))
    assert bad == [], "tcplife.core reaches outside the standard library:\n" + "\n".join(bad)


def test_nothing_outside_the_core_takes_its_private_names() -> None:
    core = set(modules(PACKAGE / "core"))
    bad: list[str] = []
    files = [p for p in python_files([PACKAGE, *OUTSIDE])
             if (PACKAGE / "core") not in p.parents]
    assert len(files) > 50
    for path in files:
        bad += private_core_uses(path.read_text(encoding="utf-8"),
                                 str(path.relative_to(REPO)), core)
    assert bad == [], "private names of tcplife.core used outside it:\n" + "\n".join(bad)


def test_importing_the_tracker_loads_no_heavy_package() -> None:
    probe = ("import sys, json, tcplife.core.tracker as t\n"
             f"print(json.dumps([t.__file__, sorted({{m.split('.')[0] for m in sys.modules}} "
             f"& set({list(HEAVY)!r}))]))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, check=True)
    where, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(where).resolve().is_relative_to(PACKAGE)  # this checkout's tracker
    assert loaded == []


def test_the_package_root_imports_nothing_when_loaded() -> None:
    """``import tcplife`` stays cheap: the root names its modules for type checkers only
    and loads them on first use (PEP 562); it loads only `tcplife.version`, which itself
    imports nothing."""
    found = imports_of((PACKAGE / "__init__.py").read_text(encoding="utf-8"), "tcplife",
                       is_package=True)
    loaded = [f"line {i.line}: {i.source}" for i in found
              if i.source.startswith("tcplife") and i.kind == "module"
              and i.source != "tcplife.version"]
    assert loaded == []
    version = imports_of((PACKAGE / "version.py").read_text(encoding="utf-8"),
                         "tcplife.version")
    assert [i for i in version if i.source != "__future__"] == []


def test_no_import_circle() -> None:
    mods = modules()
    # the compiled engine is a module of its own (it imports nothing), not the package root
    edges = graph(all_imports(mods), [*mods, COMPILED])
    found = circles(edges)
    assert found == [], "import circles:\n" + "\n".join(describe(c, edges) for c in found)


def test_the_layers_import_one_way() -> None:
    mods = modules()
    assert {layer(m) for m in mods} <= set(MAY_IMPORT), "a package missing from MAY_IMPORT"
    bad = upward(graph(all_imports(mods), [*mods, COMPILED]))
    assert bad == [], "imports against the layers:\n" + "\n".join(bad)


def test_the_allowed_lazy_imports_are_still_there() -> None:
    """A stale entry would hide a future import: each one still names a function-level
    import."""
    mods = modules()
    lazy = {(i.module, target(i, mods)) for i in all_imports(mods) if i.kind == "lazy"}
    assert set(ALLOWED_LAZY) <= lazy


def test_no_module_is_over_the_limit() -> None:
    sizes = {str(p.relative_to(REPO)): len(p.read_text(encoding="utf-8").splitlines())
             for p in python_files([PACKAGE])}
    over = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert over == {}, f"modules over {MAX_LINES} lines: {over}"
