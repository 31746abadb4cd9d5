"""permessage-deflate (RFC 7692): the options users choose, and the negotiated codec.

:class:`Deflate` is what the user configures and what lomond offers; the server's
answer goes through :meth:`Deflate.accept`, which returns the :class:`PerMessageDeflate`
codec of one connection. Neither does any I/O. The defaults and the memory each
connection needs are explained on the :doc:`/compression` page of the docs.
"""

from __future__ import annotations

import zlib

from ..errors import CompressionParameterError, PayloadTooLarge, ProtocolError

#: The name of the extension in ``Sec-WebSocket-Extensions``.
EXTENSION_NAME = "permessage-deflate"

# RFC 7692 §7.2.1: the empty deflate block that ends every compressed message,
# stripped by the sender and restored by the receiver.
_TAIL = b"\x00\x00\xff\xff"

# zlib refuses to deflate with a 256-byte window (window bits 8, raw deflate). It
# never emits a match farther back than its window minus 262 bytes (MIN_LOOKAHEAD),
# so with window bits 9 no distance exceeds 250 bytes: the output is valid for a
# peer that agreed to a window of 8 bits. zlib before 1.2.9 made the same swap itself.
_SMALLEST_ZLIB_WINDOW = 9

# The most one zlib call inflates at a time when a limit applies (see decompress).
_INFLATE_STEP = 256 * 1024
# The most input one zlib call is given (see decompress).
_INPUT_STEP = 64 * 1024
#: The most deflate streams one frame's payload may end. A message needs at most
#: one (a block with BFINAL set, RFC 7692 §7.2.3.4); each costs a fresh zlib state,
#: so a frame of thousands of tiny streams is refused (close code 1009).
MAX_STREAMS_PER_FRAME = 4
# Deflate's largest expansion: a 258-byte match coded in 2 bits (zlib's FAQ, 1032:1).
_MAX_EXPANSION = 1032

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import List, Optional, Tuple

    ExtensionParameters = List[Tuple[str, Optional[str]]]


def _inflates_within(length: int, limit: int | None) -> bool:
    """Whether ``length`` bytes of deflate data cannot inflate past ``limit`` bytes."""
    return limit is None or length * _MAX_EXPANSION <= limit


def _slices(data: bytes) -> list[bytes | memoryview]:
    """``data`` cut into slices of at most ``_INPUT_STEP`` bytes, without copying.

    zlib is given its input in slices: what it hands back unused (after the end of a
    deflate stream, or when the output step is full) is a copy of the rest of its
    input, so giving it a whole large payload would cost time quadratic in its size.
    """
    if len(data) <= _INPUT_STEP:
        return [data]
    view = memoryview(data)
    return [view[start : start + _INPUT_STEP] for start in range(0, len(view), _INPUT_STEP)]


def _check_int(name: str, value: object, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise ValueError(f"{name} must be an int {bounds}, not {value!r}")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r}")


