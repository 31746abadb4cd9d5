"""The blocking shell: one generator that owns the socket, the clock and the timers.

:meth:`WebsocketSession.run` opens the connection, then loops: hand over the
protocol's events → fire due timers → wait on a selector until the socket is
readable or the nearest deadline comes → read → feed the protocol → write what it
produced. What a connection holds, and the calls any thread may make on it, are in
:mod:`lomond.loop.connection`.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time

from .. import events
from .._logging import log
from ..errors import ConnectFail
from ..network.connector import Connector
from ..protocol import ClientProtocol, State
from .connection import Connection
from .timers import Timers
from .trace import Tracer, note

#: After a write failed, the loop reads at most this many times more (what the
#: kernel already holds) before it ends the connection.
READS_AFTER_WRITE_FAILURE = 64
#: The longest the loop sleeps in one wait, in seconds: a timer further away than
#: this is checked again after it (a selector refuses very long timeouts).
MAX_WAIT = 3600.0

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Callable, Generator

    from ..network.deadline import Clock

    SelectorFactory = Callable[[], selectors.BaseSelector]

# Events that need no logging and no action from the loop (unless tracing).
_MESSAGE_EVENTS = frozenset(
    {events.Text, events.Binary, events.Ping, events.TextPart, events.BinaryPart}
)


class WebsocketSession(Connection):
    """Runs one connection in its own loop: :meth:`run` is the generator of its events.

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
        super().__init__(
            protocol,
            connector,
            url=url,
            connect_timeout=connect_timeout,
            tracer=tracer,
            clock=clock,
        )
        self._selector_factory = selector_factory
        self._selector: selectors.BaseSelector | None = None
        self._write_interest = False
        self._wake_reader: socket.socket | None = None
        self._wake_writer: socket.socket | None = None

    @property
    def spin_time(self) -> float:
        """Seconds the loop polls the socket before it sleeps (see ``Reader.spin``)."""
        return self._reader.spin_time

    @spin_time.setter
    def spin_time(self, seconds: float) -> None:
        self._reader.spin_time = seconds

    def _wake(self) -> None:
        """Interrupt the loop's wait so it sees new deadlines and queued output."""
        writer = self._wake_writer
        if writer is not None:
            try:
                writer.send(b"\0")
            except OSError:
                pass

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
            yield from self._run(Timers(self._clock, poll, ping_rate, ping_timeout, close_timeout))
        finally:
            self._shutdown()
            self.running = False

    def _shutdown(self) -> None:
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
        self._emit_traces()

    def _run(self, timers: Timers) -> Generator[events.Event, None, None]:
        get_ident = threading.get_ident
        self._loop_thread = get_ident()
        yield events.Connecting(self.url)
        self._loop_thread = get_ident()
        failure = self._start()
        if failure is not None:
            yield events.ConnectFail(failure)
            return
        yield events.Connected(self.url, proxy=self._proxy_url)
        self._loop_thread = get_ident()
        timers.connect_deadline = self._connect_deadline
        # The receive benchmarks' fast path: messages need nothing from the loop but
        # the hand-over (unless tracing). Without it, recv_text took 1.6 times as long.
        plain = _MESSAGE_EVENTS if self.tracer is None else frozenset()
        resume = self._resume
        reads_left = READS_AFTER_WRITE_FAILURE
        event: events.Event | None = None
        while True:
            for event in self._next_batch():
                if type(event) in plain:
                    self._suspended = True
                    yield event
                    resume()
                elif type(event) is events.Disconnected:
                    note(event, self.url, self.tracer)
                    with self._lock:
                        self._close_socket_locked()
                    yield event
                    return
                else:
                    yield from self._hand_over(event, timers)
            # Handed over: hold no message while waiting (it may be large).
            event = None
            due = self._fire_timers(timers)
            if due is not None:
                self._suspended = True
                yield due
                resume()
            elif self._has_events():
                continue
            elif self._writer.error is None:
                self._wait(timers.timeout(self.protocol.state, self._close_sent_at))
            else:
                # Read what the server sent before writing failed (its close frame,
                # typically, when it reset the connection after it), one read a
                # pass so that its events are handed over as they come; then end.
                reads_left -= 1
                if reads_left < 0 or not self._read():
                    with self._lock:
                        self._abort_locked(self._writer.error)

    def _start(self) -> str | None:
        """Open the connection and send the upgrade request; the failure, if it fails."""
        try:
            if self.protocol.state is State.DISCONNECTED:
                raise ConnectFail("closed before the connection was opened")
            sock = self._open()
        except ConnectFail as error:
            log.debug("connect failed: %s", error)
            with self._lock:
                self.protocol.abort(str(error))
                self.protocol.events_received()
            return str(error)
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        selector = self._selector = self._selector_factory()
        selector.register(sock, selectors.EVENT_READ)
        selector.register(self._wake_reader, selectors.EVENT_READ)
        return None

    def _hand_over(
        self, event: events.Event, timers: Timers
    ) -> Generator[events.Event, None, None]:
        """Yield an event that needs the loop: logging, timers, the echo, a ``Poll``."""
        note(event, self.url, self.tracer)
        kind = type(event)
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

    def _wait(self, timeout: float | None) -> None:
        """Wait for input (or writability, with output queued) until ``timeout``."""
        selector = self._selector
        sock = self._sock
        if selector is None or sock is None:  # pragma: no cover - the loop ends first
            return
        # A TLS write that needs a read first is retried after each read, not when
        # the socket is writable (which it is, at once, again and again).
        writer = self._writer
        want_write = bool(writer.unsent) and not writer.needs_read
        spin = self._reader.spin_time and (timeout is None or timeout > 0)
        if spin and not want_write and self._reader.spin(self._read, timeout):
            return
        if want_write != self._write_interest:
            mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0)
            selector.modify(sock, mask)
            self._write_interest = want_write
        try:
            ready = selector.select(None if timeout is None else min(timeout, MAX_WAIT))
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
                self._read()

    def _drain_wake(self) -> None:
        reader = self._wake_reader
        try:
            while reader is not None and reader.recv(4096):
                pass
        except OSError:
            pass
