"""Keep a WebSocket connected: reconnect with back-off whenever it ends.

:func:`persist` wraps :meth:`lomond.websocket.WebSocket.connect` in a loop. The
event flow, the back-off table and the reasons behind the design are on the
:doc:`/persist` page of the docs.
"""

from __future__ import annotations

import math
import threading
import time

from . import events
from ._logging import log
from .loop.timers import check_connect_arguments

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Any, Callable, Generator

    from .websocket import WebSocket

    #: Gives the back-off delay in seconds for a count of failed attempts (see
    #: :func:`exponential_backoff`).
    BackoffCallable = Callable[[int], float]

# 2 ** retries stops growing here, so that a huge ``max_wait`` cannot overflow a float.
_MAX_EXPONENT = 64
# How long the exit watcher thread may outlive persist() (see _ExitWatcher).
_WATCH_INTERVAL = 1.0


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or an HTTP date).

    Args:
        value: The header value, or ``None`` when there is no header.
        now: The current wall-clock time (:func:`time.time`), for HTTP dates.

    Returns:
        The seconds to wait (``0.0`` for a date in the past or a negative number),
        or ``None`` when the value is missing, infinite, not a number, a date out of
        range or cannot be understood.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        import email.utils  # only needed for HTTP dates; ~10 ms to import

        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        try:
            seconds = email.utils.mktime_tz(parsed) - now
        except (ValueError, OverflowError):
            return None  # a date no clock can hold, such as the year 10000
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def exponential_backoff(
    min_wait: float, max_wait: float, random_fraction: Callable[[], float] | None = None
) -> BackoffCallable:
    """Return lomond's default back-off, ``min_wait + random() * min(span, 2 ** retries)``.

    The returned callable takes ``retries``, the number of attempts in a row that
    did not reach ``Ready`` (``0`` after a connection that did), and returns the
    delay in seconds, between ``min_wait`` and ``min_wait + min(span, 2 ** retries)``
    where ``span = max_wait - min_wait``.

    Args:
        min_wait: The shortest delay.
        max_wait: The longest delay.
        random_fraction: A source of numbers in ``[0, 1)`` (injectable for tests);
            by default :func:`random.random`.
    """
    if random_fraction is None:
        import random  # imported here: a program that never reconnects never needs it

        random_fraction = random.random
    fraction = random_fraction
    span = max_wait - min_wait

    def delay(retries: int) -> float:
        return min_wait + fraction() * min(span, 2.0 ** min(retries, _MAX_EXPONENT))

    return delay


