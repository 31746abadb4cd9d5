"""Stream mode in the sans-I/O core: parts in (lomond.protocol.streaming), fragments
out (lomond.protocol.fragments), driven with bytes only."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lomond.compression import Deflate
from lomond.errors import WebSocketClosing
from lomond.events import BinaryPart, Event, TextPart
from lomond.protocol import ClientProtocol, State
from lomond.protocol.frames import RSV1, Opcode, build_frame, parse_close_payload
from lomond.protocol.handshake import accept_key, build_request

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x01\x02\x03\x04"
REQUEST = build_request(resource="/", host_header="example.com", key=KEY, agent="test")
TAIL = b"\x00\x00\xff\xff"


def response(*extra: str) -> bytes:
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(KEY)}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


DEFLATE = "Sec-WebSocket-Extensions: permessage-deflate"


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    return build_frame(opcode, payload, None, fin=fin, rsv=rsv)


def opened(compress: bool = False, **options: Any) -> ClientProtocol:
    protocol = ClientProtocol(
        REQUEST,
        KEY,
        deflate=Deflate() if compress else None,
        random_bytes=lambda n: MASK[:n],
        stream=True,
        **options,
    )
    protocol.data_to_send()
    protocol.receive_data(response(DEFLATE) if compress else response())
    protocol.events_received()
    return protocol


def drain(protocol: ClientProtocol) -> list[Event]:
    collected: list[Event] = []
    while True:
        batch = protocol.events_received()
        if not batch:
            return collected
        collected.extend(batch)


def compressed(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def unmask(data: bytes) -> bytes:
    return bytes(b ^ MASK[i % 4] for i, b in enumerate(data))


def client_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """``(first byte, length, unmasked payload)`` of each client frame in ``data``."""
    frames = []
    position = 0
    while position < len(data):
        first, length = data[position], data[position + 1] & 0x7F
        position += 2
        if length == 126:
            length = int.from_bytes(data[position : position + 2], "big")
            position += 2
        elif length == 127:
            length = int.from_bytes(data[position : position + 8], "big")
            position += 8
        position += 4
        frames.append((first, length, unmask(data[position : position + length])))
        position += length
    return frames


def output(protocol: ClientProtocol) -> bytes:
    out = b""
    while True:
        data = protocol.data_to_send()
        if not data:
            return out
        out += data


class TestParts:
    @settings(max_examples=60, deadline=None)
    @given(st.text(min_size=1, max_size=300), st.data())
    def test_text_fed_in_any_cuts_comes_in_whole_characters(self, text: str, data: Any) -> None:
        encoded = text.encode("utf-8")
        middle = data.draw(st.integers(0, len(encoded)))
        stream = frame(Opcode.TEXT, encoded[:middle], fin=False)
        stream += frame(Opcode.PING, b"!") + frame(Opcode.CONTINUATION, encoded[middle:])
        stream += frame(Opcode.PING, b"?")
        cuts = sorted(data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=8)))
        protocol = opened(part_size=7)
        parts: list[Event] = []
        start = 0
        for cut in [*cuts, len(stream)]:
            protocol.receive_data(stream[start:cut])
            parts.extend(drain(protocol))
            start = cut
        assert [e.data for e in parts if e.name == "ping"] == [b"!", b"?"]  # type: ignore[attr-defined]
        parts = [e for e in parts if e.name != "ping"]
        assert all(isinstance(part, TextPart) for part in parts)
        assert "".join(part.text for part in parts) == text  # type: ignore[attr-defined]
        assert [part.final for part in parts].count(True) == 1  # type: ignore[attr-defined]
        assert parts[-1].final  # type: ignore[attr-defined]
        for part in parts:
            assert len(part.text.encode()) <= 7 + 3  # type: ignore[attr-defined]

    def test_one_byte_at_a_time(self) -> None:
        payload = bytes(range(256)) * 4
        stream = frame(Opcode.BINARY, payload[:500], fin=False)
        stream += frame(Opcode.PING, b"!") + frame(Opcode.CONTINUATION, payload[500:])
        protocol = opened()
        collected: list[Event] = []
        for index in range(len(stream)):
            protocol.receive_data(stream[index : index + 1])
            collected.extend(drain(protocol))
        parts = [e for e in collected if isinstance(e, BinaryPart)]
        assert b"".join(p.data for p in parts) == payload
        assert [e.name for e in collected].count("ping") == 1
        assert all(p.data for p in parts[:-1])  # no empty part but the last may be

    def test_invalid_utf8_fails_before_the_frame_is_complete(self) -> None:
        protocol = opened()
        header = bytes([0x81, 127]) + (1 << 20).to_bytes(8, "big")
        protocol.receive_data(header + b"ok" + b"\xc0\xaf")
        collected = drain(protocol)
        # The piece with the invalid bytes is refused whole.
        assert [e.name for e in collected] == ["protocol_error"]
        assert protocol.state is State.FAILING
        first, _, payload = client_frames(output(protocol))[-1]
        assert first & 0x0F == Opcode.CLOSE
        assert parse_close_payload(payload)[0] == 1007

    def test_a_compressed_message_is_inflated_one_part_per_batch(self) -> None:
        data = bytes(range(256)) * 4096  # 1 MiB
        protocol = opened(compress=True, part_size=64 * 1024, max_message_size=None)
        protocol.receive_data(frame(Opcode.BINARY, compressed(data), rsv=RSV1))
        batches = []
        while True:
            batch = protocol.events_received()
            if not batch:
                break
            batches.append(batch)
            assert sum(len(e.data) for e in batch) <= 64 * 1024  # type: ignore[attr-defined]
        parts = [e for batch in batches for e in batch]
        assert len(batches) >= 16
        assert b"".join(p.data for p in parts) == data  # type: ignore[attr-defined]
        assert [p.final for p in parts].count(True) == 1  # type: ignore[attr-defined]

    def test_compressed_bomb_is_refused_at_the_limit(self) -> None:
        protocol = opened(compress=True, part_size=64 * 1024, max_message_size=100_000)
        protocol.receive_data(frame(Opcode.BINARY, compressed(b"\0" * 10_000_000), rsv=RSV1))
        collected = drain(protocol)
        assert collected[-1].name == "protocol_error"
        assert sum(len(e.data) for e in collected if isinstance(e, BinaryPart)) <= 100_000

    def test_compressed_text_split_characters(self) -> None:
        text = "€𝄞" * 30_000
        protocol = opened(compress=True, part_size=1000, max_message_size=None)
        payload = compressed(text.encode())
        protocol.receive_data(frame(Opcode.TEXT, payload[:10], fin=False, rsv=RSV1))
        protocol.receive_data(frame(Opcode.CONTINUATION, payload[10:]))
        parts = drain(protocol)
        assert "".join(p.text for p in parts) == text  # type: ignore[attr-defined]

    def test_empty_messages(self) -> None:
        protocol = opened()
        protocol.receive_data(frame(Opcode.TEXT) + frame(Opcode.BINARY))
        protocol.receive_data(frame(Opcode.TEXT, b"", fin=False) + frame(Opcode.CONTINUATION))
        assert [(e.name, e.final) for e in drain(protocol)] == [  # type: ignore[attr-defined]
            ("text_part", True),
            ("binary_part", True),
            ("text_part", True),
        ]


class TestFragments:
    def test_held_messages_go_after_the_last_fragment(self) -> None:
        protocol = opened()
        protocol.start_message(Opcode.BINARY)
        protocol.send_fragment(b"one")
        assert protocol.send_message(Opcode.TEXT, b"held") is False
        protocol.send_ping(b"p")
        protocol.send_fragment(b"two")
        protocol.send_fragment(b"", final=True)
        frames = [(f & 0x8F, p) for f, _, p in client_frames(output(protocol))]
        assert frames == [
            (Opcode.BINARY, b"one"),
            (Opcode.PING | 0x80, b"p"),
            (Opcode.CONTINUATION, b"two"),
            (Opcode.CONTINUATION | 0x80, b""),
            (Opcode.TEXT | 0x80, b"held"),
        ]

    def test_held_payload_is_copied(self) -> None:
        protocol = opened()
        protocol.start_message(Opcode.BINARY)
        data = bytearray(b"abc")
        protocol.send_message(Opcode.BINARY, memoryview(data))
        data[:] = b"xyz"
        protocol.send_fragment(b"", final=True)
        assert client_frames(output(protocol))[-1][2] == b"abc"

    @pytest.mark.parametrize("no_context_takeover", [False, True])
    def test_compressed_fragments_inflate_to_the_message(self, no_context_takeover: bool) -> None:
        protocol = ClientProtocol(
            REQUEST,
            KEY,
            deflate=Deflate(client_no_context_takeover=no_context_takeover),
            random_bytes=lambda n: MASK[:n],
        )
        protocol.data_to_send()
        protocol.receive_data(response(DEFLATE))
        protocol.events_received()
        pieces = [b"lomond " * 100, b"x", b"streams " * 300]
        for _ in range(2):
            assert protocol.start_message(Opcode.BINARY) is True
            for piece in pieces:
                protocol.send_fragment(piece)
            protocol.send_fragment(b"", final=True)
        frames = client_frames(output(protocol))
        assert [f & 0xF0 for f, _, _ in frames] == [0x40, 0, 0, 0x80] * 2
        inflater = zlib.decompressobj(-15)
        for message in (frames[:4], frames[4:]):
            if no_context_takeover:
                inflater = zlib.decompressobj(-15)
            data = b"".join(p for _, _, p in message)
            assert not data.endswith(TAIL)
            assert inflater.decompress(data + TAIL) == b"".join(pieces)

    def test_abandon_closes_with_1011(self) -> None:
        protocol = opened()
        protocol.start_message(Opcode.TEXT)
        protocol.send_fragment(b"half")
        protocol.send_message(Opcode.TEXT, b"dropped")
        protocol.abandon_message()
        frames = client_frames(output(protocol))
        assert [f & 0x0F for f, _, _ in frames] == [Opcode.TEXT, Opcode.CLOSE]
        assert parse_close_payload(frames[-1][2])[0] == 1011
        assert protocol.state is State.CLOSING
        with pytest.raises(WebSocketClosing):
            protocol.send_fragment(b"more")

    def test_one_message_at_a_time(self) -> None:
        protocol = opened()
        protocol.start_message(Opcode.TEXT)
        with pytest.raises(RuntimeError, match="already"):
            protocol.start_message(Opcode.TEXT)
        protocol.send_fragment(b"", final=True)
        with pytest.raises(RuntimeError, match="no message"):
            protocol.send_fragment(b"")
