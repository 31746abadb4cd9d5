"""persist(): reconnecting with back-off, against scripts and real servers.

The unit tests drive persist() with a scripted stand-in for WebSocket; the scenario
tests run it against a ``websockets`` server that flaps (closes, drops, refuses with
503 + Retry-After, is stopped and restarted on its port) and against a dead port.
Delays come from an injected ``backoff`` (or are cut short by setting
``exit_event`` when ``BackOff`` arrives), so no test sleeps through a back-off.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from http import HTTPStatus
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Generator, Iterator, NamedTuple, cast

import pytest
from peers import OP_TEXT, close_frame, read_until_close, wait_for_eof
from servers import RawConnection, frame, free_port_refused, raw_server, websockets_server
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

import lomond
from lomond import WebSocket
from lomond.events import (
    BackOff,
    Closed,
    Closing,
    Connected,
    ConnectFail,
    Connecting,
    Disconnected,
    Event,
    Poll,
    Ready,
    Rejected,
    Text,
)
from lomond.persist import exponential_backoff, parse_retry_after, persist
from lomond.response import Response as LomondResponse

pytestmark = pytest.mark.timeout(30)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

OK_RESPONSE = LomondResponse(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")


def rejected(retry_after: str | None = None) -> Rejected:
    header = b"" if retry_after is None else b"Retry-After: " + retry_after.encode() + b"\r\n"
    response = LomondResponse(b"HTTP/1.1 503 Service Unavailable\r\n" + header + b"\r\n")
    return Rejected(response, "status 503")


def failed() -> list[Event]:
    return [Connecting("ws://x/"), ConnectFail("connection refused by x:80")]


def opened() -> list[Event]:
    return [
        Connecting("ws://x/"),
        Connected("ws://x/"),
        Ready(OK_RESPONSE, None, set()),
        Poll(),
        Disconnected("closed", graceful=True),
    ]


def refused(retry_after: str | None) -> list[Event]:
    return [
        Connecting("ws://x/"),
        Connected("ws://x/"),
        rejected(retry_after),
        Disconnected("status 503", graceful=True),
    ]


class ScriptedWebSocket:
    """Stands in for WebSocket: each connect() yields the next scripted connection."""

    def __init__(self, *connections: list[Event]) -> None:
        self.connections = list(connections)
        self.connect_calls: list[dict[str, Any]] = []
        self.close_calls = 0
        self.is_closing = False

    def connect(self, **options: Any) -> Iterator[Event]:
        self.connect_calls.append(options)
        index = min(len(self.connect_calls), len(self.connections)) - 1
        yield from self.connections[index]

    def close(self) -> None:
        self.close_calls += 1

    def persist(self, **options: Any) -> Generator[Event, None, None]:
        return persist(cast(WebSocket, self), **options)


class RecordingBackoff:
    """A back-off of a fixed ``delay`` (0: no waiting) that records each ``retries``."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.retries: list[int] = []

    def __call__(self, retries: int) -> float:
        self.retries.append(retries)
        return self.delay


def take(source: Generator[Event, None, None], count: int) -> list[Event]:
    """The first ``count`` events of ``source``, which is then closed."""
    taken = []
    for event in source:
        taken.append(event)
        if len(taken) == count:
            break
    source.close()
    return taken


def run_until(
    websocket: Any, stop: Callable[[Event, list[Event]], bool], **options: Any
) -> list[Event]:
    """Run persist() and set its exit_event once ``stop(event, events_so_far)`` is true."""
    exit_event = threading.Event()
    collected: list[Event] = []
    for event in persist(websocket, exit_event=exit_event, **options):
        collected.append(event)
        if not exit_event.is_set() and stop(event, collected):
            exit_event.set()
    return collected


def run_until_back_off(source: Generator[Event, None, None]) -> list[Event]:
    """Collect events up to the first BackOff; leaving there skips the wait."""
    collected = []
    for event in source:
        collected.append(event)
        if isinstance(event, BackOff):
            break
    source.close()
    return collected


def connections(collected: list[Event]) -> list[list[str]]:
    """Event names, split into one list per connection (each ends with its BackOff)."""
    split: list[list[str]] = [[]]
    for event in collected:
        split[-1].append(event.name)
        if isinstance(event, BackOff):
            split.append([])
    return [names for names in split if names]


def delay_of(event: Event) -> float:
    assert isinstance(event, BackOff), event
    return event.delay


def count(kind: type, collected: list[Event]) -> int:
    return sum(isinstance(event, kind) for event in collected)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


needs_proc_fd = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc/self/fd"
)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def watcher_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "lomond-persist-exit"]


# -- back-off arithmetic --------------------------------------------------------------


