"""What the session needs of a connected socket, plain or TLS.

:class:`Opened` is what :meth:`lomond.network.connector.Connector.open` hands the
session: the socket, and how to read and write it without blocking.
"""

from __future__ import annotations

import socket
from typing import Callable, NamedTuple, Protocol

#: What a non-blocking plain socket raises when a read or write would block.
PLAIN_WOULD_BLOCK = (BlockingIOError, InterruptedError)


class SocketLike(Protocol):
    """What the session needs of a connection.

    A socket, or a :class:`~lomond.network.tls.NestedTLSSocket` (TLS inside TLS).
    """

    def fileno(self) -> int: ...

    def settimeout(self, value: float | None, /) -> None: ...

    def setblocking(self, flag: bool, /) -> None: ...

    def send(self, data: bytes | bytearray | memoryview, /) -> int: ...

    def sendall(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def recv(self, bufsize: int, /) -> bytes: ...

    def shutdown(self, how: int, /) -> None:
        """End the TCP connection, leaving the socket (and any TLS state) usable.

        Another thread may be reading the socket when it is called: an
        :class:`ssl.SSLSocket`'s own ``shutdown()`` also drops its TLS object, and that
        read would then fail with ``ValueError`` instead of seeing the end of the
        stream. See :func:`shutdown`.
        """

    def close(self) -> None: ...


class Opened(NamedTuple):
    """A connection, open and ready for the upgrade request."""

    #: The socket: plain, TLS, or TLS inside TLS.
    sock: SocketLike
    #: The URL of the proxy it goes through (without credentials), or ``None``.
    proxy_url: str | None
    #: What reading or writing it raises when it would block, once non-blocking.
    would_block: tuple[type[OSError], ...] = PLAIN_WOULD_BLOCK
    #: For TLS over a plain socket, its ``pending()``: decrypted bytes buffered in
    #: the TLS layer never wake the selector, so the reader asks whether to read on.
    tls_pending: Callable[[], int] | None = None
    #: What a write raises when it can go on only after a read (TLS, while the peer
    #: renegotiates): waiting for writability then would wake at once, for ever.
    write_needs_read: tuple[type[OSError], ...] = ()


def shutdown(sock: SocketLike) -> None:
    """End ``sock``'s TCP connection in both directions, from any thread; never raises.

    A read blocked (or about to block) in another thread then sees the end of the
    stream. For a TLS socket, the TCP socket under it is shut down, not the TLS
    session (whose teardown another thread's read would not survive).
    """
    try:
        if isinstance(sock, socket.socket):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        else:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected any more
