"""Follow several feeds in one thread: subscribe on each, print what each one sends."""

import sys

from lomond import Multiplexer, WebSocket

url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765/"
feeds = {WebSocket(f"{url}?feed={name}"): name for name in ("btc", "eth", "sol")}

mux = Multiplexer()
for websocket in feeds:
    mux.add(websocket, ping_rate=20, persist=True)

for websocket, event in mux:  # (websocket, event) pairs, in one thread
    name = feeds[websocket]
    if event.name == "ready":
        websocket.send_json(subscribe=name)  # on every new connection
    elif event.name == "text":
        print(name, event.json)
        mux.remove(websocket)  # a real follower would stay; this one stops here
    elif event.name == "disconnected":
        print(name, "disconnected:", event.reason)
