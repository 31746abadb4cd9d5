"""SOCKS handshakes as bytes: SOCKS5 (RFC 1928, RFC 1929), SOCKS4 and SOCKS4a.

Each message is a pair of pure functions, one that builds the bytes to send and one
that checks the reply; :func:`lomond.network.tunnel.negotiate` drives them over a socket.
Every failure is a :class:`~lomond.errors.ConnectFail` whose message says what went
wrong, and never contains the proxy's credentials.
"""

from __future__ import annotations

from ..errors import ConnectFail
from .proxy import Proxy, parse_ip_literal

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
    address = parse_ip_literal(host)
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
    address = parse_ip_literal(host)
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
