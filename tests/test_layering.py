"""The package's shape: layers import only downward, no import loops, imports at the top of a module
(except optional dependencies), and no module over ~400 lines unless its docstring says why.

The layers, lowest first (a module may import its own layer and the ones below, never one above):

    0  microgpt (the version), errors, atomic, console, safe_io, hardware, cells
    1  autograd
    2  nn
    3  data, config
    4  storage
    5  chat
    6  train
    7  commands, evaluation, serve, bench, tui, __main__   (the interfaces)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "microgpt"
LAYERS: dict[str, int] = {
    "microgpt": 0, "errors": 0, "atomic": 0, "console": 0, "safe_io": 0, "hardware": 0, "cells": 0, "autograd": 1, "nn": 2, "data": 3,
    "config": 3, "storage": 4, "chat": 5, "train": 6, "commands": 7, "evaluation": 7,
    "serve": 7, "bench": 7, "tui": 7, "__main__": 7,
}
# may be missing (readline on Windows): imported where they are used
OPTIONAL = {"torch", "threadpoolctl", "starlette", "uvicorn", "safetensors", "readline", "pwd"}
LONG_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in MODULES.items()}


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else parts[0]]


def imported(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    """(microgpt module, node) for every import of ours; `from microgpt.nn import GPT` counts microgpt.nn."""
    found = []
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name in MODULES:
                found.append((name, node))
    return found


def needs_optional(module: str) -> bool:
    """A module of ours that imports an optional dependency at its top (e.g. bench.torch_gpt needs torch)."""
    top = [n for n in TREES[module].body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return any(isinstance(n, ast.Import) and {a.name.split(".")[0] for a in n.names} & OPTIONAL
               or isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] in OPTIONAL for n in top)


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, tree in TREES.items():
        for target, _ in imported(tree):
            if target != name and not name.startswith(target + "."):  # a package's own __init__ is not an arrow
                graph[name].add(target)
    return graph


def test_every_module_has_a_layer() -> None:
    for name in MODULES:
        assert layer(name) >= 0, name


def test_no_module_imports_a_layer_above_it() -> None:
    upward = [f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)})"
              for name, targets in edges().items() for target in targets if layer(target) > layer(name)]
    assert not upward, "\n".join(upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop as a path a -> b -> ... -> a, or None; iterative depth-first search."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for root, targets in graph.items():
        if root in state:
            continue
        path, stack = [root], [iter(sorted(targets))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_there_are_no_import_loops() -> None:
    cycle = find_cycle(edges())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_loop() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_inside_functions_are_only_for_optional_dependencies() -> None:
    hidden = []
    for name, tree in TREES.items():
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    targets = {a.name for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    targets = {node.module}
                else:
                    continue
                if not all(t.split(".")[0] in OPTIONAL or t in MODULES and needs_optional(t) for t in targets):
                    roots = {t.split(".")[0] for t in targets}
                    hidden.append(f"{MODULES[name].relative_to(PACKAGE.parent)}:{node.lineno} imports {roots}")
    assert not hidden, "\n".join(hidden)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_long_modules_say_why(name: str) -> None:
    lines = MODULES[name].read_text(encoding="utf-8").count("\n")
    if lines > LONG_LINES:
        docstring = ast.get_docstring(TREES[name]) or ""
        assert "long because" in docstring, f"{name} has {lines} lines and its docstring does not say why"
