"""Fault injection with real sockets: hostile servers, broken networks, careless callers.

Every server here listens on 127.0.0.1, port 0. Each test proves one promise of
the docs: a deadline holds, memory stays bounded, the right
``Disconnected`` ends the loop (never an exception, never a hang), nothing the peers
sent before their close frames is lost, and nothing leaks over many connections.

The soak versions (1,000 cycles) are marked ``slow`` and left out of the default run
(``pyproject.toml`` adds ``-m 'not slow'``); run them with ``pytest -m slow
tests/test_faults.py``. A short version of each stays in the default run.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import struct
import threading
import time
import tracemalloc
import zlib
from typing import Any, Callable, Iterator

import pytest
from peers import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_TEXT,
    Report,
    Worker,
    close_frame,
    read_until_close,
    wait_for_eof,
)
from servers import (
    OPEN,
    RawConnection,
    accept_key,
    frame,
    free_port_refused,
    names,
    raw_server,
    run,
    websockets_server,
)
from websockets.sync.server import ServerConnection

from lomond import WebSocket, events
from lomond.errors import TransportFail, WebSocketClosed, WebSocketClosing, WebSocketError

pytestmark = pytest.mark.timeout(30)

KiB = 1024
MiB = 1024 * KiB
TAIL = b"\x00\x00\xff\xff"


# -- helpers --------------------------------------------------------------------------


def reset(connection: RawConnection) -> None:
    """Abort the connection with a TCP RST (SO_LINGER with a zero timeout)."""
    connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.sock.close()


def finish_close(connection: RawConnection) -> None:
    """Answer the client's close frame (already read) and end the connection cleanly."""
    connection.send(close_frame(1000))
    connection.sock.shutdown(socket.SHUT_WR)
    wait_for_eof(connection)


