"""Print lomond's trace records for one short session."""

import sys

from lomond import WebSocket


def trace(record: dict) -> None:
    details = {key: value for key, value in record.items() if key not in ("stage", "url")}
    print(f"{record['stage']:<18}", details)


url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765/"
ws = WebSocket(url, trace=trace)

for event in ws.connect(ping_rate=0):
    if event.name == "ready":
        ws.send_text("traced")
    elif event.name == "text":
        ws.close()
