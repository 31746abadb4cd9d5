"""Close the connection once the server has been silent for a while, using Poll."""

import sys
import time

from lomond import WebSocket

IDLE_SECONDS = 1.0

url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765/"
ws = WebSocket(url)
last_heard = time.monotonic()

for event in ws.connect(poll=0.25, ping_rate=20, ping_timeout=60):
    if event.name == "ready":
        ws.send_text("one message, then silence")
    elif event.name in ("text", "binary", "pong"):
        last_heard = time.monotonic()
        print("received", event.name)
    elif event.name == "poll":
        if ws.is_active and time.monotonic() - last_heard > IDLE_SECONDS:
            print(f"silent for {IDLE_SECONDS}s: closing")
            ws.close()
    elif event.name == "disconnected":
        print("disconnected:", event.reason)
