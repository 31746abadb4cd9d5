"""What the session needs of a connected socket, plain or TLS.

:class:`Opened` is what :meth:`lomond.network.connector.Connector.open` hands the
session: the socket, and how to read and write it without blocking.
"""

from __future__ import annotations

import socket

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Callable, Protocol

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


#: What a non-blocking plain socket raises when a read or write would block.
PLAIN_WOULD_BLOCK = (BlockingIOError, InterruptedError)


class Opened:
    """A connection, open and ready for the upgrade request."""

    __slots__ = ("sock", "proxy_url", "would_block", "tls_pending", "write_needs_read")

    def __init__(
        self,
        sock: SocketLike,
        proxy_url: str | None,
        would_block: tuple[type[OSError], ...] = PLAIN_WOULD_BLOCK,
        tls_pending: Callable[[], int] | None = None,
        write_needs_read: tuple[type[OSError], ...] = (),
    ) -> None:
        #: The socket: plain, TLS, or TLS inside TLS.
        self.sock = sock
        #: The URL of the proxy it goes through (without credentials), or ``None``.
        self.proxy_url = proxy_url
        #: What reading or writing it raises when it would block, once non-blocking.
        self.would_block = would_block
        #: For TLS over a plain socket, its ``pending()``: decrypted bytes buffered
        #: in the TLS layer never wake the selector, so the reader asks whether to
        #: read on.
        self.tls_pending = tls_pending
        #: What a write raises when it can go on only after a read (TLS, while the
        #: peer renegotiates): waiting for writability then would wake at once, for
        #: ever.
        self.write_needs_read = write_needs_read


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
