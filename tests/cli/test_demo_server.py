"""The demo's echo server: lomond's frame code in the server's role.

:class:`EchoConnection` is tested with bytes alone (whole input, then one byte at a
time); :class:`EchoServer` with lomond itself, with the independent ``websockets``
client, and with a raw socket.
"""

from __future__ import annotations

import socket
import zlib
from typing import Any

import pytest
from servers import names, run
from websockets.sync.client import connect

from lomond import WebSocket
from lomond.cli.demo_server import (
    DEFLATE_RESPONSE,
    BadRequest,
    EchoConnection,
    EchoServer,
    accepts_deflate,
    compress,
    decompress,
    handshake_response,
    parse_request,
)
from lomond.errors import PayloadTooLarge, ProtocolError
from lomond.protocol.frame_reader import FrameReader
from lomond.protocol.frames import RSV1, Opcode, build_close_payload, build_frame

pytestmark = pytest.mark.timeout(30)

KEY = b"\x01\x02\x03\x04"


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    return build_frame(opcode, payload, KEY, fin=fin, rsv=rsv)


def server_frame(opcode: int, payload: bytes = b"", *, rsv: int = 0) -> bytes:
    return build_frame(opcode, payload, None, rsv=rsv)


def close_frame(code: int, reason: str = "") -> bytes:
    return server_frame(Opcode.CLOSE, build_close_payload(code, reason))


def feed(data: bytes, deflate: bool = False, **kwargs: Any) -> tuple[bytes, bool]:
    """Feed ``data`` whole and one byte at a time; both must answer the same."""
    whole = EchoConnection(deflate, **kwargs)
    answer = whole.receive_data(data)
    trickle = EchoConnection(deflate, **kwargs)
    trickled = b"".join(trickle.receive_data(data[i : i + 1]) for i in range(len(data)))
    assert trickled == answer
    assert trickle.closed == whole.closed
    return answer, whole.closed


def read_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """``(opcode, rsv, payload)`` of each server frame in ``data``."""
    reader = FrameReader(lambda header: True)
    reader.feed(data)
    frames = []
    while True:
        frame = reader.next_frame()
        if frame is None:
            return frames
        header, payload = frame
        assert not header.masked, "RFC 6455 §5.1: a server must not mask"
        frames.append((header.opcode, header.rsv, payload))


class TestEchoFrames:
    """RFC 6455 in the server's role: masked frames in, unmasked frames out."""

    def test_text_and_binary_are_echoed_unmasked(self) -> None:
        data = client_frame(Opcode.TEXT, "héllo".encode()) + client_frame(Opcode.BINARY, b"\0\xff")
        answer, closed = feed(data)
        assert answer == server_frame(Opcode.TEXT, "héllo".encode()) + server_frame(
            Opcode.BINARY, b"\0\xff"
        )
        assert not closed

    def test_large_message(self) -> None:
        payload = bytes(range(256)) * 300
        answer, _ = feed(client_frame(Opcode.BINARY, payload))
        assert answer == server_frame(Opcode.BINARY, payload)

    def test_fragments_are_echoed_as_one_message(self) -> None:
        data = (
            client_frame(Opcode.TEXT, b"frag", fin=False)
            + client_frame(Opcode.PING, b"between")  # §5.4: control frames may interleave
            + client_frame(Opcode.CONTINUATION, b"ments")
        )
        answer, _ = feed(data)
        assert read_frames(answer) == [
            (Opcode.PONG, 0, b"between"),
            (Opcode.TEXT, 0, b"fragments"),
        ]

    def test_ping_is_answered_and_pong_ignored(self) -> None:
        answer, _ = feed(client_frame(Opcode.PING, b"p") + client_frame(Opcode.PONG, b"q"))
        assert answer == server_frame(Opcode.PONG, b"p")

    def test_close_is_echoed_and_the_rest_ignored(self) -> None:
        data = client_frame(Opcode.CLOSE, build_close_payload(1000, "bye"))
        answer, closed = feed(data + client_frame(Opcode.TEXT, b"late"))
        assert answer == close_frame(1000, "bye")
        assert closed

    def test_empty_close_is_echoed_empty(self) -> None:
        answer, closed = feed(client_frame(Opcode.CLOSE))
        assert answer == server_frame(Opcode.CLOSE)
        assert closed

    def test_nothing_after_closing(self) -> None:
        connection = EchoConnection(False)
        connection.receive_data(client_frame(Opcode.CLOSE))
        assert connection.receive_data(client_frame(Opcode.TEXT, b"x")) == b""


