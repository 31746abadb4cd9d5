"""WebSocket frames (RFC 6455 §5): the wire format, and building frames.

The opcodes and header bits, the payloads of control frames and what may be in
them, and :func:`build_frame`. Reading frames from a byte stream is
:mod:`lomond.protocol.frame_reader`; which frames are acceptable at which moment is
the business of :mod:`lomond.protocol.client`.
"""

from __future__ import annotations

from enum import IntEnum

from ..errors import FrameBuildError, ProtocolError
from ..status import Status, is_valid_close_code
from .mask import masked_frame

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import overload

#: The largest payload length a frame can declare (RFC 6455 §5.2: 63 bits).
MAX_PAYLOAD = (1 << 63) - 1

#: RSV1, the bit permessage-deflate uses to mark a compressed message (RFC 7692 §6),
#: as it stands in :attr:`FrameHeader.rsv`; RSV2 and RSV3 likewise.
RSV1 = 0x4
RSV2 = 0x2
RSV3 = 0x1

# The first byte of a frame header: FIN, the RSV bits, the opcode (RFC 6455 §5.2).
FIN_BIT = 0x80
RSV1_BIT = RSV1 << 4
OPCODE_BITS = 0x0F
# The second byte: the MASK bit, and the 7-bit payload length.
MASK_BIT = 0x80
LENGTH_BITS = 0x7F

#: The message for text that is not UTF-8 (close code 1007).
INVALID_TEXT = "invalid UTF-8 in text message"


class Opcode(IntEnum):
    """Frame opcodes (RFC 6455 §5.2)."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

    @property
    def is_control(self) -> bool:
        """Whether this is a control opcode (close, ping, pong)."""
        return is_control(self)


def is_control(opcode: int) -> bool:
    """Whether ``opcode`` is a control opcode (RFC 6455 §5.5: its high bit is set)."""
    return opcode & 0x8 != 0


#: Opcodes that RFC 6455 §5.2 reserves for future use: receiving one is an error.
RESERVED_OPCODES = frozenset(range(0x3, 0x8)) | frozenset(range(0xB, 0x10))


def invalid_utf8(message: str = INVALID_TEXT) -> ProtocolError:
    """The error for text that is not UTF-8: close code 1007 (RFC 6455 §8.1)."""
    return ProtocolError(message, Status.BAD_DATA)


def decode_utf8(data: bytes | bytearray, message: str = INVALID_TEXT) -> str:
    """Decode UTF-8 text from the server.

    Raises:
        ProtocolError: ``data`` is not UTF-8 (close code 1007), with ``message``.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_utf8(message) from None


def length_field(buffer: bytearray, position: int, available: int) -> tuple[int, int] | None:
    """Decode the payload length of the frame header at ``position`` (RFC 6455 §5.2).

    Args:
        buffer: The bytes of the stream.
        position: Where the frame header starts.
        available: How many bytes of the stream there are from ``position`` (2 or more).

    Returns:
        ``(payload length, where the masking key or payload starts)``, or ``None``
        until the extended length has arrived.
    """
    length = buffer[position + 1] & LENGTH_BITS
    # 126 means a 16-bit length follows, 127 a 64-bit one.
    if length < 126:
        return length, position + 2
    if length == 126:
        if available < 4:
            return None
        return int.from_bytes(buffer[position + 2 : position + 4], "big"), position + 4
    if available < 10:
        return None
    return int.from_bytes(buffer[position + 2 : position + 10], "big"), position + 10


class FrameHeader:
    """The fixed part of a frame, decoded.

    Attributes:
        fin: Whether this is the final fragment of a message.
        rsv: The three reserved bits, as an int (``RSV1 | RSV2 | RSV3``).
        opcode: The raw opcode (an int; it may be a reserved one).
        masked: Whether the payload is masked.
        length: The payload length.
    """

    __slots__ = ("fin", "rsv", "opcode", "masked", "length")

    def __init__(self, fin: bool, rsv: int, opcode: int, masked: bool, length: int) -> None:
        self.fin = fin
        self.rsv = rsv
        self.opcode = opcode
        self.masked = masked
        self.length = length

    def __repr__(self) -> str:
        return (
            f"FrameHeader(fin={self.fin}, rsv={self.rsv}, opcode={self.opcode}, "
            f"masked={self.masked}, length={self.length})"
        )


if TYPE_CHECKING:
    # Without a masking key (a server's frame), always bytes.
    @overload
    def build_frame(
        opcode: int,
        payload: bytes | bytearray | memoryview,
        masking_key: None,
        *,
        fin: bool = True,
        rsv: int = 0,
    ) -> bytes: ...

    @overload
    def build_frame(
        opcode: int,
        payload: bytes | bytearray | memoryview,
        masking_key: bytes | None,
        *,
        fin: bool = True,
        rsv: int = 0,
    ) -> bytes | bytearray: ...


