"""Report why a connection could not be opened."""

import sys

from lomond import WebSocket

url = sys.argv[1] if len(sys.argv) > 1 else "wss://example.com/feed"

for event in WebSocket(url).connect():
    if event.name == "connect_fail":
        print("could not connect:", event.reason)
