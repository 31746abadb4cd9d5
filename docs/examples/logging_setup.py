"""Show lomond's log messages (logger ``lomond``) next to the events."""

import logging
import sys

from lomond import WebSocket

logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout)
logging.getLogger("lomond").setLevel(logging.DEBUG)

url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765/"
for event in WebSocket(url).connect():
    print(event)
