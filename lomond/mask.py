"""Masking of client-to-server payloads (RFC 6455 §5.3)."""

from __future__ import annotations

import os
from typing import Callable

#: A callable returning ``n`` random bytes; masking keys come from one of these.
KeySource = Callable[[int], bytes]


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
