"""lomond.protocol.client: ClientProtocol driven with bytes only.

Every input goes through :func:`feed`, which follows h11's pattern: the bytes are fed
whole, then one byte at a time, then split in two at every boundary, and every way
must give the same events and the same outgoing bytes. The server's upgrade response
is part of the input, so the handshake parser is held to the same standard.

Outgoing frames use a fixed masking key through the injected ``random_bytes``, so
client bytes can be compared with golden values and unmasked to check close codes.
"""

from __future__ import annotations

import random
import tracemalloc
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lomond.compression import Deflate
from lomond.errors import WebSocketClosed, WebSocketClosing, WebSocketUnavailable
from lomond.events import Binary, Event, Ping, Pong, Text
from lomond.protocol import ClientProtocol, State
from lomond.protocol.frames import (
    RSV1,
    RSV2,
    RSV3,
    Opcode,
    build_close_payload,
    build_frame,
    parse_close_payload,
)
from lomond.protocol.handshake import accept_key, build_request

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x01\x02\x03\x04"
REQUEST = build_request(resource="/", host_header="example.com", key=KEY, agent="test")
TAIL = b"\x00\x00\xff\xff"


def fixed_key(count: int) -> bytes:
    """The injected key source: every masking key is 01 02 03 04."""
    return MASK[:count]


def upgrade_response(
    *extra: str, status: str = "101 Switching Protocols", omit: Iterable[str] = ()
) -> bytes:
    """A server's response to REQUEST: valid unless told otherwise."""
    required = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Accept": accept_key(KEY),
    }
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{name}: {value}" for name, value in required.items() if name not in omit]
    lines += extra
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


RESPONSE = upgrade_response()
DEFLATE_RESPONSE = upgrade_response("Sec-WebSocket-Extensions: permessage-deflate")
READY = (
    "Ready(response=<response HTTP/1.1 101 Switching Protocols>, protocol=None, extensions=set())"
)
DEFLATE_READY = (
    "Ready(response=<response HTTP/1.1 101 Switching Protocols>, "
    "protocol=None, extensions={'permessage-deflate'})"
)


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    """A server frame: unmasked."""
    return build_frame(opcode, payload, None, fin=fin, rsv=rsv)


def text(value: str, *, fin: bool = True) -> bytes:
    return frame(Opcode.TEXT, value.encode("utf-8"), fin=fin)


def close_frame(code: int | None = 1000, reason: str = "") -> bytes:
    return frame(Opcode.CLOSE, build_close_payload(code, reason))


def frame_header(opcode: int, length: int, *, fin: bool = True, rsv: int = 0) -> bytes:
    """Only the header of a server frame whose payload is ``length`` bytes."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    if length < 126:
        return bytes((first, length))
    if length < 0x10000:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")


def deflate(data: bytes, compressor: Any = None) -> bytes:
    """Compress one message as a server would (RFC 7692 §7.2.1)."""
    if compressor is None:
        compressor = zlib.compressobj(wbits=-15)
    compressed: bytes = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert compressed.endswith(TAIL)
    return compressed[:-4]


def inflate(data: bytes) -> bytes:
    return zlib.decompressobj(wbits=-15).decompress(data + TAIL)


# -- looking at what came out -------------------------------------------------


def describe(event: Event) -> str:
    """An event with all its fields, untruncated (unlike ``repr``)."""
    fields = []
    for cls in reversed(type(event).__mro__):
        slots = cls.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot not in ("received_time", "_json"):
                fields.append(f"{slot}={getattr(event, slot)!r}")
    return f"{type(event).__name__}({', '.join(fields)})"


@dataclass(frozen=True)
class Sent:
    """A frame the client sent, unmasked."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv: int = 0


def sent_frames(data: bytes) -> list[Sent]:
    """Cut the client's bytes into frames and unmask them, independently of lomond."""
    frames = []
    position = 0
    while position < len(data):
        first, second = data[position], data[position + 1]
        # RFC 6455 §5.3: a client masks every frame.
        assert second & 0x80, "client frame not masked"
        length = second & 0x7F
        position += 2
        if length >= 126:
            size = 2 if length == 126 else 8
            length = int.from_bytes(data[position : position + size], "big")
            position += size
        key = data[position : position + 4]
        masked = data[position + 4 : position + 4 + length]
        assert len(key) + len(masked) == 4 + length, "a partial frame was sent"
        payload = bytes(octet ^ key[index % 4] for index, octet in enumerate(masked))
        frames.append(Sent(first & 0xF, payload, bool(first & 0x80), first >> 4 & 0x7))
        position += 4 + length
    return frames


@dataclass
class Outcome:
    """Everything a protocol produced from one input."""

    events: list[Event]
    sent: bytes
    state: State

    @property
    def names(self) -> list[str]:
        return [event.name for event in self.events]

    @property
    def described(self) -> list[str]:
        return [describe(event) for event in self.events]

    @property
    def frames(self) -> list[Sent]:
        return sent_frames(self.sent)

    @property
    def close_code(self) -> int | None:
        """The code of the close frame the client sent; it must be the last frame."""
        closes = [sent for sent in self.frames if sent.opcode == Opcode.CLOSE]
        assert len(closes) == 1, self.frames
        assert self.frames[-1].opcode == Opcode.CLOSE
        return parse_close_payload(closes[0].payload)[0]


def new_protocol(**options: Any) -> ClientProtocol:
    options.setdefault("random_bytes", fixed_key)
    return ClientProtocol(REQUEST, KEY, **options)


def run(chunks: Iterable[bytes], *, eof: bool = False, **options: Any) -> Outcome:
    protocol = new_protocol(**options)
    assert protocol.data_to_send() == REQUEST
    events: list[Event] = []
    sent = b""
    for chunk in chunks:
        protocol.receive_data(chunk)
        batch, data = drain(protocol)
        events += batch
        sent += data
    if eof:
        protocol.receive_eof()
        batch, data = drain(protocol)
        events += batch
        sent += data
    return Outcome(events, sent, protocol.state)


def drain(protocol: ClientProtocol) -> tuple[list[Event], bytes]:
    """Collect events until none are left, as the session does (a protocol error
    behind undelivered events is only acted on at the next call)."""
    events: list[Event] = []
    sent = b""
    while True:
        batch = protocol.events_received()
        sent += protocol.data_to_send()
        if not batch:
            return events, sent
        events += batch


def chunkings(data: bytes) -> Iterator[list[bytes]]:
    yield [data[index : index + 1] for index in range(len(data))]
    for index in range(1, len(data)):
        yield [data[:index], data[index:]]


def feed(data: bytes, *, eof: bool = False, **options: Any) -> Outcome:
    """Feed ``data`` whole, byte by byte and split at every boundary; all must agree."""
    expected = run([data], eof=eof, **options)
    for chunks in chunkings(data):
        outcome = run(chunks, eof=eof, **options)
        how = "byte by byte" if len(chunks) != 2 else f"split after byte {len(chunks[0])}"
        assert (outcome.described, outcome.sent, outcome.state) == (
            expected.described,
            expected.sent,
            expected.state,
        ), f"fed {how}, the result differs from feeding the data whole"
    return expected


def open_protocol(*extra_headers: str, **options: Any) -> ClientProtocol:
    """A protocol past a successful handshake, with its events and output collected."""
    protocol = new_protocol(**options)
    assert protocol.data_to_send() == REQUEST
    protocol.receive_data(upgrade_response(*extra_headers))
    assert [event.name for event in protocol.events_received()] == ["ready"]
    assert protocol.state is State.OPEN
    return protocol


def collect(protocol: ClientProtocol) -> Outcome:
    return Outcome(protocol.events_received(), protocol.data_to_send(), protocol.state)


def assert_failed(outcome: Outcome, code: int) -> None:
    """The connection is failed with ``ProtocolError(error, critical=False)``
    and a close frame carrying ``code``; then we wait for the server's close."""
    assert outcome.names[-1] == "protocol_error", outcome.described
    error = outcome.events[-1]
    assert error.critical is False
    assert isinstance(error.error, str) and error.error
    assert outcome.close_code == code
    assert outcome.state is State.FAILING


# -- the opening handshake ----------------------------------------------------


