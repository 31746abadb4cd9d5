"""The loop's waiting: one selector, one schedule of timers, one read buffer.

An :class:`Engine` owns what the connections of one thread share: the selector they
wait on, the wake-up socket pair other threads use to interrupt a wait, the schedule
of their deadlines (a heap), the buffer their sockets are read into, and the helper
threads for the blocking steps of opening a connection
(:mod:`lomond.loop.helpers`).

Each connection is a generator (:meth:`WebsocketSession.run
<lomond.loop.session.WebsocketSession.run>`) that yields its events in order.
``ws.connect()`` runs an engine with that one generator: it waits in place, with
:meth:`Engine.block`. A :class:`~lomond.multiplexer.Multiplexer` runs one engine
with many: each generator, when it has nothing to do, yields a :class:`Waiter`
instead of an event (what it waits for is in it: the socket it watched, a
deadline), and :meth:`Engine.round` gives every connection that can go on a turn of
at most :data:`TURN_EVENTS` events; :meth:`Engine.wait` then waits for the next
socket or deadline.

Fairness: a turn hands over at most :data:`TURN_EVENTS` events and reads the socket
at most once (one buffer), and the schedule is checked after every event, so a
busy connection delays another one's timers by one event's handling at most.
"""

from __future__ import annotations

import heapq
import itertools
import selectors
import socket
import time
from collections import deque

from ..events import Event
from .helpers import HelperPool
from .reader import READ_SIZE

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Any, Callable, Generator, Hashable, Union

    from ..network.deadline import Clock
    from .helpers import Job

    SelectorFactory = Callable[[], selectors.BaseSelector]
    #: What a connection's generator yields: an event, or what it waits for.
    Item = Union[Event, "Waiter"]

#: Events one connection hands over per turn, before the others get theirs.
TURN_EVENTS = 16
#: The longest the loop sleeps in one wait, in seconds: a timer further away than
#: this is checked again after it (a selector refuses very long timeouts).
MAX_WAIT = 3600.0


class Waiter:
    """What a connection's generator waits for while it yields nothing.

    The generator sets :attr:`deadline` (and watches its socket with
    :meth:`Engine.watch`) before it yields the waiter; the engine notes in
    :attr:`ready_mask` what the socket became ready for, and resumes the generator
    then, at the deadline, or when another thread wakes it (:meth:`Engine.wake`).
    """

    #: When to resume anyway, on the engine's clock; ``None``: only on the socket.
    deadline: float | None = None
    #: What the watched socket became ready for since the last turn (``EVENT_*``).
    ready_mask = 0
    #: The task the generator belongs to (set by the engine).
    task: Task | None = None
    #: The deadline already in the engine's schedule, if any.
    scheduled: float | None = None
    #: The socket watched for it, and for what.
    watched: tuple[Any, int] | None = None


class Task:
    """One generator driven by the engine, and the key its events are paired with."""

    __slots__ = ("key", "gen", "waiter", "idle")

    def __init__(self, key: Hashable, gen: Generator[Item, None, None]) -> None:
        self.key = key
        self.gen = gen
        self.waiter: Waiter | None = None
        self.idle = False


