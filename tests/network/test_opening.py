"""lomond.network.opening: opening a connection step by step, without blocking."""

from __future__ import annotations

import contextlib
import select
import socket
import time
from typing import Any, Generator, Iterator

import pytest
from servers import RawConnection, free_port_refused, raw_server

from lomond import WebSocket
from lomond.errors import ConnectFail
from lomond.network.deadline import Deadline
from lomond.network.opening import READ, WRITE, Blocking, WaitFor, open_steps
from lomond.network.sockets import Opened


def drive(steps: Generator[Any, Any, Opened]) -> tuple[Opened, list[str]]:
    """Run the steps as a loop would: wait on each socket, make each blocking call."""
    seen: list[str] = []
    value: Any = None
    while True:
        try:
            step = steps.send(value)
        except StopIteration as stop:
            return stop.value, seen
        value = None
        if isinstance(step, Blocking):
            seen.append(f"blocking: {step.doing}")
            value = step.function()
        else:
            assert isinstance(step, WaitFor)
            seen.append(f"wait {'read' if step.mask == READ else 'write'}: {step.doing}")
            readable = [step.sock] if step.mask == READ else []
            writable = [step.sock] if step.mask == WRITE else []
            select.select(readable, writable, [], 5)


def connector(url: str, **options: Any) -> Any:
    return WebSocket(url, proxies={}, **options)._make_connector()


class TestDirect:
    def test_an_ip_address_needs_no_blocking_call(self) -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with listener:
            opened, seen = drive(open_steps(connector(f"ws://127.0.0.1:{port}/"), Deadline(5)))
            with opened.sock:
                assert not opened.sock.getblocking()
                assert opened.proxy_url is None
        assert all(not step.startswith("blocking") for step in seen)

    def test_a_name_is_resolved_by_a_blocking_call(self) -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with listener:
            opened, seen = drive(open_steps(connector(f"ws://localhost:{port}/"), Deadline(5)))
            opened.sock.close()
        assert seen[0] == "blocking: resolving host 'localhost'"

    def test_in_place_when_not_pooled(self) -> None:
        port = free_port_refused()
        steps = open_steps(connector(f"ws://localhost:{port}/"), Deadline(5), pooled=False)
        with pytest.raises(ConnectFail, match="connection refused by localhost:"):
            drive(steps)

    def test_refused(self) -> None:
        port = free_port_refused()
        with pytest.raises(ConnectFail, match=f"^connection refused by 127.0.0.1:{port}$"):
            drive(open_steps(connector(f"ws://127.0.0.1:{port}/"), Deadline(5)))

    def test_tls_failure_says_what_failed(self) -> None:
        """A plain TCP server that hangs up: the TLS handshake fails with the reason."""
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with listener:
            steps = open_steps(connector(f"wss://127.0.0.1:{port}/"), Deadline(5))
            step = steps.send(None)  # connecting, or already on to the handshake
            accepted, _ = listener.accept()
            accepted.close()
            with pytest.raises(ConnectFail, match="^TLS handshake failed: "):
                value: Any = None
                while True:
                    select.select([step.sock], [step.sock], [], 5)
                    step = steps.send(value)

    def test_closing_the_steps_closes_the_socket(self) -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with listener:
            steps = open_steps(connector(f"wss://127.0.0.1:{port}/"), Deadline(5))
            step = steps.send(None)
            while step.doing.startswith("connecting"):
                select.select([], [step.sock], [], 5)
                step = steps.send(None)
            assert step.doing == "in the TLS handshake with 127.0.0.1"
            steps.close()  # the loop gave up (its deadline passed)
            assert step.sock.fileno() == -1


class TestProxied:
    def test_tls_inside_tls_is_one_blocking_call_that_keeps_the_deadline(self) -> None:
        ws = WebSocket("wss://example.invalid/", proxies={"https": "https://127.0.0.1:1"})
        steps = open_steps(ws._make_connector(), Deadline(5))
        step = steps.send(None)
        assert isinstance(step, Blocking) and step.doing is None
        with pytest.raises(ConnectFail, match="proxy"):
            step.function()

    def test_an_http_proxy_is_opened_step_by_step(self) -> None:
        with raw_server(answer_connect) as proxy:
            proxy_url = proxy.replace("ws://", "http://")
            ws = WebSocket("ws://example.invalid:8080/", proxies={"http": proxy_url})
            opened, seen = drive(open_steps(ws._make_connector(), Deadline(5)))
            with opened.sock:
                assert not opened.sock.getblocking()
                assert opened.proxy_url == proxy_url
        assert all(not step.startswith("blocking") for step in seen)
        where = proxy_url.replace("http://", "")
        waited = f"wait read: waiting for HTTP proxy {where} (waiting for the reply to CONNECT)"
        assert waited in seen

    @pytest.mark.parametrize(
        ("scheme", "blocking"),
        [("socks5", ["blocking: resolving host 'localhost'"]), ("socks5h", []), ("socks4a", [])],
    )
    def test_only_a_locally_resolved_name_needs_a_blocking_call(
        self, scheme: str, blocking: list[str]
    ) -> None:
        with silent_listener() as port:
            proxies = {"http": f"{scheme}://127.0.0.1:{port}"}
            ws = WebSocket("ws://localhost:8080/", proxies=proxies)
            steps = open_steps(ws._make_connector(), Deadline(5))
            seen: list[str] = []
            step = steps.send(None)
            while isinstance(step, Blocking):
                seen.append(f"blocking: {step.doing}")
                step = steps.send(step.function())
            while step.doing.startswith("connecting"):
                select.select([], [step.sock], [], 5)
                step = steps.send(None)
            assert step.doing.startswith("waiting for SOCKS")
            steps.close()  # the loop gave up (its deadline passed): the socket is closed
            assert step.sock.fileno() == -1
        assert seen == blocking


def answer_connect(connection: RawConnection) -> None:
    """A proxy that grants CONNECT (after a moment: the client waits) and says nothing more."""
    connection.read_request()
    time.sleep(0.2)
    connection.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
    connection.sock.settimeout(5)
    with contextlib.suppress(OSError):
        connection.sock.recv(1)


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP (in the backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    with listener:
        yield listener.getsockname()[1]
