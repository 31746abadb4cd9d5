"""The recording format: what Recorder writes, and what parse_recording accepts."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from lomond import events
from lomond.response import Response
from lomond.testing.recording import (
    FORMAT,
    VERSION,
    Recorder,
    ending,
    parse_recording,
    read_recording,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def response(head: bytes) -> Response:
    return Response(head)


class TestRecorder:
    def test_a_session(self) -> None:
        stream, clock = io.StringIO(), Clock()
        recorder = Recorder(stream, "ws://example.org/feed", clock)
        ok = response(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
        clock.now = 100.5
        recorder.event(events.Connecting("ws://example.org/feed"))
        recorder.event(events.Ready(ok, "v1", {"permessage-deflate"}))
        recorder.event(events.Poll())
        clock.now = 101.0
        recorder.sent("subscribe")
        recorder.sent(b"\x00\xff")
        recorder.event(events.Text("price"))
        recorder.event(events.Binary(b"\x01"))
        recorder.event(events.Ping(b"p"))
        recorder.event(events.Pong(b""))
        clock.now = 102.25
        recorder.trace({"stage": "send_text", "length": 3})
        recorder.trace({"stage": "close_requested", "code": 1000, "reason": b"bye"})
        recorder.event(events.Closed(1000, "bye"))
        recorder.event(events.Disconnected("closed", graceful=True))
        header, *steps = lines(stream)
        assert header["format"] == FORMAT == "lomond-recording"
        assert header["version"] == VERSION == 1
        assert header["url"] == "ws://example.org/feed"
        assert header["started"].endswith("Z")
        assert steps == [
            {"t": 0.5, "type": "ready", "protocol": "v1", "extensions": ["permessage-deflate"]},
            {"t": 1.0, "type": "text", "from": "client", "text": "subscribe"},
            {"t": 1.0, "type": "binary", "from": "client", "data": "AP8="},
            {"t": 1.0, "type": "text", "from": "server", "text": "price"},
            {"t": 1.0, "type": "binary", "from": "server", "data": "AQ=="},
            {"t": 1.0, "type": "ping", "from": "server", "data": "cA=="},
            {"t": 1.0, "type": "pong", "from": "server", "data": ""},
            {"t": 2.25, "type": "close", "from": "client", "code": 1000, "reason": "bye"},
            {"t": 2.25, "type": "close", "from": "server", "code": 1000, "reason": "bye"},
            {"t": 2.25, "type": "disconnected", "reason": "closed", "graceful": True,
             "how": "closed"},
        ]  # fmt: skip

    def test_failures(self) -> None:
        stream, clock = io.StringIO(), Clock()
        recorder = Recorder(stream, "ws://x/", clock)
        recorder.event(events.ConnectFail("connection refused by 127.0.0.1:9"))
        rejected = response(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\r\n")
        recorder.event(events.Rejected(rejected, "server responded with 503"))
        recorder.event(events.ProtocolError("reserved opcode 3", False))
        recorder.event(events.Unresponsive())
        assert lines(stream)[1:] == [
            {"t": 0.0, "type": "connect_fail", "reason": "connection refused by 127.0.0.1:9"},
            {"t": 0.0, "type": "rejected", "status": 503, "headers": {"retry-after": "5"},
             "reason": "server responded with 503"},
            {"t": 0.0, "type": "protocol_error", "error": "reserved opcode 3"},
            {"t": 0.0, "type": "unresponsive"},
        ]  # fmt: skip

    @pytest.mark.parametrize(
        "reason, graceful, how",
        [
            ("closed", True, "closed"),
            ("connection lost", False, "dropped"),
            ("connection lost in the middle of a frame", False, "dropped"),
            ("connection closed before the close frame was echoed", False, "dropped"),
            ("socket error; [Errno 104] Connection reset by peer", False, "reset"),
            ("no pong within 1s (ping timeout)", False, "client"),
            ("disconnected by force_disconnect()", False, "client"),
        ],
    )
    def test_how_it_ended(self, reason: str, graceful: bool, how: str) -> None:
        assert ending(events.Disconnected(reason, graceful)) == how


HEADER = json.dumps({"format": "lomond-recording", "version": 1, "url": "ws://x/"})


def recording(*steps: dict[str, Any]) -> list[str]:
    return [HEADER] + [json.dumps(step) for step in steps]


class TestParse:
    def test_connections(self, tmp_path: Path) -> None:
        text = recording(
            {"t": 0, "type": "connect_fail", "reason": "refused"},
            {"t": 1, "type": "ready", "protocol": "v1", "extensions": ["permessage-deflate"]},
            {"t": 2, "type": "binary", "from": "server", "data": "AQ=="},
            {"t": 3, "type": "disconnected", "reason": "connection lost", "how": "dropped"},
            {"t": 4, "type": "rejected", "status": 503, "headers": {"Retry-After": "1"}},
            {"t": 5, "type": "ready", "protocol": None, "extensions": []},
        )
        path = tmp_path / "session.jsonl"
        path.write_text("\n".join(text) + "\n\n", encoding="utf-8")
        first, second, third = read_recording(str(path))
        assert (first.protocol, first.compress, first.reject) == ("v1", True, None)
        assert [step["type"] for step in first.steps] == ["ready", "binary", "disconnected"]
        assert first.steps[1]["data"] == b"\x01"
        assert second.reject == (503, [("Retry-After", "1")])
        assert (third.protocol, third.compress) == (None, False)

    @pytest.mark.parametrize(
        "text, message",
        [
            ([], "not a lomond recording"),
            (["{}"], "not a lomond recording"),
            (["not json"], "<recording>:1: not JSON"),
            ([json.dumps({"format": "lomond-recording", "version": 2})], "version 2; this"),
            (recording({"type": "ready"}), "<recording>:2: a step needs a time offset"),
            (recording({"t": 1}), "a step must be an object with a 'type'"),
            (recording({"t": 1, "type": "text", "text": "x"}), "needs 'from'"),
            (recording({"t": 1, "type": "text", "from": "server"}), "needs 'text'"),
            (recording({"t": 1, "type": "ping", "from": "server", "data": "!"}), "base64"),
            (recording({"t": 1, "type": "rejected", "status": 503}), "needs 'status' and"),
        ],
    )
    def test_invalid(self, text: list[str], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            parse_recording(text)
