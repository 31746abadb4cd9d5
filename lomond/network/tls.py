"""TLS: the default context, handshakes under the connect deadline, and TLS inside TLS.

:func:`wrap_tls` runs a handshake on a socket; :func:`wrap_tls_in_tls` runs one inside
an existing TLS connection (``wss://`` through an ``https://`` proxy), with a
:class:`NestedTLSSocket`. Every failure is a :class:`~lomond.errors.ConnectFail` with
the reason (certificate verification details included), and the socket is closed.
"""

from __future__ import annotations

import socket
import ssl
import threading

from .._logging import log
from ..errors import ConnectFail
from .deadline import Deadline
from .sockets import PLAIN_WOULD_BLOCK, Opened
from .timeouts import socket_timeout, timed_out

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Any

    from .sockets import SocketLike

_unverified_warning_logged = False
# The default contexts made so far, one per (verify, cafile) setting: see
# shared_ssl_context().
_shared_contexts: dict[tuple[bool, str | None], ssl.SSLContext] = {}
_shared_lock = threading.Lock()
#: The most default contexts kept at once (distinct ``ssl_cafile`` values).
MAX_SHARED_CONTEXTS = 16

#: Bytes read from the outer TLS layer at a time (TLS inside TLS).
_READ_SIZE = 64 * 1024
#: Plaintext encrypted per ``send`` call (TLS inside TLS): four full TLS records.
_SEND_SIZE = 64 * 1024
#: What a non-blocking TLS socket raises when a read or write would block.
WOULD_BLOCK = PLAIN_WOULD_BLOCK + (ssl.SSLWantReadError, ssl.SSLWantWriteError)


# -- TLS settings ------------------------------------------------------------------


def make_ssl_context(verify: bool = True, cafile: str | None = None) -> ssl.SSLContext:
    """Return the TLS context lomond uses when none is given.

    With ``verify``, certificates and host names are checked against the system's
    trust store plus certifi's bundle, or against ``cafile`` alone when given.
    TLS 1.2 is the minimum.
    """
    global _unverified_warning_logged
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # A renegotiation (TLS 1.2) that the server starts and never finishes would stall
    # every write: refuse them (OpenSSL 1.1.0h and later).
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if not _unverified_warning_logged:
            _unverified_warning_logged = True
            log.warning("TLS certificate verification is disabled (ssl_verify=False)")
        return context
    if cafile is not None:
        context.load_verify_locations(cafile=cafile)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        # certifi is imported here, not at the top: it costs ~10 ms of import time
        # (importlib.resources) that plain ws:// users should not pay.
        import certifi

        context.load_verify_locations(cafile=certifi.where())
    return context


def shared_ssl_context(verify: bool = True, cafile: str | None = None) -> ssl.SSLContext:
    """:func:`make_ssl_context`'s context, made once per process for each setting.

    Loading the trust store takes about 0.1 s; every ``wss://`` WebSocket without
    an ``ssl_context`` of its own shares this one instead of paying it again (a
    multiplexer opening hundreds of connections would spend that time in its
    loop). A trust store or ``cafile`` changed on disk is read again only by a new
    process. A failure (a ``cafile`` that cannot be loaded) is not kept.
    """
    key = (verify, cafile)
    with _shared_lock:
        context = _shared_contexts.get(key)
        if context is None:
            if len(_shared_contexts) >= MAX_SHARED_CONTEXTS:
                del _shared_contexts[next(iter(_shared_contexts))]
            context = _shared_contexts[key] = make_ssl_context(verify, cafile)
        return context


# -- handshakes --------------------------------------------------------------------


