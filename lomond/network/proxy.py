"""Proxies: which one to use, and the bytes of HTTP CONNECT.

Choosing is pure: :func:`select_proxy` takes the ``proxies`` argument, the
environment as a mapping and the target, and returns a :class:`Proxy` or ``None``
(``no_proxy`` rules: :func:`bypasses_proxy`).

HTTP CONNECT is a pair of pure functions, one that builds the request and one that
checks the reply; the SOCKS handshakes are in :mod:`lomond.network.socks`, and
:func:`lomond.network.tunnel.negotiate` drives them all over a connected socket. Every
failure is a :class:`~lomond.errors.ConnectFail` whose message says what went wrong,
and never contains the proxy's credentials.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from ..errors import ConnectFail
from ..protocol.url import DEFAULT_PORTS, basic_credentials, host_port
from ..response import Response

#: The proxy URL schemes lomond speaks (their default ports are in ``DEFAULT_PORTS``).
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h", "socks4", "socks4a")
#: Schemes whose proxy resolves the target's host name (lomond sends the name).
REMOTE_DNS_SCHEMES = frozenset({"http", "https", "socks5h", "socks4a"})
#: The longest reply header lomond reads from an HTTP proxy.
MAX_REPLY_SIZE = 64 * 1024

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    # ipaddress is imported where it is used: most connections never need it.
    import ipaddress
    from typing import Mapping, Union

    IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
    IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class Proxy:
    """A proxy server, parsed from a URL by :func:`parse_proxy_url`.

    Its ``repr`` and :attr:`url` leave the credentials out. Proxies are equal when
    all their attributes are, and can be dictionary keys.

    Attributes:
        scheme: ``http``, ``https``, ``socks5``, ``socks5h``, ``socks4`` or ``socks4a``.
        host: The host name or IP address (IPv6 without brackets).
        port: The port.
        username: The percent-decoded user name, or ``None``.
        password: The percent-decoded password, or ``None``.
    """

    __slots__ = ("scheme", "host", "port", "username", "password")

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.username = username
        self.password = password

    def _fields(self) -> tuple[str, str, int, str | None, str | None]:
        return (self.scheme, self.host, self.port, self.username, self.password)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Proxy):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"Proxy({self.url!r})"

    @property
    def address(self) -> str:
        """``host:port``, an IPv6 host in brackets."""
        return host_port(self.host, self.port)

    @property
    def url(self) -> str:
        """The proxy's URL *without* credentials: safe to show, log and trace."""
        return f"{self.scheme}://{self.address}"

    @property
    def resolves_remotely(self) -> bool:
        """Whether the proxy resolves the target's host name (else lomond does)."""
        return self.scheme in REMOTE_DNS_SCHEMES

    @property
    def description(self) -> str:
        """How messages name the proxy, e.g. ``"SOCKS5 proxy 10.0.0.5:1080"``."""
        protocol = {"https": "HTTPS", "socks5h": "SOCKS5", "socks4a": "SOCKS4"}.get(
            self.scheme, self.scheme.upper()
        )
        return f"{protocol} proxy {self.address}"


def parse_proxy_url(url: str) -> Proxy:
    """Parse a proxy URL such as ``http://user:pass@proxy:3128`` or ``socks5h://proxy``.

    A URL without a scheme (``proxy.example:3128``, common in environment variables)
    is an HTTP proxy. Credentials are percent-decoded. The port defaults to 80 for
    ``http``, 443 for ``https`` and 1080 for SOCKS.

    Raises:
        ValueError: The scheme is not supported, or there is no host, or the port
            is invalid. The message never repeats the credentials.
    """
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in PROXY_SCHEMES:
        supported = ", ".join(PROXY_SCHEMES)
        raise ValueError(f"proxy scheme {scheme!r} is not supported (use {supported})")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("proxy URL has an invalid port") from None
    if not parts.hostname:
        raise ValueError("proxy URL has no host")
    username = None if parts.username is None else unquote(parts.username)
    password = None if parts.password is None else unquote(parts.password)
    return Proxy(scheme, parts.hostname, port or DEFAULT_PORTS[scheme], username, password)


