"""Property tests for the parsers a hostile server feeds: frames, the upgrade response,
the permessage-deflate negotiation, and the protocol in every state.

Two promises are checked on generated input (hypothesis):

* arbitrary bytes never raise anything but the documented errors (``ProtocolError``
  and its subclass ``PayloadTooLarge`` from the frame reader, ``HandshakeError`` and
  its subclass ``CompressionParameterError`` from the upgrade checks; nothing at all
  from ``ClientProtocol``, which turns them into events);
* a stream split at arbitrary boundaries parses exactly as the whole stream does.

The last part replays the inputs of the atheris fuzzer (``fuzz/``): its seeds and every
input that once found a bug, each also written out below as a readable test.
"""

from __future__ import annotations

import importlib.util
import random
import socket
import string
import time
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from peers import close_frame, read_until_close
from servers import RawConnection, frame, names, raw_server, run
from test_client import (
    KEY,
    REQUEST,
    describe,
    drain,
    fixed_key,
    open_protocol,
    sent_frames,
    upgrade_response,
)

from lomond import WebSocket
from lomond.compression import Deflate
from lomond.errors import (
    CompressionParameterError,
    HandshakeError,
    PayloadTooLarge,
    ProtocolError,
    WebSocketUnavailable,
)
from lomond.events import Event
from lomond.protocol import ClientProtocol, State
from lomond.protocol.frame_reader import FrameReader
from lomond.protocol.frames import RESERVED_OPCODES, FrameHeader, Opcode, build_frame
from lomond.protocol.handshake import (
    MAX_HEADER_LINES,
    MAX_HEADER_SIZE,
    accept_key,
    check_response,
    parse_extensions,
)
from lomond.response import Response

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"

TAIL = b"\x00\x00\xff\xff"

PROPERTIES = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    cuts = sorted(cuts)
    return [data[start:end] for start, end in zip([0, *cuts], [*cuts, len(data)])]


def cuts_for(data: st.DataObject, length: int, most: int = 10) -> list[int]:
    return data.draw(st.lists(st.integers(0, length), max_size=most), label="cuts")


# -- the frame parser ---------------------------------------------------------------


@st.composite
def any_frame(draw: st.DrawFn) -> bytes:
    """A frame with any header: any bits, any opcode, masked or not, any length encoding
    (including non-minimal ones and, rarely, a 64-bit length with the top bit set)."""
    first = draw(st.integers(0, 255))
    masked = draw(st.booleans())
    payload = draw(st.binary(max_size=300))
    encoding = draw(st.sampled_from(["minimal", "16", "64", "huge"]))
    mask_bit = 0x80 if masked else 0
    if encoding == "huge":
        return bytes((first, mask_bit | 127)) + draw(st.binary(min_size=8, max_size=8)) + payload
    if encoding == "minimal" and len(payload) < 126:
        header = bytes((first, mask_bit | len(payload)))
    elif encoding in ("minimal", "16") and len(payload) < 0x10000:
        header = bytes((first, mask_bit | 126)) + len(payload).to_bytes(2, "big")
    else:
        header = bytes((first, mask_bit | 127)) + len(payload).to_bytes(8, "big")
    key = draw(st.binary(min_size=4, max_size=4)) if masked else b""
    return header + key + payload


frame_streams = st.lists(st.one_of(any_frame(), st.binary(max_size=12)), max_size=8).map(b"".join)


class RuleCheck:
    """A header check like the protocol's: refuses reserved opcodes and oversized data
    frames, declines pongs (skipped unread), accepts the rest. It never refuses a
    frame the fast path would take, as the protocol's check never does."""

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length

    def __call__(self, header: FrameHeader) -> bool:
        if header.opcode in RESERVED_OPCODES:
            raise ProtocolError(f"reserved opcode {header.opcode}")
        if header.opcode < 0x8 and header.length > self.max_length:
            raise PayloadTooLarge("too large")
        return header.opcode != Opcode.PONG


