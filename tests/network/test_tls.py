"""TLS: ``wss://`` against the ``websockets`` server with ``trustme`` certificates."""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import inspect
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import trustme
from peers import wait_for_eof
from servers import (
    OPEN,
    WS_GUID,
    RawConnection,
    echo,
    names,
    raw_server,
    run,
    websockets_server,
)

from lomond import WebSocket

pytestmark = pytest.mark.timeout(30)

VERIFY_FAILED = "TLS certificate verify failed"
TROUBLESHOOTING = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.rst"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    return context


@pytest.fixture(scope="module")
def wss_url(ca: trustme.CA) -> Iterator[str]:
    """A ``wss://`` echo server whose certificate (for 127.0.0.1 and localhost) ``ca`` signed."""
    context = server_context(ca.issue_cert("127.0.0.1", "localhost"))
    with websockets_server(echo, scheme="wss", ssl=context) as url:
        yield url


def close_when_ready(ws: WebSocket) -> list[Any]:
    def on_event(event: Any) -> None:
        if event.name == "ready":
            ws.send_text("over TLS")
        elif event.name == "text":
            ws.close()

    return run(ws, on_event, close_timeout=2)


def context_snapshot(context: ssl.SSLContext) -> dict[str, Any]:
    """Every attribute of ``context`` a client could change."""
    return {
        "verify_mode": context.verify_mode,
        "check_hostname": context.check_hostname,
        "options": context.options,
        "verify_flags": context.verify_flags,
        "minimum_version": context.minimum_version,
        "maximum_version": context.maximum_version,
        "ca_certs": context.get_ca_certs(),
        "ciphers": [cipher["name"] for cipher in context.get_ciphers()],
        "post_handshake_auth": context.post_handshake_auth,
        "hostname_checks_common_name": context.hostname_checks_common_name,
        "sni_callback": context.sni_callback,
        "keylog_filename": context.keylog_filename,
        "cert_store_stats": context.cert_store_stats(),
    }


class TestVerifiedConnections:
    def test_wss_with_ssl_cafile(self, wss_url: str, ca_file: str) -> None:
        records: list[dict[str, Any]] = []
        ws = WebSocket(wss_url, ssl_cafile=ca_file, trace=records.append)
        assert ws.is_secure
        collected = close_when_ready(ws)
        assert names(collected) == OPEN + ["text", "closed", "disconnected"]
        assert collected[4].text == "over TLS"
        assert collected[-1].graceful is True
        assert "tls_wrapped" in [record["stage"] for record in records]

    def test_wss_by_host_name(self, wss_url: str, ca_file: str) -> None:
        port = wss_url.rsplit(":", 1)[1]
        ws = WebSocket(f"wss://localhost:{port}/", ssl_cafile=ca_file)
        collected = close_when_ready(ws)
        assert names(collected) == OPEN + ["text", "closed", "disconnected"]

    def test_large_messages_over_tls(self, ca: trustme.CA, ca_file: str) -> None:
        context = server_context(ca.issue_cert("127.0.0.1"))
        payload = bytes(range(256)) * 8192  # 2 MiB
        with websockets_server(echo, scheme="wss", ssl=context, max_size=None) as url:
            ws = WebSocket(url, ssl_cafile=ca_file)

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    ws.send_binary(payload)
                    ws.send_text("small")
                elif event.name == "text":
                    ws.close()

            collected = run(ws, on_event, close_timeout=2)
        assert names(collected) == OPEN + ["binary", "text", "closed", "disconnected"]
        assert collected[4].data == payload


