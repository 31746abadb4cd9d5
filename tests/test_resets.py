"""A server that closes and then resets: the loop never raises, nothing is lost.

Real servers do this all the time. uvicorn (with wsproto) refusing a message over its
size limit sends close 1009 and then closes the socket with the message unread,
which makes the kernel answer with a TCP reset; aiohttp and tornado often do the
same. A server that sends a ping, its close frame and FIN makes our pong hit a closed
socket, and the kernel answers that with a reset too. Each test here plays one such
server over a real socket (plain and TLS) and checks the promises of
``docs/limits.rst``: only events come out of the loop, the server's close frame is
reported (``Closing`` with its code and reason) when it arrived before the reset,
the loop ends with ``Disconnected``, and ``graceful`` is true only when our close
frame was written and the server's received.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from typing import Any, Iterator

import pytest
import trustme
from peers import OP_CLOSE, OP_PING, close_frame, read_until_close, wait_for_eof
from servers import OPEN, RawConnection, frame, names, raw_server, run

from lomond import WebSocket, events
from lomond.errors import TransportFail, WebSocketUnavailable
from lomond.persist import persist

pytestmark = pytest.mark.timeout(30)

KiB = 1024
MiB = 1024 * KiB


def reset(connection: RawConnection) -> None:
    """Abort with a TCP reset (SO_LINGER with a zero timeout)."""
    connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.sock.close()


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context, and a client context that trusts it."""
    ca = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client)
    return server, client


