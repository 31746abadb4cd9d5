"""Stream mode (``connect(stream=True)``): each data message as parts, as it arrives.

:class:`MessageStream` takes the place of the message assembly
(:mod:`lomond.protocol.messages`): a data frame's payload becomes ``BinaryPart`` or
``TextPart`` events as its bytes arrive, also while the frame itself is still
arriving, so that memory is bounded by the part size and the size of one read, not
by the size of the message.

* A part holds at most ``part_size`` bytes (text: that many bytes of UTF-8, plus the
  up to 3 bytes of a character carried from the part before).
* Text is decoded incrementally: a part holds whole characters, a character split
  across frames or reads is carried to the next part, and invalid UTF-8 fails the
  connection (close code 1007) as soon as it is seen.
* A compressed message is inflated incrementally, at most one part's worth per
  batch of events: what is left waits, compressed, for the next batch.
* ``max_message_size`` bounds the whole message as in the assembly, unless ``None``.
"""

from __future__ import annotations

import codecs

from .. import events
from ..errors import PayloadTooLarge
from .deflate import MAX_STREAMS_PER_FRAME
from .frames import RSV1, Opcode, invalid_utf8
from .messages import MAX_FRAGMENTS, MessageAssembler

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Callable

    from .deflate import PerMessageDeflate
    from .frames import FrameHeader

#: The default largest part, in bytes (``WebSocket(stream_part_size=...)``). One
#: read from the socket is 256 KiB, so a read of a large message is mostly one part.
PART_SIZE = 256 * 1024

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


class MessageStream(MessageAssembler):
    """Turns data frames, and the pieces of frames still arriving, into parts.

    It keeps the assembly's header checks (:meth:`check_frame`) and its record of
    the message in progress (``opcode``, ``compressed``, ``size``, ``fragments``).

    Args:
        max_message_size: The largest message, in bytes after decompression, or
            ``None`` for no limit.
        part_size: The most bytes in one part.
        max_fragments: The most frames one message may have.
    """

    def __init__(
        self,
        max_message_size: int | None,
        part_size: int = PART_SIZE,
        max_fragments: int = MAX_FRAGMENTS,
    ) -> None:
        super().__init__(max_message_size, max_fragments)
        self.part_size = part_size
        self._stream_state()

    def _stream_state(self) -> None:
        # The text decoder of a text message (None: a binary message).
        self._decoder: codecs.IncrementalDecoder | None = None
        # Compressed input waiting to be inflated, and whether it ends the message.
        self._inputs: list[bytes | memoryview] = []
        self._final = False
        # Whether the last piece left its frame unfinished (more of it will come).
        self._in_frame = False
        # Deflate streams ended in the current frame (see MAX_STREAMS_PER_FRAME).
        self._ends = 0

    def reset(self) -> None:
        """Drop the message in progress."""
        super().reset()
        self._stream_state()

    @property
    def inflating(self) -> bool:
        """Whether compressed input waits to be inflated (at the next batch)."""
        return bool(self._inputs)

    def add(
        self,
        header: FrameHeader,
        payload: bytes,
        frame_done: bool,
        compression: PerMessageDeflate | None,
        received_time: float | None,
        append: Callable[[events.Event], None],
    ) -> None:
        """Add the next piece of a data frame (already checked against the header rules).

        Args:
            header: The frame's header.
            payload: The next bytes of its payload.
            frame_done: Whether they are the last of the frame.
            compression: The negotiated codec (needed for compressed messages).
            received_time: The parts' ``received_time``.
            append: Takes each part.

        Raises:
            ProtocolError: Invalid UTF-8 (1007) or invalid compressed data (1002).
            PayloadTooLarge: The message inflates past ``max_message_size`` (1009).
        """
        if not self._in_frame:
            self.fragments += 1
            self._ends = 0
            if header.opcode != Opcode.CONTINUATION:
                self.opcode = header.opcode
                self.compressed = bool(header.rsv & RSV1)
                if header.opcode == Opcode.TEXT:
                    self._decoder = _Utf8Decoder()
        self._in_frame = not frame_done
        final = frame_done and header.fin
        if self.compressed:
            assert compression is not None  # RSV1 is refused unless negotiated
            self._inputs.extend(compression.inflate_inputs(payload, final))
            self._final = final
            self.resume(compression, received_time, append)
            return
        self.size += len(payload)
        part_size = self.part_size
        if len(payload) <= part_size:
            self._part(payload, final, received_time, append)
        else:
            with memoryview(payload) as view:
                end = len(view)
                for start in range(0, end, part_size):
                    stop = start + part_size
                    piece = view[start:stop].tobytes()
                    self._part(piece, final and stop >= end, received_time, append)
        if final:
            self.reset()

    def resume(
        self,
        compression: PerMessageDeflate | None,
        received_time: float | None,
        append: Callable[[events.Event], None],
    ) -> None:
        """Inflate waiting compressed input, about one part's worth.

        Call again (at the next batch) while :attr:`inflating`.
        """
        assert compression is not None  # RSV1 is refused unless negotiated
        inputs = self._inputs
        limit = self.max_message_size
        part_size = self.part_size
        emitted = 0
        while inputs:
            # One byte more than the limit allows: getting it proves the message too
            # large (as in PerMessageDeflate.decompress).
            step = part_size if limit is None else min(part_size, limit - self.size + 1)
            output, rest, ended = compression.inflate_step(inputs[0], step)
            self.size += len(output)
            if limit is not None and self.size > limit:
                raise PayloadTooLarge("decompressed message exceeds max_message_size")
            full = len(output) >= step
            if ended:
                self._ends += 1
                if self._ends > MAX_STREAMS_PER_FRAME:
                    raise PayloadTooLarge(
                        f"compressed frame ends more than {MAX_STREAMS_PER_FRAME} deflate streams"
                    )
            if full or (ended and rest):
                inputs[0] = rest  # zlib may hold more output, or more input is left
            else:
                del inputs[0]  # all of this input is inflated
            done = self._final and not inputs
            self._part(output, done, received_time, append)
            if done:
                compression.end_message()
                self.reset()
                return
            emitted += len(output)
            if emitted >= part_size:
                return  # a part's worth: the rest waits for the next batch

    def _part(
        self,
        data: bytes,
        final: bool,
        received_time: float | None,
        append: Callable[[events.Event], None],
    ) -> None:
        """Pass ``append`` the part of ``data`` (none for an empty piece but the last)."""
        decoder = self._decoder
        if decoder is None:
            if data or final:
                append(events.BinaryPart(data, final, received_time))
            return
        try:
            text = decoder.decode(data, final)
        except UnicodeDecodeError:
            raise invalid_utf8() from None
        if text or final:
            append(events.TextPart(text, final, received_time))