class Deflate:
    """What to offer for permessage-deflate, and how to compress.

    ``WebSocket(compress=True)`` is ``WebSocket(compress=Deflate())``, which offers
    ``permessage-deflate; client_max_window_bits``. Nothing is allocated until a
    compressed message is sent or received; see the :doc:`/compression` page for the
    memory each choice costs.

    Args:
        client_max_window_bits: The largest LZ77 window (a power of two, 8-15) lomond
            will compress with. ``None`` offers the parameter without a value: the
            server may then choose a limit, else lomond uses 15 (32 KiB).
        server_max_window_bits: Ask the server to compress with at most this window
            (8-15); ``None`` does not ask. A server that cannot honour it declines
            compression altogether (RFC 7692 §7.1.2.1).
        client_no_context_takeover: Compress every message on its own: no memory kept
            between messages, but a far worse ratio for similar small messages.
        server_no_context_takeover: Ask the server to do the same; a server that
            accepts must confirm it (RFC 7692 §7.1.1.1).
        level: zlib compression level 0-9 (``-1`` or ``None``: zlib's default, 6).
        mem_level: zlib memory level 1-9: the compressor's hash table and block
            buffer, ``2 ** (mem_level + 9)`` bytes together. 5 costs 16 KiB against
            128 KiB for zlib's own default of 8, for a ratio within about 1%.
        min_size: Messages shorter than this many bytes are sent uncompressed.

    Raises:
        TypeError: An option has the wrong type.
        ValueError: An option is out of range.
    """

    def __init__(
        self,
        client_max_window_bits: int | None = None,
        server_max_window_bits: int | None = None,
        client_no_context_takeover: bool = False,
        server_no_context_takeover: bool = False,
        level: int | None = None,
        mem_level: int = 5,
        min_size: int = 0,
    ) -> None:
        if client_max_window_bits is not None:
            _check_int("client_max_window_bits", client_max_window_bits, 8, 15)
        if server_max_window_bits is not None:
            _check_int("server_max_window_bits", server_max_window_bits, 8, 15)
        _check_bool("client_no_context_takeover", client_no_context_takeover)
        _check_bool("server_no_context_takeover", server_no_context_takeover)
        if level is not None:
            _check_int("level", level, -1, 9)
        _check_int("mem_level", mem_level, 1, 9)
        _check_int("min_size", min_size, 0, None)
        self.client_max_window_bits = client_max_window_bits
        self.server_max_window_bits = server_max_window_bits
        self.client_no_context_takeover = client_no_context_takeover
        self.server_no_context_takeover = server_no_context_takeover
        self.level = level
        self.mem_level = mem_level
        self.min_size = min_size

    def __repr__(self) -> str:
        return (
            f"Deflate(client_max_window_bits={self.client_max_window_bits!r}, "
            f"server_max_window_bits={self.server_max_window_bits!r}, "
            f"client_no_context_takeover={self.client_no_context_takeover!r}, "
            f"server_no_context_takeover={self.server_no_context_takeover!r}, "
            f"level={self.level!r}, mem_level={self.mem_level!r}, min_size={self.min_size!r})"
        )

    def offer(self) -> str:
        """Return the ``Sec-WebSocket-Extensions`` value offering these options."""
        parts = [EXTENSION_NAME]
        # Always offered (RFC 7692 §7.1.2.2): it lets the server limit our window,
        # and without it a server may not send client_max_window_bits at all.
        if self.client_max_window_bits is None:
            parts.append("client_max_window_bits")
        else:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        if self.server_max_window_bits is not None:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        return "; ".join(parts)

    def accept(self, parameters: ExtensionParameters) -> PerMessageDeflate:
        """Check the server's response parameters and return the negotiated codec.

        Raises:
            CompressionParameterError: A parameter is unknown, repeated, has a value
                it must not have or lacks one it needs, is out of 8-15, answers
                something that was not offered, or ignores what was (RFC 7692 §7.1).
        """
        seen: set[str] = set()
        server_bits: int | None = None
        client_bits = self.client_max_window_bits or 15
        server_no_context_takeover = False
        client_no_context_takeover = self.client_no_context_takeover
        for name, value in parameters:
            if name in seen:
                raise CompressionParameterError(f"duplicate parameter {name} in {EXTENSION_NAME}")
            seen.add(name)
            if name == "server_no_context_takeover":
                # §7.1.1.1: allowed even when not offered.
                _expect_no_value(name, value)
                server_no_context_takeover = True
            elif name == "client_no_context_takeover":
                # §7.1.1.2: the server may ask this of any client.
                _expect_no_value(name, value)
                client_no_context_takeover = True
            elif name == "server_max_window_bits":
                # §7.1.2.1: at most the offered value; a server may also limit itself
                # when the client did not ask.
                server_bits = _window_bits(name, value)
                offered = self.server_max_window_bits
                if offered is not None and server_bits > offered:
                    raise CompressionParameterError(
                        f"server_max_window_bits={server_bits} exceeds the offered {offered}"
                    )
            elif name == "client_max_window_bits":
                # §7.1.2.2: only in answer to an offer of it, which lomond always makes.
                client_bits = _window_bits(name, value)
                offered = self.client_max_window_bits
                if offered is not None and client_bits > offered:
                    raise CompressionParameterError(
                        f"client_max_window_bits={client_bits} exceeds the offered {offered}"
                    )
            else:
                raise CompressionParameterError(f"unknown parameter {name} in {EXTENSION_NAME}")
        # A server that accepts an offer of these must confirm them (§7.1.1.1, §7.1.2.1).
        if self.server_no_context_takeover and not server_no_context_takeover:
            raise CompressionParameterError("server ignored the offered server_no_context_takeover")
        if self.server_max_window_bits is not None and server_bits is None:
            raise CompressionParameterError(
                f"server ignored the offered server_max_window_bits={self.server_max_window_bits}"
            )
        return PerMessageDeflate(
            server_max_window_bits=15 if server_bits is None else server_bits,
            client_max_window_bits=client_bits,
            server_no_context_takeover=server_no_context_takeover,
            client_no_context_takeover=client_no_context_takeover,
            level=-1 if self.level is None else self.level,
            mem_level=self.mem_level,
            min_size=self.min_size,
        )


