"""Record and replay: ``lomond URL --record`` against the ``websockets`` server, then
``Server.replay`` of the file to a lomond client, which must see the same events.
"""

from __future__ import annotations

import http
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from servers import websockets_server
from websockets.sync.server import ServerConnection

from lomond import WebSocket, events, persist
from lomond.testing import Server

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]

#: The fields of the CLI's JSON lines that differ from run to run.
VARYING = {"received_time", "url", "response"}


def lomond_cli(*args: str, input: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "lomond", "--json", "--ping-rate", "0", *args],
        input=input,
        capture_output=True,
        encoding="utf-8",
        env=env,
        timeout=30,
        check=False,
    )


def session(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The events the CLI printed, without what varies between runs."""
    assert "Traceback" not in result.stderr, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    return [{k: v for k, v in event.items() if k not in VARYING} for event in printed]


def record(
    handler: Callable[[ServerConnection], None], path: Path, input: str = "", **kwargs: Any
) -> list[dict[str, Any]]:
    """Run the CLI against ``handler`` with ``--record path``; return its events."""
    with websockets_server(handler, **kwargs) as url:
        result = lomond_cli(url + "/", "--record", str(path), input=input)
    return session(result)


def replay(path: Path, input: str = "") -> tuple[list[dict[str, Any]], Server]:
    """Run the CLI against a replay of ``path``; return its events and the server."""
    with Server.replay(str(path), speed=0, timeout=5) as server:
        result = lomond_cli(server.url, input=input)
    return session(result), server


def steps(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def conversation(connection: ServerConnection) -> None:
    connection.send("welcome")
    assert connection.recv() == "subscribe"
    connection.send(b"\x00binary")
    connection.ping(b"still there?")
    assert connection.recv() == "second"
    connection.send("price 101")
    connection.close(1001, "restart")


def drop(connection: ServerConnection) -> None:
    connection.send("about to drop")
    connection.recv()
    connection.socket.shutdown(socket.SHUT_RDWR)


def reset(connection: ServerConnection) -> None:
    connection.send("about to reset")
    connection.recv()
    connection.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.socket.close()


def echo_until_closed(connection: ServerConnection) -> None:
    for message in connection:
        connection.send(message)


def busy(connection: ServerConnection, request: Any) -> Any:
    response = connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "busy\n")
    response.headers["Retry-After"] = "30"
    return response


class TestRoundTrip:
    """The same client with the same input sees the same events from the replay."""

    def test_server_close(self, tmp_path: Path) -> None:
        path = tmp_path / "session.jsonl"
        recorded = record(conversation, path, "subscribe\nsecond\n")
        assert [event["name"] for event in recorded] == [
            "connecting", "connected", "ready", "text", "binary", "ping", "text", "closing",
            "disconnected",
        ]  # fmt: skip
        replayed, server = replay(path, "subscribe\nsecond\n")
        assert replayed == recorded
        assert server.received == ["subscribe", "second"]
        server.check()

    @pytest.mark.parametrize("handler, how", [(drop, "dropped"), (reset, "reset")])
    def test_lost_connection(
        self, tmp_path: Path, handler: Callable[[ServerConnection], None], how: str
    ) -> None:
        path = tmp_path / "incident.jsonl"
        recorded = record(handler, path, "hello\n")
        assert recorded[-1]["graceful"] is False
        assert steps(path)[-1]["how"] == how
        replayed, server = replay(path, "hello\n")
        assert replayed == recorded
        server.check()

    def test_client_close(self, tmp_path: Path) -> None:
        path = tmp_path / "session.jsonl"
        recorded = record(echo_until_closed, path, "one\ntwo\n")
        assert [event["name"] for event in recorded][-4:] == [
            "text", "text", "closed", "disconnected",
        ]  # fmt: skip
        assert [step["type"] for step in steps(path)[1:]][-3:] == ["close", "close", "disconnected"]
        replayed, server = replay(path, "one\ntwo\n")
        assert replayed == recorded
        server.check()

    def test_rejected(self, tmp_path: Path) -> None:
        path = tmp_path / "rejected.jsonl"
        recorded = record(echo_until_closed, path, process_request=busy)
        assert recorded[2]["name"] == "rejected"
        replayed, server = replay(path)
        assert replayed == recorded
        assert steps(path)[1]["headers"]["retry-after"] == "30"

    def test_a_different_client_is_reported(self, tmp_path: Path) -> None:
        path = tmp_path / "session.jsonl"
        record(conversation, path, "subscribe\nsecond\n")
        _, server = replay(path, "subscribe\nsomething else\n")
        second = next(step for step in steps(path)[1:] if step.get("text") == "second")
        assert server.mismatches == [
            "replay: the client was to send text 'second' (at "
            + f"{second['t']:g}s in the recording); it sent text 'something else'"
        ]
        with pytest.raises(AssertionError, match="it sent text 'something else'"):
            server.check()


HEADER = {"format": "lomond-recording", "version": 1, "url": "ws://example.org/"}


def write(path: Path, *lines: dict[str, Any]) -> str:
    path.write_text("".join(json.dumps(line) + "\n" for line in (HEADER, *lines)))
    return str(path)


def ready(t: float = 0.0) -> dict[str, Any]:
    return {"t": t, "type": "ready", "protocol": None, "extensions": []}


def text(t: float, source: str, value: str) -> dict[str, Any]:
    return {"t": t, "type": "text", "from": source, "text": value}


def close(t: float, source: str, code: int, reason: str) -> dict[str, Any]:
    return {"t": t, "type": "close", "from": source, "code": code, "reason": reason}


def run(ws: WebSocket, on_event: Callable[[events.Event], None] | None = None) -> list[Any]:
    collected = []
    for event in ws.connect(ping_rate=0):
        if not isinstance(event, events.Poll):
            collected.append(event)
            if on_event is not None:
                on_event(event)
    return collected


def arrival_times(ws: WebSocket, count: int) -> list[float]:
    """When each of the first ``count`` text messages arrived; then close."""
    times = []

    def on_event(event: events.Event) -> None:
        if isinstance(event, events.Text):
            times.append(time.monotonic())
            if len(times) == count:
                ws.close()

    run(ws, on_event)
    return times


class TestReplay:
    def test_on_a_running_server(self, tmp_path: Path) -> None:
        path = write(
            tmp_path / "r.jsonl", ready(), text(0, "server", "hi"), close(0, "server", 4001, "x")
        )
        with Server() as server:
            assert server.replay(path, speed=0) is server
            collected = run(WebSocket(server.url))
            # The recording is used up: the next client is served normally.
            ws = WebSocket(server.url)
            normal = run(ws, lambda event: ws.close() if event.name == "ready" else None)
        assert [event.name for event in collected][2:] == [
            "ready",
            "text",
            "closing",
            "disconnected",
        ]
        assert (collected[4].code, collected[4].reason) == (4001, "x")
        assert [event.name for event in normal][2:] == ["ready", "closed", "disconnected"]

    def test_several_connections_with_persist(self, tmp_path: Path) -> None:
        path = write(
            tmp_path / "r.jsonl",
            ready(0), text(0.1, "server", "one"),
            {"t": 0.2, "type": "disconnected", "reason": "connection lost", "graceful": False,
             "how": "dropped"},
            {"t": 0.3, "type": "back_off"},
            ready(1.0), text(1.1, "server", "two"), close(1.2, "server", 1001, "restart"),
        )  # fmt: skip
        exit_event = threading.Event()
        collected = []
        with Server.replay(path, speed=0) as server:
            ws = WebSocket(server.url)
            for event in persist(ws, min_wait=0, max_wait=0.01, ping_rate=0, exit_event=exit_event):
                if isinstance(event, events.Poll):
                    continue
                collected.append(event)
                if isinstance(event, events.Disconnected) and event.graceful:
                    exit_event.set()
        assert [event.name for event in collected] == [
            "connecting", "connected", "ready", "text", "disconnected", "back_off",
            "connecting", "connected", "ready", "text", "closing", "disconnected",
        ]  # fmt: skip
        assert [collected[3].text, collected[9].text] == ["one", "two"]
        assert server.connections == 2

    def test_gaps_are_scaled(self, tmp_path: Path) -> None:
        path = write(
            tmp_path / "r.jsonl", ready(0), text(0, "server", "a"), text(0.2, "server", "b")
        )
        for speed in (1.0, 2.0):
            with Server.replay(path, speed=speed) as server:
                times = arrival_times(WebSocket(server.url), 2)
            assert times[1] - times[0] >= 0.2 * speed * 0.9

    def test_a_silent_client_is_reported(self, tmp_path: Path) -> None:
        path = write(
            tmp_path / "r.jsonl", ready(), text(0.5, "client", "hello"), text(1, "server", "late")
        )
        with Server.replay(path, speed=0, timeout=0.2) as server:
            ws = WebSocket(server.url)
            collected = run(ws, lambda event: ws.close() if event.name == "text" else None)
        assert [event.name for event in collected][3] == "text"  # the replay went on
        assert server.mismatches == [
            "replay: the client was to send text 'hello' (at 0.5s in the recording); "
            "it sent nothing within 0.2s"
        ]

    def test_a_client_that_leaves_early_is_reported(self, tmp_path: Path) -> None:
        path = write(tmp_path / "r.jsonl", ready(), text(0, "client", "a"), text(0, "client", "b"))
        with Server.replay(path, speed=0) as server:
            ws = WebSocket(server.url)
            run(ws, lambda event: ws.close() if event.name == "ready" else None)
            deadline = time.monotonic() + 5
            while not server.mismatches and time.monotonic() < deadline:
                time.sleep(0.01)
        assert server.mismatches == [
            "replay: the connection ended before the client sent text 'a' (at 0s in the recording)"
        ]

    def test_a_client_close_that_differs(self, tmp_path: Path) -> None:
        path = write(tmp_path / "r.jsonl", ready(), close(0, "client", 1000, "bye"))
        with Server.replay(path, speed=0) as server:
            ws = WebSocket(server.url)
            run(ws, lambda event: ws.close(4000, "other") if event.name == "ready" else None)
        assert server.mismatches == [
            "replay: the client was to send close 1000 'bye'; it sent close 4000 'other'"
        ]

    def test_the_upgrade_is_answered_as_recorded(self, tmp_path: Path) -> None:
        opening = {"t": 0, "type": "ready", "protocol": "v2", "extensions": ["permessage-deflate"]}
        path = write(tmp_path / "r.jsonl", opening, close(0, "server", 1000, ""))
        with Server.replay(path, speed=0) as server:
            ws = WebSocket(server.url, protocols=["v1", "v2"], compress=True)
            collected = run(ws)
        assert (collected[2].protocol, collected[2].extensions) == ("v2", {"permessage-deflate"})

    def test_a_server_protocol_error_is_replayed_as_a_drop(self, tmp_path: Path) -> None:
        path = write(
            tmp_path / "r.jsonl",
            ready(), text(0, "server", "ok"),
            {"t": 0, "type": "protocol_error", "error": "reserved opcode 3"},
            {"t": 0, "type": "disconnected", "reason": "reserved opcode 3", "how": "client"},
        )  # fmt: skip
        with Server.replay(path, speed=0) as server:
            collected = run(WebSocket(server.url))
        assert [event.name for event in collected][2:] == ["ready", "text", "disconnected"]
        assert collected[-1].graceful is False

    def test_a_client_that_gave_up_is_waited_for(self, tmp_path: Path) -> None:
        unresponsive = {"t": 0.1, "type": "unresponsive"}
        gave_up = {"t": 0.1, "type": "disconnected", "reason": "no pong", "how": "client"}
        path = write(tmp_path / "r.jsonl", ready(), unresponsive, gave_up)
        with Server.replay(path, speed=0) as server:
            ws = WebSocket(server.url)
            collected = run(
                ws, lambda event: ws.force_disconnect() if event.name == "ready" else None
            )
            assert server.mismatches == []
        assert collected[-1].reason == "disconnected by force_disconnect()"

    @pytest.mark.parametrize(
        "arguments, error, message",
        [
            ({"speed": -1}, ValueError, "speed"),
            ({"speed": "fast"}, TypeError, "speed"),
            ({"timeout": 0}, ValueError, "timeout"),
        ],
    )
    def test_bad_arguments(
        self, tmp_path: Path, arguments: dict[str, Any], error: type, message: str
    ) -> None:
        path = write(tmp_path / "r.jsonl", ready())
        with pytest.raises(error, match=message):
            Server().replay(path, **arguments)

    def test_a_recording_without_connections(self, tmp_path: Path) -> None:
        path = write(tmp_path / "r.jsonl", {"t": 0, "type": "connect_fail", "reason": "refused"})
        with pytest.raises(ValueError, match="holds no connection"):
            Server().replay(path)
        with pytest.raises(FileNotFoundError):
            Server().replay(str(tmp_path / "missing.jsonl"))
