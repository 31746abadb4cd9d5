"""Socket timeouts from the connect :class:`~lomond.network.deadline.Deadline`.

Every blocking step of opening a connection (DNS, TCP, a proxy's handshake, TLS)
sets its socket's timeout to what is left of one deadline, and says so when the
deadline passes.
"""

from __future__ import annotations

import socket

from ..errors import ConnectFail
from .deadline import Deadline


def socket_timeout(deadline: Deadline) -> float | None:
    """What is left of ``deadline``, as a socket timeout (``None``: no deadline).

    Raises:
        socket.timeout: The deadline has passed.
    """
    remaining = deadline.remaining()
    if remaining is not None and remaining <= 0:
        raise socket.timeout("deadline passed")
    return remaining


def timed_out(deadline: Deadline, doing: str) -> ConnectFail:
    """The failure for ``deadline`` passing while ``doing`` (``"resolving host 'x'"``)."""
    return ConnectFail(f"timed out after {deadline.seconds:g}s {doing}")