# -- choosing a proxy -------------------------------------------------------------


def proxy_names(scheme: str) -> tuple[str, ...]:
    """The settings consulted for a ``ws``/``wss`` target, most specific first.

    The same names serve as keys of the ``proxies`` argument and, with ``_proxy``
    appended, as environment variables.
    """
    if scheme == "wss":
        return ("wss", "https", "all")
    return ("ws", "http", "all")


def _environment_value(environ: Mapping[str, str], name: str) -> str | None:
    """The first non-empty variable called ``name`` in any case: lower, UPPER, then mixed."""
    candidates = [name, name.upper()]
    candidates += [key for key in environ if key.lower() == name and key not in candidates]
    for key in candidates:
        if key == "HTTP_PROXY" and "REQUEST_METHOD" in environ:
            # In a CGI program, HTTP_PROXY comes from the request's "Proxy:" header
            # ("httpoxy"): a client must not be able to pick our proxy.
            continue
        value = environ.get(key, "").strip()
        if value:
            return value
    return None


def select_proxy(
    scheme: str,
    host: str,
    port: int,
    proxies: Mapping[str, str | None] | None,
    environ: Mapping[str, str],
) -> Proxy | None:
    """Choose the proxy for a connection to ``host:port`` (``scheme``: ``ws``/``wss``).

    With ``proxies=None`` the environment decides: for ``wss`` the first of
    ``wss_proxy``, ``https_proxy``, ``all_proxy`` that is set (for ``ws``:
    ``ws_proxy``, ``http_proxy``, ``all_proxy``), each looked up in lower case, then
    upper case, then any case; ``no_proxy`` (any case) lists hosts reached directly.
    Given a mapping, only it counts, with the same names as keys (``"wss"``,
    ``"https"``, ``"all"`` / ``"ws"``, ``"http"``, ``"all"``) and an optional
    ``"no_proxy"``. An empty mapping means no proxy.

    Raises:
        ValueError: The chosen setting is not a valid proxy URL; the message names it.
    """
    if proxies is None:
        settings: dict[str, str | None] = {
            name: _environment_value(environ, f"{name}_proxy") for name in proxy_names(scheme)
        }
        settings["no_proxy"] = _environment_value(environ, "no_proxy")
        where = "environment variable {}_proxy"
    else:
        settings = dict(proxies)
        where = "proxies[{!r}]"
    for name in proxy_names(scheme):
        value = settings.get(name)
        if not value:
            continue
        no_proxy = settings.get("no_proxy")
        if no_proxy and bypasses_proxy(host, port, no_proxy):
            return None
        if not isinstance(value, str):
            raise ValueError(f"{where.format(name)}: a proxy URL must be a str")
        try:
            return parse_proxy_url(value)
        except ValueError as error:
            raise ValueError(f"{where.format(name)}: {error}") from None
    return None


