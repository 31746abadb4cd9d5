"""The events that :meth:`lomond.websocket.WebSocket.connect` yields.

Every event has a ``name`` (a class attribute, for ``if event.name == "text":``
dispatch) and ``received_time``, the wall-clock time (:func:`time.time`) it was
created. Every constructor takes ``received_time`` as its last, optional argument:
lomond passes the time the bytes were read, so that the events of one read share
it. New event types may be added in future versions; code should ignore the names
it does not know.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Any, ClassVar

    from .response import Response

_SUMMARY_LENGTH = 24
#: The clock of ``received_time``.
_now = time.time


def _summarize_text(text: str) -> str:
    if len(text) > _SUMMARY_LENGTH:
        return f"{text[:_SUMMARY_LENGTH]!r} + {len(text) - _SUMMARY_LENGTH} chars"
    return repr(text)


def _summarize_bytes(data: bytes) -> str:
    if len(data) > _SUMMARY_LENGTH:
        return f"{data[:_SUMMARY_LENGTH]!r} + {len(data) - _SUMMARY_LENGTH} bytes"
    return repr(data)


class Event:
    """Base class of all events.

    Attributes:
        name (str): The event's name, a class attribute of each subclass (``"text"``,
            ``"ready"``, ...): compare it to dispatch on the kind of event.
        received_time (float): When the event was created, as :func:`time.time`
            (or as given to the constructor).
    """

    __slots__ = ("received_time",)
    name: ClassVar[str]

    def __init__(self, received_time: float | None = None) -> None:
        self.received_time: float = _now() if received_time is None else received_time

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Poll(Event):
    """Yielded right after :class:`Ready`, then every ``poll`` seconds."""

    __slots__ = ()
    name = "poll"


class Connecting(Event):
    """The first event: lomond is about to open the connection to ``url``.

    Attributes:
        url (str): The WebSocket URL, without credentials.
    """

    __slots__ = ("url",)
    name = "connecting"

    def __init__(self, url: str, received_time: float | None = None) -> None:
        self.url = url
        super().__init__(received_time)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url='{self.url}')"


class ConnectFail(Event):
    """The connection could not be opened; ``reason`` says why. The last event.

    Attributes:
        reason (str): What failed, as a sentence, e.g.
            ``"connection refused by 127.0.0.1:9"``.
    """

    __slots__ = ("reason",)
    name = "connect_fail"

    def __init__(self, reason: str, received_time: float | None = None) -> None:
        self.reason = reason
        super().__init__(received_time)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason='{self.reason}')"


class Connected(Event):
    """The socket is open and the upgrade request was sent.

    Attributes:
        url (str): The WebSocket URL, without credentials.
        proxy (str | None): The proxy URL (without credentials) when one is used.
    """

    __slots__ = ("url", "proxy")
    name = "connected"

    def __init__(
        self, url: str, proxy: str | None = None, received_time: float | None = None
    ) -> None:
        self.url = url
        self.proxy = proxy
        super().__init__(received_time)

    def __repr__(self) -> str:
        if self.proxy is None:
            return f"{type(self).__name__}(url='{self.url}')"
        return f"{type(self).__name__}(url='{self.url}', proxy='{self.proxy}')"


class Rejected(Event):
    """The server did not accept the upgrade; ``reason`` says why.

    Followed by ``Disconnected(graceful=True)``.

    Attributes:
        response (Response): The server's :class:`~lomond.response.Response`
            (status, headers; the body is not read).
        reason (str): Why the response is not a valid upgrade.
    """

    __slots__ = ("response", "reason")
    name = "rejected"

    def __init__(self, response: Response, reason: str, received_time: float | None = None) -> None:
        self.response = response
        self.reason = reason
        super().__init__(received_time)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(response={self.response!r}, reason='{self.reason}')"


class Redirected(Event):
    """The server redirected the upgrade request; lomond follows to ``url``.

    lomond has closed the connection that was redirected; the next event is the
    :class:`Connected` of the new URL (or :class:`Disconnected`, if it cannot be
    opened). Only with ``WebSocket(max_redirects=...)`` above ``0`` (the default
    is ``10``); a redirect that is not followed is :class:`Rejected`.

    Attributes:
        response (Response): The redirect :class:`~lomond.response.Response`
            (``301``, ``302``, ``303``, ``307`` or ``308``, with its ``Location``).
        url (str): The URL lomond connects to next, absolute and without
            credentials.
    """

    __slots__ = ("response", "url")
    name = "redirected"

    def __init__(self, response: Response, url: str, received_time: float | None = None) -> None:
        self.response = response
        self.url = url
        super().__init__(received_time)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(response={self.response!r}, url='{self.url}')"


class Ready(Event):
    """The WebSocket is open: messages may be sent.

    Attributes:
        response (Response): The server's ``101`` :class:`~lomond.response.Response`.
        protocol (str | None): The subprotocol the server chose, or ``None``.
        extensions (set[str]): The names of the extensions in use, e.g.
            ``{'permessage-deflate'}``, or an empty set.
    """

    __slots__ = ("response", "protocol", "extensions")
    name = "ready"

    def __init__(
        self,
        response: Response,
        protocol: str | None,
        extensions: set[str],
        received_time: float | None = None,
    ) -> None:
        self.response = response
        self.protocol = protocol
        self.extensions = extensions
        super().__init__(received_time)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(response={self.response!r}, "
            f"protocol={self.protocol!r}, extensions={self.extensions!r})"
        )


class ProtocolError(Event):
    """The server broke the protocol; the connection is being failed.

    Attributes:
        error (str): What the server did wrong.
        critical (bool): ``True`` when no close frame could be sent (ours was already
            out); ``False`` when lomond sent one with code 1002, 1007 or 1009.
    """

    __slots__ = ("error", "critical")
    name = "protocol_error"

    def __init__(self, error: str, critical: bool, received_time: float | None = None) -> None:
        self.error = error
        self.critical = critical
        super().__init__(received_time)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(error='{self.error}', critical={self.critical!r})"


class Unresponsive(Event):
    """No pong arrived within ``ping_timeout`` seconds; the connection is dropped."""

    __slots__ = ()
    name = "unresponsive"


class Disconnected(Event):
    """The connection is closed: always the last event once ``Connected`` was yielded.

    Attributes:
        reason (str): ``"closed"`` after a graceful close, else what ended the
            connection, e.g. ``"connection lost"``.
        graceful (bool): ``True`` only when both close frames were exchanged, or after
            :class:`Rejected`.
    """

    __slots__ = ("reason", "graceful")
    name = "disconnected"

    def __init__(
        self, reason: str = "closed", graceful: bool = False, received_time: float | None = None
    ) -> None:
        self.reason = reason
        self.graceful = graceful
        super().__init__(received_time)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason='{self.reason}', graceful={self.graceful!r})"


class _CloseEvent(Event):
    """Shared shape of :class:`Closed` and :class:`Closing`."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int | None, reason: str, received_time: float | None = None) -> None:
        self.code = code
        self.reason = reason
        super().__init__(received_time)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, reason={self.reason!r})"


