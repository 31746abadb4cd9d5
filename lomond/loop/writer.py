"""Writing the protocol's output to a non-blocking socket.

The protocol is the output queue (:mod:`lomond.protocol.output`): the
:class:`Writer` takes its bytes only when the socket has taken everything it took
before, so what a slow server leaves waiting waits in the protocol, as whole frames.
A write that fails is never raised here: it is noted (:attr:`Writer.error`), what
waits is dropped, and the protocol is told (``send_failed``); the loop reads on, for
what the server sent before, and ends the connection.

Every method but :meth:`Writer.take_traces` is called with the session's lock held.
"""

from __future__ import annotations

from ..network.sockets import PLAIN_WOULD_BLOCK, Opened
from ..protocol import ClientProtocol
from ..protocol.states import CLOSE_QUEUED

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Any

    from ..network.sockets import SocketLike

# Nothing left unsent (one shared empty view, not a new one after every write).
_NOTHING = memoryview(b"")


class Writer:
    """Writes a protocol's output to its socket, as far as the socket takes it.

    Args:
        protocol: Whose output to write.
        tracing: Whether to note a ``socket_send`` trace record for each write.
    """

    def __init__(self, protocol: ClientProtocol, tracing: bool) -> None:
        self.protocol = protocol
        self.sock: SocketLike | None = None
        # What the socket has not taken yet of the bytes last taken from the protocol.
        self.unsent = _NOTHING
        #: Bytes ever written, to tell a waiting sender whether its data went out.
        self.sent_total = 0
        #: Why writing failed, once it has: nothing more is written after that.
        self.error: str | None = None
        #: Whether the last write can go on only after a read (a TLS renegotiation):
        #: then the loop waits to read, and writes again after each read.
        self.needs_read = False
        self._would_block: tuple[type[OSError], ...] = PLAIN_WOULD_BLOCK
        self._needs_read_errors: tuple[type[OSError], ...] = ()
        self._tracing = tracing
        #: Trace records noted here, emitted by the session once its lock is released
        #: (see :meth:`take_traces`).
        self.traces: list[tuple[str, dict[str, Any]]] = []

    def attach(self, opened: Opened) -> None:
        """Write to ``opened.sock`` from now on (it is non-blocking)."""
        self.sock = opened.sock
        self._would_block = opened.would_block
        self._needs_read_errors = opened.write_needs_read

    def detach(self) -> SocketLike | None:
        """Stop writing: drop what waits, and return the socket (to close it)."""
        sock, self.sock = self.sock, None
        self.unsent = _NOTHING
        return sock

    @property
    def waiting(self) -> int:
        """How many bytes wait to be written (here and in the protocol)."""
        return len(self.unsent) + self.protocol.output_size

    def flush(self) -> None:
        """Write what the protocol produced, as far as the socket takes it now.

        Never raises: a socket error is noted (see :meth:`failed`).
        """
        sock = self.sock
        if sock is None:
            return  # not open yet (the request waits for the session), or over
        if self.error is not None:
            self.discard()  # nothing can be written any more
            return
        try:
            self._drain(sock)
        except OSError as error:
            self.failed(f"socket error; {error}")

    def _drain(self, sock: SocketLike) -> None:
        """Write until the protocol has nothing more or the kernel's buffer is full."""
        protocol = self.protocol
        unsent = self.unsent
        while True:
            if not unsent:
                data = protocol.data_to_send()
                if not data:
                    self.unsent = _NOTHING
                    protocol.output_blocked = False
                    return
                unsent = memoryview(data)
                if self._tracing:
                    self.traces.append(("socket_send", {"length": len(data)}))
            try:
                sent = sock.send(unsent)
            except self._would_block as error:
                self.unsent = unsent
                protocol.output_blocked = True
                self.needs_read = isinstance(error, self._needs_read_errors)
                return
            self.needs_read = False
            self.sent_total += sent
            unsent = unsent[sent:] if sent < len(unsent) else _NOTHING

    def failed(self, reason: str) -> None:
        """Writing failed: drop what waits, tell the protocol, write nothing more.

        The socket stays open for reading: a server that closes and then resets the
        connection (or whose FIN makes our next write fail) sent its close frame
        first, and the loop still reads it.
        """
        self.error = reason
        self.discard()
        self.protocol.send_failed(reason)

    def discard(self) -> None:
        """Drop what waits, here and in the protocol."""
        self.unsent = _NOTHING
        while self.protocol.data_to_send():
            pass

    @property
    def close_frame_unsent(self) -> bool:
        """Whether our close frame was queued but not (entirely) written yet."""
        # Nothing follows a close frame, so if anything waits, the close frame does.
        return bool(self.waiting) and self.protocol.state in CLOSE_QUEUED

    def take_traces(self) -> list[tuple[str, dict[str, Any]]]:
        """Return (and forget) the trace records noted since the last call."""
        traces, self.traces = self.traces, []
        return traces
