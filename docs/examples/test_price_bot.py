"""Tests of price_bot.py, with the lomond_server fixture of lomond's pytest plugin."""

import contextlib
import threading
from pathlib import Path

from price_bot import SUBSCRIBE, PriceBot

INCIDENT = Path(__file__).with_name("incident.jsonl")


@contextlib.contextmanager
def running(bot):
    """Run ``bot`` in a thread (reconnecting at once) until the block ends."""
    thread = threading.Thread(target=bot.run, kwargs={"min_wait": 0, "max_wait": 0.1})
    thread.start()
    try:
        yield bot
    finally:
        bot.stop.set()
        thread.join(5)


def test_buys_below_the_limit(lomond_server):
    with running(PriceBot(lomond_server.url, limit=100)):
        assert lomond_server.expect_json(timeout=5) == SUBSCRIBE
        lomond_server.send_json({"price": 101.5})
        lomond_server.send_json({"price": 99.0})
        assert lomond_server.expect_json(timeout=5) == {"op": "buy", "price": 99.0}


def test_subscribes_again_after_a_restart(lomond_server):
    with running(PriceBot(lomond_server.url, limit=100)):
        assert lomond_server.expect_json(timeout=5) == SUBSCRIBE
        lomond_server.close(1001, "restart")
        assert lomond_server.expect_json(timeout=5) == SUBSCRIBE
        assert lomond_server.connections == 2


def test_the_reset_of_march_3(lomond_server):
    # Prices, a binary heartbeat, more prices, then the feed reset the connection.
    lomond_server.replay(INCIDENT, speed=0)
    with running(PriceBot(lomond_server.url, limit=100)) as bot:
        assert lomond_server.expect_json(timeout=5) == SUBSCRIBE  # as recorded
        assert lomond_server.expect_json(timeout=5) == SUBSCRIBE  # it came back
        assert bot.prices == [101.5, 102.25, 100.75]
