"""Sending one message from a file or an iterable, in fragments, with bounded memory.

:class:`StreamSending` is the part of :class:`~lomond.loop.connection.Connection`
behind ``send_binary`` of a file or an iterable and ``send_text`` of an iterable.
Each piece goes out as one fragment (:mod:`lomond.protocol.fragments`); the sender
waits while more than :data:`STREAM_HIGH_WATER` bytes wait to be written, so memory
stays bounded by a few pieces, whatever the length of the message.

* One message at a time: while a message streams, other threads' data messages
  (and streams) wait for its last fragment (RFC 6455 §5.4). The loop's own thread
  never waits for another thread: its messages are held by the protocol and queued
  after the last fragment; its stream waits, reading meanwhile. Pings, pongs and
  close frames go between fragments.
* In the loop's thread the sender reads while it waits to write, so a server that
  echoes cannot deadlock it; what arrives meanwhile waits for the loop (it is
  handed over after the send returns).
* If the source raises, the message is abandoned: the connection is closed with
  code 1011 and the exception propagates. Its fragments so far never form a
  message.
"""

from __future__ import annotations

import io
import select
import threading

from ..errors import TransportFail
from ..protocol.mask import byte_view

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from typing import Any, Iterable, Iterator, Union

    from ..protocol import ClientProtocol
    from ..protocol.frames import Opcode
    from .reader import Reader
    from .writer import Writer

    Piece = Union[bytes, bytearray, memoryview]

#: While a message streams, its sender waits while more than this many bytes wait
#: to be written.
STREAM_HIGH_WATER = 1024 * 1024
#: The most bytes in one fragment of a streamed message (files are read this much at
#: a time; larger chunks are cut). A bytes-like object larger than
#: :data:`STREAM_THRESHOLD` is sent as a stream of such fragments too.
PIECE_SIZE = 256 * 1024
#: ``send_binary`` of a bytes-like object longer than this, from a thread other than
#: the loop's, sends it in fragments, without a masked copy of the whole. (The loop's
#: thread never waits for room, so it queues the message as one frame.)
STREAM_THRESHOLD = 4 * 1024 * 1024


class StreamSending:
    """The streamed sends of a :class:`~lomond.loop.connection.Connection`."""

    # What it uses of the Connection.
    protocol: ClientProtocol
    _lock: threading.Lock
    _writer: Writer
    _reader: Reader
    _loop_thread: int | None
    _stream_owner: int | None
    _stream_done: threading.Condition

    if TYPE_CHECKING:

        def _flush_locked(self) -> None: ...

        def _after_locked(self, in_loop: bool) -> None: ...

        def _emit_traces(self) -> None: ...

        def _read(self) -> bool: ...

    @property
    def in_loop_thread(self) -> bool:
        """Whether the calling thread is the loop's (which never waits for room)."""
        return threading.get_ident() == self._loop_thread

    def send_stream(self, opcode: Opcode, pieces: Iterable[Piece], compress: bool) -> bool:
        """Send one message, each of ``pieces`` as a fragment, then an empty final one.

        Returns:
            Whether the message was compressed.

        Raises:
            TransportFail: The socket failed while writing.
            WebSocketUnavailable: Not connected, or closing or closed (also when the
                connection closes during the send).
            Exception: Whatever iterating ``pieces`` raised (the connection is then
                closed with code 1011).
        """
        me = threading.get_ident()
        in_loop = me == self._loop_thread
        compressed = self._claim(me, in_loop, opcode, compress)
        try:
            for piece in pieces:
                self._send_piece(piece, False, in_loop)
            self._send_piece(b"", True, in_loop)
        except BaseException:
            with self._lock:
                self.protocol.abandon_message()
                self._flush_locked()
            raise
        finally:
            with self._lock:
                self._stream_owner = None
                self._stream_done.notify_all()
            self._after_locked(in_loop)
        return compressed

    def _wait_for_stream_locked(self, me: int) -> None:
        """For :meth:`send` in another thread than the loop's: wait for a stream to end."""
        while self._stream_owner is not None and self._stream_owner != me:
            self._stream_done.wait()

    def _claim(self, me: int, in_loop: bool, opcode: Opcode, compress: bool) -> bool:
        """Wait for another thread's stream to end, then start the message."""
        while True:
            with self._lock:
                if not in_loop:
                    self._wait_for_stream_locked(me)
                if self._stream_owner is None:
                    compressed = self.protocol.start_message(opcode, compress)
                    self._stream_owner = me
                    return compressed
            self._wait_io(in_loop)  # the loop's thread reads while it waits

    def _send_piece(self, piece: Piece, final: bool, in_loop: bool) -> None:
        """Queue one fragment, and write until no more than the high-water mark waits."""
        writer = self._writer
        with self._lock:
            self.protocol.send_fragment(piece, final)
        while True:
            with self._lock:
                self._flush_locked()
                failure = writer.error
                room = writer.waiting <= STREAM_HIGH_WATER
                closed = writer.sock is None
            self._after_locked(in_loop)
            if failure is not None:
                raise TransportFail(failure)
            if room:
                return
            if closed:
                raise TransportFail("connection closed before the data was sent")
            self._wait_io(in_loop)

    def _wait_io(self, in_loop: bool) -> None:
        """Wait (briefly) for the socket to take more; in the loop's thread, read too."""
        writer = self._writer
        sock = writer.sock
        if sock is None:
            return
        want_write = [] if writer.needs_read else [sock]
        try:
            if in_loop:
                readable, _, _ = select.select([sock], want_write, [], 0.1)
            else:
                # The loop reads; writable is no news when the write needs a read.
                readable, _, _ = select.select([], want_write, [], 0.1)
        except (OSError, ValueError):
            return  # the socket was closed meanwhile: the caller sees it
        if readable:
            self._read()
        self._emit_traces()


