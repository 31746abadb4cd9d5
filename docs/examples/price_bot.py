"""A bot that follows a price feed and buys below a limit; it stays connected."""

import sys
import threading

from lomond import WebSocket, events, persist

SUBSCRIBE = {"op": "subscribe", "channel": "prices"}


class PriceBot:
    def __init__(self, url, limit):
        self.websocket = WebSocket(url)
        self.limit = limit
        self.prices = []
        self.stop = threading.Event()  # set it to stop the bot

    def handle(self, event):
        if isinstance(event, events.Ready):
            self.websocket.send_json(SUBSCRIBE)  # on every new connection
        elif isinstance(event, events.Text):
            price = event.json["price"]
            self.prices.append(price)
            if price < self.limit:
                self.websocket.send_json(op="buy", price=price)
        # The feed also sends binary heartbeats: they are ignored.

    def run(self, min_wait=5, max_wait=30):
        for event in persist(
            self.websocket, min_wait=min_wait, max_wait=max_wait, exit_event=self.stop
        ):
            self.handle(event)


if __name__ == "__main__":
    PriceBot(sys.argv[1], limit=100).run()
