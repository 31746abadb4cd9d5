"""lomond.loop.latency: which pong answers which ping (RFC 6455 §5.5.3)."""

from __future__ import annotations

from typing import Any

import pytest

from lomond.loop.latency import MAX_PINGS_IN_FLIGHT, RoundTrips


class TestMatching:
    def test_none_until_the_first_pong(self) -> None:
        trips = RoundTrips()
        assert trips.latency is None
        trips.ping_sent(b"", 1.0)
        assert trips.latency is None and trips.in_flight == 1

    def test_one_round_trip(self) -> None:
        trips = RoundTrips()
        trips.ping_sent(b"a", 1.0)
        assert trips.pong_received(b"a", 1.25) == pytest.approx(0.25)
        assert trips.latency == pytest.approx(0.25)
        assert trips.in_flight == 0

    def test_the_payload_picks_the_ping(self) -> None:
        trips = RoundTrips()
        trips.ping_sent(b"a", 1.0)
        trips.ping_sent(b"b", 2.0)
        assert trips.pong_received(b"b", 2.5) == pytest.approx(0.5)
        # "a" came before the answered ping: the server answered only the latest.
        assert trips.in_flight == 0
        assert trips.pong_received(b"a", 3.0) is None
        assert trips.latency == pytest.approx(0.5)

    def test_equal_payloads_are_answered_in_order(self) -> None:
        trips = RoundTrips()
        trips.ping_sent(b"", 1.0)
        trips.ping_sent(b"", 2.0)
        assert trips.pong_received(b"", 2.5) == pytest.approx(1.5)
        assert trips.pong_received(b"", 2.75) == pytest.approx(0.75)
        assert trips.in_flight == 0

    def test_an_unsolicited_pong_changes_nothing(self) -> None:
        trips = RoundTrips()
        trips.ping_sent(b"a", 1.0)
        assert trips.pong_received(b"z", 1.5) is None
        assert trips.latency is None and trips.in_flight == 1
        trips.pong_received(b"a", 2.0)
        assert trips.pong_received(b"a", 9.0) is None
        assert trips.latency == pytest.approx(1.0)

    def test_a_later_ping_keeps_waiting(self) -> None:
        trips = RoundTrips()
        trips.ping_sent(b"a", 1.0)
        trips.ping_sent(b"b", 2.0)
        trips.pong_received(b"a", 3.0)
        assert trips.in_flight == 1
        assert trips.pong_received(b"b", 3.5) == pytest.approx(1.5)

    def test_never_negative(self) -> None:
        trips = RoundTrips()
        trips.ping_sent(b"a", 5.0)
        assert trips.pong_received(b"a", 4.0) == 0.0

    def test_bytes_like_payloads(self) -> None:
        trips = RoundTrips()
        trips.ping_sent(bytearray(b"x"), 1.0)
        assert trips.pong_received(b"x", 2.0) == pytest.approx(1.0)


class TestBounded:
    def test_a_server_that_never_answers_costs_a_bounded_list(self) -> None:
        trips = RoundTrips()
        for n in range(10 * MAX_PINGS_IN_FLIGHT):
            trips.ping_sent(n.to_bytes(4, "big"), float(n))
        assert trips.in_flight == MAX_PINGS_IN_FLIGHT
        # The oldest were forgotten; the most recent still match.
        assert trips.pong_received((0).to_bytes(4, "big"), 1000.0) is None
        last = 10 * MAX_PINGS_IN_FLIGHT - 1
        assert trips.pong_received(last.to_bytes(4, "big"), last + 0.5) == pytest.approx(0.5)

    def test_memory_is_bounded_by_measure(self) -> None:
        import tracemalloc

        trips = RoundTrips()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for n in range(100_000):
                trips.ping_sent(n.to_bytes(4, "big") * 31, float(n))  # 124-byte payloads
            used = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        # 16 pings of 124 bytes and their tuples: a few KiB, not 100,000 of them.
        assert used < 16 * 1024, used


class TestInVirtualTime:
    """The session measures round trips on its injected clock, exactly."""

    @pytest.mark.timeout(10)
    def test_latency_of_automatic_pings(self) -> None:
        from servers import frame
        from test_session import VirtualRun, close_at

        virtual = VirtualRun(answer_pings=False)

        def pong() -> None:
            assert virtual.peer.connection is not None
            virtual.peer.connection.send(frame(0xA, b""))

        virtual.clock.call_at(2.75, pong)  # the ping of t=2, answered 0.75 s later
        virtual.clock.call_at(4.25, pong)  # the ping of t=4, 0.25 s later
        seen = []

        def on_event(ws: Any, event: Any, now: float) -> None:
            if event.name == "pong":
                seen.append((now, ws.latency))
            close_at(5)(ws, event, now)

        virtual.run(on_event, poll=5, ping_rate=2)
        assert seen == [(2.75, 0.75), (4.25, 0.25)]

    @pytest.mark.timeout(10)
    @pytest.mark.parametrize(("data_resets", "unresponsive"), [(False, 5.0), (True, 14.0)])
    def test_data_as_a_sign_of_life(self, data_resets: bool, unresponsive: float) -> None:
        from servers import frame
        from test_session import VirtualRun

        virtual = VirtualRun(answer_pings=False)

        def text() -> None:
            assert virtual.peer.connection is not None
            virtual.peer.connection.send(frame(0x1, b"tick"))

        for when in (3.0, 6.0, 9.0):
            virtual.clock.call_at(when, text)
        virtual.run(poll=60, ping_rate=2, ping_timeout=5, data_resets_ping_timeout=data_resets)
        assert virtual.times("unresponsive") == [unresponsive]
        expected = "nothing received within 5s" if data_resets else "no pong within 5s"
        assert virtual.last.reason == f"{expected} (ping timeout)"  # type: ignore[attr-defined]
