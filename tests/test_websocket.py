"""The public façade: URLs, headers, and how caller misuse is reported."""

from __future__ import annotations

import base64
import gc
import json
import math
import socket
import threading
import warnings
from typing import Any, Callable

import pytest
from peers import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    Report,
    parse_close,
    read_until_close,
    request_header_names,
    request_headers,
)
from servers import (
    OPEN,
    RawConnection,
    echo,
    free_port_refused,
    names,
    raw_server,
    run,
    websockets_server,
)

from lomond import WebSocket
from lomond.errors import WebSocketClosed, WebSocketClosing, WebSocketUnavailable
from lomond.persist import persist

pytestmark = pytest.mark.timeout(20)


def request_of(ws: WebSocket) -> bytes:
    """The upgrade request ``ws`` would send, built without any network."""
    return ws._make_protocol().data_to_send()


def request_line(request: bytes) -> bytes:
    return request.split(b"\r\n", 1)[0]


def echo_close(connection: RawConnection, report: Report) -> None:
    frames = read_until_close(connection)
    report.put("frames", frames)
    if frames and frames[-1][0] == OP_CLOSE:
        code, _ = parse_close(frames[-1][1])
        connection.send(bytes([0x88, 2]) + (code or 1000).to_bytes(2, "big"))


def run_with(url: str, on_ready: Callable[[WebSocket], None], **kwargs: Any) -> list[Any]:
    """Connect to ``url``, call ``on_ready(ws)`` at ``Ready``, run to the end."""
    ws = WebSocket(url, **kwargs)

    def on_event(event: Any) -> None:
        if event.name == "ready":
            on_ready(ws)

    return run(ws, on_event, close_timeout=2)


# -- URLs ---------------------------------------------------------------------------


class TestURL:
    @pytest.mark.parametrize(
        "url",
        [
            "http://example.com/",
            "https://example.com/",
            "ftp://example.com/",
            "example.com",
            "garbage",
            "",
            "ws://",
            "wss://",
            "ws:///path",
            "ws://:80/",
            "ws:example.com",
            "ws://example.com:notaport/",
            "ws://example.com:99999/",
        ],
    )
    def test_bad_urls_raise_value_error(self, url: str) -> None:
        with pytest.raises(ValueError):
            WebSocket(url)

    @pytest.mark.parametrize(
        ("url", "scheme", "host", "port", "resource"),
        [
            ("ws://example.com", "ws", "example.com", 80, "/"),
            ("wss://example.com", "wss", "example.com", 443, "/"),
            ("WS://Example.COM:8080/a/b?c=d&e", "ws", "example.com", 8080, "/a/b?c=d&e"),
            ("WSS://example.com:443/x", "wss", "example.com", 443, "/x"),
            ("ws://example.com?q=1", "ws", "example.com", 80, "/?q=1"),
            ("ws://[::1]:9000/v6", "ws", "::1", 9000, "/v6"),
        ],
    )
    def test_url_parts(self, url: str, scheme: str, host: str, port: int, resource: str) -> None:
        ws = WebSocket(url)
        assert (ws.scheme, ws.host, ws.port, ws.resource) == (scheme, host, port, resource)
        assert ws.is_secure is (scheme == "wss")

    def test_repr(self) -> None:
        assert repr(WebSocket("ws://example.com/feed")) == "WebSocket('ws://example.com/feed')"

    def test_fragment_is_dropped(self) -> None:
        ws = WebSocket("ws://example.com/path?x=1#fragment")
        assert ws.resource == "/path?x=1"
        request = request_of(ws)
        assert request_line(request) == b"GET /path?x=1 HTTP/1.1"
        assert b"fragment" not in request
        assert b"#" not in request

    @pytest.mark.parametrize(
        ("url", "resource"),
        [
            ("ws://example.com/café", "/caf%C3%A9"),
            ("ws://example.com/ü/€?q=ü&r=€", "/%C3%BC/%E2%82%AC?q=%C3%BC&r=%E2%82%AC"),
            ("ws://example.com/a%20b?c=%2F", "/a%20b?c=%2F"),  # already encoded: kept
            ("ws://example.com/a b", "/a%20b"),
        ],
    )
    def test_non_ascii_resource_is_percent_encoded(self, url: str, resource: str) -> None:
        ws = WebSocket(url)
        assert ws.resource == resource
        assert request_line(request_of(ws)) == f"GET {resource} HTTP/1.1".encode()


