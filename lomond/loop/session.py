"""The blocking shell: one generator that owns the socket, the clock and the timers.

:meth:`WebsocketSession.run` opens the connection, then loops: wait on a selector
until the socket is readable or the nearest deadline comes → read → feed the
protocol → send what it produced → yield its events → fire due timers.

Threads: every protocol call and every socket write happens under one lock, so
``send_*`` and ``close()`` may be called from any thread. The socket is
non-blocking once open. The protocol is the output queue: the session takes its
bytes only when the socket has taken everything it took before, so bytes the kernel
cannot take yet wait in the protocol, where an automatic pong can replace an
earlier one that is still waiting (RFC 6455 §5.5.3). A thread other than the loop's
that finds more than :data:`HIGH_WATER` bytes waiting waits (writing them itself)
until they shrink, so a fast sender cannot fill memory. The loop's own thread never
waits, so a server that stops reading cannot stall the timers, and a server that
echoes cannot deadlock it (the loop keeps reading while its output waits); sends
from the loop body are therefore only bounded by the memory they occupy.

Failures: a socket error while writing never raises out of the loop (only out of
the ``send_*`` call that met it, as :class:`~lomond.errors.TransportFail`). The
loop then reads what the server sent before the failure, such as its close frame,
and ends with ``Disconnected(graceful=False)``. ``graceful`` is true only when our
close frame was written and the server's was received.

Speed: frames sent from the loop body after the first 8 (for one event) gather and
go out in one write when the application asks for the next event (see
:meth:`WebsocketSession.call`), and the loop polls the socket briefly before it
sleeps while replies come fast (see :meth:`WebsocketSession._spin`).
"""

from __future__ import annotations

import select
import selectors
import socket
import threading
import time
from typing import Callable, Generator, TypeVar

from .. import events
from .._logging import log
from ..errors import ConnectFail, TransportFail
from ..network.connector import Connector
from ..network.deadline import Clock, Deadline
from ..network.sockets import PLAIN_WOULD_BLOCK, SocketLike, shutdown
from ..protocol import ClientProtocol, State
from ..protocol.states import CLOSE_QUEUED
from .timers import Timers
from .trace import Tracer, event_record

T = TypeVar("T")

#: Bytes read from the socket at a time.
READ_SIZE = 256 * 1024
#: After a write failed, the loop reads at most this many times more (what the
#: kernel already holds) before it ends the connection.
READS_AFTER_WRITE_FAILURE = 64
#: A thread other than the loop's waits while more than this many bytes are queued.
HIGH_WATER = 4 * 1024 * 1024
#: The longest the loop sleeps in one wait, in seconds: a timer further away than
#: this is checked again after it (a selector refuses very long timeouts).
MAX_WAIT = 3600.0
#: The loop body's first frames (for one event) are written at once, this many; the
#: next ones are written together when it asks for the next event, or as soon as
#: :data:`GATHER_LIMIT` bytes have gathered.
GATHER_AFTER = 8
GATHER_LIMIT = 64 * 1024
#: Seconds the loop polls the socket before it sleeps, while replies come that fast.
SPIN_TIME = 100e-6
#: After a poll that found nothing, the loop sleeps at once for the next 1, 2, 4, ...
#: waits, up to this many, before polling again.
MAX_SPIN_SKIP = 128

SelectorFactory = Callable[[], selectors.BaseSelector]

# Events that need no logging and no action from the loop (unless tracing).
_MESSAGE_EVENTS = frozenset({events.Text, events.Binary, events.Ping})