def read_everything(chunks: list[bytes], max_length: int, fast_path: bool) -> list[Any]:
    """Everything a FrameReader makes of ``chunks``: frames and errors, in order."""
    reader = FrameReader(RuleCheck(max_length))
    results: list[Any] = []
    for chunk in chunks:
        reader.feed(chunk)
        while True:
            if fast_path:
                for first, payload in reader.simple_frames(max_length, max_length):
                    rsv, opcode = (first >> 4) & 0x7, first & 0x0F
                    results.append(("frame", True, rsv, opcode, False, len(payload), payload))
            try:
                item = reader.next_frame()
            except ProtocolError as error:  # the only exception allowed
                results.append(("error", type(error).__name__, str(error)))
                continue
            if item is None:
                break
            header, payload = item
            assert type(payload) is bytes and len(payload) == header.length
            results.append(
                ("frame", header.fin, header.rsv, header.opcode, header.masked, header.length)
                + (payload,)
            )
    results.append(("mid_frame", reader.mid_frame))
    return results


class TestFrameReaderProperties:
    @PROPERTIES
    @given(stream=frame_streams, max_length=st.sampled_from([0, 10, 125, 1 << 20]))
    def test_any_bytes_raise_only_protocol_errors(self, stream: bytes, max_length: int) -> None:
        results = read_everything([stream], max_length, fast_path=False)
        assert results[-1][0] == "mid_frame"

    @PROPERTIES
    @given(
        stream=frame_streams,
        max_length=st.sampled_from([0, 10, 125, 1 << 20]),
        data=st.data(),
    )
    def test_any_bytes_read_the_same_however_split(
        self, stream: bytes, max_length: int, data: st.DataObject
    ) -> None:
        whole = read_everything([stream], max_length, fast_path=False)
        chunks = split(stream, cuts_for(data, len(stream)))
        assert read_everything(chunks, max_length, fast_path=False) == whole
        # The fast path takes some frames in a batch; what comes out must not change.
        assert read_everything(chunks, max_length, fast_path=True) == whole

    @PROPERTIES
    @given(stream=frame_streams)
    def test_one_byte_at_a_time(self, stream: bytes) -> None:
        whole = read_everything([stream], 125, fast_path=True)
        assert read_everything([bytes([octet]) for octet in stream], 125, True) == whole


# -- the upgrade response -------------------------------------------------------------

latin1_text = st.text(st.characters(max_codepoint=255), max_size=40)
header_chars = st.sampled_from(list(":;,= \t\r\n\"'") + list(string.ascii_letters[:6]) + ["\xe9"])
header_soup = st.lists(st.one_of(header_chars, latin1_text), max_size=30).map("".join)


@st.composite
def response_heads(draw: st.DrawFn) -> bytes:
    """Heads from nonsense to almost valid: real header names with arbitrary values."""
    status = draw(
        st.sampled_from(["HTTP/1.1 101 Switching Protocols", "HTTP/1.1 101", "HTTP/1.0 200 OK"])
        | latin1_text
    )
    lines = [status]
    names_ = ["Upgrade", "Connection", "Sec-WebSocket-Accept", "Sec-WebSocket-Protocol"]
    names_ += ["Sec-WebSocket-Extensions", "X-Other"]
    for _ in range(draw(st.integers(0, 8))):
        name = draw(st.sampled_from(names_) | latin1_text)
        value = draw(
            st.sampled_from(["websocket", "Upgrade", accept_key(KEY), "chat", "permessage-deflate"])
            | header_soup
        )
        lines.append(f"{name}:{value}")
    head = "\r\n".join(lines).encode("latin-1")
    return head + draw(st.sampled_from([b"\r\n\r\n", b"\r\n", b""]))


