"""Many connections in one thread: :class:`Multiplexer`.

Each connection runs the generator that ``ws.connect()`` runs (or the loop of
``persist(ws)``), so its events come in the same order; one
:class:`~lomond.loop.engine.Engine` waits for all of them at once, with one
selector, one schedule of timers and one read buffer. The :doc:`/multiplexer` page
of the docs describes the guarantees and the limits.
"""

from __future__ import annotations

import functools
import threading
import weakref

from .loop.engine import Engine, Waiter
from .loop.session import WebsocketSession
from .persist import _persist, check_waits, exponential_backoff
from .websocket import WebSocket

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Any, Generator, Iterator

    from . import events
    from .loop.engine import Task

#: ``add(persist=True)`` options that are ``persist()``'s own (the others are
#: ``connect()``'s).
PERSIST_OPTIONS = ("min_wait", "max_wait", "respect_retry_after", "backoff")


class _Slot:
    """One added WebSocket: its generator, and how to stop reconnecting it."""

    __slots__ = ("websocket", "gen", "exit_event", "sleeper", "__weakref__")

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.gen: Generator[Any, None, None] | None = None
        #: Set by remove() and close(): no more reconnecting.
        self.exit_event = threading.Event()
        #: What a back-off between two connections waits for.
        self.sleeper = Waiter()


