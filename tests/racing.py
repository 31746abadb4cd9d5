"""A recording raw server and a recorder of the client's writes, for ``test_racing.py``.

:func:`recording_server` runs a :class:`Script` of server actions (messages, pings, a
close frame, sleeps, reads, then FIN, RST or a plain close) on the one connection it
accepts, on top of :func:`servers.raw_server`, and fills a :class:`ServerRecord` with
exactly what it sent and what it received (the client's frames, parsed; EOF; reset).

:class:`ClientWrites` records every byte a socket handed to the kernel, by the
socket's local address. A send that returned counts as written; one that raised
does not. That tells "our close frame was written" (it may then be lost to a reset:
legitimate timing) from "our close frame was only queued" (it never left). Over TLS
the record is a lower bound: a send that raised ``SSLWantWriteError`` may already
have written whole records, and counts only once it is retried and returns. A close
frame is always the last frame of its send (nothing may follow it), so it is never
on the wire without being recorded.
"""

from __future__ import annotations

import array
import contextlib
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, NamedTuple, Union

from peers import OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT
from servers import RawConnection, frame, raw_server

try:  # Linux: the bytes a TCP socket sent that the peer has not acknowledged yet
    import fcntl
    import termios

    _OUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # pragma: no cover - not Linux
    _OUTQ = None

#: The longest any single server step may block (a safety net: a step that takes
#: this long is recorded as ``stalled``).
STEP_LIMIT = 5.0

# -- the script ------------------------------------------------------------------------

MESSAGE_OPCODES = {"text": OP_TEXT, "binary": OP_BINARY, "ping": OP_PING, "pong": OP_PONG}