@st.composite
def valid_heads(draw: st.DrawFn) -> bytes:
    """Valid 101 responses in any spelling: header case, spaces, order, extra headers."""

    def spell(value: str) -> str:
        return "".join(draw(st.sampled_from([c.lower(), c.upper()])) for c in value)

    space = st.sampled_from(["", " ", "  ", "\t"])
    required = [
        (spell("Upgrade"), spell("websocket")),
        (spell("Connection"), draw(st.sampled_from(["Upgrade", "keep-alive, Upgrade", "upgrade"]))),
        (spell("Sec-WebSocket-Accept"), accept_key(KEY)),
    ]
    token = st.text(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~", min_size=1)
    extra = draw(
        st.lists(
            st.tuples(
                token.filter(lambda name: not name.lower().startswith(("sec-", "upgrade", "conn"))),
                st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=30),
            ),
            max_size=6,
        )
    )
    headers = draw(st.permutations(required + extra))
    lines = ["HTTP/1.1 101 " + draw(st.sampled_from(["Switching Protocols", "OK", ""]))]
    lines += [f"{name}:{draw(space)}{value}{draw(space)}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def handshake_outcome(chunks: list[bytes], **options: Any) -> list[str]:
    protocol = ClientProtocol(REQUEST, KEY, random_bytes=fixed_key, **options)
    protocol.data_to_send()
    received: list[Event] = []
    for chunk in chunks:
        protocol.receive_data(chunk)
        received += drain(protocol)[0]
    protocol.receive_eof()
    received += drain(protocol)[0]
    return [describe(event) for event in received] + [protocol.state.value]


class TestResponseProperties:
    @PROPERTIES
    @given(head=st.one_of(st.binary(max_size=300), response_heads()))
    def test_response_parses_anything(self, head: bytes) -> None:
        response = Response(head)
        assert response.raw == head
        assert response.status_code is None or isinstance(response.status_code, int)
        for name, value in response.headers.items():
            assert name == name.strip().lower()
            assert response.get(name) == value
            if name.isascii():
                assert response.get(name.upper()) == value
            assert all(item and item == item.strip() for item in response.get_list(name))
        repr(response)

    @PROPERTIES
    @given(head=st.one_of(st.binary(max_size=300), response_heads()))
    def test_check_response_raises_only_handshake_errors(self, head: bytes) -> None:
        try:
            protocol, extensions = check_response(Response(head), KEY, ["chat"])
        except HandshakeError as error:
            assert str(error)
            return
        assert protocol in (None, "chat")
        assert all(name for name, _ in extensions)

    @PROPERTIES
    @given(head=valid_heads())
    def test_every_spelling_of_a_valid_response_is_accepted(self, head: bytes) -> None:
        assert check_response(Response(head), KEY, []) == (None, [])
        outcome = handshake_outcome([head])
        assert outcome[0].startswith("Ready(")

    @PROPERTIES
    @given(
        head=st.one_of(response_heads(), valid_heads()),
        rest=st.binary(max_size=20),
        data=st.data(),
    )
    def test_the_protocol_reads_any_head_the_same_however_split(
        self, head: bytes, rest: bytes, data: st.DataObject
    ) -> None:
        stream = head + rest
        whole = handshake_outcome([stream], protocols=["chat"])
        assert whole[-1] == "disconnected"
        chunks = split(stream, cuts_for(data, len(stream)))
        assert handshake_outcome(chunks, protocols=["chat"]) == whole

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        lines=st.integers(0, MAX_HEADER_LINES + 40),
        line_size=st.integers(4, 300),
        data=st.data(),
    )
    def test_the_head_limits_are_exact(
        self, lines: int, line_size: int, data: st.DataObject
    ) -> None:
        valid = upgrade_response()[:-2]  # three header lines, without the blank line
        pad = [b"X-%d: " % index for index in range(max(0, lines - 3))]
        head = valid + b"".join(p.ljust(line_size, b"a") + b"\r\n" for p in pad) + b"\r\n"
        total_lines = max(lines, 3)
        accepted = total_lines <= MAX_HEADER_LINES and len(head) <= MAX_HEADER_SIZE
        cuts = cuts_for(data, len(head), most=4)
        outcome = handshake_outcome(split(head, cuts))
        assert outcome[0].startswith("Ready(" if accepted else "Rejected("), outcome[0][:80]


