"""The blocking shell: one generator per connection, that owns its socket and timers.

:meth:`WebsocketSession.run` opens the connection, then loops: hand over the
protocol's events → fire due timers → wait until the socket is readable or the
nearest deadline comes → read → feed the protocol → write what it produced. What a
connection holds, and the calls any thread may make on it, are in
:mod:`lomond.loop.connection`; the waiting is the engine's
(:mod:`lomond.loop.engine`): ``ws.connect()`` runs the generator with an engine of
its own and waits in place; in a :class:`~lomond.multiplexer.Multiplexer`, many
generators share one engine, and each yields itself (a
:class:`~lomond.loop.engine.Waiter`) when it has to wait.
"""

from __future__ import annotations

import selectors
import threading
import time

from .. import events
from .._logging import log
from ..errors import ConnectFail
from ..network.connector import Connector
from ..network.deadline import Deadline
from ..network.opening import Blocking, open_steps
from ..network.timeouts import timed_out
from ..protocol import ClientProtocol, State
from ..protocol.redirect import RedirectRefused
from .connection import Connection
from .engine import Engine, Waiter
from .timers import Timers
from .trace import Tracer, note

#: After a write failed, the loop reads at most this many times more (what the
#: kernel already holds) before it ends the connection.
READS_AFTER_WRITE_FAILURE = 64

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Any, Callable, Generator, Union

    from ..network.deadline import Clock
    from ..network.opening import Step
    from ..network.sockets import Opened
    from ..response import Response
    from .connection import NextHop
    from .helpers import Job

    SelectorFactory = Callable[[], selectors.BaseSelector]
    #: What the generator of a connection in a shared engine yields.
    Item = Union[events.Event, Waiter]

# Events that need no logging and no action from the loop (unless tracing).
_MESSAGE_EVENTS = frozenset(
    {events.Text, events.Binary, events.Ping, events.TextPart, events.BinaryPart}
)
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


