"""The client side of RFC 6455 as a state machine, with no I/O.

Bytes from the server go in through :meth:`ClientProtocol.receive_data`; events come
out of :meth:`ClientProtocol.events_received`. Calls such as
:meth:`ClientProtocol.send_message` go in; bytes for the server come out of
:meth:`ClientProtocol.data_to_send`. The session (:mod:`lomond.loop.session`) moves the
bytes between this object and a socket, and decides when time has run out.

States::

    CONNECTING ──101──▶ OPEN ──close()──────▶ CLOSING ──server close──▶ CLOSED
        │                │                       ▲                         │
        │                ├──server close──▶ REMOTE_CLOSING ──echo──────────┤
        │                └──protocol error──────┘                          │
        └──────── rejection, EOF or abort (from any state) ──▶ DISCONNECTED ◀┘
"""

from __future__ import annotations

from enum import Enum
from typing import Callable

from .. import events
from ..errors import (
    HandshakeError,
    PayloadTooLarge,
    ProtocolError,
    WebSocketClosed,
    WebSocketClosing,
    WebSocketUnavailable,
)
from ..response import Response
from ..status import Status
from .deflate import EXTENSION_NAME, Deflate, PerMessageDeflate
from .frames import (
    RESERVED_OPCODES,
    RSV1,
    FrameHeader,
    FrameReader,
    Opcode,
    build_close_payload,
    build_frame,
    parse_close_payload,
)
from .handshake import Extension, check_response
from .mask import BufferedRandom, KeySource
from .messages import MessageAssembler, invalid_utf8

#: The largest HTTP response head lomond reads; a larger one is ``Rejected``.
MAX_HEADER_SIZE = 64 * 1024
#: The most header lines lomond accepts in a response head.
MAX_HEADER_LINES = 256

_NO_LIMIT = (1 << 63) - 1

#: :meth:`ClientProtocol.data_to_send` joins waiting frames up to this many bytes.
JOIN_LIMIT = 256 * 1024


class State(Enum):
    """Where a connection is in its life."""

    #: The upgrade request was sent; waiting for the response.
    CONNECTING = "connecting"
    #: Messages may flow both ways.
    OPEN = "open"
    #: The server sent a close frame; we may still send until we echo it.
    REMOTE_CLOSING = "remote_closing"
    #: We sent a close frame; waiting for the server's.
    CLOSING = "closing"
    #: Both close frames were exchanged (or a failure gave up on them); waiting for
    #: the server to close the TCP connection.
    CLOSED = "closed"
    #: The connection is over: ``Disconnected`` (the last event) was produced.
    DISCONNECTED = "disconnected"


_TRANSITIONS = {
    State.CONNECTING: {State.OPEN, State.DISCONNECTED},
    State.OPEN: {State.CLOSING, State.REMOTE_CLOSING, State.DISCONNECTED},
    State.REMOTE_CLOSING: {State.CLOSED, State.DISCONNECTED},
    State.CLOSING: {State.CLOSED, State.DISCONNECTED},
    State.CLOSED: {State.DISCONNECTED},
    State.DISCONNECTED: set(),
}


class InvalidTransition(RuntimeError):
    """A bug in lomond: the state machine was asked for a transition it does not have."""


def compressed_limit(limit: int) -> int:
    """The largest compressed frame for a message limit of ``limit`` bytes.

    The limit counts inflated bytes (checked while inflating); deflate can grow
    incompressible data slightly, so the wire allows a margin.
    """
    return limit + (limit >> 3) + 1024