class Engine:
    """The selector, the schedule and the read buffer of the connections of one thread.

    Args:
        clock: The monotonic clock deadlines are measured on.
        selector_factory: Makes the selector (injectable for tests).
        read_size: The size of the read buffer the connections share.
        helpers: The most helper threads for blocking steps of opening.
        finished: Called with each task whose generator has ended.
    """

    def __init__(
        self,
        clock: Clock = time.monotonic,
        selector_factory: SelectorFactory = selectors.DefaultSelector,
        read_size: int = READ_SIZE,
        helpers: int | None = None,
        finished: Callable[[Task], None] | None = None,
    ) -> None:
        self.clock = clock
        self._finished = finished
        self._selector_factory = selector_factory
        self._selector: selectors.BaseSelector | None = None
        self._wake_reader: socket.socket | None = None
        self._wake_writer: socket.socket | None = None
        self._read_size = read_size
        self._buffer: memoryview | None = None
        self._helpers = helpers
        self._pool: HelperPool | None = None
        self._heap: list[tuple[float, int, Waiter]] = []
        self._order = itertools.count()
        self._ready: deque[Task] = deque()
        self._poked: deque[Waiter] = deque()
        #: The tasks not finished yet.
        self.tasks: set[Task] = set()

    @property
    def buffer(self) -> memoryview:
        """The buffer sockets are read into (one read at a time, then handed on)."""
        if self._buffer is None:
            self._buffer = memoryview(bytearray(self._read_size))
        return self._buffer

    def selector(self) -> selectors.BaseSelector:
        """The selector (made on first use, with the wake-up socket registered)."""
        selector = self._selector
        if selector is None:
            reader, writer = socket.socketpair()
            reader.setblocking(False)
            writer.setblocking(False)
            self._wake_reader, self._wake_writer = reader, writer
            selector = self._selector = self._selector_factory()
            selector.register(reader, selectors.EVENT_READ)
        return selector

    def close(self) -> None:
        """Close the selector and the wake-up pair (the connections' sockets are theirs)."""
        for resource in (self._selector, self._wake_reader, self._wake_writer):
            if resource is not None:
                resource.close()
        self._selector = self._wake_reader = self._wake_writer = None
        self._buffer = None

    # -- waiting ---------------------------------------------------------------

    def watch(self, waiter: Waiter, fileobj: Any, mask: int) -> None:
        """Watch ``fileobj`` for ``mask`` on behalf of ``waiter`` (its only socket)."""
        watched = waiter.watched
        if watched is not None:
            if watched[0] is fileobj:
                if watched[1] != mask:
                    self.selector().modify(fileobj, mask, waiter)
                    waiter.watched = (fileobj, mask)
                return
            self.unwatch(waiter)
        self.selector().register(fileobj, mask, waiter)
        waiter.watched = (fileobj, mask)

    def unwatch(self, waiter: Waiter) -> None:
        """Stop watching ``waiter``'s socket (before it is closed)."""
        watched = waiter.watched
        if watched is None:
            return
        waiter.watched = None
        if self._selector is not None:
            try:
                self._selector.unregister(watched[0])
            except (KeyError, ValueError, OSError):  # pragma: no cover - closed already
                pass

    def poke(self, waiter: Waiter) -> None:
        """From the loop's thread: give ``waiter``'s connection a turn soon."""
        self._poked.append(waiter)

    def wake(self, waiter: Waiter | None = None) -> None:
        """Interrupt the wait (from any thread); ``waiter``'s connection gets a turn."""
        if waiter is not None:
            self._poked.append(waiter)
        writer = self._wake_writer
        if writer is not None:
            try:
                writer.send(b"\0")
            except OSError:
                pass

    def block(self, timeout: float | None) -> int:
        """Wait for the one connection (``ws.connect()``); return what its socket is ready for.

        Raises:
            OSError: The selector failed.
        """
        selector = self.selector()
        ready = selector.select(None if timeout is None else min(timeout, MAX_WAIT))
        mask = 0
        for key, events in ready:
            if key.data is None:
                self._drain_wake()
            else:
                mask |= events
        self._poked.clear()
        return mask

    def _drain_wake(self) -> None:
        reader = self._wake_reader
        try:
            while reader is not None and reader.recv(4096):
                pass
        except OSError:
            pass

    def submit(self, waiter: Waiter, function: Callable[[], Any]) -> Job:
        """Run ``function`` in a helper thread; ``waiter`` gets a turn once it is done."""
        pool = self._pool
        if pool is None:
            pool = self._pool = HelperPool() if self._helpers is None else HelperPool(self._helpers)
        self.selector()  # the wake-up pair must exist before the helper wakes the loop
        return pool.submit(function, lambda: self.wake(waiter))

    # -- many connections ------------------------------------------------------

    def add(self, key: Hashable, gen: Generator[Item, None, None]) -> Task:
        """Drive ``gen`` from the next round on; its events are paired with ``key``."""
        task = Task(key, gen)
        self.tasks.add(task)
        self._ready.append(task)
        return task

    def round(self) -> Generator[tuple[Hashable, Event], None, None]:
        """Give each connection that can go on one turn; yields ``(key, event)`` pairs.

        Then :meth:`wait` for the next ones.
        """
        ready = self._ready
        for _ in range(len(ready)):
            if not ready:
                break
            yield from self._turn(ready.popleft())
            self._fire_due()

    def _turn(self, task: Task) -> Generator[tuple[Hashable, Event], None, None]:
        gen, key, heap, clock = task.gen, task.key, self._heap, self.clock
        for _ in range(TURN_EVENTS):
            try:
                item = next(gen)
            except StopIteration:
                self._finish(task)
                return
            except BaseException:
                self._finish(task)
                raise
            if not isinstance(item, Event):
                self._park(task, item)
                return
            yield key, item
            if heap and heap[0][0] <= clock():
                break  # another connection's timer is due: its turn first
        self._ready.append(task)

    def _finish(self, task: Task) -> None:
        self.tasks.discard(task)
        if self._finished is not None:
            self._finished(task)

    def _park(self, task: Task, waiter: Waiter) -> None:
        waiter.task = task
        task.waiter = waiter
        if waiter.ready_mask:
            self._ready.append(task)
            return
        task.idle = True
        when = waiter.deadline
        if when is not None and (waiter.scheduled is None or when < waiter.scheduled):
            waiter.scheduled = when
            heapq.heappush(self._heap, (when, next(self._order), waiter))

    def _resume(self, waiter: Waiter, first: bool = False) -> None:
        task = waiter.task
        if task is not None and task.idle and task.waiter is waiter:
            task.idle = False
            if first:
                self._ready.appendleft(task)  # a due timer goes before the others' turns
            else:
                self._ready.append(task)

    def _fire_due(self) -> None:
        heap = self._heap
        if not heap:
            return
        now = self.clock()
        while heap and heap[0][0] <= now:
            when, _, waiter = heapq.heappop(heap)
            if waiter.scheduled == when:
                waiter.scheduled = None
            self._resume(waiter, first=True)

    def wait(self) -> None:
        """Wait until a connection can go on (at once if one can), or :meth:`wake`."""
        timeout: float | None = 0.0
        if not self._ready and not self._poked:
            heap = self._heap
            timeout = None if not heap else max(0.0, heap[0][0] - self.clock())
        for key, events in self.selector().select(
            None if timeout is None else min(timeout, MAX_WAIT)
        ):
            waiter = key.data
            if waiter is None:
                self._drain_wake()
            else:
                waiter.ready_mask |= events
                self._resume(waiter)
        poked = self._poked
        while poked:
            self._resume(poked.popleft())
        self._fire_due()

    def close_tasks(self) -> None:
        """Close every generator (each closes its socket), then the engine."""
        try:
            while self.tasks:
                task = self.tasks.pop()
                try:
                    task.gen.close()
                finally:
                    if self._finished is not None:
                        self._finished(task)
        finally:
            self._ready.clear()
            self._heap.clear()
            self.close()