class TestBackoffTable:
    """The default delay: min_wait + random() * min(max_wait - min_wait, 2 ** retries)."""

    @pytest.mark.parametrize(
        ("retries", "longest"),
        [(0, 6), (1, 7), (2, 9), (3, 13), (4, 21), (5, 30), (6, 30), (100, 30)],
    )
    def test_defaults_table(self, retries: int, longest: float) -> None:
        # The table in docs/persist.rst.
        assert exponential_backoff(5, 30, lambda: 0.0)(retries) == 5
        assert exponential_backoff(5, 30, lambda: 1.0)(retries) == longest

    def test_random_fraction_scales_the_span(self) -> None:
        assert exponential_backoff(5, 30, lambda: 0.5)(2) == 7.0
        assert exponential_backoff(1, 2, lambda: 0.5)(10) == 1.5

    def test_equal_bounds_give_a_constant_delay(self) -> None:
        backoff = exponential_backoff(3, 3)
        assert {backoff(retries) for retries in range(20)} == {3}

    def test_zero_bounds_give_no_delay(self) -> None:
        assert exponential_backoff(0, 0)(7) == 0

    def test_huge_retries_and_max_wait_do_not_overflow(self) -> None:
        backoff = exponential_backoff(0, float("inf"), lambda: 1.0)
        assert backoff(10_000) == 2.0**64

    def test_default_source_is_random(self) -> None:
        backoff = exponential_backoff(5, 30)
        delays = [backoff(5) for _ in range(200)]
        assert all(5 <= delay < 30 for delay in delays)
        assert len(set(delays)) > 100


class TestRetryAfterParsing:
    """Retry-After: delta seconds or an HTTP date (RFC 9110 §10.2.3)."""

    @pytest.mark.parametrize(
        ("value", "seconds"),
        [("120", 120.0), (" 7 ", 7.0), ("12.5", 12.5), ("0", 0.0), ("-3", 0.0)],
    )
    def test_delta_seconds(self, value: str, seconds: float) -> None:
        assert parse_retry_after(value, now=1000.0) == seconds

    def test_http_date_in_the_future(self) -> None:
        now = 784111777.0 - 90  # "Sun, 06 Nov 1994 08:49:37 GMT" is 784111777
        assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now) == 90.0

    def test_http_date_in_the_past_is_zero(self) -> None:
        assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", time.time()) == 0.0

    @pytest.mark.parametrize(
        "value",
        [
            None,
            "",
            "   ",
            "soon",
            "inf",
            "-inf",
            "nan",
            "1e999",
            "Fri, 01 Jan 10000 00:00:00 GMT",
            "Fri, 01 Jan 99999999999 00:00:00 GMT",
        ],
    )
    def test_unusable_values_are_ignored(self, value: str | None) -> None:
        assert parse_retry_after(value, now=1000.0) is None

    def test_huge_numbers_are_kept_for_the_clamp(self) -> None:
        assert parse_retry_after("9" * 40, now=1000.0) == float("9" * 40)


# -- the event flow, scripted ------------------------------------------------------


class TestArguments:
    def test_min_wait_over_max_wait_is_a_value_error_at_the_call(self) -> None:
        with pytest.raises(ValueError, match="greater than max_wait"):
            ScriptedWebSocket().persist(min_wait=10, max_wait=5)

    @pytest.mark.parametrize(("low", "high"), [(-1, 5), (float("nan"), 5), (0, float("nan"))])
    def test_negative_or_nan_waits_are_value_errors(self, low: float, high: float) -> None:
        with pytest.raises(ValueError):
            ScriptedWebSocket().persist(min_wait=low, max_wait=high)

    def test_equal_waits_are_fine(self) -> None:
        ScriptedWebSocket(failed()).persist(min_wait=0, max_wait=0)

    def test_connect_keywords_pass_through(self) -> None:
        websocket = ScriptedWebSocket(failed())
        source = websocket.persist(
            poll=1.5,
            ping_rate=7,
            ping_timeout=9,
            close_timeout=3.0,
            auto_pong=False,
            backoff=RecordingBackoff(),
        )
        take(source, 2)
        assert websocket.connect_calls == [
            {
                "poll": 1.5,
                "ping_rate": 7,
                "ping_timeout": 9,
                "auto_pong": False,
                "close_timeout": 3.0,
            }
        ]

    def test_0_3_defaults_pass_through(self) -> None:
        websocket = ScriptedWebSocket(failed())
        take(websocket.persist(backoff=RecordingBackoff()), 1)
        assert websocket.connect_calls == [
            {
                "poll": 5,
                "ping_rate": 30,
                "ping_timeout": None,
                "auto_pong": True,
                "close_timeout": 30.0,
            }
        ]

    def test_exported_from_the_package(self) -> None:
        assert lomond.persist is persist