class WebsocketSession:
    """Runs one connection: a protocol, the way to open its socket, and the timers.

    Args:
        protocol: The connection's sans-I/O protocol, fresh (its first output is the
            upgrade request).
        connector: Opens the socket (DNS, TCP, proxy, TLS).
        url: The URL for ``Connecting`` and ``Connected`` (without credentials).
        connect_timeout: Seconds for opening the socket and the upgrade response
            together; ``None`` waits forever.
        tracer: Receives the trace records, or ``None``.
        clock: A monotonic clock (injectable for tests).
        selector_factory: Makes the selector the loop waits on (injectable for tests).
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
        selector_factory: SelectorFactory = selectors.DefaultSelector,
    ) -> None:
        self.protocol = protocol
        self.connector = connector
        self.url = url
        self.connect_timeout = connect_timeout
        self.tracer = tracer
        self._clock = clock
        self._selector_factory = selector_factory
        self._lock = threading.Lock()
        self._sock: SocketLike | None = None
        # What reading or writing the socket raises when it would block, and (for TLS
        # over a plain socket) its pending(): both set when the connection opens.
        self._would_block: tuple[type[OSError], ...] = PLAIN_WOULD_BLOCK
        self._tls_pending: Callable[[], int] | None = None
        # What a write raises when it can go on only after a read, and whether the
        # last one did (then the loop waits to read, not to write: see _wait).
        self._write_needs_read_errors: tuple[type[OSError], ...] = ()
        self._write_needs_read = False
        self._proxy_url: str | None = None
        self._selector: selectors.BaseSelector | None = None
        self._write_interest = False
        # What the socket has not taken yet of the bytes last taken from the protocol.
        self._unsent = memoryview(b"")
        # Bytes ever written, to tell a waiting sender whether its data went out.
        self._sent_total = 0
        # Why writing failed, once it has: nothing more is written after that.
        self._write_error: str | None = None
        # Trace records noted under the lock, to emit once it is released.
        self._traces: list[tuple[str, dict[str, object]]] = []
        self._wake_reader: socket.socket | None = None
        self._wake_writer: socket.socket | None = None
        self._loop_thread: int | None = None
        # While the application handles an event (the generator is suspended), and
        # how many of its frames were written at once since (see call()).
        self._suspended = False
        self._writes_while_suspended = 0
        #: Seconds to poll the socket before sleeping (0 never polls; see _spin).
        self.spin_time = SPIN_TIME
        self._spin_skip = 0
        self._spin_backoff = 1
        # The read buffer exists only while the connection is open (see _read).
        self._read_view = memoryview(b"")
        self._start_time = clock()
        self._close_sent_at: float | None = None
        self._connect_deadline: Deadline | None = None
        self.running = False

    def __repr__(self) -> str:
        return f"<WebsocketSession {self.url!r} {self.protocol.state.value}>"

    @property
    def session_time(self) -> float:
        """Seconds since the session was created, on its monotonic clock."""
        return self._clock() - self._start_time

    @property
    def sent_close_time(self) -> float | None:
        """The session time at which our close frame was queued, or ``None``."""
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
            result = self._apply_locked(action, in_loop)
        if self._traces:
            self._emit_traces()
        if not in_loop:
            self._wake()
        return result

    def send(self, action: Callable[[ClientProtocol], T]) -> T:
        """:meth:`call` for data: a failed write raises, and other threads wait for room.

        A thread other than the loop's that finds the output over the high-water
        mark waits for it to shrink (see the module docstring).

        Raises:
            TransportFail: The socket failed while writing, now or before.
            WebSocketUnavailable: Raised by ``action`` when not connected.
        """
        in_loop = threading.get_ident() == self._loop_thread
        with self._lock:
            result = self._apply_locked(action, in_loop)
            failure = self._write_error
            waiting = len(self._unsent) + self.protocol.output_size
            end = self._sent_total + waiting  # where the caller's data ends
        if self._traces:
            self._emit_traces()
        if not in_loop:
            self._wake()
        if failure is not None:
            raise TransportFail(failure)
        if waiting > HIGH_WATER and not in_loop:
            try:
                self._wait_for_room(end)
            finally:
                if self._traces:
                    self._emit_traces()
        return result

    def _apply_locked(self, action: Callable[[ClientProtocol], T], in_loop: bool) -> T:
        """Run ``action``, then write its output unless it gathers (see :meth:`call`)."""
        result = action(self.protocol)
        if not (in_loop and self._gathering_locked()):
            self._flush_locked()
        return result

    def _gathering_locked(self) -> bool:
        """Whether the loop body's frame just queued waits for the next ones (see call)."""
        if not self._suspended:
            return False
        if self._writes_while_suspended < GATHER_AFTER:
            self._writes_while_suspended += 1
            return False
        return self.protocol.output_size < GATHER_LIMIT

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
            if self.running:
                # The loop may be waiting on the socket in another thread: end the
                # connection, and let the loop close the socket.
                if self._sock is not None:
                    shutdown(self._sock)
            else:
                self._close_socket_locked()
        self._wake()
        if self._traces:
            self._emit_traces()

    # -- output -------------------------------------------------------------------

    def _flush_locked(self) -> None:
        """Write what the protocol produced, as far as the socket takes it now.

        Never raises: a socket error is noted (see :meth:`_write_failed_locked`).
        """
        protocol = self.protocol
        if self._close_sent_at is None and protocol.state in CLOSE_QUEUED:
            self._close_sent_at = self._clock()
        sock = self._sock
        if sock is None:
            return  # not open yet (the request waits for _open), or over
        if self._write_error is not None:
            self._discard_output_locked()  # nothing can be written any more
            return
        try:
            self._drain_locked(sock)
        except OSError as error:
            self._write_failed_locked(f"socket error; {error}")

    def _drain_locked(self, sock: SocketLike) -> None:
        """Write until the protocol has nothing more or the kernel's buffer is full.

        The protocol's bytes are taken only once the socket has taken the previous
        ones, so what waits, waits in the protocol (see the module docstring).
        """
        protocol = self.protocol
        while True:
            unsent = self._unsent
            if not unsent:
                data = protocol.data_to_send()
                if not data:
                    protocol.output_blocked = False
                    return
                unsent = self._unsent = memoryview(data)
                if self.tracer is not None:
                    # Emitted once the lock is released (the callable may use the
                    # WebSocket): see _emit_traces.
                    self._traces.append(("socket_send", {"length": len(data)}))
            try:
                sent = sock.send(unsent)
            except self._would_block as error:
                protocol.output_blocked = True
                self._write_needs_read = isinstance(error, self._write_needs_read_errors)
                return
            self._write_needs_read = False
            self._sent_total += sent
            self._unsent = unsent[sent:]

    def _write_failed_locked(self, reason: str) -> None:
        """Writing failed: drop what waits, and let the loop read what already arrived.

        The socket stays open for reading: a server that closes and then resets the
        connection (or whose FIN makes our next write fail) sent its close frame
        first, and the loop still reads it (see :meth:`_run`).
        """
        self._write_error = reason
        self._discard_output_locked()
        self.protocol.send_failed(reason)

    def _discard_output_locked(self) -> None:
        self._unsent = memoryview(b"")
        while self.protocol.data_to_send():
            pass

    def _abort_locked(self, reason: str) -> None:
        """End the connection now; graceful only if our close frame was written."""
        if self._close_frame_unsent_locked():
            self.protocol.send_failed(reason)
        self.protocol.abort(reason)

    def _close_frame_unsent_locked(self) -> bool:
        """Whether our close frame was queued but not (entirely) written yet."""
        protocol = self.protocol
        # Nothing follows a close frame, so if anything waits, the close frame does.
        waiting = self._unsent or protocol.output_size
        return bool(waiting) and protocol.state in CLOSE_QUEUED

    def _wait_for_room(self, end: int) -> None:
        """Block a non-loop thread until the output is under the high-water mark.

        Args:
            end: The position (in bytes ever written) just after the caller's data.

        Raises:
            TransportFail: The connection ended before the caller's data was written.
        """
        while True:
            with self._lock:
                if self._sent_total >= end:
                    return
                sock = self._sock
                if sock is not None:
                    self._flush_locked()
                if self._write_error is not None:
                    raise TransportFail(self._write_error)
                if sock is None:
                    raise TransportFail("connection closed before the data was sent")
                if len(self._unsent) + self.protocol.output_size <= HIGH_WATER:
                    return
                needs_read = self._write_needs_read
            if self._traces:
                self._emit_traces()
            try:
                # Writable is no news when the write needs a read, which the loop does.
                select.select([], [] if needs_read else [sock], [], 0.1)
            except (OSError, ValueError):
                # The loop closed the socket meanwhile; the next round sees it.
                continue

    def _wake(self) -> None:
        """Interrupt the loop's wait so it sees new deadlines and queued output."""
        writer = self._wake_writer
        if writer is not None:
            try:
                writer.send(b"\0")
            except OSError:
                pass

    def _close_socket_locked(self) -> None:
        sock, self._sock = self._sock, None
        self._unsent = memoryview(b"")
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
            traces, self._traces = self._traces, []
        for stage, fields in traces:
            self._trace(stage, **fields)

    # -- the loop -----------------------------------------------------------------

    def run(
        self,
        poll: float | None = 5.0,
        ping_rate: float | None = 30.0,
        ping_timeout: float | None = None,
        auto_pong: bool = True,
        close_timeout: float | None = 30.0,
    ) -> Generator[events.Event, None, None]:
        """Connect and yield the events of the connection, in the documented order."""
        self.running = True
        self.protocol.auto_pong = auto_pong
        try:
            yield from self._run(poll, ping_rate, ping_timeout, close_timeout)
        finally:
            self._shutdown()
            self.running = False

    def _shutdown(self) -> None:
        self._read_view = memoryview(b"")
        with self._lock:
            # Frames the application gathered just before it left the loop.
            self._flush_locked()
            self._abort_locked("the event loop was left")
            self.protocol.events_received()
            self._close_socket_locked()
        for resource in (self._selector, self._wake_reader, self._wake_writer):
            if resource is not None:
                resource.close()
        self._selector = self._wake_reader = self._wake_writer = None
        if self._traces:
            self._emit_traces()

    def _open(self) -> SocketLike:
        deadline = Deadline(self.connect_timeout, self._clock)
        opened = self.connector.open(deadline)
        sock = opened.sock
        self._proxy_url = opened.proxy_url
        with self._lock:
            request = self.protocol.data_to_send()
            try:
                remaining = deadline.remaining()
                if remaining is not None and remaining <= 0:
                    raise socket.timeout("deadline passed")  # settimeout(0) would not block
                sock.settimeout(remaining)
                sock.sendall(request)
            except OSError as error:
                sock.close()
                if isinstance(error, socket.timeout):
                    raise ConnectFail(
                        f"timed out after {deadline.seconds:g}s sending the upgrade request"
                    ) from None
                raise ConnectFail(f"could not send the upgrade request: {error}") from None
            sock.setblocking(False)
            self._would_block = opened.would_block
            self._tls_pending = opened.tls_pending
            self._write_needs_read_errors = opened.write_needs_read
            self._sock = sock
        self._trace("socket_send", length=len(request))
        self._connect_deadline = deadline
        return sock

    def _run(
        self,
        poll: float | None,
        ping_rate: float | None,
        ping_timeout: float | None,
        close_timeout: float | None,
    ) -> Generator[events.Event, None, None]:
        protocol = self.protocol
        clock = self._clock
        self._loop_thread = threading.get_ident()
        yield events.Connecting(self.url)
        self._loop_thread = threading.get_ident()
        try:
            if protocol.state is State.DISCONNECTED:
                raise ConnectFail("closed before the connection was opened")
            sock = self._open()
        except ConnectFail as error:
            log.debug("connect failed: %s", error)
            with self._lock:
                protocol.abort(str(error))
                protocol.events_received()
            yield events.ConnectFail(str(error))
            return

        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        selector = self._selector = self._selector_factory()
        selector.register(sock, selectors.EVENT_READ)
        selector.register(self._wake_reader, selectors.EVENT_READ)

        yield events.Connected(self.url, proxy=self._proxy_url)
        self._loop_thread = threading.get_ident()

        timers = Timers(clock, poll, ping_rate, ping_timeout, close_timeout)
        timers.connect_deadline = self._connect_deadline
        # Messages need nothing from the loop but the hand-over (unless tracing).
        plain = _MESSAGE_EVENTS if self.tracer is None else frozenset()
        get_ident = threading.get_ident
        event: events.Event | None = None
        # After a write failure, how many more reads there may be (see below).
        reads_left = READS_AFTER_WRITE_FAILURE
        while True:
            with self._lock:
                received = protocol.events_received()
                # What parsing produced: pongs (before their Ping is handed over), the
                # close frame of a deferred failure.
                self._flush_locked()
            if self._traces:
                self._emit_traces()
            for event in received:
                kind = type(event)
                if kind in plain:
                    self._suspended = True
                    yield event
                    # Inline for speed: self._resume()
                    self._suspended = False
                    self._loop_thread = get_ident()
                    if self._writes_while_suspended:
                        self._flush_gathered()
                    continue
                self._note_event(event)
                if kind is events.Disconnected:
                    with self._lock:
                        self._close_socket_locked()
                    yield event
                    return
                if kind is events.Pong:
                    timers.pong_received()
                self._suspended = True
                yield event
                self._resume()
                if kind is events.Ready:
                    timers.ready()
                    self._suspended = True
                    yield events.Poll()
                    self._resume()
                elif kind is events.Closing:
                    # The application has seen the server's close; now echo it.
                    self.call(ClientProtocol.echo_close)
            # Handed over: hold no message while waiting (it may be large).
            del received
            event = None

            due = self._fire_timers(timers)
            if due is not None:
                self._suspended = True
                yield due
                self._resume()
                continue
            with self._lock:
                if protocol.has_events:
                    continue
            if self._write_error is not None:
                # Read what the server sent before writing failed (its close frame,
                # typically, when it reset the connection after it), one read a
                # pass so that its events are handed over as they come; then end.
                reads_left -= 1
                if reads_left < 0 or not self._read(sock):
                    with self._lock:
                        self._abort_locked(self._write_error)
                continue
            self._wait(timers.timeout(protocol.state, self._close_sent_at))

    def _resume(self) -> None:
        """Back from the application: note its thread, write what its sends gathered."""
        self._suspended = False
        self._loop_thread = threading.get_ident()
        if self._writes_while_suspended:
            self._flush_gathered()

    def _flush_gathered(self) -> None:
        self._writes_while_suspended = 0
        with self._lock:
            self._flush_locked()
        if self._traces:
            self._emit_traces()

    def _fire_timers(self, timers: Timers) -> events.Event | None:
        """Act on every due deadline; return the event to yield, if any."""
        protocol = self.protocol
        now = self._clock()
        state = protocol.state
        if state is State.CONNECTING:
            deadline = timers.connect_deadline
            if deadline is not None and deadline.expired:
                seconds = deadline.seconds
                with self._lock:
                    self._abort_locked(
                        f"timed out after {seconds:g}s waiting for the upgrade response"
                    )
            return None
        if self._close_sent_at is not None and timers.close_timeout is not None:
            if now >= self._close_sent_at + timers.close_timeout:
                with self._lock:
                    self._abort_locked(
                        f"server did not close the connection within "
                        f"{timers.close_timeout:g}s (close timeout)"
                    )
                return None
        if timers.ping_due(now):
            with self._lock:
                if protocol.can_send:
                    protocol.send_ping()
                    self._flush_locked()
        if state is State.OPEN and timers.unresponsive(now):
            with self._lock:
                self._abort_locked(f"no pong within {timers.ping_timeout:g}s (ping timeout)")
            return events.Unresponsive()
        if timers.poll_due(now):
            return events.Poll()
        return None

    def _wait(self, timeout: float | None) -> None:
        """Wait for input (or writability, with output queued) until ``timeout``."""
        selector = self._selector
        sock = self._sock
        if selector is None or sock is None:  # pragma: no cover - the loop ends first
            return
        # A TLS write that needs a read first is retried after each read, not when
        # the socket is writable (which it is, at once, again and again).
        want_write = bool(self._unsent) and not self._write_needs_read
        if not want_write and self.spin_time and (timeout is None or timeout > 0):
            if self._spin(sock, timeout):
                return
        if want_write != self._write_interest:
            mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0)
            selector.modify(sock, mask)
            self._write_interest = want_write
        if timeout is not None:
            timeout = min(timeout, MAX_WAIT)
        try:
            ready = selector.select(timeout)
        except OSError as error:  # pragma: no cover - a selector failing is a bug elsewhere
            with self._lock:
                self._abort_locked(f"selector error; {error}")
            return
        for key, mask in ready:
            if key.fileobj is self._wake_reader:
                self._drain_wake()
                continue
            if mask & selectors.EVENT_WRITE:
                with self._lock:
                    self._flush_locked()
            if mask & selectors.EVENT_READ:
                self._read(sock)

    def _spin(self, sock: SocketLike, timeout: float | None) -> bool:
        """Poll the socket for up to :attr:`spin_time` before the loop sleeps.

        Waking a sleeping thread costs tens of microseconds (more on an idle
        machine), often more than a nearby server takes to answer. So while polling
        pays (the last poll found data), the loop polls first. A poll that finds
        nothing makes the loop skip polling for the next 1, 2, 4, ... waits (up to
        :data:`MAX_SPIN_SKIP`): a quiet connection, or a distant server, costs at
        most one short poll every so often.

        Returns:
            Whether the socket had something (read and fed to the protocol).
        """
        if self._spin_skip:
            self._spin_skip -= 1
            return False
        budget = self.spin_time if timeout is None else min(self.spin_time, timeout)
        end = time.perf_counter() + budget
        while True:
            if self._read(sock):
                self._spin_backoff = 1
                return True
            if time.perf_counter() >= end:
                self._spin_skip = self._spin_backoff
                self._spin_backoff = min(2 * self._spin_backoff, MAX_SPIN_SKIP)
                return False

    def _drain_wake(self) -> None:
        reader = self._wake_reader
        try:
            while reader is not None and reader.recv(4096):
                pass
        except OSError:
            pass

    def _read(self, sock: SocketLike) -> bool:
        """Read until the socket has nothing more; return whether it had anything."""
        # Plain and TLS sockets read into one buffer kept for the whole session: a
        # fresh 256 KiB bytes object per read would cost an allocation (and page
        # faults) on every small message. The protocol copies what it keeps.
        into = isinstance(sock, socket.socket)
        view = self._read_view
        if into and not view:
            view = self._read_view = memoryview(bytearray(READ_SIZE))
        # OpenSSL must not read and write one TLS connection from two threads at
        # once: a TLS socket is read under the lock that every write holds.
        lock_reads = into and type(sock) is not socket.socket
        read = False
        while True:
            try:
                if lock_reads:
                    with self._lock:
                        size = sock.recv_into(view)  # type: ignore[attr-defined]
                    data: bytes | memoryview = view[:size]
                elif into:
                    size = sock.recv_into(view)  # type: ignore[attr-defined]
                    data = view[:size]
                else:
                    data = sock.recv(READ_SIZE)
                    size = len(data)
            except self._would_block:
                if self._write_needs_read:
                    # The read may have moved the TLS layer on (handshake records,
                    # no data): the waiting write may go on now.
                    with self._lock:
                        self._flush_locked()
                return read
            except OSError as error:
                with self._lock:
                    self._abort_locked(f"socket error; {error}")
                return True
            read = True
            self._trace("socket_recv", length=size)
            with self._lock:
                if size:
                    self.protocol.receive_data(data)  # type: ignore[arg-type]
                else:
                    self._end_of_input_locked()
                self._flush_locked()
            if self._traces:
                self._emit_traces()
            # Decrypted bytes buffered inside the TLS layer never wake the selector.
            pending = self._tls_pending
            if not size or pending is None:
                return True
            with self._lock:
                more = pending()
            if not more:
                return True

    def _end_of_input_locked(self) -> None:
        if self._close_frame_unsent_locked():
            self.protocol.send_failed("connection closed before our close frame was sent")
        self.protocol.receive_eof()

    def _note_event(self, event: events.Event) -> None:
        """Log and trace an event before it is yielded."""
        if isinstance(event, events.ProtocolError):
            log.warning("protocol error: %s (critical=%s)", event.error, event.critical)
        elif isinstance(event, events.Rejected):
            log.info("upgrade rejected: %s", event.reason)
        elif isinstance(event, events.Ready):
            extensions = ", ".join(sorted(event.extensions)) or "none"
            log.info(
                "upgrade accepted by %s (protocol %s, extensions %s)",
                self.url,
                event.protocol or "none",
                extensions,
            )
        elif isinstance(event, events.Closing):
            log.info("the server started the closing handshake: %s %r", event.code, event.reason)
        elif isinstance(event, events.Closed):
            log.info("closing handshake complete: %s %r", event.code, event.reason)
        elif isinstance(event, events.Disconnected):
            log.info("disconnected: %s (graceful=%s)", event.reason, event.graceful)
        if self.tracer is not None:
            record = event_record(event)
            if record is not None:
                stage, fields = record
                self._trace(stage, **fields)
