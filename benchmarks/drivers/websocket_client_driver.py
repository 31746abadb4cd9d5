"""Driver for ``websocket-client`` (``import websocket``), with or without ``wsaccel``.

``run.py`` runs it twice: once with only websocket-client on ``PYTHONPATH`` and once
with ``wsaccel`` beside it, which websocket-client then picks up by itself (C masking
and UTF-8 validation). websocket-client has no permessage-deflate, so it sits out
the compressed scenario.
"""

from __future__ import annotations

import common

clock = common.clock


class WebsocketClientDriver(common.Driver):
    def import_library(self) -> None:
        import websocket  # noqa: F401

    def describe(self) -> dict[str, object]:
        import sys

        import websocket

        return {
            "version": websocket.__version__,
            "file": websocket.__file__,
            "wsaccel": "wsaccel" in sys.modules,
        }

    def receive(self, url: str, count: int, compress: bool) -> common.Measurement:
        import websocket

        if compress:
            raise RuntimeError("websocket-client does not support permessage-deflate")
        connection = websocket.create_connection(url)
        length = 0
        start = clock()
        connection.send(common.START)
        for _ in range(count):
            length += len(connection.recv())
        end = clock()
        connection.close()
        return common.Measurement(end - start, count, length)

    def send(self, url: str, count: int, message: str | bytes) -> common.Measurement:
        import websocket

        connection = websocket.create_connection(url)
        start = clock()
        if isinstance(message, str):
            for _ in range(count):
                connection.send(message)
        else:
            for _ in range(count):
                connection.send_binary(message)
        report = connection.recv()
        end = clock()
        connection.close()
        return common.Measurement(end - start, count, 0, str(report))

    def echo(self, url: str, count: int, message: str) -> common.Measurement:
        import websocket

        connection = websocket.create_connection(url)
        length = 0
        start = clock()
        for _ in range(count):
            connection.send(message)
            length += len(connection.recv())
        end = clock()
        connection.close()
        return common.Measurement(end - start, count, length)


if __name__ == "__main__":
    common.main(WebsocketClientDriver())
