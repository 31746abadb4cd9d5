"""The opening handshake (RFC 6455 §4): the upgrade request and the checks on its response."""

from __future__ import annotations

import base64
import re
from collections import abc

from ..constants import WS_KEY, WS_VERSION
from ..errors import HandshakeError
from ..response import Response
from .deflate import EXTENSION_NAME, Deflate, PerMessageDeflate

#: The largest HTTP response head lomond reads; a larger one is ``Rejected``.
MAX_HEADER_SIZE = 64 * 1024
#: The most header lines lomond accepts in a response head.
MAX_HEADER_LINES = 256

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Iterable, List, Mapping, Optional, Sequence, Tuple, Union

    #: Extra request headers as given by users: a mapping or a list of pairs, str or
    #: bytes.
    HeadersArgument = Union[
        Mapping[str, Union[str, bytes]],
        Mapping[bytes, Union[str, bytes]],
        Iterable[Tuple[Union[str, bytes], Union[str, bytes]]],
    ]
    HeaderList = List[Tuple[bytes, bytes]]
    #: One accepted extension: its name and its ``(parameter, value or None)`` pairs.
    Extension = Tuple[str, List[Tuple[str, Optional[str]]]]

#: Headers the handshake sets itself; a user may not supply them.
RESERVED_HEADERS = frozenset(
    {
        b"host",
        b"upgrade",
        b"connection",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-accept",
    }
)

# RFC 9110 §5.6.2: token = 1*tchar
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_FORBIDDEN_IN_VALUE = re.compile(rb"[\r\n\x00]")


def make_key(random_bytes: bytes) -> bytes:
    """Return a ``Sec-WebSocket-Key``: 16 random bytes, base64 encoded (RFC 6455 §4.1)."""
    return base64.b64encode(random_bytes)


def accept_key(key: bytes) -> str:
    """Return the ``Sec-WebSocket-Accept`` value the server must answer ``key`` with."""
    import hashlib  # imported on first use: it loads OpenSSL's libcrypto

    return base64.b64encode(hashlib.sha1(key + WS_KEY).digest()).decode("ascii")


def _to_bytes(value: str | bytes, what: str) -> bytes:
    if isinstance(value, str):
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"{what} {value!r} is not latin-1 text") from None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


def validate_header(name: str | bytes, value: str | bytes) -> tuple[bytes, bytes]:
    """Check one user-supplied header and return it as bytes.

    Raises:
        TypeError: The name or value is neither ``str`` nor ``bytes``.
        ValueError: The name is not an HTTP token, the value contains CR, LF or NUL
            (which would allow header injection), or the name is one the handshake
            sets itself.
    """
    name_bytes = _to_bytes(name, "header name")
    value_bytes = _to_bytes(value, "header value")
    if not _TOKEN.match(name_bytes):
        raise ValueError(f"header name {name_bytes!r} is not a valid HTTP token")
    if _FORBIDDEN_IN_VALUE.search(value_bytes):
        raise ValueError(f"value of header {name_bytes!r} contains CR, LF or NUL")
    if name_bytes.lower() in RESERVED_HEADERS:
        raise ValueError(f"header {name_bytes.decode()!r} is set by lomond and cannot be replaced")
    return name_bytes, value_bytes


def normalize_headers(headers: HeadersArgument | None) -> HeaderList:
    """Validate user headers (see :func:`validate_header`) and return them as byte pairs."""
    if headers is None:
        return []
    pairs = headers.items() if isinstance(headers, abc.Mapping) else headers
    return [validate_header(name, value) for name, value in pairs]


