"""Deadlines of an open connection (lomond.loop.timers), on plain numbers."""

from __future__ import annotations

from lomond.loop.timers import Periodic, Timers
from lomond.protocol import State


class TestPeriodic:
    def test_not_due_before_start(self) -> None:
        periodic = Periodic(5.0)
        assert not periodic.due(100.0)

    def test_due_every_period_without_drift(self) -> None:
        periodic = Periodic(5.0)
        periodic.start(0.0)
        assert [now for now in (4.9, 5.0, 5.3, 9.99, 10.2, 15.0) if periodic.due(now)] == [
            5.0,
            10.2,
            15.0,
        ]
        assert periodic.when == 20.0

    def test_missed_periods_are_skipped_not_bunched(self) -> None:
        periodic = Periodic(1.0)
        periodic.start(0.0)
        assert periodic.due(7.5)
        assert not periodic.due(7.6)
        assert periodic.when == 8.0


class TestTimers:
    def test_timeout_is_the_nearest_deadline(self) -> None:
        now = [0.0]
        timers = Timers(
            lambda: now[0], poll=5.0, ping_rate=2.0, ping_timeout=7.0, close_timeout=3.0
        )
        timers.ready()
        assert timers.timeout(State.OPEN, None) == 2.0
        assert timers.timeout(State.CLOSING, None) == 5.0  # pings only while open
        assert timers.timeout(State.CLOSING, 1.0) == 4.0  # the close timeout
        now[0] = 6.0
        assert timers.unresponsive(now[0]) is False
        now[0] = 7.0
        assert timers.unresponsive(now[0]) is True

    def test_disabled_timers(self) -> None:
        timers = Timers(lambda: 0.0, poll=None, ping_rate=0, ping_timeout=None, close_timeout=None)
        timers.ready()
        assert timers.timeout(State.OPEN, None) is None
        assert not timers.poll_due(100.0)
        assert not timers.ping_due(100.0)


class TestDataResetsPingTimeout:
    def make(self, data_resets: bool) -> tuple[list[float], Timers]:
        now = [0.0]
        timers = Timers(
            lambda: now[0],
            poll=None,
            ping_rate=None,
            ping_timeout=10.0,
            close_timeout=None,
            data_resets_ping_timeout=data_resets,
        )
        return now, timers

    def test_off_by_default_data_changes_nothing(self) -> None:
        now, timers = self.make(False)
        timers.ready()
        timers.data_received(9.0)
        assert timers.timeout(State.OPEN, None) == 10.0
        assert timers.unresponsive(10.0)
        assert timers.unresponsive_reason == "no pong within 10s (ping timeout)"

    def test_on_data_restarts_the_timeout(self) -> None:
        now, timers = self.make(True)
        timers.ready()
        timers.data_received(9.0)
        assert not timers.unresponsive(10.0)
        assert timers.timeout(State.OPEN, None) == 19.0
        assert timers.unresponsive(19.0)
        assert timers.unresponsive_reason == "nothing received within 10s (ping timeout)"

    def test_data_before_ready_does_not_start_it(self) -> None:
        now, timers = self.make(True)
        timers.data_received(1.0)  # the upgrade response
        assert not timers.unresponsive(100.0)
        now[0] = 50.0
        timers.ready()
        assert timers.timeout(State.OPEN, None) == 10.0

    def test_the_timers_default(self) -> None:
        timers = Timers(lambda: 0.0, None, None, 5.0, None)
        assert timers.data_resets_ping_timeout is False
