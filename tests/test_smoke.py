"""A first end-to-end check of the event stream against a real server."""

from __future__ import annotations

from servers import echo, names, raw_server, run, websockets_server

from lomond import WebSocket


def test_echo_and_client_close() -> None:
    with websockets_server(echo) as url:
        ws = WebSocket(url)

        def on_event(event: object) -> None:
            if event.name == "ready":  # type: ignore[attr-defined]
                ws.send_text("hi")
            elif event.name == "text":  # type: ignore[attr-defined]
                ws.close()

        collected = run(ws, on_event)
    assert names(collected) == [
        "connecting",
        "connected",
        "ready",
        "poll",
        "text",
        "closed",
        "disconnected",
    ]
    assert collected[-1].graceful


def test_raw_server_drop_after_upgrade() -> None:
    def script(conn):  # type: ignore[no-untyped-def]
        conn.handshake()

    with raw_server(script) as url:
        collected = run(WebSocket(url))
    assert names(collected) == ["connecting", "connected", "ready", "poll", "disconnected"]
    assert not collected[-1].graceful