class TestRFC6455_4_OpeningHandshake:
    def test_the_request_is_sent_first_and_once(self) -> None:
        protocol = new_protocol()
        assert protocol.state is State.CONNECTING
        assert protocol.data_to_send() == REQUEST
        assert protocol.data_to_send() == b""
        assert protocol.events_received() == []

    def test_valid_upgrade_is_ready(self) -> None:
        outcome = feed(RESPONSE)
        assert outcome.described == [READY]
        assert outcome.sent == b""
        assert outcome.state is State.OPEN
        ready = outcome.events[0]
        assert ready.response.status_code == 101
        assert ready.response.get("sec-websocket-accept") == accept_key(KEY)

    def test_nothing_happens_until_the_blank_line(self) -> None:
        protocol = new_protocol()
        protocol.receive_data(RESPONSE[:-1])
        assert protocol.events_received() == []
        assert protocol.state is State.CONNECTING
        protocol.receive_data(RESPONSE[-1:])
        assert [event.name for event in protocol.events_received()] == ["ready"]

    def test_chosen_subprotocol(self) -> None:
        outcome = feed(
            upgrade_response("Sec-WebSocket-Protocol: superchat"), protocols=["chat", "superchat"]
        )
        assert outcome.names == ["ready"]
        assert outcome.events[0].protocol == "superchat"

    def test_server_may_choose_no_subprotocol(self) -> None:
        outcome = feed(RESPONSE, protocols=["chat"])
        assert outcome.names == ["ready"]
        assert outcome.events[0].protocol is None

    def test_frames_in_the_same_chunk_as_the_header(self) -> None:
        outcome = feed(RESPONSE + text("first") + frame(Opcode.BINARY, b"\x00") + close_frame())
        assert outcome.described == [
            READY,
            "Text(text='first')",
            "Binary(data=b'\\x00')",
            "Closing(code=1000, reason='')",
        ]

    @pytest.mark.parametrize(
        "status", ["200 OK", "301 Moved Permanently", "403 Forbidden", "503 Service Unavailable"]
    )
    def test_status_other_than_101_is_rejected(self, status: str) -> None:
        data = f"HTTP/1.1 {status}\r\nRetry-After: 5\r\n\r\n".encode()
        outcome = feed(data)
        assert outcome.names == ["rejected", "disconnected"]
        rejected, disconnected = outcome.events
        assert rejected.response.status_code == int(status[:3])
        assert rejected.response.get("retry-after") == "5"
        assert status[:3] in rejected.reason
        # Rejected, then Disconnected(graceful=True), as in 0.3.x.
        assert (disconnected.reason, disconnected.graceful) == ("closed", True)
        assert outcome.sent == b""
        assert outcome.state is State.DISCONNECTED

    @pytest.mark.parametrize(
        "response",
        [
            pytest.param(upgrade_response(omit=["Sec-WebSocket-Accept"]), id="missing-accept"),
            pytest.param(
                upgrade_response(
                    "Sec-WebSocket-Accept: " + accept_key(b"x" * 24),
                    omit=["Sec-WebSocket-Accept"],
                ),
                id="wrong-accept",
            ),
            pytest.param(upgrade_response(omit=["Upgrade"]), id="missing-upgrade"),
            pytest.param(upgrade_response("Upgrade: h2c", omit=["Upgrade"]), id="wrong-upgrade"),
            pytest.param(upgrade_response(omit=["Connection"]), id="missing-connection"),
            pytest.param(
                upgrade_response("Connection: keep-alive", omit=["Connection"]),
                id="wrong-connection",
            ),
            pytest.param(
                upgrade_response("Sec-WebSocket-Protocol: other"), id="unoffered-subprotocol"
            ),
            pytest.param(DEFLATE_RESPONSE, id="unoffered-permessage-deflate"),
            pytest.param(
                upgrade_response("Sec-WebSocket-Extensions: x-webkit-deflate-frame"),
                id="unoffered-extension",
            ),
            pytest.param(b"SSH-2.0-OpenSSH_9.0\r\n\r\n", id="not-http"),
        ],
    )
    def test_invalid_upgrade_is_rejected(self, response: bytes) -> None:
        outcome = feed(response, protocols=["chat"])
        assert outcome.names == ["rejected", "disconnected"]
        rejected, disconnected = outcome.events
        assert rejected.reason
        assert disconnected.graceful is True
        assert outcome.sent == b""

    def test_reason_names_the_problem(self) -> None:
        outcome = feed(upgrade_response(omit=["Sec-WebSocket-Accept"]))
        assert "Sec-WebSocket-Accept" in outcome.events[0].reason

    def test_data_after_a_rejection_is_ignored(self) -> None:
        data = b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\n" + text("not a frame")
        outcome = feed(data, eof=True)
        assert outcome.names == ["rejected", "disconnected"]

    def test_empty_chunks_are_harmless(self) -> None:
        data = RESPONSE + text("hi")
        outcome = run([b"", data[:50], b"", b"", data[50:], b""])
        assert outcome.described == [READY, "Text(text='hi')"]

    def test_eof_before_the_response(self) -> None:
        outcome = run([], eof=True)
        assert outcome.names == ["disconnected"]
        assert outcome.events[0].graceful is False

    def test_eof_in_the_middle_of_the_response(self) -> None:
        outcome = feed(RESPONSE[:40], eof=True)
        assert outcome.names == ["disconnected"]
        assert outcome.events[0].graceful is False
        assert outcome.state is State.DISCONNECTED


class TestResponseHeaderLimits:
    """A header block over 64 KiB is rejected; so is one of more than 256 lines."""

    @staticmethod
    def padded_response(total: int) -> bytes:
        """A valid upgrade response exactly ``total`` bytes long."""
        base = upgrade_response("X-Pad: ")
        return upgrade_response("X-Pad: " + "p" * (total - len(base)))

    def test_exactly_64_kib_is_accepted(self) -> None:
        response = self.padded_response(64 * 1024)
        assert len(response) == 65536
        assert run([response]).names == ["ready"]
        assert run([response[:30000], response[30000:]]).names == ["ready"]

    def test_one_byte_more_is_rejected(self) -> None:
        response = self.padded_response(64 * 1024 + 1)
        for chunks in ([response], [response[:65536], response[65536:]]):
            outcome = run(chunks)
            assert outcome.names == ["rejected", "disconnected"]
            assert outcome.events[1].graceful is True

    def test_an_endless_header_is_rejected_without_waiting_for_its_end(self) -> None:
        protocol = new_protocol()
        protocol.data_to_send()
        protocol.receive_data(b"HTTP/1.1 101 Switching Protocols\r\n")
        line = b"X-Pad: " + b"p" * 1000 + b"\r\n"
        names: list[str] = []
        for _ in range(80):  # 80 KB, never a blank line
            protocol.receive_data(line)
            names += [event.name for event in protocol.events_received()]
        assert names == ["rejected", "disconnected"]
        assert protocol.data_to_send() == b""

    def test_256_header_lines_are_accepted(self) -> None:
        response = upgrade_response(*(f"X-{index}: {index}" for index in range(253)))
        assert response.count(b"\r\n") == 1 + 256 + 1
        assert run([response]).names == ["ready"]

    def test_257_header_lines_are_rejected(self) -> None:
        response = upgrade_response(*(f"X-{index}: {index}" for index in range(254)))
        outcome = run([response])
        assert outcome.names == ["rejected", "disconnected"]
        assert outcome.events[1].graceful is True


class TestRFC7692_Negotiation:
    @pytest.mark.parametrize(
        ("extension", "expected"),
        [
            ("permessage-deflate", (15, 15, False, False)),
            ("permessage-deflate; client_max_window_bits=10", (15, 10, False, False)),
            ('permessage-deflate; client_max_window_bits="9"', (15, 9, False, False)),
            ("permessage-deflate; server_max_window_bits=12", (12, 15, False, False)),
            ("permessage-deflate; server_no_context_takeover", (15, 15, True, False)),
            ("permessage-deflate; client_no_context_takeover", (15, 15, False, True)),
            ("PerMessage-Deflate", (15, 15, False, False)),
        ],
    )
    def test_accepted(self, extension: str, expected: tuple[int, int, bool, bool]) -> None:
        protocol = new_protocol(deflate=Deflate())
        protocol.receive_data(upgrade_response(f"Sec-WebSocket-Extensions: {extension}"))
        (ready,) = protocol.events_received()
        assert describe(ready) == DEFLATE_READY
        codec = protocol.compression
        assert codec is not None
        assert (
            codec.server_max_window_bits,
            codec.client_max_window_bits,
            codec.server_no_context_takeover,
            codec.client_no_context_takeover,
        ) == expected

    def test_server_may_decline(self) -> None:
        outcome = feed(RESPONSE, deflate=Deflate())
        assert outcome.described == [READY]

    @pytest.mark.parametrize(
        ("offer", "extension"),
        [
            (Deflate(), "permessage-deflate; foo"),
            (Deflate(), "permessage-deflate; foo=1"),
            (
                Deflate(),
                "permessage-deflate; server_no_context_takeover;server_no_context_takeover",
            ),
            (Deflate(), "permessage-deflate; server_max_window_bits=12; server_max_window_bits=12"),
            (Deflate(), "permessage-deflate; server_max_window_bits=16"),
            (Deflate(), "permessage-deflate; server_max_window_bits=7"),
            (Deflate(), "permessage-deflate; server_max_window_bits=abc"),
            (Deflate(), "permessage-deflate; server_max_window_bits"),
            (Deflate(), "permessage-deflate; client_max_window_bits=16"),
            (Deflate(), "permessage-deflate; client_max_window_bits"),
            (Deflate(), "permessage-deflate; server_no_context_takeover=1"),
            (Deflate(), "permessage-deflate; client_no_context_takeover=true"),
            (Deflate(), "permessage-deflate, permessage-deflate"),
            (Deflate(client_max_window_bits=10), "permessage-deflate; client_max_window_bits=12"),
            (Deflate(server_max_window_bits=10), "permessage-deflate; server_max_window_bits=12"),
            (Deflate(server_no_context_takeover=True), "permessage-deflate"),
            (Deflate(), "permessage-deflate, x-unknown"),
        ],
    )
    def test_invalid_parameters_are_rejected(self, offer: Deflate, extension: str) -> None:
        outcome = run([upgrade_response(f"Sec-WebSocket-Extensions: {extension}")], deflate=offer)
        assert outcome.names == ["rejected", "disconnected"]
        assert outcome.events[1].graceful is True


# -- data frames --------------------------------------------------------------


class TestRFC6455_5_6_DataFrames:
    def test_text(self) -> None:
        outcome = feed(RESPONSE + text("Hello"))
        assert outcome.described == [READY, "Text(text='Hello')"]
        assert type(outcome.events[1]) is Text

    def test_rfc_golden_text_frame(self) -> None:
        # RFC 6455 §5.7: a single-frame unmasked text message.
        outcome = feed(RESPONSE + b"\x81\x05\x48\x65\x6c\x6c\x6f")
        assert outcome.described == [READY, "Text(text='Hello')"]

    def test_binary(self) -> None:
        outcome = feed(RESPONSE + frame(Opcode.BINARY, b"\x00\xff"))
        assert outcome.described == [READY, "Binary(data=b'\\x00\\xff')"]
        assert type(outcome.events[1].data) is bytes

    def test_empty_messages(self) -> None:
        outcome = feed(RESPONSE + text("") + frame(Opcode.BINARY, b""))
        assert outcome.described == [READY, "Text(text='')", "Binary(data=b'')"]

    def test_multibyte_text(self) -> None:
        outcome = feed(RESPONSE + text("κόσμε €𝄞"))
        assert outcome.events[1].text == "κόσμε €𝄞"

    def test_16_bit_length(self) -> None:
        payload = bytes(range(256)) + b"tail"
        outcome = feed(RESPONSE + frame(Opcode.BINARY, payload))
        assert outcome.events[1].data == payload

    def test_64_bit_length(self) -> None:
        payload = b"\x5a" * 70000
        data = RESPONSE + frame(Opcode.BINARY, payload)
        for chunks in ([data], [data[:200], data[200:50000], data[50000:]]):
            outcome = run(chunks)
            assert outcome.names == ["ready", "binary"]
            assert outcome.events[1].data == payload

    def test_several_messages_in_order(self) -> None:
        outcome = feed(RESPONSE + text("one") + frame(Opcode.BINARY, b"two") + text("three"))
        assert outcome.described == [
            READY,
            "Text(text='one')",
            "Binary(data=b'two')",
            "Text(text='three')",
        ]

    def test_nothing_is_sent_in_reply_to_data(self) -> None:
        assert feed(RESPONSE + text("x") + frame(Opcode.BINARY, b"y")).sent == b""