class TestHostHeader:
    @pytest.mark.parametrize(
        ("url", "host"),
        [
            ("ws://example.com/", "example.com"),
            ("ws://example.com:80/", "example.com"),
            ("wss://example.com:443/", "example.com"),
            ("ws://example.com:443/", "example.com:443"),
            ("wss://example.com:80/", "example.com:80"),
            ("ws://example.com:8080/", "example.com:8080"),
            ("ws://[::1]/", "[::1]"),
            ("ws://[::1]:8080/", "[::1]:8080"),
            ("wss://[2001:db8::1]:443/", "[2001:db8::1]"),
            ("wss://[2001:db8::1]:8443/", "[2001:db8::1]:8443"),
        ],
    )
    def test_host_header(self, url: str, host: str) -> None:
        request = request_of(WebSocket(url))
        assert request_header_names(request)[0] == "host"
        assert request_headers(request)["host"] == host

    def test_host_header_on_the_wire(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            report.put("request", connection.read_request())

        with raw_server(script) as url:
            port = url.rsplit(":", 1)[1]
            run(WebSocket(url + "/x"))
            request = report.get("request")
        assert request_line(request) == b"GET /x HTTP/1.1"
        assert request_headers(request)["host"] == f"127.0.0.1:{port}"


class TestCredentials:
    def test_userinfo_becomes_authorization(self) -> None:
        ws = WebSocket("ws://alice:p%40ss%3Aword@example.com:8080/feed")
        request = request_of(ws)
        headers = request_headers(request)
        expected = base64.b64encode(b"alice:p@ss:word").decode()
        assert headers["authorization"] == f"Basic {expected}"
        assert headers["host"] == "example.com:8080"
        assert b"alice" not in request.replace(expected.encode(), b"")
        assert repr(ws) == "WebSocket('ws://example.com:8080/feed')"
        assert "alice" not in ws.url and "p%40ss" not in ws.url

    def test_no_authorization_without_userinfo(self) -> None:
        assert "authorization" not in request_headers(request_of(WebSocket("ws://example.com/")))

    def test_credentials_not_in_events(self) -> None:
        port = free_port_refused()
        collected = run(WebSocket(f"ws://alice:secret@127.0.0.1:{port}/feed"))
        assert names(collected) == ["connecting", "connect_fail"]
        assert collected[0].url == f"ws://127.0.0.1:{port}/feed"
        for event in collected:
            assert "secret" not in repr(event)
            assert "alice" not in repr(event)

    def test_credentials_on_the_wire(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            report.put("request", connection.read_request())

        with raw_server(script) as url:
            port = url.rsplit(":", 1)[1]
            collected = run(WebSocket(f"ws://bob:hunter2@127.0.0.1:{port}/"))
            request = report.get("request")
        headers = request_headers(request)
        assert headers["authorization"] == "Basic " + base64.b64encode(b"bob:hunter2").decode()
        assert headers["host"] == f"127.0.0.1:{port}"
        assert collected[0].url == f"ws://127.0.0.1:{port}/"
        assert collected[1].url == f"ws://127.0.0.1:{port}/"


# -- headers ------------------------------------------------------------------------


RESERVED = [
    "Host",
    "host",
    "Upgrade",
    "CONNECTION",
    "Sec-WebSocket-Key",
    "sec-websocket-version",
    "Sec-WebSocket-Accept",
]


class TestHeaders:
    def test_headers_in_order_after_lomonds_own(self) -> None:
        ws = WebSocket(
            "ws://example.com/",
            headers=[("X-B", "2"), (b"X-A", b"1"), ("X-B", "3")],
            origin="https://o.test",
            agent="Agent/1",
        )
        ws.add_header(b"X-C", b"4")
        request = request_of(ws)
        assert request_header_names(request) == [
            "host",
            "upgrade",
            "connection",
            "sec-websocket-key",
            "sec-websocket-version",
            "user-agent",
            "origin",
            "x-b",
            "x-a",
            "x-b",
            "x-c",
        ]
        assert b"\r\nX-B: 2\r\nX-A: 1\r\nX-B: 3\r\nX-C: 4\r\n\r\n" in request
        assert b"\r\nUser-Agent: Agent/1\r\nOrigin: https://o.test\r\n" in request

    def test_mapping_headers(self) -> None:
        ws = WebSocket("ws://example.com/", headers={"X-One": "1", b"X-Two": b"2"})
        headers = request_headers(request_of(ws))
        assert (headers["x-one"], headers["x-two"]) == ("1", "2")

    def test_no_origin_by_default(self) -> None:
        assert "origin" not in request_headers(request_of(WebSocket("ws://example.com/")))

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("X-Ok", "a\r\nInjected: yes"),
            ("X-Ok", "a\nb"),
            ("X-Ok", "a\rb"),
            ("X-Ok", "a\x00b"),
            (b"X-Ok", b"a\r\nb"),
            ("X-Bad\r\nInjected", "v"),
            ("Bad Name", "v"),
            ("Bad:Name", "v"),
            ("", "v"),
            ("X-(paren)", "v"),
            ("X-\x00", "v"),
            ("Ünicode", "v"),
            (b"X-Bad\n", b"v"),
        ],
    )
    def test_invalid_headers_raise_value_error(self, name: Any, value: Any) -> None:
        with pytest.raises(ValueError):
            WebSocket("ws://example.com/", headers=[(name, value)])
        if isinstance(name, bytes) and isinstance(value, bytes):
            ws = WebSocket("ws://example.com/")
            with pytest.raises(ValueError):
                ws.add_header(name, value)

    @pytest.mark.parametrize("name", RESERVED)
    def test_reserved_names_raise_value_error(self, name: str) -> None:
        with pytest.raises(ValueError):
            WebSocket("ws://example.com/", headers={name: "x"})
        ws = WebSocket("ws://example.com/")
        with pytest.raises(ValueError):
            ws.add_header(name.encode(), b"x")

    @pytest.mark.parametrize(("name", "value"), [("X-Num", 1), (1, "v"), ("X-None", None)])
    def test_non_text_headers_raise_type_error(self, name: Any, value: Any) -> None:
        with pytest.raises(TypeError):
            WebSocket("ws://example.com/", headers=[(name, value)])

    def test_add_header_with_a_non_bytes_value_raises_type_error(self) -> None:
        ws = WebSocket("ws://example.com/")
        with pytest.raises(TypeError):
            ws.add_header(b"X-Num", 1)  # type: ignore[arg-type]

    def test_invalid_header_leaves_the_request_unchanged(self) -> None:
        ws = WebSocket("ws://example.com/")
        before = request_of(ws)
        with pytest.raises(ValueError):
            ws.add_header(b"X-Bad", b"a\r\nb")
        after = request_of(ws)
        assert request_header_names(after) == request_header_names(before)


