"""The command line's output: event lines, JSON lines, and the exit status."""

from __future__ import annotations

import base64
import io
import json
from typing import ClassVar

import pytest

from lomond import events
from lomond.cli.console import EventPrinter, Outcome, describe, event_fields
from lomond.response import Response

RESPONSE = Response(
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
)
REJECTION = Response(b"HTTP/1.1 403 Forbidden\r\nRetry-After: 5\r\n\r\n")
# 2026-01-02 03:04:05.678 UTC; lines show local time, so only the fraction is checked.
WHEN = 1767323045.678


def at(event: events.Event) -> events.Event:
    event.received_time = WHEN
    return event


class TestDescribe:
    """One human-readable detail per event type."""

    @pytest.mark.parametrize(
        ("event", "detail"),
        [
            (events.Connecting("ws://h/"), "ws://h/"),
            (events.Connected("ws://h/"), "ws://h/"),
            (events.Connected("ws://h/", proxy="http://p:1"), "ws://h/ via http://p:1"),
            (events.ConnectFail("connection refused by h:1"), "connection refused by h:1"),
            (events.Rejected(REJECTION, "server said no"), "server said no"),
            (events.Ready(RESPONSE, None, set()), "protocol=- extensions=-"),
            (
                events.Ready(RESPONSE, "chat", {"permessage-deflate"}),
                "protocol=chat extensions=permessage-deflate",
            ),
            (events.ProtocolError("bad frame", False), "bad frame"),
            (events.ProtocolError("bad frame", True), "bad frame (critical)"),
            (events.Unresponsive(), "Unresponsive()"),
            (events.Disconnected("closed", True), "closed (graceful)"),
            (events.Disconnected("socket error", False), "socket error (not graceful)"),
            (events.Closed(1000, "goodbye"), "1000 'goodbye'"),
            (events.Closing(None, ""), "no code ''"),
            (events.Ping(b"p"), "b'p'"),
            (events.Pong(b""), "b''"),
            (events.Text("two\nlines"), "'two\\nlines'"),
            (events.Binary(b"\x00\xff"), "b'\\x00\\xff' (2 bytes)"),
            (events.BackOff(2.25), "reconnecting in 2.2s"),
        ],
    )
    def test_detail(self, event: events.Event, detail: str) -> None:
        assert describe(event) == detail

    def test_long_binary_is_shortened(self) -> None:
        detail = describe(events.Binary(b"x" * 1000))
        assert detail == repr(b"x" * 64) + "... (1000 bytes)"

    def test_long_text_is_shown_whole(self) -> None:
        assert describe(events.Text("y" * 1000)) == repr("y" * 1000)


class TestEventFields:
    """--json: name, received_time and every public field, JSON-ready."""

    def test_text(self) -> None:
        text = at(events.Text('{"a": 1}'))
        assert text.json == {"a": 1}  # the cached parse is not a field
        assert event_fields(text) == {"name": "text", "received_time": WHEN, "text": '{"a": 1}'}

    def test_bytes_are_base64(self) -> None:
        fields = event_fields(at(events.Binary(b"\x00\xff")))
        assert fields == {"name": "binary", "received_time": WHEN, "data": "AP8="}
        assert base64.b64decode(event_fields(events.Ping(b"\x80"))["data"]) == b"\x80"

    def test_ready(self) -> None:
        fields = event_fields(events.Ready(RESPONSE, "chat", {"b", "a"}))
        assert fields["protocol"] == "chat"
        assert fields["extensions"] == ["a", "b"]
        assert fields["response"] == {
            "status_code": 101,
            "status": "Switching Protocols",
            "headers": {"upgrade": "websocket", "connection": "Upgrade"},
        }

    def test_rejected(self) -> None:
        fields = event_fields(events.Rejected(REJECTION, "nope"))
        assert fields["reason"] == "nope"
        assert fields["response"]["status_code"] == 403
        assert fields["response"]["headers"] == {"retry-after": "5"}

    @pytest.mark.parametrize(
        ("event", "expected"),
        [
            (events.Poll(), {}),
            (events.Connected("ws://h/"), {"url": "ws://h/", "proxy": None}),
            (events.Disconnected("closed", True), {"reason": "closed", "graceful": True}),
            (events.Closing(None, ""), {"code": None, "reason": ""}),
            (events.ProtocolError("e", True), {"error": "e", "critical": True}),
            (events.BackOff(1.5), {"delay": 1.5}),
            (events.UnknownMessage(("a", 1)), {"message": ["a", 1]}),
            (events.UnknownMessage(object), {"message": repr(object)}),
        ],
    )
    def test_fields(self, event: events.Event, expected: dict[str, object]) -> None:
        fields = event_fields(event)
        assert fields.pop("name") == event.name
        assert fields.pop("received_time") == event.received_time
        assert fields == expected
        json.dumps(fields)

    def test_future_event(self) -> None:
        class Shiny(events.Event):
            __slots__ = ("sparkle", "_private")
            name: ClassVar[str] = "shiny"

            def __init__(self) -> None:
                self.sparkle = b"*"
                self._private = 1
                super().__init__()

        fields = event_fields(Shiny())
        assert fields["name"] == "shiny"
        assert fields["sparkle"] == "Kg=="
        assert "_private" not in fields


