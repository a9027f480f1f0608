"""The relay's module structure: children never import the lesson, and no import cycle
(TYPE_CHECKING imports included: a cycle there is still two modules that know each other)."""

from __future__ import annotations

import ast
from pathlib import Path

import media_relay

PACKAGE = Path(media_relay.__file__).parent
LESSON_BUILDERS = {"peers", "negotiation", "relay"}


def imports() -> dict[str, set[str]]:
    """module -> the media_relay modules it imports (anywhere in it)."""
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found.update([node.module.split(".")[0]] if node.module
                             else [a.name for a in node.names])
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "media_relay."):
                found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found.update(a.name.split(".")[1] for a in node.names
                             if a.name.startswith("media_relay."))
        graph[path.stem] = found & modules - {path.stem}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_only_the_modules_that_build_lessons_import_lesson() -> None:
    graph = imports()
    assert {"grid", "stage", "subscriber", "publisher", "tapped", "uplink"} <= set(graph)
    assert {m for m, deps in graph.items() if "lesson" in deps} <= LESSON_BUILDERS


def test_no_import_cycle_in_media_relay() -> None:
    assert cycles(imports()) == []


def test_the_cycle_finder_finds_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