class TestRFC6455_5_4_Fragmentation:
    def test_text_in_three_fragments(self) -> None:
        data = (
            RESPONSE
            + text("Hel", fin=False)
            + frame(Opcode.CONTINUATION, b"l", fin=False)
            + frame(Opcode.CONTINUATION, b"o")
        )
        assert feed(data).described == [READY, "Text(text='Hello')"]

    def test_rfc_golden_fragments(self) -> None:
        # RFC 6455 §5.7: a fragmented unmasked text message.
        data = RESPONSE + b"\x01\x03\x48\x65\x6c" + b"\x80\x02\x6c\x6f"
        assert feed(data).described == [READY, "Text(text='Hello')"]

    def test_binary_in_fragments(self) -> None:
        data = (
            RESPONSE
            + frame(Opcode.BINARY, b"\x01", fin=False)
            + frame(Opcode.CONTINUATION, b"\x02")
        )
        assert feed(data).described == [READY, "Binary(data=b'\\x01\\x02')"]

    def test_empty_fragments(self) -> None:
        data = (
            RESPONSE
            + text("", fin=False)
            + frame(Opcode.CONTINUATION, b"", fin=False)
            + frame(Opcode.CONTINUATION, b"")
        )
        assert feed(data).described == [READY, "Text(text='')"]

    def test_a_character_split_between_fragments(self) -> None:
        euro = "€".encode()
        data = (
            RESPONSE
            + frame(Opcode.TEXT, b"a" + euro[:1], fin=False)
            + frame(Opcode.CONTINUATION, euro[1:2], fin=False)
            + frame(Opcode.CONTINUATION, euro[2:] + b"b")
        )
        assert feed(data).described == [READY, "Text(text='a€b')"]

    def test_control_frames_between_fragments(self) -> None:
        data = (
            RESPONSE
            + text("Hel", fin=False)
            + frame(Opcode.PING, b"ping")
            + frame(Opcode.CONTINUATION, b"l", fin=False)
            + frame(Opcode.PONG, b"pong")
            + frame(Opcode.CONTINUATION, b"o")
        )
        outcome = feed(data)
        assert outcome.described == [
            READY,
            "Ping(data=b'ping')",
            "Pong(data=b'pong')",
            "Text(text='Hello')",
        ]
        assert outcome.frames == [Sent(Opcode.PONG, b"ping")]

    def test_a_message_after_a_fragmented_one(self) -> None:
        data = (
            RESPONSE
            + text("a", fin=False)
            + frame(Opcode.CONTINUATION, b"b")
            + text("c", fin=False)
            + frame(Opcode.CONTINUATION, b"d")
        )
        assert feed(data).described == [READY, "Text(text='ab')", "Text(text='cd')"]

    def test_close_between_fragments_drops_the_partial_message(self) -> None:
        data = RESPONSE + text("Hel", fin=False) + close_frame(1000, "bye")
        assert feed(data).described == [READY, "Closing(code=1000, reason='bye')"]


class TestRFC6455_5_5_ControlFrames:
    def test_ping_is_answered_with_a_pong_of_the_same_data(self) -> None:
        outcome = feed(RESPONSE + frame(Opcode.PING, b"hi"))
        assert outcome.described == [READY, "Ping(data=b'hi')"]
        # The pong is ready to send by the time the Ping event is collected.
        assert outcome.sent == b"\x8a\x82\x01\x02\x03\x04ik"

    def test_empty_ping(self) -> None:
        outcome = feed(RESPONSE + frame(Opcode.PING))
        assert outcome.described == [READY, "Ping(data=b'')"]
        assert outcome.sent == b"\x8a\x80\x01\x02\x03\x04"

    def test_ping_of_125_bytes(self) -> None:
        payload = bytes(range(125))
        outcome = feed(RESPONSE + frame(Opcode.PING, payload))
        assert outcome.frames == [Sent(Opcode.PONG, payload)]

    def test_without_auto_pong_nothing_is_sent(self) -> None:
        outcome = feed(RESPONSE + frame(Opcode.PING, b"hi"), auto_pong=False)
        assert outcome.described == [READY, "Ping(data=b'hi')"]
        assert outcome.sent == b""

    def test_every_ping_gets_its_pong(self) -> None:
        outcome = feed(RESPONSE + frame(Opcode.PING, b"1") + frame(Opcode.PING, b"2"))
        assert outcome.frames == [Sent(Opcode.PONG, b"1"), Sent(Opcode.PONG, b"2")]

    def test_while_output_is_blocked_a_waiting_pong_answers_only_the_latest_ping(self) -> None:
        # RFC 6455 §5.5.3: while the server does not read, a newer ping replaces the
        # waiting pong, so a server flooding pings cannot grow the output queue.
        protocol = open_protocol()
        protocol.output_blocked = True
        for index in range(1000):
            protocol.receive_data(frame(Opcode.PING, str(index).encode()))
        assert [event.name for event in protocol.events_received()] == ["ping"] * 1000
        assert sent_frames(protocol.data_to_send()) == [Sent(Opcode.PONG, b"999")]

    def test_a_pong_behind_other_frames_is_not_replaced(self) -> None:
        protocol = open_protocol()
        protocol.output_blocked = True
        protocol.receive_data(frame(Opcode.PING, b"1"))
        protocol.send_message(Opcode.TEXT, b"reply")
        protocol.receive_data(frame(Opcode.PING, b"2"))
        protocol.receive_data(frame(Opcode.PING, b"3"))
        assert sent_frames(protocol.data_to_send()) == [
            Sent(Opcode.PONG, b"1"),
            Sent(Opcode.TEXT, b"reply"),
            Sent(Opcode.PONG, b"3"),
        ]

    def test_pong(self) -> None:
        outcome = feed(RESPONSE + frame(Opcode.PONG, b"unsolicited"))
        assert outcome.described == [READY, "Pong(data=b'unsolicited')"]
        assert outcome.sent == b""

    @pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
    def test_payload_over_125_bytes(self, opcode: Opcode) -> None:
        payload = b"\x03\xe8" + b"x" * 124  # 126 bytes; a valid close payload otherwise
        outcome = feed(RESPONSE + frame(opcode, payload))
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1002)

    @pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
    def test_fragmented_control_frame(self, opcode: Opcode) -> None:
        outcome = feed(RESPONSE + frame(opcode, b"", fin=False))
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1002)

    def test_oversized_control_frame_is_refused_from_its_header(self) -> None:
        outcome = feed(RESPONSE + frame_header(Opcode.PING, 126))
        assert_failed(outcome, 1002)


# -- failing the connection (RFC 6455 §7.1.7) ---------------------------------


class TestRFC6455_5_2_FramingErrors:
    @pytest.mark.parametrize("rsv", [RSV1, RSV2, RSV3, RSV1 | RSV2 | RSV3])
    @pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY, Opcode.PING])
    def test_reserved_bits_without_an_extension(self, opcode: Opcode, rsv: int) -> None:
        outcome = feed(RESPONSE + frame(opcode, b"x", rsv=rsv))
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1002)

    @pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
    def test_reserved_opcode(self, opcode: int) -> None:
        outcome = feed(RESPONSE + frame(opcode, b"x"))
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1002)

    def test_reserved_opcode_is_refused_from_its_header(self) -> None:
        outcome = feed(RESPONSE + frame_header(0x3, 1000))
        assert_failed(outcome, 1002)

    @pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.CLOSE])
    def test_masked_server_frame(self, opcode: Opcode) -> None:
        # RFC 6455 §5.1: "A client MUST close a connection if it detects a masked frame."
        outcome = feed(RESPONSE + build_frame(opcode, b"\x03\xe8", MASK))
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1002)

    def test_continuation_without_a_message(self) -> None:
        outcome = feed(RESPONSE + frame(Opcode.CONTINUATION, b"x"))
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1002)

    def test_continuation_after_a_finished_message(self) -> None:
        outcome = feed(RESPONSE + text("done") + frame(Opcode.CONTINUATION, b"x"))
        assert outcome.names == ["ready", "text", "protocol_error"]
        assert_failed(outcome, 1002)

    @pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
    def test_new_data_frame_inside_a_fragmented_message(self, opcode: Opcode) -> None:
        outcome = feed(RESPONSE + text("a", fin=False) + frame(opcode, b"b"))
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1002)

    def test_64_bit_length_with_the_top_bit_set(self) -> None:
        outcome = feed(RESPONSE + b"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x01")
        assert outcome.names == ["ready", "protocol_error"]
        assert outcome.events[-1].critical is False
        assert outcome.close_code in (1002, 1009)

    def test_no_more_data_events_once_failing(self) -> None:
        outcome = feed(
            RESPONSE
            + frame(0x3)
            + text("ignored")
            + frame(Opcode.PING, b"ignored")
            + frame(Opcode.BINARY, b"ignored")
        )
        assert outcome.names == ["ready", "protocol_error"]
        assert len(outcome.frames) == 1  # the close frame, and no pong
        assert_failed(outcome, 1002)

    def test_second_violation_while_failing_gives_no_second_error(self) -> None:
        outcome = feed(RESPONSE + frame(0x3) + frame(0x4) + frame(Opcode.CONTINUATION, b"x"))
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1002)

    def test_servers_close_right_behind_the_bad_frame_is_read(self) -> None:
        # Bytes already received after the offending frame are not left unread: the
        # server's close in the same chunk ends the closing handshake at once.
        outcome = feed(RESPONSE + frame(0x3) + close_frame(1002))
        assert outcome.names == ["ready", "protocol_error"]
        assert outcome.close_code == 1002
        assert outcome.state is State.FAILED

    def test_invalid_close_while_failing_gives_up_without_a_second_error(self) -> None:
        outcome = feed(RESPONSE + frame(0x3) + frame(Opcode.CLOSE, b"\x03"))
        assert outcome.names == ["ready", "protocol_error", "disconnected"]
        assert outcome.events[2].graceful is False
        assert outcome.close_code == 1002  # one close frame, not two

    def test_close_while_failing_sends_nothing_more(self) -> None:
        protocol = _failing()
        protocol.data_to_send()
        assert protocol.close() is False
        assert protocol.echo_close() is False
        assert protocol.data_to_send() == b""

    def test_server_close_then_eof_ends_a_failed_connection(self) -> None:
        outcome = feed(RESPONSE + frame(0x3) + close_frame(1002), eof=True)
        # No Closed event: the close was ours, answering a failure.
        assert outcome.names == ["ready", "protocol_error", "disconnected"]
        error, disconnected = outcome.events[1:]
        assert disconnected.graceful is False
        assert disconnected.reason == error.error
        assert outcome.state is State.DISCONNECTED

    def test_violation_after_our_close_is_critical(self) -> None:
        # Our close frame is already out: a close frame is sent once (RFC 6455 §5.5.1).
        protocol = open_protocol()
        protocol.close()
        closing = protocol.data_to_send()
        protocol.receive_data(frame(0x3))
        outcome = collect(protocol)
        assert outcome.names == ["protocol_error", "disconnected"]
        assert outcome.events[0].critical is True
        assert outcome.events[1].graceful is False
        assert outcome.sent == b""
        assert sent_frames(closing) == [Sent(Opcode.CLOSE, b"\x03\xe8goodbye")]