class TestEventPrinter:
    def test_human_line(self) -> None:
        stream = io.StringIO()
        EventPrinter(stream).event(at(events.Text("hi")))
        line = stream.getvalue()
        assert line.endswith(".678 text           'hi'\n")
        assert line[2] == line[5] == ":"

    def test_poll_is_hidden(self) -> None:
        stream = io.StringIO()
        printer = EventPrinter(stream)
        printer.event(events.Poll())
        printer.event(events.Unresponsive())
        assert stream.getvalue().count("\n") == 1
        assert " unresponsive   Unresponsive()" in stream.getvalue()

    def test_json_line(self) -> None:
        stream = io.StringIO()
        EventPrinter(stream, as_json=True).event(at(events.Closed(1000, "bye")))
        assert json.loads(stream.getvalue()) == {
            "name": "closed",
            "received_time": WHEN,
            "code": 1000,
            "reason": "bye",
        }

    def test_colour(self) -> None:
        stream = io.StringIO()
        printer = EventPrinter(stream, colour=True)
        printer.event(events.Disconnected("closed", True))
        printer.event(events.Disconnected("reset", False))
        printer.event(events.Unresponsive())
        printer.note("a note")
        graceful, failed, unresponsive, note = stream.getvalue().splitlines()
        assert "\x1b[33mdisconnected" in graceful
        assert "\x1b[1;31mdisconnected" in failed
        assert "\x1b[1;31munresponsive" in unresponsive
        assert note == "\x1b[2m" + " " * 13 + "a note\x1b[0m"

    def test_no_colour(self) -> None:
        stream = io.StringIO()
        printer = EventPrinter(stream)
        printer.event(events.ConnectFail("refused"))
        printer.note("indented")
        printer.note("flush left", indent=False)
        assert "\x1b" not in stream.getvalue()
        assert stream.getvalue().splitlines()[1:] == [" " * 13 + "indented", "flush left"]

    def test_notes_are_left_out_of_json(self) -> None:
        stream = io.StringIO()
        EventPrinter(stream, as_json=True).note("not JSON")
        assert stream.getvalue() == ""


def outcome_of(*seen: events.Event) -> Outcome:
    outcome = Outcome()
    for event in seen:
        outcome.observe(event)
    return outcome


OPEN = [
    events.Connecting("ws://h/"),
    events.Connected("ws://h/"),
    events.Ready(RESPONSE, None, set()),
]


class TestOutcome:
    """Exit 0 only after a graceful close; otherwise 1 and the first cause."""

    def test_client_close(self) -> None:
        outcome = outcome_of(*OPEN, events.Closed(1000, "bye"), events.Disconnected("closed", True))
        assert outcome.exit_status == 0

    def test_server_close(self) -> None:
        outcome = outcome_of(*OPEN, events.Closing(1001, ""), events.Disconnected("closed", True))
        assert outcome.exit_status == 0

    @pytest.mark.parametrize(
        ("seen", "reason"),
        [
            (
                [events.Connecting("ws://h/"), events.ConnectFail("refused")],
                "could not connect: refused",
            ),
            (
                [*OPEN[:2], events.Rejected(REJECTION, "403"), events.Disconnected("x", True)],
                "rejected: 403",
            ),
            (
                [*OPEN, events.ProtocolError("bad", False), events.Disconnected("bad", False)],
                "protocol error: bad",
            ),
            (
                [*OPEN, events.Unresponsive(), events.Disconnected("no pong", False)],
                "server unresponsive (no pong within the ping timeout)",
            ),
            ([*OPEN, events.Disconnected("socket error", False)], "disconnected: socket error"),
            (OPEN, "the connection ended before it was closed"),
        ],
    )
    def test_failures(self, seen: list[events.Event], reason: str) -> None:
        outcome = outcome_of(*seen)
        assert outcome.exit_status == 1
        assert outcome.reason == reason

    def test_a_new_connection_starts_afresh(self) -> None:
        outcome = outcome_of(
            events.Connecting("ws://h/"),
            events.ConnectFail("refused"),
            events.BackOff(1),
            *OPEN,
            events.Closed(1000, ""),
            events.Disconnected("closed", True),
        )
        assert outcome.exit_status == 0

    def test_abandoned_runs_fail_even_after_a_graceful_close(self) -> None:
        outcome = Outcome()
        outcome.abandon("timed out after 1s")
        for event in [*OPEN, events.Closed(1000, ""), events.Disconnected("closed", True)]:
            outcome.observe(event)
        assert outcome.exit_status == 1
        assert outcome.reason == "timed out after 1s"
