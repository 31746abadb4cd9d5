"""Terminal output for the command line: one line per event, and how a run ended.

:class:`EventPrinter` writes each event either as a human-readable line (coloured
when asked to) or as a JSON object per line. :class:`Outcome` watches the same
events and decides the exit status and the one-line reason for a failure.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any, TextIO

from .. import events
from ..response import Response

#: Events without content, left out of the output (see the CLI docs).
HIDDEN_EVENTS = frozenset({"poll"})
#: Binary payloads longer than this are shortened in human-readable lines.
BINARY_PREVIEW = 64
#: The width of the event name column (``protocol_error`` is the longest name).
NAME_WIDTH = 14

_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_COLOURS = {
    "connecting": "\x1b[2m",
    "connected": "\x1b[32m",
    "ready": "\x1b[1;32m",
    "text": "\x1b[36m",
    "binary": "\x1b[36m",
    "ping": "\x1b[35m",
    "pong": "\x1b[35m",
    "closing": "\x1b[33m",
    "closed": "\x1b[33m",
    "back_off": "\x1b[33m",
    "connect_fail": "\x1b[1;31m",
    "rejected": "\x1b[1;31m",
    "redirected": "\x1b[33m",
    "protocol_error": "\x1b[1;31m",
    "unresponsive": "\x1b[1;31m",
}
_GRACEFUL = "\x1b[33m"
_FAILED = "\x1b[1;31m"


def _close_code(code: int | None) -> str:
    return "no code" if code is None else str(code)


def describe(event: events.Event) -> str:
    """Return the human-readable detail of ``event`` (what follows its name)."""
    if isinstance(event, (events.Connecting, events.Connected)):
        via = f" via {event.proxy}" if isinstance(event, events.Connected) and event.proxy else ""
        return f"{event.url}{via}"
    if isinstance(event, events.ConnectFail):
        return event.reason
    if isinstance(event, events.Rejected):
        return event.reason
    if isinstance(event, events.Redirected):
        return f"{event.response.status_code} {event.response.status} to {event.url}"
    if isinstance(event, events.Ready):
        protocol = event.protocol or "-"
        extensions = ", ".join(sorted(event.extensions)) or "-"
        return f"protocol={protocol} extensions={extensions}"
    if isinstance(event, events.ProtocolError):
        return f"{event.error} (critical)" if event.critical else event.error
    if isinstance(event, events.Disconnected):
        return f"{event.reason} ({'graceful' if event.graceful else 'not graceful'})"
    if isinstance(event, (events.Closed, events.Closing)):
        return f"{_close_code(event.code)} {event.reason!r}"
    if isinstance(event, (events.Ping, events.Pong)):
        return repr(event.data)
    if isinstance(event, events.Text):
        return repr(event.text)
    if isinstance(event, events.Binary):
        data = event.data
        if len(data) > BINARY_PREVIEW:
            return f"{data[:BINARY_PREVIEW]!r}... ({len(data)} bytes)"
        return f"{data!r} ({len(data)} bytes)"
    if isinstance(event, events.BackOff):
        return f"reconnecting in {event.delay:.1f}s"
    return repr(event)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Response):
        return {
            "status_code": value.status_code,
            "status": value.status,
            "headers": dict(value.headers),
        }
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(item) for item in value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return repr(value)


def event_fields(event: events.Event) -> dict[str, Any]:
    """Return ``event`` as a JSON-ready dict: ``name``, ``received_time``, its fields.

    Fields are the event's public slots; bytes become base64 text, a
    :class:`~lomond.response.Response` becomes its status and headers, and a set a
    sorted list. Events added in future versions are handled the same way.
    """
    fields: dict[str, Any] = {"name": event.name, "received_time": event.received_time}
    for cls in reversed(type(event).__mro__):
        for slot in cls.__dict__.get("__slots__", ()):
            if slot.startswith("_") or slot == "received_time":
                continue
            fields[slot] = _jsonable(getattr(event, slot, None))
    return fields


class EventPrinter:
    """Writes events to ``stream``, one line each.

    Args:
        stream: Where to write (normally ``sys.stdout``).
        as_json: Write JSON lines instead of human-readable ones.
        colour: Colour the human-readable lines with ANSI escapes.
    """

    def __init__(self, stream: TextIO, *, as_json: bool = False, colour: bool = False) -> None:
        self.stream = stream
        self.as_json = as_json
        self.colour = colour

    def event(self, event: events.Event) -> None:
        """Write one event (events in :data:`HIDDEN_EVENTS` are skipped)."""
        if event.name in HIDDEN_EVENTS:
            return
        if self.as_json:
            self._write(json.dumps(event_fields(event)))
            return
        seconds, milliseconds = divmod(round(event.received_time * 1000), 1000)
        clock = f"{time.strftime('%H:%M:%S', time.localtime(seconds))}.{milliseconds:03d}"
        name = event.name.ljust(NAME_WIDTH)
        if self.colour:
            colour = _COLOURS.get(event.name, "")
            if isinstance(event, events.Disconnected):
                colour = _GRACEFUL if event.graceful else _FAILED
            clock = f"{_DIM}{clock}{_RESET}"
            name = f"{colour}{name}{_RESET}" if colour else name
        self._write(f"{clock} {name} {describe(event)}".rstrip())

    def note(self, text: str, *, indent: bool = True) -> None:
        """Write a comment line between events (human-readable output only).

        With ``indent``, the line starts in the event name column.
        """
        if self.as_json:
            return
        line = f"{' ' * 13}{text}" if indent else text
        self._write(f"{_DIM}{line}{_RESET}" if self.colour else line)

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


class Outcome:
    """Follows the events of a run and decides how it ended.

    A run succeeds when its last connection ended with both close frames exchanged
    (``Disconnected(graceful=True)``) and nothing went wrong before: a rejection is
    graceful too, yet a failure.
    """

    def __init__(self) -> None:
        #: Why the run failed, or ``None`` while it has not.
        self.failure: str | None = None
        #: Whether a connection has ended gracefully.
        self.graceful = False
        #: Why the caller gave up on the run (kept across reconnections).
        self.abandoned: str | None = None

    def observe(self, event: events.Event) -> None:
        """Take note of one event."""
        if isinstance(event, events.Connecting):
            self.failure = None
            self.graceful = False
        elif isinstance(event, events.ConnectFail):
            self._fail(f"could not connect: {event.reason}")
        elif isinstance(event, events.Rejected):
            self._fail(f"rejected: {event.reason}")
        elif isinstance(event, events.ProtocolError):
            self._fail(f"protocol error: {event.error}")
        elif isinstance(event, events.Unresponsive):
            self._fail("server unresponsive (no pong within the ping timeout)")
        elif isinstance(event, events.Disconnected):
            self.graceful = event.graceful
            if not event.graceful:
                self._fail(f"disconnected: {event.reason}")

    def abandon(self, reason: str) -> None:
        """Mark the run failed for a reason of the caller's (a timeout, say)."""
        self.abandoned = reason

    def _fail(self, reason: str) -> None:
        # The first failure of a connection is the cause; the rest follow from it.
        if self.failure is None:
            self.failure = reason

    @property
    def exit_status(self) -> int:
        """``0`` for a graceful close, ``1`` for anything else."""
        if self.abandoned is not None or self.failure is not None:
            return 1
        return 0 if self.graceful else 1

    @property
    def reason(self) -> str:
        """Why the run failed, in one line."""
        return self.abandoned or self.failure or "the connection ended before it was closed"
