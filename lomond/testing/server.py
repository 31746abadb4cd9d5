""":class:`Server`: a real WebSocket server on the loopback interface, for testing clients."""

from __future__ import annotations

import collections
import json
import selectors
import socket
import threading

from ..protocol.frames import Opcode, checked_close, control_payload
from ..protocol.url import host_port
from .connection import Connection, Options
from .handshake import checked_reject
from .protocol import MAX_MESSAGE_SIZE, ClientMessage
from .recording import Script, read_recording
from .replay import Replayer

TYPE_CHECKING = False  # typing is not imported at run time
if TYPE_CHECKING:
    from os import PathLike
    from typing import Any, Deque, Dict, Iterable, List, Protocol, Union

    Message = Union[str, bytes]

    class ReplayCall(Protocol):
        def __call__(
            self, path: str | PathLike[str], speed: float = 1.0, *, timeout: float | None = None
        ) -> Server: ...


def _check_seconds(name: str, value: object, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not (value >= 0 if allow_zero else value > 0) or value == float("inf"):
        raise ValueError(f"{name} must be a finite number of seconds > 0, not {value!r}")
    return float(value)


class _ReplayMethod:
    """``Server.replay(path)`` makes a started server; ``server.replay(path)`` uses one."""

    def __get__(self, instance: Server | None, owner: type[Server]) -> ReplayCall:
        if instance is not None:
            return instance._replay

        def replay(
            path: str | PathLike[str], speed: float = 1.0, *, timeout: float | None = None
        ) -> Server:
            server = owner()
            server._replay(path, speed, timeout=timeout)
            return server.start()

        replay.__doc__ = Server._replay.__doc__
        return replay


class Server:
    """A WebSocket server on 127.0.0.1, in a background thread, for testing clients.

    It listens on a free port from :meth:`start` (or ``with``) to :meth:`stop`, and
    takes any number of connections, one after the other or at once (a client that
    reconnects, as :func:`~lomond.persist.persist` does, is served again). Every
    message a client sends lands in :attr:`received`; the test sends with
    :meth:`send_text`, :meth:`send_binary`, :meth:`send_json` and :meth:`ping`, and
    ends a connection with :meth:`close`, :meth:`drop` or :meth:`reset`. These go to
    the latest client that connected and is still open; with none open, they wait
    up to ``timeout`` seconds for one. The server answers pings and close frames
    itself.

    A client's protocol violation (an unmasked frame, an unknown opcode, reserved
    bits without permessage-deflate, text that is not UTF-8, ...) fails its
    connection with close code 1002 (1007, 1009), as a real server would, and is
    noted in :attr:`violations`; :meth:`check` (and the ``lomond_server`` pytest
    fixture) fails the test on it.

    Args:
        subprotocols: The subprotocols the server speaks, preferred first; it picks
            the first one the client offers.
        compress: Accept permessage-deflate (each message is compressed on its own).
        reject: ``(status, headers)``: answer every upgrade with this HTTP status
            (300-599) and headers (a mapping or ``(name, value)`` pairs) instead.
        max_message_size: The largest message taken from a client, in bytes;
            larger is a violation (close code 1009).
        timeout: The default wait, in seconds, of the ``expect_*`` methods, of
            sends waiting for a client, and of a replay waiting for the client.
        close_timeout: After the server's close frame, how long the client has to
            answer before the connection is dropped.

    Raises:
        TypeError, ValueError: An argument is invalid.
    """

    replay = _ReplayMethod()

    def __init__(
        self,
        *,
        subprotocols: Iterable[str] | None = None,
        compress: bool = False,
        reject: Any = None,
        max_message_size: int = MAX_MESSAGE_SIZE,
        timeout: float = 5.0,
        close_timeout: float = 5.0,
    ) -> None:
        protocols = list(subprotocols or ())
        if isinstance(subprotocols, str) or not all(isinstance(p, str) for p in protocols):
            raise TypeError("subprotocols must be a list of str")
        if not isinstance(compress, bool):
            raise TypeError(f"compress must be True or False, not {compress!r}")
        if isinstance(max_message_size, bool) or not isinstance(max_message_size, int):
            raise TypeError("max_message_size must be an int")
        if max_message_size < 1:
            raise ValueError(f"max_message_size must be at least 1, not {max_message_size}")
        self.timeout = _check_seconds("timeout", timeout)
        self._options = Options(
            protocols,
            compress,
            checked_reject(reject),
            max_message_size,
            _check_seconds("close_timeout", close_timeout),
        )
        #: Every message the clients sent, in order: text as ``str``, binary as ``bytes``.
        self.received: List[Message] = []
        #: The protocol violations the clients committed, described.
        self.violations: List[str] = []
        #: How replays differed from their recordings, described.
        self.mismatches: List[str] = []
        self._connections = 0
        # How many of the last messages of ``received`` no expect_* took yet (counted
        # from the end, so that a test may clear the list).
        self._pending = 0
        self._open: List[Connection] = []
        self._live: List[Connection] = []
        self._scripts: Deque[tuple[Script, float, float]] = collections.deque()
        self._replayers: Dict[Connection, Replayer] = {}
        self._changed = threading.Condition()
        self._listener: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._url: str | None = None

    def __repr__(self) -> str:
        where = self._url or "not started"
        return f"<lomond.testing.Server {where} connections={self._connections}>"

    # -- running -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's ``ws://127.0.0.1:PORT/`` URL.

        Raises:
            RuntimeError: The server has not been started.
        """
        if self._url is None:
            raise RuntimeError("the Server is not started: use start() or a with block")
        return self._url

    def start(self) -> Server:
        """Start listening and serving in a daemon thread; return the server.

        Starting a running server does nothing.

        Raises:
            RuntimeError: The server was stopped (a server serves once).
        """
        if self._stopped:
            raise RuntimeError("a stopped Server cannot be started again")
        if self._listener is None:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind(("127.0.0.1", 0))
            listener.listen(16)
            self._listener = listener
            self._url = f"ws://{host_port(*listener.getsockname()[:2])}/"
            self._wake = socket.socketpair()
            self._thread = threading.Thread(
                target=self._accept_loop, name="lomond-test-server", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop: drop every open connection and close the listening socket.

        Waits (briefly) for the server's threads to finish. Stopping twice, or a
        server never started, does nothing.
        """
        if self._stopped:
            return
        self._stopped = True
        if self._listener is None or self._wake is None or self._thread is None:
            return
        try:
            self._wake[1].send(b"x")
            self._thread.join(5)
            with self._changed:
                connections = list(self._live)
            for connection in connections:
                connection.abort("drop")
            for connection in connections:
                connection.thread.join(5)
            for replayer in list(self._replayers.values()):
                if replayer.thread.ident is not None:
                    replayer.thread.join(5)
        finally:
            self._listener.close()
            for end in self._wake:
                end.close()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wake is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake[0], selectors.EVENT_READ)
            while not self._stopped:
                ready = selector.select()
                if any(key.fileobj is self._wake[0] for key, _ in ready):
                    return
                try:
                    sock, _ = self._listener.accept()
                except OSError:
                    continue
                self._serve(sock)

    def _serve(self, sock: socket.socket) -> None:
        with self._changed:
            self._connections += 1
            replay = self._scripts.popleft() if self._scripts else None
            options = self._options if replay is None else self._replay_options(replay[0])
            connection = Connection(sock, self, options)
            self._live.append(connection)
            if replay is not None and replay[0].reject is None:
                script, speed, timeout = replay
                self._replayers[connection] = Replayer(
                    script, connection, speed, timeout, self._mismatch
                )
            self._changed.notify_all()
        connection.start()

    def _replay_options(self, script: Script) -> Options:
        """Answer the upgrade as the recorded server did."""
        protocols = [script.protocol] if script.protocol else []
        options = self._options
        return Options(
            protocols,
            script.compress,
            script.reject,
            options.max_message_size,
            options.close_timeout,
        )

    # -- what the connections report (their threads call these) --------------------------

    def opened(self, connection: Connection) -> None:
        """A client's upgrade was accepted."""
        with self._changed:
            self._open.append(connection)
            self._changed.notify_all()
        replayer = self._replayers.get(connection)
        if replayer is not None:
            replayer.thread.start()

    def message(self, connection: Connection, message: ClientMessage) -> None:
        """A client sent a text or binary message."""
        payload = message.payload
        with self._changed:
            text = message.opcode == Opcode.TEXT
            self.received.append(payload.decode("utf-8") if text else payload)
            self._pending += 1
            self._changed.notify_all()
        replayer = self._replayers.get(connection)
        if replayer is not None:
            replayer.message(message)

    def violation(self, connection: Connection, description: str) -> None:
        """A client broke the protocol."""
        with self._changed:
            self.violations.append(description)
            self._changed.notify_all()

    def ended(self, connection: Connection) -> None:
        """A connection ended."""
        with self._changed:
            if connection in self._open:
                self._open.remove(connection)
            self._live.remove(connection)
            self._changed.notify_all()
        replayer = self._replayers.get(connection)
        if replayer is not None:
            replayer.ended()

    def _mismatch(self, description: str) -> None:
        with self._changed:
            self.mismatches.append(description)
            self._changed.notify_all()

    # -- the test's side: connections ------------------------------------------------------

    @property
    def connections(self) -> int:
        """How many clients have connected so far (rejected ones included)."""
        return self._connections

    def _latest(self, timeout: float | None = None) -> Connection:
        """The latest open connection, waiting up to ``timeout`` for one."""
        wait = self.timeout if timeout is None else timeout
        with self._changed:
            # A connection the server is closing takes nothing more: the next one will.
            if not self._changed.wait_for(self._open_connections, wait):
                raise AssertionError(f"no client connected to the test server within {wait:g}s")
            return self._open_connections()[-1]

    def _open_connections(self) -> list[Connection]:
        return [connection for connection in self._open if connection.state == "open"]

    def send_text(self, text: str) -> None:
        """Send a text message to the latest client.

        Raises:
            TypeError: ``text`` is not a ``str``.
            AssertionError: No client is connected (after waiting ``timeout``).
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        self._latest().send(Opcode.TEXT, text.encode("utf-8"))

    def send_binary(self, data: bytes) -> None:
        """Send a binary message (any bytes-like object) to the latest client.

        Raises:
            TypeError: ``data`` is not bytes-like.
            AssertionError: No client is connected (after waiting ``timeout``).
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        self._latest().send(Opcode.BINARY, bytes(data))

    def send_json(self, obj: object) -> None:
        """Send ``obj`` as JSON in a text message to the latest client."""
        self.send_text(json.dumps(obj))

    def ping(self, data: bytes = b"") -> None:
        """Send a ping (at most 125 bytes) to the latest client; lomond answers it itself.

        Raises:
            TypeError, ValueError: ``data`` is not bytes, or too long.
            AssertionError: No client is connected (after waiting ``timeout``).
        """
        payload = control_payload("ping", data)
        self._latest().send(Opcode.PING, payload)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake with the latest client, and return at once.

        The client answers with its close frame (lomond yields ``Closing(code,
        reason)``), then the server closes the TCP connection; a client that does not
        answer within ``close_timeout`` is dropped.

        Raises:
            ValueError: ``code`` may not be sent (RFC 6455 §7.4).
            AssertionError: No client is connected (after waiting ``timeout``).
        """
        payload = checked_close(code, reason)
        self._latest().close(code, payload)

    def drop(self) -> None:
        """Close the latest client's TCP connection without a close frame (FIN).

        lomond yields ``Disconnected(graceful=False)``.
        """
        self._latest().abort("drop")

    def reset(self) -> None:
        """Reset the latest client's TCP connection (RST: ``SO_LINGER`` of 0).

        lomond yields ``Disconnected(graceful=False)`` with a "connection reset" reason.
        Returns once the reset is sent. As with any reset, what the client had not
        read yet is lost: messages sent just before may never arrive.
        """
        connection = self._latest()
        connection.abort("reset")
        connection.thread.join(self.timeout)

    # -- the test's side: what arrived -------------------------------------------------------

    def expect_text(self, timeout: float | None = None) -> str:
        """Wait for the next message from a client; it must be text. Return it.

        Messages are taken from :attr:`received` in order, one per ``expect_*`` call.

        Raises:
            AssertionError: No message came within ``timeout`` seconds (default: the
                server's ``timeout``), or it is binary. The message says what did arrive.
        """
        message = self._next_message("text", timeout)
        if not isinstance(message, str):
            raise AssertionError(f"expected a text message; the client sent binary {message!r}")
        return message

    def expect_binary(self, timeout: float | None = None) -> bytes:
        """Wait for the next message from a client; it must be binary. Return it.

        Raises:
            AssertionError: No message came within ``timeout`` seconds, or it is text.
        """
        message = self._next_message("binary", timeout)
        if not isinstance(message, bytes):
            raise AssertionError(f"expected a binary message; the client sent text {message!r}")
        return message

    def expect_json(self, timeout: float | None = None) -> Any:
        """Wait for the next message from a client; it must be JSON text. Return it parsed.

        Raises:
            AssertionError: No message came within ``timeout`` seconds, or it is not
                JSON text.
        """
        message = self._next_message("JSON", timeout)
        if not isinstance(message, str):
            raise AssertionError(f"expected a JSON message; the client sent binary {message!r}")
        try:
            return json.loads(message)
        except ValueError:
            raise AssertionError(f"expected a JSON message; the client sent {message!r}") from None

    def _next_message(self, kind: str, timeout: float | None) -> Message:
        wait = self.timeout if timeout is None else _check_seconds("timeout", timeout, True)
        with self._changed:
            if not self._changed.wait_for(self._has_pending, wait):
                summary = self._summary()
                raise AssertionError(
                    f"no {kind} message from the client within {wait:g}s; {summary}"
                )
            message = self.received[-self._pending]
            self._pending -= 1
            return message

    def _has_pending(self) -> bool:
        # Messages the test removed from ``received`` can no longer be expected.
        self._pending = min(self._pending, len(self.received))
        return self._pending > 0

    def _summary(self) -> str:
        """What did arrive, for an assertion message (called under the lock)."""
        count = len(self.received)
        parts = [f"{count} message{'s' if count != 1 else ''} received before"]
        if count:
            shown = ", ".join(repr(message)[:80] for message in self.received[-3:])
            parts[0] += f" (the last: {shown})"
        parts.append(f"{self._connections} connection(s), {len(self._open)} open")
        if self.violations:
            parts.append(f"violations: {'; '.join(self.violations)}")
        if self.mismatches:
            parts.append(f"replay mismatches: {'; '.join(self.mismatches)}")
        return "; ".join(parts)

    def check(self) -> None:
        """Fail if a client broke the protocol or a replay differed from its recording.

        The ``lomond_server`` fixture calls it after each test.

        Raises:
            AssertionError: Naming every violation and mismatch.
        """
        with self._changed:
            problems = [f"protocol violation by the client: {v}" for v in self.violations]
            problems += self.mismatches
        if problems:
            raise AssertionError("lomond.testing.Server: " + "; ".join(problems))

    # -- replay --------------------------------------------------------------------------

    def _replay(
        self, path: str | PathLike[str], speed: float = 1.0, *, timeout: float | None = None
    ) -> Server:
        """Serve the recording at ``path`` (written by ``lomond URL --record``).

        ``server.replay(path)`` serves it to the next clients that connect (one
        recorded connection each; later clients are served normally) and returns
        the server; ``Server.replay(path)`` does the same with a new, started
        server. What the server sent is sent again in order, after the recorded gaps
        times ``speed`` (``0``: no waiting); each message the client sent is waited
        for (up to ``timeout`` seconds) and compared; each connection ends as the
        recorded one did (close code and reason, drop or reset; a reset keeps its
        recorded gap whatever the speed, as it discards what the client has not read
        yet). Differences go to
        :attr:`mismatches`, which :meth:`check` and the pytest fixture report.

        Raises:
            OSError: The file cannot be read.
            ValueError: It is not a recording, it holds no connection, or ``speed``
                is negative.
        """
        speed = _check_seconds("speed", speed, allow_zero=True)
        wait = self.timeout if timeout is None else _check_seconds("timeout", timeout)
        scripts = read_recording(path)
        if not scripts:
            raise ValueError(f"{path}: the recording holds no connection")
        with self._changed:
            self._scripts.extend((script, speed, wait) for script in scripts)
        return self