class _ExitWatcher:
    """A thread that closes the live connection as soon as ``exit_event`` is set.

    A :class:`threading.Event` cannot wake a selector, so without this thread the
    loop would notice the event only at its next event (up to ``poll`` seconds
    later). :meth:`WebSocket.close <lomond.websocket.WebSocket.close>` is
    thread-safe and wakes the loop, which then runs the closing handshake.

    An event cannot be waited on together with a second one, so the thread waits
    on ``exit_event`` in slices of :data:`_WATCH_INTERVAL` seconds and checks
    whether :func:`persist` has finished in between: it reacts to ``exit_event``
    at once, and outlives :func:`persist` by at most one slice.
    """

    def __init__(self, websocket: WebSocket, exit_event: threading.Event) -> None:
        self._websocket = websocket
        self._exit_event = exit_event
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="lomond-persist-exit", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Let the thread end (within :data:`_WATCH_INTERVAL` seconds); does not wait."""
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.is_set():
            if self._exit_event.wait(_WATCH_INTERVAL):
                if not self._stopped.is_set():
                    self._close()
                return

    def _close(self) -> None:
        try:
            self._websocket.close()
        except Exception:  # pragma: no cover - close() with valid arguments does not raise
            log.exception("persist: closing the WebSocket on exit_event failed")


def persist(
    websocket: WebSocket,
    poll: float | None = 5,
    min_wait: float = 5,
    max_wait: float = 30,
    ping_rate: float | None = 30,
    ping_timeout: float | None = None,
    exit_event: threading.Event | None = None,
    respect_retry_after: bool = True,
    *,
    close_timeout: float | None = 30.0,
    auto_pong: bool = True,
    stream: bool = False,
    backoff: BackoffCallable | None = None,
    data_resets_ping_timeout: bool = False,
) -> Generator[events.Event, None, None]:
    """Connect, yield every event, and reconnect after a back-off, until ``exit_event``.

    For each connection it yields every event of
    :meth:`WebSocket.connect <lomond.websocket.WebSocket.connect>`, then
    :class:`~lomond.events.BackOff` and waits ``delay`` seconds:
    ``min_wait + random() * min(max_wait - min_wait, 2 ** retries)``, where
    ``retries`` counts the attempts in a row that did not reach ``Ready``. A
    ``Retry-After`` header on a rejection (seconds or an HTTP date) replaces the
    delay, clamped to ``[0, max_wait]``.

    Setting ``exit_event`` ends the generator: during a back-off at once; during a
    connection after closing it gracefully and yielding the rest of its events
    (``Closed``, ``Disconnected``); before the first connection without connecting.

    Args:
        websocket: The WebSocket to keep connected.
        poll: Seconds between :class:`~lomond.events.Poll` events.
        min_wait: The shortest back-off, in seconds.
        max_wait: The longest back-off, in seconds (also the cap for ``Retry-After``).
        ping_rate: Seconds between automatic pings; ``0`` or ``None`` disables them.
        ping_timeout: Fail a connection after this many seconds without a pong.
        exit_event: Set it (from any thread) to end the generator.
        respect_retry_after: Use a rejection's ``Retry-After`` header as the delay.
        close_timeout: Passed to ``connect()``.
        auto_pong: Passed to ``connect()``.
        stream: Passed to ``connect()``: data messages come as parts.
        backoff: Gives the delay for ``retries`` instead of the formula above
            (default: :func:`exponential_backoff` of ``min_wait`` and ``max_wait``);
            for tests, or another schedule. ``Retry-After`` still replaces it.
        data_resets_ping_timeout: Passed to ``connect()``: any data received counts
            as a sign of life for ``ping_timeout``.

    Raises:
        ValueError: ``min_wait`` is negative or greater than ``max_wait``, or a
            ``connect()`` argument is out of range. Raised by the call, before
            anything is iterated.
        TypeError: A ``connect()`` argument has the wrong type.
    """
    check_connect_arguments(
        poll=poll,
        ping_rate=ping_rate,
        ping_timeout=ping_timeout,
        auto_pong=auto_pong,
        close_timeout=close_timeout,
        data_resets_ping_timeout=data_resets_ping_timeout,
        stream=stream,
    )
    check_waits(min_wait, max_wait)

    def connect() -> Generator[events.Event, None, None]:
        # Passed only when set: a WebSocket subclass written for lomond 0.3.x may
        # have a connect() that does not know them.
        options: dict[str, Any] = {}
        if data_resets_ping_timeout:
            options["data_resets_ping_timeout"] = True
        if stream:
            options["stream"] = True
        return websocket.connect(
            poll=poll,
            ping_rate=ping_rate,
            ping_timeout=ping_timeout,
            auto_pong=auto_pong,
            close_timeout=close_timeout,
            **options,
        )

    return _persist(
        websocket,
        connect,
        max_wait=max_wait,
        exit_event=exit_event,
        respect_retry_after=respect_retry_after,
        backoff=exponential_backoff(min_wait, max_wait) if backoff is None else backoff,
    )


def check_waits(min_wait: float, max_wait: float) -> None:
    """Check ``persist()``'s ``min_wait`` and ``max_wait``.

    Raises:
        ValueError: ``min_wait`` is negative or greater than ``max_wait``.
    """
    if min_wait > max_wait:
        raise ValueError(
            f"min_wait ({min_wait!r}) must not be greater than max_wait ({max_wait!r})"
        )
    if not 0 <= min_wait <= max_wait:  # also catches NaN
        raise ValueError(f"min_wait and max_wait must be >= 0, not {min_wait!r} and {max_wait!r}")


def _persist(
    websocket: WebSocket,
    connect: Callable[[], Generator[Any, None, None]],
    max_wait: float,
    exit_event: threading.Event | None,
    respect_retry_after: bool,
    backoff: BackoffCallable,
    sleep: Callable[[float], Generator[Any, None, bool]] | None = None,
) -> Generator[Any, None, None]:
    """The loop of :func:`persist`: the events of each ``connect()``, then a back-off.

    ``sleep(delay)`` waits the back-off and returns whether ``exit_event`` was set
    meanwhile; whatever it yields is passed on (a loop running many connections
    waits for the deadline, not in place). By default the thread waits on
    ``exit_event``, and a watcher thread closes the connection when it is set.
    """
    watcher: _ExitWatcher | None = None
    if exit_event is None:
        # Nobody else can set it: there is nothing to watch.
        exit_event = threading.Event()
    elif sleep is None:
        watcher = _ExitWatcher(websocket, exit_event)
        watcher.start()
    try:
        retries = 0
        while not exit_event.is_set():
            retries += 1
            retry_after: float | None = None
            closing = False
            connection = connect()
            try:
                for event in connection:
                    if isinstance(event, events.Ready):
                        retries = 0
                    elif isinstance(event, events.Rejected) and respect_retry_after:
                        header = event.response.get("retry-after")
                        retry_after = parse_retry_after(header, time.time())
                    yield event
                    # The watcher closes an idle connection; this check closes it before
                    # the next event when the loop body itself sets exit_event.
                    if not closing and exit_event.is_set():
                        closing = True
                        # Closing already (e.g. on Closing): the session echoes the
                        # server's close code itself (RFC 6455 §5.5.1).
                        if not websocket.is_closing:
                            websocket.close()
            finally:
                # Leaving persist() early (break, an exception) closes the socket now,
                # not whenever the connection's generator is collected.
                connection.close()
            if exit_event.is_set():
                return
            if retry_after is not None:
                delay = min(retry_after, max_wait)
            else:
                delay = _checked_delay(backoff(retries))
            yield events.BackOff(delay)
            if (yield from (sleep or _sleeper(exit_event))(delay)):
                return
    finally:
        if watcher is not None:
            watcher.stop()


def _sleeper(exit_event: threading.Event) -> Callable[[float], Generator[Any, None, bool]]:
    """The back-off of a thread of its own: wait on ``exit_event`` (yields nothing)."""

    def sleep(delay: float) -> Generator[Any, None, bool]:
        # Event.wait() raises OverflowError above TIMEOUT_MAX (about 292 years).
        return exit_event.wait(min(delay, threading.TIMEOUT_MAX))
        yield  # pragma: no cover - makes this a generator that yields nothing

    return sleep


def _checked_delay(delay: float) -> float:
    if math.isnan(delay) or delay < 0:
        raise ValueError(f"the back-off gave an invalid delay: {delay!r}")
    return float(delay)
