"""The import graph of ``proxy/`` points one way (issue 11, item 4).

Walks every module under ``proxy/`` with ``ast`` and collects its ``proxy.*`` imports, wherever they are
written: at module level, inside functions (lazy imports) and under ``if TYPE_CHECKING:``. Imports under
TYPE_CHECKING count: a type-only arrow is still an arrow a reader has to follow, and it is the first step
of a runtime one. Rules:

- the lower layers (``proxy.http``, ``proxy.cache``, ``proxy.origin``, ``proxy.edge``, ``proxy.functions``,
  ``proxy.observability``, ``proxy.settings``) never import the upper ones (``proxy.pipeline``,
  ``proxy.server``, ``proxy.admin``, ``proxy.app``);
- ``proxy.messages`` (requests, responses, verdicts, the guard input) imports only leaf modules: modules
  that import nothing in the project themselves;
- there is no import cycle among modules (the failure names the cycle's path).
"""

from __future__ import annotations

import ast
from pathlib import Path

import proxy

ROOT = Path(proxy.__file__).resolve().parent
LOWER = ("http", "cache", "origin", "edge", "functions", "observability", "settings")
UPPER = ("proxy.pipeline", "proxy.server", "proxy.admin", "proxy.app")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def import_graph() -> dict[str, set[str]]:
    """Each module of ``proxy`` → the ``proxy`` modules it imports (``from pkg import name`` counts as
    ``pkg.name`` when that is a module, else as ``pkg``)."""
    files = {_module_name(path): path for path in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node)
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    targets.add(candidate if candidate in files else base)
        graph[module] = {t for t in targets if t in files and t != module}
    return graph


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_lower_layers_never_import_the_upper_ones() -> None:
    graph = import_graph()
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if any(_in(module, f"proxy.{layer}") for layer in LOWER)
        for target in targets
        if any(_in(target, upper) for upper in UPPER)
    )
    assert not wrong, "imports pointing up:\n" + "\n".join(wrong)


def test_messages_import_only_leaf_modules() -> None:
    graph = import_graph()
    assert "proxy.messages" in graph, "EdgeRequest/EdgeResponse/Verdict/GuardInput live in proxy.messages"
    not_leaves = sorted(
        f"{target} (imports {sorted(graph[target])})" for target in graph["proxy.messages"] if graph[target]
    )
    assert not not_leaves, "proxy.messages imports modules that are not leaves: " + ", ".join(not_leaves)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found is not None:
                    return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found is not None:
                return found
    return None


def test_no_import_cycle() -> None:
    cycle = _cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle or ())


def test_the_cycle_finder_finds_a_cycle_and_its_path() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
