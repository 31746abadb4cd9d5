"""Send each kind of message to an echo server and print what comes back."""

import sys

from lomond import WebSocket

url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765/"
ws = WebSocket(url)

for event in ws.connect():
    if event.name == "ready":
        ws.send_text("some text")
        ws.send_binary(b"\x00\x01\x02\xff")
        ws.send_json({"type": "greeting", "to": ["everyone"]})
        ws.send_ping(b"still there?")
    elif event.name == "text":
        print("text:  ", event.text)
    elif event.name == "binary":
        print("binary:", event.data)
    elif event.name == "pong":
        print("pong:  ", event.data)
        ws.close()
    elif event.name == "closed":
        print("closed:", event.code, event.reason)
    elif event.name == "disconnected":
        print("disconnected, graceful:", event.graceful)
