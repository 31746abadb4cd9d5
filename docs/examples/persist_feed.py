"""Stay connected to a feed: subscribe on every new connection, print its messages."""

import sys
import threading

from lomond import WebSocket, persist

url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765/"
websocket = WebSocket(url)
exit_event = threading.Event()  # set it from anywhere to stop

for event in persist(websocket, exit_event=exit_event):
    if event.name == "ready":
        websocket.send_json(subscribe="ticker")  # every new connection
    elif event.name == "text":
        print(event.json)
