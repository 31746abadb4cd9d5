"""An atheris (libFuzzer) target for lomond's sans-I/O core.

Run it (not part of CI; see ``fuzz/README.md``)::

    pip install atheris
    python fuzz/fuzz_protocol.py -max_total_time=600 fuzz/corpus fuzz/seeds

Each input drives one of four targets, chosen by its first byte:

* the HTTP response parser and the upgrade checks (``Response``, ``check_response``);
* the permessage-deflate negotiation (``parse_extensions``, ``Deflate.accept``);
* ``ClientProtocol`` after a valid upgrade: the bytes are server frames;
* ``ClientProtocol`` from its first byte: the bytes are the whole server stream.

:func:`check_input` is the whole target without atheris, so that the regression
tests (``tests/protocol/test_fuzz_properties.py``) replay the seeds and every input that
once failed. Any exception out of it is a finding: lomond raised something other than
its documented errors, or broke one of the invariants asserted below.

Input layout (every field is optional; missing bytes read as zero)::

    byte 0      target (low 2 bits) and flags (the rest)
    byte 1      options: which Deflate offer, which max_message_size, auto_pong, EOF
    byte 2      number of cut points (0-8)
    byte 3      seed for the operations interleaved with the input (sends, close, abort)
    2 bytes     per cut point, big-endian, modulo the stream length + 1
    the rest    the stream
"""

from __future__ import annotations

import random
import sys
import zlib
from typing import Any, Callable, List, Tuple

from lomond import events
from lomond.errors import (
    CompressionParameterError,
    HandshakeError,
    WebSocketUnavailable,
)
from lomond.protocol import ClientProtocol, State
from lomond.protocol.deflate import Deflate, PerMessageDeflate
from lomond.protocol.frames import Opcode, parse_close_payload
from lomond.protocol.handshake import accept_key, build_request, check_response, parse_extensions
from lomond.response import Response

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x01\x02\x03\x04"
PROTOCOLS = ["chat", "superchat"]
REQUEST = build_request(resource="/", host_header="example.com", key=KEY, agent="fuzz")

TARGET_RESPONSE = 0
TARGET_NEGOTIATION = 1
TARGET_FRAMES = 2
TARGET_STREAM = 3

#: The permessage-deflate offers, each with an answer that accepts it.
OFFERS: List[Tuple[Deflate | None, str]] = [
    (None, ""),
    (Deflate(), "permessage-deflate"),
    (
        Deflate(client_max_window_bits=8, server_max_window_bits=8),
        "permessage-deflate; server_max_window_bits=8; client_max_window_bits=8",
    ),
    (
        Deflate(server_no_context_takeover=True, client_no_context_takeover=True),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    ),
    (Deflate(min_size=16, level=1, mem_level=1), "permessage-deflate; server_max_window_bits=9"),
]
LIMITS: List[int | None] = [None, 1, 125, 4096]

Outcome = Tuple[List[events.Event], bytes, State]


def fixed_key(count: int) -> bytes:
    """Masking keys: always the same, so that two runs send identical bytes."""
    return MASK[:count]


class Input:
    """The fields of one fuzz input (see the module docstring)."""

    def __init__(self, data: bytes) -> None:
        header = data[:4].ljust(4, b"\0")
        self.target = header[0] & 0x3
        self.flags = header[0] >> 2
        self.options = header[1]
        cut_count = header[2] % 9
        self.op_seed = header[3]
        cut_bytes = data[4 : 4 + 2 * cut_count]
        self.stream = data[4 + 2 * cut_count :]
        self.cuts = sorted(
            int.from_bytes(cut_bytes[index : index + 2], "big") % (len(self.stream) + 1)
            for index in range(0, len(cut_bytes) - 1, 2)
        )

    def chunks(self) -> List[bytes]:
        stream, cuts = self.stream, self.cuts
        return [stream[start:end] for start, end in zip([0, *cuts], [*cuts, len(stream)])]


# -- the response parser and the upgrade checks -------------------------------------


