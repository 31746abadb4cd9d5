"""The steps of opening a connection, and a blocking driver for them.

The code that opens a connection (:mod:`lomond.network.opening`) and asks a proxy
for a tunnel (:mod:`lomond.network.tunnel`) never waits itself: it is a generator
that yields what it waits for, on a non-blocking socket:

* :class:`WaitFor` ``(sock, READ or WRITE)``: resume it once the socket is ready (a
  TCP connect in progress, a TLS handshake record, a proxy's reply);
* :class:`Blocking` ``(function)``: a call that cannot be made without blocking — the
  standard library has no non-blocking resolver — run it elsewhere and send its
  result back (or throw its exception in).

The session's loop drives them for all of its connections at once;
:func:`wait_blocking` drives steps that only wait for sockets, in place, for the
blocking path. Both give the same failure when the deadline passes first.
"""

from __future__ import annotations

from .deadline import Deadline
from .timeouts import timed_out

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    import socket
    from typing import Any, Callable, Generator, TypeVar

    T = TypeVar("T")

#: Wait until the socket is readable (the same value as ``selectors.EVENT_READ``).
READ = 1
#: Wait until the socket is writable (``selectors.EVENT_WRITE``).
WRITE = 2


class WaitFor:
    """Resume the steps once ``sock`` is ready for ``mask`` (:data:`READ`, :data:`WRITE`)."""

    __slots__ = ("sock", "mask", "doing")

    def __init__(self, sock: socket.socket, mask: int, doing: str) -> None:
        self.sock = sock
        self.mask = mask
        #: What is waited for, for the message when the deadline passes first.
        self.doing = doing


class Blocking:
    """Run ``function()`` where blocking is harmless; send back its result.

    ``doing`` says what it does, for the message when the deadline passes first;
    ``None`` when ``function`` keeps to the deadline itself (then the driver waits
    for its own failure).
    """

    __slots__ = ("function", "doing")

    def __init__(self, function: Callable[[], Any], doing: str | None) -> None:
        self.function = function
        self.doing = doing


def wait_blocking(steps: Generator[WaitFor, None, T], deadline: Deadline) -> T:
    """Run ``steps`` to their end, waiting here for each socket, before ``deadline``.

    Raises:
        ConnectFail: The deadline passed first (``timed out after ...``), or what
            ``steps`` raise.
    """
    import selectors

    with selectors.DefaultSelector() as selector:
        try:
            step = next(steps)
            while True:
                if deadline.expired:
                    raise timed_out(deadline, step.doing)
                selector.register(step.sock, step.mask)
                try:
                    ready = selector.select(deadline.remaining())
                finally:
                    selector.unregister(step.sock)
                if not ready:
                    raise timed_out(deadline, step.doing)
                step = steps.send(None)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            steps.close()