class WebsocketSession(Connection, Waiter):
    """Runs one connection: :meth:`run` is the generator of its events.

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
        engine: The engine the connection shares with others (a ``Multiplexer``'s):
            then :meth:`run` yields the session itself whenever it has to wait.
            ``None``: :meth:`run` waits in place, with an engine of its own.
        redirect: Called with the response of a rejected upgrade; returns the next
            connection when it is a redirect to follow, ``None`` when it is not, and
            raises :class:`~lomond.protocol.redirect.RedirectRefused` for a redirect
            that may not be followed. ``None``: redirects are rejected.
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
        engine: Engine | None = None,
        redirect: Callable[[Response], NextHop | None] | None = None,
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
        self._shared = engine
        self._engine: Engine | None = engine
        # The blocking step of opening that a helper thread runs, while it runs.
        self._job: Job | None = None
        self._redirect = redirect
        if engine is not None:
            # Polling one socket before sleeping would keep the others waiting.
            self._reader.spin_time = 0.0

    @property
    def spin_time(self) -> float:
        """Seconds the loop polls the socket before it sleeps (see ``Reader.spin``)."""
        return self._reader.spin_time

    @spin_time.setter
    def spin_time(self, seconds: float) -> None:
        self._reader.spin_time = seconds

    def _wake(self) -> None:
        """Interrupt the loop's wait so it sees new deadlines and queued output."""
        engine = self._engine
        if engine is not None:
            engine.wake(self)

    def _nudge(self) -> None:
        shared = self._shared
        if shared is not None:
            # A call from the loop body while another connection's event is handled:
            # this one waits with what it waited for before (its socket's mask, its
            # deadline); give it a turn to see its output and its close timeout.
            shared.poke(self)

    def run(
        self,
        poll: float | None = 5.0,
        ping_rate: float | None = 30.0,
        ping_timeout: float | None = None,
        auto_pong: bool = True,
        close_timeout: float | None = 30.0,
        *,
        data_resets_ping_timeout: bool = False,
    ) -> Generator[Any, None, None]:
        """Connect and yield the events of the connection, in the documented order.

        With a shared engine, it also yields the session itself whenever it waits.
        """
        self.running = True
        self.protocol.auto_pong = auto_pong
        timers = self._timers = Timers(
            self._clock,
            poll,
            ping_rate,
            ping_timeout,
            close_timeout,
            data_resets_ping_timeout=data_resets_ping_timeout,
        )
        if self._shared is None:
            self._engine = Engine(self._clock, self._selector_factory)
        try:
            yield from self._run(timers)
        finally:
            self._shutdown()
            self.running = False

    def _shutdown(self) -> None:
        job, self._job = self._job, None
        if job is not None:
            job.cancel()
        with self._lock:
            # Frames the application gathered just before it left the loop.
            self._flush_locked()
            self._abort_locked("the event loop was left")
            self.protocol.events_received()
            self._close_socket_locked()
        engine = self._engine
        if engine is not None:
            engine.unwatch(self)  # a socket of the opening steps
            if self._shared is None:
                engine.close()
        self._emit_traces()

    def _close_socket_locked(self) -> None:
        engine = self._engine
        if engine is not None and self.watched is not None:
            engine.unwatch(self)  # before its file descriptor can be reused
        super()._close_socket_locked()

    def _connecting(self, timers: Timers) -> Generator[Item, None, bool]:
        """``Connecting``, then ``Connected`` or ``ConnectFail``; whether it connected."""
        get_ident = threading.get_ident
        self._loop_thread = get_ident()
        yield events.Connecting(self.url)
        self._loop_thread = get_ident()
        failure = yield from self._start()
        if failure is not None:
            yield events.ConnectFail(failure)
            return False
        yield events.Connected(self.url, proxy=self._proxy_url)
        self._loop_thread = get_ident()
        timers.connect_deadline = self._connect_deadline
        return True

    def _run(self, timers: Timers) -> Generator[Item, None, None]:
        if not (yield from self._connecting(timers)):
            return
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
                elif type(event) is events.Rejected and self._redirect is not None:
                    if (yield from self._follow_redirect(event, timers)):
                        break  # the next connection's events come from its protocol
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
                timeout = timers.timeout(self.protocol.state, self._close_sent_at)
                if self._shared is None:
                    self._wait(timeout)
                else:
                    yield self._parked(timeout)
                    self._on_ready()
            else:
                # Read what the server sent before writing failed (its close frame,
                # typically, when it reset the connection after it), one read a
                # pass so that its events are handed over as they come; then end.
                reads_left -= 1
                if reads_left < 0 or not self._read():
                    with self._lock:
                        self._abort_locked(self._writer.error)

    # -- opening -------------------------------------------------------------------

    def _start(self) -> Generator[Waiter, None, str | None]:
        """Open the connection and send the upgrade request; the failure, if it fails."""
        failure = yield from self._open(Deadline(self.connect_timeout, self._clock))
        if failure is not None:
            log.debug("connect failed: %s", failure)
            with self._lock:
                self.protocol.events_received()  # ConnectFail is yielded instead
        return failure

    def _open(self, deadline: Deadline) -> Generator[Waiter, None, str | None]:
        """Open the socket and start the upgrade request before ``deadline``; on
        failure, abort the protocol and return why."""
        engine = self._engine
        assert engine is not None
        shared = self._shared is not None
        try:
            self._check_not_closed()
            steps = open_steps(self.connector, deadline, pooled=shared)
            opened = yield from self._drive(steps, deadline)
            self._attach(opened, deadline, engine.buffer if shared else None)
        except ConnectFail as error:
            with self._lock:
                self.protocol.abort(str(error))
            return str(error)
        sock = self._sock
        if sock is not None:
            engine.watch(self, sock, _READ)
        return None

    def _follow_redirect(
        self, event: events.Rejected, timers: Timers
    ) -> Generator[Item, None, bool]:
        """A rejected upgrade: follow it if it is a redirect, else hand it over.

        Following: ``Redirected``, then this connection is closed and the next one
        opened under the same connect deadline; ``Connected`` if it opens, else its
        ``Disconnected`` comes next. Returns whether the redirect was followed.
        """
        assert self._redirect is not None
        try:
            hop = self._redirect(event.response)
        except RedirectRefused as error:
            event = events.Rejected(event.response, str(error), event.received_time)
            hop = None
        if hop is None:
            yield from self._hand_over(event, timers)
            return False
        protocol, connector, url = hop
        redirected = events.Redirected(event.response, url, event.received_time)
        note(redirected, self.url, self.tracer)
        deadline = self._connect_deadline
        self._switch(protocol, connector, url)
        self._suspended = True
        yield redirected
        self._resume()
        if self.protocol.state is State.DISCONNECTED:
            return True  # closed while the application handled Redirected
        if deadline is None:  # pragma: no cover - a response came, so it was opened
            deadline = Deadline(self.connect_timeout, self._clock)
        failure = yield from self._open(deadline)
        if failure is None:
            self._suspended = True
            yield events.Connected(url, proxy=self._proxy_url)
            self._resume()
        else:
            log.debug("connect failed after a redirect: %s", failure)
        return True

    def _check_not_closed(self) -> None:
        if self.protocol.state is State.DISCONNECTED:
            raise ConnectFail("closed before the connection was opened")

    def _drive(
        self, steps: Generator[Step, Any, Opened], deadline: Deadline
    ) -> Generator[Waiter, None, Opened]:
        """Run the opening steps, waiting for each (see :mod:`lomond.network.opening`)."""
        result: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    step = steps.send(result) if error is None else steps.throw(error)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                result = error = None
                if isinstance(step, Blocking):
                    job = self._job = self._engine.submit(self, step.function)  # type: ignore[union-attr]
                    while not job.done:
                        yield self._opening_wait(deadline, step.doing)
                    self._job = None
                    result, error = job.result, job.error
                else:
                    yield from self._wait_for(step.sock, step.mask, deadline, step.doing)
        finally:
            steps.close()  # closes what it opened, unless it returned it

    def _wait_for(
        self, sock: Any, mask: int, deadline: Deadline, doing: str
    ) -> Generator[Waiter, None, None]:
        engine = self._engine
        assert engine is not None
        engine.watch(self, sock, mask)
        try:
            self.ready_mask = 0
            while True:
                if self._shared is not None:
                    yield self._opening_wait(deadline, doing)
                    ready, self.ready_mask = self.ready_mask, 0
                else:
                    self._opening_wait(deadline, doing)
                    ready = engine.block(deadline.remaining())
                if ready:
                    return
        finally:
            engine.unwatch(self)

    def _opening_wait(self, deadline: Deadline, doing: str | None) -> Waiter:
        """Before waiting for a step: fail if closed, or if ``deadline`` passed."""
        self._check_not_closed()
        if doing is None:
            self.deadline = None  # the step keeps to the deadline itself
            return self
        if deadline.expired:
            raise timed_out(deadline, doing)
        self.deadline = deadline.when
        return self

    # -- open ----------------------------------------------------------------------

    def _hand_over(
        self, event: events.Event, timers: Timers
    ) -> Generator[events.Event, None, None]:
        """Yield an event that needs the loop: logging, timers, the echo, a ``Poll``."""
        note(event, self.url, self.tracer)
        kind = type(event)
        if isinstance(event, events.Pong):
            timers.pong_received()
            # Without pings in flight (a flood of unsolicited pongs), no lock is taken:
            # a pong cannot answer a ping that is still being sent.
            if self._round_trips.in_flight:
                with self._lock:
                    # Timed from when its bytes were read, not when it is handed over.
                    self._round_trips.pong_received(event.data, self._last_read)
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

    def _want_write(self) -> bool:
        # A TLS write that needs a read first is retried after each read, not when
        # the socket is writable (which it is, at once, again and again).
        writer = self._writer
        return bool(writer.unsent) and not writer.needs_read

    def _parked(self, timeout: float | None) -> Waiter:
        """In a shared engine: watch the socket, note the deadline, and wait (yielded)."""
        sock = self._sock
        if sock is not None:
            self._engine.watch(self, sock, _READ | (_WRITE if self._want_write() else 0))  # type: ignore[union-attr]
        self.deadline = None if timeout is None else self._clock() + timeout
        return self

    def _on_ready(self) -> None:
        """In a shared engine, back from waiting: write and read as the socket allows."""
        ready, self.ready_mask = self.ready_mask, 0
        if ready & _WRITE:
            with self._lock:
                self._flush_locked()
        if ready & _READ:
            self._read()

    def _wait(self, timeout: float | None) -> None:
        """Wait for input (or writability, with output queued) until ``timeout``."""
        engine = self._engine
        sock = self._sock
        if engine is None or sock is None:  # pragma: no cover - the loop ends first
            return
        writer = self._writer
        want_write = bool(writer.unsent) and not writer.needs_read  # see _want_write()
        spin = self._reader.spin_time and (timeout is None or timeout > 0)
        if spin and not want_write and self._reader.spin(self._read, timeout):
            return
        mask = _READ | _WRITE if want_write else _READ
        if self.watched != (sock, mask):
            engine.watch(self, sock, mask)
        try:
            ready = engine.block(timeout)
        except OSError as error:  # pragma: no cover - a selector failing is a bug elsewhere
            with self._lock:
                self._abort_locked(f"selector error; {error}")
            return
        if ready & _WRITE:
            with self._lock:
                self._flush_locked()
        if ready & _READ:
            self._read()
