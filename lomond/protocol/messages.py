"""Message assembly (RFC 6455 §5.4): data frames in, ``Text`` and ``Binary`` events out.

Text is validated as UTF-8 as it arrives (RFC 6455 §8.1), also inside a frame whose
payload has only partly arrived; compressed messages (RFC 7692) are inflated frame by
frame, within the message size limit.

The bytes of a fragmented message gather in one buffer, whatever the size of its
fragments, so its memory is its size: a message cut into a million tiny fragments
costs no more than one cut in two. The number of fragments is capped as well
(:data:`MAX_FRAGMENTS`), so that the work per message is bounded too.
"""

from __future__ import annotations

import codecs

from .. import events
from ..errors import PayloadTooLarge, ProtocolError
from .deflate import PerMessageDeflate
from .frames import MAX_PAYLOAD, OPCODE_BITS, RSV1, RSV1_BIT, FrameHeader, Opcode, invalid_utf8

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Callable

_TEXT = int(Opcode.TEXT)

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")

#: The most frames one message may be cut into (its first frame included). A
#: server that fragments further fails the connection with close code 1009. Even
#: 4 MiB in 64-byte fragments (the most the Autobahn|Testsuite sends) is 65,536.
MAX_FRAGMENTS = 131_072

# Text is validated this many bytes at a time (see MessageAssembler._validate).
_VALIDATE_STEP = 64 * 1024


def wire_limit(max_message_size: int | None, compressed: bool) -> int:
    """The most bytes a message may take on the wire (the frame header check).

    ``max_message_size`` counts a message's bytes after decompression, which is
    checked while inflating; deflate can grow incompressible data a little, so a
    compressed message may take up to an eighth more, plus 1 KiB, on the wire.
    """
    if max_message_size is None:
        return MAX_PAYLOAD
    if compressed:
        return max_message_size + (max_message_size >> 3) + 1024
    return max_message_size


def whole_messages(
    frames: list[tuple[int, bytes]],
    compression: PerMessageDeflate | None,
    max_message_size: int | None,
    received_time: float | None,
    append: Callable[[events.Event], None],
) -> None:
    """Pass ``append`` the event of each message that came whole, in one frame.

    One loop for a whole batch: the receive fast path (the ``recv_text`` and
    ``recv_deflate`` benchmarks) hands it runs of hundreds of frames.

    Args:
        frames: ``(first byte of the frame header, payload)`` pairs: the opcode is its
            low four bits, and its RSV1 bit marks a compressed message.
        compression: The negotiated codec (needed for compressed messages).
        max_message_size: The largest message accepted, after decompression.
        received_time: The events' ``received_time`` (``None``: now).
        append: Takes each event, in order; when a message is invalid, the events
            before it have been passed, and the error is raised.

    Raises:
        ProtocolError: Invalid UTF-8 (1007) or invalid compressed data (1002).
        PayloadTooLarge: A message inflates past ``max_message_size`` (1009).
    """
    Text, Binary = events.Text, events.Binary
    for first, payload in frames:
        if first & RSV1_BIT:
            assert compression is not None  # RSV1 is refused unless negotiated
            payload = compression.decompress(payload, max_message_size, True)
        if first & OPCODE_BITS == _TEXT:
            try:
                append(Text(payload.decode("utf-8"), received_time))
            except UnicodeDecodeError:
                raise invalid_utf8() from None
        else:
            append(Binary(payload, received_time))


