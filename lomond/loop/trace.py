"""Trace records: which record each event produces.

``WebSocket(trace=callable)`` receives one dict per step of a connection. The shell
emits the socket and handshake steps itself; this module maps yielded events to
their ``message_*``, ``handshake_*`` and ``disconnected`` records.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

from .. import events

TraceRecord = Tuple[str, Dict[str, Any]]


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
    events.Disconnected: lambda event: (
        "disconnected",
        {"reason": event.reason, "graceful": event.graceful},
    ),
}


def event_record(event: events.Event) -> TraceRecord | None:
    """Return the ``(stage, fields)`` trace record for ``event``, or ``None``."""
    make = _RECORDS.get(type(event))
    return None if make is None else make(event)