# -- sends and close: misuse ---------------------------------------------------------


SENDS: dict[str, Callable[[WebSocket], None]] = {
    "send_text": lambda ws: ws.send_text("x"),
    "send_binary": lambda ws: ws.send_binary(b"x"),
    "send_json": lambda ws: ws.send_json({"a": 1}),
    "send_json_kwargs": lambda ws: ws.send_json(a=1),
    "send_ping": lambda ws: ws.send_ping(b"x"),
    "send_pong": lambda ws: ws.send_pong(b"x"),
}


class TestSendState:
    @pytest.mark.parametrize("send", list(SENDS))
    def test_before_connect(self, send: str) -> None:
        ws = WebSocket("ws://example.com/")
        with pytest.raises(WebSocketUnavailable) as excinfo:
            SENDS[send](ws)
        assert not isinstance(excinfo.value, (WebSocketClosed, WebSocketClosing))
        ws.connect()  # a generator not yet iterated: still nothing connected
        with pytest.raises(WebSocketUnavailable) as excinfo:
            SENDS[send](ws)
        assert not isinstance(excinfo.value, (WebSocketClosed, WebSocketClosing))

    def test_before_ready(self) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            errors: dict[str, list[type]] = {}

            def on_event(event: Any) -> None:
                if event.name in ("connecting", "connected"):
                    for send in SENDS.values():
                        try:
                            send(ws)
                        except Exception as error:
                            errors.setdefault(event.name, []).append(type(error))
                        else:
                            errors.setdefault(event.name, []).append(type(None))
                elif event.name == "ready":
                    ws.close()

            collected = run(ws, on_event, close_timeout=2)
        assert names(collected) == OPEN + ["closed", "disconnected"]
        for stage in ("connecting", "connected"):
            assert errors[stage] == [WebSocketUnavailable] * len(SENDS), stage

    @pytest.mark.parametrize("send", list(SENDS))
    def test_while_closing(self, send: str) -> None:
        with websockets_server(echo) as url:
            outcome: list[BaseException] = []

            def on_ready(ws: WebSocket) -> None:
                ws.close()
                try:
                    SENDS[send](ws)
                except Exception as error:
                    outcome.append(error)

            collected = run_with(url, on_ready)
        assert names(collected) == OPEN + ["closed", "disconnected"]
        assert len(outcome) == 1
        assert isinstance(outcome[0], WebSocketClosing), repr(outcome[0])

    @pytest.mark.parametrize("send", list(SENDS))
    def test_after_close(self, send: str) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            run(ws, lambda event: ws.close() if event.name == "ready" else None, close_timeout=2)
        with pytest.raises(WebSocketClosed):
            SENDS[send](ws)

    @pytest.mark.parametrize("send", list(SENDS))
    def test_after_connect_fail(self, send: str) -> None:
        ws = WebSocket(f"ws://127.0.0.1:{free_port_refused()}/")
        assert names(run(ws)) == ["connecting", "connect_fail"]
        with pytest.raises(WebSocketUnavailable):
            SENDS[send](ws)

    @pytest.mark.parametrize("send", list(SENDS))
    def test_after_the_server_dropped(self, send: str) -> None:
        def script(connection: RawConnection) -> None:
            connection.handshake()

        with raw_server(script) as url:
            ws = WebSocket(url)
            assert names(run(ws)) == OPEN + ["disconnected"]
        with pytest.raises(WebSocketUnavailable):
            SENDS[send](ws)


