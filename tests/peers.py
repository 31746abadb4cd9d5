"""More helpers for the scenario tests, on top of :mod:`servers`.

Raw server scripts report what they saw through a :class:`Report` (a thread-safe
record with an event to wait on), so assertions run in the test's thread.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from typing import Any, Callable, Iterator

from servers import RawConnection, frame

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return frame(OP_CLOSE, close_payload(code, reason))


def parse_close(payload: bytes) -> tuple[int | None, bytes]:
    if len(payload) < 2:
        return None, b""
    return int.from_bytes(payload[:2], "big"), payload[2:]


def read_until_close(connection: RawConnection, timeout: float = 5.0) -> list[tuple[int, bytes]]:
    """Read client frames up to and including its close frame (or EOF)."""
    connection.sock.settimeout(timeout)
    frames: list[tuple[int, bytes]] = []
    while True:
        try:
            opcode, payload = connection.recv_frame()
        except (EOFError, ConnectionResetError):
            return frames
        frames.append((opcode, payload))
        if opcode == OP_CLOSE:
            return frames


def wait_for_eof(connection: RawConnection, timeout: float = 5.0) -> float | None:
    """Read and discard until the client closes; return the seconds waited (``None``: no EOF)."""
    start = time.monotonic()
    connection.sock.settimeout(timeout)
    try:
        while connection.sock.recv(65536):
            if time.monotonic() - start > timeout:
                return None
    except socket.timeout:
        return None
    except OSError:
        pass  # a reset is an end of stream too
    return time.monotonic() - start


class Report:
    """What a server thread saw: named values, plus ``done`` once the script ended."""

    def __init__(self) -> None:
        self._values: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._seen: dict[str, Any] = {}
        self.done = threading.Event()

    def put(self, name: str, value: Any) -> None:
        self._values.put((name, value))

    def get(self, name: str, timeout: float = 5.0) -> Any:
        """Wait for the value called ``name`` (``AssertionError`` if it never comes)."""
        deadline = time.monotonic() + timeout
        while name not in self._seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"the server never reported {name!r}")
            try:
                key, value = self._values.get(timeout=remaining)
            except queue.Empty:
                continue
            self._seen[key] = value
        return self._seen[name]


class Worker(threading.Thread):
    """A thread whose exception is kept and re-raised by :meth:`finish`."""

    def __init__(self, target: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self._work = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._work()
        except BaseException as error:  # re-raised in the test's thread
            self.error = error

    def finish(self, timeout: float = 5.0) -> None:
        self.join(timeout)
        assert not self.is_alive(), "worker thread did not finish"
        if self.error is not None:
            raise self.error


@contextlib.contextmanager
def started(target: Callable[[], None]) -> Iterator[Worker]:
    """Run ``target`` in a :class:`Worker`; join it (and raise its error) on exit."""
    worker = Worker(target)
    worker.start()
    yield worker
    worker.finish()


def request_header_names(request: bytes) -> list[str]:
    """The header names of an HTTP request, lower-cased, in order."""
    head = request.split(b"\r\n\r\n", 1)[0]
    return [line.split(b":", 1)[0].decode("ascii").lower() for line in head.split(b"\r\n")[1:]]


def request_headers(request: bytes) -> dict[str, str]:
    head = request.split(b"\r\n\r\n", 1)[0]
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.decode("ascii").lower()] = value.strip().decode("latin-1")
    return headers