def build_frame(
    opcode: int,
    payload: bytes | bytearray | memoryview,
    masking_key: bytes | None,
    *,
    fin: bool = True,
    rsv: int = 0,
) -> bytes | bytearray:
    """Return the bytes of one frame (a ``bytearray`` for a large masked frame when
    masking runs in pure Python: see :func:`lomond.protocol.mask.masked_frame`).

    Args:
        opcode: The frame's opcode.
        payload: The (unmasked) payload.
        masking_key: 4 bytes to mask the payload with (clients must mask every frame,
            RFC 6455 §5.3), or ``None`` for an unmasked (server) frame.
        fin: Whether this is the final fragment of its message.
        rsv: Reserved bits to set, e.g. :data:`RSV1` for a compressed message.

    Raises:
        FrameBuildError: The payload is 2**63 bytes or longer.
    """
    length = len(payload)
    first = (FIN_BIT if fin else 0) | (rsv << 4) | opcode
    mask_bit = MASK_BIT if masking_key is not None else 0
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 0x10000:
        header = bytes((first, mask_bit | 126)) + length.to_bytes(2, "big")
    elif length <= MAX_PAYLOAD:
        header = bytes((first, mask_bit | 127)) + length.to_bytes(8, "big")
    else:
        raise FrameBuildError("payload is too large for a frame")
    if masking_key is None:
        return header + payload
    return masked_frame(header + masking_key, masking_key, payload)


def build_close_payload(code: int | None, reason: str | bytes = b"") -> bytes:
    """Return a close frame payload: the code (big-endian) and a UTF-8 reason.

    ``code=None`` gives an empty payload. The reason is cut at a character boundary
    so that the payload fits a control frame (RFC 6455 §5.5: at most 125 bytes).
    """
    if code is None:
        return b""
    reason_bytes = reason.encode("utf-8") if isinstance(reason, str) else bytes(reason)
    reason_bytes = truncate_utf8(reason_bytes, 123)
    return code.to_bytes(2, "big") + reason_bytes


def truncate_utf8(data: bytes, limit: int) -> bytes:
    """Cut UTF-8 ``data`` to at most ``limit`` bytes without splitting a character."""
    if len(data) <= limit:
        return data
    end = limit
    # Step back over continuation bytes (0b10xxxxxx) to the start of a character.
    while end > 0 and data[end] & 0xC0 == 0x80:
        end -= 1
    return data[:end]


def checked_close(code: object, reason: object) -> bytes:
    """Check the arguments of a close we send, and return the reason as bytes.

    Raises:
        TypeError: ``code`` is not an int, or ``reason`` neither str nor bytes.
        ValueError: ``code`` may not be sent (allowed: 1000-1003, 1007-1014,
            3000-4999; RFC 6455 §7.4), or a ``bytes`` reason is not UTF-8.
    """
    if isinstance(code, bool) or not isinstance(code, int):
        raise TypeError(f"code must be an int, not {type(code).__name__}")
    if not is_valid_close_code(code):
        raise ValueError(f"close code {code} may not be sent (RFC 6455 §7.4)")
    if isinstance(reason, str):
        return reason.encode("utf-8")
    if isinstance(reason, (bytes, bytearray)):
        try:
            bytes(reason).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("close reason must be UTF-8") from None
        return bytes(reason)
    raise TypeError(f"reason must be str or bytes, not {type(reason).__name__}")


def control_payload(kind: str, data: object) -> bytes:
    """Check the payload of a ping or pong we send, and return its bytes.

    Raises:
        TypeError: ``data`` is not bytes-like.
        ValueError: ``data`` is over 125 bytes (RFC 6455 §5.5; counted in bytes,
            whatever a memoryview's item size).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{kind} data must be bytes, not {type(data).__name__}")
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size > 125:
        raise ValueError(f"{kind} data must be at most 125 bytes (RFC 6455 §5.5)")
    return bytes(data)


def parse_close_payload(payload: bytes) -> tuple[int | None, str]:
    """Return ``(code, reason)`` from a close frame payload (RFC 6455 §5.5.1).

    Raises:
        ProtocolError: The payload is one byte long, or the code is not one that may
            be sent (code 1002), or the reason is not UTF-8 (code 1007).
    """
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise ProtocolError("close frame payload is one byte long")
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    return code, decode_utf8(payload[2:], "close reason is not valid UTF-8")
