"""Streaming benchmarks: a message larger than memory, and streamed receive throughput.

Not part of ``run.py`` (a 4 GiB message takes a while); run it on its own::

    python benchmarks/streaming.py                    # 4 GiB, every direction
    python benchmarks/streaming.py --size 512         # 512 MiB instead
    python benchmarks/streaming.py --only recv-plain send-deflate
    python benchmarks/streaming.py --only parts       # 1 MiB messages, parts vs whole

Each ``big`` scenario moves ONE message of ``--size`` MiB between a server process
and a lomond client process, and reports the client's peak resident set (``VmHWM``)
and its throughput:

``recv-plain``
    The server sends one binary frame of the whole size; lomond receives it with
    ``connect(stream=True)``, counting the bytes of its ``BinaryPart`` events.
``recv-deflate``
    The same message compressed (permessage-deflate, one frame); lomond inflates it
    into parts.
``send-plain`` / ``send-deflate``
    lomond sends one message from a generator of 1 MiB chunks with ``send_binary``;
    the server counts the payload (inflating it, for deflate) and reports the total.

``parts`` receives 1 MiB binary messages from ``benchmarks/server.py`` (its
``recv_binary`` scenario) with and without ``stream=True``, alternating, and reports
the throughput of each and their ratio.

Standard library and this checkout only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MiB = 1024 * 1024
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
BIG = ("recv-plain", "recv-deflate", "send-plain", "send-deflate")


def block() -> bytes:
    """1 MiB of JSON-like lines: compresses about 11:1, like real data."""
    lines = b"".join(
        b'{"id": %d, "name": "lomond", "value": %d.5, "ok": true}\n' % (i, i * 7)
        for i in range(20_000)
    )
    return lines[:MiB]


def vm(field: str) -> int:
    """A ``/proc/self/status`` field, in bytes (0 where there is none)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# -- the server process -----------------------------------------------------------------


def handshake(sock: socket.socket, deflate: bool) -> None:
    request = b""
    while b"\r\n\r\n" not in request:
        request += sock.recv(65536)
    key = b""
    for line in request.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            key = value.strip()
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    extra = b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else b""
    sock.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n" + extra + b"\r\n"
    )


def header(first: int, length: int) -> bytes:
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")


def recv_exact(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(min(count - len(data), 1 << 20))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


def compressed_stream(blocks: int) -> tuple[bytes, bytes, bytes]:
    """The message of ``blocks`` blocks compressed as one: ``first + middle * (blocks
    - 2) + last``. Every block after the first compresses to the same bytes (the
    window then holds the same data), so nothing of the size of the message is built.
    """
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = block()
    outputs = [compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH) for _ in range(3)]
    assert outputs[1] == outputs[2]
    return outputs[0], outputs[1], outputs[1][:-4]


def serve_receive(sock: socket.socket, size: int, deflate: bool) -> None:
    """Send one message of ``size`` bytes (``size``: a multiple of 1 MiB)."""
    blocks = size // MiB
    sock.recv(65536)  # the client's start message
    if deflate:
        first, middle, last = compressed_stream(blocks)
        length = len(first) + len(middle) * (blocks - 2) + len(last)
        sock.sendall(header(0x80 | 0x40 | 0x2, length) + first)
        for _ in range(blocks - 2):
            sock.sendall(middle)
        sock.sendall(last)
    else:
        data = block()
        sock.sendall(header(0x82, size))
        for _ in range(blocks):
            sock.sendall(data)


def serve_send(sock: socket.socket, deflate: bool) -> None:
    """Read one message (counting it, inflating it if compressed), report its size."""
    from lomond.protocol.mask import mask  # the checkout's C masking, if built

    inflater = zlib.decompressobj(-15)
    total = 0
    while True:
        head = recv_exact(sock, 2)
        length = head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(recv_exact(sock, 2), "big")
        elif length == 127:
            length = int.from_bytes(recv_exact(sock, 8), "big")
        key = recv_exact(sock, 4)
        remaining = length
        offset = 0
        while remaining:
            chunk = recv_exact(sock, min(remaining, 1 << 20))
            remaining -= len(chunk)
            if deflate:
                phase = offset % 4
                chunk = mask(key[phase:] + key[:phase], chunk)
                total += len(inflater.decompress(chunk))
            else:
                total += len(chunk)
            offset += len(chunk)
        if head[0] & 0x0F >= 8:
            continue  # a control frame
        if head[0] & 0x80:
            break
    if deflate:
        total += len(inflater.decompress(b"\x00\x00\xff\xff"))
    report = f"received {total}".encode()
    sock.sendall(header(0x81, len(report)) + report)


def server(scenario: str, size: int) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    sock, _ = listener.accept()
    deflate = scenario.endswith("deflate")
    handshake(sock, deflate)
    if scenario.startswith("recv"):
        serve_receive(sock, size, deflate)
    else:
        serve_send(sock, deflate)
    # Answer the client's close frame, then close.
    try:
        sock.settimeout(60)
        while sock.recv(65536):
            pass
    except OSError:
        pass
    sock.close()


