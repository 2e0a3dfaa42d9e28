"""The house rules that a reader of docs/architecture.md relies on, checked on the source.

- no import cycle among our modules, counting imports inside functions too (TYPE_CHECKING
  blocks excepted: they never run);
- no function-level import of one of our own modules (those only ever hide a cycle);
  optional third-party dependencies (OpenTelemetry, Django, ...) may be imported lazily.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

PACKAGE = ROOT / "src" / "delayed"
# Packages whose __init__ loads, on first attribute use, modules that need an optional dependency
# (Django): importing the package must not import Django, which `delayed work` does in every process.
LAZY_FOR_OPTIONAL_DEPENDENCY = {"delayed.contrib.django", "delayed.web"}  # Django; Starlette and Jinja2


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _in_type_checking(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for inner in ast.walk(node))
    return skipped


def _imported(
    module: str, path: Path, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]
) -> set[str]:
    """Our modules an import statement in `module` loads."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if node.level:
        base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        target = ".".join([*base, *([node.module] if node.module else [])])
    else:
        target = node.module or ""
    submodules = {f"{target}.{alias.name}" for alias in node.names} & modules.keys()
    direct = {target} if target in modules and len(submodules) < len(node.names) else set()
    return (submodules | direct) - {module}


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    nested: list[str] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        skipped = _in_type_checking(tree)
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom) or id(node) in skipped:
                continue
            if _in_main_block(tree, node):
                continue  # a script's entry: run, never imported by another module
            ours = _imported(name, path, node, modules)
            graph[name] |= ours
            if ours and id(node) not in top_level and name not in LAZY_FOR_OPTIONAL_DEPENDENCY:
                nested.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {sorted(ours)}")
    return graph, nested


def _in_main_block(tree: ast.Module, node: ast.AST) -> bool:
    """Inside `if __name__ == "__main__":` at module level (run as a script, never imported)."""
    return any(
        isinstance(statement, ast.If)
        and "__main__" in ast.unparse(statement.test)
        and any(inner is node for inner in ast.walk(statement))
        for statement in tree.body
    )


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    graph, _ = _graph()
    assert _cycles(graph) == []


def test_no_function_level_imports_of_our_own_modules() -> None:
    _, nested = _graph()
    assert nested == []


def test_the_checker_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_merge_conflict_markers_are_left() -> None:
    """A merge left half-resolved must fail the fast tier, not a CI script at run time."""
    markers = ("<" * 7 + " ", "=" * 7 + "\n", ">" * 7 + " ")
    places = [ROOT / name for name in ("src", "tests", "docs", "bench", "conf", "systemd", "examples", ".ci")]
    files = [ROOT / "README.md", ROOT / "pyproject.toml"]
    for place in places:
        files += [p for p in place.rglob("*") if p.is_file() and p.suffix not in {".png", ".json", ".pyc"}]
    found = []
    for path in files:
        if ".venv" in path.parts or "results" in path.parts:
            continue
        text = path.read_text(errors="replace")
        found += [
            f"{path.relative_to(ROOT)}:{n}"
            for n, line in enumerate(text.splitlines(True), 1)
            if line.startswith(markers)
        ]
    assert found == []
