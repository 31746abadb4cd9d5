"""A small WebSocket echo server on the loopback interface, for ``lomond --demo``.

It needs nothing but the standard library and lomond's own wire code, used in the
server's role: :class:`~lomond.protocol.frame_reader.FrameReader` reads the client's masked frames,
:func:`~lomond.protocol.frames.build_frame` without a masking key writes unmasked server
frames, and :func:`~lomond.protocol.handshake.accept_key` answers the opening handshake.

It echoes every text and binary message, answers pings, and echoes the close frame.
permessage-deflate is supported minimally: the server accepts a plain offer with
``server_no_context_takeover; client_no_context_takeover`` (every message is
compressed on its own, RFC 7692 §7.1.1), and a message that arrives compressed is
echoed compressed. It is a demonstration, not a production server: one thread per
connection, and it trusts that it only ever talks to a local client.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from typing import Any, List, Tuple

from ..errors import HandshakeError, PayloadTooLarge, ProtocolError
from ..protocol.deflate import EXTENSION_NAME, PerMessageDeflate
from ..protocol.frame_reader import FrameReader
from ..protocol.frames import (
    RESERVED_OPCODES,
    RSV1,
    FrameHeader,
    Opcode,
    build_close_payload,
    build_frame,
    parse_close_payload,
)
from ..protocol.handshake import accept_key, parse_extensions
from ..protocol.url import host_port

#: The largest request head the server reads.
MAX_REQUEST_SIZE = 16 * 1024
#: The largest message (after decompression) the server echoes.
MAX_MESSAGE_SIZE = 1024 * 1024
#: What the server answers a permessage-deflate offer with.
DEFLATE_RESPONSE = f"{EXTENSION_NAME}; server_no_context_takeover; client_no_context_takeover"

# RFC 7692 §7.2.1: the empty deflate block that ends every compressed message.
# Offer parameters the server can honour while compressing with a 32 KiB window.
_ACCEPTABLE_PARAMETERS = frozenset(
    {"client_max_window_bits", "client_no_context_takeover", "server_no_context_takeover"}
)

Headers = List[Tuple[str, str]]


class BadRequest(Exception):
    """The opening handshake was not a WebSocket upgrade request."""


def parse_request(head: bytes) -> tuple[str, Headers]:
    """Return ``(resource, headers)`` from an HTTP upgrade request head.

    Header names are lower-cased.

    Raises:
        BadRequest: The request line or a header line is malformed.
    """
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0] != "GET" or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"not a GET request: {lines[0]!r}")
    headers: Headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise BadRequest(f"malformed header line {line!r}")
        headers.append((name.strip().lower(), value.strip()))
    return parts[1], headers


def _header(headers: Headers, name: str) -> str:
    return ", ".join(value for key, value in headers if key == name)


def accepts_deflate(extensions_header: str) -> bool:
    """Whether the server accepts the client's permessage-deflate offer.

    Only an offer whose parameters leave the server free to use a full window is
    accepted; any other offer (or a malformed header) is declined, which
    RFC 7692 §5 always allows.
    """
    try:
        offers = parse_extensions([extensions_header])
    except HandshakeError:
        return False
    for name, parameters in offers:
        if name == EXTENSION_NAME:
            return all(key in _ACCEPTABLE_PARAMETERS for key, _ in parameters)
    return False


def handshake_response(headers: Headers) -> tuple[bytes, bool]:
    """Return the ``101`` response to an upgrade request, and whether it enables deflate.

    Raises:
        BadRequest: The request is not a version 13 WebSocket upgrade.
    """
    if _header(headers, "upgrade").lower() != "websocket":
        raise BadRequest("Upgrade: websocket is missing")
    if _header(headers, "sec-websocket-version") != "13":
        raise BadRequest("Sec-WebSocket-Version is not 13")
    key = _header(headers, "sec-websocket-key")
    if not key:
        raise BadRequest("Sec-WebSocket-Key is missing")
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key.encode('ascii'))}",
    ]
    deflate = accepts_deflate(_header(headers, "sec-websocket-extensions"))
    if deflate:
        lines.append(f"Sec-WebSocket-Extensions: {DEFLATE_RESPONSE}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), deflate


def _codec() -> PerMessageDeflate:
    # Neither side takes context over, so one fresh codec per message serves both
    # directions: its "client" settings are simply used the other way round.
    return PerMessageDeflate(
        server_max_window_bits=15,
        client_max_window_bits=15,
        server_no_context_takeover=True,
        client_no_context_takeover=True,
    )


def compress(payload: bytes) -> bytes:
    """Compress one whole message on its own (no context takeover, RFC 7692 §7.2.1)."""
    return _codec().compress(payload)


def decompress(payload: bytes, limit: int) -> bytes:
    """Inflate one whole compressed message, producing at most ``limit`` bytes.

    Raises:
        PayloadTooLarge: The message inflates to more than ``limit`` bytes.
        ProtocolError: The payload is not valid deflate data.
    """
    return _codec().decompress(payload, limit, True)


class EchoConnection:
    """The frame-level logic of one connection: client frames in, server frames out.

    Args:
        deflate: Whether permessage-deflate was negotiated.
        max_message_size: The largest message echoed; larger fails with code 1009.
    """

    def __init__(self, deflate: bool, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self.deflate = deflate
        self.max_message_size = max_message_size
        #: Set once the closing handshake is over: the server then drops the connection.
        self.closed = False
        self._reader = FrameReader(self._check_header)
        self._opcode: int | None = None
        self._compressed = False
        self._parts: List[bytes] = []
        self._size = 0

    def _check_header(self, header: FrameHeader) -> bool:
        # RFC 6455 §5.1: a server must fail the connection on an unmasked client frame.
        if not header.masked:
            raise ProtocolError("client frame is not masked")
        opcode = header.opcode
        if opcode in RESERVED_OPCODES:
            raise ProtocolError(f"reserved opcode {opcode}")
        allowed_rsv = RSV1 if self.deflate and opcode in (Opcode.TEXT, Opcode.BINARY) else 0
        if header.rsv & ~allowed_rsv:
            raise ProtocolError("reserved bits set")
        if Opcode(opcode).is_control:
            if not header.fin or header.length > 125:
                raise ProtocolError("control frame fragmented or over 125 bytes")
        elif (opcode == Opcode.CONTINUATION) != (self._opcode is not None):
            raise ProtocolError("unexpected continuation or data frame")
        if self._size + header.length > self.max_message_size:
            raise PayloadTooLarge("message too large")
        return True

    def receive_data(self, data: bytes) -> bytes:
        """Process bytes from the client; return the bytes to send back.

        After a protocol error the answer is a close frame, and :attr:`closed` is set.
        """
        if self.closed:
            return b""
        self._reader.feed(data)
        output: List[bytes] = []
        try:
            while not self.closed:
                frame = self._reader.next_frame()
                if frame is None:
                    break
                output.append(self._on_frame(*frame))
        except ProtocolError as error:
            self.closed = True
            output.append(build_frame(Opcode.CLOSE, build_close_payload(error.code, ""), None))
        return b"".join(output)

    def _on_frame(self, header: FrameHeader, payload: bytes) -> bytes:
        opcode = header.opcode
        if opcode == Opcode.PING:
            return build_frame(Opcode.PONG, payload, None)
        if opcode == Opcode.PONG:
            return b""
        if opcode == Opcode.CLOSE:
            code, reason = parse_close_payload(payload)
            self.closed = True
            return build_frame(Opcode.CLOSE, build_close_payload(code, reason), None)
        if opcode != Opcode.CONTINUATION:
            self._opcode = opcode
            self._compressed = bool(header.rsv & RSV1)
        self._parts.append(payload)
        self._size += len(payload)
        if not header.fin:
            return b""
        return self._echo()

    def _echo(self) -> bytes:
        opcode, message = self._opcode, b"".join(self._parts)
        compressed = self._compressed
        self._opcode, self._parts, self._size = None, [], 0
        assert opcode is not None
        if compressed:
            message = decompress(message, self.max_message_size)
        if opcode == Opcode.TEXT:
            try:
                message.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError("text message is not valid UTF-8", 1007) from None
        if compressed:
            return build_frame(opcode, compress(message), None, rsv=RSV1)
        return build_frame(opcode, message, None)


class _Handler(socketserver.BaseRequestHandler):
    request: socket.socket

    def handle(self) -> None:
        sock = self.request
        head, rest = _read_head(sock)
        if not head:
            return
        try:
            _, headers = parse_request(head)
            response, deflate = handshake_response(headers)
        except BadRequest as error:
            body = f"{error}\n".encode()
            sock.sendall(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            return
        sock.sendall(response)
        connection = EchoConnection(deflate)
        data = rest
        while True:
            if data:
                sock.sendall(connection.receive_data(data))
            if connection.closed:
                # RFC 6455 §7.1.1: the server closes the TCP connection first.
                return
            data = sock.recv(65536)
            if not data:
                return

    def finish(self) -> None:
        try:
            self.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read up to the end of the HTTP head; return ``(head, bytes after it)``."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_REQUEST_SIZE:
            return b"", b""
        chunk = sock.recv(4096)
        if not chunk:
            return b"", b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client going away mid-connection is normal here; say nothing.
        pass


class EchoServer:
    """A loopback echo server, running in a background thread.

    Use it as a context manager::

        with EchoServer() as server:
            ws = WebSocket(server.url)

    Args:
        host: The address to listen on.
        port: The port; ``0`` picks a free one.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port), _Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    @property
    def url(self) -> str:
        """The server's ``ws://`` URL."""
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host_port(host, port)}/"

    def start(self) -> None:
        """Start serving in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> EchoServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
