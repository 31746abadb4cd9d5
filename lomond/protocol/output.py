"""The frames waiting to be sent: the protocol's output queue.

The shell takes bytes from it only when the socket has taken the previous ones, so
what waits for a slow server waits here, as whole frames, where two rules apply:

* frames taken together are joined for one write, but only up to :data:`JOIN_LIMIT`
  bytes: a large frame is handed over on its own, never copied again;
* while the shell says the output is blocked, an automatic pong that still waits is
  replaced by the next one (RFC 6455 §5.5.3 allows answering only the most recent
  ping), so a server that floods pings without reading gets one pong, not a queue.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import List, Union

    Frame = Union[bytes, bytearray]

#: Frames taken together are joined into one piece up to this many bytes.
JOIN_LIMIT = 256 * 1024


class Outgoing:
    """Frames queued for the server, in order."""

    def __init__(self) -> None:
        self._frames: List[Frame] = []
        #: How many bytes wait.
        self.size = 0
        #: Set by the shell while the socket does not take what it was given.
        self.blocked = False
        # The automatic pong queued last (it may have been taken, or followed since).
        self._last_pong: Frame | None = None

    def __bool__(self) -> bool:
        return bool(self._frames)

    def append(self, frame: Frame) -> None:
        """Queue ``frame`` after the others."""
        self._frames.append(frame)
        self.size += len(frame)

    def append_automatic_pong(self, frame: Frame) -> None:
        """Queue a pong answering a ping, replacing a waiting one while blocked."""
        frames = self._frames
        if self.blocked and frames and frames[-1] is self._last_pong:
            self.size -= len(frames.pop())
        self.append(frame)
        self._last_pong = frame

    def take(self) -> bytes | bytearray:
        """Return (and forget) the next bytes to send, ``b""`` when none wait.

        Frames come joined while they total at most :data:`JOIN_LIMIT` bytes; past
        that, the leading ones within the limit come first, and a larger frame comes
        on its own. Call until it returns ``b""`` to have everything.
        """
        frames = self._frames
        if not frames:
            return b""
        if len(frames) == 1 or self.size <= JOIN_LIMIT:
            self._frames = []
            self.size = 0
            self._last_pong = None
            return frames[0] if len(frames) == 1 else b"".join(frames)
        count = 0
        size = 0
        for frame in frames:
            if count and size + len(frame) > JOIN_LIMIT:
                break
            size += len(frame)
            count += 1
        taken = frames[:count]
        del frames[:count]
        self.size -= size
        return taken[0] if count == 1 else b"".join(taken)
