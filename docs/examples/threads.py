"""Send from a second thread while the main thread runs the event loop."""

import sys
import threading

from lomond import WebSocket
from lomond.errors import WebSocketUnavailable

url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765/"
ws = WebSocket(url)
ready = threading.Event()


def produce() -> None:
    """Send three messages once the WebSocket is ready, then close it."""
    ready.wait()
    try:
        for number in range(1, 4):
            ws.send_text(f"message {number}")
        ws.close()
    except WebSocketUnavailable:
        # The connection closed (or never opened): nothing more to send.
        pass


producer = threading.Thread(target=produce)
producer.start()
try:
    for event in ws.connect():
        if event.name == "ready":
            ready.set()
        elif event.name == "text":
            print("received:", event.text)
        elif event.name == "disconnected":
            print("disconnected, graceful:", event.graceful)
finally:
    ready.set()  # let the producer finish if the connection never became ready
    producer.join()
