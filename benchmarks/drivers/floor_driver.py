"""The floor: a minimal WebSocket client written by hand in pure Python.

It does only what the benchmark server needs and nothing a real client must also do
(no fragmentation, no control frames, no limits, no close handshake state): parse
each header, take the payload (one copy into a ``bytes``; large payloads are read
straight into one buffer), inflate it if RSV1 is set, decode text to ``str``; mask
each outgoing frame with a fresh ``os.urandom`` key and the fastest pure-Python
masking (:func:`wire.mask`). A library doing more cannot reasonably beat it in
CPython: it is the floor.
"""

from __future__ import annotations

import os
import zlib

import common
import wire

clock = common.clock


def negotiated_window_bits(headers: dict[str, str]) -> int:
    """The window the server compresses with (RFC 7692 §7.1.2.1), 15 unless it says."""
    for parameter in headers.get("sec-websocket-extensions", "").split(";"):
        name, _, value = parameter.strip().partition("=")
        if name == "server_max_window_bits" and value:
            return int(value.strip('"'))
    return 15


class FloorDriver(common.Driver):
    def import_library(self) -> None:
        pass

    def describe(self) -> dict[str, object]:
        return {"version": "reference", "file": wire.__file__}

    def receive(self, url: str, count: int, compress: bool) -> common.Measurement:
        connection = wire.open_websocket(url, "permessage-deflate" if compress else None)
        window_bits = -negotiated_window_bits(connection.headers)
        decompressobj = zlib.decompressobj
        tail = wire.DEFLATE_TAIL
        sock = connection.sock
        recv = sock.recv
        read_size = wire.READ_SIZE
        data = connection.data
        position = 0
        received = length = 0
        start = clock()
        sock.sendall(wire.masked_frame(wire.OP_TEXT, common.START.encode(), os.urandom(4)))
        while received < count:
            available = len(data) - position
            if available >= 2:
                first = data[position]
                size = data[position + 1] & 0x7F
                if size < 126:
                    header_end = position + 2
                elif size == 126:
                    header_end = position + 4
                    if available >= 4:
                        size = int.from_bytes(data[position + 2 : header_end], "big")
                else:
                    header_end = position + 10
                    if available >= 10:
                        size = int.from_bytes(data[position + 2 : header_end], "big")
                payload_end = header_end + size
                if payload_end <= len(data):
                    payload = data[header_end:payload_end]
                    position = payload_end
                elif header_end <= len(data) and size >= read_size:
                    # A large payload: the rest goes from the socket into one buffer.
                    buffer = bytearray(size)
                    have = len(data) - header_end
                    buffer[:have] = memoryview(data)[header_end:]
                    view = memoryview(buffer)[have:]
                    while view:
                        got = sock.recv_into(view)
                        if not got:
                            raise ConnectionError("connection closed inside a frame")
                        view = view[got:]
                    payload = bytes(buffer)
                    data = b""
                    position = 0
                else:
                    payload = None
                if payload is not None:
                    if first & 0x40:
                        payload = decompressobj(window_bits).decompress(payload + tail)
                    opcode = first & 0x0F
                    if opcode == 1:
                        length += len(payload.decode("utf-8"))
                    elif opcode == 2:
                        length += len(payload)
                    else:
                        raise ConnectionError(f"unexpected opcode {opcode}")
                    received += 1
                    continue
            chunk = recv(read_size)
            if not chunk:
                raise ConnectionError("connection closed before the last message")
            data = data[position:] + chunk
            position = 0
        end = clock()
        connection.data = b""
        connection.close()
        return common.Measurement(end - start, received, length)

    def send(self, url: str, count: int, message: str | bytes) -> common.Measurement:
        connection = wire.open_websocket(url)
        masked_frame = wire.masked_frame
        urandom = os.urandom
        sendall = connection.sock.sendall
        start = clock()
        if isinstance(message, str):
            for _ in range(count):
                sendall(masked_frame(wire.OP_TEXT, message.encode("utf-8"), urandom(4)))
        else:
            for _ in range(count):
                sendall(masked_frame(wire.OP_BINARY, message, urandom(4)))
        _first, report = wire.read_frame(connection)
        end = clock()
        connection.close()
        return common.Measurement(end - start, count, 0, report.decode("utf-8"))

    def echo(self, url: str, count: int, message: str) -> common.Measurement:
        connection = wire.open_websocket(url)
        masked_frame = wire.masked_frame
        read_frame = wire.read_frame
        urandom = os.urandom
        sendall = connection.sock.sendall
        length = 0
        start = clock()
        for _ in range(count):
            sendall(masked_frame(wire.OP_TEXT, message.encode("utf-8"), urandom(4)))
            _first, payload = read_frame(connection)
            length += len(payload.decode("utf-8"))
        end = clock()
        connection.close()
        return common.Measurement(end - start, count, length)


if __name__ == "__main__":
    common.main(FloorDriver())
