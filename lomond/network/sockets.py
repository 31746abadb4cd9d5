"""What the session needs of a connected socket, plain or TLS.

:class:`Opened` is what :meth:`lomond.network.connector.Connector.open` hands the
session: the socket, and how to read and write it without blocking.
"""

from __future__ import annotations

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

    def shutdown(self, how: int, /) -> None: ...

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
