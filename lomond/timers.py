"""The timers of an open connection, as deadlines on the session clock."""

from __future__ import annotations

from .deadline import Clock, Deadline
from .protocol import State


class Timers:
    """The deadlines of an open connection: poll, auto ping, ping timeout, close timeout.

    Each is kept as an absolute time on the session clock, and advanced by whole
    periods so that they never drift.
    """

    def __init__(
        self,
        clock: Clock,
        poll: float | None,
        ping_rate: float | None,
        ping_timeout: float | None,
        close_timeout: float | None,
    ) -> None:
        self._clock = clock
        self.poll = poll or None
        self.ping_rate = ping_rate or None
        self.ping_timeout = ping_timeout or None
        self.close_timeout = close_timeout
        self.connect_deadline: Deadline | None = None
        self._next_poll: float | None = None
        self._next_ping: float | None = None
        self._last_pong: float | None = None

    def ready(self) -> None:
        """Start the timers: called when the connection opens (``Ready``)."""
        now = self._clock()
        if self.poll is not None:
            self._next_poll = now + self.poll
        if self.ping_rate is not None:
            self._next_ping = now + self.ping_rate
        self._last_pong = now

    def pong_received(self) -> None:
        self._last_pong = self._clock()

    @staticmethod
    def _advance(when: float, period: float, now: float) -> float:
        # Skip the periods that were missed (a slow loop body), keeping the phase.
        missed = int((now - when) // period) + 1
        return when + missed * period

    def poll_due(self, now: float) -> bool:
        when = self._next_poll
        if when is None or now < when:
            return False
        assert self.poll is not None
        self._next_poll = self._advance(when, self.poll, now)
        return True

    def ping_due(self, now: float) -> bool:
        when = self._next_ping
        if when is None or now < when:
            return False
        assert self.ping_rate is not None
        self._next_ping = self._advance(when, self.ping_rate, now)
        return True

    def unresponsive(self, now: float) -> bool:
        if self.ping_timeout is None or self._last_pong is None:
            return False
        return now >= self._last_pong + self.ping_timeout

    def timeout(self, state: State, close_sent_at: float | None) -> float | None:
        """Seconds until the nearest deadline, for the selector (``None``: no deadline)."""
        candidates = []
        if self._next_poll is not None:
            candidates.append(self._next_poll)
        if state is State.OPEN:
            if self._next_ping is not None:
                candidates.append(self._next_ping)
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
