"""Redirects of the upgrade request over real sockets (docs/networks.rst, "Redirects").

The ``websockets`` server answers 3xx from ``process_request`` for the normal cases;
raw socket servers play the hostile ones (loops, a downgrade from ``wss`` to ``ws``,
a second host that must not get the credentials). The proxy is ``pproxy`` and the
certificates come from ``trustme``.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
from http import HTTPStatus
from typing import Any, Callable, Iterator

import pytest
import trustme
from network.test_networks import pproxy
from peers import Report
from servers import (
    RawConnection,
    echo,
    free_port_refused,
    names,
    raw_server,
    run,
    websockets_server,
)
from websockets.sync.server import ServerConnection

from lomond import WebSocket, events, persist
from lomond.response import Response

REDIRECTED = ["connecting", "connected", "redirected", "connected", "ready", "poll"]


def close_on_ready(ws: WebSocket) -> Callable[[Any], None]:
    def on_event(event: Any) -> None:
        if event.name == "ready":
            ws.close()

    return on_event


def redirecting(
    moves: dict[str, tuple[int, str]], seen: list[Any] | None = None
) -> Callable[[ServerConnection, Any], Any]:
    """A ``process_request`` that answers ``moves[path]`` as ``(status, Location)``."""

    def process_request(connection: ServerConnection, request: Any) -> Any:
        if seen is not None:
            seen.append(request)
        move = moves.get(request.path)
        if move is None:
            return None
        status, location = move
        response = connection.respond(HTTPStatus(status), "moved\n")
        response.headers["Location"] = location
        return response

    return process_request


@contextlib.contextmanager
def redirect_server(
    moves: dict[str, tuple[int, str]], seen: list[Any] | None = None, **kwargs: Any
) -> Iterator[str]:
    with websockets_server(echo, process_request=redirecting(moves, seen), **kwargs) as url:
        yield url


def raw_redirect(status: str, location: str, report: Report | None = None) -> Any:
    """A raw server script: read the request, answer a redirect to ``location``."""

    def script(connection: RawConnection) -> None:
        request = connection.read_request()
        if report is not None:
            report.put("request", request)
        connection.send(
            f"HTTP/1.1 {status}\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
        )

    return script


def accepting(report: Report) -> Callable[[RawConnection], None]:
    """A raw server script: accept the upgrade, report the request, wait for the close."""

    def script(connection: RawConnection) -> None:
        connection.handshake()
        report.put("request", connection.request)
        connection.recv_frame()
        connection.send(b"\x88\x02\x03\xe8")

    return script


class TestSequence:
    def test_relative_redirect_sequence_is_exact(self) -> None:
        seen: list[Any] = []
        with redirect_server({"/old": (302, "/new")}, seen) as url:
            ws = WebSocket(url + "/old")
            collected = run(ws, close_on_ready(ws), poll=60)
        assert names(collected) == [*REDIRECTED, "closed", "disconnected"]
        connecting, first, redirected, second, ready = collected[:5]
        assert connecting.url == first.url == url + "/old"
        assert repr(redirected) == (
            f"Redirected(response=<response HTTP/1.1 302 Found>, url='{url}/new')"
        )
        assert redirected.response.headers["location"] == "/new"
        assert repr(second) == f"Connected(url='{url}/new')"
        assert ready.response.status_code == 101
        assert collected[-1].graceful and collected[-1].reason == "closed"
        assert [request.path for request in seen] == ["/old", "/new"]
        # Each request has its own key (RFC 6455 §4.1: chosen for each connection).
        keys = [request.headers["Sec-WebSocket-Key"] for request in seen]
        assert keys[0] != keys[1] and keys[1] == ws.key.decode()
        # The WebSocket's URL stays the one given: the next connect() starts there.
        assert ws.url == url + "/old"

    @pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
    def test_each_status_is_followed(self, status: int) -> None:
        with websockets_server(echo) as target:
            with redirect_server({"/": (status, target.replace("ws", "http") + "/x")}) as url:
                ws = WebSocket(url)
                collected = run(ws, close_on_ready(ws), poll=60)
        assert names(collected)[:6] == REDIRECTED
        assert collected[2].response.status_code == status
        assert collected[2].url == collected[3].url == target + "/x"

    def test_a_chain_of_redirects(self) -> None:
        moves = {"/1": (301, "/2"), "/2": (307, "/3"), "/3": (308, "/4")}
        with redirect_server(moves) as url:
            ws = WebSocket(url + "/1", max_redirects=3)
            collected = run(ws, close_on_ready(ws), poll=60)
        assert names(collected) == [
            "connecting",
            "connected",
            "redirected",
            "connected",
            "redirected",
            "connected",
            "redirected",
            "connected",
            "ready",
            "poll",
            "closed",
            "disconnected",
        ]
        assert [e.url for e in collected if e.name == "connected"] == [
            url + "/1",
            url + "/2",
            url + "/3",
            url + "/4",
        ]

    def test_no_redirect_keeps_the_03_sequence(self) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            collected = run(ws, close_on_ready(ws), poll=60)
        assert names(collected) == [
            "connecting",
            "connected",
            "ready",
            "poll",
            "closed",
            "disconnected",
        ]

    def test_a_rejection_after_a_redirect(self) -> None:
        def forbid(connection: ServerConnection, request: Any) -> Any:
            if request.path == "/old":
                response = connection.respond(HTTPStatus.FOUND, "")
                response.headers["Location"] = "/forbidden"
                return response
            return connection.respond(HTTPStatus.FORBIDDEN, "no\n")

        with websockets_server(echo, process_request=forbid) as url:
            collected = run(WebSocket(url + "/old"))
        assert names(collected) == [
            "connecting",
            "connected",
            "redirected",
            "connected",
            "rejected",
            "disconnected",
        ]
        assert collected[4].reason == (
            "server responded with 403 Forbidden instead of 101 Switching Protocols"
        )
        assert repr(collected[5]) == "Disconnected(reason='closed', graceful=True)"

    def test_trace_records(self) -> None:
        records: list[dict[str, Any]] = []
        with redirect_server({"/old": (303, "/new")}) as url:
            ws = WebSocket(url + "/old", trace=records.append)
            run(ws, close_on_ready(ws), poll=60)
        stages = [(r["stage"], r["url"]) for r in records if r["stage"] != "socket_recv"]
        redirected = next(r for r in records if r["stage"] == "redirected")
        assert redirected == {
            "stage": "redirected",
            "url": url + "/old",
            "status_code": 303,
            "location": url + "/new",
        }
        ready = stages.index(("handshake_ready", url + "/new"))
        assert stages.index(("redirected", url + "/old")) < ready

    def test_persist_reconnects_to_the_first_url(self) -> None:
        seen: list[Any] = []
        exit_event = threading.Event()
        ready = 0
        with redirect_server({"/old": (302, "/new")}, seen) as url:
            ws = WebSocket(url + "/old")
            for event in persist(ws, min_wait=0, max_wait=0, poll=60):
                if event.name == "ready":
                    ready += 1
                    if ready == 2:
                        exit_event.set()
                        ws.close()
                    else:
                        ws.force_disconnect()
                if event.name == "disconnected" and ready == 2:
                    break
        assert [request.path for request in seen] == ["/old", "/new", "/old", "/new"]


class TestNotFollowed:
    def test_max_redirects_0_rejects_as_before(self) -> None:
        with redirect_server({"/old": (301, "/new")}) as url:
            collected = run(WebSocket(url + "/old", max_redirects=0))
        assert names(collected) == ["connecting", "connected", "rejected", "disconnected"]
        assert collected[2].reason == (
            "server responded with 301 Moved Permanently instead of 101 Switching Protocols"
        )
        assert collected[2].response.headers["location"] == "/new"
        assert repr(collected[3]) == "Disconnected(reason='closed', graceful=True)"

    def test_a_redirect_without_location_is_rejected(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.read_request()
            connection.send(b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n")

        with raw_server(script) as url:
            collected = run(WebSocket(url))
        assert names(collected) == ["connecting", "connected", "rejected", "disconnected"]
        assert collected[2].reason == (
            "server responded with 302 Found instead of 101 Switching Protocols"
        )

    def test_too_many_redirects(self) -> None:
        moves = {f"/{n}": (302, f"/{n + 1}") for n in range(10)}
        with redirect_server(moves) as url:
            collected = run(WebSocket(url + "/0", max_redirects=2))
        assert names(collected) == [
            "connecting",
            "connected",
            "redirected",
            "connected",
            "redirected",
            "connected",
            "rejected",
            "disconnected",
        ]
        assert collected[6].reason == (
            f"too many redirects (max_redirects=2): {url}/0 -> {url}/1 -> {url}/2 -> {url}/3"
        )
        assert collected[6].response.status_code == 302
        assert repr(collected[7]) == "Disconnected(reason='closed', graceful=True)"

    def test_the_default_follows_ten(self) -> None:
        moves = {f"/{n}": (302, f"/{n + 1}") for n in range(20)}
        with redirect_server(moves) as url:
            collected = run(WebSocket(url + "/0"))
        assert names(collected).count("redirected") == 10
        assert collected[-2].reason.startswith("too many redirects (max_redirects=10)")

    def test_a_loop(self) -> None:
        def script(connection: RawConnection) -> None:
            request = connection.read_request()
            path = request.split(b" ")[1].decode()
            location = "/b" if path == "/a" else "/a"
            connection.send(f"HTTP/1.1 302 Found\r\nLocation: {location}\r\n\r\n".encode())

        with raw_server(script) as url:
            collected = run(WebSocket(url + "/a"))
        assert names(collected) == [
            "connecting",
            "connected",
            "redirected",
            "connected",
            "rejected",
            "disconnected",
        ]
        assert collected[4].reason == f"redirect loop: {url}/a -> {url}/b -> {url}/a"
        assert collected[5].graceful

    def test_close_while_handling_redirected(self) -> None:
        with redirect_server({"/old": (302, "/new")}) as url:
            ws = WebSocket(url + "/old")

            def on_event(event: Any) -> None:
                if event.name == "redirected":
                    ws.close()

            collected = run(ws, on_event)
        assert names(collected) == [
            "connecting",
            "connected",
            "redirected",
            "disconnected",
        ]
        assert repr(collected[-1]) == (
            "Disconnected(reason='closed before the WebSocket was ready', graceful=False)"
        )

    def test_the_next_server_refuses_the_connection(self) -> None:
        port = free_port_refused()
        with raw_server(raw_redirect("307 Temporary Redirect", f"ws://127.0.0.1:{port}/")) as url:
            collected = run(WebSocket(url))
        assert names(collected) == ["connecting", "connected", "redirected", "disconnected"]
        assert collected[2].url == f"ws://127.0.0.1:{port}/"
        assert repr(collected[3]) == (
            f"Disconnected(reason='connection refused by 127.0.0.1:{port}', graceful=False)"
        )

    def test_one_connect_timeout_for_the_whole_chain(self) -> None:
        def silent(connection: RawConnection) -> None:
            connection.read_request()
            connection.sock.recv(1)  # never answers; returns when the client leaves

        with raw_server(silent) as slow:
            with raw_server(raw_redirect("302 Found", slow + "/")) as url:
                collected = run(WebSocket(url, connect_timeout=2.0))
        assert names(collected) == [
            "connecting",
            "connected",
            "redirected",
            "connected",
            "disconnected",
        ]
        assert collected[-1].reason == "timed out after 2s waiting for the upgrade response"
        assert not collected[-1].graceful


class TestCredentials:
    HEADERS = {
        "Authorization": "Bearer secret-token",
        "Cookie": "session=secret-cookie",
        "Proxy-Authorization": "Basic c2VjcmV0",
        "X-Custom": "kept",
    }

    def test_another_host_gets_no_credentials(self) -> None:
        first, second = Report(), Report()
        with raw_server(accepting(second)) as other:
            # The same port, another host name: another origin.
            location = other.replace("127.0.0.1", "localhost") + "/there"
            with raw_server(raw_redirect("302 Found", location, first)) as url:
                ws = WebSocket(
                    url.replace("ws://", "ws://user:password@") + "/here",
                    headers=self.HEADERS,
                )
                collected = run(ws, close_on_ready(ws), poll=60)
        assert names(collected)[:6] == REDIRECTED
        sent_first = first.get("request").decode()
        for name in ("Authorization: Basic", "Cookie: session=secret-cookie"):
            assert name in sent_first
        assert "Authorization: Bearer secret-token" in sent_first
        sent_second = second.get("request").decode()
        assert sent_second.startswith("GET /there HTTP/1.1\r\nHost: localhost:")
        for secret in ("Authorization", "Cookie", "secret", "dXNlcjpwYXNzd29yZA"):
            assert secret not in sent_second
        assert "X-Custom: kept" in sent_second

    def test_another_port_gets_no_credentials(self) -> None:
        second = Report()
        with raw_server(accepting(second)) as other:
            with raw_server(raw_redirect("301 Moved Permanently", other + "/")) as url:
                ws = WebSocket(url, headers=self.HEADERS)
                collected = run(ws, close_on_ready(ws), poll=60)
        assert names(collected)[:6] == REDIRECTED
        sent = second.get("request").decode()
        assert "secret" not in sent and "X-Custom: kept" in sent

    def test_the_same_origin_keeps_them(self) -> None:
        seen: list[Any] = []
        with redirect_server({"/old": (302, "/new")}, seen) as url:
            ws = WebSocket(
                url.replace("ws://", "ws://user:password@") + "/old", headers=self.HEADERS
            )
            run(ws, close_on_ready(ws), poll=60)
        second = seen[1].headers
        assert second.get_all("Authorization") == [
            "Basic dXNlcjpwYXNzd29yZA==",
            "Bearer secret-token",
        ]
        assert second["Cookie"] == "session=secret-cookie"
        assert second["Proxy-Authorization"] == "Basic c2VjcmV0"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("redirects") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def tls_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(*names).configure_cert(context)
    return context


class TestTLS:
    def test_wss_to_wss_verifies_each_server(self, ca: trustme.CA, ca_file: str) -> None:
        context = tls_context(ca, "127.0.0.1", "localhost")
        with websockets_server(echo, scheme="wss", ssl=context) as target:
            location = target.replace("wss://", "https://") + "/secure"
            with raw_server(
                raw_redirect("308 Permanent Redirect", location), ssl_context=context
            ) as url:
                ws = WebSocket(url, ssl_cafile=ca_file)
                collected = run(ws, close_on_ready(ws), poll=60)
        assert names(collected)[:6] == REDIRECTED
        assert collected[3].url == target + "/secure"

    def test_the_next_servers_certificate_is_checked(self, ca: trustme.CA, ca_file: str) -> None:
        untrusted = tls_context(trustme.CA(), "127.0.0.1")
        with websockets_server(echo, scheme="wss", ssl=untrusted) as target:
            context = tls_context(ca, "127.0.0.1")
            with raw_server(raw_redirect("302 Found", target), ssl_context=context) as url:
                collected = run(WebSocket(url, ssl_cafile=ca_file))
        assert names(collected) == ["connecting", "connected", "redirected", "disconnected"]
        assert collected[-1].reason.startswith("TLS certificate verify failed")
        assert not collected[-1].graceful

    def test_ws_to_wss_upgrade(self, ca: trustme.CA, ca_file: str) -> None:
        context = tls_context(ca, "127.0.0.1")
        with websockets_server(echo, scheme="wss", ssl=context) as target:
            with raw_server(raw_redirect("301 Moved Permanently", target + "/")) as url:
                ws = WebSocket(url, ssl_cafile=ca_file)
                collected = run(ws, close_on_ready(ws), poll=60)
        assert names(collected)[:6] == REDIRECTED
        assert collected[3].url == target + "/"

    @pytest.mark.parametrize("scheme", ["ws", "http"])
    def test_no_downgrade_from_wss_to_ws(self, ca: trustme.CA, ca_file: str, scheme: str) -> None:
        report = Report()
        with raw_server(accepting(report)) as plain:
            location = plain.replace("ws", scheme, 1) + "/plain"
            context = tls_context(ca, "127.0.0.1")
            with raw_server(raw_redirect("302 Found", location), ssl_context=context) as url:
                collected = run(WebSocket(url, ssl_cafile=ca_file))
            assert names(collected) == ["connecting", "connected", "rejected", "disconnected"]
            assert collected[2].reason == (
                f"refused redirect (302 Found) from {url} to {plain}/plain: "
                "it would give up TLS (wss:// to ws://)"
            )
            assert repr(collected[3]) == "Disconnected(reason='closed', graceful=True)"
            with pytest.raises(AssertionError):
                report.get("request", timeout=0.2)  # nothing went to the plain server


class TestProxies:
    def test_each_hop_goes_through_the_proxy(self) -> None:
        with pproxy("http://127.0.0.1:0") as proxy:
            proxy_url = proxy.url("http")
            with websockets_server(echo) as target:
                with redirect_server({"/": (302, target + "/x")}) as url:
                    ws = WebSocket(url, proxies={"http": proxy_url})
                    collected = run(ws, close_on_ready(ws), poll=60)
                    for port in (url, target):
                        proxy.wait_for_log(rf"-> 127\.0\.0\.1:{port.rsplit(':', 1)[1]}$")
        assert names(collected)[:6] == REDIRECTED
        assert collected[1].proxy == collected[3].proxy == proxy_url

    def test_no_proxy_is_decided_for_each_hop(self, monkeypatch: pytest.MonkeyPatch) -> None:
        with pproxy("http://127.0.0.1:0") as proxy:
            monkeypatch.setenv("http_proxy", proxy.url("http"))
            monkeypatch.setenv("no_proxy", "localhost")
            with websockets_server(echo) as target:
                location = target.replace("127.0.0.1", "localhost") + "/direct"
                with redirect_server({"/": (302, location)}) as url:
                    ws = WebSocket(url)
                    collected = run(ws, close_on_ready(ws), poll=60)
        assert names(collected)[:6] == REDIRECTED
        assert collected[1].proxy == proxy.url("http")
        assert collected[3].proxy is None
        assert collected[3].url == location


def test_redirect_response_is_a_response() -> None:
    event = events.Redirected(Response(b"HTTP/1.1 308 Permanent Redirect\r\n\r\n"), "ws://h/")
    assert event.name == "redirected" and event.response.status_code == 308


class TestMaxRedirectsArgument:
    def test_default_and_attribute(self) -> None:
        assert WebSocket("ws://example.com/").max_redirects == 10
        assert WebSocket("ws://example.com/", max_redirects=0).max_redirects == 0

    @pytest.mark.parametrize(
        ("value", "error", "message"),
        [
            (-1, ValueError, "max_redirects must be 0 or more, not -1"),
            (None, TypeError, "max_redirects must be an int, not NoneType"),
            (True, TypeError, "max_redirects must be an int, not bool"),
            (2.0, TypeError, "max_redirects must be an int, not float"),
            ("3", TypeError, "max_redirects must be an int, not str"),
        ],
    )
    def test_bad_values(self, value: object, error: type, message: str) -> None:
        with pytest.raises(error, match=f"^{message}$"):
            WebSocket("ws://example.com/", max_redirects=value)  # type: ignore[arg-type]


def test_the_command_line_describes_it() -> None:
    from lomond.cli.console import describe, event_fields

    response = Response(b"HTTP/1.1 301 Moved Permanently\r\nLocation: /new\r\n\r\n")
    event = events.Redirected(response, "ws://h/new", received_time=1.0)
    assert describe(event) == "301 Moved Permanently to ws://h/new"
    assert event_fields(event) == {
        "name": "redirected",
        "received_time": 1.0,
        "response": {
            "status_code": 301,
            "status": "Moved Permanently",
            "headers": {"location": "/new"},
        },
        "url": "ws://h/new",
    }


class TestCommandLine:
    def test_follows_redirects(self, capsys: pytest.CaptureFixture[str]) -> None:
        from lomond.cli.main import main

        with redirect_server({"/old": (302, "/new")}) as url:
            assert main([url + "/old", "--send", "hi", "--json"]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [line["name"] for line in lines[:4]] == REDIRECTED[:4]
        assert lines[2]["url"] == lines[3]["url"] == url + "/new"

    def test_max_redirects_0(self, capsys: pytest.CaptureFixture[str]) -> None:
        from lomond.cli.main import main

        with redirect_server({"/old": (302, "/new")}) as url:
            assert main([url + "/old", "--max-redirects", "0", "--json", "--send", "x"]) == 1
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [line["name"] for line in lines] == [
            "connecting",
            "connected",
            "rejected",
            "disconnected",
        ]

    @pytest.mark.parametrize("value", ["-1", "x", "1.5"])
    def test_bad_values(self, value: str, capsys: pytest.CaptureFixture[str]) -> None:
        from lomond.cli.main import main

        with pytest.raises(SystemExit) as caught:
            main(["ws://example.com/", "--max-redirects", value])
        assert caught.value.code == 2
        assert "--max-redirects" in capsys.readouterr().err


class TestInAMultiplexer:
    """A redirect in a shared loop: the same sequence, and no other connection waits."""

    def test_redirects_beside_other_connections(self) -> None:
        from lomond import Multiplexer

        seen: list[Any] = []
        with redirect_server({"/a": (307, "/b"), "/b": (302, "/c")}, seen) as url:
            mux = Multiplexer()
            chained = [WebSocket(url + "/a") for _ in range(5)]
            plain = [WebSocket(url + "/c") for _ in range(5)]
            for ws in chained + plain:
                mux.add(ws, poll=60)
            collected: dict[WebSocket, list[Any]] = {ws: [] for ws in chained + plain}
            for ws, event in mux:
                collected[ws].append(event)
                if event.name == "ready":
                    ws.close()
        ending = ["ready", "poll", "closed", "disconnected"]
        for ws in chained:
            assert names(collected[ws]) == [
                "connecting",
                "connected",
                "redirected",
                "connected",
                "redirected",
                "connected",
                *ending,
            ]
            assert [event.url for event in collected[ws] if event.name == "connected"] == [
                url + "/a",
                url + "/b",
                url + "/c",
            ]
            assert collected[ws][-1].graceful
        for ws in plain:
            assert names(collected[ws]) == ["connecting", "connected", *ending]
        assert sorted(request.path for request in seen).count("/c") == 10

    def test_a_redirect_to_a_silent_server_times_out_alone(self) -> None:
        """The next hop never answers: that connection ends under its own connect
        deadline; the others are not held up."""
        from lomond import Multiplexer

        def silent(connection: RawConnection) -> None:
            connection.read_request()
            threading.Event().wait(5)

        with raw_server(silent) as silent_url, redirect_server({}) as good_url:
            with redirect_server({"/away": (302, silent_url + "/")}) as url:
                mux = Multiplexer()
                lost = WebSocket(url + "/away", connect_timeout=1)
                others = [WebSocket(good_url) for _ in range(3)]
                mux.add(lost, poll=60)
                for ws in others:
                    mux.add(ws, poll=60)
                order: list[tuple[WebSocket, str]] = []
                for ws, event in mux:
                    order.append((ws, event.name))
                    if event.name == "ready":
                        ws.close()
        lost_names = [name for ws, name in order if ws is lost]
        assert lost_names == ["connecting", "connected", "redirected", "connected", "disconnected"]
        # Every other connection finished before the lost one's deadline ended it.
        last_other = max(i for i, (ws, name) in enumerate(order) if ws is not lost)
        assert order.index((lost, "disconnected")) > last_other