class TestSharedDefaultContext:
    """The default context is made once per process and setting (loading the trust
    store takes about 0.1 s), then shared by every connection that uses it."""

    def test_websockets_share_the_default_context(self, wss_url: str, ca_file: str) -> None:
        first, second = (
            WebSocket(wss_url, ssl_cafile=ca_file),
            WebSocket(wss_url, ssl_cafile=ca_file),
        )
        for ws in (first, second):
            assert names(close_when_ready(ws)) == OPEN + ["text", "closed", "disconnected"]
        assert first._tls_context() is second._tls_context()
        assert WebSocket(wss_url)._tls_context() is WebSocket(wss_url)._tls_context()
        assert WebSocket(wss_url)._tls_context() is not first._tls_context()
        unverified = WebSocket(wss_url, ssl_verify=False)._tls_context()
        assert unverified.verify_mode == ssl.CERT_NONE
        assert WebSocket(wss_url)._tls_context().verify_mode == ssl.CERT_REQUIRED

    def test_bounded_and_failures_not_kept(self, tmp_path: Path, ca_file: str) -> None:
        from lomond.network import tls

        missing = str(tmp_path / "missing.pem")
        for _ in range(2):
            with pytest.raises(OSError):
                tls.shared_ssl_context(True, missing)
        assert (True, missing) not in tls._shared_contexts
        for index in range(tls.MAX_SHARED_CONTEXTS + 4):
            copy = tmp_path / f"ca{index}.pem"
            shutil.copy(ca_file, copy)
            tls.shared_ssl_context(True, str(copy))
        assert len(tls._shared_contexts) <= tls.MAX_SHARED_CONTEXTS


class TestVerificationFailures:
    def test_untrusted_certificate(self, wss_url: str) -> None:
        collected = run(WebSocket(wss_url))
        assert names(collected) == ["connecting", "connect_fail"]
        reason = collected[-1].reason
        assert reason.startswith(VERIFY_FAILED)
        detail = reason[len(VERIFY_FAILED) :].lstrip(": ")
        assert detail, reason
        assert "issuer" in detail or "self-signed" in detail or "self signed" in detail

    def test_untrusted_with_another_cafile(self, wss_url: str, tmp_path: Path) -> None:
        other = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other))
        collected = run(WebSocket(wss_url, ssl_cafile=str(other)))
        assert names(collected) == ["connecting", "connect_fail"]
        assert collected[-1].reason.startswith(VERIFY_FAILED)

    @pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
    def test_wrong_host_name(self, ca: trustme.CA, ca_file: str, host: str) -> None:
        context = server_context(ca.issue_cert("other.example"))
        with websockets_server(echo, scheme="wss", ssl=context) as url:
            port = url.rsplit(":", 1)[1]
            collected = run(WebSocket(f"wss://{host}:{port}/", ssl_cafile=ca_file))
        assert names(collected) == ["connecting", "connect_fail"]
        reason = collected[-1].reason
        assert reason.startswith(VERIFY_FAILED)
        assert "mismatch" in reason
        assert host in reason

    def test_expired_certificate(self, ca: trustme.CA, ca_file: str) -> None:
        if "not_before" not in inspect.signature(ca.issue_cert).parameters:
            pytest.skip("this trustme cannot issue expired certificates (Python 3.8)")
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = ca.issue_cert(
            "127.0.0.1",
            not_before=now - datetime.timedelta(days=10),
            not_after=now - datetime.timedelta(days=1),
        )
        with websockets_server(echo, scheme="wss", ssl=server_context(cert)) as url:
            collected = run(WebSocket(url, ssl_cafile=ca_file))
        assert names(collected) == ["connecting", "connect_fail"]
        assert collected[-1].reason.startswith(VERIFY_FAILED)
        assert "expired" in collected[-1].reason

    def test_plain_server_behind_wss(self) -> None:
        # A plain WebSocket server closes the connection when the ClientHello comes.
        with websockets_server(echo) as url:
            port = url.rsplit(":", 1)[1]
            collected = run(WebSocket(f"wss://127.0.0.1:{port}/", connect_timeout=5))
        assert names(collected) == ["connecting", "connect_fail"]
        assert collected[-1].reason == "TLS handshake failed: UNEXPECTED_EOF_WHILE_READING"
        assert "``UNEXPECTED_EOF_WHILE_READING``" in TROUBLESHOOTING.read_text(encoding="utf-8")

    def test_plain_http_answer_behind_wss(self) -> None:
        def answer_in_plain_text(connection: RawConnection) -> None:
            connection.sock.recv(65536)  # the ClientHello
            connection.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            wait_for_eof(connection)

        with raw_server(answer_in_plain_text) as url:
            port = url.rsplit(":", 1)[1]
            collected = run(WebSocket(f"wss://127.0.0.1:{port}/", connect_timeout=5))
        assert names(collected) == ["connecting", "connect_fail"]
        assert collected[-1].reason == "TLS handshake failed: WRONG_VERSION_NUMBER"
        assert "``WRONG_VERSION_NUMBER``" in TROUBLESHOOTING.read_text(encoding="utf-8")


