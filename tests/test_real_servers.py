"""Interoperability: lomond against real WebSocket servers, each in a process of its own.

The servers (see :mod:`realservers`): uvicorn with wsproto, with websockets' legacy
implementation and with its sans-I/O one; aiohttp; tornado; Node's ``ws``. Every
test runs against each of them, on 127.0.0.1, and checks the event sequences that
docs/events.rst promises. Each server is started once per module with
permessage-deflate enabled (it is used only when the client offers it) and a
message size limit of :data:`realservers.MAX_SIZE` bytes.

A server refusing a message over its limit sends a close frame (1009, RFC 6455
§7.4.1) and then often resets the TCP connection, because the rest of the message
is still unread in its socket: lomond must still yield the server's ``Closing``,
end with ``Disconnected``, and never raise out of the loop.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import threading
from typing import Any, Callable, Iterator, NamedTuple

import pytest
from realservers import (
    EMPTY_MESSAGES,
    MAX_SIZE,
    SERVERS,
    SIZE_LIMIT,
    lacks,
    real_server,
    unavailable,
)
from servers import OPEN, names, run

from lomond import WebSocket
from lomond.errors import TransportFail, WebSocketUnavailable
from lomond.persist import persist

pytestmark = pytest.mark.timeout(60)

MiB = 1024 * 1024

#: Generous, so that a server that never closes the TCP connection fails the test
#: with lomond's close-timeout reason rather than a hang; every server here closes it
#: at once.
CLOSE_TIMEOUT = 10.0
#: No periodic Poll during a test: only the one right after Ready.
POLL = 60.0
#: Seconds after which a connection that has not ended is dropped (force_disconnect).
WATCHDOG = 15.0

#: The close code each server sends when it refuses a message over its limit. All
#: of them answer 1009 (message too big), with different reasons: wsproto "Message
#: exceeds the maximum size (N bytes)", websockets-sansio "frame with N bytes exceeds
#: limit of M bytes", tornado "message too big", the others none. Then tornado,
#: uvicorn with websockets-sansio, aiohttp 3.14 and uvicorn with wsproto (for a
#: message far over the limit) reset the TCP connection, the rest of the message
#: being unread; the others end it with a FIN.
OVERSIZE_CODE = {name: 1009 for name in SERVERS}


def close_answer(server_name: str, code: int, reason: str) -> tuple[int, str]:
    """The close frame each server answers ours with (``Closed.code``, ``Closed.reason``).

    RFC 6455 §5.5.1 only says that an endpoint "typically" echoes the status code:
    aiohttp answers 1000 without a reason, tornado echoes the code without the reason,
    the others echo both.
    """
    if server_name == "aiohttp":
        return 1000, ""
    if server_name == "tornado":
        return code, ""
    return code, reason


class Server(NamedTuple):
    name: str
    url: str


def server_params() -> list[Any]:
    params = []
    for name in SERVERS:
        reason = unavailable(name)
        marks = [pytest.mark.skip(reason=f"{name}: {reason}")] if reason else []
        params.append(pytest.param(name, id=name, marks=marks))
    return params


@pytest.fixture(scope="module", params=server_params())
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """Each real server, started once for the module."""
    with real_server(request.param) as url:
        yield Server(request.param, url)


def skip_if_lacking(server: Server, feature: str) -> None:
    """Skip a test of ``feature`` on a server release that lacks it."""
    reason = lacks(server.name, feature)
    if reason is not None:
        pytest.skip(f"{server.name}: {reason}")


@pytest.fixture
def size_limited(server: Server) -> None:
    skip_if_lacking(server, SIZE_LIMIT)


def connect(ws: WebSocket, on_event: Callable[[Any], None] | None = None) -> list[Any]:
    """Run a connection to the end; a watchdog ends one that hangs, so that the test
    fails on its events instead of at the test timeout."""
    watchdog = threading.Timer(WATCHDOG, ws.force_disconnect)
    watchdog.start()
    try:
        return run(ws, on_event, poll=POLL, close_timeout=CLOSE_TIMEOUT)
    finally:
        watchdog.cancel()
        watchdog.join()


def send(ws: WebSocket, message: str | bytes) -> None:
    if isinstance(message, str):
        ws.send_text(message)
    else:
        ws.send_binary(message)


def echo_all(
    ws: WebSocket, messages: list[str | bytes], on_ready: Callable[[], None] | None = None
) -> list[Any]:
    """Send ``messages`` at ``Ready`` (after ``on_ready()``), close once all came back;
    return the events."""
    echoed = 0

    def on_event(event: Any) -> None:
        nonlocal echoed
        if event.name == "ready":
            if on_ready is not None:
                on_ready()
            for message in messages:
                send(ws, message)
        elif event.name in ("text", "binary"):
            echoed += 1
            if echoed == len(messages):
                ws.close()

    return connect(ws, on_event)


def kind_of(message: str | bytes) -> str:
    return "text" if isinstance(message, str) else "binary"


def payload_of(event: Any) -> str | bytes:
    return event.text if event.name == "text" else event.data


def assert_echoed(messages: list[str | bytes], collected: list[Any]) -> None:
    """The whole sequence of a session that echoed ``messages`` then closed."""
    assert names(collected) == OPEN + [kind_of(m) for m in messages] + ["closed", "disconnected"]
    received = collected[len(OPEN) : len(OPEN) + len(messages)]
    for sent, event in zip(messages, received):
        assert payload_of(event) == sent
    closed, disconnected = collected[-2:]
    assert closed.code == 1000
    assert (disconnected.reason, disconnected.graceful) == ("closed", True)


def close_on_ready(ws: WebSocket, *args: Any) -> Callable[[Any], None]:
    def on_event(event: Any) -> None:
        if event.name == "ready":
            ws.close(*args)

    return on_event


def send_on_ready(ws: WebSocket, message: str | bytes) -> Callable[[Any], None]:
    def on_event(event: Any) -> None:
        if event.name == "ready":
            send(ws, message)

    return on_event


def send_oversized(ws: WebSocket, message: str | bytes) -> None:
    """Send a message the server refuses. Servers that reset the connection right
    after their close frame may reset it while it is still being written: then the
    send itself raises ``TransportFail``, as documented (the loop does not)."""
    with contextlib.suppress(TransportFail):
        send(ws, message)


def send_oversized_on_ready(ws: WebSocket, message: str | bytes) -> Callable[[Any], None]:
    def on_event(event: Any) -> None:
        if event.name == "ready":
            send_oversized(ws, message)

    return on_event


def assert_refused(server: Server, collected: list[Any]) -> None:
    """The server refused an oversized message: its Closing, then Disconnected."""
    assert names(collected) == OPEN + ["closing", "disconnected"], collected
    assert collected[-2].code == OVERSIZE_CODE[server.name]


UNICODE = "unicode: h\u00e9llo w\u00f6rld \u2713 \U0001f40d \u65e5\u672c\u8a9e"


class TestEcho:
    def test_text_binary_and_a_mebibyte(self, server: Server) -> None:
        messages: list[str | bytes] = [
            "hello",
            b"\x00\x01\x80\xfe\xff",
            os.urandom(MiB),
            UNICODE,
            UNICODE * 1000,
        ]
        ws = WebSocket(server.url)
        collected = echo_all(ws, messages)
        assert_echoed(messages, collected)
        assert collected[2].extensions == set()
        assert ws.is_closed

    def test_empty_messages(self, server: Server) -> None:
        skip_if_lacking(server, EMPTY_MESSAGES)
        messages: list[str | bytes] = ["", b""]
        collected = echo_all(WebSocket(server.url), messages)
        assert_echoed(messages, collected)

    def test_ping_is_answered(self, server: Server) -> None:
        ws = WebSocket(server.url)

        def on_event(event: Any) -> None:
            if event.name == "ready":
                ws.send_ping(b"are you there?")
            elif event.name == "pong":
                ws.close()

        collected = connect(ws, on_event)
        assert names(collected) == OPEN + ["pong", "closed", "disconnected"]
        assert collected[len(OPEN)].data == b"are you there?"


class TestCompression:
    COMPRESSIBLE_TEXT = json.dumps([{"id": i, "name": "lomond", "ok": True} for i in range(2000)])
    COMPRESSIBLE_BINARY = b"lomond " * 40000

    def test_negotiated_and_messages_echo(self, server: Server) -> None:
        messages: list[str | bytes] = [
            self.COMPRESSIBLE_TEXT,
            self.COMPRESSIBLE_BINARY,
            os.urandom(256 * 1024),  # incompressible
            "x",  # too small to be worth compressing
            UNICODE * 100,
            os.urandom(MiB),
        ]
        ws = WebSocket(server.url, compress=True)
        supports: list[bool] = []
        collected = echo_all(ws, messages, lambda: supports.append(ws.supports_compression))
        assert collected[2].extensions == {"permessage-deflate"}
        assert supports == [True]
        assert_echoed(messages, collected)

    def test_not_offered_by_the_server(self, server: Server) -> None:
        with real_server(server.name, compress=False) as url:
            ws = WebSocket(url, compress=True)
            supports: list[bool] = []
            messages: list[str | bytes] = [self.COMPRESSIBLE_TEXT, self.COMPRESSIBLE_BINARY]
            collected = echo_all(ws, messages, lambda: supports.append(ws.supports_compression))
        assert collected[2].extensions == set()
        assert supports == [False]
        assert_echoed(messages, collected)


class TestClosing:
    @pytest.mark.parametrize(
        ("code", "reason"),
        [(4001, "bye"), (1001, "going away \u2713"), (1000, "")],
        ids=["4001", "1001-unicode", "1000-no-reason"],
    )
    def test_server_closes_with_a_code(self, server: Server, code: int, reason: str) -> None:
        ws = WebSocket(server.url)
        collected = connect(ws, send_on_ready(ws, f"close:{code}:{reason}"))
        assert names(collected) == OPEN + ["closing", "disconnected"]
        closing, disconnected = collected[-2:]
        assert (closing.code, closing.reason) == (code, reason)
        assert (disconnected.reason, disconnected.graceful) == ("closed", True)
        assert ws.is_closed

    def test_server_closes_after_a_message(self, server: Server) -> None:
        ws = WebSocket(server.url)

        def on_event(event: Any) -> None:
            if event.name == "ready":
                ws.send_text("first")
                ws.send_text("close:4001:bye")

        collected = connect(ws, on_event)
        assert names(collected) == OPEN + ["text", "closing", "disconnected"]
        assert collected[len(OPEN)].text == "first"
        assert (collected[-2].code, collected[-2].reason) == (4001, "bye")
        assert collected[-1].graceful is True

    def test_client_closes(self, server: Server) -> None:
        ws = WebSocket(server.url)
        collected = connect(ws, close_on_ready(ws))
        assert names(collected) == OPEN + ["closed", "disconnected"]
        closed, disconnected = collected[-2:]
        assert (closed.code, closed.reason) == close_answer(server.name, 1000, "goodbye")
        assert (disconnected.reason, disconnected.graceful) == ("closed", True)
        assert ws.is_closed and not ws.is_active

    def test_client_closes_with_a_code(self, server: Server) -> None:
        ws = WebSocket(server.url)
        collected = connect(ws, close_on_ready(ws, 4002, "later"))
        assert names(collected) == OPEN + ["closed", "disconnected"]
        closed, disconnected = collected[-2:]
        assert (closed.code, closed.reason) == close_answer(server.name, 4002, "later")
        assert disconnected.graceful is True

    def test_client_closes_from_another_thread(self, server: Server) -> None:
        ws = WebSocket(server.url)
        ready = threading.Event()

        def on_event(event: Any) -> None:
            if event.name == "ready":
                ready.set()

        closer = threading.Thread(target=lambda: ready.wait(5) and ws.close())
        closer.start()
        try:
            collected = connect(ws, on_event)
        finally:
            closer.join(5)
        assert names(collected) == OPEN + ["closed", "disconnected"]
        assert collected[-1].graceful is True


#: Messages over the servers' limit: one byte over (the whole message may fit in the
#: socket buffers), and four times the limit (the server stops reading mid-message).
OVERSIZED = [
    pytest.param(MAX_SIZE + 1, id="one-byte-over"),
    pytest.param(4 * MAX_SIZE, id="four-times-over"),
]


@pytest.mark.usefixtures("size_limited")
class TestOversizedMessage:
    @pytest.mark.parametrize("size", OVERSIZED)
    def test_refused_with_a_close_code(self, server: Server, size: int) -> None:
        ws = WebSocket(server.url)
        collected = connect(ws, send_oversized_on_ready(ws, b"\x00" * size))
        assert_refused(server, collected)
        assert ws.is_closed

    def test_refused_text(self, server: Server) -> None:
        ws = WebSocket(server.url)
        collected = connect(ws, send_oversized_on_ready(ws, "x" * (MAX_SIZE + 1)))
        assert_refused(server, collected)

    def test_refused_after_decompression(self, server: Server) -> None:
        # A few KiB on the wire, over the limit once inflated (RFC 7692 §8.1).
        ws = WebSocket(server.url, compress=True)
        collected = connect(ws, send_oversized_on_ready(ws, b"\x00" * (MAX_SIZE + 1)))
        assert collected[2].extensions == {"permessage-deflate"}
        assert_refused(server, collected)

    def test_after_an_echo(self, server: Server) -> None:
        ws = WebSocket(server.url)

        def on_event(event: Any) -> None:
            if event.name == "ready":
                ws.send_text("before")
            elif event.name == "text":
                send_oversized(ws, b"\x00" * (MAX_SIZE + 1))

        collected = connect(ws, on_event)
        assert names(collected) == OPEN + ["text", "closing", "disconnected"]
        assert collected[-2].code == OVERSIZE_CODE[server.name]

    def test_persist_carries_on(self, server: Server) -> None:
        ws = WebSocket(server.url)
        exit_event = threading.Event()
        collected: list[Any] = []

        def give_up() -> None:
            exit_event.set()
            ws.force_disconnect()

        watchdog = threading.Timer(WATCHDOG, give_up)
        watchdog.start()
        options = {"poll": POLL, "close_timeout": CLOSE_TIMEOUT, "exit_event": exit_event}
        try:
            for event in persist(ws, min_wait=0, max_wait=0, **options):
                collected.append(event)
                if event.name == "ready":
                    send_oversized(ws, b"\x00" * (MAX_SIZE + 1))
                elif event.name == "disconnected" and names(collected).count("disconnected") == 3:
                    exit_event.set()
        finally:
            watchdog.cancel()
            watchdog.join()
        cycle = OPEN + ["closing", "disconnected"]
        assert names(collected) == cycle + ["back_off"] + cycle + ["back_off"] + cycle
        codes = [event.code for event in collected if event.name == "closing"]
        assert codes == [OVERSIZE_CODE[server.name]] * 3


def refusal_rounds(server: Server, rounds: int) -> None:
    """Connect, echo, send an oversized message, see it refused; ``rounds`` times."""
    ws = WebSocket(server.url)
    oversized = b"\x00" * (MAX_SIZE + 1)
    for number in range(rounds):
        message = f"round {number}"

        def on_event(event: Any, message: str = message) -> None:
            if event.name == "ready":
                ws.send_text(message)
            elif event.name == "text":
                assert event.text == message
                send_oversized(ws, oversized)

        collected = connect(ws, on_event)
        assert names(collected) == OPEN + ["text", "closing", "disconnected"], (
            f"round {number}: {collected}"
        )
        assert collected[-2].code == OVERSIZE_CODE[server.name], f"round {number}"


@pytest.mark.usefixtures("size_limited")
class TestManyRounds:
    def test_ten_rounds(self, server: Server) -> None:
        refusal_rounds(server, 10)

    @pytest.mark.slow
    @pytest.mark.timeout(600)
    def test_three_hundred_rounds(self, server: Server) -> None:
        refusal_rounds(server, 300)


class TestServerProcesses:
    @pytest.mark.parametrize("name", server_params())
    def test_stopping_frees_the_port(self, name: str) -> None:
        with real_server(name) as url:
            port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


class TestStreaming:
    """Streamed sends and receives (docs/streaming.rst): each server assembles the
    fragments, applies its limit to the whole message, and its echo comes as parts."""

    @pytest.mark.parametrize("compress", [False, True], ids=["plain", "deflate"])
    def test_a_streamed_upload_echoes_as_parts(self, server: Server, compress: bool) -> None:
        upload = os.urandom(MiB) + b"lomond " * 60_000  # 1.4 MiB, partly compressible
        text_pieces = [UNICODE] * 200
        ws = WebSocket(server.url, compress=compress)
        messages: list[list[Any]] = [[]]

        def on_event(event: Any) -> None:
            if event.name == "ready":
                ws.send_binary(io.BytesIO(upload))
                ws.send_text(iter(text_pieces))
            elif event.name in ("binary_part", "text_part"):
                messages[-1].append(event)
                if event.final:
                    messages.append([])
                    if len(messages) == 3:
                        ws.close()

        watchdog = threading.Timer(WATCHDOG, ws.force_disconnect)
        watchdog.start()
        try:
            collected = run(ws, on_event, poll=POLL, close_timeout=CLOSE_TIMEOUT, stream=True)
        finally:
            watchdog.cancel()
            watchdog.join()
        assert names(collected)[-2:] == ["closed", "disconnected"]
        binary, text = messages[0], messages[1]
        assert {p.name for p in binary} == {"binary_part"}
        assert b"".join(p.data for p in binary) == upload
        assert {p.name for p in text} == {"text_part"}
        assert "".join(p.text for p in text) == UNICODE * 200
        assert collected[2].extensions == ({"permessage-deflate"} if compress else set())

    @pytest.mark.usefixtures("size_limited")
    def test_a_streamed_upload_over_the_limit_is_refused(self, server: Server) -> None:
        """The server's limit counts the whole message, whatever its fragments."""
        chunk = b"\x00" * (256 * 1024)
        count = MAX_SIZE // len(chunk) + 1
        ws = WebSocket(server.url)

        def on_event(event: Any) -> None:
            if event.name == "ready":
                with contextlib.suppress(TransportFail, WebSocketUnavailable):
                    ws.send_binary(chunk for _ in range(count))

        collected = connect(ws, on_event)
        assert_refused(server, collected)
