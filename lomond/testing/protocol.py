"""Frames in the server's role: the client's masked frames in, unmasked frames out.

:class:`ServerProtocol` is lomond's own frame code turned around, with no I/O:
:class:`~lomond.protocol.frame_reader.FrameReader` reads the client's frames and
checks each header as it completes, :func:`~lomond.protocol.frames.build_frame`
without a masking key writes the server's frames. Every rule a server must enforce
on a client is checked (RFC 6455 §5): frames are masked, opcodes and reserved bits
are known, control frames are short and whole, fragments come in order, text is
UTF-8, a close payload is valid. A violation raises
:class:`~lomond.errors.ProtocolError` whose ``code`` is the close code to answer.

permessage-deflate, when negotiated, runs without context takeover in both
directions (see :mod:`lomond.testing.handshake`): every message is compressed and
inflated on its own.
"""

from __future__ import annotations

from ..errors import PayloadTooLarge, ProtocolError
from ..protocol.deflate import PerMessageDeflate
from ..protocol.frame_reader import FrameReader
from ..protocol.frames import (
    RESERVED_OPCODES,
    RSV1,
    FrameHeader,
    Opcode,
    build_frame,
    decode_utf8,
    parse_close_payload,
)

TYPE_CHECKING = False  # typing is not imported at run time
if TYPE_CHECKING:
    from typing import List

#: The largest message (after decompression) a server takes by default.
MAX_MESSAGE_SIZE = 16 * 1024 * 1024


def _codec() -> PerMessageDeflate:
    # Neither side takes context over, so one fresh codec per message serves both
    # directions: its "client" settings are simply used the other way round.
    return PerMessageDeflate(
        server_max_window_bits=15,
        client_max_window_bits=15,
        server_no_context_takeover=True,
        client_no_context_takeover=True,
    )


def compress(payload: bytes) -> bytes:
    """Compress one whole message on its own (no context takeover, RFC 7692 §7.2.1)."""
    return _codec().compress(payload)


def decompress(payload: bytes, limit: int) -> bytes:
    """Inflate one whole compressed message, producing at most ``limit`` bytes.

    Raises:
        PayloadTooLarge: The message inflates to more than ``limit`` bytes.
        ProtocolError: The payload is not valid deflate data.
    """
    return _codec().decompress(payload, limit, True)


def server_frame(opcode: int, payload: bytes, *, compressed: bool = False) -> bytes:
    """Return one unmasked frame; with ``compressed``, the payload is deflated (RSV1)."""
    if compressed:
        return build_frame(opcode, compress(payload), None, rsv=RSV1)
    return build_frame(opcode, payload, None)


class ClientMessage:
    """A message or control frame the client sent.

    Attributes:
        opcode: :class:`~lomond.protocol.frames.Opcode` ``TEXT``, ``BINARY``,
            ``PING``, ``PONG`` or ``CLOSE``.
        payload: The whole payload, inflated if it was compressed; text is valid
            UTF-8, a close payload valid (:meth:`close` parses it).
        compressed: Whether the message came compressed.
    """

    __slots__ = ("opcode", "payload", "compressed")

    def __init__(self, opcode: int, payload: bytes, compressed: bool = False) -> None:
        self.opcode = opcode
        self.payload = payload
        self.compressed = compressed

    def close(self) -> tuple[int | None, str]:
        """``(code, reason)`` of a close frame (``code`` is ``None`` for an empty one)."""
        return parse_close_payload(self.payload)

    def __repr__(self) -> str:
        return f"ClientMessage({Opcode(self.opcode).name}, {self.payload!r})"


class ServerProtocol:
    """The frame-level logic of one connection in the server's role. No I/O.

    Feed the client's bytes with :meth:`receive_data`, then call :meth:`next_message`
    until it returns ``None``.

    Args:
        deflate: Whether permessage-deflate was negotiated.
        max_message_size: The largest message taken, after decompression; a larger
            one is a violation with close code 1009.
    """

    def __init__(self, deflate: bool, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self.deflate = deflate
        self.max_message_size = max_message_size
        self._reader = FrameReader(self._check_header)
        self._opcode: int | None = None
        self._compressed = False
        self._parts: List[bytes] = []
        self._size = 0

    def _check_header(self, header: FrameHeader) -> bool:
        # RFC 6455 §5.1: a server must fail the connection on an unmasked client frame.
        if not header.masked:
            raise ProtocolError("client frame is not masked")
        opcode = header.opcode
        if opcode in RESERVED_OPCODES:
            raise ProtocolError(f"reserved opcode {opcode}")
        allowed_rsv = RSV1 if self.deflate and opcode in (Opcode.TEXT, Opcode.BINARY) else 0
        if header.rsv & ~allowed_rsv:
            raise ProtocolError("reserved bits set")
        if Opcode(opcode).is_control:
            if not header.fin or header.length > 125:
                raise ProtocolError("control frame fragmented or over 125 bytes")
        elif (opcode == Opcode.CONTINUATION) != (self._opcode is not None):
            raise ProtocolError("unexpected continuation or data frame")
        if self._size + header.length > self.max_message_size:
            raise PayloadTooLarge("message too large")
        return True

    def receive_data(self, data: bytes) -> None:
        """Take bytes from the client."""
        self._reader.feed(data)

    def next_message(self) -> ClientMessage | None:
        """Return the next whole message or control frame, or ``None`` for now.

        Raises:
            ProtocolError: The client broke RFC 6455 (``code`` is 1002, 1007 for
                text that is not UTF-8, or 1009 for a message over the limit).
        """
        while True:
            frame = self._reader.next_frame()
            if frame is None:
                return None
            header, payload = frame
            opcode = header.opcode
            if Opcode(opcode).is_control:
                if opcode == Opcode.CLOSE:
                    parse_close_payload(payload)  # raises on an invalid payload
                return ClientMessage(opcode, payload)
            if opcode != Opcode.CONTINUATION:
                self._opcode = opcode
                self._compressed = bool(header.rsv & RSV1)
            self._parts.append(payload)
            self._size += len(payload)
            if header.fin:
                return self._message()

    def _message(self) -> ClientMessage:
        opcode, message = self._opcode, b"".join(self._parts)
        compressed = self._compressed
        self._opcode, self._parts, self._size = None, [], 0
        assert opcode is not None
        if compressed:
            message = decompress(message, self.max_message_size)
        if opcode == Opcode.TEXT:
            decode_utf8(message, "text message is not valid UTF-8")
        return ClientMessage(opcode, message, compressed)
