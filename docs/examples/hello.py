"""Connect, send one message, print every event, close when the reply comes."""

import sys

from lomond import WebSocket

url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765/"
ws = WebSocket(url)

for event in ws.connect():
    print(event)
    if event.name == "ready":
        ws.send_text("Hello, lomond!")
    elif event.name == "text":
        ws.close()
