"""WebSocket close codes (RFC 6455 §7.4)."""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar, FrozenSet


def _invalid_codes() -> frozenset[int]:
    # RFC 6455 §7.4.1-2: 0-999 are unused, 1004-1006 and 1015 are reserved and must
    # never be sent, 1016-2999 belong to future revisions of the RFC.
    reserved = {1004, 1005, 1006, 1015}
    return frozenset(range(0, 1000)) | frozenset(reserved) | frozenset(range(1016, 3000))


class Status(IntEnum):
    """Close codes with a name, as sent in close frames.

    ``Status.invalid_codes`` is the set of codes that are never valid in a close frame.
    """

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    DATA_NOT_UNDERSTOOD = 1003
    BAD_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_LARGE = 1009
    EXTENSION_FAILED = 1010
    UNEXPECTED_CONDITION = 1011

    invalid_codes: ClassVar[FrozenSet[int]]


Status.invalid_codes = _invalid_codes()


def is_valid_close_code(code: int) -> bool:
    """Return whether ``code`` may appear in a close frame (RFC 6455 §7.4).

    Valid: 1000-1003, 1007-1014 and 3000-4999. 1014 is registered with IANA ("bad
    gateway"), 1012/1013 likewise; 5000 and above are not defined at all.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999
