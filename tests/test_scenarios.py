"""Scenarios: the public API against real peers, checking the event orderings of docs/events.rst.

The peers are the ``websockets`` server (a well-behaved server) and a raw socket
server scripted to misbehave. Every server listens on 127.0.0.1, port 0.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import gc
import json
import logging
import os
import threading
import time
from http import HTTPStatus
from typing import Any, Callable

import pytest
from peers import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Report,
    Worker,
    close_frame,
    parse_close,
    read_until_close,
    request_header_names,
    request_headers,
    wait_for_eof,
)
from servers import (
    OPEN,
    RawConnection,
    echo,
    frame,
    free_port_refused,
    names,
    raw_server,
    run,
    websockets_server,
)
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection

from lomond import WebSocket
from lomond.constants import USER_AGENT
from lomond.errors import WebSocketError, WebSocketUnavailable

pytestmark = pytest.mark.timeout(20)

MiB = 1024 * 1024


def close_on(name: str, ws: WebSocket) -> Callable[[Any], None]:
    """An ``on_event`` callback that closes ``ws`` at the first event called ``name``."""

    def on_event(event: Any) -> None:
        if event.name == name:
            ws.close()

    return on_event


def echo_close_script(connection: RawConnection, report: Report) -> None:
    """Read frames until the client's close, report them, echo the close code."""
    frames = read_until_close(connection)
    report.put("frames", frames)
    if frames and frames[-1][0] == OP_CLOSE:
        code, _ = parse_close(frames[-1][1])
        connection.send(close_frame(code or 1000))


def recording_request(store: list[Request]) -> Callable[[ServerConnection, Request], None]:
    """A ``process_request`` hook for the ``websockets`` server that keeps each request."""

    def process_request(connection: ServerConnection, request: Request) -> None:
        store.append(request)

    return process_request


# -- ending a connection -----------------------------------------------------------