class MessageAssembler:
    """Collects the frames of one message at a time.

    Args:
        max_message_size: The largest message, in bytes after decompression, or
            ``None`` for no limit. Only decompression is bounded here; the frame
            header check bounds what is read off the wire.
        max_fragments: The most frames one message may have.
    """

    def __init__(self, max_message_size: int | None, max_fragments: int = MAX_FRAGMENTS) -> None:
        self.max_message_size = max_message_size
        self.max_fragments = max_fragments
        #: The opcode of the message being assembled (``None``: between messages).
        self.opcode: int | None = None
        #: Whether that message is compressed.
        self.compressed = False
        #: Its size so far, in bytes after decompression.
        self.size = 0
        #: How many of its frames have arrived.
        self.fragments = 0
        self._buffer = bytearray()
        # Validates text as it arrives; its output is dropped, the text is decoded
        # once from the buffer at the end.
        self._validator: codecs.IncrementalDecoder | None = None
        # UTF-8 validation of a text frame whose payload is still arriving.
        self._probe: codecs.IncrementalDecoder | None = None
        self._probed = 0

    def reset(self) -> None:
        """Drop the message being assembled."""
        self.opcode = None
        self.compressed = False
        self.size = 0
        self.fragments = 0
        self._buffer = bytearray()
        self._validator = None
        self._probe = None
        self._probed = 0

    def check_frame(self, header: FrameHeader) -> None:
        """Refuse a data frame from its header, before its payload is read.

        Raises:
            ProtocolError: A continuation frame with no message to continue, or a new
                message inside a fragmented one (RFC 6455 §5.4; close code 1002).
            PayloadTooLarge: The message would have more than :attr:`max_fragments`
                frames, or exceed ``max_message_size`` on the wire (1009).
        """
        if header.opcode == Opcode.CONTINUATION:
            if self.opcode is None:
                raise ProtocolError("continuation frame with no message to continue")
            if self.fragments >= self.max_fragments:
                raise PayloadTooLarge(f"message has more than {self.max_fragments} fragments")
        elif self.opcode is not None:
            raise ProtocolError("new data frame inside a fragmented message")
        limit = self.max_message_size
        if limit is None:
            return
        if header.rsv & RSV1 or self.compressed:
            # Each compressed frame against the wire limit; what it inflates to is
            # counted against max_message_size while inflating.
            too_large = header.length > wire_limit(limit, True)
        else:
            too_large = self.size + header.length > limit
        if too_large:
            raise PayloadTooLarge(f"message exceeds max_message_size ({limit} bytes)")

    def add_frame(
        self,
        header: FrameHeader,
        payload: bytes,
        compression: PerMessageDeflate | None,
        received_time: float | None = None,
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
                first = opcode | (RSV1_BIT if compressed else 0)
                made: list[events.Event] = []
                limit = self.max_message_size
                whole_messages([(first, payload)], compression, limit, received_time, made.append)
                return made[0]
            self.opcode = opcode
            self.compressed = compressed
            if opcode == Opcode.TEXT:
                self._validator = _Utf8Decoder()
        self.fragments += 1
        if self.compressed:
            assert compression is not None  # RSV1 is refused unless negotiated
            limit = self.max_message_size
            remaining = None if limit is None else limit - self.size
            payload = compression.decompress(payload, remaining, fin)
        self.size += len(payload)
        if self._validator is not None:
            self._validate(payload, fin)
        self._buffer += payload
        del payload  # the buffer has it: drop this copy before the final one
        if not fin:
            return None
        message_opcode = self.opcode
        buffer = self._buffer
        self.reset()
        if message_opcode == Opcode.TEXT:
            return events.Text(buffer.decode("utf-8"), received_time)  # validated above
        return events.Binary(bytes(buffer), received_time)

    def _validate(self, payload: bytes, final: bool) -> None:
        """Check the next bytes of a text message; the decoded text is not kept."""
        validator = self._validator
        assert validator is not None
        # In slices, so that the text decoded only to be dropped stays small.
        with memoryview(payload) as view:
            try:
                for start in range(0, len(view), _VALIDATE_STEP):
                    validator.decode(view[start : start + _VALIDATE_STEP])
                validator.decode(b"", final)
            except UnicodeDecodeError:
                raise invalid_utf8() from None

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
            if self._validator is not None and pending.opcode == Opcode.CONTINUATION:
                self._probe.setstate(self._validator.getstate())
            self._probed = 0
        try:
            self._probe.decode(bytes(available[self._probed :]))
        except UnicodeDecodeError:
            raise invalid_utf8() from None
        self._probed = len(available)
