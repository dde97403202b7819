"""No import cycles between the parts of ``ssm_cli``: its subpackages (``cli``, ``train``,
``layers``, ``data``, ``results``) and its top-level modules (``config``, ``model``, ``errors``...)
are the nodes; every import in their source is an edge, function-local ones included (a cycle
hidden in a function is still a cycle between the parts)."""
from __future__ import annotations

import ast
from pathlib import Path

import ssm_cli

ROOT = Path(ssm_cli.__file__).resolve().parent


def part_of(module: str) -> str | None:
    """The node of a dotted module name: ``ssm_cli.train.run`` -> ``train``; None outside ssm_cli."""
    parts = module.split(".")
    if parts[0] != "ssm_cli" or len(parts) < 2:
        return None
    return parts[1] if (ROOT / parts[1]).is_dir() or (ROOT / f"{parts[1]}.py").exists() else None


def imported_modules(path: Path, module: str) -> list[str]:
    """Every module that ``path`` (the module named ``module``) imports, relative imports resolved;
    for ``from a import b`` both ``a`` and ``a.b`` (b may be a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            out += [source] + [f"{source}.{a.name}" for a in node.names]
    return out


def import_graph() -> dict[str, dict[str, str]]:
    """node -> {imported node: a file making that import}."""
    graph: dict[str, dict[str, str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        src = part_of(module)
        if src is None:  # ssm_cli/__init__.py
            continue
        for target in imported_modules(path, module):
            dst = part_of(target)
            if dst is not None and dst != src:
                graph.setdefault(src, {}).setdefault(dst, str(path.relative_to(ROOT.parent)))
    return graph


def find_cycle(graph: dict[str, dict[str, str]]) -> list[str] | None:
    """One cycle as its nodes [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in graph.get(n, {}):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        path.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": ""}, "b": {"c": ""}, "d": {"a": ""}}) is None


def test_the_graph_sees_function_local_and_relative_imports():
    graph = import_graph()
    assert "model" in graph["config"]  # config.validate imports ssm_cli.model inside the function
    assert "errors" in graph["layers"]  # e.g. ``from ..errors import UserError`` or absolute


def test_no_import_cycle_between_the_parts_of_ssm_cli():
    graph = import_graph()
    cycle = find_cycle(graph)
    if cycle:
        where = "; ".join(f"{a} -> {b} ({graph[a][b]})" for a, b in zip(cycle, cycle[1:]))
        raise AssertionError(f"import cycle between parts of ssm_cli: {where}")