# -- the client process -----------------------------------------------------------------


def client(scenario: str, port: int, size: int) -> None:
    from lomond import WebSocket

    deflate = scenario.endswith("deflate")
    websocket = WebSocket(f"ws://127.0.0.1:{port}", compress=deflate, max_message_size=None)
    data = block()
    baseline = vm("VmRSS")
    start = end = 0.0
    received = 0
    report = ""

    def chunks() -> object:
        for _ in range(size // MiB):
            yield data

    for event in websocket.connect(stream=True, close_timeout=10):
        if event.name == "ready":
            start = time.perf_counter()
            if scenario.startswith("recv"):
                websocket.send_text("start")
            else:
                websocket.send_binary(chunks())
        elif event.name == "binary_part":
            received += len(event.data)
            if event.final:
                end = time.perf_counter()
                websocket.close()
        elif event.name == "text_part":
            report += event.text
            if event.final:
                end = time.perf_counter()
                received = int(report.split()[-1])
                websocket.close()
        elif event.name in ("protocol_error", "connect_fail", "rejected"):
            raise SystemExit(f"{scenario}: {event!r}")
        del event
    if received != size:
        raise SystemExit(f"{scenario}: moved {received} bytes, not {size}")
    print(f"{end - start} {vm('VmHWM')} {baseline}", flush=True)


def run_big(scenario: str, size: int) -> tuple[float, int, int]:
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    server_process = subprocess.Popen(
        [sys.executable, __file__, "--serve", scenario, str(size)],
        stdout=subprocess.PIPE,
        env=environment,
    )
    assert server_process.stdout is not None
    port = int(server_process.stdout.readline())
    try:
        output = subprocess.run(
            [sys.executable, __file__, "--client", scenario, str(port), str(size)],
            capture_output=True,
            text=True,
            env=environment,
            check=True,
        ).stdout.split()
    finally:
        server_process.wait(60)
    return float(output[0]), int(output[1]), int(output[2])


# -- parts against whole messages ---------------------------------------------------------


def receive(port: int, count: int, stream: bool) -> float:
    from lomond import WebSocket

    url = f"ws://127.0.0.1:{port}/recv_binary?count={count}&size={MiB}"
    websocket = WebSocket(url)
    received = 0
    start = end = 0.0
    for event in websocket.connect(stream=stream):
        name = event.name
        if name == "binary_part":
            if event.final:
                received += 1
        elif name == "binary":
            received += 1
        elif name == "ready":
            start = time.perf_counter()
            websocket.send_text("start")
            continue
        else:
            continue
        if received == count:
            end = time.perf_counter()
            websocket.close()
    return count * MiB / (end - start) / 1e6


def run_parts(count: int, repeat: int) -> None:
    process = subprocess.Popen(
        [sys.executable, str(HERE / "server.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    sys.path.insert(0, str(ROOT))
    try:
        whole: list[float] = []
        parts: list[float] = []
        ratios: list[float] = []
        receive(port, 10, True)  # warm up
        for _ in range(repeat):
            whole.append(receive(port, count, False))
            parts.append(receive(port, count, True))
            ratios.append(whole[-1] / parts[-1])
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(10)
    print(f"| `parts` ({count} × 1 MiB, median of {repeat}) | MB/s |")
    print("|---|---|")
    print(f"| whole messages (`Binary`) | {statistics.median(whole):,.0f} |")
    print(f"| streamed (`BinaryPart`) | {statistics.median(parts):,.0f} |")
    print(f"| streamed time ÷ whole time | {statistics.median(ratios):.2f}× |")


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        server(sys.argv[2], int(sys.argv[3]))
        return
    if sys.argv[1:2] == ["--client"]:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="MiB per message (default 4096)")
    parser.add_argument("--only", nargs="+", choices=[*BIG, "parts"], default=[*BIG, "parts"])
    parser.add_argument("--count", type=int, default=1000, help="1 MiB messages for parts")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions for parts")
    arguments = parser.parse_args()
    size = arguments.size * MiB
    big = [name for name in arguments.only if name in BIG]
    if big:
        print(
            f"| scenario ({arguments.size:,} MiB, one message) | seconds | MB/s | "
            "peak RSS (VmHWM) | above the start |"
        )
        print("|---|---|---|---|---|")
        for scenario in big:
            seconds, peak, baseline = run_big(scenario, size)
            print(
                f"| `{scenario}` | {seconds:.1f} | {size / seconds / 1e6:,.0f} | "
                f"{peak / MiB:.1f} MiB | {(peak - baseline) / MiB:.1f} MiB |",
                flush=True,
            )
    if "parts" in arguments.only:
        run_parts(arguments.count, arguments.repeat)


if __name__ == "__main__":
    main()
