"""The command line, run as ``python -m lomond`` in a subprocess.

The peers are real: the ``websockets`` server (in a thread, on 127.0.0.1 port 0), a
raw socket server for misbehaviour, and, for ``--demo``, the echo server that ships
inside the package.
"""

from __future__ import annotations

import base64
import http
import io
import json
import logging
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import trustme
from servers import RawConnection, echo, free_port_refused, raw_server, websockets_server
from websockets.sync.server import ServerConnection

import lomond
from lomond.cli.main import build_parser, configure_logging, main, make_websocket, use_colour

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]


def cli_env() -> dict[str, str]:
    """The environment of the subprocess: lomond importable, UTF-8, no proxies, no colour."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.lower().endswith("_proxy") and key not in ("NO_COLOR", "FORCE_COLOR")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def lomond_cli(
    *args: str, input: str | None = "", timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m lomond ARGS`` to the end (``input=None``: stdin is not redirected)."""
    return subprocess.run(
        [sys.executable, "-m", "lomond", *args],
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        encoding="utf-8",
        env=cli_env(),
        cwd=str(ROOT),
        timeout=timeout,
        check=False,
    )


def event_names(stdout: str) -> list[str]:
    """The event name of each human-readable line (the second column)."""
    return [line.split()[1] for line in stdout.splitlines() if line[:1].isdigit()]


def json_events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    with websockets_server(echo) as url:
        yield url


def silent(connection: ServerConnection) -> None:
    """Read every message, answer none."""
    for _ in connection:
        pass


