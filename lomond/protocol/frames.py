"""WebSocket frames (RFC 6455 §5): building them, and reading them from a byte stream.

This module knows the wire format only. Which frames are acceptable at which moment
is the business of :mod:`lomond.protocol`.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Callable, overload

from ..errors import FrameBuildError, PayloadTooLarge, ProtocolError
from ..status import Status, is_valid_close_code
from .mask import mask, masked_frame

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


#: Called with each frame header as soon as it is complete, before its payload is
#: buffered. It returns whether to read the frame (``False``: skip its payload
#: unbuffered), or raises :class:`~lomond.errors.ProtocolError` to refuse it (the
#: frame is then skipped too).
HeaderCheck = Callable[[FrameHeader], bool]

# Skip everything that follows: the stream can no longer be cut into frames.
_FOREVER = 1 << 64

# First bytes of the frames simple_frames() takes: FIN, no RSV bits (or RSV1 for a
# compressed message), and a text or binary opcode.
_WHOLE_TEXT = FIN_BIT | Opcode.TEXT
_WHOLE_BINARY = FIN_BIT | Opcode.BINARY
_WHOLE_COMPRESSED_TEXT = _WHOLE_TEXT | RSV1_BIT
_WHOLE_COMPRESSED_BINARY = _WHOLE_BINARY | RSV1_BIT


class FrameReader:
    """Cuts a byte stream into frames.

    Feed bytes with :meth:`feed`, then call :meth:`next_frame` until it returns
    ``None``. Each header is passed to ``check`` the moment it is complete, so an
    unacceptable frame is refused before its payload is read into memory; the
    payload of a refused or skipped frame is dropped as it arrives, never buffered.
    """

    def __init__(self, check: HeaderCheck) -> None:
        self._check = check
        self._buffer = bytearray()
        self._position = 0
        self._header: FrameHeader | None = None
        self._payload_start = 0
        self._masking_key = b""
        self._skip_remaining = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` to the stream."""
        if self._skip_remaining:
            skipped = min(len(data), self._skip_remaining)
            if self._skip_remaining != _FOREVER:  # forever stays forever
                self._skip_remaining -= skipped
            data = data[skipped:]
        self.release()
        self._buffer += data

    def release(self) -> None:
        """Drop the bytes of the frames already taken, freeing their memory.

        The reader calls it itself before it buffers more; the protocol calls it
        when it has taken what it can, so that a large frame's bytes are not kept
        while the application handles its message.
        """
        position = self._position
        if position:
            del self._buffer[:position]
            self._payload_start -= position
            self._position = 0

    @property
    def mid_frame(self) -> bool:
        """Whether the stream stops inside a frame (part of a frame was fed)."""
        return len(self._buffer) > self._position or 0 < self._skip_remaining < _FOREVER

    def pending_header(self) -> FrameHeader | None:
        """The header of the frame whose payload is still arriving, if any."""
        return self._header

    def pending_payload(self) -> memoryview:
        """The part of the incomplete frame's payload that has arrived so far.

        Only meaningful for unmasked frames (the protocol reads frames from a server,
        which never masks).
        """
        if self._header is None:
            return memoryview(b"")
        end = min(len(self._buffer), self._payload_start + self._header.length)
        return memoryview(self._buffer)[self._payload_start : end]

    def skip_pending(self) -> None:
        """Drop the frame whose payload is still arriving: what remains of it is skipped."""
        header, self._header = self._header, None
        if header is not None:
            self._skip(header.length)

    def simple_frames(
        self, max_length: int, max_compressed: int | None = None, max_count: int = 1 << 62
    ) -> list[tuple[int, bytes]]:
        """Take the run of *simple* frames at the head of the stream, in one pass.

        A simple frame is a whole unmasked text or binary message (FIN set, no RSV
        bits) of at most ``max_length`` bytes: it needs no header check beyond that
        and no message assembly, and it is by far the most common frame. With
        ``max_compressed`` (when permessage-deflate is in use), a whole compressed
        message (RSV1 set too) of at most that many bytes is simple as well. Reading
        a run of them in a tight loop is the receive fast path; the first frame that
        is anything else (or incomplete) ends the run and is left for
        :meth:`next_frame`, and so does the run's ``max_count``-th frame.

        Returns:
            ``(first byte of the header, payload)`` pairs: the opcode is its low
            four bits, and its bit ``0x40`` (RSV1) marks a compressed message.
        """
        if self._header is not None or self._skip_remaining:
            return []
        buffer = self._buffer
        position = self._position
        end = len(buffer)
        frames: list[tuple[int, bytes]] = []
        append = frames.append
        with memoryview(buffer) as view:
            while end - position >= 2 and len(frames) < max_count:
                first = buffer[position]
                if first == _WHOLE_TEXT or first == _WHOLE_BINARY:
                    most = max_length
                elif (first == _WHOLE_COMPRESSED_TEXT or first == _WHOLE_COMPRESSED_BINARY) and (
                    max_compressed is not None
                ):
                    most = max_compressed
                else:
                    break
                if buffer[position + 1] & MASK_BIT:
                    break
                field = length_field(buffer, position, end - position)
                if field is None:
                    break  # an incomplete header
                length, start = field
                stop = start + length
                if stop > end or length > most:
                    break
                append((first, view[start:stop].tobytes()))
                position = stop
        self._position = position
        return frames

    def next_frame(self) -> tuple[FrameHeader, bytes] | None:
        """Return the next complete frame as ``(header, payload)``, or ``None``.

        The payload is unmasked if the frame was masked.

        Raises:
            ProtocolError: The header check refused the frame (it is skipped).
            PayloadTooLarge: The frame declares a length of 2**63 or more (all
                further input is ignored).
        """
        header = self._header
        while header is None:
            if self._skip_remaining:
                return None
            header = self._read_header()
            if header is None:
                return None
            if not self._accept(header):
                header = None
        buffer = self._buffer
        end = self._payload_start + header.length
        if len(buffer) < end:
            self._header = header
            return None
        self._header = None
        with memoryview(buffer) as view:
            payload = view[self._payload_start : end].tobytes()
        self._position = end
        if header.masked:
            payload = mask(self._masking_key, payload)
        return header, payload

    def _accept(self, header: FrameHeader) -> bool:
        """Run the header check; skip the frame's payload unless it is accepted."""
        try:
            keep = self._check(header)
        except ProtocolError:
            self._skip(header.length)
            raise
        if not keep:
            self._skip(header.length)
        return keep

    def _skip(self, length: int) -> None:
        available = len(self._buffer) - self._payload_start
        if available >= length:
            self._position = self._payload_start + length
        else:
            self._position = len(self._buffer)
            self._skip_remaining = length - available

    def _read_header(self) -> FrameHeader | None:
        buffer = self._buffer
        position = self._position
        available = len(buffer) - position
        if available < 2:
            return None
        first, second = buffer[position], buffer[position + 1]
        field = length_field(buffer, position, available)
        if field is None:
            return None
        length, offset = field
        if length > MAX_PAYLOAD:
            # The most significant bit must be 0; nothing after this can be framed.
            self._position = len(buffer)
            self._skip_remaining = _FOREVER
            raise PayloadTooLarge("frame length has the most significant bit set")
        masked = bool(second & MASK_BIT)
        if masked:
            if len(buffer) < offset + 4:
                return None
            self._masking_key = bytes(buffer[offset : offset + 4])
            offset += 4
        self._payload_start = offset
        return FrameHeader(
            bool(first & FIN_BIT), (first >> 4) & 0x7, first & OPCODE_BITS, masked, length
        )


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
