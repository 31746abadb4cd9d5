"""permessage-deflate (RFC 7692): the options users choose, and the negotiated codec."""

from __future__ import annotations

import zlib
from typing import List, Optional, Tuple

from .errors import CompressionParameterError, PayloadTooLarge, ProtocolError

#: The name of the extension in ``Sec-WebSocket-Extensions``.
EXTENSION_NAME = "permessage-deflate"

# RFC 7692 §7.2.1: the empty deflate block that ends every compressed message,
# stripped by the sender and restored by the receiver.
_TAIL = b"\x00\x00\xff\xff"

ExtensionParameters = List[Tuple[str, Optional[str]]]


def _check_window_bits(name: str, value: int | None) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 8 <= value <= 15
    ):
        raise ValueError(f"{name} must be an int from 8 to 15 (or None), not {value!r}")


class Deflate:
    """What to offer for permessage-deflate, and how to compress.

    ``WebSocket(compress=True)`` is ``WebSocket(compress=Deflate())``.

    Args:
        client_max_window_bits: The largest LZ77 window (as a power of two, 8-15) lomond
            will compress with; ``None`` offers the parameter without a value, letting
            the server choose.
        server_max_window_bits: Ask the server to compress with at most this window
            (8-15); ``None`` does not ask. A smaller window saves the server memory.
        client_no_context_takeover: Compress every message on its own (less memory kept
            between messages, worse ratio for similar messages).
        server_no_context_takeover: Ask the server to do the same.
        level: zlib compression level 0-9; ``None`` is zlib's default (6).
        mem_level: zlib memory level 1-9; 8 is zlib's default.
        min_size: Messages shorter than this many bytes are sent uncompressed: below
            a few dozen bytes deflate cannot win.
    """

    def __init__(
        self,
        client_max_window_bits: int | None = None,
        server_max_window_bits: int | None = None,
        client_no_context_takeover: bool = False,
        server_no_context_takeover: bool = False,
        level: int | None = None,
        mem_level: int = 8,
        min_size: int = 0,
    ) -> None:
        _check_window_bits("client_max_window_bits", client_max_window_bits)
        _check_window_bits("server_max_window_bits", server_max_window_bits)
        if level is not None and (not isinstance(level, int) or not -1 <= level <= 9):
            raise ValueError(f"level must be an int from 0 to 9 (or None), not {level!r}")
        if not isinstance(mem_level, int) or not 1 <= mem_level <= 9:
            raise ValueError(f"mem_level must be an int from 1 to 9, not {mem_level!r}")
        if not isinstance(min_size, int) or min_size < 0:
            raise ValueError(f"min_size must be a non-negative int, not {min_size!r}")
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
            CompressionParameterError: A parameter is unknown, repeated, out of range,
                or answers something that was not offered (RFC 7692 §7.1).
        """
        seen: set[str] = set()
        server_bits = 15
        client_bits = self.client_max_window_bits or 15
        server_no_context_takeover = False
        client_no_context_takeover = self.client_no_context_takeover
        for name, value in parameters:
            if name in seen:
                raise CompressionParameterError(f"duplicate parameter {name} in {EXTENSION_NAME}")
            seen.add(name)
            if name == "server_no_context_takeover":
                _expect_no_value(name, value)
                server_no_context_takeover = True
            elif name == "client_no_context_takeover":
                _expect_no_value(name, value)
                client_no_context_takeover = True
            elif name == "server_max_window_bits":
                server_bits = _window_bits(name, value)
                offered = self.server_max_window_bits
                if offered is not None and server_bits > offered:
                    raise CompressionParameterError(
                        f"server_max_window_bits={server_bits} exceeds the offered {offered}"
                    )
            elif name == "client_max_window_bits":
                client_bits = _window_bits(name, value)
                offered = self.client_max_window_bits
                if offered is not None and client_bits > offered:
                    raise CompressionParameterError(
                        f"client_max_window_bits={client_bits} exceeds the offered {offered}"
                    )
            else:
                raise CompressionParameterError(f"unknown parameter {name} in {EXTENSION_NAME}")
        if self.server_no_context_takeover and not server_no_context_takeover:
            # RFC 7692 §7.1.1.1: a server accepting the offer must include it.
            raise CompressionParameterError("server ignored the server_no_context_takeover offer")
        return PerMessageDeflate(
            server_max_window_bits=server_bits,
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
    if value is None or not value.isdigit():
        raise CompressionParameterError(f"{name} needs a value from 8 to 15 (got {value!r})")
    bits = int(value)
    if not 8 <= bits <= 15:
        raise CompressionParameterError(f"{name}={bits} is outside 8-15")
    return bits


class PerMessageDeflate:
    """The negotiated permessage-deflate codec of one connection.

    Compression is not thread-safe on its own: the caller serialises
    :meth:`compress` calls (the session's send lock does).
    """

    def __init__(
        self,
        *,
        server_max_window_bits: int,
        client_max_window_bits: int,
        server_no_context_takeover: bool,
        client_no_context_takeover: bool,
        level: int = -1,
        mem_level: int = 8,
        min_size: int = 0,
    ) -> None:
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.level = level
        self.mem_level = mem_level
        self.min_size = min_size
        # zlib cannot deflate with a 256-byte window (8 bits): a window of 9 would
        # break the server's limit, so lomond then sends every message uncompressed,
        # which RFC 7692 §6 always allows. Inflating needs no such care: a larger
        # window decodes anything a smaller one produced.
        self.can_compress = client_max_window_bits >= 9
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
        """Whether a message of ``length`` bytes is worth compressing."""
        return self.can_compress and length >= self.min_size

    def compress(self, payload: bytes | bytearray | memoryview) -> bytes:
        """Return the compressed form of one whole message (RFC 7692 §7.2.1)."""
        compressor = self._compressor
        if compressor is None:
            compressor = zlib.compressobj(
                self.level, zlib.DEFLATED, -self.client_max_window_bits, self.mem_level
            )
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        # Keep the context for the next message unless the server asked us not to.
        self._compressor = None if self.client_no_context_takeover else compressor
        if data.endswith(_TAIL):
            return data[:-4]
        return data  # pragma: no cover - Z_SYNC_FLUSH always ends with the tail

    def decompress(self, payload: bytes, limit: int | None, final: bool) -> bytes:
        """Inflate one frame's payload of a compressed message.

        Args:
            payload: The frame payload.
            limit: At most this many bytes may come out (``None``: no limit).
            final: Whether this frame ends the message.

        Raises:
            PayloadTooLarge: The output would exceed ``limit``; inflation stops
                before the memory is spent.
            ProtocolError: The payload is not valid deflate data.
        """
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(
                -max(9, self.server_max_window_bits)
            )
        if final:
            payload += _TAIL
        try:
            if limit is None:
                data = decompressor.decompress(payload)
            else:
                # Ask for one byte more than allowed: getting it proves the message
                # is too large, without inflating the rest of it.
                data = decompressor.decompress(payload, limit + 1)
                if len(data) > limit:
                    raise PayloadTooLarge("decompressed message exceeds max_message_size")
        except zlib.error as error:
            raise ProtocolError(f"invalid compressed data ({error})") from None
        if final and self.server_no_context_takeover:
            self._decompressor = None
        return data
