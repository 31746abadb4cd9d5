"""Driver for lomond: this checkout, or lomond 0.3.4 from PyPI (same public API).

Which one runs is decided by ``PYTHONPATH`` (see ``run.py``). The event loop is used
the way an application uses it: ``for event in websocket.connect()``, reacting to
``event.name``, sending with ``send_text``/``send_binary``, ending with ``close()``
and letting the loop run out.
"""

from __future__ import annotations

import common

clock = common.clock
FAILURES = ("connect_fail", "rejected", "protocol_error", "unresponsive")


class LomondDriver(common.Driver):
    def import_library(self) -> None:
        import lomond  # noqa: F401

    def describe(self) -> dict[str, object]:
        import sys

        import lomond

        return {
            "version": lomond.__version__,
            "file": lomond.__file__,
            # An optional C accelerator, if this lomond has one and it is in use
            # (lomond.protocol._speedups; lomond._speedups before the layer folders).
            "speedups": any(
                name in sys.modules for name in ("lomond.protocol._speedups", "lomond._speedups")
            ),
        }

    def receive(self, url: str, count: int, compress: bool) -> common.Measurement:
        from lomond import WebSocket

        websocket = WebSocket(url, compress=compress)
        received = length = 0
        start = end = 0.0
        for event in websocket.connect():
            name = event.name
            if name == "text":
                length += len(event.text)
            elif name == "binary":
                length += len(event.data)
            elif name == "ready":
                start = clock()
                websocket.send_text(common.START)
                continue
            elif name in FAILURES:
                raise RuntimeError(f"lomond: {event!r}")
            else:
                continue
            received += 1
            if received == count:
                end = clock()
                websocket.close()
        return common.Measurement(end - start, received, length)

    def send(self, url: str, count: int, message: str | bytes) -> common.Measurement:
        from lomond import WebSocket

        websocket = WebSocket(url)
        start = end = 0.0
        report = ""
        for event in websocket.connect():
            name = event.name
            if name == "ready":
                start = clock()
                if isinstance(message, str):
                    for _ in range(count):
                        websocket.send_text(message)
                else:
                    for _ in range(count):
                        websocket.send_binary(message)
            elif name == "text":
                end = clock()
                report = event.text
                websocket.close()
            elif name in FAILURES:
                raise RuntimeError(f"lomond: {event!r}")
        return common.Measurement(end - start, count, 0, report)

    def echo(self, url: str, count: int, message: str) -> common.Measurement:
        from lomond import WebSocket

        websocket = WebSocket(url)
        received = length = 0
        start = end = 0.0
        for event in websocket.connect():
            name = event.name
            if name == "text":
                length += len(event.text)
                received += 1
                if received < count:
                    websocket.send_text(message)
                else:
                    end = clock()
                    websocket.close()
            elif name == "ready":
                start = clock()
                websocket.send_text(message)
            elif name in FAILURES:
                raise RuntimeError(f"lomond: {event!r}")
        return common.Measurement(end - start, received, length)


if __name__ == "__main__":
    common.main(LomondDriver())
