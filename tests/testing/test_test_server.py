"""lomond.testing.Server against real lomond clients (and a raw socket, for violations).

Each test runs lomond's own client against the server on 127.0.0.1 and checks the
exact event sequence the client sees, and what the server saw.
"""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc
from typing import Any, Callable, Iterator

import pytest
from servers import accept_key

from lomond import WebSocket, events, persist
from lomond.protocol.frames import Opcode, build_close_payload, build_frame
from lomond.testing import Server

pytestmark = pytest.mark.timeout(30)

KEY = b"\x01\x02\x03\x04"


def names(collected: list[events.Event]) -> list[str]:
    return [event.name for event in collected]


def run(
    ws: WebSocket, on_event: Callable[[WebSocket, events.Event], None] | None = None
) -> list[events.Event]:
    """Run ``ws`` to the end; return its events, polls left out."""
    collected = []
    for event in ws.connect(ping_rate=0, close_timeout=5):
        if isinstance(event, events.Poll):
            continue
        collected.append(event)
        if on_event is not None:
            on_event(ws, event)
    return collected


class Client:
    """A lomond client running in a thread."""

    def __init__(
        self, url: str, on_event: Callable[[WebSocket, events.Event], None] | None = None, **kw: Any
    ) -> None:
        self.ws = WebSocket(url, **kw)
        self.events: list[events.Event] = []
        self.thread = threading.Thread(target=self._run, args=(on_event,), daemon=True)
        self.thread.start()

    def _run(self, on_event: Callable[[WebSocket, events.Event], None] | None) -> None:
        self.events = run(self.ws, on_event)

    def join(self) -> list[events.Event]:
        self.thread.join(10)
        assert not self.thread.is_alive()
        return self.events


@pytest.fixture
def server() -> Iterator[Server]:
    with Server(timeout=5) as server:
        yield server


def subscribe_on_ready(ws: WebSocket, event: events.Event) -> None:
    if isinstance(event, events.Ready):
        ws.send_json({"op": "subscribe"})
    elif isinstance(event, events.Text):
        ws.send_text(f"got {event.text}")
    elif isinstance(event, events.Binary):
        ws.send_binary(event.data[::-1])


class TestConversation:
    def test_the_issue_example(self, server: Server) -> None:
        client = Client(server.url, subscribe_on_ready)
        assert server.expect_json(timeout=2) == {"op": "subscribe"}
        server.send_json({"price": 101})
        assert server.expect_text(timeout=2) == 'got {"price": 101}'
        server.send_binary(b"\x00\x01")
        assert server.expect_binary(timeout=2) == b"\x01\x00"
        server.close(1001, "restart")
        collected = client.join()
        assert names(collected) == [
            "connecting", "connected", "ready", "text", "binary", "closing", "disconnected",
        ]  # fmt: skip
        assert collected[3].text == '{"price": 101}'
        assert (collected[-2].code, collected[-2].reason) == (1001, "restart")
        assert (collected[-1].reason, collected[-1].graceful) == ("closed", True)
        assert server.received == ['{"op": "subscribe"}', 'got {"price": 101}', b"\x01\x00"]
        assert server.connections == 1
        assert server.violations == []
        server.check()

    def test_ping_is_answered_by_lomond(self, server: Server) -> None:
        def on_event(ws: WebSocket, event: events.Event) -> None:
            if isinstance(event, events.Ping):
                ws.send_text("pinged")

        client = Client(server.url, on_event)
        server.ping(b"are you there?")
        assert server.expect_text() == "pinged"
        server.close()
        collected = client.join()
        assert names(collected)[3:] == ["ping", "closing", "disconnected"]
        assert collected[3].data == b"are you there?"

    def test_client_pings_are_answered(self, server: Server) -> None:
        def on_event(ws: WebSocket, event: events.Event) -> None:
            if isinstance(event, events.Ready):
                ws.send_ping(b"hello?")
            elif isinstance(event, events.Pong):
                ws.close(1000, "bye")

        collected = Client(server.url, on_event).join()
        assert names(collected)[3:] == ["pong", "closed", "disconnected"]
        assert collected[3].data == b"hello?"
        assert (collected[4].code, collected[4].reason) == (1000, "bye")
        assert collected[-1].graceful

    def test_client_close_is_echoed(self, server: Server) -> None:
        def on_event(ws: WebSocket, event: events.Event) -> None:
            if isinstance(event, events.Ready):
                ws.close(4000, "done")

        collected = Client(server.url, on_event).join()
        assert names(collected) == [
            "connecting", "connected", "ready", "closed", "disconnected",
        ]  # fmt: skip
        assert (collected[3].code, collected[3].reason) == (4000, "done")
        assert collected[-1].graceful

    def test_close_from_the_client_s_own_loop(self, server: Server) -> None:
        # close() returns at once: the loop that calls it must still answer.
        def on_event(ws: WebSocket, event: events.Event) -> None:
            if isinstance(event, events.Ready):
                server.close(1011, "boom")

        collected = run(WebSocket(server.url), on_event)
        assert names(collected)[3:] == ["closing", "disconnected"]
        assert collected[3].code == 1011 and collected[-1].graceful

    def test_messages_sent_while_closing_are_received(self, server: Server) -> None:
        def on_event(ws: WebSocket, event: events.Event) -> None:
            if isinstance(event, events.Closing):
                ws.send_text("last words")

        client = Client(server.url, on_event)
        server.close(1001)
        client.join()
        assert server.received == ["last words"]


