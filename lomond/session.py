"""The blocking shell: one generator that owns the socket, the clock and the timers.

:meth:`WebsocketSession.run` opens the connection, then loops: wait on a selector
until the socket is readable or the nearest deadline comes → read → feed the
protocol → send what it produced → yield its events → fire due timers.

Threads: every protocol call and every socket write happens under one lock, so
``send_*`` and ``close()`` may be called from any thread. The socket is
non-blocking once open; bytes the kernel cannot take yet wait in an output queue
that the loop drains when the socket is writable. A thread other than the loop's
that queues more than :data:`HIGH_WATER` bytes waits (draining the queue itself)
until it shrinks, so a fast sender cannot fill memory. The loop's own thread never
waits, so a server that stops reading cannot stall the timers, and a server that
echoes cannot deadlock it (the loop keeps reading while its output waits); sends
from the loop body are therefore only bounded by the memory they occupy.

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
from collections import deque
from typing import TYPE_CHECKING, Callable, Deque, Generator, TypeVar

from . import events
from .deadline import Clock, Deadline
from .errors import ConnectFail, TransportFail
from .logger import log
from .protocol import ClientProtocol, State
from .timers import Timers
from .trace import event_record
from .transport import (
    PLAIN_WOULD_BLOCK,
    SocketLike,
    open_connection,
    tls_pending,
    would_block_errors,
)

if TYPE_CHECKING:
    from .websocket import WebSocket

T = TypeVar("T")

#: Bytes read from the socket at a time.
READ_SIZE = 256 * 1024
#: A thread other than the loop's waits while more than this many bytes are queued.
HIGH_WATER = 4 * 1024 * 1024
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
    """Runs one connection of a :class:`~lomond.websocket.WebSocket`.

    Args:
        websocket: The WebSocket whose settings to use.
        clock: A monotonic clock (injectable for tests).
        selector_factory: Makes the selector the loop waits on (injectable for tests).
    """

    def __init__(
        self,
        websocket: WebSocket,
        clock: Clock = time.monotonic,
        selector_factory: SelectorFactory = selectors.DefaultSelector,
    ) -> None:
        self.websocket = websocket
        self.protocol: ClientProtocol = websocket.make_protocol()
        self._clock = clock
        self._selector_factory = selector_factory
        self._lock = threading.Lock()
        self._sock: SocketLike | None = None
        # What reading or writing the socket raises when it would block, and (for TLS
        # over a plain socket) its pending(): both set when the connection opens.
        self._would_block: tuple[type[OSError], ...] = PLAIN_WOULD_BLOCK
        self._tls_pending: Callable[[], int] | None = None
        self._proxy_url: str | None = None
        self._selector: selectors.BaseSelector | None = None
        self._write_interest = False
        self._pending: Deque[memoryview] = deque()
        self._pending_size = 0
        # Bytes ever queued and ever written, to tell a waiting sender whether its
        # data went out before the connection ended.
        self._queued_total = 0
        self._sent_total = 0
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
        return f"<WebsocketSession {self.websocket.url!r} {self.protocol.state.value}>"

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

    def call(self, action: Callable[[ClientProtocol], T], wait_for_room: bool = True) -> T:
        """Run ``action`` on the protocol under the lock, then send what it produced.

        With ``wait_for_room``, a thread other than the loop's that finds the output
        queue over the high-water mark waits for it to shrink (see the module
        docstring). Closing does not wait: the close frame joins the queue.

        In the loop's thread, while the application handles an event, its first
        :data:`GATHER_AFTER` frames are written at once and the next ones gather (up
        to :data:`GATHER_LIMIT` bytes) until the application asks for the next
        event: a burst of sends then costs one system call, not one per frame.

        Raises:
            TransportFail: The socket failed while sending.
            WebSocketUnavailable: Raised by ``action`` when not connected.
        """
        in_loop = threading.get_ident() == self._loop_thread
        with self._lock:
            result = action(self.protocol)
            if in_loop and self._suspended:
                if self._writes_while_suspended >= GATHER_AFTER:
                    if self.protocol.output_size < GATHER_LIMIT:
                        return result  # written by _resume, or with the next frames
                else:
                    self._writes_while_suspended += 1
            self._flush_locked(raise_errors=True)
            queued = self._queued_total
        if not in_loop:
            self._wake()
            if wait_for_room and self._pending_size > HIGH_WATER:
                self._wait_for_drain(queued)
        return result

    def force_disconnect(self) -> None:
        """Drop the connection; the loop then yields ``Disconnected(graceful=False)``."""
        with self._lock:
            self._flush_locked()  # what the loop body gathered goes first, as it was sent
            self.protocol.abort("disconnected by force_disconnect()")
            sock = self._sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._wake()

    def close(self) -> None:
        """Close the socket at once (no close frame). Safe to call at any time.

        Frames the loop body gathered are written first, as far as the socket takes
        them without waiting.
        """
        with self._lock:
            self._flush_locked()
            self._close_socket_locked()

    # -- output -------------------------------------------------------------------

    def _flush_locked(self, raise_errors: bool = False) -> None:
        protocol = self.protocol
        data = protocol.data_to_send()
        if self._close_sent_at is None and protocol.state in (State.CLOSING, State.CLOSED):
            self._close_sent_at = self._clock()
        if not data:
            return
        if self._sock is None:
            if protocol.state is not State.CONNECTING and raise_errors:
                raise TransportFail("socket closed; data not sent")
            return
        self._pending.append(memoryview(data))
        self._pending_size += len(data)
        self._queued_total += len(data)
        self._websocket_trace("socket_send", length=len(data))
        try:
            self._drain_locked()
        except OSError as error:
            protocol.abort(f"socket error; {error}")
            self._close_socket_locked()
            if raise_errors:
                raise TransportFail(f"socket error; {error}") from None

    def _drain_locked(self) -> None:
        """Write queued bytes until the queue is empty or the kernel's buffer is full."""
        sock = self._sock
        pending = self._pending
        while pending and sock is not None:
            chunk = pending[0]
            try:
                sent = sock.send(chunk)
            except self._would_block:
                return
            self._pending_size -= sent
            self._sent_total += sent
            if sent == len(chunk):
                pending.popleft()
            else:
                pending[0] = chunk[sent:]

    def _wait_for_drain(self, queued: int) -> None:
        """Block a non-loop thread until the output queue is under the high-water mark.

        Args:
            queued: The queue position just after the caller's data.

        Raises:
            TransportFail: The connection ended before the caller's data was written.
        """
        while True:
            with self._lock:
                sock = self._sock
                if sock is None:
                    if self._sent_total < queued:
                        raise TransportFail("connection closed before the data was sent")
                    return
                try:
                    self._drain_locked()
                except OSError as error:
                    raise TransportFail(f"socket error; {error}") from None
                if self._pending_size <= HIGH_WATER:
                    return
            try:
                select.select([], [sock], [], 0.1)
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
        self._pending.clear()
        self._pending_size = 0
        if sock is not None:
            try:
                sock.close()
            except OSError:  # pragma: no cover - close() of a socket hardly fails
                pass

    def _websocket_trace(self, stage: str, **fields: object) -> None:
        if self.websocket.trace is not None:
            self.websocket.emit_trace(stage, **fields)

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
            self.protocol.abort("the event loop was left")
            self.protocol.events_received()
            self._close_socket_locked()
        for resource in (self._selector, self._wake_reader, self._wake_writer):
            if resource is not None:
                resource.close()
        self._selector = self._wake_reader = self._wake_writer = None

    def _open(self) -> SocketLike:
        websocket = self.websocket
        deadline = Deadline(websocket.connect_timeout, self._clock)
        try:
            proxy = websocket.get_proxy()
        except ValueError as error:
            raise ConnectFail(f"invalid proxy setting: {error}") from None
        self._proxy_url = None if proxy is None else proxy.url
        needs_context = websocket.is_secure or (proxy is not None and proxy.scheme == "https")
        try:
            context = websocket.get_ssl_context() if needs_context else None
        except OSError as error:  # ssl.SSLError included
            # e.g. an ssl_cafile that does not exist or holds no certificate
            raise ConnectFail(f"could not load the TLS settings: {error}") from None
        sock = open_connection(
            websocket.host,
            websocket.port,
            context=context if websocket.is_secure else None,
            deadline=deadline,
            proxy=proxy,
            proxy_context=context,
            user_agent=websocket.agent,
            on_tls=lambda: self._websocket_trace(
                "tls_wrapped",
                verify=websocket.ssl_verify,
                has_context=websocket.ssl_context is not None,
                cafile=websocket.ssl_cafile is not None,
            ),
        )
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
            self._websocket_trace("socket_send", length=len(request))
            sock.setblocking(False)
            self._would_block = would_block_errors(sock)
            self._tls_pending = tls_pending(sock)
            self._sock = sock
        self._connect_deadline = deadline
        return sock

    def _run(
        self,
        poll: float | None,
        ping_rate: float | None,
        ping_timeout: float | None,
        close_timeout: float | None,
    ) -> Generator[events.Event, None, None]:
        websocket = self.websocket
        protocol = self.protocol
        clock = self._clock
        self._loop_thread = threading.get_ident()
        yield events.Connecting(websocket.url)
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

        yield events.Connected(websocket.url, proxy=self._proxy_url)
        self._loop_thread = threading.get_ident()

        timers = Timers(clock, poll, ping_rate, ping_timeout, close_timeout)
        timers.connect_deadline = self._connect_deadline
        # Messages need nothing from the loop but the hand-over (unless tracing).
        plain = _MESSAGE_EVENTS if websocket.trace is None else frozenset()
        get_ident = threading.get_ident
        while True:
            with self._lock:
                received = protocol.events_received()
                if protocol.failure is not None:
                    self._flush_locked()  # the close frame of a deferred failure
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
                    self.close()
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

            due = self._fire_timers(timers)
            if due is not None:
                self._suspended = True
                yield due
                self._resume()
                continue
            with self._lock:
                if protocol.has_events:
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
                    protocol.abort(f"timed out after {seconds:g}s waiting for the upgrade response")
            return None
        if self._close_sent_at is not None and timers.close_timeout is not None:
            if now >= self._close_sent_at + timers.close_timeout:
                with self._lock:
                    protocol.abort(
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
                protocol.abort(f"no pong within {timers.ping_timeout:g}s (ping timeout)")
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
        want_write = bool(self._pending)
        if not want_write and self.spin_time and (timeout is None or timeout > 0):
            if self._spin(sock, timeout):
                return
        if want_write != self._write_interest:
            mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0)
            selector.modify(sock, mask)
            self._write_interest = want_write
        try:
            ready = selector.select(timeout)
        except OSError as error:  # pragma: no cover - a selector failing is a bug elsewhere
            with self._lock:
                self.protocol.abort(f"selector error; {error}")
            return
        for key, mask in ready:
            if key.fileobj is self._wake_reader:
                self._drain_wake()
                continue
            if mask & selectors.EVENT_WRITE:
                with self._lock:
                    try:
                        self._drain_locked()
                    except OSError as error:
                        self.protocol.abort(f"socket error; {error}")
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
        read = False
        while True:
            try:
                if into:
                    size = sock.recv_into(view)  # type: ignore[attr-defined]
                    data: bytes | memoryview = view[:size]
                else:
                    data = sock.recv(READ_SIZE)
                    size = len(data)
            except self._would_block:
                return read
            except OSError as error:
                with self._lock:
                    self.protocol.abort(f"socket error; {error}")
                return True
            read = True
            self._websocket_trace("socket_recv", length=size)
            with self._lock:
                if size:
                    self.protocol.receive_data(data)  # type: ignore[arg-type]
                else:
                    self.protocol.receive_eof()
                self._flush_locked()
            # Decrypted bytes buffered inside the TLS layer never wake the selector.
            pending = self._tls_pending
            if not size or pending is None or not pending():
                return True

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
                self.websocket.url,
                event.protocol or "none",
                extensions,
            )
        elif isinstance(event, events.Closing):
            log.info("the server started the closing handshake: %s %r", event.code, event.reason)
        elif isinstance(event, events.Closed):
            log.info("closing handshake complete: %s %r", event.code, event.reason)
        elif isinstance(event, events.Disconnected):
            log.info("disconnected: %s (graceful=%s)", event.reason, event.graceful)
        if self.websocket.trace is not None:
            record = event_record(event)
            if record is not None:
                stage, fields = record
                self._websocket_trace(stage, **fields)
