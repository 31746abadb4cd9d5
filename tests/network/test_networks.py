"""Reaching servers: ``proxies``, ``connect_timeout``, credentials, IPv6, TLS.

Everything goes through the public API against real peers on the loopback interface:

* ``pproxy`` (from PyPI), run as a subprocess on a port it picks, as an HTTP CONNECT
  proxy (with and without Basic auth), a SOCKS5 proxy (with RFC 1929 auth), a SOCKS4
  proxy, and an HTTP proxy that speaks TLS (``https://`` proxies, TLS inside TLS);
  with ``-v`` it logs each tunnel's target, so tests can see what the proxy was asked;
* the ``websockets`` server, with ``trustme`` certificates for ``wss://``;
* raw socket servers scripted as proxies that refuse, garble, stall or record what
  they are sent (SOCKS4a too, which ``pproxy`` does not speak), and servers that
  accept TCP and never answer, for the connect deadline.

The pure parts of :mod:`lomond.network.proxy` and :mod:`lomond.network.socks` are tested
byte by byte in tests/network/test_proxy.py.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import queue
import socket
import ssl
import struct
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import certifi
import pytest
import trustme
from peers import OP_CLOSE, Report, request_headers, wait_for_eof
from proxies import PProxy, pproxy
from servers import (
    OPEN,
    RawConnection,
    echo,
    frame,
    free_port_refused,
    names,
    raw_server,
    run,
    websockets_server,
)
from websockets.sync.server import ServerConnection, serve

from lomond import WebSocket

pytestmark = pytest.mark.timeout(30)

ECHOED = OPEN + ["text", "closed", "disconnected"]
FAILED = ["connecting", "connect_fail"]

# A password with every character that needs percent-encoding in a URL's userinfo.
USER = "alice"
PASSWORD = "p@ss:w/rd%"
PASSWORD_IN_URL = "p%40ss%3Aw%2Frd%25"
SECRETS = [PASSWORD, PASSWORD_IN_URL, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()]


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Tests start from an environment without proxy settings (the machine's may have some)."""
    import os

    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name.lower() == "request_method":
            monkeypatch.delenv(name)
    return monkeypatch


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].rstrip("/"))


def echo_once(ws: WebSocket, text: str = "through the tunnel", **connect_args: Any) -> list[Any]:
    """Connect, send ``text`` once ready, close once it comes back; return the events."""

    def on_event(event: Any) -> None:
        if event.name == "ready":
            ws.send_text(text)
        elif event.name == "text":
            ws.close()

    connect_args.setdefault("close_timeout", 5)
    return run(ws, on_event, **connect_args)


def assert_echoed(collected: list[Any], text: str = "through the tunnel") -> None:
    assert names(collected) == ECHOED, collected
    assert collected[4].text == text
    assert collected[-1].graceful is True


# -- pproxy ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def open_proxy() -> Iterator[PProxy]:
    """HTTP CONNECT, SOCKS4 and SOCKS5 on one port, without authentication."""
    with pproxy("http+socks4+socks5://127.0.0.1:0") as server:
        yield server


@pytest.fixture(scope="module")
def auth_proxy() -> Iterator[PProxy]:
    """HTTP CONNECT and SOCKS5 on one port, with user ``alice`` and :data:`PASSWORD`."""
    with pproxy(f"http+socks5://127.0.0.1:0#{USER}:{PASSWORD}") as server:
        yield server


# -- TLS material --------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("networks") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(cert: trustme.LeafCert, seen_names: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    if seen_names is not None:

        def record_sni(sock: Any, name: str | None, _: ssl.SSLContext) -> None:
            seen_names.append(str(name))

        context.sni_callback = record_sni
    return context


@pytest.fixture(scope="module")
def server_names() -> list[str]:
    """The SNI names the ``wss_url`` server received, in order."""
    return []


@pytest.fixture(scope="module")
def ws_url() -> Iterator[str]:
    with websockets_server(echo, max_size=None) as url:
        yield url


@pytest.fixture(scope="module")
def wss_url(ca: trustme.CA, server_names: list[str]) -> Iterator[str]:
    context = server_context(ca.issue_cert("127.0.0.1", "localhost"), server_names)
    with websockets_server(echo, scheme="wss", ssl=context, max_size=None) as url:
        yield url


@pytest.fixture(scope="module")
def tls_proxy(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PProxy]:
    """An HTTP CONNECT proxy reached over TLS (certificate for 127.0.0.1 and localhost)."""
    pem = tmp_path_factory.mktemp("proxy") / "proxy.pem"
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(pem))
    with pproxy("http+ssl://127.0.0.1:0", "--ssl", str(pem)) as server:
        yield server


# -- scripted peers ------------------------------------------------------------------


def relay(client: socket.socket, host: str, port: int) -> None:
    """Connect to ``host:port`` and copy bytes both ways until both sides are done."""
    upstream = socket.create_connection((host, port), timeout=10)
    client.settimeout(10)

    def pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)

    backwards = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    backwards.start()
    pump(client, upstream)
    backwards.join(10)
    upstream.close()


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1024 * 1024))
        if not chunk:
            raise EOFError("client closed the connection")
        data += chunk
    return bytes(data)