def _expect_no_value(name: str, value: str | None) -> None:
    if value is not None:
        raise CompressionParameterError(f"{name} must not have a value (got {value!r})")


def _window_bits(name: str, value: str | None) -> int:
    # §7.1.2: a decimal integer without leading zeroes. str.isdigit() alone would let
    # through "²" (a latin-1 header byte), which int() refuses.
    if value is None or not (value.isascii() and value.isdigit()) or value[0] == "0":
        raise CompressionParameterError(f"{name} needs a value from 8 to 15 (got {value!r})")
    bits = int(value)
    if not 8 <= bits <= 15:
        raise CompressionParameterError(f"{name}={bits} is outside 8-15")
    return bits


class PerMessageDeflate:
    """The negotiated permessage-deflate codec of one connection.

    Each direction has its own zlib stream, created at its first message. With
    context takeover it lives as long as the connection; without, it is dropped at
    the end of every message.

    Not thread-safe on its own: the caller serialises :meth:`compress` calls (the
    session's send lock does), and :meth:`decompress` is called by the reading
    thread only.
    """

    def __init__(
        self,
        *,
        server_max_window_bits: int,
        client_max_window_bits: int,
        server_no_context_takeover: bool,
        client_no_context_takeover: bool,
        level: int = -1,
        mem_level: int = 5,
        min_size: int = 0,
    ) -> None:
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.level = level
        self.mem_level = mem_level
        self.min_size = min_size
        # See _SMALLEST_ZLIB_WINDOW: a window of 9 bits keeps every distance within 8.
        self._compress_bits = max(_SMALLEST_ZLIB_WINDOW, client_max_window_bits)
        # Inflating with a larger window than agreed costs 256 bytes at most and also
        # decodes a peer that (like zlib before 1.2.9) swaps a window of 8 for 9.
        self._decompress_bits = max(_SMALLEST_ZLIB_WINDOW, server_max_window_bits)
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None

    def __repr__(self) -> str:
        return (
            f"<PerMessageDeflate server_max_window_bits={self.server_max_window_bits} "
            f"client_max_window_bits={self.client_max_window_bits} "
            f"server_no_context_takeover={self.server_no_context_takeover} "
            f"client_no_context_takeover={self.client_no_context_takeover}>"
        )

    def should_compress(self, length: int) -> bool:
        """Whether a message of ``length`` bytes is to be compressed (``min_size``)."""
        return length >= self.min_size

    def compress(self, payload: bytes | bytearray | memoryview) -> bytes:
        """Return the compressed form of one whole message (RFC 7692 §7.2.1)."""
        compressor = self._compressor
        if compressor is None:
            compressor = zlib.compressobj(
                self.level, zlib.DEFLATED, -self._compress_bits, self.mem_level
            )
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        # Keep the context for the next message unless the server asked us not to.
        self._compressor = None if self.client_no_context_takeover else compressor
        if data.endswith(_TAIL):
            return data[:-4]
        return data  # pragma: no cover - Z_SYNC_FLUSH always ends with the tail

    def compress_fragment(self, payload: bytes | bytearray | memoryview, final: bool) -> bytes:
        """Compress the next piece of a message sent in fragments, flushed.

        The output ends with the 4-byte marker of the flush (``00 00 ff ff``) unless
        ``final``, when the message ends here and the marker is stripped as in
        :meth:`compress`. See :mod:`lomond.protocol.fragments`.
        """
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = zlib.compressobj(
                self.level, zlib.DEFLATED, -self._compress_bits, self.mem_level
            )
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if final:
            self.end_compressed_message()
            return data[:-4]
        return data

    def end_compressed_message(self) -> None:
        """A message sent in fragments ended (no context takeover: forget it)."""
        if self.client_no_context_takeover:
            self._compressor = None

    def decompress(self, payload: bytes, limit: int | None, final: bool) -> bytes:
        """Inflate one frame's payload of a compressed message.

        Args:
            payload: The frame payload.
            limit: At most this many bytes may come out (``None``: no limit).
            final: Whether this frame ends the message.

        Raises:
            PayloadTooLarge: The output would exceed ``limit``; inflation stops
                one byte past it, so a bomb never costs more than ``limit`` plus
                256 KiB. Also raised when the payload ends more than
                :data:`MAX_STREAMS_PER_FRAME` deflate streams.
            ProtocolError: The payload is not valid deflate data.
        """
        if _inflates_within(len(payload) + len(_TAIL), limit):
            limit = None  # cannot inflate past the limit: no need to inflate in steps
        if final and len(payload) < _INPUT_STEP:
            inputs: list[bytes | memoryview] = [payload + _TAIL]  # one zlib call
        else:
            inputs = _slices(payload)
            if final:
                inputs.append(_TAIL)
        data = self._inflate(inputs, limit)
        if final and self.server_no_context_takeover:
            self._decompressor = None
        return data

    def inflate_inputs(self, payload: bytes, final: bool) -> list[bytes | memoryview]:
        """What :meth:`inflate_step` is to be given for a piece of a compressed message:
        the payload in slices (see ``_slices``), and the tail when ``final``."""
        inputs = _slices(payload)
        if final:
            inputs.append(_TAIL)
        return inputs

    def inflate_step(
        self, data: bytes | memoryview, max_length: int
    ) -> tuple[bytes, bytes | memoryview, bool]:
        """Inflate from ``data`` at most ``max_length`` bytes, in one zlib call.

        The incremental inflate of streamed messages
        (:mod:`lomond.protocol.streaming`): call again with what is left until it is
        empty and the output is shorter than ``max_length`` (zlib may hold more).

        Returns:
            ``(output, what is left of data, whether a deflate stream ended)``.

        Raises:
            ProtocolError: ``data`` is not valid deflate data.
        """
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(-self._decompress_bits)
        try:
            output = decompressor.decompress(data, max_length)
        except zlib.error as error:
            raise ProtocolError(f"invalid compressed data ({error})") from None
        if decompressor.eof:
            # As in _inflate: what follows the end of a deflate stream starts a new one.
            self._decompressor = None
            return output, decompressor.unused_data, True
        return output, decompressor.unconsumed_tail, False

    def end_message(self) -> None:
        """A streamed message was inflated to its end (no context takeover: forget it)."""
        if self.server_no_context_takeover:
            self._decompressor = None

    def _inflate(self, inputs: list[bytes | memoryview], limit: int | None, ends: int = 0) -> bytes:
        """Inflate ``inputs`` in turn, at most ``limit`` bytes (see :meth:`decompress`).

        ``ends`` counts the deflate streams of this frame that ended already.
        """
        pieces: list[bytes] = []
        size = 0
        for data in inputs:
            while True:
                decompressor = self._decompressor
                if decompressor is None:
                    decompressor = self._decompressor = zlib.decompressobj(-self._decompress_bits)
                # Inflate in steps of at most _INFLATE_STEP, asking for one byte more
                # than the limit allows: getting it proves the message too large, so a
                # bomb costs the limit plus one step, never what it would inflate to.
                step = None if limit is None else min(limit - size + 1, _INFLATE_STEP)
                try:
                    if step is None:
                        output = decompressor.decompress(data)
                    else:
                        output = decompressor.decompress(data, step)
                except zlib.error as error:
                    raise ProtocolError(f"invalid compressed data ({error})") from None
                size += len(output)
                if limit is not None and size > limit:
                    raise PayloadTooLarge("decompressed message exceeds max_message_size")
                if output:
                    pieces.append(output)
                if decompressor.eof:
                    # A block with BFINAL set ended the deflate stream (RFC 7692
                    # §7.2.3.4 allows it in place of the empty block). What follows,
                    # such as the padding that section shows and the tail appended
                    # above, starts a new stream; the old one is spent, so no later
                    # message may reach it.
                    self._decompressor = None
                    ends += 1
                    if ends > MAX_STREAMS_PER_FRAME:
                        raise PayloadTooLarge(
                            f"compressed frame ends more than {MAX_STREAMS_PER_FRAME} "
                            "deflate streams"
                        )
                    data = decompressor.unused_data
                    if not data:
                        break
                elif step is not None and len(output) >= step:
                    # The step is full: zlib may hold more output, or more input.
                    data = decompressor.unconsumed_tail
                else:
                    break  # all of this input is inflated
        if len(pieces) == 1:
            return pieces[0]
        return b"".join(pieces)
