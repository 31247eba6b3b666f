"""The code's layers, read from its imports (`ast`, nothing is imported or run).

From the bottom up:

1. Foundation: the modules directly in `app/` that know no domain: errors and their shape
   (`errors`), time (`clock`, `times`), money and prices (`money`, `pricing`), the database
   (`config`, `db`, `tables`), and HTTP plumbing shared by every domain (`bodies`, `pagination`,
   `idempotency`, `exports`, `openapi`, `observability`, `embedded`). A new module in `app/` is
   foundation unless it is named in ABOVE: the strictest place, until it is decided otherwise.
2. Domains: one package each (`app/catalog/`, `app/keys/`, `app/ledger/`, `app/usage/`,
   `app/estimates/`, `app/reports/`). A domain may use another (usage prices with the catalog and
   posts to the ledger; every domain reads the request's principal from keys) as long as no cycle
   forms; inside a domain, a repository never imports its service (records live in schemas.py).
3. Above the domains: what reads or wires several of them: the application factory and its
   dependencies (`asgi`, `dependencies`), the `billing` command (`cli`), and `reconcile`, which
   checks usage, ledger and catalog together.

Lower layers never import higher ones, not even inside a function. Module-level imports form no
cycle (an import inside a function is how the CLI loads the app on demand, and is allowed to point
anywhere a module-level one may)."""

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"
ABOVE = {"app.asgi", "app.cli", "app.dependencies", "app.reconcile"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(APP.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in APP.rglob("*.py")}


def target(name: str) -> str:
    """The app module an import names (`from app.usage import service` names app.usage.service)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports(tree: ast.Module, module_level: bool) -> set[str]:
    """The app modules imported; with module_level, only those run on import (an `if` block counts)."""
    found: set[str] = set()
    nodes = ast.walk(tree) if not module_level else iter_module_level(tree.body)
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {target(alias.name) for alias in node.names if alias.name.split(".")[0] == "app"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "app":
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else target(node.module))
    return found


def iter_module_level(body: list[ast.stmt]):
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.Try)):
            yield from iter_module_level(node.body + node.orelse + getattr(node, "finalbody", []))
            for handler in getattr(node, "handlers", []):
                yield from iter_module_level(handler.body)


TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}
MODULE_LEVEL = {name: imports(tree, module_level=True) - {name} for name, tree in TREES.items()}
ALL = {name: imports(tree, module_level=False) - {name} for name, tree in TREES.items()}


def layer(name: str) -> int:
    if name in ABOVE:
        return 3
    if name == "app" or (name.count(".") == 1 and MODULES[name].name != "__init__.py"):
        return 1
    return 2


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_is_read():
    # A walker that found nothing would pass every rule below.
    assert "app.usage.endpoints" in MODULE_LEVEL["app.asgi"]
    assert "app.usage.schemas" in MODULE_LEVEL["app.usage.repository"]
    assert "app.keys.auth" in ALL["app.cli"] - MODULE_LEVEL["app.cli"]  # loaded on demand
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    assert cycles(MODULE_LEVEL) == []


def test_no_upward_import():
    upward = sorted(
        (name, imported) for name, found in ALL.items() for imported in found if layer(imported) > layer(name)
    )
    assert upward == []


def test_a_repository_never_imports_its_service():
    wrong = sorted(
        (name, imported)
        for name, found in ALL.items()
        if name.endswith(".repository")
        for imported in found
        if imported.endswith(".service")
    )
    assert wrong == []
