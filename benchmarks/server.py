"""The benchmark server: a WebSocket server that is never the bottleneck.

Standard library only. It listens on 127.0.0.1 (port 0 unless ``--port`` is given),
prints the port on the first line of stdout, and serves until its standard input
closes (so it dies with ``run.py``) or it is interrupted::

    python benchmarks/server.py
    48123

It does the opening handshake itself, then serves the scenario named by the
request path, with parameters in the query string. In the ``recv_*`` scenarios the
server waits for one data message from the client (any content: the start signal)
before it sends anything, so that every client's clock starts at the same point,
whatever the client does between the handshake and its first event.

``/recv_text?count=N&size=S``
    Sends N text messages of S ASCII bytes each.
``/recv_binary?count=N&size=S``
    Sends N binary messages of S bytes each.
``/recv_deflate?count=N``
    Sends N JSON text messages of about 1 KiB, compressed with permessage-deflate
    (RFC 7692). The server answers the client's first offer with
    ``server_no_context_takeover`` (and the ``server_max_window_bits`` the client
    asked for, if any); a client that offers no permessage-deflate is refused (400).
``/send?count=N``
    Counts the client's data messages; after N of them it sends one text message,
    ``received N messages B bytes``, so the client knows when to stop its clock.
``/echo``
    Sends every data message back as it came (unmasked, same opcode).

Everything the server sends in a ``recv_*`` scenario is built once (per parameter
set) before the handshake response goes out, and is then written straight from
memory, so the client's clock never includes the server's work. Incoming frames
are split by their headers alone: payloads are unmasked only when they are needed
(echo, close). The server never starts the closing handshake: it answers the
client's close frame with its own and closes the connection.

``recv_*`` responses carry ``X-Bench-Stream-Bytes``, the exact number of bytes that
follow the handshake response, for the raw-socket reference that parses nothing.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import socket
import sys
import threading
import zlib
from typing import Callable, Dict, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

# RFC 6455 §1.3: the GUID appended to Sec-WebSocket-Key.
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# RFC 7692 §7.2.1: the sender strips this empty deflate block from each message.
DEFLATE_TAIL = b"\x00\x00\xff\xff"

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

RECV_SIZE = 1024 * 1024
MAX_REQUEST = 64 * 1024
#: Distinct JSON messages in the compressed scenario (the stream cycles through them).
JSON_VARIETY = 1000

#: An extension offer: its name and its parameters (value ``None`` when absent).
ExtensionOffer = Tuple[str, Dict[str, Optional[str]]]


# -- frames -----------------------------------------------------------------------


def frame_header(first_byte: int, length: int) -> bytes:
    """The header of an unmasked (server-to-client) frame (RFC 6455 §5.2)."""
    if length < 126:
        return bytes((first_byte, length))
    if length < 0x10000:
        return bytes((first_byte, 126)) + length.to_bytes(2, "big")
    return bytes((first_byte, 127)) + length.to_bytes(8, "big")


def server_frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    """One whole unmasked frame with FIN set."""
    first_byte = 0x80 | (0x40 if rsv1 else 0) | opcode
    return frame_header(first_byte, len(payload)) + payload


def unmask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte masking ``key`` (RFC 6455 §5.3)."""
    length = len(payload)
    if not length:
        return payload
    repeated = key * (length // 4) + key[: length % 4]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")
    return value.to_bytes(length, "little")


# -- what the scenarios send ----------------------------------------------------------


def text_payload(size: int) -> bytes:
    """An ASCII text payload of ``size`` bytes (the same one for every message)."""
    pattern = b"lomond benchmark text message; "
    return (pattern * (size // len(pattern) + 1))[:size]


def binary_payload(size: int) -> bytes:
    """A binary payload of ``size`` bytes with every byte value in it."""
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def json_messages(variety: int = JSON_VARIETY) -> list[bytes]:
    """``variety`` distinct, deterministic JSON texts of about 1 KiB each (UTF-8)."""
    rng = random.Random(6455)
    messages = []
    for sequence in range(variety):
        price = rng.uniform(20_000, 70_000)
        document = {
            "type": "book_update",
            "channel": "level2",
            "symbol": rng.choice(["BTC-USD", "ETH-USD", "SOL-USD", "ADA-EUR"]),
            "sequence": 1_000_000 + sequence,
            "time": f"2024-05-{1 + sequence % 28:02d}T12:{sequence % 60:02d}:00.{sequence:06d}Z",
            "bids": [
                [f"{price - rng.random() * 50:.2f}", f"{rng.random() * 4:.8f}"] for _ in range(15)
            ],
            "asks": [
                [f"{price + rng.random() * 50:.2f}", f"{rng.random() * 4:.8f}"] for _ in range(15)
            ],
            "checksum": rng.getrandbits(32),
        }
        messages.append(json.dumps(document).encode("ascii"))
    return messages


def deflate_message(payload: bytes, window_bits: int) -> bytes:
    """Compress one message on its own (no context takeover), tail stripped."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(DEFLATE_TAIL)
    return data[: -len(DEFLATE_TAIL)]


class Stream:
    """What a ``recv_*`` scenario sends: ``block`` written ``repeat`` times."""

    def __init__(self, block: bytes, repeat: int) -> None:
        self.block = block
        self.repeat = repeat

    @property
    def size(self) -> int:
        return len(self.block) * self.repeat


class StreamCache:
    """Builds each scenario's stream once per parameter set, for every thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: dict[tuple[object, ...], Stream] = {}

    def get(self, key: tuple[object, ...], build: Callable[[], Stream]) -> Stream:
        with self._lock:
            stream = self._streams.get(key)
            if stream is None:
                stream = self._streams[key] = build()
            return stream


def build_text_stream(count: int, size: int) -> Stream:
    return Stream(server_frame(OP_TEXT, text_payload(size)) * count, 1)


def build_binary_stream(count: int, size: int) -> Stream:
    # One frame, written ``count`` times: a 1 GiB stream is never held in memory.
    return Stream(server_frame(OP_BINARY, binary_payload(size)), count)


def build_deflate_stream(count: int, window_bits: int) -> Stream:
    frames = [
        server_frame(OP_TEXT, deflate_message(message, window_bits), rsv1=True)
        for message in json_messages()
    ]
    whole, rest = divmod(count, len(frames))
    return Stream(b"".join(frames) * whole + b"".join(frames[:rest]), 1)


# -- handshake ------------------------------------------------------------------------


class HandshakeError(Exception):
    """The request cannot be served; the message becomes a 400 response."""


def parse_extensions(values: list[str]) -> list[ExtensionOffer]:
    """Split ``Sec-WebSocket-Extensions`` values into (name, parameters) offers."""
    offers: list[ExtensionOffer] = []
    for value in values:
        for offer in value.split(","):
            parts = [part.strip() for part in offer.split(";") if part.strip()]
            if not parts:
                continue
            parameters: dict[str, str | None] = {}
            for parameter in parts[1:]:
                name, _, raw = parameter.partition("=")
                parameters[name.strip().lower()] = raw.strip().strip('"') or None
            offers.append((parts[0].lower(), parameters))
    return offers


def negotiate_deflate(offers: list[ExtensionOffer]) -> tuple[str, int]:
    """Accept the first permessage-deflate offer with ``server_no_context_takeover``.

    Returns:
        The ``Sec-WebSocket-Extensions`` response value and the window bits to
        compress with (RFC 7692 §7.1.2.1: at most what the client asked for).

    Raises:
        HandshakeError: The client offered no permessage-deflate.
    """
    for name, parameters in offers:
        if name != "permessage-deflate":
            continue
        response = "permessage-deflate; server_no_context_takeover"
        window_bits = 15
        requested = parameters.get("server_max_window_bits")
        if requested is not None:
            window_bits = max(9, min(15, int(requested)))
            response += f"; server_max_window_bits={window_bits}"
        return response, window_bits
    raise HandshakeError("this scenario needs permessage-deflate")


def read_request(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read the HTTP upgrade request; return it and any bytes that followed it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError("connection closed during the handshake")
        data += chunk
        if len(data) > MAX_REQUEST:
            raise HandshakeError("request too large")
    request, _, rest = data.partition(b"\r\n\r\n")
    return request, rest


def parse_request(request: bytes) -> tuple[str, dict[str, list[str]]]:
    """Return the request target and the headers (lower-case names, all values)."""
    lines = request.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    if method != "GET":
        raise HandshakeError(f"method {method} not allowed")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return target, headers


def accept_key(key: str) -> str:
    digest = hashlib.sha1(key.encode("ascii") + WS_GUID).digest()
    return base64.b64encode(digest).decode("ascii")


# -- reading client frames ------------------------------------------------------------


class FrameReader:
    """Splits the client's bytes into frames by their headers.

    Data frames are counted and their payloads skipped without unmasking, unless
    ``on_message`` is given (echo), which then gets each unmasked data frame.
    Control frames are always unmasked: a close frame is answered and ends the
    connection, a ping is answered with a pong.
    """

    def __init__(
        self,
        sock: socket.socket,
        on_message: Callable[[int, bytes], None] | None = None,
        on_count: Callable[[int, int], None] | None = None,
    ) -> None:
        self.sock = sock
        self.on_message = on_message
        self.on_count = on_count
        self.messages = 0
        self.payload_bytes = 0
        self.closed = False
        self._partial = b""
        self._skip = 0

    def run(self, initial: bytes = b"") -> None:
        """Read until the client's close frame (answered) or end of stream."""
        if initial:
            self.feed(initial)
        while not self.closed:
            data = self.sock.recv(RECV_SIZE)
            if not data:
                return
            self.feed(data)

    def feed(self, data: bytes) -> None:
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return
            data = data[self._skip :]
            self._skip = 0
        if self._partial:
            data = self._partial + data
            self._partial = b""
        position = 0
        end = len(data)
        messages_before = self.messages
        while end - position >= 2 and not self.closed:
            first, second = data[position], data[position + 1]
            length = second & 0x7F
            extended = 2 if length == 126 else 8 if length == 127 else 0
            header_size = 2 + extended + (4 if second & 0x80 else 0)
            if end - position < header_size:
                break
            if extended:
                length = int.from_bytes(data[position + 2 : position + 2 + extended], "big")
            start = position + header_size
            stop = start + length
            opcode = first & 0x0F
            if opcode >= 0x8 or self.on_message is not None:
                if stop > end:
                    break  # wait for the whole frame (control frames are small)
                key = data[start - 4 : start] if second & 0x80 else b"\x00" * 4
                payload = unmask(data[start:stop], key)
                if opcode >= 0x8:
                    self._control(opcode, payload)
                else:
                    self._data(first, length)
                    assert self.on_message is not None
                    self.on_message(first, payload)
                position = stop
            else:
                self._data(first, length)
                if stop > end:
                    self._skip = stop - end
                    position = end
                    break
                position = stop
        if position < end and not self.closed:
            self._partial = data[position:]
        if self.on_count is not None and self.messages != messages_before:
            self.on_count(self.messages, self.payload_bytes)

    def _data(self, first: int, length: int) -> None:
        self.payload_bytes += length
        if first & 0x80:
            self.messages += 1

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_CLOSE:
            # RFC 6455 §5.5.1: answer with a close frame, then close the connection.
            code = payload[:2] if len(payload) >= 2 else b""
            try:
                self.sock.sendall(server_frame(OP_CLOSE, code))
            except OSError:
                pass
            self.closed = True
        elif opcode == OP_PING:
            self.sock.sendall(server_frame(OP_PONG, payload))


# -- the server -------------------------------------------------------------------------


class BenchmarkServer:
    """Accepts connections and serves each in its own thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.listener = socket.create_server((host, port), backlog=64)
        self.port: int = self.listener.getsockname()[1]
        self.streams = StreamCache()

    def serve_forever(self) -> None:
        while True:
            try:
                sock, _address = self.listener.accept()
            except OSError:
                return  # the listener was closed
            thread = threading.Thread(target=self.handle, args=(sock,), daemon=True)
            thread.start()

    def close(self) -> None:
        self.listener.close()

    def handle(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.serve(sock)
        except (OSError, EOFError):
            pass  # the client went away: nothing to report
        except Exception as error:  # noqa: BLE001 - a broken scenario must not kill the server
            print(f"server error: {error!r}", file=sys.stderr, flush=True)
        finally:
            sock.close()

    def serve(self, sock: socket.socket) -> None:
        try:
            request, rest = read_request(sock)
            target, headers = parse_request(request)
            key = headers.get("sec-websocket-key", [""])[0]
            if not key:
                raise HandshakeError("no Sec-WebSocket-Key")
            url = urlsplit(target)
            scenario = url.path.strip("/")
            query = {name: values[0] for name, values in parse_qs(url.query).items()}
            offers = parse_extensions(headers.get("sec-websocket-extensions", []))
            response_headers, stream = self.prepare(scenario, query, offers)
        except HandshakeError as error:
            body = f"{error}\n".encode()
            sock.sendall(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
            return
        lines = [
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {accept_key(key)}",
            *(f"{name}: {value}" for name, value in response_headers),
        ]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

        if stream is not None:
            sent = False

            def send_stream(messages: int, payload_bytes: int) -> None:
                # The client's first message is the start signal (see the module doc).
                nonlocal sent
                if not sent:
                    sent = True
                    for _ in range(stream.repeat):
                        sock.sendall(stream.block)

            FrameReader(sock, on_count=send_stream).run(rest)
        elif scenario == "send":
            count = int(query.get("count", "0"))

            def report(messages: int, payload_bytes: int) -> None:
                if messages == count:
                    text = f"received {messages} messages {payload_bytes} bytes".encode()
                    sock.sendall(server_frame(OP_TEXT, text))

            FrameReader(sock, on_count=report).run(rest)
        elif scenario == "echo":

            def echo(first: int, payload: bytes) -> None:
                sock.sendall(frame_header(first & 0x8F, len(payload)) + payload)

            FrameReader(sock, on_message=echo).run(rest)

    def prepare(
        self, scenario: str, query: dict[str, str], offers: list[ExtensionOffer]
    ) -> tuple[list[tuple[str, str]], Stream | None]:
        """Check the scenario; build what it sends. Returns headers and the stream."""
        try:
            count = int(query.get("count", "0"))
            size = int(query.get("size", "0"))
        except ValueError:
            raise HandshakeError("count and size must be integers") from None
        headers: list[tuple[str, str]] = []
        if scenario == "recv_text":
            stream = self.streams.get(
                (scenario, count, size), lambda: build_text_stream(count, size)
            )
        elif scenario == "recv_binary":
            stream = self.streams.get(
                (scenario, count, size), lambda: build_binary_stream(count, size)
            )
        elif scenario == "recv_deflate":
            extension, window_bits = negotiate_deflate(offers)
            headers.append(("Sec-WebSocket-Extensions", extension))
            stream = self.streams.get(
                (scenario, count, window_bits), lambda: build_deflate_stream(count, window_bits)
            )
        elif scenario in ("send", "echo"):
            return headers, None
        else:
            raise HandshakeError(f"unknown scenario {scenario!r}")
        headers.append(("X-Bench-Stream-Bytes", str(stream.size)))
        return headers, stream


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    options = parser.parse_args(argv)
    server = BenchmarkServer(options.host, options.port)
    print(server.port, flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # Serve until stdin closes: the runner's end (or its death) stops the server.
        while sys.stdin.buffer.read(4096):
            pass
    except KeyboardInterrupt:
        pass
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