class TestEventFlow:
    """Every event of each connection, then BackOff(delay), then the wait."""

    def test_dead_server_sequence(self) -> None:
        backoff = RecordingBackoff(0.0)
        collected = take(ScriptedWebSocket(failed()).persist(backoff=backoff), 9)
        assert connections(collected) == [["connecting", "connect_fail", "back_off"]] * 3
        assert backoff.retries == [1, 2, 3]
        assert all(event.delay == 0.0 for event in collected if isinstance(event, BackOff))

    def test_every_event_is_yielded_then_back_off(self) -> None:
        script = opened()
        collected = take(ScriptedWebSocket(script).persist(backoff=RecordingBackoff(1.25)), 6)
        assert collected[:5] == script
        assert isinstance(collected[5], BackOff) and collected[5].delay == 1.25

    def test_ready_resets_retries(self) -> None:
        websocket = ScriptedWebSocket(failed(), failed(), opened(), failed(), failed(), opened())
        backoff = RecordingBackoff()
        take(websocket.persist(backoff=backoff), 4 * 3 + 2 * 6)
        # A connection that reached Ready counts 0; each failure in a row adds one.
        assert backoff.retries == [1, 2, 0, 1, 2, 0]

    def test_default_backoff_uses_min_and_max_wait(self) -> None:
        websocket = ScriptedWebSocket(failed())
        delays = [
            event.delay
            for event in take(websocket.persist(min_wait=0, max_wait=0), 30)
            if isinstance(event, BackOff)
        ]
        assert delays == [0.0] * 10

    def test_retry_after_replaces_the_delay(self) -> None:
        websocket = ScriptedWebSocket(refused("0"))
        backoff = RecordingBackoff(99.0)
        collected = take(websocket.persist(backoff=backoff), 5)
        assert [event.name for event in collected] == [
            "connecting",
            "connected",
            "rejected",
            "disconnected",
            "back_off",
        ]
        assert delay_of(collected[-1]) == 0.0
        assert backoff.retries == []

    @pytest.mark.parametrize(
        ("header", "max_wait", "delay"),
        [("120", 30, 30.0), ("12", 30, 12.0), ("12", 5, 5.0), ("-5", 30, 0.0), ("1e9", 0, 0.0)],
    )
    def test_retry_after_is_clamped_to_max_wait(
        self, header: str, max_wait: float, delay: float
    ) -> None:
        websocket = ScriptedWebSocket(refused(header))
        source = websocket.persist(min_wait=0, max_wait=max_wait)
        collected = run_until_back_off(source)
        assert delay_of(collected[-1]) == delay

    def test_retry_after_http_date(self) -> None:
        websocket = ScriptedWebSocket(refused("Sun, 06 Nov 1994 08:49:37 GMT"))
        collected = take(websocket.persist(backoff=RecordingBackoff(9.0)), 5)
        assert delay_of(collected[-1]) == 0.0

    @pytest.mark.parametrize("header", [None, "inf", "nan", "later", ""])
    def test_unusable_retry_after_falls_back_to_backoff(self, header: str | None) -> None:
        websocket = ScriptedWebSocket(refused(header))
        backoff = RecordingBackoff(0.5)
        collected = take(websocket.persist(backoff=backoff), 5)
        assert delay_of(collected[-1]) == 0.5
        assert backoff.retries == [1]

    def test_respect_retry_after_false_ignores_it(self) -> None:
        websocket = ScriptedWebSocket(refused("0"))
        source = websocket.persist(respect_retry_after=False, backoff=RecordingBackoff(2.0))
        assert delay_of(take(source, 5)[-1]) == 2.0

    def test_retry_after_applies_to_that_connection_only(self) -> None:
        websocket = ScriptedWebSocket(refused("0"), failed())
        collected = take(websocket.persist(backoff=RecordingBackoff(0.25)), 8)
        delays = [event.delay for event in collected if isinstance(event, BackOff)]
        assert delays == [0.0, 0.25]

    @pytest.mark.parametrize("delay", [-1.0, float("nan")])
    def test_invalid_backoff_delay_is_a_value_error(self, delay: float) -> None:
        source = ScriptedWebSocket(failed()).persist(backoff=RecordingBackoff(delay))
        with pytest.raises(ValueError, match="invalid delay"):
            list(source)

    def test_a_delay_beyond_timeout_max_does_not_overflow(self) -> None:
        # Event.wait(1e300) would raise OverflowError; persist() waits TIMEOUT_MAX.
        exit_event = threading.Event()
        websocket = ScriptedWebSocket(failed())
        collected = []
        for event in websocket.persist(backoff=RecordingBackoff(1e300), exit_event=exit_event):
            collected.append(event)
            if isinstance(event, BackOff):
                threading.Timer(0.05, exit_event.set).start()
        assert delay_of(collected[-1]) == 1e300


