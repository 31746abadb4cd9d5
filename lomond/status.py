"""WebSocket close codes (RFC 6455 §7.4)."""

from __future__ import annotations

from enum import IntEnum

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import ClassVar, FrozenSet


def _invalid_codes() -> frozenset[int]:
    # RFC 6455 §7.4.1-2: 0-999 are unused, 1004-1006 and 1015 are reserved and must
    # never be sent, 1016-2999 belong to future revisions of the RFC.
    reserved = {1004, 1005, 1006, 1015}
    return frozenset(range(0, 1000)) | frozenset(reserved) | frozenset(range(1016, 3000))


class Status(IntEnum):
    """Close codes with a name, as sent in close frames (RFC 6455 §7.4.1).

    A member is an ``int``: ``ws.close(Status.GOING_AWAY)`` and ``ws.close(1001)``
    send the same frame, and ``event.code == Status.NORMAL`` compares a received
    code. Other codes may be sent too; see :func:`is_valid_close_code`.
    """

    #: Normal closure; the purpose of the connection has been fulfilled.
    #: ``close()`` sends it by default.
    NORMAL = 1000
    #: Going away, e.g. a server shutting down or a client leaving.
    GOING_AWAY = 1001
    #: The peer broke the protocol.
    PROTOCOL_ERROR = 1002
    #: A kind of data the endpoint cannot accept (e.g. binary where it expects
    #: only text).
    DATA_NOT_UNDERSTOOD = 1003
    #: Data inconsistent with the type of the message (e.g. a text message that
    #: is not UTF-8).
    BAD_DATA = 1007
    #: A message that violates the endpoint's policy (when no other code fits).
    POLICY_VIOLATION = 1008
    #: A message too big to process (lomond's ``max_message_size``).
    MESSAGE_TOO_LARGE = 1009
    #: The client expected an extension that the server did not negotiate.
    EXTENSION_FAILED = 1010
    #: The server met an unexpected condition.
    UNEXPECTED_CONDITION = 1011

    #: The codes that are never valid in a close frame, a ``frozenset``
    #: (0-999, 1004-1006, 1015 and 1016-2999).
    invalid_codes: ClassVar[FrozenSet[int]]


Status.invalid_codes = _invalid_codes()


def is_valid_close_code(code: int) -> bool:
    """Return whether ``code`` may appear in a close frame (RFC 6455 §7.4).

    Valid: 1000-1003, 1007-1014 and 3000-4999. 1014 is registered with IANA ("bad
    gateway"), 1012/1013 likewise; 5000 and above are not defined at all.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999
