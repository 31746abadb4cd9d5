"""What the server's bytes do: the upgrade response, frames, control frames, EOF.

:class:`Receiving` is the input half of
:class:`~lomond.protocol.client.ClientProtocol` (which also holds the state it
uses): it reads the upgrade response, cuts frames (checking each header before its
payload is buffered), assembles messages, answers pings, and follows the server's
close frame. The input of one call is parsed in batches of
:data:`EVENTS_PER_BATCH` events.
"""

from __future__ import annotations

from .. import events
from ..errors import HandshakeError, ProtocolError
from ..response import Response
from .deflate import EXTENSION_NAME, Deflate, PerMessageDeflate
from .frame_reader import FrameReader
from .frames import (
    RESERVED_OPCODES,
    RSV1,
    FrameHeader,
    Opcode,
    build_frame,
    is_control,
    parse_close_payload,
)
from .handshake import RejectedHead, ResponseReader, accept_extensions, check_response
from .messages import MessageAssembler, whole_messages, wire_limit
from .output import Outgoing
from .states import READING, State
from .streaming import MessageStream

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from .mask import KeySource

#: The most events one call of ``events_received()`` parses the input for. The rest
#: of the input waits, parsed at the next call: a read of tiny frames (a quarter of
#: a million from 256 KiB) is handed over in batches, and the shell looks at its
#: timers in between.
EVENTS_PER_BATCH = 1024