class TestInteractiveClient:
    """Each line of stdin is a text message; the end of stdin closes gracefully."""

    def test_stdin_lines_are_sent_and_echoed_then_eof_closes(self, echo_url: str) -> None:
        result = lomond_cli(echo_url, input="hello\nwörld\n\nlast line without newline")
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert event_names(result.stdout) == [
            "connecting",
            "connected",
            "ready",
            "text",
            "text",
            "text",
            "text",
            "closed",
            "disconnected",
        ]
        lines = result.stdout.splitlines()
        texts = [line.split(None, 2)[2] for line in lines if " text " in line]
        assert texts == ["'hello'", "'wörld'", "''", "'last line without newline'"]
        assert lines[-1].endswith("disconnected   closed (graceful)")

    def test_empty_stdin_closes_at_once(self, echo_url: str) -> None:
        result = lomond_cli(echo_url, input="")
        assert result.returncode == 0, result.stderr
        assert event_names(result.stdout)[-2:] == ["closed", "disconnected"]

    def test_no_colour_when_stdout_is_not_a_terminal(self, echo_url: str) -> None:
        result = lomond_cli(echo_url, "--linger", "0.1", input="hi\n")
        assert "\x1b[" not in result.stdout

    def test_colour_on_request(self, echo_url: str) -> None:
        result = lomond_cli(echo_url, "--color", "always", "--linger", "0.1", input="hi\n")
        assert result.returncode == 0
        assert "\x1b[36mtext" in result.stdout

    def test_server_close_is_graceful(self) -> None:
        def close_after_one(connection: ServerConnection) -> None:
            connection.recv()
            connection.close(1001, "bye now")

        with websockets_server(close_after_one) as url:
            result = lomond_cli(url, "--send", "x", "--count", "5")
        assert result.returncode == 0, result.stderr
        assert event_names(result.stdout)[-2:] == ["closing", "disconnected"]
        assert "1001 'bye now'" in result.stdout

    @pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
    def test_interrupt_exits_130(self, echo_url: str) -> None:
        process = subprocess.Popen(
            [sys.executable, "-m", "lomond", echo_url, "--no-input"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            env=cli_env(),
            cwd=str(ROOT),
        )
        assert process.stdout is not None
        for line in process.stdout:
            if " ready " in line:
                break
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
        assert process.returncode == 130
        assert stderr == "lomond: interrupted\n"


class TestSend:
    """--send TEXT: send, print the replies, close."""

    def test_send_prints_replies_and_closes(self, echo_url: str) -> None:
        result = lomond_cli(echo_url, "--send", "one", "--send", "two", input=None)
        assert result.returncode == 0, result.stderr
        assert event_names(result.stdout) == [
            "connecting",
            "connected",
            "ready",
            "text",
            "text",
            "closed",
            "disconnected",
        ]
        assert "'one'" in result.stdout and "'two'" in result.stdout

    def test_headers_and_subprotocol_are_sent(self) -> None:
        def report(connection: ServerConnection) -> None:
            request = connection.request
            assert request is not None
            connection.recv()
            headers = request.headers
            connection.send(f"{headers['X-Token']}|{headers['Origin']}|{connection.subprotocol}")
            silent(connection)

        with websockets_server(report, subprotocols=["chat"]) as url:
            result = lomond_cli(
                url,
                "-H",
                "X-Token: s3cret value",
                "--header=Origin: https://example.org",
                "-p",
                "chat",
                "--protocol",
                "superchat",
                "--send",
                "?",
            )
        assert result.returncode == 0, result.stderr
        assert "protocol=chat" in result.stdout
        assert "'s3cret value|https://example.org|chat'" in result.stdout

    def test_compress(self) -> None:
        with websockets_server(echo, compression="deflate") as url:
            result = lomond_cli(url, "--compress", "--send", "squeeze " * 50, "--json")
        assert result.returncode == 0, result.stderr
        received = json_events(result.stdout)
        assert received[2]["extensions"] == ["permessage-deflate"]
        assert received[3]["text"] == "squeeze " * 50


class TestJsonLines:
    """--json: one JSON object per event, binary as base64."""

    def test_events_parse_back(self) -> None:
        def text_and_binary(connection: ServerConnection) -> None:
            message = connection.recv()
            connection.send(message)
            connection.send(b"\x00\xff binary")
            silent(connection)

        with websockets_server(text_and_binary) as url:
            result = lomond_cli(url, "--json", "--send", "héllo", "--count", "2")
        assert result.returncode == 0, result.stderr
        received = json_events(result.stdout)
        assert [event["name"] for event in received] == [
            "connecting",
            "connected",
            "ready",
            "text",
            "binary",
            "closed",
            "disconnected",
        ]
        for event in received:
            assert isinstance(event["received_time"], float)
            assert abs(event["received_time"] - time.time()) < 60
        connecting, connected, ready, text, binary, closed, disconnected = received
        assert connecting["url"] == url
        assert connected == {**connected, "url": url, "proxy": None}
        assert ready["protocol"] is None
        assert ready["extensions"] == []
        assert ready["response"]["status_code"] == 101
        assert ready["response"]["headers"]["upgrade"] == "websocket"
        assert text["text"] == "héllo"
        assert base64.b64decode(binary["data"]) == b"\x00\xff binary"
        assert closed["code"] == 1000 and closed["reason"] == "goodbye"
        assert disconnected["graceful"] is True and disconnected["reason"] == "closed"

    def test_poll_events_are_not_printed(self, echo_url: str) -> None:
        result = lomond_cli(echo_url, "--json", "--linger", "0", input="")
        assert "poll" not in [event["name"] for event in json_events(result.stdout)]


class TestCount:
    """--count N: exit after N messages."""

    def test_exits_after_n_messages(self) -> None:
        def flood(connection: ServerConnection) -> None:
            for number in range(10):
                connection.send(f"message {number}")
            silent(connection)

        with websockets_server(flood) as url:
            result = lomond_cli(url, "--count", "3", "--no-input", "--json")
        assert result.returncode == 0, result.stderr
        received = json_events(result.stdout)
        texts = [event["text"] for event in received if event["name"] == "text"]
        assert texts == ["message 0", "message 1", "message 2"]
        assert received[-1]["name"] == "disconnected" and received[-1]["graceful"]


class TestRecord:
    """``--record FILE``; its format and replay are tested in tests/testing/."""

    def test_the_session_is_written_as_it_happens(self, echo_url: str, tmp_path: Path) -> None:
        path = tmp_path / "session.jsonl"
        result = lomond_cli(echo_url, "--record", str(path), input="hello\n")
        assert result.returncode == 0, result.stderr
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        assert lines[0]["format"] == "lomond-recording"
        assert lines[0]["url"] == echo_url
        assert [(line["type"], line.get("from")) for line in lines[1:]] == [
            ("ready", None),
            ("text", "client"),
            ("text", "server"),
            ("close", "client"),
            ("close", "server"),
            ("disconnected", None),
        ]
        offsets = [line["t"] for line in lines[1:]]
        assert offsets == sorted(offsets)

    def test_an_unwritable_file_is_a_usage_error(self, echo_url: str, tmp_path: Path) -> None:
        result = lomond_cli(echo_url, "--record", str(tmp_path / "no" / "such.jsonl"))
        assert result.returncode == 2
        assert "lomond: error: --record: cannot write" in result.stderr
        assert_no_traceback(result)


class TestFailures:
    """Non-zero exit with a one-line reason on stderr; never a traceback."""

    def test_rejection(self) -> None:
        def forbid(connection: ServerConnection, request: Any) -> Any:
            return connection.respond(http.HTTPStatus.FORBIDDEN, "go away\n")

        with websockets_server(echo, process_request=forbid) as url:
            result = lomond_cli(url, input=None)
        assert result.returncode == 1
        assert event_names(result.stdout) == ["connecting", "connected", "rejected", "disconnected"]
        assert result.stderr.count("\n") == 1
        assert result.stderr.startswith("lomond: rejected: server responded with 403 Forbidden")
        assert_no_traceback(result)

    def test_unreachable_host(self) -> None:
        port = free_port_refused()
        result = lomond_cli(f"ws://127.0.0.1:{port}/", input=None)
        assert result.returncode == 1
        assert event_names(result.stdout) == ["connecting", "connect_fail"]
        assert (
            result.stderr == f"lomond: could not connect: connection refused by 127.0.0.1:{port}\n"
        )

    def test_protocol_error(self) -> None:
        def reserved_opcode(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(bytes([0x83, 0]))  # RFC 6455 §5.2: opcode 3 is reserved
            connection.recv_frame()

        with raw_server(reserved_opcode) as url:
            result = lomond_cli(url, input=None)
        assert result.returncode == 1
        assert "protocol_error" in event_names(result.stdout)
        assert result.stderr.startswith("lomond: protocol error: ")
        assert result.stderr.count("\n") == 1

    def test_dropped_connection(self) -> None:
        def drop(connection: RawConnection) -> None:
            connection.handshake()

        with raw_server(drop) as url:
            result = lomond_cli(url, input=None)
        assert result.returncode == 1
        assert event_names(result.stdout)[-1] == "disconnected"
        assert result.stderr.startswith("lomond: disconnected: ")

    def test_timeout_closes_and_fails(self) -> None:
        with websockets_server(silent) as url:
            started = time.monotonic()
            result = lomond_cli(url, "--send", "anyone?", "--timeout", "0.5")
        assert time.monotonic() - started < 10
        assert result.returncode == 1
        assert event_names(result.stdout)[-2:] == ["closed", "disconnected"]
        assert result.stderr == "lomond: timed out after 0.5s\n"

    def test_ping_timeout(self) -> None:
        def never_pong(connection: RawConnection) -> None:
            connection.handshake()
            while True:
                connection.recv_frame()

        with raw_server(never_pong) as url:
            result = lomond_cli(url, "--ping-rate", "0.1", "--ping-timeout", "0.3", "--no-input")
        assert result.returncode == 1
        assert event_names(result.stdout)[-2:] == ["unresponsive", "disconnected"]
        assert result.stderr.startswith("lomond: server unresponsive")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def wss_url(ca: trustme.CA) -> Iterator[str]:
    """A ``wss://`` echo server with a certificate for 127.0.0.1 that ``ca`` signed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with websockets_server(echo, scheme="wss", ssl=context) as url:
        yield url


class TestTLS:
    """--cafile and --insecure against a ``wss://`` server with a private CA."""

    def test_untrusted_certificate_fails(self, wss_url: str) -> None:
        result = lomond_cli(wss_url, "--send", "x")
        assert result.returncode == 1
        assert result.stderr.startswith("lomond: could not connect: TLS certificate verify failed")

    def test_cafile(self, wss_url: str, ca: trustme.CA, tmp_path: Path) -> None:
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        result = lomond_cli(wss_url, "--cafile", str(ca_file), "--send", "secure")
        assert result.returncode == 0, result.stderr
        assert "'secure'" in result.stdout

    def test_insecure(self, wss_url: str) -> None:
        result = lomond_cli(wss_url, "--insecure", "--send", "trusting")
        assert result.returncode == 0, result.stderr
        assert "'trusting'" in result.stdout
        # Connecting without verification is never silent.
        assert result.stderr == (
            "lomond: warning: --insecure: TLS certificates and host names are not "
            "verified; anyone on the network path can read and change this connection\n"
        )


def tunnel(connection: RawConnection) -> None:
    """An HTTP CONNECT proxy for one connection: read the request, then relay bytes."""
    request = connection.read_request()
    _, target, _ = request.split(b" ", 2)
    host, _, port = target.decode().rpartition(":")
    upstream = socket.create_connection((host, int(port)), timeout=5)
    connection.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
    peers = {connection.sock: upstream, upstream: connection.sock}
    try:
        while True:
            readable, _, _ = select.select(list(peers), [], [], 5)
            if not readable:
                return
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                peers[sock].sendall(data)
    finally:
        upstream.close()


class TestProxy:
    def test_proxy_option(self, echo_url: str) -> None:
        with raw_server(tunnel) as proxy_url:
            proxy = proxy_url.replace("ws://", "http://")
            result = lomond_cli(echo_url, "--proxy", proxy, "--send", "tunnelled")
        assert result.returncode == 0, result.stderr
        assert f"connected      {echo_url} via {proxy}" in result.stdout
        assert "'tunnelled'" in result.stdout

    def test_proxy_refused(self, echo_url: str) -> None:
        port = free_port_refused()
        result = lomond_cli(echo_url, "--proxy", f"http://127.0.0.1:{port}", "--send", "x")
        assert result.returncode == 1
        assert result.stderr.startswith("lomond: could not connect: ")
        assert result.stderr.count("\n") == 1

    def test_invalid_proxy_is_a_usage_error(self, echo_url: str) -> None:
        result = lomond_cli(echo_url, "--proxy", "gopher://127.0.0.1:1", input=None)
        assert result.returncode == 2
        assert "lomond: error: " in result.stderr and "gopher" in result.stderr
        assert_no_traceback(result)


def slow_echo(connection: ServerConnection) -> None:
    """Echo every message back after 0.3 seconds."""
    for message in connection:
        time.sleep(0.3)
        connection.send(message)


def ignore_close(connection: RawConnection) -> None:
    """Accept the upgrade, then read every frame and answer none, not even a close."""
    connection.handshake()
    while True:
        connection.recv_frame()


class TestPersist:
    def test_persist_ends_after_a_graceful_exit(self, echo_url: str) -> None:
        result = lomond_cli(echo_url, "--persist", "--send", "again")
        assert result.returncode == 0, result.stderr
        assert event_names(result.stdout).count("connecting") == 1
        assert "back_off" not in result.stdout

    @pytest.mark.parametrize("persist", [[], ["--persist"]], ids=["once", "persist"])
    def test_end_of_input_waits_for_the_replies(self, persist: list[str]) -> None:
        # The end of stdin closes once no message arrived for --linger seconds (0.5),
        # with or without --persist: the reply, 0.3 s later, is printed.
        with websockets_server(slow_echo) as url:
            result = lomond_cli(url, *persist, input="q\n")
        assert result.returncode == 0, result.stderr
        assert event_names(result.stdout) == [
            "connecting",
            "connected",
            "ready",
            "text",
            "closed",
            "disconnected",
        ]
        assert "'q'" in result.stdout

    def test_persist_with_empty_stdin_connects_then_closes(self, echo_url: str) -> None:
        result = lomond_cli(echo_url, "--persist", input=None)  # stdin is /dev/null
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert event_names(result.stdout) == [
            "connecting",
            "connected",
            "ready",
            "closed",
            "disconnected",
        ]

    @pytest.mark.parametrize("persist", [[], ["--persist"]], ids=["once", "persist"])
    def test_closing_takes_at_most_five_seconds(self, persist: list[str]) -> None:
        # docs/cli.rst: "Closing takes at most five seconds", --persist or not. The
        # close starts at --timeout (0.5 s); the server never answers it.
        with raw_server(ignore_close) as url:
            started = time.monotonic()
            result = lomond_cli(url, *persist, "--no-input", "--timeout", "0.5", input=None)
            elapsed = time.monotonic() - started
        assert 5 < elapsed < 10, elapsed
        assert result.returncode == 1
        last = result.stdout.splitlines()[-1]
        assert last.endswith(
            "disconnected   server did not close the connection within 5s (close timeout) "
            "(not graceful)"
        )
        assert result.stderr == "lomond: timed out after 0.5s\n"


class TestUsage:
    """Bad options are argparse usage errors: exit 2, usage on stderr, no traceback."""

    BAD_ARGUMENTS = [
        [],
        ["--no-such-option", "ws://127.0.0.1:1/"],
        ["http://example.org/"],
        ["ws://"],
        ["--count", "zero", "ws://127.0.0.1:1/"],
        ["--count", "0", "ws://127.0.0.1:1/"],
        ["--timeout", "-1", "ws://127.0.0.1:1/"],
        ["--timeout", "inf", "ws://127.0.0.1:1/"],
        ["--ping-rate", "soon", "ws://127.0.0.1:1/"],
        ["--ping-timeout", "nan", "ws://127.0.0.1:1/"],
        ["--ping-timeout", "0", "ws://127.0.0.1:1/"],
        ["-H", "no colon", "ws://127.0.0.1:1/"],
        ["-H", ": no name", "ws://127.0.0.1:1/"],
        ["-H", "Bad Name: x", "ws://127.0.0.1:1/"],
        ["-H", "Sec-WebSocket-Key: x", "ws://127.0.0.1:1/"],
        ["--cafile", "/no/such/file.pem", "wss://127.0.0.1:1/"],
        ["--color", "purple", "ws://127.0.0.1:1/"],
        ["--demo", "ws://127.0.0.1:1/"],
    ]

    @pytest.mark.parametrize("args", BAD_ARGUMENTS)
    def test_bad_arguments_exit_2(
        self, args: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err.startswith("usage: lomond")
        assert err.count("lomond: error: ") == 1

    @pytest.mark.parametrize("args", [[], ["--count", "zero", "ws://127.0.0.1:1/"], ["ws://"]])
    def test_bad_arguments_exit_2_as_a_process(self, args: list[str]) -> None:
        result = lomond_cli(*args, input=None)
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.startswith("usage: lomond")
        assert "lomond: error: " in result.stderr
        assert_no_traceback(result)

    def test_version(self) -> None:
        result = lomond_cli("--version", input=None)
        assert result.returncode == 0
        assert result.stdout.startswith(f"lomond {lomond.__version__} (Python ")

    def test_help_lists_every_option(self) -> None:
        result = lomond_cli("--help", input=None)
        assert result.returncode == 0
        for option in [
            "--header",
            "--protocol",
            "--compress",
            "--proxy",
            "--insecure",
            "--cafile",
            "--ping-rate",
            "--ping-timeout",
            "--persist",
            "--send",
            "--count",
            "--timeout",
            "--json",
            "--demo",
            "--version",
            "--record",
        ]:
            assert option in result.stdout

    def test_proxy_option_sets_both_schemes(self) -> None:
        args = build_parser().parse_args(["--proxy", "http://proxy.example:3128", "ws://x/"])
        assert make_websocket(args).proxies == {
            "http": "http://proxy.example:3128",
            "https": "http://proxy.example:3128",
        }

    def test_no_proxy_option_means_environment(self) -> None:
        args = build_parser().parse_args(["ws://x/"])
        assert make_websocket(args).proxies is None


class TestDemo:
    """``--demo``: no network, no other server; a scripted session, exit 0."""

    DEMO_EVENTS = [
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

    def test_demo(self) -> None:
        result = lomond_cli("--demo", input=None)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert event_names(result.stdout) == self.DEMO_EVENTS
        assert "extensions=permessage-deflate" in result.stdout
        assert "bytes on the wire (compressed)" in result.stdout
        assert ">>> ws.close()" in result.stdout

    def test_demo_json(self) -> None:
        result = lomond_cli("--demo", "--json", input=None)
        assert result.returncode == 0, result.stderr
        received = json_events(result.stdout)
        assert [event["name"] for event in received] == self.DEMO_EVENTS
        assert received[2]["extensions"] == ["permessage-deflate"]
        assert base64.b64decode(received[4]["data"]) == b"\x00\x01\x02\xff"
        assert json.loads(received[5]["text"]) == {"type": "subscribe", "channel": "demo"}
        assert received[-1]["graceful"] is True

    def test_demo_ignores_proxy_settings(self) -> None:
        env = {**cli_env(), "http_proxy": "http://127.0.0.1:1", "all_proxy": "http://127.0.0.1:1"}
        result = subprocess.run(
            [sys.executable, "-m", "lomond", "--demo"],
            capture_output=True,
            encoding="utf-8",
            env=env,
            cwd=str(ROOT),
            timeout=20,
            check=False,
        )
        assert result.returncode == 0, result.stderr


class TestHelpers:
    """The pieces of the client that need no server."""

    @pytest.mark.parametrize(
        ("choice", "tty", "environment", "expected"),
        [
            ("always", False, {}, True),
            ("never", True, {}, False),
            ("auto", True, {}, True),
            ("auto", False, {}, False),
            ("auto", True, {"NO_COLOR": "1"}, False),
            ("auto", True, {"NO_COLOR": ""}, True),
            ("auto", True, {"TERM": "dumb"}, False),
        ],
    )
    def test_use_colour(
        self,
        monkeypatch: pytest.MonkeyPatch,
        choice: str,
        tty: bool,
        environment: dict[str, str],
        expected: bool,
    ) -> None:
        monkeypatch.delenv("NO_COLOR", raising=False)
        monkeypatch.delenv("TERM", raising=False)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)

        class Stream(io.StringIO):
            def isatty(self) -> bool:
                return tty

        assert use_colour(choice, Stream()) is expected

    def test_configure_logging_is_idempotent(self) -> None:
        logger = logging.getLogger("lomond")
        before = list(logger.handlers)
        level = logger.level
        try:
            configure_logging(True)
            configure_logging(True)
            added = [handler for handler in logger.handlers if handler not in before]
            assert len(added) == 1 and isinstance(added[0], logging.StreamHandler)
            configure_logging(False)
            added = [handler for handler in logger.handlers if handler not in before]
            assert len(added) == 1 and isinstance(added[0], logging.NullHandler)
        finally:
            logger.handlers[:] = before
            logger.setLevel(level)

    def test_main_in_process(self, echo_url: str, capsys: pytest.CaptureFixture[str]) -> None:
        assert main([echo_url, "--send", "in process", "--color", "never"]) == 0
        out, err = capsys.readouterr()
        assert "'in process'" in out and err == ""
        assert main(["--demo", "--json"]) == 0
        out, err = capsys.readouterr()
        assert json.loads(out.splitlines()[-1])["graceful"] is True

    def test_verbose_logs_to_stderr(self) -> None:
        port = free_port_refused()
        result = lomond_cli("-v", f"ws://127.0.0.1:{port}/", input=None)
        assert result.returncode == 1
        assert "lomond: DEBUG: connect failed: connection refused" in result.stderr

    def test_verbose_shows_a_successful_session(self, echo_url: str) -> None:
        result = lomond_cli("-v", echo_url, "--send", "hi")
        assert result.returncode == 0, result.stderr
        port = echo_url.rsplit(":", 1)[1]
        assert result.stderr.splitlines() == [
            f"lomond: DEBUG: connecting to 127.0.0.1:{port}",
            f"lomond: INFO: upgrade accepted by {echo_url} (protocol none, extensions none)",
            "lomond: INFO: closing handshake complete: 1000 'goodbye'",
            "lomond: INFO: disconnected: closed (graceful=True)",
        ]

    def test_verbose_shows_a_close_by_the_server(self) -> None:
        def close_at_once(connection: ServerConnection) -> None:
            connection.close(1001, "bye now")

        with websockets_server(close_at_once) as url:
            result = lomond_cli("-v", url, "--no-input")
        assert result.returncode == 0, result.stderr
        assert "lomond: INFO: the server started the closing handshake: 1001 'bye now'\n" in (
            result.stderr
        )
