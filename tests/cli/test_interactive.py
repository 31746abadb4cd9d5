"""The interactive client in-process: stdin lines in, events out, exit conditions."""

from __future__ import annotations

import io
import os
import threading
import time
from typing import Iterator

import pytest
from servers import echo, websockets_server
from websockets.sync.server import ServerConnection

from lomond import WebSocket
from lomond.cli.console import EventPrinter
from lomond.cli.interactive import ClientOptions, InteractiveClient, SendGate, read_lines

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    with websockets_server(echo) as url:
        yield url


class Run:
    """One in-process run; ``lines`` are written to the client's input, then EOF."""

    def __init__(self, url: str, options: ClientOptions, lines: list[str] | None = None) -> None:
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        reader = None
        if lines is not None:
            reader, writer = os.pipe()
            os.write(writer, "".join(line + "\n" for line in lines).encode())
            os.close(writer)
        ws = WebSocket(url, proxies={})
        client = InteractiveClient(
            ws, options, EventPrinter(self.stdout, as_json=False), self.stderr, reader
        )
        try:
            self.status = client.run()
        finally:
            if reader is not None:
                os.close(reader)

    @property
    def names(self) -> list[str]:
        return [line.split()[1] for line in self.stdout.getvalue().splitlines()]


class TestInput:
    def test_lines_are_sent_then_eof_closes(self, echo_url: str) -> None:
        run = Run(echo_url, ClientOptions(linger=0.2, ping_rate=0), ["a", "b"])
        assert run.status == 0, run.stderr.getvalue()
        assert run.names == [
            "connecting",
            "connected",
            "ready",
            "text",
            "text",
            "closed",
            "disconnected",
        ]

    def test_a_line_that_cannot_be_sent_is_reported(self) -> None:
        def close_at_once(connection: ServerConnection) -> None:
            connection.close(1001, "not today")

        with websockets_server(close_at_once) as url:
            run = Run(url, ClientOptions(linger=0.2, ping_rate=0), ["too late"] * 3)
        assert run.status == 0
        assert run.names[-2:] == ["closing", "disconnected"]
        # Lines typed after the server closed are refused, with a warning each.
        for line in run.stderr.getvalue().splitlines():
            assert line.startswith("lomond: not sent: ")


class TestExitConditions:
    def test_send_and_count(self, echo_url: str) -> None:
        run = Run(echo_url, ClientOptions(send=["1", "2", "3"], count=2, ping_rate=0))
        assert run.status == 0
        assert run.names.count("text") == 2

    def test_timeout(self, echo_url: str) -> None:
        started = time.monotonic()
        run = Run(echo_url, ClientOptions(timeout=0.3, ping_rate=0))
        assert time.monotonic() - started < 5
        assert run.status == 1
        assert run.stderr.getvalue() == "lomond: timed out after 0.3s\n"

    def test_persist_ends_at_eof(self, echo_url: str) -> None:
        run = Run(echo_url, ClientOptions(persist=True, linger=0.1), ["x"])
        assert run.status == 0
        assert run.names.count("connecting") == 1


class TestHelpers:
    def test_read_lines(self) -> None:
        reader, writer = os.pipe()
        chunks = [b"one\r\ntw", "o é".encode()[:-1], "é".encode()[-1:] + b"\n\nlast"]

        def write() -> None:
            for chunk in chunks:
                os.write(writer, chunk)
                time.sleep(0.01)
            os.close(writer)

        thread = threading.Thread(target=write)
        thread.start()
        try:
            assert list(read_lines(reader)) == ["one", "two é", "", "last"]
        finally:
            thread.join()
            os.close(reader)

    def test_read_lines_replaces_invalid_utf8(self) -> None:
        reader, writer = os.pipe()
        os.write(writer, b"bad \xff\n")
        os.close(writer)
        try:
            assert list(read_lines(reader)) == ["bad \ufffd"]
        finally:
            os.close(reader)

    def test_send_gate(self) -> None:
        gate = SendGate()
        results: list[bool] = []
        waiter = threading.Thread(target=lambda: results.append(gate.wait()))
        waiter.start()
        time.sleep(0.05)
        assert results == []
        gate.open()
        waiter.join(5)
        assert results == [True]
        gate.shut()
        assert not gate.wait_finished(0.01)
        gate.finish()
        assert gate.wait() is False
        assert gate.wait_finished(0)