# -- permessage-deflate negotiation ------------------------------------------------------

parameter_words = st.sampled_from(
    [
        "permessage-deflate",
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
        "x-webkit-deflate-frame",
    ]
)
# One header value: any latin-1 text but line breaks.
value_text = st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=40)
extension_text = st.lists(
    st.one_of(
        parameter_words,
        st.sampled_from(["; ", ";", ", ", ",", "=", '"', " ", "8", "10", "15", "16", "08", "²"]),
        value_text,
    ),
    max_size=16,
).map("".join)
offers = st.builds(
    Deflate,
    client_max_window_bits=st.none() | st.integers(8, 15),
    server_max_window_bits=st.none() | st.integers(8, 15),
    client_no_context_takeover=st.booleans(),
    server_no_context_takeover=st.booleans(),
)


def negotiate(offer: Deflate, value: str) -> str:
    """What the checks make of an answer: the codec's repr, or the error's type."""
    try:
        extensions = parse_extensions([value])
        accepted = [name for name, _ in extensions if name.lower() == "permessage-deflate"]
        if len(extensions) != 1 or len(accepted) != 1:
            return "other extensions"
        return repr(offer.accept(extensions[0][1]))
    except CompressionParameterError:
        return "CompressionParameterError"
    except HandshakeError:
        return "HandshakeError"


class TestNegotiationProperties:
    @PROPERTIES
    @given(value=extension_text, offer=offers)
    def test_any_answer_gives_a_codec_within_the_offer_or_a_handshake_error(
        self, value: str, offer: Deflate
    ) -> None:
        try:
            extensions = parse_extensions([value])
        except HandshakeError:
            return
        for _, parameters in extensions:
            try:
                codec = offer.accept(parameters)
            except CompressionParameterError:
                continue
            assert 8 <= codec.client_max_window_bits <= (offer.client_max_window_bits or 15)
            assert 8 <= codec.server_max_window_bits <= (offer.server_max_window_bits or 15)
            assert codec.server_no_context_takeover >= offer.server_no_context_takeover
            assert codec.client_no_context_takeover >= offer.client_no_context_takeover
            # The codec works both ways within the agreed windows (zlib cannot use a
            # raw window of 8 bits; 9 stands in for it, see lomond.compression).
            message = b"negotiated " * 20
            server = zlib.compressobj(wbits=-max(9, codec.server_max_window_bits))
            wire = server.compress(message) + server.flush(zlib.Z_SYNC_FLUSH)
            assert codec.decompress(wire[:-4], None, True) == message
            client = zlib.decompressobj(wbits=-max(9, codec.client_max_window_bits))
            assert client.decompress(codec.compress(message) + TAIL) == message

    @PROPERTIES
    @given(value=extension_text, offer=offers, data=st.data())
    def test_the_protocol_agrees_with_the_checks(
        self, value: str, offer: Deflate, data: st.DataObject
    ) -> None:
        head = upgrade_response(f"Sec-WebSocket-Extensions: {value}")
        expected = negotiate(offer, value.strip())
        chunks = split(head, cuts_for(data, len(head), most=4))
        protocol = ClientProtocol(REQUEST, KEY, deflate=offer, random_bytes=fixed_key)
        protocol.data_to_send()
        received: list[Event] = []
        for chunk in chunks:
            protocol.receive_data(chunk)
            received += protocol.events_received()
        first = received[0]
        if first.name == "ready":
            if expected == "other extensions":
                assert protocol.compression is None and not parse_extensions([value.strip()])
            else:
                assert repr(protocol.compression) == expected
        else:
            assert first.name == "rejected"
            assert expected != "other extensions" or parse_extensions([value.strip()])
            assert not expected.startswith("<PerMessageDeflate")


# -- the protocol in every state -----------------------------------------------------------


