"""The public façade: :class:`WebSocket`."""

from __future__ import annotations

import os
import time
import weakref

from . import events
from .compression import Deflate
from .constants import USER_AGENT
from .errors import WebSocketUnavailable
from .loop.session import WebsocketSession
from .loop.streaming import STREAM_THRESHOLD, binary_pieces, text_pieces
from .loop.timers import check_connect_arguments, check_seconds
from .loop.trace import Tracer
from .network.connector import Connector
from .network.proxy import Proxy, check_proxies
from .protocol import ClientProtocol, State
from .protocol.frames import Opcode, checked_close, control_payload
from .protocol.handshake import build_request, make_key, normalize_headers, validate_header
from .protocol.mask import byte_view
from .protocol.redirect import Redirects
from .protocol.states import CLOSED_STATES, CLOSING_STATES
from .protocol.streaming import PART_SIZE
from .protocol.url import parse_url
from .status import Status

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    import ssl
    from typing import Any, BinaryIO, Callable, Generator, Iterable, Iterator, Sequence

    from .loop.connection import NextHop
    from .loop.trace import TraceCallable
    from .protocol.handshake import HeaderList, HeadersArgument
    from .protocol.url import Target
    from .response import Response

_UNSET: Any = object()


class WebSocket:
    """A WebSocket client connection to ``url``.

    Nothing touches the network until the generator returned by :meth:`connect` is
    iterated.

    Args:
        url: A ``ws://`` or ``wss://`` URL. ``user:password@`` becomes an
            ``Authorization: Basic`` header.
        proxies: Proxy settings (``None``: from the environment; ``{}``: none).
        protocols: Subprotocols to offer.
        agent: The ``User-Agent`` value (default :data:`lomond.constants.USER_AGENT`).
        compress: ``True``, ``False`` or a :class:`lomond.compression.Deflate`.
        ssl_verify: Verify the server's certificate and host name.
        ssl_cafile: Trust exactly this CA bundle instead of the system's and certifi's.
        ssl_context: An :class:`ssl.SSLContext` to use as it is.
        trace: A callable receiving one dict per step of the connection.
        headers: Extra request headers, a mapping or a list of pairs.
        origin: Sent as the ``Origin`` header.
        connect_timeout: Seconds for DNS, TCP, proxy, TLS and the upgrade response
            together; ``None`` waits forever.
        max_message_size: The largest message accepted, in bytes after decompression;
            ``None`` for no limit. Larger messages fail the connection (code 1009).
            It bounds streamed messages too (``connect(stream=True)``).
        max_redirects: How many redirects (``301``, ``302``, ``303``, ``307``,
            ``308``) of the upgrade request to follow; ``0`` follows none (the
            redirect is ``Rejected``). See :ref:`redirects`.
        stream_part_size: With ``connect(stream=True)``, the most bytes in one
            ``BinaryPart`` or ``TextPart`` (default 256 KiB); memory while receiving
            is bounded by it, not by the message size.

    Raises:
        ValueError: The URL is not a ``ws://``/``wss://`` URL with a host, a header is
            invalid, a limit is not positive, or ``max_redirects`` is negative.
        TypeError: A header or a limit has the wrong type.
    """

    def __init__(
        self,
        url: str,
        proxies: dict[str, str] | None = None,
        protocols: Sequence[str] | None = None,
        agent: str | None = None,
        compress: bool | Deflate = False,
        ssl_verify: bool = True,
        ssl_cafile: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        trace: TraceCallable | None = None,
        *,
        headers: HeadersArgument | None = None,
        origin: str | None = None,
        connect_timeout: float | None = 30.0,
        max_message_size: int | None = 16 * 1024 * 1024,
        max_redirects: int = 10,
        stream_part_size: int = PART_SIZE,
    ) -> None:
        target = parse_url(url)
        if not isinstance(compress, (bool, Deflate)):
            raise TypeError("compress must be True, False or a lomond.compression.Deflate")
        check_seconds("connect_timeout", connect_timeout, least="more than 0")
        _check_size("max_message_size", max_message_size)
        _check_count("max_redirects", max_redirects)
        _check_size("stream_part_size", stream_part_size, optional=False)

        self.scheme = target.scheme
        self.host = target.host
        self.port = target.port
        self.resource = target.resource
        self.url = target.url
        self._target = target
        self.proxies = check_proxies(proxies)
        self.protocols: list[str] = list(protocols or [])
        self.agent = agent or USER_AGENT
        self.compress = compress
        self.ssl_verify = ssl_verify
        self.ssl_cafile = ssl_cafile
        self.ssl_context = ssl_context
        self.trace = trace
        self.origin = origin
        self.connect_timeout = connect_timeout
        self.max_message_size = max_message_size
        self.max_redirects = max_redirects
        self.stream_part_size = stream_part_size
        self._headers = normalize_headers(headers)
        self._default_ssl_context: ssl.SSLContext | None = None
        self._session: WebsocketSession | None = None
        # The generator connect() returned last, while it may still run.
        self._loop: weakref.ref[Generator[events.Event, None, None]] | None = None
        self._key = make_key(os.urandom(16))

    def __repr__(self) -> str:
        return f"WebSocket('{self.url}')"

    # -- configuration ---------------------------------------------------------

    def add_header(self, header: bytes, value: bytes) -> None:
        """Add a request header, sent after lomond's own.

        Raises:
            TypeError: ``header`` or ``value`` is not ``bytes``.
            ValueError: The name is not an HTTP token, the value contains CR, LF or
                NUL, or the name is one the handshake sets itself (``Host``,
                ``Upgrade``, ``Connection``, ``Sec-WebSocket-Key``,
                ``Sec-WebSocket-Version``, ``Sec-WebSocket-Accept``).
        """
        if not isinstance(header, bytes):
            raise TypeError("header must be bytes")
        if not isinstance(value, bytes):
            raise TypeError("value must be bytes")
        self._headers.append(validate_header(header, value))

    @property
    def host_header(self) -> str:
        """The ``Host`` header value, with the port only when it is not the default.

        An IPv6 address is in brackets, as in ``[::1]:8080``.
        """
        return self._target.host_header

    def _offered_protocols(self) -> list[str]:
        offered = list(self.protocols)
        for name, value in self._headers:
            if name.lower() == b"sec-websocket-protocol":
                offered.extend(p.strip() for p in value.decode("latin-1").split(",") if p.strip())
        return offered

    def _deflate(self) -> Deflate | None:
        if self.compress is True:
            return Deflate()
        if isinstance(self.compress, Deflate):
            return self.compress
        return None

    def _make_protocol(
        self,
        target: Target | None = None,
        headers: HeaderList | None = None,
        *,
        stream: bool = False,
    ) -> ClientProtocol:
        """A fresh protocol for one connection: the request, the offer, the limits.

        ``target`` and ``headers`` are those of a redirect (by default, the
        WebSocket's URL and headers). ``stream``: data messages come as parts
        (``connect(stream=True)``).
        """
        if target is None:
            target = self._target
        deflate = self._deflate()
        request = build_request(
            resource=target.resource,
            host_header=target.host_header,
            key=self._key,
            agent=self.agent,
            origin=self.origin,
            authorization=target.authorization,
            protocols=self.protocols,
            extensions=deflate.offer() if deflate is not None else None,
            headers=self._headers if headers is None else headers,
        )
        return ClientProtocol(
            request,
            self._key,
            protocols=self._offered_protocols(),
            deflate=deflate,
            max_message_size=self.max_message_size,
            clock=time.time,
            stream=stream,
            part_size=self.stream_part_size,
        )

    def _make_connector(self, target: Target | None = None) -> Connector:
        """How to open the next connection (to ``target``, after a redirect), from the
        current settings: proxies and TLS apply to every URL alike."""
        if target is None:
            target = self._target
        return Connector(
            target.scheme,
            target.host,
            target.port,
            proxies=self.proxies,
            tls_context=self._tls_context,
            user_agent=self.agent,
            on_tls=self._trace_tls,
        )

    def _redirector(self, stream: bool = False) -> Callable[[Response], NextHop | None] | None:
        """What the session calls with a rejected response: the next connection to
        open when it is a redirect to follow (see :mod:`lomond.protocol.redirect`).

        The decision raises ``RedirectRefused`` for a redirect that may not be
        followed; each connect() starts a new chain from the WebSocket's URL.
        """
        if self.max_redirects == 0:
            return None
        redirects = Redirects(self._target, self._headers, self.max_redirects)

        def follow(response: Response) -> NextHop | None:
            hop = redirects.follow(response)
            if hop is None:
                return None
            self._key = make_key(os.urandom(16))  # a fresh key for each request
            protocol = self._make_protocol(hop.target, hop.headers, stream=stream)
            return protocol, self._make_connector(hop.target), hop.target.url

        return follow

    def _tls_context(self) -> ssl.SSLContext:
        """The TLS context for ``wss://``: ``ssl_context`` as given, else lomond's default."""
        if self.ssl_context is not None:
            return self.ssl_context
        if self._default_ssl_context is None:
            # Imported here: programs that never use TLS never load the ssl module.
            from .network.tls import shared_ssl_context

            self._default_ssl_context = shared_ssl_context(self.ssl_verify, self.ssl_cafile)
        return self._default_ssl_context

    def get_proxy(self) -> Proxy | None:
        """The proxy for the next connection, from ``proxies`` or the environment.

        The environment is read at each call, so a change applies to the next connect.

        Raises:
            ValueError: The chosen proxy setting is not a valid proxy URL.
        """
        return self._make_connector().proxy()

    def _tracer(self) -> Tracer | None:
        return None if self.trace is None else Tracer(self.url, self.trace)

    def _trace(self, stage: str, **fields: Any) -> None:
        """Pass a trace record to ``trace``; an exception it raises is logged and ignored."""
        if self.trace is not None:
            Tracer(self.url, self.trace)(stage, **fields)

    def _trace_tls(self) -> None:
        self._trace(
            "tls_wrapped",
            verify=self.ssl_verify,
            has_context=self.ssl_context is not None,
            cafile=self.ssl_cafile is not None,
        )

    # -- state -----------------------------------------------------------------

    @property
    def session(self) -> WebsocketSession | None:
        """The session of the current (or last) connection, if any."""
        return self._session

    @property
    def key(self) -> bytes:
        """The ``Sec-WebSocket-Key`` of the current (or next) connection."""
        return self._key

    @property
    def _state(self) -> State | None:
        return None if self._session is None else self._session.protocol.state

    @property
    def is_secure(self) -> bool:
        """Whether the connection uses TLS (``wss://``)."""
        return self.scheme == "wss"

    @property
    def is_active(self) -> bool:
        """Whether the WebSocket is open (connected, and neither closing nor closed)."""
        return self._state is State.OPEN

    @property
    def is_closing(self) -> bool:
        """Whether the closing handshake has started but the connection is not over."""
        return self._state in CLOSING_STATES

    @property
    def is_closed(self) -> bool:
        """Whether the connection is over (or both close frames were exchanged)."""
        return self._state in CLOSED_STATES

    @property
    def supports_compression(self) -> bool:
        """Whether permessage-deflate was negotiated on the current connection."""
        return self._session is not None and self._session.protocol.compression is not None

    @property
    def latency(self) -> float | None:
        """Seconds of the last ping round trip of the current (or last) connection.

        Measured on a monotonic clock from when lomond sent a ping (automatic, every
        ``ping_rate`` seconds, or :meth:`send_ping`) to when the pong that answers
        it was read; ``None`` until the first pong of the connection. A pong answers
        the oldest ping in flight with the same payload; an unsolicited pong changes
        nothing. See :ref:`latency`.
        """
        return None if self._session is None else self._session.latency

    @property
    def sent_close_time(self) -> float | None:
        """When our close frame was sent, in seconds on the session clock, or ``None``."""
        return None if self._session is None else self._session.sent_close_time

    # -- connecting ------------------------------------------------------------

    def reset(self) -> None:
        """Forget the previous connection; the next one starts from fresh state.

        Raises:
            RuntimeError: A connection loop is still running.
        """
        self._check_not_running("reset")
        self._session = None
        self._loop = None
        self._key = make_key(os.urandom(16))

    def _check_not_running(self, what: str) -> None:
        """Raise ``RuntimeError`` while the generator of the last connect() may run.

        From ``connect()`` until that generator is exhausted, closed or collected,
        even before its first event, so that two loops never share one WebSocket.
        """
        loop = None if self._loop is None else self._loop()
        # A generator keeps its frame until it is exhausted or closed. One that is
        # executing is the caller itself: a Multiplexer's loop of persist=True
        # reconnecting its WebSocket.
        if (
            loop is not None
            and getattr(loop, "gi_frame", None) is not None
            and not getattr(loop, "gi_running", False)
        ):
            raise RuntimeError(
                f"cannot {what} a WebSocket while its event loop is running "
                "(leave or close the loop of the previous connect() first)"
            )

    def connect(
        self,
        session_class: type[WebsocketSession] = WebsocketSession,
        poll: float | None = 5.0,
        ping_rate: float | None = 30.0,
        ping_timeout: float | None = None,
        auto_pong: bool = True,
        close_timeout: float | None = 30.0,
        *,
        stream: bool = False,
        data_resets_ping_timeout: bool = False,
    ) -> Generator[events.Event, None, None]:
        """Return a generator that connects and yields the connection's events.

        Args:
            session_class: The session implementation (for tests and subclasses).
            poll: Seconds between :class:`~lomond.events.Poll` events.
            ping_rate: Seconds between automatic pings; ``0`` or ``None`` disables them.
            ping_timeout: Fail the connection (:class:`~lomond.events.Unresponsive`)
                after this many seconds without a pong; ``None`` disables it.
            auto_pong: Answer pings automatically.
            close_timeout: Seconds to wait for the server to finish the closing
                handshake after our close frame; ``None`` waits forever.
            stream: Yield each data message as one or more
                :class:`~lomond.events.BinaryPart` or :class:`~lomond.events.TextPart`
                events, as its bytes arrive, instead of one ``Binary`` or ``Text``
                (see the :doc:`/streaming` page).
            data_resets_ping_timeout: Count any data received, not only pongs, as a
                sign of life for ``ping_timeout`` (for busy links whose server
                answers pings late; see :ref:`busy-links`).

        Raises:
            RuntimeError: A previous connection's loop is still running (from its
                ``connect()`` call on, even before its first event).
            TypeError: An argument has the wrong type.
            ValueError: A duration is negative, NaN or infinite.
        """
        check_connect_arguments(
            poll=poll,
            ping_rate=ping_rate,
            ping_timeout=ping_timeout,
            auto_pong=auto_pong,
            close_timeout=close_timeout,
            data_resets_ping_timeout=data_resets_ping_timeout,
            stream=stream,
        )
        self._check_not_running("connect")
        self.reset()
        session = self._session = session_class(
            self._make_protocol(stream=stream),
            self._make_connector(),
            url=self.url,
            connect_timeout=self.connect_timeout,
            tracer=self._tracer(),
            redirect=self._redirector(stream),
        )
        self._trace(
            "connect_start",
            poll=poll,
            ping_rate=ping_rate,
            ping_timeout=ping_timeout,
            auto_pong=auto_pong,
            close_timeout=close_timeout,
            data_resets_ping_timeout=data_resets_ping_timeout,
        )
        loop = session.run(
            poll=poll,
            ping_rate=ping_rate,
            ping_timeout=ping_timeout,
            auto_pong=auto_pong,
            close_timeout=close_timeout,
            data_resets_ping_timeout=data_resets_ping_timeout,
        )
        self._loop = weakref.ref(loop)
        return loop

    def __iter__(self) -> Generator[events.Event, None, None]:
        return self.connect()

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._session is not None:
            self._session.close()

    def force_disconnect(self) -> None:
        """Drop the TCP connection now; the loop then yields ``Disconnected``.

        Never raises.
        """
        if self._session is not None:
            self._session.force_disconnect()

    # -- sending ---------------------------------------------------------------

    def _connected_session(self) -> WebsocketSession:
        session = self._session
        if session is None:
            raise WebSocketUnavailable("not connected: call connect() first")
        return session

    def send_text(self, text: str | Iterable[str], compress: bool = True) -> None:
        """Send a text message: a ``str``, or an iterable of ``str`` streamed as one message.

        An iterable is sent in fragments as it is iterated, with memory bounded by a
        few pieces (see the :doc:`/streaming` page); if iterating it raises, the
        connection is closed with code 1011 and the exception propagates.

        Raises:
            TypeError: ``text`` is neither a ``str`` nor an iterable of ``str``.
            WebSocketUnavailable: Not connected (or closing, or closed).
            TransportFail: The socket failed.
        """
        if isinstance(text, str):
            session = self._connected_session()
            payload = text.encode("utf-8")
            compressed = session.send(lambda p: p.send_message(Opcode.TEXT, payload, compress))
            self._trace("send_text", length=len(text), compressed=compressed)
            return
        pieces = text_pieces(text)
        self._send_stream("send_text", Opcode.TEXT, pieces, compress)

    def send_binary(
        self, data: bytes | bytearray | memoryview | BinaryIO | Iterable[Any], compress: bool = True
    ) -> None:
        """Send a binary message: bytes-like, or streamed from a file or an iterable.

        A binary file object (anything with ``readinto`` or ``read``) or an iterable
        of bytes-like chunks is sent as one message, in fragments, as it is read,
        with memory bounded by a few pieces (see the :doc:`/streaming` page); if
        reading it raises, the connection is closed with code 1011 and the exception
        propagates. A bytes-like object over 4 MiB sent from a thread other than
        the loop's is sent in fragments as well, without a masked copy of the whole.

        Raises:
            TypeError: ``data`` is a ``str``, a text file, or neither bytes-like, a
                binary file nor an iterable of bytes-like chunks.
            WebSocketUnavailable: Not connected (or closing, or closed).
            TransportFail: The socket failed.
        """
        if isinstance(data, (bytes, bytearray, memoryview)):
            # Not copied: the frame is built (masked, or compressed) before this returns.
            payload = data if type(data) is bytes else byte_view(data)
            session = self._connected_session()
            if len(payload) > STREAM_THRESHOLD and not session.in_loop_thread:
                # Another thread may wait: in fragments, with no copy of the whole.
                pieces = binary_pieces([payload])
                self._send_stream("send_binary", Opcode.BINARY, pieces, compress)
                return
            compressed = session.send(lambda p: p.send_message(Opcode.BINARY, payload, compress))
            self._trace("send_binary", length=len(payload), compressed=compressed)
            return
        pieces = binary_pieces(data)
        self._send_stream("send_binary", Opcode.BINARY, pieces, compress)

    def _send_stream(
        self,
        stage: str,
        opcode: Opcode,
        pieces: Iterator[bytes | bytearray | memoryview],
        compress: bool,
    ) -> None:
        """Send one message from ``pieces``, in fragments (:mod:`lomond.loop.streaming`)."""
        session = self._connected_session()
        length = 0

        def counted() -> Iterator[bytes | bytearray | memoryview]:
            nonlocal length
            for piece in pieces:
                length += len(piece)
                yield piece

        compressed = session.send_stream(opcode, counted(), compress)
        self._trace(stage, length=length, compressed=compressed, streamed=True)

    def send_json(self, _obj: Any = _UNSET, **kwargs: Any) -> None:
        """Send ``_obj`` (or the keyword arguments as an object) as JSON text.

        Raises:
            ValueError: Both a positional object and keyword arguments were given.
            TypeError: The object cannot be serialised to JSON.
        """
        if _obj is _UNSET:
            _obj = kwargs
        elif kwargs:
            raise ValueError("send_json takes one positional object or keyword arguments, not both")
        import json  # imported on first use, as in events.Text.json

        self.send_text(json.dumps(_obj))

    def send_ping(self, data: bytes = b"") -> None:
        """Send a ping (``data``: bytes, at most 125); its pong updates :attr:`latency`.

        Raises:
            TypeError: ``data`` is not bytes.
            ValueError: ``data`` is longer than 125 bytes.
        """
        payload = control_payload("ping", data)
        self._connected_session().send_ping(payload)
        self._trace("send_ping", length=len(payload))

    def send_pong(self, data: bytes) -> None:
        """Send a pong (``data``: bytes, at most 125).

        Raises:
            TypeError: ``data`` is not bytes.
            ValueError: ``data`` is longer than 125 bytes.
        """
        payload = control_payload("pong", data)
        self._connected_session().send(lambda p: p.send_pong(payload), message=False)
        self._trace("send_pong", length=len(payload))

    def close(self, code: int = Status.NORMAL, reason: str | bytes = "goodbye") -> None:
        """Start the closing handshake; the loop ends once the server has answered.

        Before connecting, or when closing or closed already, this does nothing.

        Raises:
            ValueError: ``code`` may not be sent (allowed: 1000-1003, 1007-1014,
                3000-4999), or a ``bytes`` reason is not UTF-8.
            TypeError: ``code`` is not an int or ``reason`` neither str nor bytes.
        """
        reason_bytes = checked_close(code, reason)
        session = self._session
        if session is None:
            return
        # Never waits behind queued data, and a broken socket does not raise: the
        # loop is then ending with Disconnected anyway.
        sent = session.call(lambda p: p.close(code, reason_bytes) and p.sent_close)
        if sent:
            self._trace("close_requested", code=int(code), reason=sent[1])


def _check_size(name: str, value: object, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "an int or None" if optional else "an int"
        raise TypeError(f"{name} must be {kind}, not {type(value).__name__}")
    if value <= 0:
        raise ValueError(
            f"{name} must be positive{' (or None)' if optional else ''}, not {value!r}"
        )


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be 0 or more, not {value!r}")
