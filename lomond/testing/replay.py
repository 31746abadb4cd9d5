"""Serving a recorded connection again (:meth:`lomond.testing.Server.replay`).

A :class:`Replayer` runs one :class:`~lomond.testing.recording.Script` against one
client connection, in its own thread: what the server sent is sent again in order,
after the recorded gap times ``speed``; each message the client sent is waited for
and compared; the connection ends as the recorded one ended. A difference is
reported to the server as a mismatch, and the replay goes on.

What is not replayed: the client's pings and pongs (lomond sends them on its own
timers; the server answers pings itself), the server's pongs (answers to those
pings), and the bytes of a server's protocol violation (only the client's report of
it was recorded: the replay drops the connection there).
"""

from __future__ import annotations

import collections
import threading

from ..protocol.frames import Opcode
from .protocol import ClientMessage

TYPE_CHECKING = False  # typing is not imported at run time
if TYPE_CHECKING:
    from typing import Callable, Deque

    from .connection import Connection
    from .recording import Script, Step

_SERVER_FRAMES = {"text": Opcode.TEXT, "binary": Opcode.BINARY, "ping": Opcode.PING}


def describe(step: Step) -> str:
    """A step as a mismatch message names it."""
    if step["type"] == "text":
        return f"text {step['text']!r}"
    if step["type"] == "binary":
        return f"binary {step['data']!r}"
    return f"close {step.get('code')!r} {step.get('reason', '')!r}"


def describe_message(message: ClientMessage) -> str:
    """A client message as a mismatch message names it."""
    if message.opcode == Opcode.TEXT:
        return f"text {message.payload.decode('utf-8')!r}"
    return f"binary {message.payload!r}"


class Replayer:
    """Replays ``script`` on ``connection``.

    Args:
        script: The recorded connection.
        connection: The client's connection (open).
        speed: Recorded gaps are multiplied by this (``0``: no waiting).
        timeout: How long to wait for each message the client is to send.
        report: Called with a description of each mismatch.
    """

    def __init__(
        self,
        script: Script,
        connection: Connection,
        speed: float,
        timeout: float,
        report: Callable[[str], None],
    ) -> None:
        self.script = script
        self.connection = connection
        self.speed = speed
        self.timeout = timeout
        self.report = report
        self._inbox: Deque[ClientMessage] = collections.deque()
        self._changed = threading.Condition()
        self._ended = False
        self.thread = threading.Thread(target=self.run, name="lomond-test-replay", daemon=True)

    # -- told by the connection's thread --------------------------------------------------

    def message(self, message: ClientMessage) -> None:
        """The client sent a message."""
        with self._changed:
            self._inbox.append(message)
            self._changed.notify_all()

    def ended(self) -> None:
        """The connection ended."""
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    # -- the replay's thread ------------------------------------------------------------

    def run(self) -> None:
        """Replay every step after the opening one."""
        steps = self.script.steps
        client_closed = False
        for index in range(1, len(steps)):
            step = steps[index]
            gap = max(0.0, float(step["t"]) - float(steps[index - 1]["t"]))
            if step.get("how") != "reset":
                # A reset keeps its gap whatever the speed: it discards what the client
                # has not read yet, so it must not come sooner than it did.
                gap *= self.speed
            if not self._pause(gap):
                self._missed(steps[index:])
                return
            if not self._play(step, client_closed):
                self._missed(steps[index:])
                return
            client_closed = client_closed or (step["type"], step.get("from")) == ("close", "client")

    def _play(self, step: Step, client_closed: bool) -> bool:
        """Play one step; return ``False`` if the connection ended before it could."""
        kind, source = step["type"], step.get("from")
        if source == "client" and kind in ("text", "binary"):
            return self._expect(step)
        if source == "client" and kind == "close":
            self._expect_close(step)
        elif source == "server" and kind in _SERVER_FRAMES:
            payload = step["text"].encode("utf-8") if kind == "text" else step["data"]
            self._send(_SERVER_FRAMES[kind], payload)
        elif source == "server" and kind == "close" and not client_closed:
            self.connection.close(step.get("code"), step.get("reason", "").encode("utf-8"))
        elif kind == "protocol_error":
            self.connection.abort("drop")
        elif kind == "disconnected":
            self._end(step)
        return True

    def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``; return ``False`` if the connection ended meanwhile."""
        with self._changed:
            if seconds > 0:
                self._changed.wait_for(lambda: self._ended, seconds)
            return not self._ended

    def _missed(self, steps: list[Step]) -> None:
        """The connection ended early: report the first message the client still owed."""
        for step in steps:
            if step.get("from") == "client" and step["type"] in ("text", "binary"):
                self.report(
                    f"replay: the connection ended before the client sent {describe(step)} "
                    f"(at {step['t']:g}s in the recording)"
                )
                return

    def _send(self, opcode: int, payload: bytes) -> None:
        try:
            self.connection.send(opcode, payload)
        except AssertionError as error:
            self.report(f"replay: could not send a recorded message: {error}")

    def _next_message(self) -> ClientMessage | None:
        with self._changed:
            self._changed.wait_for(lambda: self._inbox or self._ended, self.timeout)
            return self._inbox.popleft() if self._inbox else None

    def _expect(self, step: Step) -> bool:
        message = self._next_message()
        if message is None and self._ended:
            return False
        if message is None:
            self.report(
                f"replay: the client was to send {describe(step)} "
                f"(at {step['t']:g}s in the recording); it sent nothing within {self.timeout:g}s"
            )
            return True
        expected = step["text"].encode("utf-8") if step["type"] == "text" else step["data"]
        opcode = Opcode.TEXT if step["type"] == "text" else Opcode.BINARY
        if message.opcode != opcode or message.payload != expected:
            self.report(
                f"replay: the client was to send {describe(step)} "
                f"(at {step['t']:g}s in the recording); it sent {describe_message(message)}"
            )
        return True

    def _expect_close(self, step: Step) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._ended, self.timeout)
        received = self.connection.close_received
        expected = (step.get("code"), step.get("reason", ""))
        if received != expected:
            sent = "nothing" if received is None else f"close {received[0]!r} {received[1]!r}"
            self.report(f"replay: the client was to send {describe(step)}; it sent {sent}")

    def _end(self, step: Step) -> None:
        how = step.get("how")
        if how in ("dropped", "reset"):
            self.connection.abort("drop" if how == "dropped" else "reset")
        elif how == "client":
            # The client gave up on its own: wait for it to go, as the server did.
            with self._changed:
                self._changed.wait_for(lambda: self._ended, self.timeout)