class TestEndings:
    def test_drop(self, server: Server) -> None:
        client = Client(server.url)
        server.drop()
        collected = client.join()
        assert names(collected) == ["connecting", "connected", "ready", "disconnected"]
        assert (collected[-1].reason, collected[-1].graceful) == ("connection lost", False)

    def test_reset(self, server: Server) -> None:
        client = Client(server.url)
        server.reset()
        collected = client.join()
        assert names(collected) == ["connecting", "connected", "ready", "disconnected"]
        assert not collected[-1].graceful
        assert "reset" in collected[-1].reason.lower()

    def test_a_client_that_does_not_answer_the_close_is_dropped(self) -> None:
        with Server(close_timeout=0.2) as server:
            sock = handshake(server)
            server.close(1000)
            assert read_frames(sock) == [(Opcode.CLOSE, build_close_payload(1000, ""))]
            sock.close()

    def test_reject(self) -> None:
        with Server(reject=(503, {"Retry-After": "7"})) as server:
            collected = run(WebSocket(server.url))
            assert server.connections == 1
        assert names(collected) == [
            "connecting", "connected", "rejected", "disconnected",
        ]  # fmt: skip
        response = collected[2].response
        assert response.status_code == 503
        assert response.get("retry-after") == "7"
        assert collected[-1].graceful

    @pytest.mark.parametrize(
        "reject, error",
        [
            ((200, {}), ValueError),
            ((101, []), ValueError),
            ((503,), TypeError),
            (("503", []), TypeError),
            ((503, [("X", 1)]), TypeError),
            ((503, [("X", "a\r\nb")]), ValueError),
        ],
    )
    def test_bad_reject(self, reject: Any, error: type) -> None:
        with pytest.raises(error):
            Server(reject=reject)


class TestNegotiation:
    def test_compress_negotiates_deflate(self) -> None:
        with Server(compress=True) as server:
            client = Client(server.url, subscribe_on_ready, compress=True)
            assert server.expect_json() == {"op": "subscribe"}
            server.send_text("x" * 1000)
            assert server.expect_text() == "got " + "x" * 1000
            server.close()
            collected = client.join()
        assert collected[2].extensions == {"permessage-deflate"}
        assert collected[3].text == "x" * 1000

    def test_no_deflate_unless_asked(self, server: Server) -> None:
        collected = Client(server.url, compress=True, on_event=close_on_ready).join()
        assert collected[2].extensions == set()

    def test_subprotocol_is_chosen_by_the_server_s_preference(self) -> None:
        with Server(subprotocols=["v2", "v1"]) as server:
            collected = Client(server.url, close_on_ready, protocols=["v1", "v2"]).join()
            other = Client(server.url, close_on_ready, protocols=["v0"]).join()
        assert collected[2].protocol == "v2"
        assert other[2].protocol is None

    @pytest.mark.parametrize(
        "options, error",
        [
            ({"subprotocols": "v1"}, TypeError),
            ({"subprotocols": [1]}, TypeError),
            ({"compress": 1}, TypeError),
            ({"timeout": 0}, ValueError),
            ({"timeout": "1"}, TypeError),
            ({"close_timeout": -1}, ValueError),
            ({"max_message_size": 0}, ValueError),
        ],
    )
    def test_bad_options(self, options: dict[str, Any], error: type) -> None:
        with pytest.raises(error):
            Server(**options)


def close_on_ready(ws: WebSocket, event: events.Event) -> None:
    if isinstance(event, events.Ready):
        ws.close()


