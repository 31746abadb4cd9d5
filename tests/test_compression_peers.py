"""permessage-deflate against real peers (RFC 7692).

The ``websockets`` server runs with every parameter (context takeover on and off on
each side, window bits 8-15 on each side) and echoes what lomond sends: its inflater
uses exactly the window it agreed to, so a compressor that reaches too far back
fails there. A raw socket server sends what no real server would: a decompression
bomb, and every kind of broken negotiation.
"""

from __future__ import annotations

import random
import socket
import threading
import tracemalloc
import zlib
from typing import Any, Callable, Sequence, Union

import pytest
import websockets
from peers import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    Report,
    close_frame,
    parse_close,
    read_until_close,
    wait_for_eof,
)
from servers import RawConnection, frame, names, raw_server, run, websockets_server
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.sync.server import ServerConnection

from lomond import WebSocket
from lomond.protocol import deflate
from lomond.protocol.deflate import Deflate, PerMessageDeflate

pytestmark = pytest.mark.timeout(60)

KiB = 1024
MiB = 1024 * KiB
TAIL = b"\x00\x00\xff\xff"
RSV1 = 4  # for servers.frame(), which shifts rsv into bits 4-6

Message = Union[str, bytes]
WEBSOCKETS_MAJOR = int(websockets.__version__.split(".")[0])


# -- helpers --------------------------------------------------------------------


def random_bytes(generator: random.Random, count: int) -> bytes:
    return generator.getrandbits(8 * count).to_bytes(count, "little") if count else b""


def tempting(seed: int, count: int = 8) -> list[bytes]:
    """Messages that repeat pieces of earlier ones from 3 to 600 bytes back.

    Random bytes leave a compressor nothing to match but those repeats, so it uses
    every distance its window allows, across message boundaries too, where the
    peer's inflater has only its window to look in.
    """
    generator = random.Random(seed)
    history = bytearray(random_bytes(generator, 600))
    messages = []
    for _ in range(count):
        message = bytearray()
        while len(message) < 400:
            back = generator.choice([3, 100, 250, 256, 257, 300, 400, 500, 600])
            start = len(history) + len(message) - back
            message += (history + message)[start : start + 12]
            message += random_bytes(generator, generator.randrange(0, 8))
        history += message
        messages.append(bytes(message))
    return messages


