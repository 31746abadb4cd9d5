"""Every memory and work bound of ``docs/limits.rst``, measured against a real socket.

Each test plays a server that tries to make lomond hold more than the docs allow,
and measures what lomond allocated with :mod:`tracemalloc` (the server threads run
in the same process, so they send from small buffers they reuse).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import tracemalloc
import zlib
from typing import Any, Callable, Iterator

import pytest
from peers import OP_BINARY, OP_CONTINUATION, OP_PING, OP_TEXT, close_frame, read_until_close
from servers import OPEN, RawConnection, frame, raw_server

from lomond import WebSocket
from lomond.compression import MAX_STREAMS_PER_FRAME
from lomond.errors import TransportFail
from lomond.loop.connection import HIGH_WATER
from lomond.protocol import frames as frames_module
from lomond.protocol import mask as mask_module
from lomond.protocol.messages import MAX_FRAGMENTS

pytestmark = pytest.mark.timeout(60)

KiB = 1024
MiB = 1024 * KiB
TAIL = b"\x00\x00\xff\xff"
DEFLATE_RESPONSE = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"


@contextlib.contextmanager
def traced() -> Iterator[Callable[[], int]]:
    """Trace allocations in the block; yield a function giving the peak so far."""
    tracemalloc.start()
    try:
        yield lambda: tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def consume(ws: WebSocket, on_event: Callable[[Any], None] | None = None, **options: Any) -> Any:
    """Run the loop to its end keeping only the names of the events (not the events)."""
    kept: list[Any] = []
    for event in ws.connect(**options):
        if event.name in ("text", "binary", "ping"):
            kept.append(event.name)
        else:
            kept.append(event)
        if on_event is not None:
            on_event(event)
        del event
    return kept


def event_names(kept: list[Any]) -> list[str]:
    return [item if isinstance(item, str) else item.name for item in kept]


def finish(connection: RawConnection) -> None:
    """Read until the client's close frame, answer it and end the connection."""
    with contextlib.suppress(OSError):
        # Generous: under tracemalloc, on a loaded machine, the client can be slow.
        read_until_close(connection, timeout=30)
        connection.send(close_frame(1000))
        connection.sock.shutdown(socket.SHUT_WR)