class TestRFC6455_8_1_Utf8:
    @pytest.mark.parametrize(
        "payload",
        [
            pytest.param(b"\xff", id="invalid-byte"),
            pytest.param(b"ok\xc0\xaf", id="overlong"),
            pytest.param(b"\xed\xa0\x80", id="surrogate"),
            pytest.param(b"\xf4\x90\x80\x80", id="above-U+10FFFF"),
            pytest.param(b"ends in the middle \xe2\x82", id="truncated"),
            pytest.param("κόσμε".encode() + b"\xed\xa0\x80edited", id="surrogate-inside"),
        ],
    )
    def test_invalid_text(self, payload: bytes) -> None:
        outcome = feed(RESPONSE + frame(Opcode.TEXT, payload))
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1007)

    def test_invalid_bytes_in_binary_are_fine(self) -> None:
        outcome = feed(RESPONSE + frame(Opcode.BINARY, b"\xff\xc0\xaf"))
        assert outcome.names == ["ready", "binary"]

    def test_fails_at_the_first_invalid_fragment(self) -> None:
        # The message is not finished, but the invalid byte settles it (fail fast).
        outcome = feed(RESPONSE + frame(Opcode.TEXT, b"ok\xff", fin=False))
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1007)

    def test_fails_when_the_next_fragment_breaks_a_character(self) -> None:
        data = (
            RESPONSE
            + frame(Opcode.TEXT, b"ok\xe2\x82", fin=False)
            + frame(Opcode.CONTINUATION, b"(", fin=False)
        )
        outcome = feed(data)
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1007)

    def test_character_left_incomplete_by_the_last_fragment(self) -> None:
        data = RESPONSE + frame(Opcode.TEXT, b"a\xe2", fin=False) + frame(Opcode.CONTINUATION, b"")
        outcome = feed(data)
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1007)

    @pytest.mark.parametrize("length", [21, 125, 126, 200, 70000])
    def test_fails_inside_a_partly_received_frame(self, length: int) -> None:
        # Autobahn 6.4.3/6.4.4: one frame arriving in chops must fail after the chop
        # holding the invalid sequence, before the rest of the frame arrives.
        valid = "κόσμε".encode()
        data = RESPONSE + frame_header(Opcode.TEXT, length) + valid + b"\xf4\x90"
        outcome = feed(data)
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1007)

    @pytest.mark.parametrize("length", [30, 300])
    def test_rest_of_the_invalid_frame_changes_nothing(self, length: int) -> None:
        # Once failed on the first chops, the remaining chops of the same frame (and
        # the server's close after it) must not fail the connection a second time.
        payload = b"ok\xff" + b"x" * (length - 3)
        outcome = feed(RESPONSE + frame(Opcode.TEXT, payload))
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1007)
        closed = feed(RESPONSE + frame(Opcode.TEXT, payload) + close_frame(1007), eof=True)
        assert closed.names == ["ready", "protocol_error", "disconnected"]
        assert closed.close_code == 1007

    @pytest.mark.parametrize("length", [20, 125, 126, 300])
    def test_fails_inside_a_partly_received_continuation(self, length: int) -> None:
        data = (
            RESPONSE
            + frame(Opcode.TEXT, b"abc", fin=False)
            + frame_header(Opcode.CONTINUATION, length)
            + b"def\xff"
        )
        outcome = feed(data)
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1007)

    def test_partial_continuation_completes_a_character_from_the_previous_fragment(self) -> None:
        # The check of a partial frame must carry the state of the message so far.
        tail = "€".encode()[1:] + b"x" * 198
        head = RESPONSE + frame(Opcode.TEXT, "€".encode()[:1], fin=False)
        head += frame_header(Opcode.CONTINUATION, len(tail))
        partial = feed(head + tail[:10])
        assert partial.names == ["ready"]
        assert partial.sent == b""
        complete = feed(head + tail)
        assert complete.described == [READY, f"Text(text='€{'x' * 198}')"]

    @pytest.mark.parametrize("length", [30, 200])
    def test_partial_continuation_breaks_a_character_from_the_previous_fragment(
        self, length: int
    ) -> None:
        head = RESPONSE + frame(Opcode.TEXT, b"\xe2", fin=False)
        outcome = feed(head + frame_header(Opcode.CONTINUATION, length) + b"(")
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1007)

    @pytest.mark.parametrize("length", [30, 300])
    def test_valid_partial_frame_is_left_alone(self, length: int) -> None:
        # A partial frame ending in the middle of a character is not an error yet.
        outcome = feed(RESPONSE + frame_header(Opcode.TEXT, length) + b"abc\xe2\x82")
        assert outcome.names == ["ready"]
        assert outcome.sent == b""

    def test_partial_binary_frame_is_not_checked(self) -> None:
        outcome = feed(RESPONSE + frame_header(Opcode.BINARY, 300) + b"\xff\xfe")
        assert outcome.names == ["ready"]

    def test_partial_compressed_frame_is_not_checked_before_inflating(self) -> None:
        data = DEFLATE_RESPONSE + frame_header(Opcode.TEXT, 300, rsv=RSV1) + b"\xff\xfe"
        assert feed(data, deflate=Deflate()).names == ["ready"]


class TestRFC6455_5_5_1_ClosePayloads:
    def test_one_byte_payload(self) -> None:
        outcome = feed(RESPONSE + frame(Opcode.CLOSE, b"\x03"))
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1002)

    @pytest.mark.parametrize(
        "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2999, 5000, 65535]
    )
    def test_invalid_code(self, code: int) -> None:
        outcome = feed(RESPONSE + frame(Opcode.CLOSE, code.to_bytes(2, "big") + b"bye"))
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1002)

    @pytest.mark.parametrize("reason", [b"\xff", b"ok\xe2\x82", b"\xed\xa0\x80"])
    def test_reason_not_utf8(self, reason: bytes) -> None:
        outcome = feed(RESPONSE + frame(Opcode.CLOSE, b"\x03\xe8" + reason))
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1007)

    @pytest.mark.parametrize(
        "code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]
    )
    def test_valid_code(self, code: int) -> None:
        outcome = feed(RESPONSE + close_frame(code, "why"))
        assert outcome.described == [READY, f"Closing(code={code}, reason='why')"]
        assert type(outcome.events[1].code) is int

    def test_longest_reason(self) -> None:
        reason = "é" * 61 + "x"  # 123 bytes: the payload is exactly 125
        outcome = feed(RESPONSE + frame(Opcode.CLOSE, b"\x03\xe8" + reason.encode()))
        assert outcome.names == ["ready", "closing"]
        assert outcome.events[1].reason == reason

    def test_empty_payload(self) -> None:
        outcome = feed(RESPONSE + frame(Opcode.CLOSE))
        assert outcome.described == [READY, "Closing(code=None, reason='')"]


