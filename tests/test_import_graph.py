"""The packages have no import cycle (counting function-level, lazy imports too) and no layer imports a higher one.

Read from the source with ``ast``, nothing is imported: a cycle that only bites in one import order (config ->
sip -> config) fails here whatever order the other tests happen to import things in.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGES = ("monitor", "detectors", "speakers")
REPO = Path(__file__).resolve().parents[1]

# The data flow, lowest first: a module may import its own layer and those below, never one above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("monitor.types", "monitor.incident", "monitor.clock", "monitor.redact"),
    ("detectors", "speakers", "monitor.analyze", "monitor.ingest"),
    ("monitor.rules",),
    ("monitor.config",),
    ("monitor.store",),
    ("monitor.actions",),
    ("monitor.runtime",),
    ("monitor.cluster",),
    ("monitor.web",),
    ("monitor.engine", "monitor.evaluate", "monitor.cli", "monitor.__main__", "monitor"),
)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imported(node: ast.AST, module: str, known: set[str]) -> Iterator[str]:
    """Package modules an import statement loads; ``from speakers import g711`` loads the module ``g711``."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names if alias.name in known)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: resolve against this module's package
            package = module.split(".")[: -node.level] if module not in PACKAGES else [module]
            base = ".".join([*package, *([base] if base else [])])
        for alias in node.names:
            if f"{base}.{alias.name}" in known:
                yield f"{base}.{alias.name}"
            elif base in known:
                yield base


def layer(module: str) -> int:
    """Index of the module's layer (the longest matching prefix in LAYERS)."""
    best, index = -1, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, index = len(name), i
    assert index >= 0, f"{module} is in no layer: add it to LAYERS"
    return index


def import_graph() -> dict[str, set[str]]:
    """Module -> package modules it imports anywhere in its body."""
    modules = _modules()
    known = set(modules)
    return {
        name: {
            target
            for node in ast.walk(ast.parse(path.read_text(), str(path)))
            for target in _imported(node, name, known)
            if target != name
        }
        for name, path in modules.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_reports_the_loop() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle() -> None:
    graph = import_graph()
    assert {"speakers.config", "speakers.sip", "monitor.engine", "detectors"} <= set(graph)  # it read the packages
    assert "speakers.rtp" in graph["speakers"]  # lazy imports inside create_speaker are counted
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_layer_imports_a_higher_one() -> None:
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if layer(target) > layer(module)
    )
    assert upward == []


def test_shared_modules_import_no_backend() -> None:
    """Config, wire formats, auth and the seam are what backends share; none of them may lean on a backend."""
    backends = {f"speakers.{name}" for name in ("rtp", "sip", "http", "onvif", "local")}
    graph = import_graph()
    for shared in ("config", "rtp_wire", "digest", "sip_uri", "base", "deadline", "health", "audio", "g711"):
        assert not graph[f"speakers.{shared}"] & backends, (shared, graph[f"speakers.{shared}"] & backends)
