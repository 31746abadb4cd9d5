"""Masking of client-to-server payloads (RFC 6455 §5.3).

The XOR has two implementations. :func:`mask_python` is always there. The C one,
``lomond.protocol._speedups.mask``, is built by ``setup.py`` when a compiler is available and
is about seventy times faster on a 1 MiB payload. :func:`mask` is the C one unless
it is missing or the environment variable ``LOMOND_NO_EXTENSIONS`` was ``1`` when
this module was first imported; :data:`ACCELERATED` says which.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Callable, Union

    #: What :func:`mask` takes: any bytes-like object (other buffers work too).
    BytesLike = Union[bytes, bytearray, memoryview]

    #: A callable returning ``n`` random bytes; masking keys come from one of these.
    KeySource = Callable[[int], bytes]

    #: The signature both implementations of the XOR share.
    MaskFunction = Callable[[BytesLike, BytesLike], bytes]
    #: The same with a prefix: ``(prefix, key, data) -> prefix + mask(key, data)``.
    PrefixedMaskFunction = Callable[[BytesLike, BytesLike, BytesLike], bytes]


class BufferedRandom:
    """:func:`os.urandom` read in batches: one system call per 1,024 masking keys.

    The bytes are as unpredictable as ``os.urandom``'s (RFC 6455 §10.3 asks for a
    strong source); only the number of system calls changes. Not thread-safe: each
    connection has its own, used under the session lock.
    """

    def __init__(self, source: KeySource = os.urandom, batch: int = 4096) -> None:
        self._source = source
        self._batch = batch
        self._buffer = b""
        self._offset = 0

    def __call__(self, size: int) -> bytes:
        offset = self._offset
        end = offset + size
        if end > len(self._buffer):
            self._buffer = self._source(max(self._batch, size))
            offset, end = 0, size
        self._offset = end
        return self._buffer[offset:end]


#: Pure Python XORs payloads from this size on in pieces of ``_PIECE`` bytes. One
#: big-integer XOR of a whole 1 MiB payload runs at 250-320 MB/s (CPython 3.11):
#: the integers outgrow the CPU caches. In 8 KiB pieces it runs at 550-650 MB/s,
#: faster too than four ``bytes.translate`` calls on every fourth byte (400-580
#: MB/s). Below 16 KiB one integer is as fast and has less overhead.
_PIECE = 8192
_PIECES_FROM = 2 * _PIECE


def mask_python(key: BytesLike, data: BytesLike, /) -> bytes:
    """XOR ``data`` with the repeating 4-byte ``key`` (masking and unmasking alike).

    The pure-Python implementation: the payload is XORed as big integers, which
    CPython does in C, an order of magnitude faster than a Python loop over bytes.

    Args:
        key: The 4-byte masking key, any bytes-like object.
        data: The payload, any bytes-like object.

    Returns:
        The masked (or unmasked) payload as ``bytes``.

    Raises:
        TypeError: ``key`` or ``data`` is not bytes-like.
        ValueError: ``key`` is not 4 bytes long.
    """
    return _masked(b"", key, data)


def prefixed_mask_python(prefix: BytesLike, key: BytesLike, data: BytesLike, /) -> bytes:
    """Return ``prefix + mask_python(key, data)``: a frame's header and masked payload.

    For large payloads the prefix joins the masked pieces in the one final join, so
    the payload is not copied once more to be put behind its header.

    Raises:
        TypeError: ``prefix``, ``key`` or ``data`` is not bytes-like.
        ValueError: ``key`` is not 4 bytes long.
    """
    if type(key) is not bytes or len(key) != 4:
        key = _checked_key(key)  # first, as the C version checks it first
    if type(prefix) is not bytes:
        prefix = memoryview(prefix).tobytes()  # TypeError if it is not bytes-like
    return _masked(prefix, key, data)


def _masked(prefix: bytes, key: BytesLike, data: BytesLike) -> bytes:
    # Exact type checks first: bytes keys and bytes or bytearray payloads (what
    # lomond passes) take no detour, which matters for small frames.
    if type(key) is not bytes or len(key) != 4:
        key = _checked_key(key)
    if type(data) is not bytes and type(data) is not bytearray:
        data = byte_view(data)
    length = len(data)
    if length < _PIECES_FROM:
        if not length:
            return prefix
        key_stream = key * (length >> 2) + key[: length & 3]
        value = int.from_bytes(data, "little") ^ int.from_bytes(key_stream, "little")
        return prefix + value.to_bytes(length, "little")
    view = memoryview(data)
    # _PIECE is a multiple of 4, so every piece starts at key[0].
    piece_key = int.from_bytes(key * (_PIECE // 4), "little")
    from_bytes = int.from_bytes
    whole = length - length % _PIECE
    pieces = [prefix]
    pieces += [
        (from_bytes(view[start : start + _PIECE], "little") ^ piece_key).to_bytes(_PIECE, "little")
        for start in range(0, whole, _PIECE)
    ]
    if whole < length:
        tail = length - whole
        key_stream = key * (tail >> 2) + key[: tail & 3]
        value = from_bytes(view[whole:], "little") ^ from_bytes(key_stream, "little")
        pieces.append(value.to_bytes(tail, "little"))
    return b"".join(pieces)


def masked_frame_python(prefix: bytes, key: bytes, data: BytesLike) -> bytes | bytearray:
    """``prefix + mask_python(key, data)``, with no second copy of a large payload.

    :func:`prefixed_mask_python` returns ``bytes``, which pure Python can only make
    by joining the masked pieces: for a moment the payload exists twice. From
    :data:`_PIECES_FROM` bytes on, this writes the pieces into one ``bytearray``
    instead, so a frame costs its own size plus one piece.

    Args:
        prefix: The frame header, masking key included.
        key: The 4-byte masking key.
        data: The payload, any bytes-like object.
    """
    if type(data) is bytes and len(data) < _PIECES_FROM:
        return prefixed_mask_python(prefix, key, data)
    view = memoryview(byte_view(data))
    length = len(view)
    if length < _PIECES_FROM:
        return prefixed_mask_python(prefix, key, view)
    start = len(prefix)
    frame = bytearray(start + length)
    frame[:start] = prefix
    piece_key = int.from_bytes(key * (_PIECE // 4), "little")
    from_bytes = int.from_bytes
    whole = length - length % _PIECE
    for offset in range(0, whole, _PIECE):
        piece = from_bytes(view[offset : offset + _PIECE], "little") ^ piece_key
        frame[start + offset : start + offset + _PIECE] = piece.to_bytes(_PIECE, "little")
    if whole < length:
        frame[start + whole :] = mask_python(key, view[whole:])
    return frame


def _checked_key(key: BytesLike) -> bytes:
    """Return ``key`` as ``bytes``; raise TypeError or ValueError as the C version does."""
    key_bytes = memoryview(key).tobytes()  # TypeError if it is not bytes-like
    if len(key_bytes) != 4:
        raise ValueError(f"masking key must be 4 bytes, not {len(key_bytes)}")
    return key_bytes


def byte_view(data: BytesLike) -> memoryview | bytes:
    """Return the bytes of any buffer, counted in bytes whatever its item format.

    Not a copy, unless the buffer is not contiguous.

    Raises TypeError if ``data`` is not bytes-like. Strided views are copied.
    """
    view = memoryview(data)
    return view.cast("B") if view.c_contiguous else view.tobytes()


def _load_accelerated() -> tuple[MaskFunction, PrefixedMaskFunction] | None:
    """Return the C ``mask`` and ``prefixed_mask``, or ``None`` if not built or switched off."""
    if os.environ.get("LOMOND_NO_EXTENSIONS") == "1":
        return None
    try:
        from ._speedups import mask as accelerated_mask
        from ._speedups import prefixed_mask as accelerated_prefixed_mask
    except ImportError:
        return None
    return accelerated_mask, accelerated_prefixed_mask


_accelerated = _load_accelerated()

#: Whether :func:`mask` is the C implementation from ``lomond.protocol._speedups``.
ACCELERATED: bool = _accelerated is not None

#: ``mask(key, data, /) -> bytes``: XOR ``data`` with the repeating 4-byte ``key``.
#: The C implementation when :data:`ACCELERATED`, else :func:`mask_python`; both
#: return the same bytes and raise the same errors.
mask: MaskFunction = mask_python if _accelerated is None else _accelerated[0]
#: ``prefixed_mask(prefix, key, data, /) -> bytes``: ``prefix + mask(key, data)`` in
#: one allocation; the C one when :data:`ACCELERATED`, else :func:`prefixed_mask_python`.
prefixed_mask: PrefixedMaskFunction = (
    prefixed_mask_python if _accelerated is None else _accelerated[1]
)


#: ``masked_frame(prefix, key, data) -> bytes | bytearray``: a frame's header
#: (``prefix``) and masked payload as one new buffer, the payload never copied twice:
#: :func:`prefixed_mask` in C, else :func:`masked_frame_python` (a ``bytearray`` for
#: large payloads).
masked_frame: Callable[[bytes, bytes, BytesLike], bytes | bytearray] = (
    masked_frame_python if _accelerated is None else _accelerated[1]
)
