"""The interactive client behind ``lomond URL``: events out, stdin lines in.

The main thread runs the event loop and prints each event. A helper thread reads
stdin and sends each line as a text message, which is safe because lomond's sends
may come from any thread; it waits for ``Ready`` before sending, and at the end of
input it closes the connection gracefully once replies have stopped arriving.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import threading
import time
from typing import TYPE_CHECKING, ContextManager, Generator, Iterator, Sequence, TextIO

from .. import events
from ..errors import WebSocketError
from ..persist import persist
from ..websocket import WebSocket
from .console import EventPrinter, Outcome

if TYPE_CHECKING:
    from ..testing.recording import Recorder

#: Seconds the client waits for the server to answer its close frame.
CLOSE_TIMEOUT = 5.0

_READ_SIZE = 64 * 1024


class SendGate:
    """Lets the stdin thread wait until messages can be sent, or the run is over."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._open = False
        self._finished = False

    def open(self) -> None:
        """The connection is ready: release the waiting sender."""
        with self._condition:
            self._open = True
            self._condition.notify_all()

    def shut(self) -> None:
        """The connection ended (another one may follow, with ``--persist``)."""
        with self._condition:
            self._open = False

    def finish(self) -> None:
        """The run is over: release the waiting sender for good."""
        with self._condition:
            self._finished = True
            self._condition.notify_all()

    def wait(self) -> bool:
        """Block until the gate opens (``True``) or the run is over (``False``)."""
        with self._condition:
            self._condition.wait_for(lambda: self._open or self._finished)
            return not self._finished

    def wait_finished(self, timeout: float) -> bool:
        """Block for up to ``timeout`` seconds; return whether the run is over."""
        with self._condition:
            return self._condition.wait_for(lambda: self._finished, timeout)


