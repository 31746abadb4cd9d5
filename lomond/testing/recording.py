"""Recordings of WebSocket sessions: JSON lines that ``lomond URL --record FILE`` writes
and :meth:`lomond.testing.Server.replay` serves again.

The first line describes the file::

    {"format": "lomond-recording", "version": 1, "url": "wss://...", "started": "..."}

Each further line is one step, ``t`` seconds (a float) after the recording started,
``from`` the ``"server"`` or the ``"client"`` where it has a direction:

* ``{"type": "ready", "protocol": ..., "extensions": [...]}``: a connection opened;
  ``{"type": "rejected", "status": 503, "headers": {...}, "reason": ...}``: the
  upgrade was refused.
* ``{"type": "text", "from": ..., "text": ...}``; ``{"type": "binary", "from": ...,
  "data": <base64>}``; ``{"type": "ping" | "pong", "from": "server", "data": <base64>}``.
* ``{"type": "close", "from": ..., "code": 1001, "reason": ...}``: a close frame
  (``code`` is ``null`` for an empty one).
* ``{"type": "protocol_error", "error": ...}``, ``{"type": "unresponsive"}``,
  ``{"type": "connect_fail", "reason": ...}``: what went wrong, as the client saw it.
* ``{"type": "disconnected", "reason": ..., "graceful": ..., "how": ...}``: the end
  of a connection; ``how`` is ``"closed"`` (both close frames exchanged),
  ``"dropped"`` (the server closed the TCP connection without a close handshake),
  ``"reset"`` (the server reset it) or ``"client"`` (the client gave up: a ping or
  close timeout, a protocol error, a forced disconnect).

With ``--persist`` a recording holds several connections, one after the other.
"""

from __future__ import annotations

import base64
import json
import threading
import time

from .. import events

TYPE_CHECKING = False  # typing is not imported at run time
if TYPE_CHECKING:
    from os import PathLike
    from typing import IO, Any, Callable, Dict, List

    Step = Dict[str, Any]

#: The ``format`` of the first line of a recording.
FORMAT = "lomond-recording"
#: The version of the format this lomond writes and reads.
VERSION = 1

_DATA_TYPES = {"binary", "ping", "pong"}


def encode_data(data: bytes) -> str:
    """Bytes as recordings hold them: base64."""
    return base64.b64encode(data).decode("ascii")


def decode_data(text: str) -> bytes:
    """The bytes of a recording's base64 ``data`` field."""
    return base64.b64decode(text.encode("ascii"), validate=True)


def ending(event: events.Disconnected) -> str:
    """How a connection ended, from the client's ``Disconnected`` event (the ``how``)."""
    if event.graceful:
        return "closed"
    reason = event.reason
    if "reset" in reason.lower():
        return "reset"
    if reason.startswith(("connection lost", "connection closed before")):
        return "dropped"
    return "client"