class ClientProtocol:
    """One WebSocket connection, from the upgrade request to the end, as pure logic.

    Args:
        request: The HTTP upgrade request; it is the first thing :meth:`data_to_send`
            returns.
        key: The ``Sec-WebSocket-Key`` sent in ``request``.
        protocols: The subprotocols offered in ``request``.
        deflate: The permessage-deflate options offered in ``request``, or ``None``.
        max_message_size: The largest message accepted (after decompression), or
            ``None`` for no limit.
        auto_pong: Answer pings with pongs.
        random_bytes: Source of masking keys; by default :func:`os.urandom`, read in
            batches (:class:`lomond.protocol.mask.BufferedRandom`).
    """

    def __init__(
        self,
        request: bytes,
        key: bytes,
        *,
        protocols: list[str] | tuple[str, ...] = (),
        deflate: Deflate | None = None,
        max_message_size: int | None = None,
        auto_pong: bool = True,
        random_bytes: KeySource | None = None,
    ) -> None:
        self.key = key
        self.protocols = list(protocols)
        self.deflate = deflate
        self.max_message_size = max_message_size
        self.auto_pong = auto_pong
        self._random_bytes = BufferedRandom() if random_bytes is None else random_bytes

        self.state = State.CONNECTING
        #: The negotiated permessage-deflate codec, once the server accepted it.
        self.compression: PerMessageDeflate | None = None
        #: Why the connection is being failed, once it is (``ProtocolError.error``).
        self.failure: str | None = None
        #: The code of the server's close frame, once received.
        self.close_code: int | None = None
        self.close_reason = ""
        # A protocol error found behind events the application has not seen yet.
        self._deferred_error: ProtocolError | None = None
        # Why bytes from data_to_send() never reached the server (see send_failed).
        self._send_failure: str | None = None
        # Whether the last frame waiting in _outgoing is an automatic pong.
        self._pong_waiting = False
        #: Set by the shell while the socket does not take the bytes it was given
        #: (the server is not reading): automatic pongs then replace each other.
        self.output_blocked = False

        self._events: list[events.Event] = []
        self._outgoing: list[bytes | bytearray] = [request]
        self._outgoing_size = len(request)
        self._handshake_buffer = bytearray()
        self._receive: Callable[[bytes], None] = self._receive_handshake
        self._reader = FrameReader(self._check_header)

        self._message = MessageAssembler(max_message_size)

    def __repr__(self) -> str:
        return f"<ClientProtocol {self.state.value}>"

    # -- state ----------------------------------------------------------------

    def _transition(self, new_state: State) -> None:
        if new_state not in _TRANSITIONS[self.state]:
            raise InvalidTransition(f"cannot go from {self.state.name} to {new_state.name}")
        self.state = new_state

    @property
    def has_events(self) -> bool:
        """Whether :meth:`events_received` has something to return."""
        return bool(self._events) or self._deferred_error is not None

    @property
    def can_send(self) -> bool:
        """Whether data messages may be sent now."""
        return self.state in (State.OPEN, State.REMOTE_CLOSING)

    def _check_can_send(self) -> None:
        state = self.state
        if state is State.OPEN or state is State.REMOTE_CLOSING:
            return
        if state is State.CONNECTING:
            raise WebSocketUnavailable("not connected: the WebSocket is not ready yet")
        if state is State.CLOSING:
            raise WebSocketClosing("data not sent: the WebSocket is closing")
        raise WebSocketClosed("data not sent: the WebSocket is closed")

    # -- output ---------------------------------------------------------------

    @property
    def output_size(self) -> int:
        """How many bytes :meth:`data_to_send` would return now."""
        return self._outgoing_size

    def data_to_send(self) -> bytes | bytearray:
        """Return (and forget) bytes waiting to be sent to the server; call until empty.

        Frames that wait together come joined, for one write, as long as they total
        at most :data:`JOIN_LIMIT` bytes. Past that, the leading frames within the
        limit come first, and a larger frame comes on its own, not copied; the rest
        waits for the next call. So a large message costs no second copy of itself.
        """
        outgoing = self._outgoing
        if not outgoing:
            return b""
        if len(outgoing) == 1 or self._outgoing_size <= JOIN_LIMIT:
            self._outgoing = []
            self._outgoing_size = 0
            self._pong_waiting = False
            return outgoing[0] if len(outgoing) == 1 else b"".join(outgoing)
        count = 0
        size = 0
        for frame in outgoing:
            if count and size + len(frame) > JOIN_LIMIT:
                break
            size += len(frame)
            count += 1
        taken = outgoing[:count]
        del outgoing[:count]
        self._outgoing_size -= size
        self._pong_waiting = self._pong_waiting and bool(outgoing)
        return taken[0] if count == 1 else b"".join(taken)

    def send_failed(self, reason: str) -> None:
        """Tell the protocol that bytes it produced could not be written.

        The caller (the shell) calls it when writing to the socket fails, or when the
        connection ends with output still unwritten. Reading goes on: the server's
        close frame, if it arrived, is still reported. But the connection can no
        longer end gracefully, and when it ends, ``reason`` is why.
        """
        if self._send_failure is None:
            self._send_failure = reason

    def events_received(self) -> list[events.Event]:
        """Return (and forget) the events produced so far.

        Call it until it returns an empty list, sending :meth:`data_to_send` after
        each call: when the server breaks the protocol right after sending messages,
        those messages come first, and the connection is failed (``ProtocolError``
        and our close frame) only on the next call. That gives the application the
        chance to act on them, e.g. to send its replies before the close frame.
        """
        received = self._events
        self._events = []
        if not received and self._deferred_error is not None:
            error, self._deferred_error = self._deferred_error, None
            self._fail(error)
            # Read on through what is buffered, for the server's close frame; unless
            # the failure ended the connection (it came after our close frame), which
            # swapped the reader for one that discards.
            self._receive(b"")
            received = self._events
            self._events = []
        return received

    def _send_frame(
        self, opcode: int, payload: bytes | bytearray | memoryview, rsv: int = 0
    ) -> None:
        frame = build_frame(opcode, payload, self._random_bytes(4), rsv=rsv)
        self._outgoing.append(frame)
        self._outgoing_size += len(frame)
        self._pong_waiting = False

    def _send_automatic_pong(self, payload: bytes) -> None:
        """Answer a ping; while output is blocked, replace a pong that still waits.

        Every ping gets its pong while the server reads. While it does not
        (:attr:`output_blocked`), RFC 6455 §5.5.3 allows answering only the most
        recent ping: a server that floods pings without reading then has one pong
        waiting, not one per ping.
        """
        if self._pong_waiting and self.output_blocked:
            self._outgoing_size -= len(self._outgoing.pop())
        self._send_frame(Opcode.PONG, payload)
        self._pong_waiting = True

    def send_message(
        self, opcode: Opcode, payload: bytes | bytearray | memoryview, compress: bool = True
    ) -> bool:
        """Queue one text or binary message as a single frame.

        Returns:
            Whether the message was compressed.

        Raises:
            WebSocketUnavailable: Not connected yet (or its subclasses
                :class:`~lomond.errors.WebSocketClosing` /
                :class:`~lomond.errors.WebSocketClosed`).
        """
        self._check_can_send()
        compression = self.compression
        if compress and compression is not None and compression.should_compress(len(payload)):
            self._send_frame(opcode, compression.compress(payload), RSV1)
            return True
        self._send_frame(opcode, payload)
        return False

    def send_ping(self, data: bytes = b"") -> None:
        """Queue a ping frame (``data`` at most 125 bytes, checked by the caller)."""
        self._check_can_send()
        self._send_frame(Opcode.PING, data)

    def send_pong(self, data: bytes) -> None:
        """Queue a pong frame (``data`` at most 125 bytes, checked by the caller)."""
        self._check_can_send()
        self._send_frame(Opcode.PONG, data)

    def close(self, code: int | None = Status.NORMAL, reason: str | bytes = "goodbye") -> bool:
        """Start the closing handshake, or echo the server's close frame.

        Returns:
            Whether a close frame was queued: ``False`` when there is nothing to close
            (closing or closed already; before the upgrade completes the connection
            is abandoned instead).
        """
        if self.state is State.OPEN:
            self._send_frame(Opcode.CLOSE, build_close_payload(code, reason))
            self._transition(State.CLOSING)
            return True
        if self.state is State.REMOTE_CLOSING:
            self._send_frame(Opcode.CLOSE, build_close_payload(code, reason))
            self._transition(State.CLOSED)
            return True
        if self.state is State.CONNECTING:
            # There is no WebSocket to close yet: give up on the connection instead.
            self.abort("closed before the WebSocket was ready")
        return False

    def echo_close(self) -> bool:
        """Answer the server's close frame with the same code (RFC 6455 §5.5.1)."""
        if self.state is not State.REMOTE_CLOSING:
            return False
        return self.close(self.close_code, self.close_reason)

    def abort(self, reason: str) -> None:
        """End the connection now (timeouts, socket errors): produce ``Disconnected``.

        The disconnect is graceful only if both close frames were exchanged.
        """
        if self.state is State.DISCONNECTED:
            return
        if self._ends_gracefully:
            self._disconnect("closed", True)
        else:
            self._disconnect(self._send_failure or reason, False)

    @property
    def _ends_gracefully(self) -> bool:
        """Whether both close frames went over the wire, and nothing failed."""
        return self.state is State.CLOSED and self.failure is None and self._send_failure is None

    def _disconnect(self, reason: str, graceful: bool) -> None:
        self._transition(State.DISCONNECTED)
        self._receive = self._discard
        self._deferred_error = None  # nothing can be answered any more
        self._events.append(events.Disconnected(reason, graceful))

    def _fail(self, error: ProtocolError) -> None:
        """Fail the connection (RFC 6455 §7.1.7): report, send a close frame, stop reading."""
        message = str(error)
        if self.failure is not None:
            # Already failing and waiting for the server's close frame: give up on it.
            self._disconnect(self.failure, False)
            return
        self.failure = message
        self._message.reset()
        self._reader.skip_pending()
        if self.state is State.OPEN or self.state is State.REMOTE_CLOSING:
            self._events.append(events.ProtocolError(message, False))
            self._send_frame(Opcode.CLOSE, build_close_payload(error.code, message))
            self._transition(State.CLOSING if self.state is State.OPEN else State.CLOSED)
        else:
            # Our close frame is already out: no second one may follow.
            self._events.append(events.ProtocolError(message, True))
            self._disconnect(message, False)

    # -- input ----------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Process bytes received from the server."""
        self._receive(data)

    def receive_eof(self) -> None:
        """Process the end of the server's byte stream."""
        if self._deferred_error is not None:
            error, self._deferred_error = self._deferred_error, None
            self._fail(error)
        state = self.state
        if state is State.DISCONNECTED:
            return
        if self._ends_gracefully:
            self._disconnect("closed", True)
        elif self.failure is not None:
            self._disconnect(self.failure, False)
        elif self._send_failure is not None:
            # Writing failed before the stream ended: that is why the connection ended.
            self._disconnect(self._send_failure, False)
        elif state is State.CONNECTING:
            self._disconnect("connection closed before the upgrade response", False)
        elif state is State.REMOTE_CLOSING:
            # Checked before mid_frame: bytes behind the server's close frame are
            # ignored, however they arrived.
            self._disconnect("connection closed before the close frame was echoed", False)
        elif self._reader.mid_frame:
            self._disconnect("connection lost in the middle of a frame", False)
        elif state is State.CLOSING:
            self._disconnect("connection closed before the server's close frame", False)
        elif self._message.opcode is not None:
            self._disconnect("connection lost in the middle of a fragmented message", False)
        else:
            self._disconnect("connection lost", False)

    def _discard(self, data: bytes) -> None:
        """After the server's close frame, RFC 6455 §5.5.1 says nothing more may follow."""

    def _receive_handshake(self, data: bytes) -> None:
        buffer = self._handshake_buffer
        # Look for the blank line from a little before the new data: it may straddle.
        search_from = max(0, len(buffer) - 3)
        buffer += data
        end = buffer.find(b"\r\n\r\n", search_from)
        head_size = len(buffer) if end == -1 else end + 4
        if head_size > MAX_HEADER_SIZE:
            self._reject(Response(buffer[:MAX_HEADER_SIZE]), "response header exceeds 64 KiB")
            return
        if end == -1:
            return
        end += 4
        response = Response(buffer[:end])
        rest = bytes(buffer[end:])
        del buffer[:]
        if response.raw.count(b"\r\n") > MAX_HEADER_LINES + 2:
            self._reject(response, f"response has more than {MAX_HEADER_LINES} header lines")
            return
        try:
            protocol, extensions = check_response(response, self.key, self.protocols)
            self._accept_extensions(extensions)
        except HandshakeError as error:
            self._reject(response, str(error))
            return
        self._transition(State.OPEN)
        self._receive = self._receive_frames
        names = {EXTENSION_NAME} if self.compression is not None else set()
        self._events.append(events.Ready(response, protocol, names))
        if rest:
            self._receive_frames(rest)

    def _accept_extensions(self, extensions: list[Extension]) -> None:
        for name, parameters in extensions:
            if name.lower() != EXTENSION_NAME or self.deflate is None:
                raise HandshakeError(f"server accepted extension {name!r}, which was not offered")
            if self.compression is not None:
                raise HandshakeError(f"server accepted {EXTENSION_NAME} more than once")
            self.compression = self.deflate.accept(parameters)

    def _reject(self, response: Response, reason: str) -> None:
        self._events.append(events.Rejected(response, reason))
        self._disconnect("closed", True)

    def _check_header(self, header: FrameHeader) -> bool:
        """Refuse a frame from its header alone (RFC 6455 §5.2, §5.4, §5.5).

        Returns whether to read the frame: while failing the connection, every frame
        but the close frame is skipped unread.
        """
        opcode = header.opcode
        if self.failure is not None and opcode != Opcode.CLOSE:
            return False
        if header.masked:
            raise ProtocolError("server frames must not be masked (RFC 6455 §5.1)")
        if opcode in RESERVED_OPCODES:
            raise ProtocolError(f"reserved opcode {opcode:#x}")
        if header.rsv:
            allowed = 0
            if self.compression is not None and (opcode == Opcode.TEXT or opcode == Opcode.BINARY):
                # RFC 7692 §6: RSV1 marks a compressed message, on its first frame only.
                allowed = RSV1
            if header.rsv & ~allowed:
                raise ProtocolError(f"reserved bits set ({header.rsv:#05b})")
        if opcode >= 0x8:
            if not header.fin:
                raise ProtocolError("fragmented control frame")
            if header.length > 125:
                raise ProtocolError("control frame payload over 125 bytes")
            return True
        if opcode == Opcode.CONTINUATION:
            if self._message.opcode is None:
                raise ProtocolError("continuation frame with no message to continue")
            self._message.check_continuation()
        elif self._message.opcode is not None:
            raise ProtocolError("new data frame inside a fragmented message")
        limit = self.max_message_size
        if limit is not None:
            if header.rsv & RSV1 or self._message.compressed:
                limit = compressed_limit(limit)
                size = header.length
            else:
                size = self._message.size + header.length
            if size > limit:
                raise PayloadTooLarge(
                    f"message exceeds max_message_size ({self.max_message_size} bytes)"
                )
        return True

    def _receive_frames(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        if self._deferred_error is not None:
            return  # Input waits until the application has seen the earlier events.
        while True:
            try:
                self._read_frames(reader)
                reader.release()
                return
            except ProtocolError as error:
                if self._events and self.failure is None:
                    self._deferred_error = error
                    return
                self._fail(error)
            state = self.state
            if state is not State.OPEN and state is not State.CLOSING:
                return
            # Failing: keep reading the same input for the server's close frame.

    def _read_frames(self, reader: FrameReader) -> None:
        while True:
            if self._message.opcode is None and self.failure is None:
                self._read_simple_frames(reader)
            frame = reader.next_frame()
            if frame is None:
                break
            header, payload = frame
            opcode = header.opcode
            if opcode < 0x8:
                self._on_data_frame(header, payload)
            else:
                self._on_control_frame(opcode, payload)
            state = self.state
            if state is not State.OPEN and state is not State.CLOSING:
                # After the server's close frame nothing else is read.
                return
        pending = reader.pending_header()
        if pending is not None and self.failure is None:
            with reader.pending_payload() as available:
                self._message.probe(pending, available)

    def _read_simple_frames(self, reader: FrameReader) -> None:
        """The fast path: whole messages in single frames, in one batch."""
        limit = self.max_message_size
        compression = self.compression
        max_length = _NO_LIMIT if limit is None else limit
        max_compressed = None
        if compression is not None:
            max_compressed = _NO_LIMIT if limit is None else compressed_limit(limit)
        frames = reader.simple_frames(max_length, max_compressed)
        if not frames:
            return
        append = self._events.append
        Text, Binary = events.Text, events.Binary
        for first, payload in frames:
            if first & 0x40:  # RSV1 in the header's first byte
                assert compression is not None  # simple_frames takes none otherwise
                payload = compression.inflate_message(payload, limit)
            if first & 0x0F == 0x1:
                try:
                    append(Text(payload.decode("utf-8")))
                except UnicodeDecodeError:
                    # The frames after this one in the batch are dropped with it: the
                    # connection is failing, so they would be skipped anyway.
                    raise invalid_utf8() from None
            else:
                append(Binary(payload))

    def _on_data_frame(self, header: FrameHeader, payload: bytes) -> None:
        if self.failure is not None:
            return
        event = self._message.add_frame(header, payload, self.compression)
        if event is not None:
            self._events.append(event)

    def _on_control_frame(self, opcode: int, payload: bytes) -> None:
        if opcode == Opcode.CLOSE:
            self._on_close_frame(payload)
        elif self.failure is not None:
            return
        elif opcode == Opcode.PING:
            if self.auto_pong and self.state is not State.CLOSING:
                self._send_automatic_pong(payload)
            self._events.append(events.Ping(payload))
        else:
            self._events.append(events.Pong(payload))

    def _on_close_frame(self, payload: bytes) -> None:
        code, reason = parse_close_payload(payload)
        self.close_code = code
        self.close_reason = reason
        self._receive = self._discard
        state = self.state
        if state is State.OPEN:
            self._transition(State.REMOTE_CLOSING)
            self._events.append(events.Closing(code, reason))
        elif state is State.CLOSING:
            self._transition(State.CLOSED)
            if self.failure is None:
                self._events.append(events.Closed(code, reason))
