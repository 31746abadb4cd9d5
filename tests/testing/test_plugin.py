"""The pytest plugin, run in a pytest of its own (``pytester``): the ``lomond_server``
fixture is there without any configuration (the ``pytest11`` entry point), each test
gets a fresh server, and a client's protocol violation fails the test.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.timeout(60)

# The inner tests talk to the server with lomond itself, and with a raw socket for
# what lomond never does.
HELPERS = """
import socket
import threading

from lomond import WebSocket
from lomond.protocol.frames import build_frame


def run_client(url, script):
    ws = WebSocket(url)
    collected = []

    def loop():
        for event in ws.connect(ping_rate=0):
            collected.append(event.name)
            script(ws, event)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread, collected


def raw_client(url):
    port = int(url.rsplit(":", 1)[1].strip("/"))
    sock = socket.create_connection(("127.0.0.1", port), 5)
    sock.sendall(
        b"GET / HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n"
    )
    while b"\\r\\n\\r\\n" not in sock.recv(4096):
        pass
    return sock
"""


def test_the_entry_point_is_declared() -> None:
    entry_points = importlib.metadata.entry_points()
    selected = (
        entry_points.select(group="pytest11")  # type: ignore[attr-defined,unused-ignore]
        if hasattr(entry_points, "select")
        else entry_points.get("pytest11", [])  # type: ignore[attr-defined,unused-ignore]
    )
    assert "lomond.testing.plugin" in {entry_point.value for entry_point in selected}


def test_a_bot_tested_with_the_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(helpers=HELPERS)
    pytester.makepyfile(
        """
        from helpers import run_client

        def bot(ws, event):
            if event.name == "ready":
                ws.send_json({"op": "subscribe"})
            elif event.name == "text":
                ws.send_text("thanks")

        def test_bot(lomond_server):
            thread, collected = run_client(lomond_server.url, bot)
            assert lomond_server.expect_json(timeout=5) == {"op": "subscribe"}
            lomond_server.send_json({"price": 101})
            assert lomond_server.expect_text(timeout=5) == "thanks"
            lomond_server.close(1001, "restart")
            thread.join(5)
            assert collected[-2:] == ["closing", "disconnected"]

        def test_fresh_server(lomond_server):
            assert lomond_server.connections == 0
            assert lomond_server.received == []
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_a_protocol_violation_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(helpers=HELPERS)
    pytester.makepyfile(
        """
        import time

        from helpers import build_frame, raw_client

        def test_unmasked(lomond_server):
            sock = raw_client(lomond_server.url)
            sock.sendall(build_frame(0x1, b"not masked", None))
            deadline = time.monotonic() + 5
            while not lomond_server.violations and time.monotonic() < deadline:
                time.sleep(0.01)
            sock.close()

        def test_clean(lomond_server):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*lomond.testing.Server: protocol violation by the client: client frame is not masked*"]
    )


def test_a_replay_mismatch_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(helpers=HELPERS)
    pytester.makefile(
        ".jsonl",
        incident='{"format": "lomond-recording", "version": 1, "url": "ws://x/"}\n'
        '{"t": 0, "type": "ready", "protocol": null, "extensions": []}\n'
        '{"t": 0, "type": "text", "from": "client", "text": "hello"}\n'
        '{"t": 0, "type": "close", "from": "server", "code": 1000, "reason": ""}\n',
    )
    pytester.makepyfile(
        """
        from helpers import run_client

        def test_replay(lomond_server):
            lomond_server.replay("incident.jsonl", speed=0)
            greet = lambda ws, event: event.name == "ready" and ws.send_text("goodbye")
            thread, collected = run_client(lomond_server.url, greet)
            thread.join(5)
            assert collected[-1] == "disconnected"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the client was to send text 'hello'*it sent text 'goodbye'*"])


def test_importing_lomond_does_not_import_pytest_or_the_kit() -> None:
    code = (
        "import sys, lomond\n"
        "print(sorted(m for m in ('pytest', 'lomond.testing') if m in sys.modules))\n"
    )
    printed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert printed.strip() == "[]"
