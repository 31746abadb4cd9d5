"""WebSocket URLs (RFC 6455 §3): what to connect to and what to ask for."""

from __future__ import annotations

import base64
from urllib.parse import quote, unquote, urlsplit

#: The port of each scheme lomond connects with, when a URL gives none.
DEFAULT_PORTS = {
    "ws": 80,
    "wss": 443,
    "http": 80,
    "https": 443,
    "socks5": 1080,
    "socks5h": 1080,
    "socks4": 1080,
    "socks4a": 1080,
}
#: The schemes of WebSocket URLs.
WEBSOCKET_SCHEMES = ("ws", "wss")
# RFC 3986 §3.3: characters allowed in a path (besides unreserved ones) stay as they are.
_PATH_SAFE = "/:@!$&'()*+,;=%~"
_QUERY_SAFE = _PATH_SAFE + "?"


class Target:
    """A parsed ``ws://`` or ``wss://`` URL."""

    __slots__ = ("scheme", "host", "port", "resource", "authorization", "url")

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        resource: str,
        authorization: str | None,
        url: str,
    ) -> None:
        #: ``"ws"`` or ``"wss"``.
        self.scheme = scheme
        #: The host in ASCII (IDNA for internationalised names), IPv6 without
        #: brackets.
        self.host = host
        #: The port, defaulting to 80 or 443.
        self.port = port
        #: The percent-encoded path and query, for the request line.
        self.resource = resource
        #: ``Basic ...`` from ``user:password@`` in the URL, or ``None``.
        self.authorization = authorization
        #: The URL without credentials or fragment: the one shown in events and logs.
        self.url = url

    def __repr__(self) -> str:
        return f"Target({self.url!r})"

    @property
    def host_header(self) -> str:
        """The ``Host`` header value: port only when not the default, IPv6 bracketed."""
        if self.port == DEFAULT_PORTS[self.scheme]:
            return bracketed(self.host)
        return host_port(self.host, self.port)


def bracketed(host: str) -> str:
    """``host`` as it stands in a URL or header: an IPv6 literal in brackets."""
    return f"[{host}]" if ":" in host else host


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 literal in brackets (``[::1]:8080``)."""
    return f"{bracketed(host)}:{port}"


def basic_credentials(username: str, password: str | None) -> str:
    """A ``Basic`` credentials value for a header (RFC 7617, UTF-8)."""
    pair = f"{username}:{password or ''}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def parse_url(url: str) -> Target:
    """Parse a WebSocket URL.

    The scheme is case-insensitive; the fragment is dropped; non-ASCII in the path
    and query is percent-encoded; credentials become an ``Authorization`` value and
    are removed from :attr:`Target.url`.

    Raises:
        TypeError: ``url`` is not a ``str``.
        ValueError: The scheme is not ``ws``/``wss``, the port is invalid, or there
            is no (valid) host.
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in WEBSOCKET_SCHEMES:
        raise ValueError(f"url must start with ws:// or wss://, not {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"url {url!r} has an invalid port") from None
    if not parts.hostname:
        raise ValueError(f"url {url!r} has no host")
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    query = quote(parts.query, safe=_QUERY_SAFE)
    authorization = None
    if parts.username is not None:
        authorization = basic_credentials(unquote(parts.username), unquote(parts.password or ""))
    netloc = parts.netloc.rpartition("@")[2]
    return Target(
        scheme=scheme,
        host=_ascii_host(parts.hostname),
        port=port or DEFAULT_PORTS[scheme],
        resource=f"{path}?{query}" if parts.query else path,
        authorization=authorization,
        url=parts._replace(scheme=scheme, netloc=netloc, fragment="").geturl(),
    )


def _ascii_host(host: str) -> str:
    """The host in ASCII: an internationalised name becomes IDNA (``xn--``) labels."""
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"url host {host!r} is not a valid host name") from None