class TestArgumentChecks:
    def test_misuse_on_a_live_connection(self) -> None:
        report: dict[str, Any] = {}

        def on_ready(ws: WebSocket) -> None:
            with pytest.raises(TypeError):
                ws.send_text(b"bytes")  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                ws.send_binary("text")  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                ws.send_binary(12)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                ws.send_ping("text")  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                ws.send_pong("text")  # type: ignore[arg-type]
            with pytest.raises(ValueError):
                ws.send_ping(b"x" * 126)
            with pytest.raises(ValueError):
                ws.send_pong(b"x" * 126)
            with pytest.raises(ValueError):
                ws.send_json({"a": 1}, b=2)
            for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535):
                with pytest.raises(ValueError):
                    ws.close(code)
            with pytest.raises(ValueError):
                ws.close(1000, b"\xff invalid utf-8")
            report["still active"] = ws.is_active
            ws.send_binary(bytearray(b"ba"))
            ws.send_binary(memoryview(b"mv"))
            ws.send_ping(b"p" * 125)

        with websockets_server(echo) as url:
            ws = WebSocket(url)
            received: list[Any] = []

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    on_ready(ws)
                elif event.name in ("binary", "pong"):
                    received.append(event)
                    if len(received) == 3:
                        ws.close()

            collected = run(ws, on_event, close_timeout=2)
        assert report["still active"] is True
        # The pong may overtake the echoed messages: the echo handler answers those.
        assert names(collected)[:4] == OPEN
        assert sorted(names(collected)[4:7]) == ["binary", "binary", "pong"]
        assert names(collected)[7:] == ["closed", "disconnected"]
        data = sorted((event.name, event.data) for event in received)
        assert data == [("binary", b"ba"), ("binary", b"mv"), ("pong", b"p" * 125)]

    @pytest.mark.parametrize("send", ["send_ping", "send_pong"])
    def test_control_payload_is_measured_in_bytes(self, send: str) -> None:
        """A memoryview of 8-byte items has ``len()`` 100 but 800 bytes: it must be
        refused like any payload over 125 bytes, not sent as an 800-byte ping (a
        control frame no server accepts, RFC 6455 §5.5). Arguments are checked before
        the connection state (docs/sending.rst), so no server is needed.
        """
        import array

        wide = memoryview(array.array("q", [0] * 100))
        assert wide.nbytes == 800
        with pytest.raises(ValueError):
            getattr(WebSocket("ws://example.org/"), send)(wide)

    def test_send_json_serialises_like_json_dumps(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            echo_close(connection, report)

        def on_ready(ws: WebSocket) -> None:
            ws.send_json({"k": [1, 2.5, None, True]})
            ws.send_json(name="ü")
            ws.close()

        with raw_server(script) as url:
            run_with(url, on_ready)
            frames = report.get("frames")
        assert json.loads(frames[0][1]) == {"k": [1, 2.5, None, True]}
        assert json.loads(frames[1][1]) == {"name": "ü"}

    def test_max_size_control_payloads_are_sent(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            echo_close(connection, report)

        def on_ready(ws: WebSocket) -> None:
            ws.send_ping(b"i" * 125)
            ws.send_pong(b"o" * 125)
            ws.close()

        with raw_server(script) as url:
            run_with(url, on_ready)
            frames = report.get("frames")
        assert frames[:2] == [(OP_PING, b"i" * 125), (OP_PONG, b"o" * 125)]


class TestClose:
    @pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999])
    def test_close_before_connect_is_a_no_op(self, code: int) -> None:
        ws = WebSocket("ws://example.com/")
        ws.close(code, "reason")
        ws.close()
        assert not ws.is_closed and not ws.is_closing and not ws.is_active

    def test_close_twice_sends_one_close_frame(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            echo_close(connection, report)
            connection.sock.shutdown(socket.SHUT_WR)  # our EOF, so the client hangs up too
            report.put("rest", read_until_close(connection))

        def on_ready(ws: WebSocket) -> None:
            ws.close(4000, "first")
            ws.close(4001, "second")

        with raw_server(script) as url:
            ws = WebSocket(url)
            collected = run(
                ws, lambda e: on_ready(ws) if e.name == "ready" else None, close_timeout=2
            )
            frames = report.get("frames")
            rest = report.get("rest")
            ws.close()  # after the end: still a no-op
        assert names(collected) == OPEN + ["closed", "disconnected"]
        assert frames == [(OP_CLOSE, (4000).to_bytes(2, "big") + b"first")]
        assert rest == []

    @pytest.mark.parametrize(
        ("reason", "expected"),
        [
            ("x" * 200, b"x" * 123),
            ("é" * 100, "é".encode() * 61),  # 2-byte characters: 122 bytes
            ("€" * 60, "€".encode() * 41),  # 3-byte characters: 123 bytes
            ("😀" * 40, "😀".encode() * 30),  # 4-byte characters: 120 bytes
            ("a" + "€" * 60, ("a" + "€" * 40).encode()),  # 121 bytes
            (b"y" * 130, b"y" * 123),
            ("short", b"short"),
            ("", b""),
        ],
    )
    def test_long_reasons_are_cut_at_a_character_boundary(
        self, reason: str | bytes, expected: bytes
    ) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            echo_close(connection, report)

        with raw_server(script) as url:
            collected = run_with(url, lambda ws: ws.close(1000, reason))
            frames = report.get("frames")
        assert names(collected) == OPEN + ["closed", "disconnected"]
        opcode, payload = frames[-1]
        assert opcode == OP_CLOSE
        assert len(payload) <= 125
        assert parse_close(payload) == (1000, expected)
        payload[2:].decode("utf-8")


class TestProperties:
    def test_state_properties_through_a_connection(self) -> None:
        states: dict[str, tuple[bool, bool, bool]] = {}

        with websockets_server(echo) as url:
            ws = WebSocket(url)

            def snapshot() -> tuple[bool, bool, bool]:
                return (ws.is_active, ws.is_closing, ws.is_closed)

            states["new"] = snapshot()

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    states["ready"] = snapshot()
                    ws.close()
                    states["close called"] = snapshot()
                    assert ws.sent_close_time is not None

            run(ws, on_event, close_timeout=2)
            states["ended"] = snapshot()
        assert states == {
            "new": (False, False, False),
            "ready": (True, False, False),
            "close called": (False, True, False),
            "ended": (False, False, True),
        }
        assert ws.supports_compression is False


class TestWithBlockInAnotherThread:
    def test_leaving_the_with_block_ends_a_loop_running_elsewhere(self) -> None:
        """The loop ends promptly with ``Disconnected(graceful=False)``, no Poll storm."""
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            ready = threading.Event()
            collected: list[Any] = []

            def loop() -> None:
                for event in ws.connect(poll=60):
                    collected.append(event)
                    if event.name == "ready":
                        ready.set()

            thread = threading.Thread(target=loop, daemon=True)
            with ws:
                thread.start()
                assert ready.wait(5)
            thread.join(5)
            assert not thread.is_alive(), "the loop did not end"
        assert names(collected) == OPEN + ["disconnected"]
        assert collected[-1].graceful is False
        assert collected[-1].reason == "the WebSocket was closed without a closing handshake"


class TestConnectArguments:
    """``connect()`` (and ``persist()``) check every argument when called."""

    BAD = [
        ("poll", -1, ValueError),
        ("poll", math.nan, ValueError),
        ("poll", math.inf, ValueError),
        ("poll", "5", TypeError),
        ("poll", True, TypeError),
        ("ping_rate", -1, ValueError),
        ("ping_rate", math.nan, ValueError),
        ("ping_rate", [], TypeError),
        ("ping_timeout", -0.5, ValueError),
        ("ping_timeout", math.inf, ValueError),
        ("close_timeout", -1, ValueError),
        ("close_timeout", math.nan, ValueError),
        ("close_timeout", "30", TypeError),
        ("auto_pong", "yes", TypeError),
        ("auto_pong", None, TypeError),
    ]

    @pytest.mark.parametrize(("name", "value", "error"), BAD)
    def test_bad_values_raise_before_any_network_work(
        self, name: str, value: object, error: type
    ) -> None:
        ws = WebSocket(f"ws://127.0.0.1:{free_port_refused()}")
        with pytest.raises(error, match=name):
            ws.connect(**{name: value})
        with pytest.raises(error, match=name):
            persist(ws, **{name: value})
        assert ws.session is None  # nothing was started

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("poll", 0),
            ("poll", None),
            ("poll", 0.25),
            ("ping_rate", 0),
            ("ping_rate", None),
            ("ping_timeout", 0),
            ("ping_timeout", None),
            ("close_timeout", 0),
            ("close_timeout", None),
            ("auto_pong", False),
            ("auto_pong", 1),
        ],
    )
    def test_good_values(self, name: str, value: object) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            collected = run(ws, lambda event: event.name == "ready" and ws.close(), **{name: value})
        if name == "close_timeout" and value == 0:
            # Gives up on the server's close frame at once (it may still be quick).
            assert names(collected) in (OPEN + ["disconnected"], OPEN + ["closed", "disconnected"])
        else:
            assert names(collected) == OPEN + ["closed", "disconnected"]

    @pytest.mark.parametrize("value", [-1, 0, math.nan, math.inf, "30"])
    def test_connect_timeout(self, value: object) -> None:
        error = TypeError if isinstance(value, str) else ValueError
        with pytest.raises(error, match="connect_timeout"):
            WebSocket("ws://example.org", connect_timeout=value)  # type: ignore[arg-type]

    @pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
    @pytest.mark.parametrize("value", [1e10, 1e300])
    def test_connect_timeout_longer_than_a_socket_timeout_can_be(
        self, value: float, host: str
    ) -> None:
        """Finite and positive, so the constructor takes it (or may refuse it with
        ``ValueError``); taken, nothing may escape the loop. ``socket.settimeout()``
        and ``Thread.join()`` raise ``OverflowError`` past about 292 years (9.2e9 s),
        as ``persist()`` already knows for ``Event.wait()`` (``threading.TIMEOUT_MAX``).
        """
        with websockets_server(echo) as url:
            try:
                ws = WebSocket(url.replace("127.0.0.1", host), connect_timeout=value)
            except ValueError:
                return  # refusing it up front keeps the promise too
            collected: list[Any] = []
            escaped = None
            # A socket left open on the way out warns when collected: catch that
            # here, not in whichever test runs next.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ResourceWarning)
                try:
                    for event in ws.connect():
                        collected.append(event)
                        if event.name == "ready":
                            ws.close()
                except Exception as error:  # the promise: never an exception
                    escaped = repr(error)
                gc.collect()
        assert escaped is None, f"{escaped} escaped the loop after {names(collected)}"
        assert not [warning for warning in caught if warning.category is ResourceWarning]
        assert names(collected) == OPEN + ["closed", "disconnected"]


