"""Message assembly (RFC 6455 §5.4): data frames in, ``Text`` and ``Binary`` events out.

Text is validated as UTF-8 as it arrives (RFC 6455 §8.1), also inside a frame whose
payload has only partly arrived; compressed messages (RFC 7692) are inflated frame by
frame, within the message size limit.
"""

from __future__ import annotations

import codecs
from typing import List, Union

from . import events
from .compression import PerMessageDeflate
from .errors import ProtocolError
from .frames import RSV1, FrameHeader, Opcode
from .status import Status

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


def invalid_utf8() -> ProtocolError:
    """The error for text that is not UTF-8 (close code 1007)."""
    return ProtocolError("invalid UTF-8 in text message", Status.BAD_DATA)


def decode_text(payload: bytes) -> str:
    """Decode a whole text message.

    Raises:
        ProtocolError: The payload is not UTF-8 (close code 1007).
    """
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_utf8() from None


class MessageAssembler:
    """Collects the frames of one message at a time.

    Args:
        max_message_size: The largest message, in bytes after decompression, or
            ``None`` for no limit. Only decompression is bounded here; the frame
            header check bounds what is read off the wire.
    """

    def __init__(self, max_message_size: int | None) -> None:
        self.max_message_size = max_message_size
        #: The opcode of the message being assembled (``None``: between messages).
        self.opcode: int | None = None
        #: Whether that message is compressed.
        self.compressed = False
        #: Its size so far, in bytes after decompression.
        self.size = 0
        self._parts: List[Union[bytes, str]] = []
        self._decoder: codecs.IncrementalDecoder | None = None
        # UTF-8 validation of a text frame whose payload is still arriving.
        self._probe: codecs.IncrementalDecoder | None = None
        self._probed = 0

    def reset(self) -> None:
        """Drop the message being assembled."""
        self.opcode = None
        self.compressed = False
        self.size = 0
        self._parts = []
        self._decoder = None
        self._probe = None
        self._probed = 0

    def add_frame(
        self, header: FrameHeader, payload: bytes, compression: PerMessageDeflate | None
    ) -> events.Event | None:
        """Add a data frame (already checked against the header rules).

        Returns:
            The ``Text`` or ``Binary`` event when the frame completes a message.

        Raises:
            ProtocolError: Invalid UTF-8 (1007) or invalid compressed data (1002).
            PayloadTooLarge: The message inflates past ``max_message_size`` (1009).
        """
        self._probe = None
        opcode = header.opcode
        fin = header.fin
        if opcode != Opcode.CONTINUATION:
            compressed = bool(header.rsv & RSV1)
            if fin:
                # A whole message in one frame: no assembly needed.
                if compressed:
                    assert compression is not None  # RSV1 is refused unless negotiated
                    payload = compression.inflate_message(payload, self.max_message_size)
                if opcode == Opcode.TEXT:
                    return events.Text(decode_text(payload))
                return events.Binary(payload)
            self.opcode = opcode
            self.compressed = compressed
            if opcode == Opcode.TEXT:
                self._decoder = _Utf8Decoder()
        if self.compressed:
            assert compression is not None  # RSV1 is refused unless negotiated
            limit = self.max_message_size
            remaining = None if limit is None else limit - self.size
            payload = compression.decompress(payload, remaining, fin)
        self.size += len(payload)
        decoder = self._decoder
        if decoder is not None:
            try:
                self._parts.append(decoder.decode(payload, fin))
            except UnicodeDecodeError:
                raise invalid_utf8() from None
        else:
            self._parts.append(payload)
        if not fin:
            return None
        message_opcode = self.opcode
        parts = self._parts
        self.reset()
        if message_opcode == Opcode.TEXT:
            return events.Text("".join(parts))  # type: ignore[arg-type]
        return events.Binary(b"".join(parts))  # type: ignore[arg-type]

    def probe(self, pending: FrameHeader, available: memoryview) -> None:
        """Check the UTF-8 of a text frame whose payload is still arriving.

        RFC 6455 §8.1 lets an endpoint fail as soon as it sees invalid UTF-8; doing
        so on partial payloads means a stream of garbage is refused at its first
        invalid byte instead of after the whole frame. Compressed text is checked
        after inflation instead.

        Args:
            pending: The header of the incomplete frame.
            available: The part of its payload that has arrived.

        Raises:
            ProtocolError: The text so far is not UTF-8 (close code 1007).
        """
        if pending.opcode == Opcode.TEXT:
            if pending.rsv & RSV1:
                return
        elif pending.opcode != Opcode.CONTINUATION or self.opcode != Opcode.TEXT:
            return
        if self.compressed:
            return
        if self._probe is None:
            self._probe = _Utf8Decoder()
            if self._decoder is not None and pending.opcode == Opcode.CONTINUATION:
                self._probe.setstate(self._decoder.getstate())
            self._probed = 0
        try:
            self._probe.decode(bytes(available[self._probed :]))
        except UnicodeDecodeError:
            raise invalid_utf8() from None
        self._probed = len(available)