class TestClosingHandshake:
    def test_client_close(self) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            collected = run(ws, close_on("ready", ws), close_timeout=2)
        assert names(collected) == OPEN + ["closed", "disconnected"]
        closed, disconnected = collected[-2:]
        assert (closed.code, closed.reason) == (1000, "goodbye")
        assert disconnected.graceful is True
        assert disconnected.reason == "closed"
        assert ws.is_closed and not ws.is_active and not ws.is_closing

    def test_client_close_with_code_and_reason_is_echoed(self) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    ws.close(4001, "custom reason")

            collected = run(ws, on_event, close_timeout=2)
        assert names(collected) == OPEN + ["closed", "disconnected"]
        assert (collected[-2].code, collected[-2].reason) == (4001, "custom reason")

    def test_server_close_app_may_still_send(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(close_frame(1001, b"going away"))
            report.put("frames", read_until_close(connection))

        with raw_server(script) as url:
            ws = WebSocket(url)
            states: list[tuple[bool, bool, bool]] = []

            def on_event(event: Any) -> None:
                if event.name == "closing":
                    states.append((ws.is_active, ws.is_closing, ws.is_closed))
                    ws.send_text("last words")

            collected = run(ws, on_event, close_timeout=2)
            frames = report.get("frames")
        assert names(collected) == OPEN + ["closing", "disconnected"]
        closing, disconnected = collected[-2:]
        assert (closing.code, closing.reason) == (1001, "going away")
        assert disconnected.graceful is True
        assert disconnected.reason == "closed"
        assert states == [(False, True, False)]
        # The message sent while handling Closing went out before the echoed close.
        assert frames[0] == (OP_TEXT, b"last words")
        assert frames[1][0] == OP_CLOSE
        assert parse_close(frames[1][1])[0] == 1001
        assert len(frames) == 2

    def test_server_close_websockets_peer(self) -> None:
        def handler(connection: ServerConnection) -> None:
            connection.close(4000, "bye")

        with websockets_server(handler) as url:
            collected = run(WebSocket(url), close_timeout=2)
        assert names(collected) == OPEN + ["closing", "disconnected"]
        assert (collected[-2].code, collected[-2].reason) == (4000, "bye")
        assert collected[-1].graceful is True

    def test_server_close_with_empty_payload(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(frame(OP_CLOSE))
            report.put("frames", read_until_close(connection))

        with raw_server(script) as url:
            collected = run(WebSocket(url), close_timeout=2)
            frames = report.get("frames")
        assert names(collected) == OPEN + ["closing", "disconnected"]
        assert collected[-2].code is None
        assert collected[-2].reason == ""
        assert collected[-1].graceful is True
        assert [opcode for opcode, _ in frames] == [OP_CLOSE]

    def test_nothing_after_the_server_close_frame_is_delivered(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(close_frame(1000, b"bye") + frame(OP_TEXT, b"ghost"))
            report.put("frames", read_until_close(connection))

        with raw_server(script) as url:
            collected = run(WebSocket(url), close_timeout=2)
            frames = report.get("frames")
        assert names(collected) == OPEN + ["closing", "disconnected"]
        assert collected[-1].graceful is True
        assert [opcode for opcode, _ in frames] == [OP_CLOSE]


# -- opening failures --------------------------------------------------------------


class TestConnectFailures:
    def test_refused_port(self) -> None:
        port = free_port_refused()
        collected = run(WebSocket(f"ws://127.0.0.1:{port}/"))
        assert names(collected) == ["connecting", "connect_fail"]
        assert "refused" in collected[-1].reason
        assert f"127.0.0.1:{port}" in collected[-1].reason

    def test_unknown_host(self) -> None:
        collected = run(WebSocket("ws://no-such-host.invalid/"))
        assert names(collected) == ["connecting", "connect_fail"]
        assert "could not resolve host" in collected[-1].reason
        assert "no-such-host.invalid" in collected[-1].reason

    def test_connect_timeout_waiting_for_the_response(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.read_request()
            wait_for_eof(connection)

        with raw_server(script) as url:
            start = time.monotonic()
            collected = run(WebSocket(url, connect_timeout=0.5))
            elapsed = time.monotonic() - start
        assert names(collected) == ["connecting", "connected", "disconnected"]
        assert collected[-1].graceful is False
        assert 0.4 <= elapsed < 3

    def test_connect_timeout_with_a_trickling_response(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.read_request()
            for byte in b"HTTP/1.1 101 Switching Protocols\r\n" * 20:
                connection.send(bytes([byte]))
                time.sleep(0.02)

        with raw_server(script) as url:
            start = time.monotonic()
            collected = run(WebSocket(url, connect_timeout=0.5))
            elapsed = time.monotonic() - start
        assert names(collected) == ["connecting", "connected", "disconnected"]
        assert collected[-1].graceful is False
        assert 0.4 <= elapsed < 2


class TestUpgradeRejected:
    def test_http_403_from_websockets(self) -> None:
        def forbid(connection: ServerConnection, request: Request) -> Response:
            return connection.respond(HTTPStatus.FORBIDDEN, "Forbidden\n")

        with websockets_server(echo, process_request=forbid) as url:
            collected = run(WebSocket(url))
        assert names(collected) == ["connecting", "connected", "rejected", "disconnected"]
        rejected, disconnected = collected[-2:]
        assert rejected.response.status_code == 403
        assert "403" in rejected.reason
        assert disconnected.graceful is True

    def test_http_403_from_raw_server(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.read_request()
            connection.send(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\nRetry-After: 7\r\n\r\nno\n"
            )
            wait_for_eof(connection)

        with raw_server(script) as url:
            collected = run(WebSocket(url))
        assert names(collected) == ["connecting", "connected", "rejected", "disconnected"]
        response = collected[-2].response
        assert (response.status_code, response.status) == (403, "Forbidden")
        assert response.get("Retry-After") == "7"
        assert collected[-1].graceful is True

    def test_bad_accept_key(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.read_request()
            connection.send(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + base64.b64encode(b"\0" * 20)
                + b"\r\n\r\n"
            )
            wait_for_eof(connection)

        with raw_server(script) as url:
            collected = run(WebSocket(url))
        assert names(collected) == ["connecting", "connected", "rejected", "disconnected"]
        assert "accept" in collected[-2].reason.lower()
        assert collected[-1].graceful is True

    def test_unoffered_subprotocol(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.handshake(b"Sec-WebSocket-Protocol: evil\r\n")
            wait_for_eof(connection)

        with raw_server(script) as url:
            collected = run(WebSocket(url, protocols=["chat"]))
            without_offer = run(WebSocket(url))
        for result in (collected, without_offer):
            assert names(result) == ["connecting", "connected", "rejected", "disconnected"]
            assert "evil" in result[-2].reason
            assert result[-1].graceful is True

    def test_unoffered_extension(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.handshake(b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
            wait_for_eof(connection)

        with raw_server(script) as url:
            collected = run(WebSocket(url))
        assert names(collected) == ["connecting", "connected", "rejected", "disconnected"]
        assert collected[-1].graceful is True

    def test_drop_before_upgrade_response(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.read_request()

        with raw_server(script) as url:
            collected = run(WebSocket(url))
        assert names(collected) == ["connecting", "connected", "disconnected"]
        assert collected[-1].graceful is False

    def test_drop_in_the_middle_of_the_response_head(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.read_request()
            connection.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: webs")

        with raw_server(script) as url:
            collected = run(WebSocket(url))
        assert names(collected) == ["connecting", "connected", "disconnected"]
        assert collected[-1].graceful is False

    def test_garbage_instead_of_a_response(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.read_request()
            connection.send(b"\x00\xff garbage \x01\x02\r\n\xfe\r\n\r\n")
            wait_for_eof(connection)

        with raw_server(script) as url:
            collected = run(WebSocket(url, connect_timeout=5))
        assert names(collected) == ["connecting", "connected", "rejected", "disconnected"]
        assert collected[-1].graceful is True

    @pytest.mark.parametrize("terminated", [False, True], ids=["one-huge-line", "many-lines"])
    def test_header_block_over_64_kib(self, terminated: bool) -> None:
        def script(connection: RawConnection) -> None:
            connection.read_request()
            head = b"HTTP/1.1 101 Switching Protocols\r\n"
            if terminated:
                head += b"".join(b"X-Pad-%04d: %s\r\n" % (i, b"a" * 40) for i in range(1800))
                head += b"\r\n"
            else:
                head += b"X-Pad: " + b"a" * (70 * 1024)
            connection.send(head)
            wait_for_eof(connection)

        with raw_server(script) as url:
            start = time.monotonic()
            collected = run(WebSocket(url, connect_timeout=10))
            elapsed = time.monotonic() - start
        assert names(collected) == ["connecting", "connected", "rejected", "disconnected"]
        assert "64" in collected[-2].reason
        assert collected[-1].graceful is True
        assert elapsed < 3  # refused on size, not after connect_timeout


# -- losing the connection ----------------------------------------------------------


class TestConnectionLost:
    def test_drop_after_upgrade(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.handshake()

        with raw_server(script) as url:
            collected = run(WebSocket(url))
        assert names(collected) == OPEN + ["disconnected"]
        assert collected[-1].graceful is False

    def test_abrupt_drop_mid_session(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(frame(OP_TEXT, b"one") + frame(OP_BINARY, b"two"))

        with raw_server(script) as url:
            collected = run(WebSocket(url))
        assert names(collected) == OPEN + ["text", "binary", "disconnected"]
        assert collected[-1].graceful is False

    def test_eof_mid_frame(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(frame(OP_TEXT, b"hello world")[:5])

        with raw_server(script) as url:
            collected = run(WebSocket(url))
        assert names(collected) == OPEN + ["disconnected"]
        assert collected[-1].graceful is False

    def test_eof_while_waiting_for_the_close_echo(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.handshake()
            read_until_close(connection)

        with raw_server(script) as url:
            ws = WebSocket(url)
            collected = run(ws, close_on("ready", ws), close_timeout=5)
        assert names(collected) == OPEN + ["disconnected"]
        assert collected[-1].graceful is False


# -- timers ------------------------------------------------------------------------


class TestTimeouts:
    def test_ping_timeout(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            report.put("frames", read_until_close(connection))  # never answers pings

        with raw_server(script) as url:
            times: dict[str, float] = {}

            def on_event(event: Any) -> None:
                times[event.name] = time.monotonic()

            collected = run(
                WebSocket(url), on_event, ping_rate=0.2, ping_timeout=0.5, close_timeout=1
            )
            frames = report.get("frames")
        assert names(collected) == OPEN + ["unresponsive", "disconnected"]
        assert collected[-1].graceful is False
        assert 0.4 <= times["unresponsive"] - times["ready"] < 1.5
        pings = [payload for opcode, payload in frames if opcode == OP_PING]
        assert 1 <= len(pings) <= 3

    def test_pongs_keep_the_connection_alive(self) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            counted: list[str] = []

            def on_event(event: Any) -> None:
                counted.append(event.name)
                if counted.count("pong") == 4:
                    ws.close()

            collected = run(ws, on_event, ping_rate=0.1, ping_timeout=0.35, close_timeout=2)
        assert "unresponsive" not in names(collected)
        assert names(collected)[-2:] == ["closed", "disconnected"]
        assert collected[-1].graceful is True

    def test_close_timeout(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            report.put("frames", read_until_close(connection))
            report.put("eof", wait_for_eof(connection))  # never answers our close

        with raw_server(script) as url:
            ws = WebSocket(url)
            times: dict[str, float] = {}

            def on_event(event: Any) -> None:
                times[event.name] = time.monotonic()
                if event.name == "ready":
                    ws.close()

            collected = run(ws, on_event, close_timeout=0.5)
            frames = report.get("frames")
            assert report.get("eof") is not None
        assert names(collected) == OPEN + ["disconnected"]
        assert collected[-1].graceful is False
        assert 0.4 <= times["disconnected"] - times["ready"] < 1.5
        assert frames[-1][0] == OP_CLOSE
        assert parse_close(frames[-1][1]) == (1000, b"goodbye")

    def test_poll_events_keep_coming(self) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            polls: list[float] = []

            def on_event(event: Any) -> None:
                if event.name == "poll":
                    polls.append(time.monotonic())
                    if len(polls) == 4:
                        ws.close()

            collected = run(ws, on_event, poll=0.1, close_timeout=2)
        assert names(collected) == OPEN + ["poll", "poll", "poll", "closed", "disconnected"]
        assert 0.2 <= polls[-1] - polls[0] < 1.0

    def test_a_server_that_stops_reading_cannot_stall_the_loop(self) -> None:
        release = threading.Event()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            release.wait(10)  # never reads: the client's output backs up

        with raw_server(script) as url:
            ws = WebSocket(url)
            times: dict[str, float] = {}

            def on_event(event: Any) -> None:
                times.setdefault(event.name, time.monotonic())
                if event.name == "ready":
                    ws.send_binary(b"\0" * (32 * MiB))  # far more than the socket buffers
                    ws.close()
                    times["close"] = time.monotonic()

            try:
                collected = run(ws, on_event, poll=0.1, close_timeout=0.5)
            finally:
                release.set()
        polls = names(collected).count("poll")
        assert names(collected) == OPEN + ["poll"] * (polls - 1) + ["disconnected"]
        assert polls >= 3  # the timers kept firing while the output was stuck
        assert collected[-1].graceful is False
        assert 0.4 <= times["disconnected"] - times["close"] < 2

    def test_a_blocked_sender_thread_is_released_when_the_loop_ends(self) -> None:
        release = threading.Event()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            release.wait(10)

        with raw_server(script) as url:
            ws = WebSocket(url)
            outcome: list[BaseException] = []
            workers: list[Worker] = []
            polls: list[Any] = []

            def sender() -> None:
                try:
                    for _ in range(64):
                        ws.send_binary(b"\0" * MiB)
                except WebSocketError as error:
                    outcome.append(error)

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    worker = Worker(sender)
                    workers.append(worker)
                    worker.start()
                elif event.name == "poll":
                    polls.append(event)
                    if len(polls) == 3:
                        ws.close()

            try:
                collected = run(ws, on_event, poll=0.2, close_timeout=0.5)
                workers[0].finish(timeout=5)
            finally:
                release.set()
        assert names(collected)[-1] == "disconnected"
        assert collected[-1].graceful is False
        assert len(outcome) == 1, "the sender should fail, not succeed or hang"

    def test_polls_are_on_time_under_traffic(self) -> None:
        stop = threading.Event()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            while not stop.wait(0.013):
                connection.send(frame(OP_TEXT, b"tick"))

        with raw_server(script) as url:
            ws = WebSocket(url)
            polls: list[float] = []

            def on_event(event: Any) -> None:
                if event.name == "poll":
                    polls.append(time.monotonic())
                    if len(polls) == 6:
                        stop.set()
                        ws.close()

            collected = run(ws, on_event, poll=0.1, close_timeout=0.5)
        assert names(collected).count("poll") == 6
        gaps = [later - earlier for earlier, later in zip(polls[1:], polls[2:])]
        assert all(0.06 <= gap <= 0.14 for gap in gaps), gaps
        assert 0.35 <= polls[-1] - polls[1] <= 0.5  # no drift over four periods

    @pytest.mark.parametrize("opcode", [OP_PONG, OP_PING], ids=["pong", "ping"])
    def test_timers_are_on_time_under_a_flood_of_empty_frames(self, opcode: int) -> None:
        """One read of 256 KiB holds 131,072 empty frames (unsolicited pongs are a
        heartbeat RFC 6455 §5.5.3 allows): the loop yields them all before it looks at
        the clock again, so with a loop body that does nothing, ``poll`` and
        ``close_timeout`` fire hundreds of milliseconds late (docs/limits.rst: "fires
        on time whatever the traffic")."""
        flood = frame(opcode) * (128 * 1024)

        def script(connection: RawConnection) -> None:
            connection.handshake()
            with contextlib.suppress(OSError):
                while True:
                    connection.send(flood)

        with raw_server(script) as url:
            ws = WebSocket(url)
            polls: list[float] = []
            closed_at: list[float] = []
            for event in ws.connect(poll=0.1, ping_rate=0, close_timeout=0.5):
                if event.name == "poll":
                    polls.append(time.monotonic())
                    if len(polls) == 10:
                        ws.close()
                        closed_at.append(time.monotonic())
                last = event
            ended = time.monotonic()
        assert last.name == "disconnected" and "close timeout" in last.reason
        gaps = [later - earlier for earlier, later in zip(polls[1:], polls[2:])]
        assert max(gaps) <= 0.2, [round(gap, 3) for gap in gaps]
        waited = ended - closed_at[0]
        assert waited <= 0.6, f"close_timeout 0.5 s ended the connection after {waited:.3f} s"


# -- control frames -----------------------------------------------------------------


class TestPingPong:
    def test_server_ping_is_answered_before_the_event(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(frame(OP_PING, b"are you there?"))
            connection.sock.settimeout(5)
            report.put("first frame", connection.recv_frame())
            echo_close_script(connection, report)

        with raw_server(script) as url:
            ws = WebSocket(url)
            seen_by_server: list[Any] = []

            def on_event(event: Any) -> None:
                if event.name == "ping":
                    # The loop is blocked in here: the pong must already be out.
                    seen_by_server.append(report.get("first frame", timeout=2))
                    ws.close()

            collected = run(ws, on_event, close_timeout=2)
        assert names(collected) == OPEN + ["ping", "closed", "disconnected"]
        assert collected[4].data == b"are you there?"
        assert seen_by_server == [(OP_PONG, b"are you there?")]
        assert collected[-1].graceful is True

    def test_auto_pong_off(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(frame(OP_PING, b"x"))
            echo_close_script(connection, report)

        with raw_server(script) as url:
            ws = WebSocket(url)
            collected = run(ws, close_on("ping", ws), auto_pong=False, close_timeout=2)
            frames = report.get("frames")
        assert names(collected) == OPEN + ["ping", "closed", "disconnected"]
        assert [opcode for opcode, _ in frames] == [OP_CLOSE]

    def test_client_ping_gets_a_pong(self) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    ws.send_ping(b"hello?")
                elif event.name == "pong":
                    ws.close()

            collected = run(ws, on_event, close_timeout=2)
        assert names(collected) == OPEN + ["pong", "closed", "disconnected"]
        assert collected[4].data == b"hello?"


# -- messages -----------------------------------------------------------------------


class TestMessages:
    def test_fragmented_messages_with_interleaved_ping(self) -> None:
        report = Report()
        text = "Hello, wörld €"
        data = text.encode("utf-8")
        # Cut inside the multi-byte characters on purpose.
        parts = [data[:3], data[3:9], data[9:-2], data[-2:]]

        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(frame(OP_TEXT, parts[0], fin=False))
            connection.send(frame(OP_PING, b"mid-message"))
            connection.send(frame(OP_CONTINUATION, parts[1], fin=False))
            connection.send(frame(OP_CONTINUATION, parts[2], fin=False))
            connection.send(frame(OP_CONTINUATION, parts[3]))
            connection.send(frame(OP_BINARY, b"\x00\x01", fin=False))
            connection.send(frame(OP_CONTINUATION, b"", fin=False))
            connection.send(frame(OP_PONG, b"unsolicited"))
            connection.send(frame(OP_CONTINUATION, b"\x02\x03"))
            connection.send(close_frame(1000, b"done"))
            report.put("frames", read_until_close(connection))

        with raw_server(script) as url:
            collected = run(WebSocket(url), close_timeout=2)
            frames = report.get("frames")
        assert names(collected) == OPEN + [
            "ping",
            "text",
            "pong",
            "binary",
            "closing",
            "disconnected",
        ]
        assert collected[4].data == b"mid-message"
        assert collected[5].text == text
        assert collected[6].data == b"unsolicited"
        assert collected[7].data == b"\x00\x01\x02\x03"
        assert (collected[8].code, collected[8].reason) == (1000, "done")
        assert collected[-1].graceful is True
        assert frames[0] == (OP_PONG, b"mid-message")
        assert frames[-1][0] == OP_CLOSE

    def test_many_frames_in_one_segment(self) -> None:
        count = 1000

        def script(connection: RawConnection) -> None:
            connection.handshake()
            burst = b"".join(frame(OP_TEXT, b"%d" % index) for index in range(count))
            connection.send(burst + close_frame(1000))
            read_until_close(connection)

        with raw_server(script) as url:
            collected = run(WebSocket(url), close_timeout=2)
        assert names(collected) == OPEN + ["text"] * count + ["closing", "disconnected"]
        assert [event.text for event in collected[4:-2]] == [str(i) for i in range(count)]

    def test_five_mib_message_from_websockets(self) -> None:
        payload = os.urandom(5 * MiB)
        text = "é" * (5 * MiB // 2)

        def handler(connection: ServerConnection) -> None:
            connection.send(payload)
            connection.send(text)
            for _ in connection:
                pass

        with websockets_server(handler) as url:
            ws = WebSocket(url)
            collected = run(ws, close_on("text", ws), close_timeout=2)
        assert names(collected) == OPEN + ["binary", "text", "closed", "disconnected"]
        assert collected[4].data == payload
        assert collected[5].text == text

    def test_two_mib_sends_are_echoed(self) -> None:
        text = "€" * (2 * MiB // 3)
        data = os.urandom(2 * MiB)
        with websockets_server(echo, max_size=None) as url:
            ws = WebSocket(url)

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    ws.send_text(text)
                    ws.send_binary(data)
                elif event.name == "binary":
                    ws.close()

            collected = run(ws, on_event, close_timeout=2)
        assert names(collected) == OPEN + ["text", "binary", "closed", "disconnected"]
        assert collected[4].text == text
        assert collected[5].data == data

    def test_send_json_and_text_json(self) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            texts: list[Any] = []

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    ws.send_json({"a": [1, 2], "b": "ü"})
                    ws.send_json(x=1, y=None)
                    ws.send_json([1, "two"])
                elif event.name == "text":
                    texts.append(event)
                    if len(texts) == 3:
                        ws.close()

            collected = run(ws, on_event, close_timeout=2)
        assert names(collected) == OPEN + ["text"] * 3 + ["closed", "disconnected"]
        assert texts[0].json == {"a": [1, 2], "b": "ü"}
        assert texts[1].json == {"x": 1, "y": None}
        assert texts[2].json == [1, "two"]
        assert json.loads(texts[0].text) == texts[0].json
        assert texts[0].json is texts[0].json  # parsed once

    def test_bytes_like_sends(self) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            received: list[bytes] = []

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    ws.send_binary(bytearray(b"from bytearray"))
                    ws.send_binary(memoryview(b"__from memoryview__")[2:-2])
                    ws.send_binary(b"")
                elif event.name == "binary":
                    received.append(event.data)
                    if len(received) == 3:
                        ws.close()

            run(ws, on_event, close_timeout=2)
        assert received == [b"from bytearray", b"from memoryview", b""]

    def test_max_message_size_exceeded(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(frame(OP_BINARY, b"x" * 1000))  # exactly the limit: fine
            connection.send(frame(OP_BINARY, b"y" * 1001))
            echo_close_script(connection, report)

        with raw_server(script) as url:
            collected = run(WebSocket(url, max_message_size=1000), close_timeout=2)
            frames = report.get("frames")
        assert names(collected) == OPEN + ["binary", "protocol_error", "disconnected"]
        assert collected[4].data == b"x" * 1000
        assert collected[-2].critical is False
        assert collected[-1].graceful is False
        assert frames[-1][0] == OP_CLOSE
        assert parse_close(frames[-1][1])[0] == 1009

    def test_max_message_size_exceeded_across_fragments(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(frame(OP_TEXT, b"a" * 600, fin=False))
            connection.send(frame(OP_CONTINUATION, b"b" * 600))
            echo_close_script(connection, report)

        with raw_server(script) as url:
            collected = run(WebSocket(url, max_message_size=1000), close_timeout=2)
            frames = report.get("frames")
        assert names(collected) == OPEN + ["protocol_error", "disconnected"]
        assert parse_close(frames[-1][1])[0] == 1009

    def test_max_message_size_with_websockets_server(self) -> None:
        report = Report()

        def handler(connection: ServerConnection) -> None:
            connection.send(b"z" * 5000)
            with contextlib.suppress(ConnectionClosed):
                for _ in connection:
                    pass
            report.put("code", connection.protocol.close_code)

        with websockets_server(handler) as url:
            collected = run(WebSocket(url, max_message_size=4096), close_timeout=2)
            code = report.get("code")
        assert names(collected) == OPEN + ["protocol_error", "disconnected"]
        assert code == 1009

    def test_compressed_echo_with_websockets(self) -> None:
        text = "compress me " * 100_000
        with websockets_server(echo, compression="deflate", max_size=None) as url:
            ws = WebSocket(url, compress=True)
            supported: list[bool] = []

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    supported.append(ws.supports_compression)
                    ws.send_text(text)
                    ws.send_binary(b"\x01" * 1000, compress=False)
                elif event.name == "binary":
                    ws.close()

            collected = run(ws, on_event, close_timeout=2)
        assert names(collected) == OPEN + ["text", "binary", "closed", "disconnected"]
        assert collected[2].extensions == {"permessage-deflate"}
        assert supported == [True]
        assert collected[4].text == text
        assert collected[5].data == b"\x01" * 1000


# -- subprotocols and request headers ----------------------------------------------


class TestHandshakeRequest:
    def test_subprotocol_negotiation(self) -> None:
        requests: list[Request] = []
        with websockets_server(
            echo, subprotocols=["chat"], process_request=recording_request(requests)
        ) as url:
            ws = WebSocket(url, protocols=["other", "chat"])
            collected = run(ws, close_on("ready", ws), close_timeout=2)
        assert names(collected) == OPEN + ["closed", "disconnected"]
        assert collected[2].protocol == "chat"
        assert collected[2].extensions == set()
        assert requests[0].headers["Sec-WebSocket-Protocol"] == "other, chat"

    def test_user_supplied_protocol_header_counts_as_the_offer(self) -> None:
        with websockets_server(echo, subprotocols=["chat"]) as url:
            ws = WebSocket(url, headers={"Sec-WebSocket-Protocol": "chat"})
            collected = run(ws, close_on("ready", ws), close_timeout=2)
        assert names(collected) == OPEN + ["closed", "disconnected"]
        assert collected[2].protocol == "chat"

    def test_no_subprotocol(self) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            collected = run(ws, close_on("ready", ws), close_timeout=2)
        assert collected[2].protocol is None

    def test_request_header_order_and_values(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            report.put("request", connection.read_request())

        with raw_server(script) as url:
            port = url.rsplit(":", 1)[1]
            ws = WebSocket(
                f"ws://user:s3cret@127.0.0.1:{port}/path?x=1",
                protocols=["chat", "superchat"],
                agent="TestAgent/1.0",
                compress=True,
                origin="https://origin.test",
                headers=[("X-First", "1"), (b"X-Second", b"two")],
            )
            ws.add_header(b"X-Third", b"3")
            collected = run(ws)
            request = report.get("request")
        assert names(collected) == ["connecting", "connected", "disconnected"]
        assert request.startswith(b"GET /path?x=1 HTTP/1.1\r\n")
        assert request_header_names(request) == [
            "host",
            "upgrade",
            "connection",
            "sec-websocket-key",
            "sec-websocket-version",
            "user-agent",
            "origin",
            "authorization",
            "sec-websocket-protocol",
            "sec-websocket-extensions",
            "x-first",
            "x-second",
            "x-third",
        ]
        headers = request_headers(request)
        assert headers["host"] == f"127.0.0.1:{port}"
        assert headers["upgrade"].lower() == "websocket"
        assert headers["connection"].lower() == "upgrade"
        assert len(base64.b64decode(headers["sec-websocket-key"])) == 16
        assert headers["sec-websocket-version"] == "13"
        assert headers["user-agent"] == "TestAgent/1.0"
        assert headers["origin"] == "https://origin.test"
        assert headers["authorization"] == "Basic " + base64.b64encode(b"user:s3cret").decode()
        assert headers["sec-websocket-protocol"] == "chat, superchat"
        assert headers["sec-websocket-extensions"].startswith("permessage-deflate")
        assert (headers["x-first"], headers["x-second"], headers["x-third"]) == ("1", "two", "3")
        assert b"s3cret" not in request
        assert collected[0].url == f"ws://127.0.0.1:{port}/path?x=1"

    def test_default_request_headers(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            report.put("request", connection.read_request())

        with raw_server(script) as url:
            run(WebSocket(url))
            request = report.get("request")
        assert request.startswith(b"GET / HTTP/1.1\r\n")
        assert request_header_names(request) == [
            "host",
            "upgrade",
            "connection",
            "sec-websocket-key",
            "sec-websocket-version",
            "user-agent",
        ]
        assert request_headers(request)["user-agent"] == USER_AGENT

    def test_headers_reach_the_websockets_server(self) -> None:
        requests: list[Request] = []
        with websockets_server(echo, process_request=recording_request(requests)) as url:
            ws = WebSocket(
                url,
                agent="Agent/2",
                origin="https://app.test",
                headers={"X-Token": "abc", b"X-Bytes": b"\xe9"},
            )
            ws.add_header(b"X-Added", b"yes")
            collected = run(ws, close_on("ready", ws), close_timeout=2)
        assert names(collected) == OPEN + ["closed", "disconnected"]
        headers = requests[0].headers
        assert headers["User-Agent"] == "Agent/2"
        assert headers["Origin"] == "https://app.test"
        assert headers["X-Token"] == "abc"
        # websockets decodes header values as latin-1 (14+) or with surrogateescape (13).
        assert headers["X-Bytes"].encode("latin-1", "surrogateescape") == b"\xe9"
        assert headers["X-Added"] == "yes"
        assert headers["Sec-WebSocket-Key"] == ws.key.decode()


# -- threads, context manager, reconnecting, leaving the loop -------------------------


class TestThreads:
    def test_sends_and_close_from_another_thread(self) -> None:
        count = 20
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            all_echoed = threading.Event()
            workers: list[Worker] = []
            texts: list[str] = []

            def sender() -> None:
                for index in range(count):
                    ws.send_text(f"message {index}")
                assert all_echoed.wait(5)
                ws.close()

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    worker = Worker(sender)
                    workers.append(worker)
                    worker.start()
                elif event.name == "text":
                    texts.append(event.text)
                    if len(texts) == count:
                        all_echoed.set()

            collected = run(ws, on_event, close_timeout=2)
            workers[0].finish()
        assert names(collected) == OPEN + ["text"] * count + ["closed", "disconnected"]
        assert texts == [f"message {index}" for index in range(count)]
        assert collected[-1].graceful is True

    def test_concurrent_senders_send_whole_messages_in_order(self) -> None:
        threads, per_thread, size = 4, 25, 64 * 1024
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            received: list[str] = []
            workers: list[Worker] = []

            def sender(thread: int) -> None:
                for index in range(per_thread):
                    ws.send_text(f"{thread}:{index}:".ljust(size, chr(ord("a") + thread)))

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    for thread in range(threads):
                        workers.append(Worker(functools.partial(sender, thread)))
                    for worker in workers:
                        worker.start()
                elif event.name == "text":
                    received.append(event.text)
                    if len(received) == threads * per_thread:
                        ws.close()

            collected = run(ws, on_event, close_timeout=2)
            for worker in workers:
                worker.finish()
        assert names(collected)[-2:] == ["closed", "disconnected"]
        for thread in range(threads):
            mine = [text for text in received if text.startswith(f"{thread}:")]
            assert [text.split(":")[1] for text in mine] == [str(i) for i in range(per_thread)]
            for text in mine:
                assert len(text) == size
                assert text.endswith(chr(ord("a") + thread) * 100)

    def test_force_disconnect_from_another_thread(self) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            ws.force_disconnect()  # before connecting: a no-op
            workers: list[Worker] = []

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    worker = Worker(ws.force_disconnect)
                    workers.append(worker)
                    worker.start()

            start = time.monotonic()
            collected = run(ws, on_event, close_timeout=5)
            elapsed = time.monotonic() - start
            workers[0].finish()
            ws.force_disconnect()  # after the end: still a no-op
        assert names(collected) == OPEN + ["disconnected"]
        assert collected[-1].graceful is False
        assert elapsed < 2

    def test_close_from_another_thread_while_the_loop_waits(self) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            workers: list[Worker] = []

            def close_soon() -> None:
                time.sleep(0.1)
                ws.close()

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    worker = Worker(close_soon)
                    workers.append(worker)
                    worker.start()

            start = time.monotonic()
            collected = run(ws, on_event, poll=30, close_timeout=5)
            elapsed = time.monotonic() - start
            workers[0].finish()
        assert names(collected) == OPEN + ["closed", "disconnected"]
        assert elapsed < 2  # the close woke the loop, no need to wait for a poll


class TestLifecycle:
    def test_context_manager_closes_the_socket(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            report.put("eof", wait_for_eof(connection))

        with raw_server(script) as url:
            ws = WebSocket(url)
            event_stream = ws.connect()
            with ws:
                for event in event_stream:
                    if event.name == "ready":
                        break
            # The generator is still alive; only the ``with`` closed the socket.
            assert report.get("eof", timeout=2) is not None
            event_stream.close()

    def test_context_manager_returns_the_websocket(self) -> None:
        with websockets_server(echo) as url, WebSocket(url) as ws:
            collected = run(ws, close_on("ready", ws), close_timeout=2)
        assert names(collected) == OPEN + ["closed", "disconnected"]

    def test_reconnect_the_same_object(self) -> None:
        requests: list[Request] = []
        with websockets_server(echo, process_request=recording_request(requests)) as url:
            ws = WebSocket(url)
            keys = []
            results = []
            for _ in range(2):
                results.append(run(ws, close_on("ready", ws), close_timeout=2))
                keys.append(ws.key)
        for collected in results:
            assert names(collected) == OPEN + ["closed", "disconnected"]
            assert collected[-1].graceful is True
        sent_keys = [request.headers["Sec-WebSocket-Key"] for request in requests]
        assert len(sent_keys) == 2
        assert sent_keys[0] != sent_keys[1]
        assert sent_keys == [key.decode() for key in keys]

    def test_reconnect_after_connect_fail(self) -> None:
        port = free_port_refused()
        ws = WebSocket(f"ws://127.0.0.1:{port}")
        assert names(run(ws)) == ["connecting", "connect_fail"]
        assert names(run(ws)) == ["connecting", "connect_fail"]

    def test_iterating_the_websocket(self) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            seen = []
            for event in ws:
                seen.append(event.name)
                if event.name == "ready":
                    ws.close()
        assert seen == OPEN + ["closed", "disconnected"]

    def test_connect_while_running_raises(self) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            raised: list[bool] = []

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    with pytest.raises(RuntimeError):
                        ws.connect()
                    raised.append(True)
                    ws.send_text("still works")
                elif event.name == "text":
                    ws.close()

            collected = run(ws, on_event, close_timeout=2)
        assert raised == [True]
        assert names(collected) == OPEN + ["text", "closed", "disconnected"]

    def test_connect_while_suspended_raises(self) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            event_stream = ws.connect(close_timeout=2)
            first = next(event_stream)
            assert first.name == "connecting"
            with pytest.raises(RuntimeError):
                ws.connect()
            seen = [first.name]
            for event in event_stream:
                seen.append(event.name)
                if event.name == "ready":
                    ws.close()
        assert seen == OPEN + ["closed", "disconnected"]

    def test_connect_before_the_first_loop_started_raises(self) -> None:
        """Even before its first event, the first loop owns the WebSocket."""
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            first = ws.connect(close_timeout=2)
            with pytest.raises(RuntimeError, match="cannot connect a WebSocket while its"):
                ws.connect()
            with pytest.raises(RuntimeError, match="cannot reset a WebSocket while its"):
                ws.reset()
            seen = []
            for event in first:  # the first loop is intact: it connects and closes
                seen.append(event.name)
                if event.name == "ready":
                    ws.send_text("hello")
                elif event.name == "text":
                    ws.close()
        assert seen == OPEN + ["text", "closed", "disconnected"]

    @pytest.mark.parametrize("how", ["closed", "collected", "exhausted"])
    def test_connect_after_the_first_loop_is_gone(self, how: str) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            first = ws.connect(close_timeout=2)
            if how == "closed":
                first.close()
            elif how == "collected":
                del first
                gc.collect()
            else:
                for event in first:
                    if event.name == "ready":
                        ws.close()
            seen = names(run(ws, lambda event: event.name == "ready" and ws.close()))
        assert seen == OPEN + ["closed", "disconnected"]

    @pytest.mark.parametrize("how", ["break", "exception", "generator-close", "collected"])
    def test_leaving_the_loop_closes_the_socket(self, how: str) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(frame(OP_TEXT, b"hi"))
            report.put("eof", wait_for_eof(connection))

        with raw_server(script) as url:
            ws = WebSocket(url)
            if how == "break":
                for event in ws.connect():
                    if event.name == "text":
                        break
            elif how == "exception":
                with pytest.raises(ZeroDivisionError):
                    for event in ws.connect():
                        if event.name == "text":
                            raise ZeroDivisionError
            else:
                event_stream = ws.connect()
                for event in event_stream:
                    if event.name == "text":
                        break
                if how == "generator-close":
                    event_stream.close()
                else:
                    del event_stream
            assert report.get("eof", timeout=2) is not None
            with pytest.raises(Exception) as excinfo:
                ws.send_text("too late")
            assert not isinstance(excinfo.value, AttributeError)
            assert isinstance(excinfo.value, WebSocketUnavailable)


# -- protocol violations ----------------------------------------------------------


def masked_text_frame(payload: bytes) -> bytes:
    key = b"\x01\x02\x03\x04"
    masked = bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + key + masked


VIOLATIONS = {
    "garbage-bytes": (b"GARBAGE! \xff\xfe\x00 not a frame", {1002}),
    "reserved-opcode": (frame(0x3, b"x"), {1002}),
    "reserved-control-opcode": (frame(0xB, b"x"), {1002}),
    "rsv-bits": (frame(OP_TEXT, b"x", rsv=0b010), {1002}),
    "masked-frame": (masked_text_frame(b"masked"), {1002}),
    "invalid-utf8": (frame(OP_TEXT, b"ok \xce\xba\xff"), {1007}),
    "invalid-utf8-across-fragments": (
        frame(OP_TEXT, b"ok \xce", fin=False) + frame(OP_CONTINUATION, b"\xff"),
        {1007},
    ),
    "control-frame-too-long": (frame(OP_PING, b"p" * 126), {1002}),
    "fragmented-control-frame": (frame(OP_PING, b"p", fin=False), {1002}),
    "continuation-without-message": (frame(OP_CONTINUATION, b"x"), {1002}),
    "data-frame-inside-fragmented-message": (
        frame(OP_TEXT, b"a", fin=False) + frame(OP_BINARY, b"b"),
        {1002},
    ),
    "close-payload-one-byte": (frame(OP_CLOSE, b"\x03"), {1002}),
    "close-code-1005": (close_frame(1005), {1002}),
    "close-code-999": (close_frame(999), {1002}),
    "close-reason-invalid-utf8": (close_frame(1000, b"\xff"), {1002, 1007}),
}


class TestProtocolViolations:
    @pytest.mark.parametrize("case", list(VIOLATIONS))
    def test_violation_fails_the_connection(self, case: str) -> None:
        bad_bytes, expected_codes = VIOLATIONS[case]
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(bad_bytes)
            echo_close_script(connection, report)

        with raw_server(script) as url:
            start = time.monotonic()
            collected = run(WebSocket(url), close_timeout=3)
            elapsed = time.monotonic() - start
            frames = report.get("frames")
        assert names(collected) == OPEN + ["protocol_error", "disconnected"]
        error, disconnected = collected[-2:]
        assert isinstance(error.error, str) and error.error
        assert error.critical is False
        assert disconnected.graceful is False
        assert elapsed < 2  # the server's close echo ended it, not close_timeout
        assert frames[-1][0] == OP_CLOSE
        assert parse_close(frames[-1][1])[0] in expected_codes
        assert all(opcode != OP_PONG for opcode, _ in frames)

    def test_violation_with_a_server_that_never_closes(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(frame(0x3, b"x"))
            wait_for_eof(connection)

        with raw_server(script) as url:
            start = time.monotonic()
            collected = run(WebSocket(url), close_timeout=0.5)
            elapsed = time.monotonic() - start
        assert names(collected) == OPEN + ["protocol_error", "disconnected"]
        assert collected[-1].graceful is False
        assert elapsed < 2

    def test_no_data_events_after_a_violation(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(frame(0x3, b"x") + frame(OP_TEXT, b"after") + frame(OP_PING, b"p"))
            echo_close_script(connection, report)

        with raw_server(script) as url:
            collected = run(WebSocket(url), close_timeout=2)
            report.get("frames")
        assert names(collected) == OPEN + ["protocol_error", "disconnected"]

    def test_violation_while_waiting_for_the_close_echo(self) -> None:
        """A violation while we wait for the close echo still ends the loop promptly."""

        def script(connection: RawConnection) -> None:
            connection.handshake()
            read_until_close(connection)
            connection.send(frame(0x3, b"x"))
            wait_for_eof(connection)

        with raw_server(script) as url:
            ws = WebSocket(url)
            start = time.monotonic()
            collected = run(ws, close_on("ready", ws), close_timeout=3)
            elapsed = time.monotonic() - start
        assert names(collected) == OPEN + ["protocol_error", "disconnected"]
        assert collected[-1].graceful is False
        assert elapsed < 2


# -- trace -------------------------------------------------------------------------


class TestTrace:
    def test_trace_records(self, caplog: pytest.LogCaptureFixture) -> None:
        records: list[dict[str, Any]] = []

        def handler(connection: ServerConnection) -> None:
            connection.ping(b"from server")
            echo(connection)

        with websockets_server(handler) as base:
            port = base.rsplit(":", 1)[1]
            ws = WebSocket(f"ws://user:hunter2@127.0.0.1:{port}/feed", trace=records.append)
            seen: set[str] = set()

            def on_event(event: Any) -> None:
                seen.add(event.name)
                if event.name == "ready":
                    ws.send_text("text")
                    ws.send_binary(b"binary")
                    ws.send_ping(b"ping")
                    ws.send_pong(b"pong")
                if {"text", "binary", "pong", "ping"} <= seen and not ws.is_closing:
                    ws.close()

            with caplog.at_level(logging.DEBUG, logger="lomond"):
                collected = run(ws, on_event, close_timeout=2)
        assert names(collected)[-2:] == ["closed", "disconnected"]
        assert "hunter2" not in caplog.text
        assert base64.b64encode(b"user:hunter2").decode() not in caplog.text
        stages = [record["stage"] for record in records]
        assert stages[0] == "connect_start"
        assert stages[-1] == "disconnected"
        assert {
            "connect_start",
            "socket_send",
            "socket_recv",
            "handshake_ready",
            "send_text",
            "send_binary",
            "send_ping",
            "send_pong",
            "message_text",
            "message_binary",
            "message_ping",
            "message_pong",
            "close_requested",
            "message_close",
            "disconnected",
        } <= set(stages)
        assert all(record["url"] == f"ws://127.0.0.1:{port}/feed" for record in records)
        dumped = repr(records)
        assert "hunter2" not in dumped
        assert base64.b64encode(b"user:hunter2").decode() not in dumped
        assert "Authorization" not in dumped

    def test_trace_of_a_rejection(self) -> None:
        records: list[dict[str, Any]] = []

        def forbid(connection: ServerConnection, request: Request) -> Response:
            return connection.respond(HTTPStatus.FORBIDDEN, "Forbidden\n")

        with websockets_server(echo, process_request=forbid) as url:
            collected = run(WebSocket(url, trace=records.append))
        assert names(collected) == ["connecting", "connected", "rejected", "disconnected"]
        stages = [record["stage"] for record in records]
        assert "handshake_rejected" in stages
        assert stages[-1] == "disconnected"

    def test_a_trace_callable_that_raises_is_ignored(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        calls: list[str] = []

        def bad_trace(record: dict[str, Any]) -> None:
            calls.append(record["stage"])
            raise RuntimeError("broken trace")

        with websockets_server(echo) as url:
            ws = WebSocket(url, trace=bad_trace)

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    ws.send_text("hello")
                elif event.name == "text":
                    ws.close()

            with caplog.at_level(logging.ERROR, logger="lomond"):
                collected = run(ws, on_event, close_timeout=2)
        assert names(collected) == OPEN + ["text", "closed", "disconnected"]
        assert collected[-1].graceful is True
        assert "send_text" in calls and "disconnected" in calls
        assert any(record.name == "lomond" for record in caplog.records)
