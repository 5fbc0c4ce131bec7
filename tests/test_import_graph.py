"""The module import graph of src/imm has no cycle: schema at the bottom, stages above it, preflight and the
loop on top. Read with `ast`, imports inside functions included (they hide a cycle from Python, not from here)."""

import ast
from pathlib import Path

import imm

SRC = Path(imm.__file__).resolve().parent


def module_name(path: Path, root: Path = SRC) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.AST, package: str, modules: set[str]) -> set[str]:
    """The modules of imm one import statement loads: `from P import a` is P.a where that is a module, else P."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & modules
    if not isinstance(node, ast.ImportFrom):
        return set()
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
    found = {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names}
    return found & modules


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """module -> the imm modules it imports anywhere in its file."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[name] = set().union(*(imported(node, package, set(files)) for node in ast.walk(tree))) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle as [a, b, ..., a], or [] when the graph has none (depth-first search, three colours)."""
    state, stack = {}, []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_finder_sees_a_cycle_through_an_import_inside_a_function(tmp_path):
    """a imports b at the top, b imports a inside a function: the cycle a -> b -> a; c imports a only."""
    pkg = tmp_path / "imm"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from imm.b import g\n")
    (pkg / "b.py").write_text("def g():\n    from imm import a\n")
    (pkg / "c.py").write_text("import imm.a\n")
    graph = import_graph(pkg)
    assert graph["imm.a"] == {"imm.b"} and graph["imm.b"] == {"imm.a"} and graph["imm.c"] == {"imm.a"}
    assert find_cycle(graph) == ["imm.a", "imm.b", "imm.a"]
    assert find_cycle({"imm.a": {"imm.b"}, "imm.b": set(), "imm.c": {"imm.a"}}) == []


def test_src_imm_has_no_import_cycle():
    graph = import_graph()
    assert "imm.config" in graph and "imm.loop" in graph  # the graph is of the real package
    assert find_cycle(graph) == []
