"""The client side of RFC 6455 as a state machine, with no I/O.

Bytes from the server go in through :meth:`ClientProtocol.receive_data`; events come
out of :meth:`ClientProtocol.events_received`. Calls such as
:meth:`ClientProtocol.send_message` go in; bytes for the server come out of
:meth:`ClientProtocol.data_to_send`. The session (:mod:`lomond.loop.session`) moves
the bytes between this object and a socket, and decides when time has run out. The
states and the one table of transitions are in :mod:`lomond.protocol.states`; what
the server's bytes do is in :mod:`lomond.protocol.receiving`.
"""

from __future__ import annotations

from .. import events
from ..errors import (
    ProtocolError,
    WebSocketClosed,
    WebSocketClosing,
    WebSocketUnavailable,
)
from ..status import Status
from .deflate import Deflate, PerMessageDeflate
from .fragments import OutgoingMessage
from .frame_reader import FrameReader
from .frames import (
    RSV1,
    Opcode,
    build_close_payload,
    build_frame,
)
from .handshake import ResponseReader
from .mask import BufferedRandom
from .messages import MessageAssembler
from .output import Outgoing
from .receiving import Receiving
from .states import SENDING, State, check_transition
from .streaming import PART_SIZE, MessageStream

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Callable

    from .mask import KeySource

    #: A wall clock for the events' ``received_time`` (the shell passes
    #: :func:`time.time`).
    WallClock = Callable[[], float]

__all__ = ["ClientProtocol", "State"]