class TestExitScripted:
    """exit_event: checked before each connection, after each event, during the wait."""

    def test_set_before_the_start_yields_nothing(self) -> None:
        websocket = ScriptedWebSocket(opened())
        exit_event = threading.Event()
        exit_event.set()
        assert list(websocket.persist(exit_event=exit_event)) == []
        assert websocket.connect_calls == []

    def test_set_in_the_loop_body_closes_once_and_ends_after_the_connection(self) -> None:
        websocket = ScriptedWebSocket(opened())
        collected = run_until(websocket, lambda event, _: isinstance(event, Ready))
        # The stand-in ignores close(); persist still yields the rest and stops.
        assert [event.name for event in collected] == [
            "connecting",
            "connected",
            "ready",
            "poll",
            "disconnected",
        ]
        assert websocket.close_calls == 1
        assert len(websocket.connect_calls) == 1

    def test_set_on_back_off_skips_the_wait(self) -> None:
        websocket = ScriptedWebSocket(failed())
        start = time.monotonic()
        collected = run_until(
            websocket, lambda event, _: isinstance(event, BackOff), backoff=RecordingBackoff(60)
        )
        assert time.monotonic() - start < 1
        assert [event.name for event in collected] == ["connecting", "connect_fail", "back_off"]
        assert websocket.close_calls == 0


# -- scenarios against real servers -----------------------------------------------


def send_then_close(messages: int) -> Callable[[ServerConnection], None]:
    def handler(connection: ServerConnection) -> None:
        for number in range(messages):
            connection.send(f"tick {number}")
        connection.close()

    return handler


def send_then_drop(messages: int) -> Callable[[ServerConnection], None]:
    def handler(connection: ServerConnection) -> None:
        for number in range(messages):
            connection.send(f"tick {number}")
        # No close frame: the TCP connection just ends.
        connection.socket.shutdown(socket.SHUT_RDWR)

    return handler


def hold_open(connection: ServerConnection) -> None:
    """Read until the client closes or goes away."""
    with contextlib.suppress(ConnectionClosed):
        for _ in connection:
            pass


def reject_503(retry_after: str) -> Callable[[ServerConnection, Request], Response]:
    def process_request(connection: ServerConnection, request: Request) -> Response:
        response = connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "busy\n")
        response.headers["Retry-After"] = retry_after
        return response

    return process_request


class RestartableServer:
    """A ``websockets`` server that can be stopped and started again on its port."""

    def __init__(self, handler: Callable[[ServerConnection], None]) -> None:
        self.handler = handler
        self.port = 0
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[ServerConnection] = set()
        # A handler may start after stop() looked at the connections (the client's
        # Ready comes before it): under the lock, it sees that it is stopping.
        self._lock = threading.Lock()
        self._stopping = False

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self._stopping = False
        server = serve(self._handle, "127.0.0.1", self.port, compression=None)
        self.port = server.socket.getsockname()[1]
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        self._server = server

    def _handle(self, connection: ServerConnection) -> None:
        with self._lock:
            if self._stopping:
                connection.close(1001)
                return
            self._connections.add(connection)
        try:
            self.handler(connection)
        finally:
            self._connections.discard(connection)

    def stop(self) -> None:
        """Stop listening, then close open connections with 1001 (going away)."""
        if self._server is not None:
            # websockets >= 14 closes the connections itself; older ones only stop
            # listening, so close what is left.
            self._server.shutdown()
            with self._lock:
                self._stopping = True
                connections = list(self._connections)
            for connection in connections:
                connection.close(1001)
            assert self._thread is not None
            self._thread.join(5)
            self._server = None


