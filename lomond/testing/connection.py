"""One client's connection to :class:`lomond.testing.Server`: its socket and its thread.

The connection's thread reads the request, answers it, then reads frames until the
connection ends, answering pings and close frames itself. What it reads goes to the
:class:`Hub` it was given (the server). The test's thread writes through
:meth:`Connection.send` under the connection's lock.
"""

from __future__ import annotations

import socket
import struct
import threading

from ..errors import ProtocolError
from ..protocol.frames import Opcode, build_close_payload
from .handshake import (
    MAX_REQUEST_SIZE,
    BadRequest,
    error_response,
    parse_request,
    upgrade_response,
)
from .protocol import ClientMessage, ServerProtocol, server_frame

TYPE_CHECKING = False  # typing is not imported at run time
if TYPE_CHECKING:
    from typing import Protocol, Sequence

    class Hub(Protocol):
        """What a connection reports to: the server."""

        def opened(self, connection: Connection) -> None: ...
        def message(self, connection: Connection, message: ClientMessage) -> None: ...
        def violation(self, connection: Connection, description: str) -> None: ...
        def ended(self, connection: Connection) -> None: ...


class Options:
    """How a connection answers the handshake and reads frames.

    Args:
        subprotocols: The subprotocols the server speaks, preferred first.
        compress: Whether to accept permessage-deflate.
        reject: ``(status, headers)`` to answer the upgrade with, or ``None``.
        max_message_size: The largest message taken from the client.
        close_timeout: How long to wait for the client's close frame after the server's.
    """

    def __init__(
        self,
        subprotocols: Sequence[str] = (),
        compress: bool = False,
        reject: tuple[int, list[tuple[str, str]]] | None = None,
        max_message_size: int = 16 * 1024 * 1024,
        close_timeout: float = 5.0,
    ) -> None:
        self.subprotocols = subprotocols
        self.compress = compress
        self.reject = reject
        self.max_message_size = max_message_size
        self.close_timeout = close_timeout


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read up to the end of the HTTP head; return ``(head, bytes after it)``.

    ``head`` is empty if the client went away or sent more than
    :data:`~lomond.testing.handshake.MAX_REQUEST_SIZE` bytes without ending it.
    """
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


class Connection:
    """One accepted client, served by its own daemon thread.

    Attributes:
        state: ``"handshake"``, ``"open"``, ``"closing"`` (the server sent its close
            frame), ``"failing"`` (after a violation), ``"closed"`` (after the
            client's close frame) or ``"ended"``.
        ending: How the server ends it: ``"close"``, ``"drop"`` or ``"reset"``.
        close_received: ``(code, reason)`` of the client's close frame, if one came.
        protocol: The subprotocol chosen, or ``None``.
        deflate: Whether permessage-deflate is on.
    """

    def __init__(self, sock: socket.socket, hub: Hub, options: Options) -> None:
        self.sock = sock
        self.hub = hub
        self.options = options
        self.state = "handshake"
        self.ending = "close"
        self.close_received: tuple[int | None, str] | None = None
        self.protocol: str | None = None
        self.deflate = False
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self.thread = threading.Thread(target=self._run, name="lomond-test-server", daemon=True)

    def start(self) -> None:
        """Start serving the client in the connection's thread."""
        self.thread.start()

    # -- the test's side ----------------------------------------------------------------

    def send(self, opcode: int, payload: bytes) -> None:
        """Send one message or control frame (compressed if deflate is on).

        Raises:
            AssertionError: The connection is no longer open, or the socket failed.
        """
        with self._lock:
            if self.state != "open":
                raise AssertionError(f"the client's connection is {self.state}: nothing sent")
            compressed = self.deflate and opcode in (Opcode.TEXT, Opcode.BINARY)
            self._write(server_frame(opcode, payload, compressed=compressed))

    def close(self, code: int | None, reason: bytes, failing: bool = False) -> None:
        """Send a close frame; the connection ends when the client answers (or the
        close timeout passes). Does nothing unless the connection is open."""
        with self._lock:
            if self.state != "open":
                return
            self.state = "failing" if failing else "closing"
            try:
                self._write(server_frame(Opcode.CLOSE, build_close_payload(code, reason)))
            except AssertionError:
                pass  # the read side finds out too
        self._timer = threading.Timer(self.options.close_timeout, self.abort, ("drop",))
        self._timer.daemon = True
        self._timer.start()

    def abort(self, ending: str) -> None:
        """End the connection without a close frame: ``"drop"`` (FIN) or ``"reset"`` (RST)."""
        # Not under the lock: a send blocked on a client that does not read holds it,
        # and shutting the socket down is what ends that send.
        if self.state == "ended":
            return
        self.ending = ending
        try:
            if ending == "reset":
                # SO_LINGER with a zero timeout: close() sends RST, not FIN.
                linger = struct.pack("ii", 1, 0)
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                self.sock.shutdown(socket.SHUT_RD)  # wakes the thread, which closes
            else:
                self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # closed already

    def _write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as error:
            raise AssertionError(f"could not send to the client: {error}") from None

    # -- the connection's thread --------------------------------------------------------

    def _run(self) -> None:
        try:
            rest = self._handshake()
            if rest is not None:
                self.hub.opened(self)
                self._serve(rest)
        except (OSError, AssertionError):
            pass  # the client went away: the connection ends
        finally:
            self._end()

    def _handshake(self) -> bytes | None:
        """Answer the request; return the bytes after its head, or ``None`` if refused."""
        head, rest = read_head(self.sock)
        if not head:
            return None
        options = self.options
        try:
            _, headers = parse_request(head)
            if options.reject is not None:
                status, extra = options.reject
                self.sock.sendall(error_response(status, extra, "rejected by the test server\n"))
                return None
            response, self.deflate, self.protocol = upgrade_response(
                headers, subprotocols=options.subprotocols, compress=options.compress
            )
        except BadRequest as error:
            self.hub.violation(self, f"bad upgrade request: {error}")
            self.sock.sendall(error_response(400, [("Content-Type", "text/plain")], f"{error}\n"))
            return None
        with self._lock:
            self.sock.sendall(response)
            self.state = "open"
        return rest

    def _serve(self, data: bytes) -> None:
        protocol = ServerProtocol(self.deflate, self.options.max_message_size)
        while True:
            protocol.receive_data(data)
            if not self._take(protocol):
                return
            data = self.sock.recv(65536)
            if not data:
                return

    def _take(self, protocol: ServerProtocol) -> bool:
        """Handle what the client sent; return whether to go on reading."""
        while True:
            try:
                message = protocol.next_message()
            except ProtocolError as error:
                if self.state in ("open", "closing"):
                    self.hub.violation(self, str(error))
                    self.close(error.code, str(error).encode("utf-8"), failing=True)
                continue
            if message is None:
                return True
            if message.opcode == Opcode.CLOSE:
                return self._on_close(message)
            if message.opcode == Opcode.PING:
                self._answer_ping(message.payload)
            elif message.opcode != Opcode.PONG and self.state in ("open", "closing"):
                self.hub.message(self, message)

    def _answer_ping(self, payload: bytes) -> None:
        with self._lock:
            if self.state == "open":
                self._write(server_frame(Opcode.PONG, payload))

    def _on_close(self, message: ClientMessage) -> bool:
        code, reason = message.close()
        with self._lock:
            self.close_received = (code, reason)
            if self.state == "open":
                # RFC 6455 §5.5.1: echo the close frame, then close the connection.
                self.state = "closed"
                self._write(server_frame(Opcode.CLOSE, build_close_payload(code, reason)))
        # RFC 6455 §7.1.1: the server closes the TCP connection first.
        return False

    def _end(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self.state = "ended"
            try:
                if self.ending != "reset":
                    self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
        self.hub.ended(self)
