"""Proxies: which one to use, and how to ask it for a tunnel.

Choosing is pure: :func:`select_proxy` takes the ``proxies`` argument, the
environment as a mapping and the target, and returns a :class:`Proxy` or ``None``
(``no_proxy`` rules: :func:`bypasses_proxy`).

Each handshake is a pair of pure functions per message, one that builds the bytes
to send and one that checks the reply (HTTP CONNECT, SOCKS5 with RFC 1929
authentication, SOCKS4 and SOCKS4a). :func:`negotiate` drives them over a
connected socket, under the connect deadline. Every failure is a
:class:`~lomond.errors.ConnectFail` whose message says what went wrong, and never
contains the proxy's credentials.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
from http import HTTPStatus
from typing import Mapping, NamedTuple, Union
from urllib.parse import unquote, urlsplit

from .deadline import Deadline
from .errors import ConnectFail
from .response import Response

#: The proxy URL schemes lomond speaks, and their default ports.
DEFAULT_PORTS = {
    "http": 80,
    "https": 443,
    "socks5": 1080,
    "socks5h": 1080,
    "socks4": 1080,
    "socks4a": 1080,
}
#: Schemes whose proxy resolves the target's host name (lomond sends the name).
REMOTE_DNS_SCHEMES = frozenset({"http", "https", "socks5h", "socks4a"})
#: The longest reply header lomond reads from an HTTP proxy.
MAX_REPLY_SIZE = 64 * 1024

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class Proxy(NamedTuple):
    """A proxy server, parsed from a URL by :func:`parse_proxy_url`.

    Its ``repr`` and :attr:`url` leave the credentials out.

    Attributes:
        scheme: ``http``, ``https``, ``socks5``, ``socks5h``, ``socks4`` or ``socks4a``.
        host: The host name or IP address (IPv6 without brackets).
        port: The port.
        username: The percent-decoded user name, or ``None``.
        password: The percent-decoded password, or ``None``.
    """

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

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


def host_port(host: str, port: int) -> str:
    """Return ``host:port``, with an IPv6 literal in brackets (``[::1]:8080``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
    if scheme not in DEFAULT_PORTS:
        supported = ", ".join(DEFAULT_PORTS)
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


def _ip_address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _parse_no_proxy_entry(entry: str) -> tuple[IPNetwork | str, int | None]:
    """Split one ``no_proxy`` entry into (network or domain, port or ``None``)."""
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
    address = _ip_address(host)
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


def basic_credentials(username: str, password: str | None) -> str:
    """Return a ``Basic`` credentials value (RFC 7617, UTF-8) for a header."""
    pair = f"{username}:{password or ''}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


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
            try:
                phrase = HTTPStatus(code).phrase
            except ValueError:
                phrase = ""
        raise ConnectFail(f"proxy refused CONNECT: {code} {phrase}".rstrip())
    return response


# -- SOCKS5 (RFC 1928, RFC 1929) ----------------------------------------------------

SOCKS5_NO_AUTH = 0x00
SOCKS5_USER_PASSWORD = 0x02
SOCKS5_NO_ACCEPTABLE_METHOD = 0xFF

#: RFC 1928 §6: the REP field of a reply.
SOCKS5_ERRORS = {
    0x01: "general SOCKS server failure",
    0x02: "connection not allowed by ruleset",
    0x03: "network unreachable",
    0x04: "host unreachable",
    0x05: "connection refused",
    0x06: "TTL expired",
    0x07: "command not supported",
    0x08: "address type not supported",
}


def _socks_field(value: str, what: str) -> bytes:
    data = value.encode("utf-8")
    if len(data) > 255:
        raise ConnectFail(f"the SOCKS5 {what} is longer than 255 bytes")
    return bytes([len(data)]) + data


def socks5_greeting(proxy: Proxy) -> bytes:
    """The method selection message: no authentication, plus user/password if configured."""
    methods = [SOCKS5_NO_AUTH]
    if proxy.username is not None:
        methods.append(SOCKS5_USER_PASSWORD)
    return bytes([5, len(methods)] + methods)


def socks5_check_method(reply: bytes, proxy: Proxy) -> int:
    """Check the 2-byte method selection reply; return the chosen method.

    Raises:
        ConnectFail: Not a SOCKS5 reply, or no offered method was acceptable.
    """
    if reply[0] != 5:
        raise ConnectFail(f"{proxy.description} did not answer as a SOCKS5 proxy")
    method = reply[1]
    offered = socks5_greeting(proxy)[2:]
    if method == SOCKS5_NO_ACCEPTABLE_METHOD or method not in offered:
        hint = "" if proxy.username is not None else " (it may need a user name and password)"
        raise ConnectFail(
            f"{proxy.description} accepted none of the offered authentication methods{hint}"
        )
    return method


def socks5_auth_request(proxy: Proxy) -> bytes:
    """RFC 1929 username/password request."""
    username = _socks_field(proxy.username or "", "user name")
    return b"\x01" + username + _socks_field(proxy.password or "", "password")


def socks5_check_auth_reply(reply: bytes, proxy: Proxy) -> None:
    """Check the 2-byte RFC 1929 reply (status 0 is success).

    Raises:
        ConnectFail: The proxy rejected the credentials.
    """
    if reply[1] != 0:
        raise ConnectFail(f"{proxy.description} rejected the user name or password")


def socks5_connect_request(host: str, port: int) -> bytes:
    """CONNECT to an IPv4/IPv6 literal, or to a domain name the proxy resolves."""
    address = _ip_address(host)
    if address is None:
        target = b"\x03" + _socks_field(host, "host name")
    elif address.version == 4:
        target = b"\x01" + address.packed
    else:
        target = b"\x04" + address.packed
    return b"\x05\x01\x00" + target + port.to_bytes(2, "big")


def socks5_check_reply(head: bytes, proxy: Proxy, target: str) -> None:
    """Check the first 2 bytes of a SOCKS5 reply (version, status).

    Raises:
        ConnectFail: The proxy refused, with the reason for the error code.
    """
    if head[0] != 5:
        raise ConnectFail(f"{proxy.description} did not answer as a SOCKS5 proxy")
    code = head[1]
    if code != 0:
        reason = SOCKS5_ERRORS.get(code, f"unknown error code 0x{code:02x}")
        raise ConnectFail(f"{proxy.description} could not connect to {target}: {reason}")


def socks5_bound_address_size(head: bytes, proxy: Proxy) -> int:
    """How many bytes of a successful reply follow its bytes 3 to 5 (``head``).

    ``head`` is the reserved byte, the address type and the address's first byte;
    the rest of the bound address and the port follow.

    Raises:
        ConnectFail: The address type is unknown.
    """
    address_type = head[1]
    if address_type == 1:
        return 4 - 1 + 2
    if address_type == 4:
        return 16 - 1 + 2
    if address_type == 3:
        return head[2] + 2
    raise ConnectFail(f"{proxy.description} sent a reply with unknown address type {address_type}")


# -- SOCKS4 and SOCKS4a ------------------------------------------------------------

#: The CD field of a SOCKS4 reply other than 90 (granted).
SOCKS4_ERRORS = {
    91: "request rejected or failed",
    92: "request rejected: the proxy could not reach identd on the client",
    93: "request rejected: identd reported a different user id",
}


def socks4_connect_request(host: str, port: int, proxy: Proxy) -> bytes:
    """CONNECT to an IPv4 literal (SOCKS4), or to a name the proxy resolves (SOCKS4a).

    The proxy URL's user name is sent as the user id.

    Raises:
        ConnectFail: ``host`` is an IPv6 address, which SOCKS4 cannot carry.
    """
    userid = (proxy.username or "").encode("utf-8") + b"\x00"
    address = _ip_address(host)
    if address is not None and address.version == 6:
        raise ConnectFail(
            f"{proxy.description} cannot reach IPv6 address {host} (SOCKS4 is IPv4 only)"
        )
    head = b"\x04\x01" + port.to_bytes(2, "big")
    if address is not None:
        return head + address.packed + userid
    # SOCKS4a: the address 0.0.0.x (x != 0) says a host name follows the user id.
    return head + b"\x00\x00\x00\x01" + userid + host.encode("idna") + b"\x00"


def socks4_check_reply(reply: bytes, proxy: Proxy, target: str) -> None:
    """Check the first 2 bytes of a SOCKS4 reply (version, status); 6 more follow.

    Raises:
        ConnectFail: The proxy refused, with the reason for the code.
    """
    # The version byte is 0; some proxies echo 4.
    if reply[0] not in (0, 4):
        raise ConnectFail(f"{proxy.description} did not answer as a SOCKS4 proxy")
    code = reply[1]
    if code != 90:
        reason = SOCKS4_ERRORS.get(code, f"unknown reply code {code}")
        raise ConnectFail(f"{proxy.description} could not connect to {target}: {reason}")


# -- driving a handshake over a socket ---------------------------------------------


class _ProxyHungUp(ConnectFail):
    """The proxy closed the connection in the middle of a handshake."""


class _ProxyChannel:
    """Blocking reads and writes to a proxy, each bounded by what is left of ``deadline``."""

    def __init__(self, sock: socket.socket, proxy: Proxy, deadline: Deadline) -> None:
        self.sock = sock
        self.proxy = proxy
        self.deadline = deadline

    def _settimeout(self) -> None:
        remaining = self.deadline.remaining()
        if remaining is not None and remaining <= 0:
            raise socket.timeout("deadline passed")
        self.sock.settimeout(remaining)

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