class TestReconnects:
    def test_persist_reconnects_and_connections_counts(self, server: Server) -> None:
        ws = WebSocket(server.url)
        exit_event = threading.Event()
        collected: list[events.Event] = []

        def serve() -> None:
            for attempt in range(3):
                assert server.expect_text() == "hello"
                if attempt < 2:
                    server.drop()
            exit_event.set()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        for event in persist(ws, min_wait=0, max_wait=0.01, ping_rate=0, exit_event=exit_event):
            collected.append(event)
            if isinstance(event, events.Ready):
                ws.send_text("hello")
        thread.join(5)
        assert server.connections == 3
        assert names(collected).count("ready") == 3
        assert names(collected).count("back_off") == 2
        assert [e.graceful for e in collected if isinstance(e, events.Disconnected)] == [
            False, False, True,
        ]  # fmt: skip

    def test_sends_go_to_the_latest_open_connection(self, server: Server) -> None:
        first = Client(server.url)
        wait_for(lambda: server.connections == 1 and open_count(server) == 1)
        second = Client(server.url)
        wait_for(lambda: open_count(server) == 2)
        server.send_text("to the second")
        server.close()  # the second
        assert names(second.join())[3:] == ["text", "closing", "disconnected"]
        server.send_text("to the first")
        server.drop()
        assert names(first.join())[3:] == ["text", "disconnected"]
        assert first.events[3].text == "to the first"


def open_count(server: Server) -> int:
    return len(server._open)


def wait_for(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


class TestExpect:
    def test_timeout_names_what_did_arrive(self, server: Server) -> None:
        client = Client(server.url, subscribe_on_ready)
        assert server.expect_json() == {"op": "subscribe"}
        with pytest.raises(AssertionError) as raised:
            server.expect_text(timeout=0.1)
        message = str(raised.value)
        assert "no text message from the client within 0.1s" in message
        assert "1 message received before" in message
        assert '{"op": "subscribe"}' in message
        assert "1 connection(s), 1 open" in message
        server.close()
        client.join()

    def test_no_client(self) -> None:
        with Server(timeout=0.1) as server:
            with pytest.raises(AssertionError, match="no client connected .* within 0.1s"):
                server.send_text("anyone?")
            with pytest.raises(AssertionError, match="0 messages received before"):
                server.expect_binary()

    def test_wrong_kind(self, server: Server) -> None:
        client = Client(server.url, subscribe_on_ready)
        with pytest.raises(AssertionError, match="expected a binary message; the client sent"):
            server.expect_binary()
        server.send_binary(b"ab")
        with pytest.raises(AssertionError, match="expected a JSON message; the client sent binary"):
            server.expect_json()
        server.send_text("not json")
        with pytest.raises(AssertionError, match="expected a JSON message"):
            server.expect_json()
        server.drop()
        client.join()

    def test_received_may_be_cleared(self, server: Server) -> None:
        def on_event(ws: WebSocket, event: events.Event) -> None:
            if isinstance(event, events.Ready):
                ws.send_text("one")
                ws.send_text("two")
            elif isinstance(event, events.Text):
                ws.send_text(f"after {event.text}")

        client = Client(server.url, on_event)
        assert server.expect_text() == "one"
        wait_for(lambda: len(server.received) == 2)
        server.received.clear()  # "two" goes, unexpected
        server.send_text("three")
        assert server.expect_text() == "after three"
        assert server.received == ["after three"]
        server.drop()
        client.join()

    def test_bad_arguments(self, server: Server) -> None:
        with pytest.raises(TypeError):
            server.send_text(b"bytes")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            server.send_binary("text")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            server.close(1005)
        with pytest.raises(ValueError):
            server.ping(b"x" * 126)

    def test_expecting_keeps_no_state_beyond_received(self, server: Server) -> None:
        """A long run: each expect_* keeps nothing; ``received`` is all that grows."""
        count = 5000
        padding = "." * 200

        def chatter(ws: WebSocket, event: events.Event) -> None:
            if isinstance(event, events.Ready):
                for index in range(count):
                    ws.send_text(f"{index:05}{padding}")

        client = Client(server.url, chatter)
        assert server.expect_text() == "00000" + padding
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            for index in range(1, count):
                assert server.expect_text() == f"{index:05}{padding}"
            server.received.clear()  # what the test keeps, it can drop
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        grown = sum(
            stat.size_diff
            for stat in after.compare_to(before, "filename")
            if "lomond/testing" in stat.traceback[0].filename
        )
        # The messages were over 1 MB; what is left is the reading buffers.
        assert grown < 256 * 1024
        server.drop()
        client.join()


class TestLifecycle:
    def test_without_with(self) -> None:
        server = Server()
        with pytest.raises(RuntimeError, match="not started"):
            server.url  # noqa: B018
        assert server.start() is server
        assert server.start() is server  # starting again does nothing
        assert server.url.startswith("ws://127.0.0.1:")
        collected = run(WebSocket(server.url), close_on_ready)
        assert names(collected)[-1] == "disconnected"
        server.stop()
        server.stop()
        with pytest.raises(RuntimeError, match="cannot be started again"):
            server.start()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1][:-1])), 1)

    def test_stop_ends_open_connections(self) -> None:
        with Server() as server:
            client = Client(server.url)
            wait_for(lambda: open_count(server) == 1)
        assert names(client.join())[-1] == "disconnected"

    def test_stop_ends_a_send_to_a_client_that_does_not_read(self) -> None:
        server = Server().start()
        sock = handshake(server)  # and never reads
        errors: list[str] = []

        def send() -> None:
            try:
                server.send_binary(bytes(64 * 1024 * 1024))
            except AssertionError as error:
                errors.append(str(error))

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        time.sleep(0.2)
        server.stop()
        sender.join(5)
        sock.close()
        assert not sender.is_alive()
        assert errors and errors[0].startswith("could not send to the client: ")

    def test_repr(self) -> None:
        server = Server()
        assert repr(server) == "<lomond.testing.Server not started connections=0>"
        with server:
            assert repr(server) == f"<lomond.testing.Server {server.url} connections=0>"


