"""The blocking shell (``lomond.loop.session``): timers, threads and the end of the loop.

Timer tests run in virtual time (see ``virtual_time.py``): the session gets a fake
clock and a selector that moves it, so every deadline fires exactly on time and at
once. Thread and lifecycle tests use the real clock against real servers.
"""

from __future__ import annotations

import functools
import gc
import socket
import threading
import time
from typing import Any, Callable, Dict, Iterator, List

import pytest
from servers import RawConnection, echo, frame, names, raw_server, websockets_server
from virtual_time import FakeClock, Peer, SelectorFactory

from lomond import WebSocket, events
from lomond.errors import TransportFail, WebSocketClosed, WebSocketClosing
from lomond.loop.reader import Reader
from lomond.loop.session import WebsocketSession
from lomond.network.sockets import Opened

PING = 9
CLOSE = 8


def bare_session() -> WebsocketSession:
    """A session that is never run (for its methods alone)."""
    ws = WebSocket("ws://127.0.0.1:1/")
    return WebsocketSession(ws._make_protocol(), ws._make_connector(), url=ws.url)


class VirtualRun:
    """One connection to a :class:`Peer`, run in virtual time.

    Attributes:
        clock: The fake clock (starting at ``start``).
        peer: The scripted server.
        selectors: Records the session's ``select`` calls.
        timeline: ``(event, clock time)`` for every event, once :meth:`run` returned.
    """

    def __init__(self, start: float = 0.0, **peer_options: Any) -> None:
        self.clock = FakeClock(start)
        self.peer = Peer(self.clock, **peer_options)
        self.selectors = SelectorFactory(self.clock, settle=self.peer.wait_quiet)
        self.timeline: list[tuple[events.Event, float]] = []
        self.ws: WebSocket | None = None
        # Index of the first select call after Ready, once the connection is open.
        self._open_from = 0

    def session_class(self) -> Any:
        return functools.partial(
            WebsocketSession, clock=self.clock, selector_factory=self.selectors
        )

    def run(
        self,
        on_event: Callable[[WebSocket, events.Event, float], None] | None = None,
        ws_options: dict[str, Any] | None = None,
        **connect_args: Any,
    ) -> list[tuple[events.Event, float]]:
        """Connect, run the loop to its end, return :attr:`timeline`."""
        with raw_server(self.peer.script) as url:
            ws = self.ws = WebSocket(url, **(ws_options or {}))
            for event in ws.connect(session_class=self.session_class(), **connect_args):
                self.timeline.append((event, self.clock.now))
                if event.name == "ready":
                    self._open_from = len(self.selectors.calls)
                if on_event is not None:
                    on_event(ws, event, self.clock.now)
            assert self.peer.done.wait(5), "the peer did not see the connection end"
        return self.timeline

    def times(self, name: str) -> list[float]:
        """The clock times at which events called ``name`` were yielded."""
        return [when for event, when in self.timeline if event.name == name]

    def names(self) -> list[str]:
        return [event.name for event, _ in self.timeline]

    @property
    def last(self) -> events.Event:
        return self.timeline[-1][0]

    def select_calls_between(self, start: float, end: float) -> list[tuple[float, float | None]]:
        """``(clock time, timeout)`` of the selects after Ready, made in ``[start, end)``."""
        calls = self.selectors.calls[self._open_from :]
        return [(now, timeout) for now, timeout in calls if start <= now < end]


def close_at(when: float) -> Callable[[WebSocket, events.Event, float], None]:
    """A loop body that closes the WebSocket at the first Poll at or after ``when``."""

    def on_event(ws: WebSocket, event: events.Event, now: float) -> None:
        if event.name == "poll" and now >= when:
            ws.close()

    return on_event


