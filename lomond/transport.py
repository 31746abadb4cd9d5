"""Opening the connection: DNS, TCP, proxy and TLS, under one deadline.

:func:`open_connection` is the entry point. Every failure is raised as
:class:`~lomond.errors.ConnectFail` with a sentence that says what failed, for
``ConnectFail.reason``, and the socket is closed on every failure path.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
from typing import Any, Callable, List, Protocol, Tuple

import certifi

from .deadline import Deadline
from .errors import ConnectFail
from .proxy import Proxy, host_port, negotiate

log = logging.getLogger("lomond")

_unverified_warning_logged = False

#: ``getaddrinfo`` results: ``(family, type, proto, canonname, sockaddr)``.
AddressList = List[Tuple[Any, Any, int, str, Any]]
#: Bytes read from the outer TLS layer at a time (TLS inside TLS).
_READ_SIZE = 64 * 1024
#: Plaintext encrypted per ``send`` call (TLS inside TLS): four full TLS records.
_SEND_SIZE = 64 * 1024
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class SocketLike(Protocol):
    """What the session needs of a connection: a socket, or a :class:`NestedTLSSocket`."""

    def fileno(self) -> int: ...

    def settimeout(self, value: float | None, /) -> None: ...

    def setblocking(self, flag: bool, /) -> None: ...

    def send(self, data: bytes | memoryview, /) -> int: ...

    def sendall(self, data: bytes | memoryview, /) -> None: ...

    def recv(self, bufsize: int, /) -> bytes: ...

    def shutdown(self, how: int, /) -> None: ...

    def close(self) -> None: ...


# -- TLS settings ------------------------------------------------------------------


def make_ssl_context(verify: bool = True, cafile: str | None = None) -> ssl.SSLContext:
    """Return the TLS context lomond uses when none is given (SPEC §8).

    With ``verify``, certificates and host names are checked against the system's
    trust store plus certifi's bundle, or against ``cafile`` alone when given.
    TLS 1.2 is the minimum.
    """
    global _unverified_warning_logged
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
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
        context.load_verify_locations(cafile=certifi.where())
    return context


def _describe_tls_error(error: ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        # OpenSSL's own words, e.g. "self-signed certificate in certificate chain",
        # "certificate has expired", "Hostname mismatch, certificate is not valid
        # for 'example.com'."
        detail = error.verify_message or error.reason or str(error)
        return f"TLS certificate verify failed: {detail}"
    reason = error.reason or str(error)
    return f"TLS handshake failed: {reason}"


# -- DNS and TCP -------------------------------------------------------------------


def _timeout(deadline: Deadline) -> float | None:
    remaining = deadline.remaining()
    if remaining is not None and remaining <= 0:
        raise socket.timeout("deadline passed")
    return remaining


def _timed_out(deadline: Deadline, doing: str) -> ConnectFail:
    return ConnectFail(f"timed out after {deadline.seconds:g}s {doing}")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def resolve(host: str, port: int, deadline: Deadline, family: int = 0) -> AddressList:
    """Return the addresses of ``host`` (``getaddrinfo``), before ``deadline``.

    IP literals are converted at once. A name is looked up in a helper thread when
    there is a deadline, because ``getaddrinfo`` itself cannot be interrupted: a
    slow resolver must not stretch ``connect_timeout``.

    Raises:
        ConnectFail: The name does not resolve, or the deadline passed first.
    """
    # An IP literal is converted at once; only a name needs the resolver.
    flags = socket.AI_NUMERICHOST if _is_ip_literal(host) else 0
    results: list[AddressList] = []

    def lookup() -> None:
        try:
            results.append(socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, flags))
        except (OSError, UnicodeError):
            results.append([])

    remaining = deadline.remaining()
    if remaining is None or flags:
        lookup()
    else:
        thread = threading.Thread(target=lookup, name=f"lomond-resolve-{host}", daemon=True)
        thread.start()
        thread.join(remaining)
        if not results:
            raise _timed_out(deadline, f"resolving host '{host}'")
    if not results[0]:
        raise ConnectFail(f"could not resolve host '{host}'")
    return results[0]


def open_tcp(host: str, port: int, deadline: Deadline, peer: str = "") -> socket.socket:
    """Connect to ``host:port``, trying each address DNS gives, until ``deadline``.

    ``peer`` names what is connected to in messages (``"proxy "``).

    Raises:
        ConnectFail: DNS, refusal, unreachable network or timeout, as a sentence.
    """
    addresses = resolve(host, port, deadline)
    last_error: OSError | None = None
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(_timeout(deadline))
            sock.connect(address)
        except OSError as error:
            sock.close()
            last_error = error
            if isinstance(error, socket.timeout):
                break
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    where = peer + host_port(host, port)
    if isinstance(last_error, socket.timeout):
        raise _timed_out(deadline, f"connecting to {where}")
    if isinstance(last_error, ConnectionRefusedError):
        raise ConnectFail(f"connection refused by {where}")
    raise ConnectFail(f"could not connect to {where}: {last_error}")


# -- TLS ---------------------------------------------------------------------------


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
        sock.settimeout(_timeout(deadline))
        return context.wrap_socket(sock, server_hostname=server_hostname)
    except ssl.SSLError as error:
        sock.close()
        raise ConnectFail(_describe_tls_error(error)) from None
    except socket.timeout:
        sock.close()
        raise _timed_out(deadline, f"in the TLS handshake with {server_hostname}") from None
    except OSError as error:
        sock.close()
        raise ConnectFail(f"TLS handshake with {server_hostname} failed: {error}") from None


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
        self._outer.shutdown(how)

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
        data = self._outer.recv(_READ_SIZE)
        with self._lock:
            if not data:
                self._incoming.write_eof()
                return
            self._incoming.write(data)
        self._take_outer_buffer()

    def _take_outer_buffer(self) -> None:
        # Bytes the outer TLS decrypted but nobody read wake no selector: take them.
        while self._outer.pending():
            data = self._outer.recv(self._outer.pending())
            with self._lock:
                self._incoming.write(data)

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
                self._outer.settimeout(_timeout(deadline))
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
                except _WOULD_BLOCK:
                    pass
        return b"".join(chunks)

    def send(self, data: bytes | memoryview, /) -> int:
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
            except _WOULD_BLOCK:
                self._unsent_plaintext = written
                raise
            return written

    def sendall(self, data: bytes | memoryview, /) -> None:
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
    except ssl.SSLError as error:
        outer.close()
        raise ConnectFail(_describe_tls_error(error)) from None
    except socket.timeout:
        outer.close()
        raise _timed_out(deadline, f"in the TLS handshake with {server_hostname}") from None
    except OSError as error:
        outer.close()
        raise ConnectFail(f"TLS handshake with {server_hostname} failed: {error}") from None
    return nested


# -- the whole way -----------------------------------------------------------------


def open_connection(
    host: str,
    port: int,
    *,
    context: ssl.SSLContext | None,
    deadline: Deadline,
    proxy: Proxy | None = None,
    proxy_context: ssl.SSLContext | None = None,
    user_agent: str | None = None,
    on_tls: Callable[[], None] | None = None,
) -> SocketLike:
    """Open a connection to ``host:port``, through a proxy and with TLS if asked.

    Every step (DNS, TCP, the proxy's tunnel, TLS) runs before ``deadline``.

    Args:
        host: The server's host name or IP address (IPv6 without brackets).
        port: The server's port.
        context: The TLS context for the server (``wss://``), or ``None``.
        deadline: When to give up; covers DNS, TCP, the proxy and TLS.
        proxy: The proxy to go through, or ``None``.
        proxy_context: The TLS context for an ``https://`` proxy (default:
            :func:`make_ssl_context`).
        user_agent: Sent to an HTTP proxy with CONNECT.
        on_tls: Called before the TLS handshake with the server.

    Raises:
        ConnectFail: With a readable reason. Nothing is left open.
    """
    if proxy is None:
        sock = open_tcp(host, port, deadline)
    else:
        sock = _open_tunnel(host, port, deadline, proxy, proxy_context, user_agent)
    if context is None:
        return sock
    if on_tls is not None:
        on_tls()
    if isinstance(sock, ssl.SSLSocket):
        return wrap_tls_in_tls(sock, context, host, deadline)
    return wrap_tls(sock, context, host, deadline)


def _open_tunnel(
    host: str,
    port: int,
    deadline: Deadline,
    proxy: Proxy,
    proxy_context: ssl.SSLContext | None,
    user_agent: str | None,
) -> socket.socket:
    """Connect to ``proxy`` and have it open a tunnel to ``host:port``."""
    log.debug("connecting to %s through %s", host_port(host, port), proxy.url)
    target = host
    if not proxy.resolves_remotely and not _is_ip_literal(host):
        # socks5:// and socks4:// carry an address; SOCKS4 knows only IPv4.
        family = socket.AF_INET if proxy.scheme == "socks4" else 0
        target = resolve(host, port, deadline, family)[0][4][0]
    sock = open_tcp(proxy.host, proxy.port, deadline, peer="proxy ")
    if proxy.scheme == "https":
        sock = wrap_tls(sock, proxy_context or make_ssl_context(), proxy.host, deadline)
    try:
        negotiate(sock, proxy, target, port, deadline, user_agent)
    except BaseException:
        sock.close()
        raise
    return sock
