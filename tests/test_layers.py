"""The house keeps its design: imports go down the layers, and none goes in a circle.

Every import of every module of lomond is read from its source (at the top, in a
function, under ``TYPE_CHECKING``: each is a dependency), and checked against the
rules of ``docs/internals.rst``:

* ``protocol/`` uses only itself and the public data modules (events, errors,
  status, response, constants);
* ``network/`` uses only itself, errors, response, the logger and ``protocol.url``
  (addresses and credentials);
* ``loop/`` never uses the façade (websocket, persist) nor the command line;
* ``testing/`` (the test server) uses only itself, the protocol and the data
  modules: it is a server, and shares no code with the client's shell;
* nothing but the command line and ``python -m lomond`` uses ``cli/``;
* no module reaches itself through its imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lomond"

DATA_MODULES = {"lomond.events", "lomond.errors", "lomond.status", "lomond.response"}
DATA_MODULES |= {"lomond.constants", "lomond._version"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def exists(module: str) -> bool:
    base = PACKAGE.parent / module.replace(".", "/")
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def imports_of(path: Path) -> set[str]:
    """The lomond modules ``path`` imports, anywhere in it."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("lomond"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("lomond"):
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if exists(submodule) else target)
    found.discard(name)
    return found


GRAPH = {module_name(path): imports_of(path) for path in PACKAGE.rglob("*.py")}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else module


def test_the_graph_is_read() -> None:
    assert "lomond.protocol.frames" in GRAPH["lomond.protocol.client"]
    assert "lomond.loop.session" in GRAPH["lomond.websocket"]
    assert len(GRAPH) > 40


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if layer(m) == "protocol"))
def test_the_protocol_uses_only_itself_and_the_data_modules(module: str) -> None:
    outside = {m for m in GRAPH[module] if layer(m) != "protocol" and m not in DATA_MODULES}
    assert not outside, f"{module} imports {sorted(outside)}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if layer(m) == "network"))
def test_the_network_knows_nothing_of_websockets(module: str) -> None:
    # protocol.url: addresses and credentials, as URLs and headers write them.
    allowed = {"lomond.errors", "lomond.response", "lomond._logging", "lomond.protocol.url"}
    outside = {m for m in GRAPH[module] if layer(m) != "network" and m not in allowed}
    assert not outside, f"{module} imports {sorted(outside)}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if layer(m) == "loop"))
def test_the_loop_never_uses_the_facade(module: str) -> None:
    forbidden = {"lomond.websocket", "lomond.persist", "lomond", "lomond.session"}
    used = {m for m in GRAPH[module] if m in forbidden or layer(m) == "cli"}
    assert not used, f"{module} imports {sorted(used)}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if layer(m) == "testing"))
def test_the_test_server_is_built_on_the_protocol(module: str) -> None:
    allowed = DATA_MODULES | {"lomond.events"}
    outside = {
        m for m in GRAPH[module] if layer(m) not in ("testing", "protocol") and m not in allowed
    }
    assert not outside, f"{module} imports {sorted(outside)}"


def test_only_the_command_line_uses_it() -> None:
    users = {
        module
        for module, imported in GRAPH.items()
        if layer(module) != "cli" and any(layer(m) == "cli" for m in imported)
    }
    assert users == {"lomond.__main__"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a path from a module back to itself, or ``None``."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return None
        for imported in sorted(graph.get(module, ())):
            cycle = visit(imported, path + [module])
            if cycle:
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        if cycle:
            return cycle
    return None


def test_no_import_cycles() -> None:
    assert find_cycle(GRAPH) is None, " → ".join(find_cycle(GRAPH) or [])


def test_a_cycle_would_be_found() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
