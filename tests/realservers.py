"""Real WebSocket servers for the interoperability tests, each in a process of its own.

Each context manager starts one server on 127.0.0.1, port 0, yields its
``ws://127.0.0.1:PORT/echo`` URL and stops it on exit. The Python servers run
``realserver_apps.py`` with the test's own interpreter; Node's ``ws`` runs
``node/server.js`` (install it with ``npm ci --prefix tests/node``). All of them
echo every message, close with CODE and REASON on the text ``close:CODE:REASON``,
and refuse a message over ``max_size`` bytes the way that server library does.

A process of its own per server keeps the test process free of the servers' event
loops, threads, warnings and imports, lets server and client use both cores, and
starts in a fraction of a second (0.1 to 0.3 s here). A server process also exits by
itself when the test process goes away (its standard input ends).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Iterator, Sequence

HERE = Path(__file__).resolve().parent
APPS = HERE / "realserver_apps.py"
NODE_DIR = HERE / "node"
NODE_SERVER = NODE_DIR / "server.js"

#: The default message size limit of the servers: a 1 MiB message passes.
MAX_SIZE = 2 * 1024 * 1024

#: Every server, by the name the tests use as their id.
SERVERS = (
    "uvicorn-wsproto",
    "uvicorn-websockets",
    "uvicorn-websockets-sansio",
    "aiohttp",
    "tornado",
    "node-ws",
)

START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0


class ServerFailed(RuntimeError):
    """A server process did not start, or died."""


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _uvicorn_has(module: str) -> bool:
    """Whether the installed uvicorn has ``uvicorn/protocols/websockets/MODULE.py``.

    Looked up on disk: importing uvicorn here would load it into the test process.
    """
    spec = importlib.util.find_spec("uvicorn")
    if spec is None or not spec.submodule_search_locations:
        return False
    return any(
        (Path(location) / "protocols" / "websockets" / f"{module}.py").is_file()
        for location in spec.submodule_search_locations
    )


def unavailable(name: str) -> str | None:
    """Why the server called ``name`` cannot run here, or ``None`` when it can."""
    if name == "node-ws":
        if shutil.which("node") is None:
            return "node is not installed"
        if not (NODE_DIR / "node_modules" / "ws").is_dir():
            return "the ws package is not installed: run `npm ci --prefix tests/node`"
        return None
    if name.startswith("uvicorn-"):
        if not _has_module("uvicorn"):
            return "uvicorn is not installed"
        needs = {
            "uvicorn-wsproto": ("wsproto", "wsproto_impl"),
            "uvicorn-websockets": ("websockets", "websockets_impl"),
            "uvicorn-websockets-sansio": ("websockets", "websockets_sansio_impl"),
        }[name]
        library, module = needs
        if not _has_module(library):
            return f"{library} is not installed"
        if not _uvicorn_has(module):
            return f"this uvicorn has no {name[len('uvicorn-') :]} implementation"
        return None
    if name in ("aiohttp", "tornado"):
        return None if _has_module(name) else f"{name} is not installed"
    raise ValueError(f"unknown server {name!r}")


def _version(distribution: str) -> tuple[int, ...]:
    try:
        text = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ()
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


#: Features some releases of a server lack, with the first release that has them.
SIZE_LIMIT = "size-limit"
EMPTY_MESSAGES = "empty-messages"
_FIXED_IN = {
    # uvicorn enforces ws_max_size with wsproto from 0.46 on; older releases accept
    # messages of any size.
    ("uvicorn-wsproto", SIZE_LIMIT): (
        "uvicorn",
        (0, 46),
        "does not enforce ws_max_size with wsproto",
    ),
    # uvicorn's websockets-sansio sends nothing for an empty message before 0.42.
    ("uvicorn-websockets-sansio", EMPTY_MESSAGES): (
        "uvicorn",
        (0, 42),
        "does not send empty messages with websockets-sansio",
    ),
}


def lacks(name: str, feature: str) -> str | None:
    """Why the installed release of server ``name`` lacks ``feature``, or ``None``.

    The last releases of uvicorn for Python 3.8 and 3.9 predate both fixes above.
    """
    known = _FIXED_IN.get((name, feature))
    if known is None:
        return None
    distribution, fixed_in, what = known
    if _version(distribution) >= fixed_in:
        return None
    release = ".".join(map(str, fixed_in))
    return f"{distribution} < {release} {what}"


@contextlib.contextmanager
def _server_process(command: Sequence[str], path: str = "/echo") -> Iterator[str]:
    """Run ``command``, read the port it prints, yield the URL; stop it on exit."""
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=HERE,
        )
        try:
            port = _read_port(process, stderr)
            yield f"ws://127.0.0.1:{port}{path}"
            if process.poll() is not None:
                raise ServerFailed(_describe(process, stderr, "died during the test"))
        finally:
            _stop(process)


def _read_port(process: subprocess.Popen[bytes], stderr: IO[bytes]) -> int:
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(deadline - time.monotonic()):
                line = process.stdout.readline()
                if line.strip().isdigit():
                    return int(line)
                what = f"printed {line!r}, not a port" if line else "exited without a port"
                raise ServerFailed(_describe(process, stderr, what))
    raise ServerFailed(_describe(process, stderr, f"printed no port in {START_TIMEOUT:g}s"))


def _describe(process: subprocess.Popen[bytes], stderr: IO[bytes], what: str) -> str:
    """``what`` happened to the server, with the end of what it wrote to stderr."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(1)
    stderr.seek(0)
    output = stderr.read()[-4000:].decode(errors="replace")
    return f"{' '.join(map(str, process.args))} {what}:\n{output}"


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the server: its standard input ends, which makes it exit at once."""
    assert process.stdin is not None and process.stdout is not None
    with contextlib.suppress(OSError):
        process.stdin.close()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    process.stdout.close()


def _python_server(kind: str, max_size: int, compress: bool) -> list[str]:
    command = [sys.executable, str(APPS), kind, "--max-size", str(max_size)]
    return command if compress else command + ["--no-compress"]


def uvicorn_server(
    ws: str = "wsproto", max_size: int = MAX_SIZE, compress: bool = True
) -> contextlib.AbstractContextManager[str]:
    """uvicorn serving a small ASGI app, with ``ws`` (``"wsproto"``, ``"websockets"``
    or ``"websockets-sansio"``), ``ws_max_size`` and ``ws_per_message_deflate``."""
    return _server_process(_python_server(f"uvicorn-{ws}", max_size, compress))


def aiohttp_server(
    max_size: int = MAX_SIZE, compress: bool = True
) -> contextlib.AbstractContextManager[str]:
    """aiohttp's ``WebSocketResponse(max_msg_size=max_size, compress=compress)``."""
    return _server_process(_python_server("aiohttp", max_size, compress))