@pytest.fixture(params=["ws", "wss"])
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Peer:
    """Serves ``script`` over ``ws://`` or ``wss://``; makes matching WebSockets."""

    def __init__(self, scheme: str, tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
        self.scheme = scheme
        self.server_context, self.client_context = tls

    def serve(self, script: Any, **options: Any) -> Any:
        context = self.server_context if self.scheme == "wss" else None
        return raw_server(script, ssl_context=context, **options)

    def websocket(self, url: str, **options: Any) -> WebSocket:
        if self.scheme == "wss":
            options["ssl_context"] = self.client_context
        return WebSocket(url, **options)


@pytest.fixture
def peer(scheme: str, tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> Peer:
    return Peer(scheme, tls)


def refuse_too_big(connection: RawConnection) -> None:
    """What uvicorn does with a message over its limit: close 1009, close unread."""
    connection.handshake()
    connection.sock.recv(64)  # the start of the message: enough to refuse it
    connection.send(close_frame(1009, b"message too big"))
    connection.sock.close()  # with the rest unread: the kernel sends a reset


def send_on_ready(ws: WebSocket, size: int = MiB) -> Any:
    """Send ``size`` bytes on Ready; the send itself may meet the reset and raise."""

    def on_event(event: events.Event) -> None:
        if event.name == "ready":
            with contextlib.suppress(TransportFail):
                ws.send_binary(bytes(size))

    return on_event


def closing_of(collected: list[Any]) -> Any:
    closing = [event for event in collected if event.name in ("closing", "closed")]
    assert len(closing) == 1, names(collected)
    return closing[0]


def keep_sending(ws: WebSocket) -> Any:
    """Sends 5 MiB at each event; a send may raise only the documented errors."""

    def on_event(event: events.Event) -> None:
        if event.name in ("ready", "poll", "closing"):
            try:
                for _ in range(20):
                    ws.send_binary(bytes(256 * KiB))
            except (TransportFail, WebSocketUnavailable):
                pass

    return on_event


class TestTheServersCloseFrameIsReportedDespiteTheReset:
    def test_close_frame_then_reset(self, peer: Peer) -> None:
        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(frame(0x1, b"last words") + close_frame(1009, b"too big"))
            reset(connection)

        for _ in range(10):
            with peer.serve(script) as url:
                collected = run(peer.websocket(url), close_timeout=5)
            assert names(collected) == OPEN + ["text", "closing", "disconnected"]
            assert collected[4].text == "last words"
            assert (collected[5].code, collected[5].reason) == (1009, "too big")

    def test_refusing_a_message_with_close_and_unread_data(self, peer: Peer) -> None:
        # The client sends a message on Ready; the server refuses it. Whatever the
        # timing, the client reports the refusal; no exception escapes.
        for _ in range(10):
            with peer.serve(refuse_too_big) as url:
                ws = peer.websocket(url)
                collected = run(ws, send_on_ready(ws))
            assert names(collected)[:4] == OPEN
            assert (closing_of(collected).code, closing_of(collected).reason) == (
                1009,
                "message too big",
            )
            assert names(collected)[-1] == "disconnected"

    def test_sending_while_the_server_refuses(self, peer: Peer) -> None:
        """Sends from the loop body meet the reset: the send may raise, the loop not."""
        for _ in range(5):
            with peer.serve(refuse_too_big) as url:
                ws = peer.websocket(url)
                collected = run(ws, keep_sending(ws), poll=0.01)
            assert closing_of(collected).code == 1009
            assert names(collected)[-1] == "disconnected"

    def test_ping_close_and_fin(self, peer: Peer) -> None:
        # Our pong hits a socket the server closed: the kernel answers with a reset.
        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(frame(OP_PING, b"are you there") + close_frame(1001, b"restart"))
            connection.sock.close()

        for _ in range(20):
            with peer.serve(script) as url:
                collected = run(peer.websocket(url), close_timeout=5)
            assert names(collected) == OPEN + ["ping", "closing", "disconnected"]
            assert (collected[5].code, collected[5].reason) == (1001, "restart")

    def test_persist_carries_on(self, peer: Peer) -> None:
        with peer.serve(refuse_too_big) as url:
            ws = peer.websocket(url)
            cycles = 0
            collected: list[Any] = []
            for event in persist(ws, min_wait=0, max_wait=0, poll=60):
                collected.append(event)
                if event.name == "ready":
                    send_on_ready(ws)(event)
                elif event.name == "back_off":
                    cycles += 1
                    if cycles == 3:
                        break
        assert names(collected).count("closing") == 3
        assert names(collected).count("disconnected") == 3


class TestGracefulMeansBothCloseFramesWentOut:
    """``graceful`` is true only when our close frame was written, not just queued."""

    @pytest.mark.parametrize("ending", ["fin", "reset"])
    def test_our_close_frame_stuck_behind_unread_data(self, peer: Peer, ending: str) -> None:
        ready = threading.Event()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            # Never read: the client's output (and then its close frame) waits.
            assert ready.wait(5)
            time.sleep(0.2)
            connection.send(close_frame(1000, b"bye"))
            if ending == "reset":
                connection.sock.close()  # unread data: a reset
            else:
                connection.sock.shutdown(socket.SHUT_WR)
                time.sleep(0.5)  # keep the socket open, unread, until the client ends

        with peer.serve(script, receive_buffer=4 * KiB) as url:
            ws = peer.websocket(url)

            def on_event(event: events.Event) -> None:
                if event.name == "ready":
                    for _ in range(64):
                        ws.send_binary(bytes(256 * KiB))  # 16 MiB: the kernel takes less
                    ws.close()
                    ready.set()

            collected = run(ws, on_event, close_timeout=5)
        assert names(collected) == OPEN + ["closed", "disconnected"]
        assert (collected[4].code, collected[4].reason) == (1000, "bye")
        assert collected[5].graceful is False
        if ending == "fin":
            assert collected[5].reason == "connection closed before our close frame was sent"

    def test_both_close_frames_written(self, peer: Peer) -> None:
        def script(connection: RawConnection) -> None:
            connection.handshake()
            frames = read_until_close(connection)
            assert frames[-1][0] == OP_CLOSE
            connection.send(close_frame(1000))
            connection.sock.close()

        with peer.serve(script) as url:
            ws = peer.websocket(url)
            collected = run(ws, lambda event: event.name == "ready" and ws.close())
        assert names(collected) == OPEN + ["closed", "disconnected"]
        assert collected[-1].graceful is True

    def test_server_close_frame_then_fin_after_reading_our_echo(self, peer: Peer) -> None:
        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(close_frame(1001))
            frames = read_until_close(connection)
            assert frames == [(OP_CLOSE, (1001).to_bytes(2, "big"))]
            connection.sock.shutdown(socket.SHUT_WR)
            wait_for_eof(connection)

        with peer.serve(script) as url:
            collected = run(peer.websocket(url))
        assert names(collected) == OPEN + ["closing", "disconnected"]
        assert collected[-1].graceful is True


@contextlib.contextmanager
def sending_thread(ws: WebSocket) -> Iterator[list[BaseException]]:
    """Send text from another thread until the block ends; yield its unexpected errors."""
    errors: list[BaseException] = []
    stop = threading.Event()

    def sender() -> None:
        while not stop.is_set():
            try:
                ws.send_text("x" * 1000)
            except (TransportFail, WebSocketUnavailable):
                time.sleep(0.001)
            except BaseException as error:  # reported to the test
                errors.append(error)
                return

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    try:
        yield errors
    finally:
        stop.set()
        thread.join(5)


class TestNothingEscapesTheLoop:
    """Close frames, FIN and resets in every order, against sends from two threads."""

    SCRIPTS = ["close-reset", "close-fin", "ping-close-fin", "reset", "fin", "close-unread"]

    @pytest.mark.parametrize("ending", SCRIPTS)
    def test_endings_against_senders(self, ending: str) -> None:
        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.sock.recv(1024)
            if "ping" in ending:
                connection.send(frame(OP_PING))
            if "close" in ending:
                connection.send(close_frame(1011, b"going"))
            if ending == "reset" or ending == "close-reset":
                reset(connection)
            else:
                connection.sock.close()

        for _ in range(30):
            with raw_server(script) as url:
                ws = WebSocket(url)
                with sending_thread(ws) as errors:
                    collected = run(ws, close_timeout=5)
            assert not errors
            assert names(collected)[-1] == "disconnected"
            assert names(collected).count("disconnected") == 1
            if "close" in ending:
                # Sent before the FIN or reset: always read, always reported.
                assert closing_of(collected).code == 1011


def dropping_inside_read(
    trusting: ssl.SSLContext, drop: Any
) -> tuple[ssl.SSLContext, threading.Event]:
    """A client context (trusting what ``trusting`` trusts) whose sockets run ``drop``
    in another thread at one moment of a read, once armed: inside
    ``SSLSocket.recv_into``, after it chose the TLS path, before ``SSLSocket.read``
    runs. The loop reads without the session lock, so another thread's
    ``force_disconnect()`` (or ``close()``, or the end of a ``with`` block) can come
    exactly there; the hook makes that moment certain instead of rare.
    """
    armed = threading.Event()

    class DropInsideRead(ssl.SSLSocket):
        def read(self, len: int = 1024, buffer: Any = None) -> Any:  # noqa: A002
            if armed.is_set():
                armed.clear()
                thread = threading.Thread(target=drop)
                thread.start()
                thread.join(5)
            return super().read(len, buffer)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for certificate in trusting.get_ca_certs(binary_form=True):
        context.load_verify_locations(cadata=certificate)
    context.sslsocket_class = DropInsideRead
    return context, armed


class TestDroppingWhileTheLoopReadsTLS:
    """``force_disconnect()``, ``close()`` or the end of a ``with`` block, from another
    thread, while the loop reads a ``wss://`` socket.

    ``SSLSocket.shutdown()`` sets the socket's TLS object to ``None``; a read already
    inside ``recv_into`` then raises ``ValueError`` ("Read on closed or unwrapped SSL
    socket") or ``AttributeError``: neither is an ``OSError``, and it escapes the
    loop. Without the hook, against a server that streams, it happens about once in a
    few hundred drops.
    """

    @pytest.mark.parametrize("how", ["force_disconnect", "session-close", "with-exit"])
    def test_drop_in_the_middle_of_a_read(
        self, tls: tuple[ssl.SSLContext, ssl.SSLContext], how: str
    ) -> None:
        server_context, client_context = tls

        def script(connection: RawConnection) -> None:
            connection.handshake()
            with contextlib.suppress(OSError):
                while True:
                    connection.send(frame(0x2, b"x" * 100))
                    time.sleep(0.001)

        with raw_server(script, ssl_context=server_context) as url:
            ws = WebSocket(url)
            drops = {
                "force_disconnect": ws.force_disconnect,
                "session-close": lambda: ws.session.close(),  # type: ignore[union-attr]
                "with-exit": lambda: ws.__exit__(None, None, None),
            }
            ws.ssl_context, armed = dropping_inside_read(client_context, drops[how])
            collected: list[Any] = []
            escaped: list[BaseException] = []
            try:
                for event in ws.connect(ping_rate=0, close_timeout=5):
                    collected.append(event)
                    if names(collected).count("binary") == 3:
                        armed.set()
            except Exception as error:  # what the docs promise never happens
                escaped.append(error)
        assert not escaped, f"{escaped[0]!r} escaped the loop after {names(collected)}"
        assert names(collected)[-1] == "disconnected"
        assert collected[-1].graceful is False