@st.composite
def hostile_frames(draw: st.DrawFn) -> bytes:
    """Frames a hostile server might send, heavy in the ones that fail a connection:
    invalid close frames, reserved opcodes and bits, masked or fragmented control frames,
    stray continuations, invalid UTF-8; mixed with valid traffic."""
    kind = draw(
        st.sampled_from(
            [
                "text",
                "binary",
                "ping",
                "pong",
                "close",
                "bad-close",
                "reserved",
                "rsv",
                "masked",
                "fragment",
                "continuation",
                "bad-utf8",
                "long-control",
                "garbage",
            ]
        )
    )
    if kind == "text":
        return frame(Opcode.TEXT, draw(st.text(max_size=20)).encode())
    if kind == "binary":
        return frame(Opcode.BINARY, draw(st.binary(max_size=200)))
    if kind == "ping":
        return frame(Opcode.PING, draw(st.binary(max_size=10)))
    if kind == "pong":
        return frame(Opcode.PONG, draw(st.binary(max_size=10)))
    if kind == "close":
        return close_frame(draw(st.sampled_from([1000, 1001, 3000])), b"bye")
    if kind == "bad-close":
        payload = draw(st.sampled_from([b"\x03", b"\x03\xed", b"\x03\xe8\xff", b"\x00\x00"]))
        return frame(Opcode.CLOSE, payload)
    if kind == "reserved":
        return frame(draw(st.sampled_from(sorted(RESERVED_OPCODES))), b"r")
    if kind == "rsv":
        return frame(Opcode.TEXT, b"r", rsv=draw(st.integers(1, 7)))
    if kind == "masked":
        return build_frame(draw(st.sampled_from([0x1, 0x8, 0x9])), b"m", b"abcd")
    if kind == "fragment":
        return frame(draw(st.sampled_from([0x1, 0x2, 0x9])), b"f", fin=False)
    if kind == "continuation":
        return frame(Opcode.CONTINUATION, b"c", fin=draw(st.booleans()))
    if kind == "bad-utf8":
        return frame(Opcode.TEXT, b"ok \xc3\x28")
    if kind == "long-control":
        return frame(draw(st.sampled_from([0x8, 0x9, 0xA])), bytes(126))
    return draw(st.binary(min_size=1, max_size=6))


def application_call(rng: random.Random) -> Callable[[ClientProtocol], object] | None:
    choice = rng.randrange(6)
    if choice == 0:
        return lambda protocol: protocol.send_message(Opcode.TEXT, b"reply")
    if choice == 1:
        return lambda protocol: protocol.send_ping(b"p")
    if choice == 2:
        return lambda protocol: protocol.close(1000, "bye")
    return None


class TestProtocolInEveryState:
    """Whatever the server sends, in whichever state, ``ClientProtocol`` only produces
    events, sends at most one close frame (last), and ends with one ``Disconnected``."""

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        start=st.sampled_from(["open", "we-closed", "failing", "deflate"]),
        frames=st.lists(hostile_frames(), max_size=8),
        data=st.data(),
    )
    def test_only_events(self, start: str, frames: list[bytes], data: st.DataObject) -> None:
        if start == "deflate":
            protocol = open_protocol(
                "Sec-WebSocket-Extensions: permessage-deflate", deflate=Deflate()
            )
        else:
            protocol = open_protocol(max_message_size=100)
        if start == "we-closed":
            protocol.close()
        elif start == "failing":
            protocol.receive_data(frame(0x3))
        received, sent = drain(protocol)
        stream = b"".join(frames)
        rng = random.Random(data.draw(st.integers(0, 1000), label="seed"))
        for chunk in split(stream, cuts_for(data, len(stream), most=4)):
            protocol.receive_data(chunk)  # never raises
            batch, out = drain(protocol)
            received += batch
            sent += out
            call = application_call(rng)
            if call is not None:
                try:
                    call(protocol)
                except WebSocketUnavailable:
                    pass  # the documented refusal once closing or closed
                batch, out = drain(protocol)
                received += batch
                sent += out
        protocol.receive_eof()
        batch, out = drain(protocol)
        received += batch
        sent += out

        kinds = [event.name for event in received]
        assert kinds[-1] == "disconnected" and kinds.count("disconnected") == 1
        assert kinds.count("protocol_error") <= 1
        assert protocol.state is State.DISCONNECTED
        closes = [i for i, item in enumerate(sent_frames(sent)) if item.opcode == Opcode.CLOSE]
        assert len(closes) <= 1
        assert not closes or closes[0] == len(sent_frames(sent)) - 1


