"""Reading a non-blocking socket, and polling it briefly before the loop sleeps.

:meth:`Reader.read` reads until the socket has nothing more and hands each read to
the session; :meth:`Reader.spin` polls for a moment before the loop waits on its
selector, because waking a sleeping thread costs more than a nearby server takes to
answer (the echo benchmark).
"""

from __future__ import annotations

import socket
import threading
import time

from ..network.sockets import PLAIN_WOULD_BLOCK

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Callable, Union

    from ..network.sockets import Opened, SocketLike

    #: What one read gives: the bytes (a view of the reader's buffer, valid until the
    #: next read), or ``b""`` at the end of the stream.
    Data = Union[bytes, memoryview]

#: Bytes read from the socket at a time.
READ_SIZE = 256 * 1024
#: Seconds the loop polls the socket before it sleeps, while replies come that fast.
SPIN_TIME = 100e-6
#: After a poll that found nothing, the loop sleeps at once for the next 1, 2, 4, ...
#: waits, up to this many, before polling again.
MAX_SPIN_SKIP = 128


class Reader:
    """Reads one connection's socket.

    Args:
        lock: The session's lock, held while a TLS socket is read: OpenSSL must not
            read and write one connection from two threads at once, and writes hold it.
    """

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._sock: SocketLike | None = None
        self._would_block: tuple[type[OSError], ...] = PLAIN_WOULD_BLOCK
        self._tls_pending: Callable[[], int] | None = None
        self._locked = False
        # The buffer exists only while the connection is open.
        self._view = memoryview(b"")
        #: Seconds to poll the socket before sleeping (0 never polls; see spin()).
        self.spin_time = SPIN_TIME
        self._spin_skip = 0
        self._spin_backoff = 1

    def attach(self, opened: Opened, buffer: memoryview | None = None) -> None:
        """Read ``opened.sock`` from now on (it is non-blocking).

        ``buffer`` is the buffer to read into, shared with the other connections of
        the loop (each read is handed on before the next); ``None`` for a buffer of
        the connection's own.
        """
        sock = opened.sock
        self._sock = sock
        self._would_block = opened.would_block
        self._tls_pending = opened.tls_pending
        # Plain and TLS sockets read into one buffer kept for the whole connection: a
        # fresh 256 KiB bytes object per read would cost an allocation (and page
        # faults) on every small message. The protocol copies what it keeps.
        if isinstance(sock, socket.socket):
            self._view = memoryview(bytearray(READ_SIZE)) if buffer is None else buffer
            self._locked = type(sock) is not socket.socket  # TLS over a plain socket
        # Otherwise (TLS inside TLS), the socket keeps its own lock and gives bytes.

    def detach(self) -> None:
        """Stop reading, and free the buffer."""
        self._sock = None
        self._view = memoryview(b"")

    def read(self, feed: Callable[[Data], None], fail: Callable[[OSError], None]) -> bool:
        """Read until the socket has nothing more, passing each read to ``feed``.

        ``feed`` gets ``b""`` at the end of the stream; ``fail`` gets a socket error.

        Returns:
            Whether the socket had anything (data, its end, or an error).
        """
        sock = self._sock
        if sock is None:
            return False
        view = self._view
        read = False
        while True:
            try:
                if not view:
                    data: Data = sock.recv(READ_SIZE)
                elif self._locked:
                    with self._lock:
                        data = view[: sock.recv_into(view)]  # type: ignore[attr-defined]
                else:
                    data = view[: sock.recv_into(view)]  # type: ignore[attr-defined]
            except self._would_block:
                return read
            except OSError as error:
                fail(error)
                return True
            read = True
            feed(data)
            if not data or not self.tls_buffered():
                return True

    def tls_buffered(self) -> bool:
        """Whether the TLS layer holds decrypted bytes (they never wake the selector)."""
        pending = self._tls_pending
        if pending is None:
            return False
        with self._lock:
            return pending() > 0

    def spin(self, read: Callable[[], bool], timeout: float | None) -> bool:
        """Poll with ``read`` for up to :attr:`spin_time` (and ``timeout``) seconds.

        While polling pays (the last poll found data), the loop polls first. A poll
        that finds nothing makes the loop skip polling for the next 1, 2, 4, ...
        waits (up to :data:`MAX_SPIN_SKIP`): a quiet connection, or a distant server,
        costs at most one short poll every so often.

        Returns:
            Whether ``read`` found something.
        """
        if self._spin_skip:
            self._spin_skip -= 1
            return False
        budget = self.spin_time if timeout is None else min(self.spin_time, timeout)
        end = time.perf_counter() + budget
        while True:
            if read():
                self._spin_backoff = 1
                return True
            if time.perf_counter() >= end:
                self._spin_skip = self._spin_backoff
                self._spin_backoff = min(2 * self._spin_backoff, MAX_SPIN_SKIP)
                return False
