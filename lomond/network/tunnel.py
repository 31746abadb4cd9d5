"""Asking a connected proxy for a tunnel: :func:`negotiate_steps` and :func:`negotiate`.

The bytes of each handshake come from pure functions: HTTP CONNECT in
:mod:`lomond.network.proxy`, SOCKS5 and SOCKS4/4a in :mod:`lomond.network.socks`.
:func:`negotiate_steps` sends and reads them on a non-blocking socket, yielding a
:class:`~lomond.network.steps.WaitFor` whenever it would block: the session's loop
drives it beside its other connections, and :func:`negotiate` drives it in place
for the blocking path, so both say the same. Every failure is a
:class:`~lomond.errors.ConnectFail` whose message says what went wrong, and never
contains the proxy's credentials.
"""

from __future__ import annotations

import socket
import sys

from ..errors import ConnectFail
from ..protocol.url import host_port
from .deadline import Deadline
from .proxy import Proxy, build_connect_request, check_connect_reply, find_reply_end
from .socks import (
    SOCKS5_USER_PASSWORD,
    socks4_check_reply,
    socks4_connect_request,
    socks5_auth_request,
    socks5_bound_address_size,
    socks5_check_auth_reply,
    socks5_check_method,
    socks5_check_reply,
    socks5_connect_request,
    socks5_greeting,
)
from .steps import READ, WRITE, WaitFor, wait_blocking

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Generator

    #: What the exchanges yield: a wait for the socket, until the tunnel is open.
    Steps = Generator[WaitFor, None, None]


class _ProxyHungUp(ConnectFail):
    """The proxy closed the connection in the middle of a handshake."""


def _wait_mask(error: OSError, mask: int) -> int | None:
    """What to wait for before trying again, if ``error`` says the call would block."""
    if isinstance(error, (BlockingIOError, InterruptedError)):
        return mask
    ssl = sys.modules.get("ssl")  # loaded when the socket is TLS (an https:// proxy)
    if ssl is not None:
        if isinstance(error, ssl.SSLWantReadError):
            return READ
        if isinstance(error, ssl.SSLWantWriteError):
            return WRITE
    return None


class _ProxyChannel:
    """Reads and writes to a proxy on a non-blocking socket, yielding each wait."""

    def __init__(self, sock: socket.socket, proxy: Proxy) -> None:
        self.sock = sock
        self.proxy = proxy

    def _wait(self, error: OSError, mask: int, step: str) -> WaitFor:
        """The wait to yield after ``error``, or the failure if it is not a wait."""
        wait = _wait_mask(error, mask)
        if wait is None:
            proxy = self.proxy.description
            raise ConnectFail(f"lost the connection to {proxy} ({step}): {error}") from None
        return WaitFor(self.sock, wait, f"waiting for {self.proxy.description} ({step})")

    def send(self, data: bytes, step: str) -> Steps:
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view) :]
            except OSError as error:
                yield self._wait(error, WRITE, step)

    def recv(self, size: int, step: str) -> Generator[WaitFor, None, bytes]:
        """Read up to ``size`` bytes (at least one).

        Raises:
            ConnectFail: Socket error, or the proxy closed the connection.
        """
        while True:
            try:
                data = self.sock.recv(size)
            except OSError as error:
                yield self._wait(error, READ, step)
                continue
            if not data:
                raise _ProxyHungUp(f"{self.proxy.description} closed the connection ({step})")
            return data

    def recv_exact(self, size: int, step: str) -> Generator[WaitFor, None, bytes]:
        data = b""
        while len(data) < size:
            data += yield from self.recv(size - len(data), step)
        return data


def negotiate(
    sock: socket.socket,
    proxy: Proxy,
    host: str,
    port: int,
    deadline: Deadline,
    user_agent: str | None = None,
) -> None:
    """Ask the proxy connected on ``sock`` for a tunnel to ``host:port``, blocking.

    The exchanges of :func:`negotiate_steps`, each wait bounded by what is left of
    ``deadline``. On return, ``sock`` carries the tunnel (with its timeout as it
    was). The caller closes ``sock`` when this raises.

    Raises:
        ConnectFail: The proxy refused, failed, or took longer than ``deadline``.
    """
    timeout = sock.gettimeout()
    sock.setblocking(False)
    wait_blocking(negotiate_steps(sock, proxy, host, port, user_agent), deadline)
    sock.settimeout(timeout)


def negotiate_steps(
    sock: socket.socket,
    proxy: Proxy,
    host: str,
    port: int,
    user_agent: str | None = None,
) -> Steps:
    """Ask the proxy connected on the non-blocking ``sock`` for a tunnel to ``host:port``.

    ``host`` is sent as it is: the caller resolves it first when the proxy does not
    (:attr:`Proxy.resolves_remotely`). Yields each wait for the socket; the caller
    bounds them by its deadline. Once it returns, ``sock`` carries the tunnel. The
    caller closes ``sock`` when this raises.

    Raises:
        ConnectFail: The proxy refused or failed.
    """
    channel = _ProxyChannel(sock, proxy)
    target = host_port(host, port)
    if proxy.scheme in ("http", "https"):
        yield from _http_connect(channel, host, port, user_agent)
    elif proxy.scheme in ("socks5", "socks5h"):
        yield from _socks5_connect(channel, host, port, target)
    else:
        yield from channel.send(socks4_connect_request(host, port, proxy), "SOCKS4 request")
        # The status is in the first 2 bytes; read them first, as a proxy may hang
        # up after a refusal without sending the rest.
        reply = yield from channel.recv_exact(2, "SOCKS4 reply")
        socks4_check_reply(reply, proxy, target)
        yield from channel.recv_exact(6, "SOCKS4 reply")


def _http_connect(channel: _ProxyChannel, host: str, port: int, user_agent: str | None) -> Steps:
    request = build_connect_request(host, port, channel.proxy, user_agent)
    yield from channel.send(request, "sending CONNECT")
    data = b""
    while True:
        data += yield from channel.recv(4096, "waiting for the reply to CONNECT")
        end = find_reply_end(data)
        if end is not None:
            break
    check_connect_reply(data[:end])
    if len(data) > end:
        # Nothing may come through the tunnel before the client speaks (neither a
        # WebSocket server nor a TLS server talks first): these bytes are garbage.
        raise ConnectFail("proxy sent unexpected data after its reply to CONNECT")


def _socks5_connect(channel: _ProxyChannel, host: str, port: int, target: str) -> Steps:
    proxy = channel.proxy
    yield from channel.send(socks5_greeting(proxy), "SOCKS5 greeting")
    method = socks5_check_method((yield from channel.recv_exact(2, "SOCKS5 greeting")), proxy)
    if method == SOCKS5_USER_PASSWORD:
        yield from channel.send(socks5_auth_request(proxy), "SOCKS5 authentication")
        try:
            reply = yield from channel.recv_exact(2, "SOCKS5 authentication")
        except _ProxyHungUp:
            # Many proxies hang up instead of answering a wrong password.
            raise ConnectFail(
                f"{proxy.description} closed the connection after authentication "
                "(wrong user name or password?)"
            ) from None
        socks5_check_auth_reply(reply, proxy)
    yield from channel.send(socks5_connect_request(host, port), "SOCKS5 request")
    reply = yield from channel.recv_exact(2, "SOCKS5 reply")
    socks5_check_reply(reply, proxy, target)
    size = socks5_bound_address_size((yield from channel.recv_exact(3, "SOCKS5 reply")), proxy)
    yield from channel.recv_exact(size, "SOCKS5 reply")
