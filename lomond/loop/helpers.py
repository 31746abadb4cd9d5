"""Helper threads for the blocking steps of opening connections, a bounded number.

The standard library has no non-blocking resolver (``getaddrinfo`` blocks), and
lomond opens TLS inside TLS (``wss://`` through an ``https://`` proxy) with the
blocking path. A loop that runs many connections in one thread hands those calls
to a :class:`HelperPool`: at most :data:`MAX_HELPERS` threads, started when first
needed, each ending after :data:`IDLE_SECONDS` without work. Calls beyond that wait
their turn (in order).
"""

from __future__ import annotations

import threading
from collections import deque

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Any, Callable

#: The most helper threads one loop runs at once.
MAX_HELPERS = 8
#: Seconds a helper thread waits for more work before it ends.
IDLE_SECONDS = 5.0


class Job:
    """A call handed to the pool: once :attr:`done`, :attr:`result` or :attr:`error`."""

    __slots__ = ("function", "on_done", "done", "result", "error", "cancelled")

    def __init__(self, function: Callable[[], Any], on_done: Callable[[], None]) -> None:
        self.function = function
        self.on_done = on_done
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        #: Set by the caller that no longer wants the result (it is closed then).
        self.cancelled = False

    def run(self) -> None:
        try:
            self.result = self.function()
        except BaseException as error:  # handed to the caller, in its thread
            self.error = error
        self.function = _nothing  # let go of what the call held
        self.done = True
        if self.cancelled:
            self.discard()
        else:
            self.on_done()

    def cancel(self) -> None:
        """Give up on the result: what the call opened is closed."""
        self.cancelled = True
        if self.done:
            self.discard()

    def discard(self) -> None:
        """Close what a cancelled job opened (an ``Opened`` socket), if anything."""
        sock = getattr(self.result, "sock", None)
        self.result = None
        if sock is not None:
            try:
                sock.close()
            except OSError:  # pragma: no cover - closing hardly fails
                pass


def _nothing() -> None:
    return None


class HelperPool:
    """Runs :class:`Job` calls in at most ``size`` daemon threads."""

    def __init__(self, size: int = MAX_HELPERS, idle_seconds: float = IDLE_SECONDS) -> None:
        self.size = size
        self.idle_seconds = idle_seconds
        self._jobs: deque[Job] = deque()
        self._condition = threading.Condition()
        self._threads = 0
        self._idle = 0

    @property
    def threads(self) -> int:
        """How many helper threads run now."""
        return self._threads

    def submit(self, function: Callable[[], Any], on_done: Callable[[], None]) -> Job:
        """Run ``function`` in a helper thread; ``on_done()`` is called there after it."""
        job = Job(function, on_done)
        with self._condition:
            self._jobs.append(job)
            if self._idle:
                self._condition.notify()
            elif self._threads < self.size:
                self._threads += 1
                thread = threading.Thread(target=self._work, name="lomond-helper", daemon=True)
                thread.start()
        return job

    def _work(self) -> None:
        condition = self._condition
        while True:
            with condition:
                while not self._jobs:
                    self._idle += 1
                    woken = condition.wait(self.idle_seconds)
                    self._idle -= 1
                    if not woken and not self._jobs:
                        self._threads -= 1
                        return
                job = self._jobs.popleft()
            if job.cancelled:
                continue
            job.run()
