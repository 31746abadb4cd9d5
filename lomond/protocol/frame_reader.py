"""Cutting the server's byte stream into frames (RFC 6455 §5.2).

:class:`FrameReader` checks each header (through the protocol's check) the moment it
is complete, before the payload is buffered, and skips a refused frame's payload as
it arrives. :meth:`FrameReader.simple_frames` is the receive fast path.
"""

from __future__ import annotations

from ..errors import PayloadTooLarge, ProtocolError
from .frames import (
    FIN_BIT,
    MASK_BIT,
    MAX_PAYLOAD,
    OPCODE_BITS,
    RSV1_BIT,
    FrameHeader,
    Opcode,
    length_field,
)
from .mask import mask

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Callable

    #: Called with each frame header as soon as it is complete, before its payload
    #: is buffered. It returns whether to read the frame (``False``: skip its payload
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
        return (
            len(self._buffer) > self._position
            or self._header is not None
            or 0 < self._skip_remaining < _FOREVER
        )

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

    def take_pending(self) -> bytes:
        """Take what has arrived of the incomplete frame's payload (stream mode).

        The frame stays pending with the rest of its payload: its header's ``length``
        becomes what remains, and :meth:`next_frame` returns only the rest. Only for
        unmasked frames, as :meth:`pending_payload`.
        """
        header = self._header
        if header is None:
            return b""
        start = self._payload_start
        end = min(len(self._buffer), start + header.length)
        if end == start:
            return b""
        with memoryview(self._buffer) as view:
            payload = view[start:end].tobytes()
        header.length -= end - start
        self._payload_start = self._position = end
        return payload

    def take_input(self, data: bytes) -> tuple[FrameHeader | None, bytes]:
        """Take the next bytes of the incomplete frame's payload straight from ``data``.

        Stream mode, before :meth:`feed`: when everything that arrived of the frame's
        payload was taken (:meth:`take_pending`), the leading bytes of ``data`` that
        belong to it are taken without being buffered; feed the rest of ``data``.

        Returns:
            The frame's header (its ``length`` now what remains: ``0`` when this
            completes the frame, which is then no longer pending) and the bytes
            taken, or ``(None, b"")`` when nothing can be taken so.
        """
        header = self._header
        if header is None or len(self._buffer) != self._payload_start or not data:
            return None, b""
        count = min(len(data), header.length)
        piece = bytes(data[:count])
        header.length -= count
        if not header.length:
            self._header = None
            self._position = self._payload_start
        return header, piece

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
                length = buffer[position + 1]
                # A 7-bit length, no mask (recv_text's small messages): read here, not
                # by length_field(); through it, recv_text took 1.17 times as long.
                if length < 126:
                    start = position + 2
                elif length & MASK_BIT:
                    break
                else:
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
