"""A small WebSocket echo server on the loopback interface, for ``lomond --demo``.

It needs nothing but the standard library and lomond's own wire code in the
server's role, the same pieces :class:`lomond.testing.Server` is built on:
:mod:`lomond.testing.handshake` answers the opening handshake and
:class:`~lomond.testing.protocol.ServerProtocol` reads the client's masked frames.

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

from ..errors import ProtocolError
from ..protocol.frames import Opcode, build_close_payload, build_frame
from ..protocol.url import host_port
from ..testing.connection import read_head
from ..testing.handshake import (
    DEFLATE_RESPONSE,
    MAX_REQUEST_SIZE,
    BadRequest,
    accepts_deflate,
    parse_request,
    upgrade_response,
)
from ..testing.protocol import ClientMessage, ServerProtocol, compress, decompress, server_frame

__all__ = [
    "DEFLATE_RESPONSE",
    "MAX_MESSAGE_SIZE",
    "MAX_REQUEST_SIZE",
    "BadRequest",
    "EchoConnection",
    "EchoServer",
    "accepts_deflate",
    "compress",
    "decompress",
    "handshake_response",
    "parse_request",
]

#: The largest message (after decompression) the server echoes.
MAX_MESSAGE_SIZE = 1024 * 1024

Headers = List[Tuple[str, str]]


def handshake_response(headers: Headers) -> tuple[bytes, bool]:
    """Return the ``101`` response to an upgrade request, and whether it enables deflate.

    Raises:
        BadRequest: The request is not a version 13 WebSocket upgrade.
    """
    response, deflate, _ = upgrade_response(headers)
    return response, deflate


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
        self._protocol = ServerProtocol(deflate, max_message_size)

    def receive_data(self, data: bytes) -> bytes:
        """Process bytes from the client; return the bytes to send back.

        After a protocol error the answer is a close frame, and :attr:`closed` is set.
        """
        if self.closed:
            return b""
        self._protocol.receive_data(data)
        output: List[bytes] = []
        try:
            while not self.closed:
                message = self._protocol.next_message()
                if message is None:
                    break
                output.append(self._answer(message))
        except ProtocolError as error:
            self.closed = True
            output.append(build_frame(Opcode.CLOSE, build_close_payload(error.code, ""), None))
        return b"".join(output)

    def _answer(self, message: ClientMessage) -> bytes:
        opcode = message.opcode
        if opcode == Opcode.PING:
            return server_frame(Opcode.PONG, message.payload)
        if opcode == Opcode.PONG:
            return b""
        if opcode == Opcode.CLOSE:
            code, reason = message.close()
            self.closed = True
            return server_frame(Opcode.CLOSE, build_close_payload(code, reason))
        return server_frame(opcode, message.payload, compressed=message.compressed)


class _Handler(socketserver.BaseRequestHandler):
    request: socket.socket

    def handle(self) -> None:
        sock = self.request
        head, rest = read_head(sock)
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
