"""Streaming: messages larger than memory, in both directions (docs/streaming.rst).

Receiving with ``connect(stream=True)`` (``BinaryPart`` / ``TextPart``), and sending
files, iterables and large bytes-like objects as one fragmented message, against the
``websockets`` server and raw socket servers. Memory bounds are measured with
tracemalloc while the data moves.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
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
    OP_PONG,
    OP_TEXT,
    Report,
    close_frame,
    parse_close,
    read_until_close,
    started,
)
from servers import OPEN, RawConnection, frame, names, raw_server, run, websockets_server
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection

from lomond import WebSocket, events
from lomond.persist import persist

pytestmark = pytest.mark.timeout(60)

KiB = 1024
MiB = 1024 * KiB
#: The part size the memory tests use: small, so that a bound on it stands out.
PART = 64 * KiB


def wait_closed(connection: ServerConnection) -> None:
    """Wait for the client's close (the handler then ends without an error logged)."""
    with contextlib.suppress(ConnectionClosed):
        connection.recv()


def parts_of(collected: list[Any]) -> list[Any]:
    return [e for e in collected if e.name in ("binary_part", "text_part")]


def joined(parts: list[Any]) -> Any:
    if parts and parts[0].name == "text_part":
        return "".join(part.text for part in parts)
    return b"".join(part.data for part in parts)


