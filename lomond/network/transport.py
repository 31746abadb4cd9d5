"""Opening the connection: DNS, TCP, proxy and TLS, under one deadline.

:func:`open_connection` is the entry point: it resolves and connects here, has the
proxy open a tunnel (:mod:`lomond.network.tunnel`) and runs the TLS handshakes
(:mod:`lomond.network.tls`). Every failure is raised as :class:`~lomond.errors.ConnectFail`
with a sentence that says what failed, for ``ConnectFail.reason``, and the socket is
closed on every failure path.
"""

from __future__ import annotations

import socket
import threading

from .._logging import log
from ..errors import ConnectFail
from ..protocol.url import host_port
from .deadline import Deadline
from .proxy import Proxy, parse_ip_literal
from .timeouts import socket_timeout, timed_out

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    import ssl
    from typing import Any, Callable, List, Tuple

    from .sockets import SocketLike

    #: ``getaddrinfo`` results: ``(family, type, proto, canonname, sockaddr)``.
    AddressList = List[Tuple[Any, Any, int, str, Any]]

# lomond.network.tls (and with it the ssl module) and lomond.network.tunnel are imported
# where they are needed: a plain ws:// connection without a proxy never loads them.


# -- DNS and TCP -------------------------------------------------------------------


def resolve(host: str, port: int, deadline: Deadline, family: int = 0) -> AddressList:
    """Return the addresses of ``host`` (``getaddrinfo``), before ``deadline``.

    IP literals are converted at once. A name is looked up in a helper thread when
    there is a deadline, because ``getaddrinfo`` itself cannot be interrupted: a
    slow resolver must not stretch ``connect_timeout``.

    Raises:
        ConnectFail: The name does not resolve, or the deadline passed first.
    """
    # An IP literal is converted at once; only a name needs the resolver.
    flags = socket.AI_NUMERICHOST if parse_ip_literal(host) is not None else 0
    results: list[AddressList] = []

    def lookup() -> None:
        try:
            results.append(socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, flags))
        except (OSError, UnicodeError):
            results.append([])

    remaining = deadline.remaining()
    if remaining is None or flags:
        lookup()
    else:
        thread = threading.Thread(target=lookup, name=f"lomond-resolve-{host}", daemon=True)
        thread.start()
        thread.join(remaining)
        if not results:
            raise timed_out(deadline, f"resolving host '{host}'")
    if not results[0]:
        raise ConnectFail(f"could not resolve host '{host}'")
    return results[0]


def open_tcp(host: str, port: int, deadline: Deadline, peer: str = "") -> socket.socket:
    """Connect to ``host:port``, trying each address DNS gives, until ``deadline``.

    ``peer`` names what is connected to in messages (``"proxy "``).

    Raises:
        ConnectFail: DNS, refusal, unreachable network or timeout, as a sentence.
    """
    addresses = resolve(host, port, deadline)
    last_error: OSError | None = None
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(socket_timeout(deadline))
            sock.connect(address)
        except OSError as error:
            sock.close()
            last_error = error
            if isinstance(error, socket.timeout):
                break
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    where = peer + host_port(host, port)
    if isinstance(last_error, socket.timeout):
        raise timed_out(deadline, f"connecting to {where}")
    if isinstance(last_error, ConnectionRefusedError):
        raise ConnectFail(f"connection refused by {where}")
    raise ConnectFail(f"could not connect to {where}: {last_error}")


# -- the whole way -----------------------------------------------------------------


def open_connection(
    host: str,
    port: int,
    *,
    context: ssl.SSLContext | None,
    deadline: Deadline,
    proxy: Proxy | None = None,
    proxy_context: ssl.SSLContext | None = None,
    user_agent: str | None = None,
    on_tls: Callable[[], None] | None = None,
) -> SocketLike:
    """Open a connection to ``host:port``, through a proxy and with TLS if asked.

    Every step (DNS, TCP, the proxy's tunnel, TLS) runs before ``deadline``.

    Args:
        host: The server's host name or IP address (IPv6 without brackets).
        port: The server's port.
        context: The TLS context for the server (``wss://``), or ``None``.
        deadline: When to give up; covers DNS, TCP, the proxy and TLS.
        proxy: The proxy to go through, or ``None``.
        proxy_context: The TLS context for an ``https://`` proxy (default:
            :func:`make_ssl_context`).
        user_agent: Sent to an HTTP proxy with CONNECT.
        on_tls: Called before the TLS handshake with the server.

    Raises:
        ConnectFail: With a readable reason. Nothing is left open.
    """
    if proxy is None:
        log.debug("connecting to %s", host_port(host, port))
        sock = open_tcp(host, port, deadline)
    else:
        sock = _open_tunnel(host, port, deadline, proxy, proxy_context, user_agent)
    if context is None:
        return sock
    if on_tls is not None:
        on_tls()
    from .tls import is_ssl_socket, wrap_tls, wrap_tls_in_tls

    if is_ssl_socket(sock):
        return wrap_tls_in_tls(sock, context, host, deadline)  # type: ignore[arg-type]
    return wrap_tls(sock, context, host, deadline)


def _open_tunnel(
    host: str,
    port: int,
    deadline: Deadline,
    proxy: Proxy,
    proxy_context: ssl.SSLContext | None,
    user_agent: str | None,
) -> socket.socket:
    """Connect to ``proxy`` and have it open a tunnel to ``host:port``."""
    log.debug("connecting to %s through %s", host_port(host, port), proxy.url)
    target = host
    if not proxy.resolves_remotely and parse_ip_literal(host) is None:
        # socks5:// and socks4:// carry an address; SOCKS4 knows only IPv4.
        family = socket.AF_INET if proxy.scheme == "socks4" else 0
        target = resolve(host, port, deadline, family)[0][4][0]
    sock = open_tcp(proxy.host, proxy.port, deadline, peer="proxy ")
    if proxy.scheme == "https":
        from .tls import make_ssl_context, wrap_tls

        sock = wrap_tls(sock, proxy_context or make_ssl_context(), proxy.host, deadline)
    from .tunnel import negotiate

    try:
        negotiate(sock, proxy, target, port, deadline, user_agent)
    except BaseException:
        sock.close()
        raise
    return sock
