"""``lomond --demo``: a scripted session against the bundled loopback echo server.

No network is needed: :class:`~lomond.cli.demo_server.EchoServer` listens on 127.0.0.1.
The script sends a text message, a binary message, JSON, a ping and a large
compressible message, waiting for each echo (or pong) before the next step, then
closes. Every event is printed as the command line prints it, with the calls that
caused them as comments between the events.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import events
from .._version import __version__
from ..compression import Deflate
from ..websocket import WebSocket
from .console import EventPrinter, Outcome
from .demo_server import EchoServer

#: Messages shorter than this go uncompressed, so only the large one is compressed.
MIN_COMPRESS_SIZE = 100
#: The demo gives up (and fails) if it has not finished after this many seconds.
DEMO_TIMEOUT = 10.0

JSON_MESSAGE = {"type": "subscribe", "channel": "demo"}
LARGE_TEXT = "lomond " * 20

# One step: the call to make, the name of the event that answers it, and what to do
# with that answer.
Step = Tuple[Callable[[], None], str, Optional[Callable[[events.Event], None]]]


class _WireMeter:
    """A ``trace`` callable that remembers how many bytes the last send put on the wire."""

    def __init__(self) -> None:
        self.last_send = 0

    def __call__(self, record: Dict[str, Any]) -> None:
        if record["stage"] == "socket_send":
            self.last_send = record["length"]


class DemoScript:
    """The scripted steps, each started when the previous one was answered."""

    def __init__(self, ws: WebSocket, printer: EventPrinter, wire: _WireMeter) -> None:
        self.ws = ws
        self.printer = printer
        self.wire = wire
        self.steps: List[Step] = [
            (self.send_text, "text", None),
            (self.send_binary, "binary", None),
            (self.send_json, "text", self.show_json),
            (self.send_ping, "pong", None),
            (self.send_compressed, "text", None),
            (self.close, "closed", None),
        ]
        self.expected: str | None = None
        self.on_reply: Callable[[events.Event], None] | None = None
        self.finished = False

    def send_text(self) -> None:
        self.printer.note(">>> ws.send_text('Hello, lomond!')")
        self.ws.send_text("Hello, lomond!")

    def send_binary(self) -> None:
        self.printer.note(">>> ws.send_binary(b'\\x00\\x01\\x02\\xff')")
        self.ws.send_binary(b"\x00\x01\x02\xff")

    def send_json(self) -> None:
        self.printer.note(f">>> ws.send_json({JSON_MESSAGE!r})")
        self.ws.send_json(JSON_MESSAGE)

    def send_ping(self) -> None:
        self.printer.note(">>> ws.send_ping(b'are you there?')")
        self.ws.send_ping(b"are you there?")

    def send_compressed(self) -> None:
        self.ws.send_text(LARGE_TEXT)
        self.printer.note(
            f">>> ws.send_text('lomond ' * 20)  "
            f"# {len(LARGE_TEXT)} chars -> {self.wire.last_send} bytes on the wire (compressed)"
        )

    def show_json(self, event: events.Event) -> None:
        if isinstance(event, events.Text):
            self.printer.note(f"event.json == {event.json!r}")

    def close(self) -> None:
        self.printer.note(">>> ws.close()")
        self.ws.close()

    def advance(self, event: events.Event) -> None:
        """Start the next step if ``event`` answers the current one (or is ``Ready``)."""
        if not (isinstance(event, events.Ready) or event.name == self.expected):
            return
        if self.on_reply is not None:
            self.on_reply(event)
        if not self.steps:
            self.finished = True
            return
        action, self.expected, self.on_reply = self.steps.pop(0)
        action()


def run_demo(printer: EventPrinter) -> Outcome:
    """Run the demo, printing its events; return how it ended."""
    outcome = Outcome()
    with EchoServer() as server:
        wire = _WireMeter()
        ws = WebSocket(
            server.url, proxies={}, compress=Deflate(min_size=MIN_COMPRESS_SIZE), trace=wire
        )
        printer.note(
            f"lomond {__version__} demo: echo server on {server.url} (loopback, no network)",
            indent=False,
        )
        script = DemoScript(ws, printer, wire)
        timer = threading.Timer(DEMO_TIMEOUT, ws.force_disconnect)
        timer.daemon = True
        timer.start()
        try:
            for event in ws.connect(ping_rate=0, close_timeout=DEMO_TIMEOUT):
                printer.event(event)
                outcome.observe(event)
                script.advance(event)
        finally:
            timer.cancel()
    if not script.finished and outcome.failure is None:
        outcome.abandon("the demo ended before its last step")
    return outcome
