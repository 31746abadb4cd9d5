"""``lomond --demo`` in-process: the scripted session against the bundled echo server."""

from __future__ import annotations

import io
import json

import pytest

from lomond.cli.console import EventPrinter
from lomond.cli.demo import JSON_MESSAGE, LARGE_TEXT, MIN_COMPRESS_SIZE, run_demo

pytestmark = pytest.mark.timeout(30)


def test_the_scripted_session() -> None:
    stream = io.StringIO()
    outcome = run_demo(EventPrinter(stream))
    assert outcome.exit_status == 0, outcome.reason
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("lomond ") and "(loopback, no network)" in lines[0]
    calls = [line.strip() for line in lines if line.strip().startswith(">>> ")]
    assert [call.split("(")[0] for call in calls] == [
        ">>> ws.send_text",
        ">>> ws.send_binary",
        ">>> ws.send_json",
        ">>> ws.send_ping",
        ">>> ws.send_text",
        ">>> ws.close",
    ]
    assert f"event.json == {JSON_MESSAGE!r}" in stream.getvalue()


def test_only_the_large_message_is_compressed() -> None:
    assert len(LARGE_TEXT) >= MIN_COMPRESS_SIZE > len(json.dumps(JSON_MESSAGE))
    stream = io.StringIO()
    run_demo(EventPrinter(stream))
    [note] = [line for line in stream.getvalue().splitlines() if "on the wire" in line]
    wire_bytes = int(note.split("-> ")[1].split()[0])
    assert wire_bytes < len(LARGE_TEXT) // 2


def test_json_lines() -> None:
    stream = io.StringIO()
    outcome = run_demo(EventPrinter(stream, as_json=True))
    assert outcome.exit_status == 0
    names = [json.loads(line)["name"] for line in stream.getvalue().splitlines()]
    assert names == [
        "connecting",
        "connected",
        "ready",
        "text",
        "binary",
        "text",
        "pong",
        "text",
        "closed",
        "disconnected",
    ]