class TestTraceCallable:
    def test_a_trace_callable_may_use_the_websocket(self) -> None:
        """The trace callable gets ``socket_send`` records while the session lock is
        held (``_drain_locked``): one that calls ``close()`` or a ``send_*`` on the same
        WebSocket then waits for that lock for ever (it is not reentrant), and so does
        every thread that touches the WebSocket after it."""

        def script(connection: RawConnection) -> None:
            connection.handshake()
            echo_close(connection, Report())

        with raw_server(script) as url:
            ws: WebSocket | None = None
            calls: list[str] = []

            def trace(record: dict[str, Any]) -> None:
                if record["stage"] == "socket_send" and ws is not None and ws.is_active:
                    if not calls:
                        calls.append("close")
                        ws.close()  # e.g. an application that stops on a condition

            ws = WebSocket(url, trace=trace)
            collected: list[Any] = []

            def loop() -> None:
                assert ws is not None
                for event in ws.connect(close_timeout=2):
                    collected.append(event)
                    if event.name == "ready":
                        ws.send_text("hello")

            thread = threading.Thread(target=loop, daemon=True)
            thread.start()
            thread.join(5)
            assert not thread.is_alive(), f"the loop is stuck after {names(collected)}"
        assert calls == ["close"]
        assert names(collected)[-1] == "disconnected"
