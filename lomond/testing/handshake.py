"""The opening handshake in the server's role (RFC 6455 §4.2): the request, the answer.

Pure functions over bytes and header lists, shared by :class:`lomond.testing.Server`
and the ``lomond --demo`` echo server: the request head is parsed, checked, and
answered with ``101 Switching Protocols`` (choosing a subprotocol and accepting
permessage-deflate when asked to), or with an HTTP error.

permessage-deflate is accepted minimally: an offer that leaves the server free to
use a full window is answered with ``server_no_context_takeover;
client_no_context_takeover``, so that every message is compressed on its own in
both directions (RFC 7692 §7.1.1) and one fresh codec per message serves.
"""

from __future__ import annotations

from ..errors import HandshakeError
from ..protocol.deflate import EXTENSION_NAME
from ..protocol.handshake import accept_key, parse_extensions

TYPE_CHECKING = False  # typing is not imported at run time
if TYPE_CHECKING:
    from typing import Iterable, List, Mapping, Sequence, Tuple, Union

    Headers = List[Tuple[str, str]]
    #: Headers as a user gives them: a mapping or pairs of ``str``.
    HeadersArgument = Union[Mapping[str, str], Iterable[Tuple[str, str]]]

#: The largest request head the server reads.
MAX_REQUEST_SIZE = 16 * 1024
#: What the server answers a permessage-deflate offer with.
DEFLATE_RESPONSE = f"{EXTENSION_NAME}; server_no_context_takeover; client_no_context_takeover"

# Offer parameters the server can honour while compressing with a 32 KiB window.
_ACCEPTABLE_PARAMETERS = frozenset(
    {"client_max_window_bits", "client_no_context_takeover", "server_no_context_takeover"}
)


class BadRequest(Exception):
    """The opening handshake was not a WebSocket upgrade request."""


def parse_request(head: bytes) -> tuple[str, Headers]:
    """Return ``(resource, headers)`` from an HTTP upgrade request head.

    Header names are lower-cased.

    Raises:
        BadRequest: The request line or a header line is malformed.
    """
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0] != "GET" or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"not a GET request: {lines[0]!r}")
    headers: Headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise BadRequest(f"malformed header line {line!r}")
        headers.append((name.strip().lower(), value.strip()))
    return parts[1], headers


def header_value(headers: Headers, name: str) -> str:
    """The value of header ``name`` (lower case); repeated headers joined with ``", "``."""
    return ", ".join(value for key, value in headers if key == name)


def accepts_deflate(extensions_header: str) -> bool:
    """Whether the server accepts the client's permessage-deflate offer.

    Only an offer whose parameters leave the server free to use a full window is
    accepted; any other offer (or a malformed header) is declined, which
    RFC 7692 §5 always allows.
    """
    try:
        offers = parse_extensions([extensions_header])
    except HandshakeError:
        return False
    for name, parameters in offers:
        if name == EXTENSION_NAME:
            return all(key in _ACCEPTABLE_PARAMETERS for key, _ in parameters)
    return False


def choose_subprotocol(headers: Headers, supported: Sequence[str]) -> str | None:
    """The first of ``supported`` that the client offers, or ``None``."""
    offered = {
        value.strip() for value in header_value(headers, "sec-websocket-protocol").split(",")
    }
    return next((protocol for protocol in supported if protocol in offered), None)


def upgrade_response(
    headers: Headers, *, subprotocols: Sequence[str] = (), compress: bool = True
) -> tuple[bytes, bool, str | None]:
    """Return the ``101`` answer to an upgrade request.

    Args:
        headers: The request's headers, as :func:`parse_request` returns them.
        subprotocols: The subprotocols the server speaks, preferred first.
        compress: Whether to accept a permessage-deflate offer.

    Returns:
        ``(response bytes, whether deflate is on, the chosen subprotocol or None)``.

    Raises:
        BadRequest: The request is not a version 13 WebSocket upgrade.
    """
    if header_value(headers, "upgrade").lower() != "websocket":
        raise BadRequest("Upgrade: websocket is missing")
    if header_value(headers, "sec-websocket-version") != "13":
        raise BadRequest("Sec-WebSocket-Version is not 13")
    key = header_value(headers, "sec-websocket-key")
    if not key:
        raise BadRequest("Sec-WebSocket-Key is missing")
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key.encode('ascii'))}",
    ]
    protocol = choose_subprotocol(headers, subprotocols)
    if protocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    deflate = compress and accepts_deflate(header_value(headers, "sec-websocket-extensions"))
    if deflate:
        lines.append(f"Sec-WebSocket-Extensions: {DEFLATE_RESPONSE}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), deflate, protocol


def error_response(status: int, headers: Iterable[tuple[str, str]] = (), body: str = "") -> bytes:
    """Return an HTTP error response that ends the connection (``Connection: close``)."""
    from http import HTTPStatus

    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    content = body.encode("utf-8")
    lines = [f"HTTP/1.1 {status} {phrase}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines += [f"Content-Length: {len(content)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + content


def checked_reject(reject: object) -> tuple[int, list[tuple[str, str]]] | None:
    """Check ``Server(reject=...)``: ``None`` or ``(status, headers)``.

    Returns:
        ``None``, or the status and the headers as a list of pairs.

    Raises:
        TypeError: ``reject`` is not a pair, or the headers are not str pairs.
        ValueError: The status is not an HTTP error status (300-599), or a header
            holds CR, LF or NUL.
    """
    if reject is None:
        return None
    if not isinstance(reject, (tuple, list)) or len(reject) != 2:
        raise TypeError(f"reject must be (status, headers) or None, not {reject!r}")
    status, headers = reject
    if isinstance(status, bool) or not isinstance(status, int):
        raise TypeError(f"reject status must be an int, not {type(status).__name__}")
    if not 300 <= status <= 599:
        raise ValueError(f"reject status must be from 300 to 599, not {status}")
    pairs = list(headers.items() if hasattr(headers, "items") else headers or ())
    checked = []
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError(f"reject headers must be (name, value) pairs, not {pair!r}")
        name, value = pair
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"reject header names and values must be str, not {pair!r}")
        if any(character in name + value for character in "\r\n\0") or not name.strip():
            raise ValueError(f"invalid reject header {pair!r}")
        checked.append((name, value))
    return status, checked