class Closed(_CloseEvent):
    """The server answered our close frame: ``code`` and ``reason`` are the server's.

    Attributes:
        code (int | None): The server's close code, ``None`` when its close frame had
            no payload.
        reason (str): The server's close reason (may be empty).
    """

    __slots__ = ()
    name = "closed"


class Closing(_CloseEvent):
    """The server started the closing handshake; lomond echoes it after this event.

    Messages may still be sent while handling this event.

    Attributes:
        code (int | None): The server's close code, ``None`` when its close frame had
            no payload.
        reason (str): The server's close reason (may be empty).
    """

    __slots__ = ()
    name = "closing"


class UnknownMessage(Event):
    """Never yielded: kept so that code written for lomond 0.3, which may test for it,
    runs. A frame with an opcode lomond does not know fails the connection instead
    (``ProtocolError``, close code 1002: RFC 6455 §5.2 reserves those opcodes).

    Attributes:
        message (Any): The message.
    """

    __slots__ = ("message",)
    name = "unknown"

    def __init__(self, message: Any, received_time: float | None = None) -> None:
        self.message = message
        super().__init__(received_time)


class _ControlEvent(Event):
    """Shared shape of :class:`Ping` and :class:`Pong`."""

    __slots__ = ("data",)

    def __init__(self, data: bytes, received_time: float | None = None) -> None:
        self.data = data
        super().__init__(received_time)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(data={self.data!r})"