class TestMaxMessageSize:
    """``max_message_size``: larger messages fail the connection with 1009."""

    def test_a_message_of_exactly_the_limit(self) -> None:
        outcome = feed(RESPONSE + frame(Opcode.BINARY, b"x" * 100), max_message_size=100)
        assert outcome.names == ["ready", "binary"]

    def test_one_byte_over(self) -> None:
        outcome = feed(RESPONSE + frame(Opcode.BINARY, b"x" * 101), max_message_size=100)
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1009)

    def test_text_is_measured_in_bytes(self) -> None:
        outcome = feed(RESPONSE + text("é" * 51), max_message_size=100)
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1009)

    def test_refused_from_the_header_before_the_payload_arrives(self) -> None:
        outcome = feed(RESPONSE + frame_header(Opcode.BINARY, 4096), max_message_size=1000)
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1009)

    def test_a_huge_declared_length_is_refused_at_once(self) -> None:
        outcome = feed(RESPONSE + frame_header(Opcode.TEXT, 1 << 40), max_message_size=1 << 20)
        assert_failed(outcome, 1009)

    def test_fragments_add_up(self) -> None:
        ok = (
            RESPONSE
            + frame(Opcode.BINARY, b"x" * 60, fin=False)
            + frame(Opcode.CONTINUATION, b"y" * 40)
        )
        assert feed(ok, max_message_size=100).names == ["ready", "binary"]
        over = (
            RESPONSE
            + frame(Opcode.BINARY, b"x" * 60, fin=False)
            + frame(Opcode.CONTINUATION, b"y" * 41)
        )
        outcome = feed(over, max_message_size=100)
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1009)

    def test_fragment_refused_from_its_header(self) -> None:
        data = (
            RESPONSE
            + frame(Opcode.BINARY, b"x" * 60, fin=False)
            + frame_header(Opcode.CONTINUATION, 41, fin=False)
        )
        assert_failed(feed(data, max_message_size=100), 1009)

    def test_control_frames_do_not_count(self) -> None:
        data = (
            RESPONSE
            + frame(Opcode.BINARY, b"x" * 90, fin=False)
            + frame(Opcode.PING, b"p" * 100)
            + frame(Opcode.CONTINUATION, b"y" * 10)
        )
        assert feed(data, max_message_size=100).names == ["ready", "ping", "binary"]

    def test_the_limit_is_per_message(self) -> None:
        data = RESPONSE + frame(Opcode.BINARY, b"x" * 80) + frame(Opcode.BINARY, b"y" * 80)
        assert feed(data, max_message_size=100).names == ["ready", "binary", "binary"]

    def test_fragmented_messages_start_from_zero(self) -> None:
        data = (
            RESPONSE
            + frame(Opcode.BINARY, b"x" * 60, fin=False)
            + frame(Opcode.CONTINUATION, b"y" * 40)
            + frame(Opcode.BINARY, b"z" * 60, fin=False)
            + frame(Opcode.CONTINUATION, b"w" * 40)
        )
        assert feed(data, max_message_size=100).names == ["ready", "binary", "binary"]

    def test_none_means_no_limit(self) -> None:
        payload = b"x" * (1 << 20)
        outcome = run([RESPONSE + frame(Opcode.BINARY, payload)], max_message_size=None)
        assert outcome.names == ["ready", "binary"]


