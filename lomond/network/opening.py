"""Opening a connection step by step, without blocking: DNS, TCP, TLS.

:func:`open_steps` is a generator that opens what
:meth:`lomond.network.connector.Connector.open` opens, but never waits itself: it
yields what it waits for, and whoever drives it (the session's loop) waits, under
the connect deadline, for all of its connections at once:

* :class:`WaitFor` ``(sock, READ or WRITE)``: resume it once the socket is ready (a
  TCP connect in progress, a TLS handshake record);
* :class:`Blocking` ``(function)``: a call that cannot be made without blocking — the
  standard library has no non-blocking resolver — run it elsewhere and send its
  result back (or throw its exception in).

Connections through a proxy are opened by one :class:`Blocking` call of
:meth:`Connector.open <lomond.network.connector.Connector.open>` (bounded by the
connect deadline itself); direct connections resolve the host by a
:class:`Blocking` call (unless it is an IP address), then connect and run the TLS
handshake on a non-blocking socket. Failures are the
:class:`~lomond.errors.ConnectFail` sentences of the blocking path.
"""

from __future__ import annotations

import errno
import os
import socket

from .._logging import log
from ..errors import ConnectFail
from ..protocol.url import host_port
from .deadline import Deadline
from .proxy import parse_ip_literal
from .sockets import Opened
from .transport import resolve

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    import ssl
    from typing import Any, Callable, Generator, Union

    from .connector import Connector

    Step = Union["WaitFor", "Blocking"]

#: Wait until the socket is readable (the same value as ``selectors.EVENT_READ``).
READ = 1
#: Wait until the socket is writable (``selectors.EVENT_WRITE``).
WRITE = 2

_IN_PROGRESS = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, errno.EAGAIN})


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


def open_steps(
    connector: Connector, deadline: Deadline, pooled: bool = True
) -> Generator[Step, Any, Opened]:
    """Open a connection for ``connector`` before ``deadline``, yielding each wait.

    Args:
        connector: What to open.
        deadline: When to give up.
        pooled: Yield the blocking steps as :class:`Blocking`; ``False`` makes them
            here, in place (a loop with one connection: nothing else waits).

    Returns:
        The connected socket (non-blocking), as ``Connector.open`` describes it.

    Raises:
        ConnectFail: With a readable reason; nothing is left open.
    """
    proxy, context = connector.settings()
    if proxy is not None:
        # Proxies are opened by the blocking path, bounded by the deadline itself.
        if not pooled:
            return connector.open(deadline)
        opened: Opened = yield Blocking(lambda: connector.open(deadline), None)
        return opened
    host, port = connector.host, connector.port
    if not pooled or parse_ip_literal(host) is not None:
        addresses = resolve(host, port, deadline)
    else:
        no_deadline = Deadline(None)
        addresses = yield Blocking(
            lambda: resolve(host, port, no_deadline), f"resolving host '{host}'"
        )
    log.debug("connecting to %s", host_port(host, port))
    sock = yield from _connect(addresses, host, port)
    if context is None:
        return Opened(sock, None)
    if connector.on_tls is not None:
        connector.on_tls()
    tls = yield from _handshake(sock, context, host, deadline)
    from .tls import opened as describe  # loaded by _handshake already

    return describe(tls, None)


def _connect(addresses: list[Any], host: str, port: int) -> Generator[WaitFor, None, socket.socket]:
    """Connect to the first address that accepts, as ``open_tcp`` does."""
    where = host_port(host, port)
    last_error: OSError | None = None
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            code = sock.connect_ex(address)
            if code in _IN_PROGRESS:
                yield WaitFor(sock, WRITE, f"connecting to {where}")
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, os.strerror(code))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as error:
            sock.close()
            last_error = error
            continue
        except BaseException:
            sock.close()  # the driver gave up (the deadline, or the loop was left)
            raise
        return sock
    if isinstance(last_error, OSError) and last_error.errno == errno.ECONNREFUSED:
        raise ConnectFail(f"connection refused by {where}")
    raise ConnectFail(f"could not connect to {where}: {last_error}")


def _handshake(
    sock: socket.socket, context: ssl.SSLContext, host: str, deadline: Deadline
) -> Generator[WaitFor, None, ssl.SSLSocket]:
    """Run the TLS handshake on the non-blocking ``sock`` (SNI always sent)."""
    import ssl

    from .tls import handshake_failure

    doing = f"in the TLS handshake with {host}"
    try:
        tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    except OSError as error:
        sock.close()
        raise handshake_failure(error, host, deadline) from None
    try:
        while True:
            try:
                tls.do_handshake()
                return tls
            except ssl.SSLWantReadError:
                yield WaitFor(tls, READ, doing)
            except ssl.SSLWantWriteError:
                yield WaitFor(tls, WRITE, doing)
    except OSError as error:
        tls.close()
        raise handshake_failure(error, host, deadline) from None
    except BaseException:
        tls.close()
        raise
