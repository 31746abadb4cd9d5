"""The exceptions lomond raises.

Only this tree reaches user code, plus the built-in :class:`TypeError` and
:class:`ValueError` for invalid arguments::

    WebSocketError
    ├── FrameBuildError            a frame could not be built (payload too large)
    ├── HandshakeError             the server's upgrade response was not acceptable
    │   └── CompressionParameterError
    ├── ProtocolError              the server broke RFC 6455 (close code 1002/1007/1009)
    │   └── PayloadTooLarge        a message exceeded ``max_message_size`` (1009)
    ├── CriticalProtocolError      never raised (kept for code written for lomond 0.3)
    ├── ConnectFail                the connection could not be opened
    ├── TransportFail              the socket failed while sending
    └── WebSocketUnavailable       sending when not connected
        ├── WebSocketClosed        ... after the connection closed
        └── WebSocketClosing       ... after the closing handshake started

Protocol and handshake errors never escape the event loop: they become
:class:`~lomond.events.ProtocolError` and :class:`~lomond.events.Rejected` events.
"""

from __future__ import annotations

from .status import Status


class WebSocketError(Exception):
    """Base class for every lomond exception."""


class FrameBuildError(WebSocketError):
    """A frame could not be built from the given payload."""


class HandshakeError(WebSocketError):
    """The server's response to the upgrade request was not a valid WebSocket upgrade."""


class CompressionParameterError(HandshakeError):
    """The server's permessage-deflate parameters are invalid (RFC 7692 §7)."""


class ProtocolError(WebSocketError):
    """The server broke the WebSocket protocol.

    Args:
        message: What the server did wrong.
        code: The close code to fail the connection with (RFC 6455 §7.4.1).
    """

    default_code = Status.PROTOCOL_ERROR

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code: int = self.default_code if code is None else code


class PayloadTooLarge(ProtocolError):
    """A frame or message is larger than lomond accepts."""

    default_code = Status.MESSAGE_TOO_LARGE


class CriticalProtocolError(WebSocketError):
    """Never raised: kept so that code written for lomond 0.3, which may catch it, runs.

    A stream broken beyond the point where a close frame can be sent is reported as
    ``ProtocolError(critical=True)`` (an event), not as an exception.
    """


class ConnectFail(WebSocketError):
    """The connection (DNS, TCP, proxy or TLS) could not be opened."""


class TransportFail(WebSocketError):
    """The socket failed while sending."""


class WebSocketUnavailable(WebSocketError):
    """The WebSocket is not connected, so nothing can be sent."""


class WebSocketClosed(WebSocketUnavailable):
    """The WebSocket has closed, so nothing can be sent."""


class WebSocketClosing(WebSocketUnavailable):
    """The closing handshake has started, so no more data can be sent."""