class TestTimeouts:
    def test_tls_handshake_timeout(self) -> None:
        def script(connection: RawConnection) -> None:
            wait_for_eof(connection)  # accepts TCP, never answers the ClientHello

        with raw_server(script) as url:
            port = url.rsplit(":", 1)[1]
            start = time.monotonic()
            collected = run(WebSocket(f"wss://127.0.0.1:{port}/", connect_timeout=0.5))
            elapsed = time.monotonic() - start
        assert names(collected) == ["connecting", "connect_fail"]
        assert "timed out" in collected[-1].reason
        assert 0.4 <= elapsed < 3


class TestCustomContext:
    def test_custom_context_is_used_and_not_modified(self, wss_url: str, ca_file: str) -> None:
        context = ssl.create_default_context(cafile=ca_file)
        before = context_snapshot(context)
        ws = WebSocket(wss_url, ssl_context=context, ssl_verify=False)
        assert ws.ssl_context is context
        collected = close_when_ready(ws)
        assert names(collected) == OPEN + ["text", "closed", "disconnected"]
        assert context_snapshot(context) == before

    def test_custom_context_wins_over_ssl_cafile(
        self, wss_url: str, ca_file: str, tmp_path: Path
    ) -> None:
        """The given context does not trust the CA; ``ssl_cafile`` must not be added to it."""
        # (A CA file, not the system store: OpenSSL itself adds certificates it looks up
        # in a CA directory to the context's store during verification.)
        other = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other))
        context = ssl.create_default_context(cafile=str(other))
        before = context_snapshot(context)
        collected = run(WebSocket(wss_url, ssl_context=context, ssl_cafile=ca_file))
        assert names(collected) == ["connecting", "connect_fail"]
        assert collected[-1].reason.startswith(VERIFY_FAILED)
        assert context_snapshot(context) == before

    def test_custom_unverified_context(self, wss_url: str) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        before = context_snapshot(context)
        collected = close_when_ready(WebSocket(wss_url, ssl_context=context))
        assert names(collected) == OPEN + ["text", "closed", "disconnected"]
        assert context_snapshot(context) == before


UNVERIFIED_CLIENT = textwrap.dedent(
    """
    import logging
    import sys

    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="LOG %(levelname)s %(name)s %(message)s"
    )
    from lomond import WebSocket

    ws = WebSocket(sys.argv[1], ssl_verify=False)
    for _ in range(2):
        seen = []
        for event in ws.connect(close_timeout=2):
            seen.append(event.name)
            if event.name == "ready":
                ws.close()
        print(" ".join(seen))
    """
)


