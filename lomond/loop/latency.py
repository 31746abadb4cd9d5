"""Round trips of pings: which pong answers which ping, and how long it took.

:class:`RoundTrips` notes the time of each ping lomond sends (automatic or
``send_ping``) on the session's monotonic clock; when a pong comes back with the
payload of a ping in flight, the time between them is the latency
(``WebSocket.latency``). The clock stays in the loop: the protocol knows none.
"""

from __future__ import annotations

from collections import deque

#: The most pings whose pongs are awaited; when more are in flight (a server that
#: does not answer), the oldest is forgotten.
MAX_PINGS_IN_FLIGHT = 16


class RoundTrips:
    """The pings in flight, and the last measured round trip.

    Not thread-safe: the session calls it under its lock.
    """

    __slots__ = ("_in_flight", "latency")

    def __init__(self) -> None:
        self._in_flight: deque[tuple[bytes, float]] = deque(maxlen=MAX_PINGS_IN_FLIGHT)
        #: Seconds between the last answered ping and its pong, or ``None`` before
        #: the first.
        self.latency: float | None = None

    @property
    def in_flight(self) -> int:
        """How many pings wait for their pong."""
        return len(self._in_flight)

    def ping_sent(self, payload: bytes, now: float) -> None:
        """Note a ping with ``payload``, sent at ``now``."""
        self._in_flight.append((bytes(payload), now))

    def pong_received(self, payload: bytes, now: float) -> float | None:
        """Match a pong received at ``now`` to the ping it answers.

        RFC 6455 §5.5.3: a pong carries the payload of the ping it answers, and a
        server may answer only the most recent of several pings. So the pong answers
        the oldest ping in flight with the same payload (servers answer in order);
        the pings before that one will get no answer and are forgotten. A pong that
        matches no ping (unsolicited) changes nothing.

        Returns:
            The round trip in seconds, or ``None`` for an unsolicited pong.
        """
        in_flight = self._in_flight
        for index, (sent_payload, sent_at) in enumerate(in_flight):
            if sent_payload == payload:
                for _ in range(index + 1):
                    in_flight.popleft()
                self.latency = max(0.0, now - sent_at)
                return self.latency
        return None