def recv_client_frame(sock: socket.socket) -> tuple[int, bytes]:
    """Read one masked client frame (unmasked quickly, for megabytes)."""
    head = recv_exact(sock, 2)
    length = head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(recv_exact(sock, 2), "big")
    elif length == 127:
        length = int.from_bytes(recv_exact(sock, 8), "big")
    key = recv_exact(sock, 4)
    masked = recv_exact(sock, length)
    mask = (key * (length // 4 + 1))[:length]
    payload = (int.from_bytes(masked, "big") ^ int.from_bytes(mask, "big")).to_bytes(length, "big")
    return head[0] & 0x0F, payload


def read_connect_request(connection: RawConnection) -> tuple[str, dict[str, str]]:
    """Read a CONNECT request; return its request line and headers."""
    request = connection.read_request()
    return request.split(b"\r\n", 1)[0].decode("ascii"), request_headers(request)


def read_socks5_request(sock: socket.socket) -> tuple[int, str, int]:
    """Serve a SOCKS5 greeting (no auth) and read the request: (ATYP, host, port)."""
    greeting = recv_exact(sock, 2)
    recv_exact(sock, greeting[1])
    sock.sendall(b"\x05\x00")
    head = recv_exact(sock, 4)
    address_type = head[3]
    if address_type == 1:
        host = socket.inet_ntop(socket.AF_INET, recv_exact(sock, 4))
    elif address_type == 4:
        host = socket.inet_ntop(socket.AF_INET6, recv_exact(sock, 16))
    else:
        host = recv_exact(sock, recv_exact(sock, 1)[0]).decode()
    port = int.from_bytes(recv_exact(sock, 2), "big")
    return address_type, host, port


@contextlib.contextmanager
def scripted_tls_proxy(ca: trustme.CA) -> Iterator[int]:
    """An HTTP CONNECT proxy over TLS that relays with blocking writes; yields its port."""
    context = server_context(ca.issue_cert("127.0.0.1"))

    def script(connection: RawConnection) -> None:
        tls = context.wrap_socket(connection.sock, server_side=True)
        try:
            line, _ = read_connect_request(RawConnection(tls))
            host, _, port = line.split()[1].rpartition(":")
            tls.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            relay(tls, host, int(port))
        finally:
            tls.close()

    with raw_server(script) as url:
        yield port_of(url)


def silent(connection: RawConnection) -> None:
    """Accept TCP and never answer (until the client leaves)."""
    wait_for_eof(connection, timeout=10)


def ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback on this machine")


@contextlib.contextmanager
def hanging_port() -> Iterator[int]:
    """A loopback port where TCP connect hangs: its listener's accept queue is full.

    Skips the test where the system does not make connects wait on a full queue.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            probe = socket.socket()
            probe.settimeout(0.2)
            try:
                probe.connect(("127.0.0.1", port))
            except socket.timeout:
                probe.close()
                break
            fillers.append(probe)
        else:
            pytest.skip("connects to a full accept queue do not wait on this system")
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


# -- HTTP CONNECT --------------------------------------------------------------------


class TestHTTPConnectProxy:
    def test_ws_through_the_proxy(self, open_proxy: PProxy, ws_url: str) -> None:
        proxy_url = open_proxy.url("http")
        collected = echo_once(WebSocket(ws_url, proxies={"http": proxy_url}))
        assert_echoed(collected)
        assert collected[1].proxy == proxy_url
        assert repr(collected[1]) == f"Connected(url='{ws_url}', proxy='{proxy_url}')"
        open_proxy.wait_for_log(rf"^http 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:{port_of(ws_url)}$")

    def test_wss_through_the_proxy(self, open_proxy: PProxy, wss_url: str, ca_file: str) -> None:
        proxy_url = open_proxy.url("http")
        ws = WebSocket(wss_url, proxies={"https": proxy_url}, ssl_cafile=ca_file)
        collected = echo_once(ws)
        assert_echoed(collected)
        assert collected[1].proxy == proxy_url

    def test_only_the_scheme_of_the_target_counts(self, open_proxy: PProxy, ws_url: str) -> None:
        refused = f"http://127.0.0.1:{free_port_refused()}"
        ws = WebSocket(ws_url, proxies={"https": refused, "http": open_proxy.url("http")})
        assert_echoed(echo_once(ws))

    def test_basic_auth_with_a_percent_encoded_password(
        self, auth_proxy: PProxy, ws_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="lomond")
        records: list[dict[str, Any]] = []
        proxy_url = auth_proxy.url("http", f"{USER}:{PASSWORD_IN_URL}@")
        ws = WebSocket(ws_url, proxies={"http": proxy_url}, trace=records.append)
        collected = echo_once(ws)
        assert_echoed(collected)
        assert collected[1].proxy == auth_proxy.url("http")
        shown = [repr(event) for event in collected] + [repr(r) for r in records] + [caplog.text]
        for secret in SECRETS + [USER]:
            assert not any(secret in text for text in shown), secret

    def test_wrong_password(self, auth_proxy: PProxy, ws_url: str) -> None:
        proxy_url = auth_proxy.url("http", f"{USER}:wrong@")
        collected = run(WebSocket(ws_url, proxies={"http": proxy_url}))
        assert names(collected) == FAILED
        assert collected[-1].reason == "proxy refused CONNECT: 407 Proxy Authentication Required"

    def test_no_credentials(self, auth_proxy: PProxy, ws_url: str) -> None:
        collected = run(WebSocket(ws_url, proxies={"http": auth_proxy.url("http")}))
        assert names(collected) == FAILED
        assert collected[-1].reason == "proxy refused CONNECT: 407 Proxy Authentication Required"

    def test_proxy_that_refuses_tcp(self, ws_url: str) -> None:
        port = free_port_refused()
        collected = run(WebSocket(ws_url, proxies={"http": f"http://127.0.0.1:{port}"}))
        assert names(collected) == FAILED
        assert collected[-1].reason == f"connection refused by proxy 127.0.0.1:{port}"

    def test_target_the_proxy_cannot_reach(self, open_proxy: PProxy) -> None:
        target = f"ws://127.0.0.1:{free_port_refused()}/"
        collected = run(WebSocket(target, proxies={"http": open_proxy.url("http")}))
        # pproxy hangs up instead of answering 502: either way, a readable failure.
        assert names(collected) == FAILED
        assert "proxy" in collected[-1].reason

    def test_request_line_and_headers(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            line, headers = read_connect_request(connection)
            report.put("line", line)
            report.put("headers", headers)
            connection.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            connection.handshake()
            wait_for_eof(connection)

        with raw_server(script) as proxy_url:
            proxy = proxy_url.replace("ws://", "http://").replace(
                "127.0.0.1", f"bob:{PASSWORD_IN_URL}@127.0.0.1"
            )
            ws = WebSocket(
                "ws://server.example:8080/chat", proxies={"http": proxy}, agent="Agent/9"
            )
            collected = run(
                ws, lambda event: ws.close() if event.name == "ready" else None, close_timeout=0.5
            )
        assert names(collected)[:3] == ["connecting", "connected", "ready"]
        assert report.get("line") == "CONNECT server.example:8080 HTTP/1.1"
        headers = report.get("headers")
        assert headers["host"] == "server.example:8080"
        assert headers["user-agent"] == "Agent/9"
        credentials = base64.b64encode(f"bob:{PASSWORD}".encode()).decode()
        assert headers["proxy-authorization"] == f"Basic {credentials}"


class TestProxyFailuresCloseTheSocket:
    """Each refusal gives a readable reason, and the proxy sees the client hang up."""

    def fail_through(
        self, reply: Callable[[RawConnection], None], scheme: str = "http"
    ) -> tuple[str, float | None]:
        report = Report()

        def script(connection: RawConnection) -> None:
            reply(connection)
            report.put("eof_after", wait_for_eof(connection, timeout=5))

        with raw_server(script) as url:
            proxy = f"{scheme}://127.0.0.1:{port_of(url)}"
            collected = run(
                WebSocket("ws://server.example/", proxies={"http": proxy}, connect_timeout=5)
            )
            assert names(collected) == FAILED
            return collected[-1].reason, report.get("eof_after")

    def test_407_with_a_body(self) -> None:
        def reply(connection: RawConnection) -> None:
            connection.read_request()
            connection.send(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="corp"\r\nContent-Length: 6\r\n\r\ndenied'
            )

        reason, eof_after = self.fail_through(reply)
        assert reason == "proxy refused CONNECT: 407 Proxy Authentication Required"
        assert eof_after is not None and eof_after < 2

    def test_reply_that_is_not_http(self) -> None:
        def reply(connection: RawConnection) -> None:
            connection.read_request()
            connection.send(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")

        reason, eof_after = self.fail_through(reply)
        assert reason.startswith("proxy sent an invalid reply to CONNECT: b'SSH-2.0")
        assert eof_after is not None and eof_after < 2

    def test_reply_header_over_64_kib(self) -> None:
        def reply(connection: RawConnection) -> None:
            connection.read_request()
            connection.send(b"HTTP/1.1 200 OK\r\n" + b"X-Padding: " + b"x" * (70 * 1024))

        reason, eof_after = self.fail_through(reply)
        assert reason == "the proxy's reply to CONNECT is longer than 64 KiB"
        assert eof_after is not None and eof_after < 2

    def test_hang_up_in_the_middle_of_the_reply(self) -> None:
        def reply(connection: RawConnection) -> None:
            connection.read_request()
            connection.send(b"HTTP/1.1 200 Connection est")
            connection.sock.shutdown(socket.SHUT_WR)

        reason, eof_after = self.fail_through(reply)
        assert reason.startswith("HTTP proxy 127.0.0.1:")
        assert reason.endswith(" closed the connection (waiting for the reply to CONNECT)")
        assert eof_after is not None and eof_after < 2

    def test_data_after_the_reply(self) -> None:
        def reply(connection: RawConnection) -> None:
            connection.read_request()
            connection.send(b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n\r\n")

        reason, eof_after = self.fail_through(reply)
        assert reason == "proxy sent unexpected data after its reply to CONNECT"
        assert eof_after is not None and eof_after < 2

    def test_proxy_resets_the_connection(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.read_request()
            # SO_LINGER with a zero timeout: close() sends a reset, not a FIN.
            connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.sock.close()

        with raw_server(script) as url:
            proxy = f"http://127.0.0.1:{port_of(url)}"
            collected = run(WebSocket("ws://server.example/", proxies={"http": proxy}))
        assert names(collected) == FAILED
        reason = collected[-1].reason
        assert reason.startswith(f"HTTP proxy 127.0.0.1:{port_of(url)} closed the connection") or (
            reason.startswith(f"lost the connection to HTTP proxy 127.0.0.1:{port_of(url)} ")
        ), reason

    @pytest.mark.parametrize(
        ("code", "reason"),
        [
            (1, "general SOCKS server failure"),
            (2, "connection not allowed by ruleset"),
            (3, "network unreachable"),
            (4, "host unreachable"),
            (5, "connection refused"),
            (6, "TTL expired"),
            (7, "command not supported"),
            (8, "address type not supported"),
            (0x42, "unknown error code 0x42"),
        ],
    )
    def test_socks5_error_codes(self, code: int, reason: str) -> None:
        def reply(connection: RawConnection) -> None:
            read_socks5_request(connection.sock)
            connection.send(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))

        got, eof_after = self.fail_through(reply, "socks5h")
        assert got.endswith(f"could not connect to server.example:80: {reason}")
        assert got.startswith("SOCKS5 proxy 127.0.0.1:")
        assert eof_after is not None and eof_after < 2

    def test_socks5_that_wants_authentication(self) -> None:
        def reply(connection: RawConnection) -> None:
            recv_exact(connection.sock, 3)
            connection.send(b"\x05\xff")

        reason, eof_after = self.fail_through(reply, "socks5h")
        assert reason.endswith(
            "accepted none of the offered authentication methods "
            "(it may need a user name and password)"
        )
        assert eof_after is not None and eof_after < 2

    @pytest.mark.parametrize("code", [91, 92, 93])
    def test_socks4_refusals(self, code: int) -> None:
        def reply(connection: RawConnection) -> None:
            request = connection.sock.recv(1024)
            assert request.startswith(b"\x04\x01")
            connection.send(bytes([0, code, 0, 0, 0, 0, 0, 0]))

        reason, eof_after = self.fail_through(reply, "socks4a")
        assert "could not connect to server.example:80: request rejected" in reason
        assert eof_after is not None and eof_after < 2

    def test_http_proxy_answering_a_socks_client(self) -> None:
        def reply(connection: RawConnection) -> None:
            connection.sock.recv(1024)
            connection.send(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        reason, eof_after = self.fail_through(reply, "socks5h")
        assert reason.endswith("did not answer as a SOCKS5 proxy")
        assert eof_after is not None and eof_after < 2


# -- SOCKS ---------------------------------------------------------------------------


class TestSocks5Proxy:
    def test_socks5h_with_a_percent_encoded_password(
        self, auth_proxy: PProxy, ws_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="lomond")
        records: list[dict[str, Any]] = []
        proxy_url = auth_proxy.url("socks5h", f"{USER}:{PASSWORD_IN_URL}@")
        target = f"ws://localhost:{port_of(ws_url)}/"
        collected = echo_once(WebSocket(target, proxies={"http": proxy_url}, trace=records.append))
        assert_echoed(collected)
        assert collected[1].proxy == auth_proxy.url("socks5h")
        # socks5h: the proxy got the name, and resolved it.
        auth_proxy.wait_for_log(rf"^socks5 127\.0\.0\.1:\d+ -> localhost:{port_of(ws_url)}$")
        shown = [repr(event) for event in collected] + [repr(r) for r in records] + [caplog.text]
        for secret in SECRETS:
            assert not any(secret in text for text in shown), secret

    def test_socks5_resolves_locally(self, open_proxy: PProxy, ws_url: str) -> None:
        address = socket.getaddrinfo("localhost", None, 0, socket.SOCK_STREAM)[0][4][0]
        if address != "127.0.0.1":
            pytest.skip(f"localhost resolves to {address} first here")
        target = f"ws://localhost:{port_of(ws_url)}/"
        collected = echo_once(WebSocket(target, proxies={"http": open_proxy.url("socks5")}))
        assert_echoed(collected)
        open_proxy.wait_for_log(rf"^socks5 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:{port_of(ws_url)}$")

    def test_wss_through_socks5(self, open_proxy: PProxy, wss_url: str, ca_file: str) -> None:
        proxies = {"https": open_proxy.url("socks5")}
        assert_echoed(echo_once(WebSocket(wss_url, proxies=proxies, ssl_cafile=ca_file)))

    def test_wrong_password(self, auth_proxy: PProxy, ws_url: str) -> None:
        proxy_url = auth_proxy.url("socks5", f"{USER}:wrong@")
        collected = run(WebSocket(ws_url, proxies={"http": proxy_url}))
        assert names(collected) == FAILED
        assert collected[-1].reason == (
            f"SOCKS5 proxy 127.0.0.1:{auth_proxy.port} closed the connection after "
            "authentication (wrong user name or password?)"
        )

    def test_no_credentials(self, auth_proxy: PProxy, ws_url: str) -> None:
        collected = run(WebSocket(ws_url, proxies={"http": auth_proxy.url("socks5")}))
        assert names(collected) == FAILED
        reason = collected[-1].reason
        assert reason.startswith(f"SOCKS5 proxy 127.0.0.1:{auth_proxy.port} ")
        # pproxy hangs up rather than answering "no acceptable method".
        assert "closed the connection" in reason or "accepted none" in reason

    def test_address_types_on_the_wire(self, ws_url: str) -> None:
        """socks5:// sends an IP address (resolved here), socks5h:// the name."""
        seen: queue.Queue[tuple[int, str, int]] = queue.Queue()

        def script(connection: RawConnection) -> None:
            address_type, host, port = read_socks5_request(connection.sock)
            seen.put((address_type, host, port))
            connection.send(b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x00")
            relay(connection.sock, "127.0.0.1", port)

        port = port_of(ws_url)
        with raw_server(script) as url:
            for scheme, target, expected in [
                ("socks5h", "localhost", (3, "localhost", port)),
                ("socks5", "127.0.0.1", (1, "127.0.0.1", port)),
            ]:
                proxies = {"http": f"{scheme}://127.0.0.1:{port_of(url)}"}
                assert_echoed(echo_once(WebSocket(f"ws://{target}:{port}/", proxies=proxies)))
                assert seen.get(timeout=5) == expected


class TestSocks4Proxy:
    def test_socks4(self, open_proxy: PProxy, ws_url: str) -> None:
        proxy_url = open_proxy.url("socks4")
        collected = echo_once(WebSocket(ws_url, proxies={"http": proxy_url}))
        assert_echoed(collected)
        assert collected[1].proxy == proxy_url
        open_proxy.wait_for_log(rf"^socks4 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:{port_of(ws_url)}$")

    def test_socks4_resolves_locally(self, open_proxy: PProxy, ws_url: str) -> None:
        target = f"ws://localhost:{port_of(ws_url)}/"
        collected = echo_once(WebSocket(target, proxies={"http": open_proxy.url("socks4")}))
        assert_echoed(collected)

    def test_socks4a_sends_the_name(self, ws_url: str) -> None:
        # pproxy does not speak SOCKS4a: a scripted proxy checks the request and relays.
        report = Report()

        def script(connection: RawConnection) -> None:
            head = recv_exact(connection.sock, 8)
            rest = b""
            while rest.count(b"\x00") < 2:
                rest += connection.sock.recv(1)
            userid, name, _ = rest.split(b"\x00")
            report.put("request", (head, userid, name))
            connection.send(b"\x00\x5a" + head[2:8])
            relay(connection.sock, name.decode(), int.from_bytes(head[2:4], "big"))

        port = port_of(ws_url)
        with raw_server(script) as url:
            proxy_url = f"socks4a://ident@127.0.0.1:{port_of(url)}"
            ws = WebSocket(f"ws://localhost:{port}/", proxies={"http": proxy_url})
            assert_echoed(echo_once(ws))
        head, userid, name = report.get("request")
        assert head == b"\x04\x01" + port.to_bytes(2, "big") + b"\x00\x00\x00\x01"
        assert (userid, name) == (b"ident", b"localhost")

    def test_socks4_cannot_reach_ipv6(self, open_proxy: PProxy) -> None:
        ws = WebSocket("ws://[::1]:8080/", proxies={"http": open_proxy.url("socks4")})
        collected = run(ws)
        assert names(collected) == FAILED
        assert "IPv4" in collected[-1].reason


# -- https:// proxies: TLS to the proxy, and TLS inside TLS -------------------------


class TestHTTPSProxy:
    def test_ws_through_a_tls_proxy(self, tls_proxy: PProxy, ws_url: str, ca_file: str) -> None:
        proxy_url = tls_proxy.url("https")
        ws = WebSocket(ws_url, proxies={"http": proxy_url}, ssl_cafile=ca_file)
        collected = echo_once(ws)
        assert_echoed(collected)
        assert collected[1].proxy == proxy_url

    def test_wss_through_a_tls_proxy_is_tls_inside_tls(
        self, tls_proxy: PProxy, wss_url: str, ca_file: str, server_names: list[str]
    ) -> None:
        records: list[dict[str, Any]] = []
        target = f"wss://localhost:{port_of(wss_url)}/"
        proxies = {"https": tls_proxy.url("https")}
        ws = WebSocket(target, proxies=proxies, ssl_cafile=ca_file, trace=records.append)
        server_names.clear()
        collected = echo_once(ws)
        assert_echoed(collected)
        assert server_names == ["localhost"]  # SNI inside the tunnel
        assert "tls_wrapped" in [record["stage"] for record in records]
        tls_proxy.wait_for_log(rf"-> localhost:{port_of(wss_url)}$")

    def test_large_messages_inside_tls_inside_tls(
        self, tls_proxy: PProxy, wss_url: str, ca_file: str
    ) -> None:
        """Megabytes each way: writes block and resume, reads span many records."""
        payloads = [bytes(range(256)) * 4096 * n for n in (1, 4, 2)]  # 1, 4 and 2 MiB
        ws = WebSocket(wss_url, proxies={"https": tls_proxy.url("https")}, ssl_cafile=ca_file)

        def on_event(event: Any) -> None:
            if event.name == "ready":
                for payload in payloads:
                    ws.send_binary(payload)
                ws.send_text("done")
            elif event.name == "text":
                ws.close()

        collected = run(ws, on_event, close_timeout=10)
        assert names(collected) == OPEN + ["binary"] * 3 + ["text", "closed", "disconnected"]
        assert [event.data for event in collected[4:7]] == payloads

    def test_sending_from_another_thread_inside_tls_inside_tls(
        self, tls_proxy: PProxy, wss_url: str, ca_file: str
    ) -> None:
        ws = WebSocket(wss_url, proxies={"https": tls_proxy.url("https")}, ssl_cafile=ca_file)
        count = 200
        received: list[str] = []

        def sender() -> None:
            for index in range(count):
                ws.send_text(f"message {index} " + "x" * 5000)

        def on_event(event: Any) -> None:
            if event.name == "ready":
                threading.Thread(target=sender, daemon=True).start()
            elif event.name == "text":
                received.append(event.text)
                if len(received) == count:
                    ws.close()

        collected = run(ws, on_event, close_timeout=10)
        assert names(collected)[-2:] == ["closed", "disconnected"]
        assert [text.split(" ")[1] for text in received] == [str(i) for i in range(count)]

    def test_server_that_stops_reading_inside_tls_inside_tls(
        self, ca: trustme.CA, ca_file: str
    ) -> None:
        """Sends that would block are retried with the same records, in order.

        pproxy's TLS listener buffers without limit, so a scripted TLS proxy that
        relays with blocking writes stands in: when the scripted server stops
        reading, the back-pressure reaches lomond's socket.
        """
        server_tls = server_context(ca.issue_cert("127.0.0.1"))

        def late_reader(connection: RawConnection) -> None:
            peer = RawConnection(server_tls.wrap_socket(connection.sock, server_side=True))
            try:
                peer.handshake()
                time.sleep(1.5)  # meanwhile every buffer on the way fills up
                while True:
                    opcode, payload = recv_client_frame(peer.sock)
                    peer.send(frame(opcode, payload))
                    if opcode == OP_CLOSE:
                        break  # then close the TCP connection first (RFC 6455 §7.1.1)
            finally:
                peer.close()

        payloads = [bytes([index]) * (1024 * 1024) for index in range(24)]
        with contextlib.ExitStack() as stack:
            url = stack.enter_context(raw_server(late_reader)).replace("ws://", "wss://")
            proxy_port = stack.enter_context(scripted_tls_proxy(ca))
            proxies = {"https": f"https://127.0.0.1:{proxy_port}"}
            ws = WebSocket(url, proxies=proxies, ssl_cafile=ca_file)

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    for payload in payloads:
                        ws.send_binary(payload)
                    ws.send_text("done")
                elif event.name == "text":
                    ws.close()

            collected = run(ws, on_event, close_timeout=10, ping_rate=0)
        assert names(collected) == OPEN + ["binary"] * 24 + ["text", "closed", "disconnected"]
        assert [event.data for event in collected[4:28]] == payloads

    def test_force_disconnect_inside_tls_inside_tls(
        self, tls_proxy: PProxy, wss_url: str, ca_file: str
    ) -> None:
        ws = WebSocket(wss_url, proxies={"https": tls_proxy.url("https")}, ssl_cafile=ca_file)
        collected = run(ws, lambda event: ws.force_disconnect() if event.name == "ready" else None)
        assert names(collected) == OPEN + ["disconnected"]
        assert collected[-1].graceful is False

    def test_untrusted_proxy_certificate(self, tls_proxy: PProxy, ws_url: str) -> None:
        collected = run(WebSocket(ws_url, proxies={"http": tls_proxy.url("https")}))
        assert names(collected) == FAILED
        assert collected[-1].reason.startswith("TLS certificate verify failed: ")

    def test_untrusted_server_certificate_inside_the_tunnel(
        self, tls_proxy: PProxy, ca: trustme.CA, ca_file: str
    ) -> None:
        other = server_context(trustme.CA().issue_cert("127.0.0.1"))
        with websockets_server(echo, scheme="wss", ssl=other) as url:
            ws = WebSocket(url, proxies={"https": tls_proxy.url("https")}, ssl_cafile=ca_file)
            collected = run(ws)
        assert names(collected) == FAILED
        reason = collected[-1].reason
        assert reason.startswith("TLS certificate verify failed: ")
        assert "issuer" in reason or "self-signed" in reason or "self signed" in reason

    def test_wrong_server_host_name_inside_the_tunnel(
        self, tls_proxy: PProxy, ca: trustme.CA, ca_file: str
    ) -> None:
        wrong = server_context(ca.issue_cert("other.example"))
        with websockets_server(echo, scheme="wss", ssl=wrong) as url:
            target = f"wss://localhost:{port_of(url)}/"
            ws = WebSocket(target, proxies={"https": tls_proxy.url("https")}, ssl_cafile=ca_file)
            collected = run(ws)
        assert names(collected) == FAILED
        assert collected[-1].reason.startswith("TLS certificate verify failed: ")
        assert "mismatch" in collected[-1].reason and "localhost" in collected[-1].reason

    def test_one_ssl_context_for_proxy_and_server_unmodified(
        self, tls_proxy: PProxy, wss_url: str, ca_file: str
    ) -> None:
        context = ssl.create_default_context(cafile=ca_file)
        before = (context.verify_mode, context.check_hostname, context.options)
        ws = WebSocket(wss_url, proxies={"https": tls_proxy.url("https")}, ssl_context=context)
        assert_echoed(echo_once(ws))
        assert (context.verify_mode, context.check_hostname, context.options) == before

    def test_plain_proxy_named_https(self, open_proxy: PProxy, ws_url: str, ca_file: str) -> None:
        ws = WebSocket(
            ws_url, proxies={"http": open_proxy.url("https")}, ssl_cafile=ca_file, connect_timeout=5
        )
        collected = run(ws)
        assert names(collected) == FAILED
        assert "TLS" in collected[-1].reason


# -- the environment -------------------------------------------------------------


class TestEnvironment:
    def test_http_proxy_for_ws(
        self, no_proxy_environment: pytest.MonkeyPatch, open_proxy: PProxy, ws_url: str
    ) -> None:
        no_proxy_environment.setenv("http_proxy", open_proxy.url("http"))
        collected = echo_once(WebSocket(ws_url))
        assert_echoed(collected)
        assert collected[1].proxy == open_proxy.url("http")

    def test_upper_case_https_proxy_for_wss(
        self,
        no_proxy_environment: pytest.MonkeyPatch,
        open_proxy: PProxy,
        wss_url: str,
        ca_file: str,
    ) -> None:
        no_proxy_environment.setenv("HTTPS_PROXY", open_proxy.url("http"))
        no_proxy_environment.setenv("http_proxy", f"http://127.0.0.1:{free_port_refused()}")
        collected = echo_once(WebSocket(wss_url, ssl_cafile=ca_file))
        assert_echoed(collected)
        assert collected[1].proxy == open_proxy.url("http")

    def test_ws_proxy_before_http_proxy(
        self, no_proxy_environment: pytest.MonkeyPatch, open_proxy: PProxy, ws_url: str
    ) -> None:
        no_proxy_environment.setenv("http_proxy", f"http://127.0.0.1:{free_port_refused()}")
        no_proxy_environment.setenv("WS_PROXY", open_proxy.url("socks5"))
        collected = echo_once(WebSocket(ws_url))
        assert_echoed(collected)
        assert collected[1].proxy == open_proxy.url("socks5")

    def test_all_proxy_last(
        self, no_proxy_environment: pytest.MonkeyPatch, auth_proxy: PProxy, ws_url: str
    ) -> None:
        proxy_url = auth_proxy.url("socks5h", f"{USER}:{PASSWORD_IN_URL}@")
        no_proxy_environment.setenv("all_proxy", proxy_url)
        collected = echo_once(WebSocket(ws_url))
        assert_echoed(collected)
        assert collected[1].proxy == auth_proxy.url("socks5h")

    @pytest.mark.parametrize(
        "no_proxy",
        ["127.0.0.1", "NO_PROXY=127.0.0.0/8", "localhost,127.0.0.1", "*", "PORT", "::1,127.0.0.1"],
    )
    def test_no_proxy_goes_direct(
        self, no_proxy_environment: pytest.MonkeyPatch, ws_url: str, no_proxy: str
    ) -> None:
        name = "no_proxy"
        if no_proxy.startswith("NO_PROXY="):
            name, no_proxy = no_proxy.split("=")
        no_proxy = no_proxy.replace("PORT", f"127.0.0.1:{port_of(ws_url)}")
        no_proxy_environment.setenv("http_proxy", f"http://127.0.0.1:{free_port_refused()}")
        no_proxy_environment.setenv(name, no_proxy)
        collected = echo_once(WebSocket(ws_url))
        assert_echoed(collected)
        assert collected[1].proxy is None

    def test_no_proxy_for_another_port_does_not_apply(
        self, no_proxy_environment: pytest.MonkeyPatch, ws_url: str
    ) -> None:
        port = free_port_refused()
        no_proxy_environment.setenv("http_proxy", f"http://127.0.0.1:{port}")
        no_proxy_environment.setenv("no_proxy", f"127.0.0.1:{port_of(ws_url) + 1}")
        collected = run(WebSocket(ws_url))
        assert collected[-1].reason == f"connection refused by proxy 127.0.0.1:{port}"

    def test_empty_dict_disables_the_environment(
        self, no_proxy_environment: pytest.MonkeyPatch, ws_url: str
    ) -> None:
        no_proxy_environment.setenv("http_proxy", f"http://127.0.0.1:{free_port_refused()}")
        collected = echo_once(WebSocket(ws_url, proxies={}))
        assert_echoed(collected)
        assert collected[1].proxy is None

    def test_a_dict_ignores_the_environment(
        self, no_proxy_environment: pytest.MonkeyPatch, open_proxy: PProxy, ws_url: str
    ) -> None:
        no_proxy_environment.setenv("ws_proxy", f"http://127.0.0.1:{free_port_refused()}")
        no_proxy_environment.setenv("no_proxy", "*")
        collected = echo_once(WebSocket(ws_url, proxies={"http": open_proxy.url("http")}))
        assert_echoed(collected)
        assert collected[1].proxy == open_proxy.url("http")

    def test_read_at_each_connect(
        self, no_proxy_environment: pytest.MonkeyPatch, open_proxy: PProxy, ws_url: str
    ) -> None:
        ws = WebSocket(ws_url)
        assert echo_once(ws)[1].proxy is None
        no_proxy_environment.setenv("http_proxy", open_proxy.url("http"))
        assert echo_once(ws)[1].proxy == open_proxy.url("http")

    def test_invalid_setting_is_a_connect_fail(
        self, no_proxy_environment: pytest.MonkeyPatch, ws_url: str
    ) -> None:
        no_proxy_environment.setenv("http_proxy", f"ftp://{USER}:{PASSWORD_IN_URL}@proxy")
        collected = run(WebSocket(ws_url))
        assert names(collected) == FAILED
        reason = collected[-1].reason
        assert reason.startswith("invalid proxy setting: environment variable http_proxy: ")
        assert "'ftp' is not supported" in reason
        assert PASSWORD_IN_URL not in reason

    def test_scheme_less_variable_is_http(
        self, no_proxy_environment: pytest.MonkeyPatch, open_proxy: PProxy, ws_url: str
    ) -> None:
        no_proxy_environment.setenv("http_proxy", f"127.0.0.1:{open_proxy.port}")
        collected = echo_once(WebSocket(ws_url))
        assert_echoed(collected)
        assert collected[1].proxy == open_proxy.url("http")


class TestProxiesArgument:
    def test_invalid_url_is_a_value_error(self) -> None:
        with pytest.raises(ValueError, match=r"proxies\['https'\]: proxy scheme 'ftp'"):
            WebSocket("wss://example.com/", proxies={"https": f"ftp://u:{PASSWORD_IN_URL}@p"})
        with pytest.raises(ValueError, match="no host"):
            WebSocket("wss://example.com/", proxies={"http": "socks5://"})

    def test_wrong_types(self) -> None:
        with pytest.raises(TypeError, match="proxies must be a dict"):
            WebSocket("ws://example.com/", proxies="http://proxy:3128")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"proxies\['http'\] must be a str"):
            WebSocket("ws://example.com/", proxies={"http": 3128})  # type: ignore[dict-item]

    def test_kept_as_given(self) -> None:
        proxies = {"https": "socks5h://p:1080", "no_proxy": "localhost"}
        assert WebSocket("wss://example.com/", proxies=proxies).proxies is proxies
        assert WebSocket("wss://example.com/").proxies is None


# -- connect_timeout: one deadline ----------------------------------------------------


class TestConnectDeadline:
    def measure(self, ws: WebSocket) -> tuple[list[Any], float]:
        start = time.monotonic()
        collected = run(ws)
        return collected, time.monotonic() - start

    def test_server_accepts_and_never_answers(self) -> None:
        with raw_server(silent) as url:
            collected, elapsed = self.measure(WebSocket(url, connect_timeout=0.5))
        assert names(collected) == ["connecting", "connected", "disconnected"]
        assert collected[-1].graceful is False
        assert collected[-1].reason.startswith("timed out after 0.5s")
        assert 0.45 <= elapsed < 2

    def test_tls_server_never_answers(self) -> None:
        with raw_server(silent) as url:
            target = url.replace("ws://", "wss://")
            collected, elapsed = self.measure(WebSocket(target, connect_timeout=0.5))
        assert names(collected) == FAILED
        assert collected[-1].reason == "timed out after 0.5s in the TLS handshake with 127.0.0.1"
        assert 0.45 <= elapsed < 2

    @pytest.mark.parametrize(
        ("scheme", "step"),
        [
            ("http", "HTTP proxy 127.0.0.1:{port} (waiting for the reply to CONNECT)"),
            ("socks5", "SOCKS5 proxy 127.0.0.1:{port} (SOCKS5 greeting)"),
            ("socks4", "SOCKS4 proxy 127.0.0.1:{port} (SOCKS4 reply)"),
        ],
    )
    def test_proxy_never_answers(self, scheme: str, step: str) -> None:
        with raw_server(silent) as url:
            port = port_of(url)
            ws = WebSocket(
                "ws://127.0.0.1:9/",
                proxies={"http": f"{scheme}://127.0.0.1:{port}"},
                connect_timeout=0.5,
            )
            collected, elapsed = self.measure(ws)
        assert names(collected) == FAILED
        assert collected[-1].reason == f"timed out after 0.5s waiting for {step.format(port=port)}"
        assert 0.45 <= elapsed < 2

    def test_tls_proxy_never_answers(self) -> None:
        with raw_server(silent) as url:
            ws = WebSocket(
                "ws://127.0.0.1:9/",
                proxies={"http": f"https://127.0.0.1:{port_of(url)}"},
                connect_timeout=0.5,
            )
            collected, elapsed = self.measure(ws)
        assert names(collected) == FAILED
        assert collected[-1].reason == "timed out after 0.5s in the TLS handshake with 127.0.0.1"
        assert 0.45 <= elapsed < 2

    def test_tls_server_never_answers_inside_the_tunnel(
        self, tls_proxy: PProxy, ca_file: str
    ) -> None:
        with raw_server(silent) as url:
            target = url.replace("ws://", "wss://")
            ws = WebSocket(
                target,
                proxies={"https": tls_proxy.url("https")},
                ssl_cafile=ca_file,
                connect_timeout=1,
            )
            collected, elapsed = self.measure(ws)
        assert names(collected) == FAILED
        assert collected[-1].reason == "timed out after 1s in the TLS handshake with 127.0.0.1"
        assert 0.95 <= elapsed < 2.5

    def test_one_budget_across_proxy_and_upgrade(self, ws_url: str) -> None:
        """A slow proxy leaves less time for the rest: the deadline is not per step."""

        def slow_proxy(connection: RawConnection) -> None:
            connection.read_request()
            time.sleep(0.6)
            connection.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            wait_for_eof(connection)  # the "server" never answers the upgrade

        with raw_server(slow_proxy) as url:
            proxies = {"http": f"http://127.0.0.1:{port_of(url)}"}
            collected, elapsed = self.measure(
                WebSocket(ws_url, proxies=proxies, connect_timeout=1.0)
            )
        assert names(collected) == ["connecting", "connected", "disconnected"]
        assert collected[-1].reason.startswith("timed out after 1s")
        assert 0.95 <= elapsed < 1.45  # not 0.6 + 1.0

    def test_tcp_connect_that_hangs(self) -> None:
        with hanging_port() as port:
            collected, elapsed = self.measure(
                WebSocket(f"ws://127.0.0.1:{port}/", connect_timeout=0.5)
            )
        assert names(collected) == FAILED
        assert collected[-1].reason == f"timed out after 0.5s connecting to 127.0.0.1:{port}"
        assert 0.45 <= elapsed < 2

    def test_tcp_connect_to_the_proxy_that_hangs(self) -> None:
        with hanging_port() as port:
            proxies = {"http": f"http://127.0.0.1:{port}"}
            ws = WebSocket("ws://server.example/", proxies=proxies, connect_timeout=0.5)
            collected, elapsed = self.measure(ws)
        assert names(collected) == FAILED
        assert collected[-1].reason == f"timed out after 0.5s connecting to proxy 127.0.0.1:{port}"
        assert 0.45 <= elapsed < 2

    def test_slow_dns(self, monkeypatch: pytest.MonkeyPatch) -> None:
        release = threading.Event()
        real_getaddrinfo = socket.getaddrinfo

        def slow_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            if host == "slow.test":
                release.wait(10)
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return real_getaddrinfo(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
        try:
            collected, elapsed = self.measure(WebSocket("ws://slow.test/", connect_timeout=0.3))
        finally:
            release.set()
        assert names(collected) == FAILED
        assert collected[-1].reason == "timed out after 0.3s resolving host 'slow.test'"
        assert 0.25 <= elapsed < 2

    def test_unknown_host_without_a_deadline(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def no_such_host(host: Any, *args: Any, **kwargs: Any) -> Any:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

        monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
        collected = run(WebSocket("ws://nowhere.test/", connect_timeout=None))
        assert names(collected) == FAILED
        assert collected[-1].reason == "could not resolve host 'nowhere.test'"


# -- credentials in the URL ------------------------------------------------------------


class TestURLCredentials:
    def test_basic_authorization_and_nowhere_else(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG, logger="lomond")
        report = Report()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            report.put("request", connection.request)
            wait_for_eof(connection)

        records: list[dict[str, Any]] = []
        with raw_server(script) as url:
            target = url.replace("ws://", f"ws://{USER}:{PASSWORD_IN_URL}@") + "/path?q=1"
            ws = WebSocket(target, trace=records.append)
            collected = run(
                ws, lambda event: ws.close() if event.name == "ready" else None, close_timeout=0.5
            )
        request = report.get("request")
        headers = request_headers(request)
        credentials = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        assert headers["authorization"] == f"Basic {credentials}"
        assert headers["host"] == f"127.0.0.1:{port_of(url)}"
        assert request.split(b"\r\n", 1)[0] == b"GET /path?q=1 HTTP/1.1"
        assert ws.url == f"{url}/path?q=1"
        assert repr(ws) == f"WebSocket('{url}/path?q=1')"
        assert collected[0].url == collected[1].url == ws.url
        shown = [repr(ws)] + [repr(event) for event in collected] + [repr(r) for r in records]
        shown.append(caplog.text)
        for secret in SECRETS + [USER]:
            assert not any(secret in text for text in shown), secret


# -- IPv6 ----------------------------------------------------------------------------


@contextlib.contextmanager
def ipv6_server(handler: Callable[[ServerConnection], None], **kwargs: Any) -> Iterator[int]:
    """A ``websockets`` server on [::1]; yields its port."""
    listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    server = serve(handler, sock=listener, compression=None, **kwargs)
    port = server.socket.getsockname()[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()
        thread.join(5)


@needs_ipv6
class TestIPv6:
    def test_connect_to_an_ipv6_literal(self) -> None:
        seen_hosts: list[str] = []

        def handler(connection: ServerConnection) -> None:
            assert connection.request is not None
            seen_hosts.append(connection.request.headers["Host"])
            echo(connection)

        with ipv6_server(handler) as port:
            ws = WebSocket(f"ws://[::1]:{port}/")
            assert (ws.host, ws.port) == ("::1", port)
            collected = echo_once(ws)
        assert_echoed(collected)
        assert collected[0].url == f"ws://[::1]:{port}/"
        assert seen_hosts == [f"[::1]:{port}"]

    def test_default_port_host_header(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            line, headers = read_connect_request(connection)
            report.put("line", line)
            report.put("headers", headers)

        with raw_server(script) as url:
            ws = WebSocket(
                "ws://[::1]/",
                proxies={"http": f"http://127.0.0.1:{port_of(url)}"},
                connect_timeout=2,
            )
            run(ws)
        assert report.get("line") == "CONNECT [::1]:80 HTTP/1.1"
        assert report.get("headers")["host"] == "[::1]:80"

    def test_through_an_http_proxy(self, open_proxy: PProxy) -> None:
        with ipv6_server(echo) as port:
            ws = WebSocket(f"ws://[::1]:{port}/", proxies={"http": open_proxy.url("http")})
            collected = echo_once(ws)
        assert_echoed(collected)
        open_proxy.wait_for_log(rf"^http 127\.0\.0\.1:\d+ -> ::1:{port}$")

    def test_through_socks5(self, open_proxy: PProxy) -> None:
        with ipv6_server(echo) as port:
            ws = WebSocket(f"ws://[::1]:{port}/", proxies={"http": open_proxy.url("socks5")})
            assert_echoed(echo_once(ws))

    def test_wss_to_an_ipv6_literal(self, ca: trustme.CA, ca_file: str) -> None:
        context = server_context(ca.issue_cert("::1"))
        with ipv6_server(echo, ssl=context) as port:
            assert_echoed(echo_once(WebSocket(f"wss://[::1]:{port}/", ssl_cafile=ca_file)))

    def test_refused_ipv6_port(self) -> None:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
            port = probe.getsockname()[1]
        collected = run(WebSocket(f"ws://[::1]:{port}/"))
        assert collected[-1].reason == f"connection refused by [::1]:{port}"


# -- TLS defaults ----------------------------------------------------------------------


class TestTLSDefaults:
    def test_default_context(self) -> None:
        context = WebSocket("wss://example.com/")._tls_context()
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname is True
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2

    def test_default_context_trusts_certifi(self) -> None:
        certifi_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        certifi_context.load_verify_locations(cafile=certifi.where())
        certifi_subjects = {repr(cert["subject"]) for cert in certifi_context.get_ca_certs()}
        context = WebSocket("wss://example.com/")._tls_context()
        subjects = {repr(cert["subject"]) for cert in context.get_ca_certs()}
        assert certifi_subjects and certifi_subjects <= subjects

    def test_ssl_cafile_trusts_exactly_that_bundle(self, ca: trustme.CA, ca_file: str) -> None:
        context = WebSocket("wss://example.com/", ssl_cafile=ca_file)._tls_context()
        assert len(context.get_ca_certs()) == 1
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname

    def test_given_context_is_used_as_it_is(self) -> None:
        given = ssl.create_default_context()
        assert WebSocket("wss://example.com/", ssl_context=given)._tls_context() is given

    def test_sni_is_sent(self, wss_url: str, ca_file: str, server_names: list[str]) -> None:
        server_names.clear()
        target = f"wss://localhost:{port_of(wss_url)}/"
        assert_echoed(echo_once(WebSocket(target, ssl_cafile=ca_file)))
        assert server_names == ["localhost"]

    def test_server_that_hangs_up_in_the_handshake(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.sock.recv(1024)  # the ClientHello

        with raw_server(script) as url:
            collected = run(WebSocket(url.replace("ws://", "wss://"), connect_timeout=5))
        assert names(collected) == FAILED
        assert collected[-1].reason.startswith("TLS handshake")

    def test_missing_cafile_is_a_connect_fail(self, tmp_path: Path) -> None:
        missing = tmp_path / "missing.pem"
        collected = run(WebSocket("wss://127.0.0.1:9/", ssl_cafile=str(missing)))
        assert names(collected) == FAILED
        assert collected[-1].reason.startswith("could not load the TLS settings: ")


class TestHostNames:
    def test_internationalised_host_is_sent_as_idna(self) -> None:
        report = Report()

        def script(connection: RawConnection) -> None:
            line, headers = read_connect_request(connection)
            report.put("line", line)

        ws = WebSocket("ws://bücher.example:8080/")
        assert ws.host == "xn--bcher-kva.example"
        with raw_server(script) as url:
            ws.proxies = {"http": f"http://127.0.0.1:{port_of(url)}"}
            run(ws)
        assert report.get("line") == "CONNECT xn--bcher-kva.example:8080 HTTP/1.1"

    def test_invalid_host_name(self) -> None:
        with pytest.raises(ValueError, match="not a valid host name"):
            WebSocket("ws://bü..example/")