class Multiplexer:
    """Runs many WebSocket connections in the thread that iterates it.

    Iterating yields ``(websocket, event)`` pairs: each connection's events in the
    order its own ``connect()`` (or ``persist()``) would yield them. Iteration ends
    when no connection is left, unless ``stay_open``.

    Leaving the loop (``break``, an exception, the generator closed) closes every
    connection's socket at once.

    Args:
        stay_open: Keep iterating while no connection is left, waiting for
            :meth:`add` (from another thread), until :meth:`close`.
    """

    def __init__(self, *, stay_open: bool = False) -> None:
        self.stay_open = stay_open
        self._engine = Engine(finished=self._finished)
        self._lock = threading.Lock()
        # WebSocket -> its slot, from add() until its generator ends.
        self._slots: dict[WebSocket, _Slot] = {}
        # Added since the loop last looked (add() may run in another thread).
        self._added: list[_Slot] = []
        self._closed = False
        self._iterating = False

    def __repr__(self) -> str:
        return f"<Multiplexer with {len(self._slots)} connections>"

    def __len__(self) -> int:
        """How many WebSockets were added and have not ended yet."""
        return len(self._slots)

    def add(self, websocket: WebSocket, *, persist: bool = False, **options: Any) -> None:
        """Connect ``websocket`` in this multiplexer (from any thread, at any time).

        Args:
            websocket: A :class:`~lomond.websocket.WebSocket` that is not running.
            persist: Reconnect it whenever it ends, as
                :func:`~lomond.persist.persist` does, with a
                :class:`~lomond.events.BackOff` event before each wait.
            options: ``connect()``'s options (``poll``, ``ping_rate``,
                ``ping_timeout``, ``auto_pong``, ``close_timeout``, ...); with
                ``persist=True`` also ``persist()``'s ``min_wait``, ``max_wait``,
                ``respect_retry_after`` and ``backoff``.

        Raises:
            TypeError: ``websocket`` is not a WebSocket, or an option is unknown or
                has the wrong type.
            ValueError: An option is out of range.
            RuntimeError: ``websocket`` is running already (here, or in its own
                ``connect()``), or the multiplexer was closed.
        """
        if not isinstance(websocket, WebSocket):
            raise TypeError(f"websocket must be a lomond WebSocket, not {type(websocket).__name__}")
        backoff_options = {name: options.pop(name) for name in PERSIST_OPTIONS if name in options}
        if backoff_options and not persist:
            names = ", ".join(sorted(backoff_options))
            raise TypeError(f"{names}: back-off options need persist=True")
        if persist:
            check_waits(backoff_options.get("min_wait", 5), backoff_options.get("max_wait", 30))
        slot = _Slot(websocket)
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot add a WebSocket to a Multiplexer after close()")
            # Raises RuntimeError if it runs elsewhere, and checks the options.
            first = websocket.connect(
                session_class=self._session_class(),
                **options,
            )
            if persist:
                slot.gen = self._persisting(slot, first, options, backoff_options)
                # The WebSocket is taken between its connections too.
                websocket._loop = weakref.ref(slot.gen)
            else:
                slot.gen = first
            self._slots[websocket] = slot
            self._added.append(slot)
        self._engine.wake()

    def remove(self, websocket: WebSocket) -> None:
        """Close ``websocket``'s connection and stop reconnecting it (from any thread).

        Its last events (``Closed``, ``Disconnected``) still come through. A
        WebSocket that is not in the multiplexer (any more) is ignored.
        """
        with self._lock:
            slot = self._slots.get(websocket)
        if slot is not None:
            self._stop(slot)

    def close(self) -> None:
        """Close every connection (from any thread); iteration ends after the last one."""
        with self._lock:
            self._closed = True
            slots = list(self._slots.values())
        for slot in slots:
            self._stop(slot)
        self._engine.wake()

    def _stop(self, slot: _Slot) -> None:
        slot.exit_event.set()
        slot.websocket.close()
        self._engine.wake(slot.sleeper)

    def __iter__(self) -> Iterator[tuple[WebSocket, events.Event]]:
        return self._run()

    def _run(self) -> Generator[tuple[WebSocket, events.Event], None, None]:
        with self._lock:
            if self._iterating:
                raise RuntimeError("a Multiplexer can be iterated by one loop at a time")
            self._iterating = True
        engine = self._engine
        try:
            engine.selector()  # before the first look at _added: add() can wake it now
            while True:
                with self._lock:
                    added, self._added = self._added, []
                    done = not engine.tasks and not added
                    done = done and (self._closed or not self.stay_open)
                for slot in added:
                    assert slot.gen is not None
                    engine.add(slot.websocket, slot.gen)
                if done:
                    return
                yield from engine.round()  # type: ignore[misc]
                if engine.tasks or (self.stay_open and not self._closed):
                    engine.wait()
        finally:
            with self._lock:
                added, self._added = self._added, []
                self._iterating = False
            try:
                for slot in added:
                    if slot.gen is not None:
                        slot.gen.close()
            finally:
                engine.close_tasks()

    # -- for the engine and add() ---------------------------------------------------

    def _session_class(self) -> Any:
        return functools.partial(WebsocketSession, engine=self._engine)

    def _finished(self, task: Task) -> None:
        """A connection's generator ended: its WebSocket may be added again."""
        with self._lock:
            slot = self._slots.get(task.key)  # type: ignore[call-overload]
            if slot is not None and slot.gen is task.gen:
                del self._slots[task.key]  # type: ignore[arg-type]

    def _persisting(
        self,
        slot: _Slot,
        first: Generator[Any, None, None],
        connect_options: dict[str, Any],
        backoff_options: dict[str, Any],
    ) -> Generator[Any, None, None]:
        min_wait = backoff_options.get("min_wait", 5)
        max_wait = backoff_options.get("max_wait", 30)
        backoff = backoff_options.get("backoff") or exponential_backoff(min_wait, max_wait)
        websocket = slot.websocket
        pending = [first]
        clock = self._engine.clock

        def connect() -> Generator[Any, None, None]:
            loop = (
                pending.pop()
                if pending
                else websocket.connect(session_class=self._session_class(), **connect_options)
            )
            # The persisting generator (running now) keeps the WebSocket taken.
            websocket._loop = weakref.ref(outer)
            return loop

        def sleep(delay: float) -> Generator[Waiter, None, bool]:
            sleeper = slot.sleeper
            sleeper.deadline = clock() + delay
            while not slot.exit_event.is_set() and clock() < sleeper.deadline:
                yield sleeper
            return slot.exit_event.is_set()

        outer = _persist(
            websocket,
            connect,
            max_wait=max_wait,
            exit_event=slot.exit_event,
            respect_retry_after=backoff_options.get("respect_retry_after", True),
            backoff=backoff,
            sleep=sleep,
        )
        return outer
