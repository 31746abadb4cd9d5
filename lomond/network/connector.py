"""How to reach one server: its address, the proxy settings, TLS. The session's way out.

A :class:`Connector` is made by the façade from a
:class:`~lomond.websocket.WebSocket`'s settings, for one connection; the session
calls :meth:`Connector.open` with its connect deadline and gets a connected socket,
or :class:`~lomond.errors.ConnectFail` with the reason.
"""

from __future__ import annotations

import os
import socket

from ..errors import ConnectFail
from .deadline import Deadline
from .proxy import Proxy, select_proxy
from .sockets import Opened
from .transport import open_connection

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    import ssl
    from typing import Callable, Mapping


class Connector:
    """Opens connections to ``host:port``, through a proxy and with TLS as configured.

    Args:
        scheme: ``"ws"`` or ``"wss"`` (TLS).
        host: The server's host name or IP address (IPv6 without brackets).
        port: The server's port.
        proxies: The ``proxies`` setting: ``None`` for the environment, ``{}`` for
            none, or ``{"http": URL, "https": URL}``.
        tls_context: Gives the TLS context when one is needed (``wss://``, or an
            ``https://`` proxy); called at most once per connection.
        user_agent: Sent to an HTTP proxy with ``CONNECT``.
        on_tls: Called before the TLS handshake with the server (for tracing).
        environ: Where proxy settings are read from, at each connection.
    """

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        *,
        proxies: dict[str, str] | None,
        tls_context: Callable[[], ssl.SSLContext],
        user_agent: str | None = None,
        on_tls: Callable[[], None] | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.proxies = proxies
        self._tls_context = tls_context
        self.user_agent = user_agent
        #: Called before the TLS handshake with the server (for tracing), or ``None``.
        self.on_tls = on_tls
        self._environ = environ

    @property
    def is_secure(self) -> bool:
        return self.scheme == "wss"

    def proxy(self) -> Proxy | None:
        """The proxy to go through, from the settings or the environment (read now).

        Raises:
            ValueError: The chosen proxy setting is not a valid proxy URL.
        """
        return select_proxy(self.scheme, self.host, self.port, self.proxies, self._environ)

    def settings(self) -> tuple[Proxy | None, ssl.SSLContext | None]:
        """The proxy to go through and the TLS context, for the next connection.

        The context is ``None`` unless TLS is used (``wss://``, or an ``https://``
        proxy).

        Raises:
            ConnectFail: The proxy setting is invalid, or the TLS settings do not load.
        """
        try:
            proxy = self.proxy()
        except ValueError as error:
            raise ConnectFail(f"invalid proxy setting: {error}") from None
        context = None
        if self.is_secure or (proxy is not None and proxy.scheme == "https"):
            try:
                context = self._tls_context()
            except OSError as error:  # ssl.SSLError included
                # e.g. an ssl_cafile that does not exist or holds no certificate
                raise ConnectFail(f"could not load the TLS settings: {error}") from None
        return proxy, context

    def open(self, deadline: Deadline) -> Opened:
        """Open a connection before ``deadline``.

        Returns:
            The connected socket, the URL of the proxy used (without credentials),
            and how to use the socket without blocking.

        Raises:
            ConnectFail: With a readable reason; nothing is left open.
        """
        proxy, context = self.settings()
        sock = open_connection(
            self.host,
            self.port,
            context=context if self.is_secure else None,
            deadline=deadline,
            proxy=proxy,
            proxy_context=context,
            user_agent=self.user_agent,
            on_tls=self.on_tls,
        )
        proxy_url = None if proxy is None else proxy.url
        if type(sock) is socket.socket:
            return Opened(sock, proxy_url)
        from .tls import opened  # TLS was used: lomond.network.tls is loaded already

        return opened(sock, proxy_url)
