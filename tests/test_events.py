"""lomond.events: names, reprs and shape of every event (docs/events.rst, 0.3.x formats)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from lomond import events
from lomond.events import (
    BackOff,
    Binary,
    Closed,
    Closing,
    Connected,
    ConnectFail,
    Connecting,
    Disconnected,
    Event,
    Ping,
    Poll,
    Pong,
    ProtocolError,
    Ready,
    Redirected,
    Rejected,
    Text,
    UnknownMessage,
    Unresponsive,
)
from lomond.response import Response

UPGRADE = Response(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
FORBIDDEN = Response(b"HTTP/1.1 403 Forbidden\r\n\r\n")
MOVED = Response(b"HTTP/1.1 301 Moved Permanently\r\nLocation: /new\r\n\r\n")

#: Every event class of docs/events.rst and its ``name``.
NAMES: list[tuple[type[Event], str]] = [
    (Poll, "poll"),
    (Connecting, "connecting"),
    (ConnectFail, "connect_fail"),
    (Connected, "connected"),
    (Rejected, "rejected"),
    (Redirected, "redirected"),
    (Ready, "ready"),
    (ProtocolError, "protocol_error"),
    (Unresponsive, "unresponsive"),
    (Disconnected, "disconnected"),
    (Closed, "closed"),
    (Closing, "closing"),
    (UnknownMessage, "unknown"),
    (Ping, "ping"),
    (Pong, "pong"),
    (Text, "text"),
    (Binary, "binary"),
    (BackOff, "back_off"),
]


def one_of_each() -> list[Event]:
    return [
        Event(),
        Poll(),
        Connecting("ws://example.com/"),
        ConnectFail("could not resolve host 'example.com'"),
        Connected("ws://example.com/"),
        Rejected(FORBIDDEN, "server responded with 403 Forbidden"),
        Redirected(MOVED, "ws://example.com/new"),
        Ready(UPGRADE, None, set()),
        ProtocolError("reserved opcode 0x3", False),
        Unresponsive(),
        Disconnected(),
        Closed(1000, "bye"),
        Closing(None, ""),
        UnknownMessage(object()),
        Ping(b"p"),
        Pong(b"p"),
        Text("hello"),
        Binary(b"\x00"),
        BackOff(1.5),
    ]


REPRS: list[tuple[Event, str]] = [
    (Event(), "Event()"),
    (Poll(), "Poll()"),
    (Connecting("ws://example.com/"), "Connecting(url='ws://example.com/')"),
    (
        ConnectFail("connection refused by 127.0.0.1:9"),
        "ConnectFail(reason='connection refused by 127.0.0.1:9')",
    ),
    (Connected("wss://example.com/"), "Connected(url='wss://example.com/')"),
    (
        Connected("wss://example.com/", proxy="http://proxy:3128"),
        "Connected(url='wss://example.com/', proxy='http://proxy:3128')",
    ),
    (
        Rejected(FORBIDDEN, "server responded with 403 Forbidden"),
        "Rejected(response=<response HTTP/1.1 403 Forbidden>, "
        "reason='server responded with 403 Forbidden')",
    ),
    (
        Redirected(MOVED, "wss://example.com/new"),
        "Redirected(response=<response HTTP/1.1 301 Moved Permanently>, "
        "url='wss://example.com/new')",
    ),
    (
        Ready(UPGRADE, None, set()),
        "Ready(response=<response HTTP/1.1 101 Switching Protocols>, "
        "protocol=None, extensions=set())",
    ),
    (
        Ready(UPGRADE, "chat", {"permessage-deflate"}),
        "Ready(response=<response HTTP/1.1 101 Switching Protocols>, "
        "protocol='chat', extensions={'permessage-deflate'})",
    ),
    (
        ProtocolError("reserved opcode 0x3", False),
        "ProtocolError(error='reserved opcode 0x3', critical=False)",
    ),
    (ProtocolError("broken", True), "ProtocolError(error='broken', critical=True)"),
    (Unresponsive(), "Unresponsive()"),
    (Disconnected(), "Disconnected(reason='closed', graceful=False)"),
    (
        Disconnected("connection lost", graceful=False),
        "Disconnected(reason='connection lost', graceful=False)",
    ),
    (Disconnected(graceful=True), "Disconnected(reason='closed', graceful=True)"),
    (Closed(1000, "goodbye"), "Closed(code=1000, reason='goodbye')"),
    (Closed(None, ""), "Closed(code=None, reason='')"),
    (Closing(1001, "going away"), "Closing(code=1001, reason='going away')"),
    (Closing(None, ""), "Closing(code=None, reason='')"),
    (UnknownMessage(b"anything"), "UnknownMessage()"),
    (Ping(b"ping?"), "Ping(data=b'ping?')"),
    (Ping(b""), "Ping(data=b'')"),
    (Pong(b"\x00\xff"), "Pong(data=b'\\x00\\xff')"),
    (Text("hello"), "Text(text='hello')"),
    (Text(""), "Text(text='')"),
    (Text("it's"), 'Text(text="it\'s")'),
    (Text("x" * 24), "Text(text='" + "x" * 24 + "')"),
    (Text("x" * 25), "Text(text='" + "x" * 24 + "' + 1 chars)"),
    (Text("abcdefghijklmnopqrstuvwxyz" * 4), "Text(text='abcdefghijklmnopqrstuvwx' + 80 chars)"),
    (Binary(b"hello"), "Binary(data=b'hello')"),
    (Binary(b"x" * 24), "Binary(data=b'" + "x" * 24 + "')"),
    (Binary(b"x" * 25), "Binary(data=b'" + "x" * 24 + "' + 1 bytes)"),
    (Binary(bytes(100)), "Binary(data=b'" + "\\x00" * 24 + "' + 76 bytes)"),
    (BackOff(1.5), "BackOff(delay=1.5)"),
    (BackOff(2), "BackOff(delay=2.0)"),
    (BackOff(7.3456), "BackOff(delay=7.3)"),
]


def _id(value: Any) -> str:
    return getattr(value, "__name__", None) or repr(value)[:40]


class TestNames:
    @pytest.mark.parametrize(("event_class", "name"), NAMES, ids=_id)
    def test_name(self, event_class: type[Event], name: str) -> None:
        assert event_class.name == name
        assert issubclass(event_class, Event)
        assert getattr(events, event_class.__name__) is event_class

    def test_names_are_unique(self) -> None:
        names = [name for _, name in NAMES]
        assert len(set(names)) == len(names)

    def test_instances_carry_the_class_name(self) -> None:
        for event in one_of_each()[1:]:
            assert event.name == type(event).name


class TestReprs:
    @pytest.mark.parametrize(("event", "expected"), REPRS, ids=_id)
    def test_repr(self, event: Event, expected: str) -> None:
        assert repr(event) == expected


class TestAttributes:
    def test_received_time_is_wall_clock(self) -> None:
        before = time.time()
        event = Text("x")
        after = time.time()
        assert isinstance(event.received_time, float)
        assert before <= event.received_time <= after

    def test_constructor_arguments_become_attributes(self) -> None:
        assert Connecting("ws://h/").url == "ws://h/"
        assert ConnectFail("r").reason == "r"
        connected = Connected("ws://h/", "http://p/")
        assert (connected.url, connected.proxy) == ("ws://h/", "http://p/")
        assert Connected("ws://h/").proxy is None
        rejected = Rejected(FORBIDDEN, "r")
        assert (rejected.response, rejected.reason) == (FORBIDDEN, "r")
        redirected = Redirected(MOVED, "ws://h/new")
        assert (redirected.response, redirected.url) == (MOVED, "ws://h/new")
        ready = Ready(UPGRADE, "chat", {"permessage-deflate"})
        assert (ready.response, ready.protocol, ready.extensions) == (
            UPGRADE,
            "chat",
            {"permessage-deflate"},
        )
        error = ProtocolError("e", True)
        assert (error.error, error.critical) == ("e", True)
        disconnected = Disconnected()
        assert (disconnected.reason, disconnected.graceful) == ("closed", False)
        closed = Closed(1000, "bye")
        assert (closed.code, closed.reason) == (1000, "bye")
        closing = Closing(None, "")
        assert (closing.code, closing.reason) == (None, "")
        message = object()
        assert UnknownMessage(message).message is message
        assert Ping(b"a").data == b"a"
        assert Pong(b"b").data == b"b"
        assert Text("t").text == "t"
        assert Binary(b"d").data == b"d"
        assert BackOff(2.5).delay == 2.5

    def test_keyword_arguments(self) -> None:
        # 0.3.x code may pass the documented names as keywords.
        assert Disconnected(reason="x", graceful=True).graceful is True
        assert Connected(url="ws://h/", proxy=None).proxy is None

    @pytest.mark.parametrize("event", one_of_each(), ids=lambda event: type(event).__name__)
    def test_slots(self, event: Event) -> None:
        # Event classes use __slots__ (0.3.x forgot Poll and Unresponsive).
        assert not hasattr(event, "__dict__")
        with pytest.raises(AttributeError):
            event.not_an_attribute = 1  # type: ignore[attr-defined]


class TestTextJson:
    def test_parses_json(self) -> None:
        assert Text('{"a": [1, 2.5, "x"]}').json == {"a": [1, 2.5, "x"]}

    def test_result_is_cached(self) -> None:
        event = Text('{"a": 1}')
        assert event.json is event.json

    @pytest.mark.parametrize(
        ("text", "value"), [("null", None), ("false", False), ("0", 0), ('""', ""), ("[]", [])]
    )
    def test_falsy_results_are_cached_too(
        self, monkeypatch: pytest.MonkeyPatch, text: str, value: object
    ) -> None:
        # 0.3.x cached with "is None", so a JSON null was parsed on every access.
        calls: list[str] = []
        original = json.loads

        def loads(text: str) -> Any:
            calls.append(text)
            return original(text)

        monkeypatch.setattr(json, "loads", loads)
        event = Text(text)
        assert event.json == value
        assert event.json == value
        assert calls == [text]

    def test_parsed_lazily(self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[str] = []
        monkeypatch.setattr(json, "loads", calls.append)
        Text("not json at all")
        assert calls == []

    def test_invalid_json_raises_what_json_raises(self) -> None:
        event = Text("{not json")
        with pytest.raises(json.JSONDecodeError):
            _ = event.json
        with pytest.raises(ValueError):  # and again: a failure is not cached
            _ = event.json
