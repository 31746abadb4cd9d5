"""lomond.loop.engine: turns, the schedule and waking, with plain generators."""

from __future__ import annotations

import threading
import time
from typing import Any, Generator

from lomond import events
from lomond.loop.engine import TURN_EVENTS, Engine, Waiter


def sleeper(engine: Engine, name: str, delays: list[float]) -> Generator[Any, None, None]:
    """Yield a Poll after each delay, waiting in the engine's schedule."""
    waiter = Waiter()
    for delay in delays:
        waiter.deadline = engine.clock() + delay
        while engine.clock() < waiter.deadline:
            yield waiter
        yield events.Poll()


def talker(count: int) -> Generator[Any, None, None]:
    for index in range(count):
        yield events.Text(str(index))


def run(engine: Engine) -> list[tuple[Any, str]]:
    seen = []
    while engine.tasks:
        for key, event in engine.round():
            seen.append((key, event.name))
        if engine.tasks:
            engine.wait()
    engine.close()
    return seen


class TestTurns:
    def test_a_turn_hands_over_at_most_turn_events(self) -> None:
        engine = Engine()
        engine.add("a", talker(3 * TURN_EVENTS))
        engine.add("b", talker(3 * TURN_EVENTS))
        keys = [key for key, _ in run(engine)]
        runs = "".join(keys).replace("ab", "a|b").replace("ba", "b|a").split("|")
        assert max(len(run) for run in runs) == TURN_EVENTS

    def test_deadlines_resume_in_order(self) -> None:
        engine = Engine()
        engine.add("slow", sleeper(engine, "slow", [0.2]))
        engine.add("fast", sleeper(engine, "fast", [0.05, 0.05]))
        started = time.monotonic()
        assert run(engine) == [("fast", "poll"), ("fast", "poll"), ("slow", "poll")]
        assert time.monotonic() - started < 2

    def test_a_due_timer_goes_before_a_busy_connection(self) -> None:
        now = [0.0]

        def slow_talker(count: int) -> Generator[Any, None, None]:
            for event in talker(count):
                now[0] += 0.001  # each event takes a millisecond (of this clock)
                yield event

        engine = Engine(clock=lambda: now[0])
        engine.add("busy", slow_talker(10_000))
        engine.add("timer", sleeper(engine, "timer", [0.01]))
        seen = run(engine)
        # Due after ten of the busy connection's events: it waits for the turn under
        # way at most, not for the talker's end.
        assert seen.index(("timer", "poll")) <= 10 + TURN_EVENTS + 1

    def test_wake_from_another_thread_resumes_a_waiter(self) -> None:
        engine = Engine()
        waiter = Waiter()
        flag = threading.Event()

        def waiting() -> Generator[Any, None, None]:
            waiter.deadline = None  # no deadline: only a wake ends the wait
            while not flag.is_set():
                yield waiter
            yield events.Poll()

        engine.add("w", waiting())
        engine.selector()

        def later() -> None:
            time.sleep(0.05)
            flag.set()
            engine.wake(waiter)

        threading.Thread(target=later).start()
        assert run(engine) == [("w", "poll")]
