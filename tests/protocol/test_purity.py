"""The sans-I/O rule is a folder rule: nothing in ``lomond/protocol/`` does I/O or keeps time.

Two checks, one per way a rule can break:

* **What each module says.** Every module of the folder (found by walking it, so a
  new one is checked without a list to update) is parsed, and an import of
  ``socket``, ``ssl``, ``select``, ``selectors``, ``threading`` or ``time`` anywhere in
  it (at the top, in a function, under ``TYPE_CHECKING``) fails the test. The protocol
  gets its clock for event timestamps injected.
* **What importing it loads.** Each module is imported in a fresh interpreter, and
  ``sys.modules`` is inspected: nothing it imports, however indirectly (the public
  data modules such as ``lomond.events`` included), may load the networking or
  threading modules. ``time`` cannot be checked this way: the interpreter loads it
  at start-up.

The probe starts the interpreter with ``-S`` (``site`` may import ``threading`` for
``.pth`` files) and puts a bare package object in place of ``lomond``, so that
``lomond/__init__.py`` (which imports the socket-owning shell) does not run.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "lomond"
PROTOCOL_DIR = PACKAGE_DIR / "protocol"

FORBIDDEN = ["socket", "ssl", "select", "selectors", "threading", "time"]
# ``time`` is loaded by the interpreter itself: only the static check can see it.
FORBIDDEN_LOADED = [name for name in FORBIDDEN if name != "time"]

PROTOCOL_MODULES = sorted(
    "lomond.protocol" + ("" if path.stem == "__init__" else f".{path.stem}")
    for path in PROTOCOL_DIR.glob("*.py")
)

PROBE = """
import json, sys, types
forbidden = {forbidden!r}
baseline = sorted(name for name in forbidden if name in sys.modules)
package = types.ModuleType("lomond")
package.__path__ = [{package_dir!r}]
sys.modules["lomond"] = package
__import__({module!r})
loaded = sorted(name for name in forbidden if name in sys.modules)
print(json.dumps({{"baseline": baseline, "loaded": loaded}}))
"""


def imported_names(path: Path) -> set[str]:
    """The top-level names of every module ``path`` imports, wherever the import is."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names


def imported_after(module: str) -> dict[str, list[str]]:
    script = PROBE.format(forbidden=FORBIDDEN_LOADED, package_dir=str(PACKAGE_DIR), module=module)
    result = subprocess.run(
        [sys.executable, "-S", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, list[str]] = json.loads(result.stdout)
    return report


def test_the_folder_is_walked() -> None:
    assert {"lomond.protocol.client", "lomond.protocol.frames"} <= set(PROTOCOL_MODULES)


@pytest.mark.parametrize("path", sorted(PROTOCOL_DIR.glob("*.py")), ids=lambda path: path.stem)
def test_no_module_of_the_folder_imports_io_threads_or_time(path: Path) -> None:
    found = imported_names(path) & set(FORBIDDEN)
    assert not found, f"lomond/protocol/{path.name} imports {sorted(found)}"


@pytest.mark.parametrize("module", PROTOCOL_MODULES)
def test_importing_a_module_of_the_folder_loads_no_io_or_threads(module: str) -> None:
    report = imported_after(module)
    assert report["baseline"] == [], "the interpreter itself preloads these; the test is void"
    assert report["loaded"] == [], f"{module} pulls in {report['loaded']}"


def test_the_static_check_sees_imports_anywhere(tmp_path: Path) -> None:
    source = tmp_path / "example.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import ssl\n"
        "def later():\n    import time\n    from socket import socket\n"
    )
    assert {"ssl", "time", "socket"} <= imported_names(source)


def test_the_probe_detects_a_forbidden_import() -> None:
    # The probe itself must be able to fail.
    assert {"socket", "threading"} <= set(imported_after("socketserver")["loaded"])