class TestEchoFailures:
    """A client that breaks the protocol gets a close frame with the right code."""

    @pytest.mark.parametrize(
        "data",
        [
            pytest.param(build_frame(Opcode.TEXT, b"x", None), id="unmasked"),
            pytest.param(client_frame(0x3, b"x"), id="reserved opcode"),
            pytest.param(client_frame(Opcode.TEXT, b"x", rsv=RSV1), id="rsv1 without deflate"),
            pytest.param(client_frame(Opcode.TEXT, b"x", rsv=0x2), id="rsv2"),
            pytest.param(client_frame(Opcode.PING, b"x" * 126), id="control over 125"),
            pytest.param(client_frame(Opcode.PING, b"x", fin=False), id="fragmented control"),
            pytest.param(client_frame(Opcode.CONTINUATION, b"x"), id="continuation first"),
            pytest.param(
                client_frame(Opcode.TEXT, b"x", fin=False) + client_frame(Opcode.TEXT, b"y"),
                id="data inside fragmented message",
            ),
            pytest.param(client_frame(Opcode.CLOSE, b"\x03\xe8\xff"), id="close reason not UTF-8"),
        ],
    )
    def test_protocol_error_1002_or_1007(self, data: bytes) -> None:
        answer, closed = feed(data)
        assert closed
        [(opcode, _, payload)] = read_frames(answer)
        assert opcode == Opcode.CLOSE
        assert int.from_bytes(payload[:2], "big") in (1002, 1007)

    def test_invalid_utf8_is_1007(self) -> None:
        answer, closed = feed(client_frame(Opcode.TEXT, b"\xff\xfe"))
        assert (answer, closed) == (close_frame(1007), True)

    def test_message_too_large_is_1009(self) -> None:
        data = client_frame(Opcode.BINARY, b"x" * 6, fin=False) + client_frame(
            Opcode.CONTINUATION, b"y" * 6
        )
        answer, closed = feed(data, max_message_size=10)
        assert (answer, closed) == (close_frame(1009), True)

    def test_invalid_compressed_data(self) -> None:
        answer, closed = feed(client_frame(Opcode.TEXT, b"\xff\xff\xff", rsv=RSV1), deflate=True)
        assert (answer, closed) == (close_frame(1002), True)

    def test_rsv1_on_a_continuation_frame(self) -> None:
        data = client_frame(Opcode.TEXT, compress(b"ab"), fin=False, rsv=RSV1) + client_frame(
            Opcode.CONTINUATION, b"", rsv=RSV1
        )
        answer, _ = feed(data, deflate=True)
        assert answer == close_frame(1002)

    def test_decompression_is_bounded(self) -> None:
        bomb = compress(b"\0" * 100_000)
        assert len(bomb) < 1000
        answer, _ = feed(
            client_frame(Opcode.BINARY, bomb, rsv=RSV1), deflate=True, max_message_size=1000
        )
        assert answer == close_frame(1009)
        with pytest.raises(PayloadTooLarge):
            decompress(bomb, 1000)


class TestDeflate:
    """permessage-deflate (RFC 7692) without context takeover."""

    def test_compressed_message_is_echoed_compressed(self) -> None:
        message = b"squeeze me " * 40
        answer, _ = feed(client_frame(Opcode.TEXT, compress(message), rsv=RSV1), deflate=True)
        [(opcode, rsv, payload)] = read_frames(answer)
        assert (opcode, rsv) == (Opcode.TEXT, RSV1)
        assert len(payload) < len(message) // 4
        # Decoded by zlib itself, with the tail restored (RFC 7692 §7.2.2).
        assert zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff") == message

    def test_uncompressed_message_stays_uncompressed(self) -> None:
        answer, _ = feed(client_frame(Opcode.TEXT, b"plain"), deflate=True)
        assert answer == server_frame(Opcode.TEXT, b"plain")

    def test_every_message_stands_alone(self) -> None:
        # No context takeover: the same message compresses to the same bytes each time.
        assert compress(b"again and again") == compress(b"again and again")
        assert decompress(compress(b"again and again"), 100) == b"again and again"

    def test_invalid_deflate_data(self) -> None:
        with pytest.raises(ProtocolError):
            decompress(b"\xff\xff", 100)

    @pytest.mark.parametrize(
        ("offer", "accepted"),
        [
            ("permessage-deflate", True),
            ("permessage-deflate; client_max_window_bits", True),
            ("permessage-deflate; client_max_window_bits=12; server_no_context_takeover", True),
            ("x-webkit-deflate-frame, permessage-deflate; client_no_context_takeover", True),
            ("permessage-deflate; server_max_window_bits=10", False),
            ("permessage-deflate; unknown_parameter", False),
            ("x-webkit-deflate-frame", False),
            ("", False),
            ("; client_max_window_bits", False),
        ],
    )
    def test_which_offers_are_accepted(self, offer: str, accepted: bool) -> None:
        assert accepts_deflate(offer) is accepted