def read_lines(fd: int) -> Iterator[str]:
    """Yield the lines of UTF-8 text read from file descriptor ``fd``, without newlines.

    Reads the descriptor directly (not through ``sys.stdin``) so that a thread blocked
    here holds no lock the interpreter needs at exit.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    while True:
        try:
            chunk = os.read(fd, _READ_SIZE)
        except OSError:
            chunk = b""
        pending += decoder.decode(chunk, final=not chunk)
        *lines, pending = pending.split("\n")
        for line in lines:
            yield line[:-1] if line.endswith("\r") else line
        if not chunk:
            break
    if pending:
        yield pending


class ClientOptions:
    """How an interactive run behaves (the command line's session options).

    Args:
        send: Messages to send once connected (``--send``).
        count: Close after this many messages (``--count``); with ``send`` and no
            count, after as many messages as were sent.
        timeout: Give up after this many seconds (``--timeout``).
        linger: At the end of input, close once no message arrived for this long.
        persist: Reconnect with back-off until the run ends (``--persist``).
        ping_rate: Seconds between automatic pings (0: none).
        ping_timeout: Fail when no pong arrives for this long (``None``: never).
        data_resets_ping_timeout: Any data received counts as well as a pong.
    """

    def __init__(
        self,
        *,
        send: Sequence[str] = (),
        count: int | None = None,
        timeout: float | None = None,
        linger: float = 0.5,
        persist: bool = False,
        ping_rate: float = 30.0,
        ping_timeout: float | None = None,
        data_resets_ping_timeout: bool = False,
    ) -> None:
        self.send = list(send)
        self.count = count
        self.timeout = timeout
        self.linger = linger
        self.persist = persist
        self.ping_rate = ping_rate
        self.ping_timeout = ping_timeout
        self.data_resets_ping_timeout = data_resets_ping_timeout


class InteractiveClient:
    """One run of ``lomond URL``: the event loop, the input thread, the exit conditions.

    Args:
        ws: The WebSocket to connect.
        options: How the run behaves.
        printer: Where events are printed.
        errors: Where warnings and the failure reason go (normally stderr).
        input_fd: The descriptor to read lines to send from, or ``None``.
    """

    def __init__(
        self,
        ws: WebSocket,
        options: ClientOptions,
        printer: EventPrinter,
        errors: TextIO,
        input_fd: int | None,
    ) -> None:
        self.ws = ws
        self.options = options
        self.printer = printer
        self.errors = errors
        self.input_fd = input_fd
        self.outcome = Outcome()
        self.gate = SendGate()
        self.exit_requested = threading.Event()
        self.received = 0
        self.last_activity = time.monotonic()
        self.expected: int | None = options.count or len(options.send) or None
        #: Writes the session down (``--record``), or ``None``.
        self.recorder: Recorder | None = None

    def run(self) -> int:
        """Run until the connection (or, with ``--persist``, the run) ends; return the status."""
        if self.input_fd is not None:
            thread = threading.Thread(
                target=self._pump_input, args=(self.input_fd,), name="lomond-stdin", daemon=True
            )
            thread.start()
        timer = None
        if self.options.timeout is not None:
            timer = threading.Timer(self.options.timeout, self._time_out)
            timer.daemon = True
            timer.start()
        try:
            for event in self._events():
                if self.recorder is not None:
                    self.recorder.event(event)
                if self._beyond_count(event):
                    continue
                self.printer.event(event)
                self.outcome.observe(event)
                self._react(event)
        finally:
            self.gate.finish()
            if timer is not None:
                timer.cancel()
        if self.outcome.exit_status:
            self.warn(self.outcome.reason)
        return self.outcome.exit_status

    def _events(self) -> Generator[events.Event, None, None]:
        options = self.options
        if options.persist:
            return persist(
                self.ws,
                ping_rate=options.ping_rate,
                ping_timeout=options.ping_timeout,
                data_resets_ping_timeout=options.data_resets_ping_timeout,
                exit_event=self.exit_requested,
                close_timeout=CLOSE_TIMEOUT,
            )
        return self.ws.connect(
            ping_rate=options.ping_rate,
            ping_timeout=options.ping_timeout,
            close_timeout=CLOSE_TIMEOUT,
            data_resets_ping_timeout=options.data_resets_ping_timeout,
        )

    def _react(self, event: events.Event) -> None:
        if isinstance(event, events.Ready):
            self.last_activity = time.monotonic()
            self.gate.open()
            for text in self.options.send:
                self.send(text)
        elif isinstance(event, (events.Text, events.Binary)):
            self.last_activity = time.monotonic()
            self.received += 1
            if self.expected is not None and self.received >= self.expected:
                self.request_close()
        elif isinstance(event, events.Disconnected):
            self.gate.shut()

    def _beyond_count(self, event: events.Event) -> bool:
        # Messages that arrive after the N-th, while the connection closes, are dropped:
        # "--count N" prints N messages.
        return (
            isinstance(event, (events.Text, events.Binary))
            and self.expected is not None
            and self.received >= self.expected
        )

    def request_close(self) -> None:
        """Close gracefully and end the run (also ends ``--persist``)."""
        self.exit_requested.set()
        with self._recording():
            self.ws.close()  # traced: recorded before the server's answer is

    def _time_out(self) -> None:
        self.outcome.abandon(f"timed out after {self.options.timeout:g}s")
        self.request_close()

    def _pump_input(self, fd: int) -> None:
        for line in read_lines(fd):
            if not self.gate.wait():
                return
            self.send(line)
            self.last_activity = time.monotonic()
        # End of input: once there is a connection, and it has gone quiet, close it
        # and end the run. Not before: with --persist, a run that is asked to end
        # closes its connection at once (and one that has none never connects).
        if not self.gate.wait():
            return
        while True:
            quiet_for = time.monotonic() - self.last_activity
            if quiet_for >= self.options.linger:
                break
            if self.gate.wait_finished(self.options.linger - quiet_for):
                return
        self.request_close()

    def send(self, text: str) -> None:
        """Send a text message; if it cannot be sent, say so on the error stream."""
        with self._recording():
            try:
                self.ws.send_text(text)
            except WebSocketError as error:
                self.warn(f"not sent: {error}")
            else:
                if self.recorder is not None:
                    self.recorder.sent(text)

    def _recording(self) -> ContextManager[object]:
        """With ``--record``, the recorder's lock: the loop's thread takes it to record
        an event, so a send or a close is written down before any answer to it."""
        return self.recorder.lock if self.recorder is not None else contextlib.nullcontext()

    def warn(self, message: str) -> None:
        """Write one line to the error stream."""
        self.errors.write(f"lomond: {message}\n")
        self.errors.flush()
