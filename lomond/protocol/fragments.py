"""One data message sent in fragments (RFC 6455 §5.4), as it is produced.

A streamed send (``send_binary`` of a file or an iterable, ``send_text`` of an
iterable) does not know its length, nor which piece is the last, until its source
is exhausted: each piece goes out as a non-final fragment, and an empty final
fragment ends the message. :class:`OutgoingMessage` gives each fragment its opcode,
its RSV1 bit and, when the message is compressed, its payload:

* the whole message is one deflate stream (RFC 7692 §7.2.1), flushed after every
  piece (``Z_SYNC_FLUSH``) so that a fragment never waits for the next piece;
* each flush ends with the 4 bytes ``00 00 ff ff``; they are held back and sent at
  the start of the next fragment, so that the message ends without them, as the
  RFC asks (the receiver appends them).

While the message goes out, other data messages wait (see
:meth:`ClientProtocol.send_message <lomond.protocol.client.ClientProtocol.send_message>`):
nothing may come between its fragments but control frames.
"""

from __future__ import annotations

from .frames import RSV1, Opcode

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from .deflate import PerMessageDeflate

    BytesLike = bytes | bytearray | memoryview

# The end of every sync flush (RFC 7692 §7.2.1).
_MARKER = b"\x00\x00\xff\xff"


class OutgoingMessage:
    """The fragments of one message being sent.

    Args:
        opcode: ``TEXT`` or ``BINARY``.
        compression: The codec to compress it with, or ``None`` to send it as it is.
    """

    def __init__(self, opcode: int, compression: PerMessageDeflate | None) -> None:
        self._opcode = opcode
        self._compression = compression
        self._held_marker = b""
        #: Data messages sent meanwhile, as ``(opcode, payload, compress)``: they go
        #: out after the last fragment.
        self.held: list[tuple[Opcode, bytes, bool]] = []

    @property
    def compressed(self) -> bool:
        """Whether the message is compressed."""
        return self._compression is not None

    @property
    def started(self) -> bool:
        """Whether its first fragment was made."""
        return self._opcode == Opcode.CONTINUATION

    def fragment(self, data: BytesLike, final: bool) -> tuple[int, BytesLike, int]:
        """The next fragment, from the next piece of the message.

        Returns:
            ``(opcode, payload, rsv)`` of the frame.
        """
        opcode = self._opcode
        self._opcode = Opcode.CONTINUATION
        compression = self._compression
        if compression is None:
            return opcode, data, 0
        rsv = 0 if opcode == Opcode.CONTINUATION else RSV1
        if final and not len(data) and opcode == Opcode.CONTINUATION:
            # The held marker is the message's end, which is left out.
            compression.end_compressed_message()
            return opcode, b"", rsv
        compressed = compression.compress_fragment(data, final)
        if final:
            # A whole message in one fragment: compress_fragment dropped the marker.
            return opcode, self._held_marker + compressed, rsv
        payload = self._held_marker + compressed[:-4]
        self._held_marker = _MARKER
        return opcode, payload, rsv