class TestMemoryBounds:
    """``max_message_size`` is enforced while reading, before the memory is spent.

    The server keeps streaming the payload of a frame lomond has refused (it may do
    so until close_timeout): those bytes must be skipped, not buffered.
    """

    @staticmethod
    def peak_memory_while_receiving(protocol: ClientProtocol, megabytes: int) -> int:
        chunk = bytes(64 * 1024)
        tracemalloc.start()
        try:
            for _ in range(megabytes * 16):
                protocol.receive_data(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return peak

    def test_payload_of_a_frame_refused_as_too_large(self) -> None:
        protocol = open_protocol(max_message_size=1024)
        protocol.receive_data(frame_header(Opcode.BINARY, 1 << 40))
        assert [event.name for event in protocol.events_received()] == ["protocol_error"]
        assert self.peak_memory_while_receiving(protocol, 8) < 1 << 20
        assert protocol.events_received() == []

    def test_oversized_frame_while_failing(self) -> None:
        protocol = open_protocol(max_message_size=1024)
        protocol.receive_data(frame(0x3) + frame_header(Opcode.BINARY, 1 << 40))
        assert [event.name for event in protocol.events_received()] == ["protocol_error"]
        assert self.peak_memory_while_receiving(protocol, 8) < 1 << 20
        assert protocol.events_received() == []


# -- closing --------------------------------------------------------------------


class TestRFC6455_7_ClosingHandshake:
    def test_server_initiated(self) -> None:
        protocol = open_protocol()
        protocol.receive_data(close_frame(1001, "going away"))
        outcome = collect(protocol)
        assert outcome.described == ["Closing(code=1001, reason='going away')"]
        assert outcome.sent == b""  # the echo waits until the application has seen Closing
        assert protocol.state is State.REMOTE_CLOSING
        # The application may still send while handling Closing (docs/sending.rst).
        assert protocol.can_send
        protocol.send_message(Opcode.TEXT, b"last words")
        assert protocol.echo_close() is True
        assert sent_frames(protocol.data_to_send()) == [
            Sent(Opcode.TEXT, b"last words"),
            Sent(Opcode.CLOSE, b"\x03\xe9going away"),
        ]
        assert protocol.state is State.CLOSED
        protocol.receive_eof()
        assert [describe(event) for event in protocol.events_received()] == [
            "Disconnected(reason='closed', graceful=True)"
        ]
        assert protocol.state is State.DISCONNECTED

    def test_server_close_without_payload_is_echoed_without_payload(self) -> None:
        protocol = open_protocol()
        protocol.receive_data(frame(Opcode.CLOSE))
        assert [describe(event) for event in protocol.events_received()] == [
            "Closing(code=None, reason='')"
        ]
        protocol.echo_close()
        assert protocol.data_to_send() == b"\x88\x80\x01\x02\x03\x04"

    def test_echo_only_once(self) -> None:
        protocol = open_protocol()
        protocol.receive_data(close_frame())
        assert protocol.echo_close() is True
        protocol.data_to_send()
        assert protocol.echo_close() is False
        assert protocol.close() is False
        assert protocol.data_to_send() == b""

    def test_application_may_answer_with_its_own_code(self) -> None:
        protocol = open_protocol()
        protocol.receive_data(close_frame(1000))
        assert protocol.close(1001, "bye") is True
        assert sent_frames(protocol.data_to_send()) == [Sent(Opcode.CLOSE, b"\x03\xe9bye")]
        assert protocol.state is State.CLOSED

    def test_nothing_is_read_after_the_server_close(self) -> None:
        # h11's trailing-data check: whatever follows the close frame is ignored,
        # even bytes that would be a protocol violation.
        outcome = feed(RESPONSE + close_frame() + text("late") + frame(0x3) + b"\xff" * 10)
        assert outcome.described == [READY, "Closing(code=1000, reason='')"]
        assert outcome.sent == b""
        assert outcome.state is State.REMOTE_CLOSING

    def test_client_initiated(self) -> None:
        protocol = open_protocol()
        assert protocol.close() is True
        # Golden: close 1000 "goodbye", masked with 01 02 03 04.
        assert protocol.data_to_send() == b"\x88\x89\x01\x02\x03\x04\x02\xeadknfa}d"
        assert protocol.state is State.CLOSING
        assert protocol.events_received() == []
        # The server may still be sending: its messages are delivered.
        protocol.receive_data(text("in flight") + close_frame(1000, "ok"))
        outcome = collect(protocol)
        assert outcome.described == [
            "Text(text='in flight')",
            "Closed(code=1000, reason='ok')",
        ]
        assert outcome.sent == b""
        assert outcome.state is State.CLOSED
        protocol.receive_eof()
        assert [describe(event) for event in protocol.events_received()] == [
            "Disconnected(reason='closed', graceful=True)"
        ]

    def test_closed_carries_the_servers_empty_close(self) -> None:
        protocol = open_protocol()
        protocol.close()
        protocol.receive_data(frame(Opcode.CLOSE))
        assert [describe(event) for event in protocol.events_received()] == [
            "Closed(code=None, reason='')"
        ]

    def test_close_twice_sends_one_frame(self) -> None:
        protocol = open_protocol()
        assert protocol.close(1000, "one") is True
        assert protocol.close(1001, "two") is False
        assert sent_frames(protocol.data_to_send()) == [Sent(Opcode.CLOSE, b"\x03\xe8one")]

    def test_close_with_bytes_reason(self) -> None:
        protocol = open_protocol()
        protocol.close(4000, b"caf\xc3\xa9")
        assert sent_frames(protocol.data_to_send()) == [Sent(Opcode.CLOSE, b"\x0f\xa0caf\xc3\xa9")]

    def test_long_reason_fits_a_control_frame(self) -> None:
        protocol = open_protocol()
        protocol.close(1000, "é" * 200)
        (sent,) = sent_frames(protocol.data_to_send())
        assert len(sent.payload) <= 125
        assert parse_close_payload(sent.payload) == (1000, "é" * 61)

    def test_no_pong_after_our_close(self) -> None:
        # RFC 6455 §5.5.1: after sending a close frame, send no further data.
        protocol = open_protocol()
        protocol.close()
        protocol.data_to_send()
        protocol.receive_data(frame(Opcode.PING, b"still there?"))
        outcome = collect(protocol)
        assert outcome.described == ["Ping(data=b'still there?')"]
        assert outcome.sent == b""

    def test_close_before_the_upgrade_gives_up(self) -> None:
        protocol = new_protocol()
        protocol.data_to_send()
        assert protocol.close() is False
        outcome = collect(protocol)
        assert outcome.sent == b""
        assert outcome.names == ["disconnected"]
        assert outcome.events[0].graceful is False
        assert outcome.state is State.DISCONNECTED
        protocol.receive_data(RESPONSE)
        assert protocol.events_received() == []

    def test_close_after_the_end_is_a_no_op(self) -> None:
        protocol = open_protocol()
        protocol.receive_eof()
        protocol.events_received()
        assert protocol.close() is False
        assert protocol.echo_close() is False
        assert protocol.data_to_send() == b""
        assert protocol.events_received() == []


def _connecting() -> ClientProtocol:
    protocol = new_protocol()
    protocol.data_to_send()
    return protocol


def _open() -> ClientProtocol:
    return open_protocol()


def _remote_closing() -> ClientProtocol:
    protocol = open_protocol()
    protocol.receive_data(close_frame())
    return protocol


def _closing() -> ClientProtocol:
    protocol = open_protocol()
    protocol.close()
    return protocol


def _closed_by_client() -> ClientProtocol:
    protocol = _closing()
    protocol.receive_data(close_frame())
    return protocol


def _closed_by_server() -> ClientProtocol:
    protocol = _remote_closing()
    protocol.echo_close()
    return protocol


def _failing() -> ClientProtocol:
    protocol = open_protocol()
    protocol.receive_data(frame(0x3))
    return protocol


def _failed_and_closed() -> ClientProtocol:
    protocol = _failing()
    protocol.receive_data(close_frame(1002))
    return protocol


def _open_mid_frame() -> ClientProtocol:
    protocol = open_protocol()
    protocol.receive_data(frame_header(Opcode.BINARY, 10) + b"abc")
    return protocol


#: (setup, state it leaves, whether a disconnect from there is graceful):
#: graceful only when both close frames were exchanged.
STATES: list[tuple[Callable[[], ClientProtocol], State, bool]] = [
    (_connecting, State.CONNECTING, False),
    (_open, State.OPEN, False),
    (_open_mid_frame, State.OPEN, False),
    (_remote_closing, State.REMOTE_CLOSING, False),
    (_closing, State.CLOSING, False),
    (_failing, State.FAILING, False),
    (_closed_by_client, State.CLOSED, True),
    (_closed_by_server, State.CLOSED, True),
    (_failed_and_closed, State.FAILED, False),
]


def _state_id(value: Any) -> str | None:
    return value.__name__.strip("_") if callable(value) else None


class TestDisconnected:
    @pytest.mark.parametrize(("setup", "state", "graceful"), STATES, ids=_state_id)
    def test_eof(self, setup: Callable[[], ClientProtocol], state: State, graceful: bool) -> None:
        protocol = setup()
        assert protocol.state is state
        protocol.events_received()
        protocol.data_to_send()
        protocol.receive_eof()
        outcome = collect(protocol)
        assert outcome.names == ["disconnected"]
        disconnected = outcome.events[0]
        assert disconnected.graceful is graceful
        assert disconnected.reason
        if graceful:
            assert disconnected.reason == "closed"
        assert outcome.sent == b""
        assert outcome.state is State.DISCONNECTED

    @pytest.mark.parametrize(("setup", "state", "graceful"), STATES, ids=_state_id)
    def test_abort(self, setup: Callable[[], ClientProtocol], state: State, graceful: bool) -> None:
        protocol = setup()
        protocol.events_received()
        protocol.data_to_send()
        protocol.abort("close_timeout passed")
        outcome = collect(protocol)
        assert outcome.names == ["disconnected"]
        disconnected = outcome.events[0]
        assert disconnected.graceful is graceful
        expected_reason = "closed" if graceful else "close_timeout passed"
        assert disconnected.reason == expected_reason
        assert outcome.sent == b""
        assert outcome.state is State.DISCONNECTED

    @pytest.mark.parametrize(("setup", "state", "graceful"), STATES, ids=_state_id)
    def test_disconnected_is_the_last_event(
        self, setup: Callable[[], ClientProtocol], state: State, graceful: bool
    ) -> None:
        protocol = setup()
        protocol.receive_eof()
        protocol.events_received()
        protocol.data_to_send()
        protocol.receive_eof()
        protocol.abort("again")
        protocol.receive_data(text("late") + close_frame())
        assert protocol.events_received() == []
        assert protocol.data_to_send() == b""
        assert protocol.state is State.DISCONNECTED

    def test_eof_mid_frame_reason(self) -> None:
        protocol = _open_mid_frame()
        protocol.receive_eof()
        (disconnected,) = protocol.events_received()
        assert "frame" in disconnected.reason

    def test_eof_while_failing_reports_the_failure(self) -> None:
        protocol = _failing()
        (error,) = protocol.events_received()
        protocol.receive_eof()
        (disconnected,) = protocol.events_received()
        assert disconnected.reason == error.error


def _sends(protocol: ClientProtocol) -> list[Callable[[], object]]:
    return [
        lambda: protocol.send_message(Opcode.TEXT, b"text"),
        lambda: protocol.send_message(Opcode.BINARY, b"binary"),
        lambda: protocol.send_ping(b"ping"),
        lambda: protocol.send_pong(b"pong"),
    ]


def _disconnected() -> ClientProtocol:
    protocol = open_protocol()
    protocol.receive_eof()
    return protocol


def _rejected() -> ClientProtocol:
    protocol = new_protocol()
    protocol.data_to_send()
    protocol.receive_data(b"HTTP/1.1 403 Forbidden\r\n\r\n")
    return protocol


class TestSendsInEachState:
    @pytest.mark.parametrize(
        ("setup", "error"),
        [
            (_connecting, WebSocketUnavailable),
            (_closing, WebSocketClosing),
            (_failing, WebSocketClosing),
            (_closed_by_client, WebSocketClosed),
            (_closed_by_server, WebSocketClosed),
            (_disconnected, WebSocketClosed),
        ],
        ids=_state_id,
    )
    def test_refused(self, setup: Callable[[], ClientProtocol], error: type[Exception]) -> None:
        protocol = setup()
        protocol.data_to_send()
        assert not protocol.can_send
        for send in _sends(protocol):
            with pytest.raises(error) as raised:
                send()
            assert type(raised.value) is error
        assert protocol.data_to_send() == b""

    def test_refused_after_a_rejection(self) -> None:
        protocol = _rejected()
        for send in _sends(protocol):
            with pytest.raises(WebSocketUnavailable):
                send()
        assert protocol.data_to_send() == b""

    @pytest.mark.parametrize("setup", [_open, _remote_closing], ids=_state_id)
    def test_allowed(self, setup: Callable[[], ClientProtocol]) -> None:
        protocol = setup()
        assert protocol.can_send
        for send in _sends(protocol):
            send()
        assert sent_frames(protocol.data_to_send()) == [
            Sent(Opcode.TEXT, b"text"),
            Sent(Opcode.BINARY, b"binary"),
            Sent(Opcode.PING, b"ping"),
            Sent(Opcode.PONG, b"pong"),
        ]


class TestRFC6455_5_3_OutgoingFrames:
    def test_text_golden(self) -> None:
        protocol = open_protocol()
        assert protocol.send_message(Opcode.TEXT, b"Hello") is False
        assert protocol.data_to_send() == b"\x81\x85\x01\x02\x03\x04Igohn"

    def test_binary_golden(self) -> None:
        protocol = open_protocol()
        protocol.send_message(Opcode.BINARY, b"\x00\xff")
        assert protocol.data_to_send() == b"\x82\x82\x01\x02\x03\x04\x01\xfd"

    def test_ping_and_pong_golden(self) -> None:
        protocol = open_protocol()
        protocol.send_ping()
        protocol.send_pong(b"hi")
        assert protocol.data_to_send() == b"\x89\x80\x01\x02\x03\x04\x8a\x82\x01\x02\x03\x04ik"

    def test_a_fresh_key_for_every_frame(self) -> None:
        requests: list[int] = []

        def counting_key(count: int) -> bytes:
            requests.append(count)
            return bytes([len(requests)] * count)

        protocol = open_protocol(random_bytes=counting_key)
        protocol.send_message(Opcode.TEXT, b"a")
        protocol.send_message(Opcode.BINARY, b"b")
        protocol.send_ping(b"c")
        protocol.close()
        data = protocol.data_to_send()
        keys = []
        position = 0
        while position < len(data):
            length = data[position + 1] & 0x7F
            keys.append(data[position + 2 : position + 6])
            position += 6 + length
        assert keys == [b"\x01" * 4, b"\x02" * 4, b"\x03" * 4, b"\x04" * 4]
        assert requests == [4, 4, 4, 4]

    def test_long_message_is_one_masked_frame(self) -> None:
        protocol = open_protocol()
        payload = bytes(range(256)) * 300
        protocol.send_message(Opcode.BINARY, payload)
        assert sent_frames(protocol.data_to_send()) == [Sent(Opcode.BINARY, payload)]

    def test_messages_go_out_in_order(self) -> None:
        protocol = open_protocol()
        for index in range(5):
            protocol.send_message(Opcode.TEXT, str(index).encode())
        assert [sent.payload for sent in sent_frames(protocol.data_to_send())] == [
            b"0",
            b"1",
            b"2",
            b"3",
            b"4",
        ]

    def test_repr(self) -> None:
        assert repr(open_protocol()) == "<ClientProtocol open>"


# -- permessage-deflate ---------------------------------------------------------


class TestRFC7692_Compression:
    def test_rfc_golden_compressed_message(self) -> None:
        # RFC 7692 §7.2.3.1: "Hello" compressed in one frame.
        outcome = feed(
            DEFLATE_RESPONSE + b"\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00", deflate=Deflate()
        )
        assert outcome.described == [DEFLATE_READY, "Text(text='Hello')"]

    def test_rfc_golden_shared_context(self) -> None:
        # RFC 7692 §7.2.3.2: the second "Hello" refers back to the first.
        data = (
            DEFLATE_RESPONSE
            + b"\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00"
            + b"\xc1\x05\xf2\x00\x11\x00\x00"
        )
        outcome = feed(data, deflate=Deflate())
        assert outcome.described == [DEFLATE_READY, "Text(text='Hello')", "Text(text='Hello')"]

    def test_rfc_golden_fragmented(self) -> None:
        # RFC 7692 §7.2.3.1: a compressed message in two fragments; RSV1 on the first.
        data = DEFLATE_RESPONSE + b"\x41\x03\xf2\x48\xcd" + b"\x80\x04\xc9\xc9\x07\x00"
        outcome = feed(data, deflate=Deflate())
        assert outcome.described == [DEFLATE_READY, "Text(text='Hello')"]

    def test_rfc_golden_stored_block(self) -> None:
        # RFC 7692 §7.2.3.3: a DEFLATE block with no compression.
        data = DEFLATE_RESPONSE + b"\xc1\x0b\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00"
        outcome = feed(data, deflate=Deflate())
        assert outcome.described == [DEFLATE_READY, "Text(text='Hello')"]

    def test_control_frames_between_compressed_fragments(self) -> None:
        data = (
            DEFLATE_RESPONSE
            + b"\x41\x03\xf2\x48\xcd"
            + frame(Opcode.PING, b"p")
            + b"\x80\x04\xc9\xc9\x07\x00"
        )
        outcome = feed(data, deflate=Deflate())
        assert outcome.described == [DEFLATE_READY, "Ping(data=b'p')", "Text(text='Hello')"]
        assert outcome.frames == [Sent(Opcode.PONG, b"p")]

    def test_compressed_binary(self) -> None:
        payload = bytes(range(256)) * 4
        data = DEFLATE_RESPONSE + frame(Opcode.BINARY, deflate(payload), rsv=RSV1)
        outcome = feed(data, deflate=Deflate())
        assert outcome.names == ["ready", "binary"]
        assert outcome.events[1].data == payload

    def test_uncompressed_message_on_a_compressed_connection(self) -> None:
        data = DEFLATE_RESPONSE + text("plain")
        assert feed(data, deflate=Deflate()).described == [DEFLATE_READY, "Text(text='plain')"]

    def test_server_no_context_takeover(self) -> None:
        response = upgrade_response(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover"
        )
        first = frame(Opcode.TEXT, deflate(b"Hello"), rsv=RSV1)
        outcome = feed(response + first + first, deflate=Deflate())
        assert outcome.names == ["ready", "text", "text"]
        assert [event.text for event in outcome.events[1:]] == ["Hello", "Hello"]

    def test_outgoing_message_is_compressed(self) -> None:
        protocol = open_protocol("Sec-WebSocket-Extensions: permessage-deflate", deflate=Deflate())
        message = b"Hello, compression! " * 20
        assert protocol.send_message(Opcode.TEXT, message) is True
        (sent,) = sent_frames(protocol.data_to_send())
        assert (sent.opcode, sent.rsv, sent.fin) == (Opcode.TEXT, RSV1, True)
        assert len(sent.payload) < len(message)
        assert not sent.payload.endswith(TAIL)
        assert inflate(sent.payload) == message

    def test_compress_false_sends_plain(self) -> None:
        protocol = open_protocol("Sec-WebSocket-Extensions: permessage-deflate", deflate=Deflate())
        assert protocol.send_message(Opcode.BINARY, b"raw", compress=False) is False
        assert sent_frames(protocol.data_to_send()) == [Sent(Opcode.BINARY, b"raw")]

    def test_messages_under_min_size_are_sent_plain(self) -> None:
        protocol = open_protocol(
            "Sec-WebSocket-Extensions: permessage-deflate", deflate=Deflate(min_size=100)
        )
        assert protocol.send_message(Opcode.TEXT, b"x" * 99) is False
        assert protocol.send_message(Opcode.TEXT, b"x" * 100) is True
        rsvs = [sent.rsv for sent in sent_frames(protocol.data_to_send())]
        assert rsvs == [0, RSV1]

    def test_control_frames_are_never_compressed(self) -> None:
        protocol = open_protocol("Sec-WebSocket-Extensions: permessage-deflate", deflate=Deflate())
        protocol.send_ping(b"p" * 100)
        protocol.close(1000, "x" * 100)
        assert [sent.rsv for sent in sent_frames(protocol.data_to_send())] == [0, 0]

    def test_client_context_takeover(self) -> None:
        protocol = open_protocol("Sec-WebSocket-Extensions: permessage-deflate", deflate=Deflate())
        message = b"the same message again and again"
        protocol.send_message(Opcode.TEXT, message)
        protocol.send_message(Opcode.TEXT, message)
        first, second = sent_frames(protocol.data_to_send())
        assert len(second.payload) < len(first.payload)
        decompressor = zlib.decompressobj(wbits=-15)
        assert decompressor.decompress(first.payload + TAIL) == message
        assert decompressor.decompress(second.payload + TAIL) == message

    def test_client_no_context_takeover(self) -> None:
        protocol = open_protocol(
            "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover",
            deflate=Deflate(),
        )
        message = b"the same message again and again"
        protocol.send_message(Opcode.TEXT, message)
        protocol.send_message(Opcode.TEXT, message)
        first, second = sent_frames(protocol.data_to_send())
        assert first.payload == second.payload
        assert inflate(second.payload) == message

    def test_rsv1_on_a_continuation_frame(self) -> None:
        # RFC 7692 §6.1: RSV1 is set on the first frame of a message only.
        data = (
            DEFLATE_RESPONSE
            + frame(Opcode.TEXT, b"\xf2\x48\xcd", fin=False, rsv=RSV1)
            + frame(Opcode.CONTINUATION, b"\xc9\xc9\x07\x00", rsv=RSV1)
        )
        outcome = feed(data, deflate=Deflate())
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1002)

    def test_rsv1_on_a_control_frame(self) -> None:
        outcome = feed(DEFLATE_RESPONSE + frame(Opcode.PING, b"", rsv=RSV1), deflate=Deflate())
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1002)

    @pytest.mark.parametrize("rsv", [RSV2, RSV3])
    def test_other_reserved_bits_stay_reserved(self, rsv: int) -> None:
        outcome = feed(DEFLATE_RESPONSE + frame(Opcode.TEXT, b"x", rsv=rsv), deflate=Deflate())
        assert_failed(outcome, 1002)

    def test_rsv1_without_negotiation(self) -> None:
        data = RESPONSE + b"\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00"
        outcome = feed(data, deflate=Deflate())
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1002)

    def test_invalid_compressed_data(self) -> None:
        data = DEFLATE_RESPONSE + frame(Opcode.BINARY, b"\xff\xff\xff\xff", rsv=RSV1)
        outcome = feed(data, deflate=Deflate())
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1002)

    def test_invalid_utf8_after_decompression(self) -> None:
        data = DEFLATE_RESPONSE + frame(Opcode.TEXT, deflate(b"ok\xff"), rsv=RSV1)
        outcome = feed(data, deflate=Deflate())
        assert_failed(outcome, 1007)

    def test_invalid_utf8_fails_at_the_first_compressed_fragment(self) -> None:
        compressor = zlib.compressobj(wbits=-15)
        first = compressor.compress(b"bad \xff") + compressor.flush(zlib.Z_SYNC_FLUSH)
        data = DEFLATE_RESPONSE + frame(Opcode.TEXT, first, fin=False, rsv=RSV1)
        outcome = feed(data, deflate=Deflate())
        assert outcome.names == ["ready", "protocol_error"]
        assert_failed(outcome, 1007)

    def test_decompressed_size_of_exactly_the_limit(self) -> None:
        data = DEFLATE_RESPONSE + frame(Opcode.BINARY, deflate(bytes(500)), rsv=RSV1)
        outcome = feed(data, deflate=Deflate(), max_message_size=500)
        assert outcome.names == ["ready", "binary"]
        assert outcome.events[1].data == bytes(500)

    def test_decompressed_size_over_the_limit(self) -> None:
        data = DEFLATE_RESPONSE + frame(Opcode.BINARY, deflate(bytes(501)), rsv=RSV1)
        outcome = feed(data, deflate=Deflate(), max_message_size=500)
        assert_failed(outcome, 1009)

    def test_incompressible_message_of_exactly_the_limit(self) -> None:
        # The limit is on the message after decompression: random bytes grow
        # a little when deflated, and must still be accepted at exactly the limit.
        generator = random.Random(7)
        payload = bytes(generator.getrandbits(8) for _ in range(500))
        compressed = deflate(payload)
        assert len(compressed) > 500
        data = DEFLATE_RESPONSE + frame(Opcode.BINARY, compressed, rsv=RSV1)
        outcome = feed(data, deflate=Deflate(), max_message_size=500)
        assert outcome.names == ["ready", "binary"]
        assert outcome.events[1].data == payload

    def test_decompression_bomb(self) -> None:
        bomb = deflate(bytes(1 << 20))  # 1 MiB of zeros in about 1 KB
        assert len(bomb) < 10_000
        data = DEFLATE_RESPONSE + frame(Opcode.BINARY, bomb, rsv=RSV1)
        for chunks in ([data], [data[:300], data[300:]]):
            outcome = run(chunks, deflate=Deflate(), max_message_size=10_000)
            assert outcome.names == ["ready", "protocol_error"]
            assert_failed(outcome, 1009)

    def test_a_run_of_whole_messages_compressed_or_not(self) -> None:
        # Whole compressed messages are read in one batch, like plain ones (the
        # receive fast path); context takeover carries from one to the next, and a
        # fragmented message or a control frame in between changes nothing.
        compressor = zlib.compressobj(wbits=-15)
        data = (
            DEFLATE_RESPONSE
            + frame(Opcode.TEXT, deflate(b"first", compressor), rsv=RSV1)
            + frame(Opcode.BINARY, deflate(b"first", compressor), rsv=RSV1)
            + text("plain")
            + frame(Opcode.PING, b"p")
            + frame(Opcode.TEXT, deflate(b"third", compressor), rsv=RSV1)
            + frame(Opcode.TEXT, b"frag", fin=False)
            + frame(Opcode.CONTINUATION, b"ment")
            + frame(Opcode.TEXT, deflate("fourth \u00e9".encode(), compressor), rsv=RSV1)
        )
        outcome = feed(data, deflate=Deflate())
        assert outcome.described[1:] == [
            "Text(text='first')",
            "Binary(data=b'first')",
            "Text(text='plain')",
            "Ping(data=b'p')",
            "Text(text='third')",
            "Text(text='fragment')",
            "Text(text='fourth \u00e9')",
        ]
        assert outcome.frames == [Sent(Opcode.PONG, b"p")]

    def test_messages_before_invalid_compressed_data_come_first(self) -> None:
        good = frame(Opcode.TEXT, deflate(b"Hello"), rsv=RSV1)
        protocol = open_protocol("Sec-WebSocket-Extensions: permessage-deflate", deflate=Deflate())
        protocol.receive_data(good + good + frame(Opcode.TEXT, b"\xff\xff\xff\xff", rsv=RSV1))
        assert [event.name for event in protocol.events_received()] == ["text", "text"]
        assert protocol.data_to_send() == b""
        assert [event.name for event in protocol.events_received()] == ["protocol_error"]
        sent = sent_frames(protocol.data_to_send())
        assert [item.opcode for item in sent] == [Opcode.CLOSE]
        assert sent[0].payload[:2] == (1002).to_bytes(2, "big")

    def test_compressed_frame_too_large_for_the_limit_on_the_wire(self) -> None:
        # A compressed frame may exceed the limit by the margin deflate can add to
        # incompressible data (limit + limit / 8 + 1024), not more.
        limit = 8000
        margin = limit + limit // 8 + 1024
        for length, refused in ((margin, False), (margin + 1, True)):
            data = DEFLATE_RESPONSE + frame_header(Opcode.BINARY, length, rsv=RSV1)
            outcome = run([data], deflate=Deflate(), max_message_size=limit)
            if refused:
                assert_failed(outcome, 1009)
            else:
                assert outcome.names == ["ready"]

    def test_decompression_bomb_across_fragments(self) -> None:
        compressor = zlib.compressobj(wbits=-15)
        pieces = [compressor.compress(bytes(4000)) + compressor.flush(zlib.Z_SYNC_FLUSH)]
        pieces += [compressor.compress(bytes(4000)) + compressor.flush(zlib.Z_SYNC_FLUSH)]
        pieces += [deflate(bytes(4000), compressor)]
        data = (
            DEFLATE_RESPONSE
            + frame(Opcode.BINARY, pieces[0], fin=False, rsv=RSV1)
            + frame(Opcode.CONTINUATION, pieces[1], fin=False)
            + frame(Opcode.CONTINUATION, pieces[2])
        )
        outcome = feed(data, deflate=Deflate(), max_message_size=10_000)
        assert_failed(outcome, 1009)
        fine = feed(data, deflate=Deflate(), max_message_size=12_000)
        assert fine.names == ["ready", "binary"]
        assert fine.events[1].data == bytes(12_000)


