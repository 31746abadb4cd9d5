"""The ceiling: a raw socket that parses nothing.

Receiving, it reads the scenario's whole byte stream (its length comes in the
``X-Bench-Stream-Bytes`` response header) into one reused buffer and only counts
bytes. Sending, it writes frames masked once, before the clock starts, with one key
for all of them. Echoing, it writes a prepared frame and reads back the known
number of bytes. No WebSocket client can go faster over the same socket.
"""

from __future__ import annotations

import common
import wire

clock = common.clock


class RawDriver(common.Driver):
    def import_library(self) -> None:
        pass

    def describe(self) -> dict[str, object]:
        return {"version": "reference", "file": wire.__file__}

    def receive(self, url: str, count: int, compress: bool) -> common.Measurement:
        connection = wire.open_websocket(url, "permessage-deflate" if compress else None)
        total = int(connection.headers["x-bench-stream-bytes"])
        remaining = total - len(connection.data)
        buffer = bytearray(wire.READ_SIZE)
        recv_into = connection.sock.recv_into
        start_frame = wire.masked_frame(wire.OP_TEXT, common.START.encode(), b"\x12\x34\x56\x78")
        start = clock()
        connection.sock.sendall(start_frame)
        while remaining > 0:
            received = recv_into(buffer)
            if not received:
                raise ConnectionError("connection closed before the stream ended")
            remaining -= received
        end = clock()
        connection.data = b""
        connection.close()
        return common.Measurement(end - start, count, total)

    def send(self, url: str, count: int, message: str | bytes) -> common.Measurement:
        connection = wire.open_websocket(url)
        if isinstance(message, str):
            frame = wire.masked_frame(wire.OP_TEXT, message.encode("utf-8"), b"\x12\x34\x56\x78")
        else:
            frame = wire.masked_frame(wire.OP_BINARY, message, b"\x12\x34\x56\x78")
        sendall = connection.sock.sendall
        if len(frame) < 64 * 1024:
            # Small frames go out in blocks of about 1 MiB, prepared beforehand.
            per_block = (1024 * 1024) // len(frame)
            block = frame * per_block
            whole, rest = divmod(count, per_block)
            tail = frame * rest
            start = clock()
            for _ in range(whole):
                sendall(block)
            sendall(tail)
        else:
            start = clock()
            for _ in range(count):
                sendall(frame)
        _first, report = wire.read_frame(connection)
        end = clock()
        connection.close()
        return common.Measurement(end - start, count, 0, report.decode("utf-8"))

    def echo(self, url: str, count: int, message: str) -> common.Measurement:
        connection = wire.open_websocket(url)
        payload = message.encode("utf-8")
        frame = wire.masked_frame(wire.OP_TEXT, payload, b"\x12\x34\x56\x78")
        expected = len(payload) + 2  # the echo: unmasked, short header
        buffer = bytearray(expected)
        view = memoryview(buffer)
        sock = connection.sock
        start = clock()
        for _ in range(count):
            sock.sendall(frame)
            got = 0
            while got < expected:
                received = sock.recv_into(view[got:])
                if not received:
                    raise ConnectionError("connection closed during the echo")
                got += received
        end = clock()
        connection.close()
        return common.Measurement(end - start, count, count * len(payload))


if __name__ == "__main__":
    common.main(RawDriver())
