"""The sans-I/O core imports no networking and no threads: the core knows no sockets.

Each core module is imported in a fresh interpreter, then ``sys.modules`` is inspected.
Two things would hide the answer, so the subprocess avoids both:

* ``site`` runs ``.pth`` files, which may import ``threading`` before our code runs:
  the interpreter starts with ``-S``, and the baseline is checked to be clean.
* ``import lomond.frames`` first runs ``lomond/__init__.py``, which imports the
  socket-owning shell (``WebSocket``): a bare package object stands in for
  ``lomond`` so that only the module under test and what *it* imports are loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "lomond"

CORE_MODULES = [
    "frames",
    "mask",
    "handshake",
    "response",
    "compression",
    "protocol",
    "events",
    "status",
    "errors",
    "constants",
    "deadline",
    "messages",
    "timers",
    "trace",
    "url",
]

FORBIDDEN = ["socket", "ssl", "select", "selectors", "threading"]

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


def imported_after(module: str) -> dict[str, list[str]]:
    script = PROBE.format(forbidden=FORBIDDEN, package_dir=str(PACKAGE_DIR), module=module)
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


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_no_io_or_threads(module: str) -> None:
    report = imported_after(f"lomond.{module}")
    assert report["baseline"] == [], "the interpreter itself preloads these; the test is void"
    assert report["loaded"] == [], f"lomond.{module} pulls in {report['loaded']}"


def test_probe_detects_a_forbidden_import() -> None:
    # The probe itself must be able to fail.
    assert {"socket", "threading"} <= set(imported_after("socketserver")["loaded"])
