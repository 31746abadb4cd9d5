"""ws.latency and a ping_timeout for busy links, over real sockets (docs/timers.rst).

The ``websockets`` server answers pings at once; raw socket servers answer them late,
answer none, or stream data while holding the pongs back.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from peers import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, Report, close_frame
from servers import OPEN, RawConnection, echo, frame, names, raw_server, run, websockets_server

from lomond import WebSocket, persist


def answer_pings_late(delay: float, report: Report | None = None) -> Any:
    """A raw server that answers each ping after ``delay`` seconds, and closes after
    the client's close."""

    def script(connection: RawConnection) -> None:
        connection.handshake()
        connection.sock.settimeout(10)
        while True:
            opcode, payload = connection.recv_frame()
            if opcode == OP_PING:
                time.sleep(delay)
                connection.send(frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                connection.send(close_frame(1000))
                return

    return script


class TestLatency:
    def test_none_before_connecting_and_before_the_first_pong(self) -> None:
        ws = WebSocket("ws://127.0.0.1:9/")
        assert ws.latency is None
        seen: list[Any] = []
        with websockets_server(echo) as url:
            ws = WebSocket(url)

            def on_event(event: Any) -> None:
                seen.append((event.name, ws.latency))
                if event.name == "ready":
                    ws.send_ping(b"first")
                elif event.name == "pong":
                    ws.close()

            collected = run(ws, on_event, poll=60, ping_rate=None)
        assert names(collected) == [*OPEN, "pong", "closed", "disconnected"]
        assert [latency for name, latency in seen[:4]] == [None] * 4
        name, latency = seen[4]
        assert name == "pong" and isinstance(latency, float)
        assert 0 <= latency < 5
        assert ws.latency == latency  # kept after the end, until the next connect()

    def test_from_automatic_pings(self) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)

            def on_event(event: Any) -> None:
                if event.name == "pong":
                    assert event.data == b""  # automatic pings stay empty, as in 0.3.x
                    assert ws.latency is not None
                    ws.close()

            collected = run(ws, on_event, poll=60, ping_rate=0.05)
        assert "pong" in names(collected)
        assert ws.latency is not None and ws.latency >= 0

    def test_a_late_pong_measures_the_delay(self) -> None:
        with raw_server(answer_pings_late(0.3)) as url:
            ws = WebSocket(url)

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    ws.send_ping(b"slow")
                elif event.name == "pong":
                    ws.close()

            run(ws, on_event, poll=60, ping_rate=None)
        assert ws.latency is not None and ws.latency >= 0.3

    def test_a_pong_is_matched_by_payload(self) -> None:
        """The server answers only the second ping, after a delay: the latency is that
        ping's, and an unsolicited pong before it changes nothing."""
        latencies: list[Any] = []

        def script(connection: RawConnection) -> None:
            connection.handshake()
            connection.sock.settimeout(10)
            assert connection.recv_frame() == (OP_PING, b"one")
            assert connection.recv_frame() == (OP_PING, b"two")
            connection.send(frame(OP_PONG, b"unsolicited"))
            time.sleep(0.2)
            connection.send(frame(OP_PONG, b"two"))
            while connection.recv_frame()[0] != OP_CLOSE:
                pass
            connection.send(close_frame(1000))

        with raw_server(script) as url:
            ws = WebSocket(url)

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    ws.send_ping(b"one")
                    time.sleep(1.0)  # "one" is long in flight when "two" is sent
                    ws.send_ping(b"two")
                elif event.name == "pong":
                    latencies.append((event.data, ws.latency))
                    if event.data == b"two":
                        ws.close()

            run(ws, on_event, poll=60, ping_rate=None)
        assert latencies[0] == (b"unsolicited", None)
        data, latency = latencies[1]
        assert data == b"two" and latency is not None
        # Timed from "two" (0.2 s before its pong), not from "one" (1.2 s).
        assert 0.2 <= latency < 1.2

    def test_from_another_thread(self) -> None:
        done = threading.Event()
        with websockets_server(echo) as url:
            ws = WebSocket(url)

            def on_event(event: Any) -> None:
                if event.name == "ready":
                    threading.Thread(target=ws.send_ping, args=(b"t",)).start()
                elif event.name == "pong":
                    done.set()
                    ws.close()

            run(ws, on_event, poll=60, ping_rate=None)
        assert done.is_set() and ws.latency is not None

    def test_each_connection_starts_without(self) -> None:
        with websockets_server(echo) as url:
            ws = WebSocket(url)
            latencies = []
            ready = 0
            for event in persist(ws, poll=60, ping_rate=None, min_wait=0, max_wait=0):
                if event.name == "ready":
                    ready += 1
                    latencies.append(ws.latency)
                    ws.send_ping(b"p")
                elif event.name == "pong":
                    latencies.append(ws.latency)
                    if ready == 2:
                        break
                    ws.force_disconnect()
        assert latencies[0] is None and latencies[2] is None
        assert latencies[1] is not None and latencies[3] is not None


def streaming_server(report: Report, silent_after: float | None = None) -> Any:
    """A raw server that streams a text message every 20 ms, and answers no ping until
    the client closes. With ``silent_after``, it stops streaming after that many
    seconds (still connected)."""

    def script(connection: RawConnection) -> None:
        connection.handshake()
        stop = threading.Event()
        pings = []

        def read() -> None:
            try:
                while True:
                    opcode, payload = connection.recv_frame()
                    if opcode == OP_PING:
                        pings.append(payload)
                    elif opcode == OP_CLOSE:
                        break
            except (OSError, EOFError):
                pass
            stop.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        start = time.monotonic()
        try:
            while not stop.wait(0.02):
                if silent_after is None or time.monotonic() - start < silent_after:
                    connection.send(frame(OP_TEXT, b"tick"))
            report.put("pings", len(pings))
            # Late: the pongs for every ping, then the close.
            connection.send(b"".join(frame(OP_PONG, p) for p in pings) + close_frame(1000))
        except OSError:
            report.put("pings", len(pings))
        reader.join(5)

    return script