def send_fragments(
    connection: RawConnection, opcode: int, total: int, size: int, count: int | None = None
) -> None:
    """Send one message of ``total`` bytes in fragments of ``size`` (or ``count`` empty ones)."""
    piece = b"a" * size
    frames = count if count is not None else total // size
    first = frame(opcode, piece, fin=False)
    middle = frame(OP_CONTINUATION, piece, fin=False)
    batch = middle * max(1, 64 * KiB // len(middle))
    per_batch = len(batch) // len(middle)
    connection.send(first)
    sent = 1
    with contextlib.suppress(OSError):
        while sent + per_batch < frames:
            connection.send(batch)
            sent += per_batch
        while sent < frames - 1:
            connection.send(middle)
            sent += 1
        connection.send(frame(OP_CONTINUATION, piece, fin=True))


class TestFragments:
    """A message costs its size whatever its fragments; their number is capped."""

    LIMIT = 4 * MiB

    @pytest.mark.parametrize("opcode", [OP_BINARY, OP_TEXT], ids=["binary", "text"])
    def test_a_message_at_the_limit_in_64_byte_fragments(self, opcode: int) -> None:
        # 65,536 fragments: within the cap, and the most the Autobahn|Testsuite sends.
        def script(connection: RawConnection) -> None:
            connection.handshake()
            send_fragments(connection, opcode, self.LIMIT, 64)
            finish(connection)

        with raw_server(script) as url, traced() as peak:
            ws = WebSocket(url, max_message_size=self.LIMIT)
            sizes: list[int] = []

            def on_event(event: Any) -> None:
                if event.name in ("text", "binary"):
                    sizes.append(len(event.text if event.name == "text" else event.data))
                    ws.close()

            kept = consume(ws, on_event)
            used = peak()
        assert [name for name in event_names(kept) if name != "poll"] == [
            "connecting",
            "connected",
            "ready",
            "text" if opcode == OP_TEXT else "binary",
            "closed",
            "disconnected",
        ]
        assert sizes == [self.LIMIT]
        # The gathered bytes and the message made from them, plus one read.
        assert used < 2.3 * self.LIMIT + MiB, f"peak {used / MiB:.1f} MiB"

    @pytest.mark.parametrize("size", [0, 1], ids=["empty", "one-byte"])
    def test_too_many_fragments_fail_with_1009(self, size: int) -> None:
        closed: list[tuple[int, bytes]] = []

        def script(connection: RawConnection) -> None:
            connection.handshake()
            send_fragments(connection, OP_BINARY, 0, size, count=MAX_FRAGMENTS + 10)
            with contextlib.suppress(OSError):
                closed.extend(read_until_close(connection, timeout=30)[-1:])
                connection.send(close_frame(1000))

        with raw_server(script) as url, traced() as peak:
            # No Poll: the run takes about five seconds (traced), the poll interval.
            kept = consume(WebSocket(url), close_timeout=10, poll=0)
            used = peak()
        assert event_names(kept) == OPEN + ["protocol_error", "disconnected"]
        assert kept[4].error == f"message has more than {MAX_FRAGMENTS} fragments"
        assert closed and closed[0][0] == 0x8 and closed[0][1][:2] == (1009).to_bytes(2, "big")
        # Neither the fragments' number nor their bytes are held.
        assert used < 2 * MiB, f"peak {used / MiB:.1f} MiB"


class TestAutomaticPongs:
    """A server flooding pings without reading gets one waiting pong, not a queue."""

    def test_ping_flood_from_a_server_that_never_reads(self) -> None:
        ping = frame(OP_PING, b"p" * 125)
        batch = ping * 256  # 32 KiB
        batches = 400  # 102,400 pings: 13 MiB of pongs if each were queued

        done = threading.Event()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            for _ in range(batches):
                connection.send(batch)
            connection.send(close_frame(1000))
            connection.sock.shutdown(socket.SHUT_WR)
            done.wait(10)  # still never reading, until the client has ended

        pings = 0
        with raw_server(script, receive_buffer=4 * KiB) as url, traced() as peak:
            for event in WebSocket(url).connect(close_timeout=5):
                pings += event.name == "ping"
                last = event
            used = peak()
            done.set()
        assert last.name == "disconnected"
        assert pings == 256 * batches
        assert used < 2 * MiB, f"peak {used / MiB:.1f} MiB"

    def test_empty_ping_flood_from_a_server_that_never_reads(self) -> None:
        """One read holds up to 131,072 empty pings: they must not each leave a pong.

        Pongs replace each other only once the socket was found full
        (``output_blocked``); every ping of the read that finds it full still queues
        its own pong, and they stay queued for as long as the server does not read.
        """
        batch = frame(OP_PING) * (16 * KiB)  # 32 KiB of empty pings
        batches = 64  # 1,048,576 pings: about 6 MiB of pongs, more than the kernel takes
        done = threading.Event()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            for _ in range(batches):
                connection.send(batch)
            connection.send(close_frame(1000))
            connection.sock.shutdown(socket.SHUT_WR)
            # Still never reading, until the client has ended: a million pings take
            # a loaded machine (or Python 3.8) more than ten seconds.
            done.wait(60)

        pings = 0
        waiting = 0  # the most bytes the protocol held for the server
        with raw_server(script, receive_buffer=4 * KiB) as url:
            ws = WebSocket(url)
            for event in ws.connect(close_timeout=5, ping_rate=0):
                pings += event.name == "ping"
                assert ws.session is not None
                waiting = max(waiting, ws.session.protocol.output_size)
                last = event
            done.set()
        assert last.name == "disconnected"
        assert pings == 16 * KiB * batches
        # One empty pong is 6 bytes (header and masking key): allow a few, not
        # a read's worth (262,152 bytes, 43,692 pongs, seen before this test).
        assert waiting <= 1 * KiB, f"{waiting} bytes ({waiting // 6} pongs) waiting"


class TestInflateWork:
    """Inflating costs time linear in the input, and deflate streams per frame are capped."""

    def test_a_frame_of_many_tiny_deflate_streams_is_refused(self) -> None:
        # 800,000 complete 2-byte deflate streams (1.5 MiB): without the cap, each
        # costs a fresh zlib state; before lomond 0.4 this took 25 s of CPU.
        payload = b"\x03\x00" * 800_000

        def script(connection: RawConnection) -> None:
            connection.handshake(DEFLATE_RESPONSE)
            connection.send(frame(OP_BINARY, payload, rsv=4))
            finish(connection)

        with raw_server(script) as url, traced() as peak:
            kept = consume(WebSocket(url, compress=True), close_timeout=5)
            used = peak()
        assert event_names(kept) == OPEN + ["protocol_error", "disconnected"]
        assert kept[4].error == (
            f"compressed frame ends more than {MAX_STREAMS_PER_FRAME} deflate streams"
        )
        assert used < 3 * len(payload) + MiB, f"peak {used / MiB:.1f} MiB"

    @pytest.mark.parametrize("streams", [1, MAX_STREAMS_PER_FRAME])
    def test_input_is_fed_to_zlib_about_once(
        self, streams: int, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """zlib hands back unused input as a copy: fed whole, that was quadratic."""
        part = os.urandom(4 * MiB)  # incompressible: the input is as large as the output
        compressed = b""
        for _ in range(streams):
            compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
            compressed += compressor.compress(part) + compressor.flush(zlib.Z_FINISH)
        fed = count_zlib_input(monkeypatch)

        def script(connection: RawConnection) -> None:
            connection.handshake(DEFLATE_RESPONSE)
            connection.send(frame(OP_BINARY, compressed, rsv=4))
            finish(connection)

        with raw_server(script) as url:
            ws = WebSocket(url, compress=True, max_message_size=64 * MiB)
            sizes: list[int] = []

            def on_event(event: Any) -> None:
                if event.name == "binary":
                    sizes.append(len(event.data))
                    ws.close()

            consume(ws, on_event)
        assert sizes == [streams * len(part)]
        assert sum(fed) < 2 * len(compressed) + MiB, f"{sum(fed)} bytes fed for {len(compressed)}"


def count_zlib_input(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the bytes lomond passes to zlib's decompressors, from now on."""
    fed: list[int] = []
    real = zlib.decompressobj

    class Counting:
        def __init__(self, *args: Any) -> None:
            self._inner = real(*args)

        def decompress(self, data: Any, *args: Any) -> bytes:
            fed.append(len(data))
            return self._inner.decompress(data, *args)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    monkeypatch.setattr(zlib, "decompressobj", Counting)
    return fed


def skip_frame(connection: RawConnection) -> int:
    """Read one client frame without unmasking its payload; return the payload length."""
    _, length, _ = connection.recv_header()
    remaining = length
    while remaining:
        chunk = connection.sock.recv(min(remaining, 256 * KiB))
        if not chunk:
            raise EOFError("client closed the connection")
        remaining -= len(chunk)
    return length


class TestSends:
    """Sending a message costs one copy of it (the masked frame), plus a bounded piece."""

    SIZE = 64 * MiB

    @pytest.fixture(params=["c", "pure-python"])
    def masking(self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
        if request.param == "pure-python":
            monkeypatch.setattr(frames_module, "masked_frame", mask_module.masked_frame_python)
        elif not mask_module.ACCELERATED:
            pytest.skip("the C accelerator is not built")
        return str(request.param)

    @pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
    def test_send_binary(self, masking: str, wrap: Callable[[bytes], Any]) -> None:
        payload = wrap(bytes(self.SIZE))
        received = threading.Event()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            if skip_frame(connection) == self.SIZE:
                received.set()
            finish(connection)

        with raw_server(script) as url:
            ws = WebSocket(url)
            peaks: list[int] = []

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    tracemalloc.start()
                    try:
                        ws.send_binary(payload)
                        peaks.append(tracemalloc.get_traced_memory()[1])
                    finally:
                        tracemalloc.stop()
                    ws.close()

            kept = consume(ws, on_event, close_timeout=10)
        assert received.is_set()
        assert event_names(kept)[-2:] == ["closed", "disconnected"]
        assert peaks[0] < self.SIZE + MiB, f"peak {peaks[0] / MiB:.1f} MiB"


class TestOutputQueue:
    """A thread other than the loop's waits once 4 MiB are queued (``HIGH_WATER``)."""

    def test_a_thread_sending_to_a_server_that_never_reads(self) -> None:
        release = threading.Event()
        message = bytes(MiB)  # allocated before tracing

        def script(connection: RawConnection) -> None:
            connection.handshake()
            release.wait(10)  # never reads

        outcome: list[BaseException] = []
        with raw_server(script, receive_buffer=4 * KiB) as url, traced() as peak:
            ws = WebSocket(url)

            def sender() -> None:
                try:
                    for _ in range(64):  # 64 MiB: 16 times the high-water mark
                        ws.send_binary(message)
                except TransportFail as error:
                    outcome.append(error)

            thread = threading.Thread(target=sender, daemon=True)
            polls = 0
            for event in ws.connect(poll=0.1, close_timeout=0.3):
                if event.name == "ready":
                    thread.start()
                elif event.name == "poll":
                    polls += 1
                    if polls == 5:
                        ws.close()
            thread.join(5)
            used = peak()
            release.set()
        assert len(outcome) == 1, "the sender should have waited, then failed"
        # The high-water mark, one message over it, and the kernel's share aside.
        assert used < HIGH_WATER + 3 * MiB, f"peak {used / MiB:.1f} MiB"


class TestReceivedMessagesAreReleased:
    """Once the application has let go of a message, lomond holds none of its bytes."""

    def test_a_large_message_is_not_kept_until_the_next_read(self) -> None:
        size = 32 * MiB
        ready_for_more = threading.Event()
        chunk = bytes(MiB)  # allocated before tracing starts

        def script(connection: RawConnection) -> None:
            connection.handshake()
            header = bytes((0x82, 127)) + size.to_bytes(8, "big")
            connection.send(header)
            for _ in range(size // MiB):
                connection.send(chunk)
            ready_for_more.wait(5)  # nothing more until the client has measured
            finish(connection)

        held: list[int] = []
        received: list[int] = []
        with raw_server(script) as url:
            ws = WebSocket(url, max_message_size=size)
            tracemalloc.start()
            try:
                for event in ws.connect(poll=0.05, close_timeout=5):
                    if event.name == "binary":
                        received.append(len(event.data))
                    elif event.name == "poll" and received and not held:
                        # The loop is waiting for the next read: measure what it holds.
                        held.append(tracemalloc.get_traced_memory()[0])
                        ready_for_more.set()
                        ws.close()
                    del event
            finally:
                tracemalloc.stop()
        assert received == [size]
        assert held and held[0] < MiB, f"{held[0] / MiB:.1f} MiB held"


class TestReadsAfterAWriteFailure:
    """After a write fails, the loop reads what the kernel holds (for the server's
    close frame): one read at a time, as always, not up to 64 reads (16 MiB) decoded
    and held before the first of their events is handed over."""

    def test_a_reset_behind_megabytes_of_small_messages(self) -> None:
        import struct
        import time

        big = frame(OP_BINARY, bytes(64 * KiB))
        small = frame(OP_BINARY, b"s" * 62) * 1024  # 64 KiB of 64-byte frames
        flooded: list[int] = []

        def script(connection: RawConnection) -> None:
            connection.handshake()
            for _ in range(800):  # 50 MiB read at full speed: the client's buffer grows
                connection.send(big)
            connection.send(frame(OP_TEXT, b"pause"))
            connection.sock.settimeout(0.5)
            sent = 0
            with contextlib.suppress(socket.timeout):
                while True:  # until the client's buffers are full
                    connection.sock.sendall(small)
                    sent += len(small)
            flooded.append(sent)
            linger = struct.pack("ii", 1, 0)
            connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            connection.sock.close()  # a reset

        failed: list[BaseException] = []
        peaks: list[int] = []
        with raw_server(script) as url:
            ws = WebSocket(url)
            for event in ws.connect(ping_rate=0, close_timeout=5):
                if event.name == "text":
                    time.sleep(1.5)  # the application is busy: the server floods, resets
                    tracemalloc.start()
                    try:
                        ws.send_text("ack")  # meets the reset
                    except TransportFail as error:
                        failed.append(error)
                last = event
                del event
            if tracemalloc.is_tracing():
                peaks.append(tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()
        assert last.name == "disconnected"
        assert failed, "the send did not meet the reset"
        # 2 MiB of 64-byte messages is 32,768 events (about 5 MiB) if decoded at once.
        if flooded[0] < 2 * MiB:
            pytest.skip(f"the kernel held only {flooded[0] / MiB:.1f} MiB")
        # One read (256 KiB of 64-byte messages: 4,096 events) at a time, as without
        # the write failure; not everything the kernel held at once.
        assert peaks[0] < 2 * MiB, (
            f"peak {peaks[0] / MiB:.1f} MiB for {flooded[0] / MiB:.1f} MiB in the kernel"
        )