def deflate_raw(data: bytes) -> bytes:
    """A whole message compressed as permessage-deflate sends it (tail stripped)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


DEFLATE_RESPONSE = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"


def send_in_reads(connection: RawConnection, data: bytes, *cuts: int) -> None:
    """Send ``data`` in separate writes at ``cuts``, with a pause between them."""
    start = 0
    for cut in (*cuts, len(data)):
        connection.send(data[start:cut])
        time.sleep(0.05)
        start = cut


class Measured:
    """Runs a connection with tracemalloc on; ``peak`` is the most held above the start."""

    def __init__(self) -> None:
        self.peak = 0

    def run(self, ws: WebSocket, on_event: Callable[[Any], None], **options: Any) -> list[str]:
        seen: list[str] = []
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for event in ws.connect(**options):
                if event.name not in ("binary_part", "text_part") or not seen[-1:] == [event.name]:
                    seen.append(event.name)
                on_event(event)
                del event
            self.peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        return seen


# -- receiving -------------------------------------------------------------------------


class TestReceive:
    @pytest.mark.parametrize("compression", [None, "deflate"])
    def test_messages_come_as_parts_from_websockets(self, compression: str | None) -> None:
        big = bytes(range(256)) * 12_000  # 3 MB
        text = "héllo wörld € 𝄞 " * 50_000

        def handler(connection: ServerConnection) -> None:
            connection.send(big)
            connection.send(text)
            connection.send([b"ab", b"cd", b"ef"])  # fragmented by the server
            connection.send(["é", "ü", ""])
            connection.send(b"")
            wait_closed(connection)

        with websockets_server(handler, compression=compression) as url:
            ws = WebSocket(url, compress=compression is not None, max_message_size=None)
            messages: list[list[Any]] = [[]]

            def on_event(event: Any) -> None:
                if event.name in ("binary_part", "text_part"):
                    messages[-1].append(event)
                    if event.final:
                        messages.append([])
                        if len(messages) == 6:
                            ws.close()

            collected = run(ws, on_event, stream=True)
        assert "binary" not in names(collected) and "text" not in names(collected)
        assert [joined(m) for m in messages[:5]] == [big, text, b"abcdef", "éü", b""]
        for message in messages[:5]:
            assert [part.final for part in message] == [False] * (len(message) - 1) + [True]
            kinds = {part.name for part in message}
            assert len(kinds) == 1
        # Large messages come in several parts, each at most the part size.
        assert len(messages[0]) >= 12 and len(messages[1]) >= 4
        for part in messages[0] + messages[1]:
            size = len(part.data) if part.name == "binary_part" else len(part.text.encode())
            assert size <= 256 * KiB + 3  # a character carried from the part before
        assert names(collected)[-2:] == ["closed", "disconnected"]

    def test_part_size_is_settable(self) -> None:
        def handler(connection: ServerConnection) -> None:
            connection.send(b"x" * 10_000)
            connection.send("é" * 5_000)
            wait_closed(connection)

        with websockets_server(handler) as url:
            ws = WebSocket(url, stream_part_size=1000)
            seen: list[Any] = []

            def on_event(event: Any) -> None:
                if event.name in ("binary_part", "text_part"):
                    seen.append(event)
                    if event.final and event.name == "text_part":
                        ws.close()

            run(ws, on_event, stream=True)
        binary = [p for p in seen if p.name == "binary_part"]
        text = [p for p in seen if p.name == "text_part"]
        assert joined(binary) == b"x" * 10_000 and joined(text) == "é" * 5_000
        assert all(len(p.data) <= 1000 for p in binary) and len(binary) >= 10
        assert all(len(p.text.encode()) <= 1003 for p in text) and len(text) >= 10

    def test_without_stream_messages_are_whole(self) -> None:
        def handler(connection: ServerConnection) -> None:
            connection.send([b"ab", b"cd"])
            wait_closed(connection)

        with websockets_server(handler) as url:
            ws = WebSocket(url)
            collected = run(ws, lambda e: e.name == "binary" and ws.close())
        assert names(collected) == OPEN + ["binary", "closed", "disconnected"]
        assert collected[len(OPEN)].data == b"abcd"

    def test_persist_passes_stream_through(self) -> None:
        def handler(connection: ServerConnection) -> None:
            connection.send(["a", "b"])
            wait_closed(connection)

        with websockets_server(handler) as url:
            ws = WebSocket(url)
            exit_event = threading.Event()
            seen = []
            for event in persist(ws, stream=True, exit_event=exit_event):
                seen.append(event)
                if event.name == "text_part" and event.final:
                    exit_event.set()
        parts = [e for e in seen if e.name == "text_part"]
        assert joined(parts) == "ab" and parts[-1].final and len(parts) >= 2

    @pytest.mark.parametrize("persisting", [False, True], ids=["add", "persist"])
    def test_the_multiplexer_passes_stream_through(self, persisting: bool) -> None:
        from lomond import Multiplexer

        def handler(connection: ServerConnection) -> None:
            connection.send(["a", "b"])
            connection.send(b"whole" * 1000)
            wait_closed(connection)

        with websockets_server(handler) as url:
            mux = Multiplexer()
            sockets = [WebSocket(url, stream_part_size=1024) for _ in range(3)]
            for ws in sockets:
                mux.add(ws, persist=persisting, stream=True)
            seen: dict[WebSocket, list[Any]] = {ws: [] for ws in sockets}
            for ws, event in mux:
                seen[ws].append(event)
                if event.name == "binary_part" and event.final:
                    mux.remove(ws) if persisting else ws.close()
        for ws in sockets:
            texts = [e for e in seen[ws] if e.name == "text_part"]
            binaries = [e for e in seen[ws] if e.name == "binary_part"]
            assert joined(texts) == "ab" and texts[-1].final
            assert joined(binaries) == b"whole" * 1000 and binaries[-1].final
            assert all(len(part.data) <= 1024 for part in binaries)
            assert len(binaries) >= 5
            assert not any(e.name in ("text", "binary") for e in seen[ws])
            assert seen[ws][-1].name == "disconnected"

    def test_a_large_frame_is_received_in_bounded_memory(self) -> None:
        size = 48 * MiB
        block = bytes(range(256)) * 256  # 64 KiB

        def script(connection: RawConnection) -> None:
            connection.handshake()
            # One frame, its payload written a block at a time.
            connection.send(frame(OP_BINARY, b"")[:1] + bytes([127]) + size.to_bytes(8, "big"))
            for _ in range(size // len(block)):
                connection.send(block)
            read_until_close(connection)
            connection.send(close_frame(1000))

        digest = hashlib.sha256()
        received = 0
        with raw_server(script) as url:
            ws = WebSocket(url, max_message_size=None, stream_part_size=PART)

            def on_event(event: Any) -> None:
                nonlocal received
                if event.name == "binary_part":
                    assert len(event.data) <= PART
                    digest.update(event.data)
                    received += len(event.data)
                    if event.final:
                        ws.close()

            measured = Measured()
            seen = measured.run(ws, on_event, stream=True)
        assert received == size
        expected = hashlib.sha256()
        for _ in range(size // len(block)):
            expected.update(block)
        assert digest.digest() == expected.digest()
        assert seen[-3:] == ["binary_part", "closed", "disconnected"]
        # A read (256 KiB) and a part or two; never the message.
        assert measured.peak < 2 * MiB, measured.peak

    def test_a_compressed_message_inflates_in_bounded_memory(self) -> None:
        size = 64 * MiB
        block = bytes(range(256)) * 4  # 1 KiB, compresses well
        compressed = deflate_raw(block * (size // len(block)))
        half = len(compressed) // 2

        def script(connection: RawConnection) -> None:
            connection.handshake(DEFLATE_RESPONSE)
            # Two fragments, RSV1 on the first only.
            connection.send(frame(OP_BINARY, compressed[:half], fin=False, rsv=4))
            connection.send(frame(OP_CONTINUATION, compressed[half:]))
            read_until_close(connection)
            connection.send(close_frame(1000))

        received = 0
        parts = 0
        digest = hashlib.sha256()
        with raw_server(script) as url:
            ws = WebSocket(url, compress=True, max_message_size=None, stream_part_size=PART)

            def on_event(event: Any) -> None:
                nonlocal received, parts
                if event.name == "binary_part":
                    assert len(event.data) <= PART
                    digest.update(event.data)
                    received += len(event.data)
                    parts += 1
                    if event.final:
                        ws.close()

            measured = Measured()
            measured.run(ws, on_event, stream=True)
        assert received == size
        assert parts >= size // PART
        assert digest.digest() == hashlib.sha256(block * (size // len(block))).digest()
        assert measured.peak < 4 * MiB, measured.peak

    def test_max_message_size_still_bounds_a_streamed_message(self) -> None:
        def handler(connection: ServerConnection) -> None:
            connection.send(b"x" * (2 * MiB))
            wait_closed(connection)

        for compression in (None, "deflate"):
            with websockets_server(handler, compression=compression) as url:
                ws = WebSocket(url, compress=compression is not None, max_message_size=MiB)
                collected = run(ws, stream=True)
            assert "protocol_error" in names(collected), compression
            received = sum(len(p.data) for p in parts_of(collected))
            assert received <= MiB
            assert not any(p.final for p in parts_of(collected))

    def test_utf8_split_across_frames_and_reads(self) -> None:
        text = "a€𝄞é" * 1000
        data = text.encode("utf-8")
        first = frame(OP_TEXT, data[:1001], fin=False)
        second = frame(OP_CONTINUATION, data[1001:])

        def script(connection: RawConnection) -> None:
            connection.handshake()
            # Cut inside characters: between frames, and inside a frame's payload.
            both = first + second
            send_in_reads(connection, both, 3, 502, len(first) + 3, len(first) + 1000)
            read_until_close(connection)
            connection.send(close_frame(1000))

        with raw_server(script) as url:
            ws = WebSocket(url)
            collected = run(
                ws, lambda e: e.name == "text_part" and e.final and ws.close(), stream=True
            )
        parts = parts_of(collected)
        assert len(parts) >= 4
        assert joined(parts) == text
        for part in parts:
            # Whole characters: each part encodes and decodes back on its own.
            assert part.text.encode("utf-8").decode("utf-8") == part.text
        assert [p.final for p in parts][-1] is True

    def test_invalid_utf8_fails_as_soon_as_seen(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            # A 1 MiB text frame whose 101st byte is invalid: only 200 bytes come.
            header = bytes([0x80 | OP_TEXT, 127]) + MiB.to_bytes(8, "big")
            connection.send(header + b"x" * 100 + b"\xff" + b"y" * 99)
            frames = read_until_close(connection)
            report.put("close", parse_close(frames[-1][1]) if frames else None)
            connection.send(close_frame(1007))

        with raw_server(script) as url:
            ws = WebSocket(url)
            collected = run(ws, stream=True)
        assert report.get("close")[0] == 1007
        assert "protocol_error" in names(collected)
        assert "".join(p.text for p in parts_of(collected)) in ("", "x" * 100)

    def test_control_frames_between_fragments(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(frame(OP_TEXT, b"ab", fin=False))
            connection.send(frame(OP_PING, b"p"))
            time.sleep(0.05)
            connection.send(frame(OP_CONTINUATION, b"cd", fin=False))
            connection.send(frame(OP_PONG, b"q"))
            connection.send(frame(OP_CONTINUATION, b"ef"))
            frames = read_until_close(connection)
            report.put("frames", frames)
            connection.send(close_frame(1000))

        with raw_server(script) as url:
            ws = WebSocket(url)
            collected = run(
                ws, lambda e: e.name == "text_part" and e.final and ws.close(), stream=True
            )
        assert names(collected) == OPEN + [
            "text_part",
            "ping",
            "text_part",
            "pong",
            "text_part",
            "closed",
            "disconnected",
        ]
        assert [(p.text, p.final) for p in parts_of(collected)] == [
            ("ab", False),
            ("cd", False),
            ("ef", True),
        ]
        assert (OP_PONG, b"p") in report.get("frames")

    def test_connection_lost_mid_message(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.handshake()
            header = bytes([0x80 | OP_BINARY, 127]) + MiB.to_bytes(8, "big")
            connection.send(header + b"x" * 1000)
            time.sleep(0.1)

        with raw_server(script) as url:
            collected = run(WebSocket(url), stream=True)
        assert names(collected) == OPEN + ["binary_part", "disconnected"]
        assert collected[-2].data == b"x" * 1000 and not collected[-2].final
        assert collected[-1].reason == "connection lost in the middle of a frame"


# -- sending -----------------------------------------------------------------------------


class FrameLog:
    """A raw server script that reads the client's frames until its close frame,
    keeping each frame's first byte, its length and a digest of the data messages."""

    def __init__(self, keep_payloads: bool = False) -> None:
        self.report = Report()
        self.keep_payloads = keep_payloads

    def __call__(self, connection: RawConnection) -> None:
        connection.handshake(getattr(self, "extra", b""))
        connection.sock.settimeout(20)
        frames: list[tuple[int, int]] = []
        digest = hashlib.sha256()
        close = None
        payloads: list[bytes] = []
        while True:
            first, length, key = connection.recv_header()
            frames.append((first, length))
            data = self._payload(connection, length, key, digest if first & 0x0F < 8 else None)
            if self.keep_payloads or first & 0x0F >= 8:
                payloads.append(data)
            if first & 0x0F == OP_CLOSE:
                close = parse_close(data)
                break
        self.report.put("frames", frames)
        self.report.put("digest", digest.hexdigest())
        self.report.put("close", close)
        self.report.put("payloads", payloads)
        connection.send(close_frame(close[0] or 1000))

    @staticmethod
    def _payload(connection: RawConnection, length: int, key: bytes, digest: Any) -> bytes:
        kept = b""
        remaining = length
        while remaining:
            chunk = connection._recv_exact(min(remaining, 65536))
            remaining -= len(chunk)
            # Unmasked as the bytes stand in the stream: keep the key's phase.
            phase = (length - remaining - len(chunk)) % 4
            rotated = (key[phase:] + key[:phase]) * 16384
            value = int.from_bytes(chunk, "big") ^ int.from_bytes(rotated[: len(chunk)], "big")
            plain = value.to_bytes(len(chunk), "big")
            if digest is not None:
                digest.update(plain)
            if length <= 65536:
                kept = plain
        return kept


