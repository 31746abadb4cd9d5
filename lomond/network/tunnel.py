"""Asking a connected proxy for a tunnel: :func:`negotiate`.

The bytes of each handshake come from pure functions: HTTP CONNECT in
:mod:`lomond.network.proxy`, SOCKS5 and SOCKS4/4a in :mod:`lomond.network.socks`. This module sends
and reads them over the socket, each step bounded by what is left of the connect
deadline. Every failure is a :class:`~lomond.errors.ConnectFail` whose message says
what went wrong, and never contains the proxy's credentials.
"""

from __future__ import annotations

import socket

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
from .timeouts import socket_timeout


class _ProxyHungUp(ConnectFail):
    """The proxy closed the connection in the middle of a handshake."""


class _ProxyChannel:
    """Blocking reads and writes to a proxy, each bounded by what is left of ``deadline``."""

    def __init__(self, sock: socket.socket, proxy: Proxy, deadline: Deadline) -> None:
        self.sock = sock
        self.proxy = proxy
        self.deadline = deadline

    def _settimeout(self) -> None:
        self.sock.settimeout(socket_timeout(self.deadline))

    def _failure(self, error: OSError, step: str) -> ConnectFail:
        if isinstance(error, socket.timeout):
            seconds = self.deadline.seconds
            proxy = self.proxy.description
            return ConnectFail(f"timed out after {seconds:g}s waiting for {proxy} ({step})")
        return ConnectFail(f"lost the connection to {self.proxy.description} ({step}): {error}")

    def send(self, data: bytes, step: str) -> None:
        try:
            self._settimeout()
            self.sock.sendall(data)
        except OSError as error:
            raise self._failure(error, step) from None

    def recv(self, size: int, step: str) -> bytes:
        """Read up to ``size`` bytes (at least one).

        Raises:
            ConnectFail: Timeout, socket error, or the proxy closed the connection.
        """
        try:
            self._settimeout()
            data = self.sock.recv(size)
        except OSError as error:
            raise self._failure(error, step) from None
        if not data:
            raise _ProxyHungUp(f"{self.proxy.description} closed the connection ({step})")
        return data

    def recv_exact(self, size: int, step: str) -> bytes:
        data = b""
        while len(data) < size:
            data += self.recv(size - len(data), step)
        return data


def negotiate(
    sock: socket.socket,
    proxy: Proxy,
    host: str,
    port: int,
    deadline: Deadline,
    user_agent: str | None = None,
) -> None:
    """Ask the proxy connected on ``sock`` for a tunnel to ``host:port``.

    ``host`` is sent as it is: the caller resolves it first when the proxy does not
    (:attr:`Proxy.resolves_remotely`). On return, ``sock`` carries the tunnel. The
    caller closes ``sock`` when this raises.

    Raises:
        ConnectFail: The proxy refused, failed, or took longer than ``deadline``.
    """
    channel = _ProxyChannel(sock, proxy, deadline)
    target = host_port(host, port)
    if proxy.scheme in ("http", "https"):
        _http_connect(channel, host, port, user_agent)
    elif proxy.scheme in ("socks5", "socks5h"):
        _socks5_connect(channel, host, port, target)
    else:
        channel.send(socks4_connect_request(host, port, proxy), "SOCKS4 request")
        # The status is in the first 2 bytes; read them first, as a proxy may hang
        # up after a refusal without sending the rest.
        socks4_check_reply(channel.recv_exact(2, "SOCKS4 reply"), proxy, target)
        channel.recv_exact(6, "SOCKS4 reply")


def _http_connect(channel: _ProxyChannel, host: str, port: int, user_agent: str | None) -> None:
    request = build_connect_request(host, port, channel.proxy, user_agent)
    channel.send(request, "sending CONNECT")
    data = b""
    while True:
        data += channel.recv(4096, "waiting for the reply to CONNECT")
        end = find_reply_end(data)
        if end is not None:
            break
    check_connect_reply(data[:end])
    if len(data) > end:
        # Nothing may come through the tunnel before the client speaks (neither a
        # WebSocket server nor a TLS server talks first): these bytes are garbage.
        raise ConnectFail("proxy sent unexpected data after its reply to CONNECT")


def _socks5_connect(channel: _ProxyChannel, host: str, port: int, target: str) -> None:
    proxy = channel.proxy
    channel.send(socks5_greeting(proxy), "SOCKS5 greeting")
    method = socks5_check_method(channel.recv_exact(2, "SOCKS5 greeting"), proxy)
    if method == SOCKS5_USER_PASSWORD:
        channel.send(socks5_auth_request(proxy), "SOCKS5 authentication")
        try:
            reply = channel.recv_exact(2, "SOCKS5 authentication")
        except _ProxyHungUp:
            # Many proxies hang up instead of answering a wrong password.
            raise ConnectFail(
                f"{proxy.description} closed the connection after authentication "
                "(wrong user name or password?)"
            ) from None
        socks5_check_auth_reply(reply, proxy)
    channel.send(socks5_connect_request(host, port), "SOCKS5 request")
    socks5_check_reply(channel.recv_exact(2, "SOCKS5 reply"), proxy, target)
    size = socks5_bound_address_size(channel.recv_exact(3, "SOCKS5 reply"), proxy)
    channel.recv_exact(size, "SOCKS5 reply")