def parse_ip_literal(text: str) -> IPAddress | None:
    """The IP address ``text`` spells (IPv6 without brackets), or ``None`` for a name."""
    import ipaddress

    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _parse_no_proxy_entry(entry: str) -> tuple[IPNetwork | str, int | None]:
    """Split one ``no_proxy`` entry into (network or domain, port or ``None``)."""
    import ipaddress

    port: int | None = None
    if entry.startswith("["):
        # [IPv6] or [IPv6]:port
        address, _, rest = entry[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        entry = address
    else:
        try:
            return ipaddress.ip_network(entry, strict=False), None
        except ValueError:
            pass
        name, colon, rest = entry.rpartition(":")
        if colon and rest.isdigit() and ":" not in name:
            entry, port = name, int(rest)
    try:
        return ipaddress.ip_network(entry, strict=False), port
    except ValueError:
        pass
    # A domain: ".example.com", "*.example.com" and "example.com" all mean the
    # domain itself and every name under it (as in curl and urllib).
    return entry.lstrip("*").lstrip(".").rstrip(".").lower(), port


def bypasses_proxy(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``no_proxy`` says to reach ``host:port`` directly.

    ``no_proxy`` is a list separated by commas or white space of:

    * ``*``: every host;
    * a domain (``example.com``, ``.example.com`` or ``*.example.com``): that host and
      every host under it, case-insensitively;
    * an IP address (``10.1.2.3``, ``::1``, ``[::1]``) or a CIDR range
      (``10.0.0.0/8``, ``fd00::/8``), matched against IP literal hosts only (lomond
      does not resolve names to decide);
    * any of those with ``:port`` (``example.com:8080``, ``[::1]:8080``), which then
      only matches that port.
    """
    host = host.strip("[]").rstrip(".").lower()
    address = parse_ip_literal(host)
    for entry in no_proxy.replace(",", " ").split():
        if entry == "*":
            return True
        target, entry_port = _parse_no_proxy_entry(entry)
        if entry_port is not None and entry_port != port:
            continue
        if isinstance(target, str):
            if address is None and target and (host == target or host.endswith("." + target)):
                return True
        elif address is not None and address.version == target.version and address in target:
            return True
    return False


# -- HTTP CONNECT (RFC 9110 §9.3.6) ---------------------------------------------


def build_connect_request(
    host: str, port: int, proxy: Proxy, user_agent: str | None = None
) -> bytes:
    """Return the CONNECT request for a tunnel to ``host:port`` (IPv6 in brackets).

    ``Proxy-Authorization: Basic`` is added when the proxy URL has a user name.
    """
    authority = host_port(host, port)
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if user_agent:
        lines.append(f"User-Agent: {user_agent}")
    if proxy.username is not None:
        lines.append("Proxy-Authorization: " + basic_credentials(proxy.username, proxy.password))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def find_reply_end(data: bytes | bytearray, limit: int = MAX_REPLY_SIZE) -> int | None:
    """The length of the reply header at the start of ``data``, or ``None`` if incomplete.

    Raises:
        ConnectFail: The header is longer than ``limit`` bytes.
    """
    end = data.find(b"\r\n\r\n", 0, limit)
    if end != -1:
        return end + 4
    if len(data) >= limit:
        raise ConnectFail(f"the proxy's reply to CONNECT is longer than {limit // 1024} KiB")
    return None


def check_connect_reply(header: bytes) -> Response:
    """Check the proxy's reply header to CONNECT; return it when the tunnel is open.

    Raises:
        ConnectFail: The reply is not HTTP, or its status is not 2xx
            (``"proxy refused CONNECT: 407 Proxy Authentication Required"``).
    """
    response = Response(header)
    code = response.status_code
    if not response.http_ver.startswith("HTTP/") or code is None:
        first_line = header.split(b"\r\n", 1)[0][:80]
        raise ConnectFail(f"proxy sent an invalid reply to CONNECT: {first_line!r}")
    if not 200 <= code < 300:
        phrase = response.status
        if not phrase:
            from http import HTTPStatus

            try:
                phrase = HTTPStatus(code).phrase
            except ValueError:
                phrase = ""
        raise ConnectFail(f"proxy refused CONNECT: {code} {phrase}".rstrip())
    return response


def check_proxies(proxies: dict[str, str] | None) -> dict[str, str] | None:
    """Check ``WebSocket(proxies=...)`` when it is given; return it unchanged.

    Raises:
        TypeError: ``proxies`` is not a dict, or a value is not a string.
        ValueError: A value is not a proxy URL lomond can use.
    """
    if proxies is None:
        return None
    if not isinstance(proxies, dict):
        raise TypeError(f"proxies must be a dict or None, not {type(proxies).__name__}")
    for name, value in proxies.items():
        if value is None or name == "no_proxy":
            continue
        if not isinstance(value, str):
            raise TypeError(f"proxies[{name!r}] must be a str, not {type(value).__name__}")
        if value.strip():
            try:
                parse_proxy_url(value)
            except ValueError as error:
                raise ValueError(f"proxies[{name!r}]: {error}") from None
    return proxies