def zero_bomb(mebibytes: int) -> bytes:
    """A compressed message of ``mebibytes`` MiB of zeros, in about 1 KiB per MiB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MiB)
    first, repeated = (
        compressor.compress(zeros) + compressor.flush(zlib.Z_SYNC_FLUSH) for _ in "ab"
    )
    return (first + repeated * (mebibytes - 1))[: -len(TAIL)]


def deflate_server(**parameters: Any) -> dict[str, Any]:
    """``websockets_server`` options for permessage-deflate with these parameters."""
    return {"compression": None, "extensions": [ServerPerMessageDeflateFactory(**parameters)]}


def echo_reporting(report: Report) -> Callable[[ServerConnection], None]:
    """Echo every message; report what the server negotiated and how the connection ended."""

    def handler(connection: ServerConnection) -> None:
        report.put("extensions", list(connection.protocol.extensions))
        try:
            for message in connection:
                connection.send(message)
        except ConnectionClosed:
            pass
        finally:
            # The code of the close frame the server sent: 1000 echoes ours; the
            # server fails the connection with 1002 when it cannot inflate.
            sent = connection.protocol.close_sent
            report.put("close_code", None if sent is None else sent.code)

    return handler


def server_view(report: Report) -> tuple[int, int, bool, bool] | None:
    """The server's side of the agreement, in lomond's order: server window, client
    window, server_no_context_takeover, client_no_context_takeover."""
    extensions = report.get("extensions")
    if not extensions:
        return None
    (codec,) = extensions
    return (
        codec.local_max_window_bits,
        codec.remote_max_window_bits,
        codec.local_no_context_takeover,
        codec.remote_no_context_takeover,
    )


class Traffic:
    """One lomond connection that sends messages and collects the echoes."""

    def __init__(self, url: str, compress: bool | Deflate = True, **options: Any) -> None:
        self.compressed: list[bool] = []  # per send, from the trace
        self.wire: list[int] = []  # bytes per socket send, from the trace
        self.ws = WebSocket(url, compress=compress, trace=self._trace, **options)
        self.received: list[Message] = []
        self.negotiated: tuple[int, int, bool, bool] | None = None
        self.supports_compression: bool | None = None
        self.events: list[Any] = []

    def _trace(self, record: dict[str, Any]) -> None:
        if record["stage"] in ("send_text", "send_binary"):
            self.compressed.append(record["compressed"])
        elif record["stage"] == "socket_send":
            self.wire.append(record["length"])

    def send(self, message: Message, compress: bool = True) -> None:
        if isinstance(message, str):
            self.ws.send_text(message, compress=compress)
        else:
            self.ws.send_binary(message, compress=compress)

    def run(
        self, messages: Sequence[Message], plain: frozenset[int] = frozenset(), expect: int = -1
    ) -> list[Any]:
        """Send ``messages`` on ready (those at ``plain`` with ``compress=False``);
        close after ``expect`` echoes (default: all)."""
        expected = len(messages) if expect < 0 else expect
        ws = self.ws

        def on_event(event: Any) -> None:
            if event.name == "ready":
                session = ws.session
                assert session is not None
                codec = session.protocol.compression
                if codec is not None:
                    self.negotiated = (
                        codec.server_max_window_bits,
                        codec.client_max_window_bits,
                        codec.server_no_context_takeover,
                        codec.client_no_context_takeover,
                    )
                self.supports_compression = ws.supports_compression
                for index, message in enumerate(messages):
                    self.send(message, compress=index not in plain)
                if not expected:
                    ws.close()
            elif event.name in ("text", "binary"):
                self.received.append(event.text if event.name == "text" else event.data)
                if len(self.received) == expected:
                    ws.close()

        self.events = run(ws, on_event, close_timeout=5)
        return self.events

    @property
    def names(self) -> list[str]:
        return [name for name in names(self.events) if name != "poll"]


def recv_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError("client closed the connection")
        data += chunk
    return data


def recv_frame_bits(connection: RawConnection) -> tuple[int, int, bool, bytes]:
    """Read one client frame: ``(opcode, rsv bits, fin, unmasked payload)``."""
    sock = connection.sock
    first, second = recv_exact(sock, 2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(recv_exact(sock, 2), "big")
    elif length == 127:
        length = int.from_bytes(recv_exact(sock, 8), "big")
    key = recv_exact(sock, 4) if second & 0x80 else b"\0\0\0\0"
    payload = recv_exact(sock, length)
    unmasked = bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))
    return first & 0x0F, (first >> 4) & 0x7, bool(first & 0x80), unmasked


# -- every parameter against the websockets server -------------------------------

# (server_no_context_takeover, client_no_context_takeover): all four combinations.
TAKEOVERS = [(False, False), (True, False), (False, True), (True, True)]
# (server_max_window_bits, client_max_window_bits) the server insists on: every
# server window 9-15 (websockets cannot deflate with 8) and every client window 8-15
# at least once; ``None`` leaves the default of 15.
WINDOWS = [(9, 15), (10, 8), (11, 9), (12, 10), (13, 11), (14, 12), (15, 13), (None, 14)]


def mixed_messages(seed: int) -> list[Message]:
    generator = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "lomond", "deflate", "window"]
    chatter = " ".join(generator.choice(words) for _ in range(300))
    return [
        "Hello",
        "Hello",  # the second one refers back to the first (context takeover)
        "",
        b"",
        chatter,
        chatter.upper(),
        "ünïcödé ✓ " * 40,
        bytes(range(256)) * 8,
        random_bytes(generator, 3000),  # incompressible
        *tempting(seed),
        chatter * 20,  # larger than every window
        "{}",
    ]


class TestRFC7692_WebsocketsServer:
    @pytest.mark.parametrize(("server_bits", "client_bits"), WINDOWS)
    @pytest.mark.parametrize(("server_no_takeover", "client_no_takeover"), TAKEOVERS)
    def test_every_parameter_combination(
        self,
        server_bits: int | None,
        client_bits: int,
        server_no_takeover: bool,
        client_no_takeover: bool,
    ) -> None:
        report = Report()
        options = deflate_server(
            server_max_window_bits=server_bits,
            client_max_window_bits=client_bits,
            server_no_context_takeover=server_no_takeover,
            client_no_context_takeover=client_no_takeover,
        )
        messages = mixed_messages(client_bits)
        with websockets_server(echo_reporting(report), **options) as url:
            traffic = Traffic(url)
            traffic.run(messages)
            agreed = server_view(report)
            close_code = report.get("close_code")
        expected = (server_bits or 15, client_bits, server_no_takeover, client_no_takeover)
        assert traffic.names == ["connecting", "connected", "ready"] + [
            "text" if isinstance(message, str) else "binary" for message in messages
        ] + ["closed", "disconnected"]
        assert traffic.events[2].extensions == {"permessage-deflate"}
        assert traffic.supports_compression is True
        assert traffic.negotiated == expected
        assert agreed == expected
        assert traffic.received == messages
        assert traffic.compressed == [True] * len(messages)
        assert close_code == 1000
        assert traffic.events[-1].graceful is True

    @pytest.mark.parametrize(
        ("options", "expected"),
        [
            # The default server limits both windows to 12 bits (memLevel 5).
            (Deflate(), (12, 12, False, False)),
            (Deflate(server_max_window_bits=9), (9, 12, False, False)),
            (Deflate(server_max_window_bits=11), (11, 12, False, False)),
            (Deflate(server_max_window_bits=15), (12, 12, False, False)),
            (Deflate(client_max_window_bits=8), (12, 8, False, False)),
            (Deflate(client_max_window_bits=9), (12, 9, False, False)),
            (Deflate(client_max_window_bits=15), (12, 12, False, False)),
            (Deflate(client_no_context_takeover=True), (12, 12, False, True)),
            (Deflate(server_no_context_takeover=True), (12, 12, True, False)),
            (
                Deflate(
                    client_max_window_bits=10,
                    server_max_window_bits=10,
                    client_no_context_takeover=True,
                    server_no_context_takeover=True,
                ),
                (10, 10, True, True),
            ),
            (Deflate(level=0), (12, 12, False, False)),
            (Deflate(level=1, mem_level=1), (12, 12, False, False)),
            (Deflate(level=9, mem_level=9), (12, 12, False, False)),
        ],
        ids=repr,
    )
    def test_every_offer(self, options: Deflate, expected: tuple[int, int, bool, bool]) -> None:
        report = Report()
        messages = mixed_messages(7)
        with websockets_server(echo_reporting(report), compression="deflate") as url:
            traffic = Traffic(url, compress=options)
            traffic.run(messages)
            agreed = server_view(report)
        assert traffic.negotiated == expected
        assert agreed == expected
        assert traffic.received == messages
        assert traffic.names[-2:] == ["closed", "disconnected"]

    @pytest.mark.skipif(
        WEBSOCKETS_MAJOR < 17,
        reason="websockets < 17 accepts server_max_window_bits=8, then zlib refuses it",
    )
    def test_a_server_that_cannot_honour_an_offer_declines_compression(self) -> None:
        # websockets cannot deflate with a window of 8 bits, so it declines an offer of
        # server_max_window_bits=8 (RFC 7692 §7.1.2.1); the connection goes on plain.
        report = Report()
        messages: list[Message] = ["plain text " * 20, b"\x01" * 500]
        with websockets_server(echo_reporting(report), compression="deflate") as url:
            traffic = Traffic(url, compress=Deflate(server_max_window_bits=8))
            traffic.run(messages)
            agreed = server_view(report)
        assert agreed is None
        assert traffic.events[2].extensions == set()
        assert traffic.supports_compression is False
        assert traffic.negotiated is None
        assert traffic.received == messages
        assert traffic.compressed == [False, False]

    def test_compress_false_offers_nothing(self) -> None:
        report = Report()
        with websockets_server(echo_reporting(report), compression="deflate") as url:
            traffic = Traffic(url, compress=False)
            traffic.run(["x" * 500])
            agreed = server_view(report)
        assert agreed is None
        assert traffic.events[2].extensions == set()
        assert traffic.received == ["x" * 500]
        assert traffic.compressed == [False]

    def test_per_message_compress_false_and_min_size(self) -> None:
        messages: list[Message] = ["a" * 500, "b" * 500, "c" * 99, "d" * 100, b"", b"e" * 100]
        with websockets_server(echo_reporting(Report()), compression="deflate") as url:
            traffic = Traffic(url, compress=Deflate(min_size=100))
            traffic.run(messages, plain=frozenset({1}))
        assert traffic.received == messages
        assert traffic.compressed == [True, False, False, True, False, True]

    @pytest.mark.parametrize(
        "server_options",
        [
            {"compression": "deflate"},
            deflate_server(
                server_max_window_bits=9,
                client_max_window_bits=8,
                server_no_context_takeover=True,
                client_no_context_takeover=True,
            ),
        ],
        ids=["default", "smallest windows, no context takeover"],
    )
    def test_large_messages(self, server_options: dict[str, Any]) -> None:
        generator = random.Random(3)
        text = "".join(f"line {n}: {n * n} {n % 7 * 'lomond '}\n" for n in range(80_000))
        assert 3 * MiB < len(text) < 5 * MiB
        blocks = [random_bytes(generator, 4096) for _ in range(64)]
        binary = b"".join(generator.choice(blocks) for _ in range(768))  # 3 MiB
        messages: list[Message] = [text, binary, text[: 2 * MiB]]
        with websockets_server(echo_reporting(Report()), max_size=None, **server_options) as url:
            traffic = Traffic(url)
            traffic.run(messages)
        assert traffic.received == messages
        assert traffic.compressed == [True, True, True]
        # Most of the text and the repeated blocks never reach the wire.
        assert sum(traffic.wire) < (len(text) * 1.5 + len(binary)) / 2


class TestRFC7692_WindowOf8Bits:
    """zlib cannot deflate with a 256-byte window; lomond deflates with 512 bytes,
    which reaches back at most 250 bytes, and a server that inflates with exactly
    256 bytes of history decodes every message."""

    def test_messages_compressed_for_a_window_of_8_bits(self) -> None:
        report = Report()
        messages: list[Message] = [
            *tempting(8, count=16),
            " ".join(str(n * n) for n in range(2000)),
            "the same text again " * 30,
        ]
        with websockets_server(
            echo_reporting(report), **deflate_server(client_max_window_bits=8)
        ) as url:
            traffic = Traffic(url)
            traffic.run(messages)
            agreed = server_view(report)
            close_code = report.get("close_code")
        assert agreed == (15, 8, False, False)
        assert traffic.negotiated == (15, 8, False, False)
        assert traffic.received == messages
        # Compressed, not sent plain: 8 bits are honoured, not avoided.
        assert traffic.compressed == [True] * len(messages)
        assert close_code == 1000

    def test_the_server_refuses_a_window_that_is_too_large(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The control: compressing with 10 bits instead reaches back past 256 bytes
        # between messages, and the same server fails the connection.
        monkeypatch.setattr(deflate, "_SMALLEST_ZLIB_WINDOW", 10)
        report = Report()
        messages = tempting(8, count=16)
        with websockets_server(
            echo_reporting(report), **deflate_server(client_max_window_bits=8)
        ) as url:
            traffic = Traffic(url)
            traffic.run(messages)
            close_code = report.get("close_code")
        assert traffic.received != messages
        closing = [event for event in traffic.events if event.name == "closing"]
        assert [event.code for event in closing] == [1002]
        assert close_code == 1002


# -- what goes on the wire ---------------------------------------------------------


class TestRFC7692_6_Rsv1OnTheWire:
    def test_rsv1_only_on_compressed_data_frames(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake(b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
            connection.sock.settimeout(5)
            frames = []
            while True:
                opcode, rsv, fin, payload = recv_frame_bits(connection)
                frames.append((opcode, rsv, fin, payload))
                if opcode == OP_CLOSE:
                    break
            report.put("frames", frames)
            connection.send(close_frame(1000))  # then the server closes the TCP connection

        with raw_server(script) as url:
            ws = WebSocket(url, compress=Deflate(min_size=64))

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    ws.send_text("a" * 100)
                    ws.send_text("b" * 100, compress=False)
                    ws.send_binary(b"c" * 10)
                    ws.send_binary(b"d" * 200)
                    ws.send_text("")
                    ws.send_ping(b"p" * 100)
                    ws.close(1000, "r" * 100)

            collected = run(ws, on_event, close_timeout=5)
            frames = report.get("frames")
        assert [name for name in names(collected) if name != "poll"][-2:] == [
            "closed",
            "disconnected",
        ]
        assert [(opcode, rsv, fin) for opcode, rsv, fin, _ in frames] == [
            (OP_TEXT, RSV1, True),
            (OP_TEXT, 0, True),
            (OP_BINARY, 0, True),
            (OP_BINARY, RSV1, True),
            (OP_TEXT, 0, True),
            (OP_PING, 0, True),
            (OP_CLOSE, 0, True),
        ]
        inflater = zlib.decompressobj(-15)
        assert inflater.decompress(frames[0][3] + TAIL) == b"a" * 100
        assert inflater.decompress(frames[3][3] + TAIL) == b"d" * 200
        assert frames[1][3] == b"b" * 100
        assert frames[5][3] == b"p" * 100
        assert parse_close(frames[6][3]) == (1000, b"r" * 100)


# -- decompression bombs -------------------------------------------------------------


class TestDecompressionBomb:
    @pytest.mark.parametrize(
        ("max_message_size", "budget"),
        [(1 * MiB, 4 * MiB), (None, None)],
        ids=["1 MiB limit", "default 16 MiB limit"],
    )
    def test_zero_bomb_in_one_small_frame(
        self, max_message_size: int | None, budget: int | None
    ) -> None:
        bomb = zero_bomb(256)  # 256 MiB of zeros
        assert len(bomb) < 300 * KiB
        bomb_frame = frame(OP_BINARY, bomb, rsv=RSV1)
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake(b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
            connection.send(bomb_frame)
            frames = read_until_close(connection)
            report.put("frames", frames)
            connection.send(close_frame(1009))

        options = {} if max_message_size is None else {"max_message_size": max_message_size}
        limit = max_message_size or WebSocket("ws://x").max_message_size
        assert limit is not None
        with raw_server(script) as url:
            ws = WebSocket(url, compress=True, **options)
            tracemalloc.start()
            try:
                collected = [event for event in run(ws, close_timeout=5) if event.name != "poll"]
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            frames = report.get("frames")
        assert names(collected) == [
            "connecting",
            "connected",
            "ready",
            "protocol_error",
            "disconnected",
        ]
        assert "max_message_size" in collected[-2].error
        assert collected[-1].graceful is False
        # The server got our close frame, 1009, and nothing else.
        assert [opcode for opcode, _ in frames] == [OP_CLOSE]
        assert parse_close(frames[0][1])[0] == 1009
        # The bomb cost the limit plus a little, never its 256 MiB.
        assert peak < (budget or limit + 4 * MiB), f"peak {peak / MiB:.1f} MiB"


# -- negotiation failures ----------------------------------------------------------------


class TestRFC7692_7_1_NegotiationFailures:
    @pytest.mark.parametrize(
        ("offer", "extensions", "reason"),
        [
            (True, [b"permessage-deflate; foo"], "unknown parameter foo"),
            (True, [b"permessage-deflate; foo=1"], "unknown parameter foo"),
            (
                True,
                [b"permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
                "duplicate parameter server_no_context_takeover",
            ),
            (
                True,
                [b"permessage-deflate; client_max_window_bits=9; client_max_window_bits=9"],
                "duplicate parameter client_max_window_bits",
            ),
            (
                True,
                [b"permessage-deflate; server_max_window_bits=16"],
                "server_max_window_bits=16 is outside 8-15",
            ),
            (
                True,
                [b"permessage-deflate; client_max_window_bits=7"],
                "client_max_window_bits=7 is outside 8-15",
            ),
            (
                True,
                [b"permessage-deflate; server_max_window_bits"],
                "server_max_window_bits needs a value",
            ),
            (
                True,
                [b"permessage-deflate; client_max_window_bits=09"],
                "client_max_window_bits needs a value",
            ),
            # A latin-1 superscript two: a digit to str.isdigit(), not to int().
            (
                True,
                [b"permessage-deflate; server_max_window_bits=\xb2"],
                "server_max_window_bits needs a value",
            ),
            (
                True,
                [b"permessage-deflate; client_no_context_takeover=1"],
                "client_no_context_takeover must not have a value",
            ),
            (
                Deflate(client_max_window_bits=9),
                [b"permessage-deflate; client_max_window_bits=10"],
                "client_max_window_bits=10 exceeds the offered 9",
            ),
            (
                Deflate(server_max_window_bits=9),
                [b"permessage-deflate; server_max_window_bits=10"],
                "server_max_window_bits=10 exceeds the offered 9",
            ),
            (
                Deflate(server_max_window_bits=9),
                [b"permessage-deflate"],
                "server ignored the offered server_max_window_bits=9",
            ),
            (
                Deflate(server_no_context_takeover=True),
                [b"permessage-deflate; client_no_context_takeover"],
                "server ignored the offered server_no_context_takeover",
            ),
            # More than one accepted offer, in one header line or two.
            (
                True,
                [b"permessage-deflate, permessage-deflate"],
                "accepted permessage-deflate more than once",
            ),
            (
                True,
                [b"permessage-deflate", b"permessage-deflate; server_no_context_takeover"],
                "accepted permessage-deflate more than once",
            ),
            # Extensions that were never offered.
            (True, [b"x-webkit-deflate-frame"], "'x-webkit-deflate-frame', which was not offered"),
            (True, [b"permessage-deflate, x-foo"], "'x-foo', which was not offered"),
            (False, [b"permessage-deflate"], "'permessage-deflate', which was not offered"),
        ],
    )
    def test_rejected_with_a_reason_naming_the_problem(
        self, offer: bool | Deflate, extensions: list[bytes], reason: str
    ) -> None:
        lines = b"".join(b"Sec-WebSocket-Extensions: " + value + b"\r\n" for value in extensions)

        def script(connection: RawConnection) -> None:
            connection.handshake(lines)
            wait_for_eof(connection)

        with raw_server(script) as url:
            collected = run(WebSocket(url, compress=offer))
        assert names(collected) == ["connecting", "connected", "rejected", "disconnected"]
        assert reason in collected[2].reason
        assert collected[3].graceful is True


# -- thread safety ----------------------------------------------------------------------


class TestCompressedSendsFromThreads:
    THREADS = 4
    PER_THREAD = 40

    def thread_messages(self, thread: int) -> list[Message]:
        generator = random.Random(thread)
        messages: list[Message] = []
        for index in range(self.PER_THREAD):
            size = generator.choice([0, 10, 300, 5000, 60_000])
            body = f"thread {thread} message {index} " * (size // 24 + 1)
            if generator.random() < 0.5:
                messages.append(body[:size] + f"#{thread}.{index}")
            else:
                messages.append(body[:size].encode() + random_bytes(generator, 50))
        return messages

    @pytest.mark.parametrize(
        "server_options",
        [{"compression": "deflate"}, deflate_server(client_max_window_bits=9)],
        ids=["default", "client window 9"],
    )
    def test_shared_compressor_is_never_corrupted(
        self, server_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Count the compress() calls in progress: the session lock must keep it at one.
        compress = PerMessageDeflate.compress
        counter = threading.Lock()
        in_progress: list[int] = [0]
        seen: list[int] = []

        def counted(codec: PerMessageDeflate, payload: Any) -> bytes:
            with counter:
                in_progress[0] += 1
                seen.append(in_progress[0])
            try:
                return compress(codec, payload)
            finally:
                with counter:
                    in_progress[0] -= 1

        monkeypatch.setattr(PerMessageDeflate, "compress", counted)
        report = Report()
        sent = [self.thread_messages(thread) for thread in range(self.THREADS)]
        total = self.THREADS * self.PER_THREAD
        received: list[Message] = []
        errors: list[BaseException] = []
        start = threading.Barrier(self.THREADS)

        with websockets_server(echo_reporting(report), max_size=None, **server_options) as url:
            ws = WebSocket(url, compress=True)

            def sender(messages: list[Message]) -> None:
                try:
                    start.wait(5)
                    for message in messages:
                        if isinstance(message, str):
                            ws.send_text(message)
                        else:
                            ws.send_binary(message)
                except BaseException as error:  # re-raised in the test's thread
                    errors.append(error)

            threads = [
                threading.Thread(target=sender, args=(messages,), daemon=True) for messages in sent
            ]

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    for thread in threads:
                        thread.start()
                elif event.name in ("text", "binary"):
                    received.append(event.text if event.name == "text" else event.data)
                    if len(received) == total:
                        ws.close()

            collected = run(ws, on_event, close_timeout=5)
            for thread in threads:
                thread.join(5)
            close_code = report.get("close_code")
        assert not errors
        assert seen == [1] * total  # every message compressed, one at a time
        assert close_code == 1000  # the server inflated everything without error
        assert [name for name in names(collected) if name != "poll"][-2:] == [
            "closed",
            "disconnected",
        ]
        # Every message intact, and each thread's messages in the order it sent them.
        assert sorted(map(repr, received)) == sorted(repr(m) for ms in sent for m in ms)
        for thread, messages in enumerate(sent):
            order = {repr(message): index for index, message in enumerate(messages)}
            mine = [order[repr(message)] for message in received if repr(message) in order]
            assert mine == sorted(mine), f"thread {thread}'s messages were reordered"
