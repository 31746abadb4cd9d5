"""Trace records: ``WebSocket(trace=callable)`` receives one dict per step of a connection.

A :class:`Tracer` passes records to the callable; the shell emits the socket and
handshake steps itself, and :func:`event_record` maps yielded events to their
``message_*``, ``handshake_*`` and ``disconnected`` records.
"""

from __future__ import annotations

from .. import events
from .._logging import log

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Tuple

    TraceRecord = Tuple[str, Dict[str, Any]]
    #: Receives one dict per step of a connection (the trace records of the
    #: troubleshooting page).
    TraceCallable = Callable[[Dict[str, Any]], None]


class Tracer:
    """Passes trace records for ``url`` to ``callback``.

    Every record is ``{"stage": ..., "url": url, **fields}``; ``url`` carries no
    credentials. An exception raised by ``callback`` is logged and otherwise ignored.
    """

    def __init__(self, url: str, callback: TraceCallable) -> None:
        self.url = url
        self.callback = callback

    def __call__(self, stage: str, **fields: Any) -> None:
        record: dict[str, Any] = {"stage": stage, "url": self.url}
        record.update(fields)
        try:
            self.callback(record)
        except Exception:
            log.exception("trace callable raised an exception (ignored)")


def _message(stage: str) -> Callable[[Any], TraceRecord]:
    def record(event: Any) -> TraceRecord:
        payload = event.text if stage == "message_text" else event.data
        return stage, {"length": len(payload)}

    return record


_RECORDS: dict[type, Callable[[Any], TraceRecord]] = {
    events.Text: _message("message_text"),
    events.Binary: _message("message_binary"),
    events.Ping: _message("message_ping"),
    events.Pong: _message("message_pong"),
    events.Closing: lambda event: ("message_close", {"code": event.code, "reason": event.reason}),
    events.Closed: lambda event: ("message_close", {"code": event.code, "reason": event.reason}),
    events.Ready: lambda event: (
        "handshake_ready",
        {"protocol": event.protocol, "extensions": sorted(event.extensions)},
    ),
    events.Rejected: lambda event: (
        "handshake_rejected",
        {"reason": event.reason, "status_code": event.response.status_code},
    ),
    events.Redirected: lambda event: (
        "redirected",
        {"status_code": event.response.status_code, "location": event.url},
    ),
    events.Disconnected: lambda event: (
        "disconnected",
        {"reason": event.reason, "graceful": event.graceful},
    ),
}


def event_record(event: events.Event) -> TraceRecord | None:
    """Return the ``(stage, fields)`` trace record for ``event``, or ``None``."""
    make = _RECORDS.get(type(event))
    return None if make is None else make(event)


def note(event: events.Event, url: str, tracer: Tracer | None) -> None:
    """Log ``event`` (what needs it), and pass its trace record to ``tracer``."""
    if isinstance(event, events.ProtocolError):
        log.warning("protocol error: %s (critical=%s)", event.error, event.critical)
    elif isinstance(event, events.Rejected):
        log.info("upgrade rejected: %s", event.reason)
    elif isinstance(event, events.Redirected):
        log.info("upgrade redirected (%s) to %s", event.response.status_code, event.url)
    elif isinstance(event, events.Ready):
        extensions = ", ".join(sorted(event.extensions)) or "none"
        protocol = event.protocol or "none"
        log.info("upgrade accepted by %s (protocol %s, extensions %s)", url, protocol, extensions)
    elif isinstance(event, events.Closing):
        log.info("the server started the closing handshake: %s %r", event.code, event.reason)
    elif isinstance(event, events.Closed):
        log.info("closing handshake complete: %s %r", event.code, event.reason)
    elif isinstance(event, events.Disconnected):
        log.info("disconnected: %s (graceful=%s)", event.reason, event.graceful)
    if tracer is not None:
        record = event_record(event)
        if record is not None:
            stage, fields = record
            tracer(stage, **fields)