def read_frame(connection: RawConnection) -> tuple[int, int, bytes]:
    """One client frame: ``(first byte, opcode, unmasked payload)``; keeps RSV bits."""
    first, length, key = connection.recv_header()
    payload = connection._recv_exact(length)
    # XOR with the key repeated over the payload, as one big integer.
    repeated = (key * (length // 4 + 1))[:length]
    unmasked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        length, "big"
    )
    return first, first & 0x0F, unmasked


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def settle(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Wait until ``condition()`` holds (threads and sockets of the peers wind down)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@contextlib.contextmanager
def one_thread_server(script: Callable[[RawConnection], None]) -> Iterator[str]:
    """Serve one connection at a time, all in one thread, with ``script``.

    One thread for all the connections, so a leak check counts no server threads.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def serve() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            connection = RawConnection(sock)
            try:
                script(connection)
            except (OSError, EOFError):
                pass
            finally:
                connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)


def graceful_script(connection: RawConnection) -> None:
    """Complete the upgrade, wait for the client's close frame, echo it and close:
    each connection ends gracefully."""
    connection.handshake()
    read_until_close(connection)
    finish_close(connection)


# -- slow, silent and flooding servers ------------------------------------------------


def valid_response(connection: RawConnection) -> bytes:
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(connection.key) + b"\r\n\r\n"
    )


class TestConnectTimeoutHolds:
    """``connect_timeout`` bounds the wait for the 101 response, however the server stalls."""

    def test_a_server_that_drips_the_101_one_byte_per_100_ms(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.read_request()
            for byte in valid_response(connection):
                connection.send(bytes([byte]))
                time.sleep(0.1)

        with raw_server(script) as url:
            start = time.monotonic()
            collected = run(WebSocket(url, connect_timeout=0.7))
            elapsed = time.monotonic() - start
        assert names(collected) == ["connecting", "connected", "disconnected"]
        assert collected[-1].graceful is False
        assert "timed out after 0.7s" in collected[-1].reason
        assert 0.6 <= elapsed < 1.5  # traffic does not extend the deadline

    @pytest.mark.slow
    @pytest.mark.timeout(60)
    def test_a_dripped_101_is_accepted_within_the_deadline(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.read_request()
            for byte in valid_response(connection):
                connection.send(bytes([byte]))
                time.sleep(0.1)
            read_until_close(connection)
            finish_close(connection)

        with raw_server(script) as url:
            ws = WebSocket(url, connect_timeout=40)
            collected = run(ws, lambda event: event.name == "ready" and ws.close())
        assert names(collected) == OPEN + ["closed", "disconnected"]
        assert collected[-1].graceful is True

    @pytest.mark.parametrize("accepts", [True, False], ids=["accepts", "never-accepts"])
    def test_a_server_that_never_answers(self, accepts: bool) -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes the TCP handshake for us
        port = listener.getsockname()[1]
        accepted: list[socket.socket] = []
        if accepts:
            threading.Thread(
                target=lambda: accepted.append(listener.accept()[0]), daemon=True
            ).start()
        try:
            start = time.monotonic()
            collected = run(WebSocket(f"ws://127.0.0.1:{port}/", connect_timeout=0.5))
            elapsed = time.monotonic() - start
        finally:
            settle(lambda: len(accepted) == int(accepts))
            for sock in accepted:
                sock.close()
            listener.close()
        assert names(collected) == ["connecting", "connected", "disconnected"]
        assert collected[-1].graceful is False
        assert "timed out after 0.5s waiting for the upgrade response" in collected[-1].reason
        assert 0.45 <= elapsed < 1.5


class TestHeaderFlood:
    """A response head over 64 KiB or 256 lines is refused, with bounded memory."""

    @pytest.mark.parametrize(
        "line",
        [b"X-Flood: " + b"a" * 60 + b"\r\n", b"a:\r\n", b" folded\r\n", b"a" * 4096],
        ids=["long-lines", "tiny-lines", "folded-lines", "no-line-breaks"],
    )
    def test_an_endless_head_is_refused_at_64_kib(self, line: bytes) -> None:
        flood = line * (256 * KiB // len(line))
        stopped = threading.Event()

        def script(connection: RawConnection) -> None:
            connection.read_request()
            connection.send(b"HTTP/1.1 101 Switching Protocols\r\n")
            with contextlib.suppress(OSError):
                while not stopped.is_set():  # until the client hangs up
                    connection.send(flood)

        tracemalloc.start()
        try:
            with raw_server(script) as url:
                start = time.monotonic()
                collected = run(WebSocket(url, connect_timeout=10))
                elapsed = time.monotonic() - start
                stopped.set()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert names(collected) == ["connecting", "connected", "rejected", "disconnected"]
        assert collected[-2].reason == "response header exceeds 64 KiB"
        assert len(collected[-2].response.raw) <= 64 * KiB
        assert collected[-1].graceful is True
        assert elapsed < 3  # refused on size, long before connect_timeout
        # The head buffer (64 KiB) plus one read (256 KiB) and their copies.
        assert peak < 2 * MiB, f"peak {peak / MiB:.1f} MiB"

    @pytest.mark.parametrize("lines", [256, 257, 5000])
    def test_header_lines_are_counted(self, lines: int) -> None:
        def script(connection: RawConnection) -> None:
            connection.read_request()
            head = valid_response(connection)[:-2]  # without the blank line
            head += b"".join(b"X-%d: 1\r\n" % index for index in range(lines - 3))
            connection.send(head + b"\r\n")
            read_until_close(connection, timeout=2)
            finish_close(connection)

        with raw_server(script) as url:
            ws = WebSocket(url)
            collected = run(ws, lambda event: event.name == "ready" and ws.close())
        if lines <= 256:
            assert names(collected) == OPEN + ["closed", "disconnected"]
        else:
            assert names(collected) == ["connecting", "connected", "rejected", "disconnected"]
            assert collected[-2].reason == "response has more than 256 header lines"
            assert collected[-1].graceful is True


# -- EOF at every point -------------------------------------------------------------

MID_FRAME = "connection lost in the middle of a frame"

EOF_WHILE_OPEN = {
    # name: (what the server sends after the upgrade, events after OPEN, reason)
    "between-frames": (frame(OP_TEXT, b"whole"), ["text"], "connection lost"),
    "in-the-first-header-byte": (b"\x81", [], MID_FRAME),
    "in-a-16-bit-length": (frame(OP_BINARY, b"x" * 300)[:3], [], MID_FRAME),
    "in-a-64-bit-length": (frame(OP_BINARY, b"x" * 70_000)[:6], [], MID_FRAME),
    "in-a-payload": (frame(OP_TEXT, b"hello world")[:7], [], MID_FRAME),
    "in-a-long-payload": (frame(OP_BINARY, b"x" * 500_000)[:300_000], [], MID_FRAME),
    "after-a-first-fragment": (
        frame(OP_TEXT, b"hel", fin=False),
        [],
        "connection lost in the middle of a fragmented message",
    ),
    "in-a-continuation": (
        frame(OP_TEXT, b"hel", fin=False) + frame(OP_CONTINUATION, b"lo there")[:4],
        [],
        MID_FRAME,
    ),
    "after-a-ping-between-fragments": (
        frame(OP_BINARY, b"a", fin=False) + frame(OP_PING, b"p"),
        ["ping"],
        "connection lost in the middle of a fragmented message",
    ),
    "in-the-servers-close-frame": (close_frame(1000, b"bye")[:3], [], MID_FRAME),
}


class TestEofAtEveryPoint:
    """EOF anywhere ends the loop with ``Disconnected(graceful=False)`` and a reason
    that says where; never an exception, never a hang."""

    @pytest.mark.parametrize("case", list(EOF_WHILE_OPEN), ids=list(EOF_WHILE_OPEN))
    def test_while_open(self, case: str) -> None:
        data, expected, reason = EOF_WHILE_OPEN[case]

        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(data)
            connection.sock.shutdown(socket.SHUT_WR)
            wait_for_eof(connection)

        with raw_server(script) as url:
            start = time.monotonic()
            collected = run(WebSocket(url), close_timeout=5)
            elapsed = time.monotonic() - start
        assert names(collected) == OPEN + expected + ["disconnected"]
        assert collected[-1].reason == reason
        assert collected[-1].graceful is False
        assert elapsed < 2

    @pytest.mark.parametrize(
        "server_sends, expected, reason",
        [
            (b"", [], "connection closed before the server's close frame"),
            (close_frame(1000)[:1], [], MID_FRAME),
            (frame(OP_TEXT, b"late") + close_frame(1000)[:3], ["text"], MID_FRAME),
        ],
        ids=["no-close-frame", "half-a-close-frame", "a-message-then-half-a-close-frame"],
    )
    def test_after_our_close_frame(
        self, server_sends: bytes, expected: list[str], reason: str
    ) -> None:
        def script(connection: RawConnection) -> None:
            connection.handshake()
            read_until_close(connection)
            connection.send(server_sends)
            connection.sock.shutdown(socket.SHUT_WR)
            wait_for_eof(connection)

        with raw_server(script) as url:
            ws = WebSocket(url)
            start = time.monotonic()
            collected = run(ws, lambda event: event.name == "ready" and ws.close(), close_timeout=5)
            elapsed = time.monotonic() - start
        # RFC 6455 §7.1.2: data may still arrive after our close frame, and is delivered.
        assert names(collected) == OPEN + expected + ["disconnected"]
        assert collected[-1].reason == reason
        assert collected[-1].graceful is False
        assert elapsed < 2

    def test_right_after_the_servers_close_frame(self) -> None:
        """The server closes without waiting for our echo: both close frames were
        still exchanged, so the end is graceful."""
        echoed = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(close_frame(1001, b"going away"))
            connection.sock.shutdown(socket.SHUT_WR)
            echoed.put("frames", read_until_close(connection))

        with raw_server(script) as url:
            collected = run(WebSocket(url), close_timeout=5)
        assert names(collected) == OPEN + ["closing", "disconnected"]
        assert (collected[-2].code, collected[-2].reason) == (1001, "going away")
        assert collected[-1].graceful is True
        assert echoed.get("frames") == [(OP_CLOSE, (1001).to_bytes(2, "big") + b"going away")]

    def test_in_the_middle_of_the_upgrade_response(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.read_request()
            connection.send(valid_response(connection)[:40])
            connection.sock.shutdown(socket.SHUT_WR)
            wait_for_eof(connection)

        with raw_server(script) as url:
            collected = run(WebSocket(url))
        assert names(collected) == ["connecting", "connected", "disconnected"]
        assert collected[-1].reason == "connection closed before the upgrade response"
        assert collected[-1].graceful is False


# -- RST at every phase -------------------------------------------------------------


def _reset_before_response(connection: RawConnection) -> None:
    connection.read_request()
    reset(connection)


def _reset_mid_response(connection: RawConnection) -> None:
    connection.read_request()
    connection.send(valid_response(connection)[:50])
    time.sleep(0.05)
    reset(connection)


def _reset_when_open(connection: RawConnection) -> None:
    connection.handshake()
    time.sleep(0.1)
    reset(connection)


def _reset_mid_frame(connection: RawConnection) -> None:
    connection.handshake()
    connection.send(frame(OP_BINARY, b"x" * 100_000)[:30_000])
    time.sleep(0.1)
    reset(connection)


def _reset_during_our_close(connection: RawConnection) -> None:
    connection.handshake()
    read_until_close(connection)
    reset(connection)


RESET_PHASES: dict[str, tuple[Callable[[RawConnection], None], list[str]]] = {
    "before-the-response": (_reset_before_response, ["connecting", "connected"]),
    "mid-response": (_reset_mid_response, ["connecting", "connected"]),
    "open": (_reset_when_open, OPEN),
    "mid-frame": (_reset_mid_frame, OPEN),
    "during-closing": (_reset_during_our_close, OPEN),
}


class TestResetAtEveryPhase:
    """A TCP reset (SO_LINGER 0) ends the loop with ``Disconnected(graceful=False)``."""

    @pytest.mark.parametrize("phase", list(RESET_PHASES), ids=list(RESET_PHASES))
    def test_reset(self, phase: str) -> None:
        script, before = RESET_PHASES[phase]
        with raw_server(script) as url:
            ws = WebSocket(url)
            close_on_ready = phase == "during-closing"
            start = time.monotonic()
            collected = run(
                ws,
                lambda event: close_on_ready and event.name == "ready" and ws.close(),
                close_timeout=5,
            )
            elapsed = time.monotonic() - start
        assert names(collected) == before + ["disconnected"]
        assert collected[-1].graceful is False
        assert "reset by peer" in collected[-1].reason
        assert elapsed < 2

    def test_reset_before_reading_the_request(self) -> None:
        """The reset may beat the request out: either way, no exception and no hang."""

        def script(connection: RawConnection) -> None:
            reset(connection)

        with raw_server(script) as url:
            collected = run(WebSocket(url), close_timeout=5)
        assert names(collected) in (
            ["connecting", "connect_fail"],
            ["connecting", "connected", "disconnected"],
        )
        assert collected[-1].name == "connect_fail" or collected[-1].graceful is False

    def test_reset_after_the_servers_close_frame(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(close_frame(1000))
            time.sleep(0.1)
            reset(connection)

        with raw_server(script) as url:
            collected = run(WebSocket(url), close_timeout=5)
        assert names(collected) == OPEN + ["closing", "disconnected"]
        # Both close frames were exchanged before the reset (our echo went out).
        assert collected[-1].name == "disconnected"

    def test_reset_while_another_thread_sends(self) -> None:
        outcome: list[BaseException | None] = []
        workers: list[Worker] = []

        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.sock.recv(64 * KiB)
            reset(connection)

        with raw_server(script) as url:
            ws = WebSocket(url)

            def sender() -> None:
                try:
                    for _ in range(200):
                        ws.send_binary(bytes(MiB))
                except (TransportFail, WebSocketClosing, WebSocketClosed) as error:
                    outcome.append(error)
                else:
                    outcome.append(None)

            def on_event(event: events.Event) -> None:
                if event.name == "ready":
                    workers.append(Worker(sender))
                    workers[0].start()

            collected = run(ws, on_event, close_timeout=5)
            workers[0].finish(timeout=5)
        assert names(collected) == OPEN + ["disconnected"]
        assert collected[-1].graceful is False
        assert len(outcome) == 1 and outcome[0] is not None, outcome


# -- memory -----------------------------------------------------------------------------


class TestMessageMemory:
    """The largest message accepted costs about twice its size (three times for text
    in one frame); one byte more is refused from the frame header, before its payload
    is buffered, however long the server keeps sending it."""

    LIMIT = 4 * MiB

    @pytest.mark.parametrize(
        "opcode, size, factor",
        [(OP_BINARY, LIMIT, 2.5), (OP_TEXT, LIMIT, 3.5), (OP_BINARY, 64 * LIMIT, 0.5)],
        ids=["binary-at-the-limit", "text-at-the-limit", "binary-far-over-the-limit"],
    )
    def test_peak_memory(self, opcode: int, size: int, factor: float) -> None:
        chunk = b"a" * MiB
        header = bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big")

        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(header)
            with contextlib.suppress(OSError):
                for _ in range(size // MiB):
                    connection.send(chunk)
            read_until_close(connection)
            finish_close(connection)

        with raw_server(script) as url:
            ws = WebSocket(url, max_message_size=self.LIMIT)
            tracemalloc.start()
            try:
                collected = run(
                    ws,
                    lambda event: event.name in ("text", "binary") and ws.close(),
                    close_timeout=5,
                )
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        kinds = [name for name in names(collected) if name != "poll"]
        if size <= self.LIMIT:
            kind = "text" if opcode == OP_TEXT else "binary"
            assert kinds == ["connecting", "connected", "ready", kind, "closed", "disconnected"]
            message = collected[names(collected).index(kind)]
            assert len(message.text if kind == "text" else message.data) == self.LIMIT
        else:
            assert kinds == ["connecting", "connected", "ready", "protocol_error", "disconnected"]
        assert peak < factor * self.LIMIT + MiB, f"peak {peak / MiB:.1f} MiB"


# -- nothing lost ---------------------------------------------------------------------


def server_messages() -> tuple[bytes, list[tuple[str, Any]]]:
    """Many messages of every shape as server frames, and the events they must give."""
    wire: list[bytes] = []
    expected: list[tuple[str, Any]] = []
    for index in range(300):
        kind = index % 5
        if kind == 0:
            payload = f"message {index} é".encode()
            wire.append(frame(OP_TEXT, payload))
            expected.append(("text", payload.decode()))
        elif kind == 1:
            payload = bytes([index % 256]) * (index * 97 % 70_000)
            wire.append(frame(OP_BINARY, payload))
            expected.append(("binary", payload))
        elif kind == 2:
            text = f"fragmented {index} ü" * 50
            data = text.encode()
            cuts = [0, 7, len(data) // 2, len(data)]
            for number, (start, end) in enumerate(zip(cuts, cuts[1:])):
                opcode = OP_TEXT if number == 0 else OP_CONTINUATION
                wire.append(frame(opcode, data[start:end], fin=end == len(data)))
            expected.append(("text", text))
        elif kind == 3:
            wire.append(frame(OP_PING, b"%d" % index))
            expected.append(("ping", b"%d" % index))
        else:
            # Every 25th message is 256 KiB, more than one read takes.
            payload = bytes(range(256)) * (1024 if index % 25 == 4 else 1)
            wire.append(frame(OP_BINARY, payload))
            expected.append(("binary", payload))
    return b"".join(wire), expected


def event_value(event: Any) -> tuple[str, Any]:
    value = {"text": "text", "binary": "data", "ping": "data"}[event.name]
    return event.name, getattr(event, value)


class TestNothingLostFromTheServer:
    """Every message the server sent before its close frame is yielded before ``Closing``."""

    @pytest.mark.parametrize("how", ["one-write", "small-writes", "eof-after-close"])
    def test_messages_then_close(self, how: str) -> None:
        wire, expected = server_messages()
        wire += close_frame(1000, b"done")

        def script(connection: RawConnection) -> None:
            connection.handshake()
            if how == "small-writes":
                for start in range(0, len(wire), 7919):
                    connection.send(wire[start : start + 7919])
            else:
                connection.send(wire)
            if how == "eof-after-close":
                connection.sock.shutdown(socket.SHUT_WR)
            read_until_close(connection)
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_WR)  # the server closes first
            wait_for_eof(connection)

        with raw_server(script) as url:
            start = time.monotonic()
            collected = run(WebSocket(url), close_timeout=5)
            assert time.monotonic() - start < 4  # not ended by close_timeout
        data_events = [event for event in collected if event.name in ("text", "binary", "ping")]
        assert [event_value(event) for event in data_events] == expected
        without_polls = [name for name in names(collected) if name != "poll"]
        assert without_polls[-2:] == ["closing", "disconnected"]
        assert collected[-1].graceful is True

    def test_compressed_messages_from_websockets(self) -> None:
        messages: list[str | bytes] = [f"message {index} " * (index % 40) for index in range(200)]
        messages += [bytes(range(256)) * 300, "last"]

        def handler(connection: ServerConnection) -> None:
            for message in messages:
                connection.send(message)
            connection.close(1000, "done")

        with websockets_server(handler, compression="deflate") as url:
            ws = WebSocket(url, compress=True)
            collected = run(ws, close_timeout=5)
        received = [event.text if event.name == "text" else event.data for event in collected[4:-2]]
        assert received == messages
        assert [name for name in names(collected) if name != "poll"][-2:] == [
            "closing",
            "disconnected",
        ]
        assert (collected[-2].code, collected[-2].reason) == (1000, "done")
        assert collected[-1].graceful is True


def recording_script(report: Report, deflate: bool = False) -> Callable[[RawConnection], None]:
    """A server that records every client frame, in order, up to the close frame."""

    def script(connection: RawConnection) -> None:
        extra = b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else b""
        connection.handshake(extra)
        connection.sock.settimeout(10)
        inflater = zlib.decompressobj(-15)
        received: list[tuple[int, bytes]] = []
        while True:
            first, opcode, payload = read_frame(connection)
            assert first & 0x80, "one message is one frame"
            if first & 0x40:
                payload = inflater.decompress(payload + TAIL)
            received.append((opcode, payload))
            if opcode == OP_CLOSE:
                break
        report.put("received", received)
        finish_close(connection)

    return script


def decode(received: list[tuple[int, bytes]]) -> list[str]:
    """The client's frames as comparable strings (binary as its length and first byte)."""
    out = []
    for opcode, payload in received:
        if opcode == OP_TEXT:
            out.append(payload.decode())
        elif opcode == OP_BINARY:
            out.append(f"binary {len(payload)} {payload[:1].hex()}")
        else:
            out.append(f"opcode {opcode}")
    return out


class TestNothingLostFromTheClient:
    """Every message ``send_*`` accepted before ``close()`` reaches the server before our
    close frame, also when several threads send and a slow server makes them wait."""

    @pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
    def test_from_the_loop_thread(self, deflate: bool) -> None:
        report = Report()
        sent: list[str] = []
        with raw_server(recording_script(report, deflate)) as url:
            ws = WebSocket(url, compress=deflate)

            def on_event(event: events.Event) -> None:
                if event.name != "ready":
                    return
                for index in range(100):
                    if index % 10 == 9:
                        payload = bytes([index]) * (index * 10_000)
                        ws.send_binary(payload)
                        sent.append(f"binary {len(payload)} {payload[:1].hex()}")
                    else:
                        ws.send_text(f"text {index}", compress=index % 2 == 0)
                        sent.append(f"text {index}")
                ws.close()

            collected = run(ws, on_event, close_timeout=5)
            received = report.get("received")
        assert decode(received) == sent + [f"opcode {OP_CLOSE}"]
        assert names(collected)[-2:] == ["closed", "disconnected"]
        assert collected[-1].graceful is True

    @pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
    def test_from_several_threads_racing_close(self, deflate: bool) -> None:
        threads = 4
        report = Report()
        accepted: list[list[str]] = [[] for _ in range(threads)]
        refused: list[BaseException] = []
        enough = threading.Event()
        workers: list[Worker] = []

        def sender(thread: int) -> None:
            index = 0
            while True:
                # Every fifth message is large enough to push the queue past 4 MiB.
                size = 1 * MiB + thread if index % 5 == 4 else 100
                text = f"{thread}:{index}:".ljust(size, "abcd"[thread])
                try:
                    ws.send_text(text)
                except (WebSocketClosing, WebSocketClosed) as error:
                    refused.append(error)
                    return
                accepted[thread].append(text)
                if sum(map(len, accepted)) >= 200:
                    enough.set()
                index += 1

        def closer() -> None:
            assert enough.wait(10)
            ws.close()

        with raw_server(recording_script(report, deflate)) as url:
            ws = WebSocket(url, compress=deflate)

            def on_event(event: events.Event) -> None:
                if event.name == "ready":
                    for thread in range(threads):
                        workers.append(Worker(lambda thread=thread: sender(thread)))
                    workers.append(Worker(closer))
                    for worker in workers:
                        worker.start()

            collected = run(ws, on_event, close_timeout=10)
            for worker in workers:
                worker.finish(timeout=10)
            received = report.get("received")
        assert received[-1][0] == OP_CLOSE
        texts = [payload.decode() for opcode, payload in received[:-1]]
        assert all(opcode == OP_TEXT for opcode, _ in received[:-1])
        assert len(refused) == threads  # every sender stopped at the close
        for thread in range(threads):
            mine = [text for text in texts if text.startswith(f"{thread}:")]
            assert mine == accepted[thread], f"thread {thread}: accepted ≠ received"
        assert len(texts) == sum(map(len, accepted))
        assert names(collected)[-2:] == ["closed", "disconnected"]
        assert collected[-1].graceful is True


# -- many connections: nothing leaks ----------------------------------------------------


def live_threads() -> int:
    return threading.active_count()


def connect_and_close(url: str) -> None:
    ws = WebSocket(url)
    collected = run(ws, lambda event: event.name == "ready" and ws.close(), ping_rate=None)
    assert names(collected) == OPEN + ["closed", "disconnected"], names(collected)


def connect_refused(url: str) -> None:
    collected = run(WebSocket(url))
    assert names(collected) == ["connecting", "connect_fail"], names(collected)


def connect_rejected(url: str) -> None:
    collected = run(WebSocket(url))
    assert names(collected) == ["connecting", "connected", "rejected", "disconnected"]


def rejecting_script(connection: RawConnection) -> None:
    """Answer the upgrade with 403 and close."""
    connection.read_request()
    connection.send(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    connection.sock.shutdown(socket.SHUT_WR)
    wait_for_eof(connection, timeout=2)


def assert_no_leaks(cycle: Callable[[], None], count: int) -> None:
    """Run ``cycle`` ``count`` times; fds, threads and traced memory must not grow.

    Memory may grow by 16 KiB plus 16 bytes a cycle: interpreter noise (a few hundred
    bytes in practice), far less than any connection's state.
    """
    memory_budget = 16 * KiB + 16 * count
    for _ in range(20):  # warm up: caches, lazily imported modules, first allocations
        cycle()
    gc.collect()
    fds, threads = open_fds(), live_threads()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(count):
            cycle()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert settle(lambda: open_fds() <= fds), f"fds: {fds} before, {open_fds()} after"
    assert settle(lambda: live_threads() <= threads), f"threads: {threads} → {live_threads()}"
    growth = after - before
    assert growth < memory_budget, f"memory grew by {growth} bytes over {count} cycles"


class TestNoLeaks:
    """Connections come and go without leaking file descriptors, threads or memory.

    The default run does 100 cycles of each; the ``slow`` run does 1,000.
    """

    @pytest.mark.parametrize("count", [100, pytest.param(1000, marks=pytest.mark.slow)])
    def test_connect_close_cycles(self, count: int) -> None:
        with one_thread_server(graceful_script) as url:
            assert_no_leaks(lambda: connect_and_close(url), count)

    @pytest.mark.parametrize("count", [100, pytest.param(1000, marks=pytest.mark.slow)])
    def test_refused_connects(self, count: int) -> None:
        url = f"ws://127.0.0.1:{free_port_refused()}/"
        assert_no_leaks(lambda: connect_refused(url), count)

    @pytest.mark.parametrize("count", [100, pytest.param(1000, marks=pytest.mark.slow)])
    def test_refused_connects_to_a_name(self, count: int) -> None:
        """A host name is resolved in a helper thread (so that connect_timeout holds):
        each one must end."""
        url = f"ws://localhost:{free_port_refused()}/"
        assert_no_leaks(lambda: connect_refused(url), count)

    @pytest.mark.parametrize("count", [100, pytest.param(1000, marks=pytest.mark.slow)])
    def test_rejected_connects(self, count: int) -> None:
        with one_thread_server(rejecting_script) as url:
            assert_no_leaks(lambda: connect_rejected(url), count)

    @pytest.mark.parametrize("count", [100, pytest.param(1000, marks=pytest.mark.slow)])
    def test_one_websocket_reconnected(self, count: int) -> None:
        with one_thread_server(graceful_script) as url:
            ws = WebSocket(url)

            def cycle() -> None:
                collected = run(ws, lambda event: event.name == "ready" and ws.close())
                assert names(collected)[-2:] == ["closed", "disconnected"]

            assert_no_leaks(cycle, count)

    @pytest.mark.parametrize("count", [20, pytest.param(200, marks=pytest.mark.slow)])
    def test_timed_out_connects(self, count: int) -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)  # never accepts: every upgrade response times out
        url = f"ws://127.0.0.1:{listener.getsockname()[1]}/"

        def cycle() -> None:
            collected = run(WebSocket(url, connect_timeout=0.01))
            assert names(collected)[-1] in ("connect_fail", "disconnected")

        try:
            assert_no_leaks(cycle, count)
        finally:
            listener.close()


def test_the_loop_raises_nothing_but_the_callers_own_errors() -> None:
    """A catch-all for this module: a sample of hostile servers, none of which may make
    the loop raise (``WebSocketError`` included)."""
    scripts: list[Callable[[RawConnection], None]] = [
        lambda c: (c.handshake(), c.send(b"\xff" * 1000)),
        lambda c: (c.handshake(), c.send(frame(OP_TEXT, b"\xc3\x28"))),
        lambda c: (c.read_request(), c.send(b"\r\n\r\n")),
        lambda c: (c.handshake(), reset(c)),
    ]
    for script in scripts:
        with raw_server(script) as url:
            try:
                collected = run(WebSocket(url), close_timeout=1)
            except WebSocketError as error:  # pragma: no cover - the failure being tested
                pytest.fail(f"the loop raised {error!r}")
        assert collected[-1].name == "disconnected"