def check_response_parser(item: Input) -> None:
    response = Response(item.stream)
    assert isinstance(response.headers, dict)
    assert response.status_code is None or isinstance(response.status_code, int)
    for name, value in response.headers.items():
        assert name == name.lower() and isinstance(value, str)
        assert response.get(name) == value
        response.get_list(name)
    repr(response)
    try:
        protocol, extensions = check_response(response, KEY, PROTOCOLS)
    except HandshakeError:
        return
    assert response.status_code == 101
    assert protocol is None or protocol in PROTOCOLS
    for name, parameters in extensions:
        assert name and all(key for key, _ in parameters)


# -- permessage-deflate negotiation --------------------------------------------------


def offer_from(options: int, flags: int) -> Deflate:
    bits = [None, 8, 9, 10, 11, 12, 14, 15]
    return Deflate(
        client_max_window_bits=bits[options & 0x7],
        server_max_window_bits=bits[(options >> 3) & 0x7],
        client_no_context_takeover=bool(options & 0x40),
        server_no_context_takeover=bool(options & 0x80),
        level=(flags % 11) - 1,
    )


def check_negotiation(item: Input) -> None:
    offer = offer_from(item.options, item.flags)
    value = item.stream.decode("latin-1")
    try:
        extensions = parse_extensions([value])
    except HandshakeError:
        return
    for name, parameters in extensions:
        assert name and all(key for key, _ in parameters)
        try:
            codec = offer.accept(parameters)
        except CompressionParameterError:
            continue
        check_codec(offer, codec, item.stream)


def check_codec(offer: Deflate, codec: PerMessageDeflate, payload: bytes) -> None:
    """What an accepted answer must respect (RFC 7692 §7.1), and that the codec works."""
    assert 8 <= codec.client_max_window_bits <= 15
    assert 8 <= codec.server_max_window_bits <= 15
    if offer.client_max_window_bits is not None:
        assert codec.client_max_window_bits <= offer.client_max_window_bits
    if offer.server_max_window_bits is not None:
        assert codec.server_max_window_bits <= offer.server_max_window_bits
    if offer.server_no_context_takeover:
        assert codec.server_no_context_takeover
    if offer.client_no_context_takeover:
        assert codec.client_no_context_takeover
    # What we compress must inflate within the window we agreed to (zlib cannot
    # inflate a raw window of 8 bits, so 9 stands in for it).
    compressed = codec.compress(payload)
    inflater = zlib.decompressobj(-max(9, codec.client_max_window_bits))
    assert inflater.decompress(compressed + b"\x00\x00\xff\xff") == payload


# -- the protocol ------------------------------------------------------------------


def new_protocol(item: Input) -> Tuple[ClientProtocol, bytes]:
    """A protocol and the response that accepts its upgrade (for TARGET_FRAMES)."""
    deflate, answer = OFFERS[item.options % len(OFFERS)]
    limit = LIMITS[(item.options >> 3) & 0x3]
    protocol = ClientProtocol(
        REQUEST,
        KEY,
        protocols=PROTOCOLS,
        deflate=deflate,
        max_message_size=limit,
        auto_pong=not item.options & 0x20,
        random_bytes=fixed_key,
    )
    lines = [
        b"HTTP/1.1 101 Switching Protocols",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Accept: " + accept_key(KEY).encode("ascii"),
    ]
    if answer and not item.flags & 0x1:  # flag 1: the server declines compression
        lines.append(b"Sec-WebSocket-Extensions: " + answer.encode("ascii"))
    if item.flags & 0x2:
        lines.append(b"Sec-WebSocket-Protocol: chat")
    return protocol, b"\r\n".join(lines) + b"\r\n\r\n"


def drain(protocol: ClientProtocol) -> Tuple[List[events.Event], bytes]:
    """Collect events as the session does: until a call returns none."""
    received: List[events.Event] = []
    sent = b""
    while True:
        batch = protocol.events_received()
        sent += protocol.data_to_send()
        if not batch:
            return received, sent
        received += batch


