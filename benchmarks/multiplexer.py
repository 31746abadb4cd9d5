"""Many connections in one thread: lomond.Multiplexer with 1,000 connections.

Run from the checkout, with the test dependencies installed (the server is the
``websockets`` asyncio server, in a process of its own)::

    python benchmarks/multiplexer.py                 # 1,000 connections, 30 s
    python benchmarks/multiplexer.py --quick         # 200 connections, 5 s
    python benchmarks/multiplexer.py --connections 1000 --seconds 30 --rate 10 --size 100

It measures, each in a fresh client process:

- ``memory``: the resident set (``VmRSS``) with 1 open, idle connection and with
  all of them, and the difference per connection beyond the first;
- ``feed``: every connection receives ``rate`` messages of ``size`` bytes a second
  for ``seconds`` (the server sends one tick every 100 ms, to all connections): the
  messages delivered (all of them, or it fails) and the client's CPU time per
  message; against one ``ws.connect()`` loop at the same rate (a message per
  wake-up, as each connection of the multiplexer gets), and one receiving as many
  messages per tick as all the connections together (in batches);
- ``open``: the seconds until every connection is ``ready`` when all are added
  together, against opening them one after another with ``ws.connect()``; once
  with the server answering at once (loopback: both are bound by CPU), once with
  the server answering each upgrade after ``--latency`` seconds (default 20 ms, a
  round trip over a network).

Both processes raise their open-file limit to the hard limit. Nothing here is
collected by pytest, and no test asserts these numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICK = 0.1


def raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# -- the server (its own process) ---------------------------------------------------


def serve(rate: int, size: int, seconds: float, latency: float = 0.0) -> None:
    """Print the port; each connection: wait for "start", then the feed, then "done".

    ``latency``: seconds the server waits before it answers the upgrade (what a
    round trip over a real network adds to opening a connection).
    """
    import websockets

    raise_file_limit()
    message = "x" * size
    per_tick = max(1, round(rate * TICK))
    ticks = round(seconds / TICK)

    async def handler(connection: websockets.ServerConnection) -> None:
        async for text in connection:
            if text == "start":
                started = time.monotonic()
                for tick in range(ticks):
                    delay = started + tick * TICK - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    for _ in range(per_tick):
                        await connection.send(message)
                await connection.send("done")

    async def delay(connection: object, request: object) -> None:
        if latency:
            await asyncio.sleep(latency)

    async def main() -> None:
        async with websockets.serve(
            handler,
            "127.0.0.1",
            0,
            compression=None,
            max_queue=None,
            ping_interval=None,
            process_request=delay,
            backlog=4096,
        ) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            print(port, flush=True)
            await asyncio.Future()

    asyncio.run(main())


# -- the client measurements (each in a process of its own) --------------------------


def measure_memory(url: str, count: int) -> dict[str, float]:
    from lomond import Multiplexer, WebSocket

    mux = Multiplexer()
    mux.add(WebSocket(url), poll=60, ping_rate=None)
    ready = 0
    first = 0
    for _, event in mux:
        if event.name != "ready":
            continue
        ready += 1
        if ready == 1:
            first = rss_kib()
            for _ in range(count - 1):
                mux.add(WebSocket(url), poll=60, ping_rate=None)
        elif ready == count:
            every = rss_kib()
            mux.close()
    return {
        "rss_first_kib": first,
        "rss_all_kib": every,
        "kib_per_connection": (every - first) / (count - 1),
    }


def measure_feed(url: str, count: int, expected: int) -> dict[str, float]:
    from lomond import Multiplexer, WebSocket

    mux = Multiplexer()
    for _ in range(count):
        mux.add(WebSocket(url), poll=5, ping_rate=30)
    received = done = ready = 0
    cpu = wall = 0.0
    for ws, event in mux:
        name = event.name
        if name == "text":
            if event.text == "done":  # type: ignore[attr-defined]
                done += 1
                ws.close()
                if done == count:
                    cpu = time.process_time() - cpu
                    wall = time.perf_counter() - wall
            else:
                received += 1
        elif name == "ready":
            ready += 1
            if ready == count:
                cpu, wall = time.process_time(), time.perf_counter()
                for websocket in mux_sockets(mux):
                    websocket.send_text("start")
    if received != expected * count:
        raise RuntimeError(f"received {received} of {expected * count} messages")
    return {"messages": received, "cpu_us_per_message": cpu / received * 1e6, "wall": wall}


def mux_sockets(mux: object) -> list[object]:
    return list(mux._slots)  # type: ignore[attr-defined]


def measure_single(url: str, expected: int) -> dict[str, float]:
    from lomond import WebSocket

    websocket = WebSocket(url)
    received = 0
    cpu = 0.0
    for event in websocket.connect(poll=5, ping_rate=30):
        if event.name == "ready":
            cpu = time.process_time()
            websocket.send_text("start")
        elif event.name == "text":
            if event.text == "done":  # type: ignore[attr-defined]
                cpu = time.process_time() - cpu
                websocket.close()
            else:
                received += 1
    if received != expected:
        raise RuntimeError(f"received {received} of {expected} messages")
    return {"messages": received, "cpu_us_per_message": cpu / received * 1e6}


def measure_open(url: str, count: int) -> dict[str, float]:
    from lomond import Multiplexer, WebSocket

    started = time.perf_counter()
    mux = Multiplexer()
    for _ in range(count):
        mux.add(WebSocket(url), poll=60, ping_rate=None)
    ready = 0
    together = 0.0
    for _, event in mux:
        if event.name == "ready":
            ready += 1
            if ready == count:
                together = time.perf_counter() - started
                mux.close()
    started = time.perf_counter()
    loops = []
    for _ in range(count):
        websocket = WebSocket(url)
        loop = websocket.connect(poll=60, ping_rate=None)
        for event in loop:
            if event.name == "ready":
                break
        loops.append(loop)  # held open while the next one opens
    one_by_one = time.perf_counter() - started
    for loop in loops:
        loop.close()
    return {"together": together, "one_by_one": one_by_one, "speedup": one_by_one / together}


def client(what: str, url: str, count: int, expected: int) -> None:
    raise_file_limit()
    if what == "memory":
        result = measure_memory(url, count)
    elif what == "feed":
        result = measure_feed(url, count, expected)
    elif what == "single":
        result = measure_single(url, expected)
    else:
        result = measure_open(url, count)
    print(json.dumps(result))


# -- the harness ---------------------------------------------------------------------


def run_client(what: str, url: str, count: int, expected: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, __file__, "--client", what, url, str(count), str(expected)]
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return json.loads(output.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=10, help="messages a second per connection")
    parser.add_argument("--size", type=int, default=100, help="bytes per message")
    parser.add_argument("--quick", action="store_true", help="200 connections, 5 s")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.02,
        help="seconds the server waits before answering each upgrade, for 'open' (a round trip)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.connections, args.seconds = 200, 5.0
    if args.serve:
        serve(args.rate, args.size, args.seconds, args.latency)
        return
    if args.client:
        what, url, count, expected = args.client
        client(what, url, int(count), int(expected))
        return
    count = args.connections
    per_tick = max(1, round(args.rate * TICK))
    expected = per_tick * round(args.seconds / TICK)
    server_command = [sys.executable, __file__, "--serve", "--rate", str(args.rate)]
    server_command += ["--size", str(args.size), "--seconds", str(args.seconds)]
    server = subprocess.Popen(
        server_command + ["--latency", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        url = f"ws://127.0.0.1:{server.stdout.readline().strip()}/"
        memory = run_client("memory", url, count, expected)
        feed = run_client("feed", url, count, expected)
        # One connection at the same rate: one message a wake-up, as each of them.
        alone = run_client("single", url, 1, expected)
        # The single loop gets as many messages a tick as the multiplexer's loop did.
        single_server = [sys.executable, __file__, "--serve", "--size", str(args.size)]
        single_server += ["--rate", str(args.rate * count), "--seconds", str(args.seconds)]
        single_process = subprocess.Popen(single_server, stdout=subprocess.PIPE, text=True)
        try:
            assert single_process.stdout is not None
            single_url = f"ws://127.0.0.1:{single_process.stdout.readline().strip()}/"
            single = run_client("single", single_url, 1, expected * count)
        finally:
            single_process.kill()
            single_process.wait()
        opening = run_client("open", url, count, expected)
    finally:
        server.kill()
        server.wait()
    # Opening again, with a server that answers each upgrade after --latency seconds.
    server = subprocess.Popen(
        server_command + ["--latency", str(args.latency)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        url = f"ws://127.0.0.1:{server.stdout.readline().strip()}/"
        remote = run_client("open", url, count, expected)
    finally:
        server.kill()
        server.wait()
    ratio = feed["cpu_us_per_message"] / single["cpu_us_per_message"]
    ratio_alone = feed["cpu_us_per_message"] / alone["cpu_us_per_message"]
    print(f"## lomond.Multiplexer: {count} connections, {args.rate} x {args.size} B/s each")
    print(f"- memory: {memory['rss_first_kib']:,} KiB RSS with 1 connection, ")
    print(f"  {memory['rss_all_kib']:,} KiB with {count}: ")
    print(f"  **{memory['kib_per_connection']:.1f} KiB per connection** beyond the first")
    print(f"- feed: {feed['messages']:,} messages in {args.seconds:g} s, all delivered;")
    print(f"  client CPU {feed['cpu_us_per_message']:.1f} µs per message")
    print(f"  - against one connection at the same rate ({args.rate}/s, one message a wake-up):")
    print(f"    {alone['cpu_us_per_message']:.1f} µs, **ratio {ratio_alone:.2f}×**")
    print("  - against one connection receiving as many messages a tick as all of them:")
    print(f"    {single['cpu_us_per_message']:.1f} µs (messages in batches), ratio {ratio:.2f}×")
    print(f"- open: all {count} together {opening['together']:.2f} s,")
    print(f"  one after another {opening['one_by_one']:.2f} s:")
    print(f"  **{opening['speedup']:.1f}× faster together** (loopback: both bound by CPU)")
    print(f"- open, the server answering each upgrade after {args.latency * 1000:g} ms:")
    print(f"  together {remote['together']:.2f} s, one after another {remote['one_by_one']:.2f} s:")
    print(f"  **{remote['speedup']:.1f}× faster together**")


if __name__ == "__main__":
    main()