class TestHandshake:
    """The opening handshake in the server's role (RFC 6455 §4.2)."""

    REQUEST = (
        b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13"
    )

    def test_rfc_example(self) -> None:
        resource, headers = parse_request(self.REQUEST)
        assert resource == "/chat"
        response, deflate = handshake_response(headers)
        assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        # RFC 6455 §1.3's worked example.
        assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response
        assert response.endswith(b"\r\n\r\n")
        assert not deflate
        assert b"Sec-WebSocket-Extensions" not in response

    def test_deflate_is_answered(self) -> None:
        _, headers = parse_request(
            self.REQUEST + b"\r\nSec-WebSocket-Extensions: permessage-deflate"
        )
        response, deflate = handshake_response(headers)
        assert deflate
        assert f"\r\nSec-WebSocket-Extensions: {DEFLATE_RESPONSE}\r\n".encode() in response

    @pytest.mark.parametrize(
        "head",
        [
            b"POST / HTTP/1.1\r\nHost: x",
            b"GET /\r\nHost: x",
            b"GET / HTTP/1.1\r\nno colon here",
            b"GET / HTTP/1.1\r\n: empty name",
        ],
    )
    def test_malformed_requests(self, head: bytes) -> None:
        with pytest.raises(BadRequest):
            parse_request(head)

    @pytest.mark.parametrize(
        "drop", [b"Upgrade: websocket\r\n", b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"]
    )
    def test_not_an_upgrade(self, drop: bytes) -> None:
        _, headers = parse_request(self.REQUEST.replace(drop, b""))
        with pytest.raises(BadRequest):
            handshake_response(headers)

    def test_wrong_version(self) -> None:
        _, headers = parse_request(self.REQUEST.replace(b"Version: 13", b"Version: 8"))
        with pytest.raises(BadRequest, match="13"):
            handshake_response(headers)


class TestEchoServer:
    """The server over real sockets."""

    @pytest.mark.parametrize("compress_messages", [False, True])
    def test_with_lomond(self, compress_messages: bool) -> None:
        with EchoServer() as server:
            ws = WebSocket(server.url, proxies={}, compress=compress_messages)
            texts = []

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    ws.send_text("one " * 100)
                    ws.send_binary(b"two")
                    ws.send_ping(b"three")
                elif event.name == "text":
                    texts.append(event.text)
                elif event.name == "pong":
                    ws.close()

            collected = run(ws, on_event, ping_rate=0, close_timeout=5)
        assert names(collected) == [
            "connecting",
            "connected",
            "ready",
            "poll",
            "text",
            "binary",
            "pong",
            "closed",
            "disconnected",
        ]
        assert collected[2].extensions == ({"permessage-deflate"} if compress_messages else set())
        assert texts == ["one " * 100]
        assert collected[-1].graceful

    def test_with_the_websockets_client(self) -> None:
        with EchoServer() as server:
            with connect(server.url, compression="deflate") as client:
                client.send("compress me " * 50)
                assert client.recv(timeout=5) == "compress me " * 50
                client.send(b"\x00\x01")
                assert client.recv(timeout=5) == b"\x00\x01"
                client.ping(b"hi").wait(5)

    def test_not_a_websocket_request(self) -> None:
        with EchoServer() as server:
            port = int(server.url.rsplit(":", 1)[1].strip("/"))
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                response = b""
                while True:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    response += chunk
        assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")

    def test_client_leaving_early_is_harmless(self) -> None:
        with EchoServer() as server:
            port = int(server.url.rsplit(":", 1)[1].strip("/"))
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\n")
            ws = WebSocket(server.url, proxies={})
            collected = run(ws, lambda event: event.name == "ready" and ws.close())
        assert collected[-1].graceful

    def test_stop_without_start(self) -> None:
        server = EchoServer()
        server.stop()