# -- the atheris fuzzer's inputs -------------------------------------------------------------


def load_fuzz_target() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_protocol", FUZZ / "fuzz_protocol.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FUZZ_INPUTS = sorted((FUZZ / "seeds").iterdir()) + sorted((FUZZ / "regressions").iterdir())


class TestFuzzInputs:
    @pytest.mark.parametrize("path", FUZZ_INPUTS, ids=[path.name for path in FUZZ_INPUTS])
    def test_replay(self, path: Path) -> None:
        load_fuzz_target().check_input(path.read_bytes())

    def test_seeds_are_current(self) -> None:
        seeds = load_fuzz_target().seeds()
        assert [path.read_bytes() for path in sorted((FUZZ / "seeds").iterdir())] == seeds


class TestRegressions:
    """Bugs the fuzzer found, written out."""

    def test_a_second_violation_behind_a_deferred_one_after_our_close(self) -> None:
        """Found by atheris: after our close frame, a ping, a reserved opcode and an
        invalid close frame in one read. The ping is delivered first and the failure
        deferred; acting on it ended the connection, and reading on found the invalid
        close frame and tried to end it again (``InvalidTransition`` escaped)."""
        protocol = open_protocol()
        protocol.close()
        protocol.data_to_send()
        protocol.receive_data(frame(Opcode.PING, b"x") + frame(0x3) + frame(Opcode.CLOSE, b"\x01"))
        received, sent = drain(protocol)
        assert [describe(event) for event in received] == [
            "Ping(data=b'x')",
            "ProtocolError(error='reserved opcode 0x3', critical=True)",
            "Disconnected(reason='reserved opcode 0x3', graceful=False)",
        ]
        assert sent == b""  # no pong after our close, and no second close frame
        assert protocol.state is State.DISCONNECTED

    @pytest.mark.parametrize("together", [True, False], ids=["one-read", "two-reads"])
    def test_bytes_behind_the_servers_close_frame_do_not_change_the_eof_reason(
        self, together: bool
    ) -> None:
        """Found by atheris: EOF before we echoed the server's close frame was "lost in
        the middle of a frame" when junk followed the close frame in the same read,
        and "closed before the close frame was echoed" when it came in the next."""
        protocol = open_protocol()
        junk = b"\x81\x05\x01"
        if together:
            protocol.receive_data(close_frame(1000) + junk)
        else:
            protocol.receive_data(close_frame(1000))
            protocol.receive_data(junk)
        protocol.receive_eof()
        received, _ = drain(protocol)
        assert [describe(event) for event in received] == [
            "Closing(code=1000, reason='')",
            "Disconnected(reason='connection closed before the close frame was echoed', "
            "graceful=False)",
        ]

    def test_the_same_through_a_real_socket(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.handshake()
            read_until_close(connection)
            connection.send(frame(Opcode.PING, b"x") + frame(0x3) + frame(Opcode.CLOSE, b"\x01"))
            connection.sock.shutdown(socket.SHUT_WR)
            time.sleep(0.2)

        with raw_server(script) as url:
            ws = WebSocket(url)
            collected = run(ws, lambda event: event.name == "ready" and ws.close(), close_timeout=5)
        assert names(collected) == [
            "connecting",
            "connected",
            "ready",
            "poll",
            "ping",
            "protocol_error",
            "disconnected",
        ]
        assert collected[-2].critical is True
        assert collected[-1].graceful is False
