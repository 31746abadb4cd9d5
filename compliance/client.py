"""Autobahn|Testsuite fuzzingserver client for lomond.

Written only against lomond's public API (``WebSocket``, ``connect()``, the
event ``name`` attribute, ``send_text``, ``send_binary`` and ``close``), so it
measures the library the way an application would use it.

``compliance/run.py`` starts this script in a subprocess; it can also be run by
hand against a fuzzingserver that is already listening::

    python compliance/client.py ws://127.0.0.1:9001 --log outcomes.jsonl

For every case the server offers it connects to ``/runCase?case=N&agent=...``
and echoes each text message with ``send_text`` and each binary message with
``send_binary``, then asks the server to write its reports
(``/updateReports``). A case that fails, hangs or raises never stops the run:
the case is abandoned after ``--case-timeout`` seconds and the next one starts.

One line per case goes to stdout; ``--log`` also writes one JSON object per
case (what lomond did, as seen from the client) for ``run.py`` to merge into
its report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO
from urllib.parse import quote

from lomond import WebSocket

#: Events kept verbatim in the per-case log (the interesting ones).
NOTABLE_EVENTS = frozenset(
    {
        "connect_fail",
        "rejected",
        "protocol_error",
        "unresponsive",
        "closing",
        "closed",
        "disconnected",
        "unknown",
    }
)


@dataclass
class Outcome:
    """What happened on one WebSocket session, seen from the client."""

    resource: str
    events: list[str] = field(default_factory=list)
    texts: int = 0
    binaries: int = 0
    send_errors: list[str] = field(default_factory=list)
    exception: str | None = None
    timed_out: bool = False
    abandoned: bool = False
    duration: float = 0.0
    #: Text messages received (only kept for control sessions).
    received_texts: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One human-readable line: what ended the session and how."""
        parts = [
            f"{self.duration:.2f}s",
            f"echoed text={self.texts} binary={self.binaries}",
        ]
        if self.events:
            parts.append(" ".join(self.events[-3:]))
        if self.send_errors:
            parts.append(f"send errors: {self.send_errors[0]} (x{len(self.send_errors)})")
        if self.timed_out:
            parts.append("TIMED OUT (client called close())")
        if self.abandoned:
            parts.append("ABANDONED (loop did not end after close)")
        if self.exception:
            parts.append(f"EXCEPTION {self.exception}")
        return "; ".join(parts)


def describe_event(event: object) -> str:
    """Describe a notable event briefly, for the log."""
    name = getattr(event, "name", type(event).__name__)
    details = []
    for attribute in ("reason", "code", "error", "critical", "graceful"):
        if hasattr(event, attribute):
            details.append(f"{attribute}={getattr(event, attribute)!r}")
    return f"{name}({', '.join(details)})"


def run_session(
    url: str,
    resource: str,
    *,
    compress: bool,
    echo: bool,
    poll: float,
    close_timeout: float,
    session_timeout: float,
    stream: bool = False,
) -> Outcome:
    """Connect to ``url + resource`` and drive the event loop to its end.

    Echoes data messages when ``echo`` is true, otherwise records received
    text. Never raises: lomond exceptions are recorded in the outcome. After
    ``session_timeout`` seconds the client calls ``close()``; if the loop still
    runs ``close_timeout + 5`` seconds later it is abandoned (leaving the loop
    closes the socket).

    With ``stream``, messages are received as parts (``connect(stream=True)``) and
    each is echoed, once its last part came, as a streamed send of its parts (one
    fragment each).
    """
    outcome = Outcome(resource=resource)
    started = time.monotonic()
    deadline = started + session_timeout
    abandon_at: float | None = None
    try:
        websocket = WebSocket(url + resource, compress=compress)
        options = {"stream": True} if stream else {}
        events = websocket.connect(poll=poll, ping_rate=0, close_timeout=close_timeout, **options)
        parts: list[Any] = []
        for event in events:
            name = getattr(event, "name", "?")
            if name in ("text_part", "binary_part"):
                parts.append(event.text if name == "text_part" else event.data)
                if event.final:
                    if not echo:
                        if name == "text_part":
                            outcome.received_texts.append("".join(parts))
                    elif name == "text_part":
                        outcome.texts += 1
                        send(outcome, websocket.send_text, parts)
                    else:
                        outcome.binaries += 1
                        send(outcome, websocket.send_binary, parts)
                    parts = []
            elif name == "text":
                if echo:
                    outcome.texts += 1
                    send(outcome, websocket.send_text, event.text)
                else:
                    outcome.received_texts.append(event.text)
            elif name == "binary":
                if echo:
                    outcome.binaries += 1
                    send(outcome, websocket.send_binary, event.data)
            elif name in NOTABLE_EVENTS:
                outcome.events.append(describe_event(event))
            now = time.monotonic()
            if abandon_at is None and now > deadline:
                outcome.timed_out = True
                abandon_at = now + close_timeout + 5.0
                try:
                    websocket.close()
                except Exception as error:  # noqa: BLE001 - record, keep going
                    outcome.send_errors.append(f"close(): {error!r}")
            elif abandon_at is not None and now > abandon_at:
                outcome.abandoned = True
                break
    except Exception as error:  # noqa: BLE001 - a lomond bug must not stop the run
        where = traceback.extract_tb(error.__traceback__)[-1]
        outcome.exception = f"{error!r} at {where.filename}:{where.lineno}"
    outcome.duration = time.monotonic() - started
    return outcome