class TestFlappingServer:
    """persist() against a real websockets server that keeps going away."""

    def test_server_closes_after_n_messages(self) -> None:
        with websockets_server(send_then_close(3)) as url:
            collected = run_until(
                WebSocket(url),
                lambda event, so_far: count(BackOff, so_far) == 3,
                backoff=RecordingBackoff(),
            )
        one = ["connecting", "connected", "ready", "poll", "text", "text", "text"]
        assert connections(collected) == [[*one, "closing", "disconnected", "back_off"]] * 3
        assert [event.text for event in collected if isinstance(event, Text)][:3] == [
            "tick 0",
            "tick 1",
            "tick 2",
        ]
        graceful = [event.graceful for event in collected if isinstance(event, Disconnected)]
        assert graceful == [True, True, True]

    def test_server_drops_after_n_messages(self) -> None:
        backoff = RecordingBackoff()
        with websockets_server(send_then_drop(2)) as url:
            collected = run_until(
                WebSocket(url), lambda event, so_far: count(BackOff, so_far) == 3, backoff=backoff
            )
        one = ["connecting", "connected", "ready", "poll", "text", "text", "disconnected"]
        assert connections(collected) == [[*one, "back_off"]] * 3
        graceful = [event.graceful for event in collected if isinstance(event, Disconnected)]
        assert graceful == [False, False, False]
        assert backoff.retries == [0, 0, 0]

    def test_503_with_retry_after_is_clamped_to_max_wait(self) -> None:
        with websockets_server(hold_open, process_request=reject_503("120")) as url:
            collected = run_until(WebSocket(url), lambda event, _: isinstance(event, BackOff))
        assert [event.name for event in collected] == [
            "connecting",
            "connected",
            "rejected",
            "disconnected",
            "back_off",
        ]
        rejection = collected[2]
        assert isinstance(rejection, Rejected)
        assert rejection.response.status_code == 503
        assert delay_of(collected[-1]) == 30.0

    @pytest.mark.parametrize(
        ("header", "delay"),
        [("Fri, 01 Jan 10000 00:00:00 GMT", 0.5), ("9" * 400, 0.5), ("1" + "0" * 30, 30.0)],
        ids=["year-10000", "too-large-for-a-float", "huge"],
    )
    def test_503_with_a_hostile_retry_after(self, header: str, delay: float) -> None:
        """Ignored (the back-off applies) or clamped to ``max_wait``; never an exception."""
        with websockets_server(hold_open, process_request=reject_503(header)) as url:
            collected = run_until(
                WebSocket(url),
                lambda event, _: isinstance(event, BackOff),
                backoff=RecordingBackoff(0.5),
            )
        assert [event.name for event in collected][-3:] == ["rejected", "disconnected", "back_off"]
        assert delay_of(collected[-1]) == delay

    def test_503_with_retry_after_within_max_wait(self) -> None:
        backoff = RecordingBackoff(0.0)
        with websockets_server(hold_open, process_request=reject_503("2")) as url:
            collected = run_until(
                WebSocket(url), lambda event, _: isinstance(event, BackOff), backoff=backoff
            )
        assert delay_of(collected[-1]) == 2.0
        assert backoff.retries == []

    def test_503_retry_after_ignored_when_not_respected(self) -> None:
        with websockets_server(hold_open, process_request=reject_503("2")) as url:
            collected = run_until(
                WebSocket(url),
                lambda event, _: isinstance(event, BackOff),
                respect_retry_after=False,
                backoff=RecordingBackoff(0.75),
            )
        assert delay_of(collected[-1]) == 0.75

    def test_server_stopped_and_restarted_on_the_same_port(self) -> None:
        server = RestartableServer(hold_open)
        server.start()
        port = server.port
        stopper: list[threading.Thread] = []

        def backoff(retries: int) -> float:
            # Called in persist()'s thread between attempts: bring the server back
            # after two refused connections.
            if retries == 2:
                stopper[0].join(5)
                server.start()
            return 0.0

        def stop(event: Event, so_far: list[Event]) -> bool:
            if isinstance(event, Ready) and not stopper:
                # shutdown() waits for our close echo, so it runs in another thread.
                stopper.append(threading.Thread(target=server.stop))
                stopper[0].start()
            return count(Ready, so_far) == 2

        try:
            collected = run_until(WebSocket(server.url), stop, backoff=backoff)
        finally:
            server.stop()
        assert server.port == port
        assert connections(collected) == [
            ["connecting", "connected", "ready", "poll", "closing", "disconnected", "back_off"],
            ["connecting", "connect_fail", "back_off"],
            ["connecting", "connect_fail", "back_off"],
            ["connecting", "connected", "ready", "poll", "closed", "disconnected"],
        ]
        closing, refusal = collected[4], collected[8]
        assert isinstance(closing, Closing) and closing.code == 1001
        assert isinstance(refusal, ConnectFail) and "refused" in refusal.reason

    def test_dead_port(self) -> None:
        url = f"ws://127.0.0.1:{free_port_refused()}/"
        backoff = RecordingBackoff()
        collected = run_until(
            WebSocket(url), lambda event, so_far: count(BackOff, so_far) == 3, backoff=backoff
        )
        assert connections(collected) == [["connecting", "connect_fail", "back_off"]] * 3
        assert backoff.retries == [1, 2, 3]
        assert all(
            "refused" in event.reason for event in collected if isinstance(event, ConnectFail)
        )

    def test_dead_port_default_backoff_is_5_to_7_seconds(self) -> None:
        url = f"ws://127.0.0.1:{free_port_refused()}/"
        collected = run_until(WebSocket(url), lambda event, _: isinstance(event, BackOff))
        assert 5 <= delay_of(collected[-1]) < 7


