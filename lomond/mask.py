"""Masking of client-to-server payloads (RFC 6455 §5.3)."""

from __future__ import annotations

import os
from typing import Callable

#: A callable returning ``n`` random bytes; masking keys come from one of these.
KeySource = Callable[[int], bytes]


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


def make_masking_key(random_bytes: KeySource = os.urandom) -> bytes:
    """Return a fresh 4-byte masking key from ``random_bytes``.

    RFC 6455 §5.3 requires a new, unpredictable key for every frame.
    """
    return random_bytes(4)


def mask(key: bytes, data: bytes | bytearray | memoryview) -> bytes:
    """XOR ``data`` with the repeating 4-byte ``key`` (masking and unmasking alike).

    The whole payload is XORed as one big integer: CPython does that in C, which is
    an order of magnitude faster than a Python loop over bytes.
    """
    length = len(data)
    if not length:
        return b""
    repeats, remainder = divmod(length, 4)
    key_stream = key * repeats + key[:remainder]
    value = int.from_bytes(data, "little") ^ int.from_bytes(key_stream, "little")
    return value.to_bytes(length, "little")