def send(outcome: Outcome, sender: Callable[[Any], object], payload: object) -> None:
    """Call one ``send_*`` method, recording (not raising) any exception."""
    try:
        sender(payload)
    except Exception as error:  # noqa: BLE001 - record, keep going
        outcome.send_errors.append(repr(error))


def control_text(url: str, resource: str, options: argparse.Namespace) -> str | None:
    """Fetch the single text message a control resource answers with."""
    outcome = run_session(
        url,
        resource,
        compress=False,
        echo=False,
        poll=options.poll,
        close_timeout=options.close_timeout,
        session_timeout=options.control_timeout,
    )
    if outcome.received_texts:
        return outcome.received_texts[0]
    print(f"control session {resource} gave no text: {outcome.summary()}", file=sys.stderr)
    return None


def write_log(log: TextIO | None, record: dict[str, Any]) -> None:
    """Append one JSON line to the outcome log, if there is one."""
    if log is not None:
        log.write(json.dumps(record) + "\n")
        log.flush()


def main(argv: list[str] | None = None) -> int:
    """Run every case the fuzzingserver offers; exit 0 when reports were written."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="fuzzingserver base URL, e.g. ws://127.0.0.1:9001")
    parser.add_argument("--agent", default="lomond", help="agent name in the reports")
    parser.add_argument(
        "--no-compress",
        dest="compress",
        action="store_false",
        help="do not offer permessage-deflate (cases 12/13 then report UNIMPLEMENTED)",
    )
    parser.add_argument("--poll", type=float, default=1.0, help="poll interval (s)")
    parser.add_argument("--close-timeout", type=float, default=10.0, help="close_timeout (s)")
    parser.add_argument(
        "--case-timeout",
        type=float,
        default=120.0,
        help="give up on a case after this (s)",
    )
    parser.add_argument(
        "--control-timeout",
        type=float,
        default=30.0,
        help="timeout for getCaseCount/getCaseInfo/updateReports (s)",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="receive messages as parts (connect(stream=True)) and echo them streamed",
    )
    parser.add_argument("--log", help="write one JSON line per case to this file")
    options = parser.parse_args(argv)
    url = options.url.rstrip("/")
    agent = quote(options.agent, safe="")

    count_text = control_text(url, "/getCaseCount", options)
    if count_text is None:
        print("could not get the case count from the fuzzingserver", file=sys.stderr)
        return 2
    case_count = int(json.loads(count_text))
    print(f"{case_count} cases, compress={options.compress}, stream={options.stream}", flush=True)

    log = open(options.log, "w", encoding="utf-8") if options.log else None  # noqa: SIM115
    try:
        for number in range(1, case_count + 1):
            info_text = control_text(url, f"/getCaseInfo?case={number}", options)
            case_id = str(json.loads(info_text)["id"]) if info_text else f"#{number}"
            outcome = run_session(
                url,
                f"/runCase?case={number}&agent={agent}",
                compress=options.compress,
                echo=True,
                poll=options.poll,
                close_timeout=options.close_timeout,
                session_timeout=options.case_timeout,
                stream=options.stream,
            )
            print(f"[{number}/{case_count}] {case_id}: {outcome.summary()}", flush=True)
            record = asdict(outcome)
            del record["received_texts"]
            write_log(log, {"number": number, "id": case_id, **record})
    finally:
        if log is not None:
            log.close()

    update = run_session(
        url,
        f"/updateReports?agent={agent}",
        compress=False,
        echo=False,
        poll=options.poll,
        close_timeout=options.close_timeout,
        session_timeout=options.control_timeout,
    )
    print(f"updateReports: {update.summary()}", flush=True)
    return 0 if update.exception is None and not update.timed_out else 3


if __name__ == "__main__":
    sys.exit(main())