# -- a client that breaks the protocol ------------------------------------------------


def handshake(server: Server, extra: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1][:-1])), 5)
    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert accept_key(key) in response
    return sock


def read_frames(sock: socket.socket) -> list[tuple[int, bytes]]:
    """Read unmasked server frames until the server closes the connection."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    frames = []
    while data:
        length = data[1] & 0x7F
        frames.append((data[0] & 0x0F, data[2 : 2 + length]))
        data = data[2 + length :]
    return frames


class TestViolations:
    @pytest.mark.parametrize(
        "data, code, violation",
        [
            (build_frame(Opcode.TEXT, b"hi", None), 1002, "client frame is not masked"),
            (build_frame(0x3, b"", KEY), 1002, "reserved opcode 3"),
            (build_frame(Opcode.TEXT, b"hi", KEY, rsv=0x4), 1002, "reserved bits set"),
            (build_frame(Opcode.TEXT, b"\xff", KEY), 1007, "text message is not valid UTF-8"),
            (build_frame(Opcode.PING, b"x", KEY, fin=False), 1002, "control frame fragmented"),
            (build_frame(Opcode.CONTINUATION, b"x", KEY), 1002, "unexpected continuation"),
            (build_frame(Opcode.CLOSE, b"\x03\xe8\xff", KEY), 1007, "close reason is not"),
        ],
    )
    def test_violation_is_noted_and_fails_the_connection(
        self, data: bytes, code: int, violation: str
    ) -> None:
        with Server(close_timeout=0.5) as server:
            sock = handshake(server)
            sock.sendall(data)
            frames = read_frames(sock)
            sock.close()
            assert len(server.violations) == 1
            assert server.violations[0].startswith(violation)
            with pytest.raises(AssertionError, match="protocol violation by the client: "):
                server.check()
        assert frames[0][0] == Opcode.CLOSE
        assert int.from_bytes(frames[0][1][:2], "big") == code

    def test_the_client_s_close_answer_ends_a_failed_connection(self) -> None:
        with Server() as server:
            sock = handshake(server)
            sock.sendall(build_frame(Opcode.TEXT, b"unmasked", None))
            time.sleep(0.1)
            sock.sendall(build_frame(Opcode.CLOSE, build_close_payload(1002, ""), KEY))
            frames = read_frames(sock)  # returns: the server closed the connection
            sock.close()
        assert [opcode for opcode, _ in frames] == [Opcode.CLOSE]

    def test_message_too_large(self) -> None:
        with Server(max_message_size=10, close_timeout=0.2) as server:
            sock = handshake(server)
            sock.sendall(build_frame(Opcode.BINARY, b"x" * 11, KEY))
            frames = read_frames(sock)
            sock.close()
        assert int.from_bytes(frames[0][1][:2], "big") == 1009
        assert server.violations == ["message too large"]

    def test_bad_request(self) -> None:
        with Server() as server:
            sock = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1][:-1])))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            response = sock.makefile("rb").read()
            sock.close()
        assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert server.violations == ["bad upgrade request: Upgrade: websocket is missing"]

    def test_lomond_commits_none(self, server: Server) -> None:
        client = Client(server.url, subscribe_on_ready, compress=True)
        server.expect_json()
        server.send_text("é" * 300)
        server.expect_text()
        server.close()
        client.join()
        server.check()