def operation(rng: random.Random) -> Callable[[ClientProtocol], Any] | None:
    """An application call to make between two chunks, or ``None``."""
    choice = rng.randrange(10)
    if choice == 0:
        return lambda p: p.send_message(Opcode.TEXT, b"hello" * rng.randrange(8))
    if choice == 1:
        return lambda p: p.send_message(Opcode.BINARY, bytes(rng.randrange(200)), False)
    if choice == 2:
        return lambda p: p.send_ping(b"ping")
    if choice == 3:
        return lambda p: p.close(rng.choice([1000, 1001, 4000, None]), "bye")
    if choice == 4:
        return lambda p: p.echo_close()
    if choice == 5 and rng.randrange(4) == 0:
        return lambda p: p.abort("aborted by the fuzzer")
    return None


def run_protocol(item: Input, chunks: List[bytes], with_operations: bool) -> Outcome:
    protocol, response = new_protocol(item)
    assert protocol.data_to_send() == REQUEST
    received: List[events.Event] = []
    sent = b""
    if item.target == TARGET_FRAMES:
        protocol.receive_data(response)
        received, sent = drain(protocol)
        assert [event.name for event in received] == ["ready"]
    rng = random.Random(item.op_seed)
    for chunk in chunks:
        protocol.receive_data(chunk)
        batch, data = drain(protocol)
        received += batch
        sent += data
        action = operation(rng) if with_operations else None
        if action is not None:
            try:
                action(protocol)
            except WebSocketUnavailable:
                pass  # and its subclasses WebSocketClosing / WebSocketClosed
            batch, data = drain(protocol)
            received += batch
            sent += data
    if item.options & 0x80:
        protocol.receive_eof()
        batch, data = drain(protocol)
        received += batch
        sent += data
        assert protocol.state is State.DISCONNECTED
        assert received and isinstance(received[-1], events.Disconnected)
    check_outcome(item, received, sent)
    return received, sent, protocol.state


def client_frames(data: bytes) -> List[Tuple[int, bytes]]:
    """Cut what the client sent into frames, checking each is whole and masked."""
    frames = []
    position = 0
    while position < len(data):
        assert len(data) - position >= 6
        first, second = data[position], data[position + 1]
        assert second & 0x80, "a client frame must be masked"
        assert first & 0x80, "one message is one frame"
        length = second & 0x7F
        position += 2
        if length >= 126:
            size = 2 if length == 126 else 8
            length = int.from_bytes(data[position : position + size], "big")
            position += size
        key = data[position : position + 4]
        payload = data[position + 4 : position + 4 + length]
        assert len(payload) == length, "a partial frame was sent"
        frames.append((first & 0xF, bytes(b ^ key[i % 4] for i, b in enumerate(payload))))
        position += 4 + length
    return frames


def check_outcome(item: Input, received: List[events.Event], sent: bytes) -> None:
    """The invariants every run must keep, whatever the server sent."""
    names = [event.name for event in received]
    assert all(isinstance(event, events.Event) for event in received)
    assert names.count("disconnected") <= 1
    if "disconnected" in names:
        assert names[-1] == "disconnected", names
    assert names.count("ready") <= 1 and names.count("rejected") <= 1
    assert not ("ready" in names and "rejected" in names)
    assert names.count("protocol_error") <= 1
    assert names.count("closing") + names.count("closed") <= 1
    if "rejected" in names:
        assert names == ["rejected", "disconnected"], names
    if "ready" in names:
        assert names[0] == "ready", names
    limit = LIMITS[(item.options >> 3) & 0x3]
    for event in received:
        if limit is not None and isinstance(event, events.Text):
            assert len(event.text.encode("utf-8")) <= limit
        elif limit is not None and isinstance(event, events.Binary):
            assert len(event.data) <= limit
        elif isinstance(event, events.Disconnected) and event.graceful:
            assert "rejected" in names or "closed" in names or "closing" in names, names
    frames = client_frames(sent)
    closes = [index for index, (opcode, _) in enumerate(frames) if opcode == Opcode.CLOSE]
    assert len(closes) <= 1, "one close frame at most"
    if closes:
        assert closes[0] == len(frames) - 1, "nothing may follow our close frame"
        parse_close_payload(frames[closes[0]][1])  # a code we may send, UTF-8 reason
    for opcode, payload in frames:
        if opcode >= 0x8:
            assert len(payload) <= 125


