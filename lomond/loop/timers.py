"""The timers of an open connection, as deadlines on the session clock."""

from __future__ import annotations

import math

from ..network.deadline import Deadline
from ..protocol import State

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from ..network.deadline import Clock


def check_seconds(name: str, value: object, least: str = "0 or more") -> None:
    """Check a duration argument: ``None`` or a finite number of seconds, not negative.

    Args:
        name: The argument's name, for the message.
        value: The value to check.
        least: ``"0 or more"``, or ``"more than 0"`` to refuse ``0`` too.

    Raises:
        TypeError: ``value`` is not a number (``bool`` included) nor ``None``.
        ValueError: ``value`` is negative (or ``0``, if refused), NaN or infinite.
    """
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and least != "0 or more"):
        raise ValueError(f"{name} must be a finite number of seconds, {least}, not {value!r}")


def check_connect_arguments(
    *,
    poll: object,
    ping_rate: object,
    ping_timeout: object,
    auto_pong: object,
    close_timeout: object,
    data_resets_ping_timeout: object = False,
    stream: object = False,
) -> None:
    """Check the arguments of ``connect()`` (also taken by ``persist()``).

    ``poll``, ``ping_rate`` and ``ping_timeout`` are off when ``0`` or ``None``;
    ``close_timeout=None`` waits forever and ``0`` gives up at once.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: A duration is negative, NaN or infinite.
    """
    check_seconds("poll", poll)
    check_seconds("ping_rate", ping_rate)
    check_seconds("ping_timeout", ping_timeout)
    check_seconds("close_timeout", close_timeout)
    if not isinstance(auto_pong, int):  # bool is an int; 0 and 1 as in lomond 0.3
        raise TypeError(f"auto_pong must be True or False, not {auto_pong!r}")
    if not isinstance(data_resets_ping_timeout, bool):
        raise TypeError(
            f"data_resets_ping_timeout must be True or False, not {data_resets_ping_timeout!r}"
        )
    if not isinstance(stream, bool):
        raise TypeError(f"stream must be True or False, not {stream!r}")


class Periodic:
    """A deadline that recurs every ``period`` seconds, without drift.

    It is advanced by whole periods from where it started, so a late check does not
    shift the ones after it; periods missed entirely (a slow loop body) are skipped,
    not made up in a burst.
    """

    __slots__ = ("period", "when")

    def __init__(self, period: float) -> None:
        self.period = period
        #: The next due time on the session clock; ``None`` until started.
        self.when: float | None = None

    def start(self, now: float) -> None:
        """First due one period after ``now``."""
        self.when = now + self.period

    def due(self, now: float) -> bool:
        """Whether the deadline has come; if so, move it to the next period."""
        when = self.when
        if when is None or now < when:
            return False
        missed = int((now - when) // self.period) + 1
        self.when = when + missed * self.period
        return True


class Timers:
    """The deadlines of an open connection: poll, auto ping, ping timeout, close timeout.

    Each is kept as an absolute time on the session clock, and advanced by whole
    periods so that they never drift. ``ping_timeout`` counts from ``Ready`` or the
    last pong; with ``data_resets_ping_timeout``, from the last bytes received too.
    """

    def __init__(
        self,
        clock: Clock,
        poll: float | None,
        ping_rate: float | None,
        ping_timeout: float | None,
        close_timeout: float | None,
        data_resets_ping_timeout: bool = False,
    ) -> None:
        self._clock = clock
        self.poll = poll or None
        self.ping_rate = ping_rate or None
        self.ping_timeout = ping_timeout or None
        self.close_timeout = close_timeout
        self.connect_deadline: Deadline | None = None
        self._poll = None if self.poll is None else Periodic(self.poll)
        self._ping = None if self.ping_rate is None else Periodic(self.ping_rate)
        self.data_resets_ping_timeout = data_resets_ping_timeout
        # The last sign of life: Ready, a pong, or (with data_resets_ping_timeout)
        # any bytes received.
        self._last_pong: float | None = None

    def ready(self) -> None:
        """Start the timers: called when the connection opens (``Ready``)."""
        now = self._clock()
        for periodic in (self._poll, self._ping):
            if periodic is not None:
                periodic.start(now)
        self._last_pong = now

    def pong_received(self) -> None:
        self._last_pong = self._clock()

    def data_received(self, now: float) -> None:
        """Bytes arrived at ``now``: a sign of life, with ``data_resets_ping_timeout``."""
        if self.data_resets_ping_timeout and self._last_pong is not None:
            self._last_pong = now

    @property
    def unresponsive_reason(self) -> str:
        """Why the connection ends when ``ping_timeout`` passes."""
        if self.data_resets_ping_timeout:
            return f"nothing received within {self.ping_timeout:g}s (ping timeout)"
        return f"no pong within {self.ping_timeout:g}s (ping timeout)"

    def poll_due(self, now: float) -> bool:
        """Whether a ``Poll`` is due (then the next one is scheduled)."""
        return self._poll is not None and self._poll.due(now)

    def ping_due(self, now: float) -> bool:
        """Whether an automatic ping is due (then the next one is scheduled)."""
        return self._ping is not None and self._ping.due(now)

    def ending(self, state: State, close_sent_at: float | None, now: float) -> str | None:
        """Why the connection must end now, if a deadline says so: the upgrade
        response did not come within ``connect_timeout``, or the server did not close
        within ``close_timeout`` of our close frame."""
        if state is State.CONNECTING:
            deadline = self.connect_deadline
            if deadline is not None and deadline.expired:
                return f"timed out after {deadline.seconds:g}s waiting for the upgrade response"
            return None
        close_timeout = self.close_timeout
        if close_sent_at is not None and close_timeout is not None:
            if now >= close_sent_at + close_timeout:
                return (
                    f"server did not close the connection within {close_timeout:g}s (close timeout)"
                )
        return None

    def unresponsive(self, now: float) -> bool:
        if self.ping_timeout is None or self._last_pong is None:
            return False
        return now >= self._last_pong + self.ping_timeout

    def timeout(self, state: State, close_sent_at: float | None) -> float | None:
        """Seconds until the nearest deadline, for the selector (``None``: no deadline)."""
        candidates = []
        if self._poll is not None and self._poll.when is not None:
            candidates.append(self._poll.when)
        if state is State.OPEN:
            if self._ping is not None and self._ping.when is not None:
                candidates.append(self._ping.when)
            if self.ping_timeout is not None and self._last_pong is not None:
                candidates.append(self._last_pong + self.ping_timeout)
        if close_sent_at is not None and self.close_timeout is not None:
            candidates.append(close_sent_at + self.close_timeout)
        if self.connect_deadline is not None and state is State.CONNECTING:
            if self.connect_deadline.when is not None:
                candidates.append(self.connect_deadline.when)
        if not candidates:
            return None
        return max(0.0, min(candidates) - self._clock())