def next_multiple(now: float, period: float) -> float:
    """The first multiple of ``period`` strictly after ``now``."""
    return (now // period + 1) * period


class TestPoll:
    """One Poll right after Ready, then one every ``poll`` seconds, on time."""

    @pytest.mark.timeout(10)
    def test_poll_right_after_ready_then_every_poll_seconds(self) -> None:
        virtual = VirtualRun()
        virtual.run(close_at(30), poll=5, ping_rate=None)
        assert virtual.names()[:4] == ["connecting", "connected", "ready", "poll"]
        assert virtual.times("ready") == [0.0]
        assert virtual.times("poll") == [0, 5, 10, 15, 20, 25, 30]
        assert virtual.names()[-2:] == ["closed", "disconnected"]
        assert virtual.last.graceful  # type: ignore[attr-defined]
        open_calls = virtual.select_calls_between(0, 30)
        assert open_calls
        assert all(timeout == 5.0 for _, timeout in open_calls)

    @pytest.mark.timeout(10)
    def test_polls_are_not_shifted_by_traffic(self) -> None:
        virtual = VirtualRun()
        # Binary fractions, so that the arithmetic below is exact.
        message_times = [1.25, 2.75, 6.125, 11.875, 14.5]
        for index, when in enumerate(message_times):
            payload = f"message {index}".encode()
            virtual.clock.call_at(when, functools.partial(virtual.peer.send, frame(1, payload)))
        virtual.run(close_at(20), poll=5, ping_rate=None)
        assert virtual.times("text") == message_times
        assert virtual.times("poll") == [0, 5, 10, 15, 20]
        # Every wait ends at the next Poll, however recent the last message.
        for now, timeout in virtual.select_calls_between(0, 20):
            assert timeout is not None
            assert now + timeout == next_multiple(now, 5), (now, timeout)
        assert (1.25, 3.75) in virtual.selectors.calls

    @pytest.mark.timeout(10)
    def test_a_slow_loop_body_does_not_make_polls_drift(self) -> None:
        virtual = VirtualRun()

        def on_event(ws: WebSocket, event: events.Event, now: float) -> None:
            if event.name == "poll":
                virtual.clock.now += 0.5  # the application takes half a second
                if now >= 20:
                    ws.close()

        virtual.run(on_event, poll=5, ping_rate=None)
        assert virtual.times("poll") == [0, 5, 10, 15, 20]
        assert all(timeout == 4.5 for _, timeout in virtual.select_calls_between(0, 20))

    @pytest.mark.timeout(10)
    def test_a_late_poll_does_not_shift_the_next_ones(self) -> None:
        virtual = VirtualRun()
        virtual.clock.call_at(4.75, lambda: virtual.peer.send(frame(1, b"busy")))

        def on_event(ws: WebSocket, event: events.Event, now: float) -> None:
            if event.name == "text":
                virtual.clock.now += 0.5  # handling it runs past the Poll due at 5
            elif event.name == "poll" and now >= 20:
                ws.close()

        virtual.run(on_event, poll=5, ping_rate=None)
        assert virtual.times("text") == [4.75]
        assert virtual.times("poll") == [0, 5.25, 10, 15, 20]

    @pytest.mark.timeout(10)
    def test_a_stalled_loop_body_gets_no_burst_of_polls(self) -> None:
        virtual = VirtualRun()

        def on_event(ws: WebSocket, event: events.Event, now: float) -> None:
            if event.name == "poll":
                if now == 0:
                    virtual.clock.now = 12.0  # stalls through two poll periods
                elif now >= 25:
                    ws.close()

        virtual.run(on_event, poll=5, ping_rate=None)
        polls = virtual.times("poll")
        assert polls[0] == 0
        assert polls.count(12.0) <= 1
        assert [when for when in polls if when > 12] == [15, 20, 25]

    @pytest.mark.timeout(10)
    def test_the_selector_timeout_is_the_nearest_deadline(self) -> None:
        virtual = VirtualRun()
        virtual.run(close_at(10), poll=5, ping_rate=2)
        assert virtual.times("poll") == [0, 5, 10]
        assert virtual.peer.times(PING) == [2, 4, 6, 8, 10]
        calls = virtual.select_calls_between(0, 10)
        assert calls
        for now, timeout in calls:
            assert timeout is not None
            nearest = min(next_multiple(now, 5), next_multiple(now, 2))
            assert now + timeout == nearest, (now, timeout)
        assert [timeout for now, timeout in calls if now in (4, 5)] == [1.0, 1.0]


class TestAutoPing:
    """Timers: a ping every ``ping_rate`` seconds; 0 or None turns it off."""

    @pytest.mark.timeout(10)
    def test_a_ping_every_ping_rate_seconds(self) -> None:
        virtual = VirtualRun()
        virtual.run(close_at(20), poll=5, ping_rate=3)
        assert virtual.peer.times(PING) == [3, 6, 9, 12, 15, 18]
        assert virtual.times("poll") == [0, 5, 10, 15, 20]
        assert virtual.last.graceful  # type: ignore[attr-defined]

    @pytest.mark.timeout(10)
    @pytest.mark.parametrize("ping_rate", [0, None])
    def test_ping_rate_zero_or_none_disables_pings(self, ping_rate: float | None) -> None:
        virtual = VirtualRun()
        virtual.run(close_at(60), poll=5, ping_rate=ping_rate)
        assert virtual.peer.opcodes() == [CLOSE]
        assert virtual.times("poll") == [5.0 * n for n in range(13)]
        assert all(timeout == 5.0 for _, timeout in virtual.select_calls_between(0, 60))


class TestPingTimeout:
    """``ping_timeout`` without a pong → Unresponsive, then Disconnected."""

    @pytest.mark.timeout(10)
    def test_no_pong_within_ping_timeout(self) -> None:
        virtual = VirtualRun(answer_pings=False)
        virtual.run(poll=60, ping_rate=2, ping_timeout=5)
        assert virtual.names() == [
            "connecting",
            "connected",
            "ready",
            "poll",
            "unresponsive",
            "disconnected",
        ]
        assert virtual.times("unresponsive") == [5.0]
        assert virtual.times("disconnected") == [5.0]
        assert not virtual.last.graceful  # type: ignore[attr-defined]
        assert virtual.peer.times(PING) == [2, 4]
        assert virtual.ws is not None and virtual.ws.is_closed

    @pytest.mark.timeout(10)
    def test_pongs_keep_the_connection_alive(self) -> None:
        virtual = VirtualRun(answer_pings=True)
        virtual.run(close_at(30), poll=10, ping_rate=2, ping_timeout=5)
        assert "unresponsive" not in virtual.names()
        assert virtual.times("pong") == [2.0 * n for n in range(1, 16)]
        assert virtual.times("poll") == [0, 10, 20, 30]
        assert virtual.names()[-2:] == ["closed", "disconnected"]
        assert virtual.last.graceful  # type: ignore[attr-defined]


class TestCloseTimeout:
    """The closing handshake is bounded by ``close_timeout``."""

    @pytest.mark.timeout(10)
    def test_server_never_answers_our_close(self) -> None:
        virtual = VirtualRun(answer_close=False)
        virtual.run(close_at(5), poll=5, ping_rate=None, close_timeout=3)
        assert virtual.peer.times(CLOSE) == [5.0]
        assert virtual.names()[-2:] == ["poll", "disconnected"]
        assert virtual.times("disconnected") == [8.0]
        assert not virtual.last.graceful  # type: ignore[attr-defined]
        assert (5.0, 3.0) in virtual.selectors.calls

    @pytest.mark.timeout(10)
    def test_server_answers_our_close_but_keeps_the_connection(self) -> None:
        virtual = VirtualRun(answer_close=True, drop_after_close=False)
        virtual.run(close_at(5), poll=5, ping_rate=None, close_timeout=3)
        assert virtual.names()[-2:] == ["closed", "disconnected"]
        assert virtual.times("closed") == [5.0]
        assert virtual.times("disconnected") == [8.0]
        last = virtual.last
        assert isinstance(last, events.Disconnected)
        assert (last.reason, last.graceful) == ("closed", True)

    @pytest.mark.timeout(10)
    def test_server_closes_and_keeps_the_connection(self) -> None:
        virtual = VirtualRun(answer_close=False)
        virtual.clock.call_at(
            2.0, lambda: virtual.peer.send(frame(CLOSE, (1001).to_bytes(2, "big")))
        )
        sent_close_times: list[float | None] = []

        def on_event(ws: WebSocket, event: events.Event, now: float) -> None:
            sent_close_times.append(ws.sent_close_time)

        virtual.run(on_event, poll=5, ping_rate=None, close_timeout=3)
        assert virtual.names()[-2:] == ["closing", "disconnected"]
        assert virtual.times("closing") == [2.0]
        assert virtual.peer.times(CLOSE) == [2.0]  # the echo
        assert virtual.times("disconnected") == [5.0]
        last = virtual.last
        assert isinstance(last, events.Disconnected)
        assert (last.reason, last.graceful) == ("closed", True)
        assert sent_close_times[-1] == 2.0


class TestConnectTimeout:
    """``connect_timeout``: one deadline up to the upgrade response."""

    @pytest.mark.timeout(10)
    def test_upgrade_response_never_comes_virtual_time(self) -> None:
        virtual = VirtualRun(upgrade=False)
        virtual.run(ws_options={"connect_timeout": 7}, poll=5, ping_rate=None)
        assert virtual.names() == ["connecting", "connected", "disconnected"]
        assert virtual.times("disconnected") == [7.0]
        last = virtual.last
        assert isinstance(last, events.Disconnected)
        assert not last.graceful
        assert "timed out" in last.reason
        assert virtual.selectors.timeouts[0] == 7.0

    @pytest.mark.timeout(10)
    def test_upgrade_response_never_comes_real_time(self) -> None:
        def script(connection: RawConnection) -> None:
            connection.read_request()
            while connection.sock.recv(65536):
                pass

        with raw_server(script) as url:
            ws = WebSocket(url, connect_timeout=0.3)
            started = time.monotonic()
            collected = list(ws.connect(poll=5, ping_rate=None))
            elapsed = time.monotonic() - started
        assert names(collected) == ["connecting", "connected", "disconnected"]
        assert not collected[-1].graceful
        assert "timed out" in collected[-1].reason
        assert 0.29 <= elapsed < 2.0


class TestSessionClock:
    """``sent_close_time`` and ``session_time`` are read on the session clock."""

    @pytest.mark.timeout(10)
    def test_sent_close_time_and_session_time(self) -> None:
        virtual = VirtualRun(start=100.0)
        seen: dict[str, Any] = {}

        def on_event(ws: WebSocket, event: events.Event, now: float) -> None:
            session = ws.session
            assert session is not None
            if event.name == "ready":
                seen["ready"] = session.session_time
            elif event.name == "poll" and now == 105:
                seen["before_close"] = ws.sent_close_time
                seen["session_time"] = session.session_time
                ws.close()
                seen["after_close"] = ws.sent_close_time
                virtual.clock.now += 1
                ws.close()  # a no-op: the time of the first close stays
                seen["after_second_close"] = ws.sent_close_time

        assert WebSocket("ws://127.0.0.1:1").sent_close_time is None
        virtual.run(on_event, poll=5, ping_rate=None)
        assert seen == {
            "ready": 0.0,
            "before_close": None,
            "session_time": 5.0,
            "after_close": 5.0,
            "after_second_close": 5.0,
        }
        assert virtual.ws is not None
        assert virtual.ws.sent_close_time == 5.0
        assert virtual.last.graceful  # type: ignore[attr-defined]


# -- threads (real clock) ---------------------------------------------------------


class ThreadErrors:
    """Runs functions in threads, keeping what they raise for the test to check."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def start(self, target: Callable[[], None]) -> threading.Thread:
        def guarded() -> None:
            try:
                target()
            except BaseException as error:
                self.errors.append(error)

        thread = threading.Thread(target=guarded, daemon=True)
        self.threads.append(thread)
        thread.start()
        return thread

    def join(self, timeout: float = 5.0) -> None:
        for thread in self.threads:
            thread.join(timeout)
            assert not thread.is_alive(), "a helper thread hangs"


class TestThreads:
    """Sends, ``close()`` and ``force_disconnect()`` from any thread."""

    @pytest.mark.timeout(10)
    def test_concurrent_sends_arrive_whole_and_in_order(self) -> None:
        thread_count, per_thread = 4, 200
        helpers = ThreadErrors()
        barrier = threading.Barrier(thread_count)
        received: dict[int, list[int]] = {n: [] for n in range(thread_count)}
        broken: list[str] = []

        def message(thread: int, index: int) -> str:
            return f"{thread}:{index}:" + "x" * ((index * 997 + thread * 131) % 5000)

        def sender(thread: int) -> Callable[[], None]:
            def send_all() -> None:
                barrier.wait(5)
                for index in range(per_thread):
                    ws.send_text(message(thread, index))

            return send_all

        with websockets_server(echo) as url:
            ws = WebSocket(url)
            total = 0
            for event in ws.connect(poll=0.5, ping_rate=None, close_timeout=5):
                if isinstance(event, events.Ready):
                    for thread in range(thread_count):
                        helpers.start(sender(thread))
                elif isinstance(event, events.Text):
                    thread_text, index_text, _ = event.text.split(":", 2)
                    thread, index = int(thread_text), int(index_text)
                    if event.text != message(thread, index):
                        broken.append(event.text[:40])
                    received[thread].append(index)
                    total += 1
                    if total == thread_count * per_thread:
                        ws.close()
            helpers.join()
        assert helpers.errors == []
        assert broken == []
        assert received == {n: list(range(per_thread)) for n in range(thread_count)}
        assert isinstance(event, events.Disconnected) and event.graceful

    @pytest.mark.timeout(10)
    def test_close_from_another_thread_ends_the_loop_promptly(self) -> None:
        helpers = ThreadErrors()
        closed_at: list[float] = []

        def close_later() -> None:
            time.sleep(0.2)
            closed_at.append(time.monotonic())
            ws.close()

        with websockets_server(echo) as url:
            ws = WebSocket(url)
            collected = []
            for event in ws.connect(poll=60, ping_rate=None):
                collected.append(event)
                if event.name == "ready":
                    helpers.start(close_later)
            ended_at = time.monotonic()
            helpers.join()
        assert helpers.errors == []
        assert names(collected)[-2:] == ["closed", "disconnected"]
        assert collected[-1].graceful
        assert ended_at - closed_at[0] < 2.0

    @pytest.mark.timeout(10)
    def test_close_from_another_thread_wakes_the_loop_for_close_timeout(self) -> None:
        """The server never answers: only the new close deadline can end the wait."""
        helpers = ThreadErrors()
        closed_at: list[float] = []

        def close_later() -> None:
            time.sleep(0.2)
            closed_at.append(time.monotonic())
            ws.close()

        def silent(connection: RawConnection) -> None:
            connection.handshake()
            while connection.sock.recv(65536):
                pass

        with raw_server(silent) as url:
            ws = WebSocket(url)
            collected = []
            for event in ws.connect(poll=60, ping_rate=None, close_timeout=0.5):
                collected.append(event)
                if event.name == "ready":
                    helpers.start(close_later)
            ended_at = time.monotonic()
            helpers.join()
        assert helpers.errors == []
        assert names(collected) == ["connecting", "connected", "ready", "poll", "disconnected"]
        assert not collected[-1].graceful
        assert 0.45 <= ended_at - closed_at[0] < 2.0

    @pytest.mark.timeout(10)
    def test_force_disconnect_from_another_thread(self) -> None:
        helpers = ThreadErrors()
        forced_at: list[float] = []

        def force_later() -> None:
            time.sleep(0.2)
            forced_at.append(time.monotonic())
            ws.force_disconnect()

        with websockets_server(echo) as url:
            ws = WebSocket(url)
            ws.force_disconnect()  # before connecting: nothing to do, no error
            collected = []
            for event in ws.connect(poll=60, ping_rate=None):
                collected.append(event)
                if event.name == "ready":
                    helpers.start(force_later)
            ended_at = time.monotonic()
            helpers.join()
            ws.force_disconnect()  # after the end: still no error
        assert helpers.errors == []
        assert names(collected) == ["connecting", "connected", "ready", "poll", "disconnected"]
        assert not collected[-1].graceful
        assert ended_at - forced_at[0] < 2.0
        assert ws.is_closed

    @pytest.mark.timeout(10)
    def test_a_server_that_stops_reading_cannot_stall_the_loop(self) -> None:
        helpers = ThreadErrors()
        release = threading.Event()
        outcome: list[BaseException | None] = []

        def stop_reading(connection: RawConnection) -> None:
            connection.handshake()
            release.wait(10)

        def send_50_mib() -> None:
            chunk = bytes(1024 * 1024)
            try:
                for _ in range(50):
                    ws.send_binary(chunk)
            except (TransportFail, WebSocketClosing, WebSocketClosed) as error:
                outcome.append(error)
            else:
                outcome.append(None)

        poll_times: list[float] = []
        try:
            with raw_server(stop_reading) as url:
                ws = WebSocket(url)
                collected = []
                close_requested_at: float | None = None
                for event in ws.connect(poll=0.1, ping_rate=None, close_timeout=0.5):
                    collected.append(event)
                    now = time.monotonic()
                    if event.name == "ready":
                        ready_at = now
                        helpers.start(send_50_mib)
                    elif event.name == "poll":
                        poll_times.append(now)
                        if close_requested_at is None and now - ready_at >= 1.0:
                            close_requested_at = now
                            ws.close()
                ended_at = time.monotonic()
                helpers.join()
        finally:
            release.set()
        assert helpers.errors == []
        assert len(outcome) == 1 and outcome[0] is not None, outcome
        assert close_requested_at is not None
        assert names(collected)[-1] == "disconnected"
        assert not collected[-1].graceful
        assert 0.45 <= ended_at - close_requested_at < 2.0
        # Polls kept coming every 0.1 s while the other thread was stuck sending.
        before_close = [when for when in poll_times if when <= close_requested_at]
        assert len(before_close) >= 8
        gaps = [later - earlier for earlier, later in zip(before_close, before_close[1:])]
        assert max(gaps) < 0.35, gaps


# -- leaving the loop -------------------------------------------------------------


class EofWatcher:
    """A raw server that completes the upgrade, then notes when the client hangs up."""

    def __init__(self) -> None:
        self.eof = threading.Event()

    def script(self, connection: RawConnection) -> None:
        connection.handshake()
        try:
            while connection.sock.recv(65536):
                pass
        except OSError:
            pass
        self.eof.set()


def leave_by_break(ws: WebSocket) -> None:
    for event in ws.connect(poll=60, ping_rate=None):
        if event.name == "poll":
            break


def leave_by_exception(ws: WebSocket) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        for event in ws.connect(poll=60, ping_rate=None):
            if event.name == "poll":
                raise Boom


def leave_by_generator_close(ws: WebSocket) -> None:
    generator = ws.connect(poll=60, ping_rate=None)
    while next(generator).name != "poll":
        pass
    generator.close()


def leave_by_garbage_collection(ws: WebSocket) -> None:
    generator: Iterator[events.Event] | None = ws.connect(poll=60, ping_rate=None)
    assert generator is not None
    while next(generator).name != "poll":
        pass
    generator = None
    gc.collect()


class TestLeavingTheLoop:
    """Leaving the loop early closes the socket at once."""

    @pytest.mark.timeout(10)
    @pytest.mark.parametrize(
        "leave",
        [leave_by_break, leave_by_exception, leave_by_generator_close, leave_by_garbage_collection],
        ids=["break", "exception", "generator-close", "garbage-collected"],
    )
    def test_leaving_closes_the_socket(self, leave: Callable[[WebSocket], None]) -> None:
        watcher = EofWatcher()
        with raw_server(watcher.script) as url:
            ws = WebSocket(url)
            leave(ws)
            assert watcher.eof.wait(1.0), "the server did not see EOF"
        assert ws.is_closed
        assert not ws.is_active
        with pytest.raises(WebSocketClosed):
            ws.send_text("too late")
        with pytest.raises(WebSocketClosed):
            ws.send_binary(b"too late")
        ws.close()  # harmless after the end
        session = ws.session
        assert session is not None and not session.running


class FrameCollector:
    """A raw server that completes the upgrade and collects the client's frames."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self.done = threading.Event()

    def script(self, connection: RawConnection) -> None:
        connection.handshake()
        try:
            while True:
                opcode, payload = connection.recv_frame()
                self.frames.append((opcode, payload))
                if opcode == CLOSE:
                    connection.send(frame(CLOSE, payload))
                    break
        except (OSError, ConnectionError):
            pass
        finally:
            self.done.set()

    def texts(self) -> list[str]:
        return [payload.decode() for opcode, payload in self.frames if opcode == 1]


def socket_sends(records: List[Dict[str, Any]]) -> list[Any]:
    """The trace as ``("send", length)`` per ``socket_send`` and the names of the calls."""
    steps: list[Any] = []
    for record in records:
        stage = record["stage"]
        if stage == "socket_send":
            steps.append(("socket", record["length"]))
        elif stage in ("send_text", "send_binary", "close_requested"):
            steps.append(stage)
    return steps


Records = List[Dict[str, Any]]


def collect_frames(
    on_event: Callable[[WebSocket, events.Event, Records], None],
) -> tuple[FrameCollector, Records]:
    """Run a connection to a :class:`FrameCollector` with a trace, to its end.

    ``on_event(ws, event, records)`` sees every event and the trace so far.
    """
    collector = FrameCollector()
    records: Records = []
    with raw_server(collector.script) as url:
        ws = WebSocket(url, trace=records.append)
        for event in ws.connect(poll=60, ping_rate=None):
            on_event(ws, event, records)
        assert collector.done.wait(5)
    return collector, records


class TestGatheredSends:
    """Sends from the loop body: the first 8 are written at once, the next ones
    together when the application asks for the next event (docs/sending.rst)."""

    @pytest.mark.timeout(10)
    def test_first_sends_at_once_the_rest_when_the_loop_resumes(self) -> None:
        seen: dict[str, list[Any]] = {}
        messages = [f"message {index:02}" for index in range(12)]

        def on_event(ws: WebSocket, event: events.Event, records: Records) -> None:
            if event.name == "ready":
                seen["start"] = [len(records)]
                for message in messages:
                    ws.send_text(message)
                seen["during"] = socket_sends(records[seen["start"][0] :])
            elif event.name == "poll":
                seen["after"] = socket_sends(records[seen["start"][0] :])
                ws.close()

        collector, _ = collect_frames(on_event)
        # One frame of "message NN" is 2 + 4 + 10 bytes.
        assert seen["during"] == [("socket", 16), "send_text"] * 8 + ["send_text"] * 4
        assert seen["after"] == seen["during"] + [("socket", 4 * 16)]
        assert collector.texts() == messages

    @pytest.mark.timeout(10)
    def test_a_large_burst_is_written_every_64_kib(self) -> None:
        message = "x" * 1000  # 1,008 bytes a frame
        sizes: list[int] = []

        def on_event(ws: WebSocket, event: events.Event, records: Records) -> None:
            if event.name == "ready":
                start = len(records)
                for _ in range(200):
                    ws.send_text(message)
                steps = socket_sends(records[start:])
                sizes.extend(step[1] for step in steps if isinstance(step, tuple))
                ws.close()

        collector, _ = collect_frames(on_event)
        # The first 8 frames alone, then a write as soon as 64 KiB have gathered (66
        # frames), twice; the last 60 frames wait for the loop.
        assert sizes == [1008] * 8 + [1008 * 66] * 2
        assert collector.texts() == [message] * 200

    @pytest.mark.timeout(10)
    def test_sends_before_leaving_the_loop_are_not_lost(self) -> None:
        collector = FrameCollector()
        with raw_server(collector.script) as url:
            ws = WebSocket(url)
            for event in ws.connect(poll=60, ping_rate=None):
                if event.name == "ready":
                    for index in range(12):
                        ws.send_text(f"last words {index}")
                    break
            assert collector.done.wait(5)
        assert collector.texts() == [f"last words {index}" for index in range(12)]

    @pytest.mark.timeout(10)
    def test_sends_from_another_thread_are_written_at_once(self) -> None:
        during: list[Any] = []

        def on_event(ws: WebSocket, event: events.Event, records: Records) -> None:
            if event.name == "ready":
                for _ in range(9):
                    ws.send_text("from the loop")  # the 9th gathers
                start = len(records)
                worker = threading.Thread(
                    target=lambda: [ws.send_text("from a worker") for _ in range(3)]
                )
                worker.start()
                worker.join(5)
                during.extend(socket_sends(records[start:]))
                ws.close()

        collector, _ = collect_frames(on_event)
        # The worker's first write takes the gathered frame along, in order.
        assert during == [("socket", 38), "send_text"] + [("socket", 19), "send_text"] * 2
        assert collector.texts() == ["from the loop"] * 9 + ["from a worker"] * 3

    @pytest.mark.timeout(10)
    def test_force_disconnect_writes_what_gathered_first(self) -> None:
        def on_event(ws: WebSocket, event: events.Event, records: Records) -> None:
            if event.name == "ready":
                for index in range(12):
                    ws.send_text(f"before the drop {index}")
                ws.force_disconnect()

        collector, _ = collect_frames(on_event)
        assert collector.texts() == [f"before the drop {index}" for index in range(12)]

    @pytest.mark.timeout(10)
    def test_closing_the_websocket_writes_what_gathered(self) -> None:
        # The generator is kept (so not finalised) after the loop is left: the
        # context manager's exit closes the socket, writing what gathered first.
        collector = FrameCollector()
        with raw_server(collector.script) as url:
            with WebSocket(url) as ws:
                generator = ws.connect(poll=60, ping_rate=None)
                for event in generator:
                    if event.name == "ready":
                        for index in range(12):
                            ws.send_text(f"kept {index}")
                        break
            assert collector.done.wait(5)
            generator.close()
        assert collector.texts() == [f"kept {index}" for index in range(12)]

    @pytest.mark.timeout(10)
    def test_a_burst_of_sends_is_echoed_whole_and_in_order(self) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            received: list[str] = []
            for event in ws.connect(poll=60, ping_rate=None):
                if event.name == "ready":
                    for index in range(1000):
                        ws.send_text(str(index))
                elif event.name == "text":
                    received.append(event.text)
                    if event.text == "999":
                        ws.close()
        assert received == [str(index) for index in range(1000)]
        assert event.name == "disconnected" and event.graceful


class TestSpinBeforeSleeping:
    """The loop polls the socket briefly before it sleeps, while that pays."""

    @staticmethod
    def polls(reader: Reader, results: list[bool]) -> list[str]:
        """Call ``spin`` once per result; the read answers from ``results``."""
        answers = iter(results)
        calls: list[str] = []
        reader.spin_time = 0.0  # one read per poll
        for _ in range(len(results) * 200):
            before = reader._spin_skip
            try:
                reader.spin(lambda: next(answers), None)
            except StopIteration:
                break
            calls.append("skip" if before else "poll")
        return calls

    def test_a_poll_that_finds_nothing_skips_1_2_4_waits(self) -> None:
        calls = self.polls(Reader(threading.Lock()), [False, False, False, True, False])
        assert calls == (
            ["poll", "skip"]  # nothing: skip 1
            + ["poll", "skip", "skip"]  # nothing again: skip 2
            + ["poll", "skip", "skip", "skip", "skip"]  # and 4
            + ["poll"]  # data: back to polling every time
            + ["poll", "skip"]  # nothing: skip 1 again
        )

    def test_skips_are_capped(self) -> None:
        calls = self.polls(Reader(threading.Lock()), [False] * 10)
        runs = "".join("p" if call == "poll" else "s" for call in calls).split("p")[1:]
        assert [len(run) for run in runs] == [1, 2, 4, 8, 16, 32, 64, 128, 128, 128]

    @pytest.mark.timeout(10)
    def test_no_polling_with_a_spin_time_of_zero(self) -> None:
        spins: list[float | None] = []

        class NoSpin(WebsocketSession):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.spin_time = 0
                spin = self._reader.spin

                def recorded(read: Callable[[], bool], timeout: float | None) -> bool:
                    spins.append(timeout)
                    return spin(read, timeout)

                self._reader.spin = recorded  # type: ignore[method-assign]

        with websockets_server(echo) as url:
            ws = WebSocket(url)
            for event in ws.connect(session_class=NoSpin, poll=60, ping_rate=None):
                if event.name == "ready":
                    ws.send_text("hello")
                elif event.name == "text":
                    ws.close()
        assert spins == []
        assert event.name == "disconnected" and event.graceful

    def test_data_waiting_is_found_by_polling(self) -> None:
        reader = Reader(threading.Lock())
        fed: list[bytes] = []
        ours, theirs = socket.socketpair()
        with ours, theirs:
            ours.setblocking(False)
            reader.attach(Opened(ours, None))

            def read() -> bool:
                return reader.read(lambda data: fed.append(bytes(data)), pytest.fail)

            theirs.sendall(b"HTTP/1.1 101 Switching Protocols\r\n")
            assert reader.spin(read, None)
            assert reader._spin_skip == 0
            assert fed == [b"HTTP/1.1 101 Switching Protocols\r\n"]
            # Nothing more: polling gives up after spin_time and skips the next wait.
            started = time.perf_counter()
            assert not reader.spin(read, None)
            assert time.perf_counter() - started >= reader.spin_time
            assert reader._spin_skip == 1

    def test_polling_stops_at_the_next_deadline(self) -> None:
        reader = Reader(threading.Lock())
        reader.spin_time = 10.0
        ours, theirs = socket.socketpair()
        with ours, theirs:
            ours.setblocking(False)
            reader.attach(Opened(ours, None))
            started = time.perf_counter()
            assert not reader.spin(lambda: reader.read(pytest.fail, pytest.fail), 0.001)
            assert time.perf_counter() - started < 1.0