class TestUnverified:
    def test_ssl_verify_false_connects_and_warns_once(self, wss_url: str) -> None:
        # A fresh interpreter, so that no earlier test has already logged the warning.
        result = subprocess.run(
            [sys.executable, "-c", UNVERIFIED_CLIENT, wss_url],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert result.returncode == 0, result.stderr
        expected = " ".join(OPEN + ["closed", "disconnected"])
        assert result.stdout.splitlines() == [expected, expected]
        warnings = [
            line for line in result.stderr.splitlines() if line.startswith("LOG WARNING lomond")
        ]
        assert len(warnings) == 1, result.stderr
        assert "verif" in warnings[0].lower()

    def test_ssl_verify_false_in_process(self, wss_url: str) -> None:
        collected = close_when_ready(WebSocket(wss_url, ssl_verify=False))
        assert names(collected) == OPEN + ["text", "closed", "disconnected"]


# -- a server that renegotiates (TLS 1.2) and then stalls ---------------------------


@contextlib.contextmanager
def renegotiating_server(cert: trustme.LeafCert, directory: Path) -> Iterator[Any]:
    """``openssl s_server`` (TLS 1.2) behind a relay that can stop its replies.

    Yields an object with ``port`` (the relay's), ``answer(bytes)`` (the server
    writes it to the client, LF becoming CRLF) and ``renegotiate_and_stall()``: the
    server sends a HelloRequest, the relay passes it on and then drops everything
    the server sends, so the renegotiation the client starts never completes (what
    a hostile server, or one that hangs, does).
    """
    key, chain = directory / "key.pem", directory / "cert.pem"
    cert.private_key_pem.write_to_path(str(key))
    cert.cert_chain_pems[0].write_to_path(str(chain))
    command = ["openssl", "s_server", "-tls1_2", "-cert", str(chain), "-key", str(key)]
    command += ["-accept", "127.0.0.1:0", "-naccept", "1", "-crlf"]
    server = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert server.stdin is not None and server.stdout is not None
    stdin, stdout = server.stdin, server.stdout
    try:
        line = b""
        while not line.startswith(b"ACCEPT"):
            line = stdout.readline()
            assert line, "openssl s_server did not start"
        server_port = int(line.rsplit(b":", 1)[1])
        threading.Thread(target=lambda: [None for _ in stdout], daemon=True).start()
        arm, stall = threading.Event(), threading.Event()
        listener = socket.create_server(("127.0.0.1", 0))

        def pump(source: socket.socket, target: socket.socket, from_server: bool) -> None:
            with contextlib.suppress(OSError):
                while True:
                    data = source.recv(65536)
                    if not data:
                        return
                    if from_server and stall.is_set():
                        continue
                    target.sendall(data)
                    if from_server and arm.is_set():
                        stall.set()  # the HelloRequest went through: nothing more

        def relay() -> None:
            with contextlib.suppress(OSError):
                client, _ = listener.accept()
                with client, socket.create_connection(("127.0.0.1", server_port)) as upstream:
                    back = threading.Thread(target=pump, args=(upstream, client, True))
                    back.start()
                    pump(client, upstream, False)
                    with contextlib.suppress(OSError):
                        upstream.shutdown(socket.SHUT_RDWR)
                    back.join(5)

        relaying = threading.Thread(target=relay, daemon=True)
        relaying.start()

        class Control:
            port = listener.getsockname()[1]

            @staticmethod
            def answer(data: bytes) -> None:
                stdin.write(data)
                stdin.flush()

            @staticmethod
            def renegotiate_and_stall() -> None:
                arm.set()
                stdin.write(b"r\n")  # s_server: request a renegotiation
                stdin.flush()
                assert stall.wait(5), "the server sent no HelloRequest"

        try:
            yield Control
        finally:
            listener.close()
            server.kill()
            relaying.join(5)
    finally:
        server.kill()
        server.wait(5)
        stdin.close()
        stdout.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
class TestRenegotiationThatNeverCompletes:
    """A write that meets a renegotiation gets ``SSLWantReadError``: it can go on only
    after the server's handshake arrives. Waiting for the socket to be *writable*
    then wakes the loop at once, again and again: 100% CPU for as long as the server
    stalls (until ``close_timeout``, or for ever without a close), no progress.
    """

    def test_the_loop_does_not_spin(self, ca: trustme.CA, tmp_path: Path) -> None:
        with renegotiating_server(ca.issue_cert("127.0.0.1"), tmp_path) as server:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ca.configure_trust(context)
            ws = WebSocket(f"wss://127.0.0.1:{server.port}/", ssl_context=context)
            loop = ws.connect(ping_rate=0, poll=0.1, close_timeout=1)
            accept = base64.b64encode(hashlib.sha1(ws.key + WS_GUID).digest())
            server.answer(
                b"HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\n"
                b"Connection: Upgrade\nSec-WebSocket-Accept: " + accept + b"\n\n"
            )
            polls = 0
            cpu: list[float] = []
            for event in loop:
                if event.name == "ready":
                    server.renegotiate_and_stall()
                elif event.name == "poll":
                    polls += 1
                    if polls == 3:
                        ws.send_text("sent while the renegotiation waits")
                        start = (time.monotonic(), time.process_time())
                    elif polls == 13:  # a second later
                        wall = time.monotonic() - start[0]
                        cpu.append((time.process_time() - start[1]) / wall)
                        ws.force_disconnect()
        assert cpu and cpu[0] < 0.5, f"the loop used {cpu[0]:.0%} of a CPU while waiting"