class TestExitEvent:
    """exit_event during a back-off and during a live connection (idle or busy)."""

    def test_set_from_another_thread_during_back_off(self) -> None:
        url = f"ws://127.0.0.1:{free_port_refused()}/"
        exit_event = threading.Event()
        collected = []
        set_at = 0.0
        timer: threading.Timer | None = None

        def set_exit() -> None:
            nonlocal set_at
            set_at = time.monotonic()
            exit_event.set()

        for event in persist(WebSocket(url), exit_event=exit_event):  # a 5-7 s back-off
            collected.append(event)
            if isinstance(event, BackOff):
                timer = threading.Timer(0.2, set_exit)
                timer.start()
        ended_at = time.monotonic()
        assert timer is not None
        timer.join()
        assert [event.name for event in collected] == ["connecting", "connect_fail", "back_off"]
        assert ended_at - set_at < 0.5

    def test_set_from_another_thread_while_idle(self) -> None:
        """poll=5 and no traffic: the watcher thread closes the connection at once."""
        exit_event = threading.Event()
        collected: list[Event] = []
        set_at = 0.0

        def set_exit() -> None:
            nonlocal set_at
            set_at = time.monotonic()
            exit_event.set()

        timer = threading.Timer(0.3, set_exit)
        with websockets_server(hold_open) as url:
            for event in persist(WebSocket(url), exit_event=exit_event, poll=5, ping_rate=0):
                collected.append(event)
                if isinstance(event, Ready):
                    timer.start()
            ended_at = time.monotonic()
        timer.join()
        assert [event.name for event in collected] == [
            "connecting",
            "connected",
            "ready",
            "poll",
            "closed",
            "disconnected",
        ]
        closed, disconnected = collected[-2], collected[-1]
        assert isinstance(closed, Closed) and closed.code == 1000
        assert isinstance(disconnected, Disconnected) and disconnected.graceful
        assert ended_at - set_at < 1.0

    def test_set_in_the_loop_body_yields_the_rest_of_the_connection(self) -> None:
        def chatter(connection: ServerConnection) -> None:
            for number in range(3):
                connection.send(f"tick {number}")
            for _ in connection:
                pass

        with websockets_server(chatter) as url:
            collected = run_until(WebSocket(url), lambda event, _: isinstance(event, Text))
        names = [event.name for event in collected]
        assert names[:5] == ["connecting", "connected", "ready", "poll", "text"]
        assert set(names[5:-2]) <= {"text"}
        assert names[-2:] == ["closed", "disconnected"]
        assert "back_off" not in names
        disconnected = collected[-1]
        assert isinstance(disconnected, Disconnected) and disconnected.graceful

    def test_set_on_closing_echoes_the_server_code(self) -> None:
        echoed: list[int | None] = []
        handled = threading.Event()

        def handler(connection: ServerConnection) -> None:
            connection.close(4000, "bye")
            received = connection.protocol.close_rcvd
            echoed.append(None if received is None else received.code)
            handled.set()

        with websockets_server(handler) as url:
            collected = run_until(WebSocket(url), lambda event, _: isinstance(event, Closing))
            assert handled.wait(5)
        assert [event.name for event in collected] == [
            "connecting",
            "connected",
            "ready",
            "poll",
            "closing",
            "disconnected",
        ]
        assert echoed == [4000]

    def test_set_while_connecting_ends_without_a_websocket(self) -> None:
        with websockets_server(hold_open) as url:
            collected = run_until(WebSocket(url), lambda event, _: isinstance(event, Connecting))
        assert [event.name for event in collected] == ["connecting", "connect_fail"]

    def test_set_after_connected_abandons_the_handshake(self) -> None:
        with websockets_server(hold_open) as url:
            collected = run_until(WebSocket(url), lambda event, _: isinstance(event, Connected))
        assert [event.name for event in collected] == ["connecting", "connected", "disconnected"]

    def test_watcher_thread_ends_with_persist(self) -> None:
        # A watcher of an earlier persist() may still be finishing its last wait slice.
        wait_until(lambda: not watcher_threads(), timeout=3)
        before = len(watcher_threads())
        exit_event = threading.Event()
        with websockets_server(hold_open) as url:
            websocket = WebSocket(url)
            for event in persist(websocket, exit_event=exit_event):
                if isinstance(event, Ready):
                    assert len(watcher_threads()) == before + 1
                    break
            assert websocket.session is not None and not websocket.session.running
        assert not exit_event.is_set()
        assert wait_until(lambda: len(watcher_threads()) == before, timeout=3)

    def test_no_watcher_thread_without_exit_event(self) -> None:
        before = len(watcher_threads())
        url = f"ws://127.0.0.1:{free_port_refused()}/"
        take(persist(WebSocket(url), backoff=RecordingBackoff()), 2)
        assert len(watcher_threads()) == before


