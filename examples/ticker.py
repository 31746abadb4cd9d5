"""A ticker client that stays connected: subscribe on every connection, print prices.

It uses :func:`lomond.persist.persist` to reconnect whenever the connection ends,
subscribes again after each ``Ready`` (a new connection starts with no
subscriptions), and closes gracefully on Ctrl-C or SIGTERM by setting the
``exit_event`` (press Ctrl-C twice to stop at once).

By default it speaks the public market-data API v2 of Kraken::

    python examples/ticker.py                      # BTC/USD
    python examples/ticker.py ETH/USD SOL/USD
    python examples/ticker.py --url ws://127.0.0.1:8765 BTC/USD

Only lomond's public API is used.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any, Callable, Iterator, Sequence

from lomond import WebSocket, events, persist
from lomond.errors import WebSocketUnavailable

DEFAULT_URL = "wss://ws.kraken.com/v2"


def subscribe_request(symbols: Sequence[str]) -> dict[str, Any]:
    """The message that subscribes to the ticker channel of ``symbols``."""
    return {"method": "subscribe", "params": {"channel": "ticker", "symbol": list(symbols)}}


def ticker_lines(message: Any) -> Iterator[str]:
    """One line per ticker update in a message (other messages give none)."""
    if not isinstance(message, dict) or message.get("channel") != "ticker":
        return
    for tick in message.get("data") or ():
        yield (
            f"{tick.get('symbol', '?'):<10} last {tick.get('last')}"
            f"  bid {tick.get('bid')}  ask {tick.get('ask')}"
        )


def run(
    url: str,
    symbols: Sequence[str],
    exit_event: threading.Event,
    output: Callable[[str], None] = print,
    **persist_options: Any,
) -> None:
    """Print ticker updates until ``exit_event`` is set, reconnecting as needed.

    ``persist_options`` go to :func:`lomond.persist` (for example ``min_wait``).
    """
    websocket = WebSocket(url)
    # A ping every 15 s, and a connection with no pong for 45 s counts as dead: a
    # half-open TCP connection would otherwise look idle for hours.
    persist_options.setdefault("ping_rate", 15)
    persist_options.setdefault("ping_timeout", 45)
    for event in persist(websocket, exit_event=exit_event, **persist_options):
        if isinstance(event, events.Ready):
            output(f"connected to {url}; subscribing to {', '.join(symbols)}")
            try:
                websocket.send_json(subscribe_request(symbols))
            except WebSocketUnavailable:
                pass  # closing already (exit_event was set): the loop ends by itself
        elif isinstance(event, events.Text):
            try:
                message = event.json
            except ValueError:
                output(f"not JSON: {event.text!r}")
                continue
            for line in ticker_lines(message):
                output(line)
        elif isinstance(event, (events.ConnectFail, events.Rejected, events.Disconnected)):
            output(f"{event.name}: {event.reason}")
        elif isinstance(event, events.BackOff):
            output(f"reconnecting in {event.delay:.1f}s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print live ticker prices; reconnect forever.")
    parser.add_argument("symbols", nargs="*", default=["BTC/USD"], help="e.g. BTC/USD ETH/USD")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"feed URL (default {DEFAULT_URL})")
    arguments = parser.parse_args(argv)

    exit_event = threading.Event()

    def request_exit(signum: int, frame: FrameType | None) -> None:
        # The first signal closes gracefully; a second Ctrl-C interrupts at once.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        exit_event.set()

    signal.signal(signal.SIGINT, request_exit)
    signal.signal(signal.SIGTERM, request_exit)
    run(arguments.url, arguments.symbols, exit_event)
    return 0


if __name__ == "__main__":
    sys.exit(main())