class ClientProtocol(Receiving):
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
        clock: Gives the events' ``received_time``, read once per input; by default
            each event reads the clock of :mod:`lomond.events` itself.
        stream: Stream mode: data messages come as ``BinaryPart`` and ``TextPart``
            events as their bytes arrive (:mod:`lomond.protocol.streaming`).
        part_size: In stream mode, the most bytes in one part.
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
        clock: WallClock | None = None,
        stream: bool = False,
        part_size: int = PART_SIZE,
    ) -> None:
        self.key = key
        self.protocols = list(protocols)
        self.deflate = deflate
        self.max_message_size = max_message_size
        self.auto_pong = auto_pong
        self._random_bytes = BufferedRandom() if random_bytes is None else random_bytes
        self._clock = clock

        self.state = State.CONNECTING
        #: The negotiated permessage-deflate codec, once the server accepted it.
        self.compression: PerMessageDeflate | None = None
        #: Why the connection failed, from ``FAILING`` on (``ProtocolError.error``).
        self.failure: str | None = None
        #: The code of the server's close frame, once received.
        self.close_code: int | None = None
        self.close_reason = ""
        #: The code and reason of our close frame, once queued (the reason as sent:
        #: cut to fit the frame).
        self.sent_close: tuple[int | None, str] | None = None
        # A protocol error found behind events the application has not seen yet.
        self._deferred_error: ProtocolError | None = None
        # Whether input waits to be parsed: a batch of events was full.
        self._input_waits = False
        # Why bytes from data_to_send() never reached the server (see send_failed).
        self._send_failure: str | None = None

        # The message being sent in fragments, if any (see start_message).
        self._sending: OutgoingMessage | None = None

        self._events: list[events.Event] = []
        self._outgoing = Outgoing()
        self._outgoing.append(request)
        self._response = ResponseReader()
        self._reader = FrameReader(self._check_header)
        self._stream = MessageStream(max_message_size, part_size) if stream else None
        self._message = self._stream or MessageAssembler(max_message_size)

    def __repr__(self) -> str:
        return f"<ClientProtocol {self.state.value}>"

    # -- state ----------------------------------------------------------------

    def _transition(self, new_state: State) -> None:
        check_transition(self.state, new_state)
        self.state = new_state

    @property
    def has_events(self) -> bool:
        """Whether :meth:`events_received` has something to return."""
        return bool(self._events) or self._deferred_error is not None or self._input_waits

    @property
    def can_send(self) -> bool:
        """Whether data messages may be sent now."""
        return self.state in SENDING

    def _check_can_send(self) -> None:
        state = self.state
        if state in SENDING:
            return
        if state is State.CONNECTING:
            raise WebSocketUnavailable("not connected: the WebSocket is not ready yet")
        if state is State.CLOSING or state is State.FAILING:
            raise WebSocketClosing("data not sent: the WebSocket is closing")
        raise WebSocketClosed("data not sent: the WebSocket is closed")

    # -- output ---------------------------------------------------------------

    @property
    def output_size(self) -> int:
        """How many bytes wait to be taken with :meth:`data_to_send`."""
        return self._outgoing.size

    @property
    def output_blocked(self) -> bool:
        """Set by the shell while the socket does not take the bytes it was given (the
        server is not reading): automatic pongs then replace each other."""
        return self._outgoing.blocked

    @output_blocked.setter
    def output_blocked(self, blocked: bool) -> None:
        self._outgoing.blocked = blocked

    def data_to_send(self) -> bytes | bytearray:
        """Return (and forget) bytes waiting to be sent to the server; call until empty.

        Frames that wait together come joined, for one write, up to 256 KiB; a larger
        frame comes on its own, not copied (see :mod:`lomond.protocol.output`).
        """
        return self._outgoing.take()

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

        At most ``EVENTS_PER_BATCH`` events (:mod:`lomond.protocol.receiving`) come
        from one call; input beyond them
        waits (:attr:`has_events` stays true) and is parsed at the next call.
        """
        received = self._events
        self._events = []
        if received:
            return received
        if self._deferred_error is not None:
            error, self._deferred_error = self._deferred_error, None
            self._fail(error)
        elif not self._input_waits:
            return received
        # Parse on through what is buffered (when failing, for the server's close
        # frame).
        self._input_waits = False
        self.receive_data(b"")
        received = self._events
        self._events = []
        return received

    def _send_frame(
        self, opcode: int, payload: bytes | bytearray | memoryview, rsv: int = 0
    ) -> None:
        self._outgoing.append(build_frame(opcode, payload, self._random_bytes(4), rsv=rsv))

    def send_message(
        self, opcode: Opcode, payload: bytes | bytearray | memoryview, compress: bool = True
    ) -> bool:
        """Queue one text or binary message as a single frame.

        While a message is being sent in fragments (:meth:`start_message`), the
        message is held (copied), and queued after its last fragment.

        Returns:
            Whether the message was compressed (``False`` when held).

        Raises:
            WebSocketUnavailable: Not connected yet (or its subclasses
                :class:`~lomond.errors.WebSocketClosing` /
                :class:`~lomond.errors.WebSocketClosed`).
        """
        self._check_can_send()
        if self._sending is not None:
            self._sending.held.append((opcode, bytes(payload), compress))
            return False
        compression = self.compression
        compressed = (
            compress and compression is not None and compression.should_compress(len(payload))
        )
        if compressed:
            payload = compression.compress(payload)  # type: ignore[union-attr]
        # _send_frame's one line, written out: this is every message's path.
        self._outgoing.append(
            build_frame(opcode, payload, self._random_bytes(4), rsv=RSV1 if compressed else 0)
        )
        return compressed

    def start_message(self, opcode: Opcode, compress: bool = True) -> bool:
        """Start a text or binary message sent in fragments (:meth:`send_fragment`).

        Until its last fragment, :meth:`send_message` holds other messages back;
        control frames may go between the fragments (RFC 6455 §5.4).

        Returns:
            Whether the message is compressed (``compress``, and compression was
            negotiated).

        Raises:
            RuntimeError: A message is being sent in fragments already.
            WebSocketUnavailable: Not connected (or closing, or closed).
        """
        self._check_can_send()
        if self._sending is not None:
            raise RuntimeError("a message is being sent in fragments already")
        compression = self.compression if compress else None
        self._sending = OutgoingMessage(opcode, compression)
        return compression is not None

    def send_fragment(self, data: bytes | bytearray | memoryview, final: bool = False) -> None:
        """Queue the next fragment of the message :meth:`start_message` started.

        The final one ends it, and the messages held meanwhile are queued after it.

        Raises:
            RuntimeError: No message was started.
            WebSocketUnavailable: Not connected (or closing, or closed).
        """
        self._check_can_send()
        sending = self._sending
        if sending is None:
            raise RuntimeError("no message is being sent in fragments")
        opcode, payload, rsv = sending.fragment(data, final)
        self._outgoing.append(
            build_frame(opcode, payload, self._random_bytes(4), fin=final, rsv=rsv)
        )
        if final:
            self._sending = None
            for held_opcode, held_payload, compress in sending.held:
                self.send_message(held_opcode, held_payload, compress)

    def abandon_message(self, reason: str = "message stream failed") -> None:
        """Give up the message being sent in fragments: close with code 1011.

        Its fragments so far never form a message, and the messages held meanwhile
        are dropped. Does nothing when no message was started.
        """
        if self._sending is None:
            return
        self._sending = None
        self.close(Status.UNEXPECTED_CONDITION, reason)

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
        state = self.state
        if state is State.OPEN or state is State.REMOTE_CLOSING:
            self._send_close_frame(code, reason)
            self._transition(State.CLOSING if state is State.OPEN else State.CLOSED)
            return True
        if state is State.CONNECTING:
            # There is no WebSocket to close yet: give up on the connection instead.
            self.abort("closed before the WebSocket was ready")
        return False

    def _send_close_frame(self, code: int | None, reason: str | bytes) -> None:
        payload = build_close_payload(code, reason)
        self._send_frame(Opcode.CLOSE, payload)
        self.sent_close = (code, payload[2:].decode("utf-8"))

    def echo_close(self) -> bool:
        """Answer the server's close frame with the same code (RFC 6455 §5.5.1)."""
        if self.state is not State.REMOTE_CLOSING:
            return False
        return self.close(self.close_code, self.close_reason)

    # -- ending ---------------------------------------------------------------

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
        return self.state is State.CLOSED and self._send_failure is None

    def _disconnect(self, reason: str, graceful: bool) -> None:
        self._transition(State.DISCONNECTED)
        self._deferred_error = None  # nothing can be answered any more
        self._events.append(events.Disconnected(reason, graceful, self._now()))

    def _fail(self, error: ProtocolError) -> None:
        """Fail the connection (RFC 6455 §7.1.7): report, send a close frame, stop reading."""
        state = self.state
        if state is State.FAILING:
            # Already failing and waiting for the server's close frame: give up on it.
            assert self.failure is not None
            self._disconnect(self.failure, False)
            return
        message = self.failure = str(error)
        self._message.reset()
        self._reader.skip_pending()
        if state is State.OPEN:
            self._events.append(events.ProtocolError(message, False, self._now()))
            self._send_close_frame(error.code, message)
            self._transition(State.FAILING)
        else:
            # Our close frame is already out: no second one may follow.
            self._events.append(events.ProtocolError(message, True, self._now()))
            self._disconnect(message, False)

    def _now(self) -> float | None:
        return None if self._clock is None else self._clock()