class TestResources:
    """No busy loop, no leaked socket."""

    def test_no_busy_loop_while_idle_or_backing_off(self) -> None:
        exit_event = threading.Event()
        cpu_start = time.process_time()
        # One second connected and idle, then one second in back-off.
        with websockets_server(hold_open) as url:
            websocket = WebSocket(url)
            for event in persist(websocket, exit_event=exit_event, ping_rate=0, min_wait=5):
                if isinstance(event, Ready):
                    threading.Timer(1.0, websocket.force_disconnect).start()
                elif isinstance(event, BackOff):
                    threading.Timer(1.0, exit_event.set).start()
        assert time.process_time() - cpu_start < 0.5

    # The descriptor tests use the raw server: the websockets server creates its own
    # selector in its thread at some point after starting, which would blur the count.

    @needs_proc_fd
    def test_break_closes_the_socket_at_once(self) -> None:
        server_saw_the_end = threading.Event()

        def script(connection: RawConnection) -> None:
            connection.handshake()
            if wait_for_eof(connection) is not None:
                server_saw_the_end.set()

        with raw_server(script) as url:
            baseline = fd_count()
            source = persist(WebSocket(url), exit_event=threading.Event())
            for event in source:
                if isinstance(event, Ready):
                    assert fd_count() > baseline
                    break
            source.close()
            assert server_saw_the_end.wait(1)
            assert wait_until(lambda: fd_count() <= baseline)

    @needs_proc_fd
    def test_reconnects_leave_no_descriptors_behind(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(frame(OP_TEXT, b"tick") + close_frame(1000))
            read_until_close(connection)

        with raw_server(script) as url:
            baseline = fd_count()
            collected = run_until(
                WebSocket(url),
                lambda _, so_far: count(BackOff, so_far) == 50,
                backoff=RecordingBackoff(),
            )
            assert count(Ready, collected) == 50
            assert wait_until(lambda: fd_count() <= baseline)


# -- the example ------------------------------------------------------------------


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestTickerExample:
    """examples/ticker.py: imports, runs, resubscribes after a reconnect, exits."""

    def test_help(self) -> None:
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / "ticker.py"), "--help"],
            env={**os.environ, "PYTHONPATH": str(EXAMPLES.parent)},
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "usage" in result.stdout

    @pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
    def test_ctrl_c_closes_gracefully(self) -> None:
        with websockets_server(hold_open) as url:
            process = subprocess.Popen(
                [sys.executable, "-u", str(EXAMPLES / "ticker.py"), "--url", url],
                env={**os.environ, "PYTHONPATH": str(EXAMPLES.parent)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                assert process.stdout is not None
                first_line = process.stdout.readline()
                assert first_line.startswith("connected to"), first_line
                # The loop now sleeps in its selector (poll=5): the signal handler
                # sets exit_event and persist()'s watcher closes the connection.
                process.send_signal(signal.SIGINT)
                output, errors = process.communicate(timeout=10)
            finally:
                process.kill()
                process.wait()
        assert process.returncode == 0, errors
        assert output.strip() == "disconnected: closed"

    def test_runs_against_a_flapping_ticker_feed(self) -> None:
        ticker = load_example("ticker")
        subscriptions: list[Any] = []

        def feed(connection: ServerConnection) -> None:
            connection.send('{"channel": "status", "type": "update", "data": []}')
            subscriptions.append(json.loads(connection.recv()))
            for price in (100.5, 101.25):
                connection.send(
                    '{"channel": "ticker", "type": "update", "data": [{"symbol": "BTC/USD",'
                    f' "last": {price}, "bid": {price - 0.5}, "ask": {price + 0.5}}}]}}'
                )
            connection.close()

        exit_event = threading.Event()
        lines: list[str] = []

        def output(line: str) -> None:
            lines.append(line)
            if sum(line.startswith("BTC/USD") for line in lines) == 4:
                exit_event.set()

        with websockets_server(feed) as url:
            ticker.run(url, ["BTC/USD"], exit_event, output=output, min_wait=0, max_wait=0)
        tick_lines = [line for line in lines if line.startswith("BTC/USD")]
        assert len(tick_lines) == 4
        assert "100.5" in tick_lines[0] and "101.25" in tick_lines[1]
        assert subscriptions[0] == {
            "method": "subscribe",
            "params": {"channel": "ticker", "symbol": ["BTC/USD"]},
        }
        assert len(subscriptions) >= 2  # subscribed again after the reconnect
        assert any(line.startswith("reconnecting") for line in lines)


# -- soak (not in the default run) ------------------------------------------------


def soak_server_options() -> dict[str, Any]:
    """A server that cycles through the ways a connection ends.

    Every fourth attempt is refused with 503 + ``Retry-After: 0``; the accepted ones
    close after one message, drop after one message, or say ``hold`` and wait for
    the client to close.
    """
    attempts = iter(range(10**9))
    accepted = iter(range(10**9))

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if next(attempts) % 4 == 3:
            return reject_503("0")(connection, request)
        return None

    def handler(connection: ServerConnection) -> None:
        kind = next(accepted) % 3
        if kind == 0:
            send_then_close(1)(connection)
        elif kind == 1:
            send_then_drop(1)(connection)
        else:
            connection.send("hold")
            hold_open(connection)

    # A logger of its own, outside the logging tree: websockets logs every refusal
    # (with a traceback, in older versions), and pytest would keep each record.
    quiet = logging.Logger("soak-server", level=logging.CRITICAL)
    return {"handler": handler, "process_request": process_request, "logger": quiet}


class Checkpoint(NamedTuple):
    reconnects: int
    descriptors: int
    lomond_objects: int  # live objects of lomond's classes
    traced: int  # bytes traced in the whole process (the test's servers included)
    traced_by_lomond: int  # bytes allocated with a lomond module on the stack


#: Allocations made with lomond's code among the innermost TRACED_FRAMES frames.
LOMOND_FRAMES = tracemalloc.Filter(True, str(Path(lomond.__file__).parent / "*"), all_frames=True)
TRACED_FRAMES = 10


def checkpoint(reconnects: int) -> tuple[Checkpoint, tracemalloc.Snapshot]:
    """The figures now, and a snapshot of the allocations by lomond."""
    gc.collect()
    lomond_objects = sum(type(thing).__module__.startswith("lomond") for thing in gc.get_objects())
    snapshot = tracemalloc.take_snapshot().filter_traces([LOMOND_FRAMES])
    by_lomond = sum(statistic.size for statistic in snapshot.statistics("filename"))
    traced = tracemalloc.get_traced_memory()[0]
    return Checkpoint(reconnects, fd_count(), lomond_objects, traced, by_lomond), snapshot


@pytest.mark.slow
@pytest.mark.timeout(900)
@needs_proc_fd
class TestSoak:
    """2,000 reconnects: descriptors and memory stay flat (figures in docs/persist.rst)."""

    RECONNECTS = 2000
    WARM_UP = 200

    def soak(self, url: str) -> None:
        websocket = WebSocket(url)
        exit_event = threading.Event()
        seen: dict[str, int] = {}
        back_offs = 0
        checkpoints: list[Checkpoint] = []
        snapshots: list[tracemalloc.Snapshot] = []
        started = 0.0
        tracemalloc.start(TRACED_FRAMES)
        try:
            # No RecordingBackoff here: its list of retries would grow.
            for event in persist(websocket, exit_event=exit_event, backoff=lambda retries: 0.0):
                seen[event.name] = seen.get(event.name, 0) + 1
                if isinstance(event, Text) and event.text == "hold":
                    websocket.close()
                if not isinstance(event, BackOff):
                    continue
                back_offs += 1
                # Measured after a warm-up: caches and lazily made objects exist by then.
                reconnects = back_offs - self.WARM_UP
                if reconnects >= 0 and reconnects % (self.RECONNECTS // 4) == 0:
                    point, snapshot = checkpoint(reconnects)
                    checkpoints.append(point)
                    # Keep two snapshots only: each one kept adds to the traced memory.
                    snapshots = snapshots[:1] + [snapshot]
                    started = started or time.perf_counter()
                if reconnects == self.RECONNECTS:
                    exit_event.set()
            elapsed = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        first, middle, last = checkpoints[0], checkpoints[2], checkpoints[-1]
        settled = wait_until(lambda: fd_count() <= first.descriptors)
        growth = last.traced - first.traced
        lomond_growth = last.traced_by_lomond - first.traced_by_lomond
        late_lomond_growth = last.traced_by_lomond - middle.traced_by_lomond
        print(
            f"\nsoak {url}: {self.RECONNECTS} reconnects in {elapsed:.1f}s "
            f"({elapsed / self.RECONNECTS * 1000:.2f} ms each, under tracemalloc)\n"
            + "".join(
                f"  after {point.reconnects:4} reconnects: {point.descriptors} descriptors, "
                f"{point.lomond_objects} lomond objects, {point.traced} B traced, "
                f"{point.traced_by_lomond} B by lomond\n"
                for point in checkpoints
            )
            + f"  growth: {growth} B traced ({growth / self.RECONNECTS:.1f} B per reconnect), "
            + f"{lomond_growth} B by lomond ({late_lomond_growth} B in the last 1000); "
            + f"peak {peak} B\n"
            + "".join(
                f"  {statistic}\n"
                for statistic in snapshots[-1].compare_to(snapshots[0], "lineno")[:3]
            )
            + f"  events: {dict(sorted(seen.items()))}"
        )
        assert settled, f"descriptors: {first.descriptors} before, {fd_count()} after"
        assert all(point.descriptors <= first.descriptors for point in checkpoints)
        # A leak of one object per reconnect adds hundreds at each checkpoint; the
        # slack covers which kind of connection happened to end last.
        assert all(point.lomond_objects <= first.lomond_objects + 10 for point in checkpoints)
        # Leaking even one bytes object per reconnect (33 B or more) would add 33 kB
        # over the last 1,000. Before that, CPython 3.8 fills caches attributed to
        # whatever code ran first (cached 1-byte bytes, frame free lists).
        assert late_lomond_growth < 16 * 1024
        assert lomond_growth < 64 * 1024
        assert growth < 256 * 1024

    def test_flapping_server(self) -> None:
        options = soak_server_options()
        with websockets_server(options.pop("handler"), **options) as url:
            self.soak(url)

    def test_dead_port(self) -> None:
        self.soak(f"ws://127.0.0.1:{free_port_refused()}/")