def binary_pieces(data: object) -> Iterator[Piece]:
    """The pieces of a binary message from a binary file object or an iterable.

    A file is read :data:`PIECE_SIZE` bytes at a time (with ``readinto`` into one
    buffer when it has it, else with ``read``); an iterable gives bytes-like chunks,
    each cut into pieces of at most :data:`PIECE_SIZE` bytes, without copying.

    Raises:
        TypeError: ``data`` is a ``str``, a text file, or neither a file nor an
            iterable. Iterating raises ``TypeError`` for a chunk that is not
            bytes-like.
    """
    if isinstance(data, (str, io.TextIOBase)):
        raise TypeError(
            "data must be bytes-like, a binary file or an iterable of bytes-like chunks, "
            f"not {type(data).__name__} (send text with send_text)"
        )
    if hasattr(data, "readinto"):
        return _read_into(data)
    if hasattr(data, "read"):
        return _read(data)
    try:
        chunks = iter(data)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(
            "data must be bytes-like, a binary file or an iterable of bytes-like chunks, "
            f"not {type(data).__name__}"
        ) from None
    return _binary_chunks(chunks)


def text_pieces(texts: object) -> Iterator[Piece]:
    """The pieces of a text message from an iterable of ``str``, as UTF-8.

    A long string is encoded :data:`PIECE_SIZE` characters at a time.

    Raises:
        TypeError: ``texts`` is bytes-like or not iterable. Iterating raises
            ``TypeError`` for an item that is not a ``str``.
    """
    if isinstance(texts, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"text must be a str or an iterable of str, not {type(texts).__name__} "
            "(send bytes with send_binary)"
        )
    try:
        chunks = iter(texts)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(
            f"text must be a str or an iterable of str, not {type(texts).__name__}"
        ) from None
    return _text_chunks(chunks)


def _read_into(file: Any) -> Iterator[Piece]:
    buffer = memoryview(bytearray(PIECE_SIZE))
    while True:
        count = file.readinto(buffer)
        if count is None:
            raise ValueError("the file gave no data without ending (is it non-blocking?)")
        if not count:
            return
        yield buffer[:count]  # sent (masked: copied) before the buffer is read into again


def _read(file: Any) -> Iterator[Piece]:
    while True:
        chunk = file.read(PIECE_SIZE)
        if chunk is None:
            raise ValueError("the file gave no data without ending (is it non-blocking?)")
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"the file's read() gave {type(chunk).__name__}, not bytes (open it in binary mode)"
            )
        if not chunk:
            return
        yield chunk


def _binary_chunks(chunks: Iterator[Any]) -> Iterator[Piece]:
    for chunk in chunks:
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(f"chunks must be bytes-like, not {type(chunk).__name__}")
        view = byte_view(chunk)
        if len(view) <= PIECE_SIZE:
            if len(view):
                yield view
            continue
        for start in range(0, len(view), PIECE_SIZE):
            yield view[start : start + PIECE_SIZE]


def _text_chunks(chunks: Iterator[Any]) -> Iterator[Piece]:
    for chunk in chunks:
        if not isinstance(chunk, str):
            raise TypeError(f"text chunks must be str, not {type(chunk).__name__}")
        for start in range(0, len(chunk), PIECE_SIZE):
            yield chunk[start : start + PIECE_SIZE].encode("utf-8")
