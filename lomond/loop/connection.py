"""One connection, as the loop sees it: its protocol, its socket, and the calls on it.

A :class:`Connection` holds everything of one WebSocket connection but the loop that
waits for it: the protocol, the socket's :class:`~lomond.loop.writer.Writer` and
:class:`~lomond.loop.reader.Reader`, the lock that every protocol call and every
write happens under, and the state of the sends of the loop body.

Threads: ``send_*`` and ``close()`` may be called from any thread. A thread other than
the loop's that finds more than :data:`HIGH_WATER` bytes waiting waits (writing them
itself) until they shrink, so a fast sender cannot fill memory. The loop's own
thread never waits, so a server that stops reading cannot stall the timers, and a
server that echoes cannot deadlock it (the loop keeps reading while its output
waits); sends from the loop body are therefore only bounded by the memory they
occupy. How output waits, and what a failed write does, is in
:mod:`lomond.loop.writer`; how the socket is read, in :mod:`lomond.loop.reader`.

Messages streamed from a file or an iterable (in fragments, with bounded memory)
are sent by :mod:`lomond.loop.streaming`.

Speed: frames sent from the loop body after the first 8 (for one event) gather and
go out in one write when the application asks for the next event (see
:meth:`Connection.call`).
"""

from __future__ import annotations

import select
import threading
import time

from .. import events
from ..errors import ConnectFail, TransportFail
from ..network.connector import Connector
from ..network.deadline import Deadline
from ..network.sockets import shutdown
from ..protocol import ClientProtocol, State
from ..protocol.states import CLOSE_QUEUED
from .latency import RoundTrips
from .reader import Reader
from .streaming import StreamSending
from .timers import Timers
from .trace import Tracer
from .writer import Writer

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Callable, Tuple, TypeVar

    from ..network.deadline import Clock
    from ..network.sockets import Opened, SocketLike
    from .reader import Data

    T = TypeVar("T")
    #: The next connection of a redirect: its protocol, its connector, its URL.
    NextHop = Tuple[ClientProtocol, Connector, str]

#: A thread other than the loop's waits while more than this many bytes are queued.
HIGH_WATER = 4 * 1024 * 1024
#: The loop body's first frames (for one event) are written at once, this many; the
#: next ones are written together when it asks for the next event, or as soon as
#: :data:`GATHER_LIMIT` bytes have gathered.
GATHER_AFTER = 8
GATHER_LIMIT = 64 * 1024


