"""Opening a connection step by step, without blocking: DNS, TCP, proxy, TLS.

:func:`open_steps` is a generator that opens what
:meth:`lomond.network.connector.Connector.open` opens, but never waits itself: it
yields what it waits for, and whoever drives it (the session's loop) waits, under
the connect deadline, for all of its connections at once:

* :class:`WaitFor` ``(sock, READ or WRITE)``: resume it once the socket is ready (a
  TCP connect in progress, a TLS handshake record);
* :class:`Blocking` ``(function)``: a call that cannot be made without blocking — the
  standard library has no non-blocking resolver — run it elsewhere and send its
  result back (or throw its exception in).

Host names are resolved by a :class:`Blocking` call (IP addresses need none); the
TCP connect, a proxy's tunnel (HTTP CONNECT, SOCKS5, SOCKS4: the exchanges of
:func:`lomond.network.tunnel.negotiate_steps`, which the blocking path runs too)
and the TLS handshakes (also with an ``https://`` proxy) run on a non-blocking
socket. Only ``wss://`` through an ``https://`` proxy (TLS inside TLS) is opened by
one :class:`Blocking` call of :meth:`Connector.open
<lomond.network.connector.Connector.open>`, bounded by the connect deadline itself.
Failures are the :class:`~lomond.errors.ConnectFail` sentences of the blocking path.
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
from .steps import READ, WRITE, Blocking, WaitFor
from .transport import resolve

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    import ssl
    from typing import Any, Generator, Union

    from .connector import Connector
    from .proxy import Proxy

    Step = Union[WaitFor, Blocking]

__all__ = ["READ", "WRITE", "Blocking", "WaitFor", "open_steps"]

_IN_PROGRESS = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, errno.EAGAIN})


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
    host, port = connector.host, connector.port
    if proxy is None:
        addresses = yield from _resolve(host, port, deadline, pooled)
        log.debug("connecting to %s", host_port(host, port))
        sock: socket.socket = yield from _connect(addresses, host, port)
    elif pooled and not (proxy.scheme == "https" and connector.is_secure):
        sock = yield from _tunnel(connector, proxy, context, deadline)
    else:
        # TLS inside TLS (wss:// through an https:// proxy) is opened by the
        # blocking path, bounded by the deadline itself.
        if not pooled:
            return connector.open(deadline)
        opened: Opened = yield Blocking(lambda: connector.open(deadline), None)
        return opened
    proxy_url = None if proxy is None else proxy.url
    if connector.is_secure:
        assert context is not None  # settings() gives one for wss://
        if connector.on_tls is not None:
            connector.on_tls()
        sock = yield from _handshake(sock, context, host, deadline)
    elif type(sock) is socket.socket:
        return Opened(sock, proxy_url)
    from .tls import opened as describe  # loaded by _handshake already

    return describe(sock, proxy_url)


def _resolve(
    host: str, port: int, deadline: Deadline, pooled: bool, family: int = 0
) -> Generator[Blocking, Any, list[Any]]:
    """The addresses of ``host``: at once for an IP address, else by a :class:`Blocking` step."""
    if not pooled or parse_ip_literal(host) is not None:
        return resolve(host, port, deadline, family)
    no_deadline = Deadline(None)
    addresses: list[Any] = yield Blocking(
        lambda: resolve(host, port, no_deadline, family), f"resolving host '{host}'"
    )
    return addresses


def _tunnel(
    connector: Connector, proxy: Proxy, context: ssl.SSLContext | None, deadline: Deadline
) -> Generator[Step, Any, socket.socket]:
    """Connect to ``proxy`` (with TLS for ``https://``) and have it open a tunnel.

    The steps of ``transport._open_tunnel``, with the same messages.
    """
    from .tunnel import negotiate_steps

    host, port = connector.host, connector.port
    log.debug("connecting to %s through %s", host_port(host, port), proxy.url)
    target = host
    if not proxy.resolves_remotely and parse_ip_literal(host) is None:
        # socks5:// and socks4:// carry an address; SOCKS4 knows only IPv4.
        family = socket.AF_INET if proxy.scheme == "socks4" else 0
        found = yield from _resolve(host, port, deadline, True, family)
        target = found[0][4][0]
    addresses = yield from _resolve(proxy.host, proxy.port, deadline, True)
    sock = yield from _connect(addresses, proxy.host, proxy.port, peer="proxy ")
    if proxy.scheme == "https":
        assert context is not None  # settings() gives one for an https:// proxy
        sock = yield from _handshake(sock, context, proxy.host, deadline)
    try:
        yield from negotiate_steps(sock, proxy, target, port, connector.user_agent)
    except BaseException:
        sock.close()  # a refusal, or the driver gave up
        raise
    return sock


def _connect(
    addresses: list[Any], host: str, port: int, peer: str = ""
) -> Generator[WaitFor, None, socket.socket]:
    """Connect to the first address that accepts, as ``open_tcp`` does."""
    where = peer + host_port(host, port)
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
