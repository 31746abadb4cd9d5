"""lomond.Multiplexer: many connections in one thread, over real sockets.

The ``websockets`` server plays the well-behaved peer; raw socket servers play the
hanging, flooding and hostile ones.
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import ssl
import threading
import time
import tracemalloc
from typing import Any, Callable, Iterator

import pytest
from proxies import pproxy
from servers import RawConnection, echo, frame, raw_server, websockets_server
from websockets.sync.server import ServerConnection

from lomond import Multiplexer, WebSocket, events, persist
from lomond.loop import engine as engine_module

pytestmark = pytest.mark.timeout(60)

TEXT = 1
OPEN = ["connecting", "connected", "ready", "poll"]


def run_all(
    mux: Multiplexer, on_event: Callable[[WebSocket, events.Event], None] | None = None
) -> dict[WebSocket, list[events.Event]]:
    """Iterate ``mux`` to its end; every connection's events, in order."""
    seen: dict[WebSocket, list[events.Event]] = collections.defaultdict(list)
    for ws, event in mux:
        seen[ws].append(event)
        if on_event is not None:
            on_event(ws, event)
    return seen


def names(collected: list[events.Event]) -> list[str]:
    return [event.name for event in collected]


def count_echo(count: int) -> Callable[[WebSocket, events.Event], None]:
    """A loop body: send ``count`` numbered messages on Ready, close after the last echo."""

    def on_event(ws: WebSocket, event: events.Event) -> None:
        if event.name == "ready":
            for index in range(count):
                ws.send_text(str(index))
        elif event.name == "text" and event.text == str(count - 1):  # type: ignore[attr-defined]
            ws.close()

    return on_event


def silent_after_request(connection: RawConnection) -> None:
    """Accept TCP, read the upgrade request, never answer."""
    connection.read_request()
    connection.sock.settimeout(10)
    with contextlib.suppress(OSError):
        connection.sock.recv(1)


