"""The Python WebSocket servers of the interoperability tests, one per process.

Run as ``python realserver_apps.py KIND --max-size N [--no-compress]``, where KIND is
``uvicorn-wsproto``, ``uvicorn-websockets``, ``uvicorn-websockets-sansio``,
``aiohttp`` or ``tornado``. The process binds a listening socket on 127.0.0.1, port
0, prints the port on a line of its own, then serves until it is terminated or its
standard input ends (the test process went away). :mod:`realservers` starts and
stops it.

Every server behaves the same at ``/echo``:

* it echoes every message, text as text and binary as binary;
* on the text ``close:CODE:REASON`` it closes with that code and reason;
* a message over ``--max-size`` bytes is refused by the server library itself
  (each one answers as it does in production: usually close 1009, RFC 6455 §7.4.1).

Nothing here is imported by the tests: each server library is imported only in the
process that runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import threading
import warnings
from typing import Any, Awaitable, Callable, Dict

PATH = "/echo"
CLOSE_PREFIX = "close:"


def parse_close(text: str) -> tuple[int, str] | None:
    """``(code, reason)`` for a ``close:CODE:REASON`` text, else ``None``."""
    if not text.startswith(CLOSE_PREFIX):
        return None
    code, _, reason = text[len(CLOSE_PREFIX) :].partition(":")
    return int(code), reason


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # Listening before the port is announced: a client that connects at once waits
    # in the backlog until the event loop accepts it.
    sock.listen(128)
    sock.setblocking(False)
    return sock


def exit_with_parent() -> None:
    """Exit as soon as standard input ends (the test process closed it or died)."""

    def watch() -> None:
        sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def announce(sock: socket.socket) -> None:
    """Print the port; from then on, what goes to stdout goes to stderr instead (nobody
    reads the pipe any more, and a full pipe would block the server)."""
    print(sock.getsockname()[1], flush=True)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


# -- uvicorn (an ASGI application) ------------------------------------------------

Scope = Dict[str, Any]
Receive = Callable[[], Awaitable[Dict[str, Any]]]
Send = Callable[[Dict[str, Any]], Awaitable[None]]


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "websocket" or scope["path"] != PATH:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        return
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
            continue
        close = parse_close(text)
        if close is not None:
            code, reason = close
            await send({"type": "websocket.close", "code": code, "reason": reason})
            return
        await send({"type": "websocket.send", "text": text})


def run_uvicorn(ws: str, max_size: int, compress: bool) -> None:
    import uvicorn

    # Newer uvicorn releases deprecate ws="websockets" (the legacy websockets API):
    # it is still what many deployments run, so it is tested, without the noise.
    warnings.filterwarnings("ignore", message=".*`websockets` implementation is deprecated")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="websockets")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="uvicorn")

    config = uvicorn.Config(
        asgi_app,
        ws=ws,
        ws_max_size=max_size,
        ws_per_message_deflate=compress,
        ws_ping_interval=None,
        lifespan="off",
        log_level="error",
        access_log=False,
    )
    server = uvicorn.Server(config)
    sock = listening_socket()
    announce(sock)
    asyncio.run(server.serve(sockets=[sock]))


# -- aiohttp ----------------------------------------------------------------------


def run_aiohttp(max_size: int, compress: bool) -> None:
    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=max_size, compress=compress)
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                close = parse_close(message.data)
                if close is not None:
                    code, reason = close
                    await ws.close(code=code, message=reason.encode())
                    break
                await ws.send_str(message.data)
            elif message.type == WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        return ws

    async def main() -> None:
        app = web.Application()
        app.router.add_get(PATH, echo)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = listening_socket()
        await web.SockSite(runner, sock).start()
        announce(sock)
        await asyncio.Event().wait()

    asyncio.run(main())


# -- tornado ----------------------------------------------------------------------


def run_tornado(max_size: int, compress: bool) -> None:
    from tornado.httpserver import HTTPServer
    from tornado.web import Application
    from tornado.websocket import WebSocketHandler

    class Echo(WebSocketHandler):
        def get_compression_options(self) -> dict[str, Any] | None:
            return {} if compress else None

        def on_message(self, message: str | bytes) -> None:
            if isinstance(message, str):
                close = parse_close(message)
                if close is not None:
                    self.close(*close)
                    return
            self.write_message(message, binary=isinstance(message, bytes))

    async def main() -> None:
        app = Application([(PATH, Echo)], websocket_max_message_size=max_size)
        server = HTTPServer(app)
        sock = listening_socket()
        server.add_sockets([sock])
        announce(sock)
        await asyncio.Event().wait()

    asyncio.run(main())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "kind",
        choices=[
            "uvicorn-wsproto",
            "uvicorn-websockets",
            "uvicorn-websockets-sansio",
            "aiohttp",
            "tornado",
        ],
    )
    parser.add_argument("--max-size", type=int, required=True)
    parser.add_argument("--no-compress", dest="compress", action="store_false")
    args = parser.parse_args(argv)
    exit_with_parent()
    if args.kind.startswith("uvicorn-"):
        run_uvicorn(args.kind.split("-", 1)[1], args.max_size, args.compress)
    elif args.kind == "aiohttp":
        run_aiohttp(args.max_size, args.compress)
    else:
        run_tornado(args.max_size, args.compress)


if __name__ == "__main__":
    main()