class Connection(StreamSending):
    """One connection: a protocol, the way to open its socket, and the calls on it.

    Args:
        protocol: The connection's sans-I/O protocol, fresh (its first output is the
            upgrade request).
        connector: Opens the socket (DNS, TCP, proxy, TLS).
        url: The URL for ``Connecting`` and ``Connected`` (without credentials).
        connect_timeout: Seconds for opening the socket and the upgrade response
            together; ``None`` waits forever.
        tracer: Receives the trace records, or ``None``.
        clock: A monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        protocol: ClientProtocol,
        connector: Connector,
        *,
        url: str,
        connect_timeout: float | None = None,
        tracer: Tracer | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.protocol = protocol
        self.connector = connector
        self.url = url
        self.connect_timeout = connect_timeout
        self.tracer = tracer
        self._clock = clock
        self._lock = threading.Lock()
        self._sock: SocketLike | None = None
        self._writer = Writer(protocol, tracing=tracer is not None)
        self._reader = Reader(self._lock)
        self._proxy_url: str | None = None
        self._loop_thread: int | None = None
        # While the application handles an event (the generator is suspended), and
        # how many of its frames were written at once since (see call()).
        self._suspended = False
        self._writes_while_suspended = 0
        self._start_time = clock()
        self._close_sent_at: float | None = None
        self._connect_deadline: Deadline | None = None
        # The timers of the running loop; the pings in flight, for latency; when the
        # socket was last read (on the session clock).
        self._timers: Timers | None = None
        self._round_trips = RoundTrips()
        self._last_read = self._start_time
        # The thread sending a message in fragments, if any (lomond.loop.streaming).
        self._stream_owner: int | None = None
        self._stream_done = threading.Condition(self._lock)
        #: Whether the loop of this connection runs (started and not finished).
        self.running = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url!r} {self.protocol.state.value}>"

    @property
    def session_time(self) -> float:
        """Seconds since the connection was created, on its monotonic clock."""
        return self._clock() - self._start_time

    @property
    def latency(self) -> float | None:
        """Seconds of the last ping round trip (see ``WebSocket.latency``), or ``None``."""
        return self._round_trips.latency

    @property
    def sent_close_time(self) -> float | None:
        """The time (as :attr:`session_time`) our close frame was queued, or ``None``."""
        if self._close_sent_at is None:
            return None
        return self._close_sent_at - self._start_time

    # -- calls from any thread ----------------------------------------------------

    def call(self, action: Callable[[ClientProtocol], T]) -> T:
        """Run ``action`` on the protocol under the lock, then write what it produced.

        Never waits for the socket and never raises a socket error: a write that
        fails ends the connection (the loop reports it). Used for closing, which must
        not wait behind queued data, and by the loop itself.

        In the loop's thread, while the application handles an event, its first
        :data:`GATHER_AFTER` frames are written at once and the next ones gather (up
        to :data:`GATHER_LIMIT` bytes) until the application asks for the next
        event: a burst of sends then costs one system call, not one per frame.

        Raises:
            WebSocketUnavailable: Raised by ``action`` when not connected.
        """
        in_loop = threading.get_ident() == self._loop_thread
        with self._lock:
            result = action(self.protocol)
            self._write_locked(in_loop)
        self._after_locked(in_loop)
        return result

    def send(self, action: Callable[[ClientProtocol], T], message: bool = True) -> T:
        """:meth:`call` for data: a failed write raises, and other threads wait for room.

        A data ``message`` from another thread than the loop's also waits while a
        message streams (:mod:`lomond.loop.streaming`); a ping or pong does not.

        Raises:
            TransportFail: The socket failed while writing, now or before.
            WebSocketUnavailable: Raised by ``action`` when not connected.
        """
        in_loop = threading.get_ident() == self._loop_thread
        writer = self._writer
        with self._lock:
            if self._stream_owner is not None and message and not in_loop:
                self._wait_for_stream_locked(threading.get_ident())
            result = action(self.protocol)
            self._write_locked(in_loop)
            failure = writer.error
            # Where the caller's data ends (only another thread may wait for room).
            end = None if in_loop else writer.sent_total + writer.waiting
        self._after_locked(in_loop)
        if failure is not None:
            raise TransportFail(failure)
        if end is not None and end - writer.sent_total > HIGH_WATER:
            try:
                self._wait_for_room(end)
            finally:
                self._emit_traces()
        return result

    def send_ping(self, payload: bytes) -> None:
        """:meth:`send` a ping, noting when, to measure its round trip.

        Raises:
            TransportFail: The socket failed while writing, now or before.
            WebSocketUnavailable: Not connected (or closing, or closed).
        """

        def ping(protocol: ClientProtocol) -> None:
            protocol.send_ping(payload)
            self._round_trips.ping_sent(payload, self._clock())

        self.send(ping, message=False)  # it may go between a stream's fragments

    def _write_locked(self, in_loop: bool) -> None:
        """Write what the protocol produced, unless the loop body's frames gather.

        See :meth:`call`: in the loop's thread, while the application handles an
        event, its frames gather after the first :data:`GATHER_AFTER`, until
        :data:`GATHER_LIMIT` bytes wait.
        """
        if in_loop and self._suspended:
            if self._writes_while_suspended < GATHER_AFTER:
                self._writes_while_suspended += 1
            elif self.protocol.output_size < GATHER_LIMIT:
                return
        self._flush_locked()

    def _after_locked(self, in_loop: bool) -> None:
        """After a call: emit its trace records, and wake the loop if it is elsewhere."""
        if self._writer.traces:
            self._emit_traces()
        if not in_loop:
            self._wake()
        elif not self._suspended:
            self._nudge()

    def force_disconnect(self) -> None:
        """Drop the connection; the loop then yields ``Disconnected(graceful=False)``."""
        self._drop("disconnected by force_disconnect()")

    def close(self) -> None:
        """Drop the connection at once (no close frame). Safe to call at any time.

        What the loop body gathered is written first, as far as the socket takes it
        without waiting. A loop running in another thread ends promptly with
        ``Disconnected(graceful=False)``.
        """
        self._drop("the WebSocket was closed without a closing handshake")

    def _drop(self, reason: str) -> None:
        with self._lock:
            self._flush_locked()  # what the loop body gathered goes first, as it was sent
            self._abort_locked(reason)
            if not self.running:
                self._close_socket_locked()
            elif self._sock is not None:
                # The loop may be waiting on the socket in another thread: end the
                # connection, and let the loop close the socket.
                shutdown(self._sock)
        self._after_locked(in_loop=False)

    def _flush_locked(self) -> None:
        if self._close_sent_at is None and self.protocol.state in CLOSE_QUEUED:
            self._close_sent_at = self._clock()
        self._writer.flush()

    def _abort_locked(self, reason: str) -> None:
        """End the connection now; graceful only if our close frame was written."""
        if self._writer.close_frame_unsent:
            self.protocol.send_failed(reason)
        self.protocol.abort(reason)

    def _wait_for_room(self, end: int) -> None:
        """Block a non-loop thread until the output is under the high-water mark.

        Args:
            end: The position (in bytes ever written) just after the caller's data.

        Raises:
            TransportFail: The connection ended before the caller's data was written.
        """
        writer = self._writer
        while True:
            with self._lock:
                if writer.sent_total >= end:
                    return
                sock = writer.sock
                self._flush_locked()
                if writer.error is not None:
                    raise TransportFail(writer.error)
                if sock is None:
                    raise TransportFail("connection closed before the data was sent")
                if writer.waiting <= HIGH_WATER:
                    return
                needs_read = writer.needs_read
            self._emit_traces()
            try:
                # Writable is no news when the write needs a read, which the loop does.
                select.select([], [] if needs_read else [sock], [], 0.1)
            except (OSError, ValueError):
                # The loop closed the socket meanwhile; the next round sees it.
                continue

    def _wake(self) -> None:
        """Interrupt the loop's wait, so that it sees new deadlines and queued output.

        The loop that waits for the connection provides it.
        """

    def _nudge(self) -> None:
        """A call in the loop's thread while this connection's loop is not handling
        one of its events: in a loop shared with other connections, it was made while
        another one's event was handled, and this one must see its new output and
        deadlines. The loop that waits for the connection provides it.
        """

    def _close_socket_locked(self) -> None:
        self._sock = None
        sock = self._writer.detach()
        self._reader.detach()
        if sock is not None:
            try:
                sock.close()
            except OSError:  # pragma: no cover - close() of a socket hardly fails
                pass

    def _trace(self, stage: str, **fields: object) -> None:
        if self.tracer is not None:
            self.tracer(stage, **fields)

    def _emit_traces(self) -> None:
        """Emit the trace records noted while the lock was held.

        Records are never emitted under the lock: the trace callable may call the
        WebSocket (``close()``, a ``send_*``), which takes the lock.
        """
        with self._lock:
            traces = self._writer.take_traces()
        for stage, fields in traces:
            self._trace(stage, **fields)

    # -- for the loop ------------------------------------------------------------

    def _switch(self, protocol: ClientProtocol, connector: Connector, url: str) -> None:
        """Leave this connection for the next one of a redirect: close the socket, and
        take the next protocol, connector and URL. The connect deadline stays: one
        ``connect_timeout`` covers the whole chain."""
        self._emit_traces()
        with self._lock:
            self._close_socket_locked()
            protocol.auto_pong = self.protocol.auto_pong
            self.protocol = protocol
            self.connector = connector
            self.url = url
            self._writer = Writer(protocol, tracing=self.tracer is not None)
            self._proxy_url = None
        if self.tracer is not None:
            self.tracer.url = url

    def _attach(self, opened: Opened, deadline: Deadline, buffer: memoryview | None) -> None:
        """Use the opened socket from now on, and start writing the upgrade request.

        ``buffer`` is the read buffer the loop's connections share, or ``None`` for
        one of the connection's own.

        Raises:
            ConnectFail: The request could not be written; the socket is closed.
        """
        sock = opened.sock
        self._proxy_url = opened.proxy_url
        with self._lock:
            sock.setblocking(False)
            self._sock = sock
            self._writer.attach(opened)
            self._reader.attach(opened, buffer)
            self._flush_locked()  # the request; what the socket does not take waits
            failure = self._writer.error
            if failure is not None:
                self._close_socket_locked()
        if failure is not None:
            raise ConnectFail(f"could not send the upgrade request: {failure}")
        self._emit_traces()
        self._connect_deadline = deadline

    def _next_batch(self) -> list[events.Event]:
        """Take the protocol's next events, and write what parsing them produced.

        That is pongs (sent before their ``Ping`` is handed over) and the close
        frame of a deferred failure.
        """
        with self._lock:
            received = self.protocol.events_received()
            self._flush_locked()
        if self._writer.traces:
            self._emit_traces()
        return received

    def _has_events(self) -> bool:
        with self._lock:
            return self.protocol.has_events

    def _resume(self) -> None:
        """Back from the application: note its thread, write what its sends gathered."""
        self._suspended = False
        self._loop_thread = threading.get_ident()
        if self._writes_while_suspended:
            self._writes_while_suspended = 0
            with self._lock:
                self._flush_locked()
            if self._writer.traces:
                self._emit_traces()

    def _fire_timers(self, timers: Timers) -> events.Event | None:
        """Act on every due deadline; return the event to yield, if any."""
        protocol = self.protocol
        now = self._clock()
        ending = timers.ending(protocol.state, self._close_sent_at, now)
        if ending is not None:
            with self._lock:
                self._abort_locked(ending)
            return None
        if protocol.state is State.CONNECTING:
            return None
        if timers.ping_due(now):
            with self._lock:
                if protocol.can_send:
                    protocol.send_ping()
                    self._round_trips.ping_sent(b"", now)
                    self._flush_locked()
        if protocol.state is State.OPEN and timers.unresponsive(now):
            with self._lock:
                self._abort_locked(timers.unresponsive_reason)
            return events.Unresponsive()
        if timers.poll_due(now):
            return events.Poll()
        return None

    def _read(self) -> bool:
        """Read until the socket has nothing more; return whether it had anything."""
        if self._reader.read(self._feed, self._read_failed):
            return True
        if self._writer.needs_read:
            # The read may have moved the TLS layer on (handshake records, no data):
            # the waiting write may go on now.
            with self._lock:
                self._flush_locked()
        return False

    def _feed(self, data: Data) -> None:
        """Pass one read to the protocol (``b""``: the end of the stream)."""
        now = self._last_read = self._clock()
        if self._timers is not None:
            self._timers.data_received(now)
        self._trace("socket_recv", length=len(data))
        with self._lock:
            if data:
                self.protocol.receive_data(data)  # type: ignore[arg-type]
            else:
                if self._writer.close_frame_unsent:
                    reason = "connection closed before our close frame was sent"
                    self.protocol.send_failed(reason)
                self.protocol.receive_eof()
            self._flush_locked()
        if self._writer.traces:
            self._emit_traces()

    def _read_failed(self, error: OSError) -> None:
        with self._lock:
            self._abort_locked(f"socket error; {error}")
