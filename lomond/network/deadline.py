"""Points in time on an injectable monotonic clock."""

from __future__ import annotations

import time

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Callable

    #: A monotonic clock in seconds. :func:`time.monotonic` unless a test injects one.
    Clock = Callable[[], float]


#: Seconds (about 68 years) past which a deadline is taken to never pass: socket
#: timeouts and thread joins refuse values not much larger (``OverflowError``).
NEVER_AFTER = float(2**31)


class Deadline:
    """A moment ``seconds`` after now, or never (``seconds=None``).

    Args:
        seconds: How long from now; ``None`` (or more than :data:`NEVER_AFTER`) for a
            deadline that never passes.
        clock: The clock to measure on.
    """

    __slots__ = ("seconds", "when", "_clock")

    def __init__(self, seconds: float | None, clock: Clock = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self.when: float | None = None
        if seconds is not None and seconds <= NEVER_AFTER:
            self.when = clock() + seconds

    def __repr__(self) -> str:
        return f"Deadline(seconds={self.seconds!r}, remaining={self.remaining()!r})"

    def remaining(self) -> float | None:
        """Seconds left (never negative), or ``None`` if the deadline never passes."""
        if self.when is None:
            return None
        return max(0.0, self.when - self._clock())

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self.when is not None and self._clock() >= self.when