def data_opcodes(frames: list[tuple[int, int]]) -> list[tuple[int, bool]]:
    """``(opcode, fin)`` of the data frames."""
    return [(first & 0x0F, bool(first & 0x80)) for first, _ in frames if first & 0x0F < 8]


def chunks_of(block: bytes, count: int) -> Iterator[bytes]:
    for _ in range(count):
        yield block


class TestSend:
    @pytest.mark.parametrize("compression", [None, "deflate"])
    def test_files_and_iterables_arrive_whole_at_websockets(self, compression: str | None) -> None:
        received: list[Any] = []
        big = bytes(range(256)) * 20_000  # 5 MB

        def handler(connection: ServerConnection) -> None:
            for message in connection:
                received.append(message)

        with websockets_server(handler, compression=compression, max_size=None) as url:
            ws = WebSocket(url, compress=compression is not None)

            def on_ready(event: Any) -> None:
                if event.name == "ready":
                    ws.send_binary(io.BytesIO(big))
                    ws.send_binary(io.BufferedReader(io.BytesIO(big)))  # type: ignore[arg-type]
                    ws.send_binary(iter([b"ab", bytearray(b"cd"), memoryview(b"ef")]))
                    ws.send_binary(chunk for chunk in [big[:1000], big[1000:]])
                    ws.send_text(["hé", "", "llo €"])
                    ws.send_text(iter([]))
                    ws.send_binary(big * 2)  # over 4 MiB: in fragments too
                    ws.send_text("plain")
                    ws.close()

            run(ws, on_ready)
            deadline = time.monotonic() + 5
            while len(received) < 8 and time.monotonic() < deadline:
                time.sleep(0.01)
        assert received == [big, big, b"abcdef", big, "héllo €", "", big * 2, "plain"]

    def test_a_file_is_sent_in_bounded_memory_as_one_fragmented_message(
        self, tmp_path: Any
    ) -> None:
        size = 40 * MiB
        block = bytes(range(256)) * 256
        path = tmp_path / "upload.bin"
        with open(path, "wb") as out:
            for _ in range(size // len(block)):
                out.write(block)
        log = FrameLog()
        with raw_server(log) as url:
            ws = WebSocket(url)

            def on_ready(event: Any) -> None:
                if event.name == "ready":
                    with open(path, "rb") as upload:
                        ws.send_binary(upload)
                    ws.close()

            measured = Measured()
            measured.run(ws, on_ready)
        frames = log.report.get("frames", timeout=20)
        opcodes = data_opcodes(frames)
        assert opcodes[0] == (OP_BINARY, False)
        assert opcodes[-1] == (OP_CONTINUATION, True)
        assert all(op == (OP_CONTINUATION, False) for op in opcodes[1:-1])
        assert sum(length for first, length in frames if first & 0x0F < 8) == size
        expected = hashlib.sha256()
        for _ in range(size // len(block)):
            expected.update(block)
        assert log.report.get("digest") == expected.hexdigest()
        assert measured.peak < 4 * MiB, measured.peak

    @pytest.mark.parametrize("compress", [False, True])
    def test_a_generator_is_sent_in_bounded_memory(self, compress: bool) -> None:
        size = 40 * MiB
        block = bytes(range(256)) * 256
        log = FrameLog()
        if compress:
            log.extra = DEFLATE_RESPONSE  # type: ignore[attr-defined]
        with raw_server(log) as url:
            ws = WebSocket(url, compress=compress)

            def on_ready(event: Any) -> None:
                if event.name == "ready":
                    ws.send_binary(chunks_of(block, size // len(block)))
                    ws.close()

            measured = Measured()
            measured.run(ws, on_ready)
        frames = log.report.get("frames", timeout=20)
        rsv1 = [bool(first & 0x40) for first, _ in frames if first & 0x0F < 8]
        assert rsv1[0] is compress and not any(rsv1[1:])  # RSV1 on the first frame only
        assert data_opcodes(frames)[-1] == (OP_CONTINUATION, True)
        if not compress:
            assert sum(length for first, length in frames if first & 0x0F < 8) == size
        # zlib's compressor state (about 300 KiB at mem_level 5) comes on top.
        assert measured.peak < 5 * MiB, measured.peak

    def test_a_large_bytes_object_from_a_thread_is_not_copied_whole(self) -> None:
        size = 48 * MiB
        data = bytearray(size)
        log = FrameLog()
        with raw_server(log) as url:
            ws = WebSocket(url)

            def send() -> None:
                ws.send_binary(data)
                ws.close()

            def on_ready(event: Any) -> None:
                if event.name == "ready":
                    threading.Thread(target=send, daemon=True).start()

            measured = Measured()
            measured.run(ws, on_ready)
        frames = log.report.get("frames", timeout=20)
        assert len(data_opcodes(frames)) > 1
        assert sum(length for first, length in frames if first & 0x0F < 8) == size
        assert log.report.get("digest") == hashlib.sha256(data).hexdigest()
        assert measured.peak < 4 * MiB, measured.peak

    def test_compressed_stream_is_one_message_inflating_to_the_data(self) -> None:
        log = FrameLog(keep_payloads=True)
        log.extra = DEFLATE_RESPONSE  # type: ignore[attr-defined]
        pieces = [b"lomond " * 1000, b"", b"streams " * 500, b"x"]
        with raw_server(log) as url:
            ws = WebSocket(url, compress=True)

            def on_ready(event: Any) -> None:
                if event.name == "ready":
                    ws.send_binary(iter(pieces))
                    ws.send_binary(b"after")
                    ws.close()

            run(ws, on_ready)
        frames = log.report.get("frames")
        payloads = log.report.get("payloads")
        data = [(f, p) for f, p in zip(frames, payloads) if f[0] & 0x0F < 8]
        stream = [p for f, p in data if f[0] & 0x0F in (OP_BINARY, OP_CONTINUATION)][:-1]
        # The stream's frames up to its final one (the last data frame is "after").
        message = b"".join(p for p in stream)
        inflater = zlib.decompressobj(-15)
        assert inflater.decompress(message + b"\x00\x00\xff\xff") == b"".join(pieces)
        assert not message.endswith(b"\x00\x00\xff\xff")  # the tail is left out
        # The next message uses the same context (context takeover).
        assert inflater.decompress(payloads[-2] + b"\x00\x00\xff\xff") == b"after"

    def test_source_raising_closes_with_1011_and_raises(self) -> None:
        log = FrameLog()
        raised: list[BaseException] = []

        def failing() -> Iterator[bytes]:
            yield b"a" * 1000
            yield b"b" * 1000
            raise ValueError("disk on fire")

        with raw_server(log) as url:
            ws = WebSocket(url)

            def on_ready(event: Any) -> None:
                if event.name == "ready":
                    try:
                        ws.send_binary(failing())
                    except ValueError as error:
                        raised.append(error)

            collected = run(ws, on_ready)
        assert [str(e) for e in raised] == ["disk on fire"]
        assert log.report.get("close")[0] == 1011
        # The message never ended: no final data frame.
        assert data_opcodes(log.report.get("frames")) == [
            (OP_BINARY, False),
            (OP_CONTINUATION, False),
        ]
        assert names(collected)[-2:] == ["closed", "disconnected"]

    def test_bad_chunk_type_is_a_type_error_and_1011(self) -> None:
        log = FrameLog()
        raised: list[BaseException] = []
        with raw_server(log) as url:
            ws = WebSocket(url)

            def on_ready(event: Any) -> None:
                if event.name == "ready":
                    try:
                        ws.send_text(["fine", b"not text"])  # type: ignore[list-item]
                    except TypeError as error:
                        raised.append(error)

            run(ws, on_ready)
        assert "text chunks must be str, not bytes" in str(raised[0])
        assert log.report.get("close")[0] == 1011

    @pytest.mark.parametrize(
        ("method", "value", "message"),
        [
            ("send_binary", "text", "send text with send_text"),
            ("send_binary", 42, "not int"),
            ("send_binary", io.StringIO("x"), "not StringIO"),
            ("send_text", b"bytes", "send bytes with send_binary"),
            ("send_text", 42, "not int"),
        ],
    )
    def test_bad_input_types_are_type_errors(self, method: str, value: Any, message: str) -> None:
        ws = WebSocket("ws://127.0.0.1:9")
        with pytest.raises(TypeError, match=message):
            getattr(ws, method)(value)

    def test_bad_options_are_refused(self) -> None:
        with pytest.raises(TypeError, match="stream must be True or False"):
            WebSocket("ws://127.0.0.1:9").connect(stream="yes")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="stream_part_size"):
            WebSocket("ws://127.0.0.1:9", stream_part_size=0)
        with pytest.raises(TypeError, match="stream_part_size"):
            WebSocket("ws://127.0.0.1:9", stream_part_size=None)  # type: ignore[arg-type]

    def test_a_text_file_read_gives_str(self) -> None:
        class Reader:
            def read(self, size: int) -> str:
                return "text"

        log = FrameLog()
        with raw_server(log) as url:
            ws = WebSocket(url)
            raised: list[BaseException] = []

            def on_ready(event: Any) -> None:
                if event.name == "ready":
                    try:
                        ws.send_binary(Reader())  # type: ignore[arg-type]
                    except TypeError as error:
                        raised.append(error)

            run(ws, on_ready)
        assert "open it in binary mode" in str(raised[0])

    def test_other_threads_wait_for_the_last_fragment(self) -> None:
        """Threads racing sends while a stream goes out: no frame of theirs comes
        between its fragments, and each thread's messages keep their order."""
        log = FrameLog(keep_payloads=True)
        started_stream = threading.Event()

        def slow_stream() -> Iterator[bytes]:
            for index in range(40):
                if index == 2:
                    started_stream.set()
                time.sleep(0.002)
                yield bytes([index]) * 5000

        with raw_server(log) as url:
            ws = WebSocket(url)

            def sender(name: str) -> Callable[[], None]:
                def send() -> None:
                    started_stream.wait(5)
                    for index in range(30):
                        ws.send_text(f"{name}{index}")

                return send

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    with started(sender("a")), started(sender("b")):
                        with started(lambda: ws.send_binary(slow_stream())):
                            pass
                    ws.close()

            run(ws, on_event)
        frames = log.report.get("frames")
        payloads = log.report.get("payloads")
        sequence = [
            (first & 0x0F, bool(first & 0x80), payload)
            for (first, _), payload in zip(frames, payloads)
            if first & 0x0F < 8
        ]
        start = next(i for i, (op, fin, _) in enumerate(sequence) if op == OP_BINARY)
        end = next(i for i in range(start, len(sequence)) if sequence[i][1])
        assert all(op == OP_CONTINUATION for op, _, _ in sequence[start + 1 : end + 1])
        texts = [payload.decode() for op, _, payload in sequence if op == OP_TEXT]
        assert [t for t in texts if t[0] == "a"] == [f"a{i}" for i in range(30)]
        assert [t for t in texts if t[0] == "b"] == [f"b{i}" for i in range(30)]
        assert (
            sum(length for (first, length) in frames if first & 0x0F in (OP_BINARY, 0)) == 200_000
        )

    def test_threads_racing_a_stream_at_websockets(self) -> None:
        received: list[Any] = []

        def handler(connection: ServerConnection) -> None:
            for message in connection:
                received.append(message)

        block = bytes(range(256)) * 1024
        with websockets_server(handler, max_size=None) as url:
            ws = WebSocket(url, compress=False)

            def on_event(event: Any) -> None:
                if event.name == "ready":

                    def texts(name: str) -> Callable[[], None]:
                        return lambda: [ws.send_text(f"{name}{i}") for i in range(50)]

                    with started(lambda: ws.send_binary(chunks_of(block, 64))):
                        with started(texts("a")), started(texts("b")):
                            ws.send_text("loop")  # held, never waits
                    ws.close()

            run(ws, on_event)
            deadline = time.monotonic() + 5
            while len(received) < 102 and time.monotonic() < deadline:
                time.sleep(0.01)
        assert block * 64 in received
        assert [m for m in received if isinstance(m, str) and m[0] == "a"] == [
            f"a{i}" for i in range(50)
        ]
        assert [m for m in received if isinstance(m, str) and m[0] == "b"] == [
            f"b{i}" for i in range(50)
        ]
        assert "loop" in received

    def test_a_stream_from_the_loop_does_not_deadlock_against_an_echo(self) -> None:
        """The loop's thread reads while it streams: the server's echo of the earlier
        messages would otherwise fill both directions' buffers."""
        block = bytes(range(256)) * 1024  # 256 KiB

        def handler(connection: ServerConnection) -> None:
            for message in connection:
                connection.send(message)

        with websockets_server(handler, max_size=None) as url:
            ws = WebSocket(url, max_message_size=None)
            echoed = []

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    for _ in range(4):
                        ws.send_binary(chunks_of(block, 64))  # 16 MiB each
                elif event.name == "binary_part" and event.final:
                    echoed.append(event)
                    if len(echoed) == 4:
                        ws.close()

            watchdog = threading.Timer(30, ws.force_disconnect)
            watchdog.start()
            try:
                collected = run(ws, on_event, stream=True)
            finally:
                watchdog.cancel()
        total = sum(len(p.data) for p in parts_of(collected))
        assert total == 4 * 64 * len(block)
        assert names(collected)[-2:] == ["closed", "disconnected"]

    def test_a_ping_from_another_thread_goes_between_fragments(self) -> None:
        log = FrameLog(keep_payloads=True)
        pinged = threading.Event()

        def stream() -> Iterator[bytes]:
            yield b"a" * 100
            pinged.wait(5)
            yield b"b" * 100

        with raw_server(log) as url:
            ws = WebSocket(url)

            def ping() -> None:
                time.sleep(0.05)
                ws.send_ping(b"between")
                pinged.set()

            def on_ready(event: Any) -> None:
                if event.name == "ready":
                    with started(ping):
                        ws.send_binary(stream())
                    ws.close()

            run(ws, on_ready)
        frames = log.report.get("frames")
        payloads = log.report.get("payloads")
        sequence = [(first & 0x0F, bool(first & 0x80)) for first, _ in frames]
        assert sequence[:4] == [
            (OP_BINARY, False),
            (OP_PING, True),
            (OP_CONTINUATION, False),
            (OP_CONTINUATION, True),
        ]
        assert payloads[1] == b"between"

    def test_close_between_fragments(self) -> None:
        log = FrameLog()
        raised: list[BaseException] = []

        def stream() -> Iterator[bytes]:
            yield b"a" * 100
            ws.close()  # a close frame may go between fragments
            yield b"b" * 100

        with raw_server(log) as url:
            ws = WebSocket(url)

            def on_ready(event: Any) -> None:
                if event.name == "ready":
                    try:
                        ws.send_binary(stream())
                    except Exception as error:  # noqa: BLE001 - checked below
                        raised.append(error)

            run(ws, on_ready)
        assert type(raised[0]).__name__ == "WebSocketClosing"
        assert log.report.get("close")[0] == 1000
        assert data_opcodes(log.report.get("frames")) == [(OP_BINARY, False)]


def test_part_events() -> None:
    part = events.BinaryPart(b"x" * 30, True, 1.0)
    assert part.name == "binary_part" and part.final and part.received_time == 1.0
    assert repr(part) == "BinaryPart(data=b'xxxxxxxxxxxxxxxxxxxxxxxx' + 6 bytes, final=True)"
    text = events.TextPart("hi", False)
    assert text.name == "text_part" and not text.final
    assert repr(text) == "TextPart(text='hi', final=False)"
    with pytest.raises(AttributeError):
        part.other = 1  # type: ignore[attr-defined]