@dataclass(frozen=True)
class Message:
    """The server sends a message: ``text``, ``binary``, ``ping`` or ``pong``.

    ``index`` makes its payload unique; ``fragments`` splits a text or binary message
    into that many frames (RFC 6455 §5.4).
    """

    kind: str
    size: int
    index: int = 0
    fragments: int = 1

    @property
    def payload(self) -> bytes:
        if self.kind == "text":
            text = (f"s{self.index} héllo wörld ✓ " * (self.size // 10 + 1))[: self.size]
            return text.encode("utf-8")
        if self.kind == "binary":
            return (bytes([self.index % 256]) + b"\x00\xffbinary") * (self.size // 9) + bytes(
                self.size % 9
            )
        return f"s{self.index}".encode().ljust(min(self.size, 125), b".")

    def wire(self) -> bytes:
        payload = self.payload
        opcode = MESSAGE_OPCODES[self.kind]
        if opcode >= 0x8 or self.fragments <= 1:
            return frame(opcode, payload)
        count = self.fragments
        cuts = [len(payload) * number // count for number in range(count + 1)]
        return b"".join(
            frame(
                opcode if number == 0 else OP_CONTINUATION,
                payload[start:end],
                fin=number == count - 1,
            )
            for number, (start, end) in enumerate(zip(cuts, cuts[1:]))
        )

    def expected_event(self) -> tuple[str, Any]:
        """The ``(event name, value)`` the client must yield for this message."""
        if self.kind == "text":
            return "text", self.payload.decode("utf-8")
        return self.kind, self.payload


@dataclass(frozen=True)
class Close:
    """The server sends its close frame (``code=None``: an empty one)."""

    code: int | None = 1000
    reason: str = ""

    def wire(self) -> bytes:
        if self.code is None:
            return frame(OP_CLOSE, b"")
        return frame(OP_CLOSE, self.code.to_bytes(2, "big") + self.reason.encode("utf-8"))


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Peek:
    """Read whatever the client sends within ``seconds``."""

    seconds: float


@dataclass(frozen=True)
class ReadUntilClose:
    """Read until the client's close frame (or EOF, or a reset)."""


Action = Union[Message, Close, Sleep, Peek, ReadUntilClose]

#: How the server ends the connection, after its actions:
#: ``fin``: shutdown(SHUT_WR), read until the client's EOF, close (a clean close);
#: ``fin_rst``: shutdown(SHUT_WR), then a reset; ``close``: close() at once (the kernel
#: sends a reset instead of FIN when client data is unread); ``rst``: a reset
#: (SO_LINGER 0, then close).
ENDINGS = ("fin", "fin_rst", "close", "rst")


@dataclass(frozen=True)
class Script:
    actions: tuple[Action, ...]
    ending: str = "fin"
    #: Before the ending, wait (a little) until the client's kernel acknowledged all
    #: the server sent. Without the wait, the ending comes at once: the reset races
    #: with the client, and the server's data counts as delivered only if it was
    #: acknowledged already.
    patient: bool = True


# -- what the server saw -----------------------------------------------------------------


class ClientFrame(NamedTuple):
    fin: bool
    opcode: int
    masked: bool
    payload: bytes


def parse_frames(data: bytes | bytearray) -> tuple[list[ClientFrame], bytes]:
    """The whole client frames at the start of ``data``, and the bytes left over."""
    frames: list[ClientFrame] = []
    view = bytes(data)
    position = 0
    while True:
        if len(view) - position < 2:
            break
        first, second = view[position], view[position + 1]
        length = second & 0x7F
        offset = position + 2
        if length == 126:
            if len(view) - offset < 2:
                break
            length = int.from_bytes(view[offset : offset + 2], "big")
            offset += 2
        elif length == 127:
            if len(view) - offset < 8:
                break
            length = int.from_bytes(view[offset : offset + 8], "big")
            offset += 8
        masked = bool(second & 0x80)
        key = b"\0\0\0\0"
        if masked:
            if len(view) - offset < 4:
                break
            key = view[offset : offset + 4]
            offset += 4
        if len(view) - offset < length:
            break
        payload = view[offset : offset + length]
        if masked and length:
            repeated = (key * (length // 4 + 1))[:length]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
                length, "big"
            )
        frames.append(ClientFrame(bool(first & 0x80), first & 0x0F, masked, payload))
        position = offset + length
    return frames, view[position:]


def frame_size(data: bytes) -> int:
    """The size of the frame that ``data`` starts with, once its header is there (else 0)."""
    if len(data) < 2:
        return 0
    length = data[1] & 0x7F
    header = 2 + (4 if data[1] & 0x80 else 0)
    if length == 126:
        header += 2
        if len(data) < 4:
            return 0
        length = int.from_bytes(data[2:4], "big")
    elif length == 127:
        header += 8
        if len(data) < 10:
            return 0
        length = int.from_bytes(data[2:10], "big")
    return header + length


@dataclass
class ServerRecord:
    """Exactly what the recording server did and saw on its one connection."""

    #: The client's address (its socket's local address).
    client_address: Any = None
    #: Messages whose frames were all handed to the kernel, in order.
    sent: list[Message] = field(default_factory=list)
    #: Messages the server tried to send (``sent`` plus at most one that failed).
    attempted: list[Message] = field(default_factory=list)
    #: The close frame the server tried to send, and whether the send returned.
    close_attempted: Close | None = None
    close_sent: bool = False
    #: Just before the ending: the client's kernel had acknowledged every byte the
    #: server sent, so that it waits in the client's receive queue, where a reset that
    #: follows leaves it (``None``: unknown on this platform).
    delivered: bool | None = None
    #: The client's frames, in the order received (also those after its close frame).
    frames: list[ClientFrame] = field(default_factory=list)
    leftover: bytes = b""
    eof: bool = False
    reset: bool = False
    #: A read or a send took longer than :data:`STEP_LIMIT`.
    stalled: bool = False
    #: The connection ended cleanly: FIN sent, the client's EOF read, no reset.
    clean_end: bool = False
    log: list[str] = field(default_factory=list)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def client_close_index(self) -> int | None:
        for index, client_frame in enumerate(self.frames):
            if client_frame.opcode == OP_CLOSE:
                return index
        return None


def unacknowledged(sock: socket.socket) -> int | None:
    """Bytes ``sock`` sent that the peer's kernel has not acknowledged (``None``: unknown)."""
    if _OUTQ is None:  # pragma: no cover - not Linux
        return None
    buffer = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), _OUTQ, buffer)
    except OSError:  # pragma: no cover - not a TCP socket
        return None
    return buffer[0]


def established(sock: socket.socket) -> bool:
    """Whether the TCP connection is still ESTABLISHED. lomond never shuts down one
    direction alone: in any other state, it no longer reads."""
    option = getattr(socket, "TCP_INFO", None)
    if option is None:  # pragma: no cover - not Linux
        return True
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, option, 8)
    except OSError:
        return False
    return info[0] == 1  # TCP_ESTABLISHED


class _Runner:
    """Runs one script on one accepted connection."""

    def __init__(self, connection: RawConnection, script: Script, record: ServerRecord) -> None:
        self.connection = connection
        self.script = script
        self.record = record
        self.buffer = bytearray()
        self.broken = False  # a send failed: the client is gone
        self.needed = 0  # bytes the buffer needs before the next frame can be complete

    @property
    def sock(self) -> socket.socket:
        return self.connection.sock

    def note(self, text: str) -> None:
        self.record.log.append(f"{time.monotonic():.4f} {text}")

    def send(self, data: bytes) -> bool:
        if self.broken:
            return False
        self.sock.settimeout(STEP_LIMIT)
        try:
            self.sock.sendall(data)
        except socket.timeout:
            self.record.stalled = True
            self.broken = True
            self.note("send timed out")
            return False
        except OSError as error:
            self.broken = True
            self.note(f"send failed: {error!r}")
            return False
        return True

    def read(self, seconds: float, until_close: bool) -> None:
        record = self.record
        deadline = time.monotonic() + seconds
        while not (record.eof or record.reset):
            if until_close and record.client_close_index is not None:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if until_close:
                    record.stalled = True
                    self.note("no close frame from the client in time")
                return
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as error:
                record.reset = True
                self.note(f"read failed: {error!r}")
                return
            if not data:
                record.eof = True
                self.note("EOF")
                return
            self.buffer += data
            if len(self.buffer) < self.needed:
                continue  # the next frame is not complete yet
            frames, rest = parse_frames(self.buffer)
            self.buffer = bytearray(rest)
            self.needed = frame_size(rest)
            record.frames.extend(frames)
            record.leftover = rest
            for client_frame in frames:
                self.note(f"received opcode {client_frame.opcode} ({len(client_frame.payload)})")

    def wait_delivered(self, patient: bool) -> None:
        """Wait (a little, if ``patient``) until the client's kernel acknowledged all we
        sent; record whether it did (what it acknowledged is in its receive queue, and
        a reset that follows does not take it away)."""
        deadline = time.monotonic() + (0.5 if patient else 0.0)
        while True:
            left = unacknowledged(self.sock)
            if left is None:
                self.record.delivered = None
                return
            if left == 0:
                self.record.delivered = True
                return
            if not established(self.sock) or time.monotonic() > deadline:
                self.record.delivered = False
                self.note(f"{left} bytes not acknowledged before the ending")
                return
            time.sleep(0.001)

    def reset(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()
        self.note("reset")

    def shutdown_write(self) -> None:
        # The plain socket's shutdown, also under TLS (SSLSocket.shutdown would drop
        # the TLS layer, and with it the reads that follow). No close_notify: the
        # client sees the end of the TCP stream.
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_WR)
        except OSError as error:
            self.note(f"shutdown failed: {error!r}")
        self.note("FIN")

    def run(self) -> None:
        record = self.record
        for action in self.script.actions:
            if isinstance(action, Message):
                record.attempted.append(action)
                if self.send(action.wire()):
                    record.sent.append(action)
                    self.note(f"sent {action.kind} {action.index}")
            elif isinstance(action, Close):
                record.close_attempted = action
                record.close_sent = self.send(action.wire())
                self.note(f"sent close {action.code} (ok={record.close_sent})")
            elif isinstance(action, Sleep):
                time.sleep(action.seconds)
            elif isinstance(action, Peek):
                self.read(action.seconds, until_close=False)
            else:
                self.read(STEP_LIMIT, until_close=True)
        self.wait_delivered(self.script.patient)
        ending = self.script.ending
        if ending == "fin":
            self.shutdown_write()
            self.read(STEP_LIMIT, until_close=False)
            record.clean_end = record.eof and not record.reset
            if not (record.eof or record.reset):
                record.stalled = True
                self.note("the client never closed")
            self.sock.close()
        elif ending == "fin_rst":
            self.shutdown_write()
            self.reset()
        elif ending == "close":
            self.sock.close()
            self.note("close")
        else:
            self.reset()


@contextlib.contextmanager
def recording_server(
    script: Script, record: ServerRecord, context: ssl.SSLContext | None = None
) -> Iterator[str]:
    """Serve one connection with ``script``, filling ``record``; yield the URL.

    With ``context``, the connection is TLS (``wss://``).
    """

    def serve(connection: RawConnection) -> None:
        try:
            record.client_address = connection.sock.getpeername()
            # Each send goes out at once, as from a real server: without this, Nagle's
            # algorithm holds small writes back until the client acknowledges, and a
            # reset then discards them in the server's kernel.
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.sock.settimeout(STEP_LIMIT)
            if context is not None:
                connection.sock = context.wrap_socket(connection.sock, server_side=True)
            connection.handshake()
            _Runner(connection, script, record).run()
        except BaseException as error:  # reported by the test, with the script
            record.error = error
        finally:
            connection.close()
            record.done.set()

    with raw_server(serve) as url:
        yield url.replace("ws://", "wss://") if context is not None else url


# -- what the client wrote ---------------------------------------------------------------


class ClientWrites:
    """Every byte handed to the kernel by ``send``/``sendall``/``sendmsg``, by socket.

    :meth:`installed` wraps those methods of :class:`socket.socket` and
    :class:`ssl.SSLSocket` (plaintext, for TLS) for the time of a ``with`` block; the
    wrappers only record, then return what the real method returned.
    """

    def __init__(self) -> None:
        self._streams: dict[Any, bytearray] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def stream(self, address: Any) -> bytes:
        with self._lock:
            return bytes(self._streams.get(address, b""))

    def _record(self, sock: Any, data: bytes) -> None:
        if not data:
            return
        try:
            address = sock.getsockname()
        except OSError:  # pragma: no cover - the send just succeeded
            return
        if not isinstance(address, tuple):
            return  # the wake-up socket pair, say
        with self._lock:
            self._streams.setdefault(address, bytearray()).extend(data)

    def _wrap(self, original: Callable[..., Any], how: str) -> Callable[..., Any]:
        local = self._local
        record = self._record

        def wrapper(sock: Any, data: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(local, "busy", False):  # an inner call of the same send
                return original(sock, data, *args, **kwargs)
            local.busy = True
            try:
                result = original(sock, data, *args, **kwargs)
            finally:
                local.busy = False
            if how == "sendall":
                record(sock, bytes(memoryview(data).cast("B")))
            elif how == "sendmsg":
                record(sock, b"".join(bytes(buffer) for buffer in data)[:result])
            else:
                record(sock, bytes(memoryview(data).cast("B")[:result]))
            return result

        return wrapper

    @contextlib.contextmanager
    def installed(self) -> Iterator[ClientWrites]:
        targets = [
            (socket.socket, "send", "send"),
            (socket.socket, "sendall", "sendall"),
            (socket.socket, "sendmsg", "sendmsg"),
            (ssl.SSLSocket, "send", "send"),
        ]
        saved = []
        for owner, name, how in targets:
            own = owner.__dict__.get(name)
            saved.append((owner, name, own))
            setattr(owner, name, self._wrap(getattr(owner, name), how))
        try:
            yield self
        finally:
            for owner, name, own in reversed(saved):
                if own is None:
                    delattr(owner, name)
                else:
                    setattr(owner, name, own)


def written_frames(stream: bytes) -> tuple[list[ClientFrame], bytes]:
    """The client's frames in what it wrote (after the upgrade request), and the rest."""
    end = stream.find(b"\r\n\r\n")
    if end < 0:
        return [], b""
    return parse_frames(stream[end + 4 :])
