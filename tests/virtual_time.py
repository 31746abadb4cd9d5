"""Virtual time for session tests: a fake clock, a selector that moves it, a scripted peer.

The session waits on a selector until its nearest deadline. :class:`FakeSelector`
first asks the real selector whether anything is ready *now*; if nothing is, it lets
the peer finish what it is doing (:meth:`Peer.wait_quiet`), and if still nothing is
ready it moves the :class:`FakeClock` forward by the timeout the session asked for
(or to the next action scheduled on the clock, whichever comes first). Timers then
fire exactly on time and at once, however slow the machine is.
"""

from __future__ import annotations

import heapq
import itertools
import select
import selectors
import threading
import time
from typing import Any, Callable, Mapping

from servers import RawConnection, frame

#: How long a ``select(None)`` waits for real, so that the loop keeps turning.
IDLE_WAIT = 0.05


class FakeClock:
    """A monotonic clock that moves only when told to (``clock.now += 5``).

    Actions can be scheduled at a point in virtual time (:meth:`call_at`); the
    :class:`FakeSelector` stops the clock there and runs them.
    """

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self._scheduled: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    def call_at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` (in the session's thread) once the clock reaches ``when``."""
        heapq.heappush(self._scheduled, (when, next(self._order), action))

    def next_call(self) -> float | None:
        """When the earliest scheduled action is due, or ``None``."""
        return self._scheduled[0][0] if self._scheduled else None

    def run_due(self) -> int:
        """Run the actions that are due; return how many ran."""
        ran = 0
        while self._scheduled and self._scheduled[0][0] <= self.now:
            _, _, action = heapq.heappop(self._scheduled)
            action()
            ran += 1
        return ran


class SelectorFactory:
    """Makes :class:`FakeSelector` objects; records each ``select`` call.

    Args:
        clock: The clock to move.
        settle: Called before the clock moves, to let the peer catch up.

    Attributes:
        calls: ``(clock time, timeout)`` of every ``select(timeout)`` call.
    """

    def __init__(self, clock: FakeClock, settle: Callable[[], None] | None = None) -> None:
        self.clock = clock
        self.settle = settle
        self.calls: list[tuple[float, float | None]] = []

    def __call__(self) -> FakeSelector:
        return FakeSelector(self)

    @property
    def timeouts(self) -> list[float | None]:
        """Every timeout passed to ``select``, in order."""
        return [timeout for _, timeout in self.calls]


class FakeSelector(selectors.BaseSelector):
    """A real selector whose waits happen in virtual time."""

    def __init__(self, factory: SelectorFactory) -> None:
        self._factory = factory
        self._real = selectors.DefaultSelector()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        factory = self._factory
        clock = factory.clock
        factory.calls.append((clock.now, timeout))
        ready = self._real.select(0)
        if ready:
            return ready
        if factory.settle is not None:
            factory.settle()
            ready = self._real.select(0)
            if ready:
                return ready
        if timeout is None:
            return self._real.select(IDLE_WAIT)
        target = clock.now + timeout
        next_call = clock.next_call()
        if next_call is not None and next_call <= target:
            clock.now = max(clock.now, next_call)
            if clock.run_due():
                # A scheduled action sent something; it is on its way over loopback.
                return self._real.select(1.0)
            return self._real.select(0)
        clock.now = target
        return self._real.select(0)


class Peer:
    """A raw WebSocket server living in virtual time (run ``script`` with ``raw_server``).

    It records every client frame with the fake clock's time, and answers as told.

    Args:
        clock: The fake clock (for the times recorded in :attr:`frames`).
        upgrade: Answer the upgrade request (else read it and stay silent).
        answer_pings: Answer each ping with a pong.
        answer_close: Answer the client's close frame with a close frame (1000).
        drop_after_close: Close the TCP connection after answering a close frame.

    Attributes:
        frames: ``(opcode, payload, clock time)`` of every client frame received.
        done: Set once the peer has finished (EOF from the client, or it hung up).
    """

    def __init__(
        self,
        clock: FakeClock,
        *,
        upgrade: bool = True,
        answer_pings: bool = False,
        answer_close: bool = True,
        drop_after_close: bool = True,
    ) -> None:
        self.clock = clock
        self.upgrade = upgrade
        self.answer_pings = answer_pings
        self.answer_close = answer_close
        self.drop_after_close = drop_after_close
        self.frames: list[tuple[int, bytes, float]] = []
        self.connection: RawConnection | None = None
        self.done = threading.Event()
        # Set while the peer waits for input with nothing left to do.
        self._idle = threading.Event()

    def opcodes(self) -> list[int]:
        return [opcode for opcode, _, _ in self.frames]

    def times(self, opcode: int) -> list[float]:
        """The clock times at which frames with ``opcode`` arrived."""
        return [when for code, _, when in self.frames if code == opcode]

    def send(self, data: bytes) -> None:
        assert self.connection is not None, "no client connected"
        self.connection.send(data)

    def script(self, connection: RawConnection) -> None:
        """The ``raw_server`` script."""
        self.connection = connection
        try:
            if self.upgrade:
                connection.handshake()
                self._serve_frames(connection)
            else:
                connection.read_request()
                self._swallow(connection)
        finally:
            connection.close()
            self.done.set()

    def _wait_readable(self, connection: RawConnection) -> None:
        self._idle.set()
        select.select([connection.sock], [], [])
        # Cleared before anything is read, so wait_quiet() never sees an idle peer
        # that has taken input it has not handled yet.
        self._idle.clear()

    def _swallow(self, connection: RawConnection) -> None:
        while True:
            self._wait_readable(connection)
            if not connection.sock.recv(65536):
                return

    def _serve_frames(self, connection: RawConnection) -> None:
        while True:
            self._wait_readable(connection)
            opcode, payload = connection.recv_frame()
            self.frames.append((opcode, payload, self.clock.now))
            if opcode == 9 and self.answer_pings:
                connection.send(frame(10, payload))
            elif opcode == 8 and self.answer_close:
                connection.send(frame(8, (1000).to_bytes(2, "big")))
                if self.drop_after_close:
                    return

    def _has_unread_input(self) -> bool:
        connection = self.connection
        if connection is None:
            return True
        try:
            readable, _, _ = select.select([connection.sock], [], [], 0)
        except (OSError, ValueError):  # closed by the peer's thread meanwhile
            return not self.done.is_set()
        return bool(readable)

    def wait_quiet(self, timeout: float = 5.0) -> None:
        """Wait (for real) until the peer has handled all input and waits for more.

        Raises:
            AssertionError: The peer is still busy after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while not self.done.is_set():
            if self._idle.is_set() and not self._has_unread_input():
                return
            if time.monotonic() > deadline:
                raise AssertionError("the peer did not go quiet")
            time.sleep(0.001)
