"""A ``pproxy`` subprocess (from PyPI): HTTP CONNECT, SOCKS5, SOCKS4 and TLS proxies."""

from __future__ import annotations

import contextlib
import queue
import re
import subprocess
import sys
import threading
import time
from typing import Iterator


class PProxy:
    """A ``pproxy`` subprocess listening on a port of its choosing on 127.0.0.1.

    Args:
        listen: pproxy's ``-l`` URI, e.g. ``"http+socks5://127.0.0.1:0#user:password"``.
        extra: More command-line arguments.
    """

    def __init__(self, listen: str, *extra: str) -> None:
        # --auth 0: remember no authenticated client IP (pproxy's default is 30 days,
        # which would let a request without credentials through after one with them).
        command = [sys.executable, "-u", "-m", "pproxy", "-v", "--auth", "0", "-l", listen]
        self.process = subprocess.Popen(
            command + list(extra),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        self.port = self._wait_for_port()

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + 20
        seen = []
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            seen.append(line)
            match = re.search(r"Serving on .*:(\d+) by", line)
            if match:
                return int(match.group(1))
        self.stop()
        raise RuntimeError(f"pproxy did not start: {seen}")

    def url(self, scheme: str, credentials: str = "") -> str:
        return f"{scheme}://{credentials}127.0.0.1:{self.port}"

    def wait_for_log(self, pattern: str, timeout: float = 5.0) -> str:
        """Wait for a log line matching ``pattern`` (a regex) and return it."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log:
                if re.search(pattern, line):
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"pproxy never logged {pattern!r}; it logged {self.log}")
            try:
                self.log.append(self.lines.get(timeout=remaining))
            except queue.Empty:
                pass

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:  # pragma: no cover - pproxy ignores SIGTERM
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextlib.contextmanager
def pproxy(listen: str, *extra: str) -> Iterator[PProxy]:
    server = PProxy(listen, *extra)
    try:
        yield server
    finally:
        server.stop()