class TestBusyLinks:
    def test_by_default_only_pongs_count(self) -> None:
        report = Report()
        with raw_server(streaming_server(report)) as url:
            collected = run(WebSocket(url), poll=60, ping_rate=0.1, ping_timeout=0.5)
        kinds = names(collected)
        assert kinds[:4] == OPEN
        assert kinds[-2:] == ["unresponsive", "disconnected"]
        assert "text" in kinds
        assert collected[-1].reason == "no pong within 0.5s (ping timeout)"
        assert not collected[-1].graceful

    def test_data_counts_as_a_sign_of_life(self) -> None:
        report = Report()
        with raw_server(streaming_server(report)) as url:
            ws = WebSocket(url)
            texts = []

            def on_event(event: Any) -> None:
                if event.name == "text":
                    texts.append(event)
                    # Three times the ping timeout of streaming, without a pong.
                    if texts[-1].received_time - texts[0].received_time > 3.0 and ws.is_active:
                        ws.close()

            collected = run(
                ws,
                on_event,
                poll=60,
                ping_rate=0.1,
                ping_timeout=1.0,
                data_resets_ping_timeout=True,
            )
        kinds = names(collected)
        assert "unresponsive" not in kinds
        assert kinds[-2:] == ["closed", "disconnected"] and collected[-1].graceful
        assert report.get("pings") >= 5  # pings went out all along, unanswered
        assert texts[-1].received_time - texts[0].received_time > 3.0

    def test_silence_still_times_out(self) -> None:
        report = Report()
        with raw_server(streaming_server(report, silent_after=0.5)) as url:
            collected = run(
                WebSocket(url),
                poll=60,
                ping_rate=0.1,
                ping_timeout=0.5,
                data_resets_ping_timeout=True,
            )
        kinds = names(collected)
        assert kinds[-2:] == ["unresponsive", "disconnected"]
        assert kinds.count("text") >= 5
        assert collected[-1].reason == "nothing received within 0.5s (ping timeout)"

    def test_a_late_pong_with_no_data_in_between(self) -> None:
        """A server that answers each ping 0.3 s late and sends nothing else: its
        pongs are the only sign of life, and they are enough."""
        with raw_server(answer_pings_late(0.3)) as url:
            ws = WebSocket(url)
            pongs = []

            def on_event(event: Any) -> None:
                if event.name == "pong":
                    pongs.append(event)
                    if len(pongs) == 3:
                        ws.close()

            collected = run(
                ws,
                on_event,
                poll=60,
                ping_rate=0.2,
                ping_timeout=1.0,
                data_resets_ping_timeout=True,
            )
        assert "unresponsive" not in names(collected)
        assert ws.latency is not None and ws.latency >= 0.3

    def test_through_persist(self) -> None:
        report = Report()
        with raw_server(streaming_server(report)) as url:
            ws = WebSocket(url)
            seen = []
            for event in persist(
                ws,
                poll=60,
                ping_rate=0.1,
                ping_timeout=1.0,
                data_resets_ping_timeout=True,
                min_wait=0,
                max_wait=0,
            ):
                seen.append(event.name)
                if seen.count("text") == 125 and ws.is_active:  # 2.5 s of streaming
                    ws.close()
                if event.name == "disconnected":
                    break
        assert "unresponsive" not in seen

    @pytest.mark.parametrize("value", [None, 1, "yes"])
    def test_the_argument_is_a_bool(self, value: object) -> None:
        ws = WebSocket("ws://127.0.0.1:9/")
        message = "data_resets_ping_timeout must be True or False"
        with pytest.raises(TypeError, match=message):
            ws.connect(data_resets_ping_timeout=value)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=message):
            persist(ws, data_resets_ping_timeout=value)  # type: ignore[arg-type]


def test_the_command_line_option(capsys: pytest.CaptureFixture[str]) -> None:
    from lomond.cli.main import main

    report = Report()
    with raw_server(streaming_server(report)) as url:
        status = main(
            [url, "--ping-rate", "0.1", "--ping-timeout", "1", "--ping-timeout-data"]
            + ["--count", "125", "--json"]
        )
    kinds = [json.loads(line)["name"] for line in capsys.readouterr().out.splitlines()]
    assert status == 0
    assert "unresponsive" not in kinds and kinds.count("text") >= 125


def test_a_server_that_never_answers_pings_costs_16_entries() -> None:
    from lomond.loop.latency import MAX_PINGS_IN_FLIGHT

    def script(connection: RawConnection) -> None:
        connection.handshake()
        connection.sock.settimeout(10)
        while connection.recv_frame()[0] != OP_CLOSE:
            pass  # pings read, never answered
        connection.send(close_frame(1000))

    with raw_server(script) as url:
        ws = WebSocket(url)

        def on_event(event: Any) -> None:
            if event.name == "ready":
                for n in range(1000):
                    ws.send_ping(n.to_bytes(2, "big"))
                assert ws.session is not None
                assert ws.session._round_trips.in_flight == MAX_PINGS_IN_FLIGHT
                ws.close()

        collected = run(ws, on_event, poll=60, ping_rate=None)
    assert names(collected)[-2:] == ["closed", "disconnected"]
    assert ws.latency is None