@contextlib.contextmanager
def silent_tcp_server() -> Iterator[int]:
    """A port that accepts TCP and never sends a byte (a TLS handshake hangs on it)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        for sock in accepted:
            sock.close()


class TestAdd:
    def test_not_a_websocket(self) -> None:
        with pytest.raises(TypeError, match="must be a lomond WebSocket, not str"):
            Multiplexer().add("ws://127.0.0.1:1/")  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("options", "error", "match"),
        [
            ({"poll": "soon"}, TypeError, "poll"),
            ({"ping_rate": -1}, ValueError, "ping_rate"),
            ({"no_such_option": 1}, TypeError, "no_such_option"),
            ({"min_wait": 1}, TypeError, "persist=True"),
            ({"persist": True, "min_wait": 10, "max_wait": 5}, ValueError, "max_wait"),
            ({"persist": True, "frequency": 5}, TypeError, "frequency"),
        ],
    )
    def test_bad_options_raise_and_leave_the_websocket_free(
        self, options: dict[str, Any], error: type[Exception], match: str
    ) -> None:
        mux = Multiplexer()
        ws = WebSocket("ws://127.0.0.1:1/")
        with pytest.raises(error, match=match):
            mux.add(ws, **options)
        assert len(mux) == 0
        mux.add(ws)  # still free
        mux.close()

    def test_twice(self) -> None:
        mux = Multiplexer()
        ws = WebSocket("ws://127.0.0.1:1/")
        mux.add(ws)
        with pytest.raises(RuntimeError, match="running"):
            mux.add(ws)
        with pytest.raises(RuntimeError, match="running"):
            Multiplexer().add(ws)
        with pytest.raises(RuntimeError, match="running"):
            ws.connect()

    def test_running_in_its_own_connect(self) -> None:
        ws = WebSocket("ws://127.0.0.1:1/")
        loop = ws.connect()  # not iterated yet: running all the same
        with pytest.raises(RuntimeError, match="running"):
            Multiplexer().add(ws)
        loop.close()
        Multiplexer().add(ws)

    def test_persisting_websocket_stays_taken_between_connections(self) -> None:
        ws = WebSocket("ws://127.0.0.1:1/", connect_timeout=1)
        mux = Multiplexer()
        mux.add(ws, persist=True, min_wait=30, max_wait=30)
        for taken, event in mux:
            if event.name == "back_off":
                with pytest.raises(RuntimeError, match="running"):
                    ws.connect()
                with pytest.raises(RuntimeError, match="running"):
                    Multiplexer().add(ws)
                mux.remove(taken)
        # Over: free again.
        ws.connect().close()

    def test_after_close(self) -> None:
        mux = Multiplexer()
        mux.close()
        with pytest.raises(RuntimeError, match="close"):
            mux.add(WebSocket("ws://127.0.0.1:1/"))

    def test_one_loop_at_a_time(self) -> None:
        mux = Multiplexer()
        ws = WebSocket("ws://127.0.0.1:1/")
        mux.add(ws)
        loop = iter(mux)
        first_ws, first_event = next(loop)
        assert first_ws is ws and first_event.name == "connecting"
        with pytest.raises(RuntimeError, match="one loop at a time"):
            next(iter(mux))
        loop.close()  # type: ignore[attr-defined]
        assert list(mux) == []

    def test_empty(self) -> None:
        assert list(Multiplexer()) == []


class TestManyConnections:
    """Hundreds of connections, one thread, each in its own connect() order."""

    def test_220_connections_each_in_connect_order(self) -> None:
        count = 5
        with websockets_server(echo) as url:
            # The order of one connection on its own, as the reference.
            reference = WebSocket(url)
            body = count_echo(count)
            alone = []
            for event in reference.connect():
                alone.append(event)
                body(reference, event)
            mux = Multiplexer()
            sockets = [WebSocket(url) for _ in range(220)]
            for ws in sockets:
                mux.add(ws)
            lomond_threads: set[str] = set()

            def on_event(ws: WebSocket, event: events.Event) -> None:
                lomond_threads.update(
                    thread.name for thread in threading.enumerate() if "lomond" in thread.name
                )
                body(ws, event)

            seen = run_all(mux, on_event)
        expected = OPEN + ["text"] * count + ["closed", "disconnected"]
        assert names(alone) == expected
        assert set(seen) == set(sockets)
        for ws in sockets:
            assert names(seen[ws]) == expected
            texts = [event.text for event in seen[ws] if event.name == "text"]  # type: ignore[attr-defined]
            assert texts == [str(index) for index in range(count)]
            assert seen[ws][-1].graceful  # type: ignore[attr-defined]
        # No thread of lomond's (an IP address needs no helper thread).
        assert lomond_threads == set()

    def test_failures_in_connect_order(self) -> None:
        """Rejected, refused, protocol error: each exactly as ``ws.connect()`` gives it."""
        from http import HTTPStatus

        def reject(connection: Any, request: Any) -> Any:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "busy\n")

        def violate(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(frame(0x3, b"reserved opcode"))
            with contextlib.suppress(OSError):
                connection.sock.settimeout(5)
                connection.recv_frame()
                connection.send(frame(0x8, b"\x03\xe8"))

        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        refused_url = f"ws://127.0.0.1:{listener.getsockname()[1]}/"
        listener.close()
        with websockets_server(echo, process_request=reject) as rejecting, raw_server(
            violate
        ) as violating:
            urls = [rejecting, violating, refused_url]
            alone = {url: names([*WebSocket(url).connect()]) for url in urls}
            mux = Multiplexer()
            sockets = {WebSocket(url): url for url in urls for _ in range(3)}
            for ws in sockets:
                mux.add(ws)
            seen = run_all(mux)
        assert alone[rejecting] == ["connecting", "connected", "rejected", "disconnected"]
        assert alone[violating] == OPEN + ["protocol_error", "disconnected"]
        assert alone[refused_url] == ["connecting", "connect_fail"]
        for ws, url in sockets.items():
            assert names(seen[ws]) == alone[url]

    def test_sends_from_other_threads_while_iterating(self) -> None:
        with websockets_server(echo) as url:
            mux = Multiplexer()
            sockets = [WebSocket(url) for _ in range(20)]
            for ws in sockets:
                mux.add(ws, poll=60)
            senders: list[threading.Thread] = []

            def send_all(ws: WebSocket) -> None:
                for index in range(50):
                    ws.send_text(str(index))

            def on_event(ws: WebSocket, event: events.Event) -> None:
                if event.name == "ready":
                    sender = threading.Thread(target=send_all, args=(ws,))
                    senders.append(sender)
                    sender.start()
                elif event.name == "text" and event.text == "49":  # type: ignore[attr-defined]
                    ws.close()

            seen = run_all(mux, on_event)
        for sender in senders:
            sender.join(5)
        for ws in sockets:
            texts = [event.text for event in seen[ws] if event.name == "text"]  # type: ignore[attr-defined]
            assert texts == [str(index) for index in range(50)]


class TestConnectingNeverBlocksTheOthers:
    def test_a_server_that_never_answers_the_upgrade(self) -> None:
        with websockets_server(echo) as url, raw_server(silent_after_request) as silent:
            mux = Multiplexer()
            hanging = WebSocket(silent, connect_timeout=1.0)
            mux.add(hanging)
            good = [WebSocket(url) for _ in range(20)]
            for ws in good:
                mux.add(ws)
            finished: dict[WebSocket, float] = {}
            started = time.monotonic()

            def on_event(ws: WebSocket, event: events.Event) -> None:
                count_echo(3)(ws, event)
                if event.name == "disconnected":
                    finished[ws] = time.monotonic() - started

            seen = run_all(mux, on_event)
        assert names(seen[hanging]) == ["connecting", "connected", "disconnected"]
        last = seen[hanging][-1]
        assert last.reason == "timed out after 1s waiting for the upgrade response"  # type: ignore[attr-defined]
        assert 0.9 <= finished[hanging] < 5
        # Every other connection was over before the hanging one gave up.
        assert max(finished[ws] for ws in good) < finished[hanging]

    def test_a_tls_handshake_that_never_ends(self) -> None:
        with websockets_server(echo) as url, silent_tcp_server() as port:
            mux = Multiplexer()
            hanging = WebSocket(f"wss://127.0.0.1:{port}/", connect_timeout=1.0)
            mux.add(hanging)
            good = [WebSocket(url) for _ in range(10)]
            for ws in good:
                mux.add(ws)
            finished: dict[WebSocket, float] = {}
            started = time.monotonic()

            def on_event(ws: WebSocket, event: events.Event) -> None:
                count_echo(2)(ws, event)
                if event.name in ("disconnected", "connect_fail"):
                    finished[ws] = time.monotonic() - started

            seen = run_all(mux, on_event)
        assert names(seen[hanging]) == ["connecting", "connect_fail"]
        assert seen[hanging][-1].reason == (  # type: ignore[attr-defined]
            "timed out after 1s in the TLS handshake with 127.0.0.1"
        )
        assert max(finished[ws] for ws in good) < finished[hanging]

    def test_tls_connections(self) -> None:
        trustme = pytest.importorskip("trustme")
        ca = trustme.CA()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ca.configure_trust(client)
        with websockets_server(echo, scheme="wss", ssl=context) as url:
            mux = Multiplexer()
            sockets = [WebSocket(url, ssl_context=client) for _ in range(20)]
            for ws in sockets:
                mux.add(ws)
            seen = run_all(mux, count_echo(20))
        for ws in sockets:
            assert names(seen[ws]) == OPEN + ["text"] * 20 + ["closed", "disconnected"]

    def test_refused_and_unresolvable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_getaddrinfo = socket.getaddrinfo
        release = threading.Event()

        def fake_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            if host == "slow.test":
                release.wait(10)
            if host in ("slow.test", "nowhere.test"):
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            if host == "echo.test":
                host = "127.0.0.1"
            return real_getaddrinfo(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        refused_port = listener.getsockname()[1]
        listener.close()
        try:
            with websockets_server(echo) as url:
                port = url.rsplit(":", 1)[1]
                mux = Multiplexer()
                slow = WebSocket("ws://slow.test/", connect_timeout=1.0)
                nowhere = WebSocket("ws://nowhere.test/")
                refused = WebSocket(f"ws://127.0.0.1:{refused_port}/")
                named = [WebSocket(f"ws://echo.test:{port}/") for _ in range(5)]
                for ws in [slow, nowhere, refused, *named]:
                    mux.add(ws)
                seen = run_all(mux, count_echo(1))
        finally:
            release.set()
        assert seen[slow][-1].reason == "timed out after 1s resolving host 'slow.test'"  # type: ignore[attr-defined]
        assert seen[nowhere][-1].reason == "could not resolve host 'nowhere.test'"  # type: ignore[attr-defined]
        assert seen[refused][-1].reason == f"connection refused by 127.0.0.1:{refused_port}"  # type: ignore[attr-defined]
        for ws in named:
            assert names(seen[ws]) == OPEN + ["text", "closed", "disconnected"]


class TestPersist:
    def test_reconnects_with_back_off_in_persist_order(self) -> None:
        connections = []

        def close_at_once(connection: ServerConnection) -> None:
            connections.append(connection)
            connection.close()

        with websockets_server(close_at_once) as url:
            alone_ws = WebSocket(url)
            alone = []
            for event in persist(alone_ws, min_wait=0.05, max_wait=0.05):
                alone.append(event)
                if names(alone).count("ready") == 3:
                    break
            mux = Multiplexer()
            ws = WebSocket(url)
            mux.add(ws, persist=True, min_wait=0.05, max_wait=0.05, poll=60)
            seen: list[events.Event] = []
            for _, event in mux:
                seen.append(event)
                if names(seen).count("ready") == 3:
                    mux.remove(ws)
        once = ["connecting", "connected", "ready", "poll", "closing", "disconnected", "back_off"]
        assert names(alone)[:14] == once * 2
        assert names(seen)[:14] == once * 2
        assert names(seen)[14:18] == ["connecting", "connected", "ready", "poll"]
        assert names(seen)[-1] == "disconnected"
        delays = [event.delay for event in seen if event.name == "back_off"]  # type: ignore[attr-defined]
        assert delays == [0.05, 0.05]

    def test_remove_during_back_off_ends_at_once(self) -> None:
        mux = Multiplexer()
        ws = WebSocket("ws://127.0.0.1:1/")
        mux.add(ws, persist=True, min_wait=60, max_wait=60)
        started = time.monotonic()
        seen = []
        for _, event in mux:
            seen.append(event.name)
            if event.name == "back_off":
                threading.Timer(0.1, mux.remove, args=(ws,)).start()
        assert seen == ["connecting", "connect_fail", "back_off"]
        assert time.monotonic() - started < 5


class TestThreads:
    def test_remove_and_close_from_another_thread(self) -> None:
        with websockets_server(echo) as url:
            mux = Multiplexer()
            first, second = WebSocket(url), WebSocket(url)
            mux.add(first, poll=60)
            mux.add(second, poll=60)
            seen: dict[WebSocket, list[str]] = collections.defaultdict(list)
            ready = 0
            for ws, event in mux:
                seen[ws].append(event.name)
                if event.name == "ready":
                    ready += 1
                    if ready == 2:  # both open
                        threading.Thread(target=mux.remove, args=(first,)).start()
                elif event.name == "disconnected" and ws is first:
                    threading.Thread(target=mux.close).start()
        assert seen[first] == OPEN + ["closed", "disconnected"]
        assert seen[second][-2:] == ["closed", "disconnected"]

    def test_stay_open_waits_for_add_from_another_thread(self) -> None:
        with websockets_server(echo) as url:
            mux = Multiplexer(stay_open=True)
            added: list[WebSocket] = []

            def add_later() -> None:
                for _ in range(3):
                    time.sleep(0.05)
                    ws = WebSocket(url)
                    added.append(ws)
                    mux.add(ws, poll=60)

            threading.Thread(target=add_later).start()
            done = 0
            seen: dict[WebSocket, list[str]] = collections.defaultdict(list)
            for ws, event in mux:
                seen[ws].append(event.name)
                if event.name == "ready":
                    ws.close()
                elif event.name == "disconnected":
                    done += 1
                    if done == 3:
                        mux.close()
        assert len(added) == 3
        for ws in added:
            assert seen[ws] == OPEN + ["closed", "disconnected"]


class TestLeavingTheLoop:
    @pytest.mark.parametrize("how", ["break", "exception", "close"])
    def test_closes_every_socket(self, how: str) -> None:
        eofs: list[float] = []
        lock = threading.Lock()

        def until_eof(connection: RawConnection) -> None:
            connection.handshake()
            connection.sock.settimeout(10)
            while connection.sock.recv(4096):
                pass
            with lock:
                eofs.append(time.monotonic())

        with raw_server(until_eof) as url:
            mux = Multiplexer()
            sockets = [WebSocket(url) for _ in range(30)]
            for ws in sockets:
                mux.add(ws, persist=True)
            ready = 0
            # Leaving a plain ``for`` loop over the multiplexer (its generator is
            # then collected at once), or closing the generator.
            loop = iter(mux) if how == "close" else None
            with contextlib.suppress(KeyError):
                for _, event in loop or mux:
                    if event.name == "ready":
                        ready += 1
                        if ready == len(sockets):
                            fds = {ws.session._sock.fileno() for ws in sockets}  # type: ignore[union-attr]
                            assert len(fds) == len(sockets) and -1 not in fds
                            left = time.monotonic()
                            if how == "break":
                                break
                            if how == "exception":
                                raise KeyError("the loop body failed")
                            assert loop is not None
                            loop.close()  # type: ignore[attr-defined]
            # Closed at once: every server saw the end of the stream.
            deadline = time.monotonic() + 5
            while len(eofs) < len(sockets) and time.monotonic() < deadline:
                time.sleep(0.01)
        assert len(eofs) == len(sockets)
        assert max(eofs) - left < 2
        for ws in sockets:
            assert ws.session is not None and ws.session._sock is None
            assert not ws.is_active
            ws.connect().close()  # free again
        assert mux._engine._selector is None  # and its selector and wake-up pair


class TestFairness:
    """A flooding connection starves neither the others' events nor their timers."""

    def test_flood_does_not_starve_the_others(self) -> None:
        stop = threading.Event()

        def flood(connection: RawConnection) -> None:
            connection.handshake()
            message = frame(TEXT, b"x" * 64) * 512
            connection.sock.settimeout(5)
            while not stop.is_set():
                connection.send(message)

        with raw_server(flood) as flood_url, websockets_server(echo) as url:
            mux = Multiplexer()
            flooder = WebSocket(flood_url)
            quiet = [WebSocket(url) for _ in range(5)]
            mux.add(flooder, poll=60)
            for ws in quiet:
                mux.add(ws, poll=0.1, ping_rate=None)
            polls: dict[WebSocket, list[float]] = collections.defaultdict(list)
            flood_texts = 0
            flood_between: list[int] = []
            started = time.monotonic()
            for ws, event in mux:
                now = time.monotonic() - started
                if ws is flooder:
                    if event.name == "text":
                        flood_texts += 1
                    continue
                if event.name == "poll":
                    polls[ws].append(now)
                    flood_between.append(flood_texts)
                    if now > 1.5 and ws.is_active:
                        ws.close()
                elif event.name == "disconnected" and all(not q.is_active for q in quiet):
                    if not flooder.is_closing:
                        stop.set()
                        flooder.close()
        assert flood_texts > 1000  # it did flood
        for ws in quiet:
            times = polls[ws]
            # One poll right after Ready, then one every 0.1 s (about 15 before the
            # close): on time, or skipped when late (a loaded machine), never starved.
            assert len(times) >= 10, times
            gaps = sorted(later - earlier for earlier, later in zip(times[1:], times[2:]))
            assert gaps[len(gaps) // 2] < 0.15, gaps  # the median period: on time
            assert gaps[-1] < 1.0, gaps  # none lost behind the flood (it runs for seconds)
        # The polls came while the flood went on, not after it.
        assert len(set(flood_between)) > 10

    def test_a_slow_loop_body_delays_other_timers_by_one_event(self) -> None:
        """Each of A's events takes 50 ms to handle; B's polls wait for one, not a turn's."""
        stop = threading.Event()

        def steady(connection: RawConnection) -> None:
            connection.handshake()
            connection.sock.settimeout(5)
            while not stop.is_set():
                connection.send(frame(TEXT, b"tick") * 64)
                time.sleep(0.2)

        with raw_server(steady) as busy_url, websockets_server(echo) as url:
            a, b = WebSocket(busy_url), WebSocket(url)
            mux = Multiplexer()
            mux.add(a, poll=60, close_timeout=1)
            mux.add(b, poll=0.1, ping_rate=None)
            polls: list[float] = []
            for ws, event in mux:
                if ws is a and event.name == "text" and not stop.is_set():
                    time.sleep(0.05)  # a slow loop body
                elif ws is b and event.name == "poll":
                    polls.append(time.monotonic())
                    if len(polls) == 12:
                        b.close()
                        stop.set()
                        a.close()
        gaps = [later - earlier for earlier, later in zip(polls[1:], polls[2:])]
        # A whole turn of A (16 events) would be 0.8 s: B waited for one event at most.
        assert max(gaps) < 0.1 + 0.05 + 0.15, gaps

    def test_a_turn_is_bounded(self) -> None:
        assert engine_module.TURN_EVENTS <= 64


class TestHostileServers:
    @pytest.mark.parametrize(
        "script_name", ["garbage", "bad_frame", "reset", "half_response", "huge_header"]
    )
    def test_never_raise_into_the_loop(self, script_name: str) -> None:
        def garbage(connection: RawConnection) -> None:
            connection.read_request()
            connection.send(os.urandom(4096))

        def bad_frame(connection: RawConnection) -> None:
            connection.handshake()
            connection.send(b"\x8f\x00" + frame(TEXT, b"\xff\xfe"))

        def reset(connection: RawConnection) -> None:
            connection.handshake()
            connection.sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            connection.sock.close()

        def half_response(connection: RawConnection) -> None:
            connection.read_request()
            connection.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgr")

        def huge_header(connection: RawConnection) -> None:
            connection.read_request()
            connection.send(b"HTTP/1.1 101 Switching Protocols\r\n" + b"X: y\r\n" * 20000)

        script = locals()[script_name]
        with raw_server(script) as bad_url, websockets_server(echo) as url:
            mux = Multiplexer()
            bad = [WebSocket(bad_url, connect_timeout=2) for _ in range(5)]
            good = [WebSocket(url) for _ in range(5)]
            for ws in bad + good:
                mux.add(ws, close_timeout=1)
            body = count_echo(3)

            def on_event(ws: WebSocket, event: events.Event) -> None:
                if ws in good:
                    body(ws, event)

            seen = run_all(mux, on_event)
        for ws in bad:
            assert seen[ws][-1].name == "disconnected"
        for ws in good:
            assert names(seen[ws]) == OPEN + ["text"] * 3 + ["closed", "disconnected"]


class TestMemory:
    def test_an_idle_connection_costs_at_most_32_kib(self) -> None:
        def hold(connection: ServerConnection) -> None:
            for _ in connection:
                pass

        with websockets_server(hold) as url:
            mux = Multiplexer()
            first = [WebSocket(url) for _ in range(10)]
            more = [WebSocket(url) for _ in range(100)]
            for ws in first:
                mux.add(ws, poll=60)
            ready = 0
            measured: list[int] = []
            tracemalloc.start(1)
            try:
                for _, event in mux:
                    if event.name != "ready":
                        continue
                    ready += 1
                    if ready == len(first):
                        measured.append(lomond_memory())
                        for ws in more:
                            mux.add(ws, poll=60)
                    elif ready == len(first) + len(more):
                        measured.append(lomond_memory())
                        break
            finally:
                tracemalloc.stop()
        per_connection = (measured[1] - measured[0]) / len(more)
        # Conservative: the socket objects of the server (in this process) count too.
        assert per_connection <= 32 * 1024, per_connection


def lomond_memory() -> int:
    """Bytes allocated (and still held) by lomond's code, and by the socket module."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, "*/lomond/*"), tracemalloc.Filter(True, "*/socket.py")]
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))


def connect_proxy(connection: RawConnection) -> None:
    """An HTTP CONNECT proxy for one connection: read CONNECT, relay both ways."""
    request = connection.read_request()
    target = request.split(b" ")[1].decode("ascii")
    host, _, port = target.rpartition(":")
    upstream = socket.create_connection((host, int(port)), timeout=5)
    connection.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
    downstream = connection.sock

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    back = threading.Thread(target=pump, args=(upstream, downstream), daemon=True)
    back.start()
    pump(downstream, upstream)
    back.join(5)
    upstream.close()


class TestProxies:
    """Proxied connections are opened step by step in the loop: they block nobody."""

    def test_through_a_proxy_beside_a_hanging_proxy(self) -> None:
        with websockets_server(echo) as url, raw_server(connect_proxy) as proxy, raw_server(
            silent_after_request
        ) as hanging:
            proxy_url = proxy.replace("ws://", "http://")
            hanging_url = hanging.replace("ws://", "http://")
            mux = Multiplexer()
            stuck = WebSocket(url, proxies={"http": hanging_url}, connect_timeout=1.0)
            proxied = [WebSocket(url, proxies={"http": proxy_url}) for _ in range(5)]
            direct = [WebSocket(url) for _ in range(5)]
            for ws in [stuck, *proxied, *direct]:
                mux.add(ws)
            finished: dict[WebSocket, float] = {}
            started = time.monotonic()

            def on_event(ws: WebSocket, event: events.Event) -> None:
                count_echo(2)(ws, event)
                if event.name in ("disconnected", "connect_fail"):
                    finished[ws] = time.monotonic() - started

            seen = run_all(mux, on_event)
        assert names(seen[stuck]) == ["connecting", "connect_fail"]
        assert seen[stuck][-1].reason.startswith("timed out after 1s waiting for")  # type: ignore[attr-defined]
        for ws in proxied:
            assert names(seen[ws]) == OPEN + ["text"] * 2 + ["closed", "disconnected"]
            assert seen[ws][1].proxy == proxy_url  # type: ignore[attr-defined]
        assert max(finished[ws] for ws in proxied + direct) < finished[stuck]

    def test_more_hanging_proxies_than_helper_threads(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """12 hanging proxies per protocol, beside working ones: no helper thread waits."""
        from lomond.loop.helpers import MAX_HELPERS

        submitted = count_submits(monkeypatch)
        schemes = ("http", "socks5", "socks4")
        hanging_count = 12
        assert hanging_count > MAX_HELPERS
        with websockets_server(echo) as url, pproxy(
            "http+socks4+socks5://127.0.0.1:0"
        ) as working, silent_tcp_server() as silent_port:
            expected = {}
            for scheme in schemes:
                proxies = {"http": f"{scheme}://127.0.0.1:{silent_port}"}
                collected = list(WebSocket(url, proxies=proxies, connect_timeout=1.0).connect())
                expected[scheme] = collected[-1].reason  # type: ignore[attr-defined]
            mux = Multiplexer()
            hanging = {
                WebSocket(
                    url,
                    proxies={"http": f"{scheme}://127.0.0.1:{silent_port}"},
                    connect_timeout=1.0,
                ): scheme
                for scheme in schemes
                for _ in range(hanging_count)
            }
            proxied = {
                WebSocket(url, proxies={"http": working.url(scheme)}): scheme
                for scheme in schemes
                for _ in range(3)
            }
            for ws in [*hanging, *proxied]:
                mux.add(ws)
            finished: dict[WebSocket, float] = {}
            lomond_threads: set[str] = set()
            started = time.monotonic()

            def on_event(ws: WebSocket, event: events.Event) -> None:
                lomond_threads.update(
                    thread.name for thread in threading.enumerate() if "lomond" in thread.name
                )
                count_echo(2)(ws, event)
                if event.name in ("disconnected", "connect_fail"):
                    finished[ws] = time.monotonic() - started

            seen = run_all(mux, on_event)
        where = f"127.0.0.1:{silent_port}"
        assert expected == {
            "http": f"timed out after 1s waiting for HTTP proxy {where} "
            "(waiting for the reply to CONNECT)",
            "socks5": f"timed out after 1s waiting for SOCKS5 proxy {where} (SOCKS5 greeting)",
            "socks4": f"timed out after 1s waiting for SOCKS4 proxy {where} (SOCKS4 reply)",
        }
        for ws, scheme in hanging.items():
            assert names(seen[ws]) == ["connecting", "connect_fail"]
            assert seen[ws][-1].reason == expected[scheme]  # type: ignore[attr-defined]
            assert 0.9 <= finished[ws] < 10
        for ws, scheme in proxied.items():
            assert names(seen[ws]) == OPEN + ["text"] * 2 + ["closed", "disconnected"]
            assert seen[ws][1].proxy == working.url(scheme)  # type: ignore[attr-defined]
        # Every working connection was over before the first hanging one gave up.
        assert max(finished[ws] for ws in proxied) < min(finished[ws] for ws in hanging)
        # An IP-address proxy (and target) needs no helper thread.
        assert submitted == []
        assert lomond_threads == set()

    def test_https_proxies_for_ws_urls_are_opened_step_by_step(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
    ) -> None:
        """TLS to the proxy runs in the loop too: only TLS inside TLS needs a helper."""
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        trustme = pytest.importorskip("trustme")
        ca = trustme.CA()
        pem, ca_file = tmp_path / "proxy.pem", str(tmp_path / "ca.pem")
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
        ca.cert_pem.write_to_path(ca_file)
        ca.issue_cert("127.0.0.1").configure_cert(server_context)
        submitted = count_submits(monkeypatch)
        with websockets_server(echo) as url, websockets_server(
            echo, scheme="wss", ssl=server_context
        ) as wss_url, pproxy(
            "http+ssl://127.0.0.1:0", "--ssl", str(pem)
        ) as working, silent_tcp_server() as silent_port:
            # One context for all: building one (loading the CA file) takes a while.
            context = ssl.create_default_context(cafile=ca_file)
            silent = {"http": f"https://127.0.0.1:{silent_port}"}
            options: dict[str, Any] = {"ssl_context": context, "connect_timeout": 1.0}
            alone = list(WebSocket(url, proxies=silent, **options).connect())
            mux = Multiplexer()
            hanging = [WebSocket(url, proxies=silent, **options) for _ in range(12)]
            proxies = {"http": working.url("https")}
            proxied = [WebSocket(url, proxies=proxies, ssl_context=context) for _ in range(3)]
            # wss:// through it is TLS inside TLS: opened by a helper thread.
            proxies["https"] = proxies["http"]
            nested = [WebSocket(wss_url, proxies=proxies, ssl_context=context) for _ in range(2)]
            for ws in [*hanging, *proxied, *nested]:
                mux.add(ws)
            finished: dict[WebSocket, float] = {}
            started = time.monotonic()

            def on_event(ws: WebSocket, event: events.Event) -> None:
                count_echo(2)(ws, event)
                if event.name in ("disconnected", "connect_fail"):
                    finished[ws] = time.monotonic() - started

            seen = run_all(mux, on_event)
        expected = "timed out after 1s in the TLS handshake with 127.0.0.1"
        assert alone[-1].reason == expected  # type: ignore[attr-defined]
        for ws in hanging:
            assert names(seen[ws]) == ["connecting", "connect_fail"]
            assert seen[ws][-1].reason == expected  # type: ignore[attr-defined]
        for ws in proxied + nested:
            assert names(seen[ws]) == OPEN + ["text"] * 2 + ["closed", "disconnected"]
            assert seen[ws][1].proxy == working.url("https")  # type: ignore[attr-defined]
        assert max(finished[ws] for ws in proxied) < min(finished[ws] for ws in hanging)
        assert len(submitted) == len(nested)


def refuse_connect(connection: RawConnection) -> None:
    connection.read_request()
    connection.send(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")


def hang_up_after_connect(connection: RawConnection) -> None:
    connection.read_request()


def garbage_after_connect(connection: RawConnection) -> None:
    connection.read_request()
    connection.send(b"HTTP/1.1 200 OK\r\n\r\ngarbage")


def socks5_no_method(connection: RawConnection) -> None:
    connection.sock.recv(64)
    connection.send(b"\x05\xff")


def socks5_refused(connection: RawConnection) -> None:
    connection.sock.recv(64)
    connection.send(b"\x05\x00")
    connection.sock.recv(512)
    connection.send(b"\x05\x05\x00\x01" + bytes(6))


def socks5_hang_up_after_password(connection: RawConnection) -> None:
    connection.sock.recv(64)
    connection.send(b"\x05\x02")
    connection.sock.recv(512)


def socks4_rejected(connection: RawConnection) -> None:
    connection.sock.recv(512)
    connection.send(b"\x00\x5b" + bytes(6))


class TestProxyFailuresReadAsInConnect:
    """The proxy exchanges are one implementation: a multiplexer says what connect() says."""

    @pytest.mark.parametrize(
        ("script", "proxy"),
        [
            (refuse_connect, "http://"),
            (hang_up_after_connect, "http://"),
            (garbage_after_connect, "http://"),
            (socks5_no_method, "socks5h://"),
            (socks5_refused, "socks5://"),
            (socks5_hang_up_after_password, "socks5://user:secret@"),
            (socks4_rejected, "socks4://"),
        ],
    )
    def test_the_same_failure(self, script: Callable[[RawConnection], None], proxy: str) -> None:
        with raw_server(script) as server:
            proxies = {"http": server.replace("ws://", proxy)}
            target = "ws://127.0.0.1:9/"
            alone = list(WebSocket(target, proxies=proxies, connect_timeout=5).connect())
            mux = Multiplexer()
            together = [WebSocket(target, proxies=proxies, connect_timeout=5) for _ in range(3)]
            for ws in together:
                mux.add(ws)
            seen = run_all(mux)
        assert names(alone) == ["connecting", "connect_fail"]
        reason = alone[-1].reason  # type: ignore[attr-defined]
        assert "proxy" in reason and "timed out" not in reason and "secret" not in reason
        for ws in together:
            assert names(seen[ws]) == ["connecting", "connect_fail"]
            assert seen[ws][-1].reason == reason  # type: ignore[attr-defined]


def count_submits(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record every call handed to a helper thread, from now on."""
    submitted: list[Any] = []
    submit = engine_module.Engine.submit

    def counting_submit(engine: Any, waiter: Any, function: Any) -> Any:
        submitted.append(function)
        return submit(engine, waiter, function)

    monkeypatch.setattr(engine_module.Engine, "submit", counting_submit)
    return submitted


class TestHelperPool:
    def test_at_most_size_threads_and_every_job_runs(self) -> None:
        from lomond.loop.helpers import HelperPool

        pool = HelperPool(size=3, idle_seconds=0.2)
        release = threading.Event()
        done = threading.Semaphore(0)
        ran: list[int] = []

        def job(index: int) -> Callable[[], int]:
            def run() -> int:
                release.wait(5)
                ran.append(index)
                return index

            return run

        jobs = [pool.submit(job(index), done.release) for index in range(10)]
        time.sleep(0.1)
        assert pool.threads == 3
        release.set()
        for _ in jobs:
            assert done.acquire(timeout=5)
        assert sorted(ran) == list(range(10))
        assert [job.result for job in jobs] == list(range(10))
        deadline = time.monotonic() + 5
        while pool.threads and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.threads == 0  # idle threads end

    def test_a_cancelled_job_closes_what_it_opened(self) -> None:
        from lomond.loop.helpers import HelperPool
        from lomond.network.sockets import Opened

        pool = HelperPool(size=1)
        release = threading.Event()
        ours, theirs = socket.socketpair()
        finished = threading.Event()

        running = threading.Event()

        def open_it() -> Opened:
            running.set()
            release.wait(5)
            return Opened(ours, None)

        job = pool.submit(open_it, lambda: None)
        assert running.wait(5)
        job.cancel()  # while it runs: what it returns is closed
        pool.submit(finished.set, lambda: None)
        release.set()
        assert finished.wait(5)
        assert ours.fileno() == -1
        theirs.close()


class TestCallsFromTheLoopBody:
    def test_close_of_another_connection_starts_its_close_timeout(self) -> None:
        """Closing B while handling A's event: B has no other deadline, yet it ends on time."""

        def never_answers_close(connection: RawConnection) -> None:
            connection.handshake()
            connection.sock.settimeout(10)
            while connection.sock.recv(4096):
                pass

        with websockets_server(echo) as url, raw_server(never_answers_close) as silent:
            a, b = WebSocket(url), WebSocket(silent)
            mux = Multiplexer()
            mux.add(a, poll=None, ping_rate=None)
            mux.add(b, poll=None, ping_rate=None, close_timeout=0.5)
            ready: set[WebSocket] = set()
            closed_at = ended_at = 0.0
            seen: dict[WebSocket, list[events.Event]] = collections.defaultdict(list)
            for ws, event in mux:
                seen[ws].append(event)
                if event.name == "ready":
                    ready.add(ws)
                    if len(ready) == 2:
                        a.send_text("go")
                elif ws is a and event.name == "text":
                    closed_at = time.monotonic()
                    b.close()
                elif ws is b and event.name == "disconnected":
                    ended_at = time.monotonic()
                    a.close()
        assert "close timeout" in seen[b][-1].reason  # type: ignore[attr-defined]
        assert 0.4 <= ended_at - closed_at < 2
        assert names(seen[a])[-2:] == ["closed", "disconnected"]