def build_request(
    *,
    resource: str,
    host_header: str,
    key: bytes,
    agent: str,
    origin: str | None = None,
    authorization: str | None = None,
    protocols: Sequence[str] = (),
    extensions: str | None = None,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> bytes:
    """Return the bytes of the HTTP upgrade request.

    The headers come in a fixed order: ``Host``, ``Upgrade``, ``Connection``,
    ``Sec-WebSocket-Key``, ``Sec-WebSocket-Version``, ``User-Agent``, then ``Origin``,
    ``Authorization``, ``Sec-WebSocket-Protocol`` and ``Sec-WebSocket-Extensions``
    when there are any, then the user's ``headers`` in their order.
    ``resource`` must already be percent-encoded ASCII.
    """
    lines = [
        f"GET {resource} HTTP/1.1".encode("ascii"),
        b"Host: " + host_header.encode("ascii"),
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + key,
        b"Sec-WebSocket-Version: " + str(WS_VERSION).encode("ascii"),
        b"User-Agent: " + agent.encode("utf-8"),
    ]
    if origin is not None:
        lines.append(b"Origin: " + origin.encode("utf-8"))
    if authorization is not None:
        lines.append(b"Authorization: " + authorization.encode("latin-1"))
    if protocols:
        lines.append(b"Sec-WebSocket-Protocol: " + ", ".join(protocols).encode("utf-8"))
    if extensions:
        lines.append(b"Sec-WebSocket-Extensions: " + extensions.encode("ascii"))
    lines.extend(name + b": " + value for name, value in headers)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def parse_extensions(values: list[str]) -> list[Extension]:
    """Parse ``Sec-WebSocket-Extensions`` values (RFC 6455 §9.1).

    Returns a list of ``(name, [(parameter, value or None), ...])``. Quoted values are
    unquoted.

    Raises:
        HandshakeError: An extension or parameter name is empty.
    """
    parsed = []
    for value in values:
        for extension in value.split(","):
            if not extension.strip():
                continue
            name, *params = (part.strip() for part in extension.split(";"))
            if not name:
                raise HandshakeError("empty extension name in Sec-WebSocket-Extensions")
            parameters: list[tuple[str, str | None]] = []
            for param in params:
                key, has_value, param_value = param.partition("=")
                key = key.strip()
                if not key:
                    raise HandshakeError(f"empty parameter name in extension {name!r}")
                if has_value:
                    param_value = param_value.strip()
                    if len(param_value) >= 2 and param_value[0] == param_value[-1] == '"':
                        param_value = param_value[1:-1]
                    parameters.append((key, param_value))
                else:
                    parameters.append((key, None))
            parsed.append((name, parameters))
    return parsed


def check_response(
    response: Response, key: bytes, protocols: Sequence[str]
) -> tuple[str | None, list[Extension]]:
    """Check that ``response`` accepts the upgrade (RFC 6455 §4.2.2 from the client's side).

    Returns:
        ``(protocol, extensions)``: the subprotocol the server chose (or ``None``) and
        the parsed extensions it accepted, for the caller to check against its offer.

    Raises:
        HandshakeError: With a readable reason for the first problem found.
    """
    if response.status_code != 101:
        status = f"{response.status_code} {response.status}".strip()
        raise HandshakeError(f"server responded with {status} instead of 101 Switching Protocols")
    upgrade = response.get("upgrade")
    if upgrade is None or upgrade.strip().lower() != "websocket":
        raise HandshakeError(f"Upgrade header is {upgrade!r}, expected 'websocket'")
    connection = [token.lower() for token in response.get_list("connection")]
    if "upgrade" not in connection:
        connection_value = response.get("connection")
        raise HandshakeError(f"Connection header is {connection_value!r}, expected 'Upgrade'")
    accept = response.get("sec-websocket-accept")
    if accept is None:
        raise HandshakeError("Sec-WebSocket-Accept header is missing")
    if accept.strip() != accept_key(key):
        raise HandshakeError("Sec-WebSocket-Accept does not match the key (challenge failed)")
    protocol = response.get("sec-websocket-protocol")
    if protocol is not None:
        protocol = protocol.strip()
        if protocol not in protocols:
            raise HandshakeError(f"server chose subprotocol {protocol!r}, which was not offered")
    extensions = parse_extensions([response.get("sec-websocket-extensions") or ""])
    return protocol, extensions


def accept_extensions(
    extensions: list[Extension], offer: Deflate | None
) -> PerMessageDeflate | None:
    """Check the extensions the server accepted against what was offered.

    Returns:
        The negotiated permessage-deflate codec, or ``None`` without compression.

    Raises:
        HandshakeError: An extension was not offered, was accepted twice, or has
            parameters RFC 7692 §7 does not allow.
    """
    codec = None
    for name, parameters in extensions:
        if name.lower() != EXTENSION_NAME or offer is None:
            raise HandshakeError(f"server accepted extension {name!r}, which was not offered")
        if codec is not None:
            raise HandshakeError(f"server accepted {EXTENSION_NAME} more than once")
        codec = offer.accept(parameters)
    return codec


class RejectedHead(HandshakeError):
    """A response head too large to read; :attr:`response` holds what was read of it."""

    def __init__(self, response: Response, reason: str) -> None:
        super().__init__(reason)
        self.response = response


class ResponseReader:
    """Gathers the upgrade response head from the bytes that arrive, within the limits."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> tuple[Response, bytes] | None:
        """Add ``data``; return the complete head and the bytes after it, or ``None``.

        Raises:
            RejectedHead: The head is over :data:`MAX_HEADER_SIZE` bytes or
                :data:`MAX_HEADER_LINES` lines.
        """
        buffer = self._buffer
        # Look for the blank line from a little before the new data: it may straddle.
        search_from = max(0, len(buffer) - 3)
        buffer += data
        end = buffer.find(b"\r\n\r\n", search_from)
        head_size = len(buffer) if end == -1 else end + 4
        if head_size > MAX_HEADER_SIZE:
            raise RejectedHead(Response(buffer[:MAX_HEADER_SIZE]), "response header exceeds 64 KiB")
        if end == -1:
            return None
        end += 4
        response = Response(buffer[:end])
        rest = bytes(buffer[end:])
        del buffer[:]
        if response.raw.count(b"\r\n") > MAX_HEADER_LINES + 2:
            raise RejectedHead(response, f"response has more than {MAX_HEADER_LINES} header lines")
        return response, rest