# -- properties ---------------------------------------------------------------


PROPERTY_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def valid_traffic(draw: st.DrawFn, compression: bool) -> tuple[bytes, list[str], list[Sent]]:
    """Valid server frames, the events they must produce, and the pongs they must cause.

    With ``compression``, messages are randomly compressed, sharing one LZ77 context
    as a server without ``server_no_context_takeover`` would.
    """
    compressor = zlib.compressobj(wbits=-15)
    frames: list[bytes] = []
    expected: list[str] = []
    pongs: list[Sent] = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["text", "binary", "ping", "pong"]))
        if kind == "ping" or kind == "pong":
            payload = draw(st.binary(max_size=125))
            if kind == "ping":
                frames.append(frame(Opcode.PING, payload))
                expected.append(describe(Ping(payload)))
                pongs.append(Sent(Opcode.PONG, payload))
            else:
                frames.append(frame(Opcode.PONG, payload))
                expected.append(describe(Pong(payload)))
            continue
        if kind == "text":
            value = draw(st.text(max_size=80))
            payload = value.encode("utf-8")
            event: Event = Text(value)
            opcode = Opcode.TEXT
        else:
            payload = draw(st.binary(max_size=300))
            event = Binary(payload)
            opcode = Opcode.BINARY
        rsv = 0
        wire = payload
        if compression and draw(st.booleans()):
            wire = deflate(payload, compressor)
            rsv = RSV1
        # Fragment anywhere, even inside a character; a ping may come between fragments.
        cuts = sorted(draw(st.lists(st.integers(0, len(wire)), max_size=3)))
        pieces = [wire[start:end] for start, end in zip([0, *cuts], [*cuts, len(wire)])]
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            if index == 0:
                frames.append(frame(opcode, piece, fin=last, rsv=rsv))
            else:
                frames.append(frame(Opcode.CONTINUATION, piece, fin=last))
            if not last and draw(st.booleans()):
                ping = draw(st.binary(max_size=10))
                frames.append(frame(Opcode.PING, ping))
                expected.append(describe(Ping(ping)))
                pongs.append(Sent(Opcode.PONG, ping))
        expected.append(describe(event))
    if draw(st.booleans()):
        code = draw(st.sampled_from([1000, 1001, 1011, 3000, 4999]))
        reason = draw(st.text(max_size=20))
        frames.append(close_frame(code, reason))
        expected.append(f"Closing(code={code}, reason={reason!r})")
    return b"".join(frames), expected, pongs


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    cuts = sorted(cuts)
    return [data[start:end] for start, end in zip([0, *cuts], [*cuts, len(data)])]