class Receiving:
    """The input half of :class:`~lomond.protocol.client.ClientProtocol`."""

    # The state this half reads and changes; ClientProtocol sets it up.
    state: State
    key: bytes
    protocols: list[str]
    deflate: Deflate | None
    compression: PerMessageDeflate | None
    auto_pong: bool
    failure: str | None
    close_code: int | None
    close_reason: str
    max_message_size: int | None
    _events: list[events.Event]
    _outgoing: Outgoing
    _random_bytes: KeySource
    _response: ResponseReader
    _reader: FrameReader
    _message: MessageAssembler
    _stream: MessageStream | None
    _deferred_error: ProtocolError | None
    _input_waits: bool
    _send_failure: str | None

    if TYPE_CHECKING:
        # The state machine's own moves, in ClientProtocol.

        def _transition(self, new_state: State) -> None: ...

        def _disconnect(self, reason: str, graceful: bool) -> None: ...

        def _fail(self, error: ProtocolError) -> None: ...

        def _now(self) -> float | None: ...

        @property
        def _ends_gracefully(self) -> bool: ...

    def receive_data(self, data: bytes) -> None:
        """Process bytes received from the server."""
        state = self.state
        if state in READING:
            self._receive_frames(data)
        elif state is State.CONNECTING:
            self._receive_handshake(data)
        # Otherwise the server's close frame came: RFC 6455 §5.5.1 says nothing more
        # may follow, and nothing more is read.

    def receive_eof(self) -> None:
        """Process the end of the server's byte stream."""
        while self._input_waits and self._deferred_error is None:
            # The stream is over: what it held is parsed now, before its end.
            self._input_waits = False
            self.receive_data(b"")
        if self._deferred_error is not None:
            error, self._deferred_error = self._deferred_error, None
            self._fail(error)
        state = self.state
        if state is State.DISCONNECTED:
            return
        if self._ends_gracefully:
            self._disconnect("closed", True)
        elif state is State.FAILING or state is State.FAILED:
            assert self.failure is not None
            self._disconnect(self.failure, False)
        elif self._send_failure is not None:
            # Writing failed before the stream ended: that is why the connection ended.
            self._disconnect(self._send_failure, False)
        else:
            self._disconnect(self._eof_reason(state), False)

    def _eof_reason(self, state: State) -> str:
        """Where the stream ended, for ``Disconnected.reason``."""
        if state is State.CONNECTING:
            return "connection closed before the upgrade response"
        if state is State.REMOTE_CLOSING:
            # Checked before mid_frame: bytes behind the server's close frame are
            # ignored, however they arrived.
            return "connection closed before the close frame was echoed"
        if self._reader.mid_frame:
            return "connection lost in the middle of a frame"
        if state is State.CLOSING:
            return "connection closed before the server's close frame"
        if self._message.opcode is not None:
            return "connection lost in the middle of a fragmented message"
        return "connection lost"

    def _receive_handshake(self, data: bytes) -> None:
        try:
            head = self._response.feed(data)
        except RejectedHead as error:
            self._reject(error.response, str(error))
            return
        if head is None:
            return
        response, rest = head
        try:
            protocol, extensions = check_response(response, self.key, self.protocols)
            self.compression = accept_extensions(extensions, self.deflate)
        except HandshakeError as error:
            self._reject(response, str(error))
            return
        self._transition(State.OPEN)
        names = {EXTENSION_NAME} if self.compression is not None else set()
        self._events.append(events.Ready(response, protocol, names, self._now()))
        if rest:
            self._receive_frames(rest)

    def _reject(self, response: Response, reason: str) -> None:
        self._events.append(events.Rejected(response, reason, self._now()))
        self._disconnect("closed", True)

    def _check_header(self, header: FrameHeader) -> bool:
        """Refuse a frame from its header alone (RFC 6455 §5.2, §5.4, §5.5).

        Returns whether to read the frame: while failing the connection, every frame
        but the close frame is skipped unread.
        """
        opcode = header.opcode
        if self.state is State.FAILING and opcode != Opcode.CLOSE:
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
        if is_control(opcode):
            if not header.fin:
                raise ProtocolError("fragmented control frame")
            if header.length > 125:
                raise ProtocolError("control frame payload over 125 bytes")
        else:
            self._message.check_frame(header)
        return True

    def _receive_frames(self, data: bytes) -> None:
        reader = self._reader
        stream = self._stream
        waits = self._deferred_error is not None or self._input_waits
        # Stream mode takes the payload of a frame that is arriving straight from the
        # input (see _stream_input); everything else goes through the reader.
        direct = stream is not None and not waits and self.state is not State.FAILING
        if not direct:
            reader.feed(data)
        if waits:
            return  # Input waits until the application has seen the earlier events.
        while True:
            try:
                if stream is None:
                    self._read_frames(reader)
                else:
                    if direct:
                        direct = False
                        self._stream_input(reader, stream, data)
                    self._stream_frames(reader, stream)
                reader.release()
                return
            except ProtocolError as error:
                if self._events and self.state is not State.FAILING:
                    self._deferred_error = error
                    return
                self._fail(error)
            if self.state not in READING:
                return
            # Failing: keep reading the same input for the server's close frame.

    def _read_frames(self, reader: FrameReader) -> None:
        now = self._now()
        events = self._events
        while True:
            if len(events) >= EVENTS_PER_BATCH:
                self._input_waits = True  # the batch is full: the rest waits
                return
            if self._message.opcode is None and self.state is not State.FAILING:
                self._read_whole_messages(reader, now, EVENTS_PER_BATCH - len(events))
            frame = reader.next_frame()
            if frame is None:
                break
            header, payload = frame
            opcode = header.opcode
            if is_control(opcode):
                self._on_control_frame(opcode, payload, now)
            elif self.state is not State.FAILING:
                event = self._message.add_frame(header, payload, self.compression, now)
                if event is not None:
                    self._events.append(event)
            if self.state not in READING:
                return  # After the server's close frame nothing else is read.
        pending = reader.pending_header()
        if pending is not None and self.state is not State.FAILING:
            with reader.pending_payload() as available:
                self._message.probe(pending, available)

    def _stream_input(self, reader: FrameReader, stream: MessageStream, data: bytes) -> None:
        """Feed ``data``; the bytes of it that continue a frame's payload become parts
        at once, never buffered by the reader.

        The stream receive path: a large frame arrives as a run of reads that are all
        payload, and each read is copied once, into its part. Through the reader's
        buffer, each read cost a second copy and an allocation of its size.
        """
        pending = reader.pending_header()
        if pending is None or is_control(pending.opcode):
            reader.feed(data)
            return
        header, piece = reader.take_input(data)
        reader.feed(data[len(piece) :] if piece else data)
        if header is not None and piece:
            stream.add(
                header,
                piece,
                header.length == 0,
                self.compression,
                self._now(),
                self._events.append,
            )

    def _stream_frames(self, reader: FrameReader, stream: MessageStream) -> None:
        """Stream mode's :meth:`_read_frames`: data frames become parts as they arrive.

        The payload of a data frame still arriving is taken as it comes
        (:mod:`lomond.protocol.streaming`), and a compressed message inflates about
        one part per batch: the input waits meanwhile.
        """
        now = self._now()
        events = self._events
        append = events.append
        compression = self.compression
        if stream.inflating:
            stream.resume(compression, now, append)
        while True:
            if stream.inflating or len(events) >= EVENTS_PER_BATCH:
                self._input_waits = True  # the rest waits for the next batch
                return
            frame = reader.next_frame()
            if frame is None:
                break
            header, payload = frame
            if is_control(header.opcode):
                self._on_control_frame(header.opcode, payload, now)
            elif self.state is not State.FAILING:
                stream.add(header, payload, True, compression, now, append)
            if self.state not in READING:
                return  # After the server's close frame nothing else is read.
        pending = reader.pending_header()
        if (
            pending is not None
            and self.state is not State.FAILING
            and not is_control(pending.opcode)
        ):
            payload = reader.take_pending()
            if payload:
                stream.add(pending, payload, False, compression, now, append)
                self._input_waits = stream.inflating

    def _read_whole_messages(self, reader: FrameReader, now: float | None, room: int) -> None:
        """The fast path of the receive benchmarks (``recv_text``, ``recv_deflate``):
        a run of whole single-frame messages (up to ``room``), taken in one pass.

        Without it (every frame through ``next_frame`` and ``add_frame``),
        ``recv_text`` took 3.7 times as long and ``recv_deflate`` 1.35 times.
        """
        limit = self.max_message_size
        compression = self.compression
        compressed_limit = None if compression is None else wire_limit(limit, True)
        frames = reader.simple_frames(wire_limit(limit, False), compressed_limit, room)
        if frames:
            # A frame after an invalid one in the batch is dropped with it: the
            # connection is failing, so it would be skipped anyway.
            whole_messages(frames, compression, limit, now, self._events.append)

    def _on_control_frame(self, opcode: int, payload: bytes, now: float | None) -> None:
        if opcode == Opcode.CLOSE:
            self._on_close_frame(payload, now)
        elif opcode == Opcode.PING:
            if self.auto_pong and self.state is not State.CLOSING:
                self._outgoing.append_automatic_pong(
                    build_frame(Opcode.PONG, payload, self._random_bytes(4))
                )
            self._events.append(events.Ping(payload, now))
        else:
            self._events.append(events.Pong(payload, now))

    def _on_close_frame(self, payload: bytes, now: float | None) -> None:
        code, reason = parse_close_payload(payload)
        self.close_code = code
        self.close_reason = reason
        state = self.state
        if state is State.OPEN:
            self._transition(State.REMOTE_CLOSING)
            self._events.append(events.Closing(code, reason, now))
        elif state is State.CLOSING:
            self._transition(State.CLOSED)
            self._events.append(events.Closed(code, reason, now))
        else:
            self._transition(State.FAILED)
