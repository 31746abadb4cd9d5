"""Opening the connection: DNS, TCP and TLS, under one deadline.

Every failure is raised as :class:`~lomond.errors.ConnectFail` with a sentence that
says what failed, for ``ConnectFail.reason``.
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Callable

import certifi

from .deadline import Deadline
from .errors import ConnectFail

log = logging.getLogger("lomond")

_unverified_warning_logged = False


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
        return f"TLS certificate verify failed: {error.verify_message}"
    reason = error.reason or str(error)
    return f"TLS handshake failed: {reason}"


def _timeout(deadline: Deadline) -> float | None:
    remaining = deadline.remaining()
    if remaining is not None and remaining <= 0:
        raise socket.timeout("deadline passed")
    return remaining


def open_tcp(host: str, port: int, deadline: Deadline) -> socket.socket:
    """Connect to ``host:port``, trying each address DNS gives, until ``deadline``.

    Raises:
        ConnectFail: DNS, refusal, unreachable network or timeout, as a sentence.
    """
    try:
        addresses = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    except socket.gaierror:
        raise ConnectFail(f"could not resolve host '{host}'") from None
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
    where = _host_port(host, port)
    if isinstance(last_error, socket.timeout):
        raise ConnectFail(f"timed out after {deadline.seconds:g}s connecting to {where}")
    if isinstance(last_error, ConnectionRefusedError):
        raise ConnectFail(f"connection refused by {where}")
    raise ConnectFail(f"could not connect to {where}: {last_error}")


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
        raise ConnectFail(
            f"timed out after {deadline.seconds:g}s in the TLS handshake with {server_hostname}"
        ) from None
    except OSError as error:
        sock.close()
        raise ConnectFail(f"TLS handshake with {server_hostname} failed: {error}") from None


def open_connection(
    host: str,
    port: int,
    *,
    context: ssl.SSLContext | None,
    deadline: Deadline,
    on_tls: Callable[[], None] | None = None,
) -> socket.socket:
    """Open a TCP connection, with TLS when ``context`` is given.

    Raises:
        ConnectFail: With a readable reason.
    """
    sock = open_tcp(host, port, deadline)
    if context is None:
        return sock
    if on_tls is not None:
        on_tls()
    return wrap_tls(sock, context, host, deadline)
