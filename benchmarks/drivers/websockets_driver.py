"""Driver for ``websockets``, through its synchronous client.

``websockets.sync.client.connect`` as documented: a context manager, ``recv()`` and
``send()``. ``max_size`` is raised from its 1 MiB default to lomond's 16 MiB so that
the 1 MiB scenarios fit whatever the framing overhead; ``compression`` is ``"deflate"``
(its default) only where the scenario is about compression.
"""

from __future__ import annotations

import common

clock = common.clock
MAX_SIZE = 16 * 1024 * 1024


class WebsocketsDriver(common.Driver):
    def import_library(self) -> None:
        from websockets.sync.client import connect  # noqa: F401

    def describe(self) -> dict[str, object]:
        import websockets

        try:
            from websockets import speedups  # noqa: F401
        except ImportError:
            accelerated = False
        else:
            accelerated = True
        return {
            "version": websockets.__version__,
            "file": websockets.__file__,
            "speedups": accelerated,
        }

    def receive(self, url: str, count: int, compress: bool) -> common.Measurement:
        from websockets.sync.client import connect

        compression = "deflate" if compress else None
        with connect(url, compression=compression, max_size=MAX_SIZE) as connection:
            length = 0
            start = clock()
            connection.send(common.START)
            for _ in range(count):
                length += len(connection.recv())
            end = clock()
        return common.Measurement(end - start, count, length)

    def send(self, url: str, count: int, message: str | bytes) -> common.Measurement:
        from websockets.sync.client import connect

        with connect(url, compression=None, max_size=MAX_SIZE) as connection:
            start = clock()
            for _ in range(count):
                connection.send(message)
            report = connection.recv()
            end = clock()
        return common.Measurement(end - start, count, 0, str(report))

    def echo(self, url: str, count: int, message: str) -> common.Measurement:
        from websockets.sync.client import connect

        with connect(url, compression=None, max_size=MAX_SIZE) as connection:
            length = 0
            start = clock()
            for _ in range(count):
                connection.send(message)
                length += len(connection.recv())
            end = clock()
        return common.Measurement(end - start, count, length)


if __name__ == "__main__":
    common.main(WebsocketsDriver())