class Ping(_ControlEvent):
    """The server sent a ping; with ``auto_pong`` the pong was sent before this event.

    Attributes:
        data (bytes): The ping's payload (at most 125 bytes).
    """

    __slots__ = ()
    name = "ping"


class Pong(_ControlEvent):
    """The server sent a pong.

    Attributes:
        data (bytes): The pong's payload (at most 125 bytes).
    """

    __slots__ = ()
    name = "pong"


class Text(Event):
    """A text message. ``json`` parses it as JSON (once; the result is cached).

    Attributes:
        text (str): The message.
    """

    __slots__ = ("text", "_json")
    name = "text"

    def __init__(self, text: str, received_time: float | None = None) -> None:
        self.text = text
        self._json: Any = _UNPARSED
        # As Event.__init__ does; inline, as messages are the events made by the
        # hundred thousand.
        self.received_time = _now() if received_time is None else received_time

    @property
    def json(self) -> Any:
        """The text parsed with :func:`json.loads` (raises what it raises)."""
        if self._json is _UNPARSED:
            import json  # imported on first use: most programs never need it

            self._json = json.loads(self.text)
        return self._json

    def __repr__(self) -> str:
        return f"{type(self).__name__}(text={_summarize_text(self.text)})"


class Binary(Event):
    """A binary message.

    Attributes:
        data (bytes): The message.
    """

    __slots__ = ("data",)
    name = "binary"

    def __init__(self, data: bytes, received_time: float | None = None) -> None:
        self.data = data
        self.received_time = _now() if received_time is None else received_time  # as in Text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(data={_summarize_bytes(self.data)})"


class BinaryPart(Event):
    """A piece of a binary message, with ``connect(stream=True)``.

    A streamed message arrives as one or more parts, in order, as its bytes arrive;
    the last has ``final`` set. See the :doc:`/streaming` page.

    Attributes:
        data (bytes): The part's bytes (possibly empty in the final part).
        final (bool): Whether this part ends the message.
    """

    __slots__ = ("data", "final")
    name = "binary_part"

    def __init__(self, data: bytes, final: bool, received_time: float | None = None) -> None:
        self.data = data
        self.final = final
        self.received_time = _now() if received_time is None else received_time  # as in Text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(data={_summarize_bytes(self.data)}, final={self.final!r})"


class TextPart(Event):
    """A piece of a text message, with ``connect(stream=True)``.

    A streamed message arrives as one or more parts, in order, as its bytes arrive;
    the last has ``final`` set. A part always holds whole characters: a character
    whose bytes are split between frames or reads comes whole in a later part.

    Attributes:
        text (str): The part's text (possibly empty in the final part).
        final (bool): Whether this part ends the message.
    """

    __slots__ = ("text", "final")
    name = "text_part"

    def __init__(self, text: str, final: bool, received_time: float | None = None) -> None:
        self.text = text
        self.final = final
        self.received_time = _now() if received_time is None else received_time  # as in Text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(text={_summarize_text(self.text)}, final={self.final!r})"


class BackOff(Event):
    """Yielded by :func:`~lomond.persist.persist` before waiting ``delay`` seconds.

    Attributes:
        delay (float): The seconds :func:`~lomond.persist.persist` waits before the
            next attempt.
    """

    __slots__ = ("delay",)
    name = "back_off"

    def __init__(self, delay: float, received_time: float | None = None) -> None:
        self.delay = delay
        super().__init__(received_time)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(delay={self.delay:0.1f})"


_UNPARSED: Any = object()
