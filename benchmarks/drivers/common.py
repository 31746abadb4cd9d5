"""The harness every driver runs under: arguments in, one JSON result line out.

``run.py`` starts a driver as ``python -S drivers/NAME_driver.py SCENARIO key=value ...``
with ``PYTHONPATH`` set to the measured library's directory only. This module then
calls one of the driver's functions and prints a single JSON object on stdout.

A driver is a subclass of :class:`Driver` (see its methods); the clock runs from
the open connection (after the handshake) to the last message that matters.

Only ``sys`` and ``time`` are imported at the top, so that the import scenario
measures a library's own imports, not the harness's.
"""

from __future__ import annotations

import sys
import time

clock = time.perf_counter
#: What a driver sends before receiving: the server starts its stream on it.
START = "start"


class Measurement:
    """What one driver call measured."""

    __slots__ = ("seconds", "messages", "length", "report")

    def __init__(self, seconds: float, messages: int, length: int, report: str = "") -> None:
        self.seconds = seconds
        #: Data messages received (receive, echo) or sent (send).
        self.messages = messages
        #: Characters (text) or bytes (binary) received, summed over the messages.
        self.length = length
        #: The server's closing report (send scenarios).
        self.report = report


def text_message(size: int) -> str:
    """The ASCII text message the send and echo scenarios use."""
    pattern = "lomond benchmark text message; "
    return (pattern * (size // len(pattern) + 1))[:size]


def binary_message(size: int) -> bytes:
    """The binary message the send scenarios use."""
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def memory_status() -> dict[str, int]:
    """VmHWM and VmRSS of this process, in KiB (Linux); empty elsewhere."""
    fields: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in ("VmHWM", "VmRSS"):
                    fields[name] = int(value.split()[0])
    except OSError:
        pass
    return fields


class Driver:
    """What every driver implements, each with its library's ordinary public API."""

    def import_library(self) -> None:
        """Import what an application imports to use the library (nothing else)."""
        raise NotImplementedError

    def describe(self) -> dict[str, object]:
        """The library's version and where it was imported from (run.py checks it)."""
        raise NotImplementedError

    def receive(self, url: str, count: int, compress: bool) -> Measurement:
        """Connect, send :data:`START`, receive ``count`` data messages, close.

        The clock starts just before :data:`START` is sent (the server waits for it).
        Text arrives as ``str``, binary as ``bytes``, as the library hands them over.
        ``compress`` offers permessage-deflate.
        """
        raise NotImplementedError

    def send(self, url: str, count: int, message: str | bytes) -> Measurement:
        """Connect, send ``message`` ``count`` times, wait for the server's report, close.

        The server sends one text message once all of them arrived; the clock stops there.
        """
        raise NotImplementedError

    def echo(self, url: str, count: int, message: str) -> Measurement:
        """Connect; ``count`` times send ``message`` and wait for it to come back; close."""
        raise NotImplementedError


def main(driver: Driver) -> None:
    """Run the scenario named on the command line with ``driver``; print the result.

    Arguments: ``SCENARIO key=value ...`` with ``url``, ``count``, ``size`` and
    ``compress`` (``1`` or ``0``); the import scenario takes none.
    """
    scenario = sys.argv[1]
    if scenario == "import":
        start = clock()
        driver.import_library()
        result: dict[str, object] = {"seconds": clock() - start}
    else:
        parameters = dict(argument.split("=", 1) for argument in sys.argv[2:])
        driver.import_library()
        result = run_scenario(driver, scenario, parameters)
    result["library"] = driver.describe()
    import json  # only now: the import scenario must not find it imported already

    print(json.dumps(result))


def run_scenario(driver: Driver, scenario: str, parameters: dict[str, str]) -> dict[str, object]:
    """Run one measured scenario; return the result fields."""
    url = parameters["url"]
    count = int(parameters["count"])
    size = int(parameters.get("size", "0"))
    before = memory_status()
    cpu_start = time.process_time()
    if scenario == "receive":
        measurement = driver.receive(url, count, parameters.get("compress") == "1")
    elif scenario == "send_text":
        measurement = driver.send(url, count, text_message(size))
    elif scenario == "send_binary":
        measurement = driver.send(url, count, binary_message(size))
    elif scenario == "echo":
        measurement = driver.echo(url, count, text_message(size))
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    cpu_seconds = time.process_time() - cpu_start
    after = memory_status()
    return {
        "seconds": measurement.seconds,
        # CPU time of the whole process (all threads) over the whole connection,
        # handshake and close included: a cross-check on a loaded machine.
        "cpu_seconds": cpu_seconds,
        "messages": measurement.messages,
        "length": measurement.length,
        "report": measurement.report,
        "rss_before_kib": before.get("VmRSS"),
        "hwm_kib": after.get("VmHWM"),
    }