class Recorder:
    """Writes a session as a recording, one line per step, flushed as it goes.

    Give it every event the client's loop yields (:meth:`event`) and what the client
    sends (:meth:`sent`, :meth:`close_requested`, or :meth:`trace` as the
    WebSocket's ``trace``). A thread that sends or closes holds :attr:`lock` around
    the call and its record, so that nothing the call causes is written first.

    Args:
        stream: A text file open for writing.
        url: The URL of the session.
        clock: A monotonic clock in seconds.
    """

    def __init__(
        self, stream: IO[str], url: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stream = stream
        self.clock = clock
        #: Held while a line is written; hold it around a send and its :meth:`sent`
        #: so that no event the send causes is written first.
        self.lock = threading.RLock()
        #: Set by :meth:`close`.
        self.closed = False
        self.start = clock()
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._write({"format": FORMAT, "version": VERSION, "url": url, "started": started})

    def _write(self, line: Dict[str, Any]) -> None:
        with self.lock:
            if self.closed:
                return
            self.stream.write(json.dumps(line, ensure_ascii=False) + "\n")
            self.stream.flush()

    def close(self) -> None:
        """Stop recording: what other threads report afterwards is not written.

        The stream is left open (its owner closes it).
        """
        with self.lock:
            self.closed = True

    def step(self, kind: str, source: str | None = None, **fields: Any) -> None:
        """Write one step of type ``kind`` (from ``source``, if it has a direction),
        stamped with the time since the start."""
        with self.lock:
            line: Dict[str, Any] = {"t": round(self.clock() - self.start, 6), "type": kind}
            if source is not None:
                line["from"] = source
            line.update(fields)
            self._write(line)

    def sent(self, payload: str | bytes) -> None:
        """The client sent a text (``str``) or binary (``bytes``) message."""
        if isinstance(payload, str):
            self.step("text", "client", text=payload)
        else:
            self.step("binary", "client", data=encode_data(payload))

    def close_requested(self, code: int | None, reason: str) -> None:
        """The client started the closing handshake."""
        self.step("close", "client", code=code, reason=reason)

    def trace(self, record: Dict[str, Any]) -> None:
        """A ``WebSocket(trace=...)`` callable: it records the client's close."""
        if record.get("stage") == "close_requested":
            reason = record.get("reason", "")
            if isinstance(reason, (bytes, bytearray)):
                reason = bytes(reason).decode("utf-8", "replace")
            self.close_requested(record.get("code"), str(reason))

    def event(self, event: events.Event) -> None:
        """Record what the client's loop yielded (events without content are skipped)."""
        if isinstance(event, events.Text):
            self.step("text", "server", text=event.text)
        elif isinstance(event, (events.Binary, events.Ping, events.Pong)):
            self.step(event.name, "server", data=encode_data(bytes(event.data)))
        elif isinstance(event, (events.Closing, events.Closed)):
            self.step("close", "server", code=event.code, reason=event.reason)
        elif isinstance(event, events.Ready):
            self.step("ready", protocol=event.protocol, extensions=sorted(event.extensions))
        elif isinstance(event, events.Rejected):
            response = event.response
            headers = dict(response.headers)
            self.step("rejected", status=response.status_code, headers=headers, reason=event.reason)
        elif isinstance(event, events.ProtocolError):
            self.step("protocol_error", error=event.error)
        elif isinstance(event, events.Unresponsive):
            self.step("unresponsive")
        elif isinstance(event, events.ConnectFail):
            self.step("connect_fail", reason=event.reason)
        elif isinstance(event, events.Disconnected):
            how = ending(event)
            self.step("disconnected", reason=event.reason, graceful=event.graceful, how=how)


class Script:
    """The recorded steps of one connection.

    Attributes:
        steps: The steps from the opening of the connection to its end.
        reject: ``(status, headers)`` if the upgrade was refused, else ``None``.
        protocol: The subprotocol the server chose, or ``None``.
        compress: Whether permessage-deflate was on.
    """

    def __init__(self, opening: Step) -> None:
        self.steps: List[Step] = [opening]
        self.reject: tuple[int, list[tuple[str, str]]] | None = None
        self.protocol: str | None = None
        self.compress = False
        if opening["type"] == "rejected":
            headers = [(str(name), str(value)) for name, value in opening["headers"].items()]
            self.reject = int(opening["status"]), headers
        else:
            self.protocol = opening.get("protocol")
            self.compress = "permessage-deflate" in opening.get("extensions", ())


def _check_step(step: Any, where: str) -> Step:
    if not isinstance(step, dict) or not isinstance(step.get("type"), str):
        raise ValueError(f"{where}: a step must be an object with a 'type'")
    if not isinstance(step.get("t"), (int, float)) or isinstance(step.get("t"), bool):
        raise ValueError(f"{where}: a step needs a time offset 't' in seconds")
    kind = step["type"]
    if kind in ("text", "binary", "ping", "pong", "close") and step.get("from") not in (
        "server",
        "client",
    ):
        raise ValueError(f"{where}: a {kind} step needs 'from': 'server' or 'client'")
    if kind == "text" and not isinstance(step.get("text"), str):
        raise ValueError(f"{where}: a text step needs 'text'")
    if kind in _DATA_TYPES:
        try:
            step["data"] = decode_data(step.get("data", ""))
        except (ValueError, AttributeError, TypeError):
            raise ValueError(f"{where}: 'data' must be base64") from None
    if kind == "rejected" and not (
        isinstance(step.get("status"), int) and isinstance(step.get("headers"), dict)
    ):
        raise ValueError(f"{where}: a rejected step needs 'status' and 'headers'")
    return step


def parse_recording(lines: List[str], name: str = "<recording>") -> List[Script]:
    """Return the connections of a recording (its lines), one :class:`Script` each.

    Raises:
        ValueError: A line is not JSON, the first line is not a lomond recording
            of a version this lomond reads, or a step lacks what its type needs.
    """
    parsed = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            parsed.append((f"{name}:{number}", json.loads(line)))
        except ValueError as error:
            raise ValueError(f"{name}:{number}: not JSON ({error})") from None
    if not parsed or not isinstance(parsed[0][1], dict) or parsed[0][1].get("format") != FORMAT:
        raise ValueError(f"{name}: not a lomond recording (no 'format': '{FORMAT}' line)")
    version = parsed[0][1].get("version")
    if version != VERSION:
        raise ValueError(f"{name}: recording version {version!r}; this lomond reads {VERSION}")
    scripts: List[Script] = []
    for where, step in parsed[1:]:
        step = _check_step(step, where)
        if step["type"] in ("ready", "rejected"):
            scripts.append(Script(step))
        elif scripts and step["type"] != "connect_fail":
            scripts[-1].steps.append(step)
    return scripts


def read_recording(path: str | PathLike[str]) -> List[Script]:
    """Read the recording at ``path`` (see :func:`parse_recording`).

    Raises:
        OSError: The file cannot be read.
        ValueError: It is not a valid recording.
    """
    with open(path, encoding="utf-8") as file:
        return parse_recording(file.readlines(), str(path))