def _describe_tls_error(error: ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        # OpenSSL's own words, e.g. "self-signed certificate in certificate chain",
        # "certificate has expired", "Hostname mismatch, certificate is not valid
        # for 'example.com'."
        detail = error.verify_message or error.reason or str(error)
        return f"TLS certificate verify failed: {detail}"
    reason = error.reason
    if reason is None and isinstance(error, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        # The server closed the connection in the handshake (often a plain ws://
        # server). Python 3.10 and later name it so; 3.8 and 3.9 give no reason.
        reason = "UNEXPECTED_EOF_WHILE_READING"
    return f"TLS handshake failed: {reason or error}"


def handshake_failure(error: OSError, server_hostname: str, deadline: Deadline) -> ConnectFail:
    """The failure to raise when a TLS handshake with ``server_hostname`` raised ``error``."""
    if isinstance(error, ssl.SSLError):
        return ConnectFail(_describe_tls_error(error))
    if isinstance(error, socket.timeout):
        return timed_out(deadline, f"in the TLS handshake with {server_hostname}")
    return ConnectFail(f"TLS handshake with {server_hostname} failed: {error}")


def is_ssl_socket(sock: object) -> bool:
    """Whether ``sock`` is an :class:`ssl.SSLSocket` (TLS over a plain socket)."""
    return isinstance(sock, ssl.SSLSocket)


def opened(sock: SocketLike, proxy_url: str | None) -> Opened:
    """Describe a TLS connection (or one through an ``https://`` proxy) to the session."""
    pending = sock.pending if is_ssl_socket(sock) else None  # type: ignore[attr-defined]
    return Opened(sock, proxy_url, WOULD_BLOCK, pending, (ssl.SSLWantReadError,))


def wrap_tls(
    sock: socket.socket,
    context: ssl.SSLContext,
    server_hostname: str,
    deadline: Deadline,
) -> ssl.SSLSocket:
    """Run the TLS handshake on ``sock`` (SNI always sent) before ``deadline``.

    Raises:
        ConnectFail: The handshake failed (with the verification detail) or timed out.
    """
    try:
        sock.settimeout(socket_timeout(deadline))
        return context.wrap_socket(sock, server_hostname=server_hostname)
    except OSError as error:
        sock.close()
        raise handshake_failure(error, server_hostname, deadline) from None


class NestedTLSSocket:
    """A TLS connection carried inside another one: ``wss://`` through an ``https://`` proxy.

    ``SSLContext.wrap_socket`` cannot do this: given an :class:`ssl.SSLSocket`, it
    takes over the file descriptor and writes the inner handshake *beside* the outer
    TLS layer, which the proxy rejects (checked on Python 3.8 to 3.13). So the inner
    TLS runs in an :class:`ssl.SSLObject` over memory BIOs, and its records travel
    through the outer socket.

    It offers the socket methods the session uses, with the semantics of an
    :class:`ssl.SSLSocket`: in non-blocking mode, a ``send`` or ``recv`` that cannot
    go on raises :class:`ssl.SSLWantReadError` or :class:`ssl.SSLWantWriteError`,
    and a ``send`` must then be retried with the same data. ``recv`` returns every
    decrypted byte already received (possibly more than ``bufsize``), so that none
    waits in a buffer the selector cannot see. One thread may read while another
    sends: a lock keeps the TLS object and the queued records consistent.

    Args:
        outer: The TLS connection to the proxy, with the tunnel open.
        context: The context for the inner connection (to the WebSocket server).
        server_hostname: The server's name, for SNI and certificate verification.
    """

    def __init__(self, outer: ssl.SSLSocket, context: ssl.SSLContext, server_hostname: str) -> None:
        self._outer = outer
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_side=False, server_hostname=server_hostname
        )
        # Guards _tls, the BIOs and the two fields below; never held while blocking
        # on a read from the outer socket.
        self._lock = threading.Lock()
        # Records the outer socket has not taken yet, and how much plaintext they carry
        # (reported as sent once they are out, when ``send`` is retried).
        self._unsent = b""
        self._unsent_plaintext = 0

    def __repr__(self) -> str:
        return f"<NestedTLSSocket through {self._outer!r}>"

    # socket methods passed to the outer connection

    def fileno(self) -> int:
        return self._outer.fileno()

    def settimeout(self, value: float | None, /) -> None:
        self._outer.settimeout(value)

    def setblocking(self, flag: bool, /) -> None:
        self._outer.setblocking(flag)

    def shutdown(self, how: int, /) -> None:
        """Shut down the TCP connection itself (see :meth:`SocketLike.shutdown`)."""
        socket.socket.shutdown(self._outer, how)

    def close(self) -> None:
        self._outer.close()

    # TLS information about the inner connection

    def version(self) -> str | None:
        """The inner connection's TLS version, e.g. ``"TLSv1.3"``."""
        return self._tls.version()

    def getpeercert(self) -> Any:
        """The WebSocket server's certificate, as :meth:`ssl.SSLSocket.getpeercert`."""
        return self._tls.getpeercert()

    def pending(self) -> int:
        """Decrypted bytes ready to read (``0`` after each :meth:`recv`)."""
        with self._lock:
            return self._tls.pending()

    # moving records

    def _flush_locked(self) -> None:
        """Write queued records to the outer socket (may raise a would-block error)."""
        self._unsent += self._outgoing.read()
        while self._unsent:
            sent = self._outer.send(self._unsent)
            self._unsent = self._unsent[sent:]

    def _receive(self) -> None:
        """Read from the outer socket into the inner TLS (may block or raise would-block)."""
        # Under the lock, as every use of the outer TLS connection: OpenSSL must not
        # read and write one connection from two threads at once.
        with self._lock:
            data = self._outer.recv(_READ_SIZE)
            if not data:
                self._incoming.write_eof()
                return
            self._incoming.write(data)
        self._take_outer_buffer()

    def _take_outer_buffer(self) -> None:
        # Bytes the outer TLS decrypted but nobody read wake no selector: take them.
        with self._lock:
            while self._outer.pending():
                self._incoming.write(self._outer.recv(self._outer.pending()))

    def _read(self, bufsize: int) -> bytes | None:
        """Decrypted bytes; ``None`` when more input is needed, ``b""`` at the end."""
        with self._lock:
            try:
                return self._tls.read(bufsize)
            except ssl.SSLWantReadError:
                return None
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""  # close_notify, or the connection ended (a "ragged EOF")

    def do_handshake(self, deadline: Deadline) -> None:
        """Run the inner handshake in blocking mode, before ``deadline``.

        Raises:
            ssl.SSLError: The handshake failed.
            OSError: The outer connection failed or timed out.
        """
        while True:
            with self._lock:
                try:
                    self._tls.do_handshake()
                    done = True
                except ssl.SSLWantReadError:
                    done = False
                self._outer.settimeout(socket_timeout(deadline))
                self._flush_locked()
            if done:
                return
            self._receive()

    # the stream

    def recv(self, bufsize: int, /) -> bytes:
        data = self._read(bufsize)
        while data is None:
            self._receive()
            data = self._read(bufsize)
        chunks = [data]
        while data:
            self._take_outer_buffer()
            data = self._read(bufsize)
            if data:
                chunks.append(data)
        with self._lock:
            if self._outgoing.pending:
                # Reading made records to send (a TLS 1.3 key update): send them now if
                # possible; else the next ``send`` does.
                try:
                    self._flush_locked()
                except WOULD_BLOCK:
                    pass
        return b"".join(chunks)

    def send(self, data: bytes | bytearray | memoryview, /) -> int:
        with self._lock:
            if self._unsent or self._unsent_plaintext:
                self._flush_locked()
                sent, self._unsent_plaintext = self._unsent_plaintext, 0
                if sent:
                    return sent
            chunk = memoryview(data)[:_SEND_SIZE]
            if not chunk:
                return 0
            written: int = self._tls.write(chunk)
            try:
                self._flush_locked()
            except WOULD_BLOCK:
                self._unsent_plaintext = written
                raise
            return written

    def sendall(self, data: bytes | bytearray | memoryview, /) -> None:
        view = memoryview(data)
        while view:
            view = view[self.send(view) :]


def wrap_tls_in_tls(
    outer: ssl.SSLSocket,
    context: ssl.SSLContext,
    server_hostname: str,
    deadline: Deadline,
) -> NestedTLSSocket:
    """Run a TLS handshake with ``server_hostname`` inside the TLS connection ``outer``.

    Raises:
        ConnectFail: As :func:`wrap_tls`. ``outer`` is closed.
    """
    nested = NestedTLSSocket(outer, context, server_hostname)
    try:
        nested.do_handshake(deadline)
    except OSError as error:
        outer.close()
        raise handshake_failure(error, server_hostname, deadline) from None
    return nested