def describe(event: events.Event) -> str:
    fields = []
    for cls in reversed(type(event).__mro__):
        slots = cls.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot not in ("received_time", "_json"):
                fields.append(f"{slot}={getattr(event, slot)!r}")
    return f"{type(event).__name__}({', '.join(fields)})"


def check_protocol(item: Input) -> None:
    whole = run_protocol(item, [item.stream], with_operations=False)
    chopped = run_protocol(item, item.chunks(), with_operations=False)
    # However the stream is split, the result is the same.
    assert [describe(event) for event in chopped[0]] == [describe(event) for event in whole[0]]
    assert chopped[1:] == whole[1:]
    run_protocol(item, item.chunks(), with_operations=True)


def check_input(data: bytes) -> None:
    """Run one fuzz input; any exception is a finding."""
    item = Input(data)
    if item.target == TARGET_RESPONSE:
        check_response_parser(item)
    elif item.target == TARGET_NEGOTIATION:
        check_negotiation(item)
    else:
        check_protocol(item)


def seeds() -> List[bytes]:
    """Inputs to start from: one per target, with valid traffic in the protocol ones."""

    def server_frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> bytes:
        first = (0x80 if fin else 0) | rsv << 4 | opcode
        if len(payload) < 126:
            return bytes((first, len(payload))) + payload
        return bytes((first, 126)) + len(payload).to_bytes(2, "big") + payload

    compressor = zlib.compressobj(wbits=-15)
    compressed = compressor.compress(b"Hello" * 20) + compressor.flush(zlib.Z_SYNC_FLUSH)
    traffic = (
        server_frame(0x1, b"Hello")
        + server_frame(0x2, bytes(range(200)))
        + server_frame(0x1, b"caf", fin=False)
        + server_frame(0x9, b"ping")
        + server_frame(0x0, "\u00e9".encode())
        + server_frame(0x1, compressed[:-4], rsv=0x4)
        + server_frame(0xA, b"")
        + server_frame(0x8, (1000).to_bytes(2, "big") + b"bye")
    )
    _, response = new_protocol(Input(bytes((TARGET_STREAM, 0))))
    return [
        bytes((TARGET_RESPONSE, 0, 0, 0)) + response,
        bytes((TARGET_RESPONSE, 0, 0, 0)) + b"HTTP/1.1 403 Forbidden\r\nRetry-After: 5\r\n\r\n",
        bytes((TARGET_NEGOTIATION, 0, 0, 0)) + b"permessage-deflate; client_max_window_bits=10",
        bytes((TARGET_NEGOTIATION, 0xFF, 0, 0))
        + b"permessage-deflate; server_no_context_takeover; server_max_window_bits=8, x",
        bytes((TARGET_FRAMES, 0, 2, 7)) + b"\x00\x03\x00\x09" + traffic,
        bytes((TARGET_FRAMES, 1, 0, 1)) + traffic,
        bytes((TARGET_FRAMES, 0x80 | 0x08, 0, 3)) + traffic[:40],
        bytes((TARGET_STREAM, 0, 1, 0)) + b"\x00\x50" + response + traffic,
    ]


def main() -> None:
    if sys.argv[1:2] == ["--write-seeds"]:
        # python fuzz/fuzz_protocol.py --write-seeds DIRECTORY
        directory = sys.argv[2]
        for index, seed in enumerate(seeds()):
            with open(f"{directory}/seed-{index}", "wb") as file:
                file.write(seed)
        return
    import atheris  # type: ignore[import-not-found]

    atheris.instrument_all()
    atheris.Setup(sys.argv, check_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