@st.composite
def random_frame(draw: st.DrawFn) -> bytes:
    """A frame with any header bits, often (but not always) well-formed enough to parse."""
    common = [0x81, 0x82, 0x01, 0x02, 0x00, 0x80, 0x88, 0x89, 0x8A, 0xC1, 0xC2, 0x41]
    first = draw(st.one_of(st.sampled_from(common), st.integers(0, 255)))
    masked = draw(st.booleans()) and draw(st.booleans())
    payload = draw(
        st.one_of(
            st.binary(max_size=140),
            st.text(max_size=40).map(str.encode),
            st.builds(
                build_close_payload,
                st.sampled_from([1000, 1002, 1005, 3000, 999]),
                st.text(max_size=10),
            ),
        )
    )
    length_byte = len(payload) if len(payload) < 126 else 126
    header = bytes((first, (0x80 if masked else 0) | length_byte))
    if length_byte == 126:
        header += len(payload).to_bytes(2, "big")
    if masked:
        header += draw(st.binary(min_size=4, max_size=4))
    return header + payload


class TestProperties:
    @PROPERTY_SETTINGS
    @given(compression=st.booleans(), data=st.data())
    def test_valid_frames_give_the_same_events_however_split(
        self, compression: bool, data: st.DataObject
    ) -> None:
        frames, expected, pongs = data.draw(valid_traffic(compression))
        options: dict[str, Any] = {"deflate": Deflate()} if compression else {}
        stream = (DEFLATE_RESPONSE if compression else RESPONSE) + frames
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
        whole = run([stream], **options)
        chopped = run(split(stream, cuts), **options)
        assert whole.described == [DEFLATE_READY if compression else READY, *expected]
        assert chopped.described == whole.described
        assert chopped.sent == whole.sent
        assert whole.frames == pongs

    @PROPERTY_SETTINGS
    @given(data=st.data())
    def test_while_output_is_blocked_pongs_answer_the_latest_ping(
        self, data: st.DataObject
    ) -> None:
        frames, expected, pongs = data.draw(valid_traffic(False))
        stream = RESPONSE + frames
        chunks = split(stream, data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
        protocol = new_protocol()
        protocol.data_to_send()
        protocol.output_blocked = True  # the shell cannot write: nothing is taken
        for chunk in chunks:
            protocol.receive_data(chunk)
            while protocol.events_received():
                pass
        # RFC 6455 §5.5.3: one pong waits, for the latest ping.
        assert sent_frames(protocol.data_to_send()) == pongs[-1:]

    @PROPERTY_SETTINGS
    @given(
        pieces=st.lists(st.one_of(st.binary(max_size=20), random_frame()), max_size=6),
        variant=st.sampled_from(["plain", "deflate", "small-limit"]),
        data=st.data(),
    )
    def test_any_bytes_give_the_same_result_however_split(
        self, pieces: list[bytes], variant: str, data: st.DataObject
    ) -> None:
        options: dict[str, Any] = {}
        response = RESPONSE
        if variant == "deflate":
            options["deflate"] = Deflate()
            response = DEFLATE_RESPONSE
        elif variant == "small-limit":
            options["max_message_size"] = 64
        stream = response + b"".join(pieces)
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
        eof = data.draw(st.booleans())
        whole = run([stream], eof=eof, **options)
        chopped = run(split(stream, cuts), eof=eof, **options)
        assert (chopped.described, chopped.sent, chopped.state) == (
            whole.described,
            whole.sent,
            whole.state,
        )

    @PROPERTY_SETTINGS
    @given(
        pieces=st.lists(st.one_of(st.binary(max_size=40), random_frame()), max_size=8),
        variant=st.sampled_from(["plain", "deflate", "small-limit", "closing"]),
        data=st.data(),
    )
    def test_arbitrary_bytes_only_ever_produce_events(
        self, pieces: list[bytes], variant: str, data: st.DataObject
    ) -> None:
        options: dict[str, Any] = {}
        headers: tuple[str, ...] = ()
        if variant == "deflate":
            options["deflate"] = Deflate()
            headers = ("Sec-WebSocket-Extensions: permessage-deflate",)
        elif variant == "small-limit":
            options["max_message_size"] = 64
        protocol = open_protocol(*headers, **options)
        if variant == "closing":
            protocol.close()
        stream = b"".join(pieces)
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
        received: list[Event] = []
        sent = b""
        for chunk in split(stream, cuts):
            protocol.receive_data(chunk)  # never raises
            received += protocol.events_received()
            sent += protocol.data_to_send()
        protocol.receive_eof()
        received += protocol.events_received()
        sent += protocol.data_to_send()

        assert all(isinstance(event, Event) for event in received)
        names = [event.name for event in received]
        assert names[-1] == "disconnected"
        assert names.count("disconnected") == 1
        assert names.count("protocol_error") <= 1
        assert names.count("closing") + names.count("closed") <= 1
        assert protocol.state is State.DISCONNECTED
        frames = sent_frames(sent)
        closes = [index for index, sent in enumerate(frames) if sent.opcode == Opcode.CLOSE]
        assert len(closes) <= 1
        if closes:
            assert closes[0] == len(frames) - 1  # nothing after our close frame
        if "protocol_error" in names:
            error = received[names.index("protocol_error")]
            if not error.critical:
                assert closes, "a non-critical failure sends a close frame"


class TestMessagesBeforeAProtocolError:
    """Messages that arrive ahead of a violation reach the application first, and its
    replies go out before the close frame (Autobahn 3.2-3.4, 4.1.3-4.2.5, 5.15)."""

    def test_reply_goes_out_before_the_close_frame(self) -> None:
        protocol = open_protocol()
        protocol.receive_data(frame(Opcode.TEXT, b"Hello") + frame(0x3) + frame(Opcode.PING))
        assert [event.name for event in protocol.events_received()] == ["text"]
        assert protocol.data_to_send() == b""
        assert protocol.state is State.OPEN
        assert protocol.has_events
        protocol.send_message(Opcode.TEXT, b"Hello")
        assert [event.name for event in protocol.events_received()] == ["protocol_error"]
        sent = sent_frames(protocol.data_to_send())
        assert [item.opcode for item in sent] == [Opcode.TEXT, Opcode.CLOSE]
        assert sent[1].payload[:2] == (1002).to_bytes(2, "big")
        assert protocol.state is State.FAILING
        assert protocol.events_received() == []

    def test_eof_right_behind_the_violation(self) -> None:
        protocol = open_protocol()
        protocol.receive_data(frame(Opcode.BINARY, b"data") + frame(0x3))
        protocol.receive_eof()
        names = [event.name for event in protocol.events_received()]
        assert names == ["binary", "protocol_error", "disconnected"]
