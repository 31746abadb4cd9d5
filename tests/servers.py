"""Real peers for the tests: the ``websockets`` server, and a raw socket server.

Every server binds port 0 on 127.0.0.1 and runs in a daemon thread.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import ssl
import threading
from typing import Any, Callable, Iterator

from websockets.sync.server import ServerConnection, serve

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@contextlib.contextmanager
def websockets_server(
    handler: Callable[[ServerConnection], None], scheme: str = "ws", **kwargs: Any
) -> Iterator[str]:
    """Run a ``websockets`` server with ``handler``; yield its base URL (``ws://127.0.0.1:N``)."""
    kwargs.setdefault("compression", None)
    server = serve(handler, "127.0.0.1", 0, **kwargs)
    port = server.socket.getsockname()[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(5)


def echo(connection: ServerConnection) -> None:
    """Echo every message back."""
    for message in connection:
        connection.send(message)


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest())


class RawConnection:
    """The server side of one accepted connection, for scripted misbehaviour."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.request = b""

    def read_request(self) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        self.request = data
        return data

    @property
    def key(self) -> bytes:
        for line in self.request.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                return value.strip()
        return b""

    def header(self, name: bytes) -> bytes | None:
        for line in self.request.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    def handshake(self, extra: bytes = b"") -> None:
        """Read the request and answer with a valid 101 (plus ``extra`` header lines)."""
        self.read_request()
        self.sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(self.key) + b"\r\n" + extra + b"\r\n"
        )

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_header(self) -> tuple[int, int, bytes]:
        """Read a client frame's header: ``(first byte, payload length, masking key)``.

        The key is four zero bytes for an unmasked frame.
        """
        header = self._recv_exact(2)
        length = header[1] & 0x7F
        if length == 126:
            length = int.from_bytes(self._recv_exact(2), "big")
        elif length == 127:
            length = int.from_bytes(self._recv_exact(8), "big")
        key = self._recv_exact(4) if header[1] & 0x80 else b"\0\0\0\0"
        return header[0], length, key

    def recv_frame(self) -> tuple[int, bytes]:
        """Read one (masked) client frame; return ``(opcode, unmasked payload)``."""
        first, length, key = self.recv_header()
        payload = self._recv_exact(length)
        return first & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(payload))

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError("client closed the connection")
            data += chunk
        return data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0) -> bytes:
    """An unmasked server frame."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload)
    if length < 126:
        header = bytes([first, length])
    elif length < 65536:
        header = bytes([first, 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([first, 127]) + length.to_bytes(8, "big")
    return header + payload


@contextlib.contextmanager
def raw_server(
    script: Callable[[RawConnection], None],
    *,
    ssl_context: ssl.SSLContext | None = None,
    receive_buffer: int | None = None,
) -> Iterator[str]:
    """Accept connections and run ``script`` on each; yield the base URL.

    Args:
        script: Plays the server's part on each accepted connection.
        ssl_context: Serve ``wss://``: each connection is wrapped in TLS first.
        receive_buffer: ``SO_RCVBUF`` for the accepted sockets, to make a server that
            does not read fill up quickly.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if receive_buffer is not None:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    errors: list[BaseException] = []

    def serve_one(sock: socket.socket) -> None:
        # As real servers do: a reset right after a send must not find the bytes
        # still held back by Nagle's algorithm (they would be lost with it).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            try:
                sock.settimeout(5)
                sock = ssl_context.wrap_socket(sock, server_side=True)
                sock.settimeout(None)
            except OSError:
                sock.close()
                return
        connection = RawConnection(sock)
        try:
            script(connection)
        except (OSError, EOFError):
            pass
        except BaseException as error:  # surfaced to the test below
            errors.append(error)
        finally:
            connection.close()

    def accept_loop() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve_one, args=(sock,), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield f"{'ws' if ssl_context is None else 'wss'}://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)
    if errors:
        raise errors[0]


def free_port_refused() -> int:
    """A loopback port with nothing listening (bound then closed, so refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def run(ws: Any, on_event: Callable[[Any], None] | None = None, **connect_args: Any) -> list[Any]:
    """Run ``ws.connect(**connect_args)`` to the end, collecting the events."""
    collected = []
    for event in ws.connect(**connect_args):
        collected.append(event)
        if on_event is not None:
            on_event(event)
    return collected


def names(collected: list[Any]) -> list[str]:
    return [event.name for event in collected]


#: The names of the events that open every successful connection (docs/events.rst).
OPEN = ["connecting", "connected", "ready", "poll"]