def tornado_server(
    max_size: int = MAX_SIZE, compress: bool = True
) -> contextlib.AbstractContextManager[str]:
    """tornado's ``WebSocketHandler`` with ``websocket_max_message_size`` and
    ``get_compression_options`` (``{}`` with ``compress``, else ``None``)."""
    return _server_process(_python_server("tornado", max_size, compress))


def node_ws_server(
    max_size: int = MAX_SIZE, compress: bool = True
) -> contextlib.AbstractContextManager[str]:
    """Node's ``ws`` ``WebSocketServer`` with ``maxPayload`` and ``perMessageDeflate``."""
    node = shutil.which("node") or "node"
    command = [node, str(NODE_SERVER), "--max-size", str(max_size)]
    return _server_process(command if compress else command + ["--no-compress"])


def real_server(
    name: str, max_size: int = MAX_SIZE, compress: bool = True
) -> contextlib.AbstractContextManager[str]:
    """Start the server called ``name`` (one of :data:`SERVERS`); yield its URL."""
    if name == "node-ws":
        return node_ws_server(max_size, compress)
    if name.startswith("uvicorn-"):
        return uvicorn_server(name[len("uvicorn-") :], max_size, compress)
    if name == "aiohttp":
        return aiohttp_server(max_size, compress)
    if name == "tornado":
        return tornado_server(max_size, compress)
    raise ValueError(f"unknown server {name!r}")
