"""The ``lomond`` command line: an interactive WebSocket client, and ``--demo``.

``lomond URL`` connects, prints every event on one line (``--json``: one JSON object
per line) and sends each line read from stdin as a text message. The end of stdin
closes the connection gracefully. The exit status is 0 after a graceful close, 1
when the connection failed (the reason is printed on stderr, on one line), 2 for a
usage error and 130 when interrupted.

The client itself is :class:`lomond.cli.interactive.InteractiveClient`; this module
parses the arguments and sets up the output.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import platform
import sys
from typing import Callable, Sequence, TextIO

from .._version import __version__
from ..websocket import WebSocket
from .console import EventPrinter
from .interactive import ClientOptions, InteractiveClient

#: The exit status after Ctrl+C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

#: Printed on stderr (after ``lomond: warning:``) when ``--insecure`` is given.
INSECURE_WARNING = (
    "--insecure: TLS certificates and host names are not verified; "
    "anyone on the network path can read and change this connection"
)


# -- arguments -----------------------------------------------------------------------


def _header(value: str) -> tuple[str, str]:
    name, colon, header_value = value.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {value!r}")
    return name.strip(), header_value.strip()


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {value!r}")
    return seconds


def _positive_seconds(value: str) -> float:
    seconds = _seconds(value)
    if seconds == 0:
        raise argparse.ArgumentTypeError("expected a number of seconds > 0, got 0")
    return seconds


def _whole_number(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number, ``least`` or more."""

    def parse(value: str) -> int:
        try:
            count = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
        if count < least:
            raise argparse.ArgumentTypeError(f"expected a number >= {least}, got {value!r}")
        return count

    return parse


_count = _whole_number(1)
_redirects = _whole_number(0)


def _existing_file(value: str) -> str:
    if not os.path.isfile(value):
        raise argparse.ArgumentTypeError(f"no such file: {value!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``lomond`` command."""
    parser = argparse.ArgumentParser(
        prog="lomond",
        description=(
            "Connect to a WebSocket server and print its events, one per line. "
            "Each line on stdin is sent as a text message; the end of stdin closes "
            "the connection. Exit status: 0 after a graceful close, 1 if the "
            "connection failed, 2 for a usage error."
        ),
        epilog="Try it without a server: lomond --demo",
    )
    parser.add_argument("url", nargs="?", metavar="URL", help="a ws:// or wss:// URL")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run a scripted session against a built-in loopback echo server (no network)",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="print one JSON object per event")
    output.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the event lines (auto: when stdout is a terminal and NO_COLOR is unset)",
    )
    output.add_argument(
        "-v", "--verbose", action="store_true", help="log lomond's debug messages to stderr"
    )
    output.add_argument(
        "--version",
        action="version",
        version=f"lomond {__version__} (Python {platform.python_version()})",
    )
    request = parser.add_argument_group("connection")
    request.add_argument(
        "-H",
        "--header",
        action="append",
        type=_header,
        default=[],
        metavar="'NAME: VALUE'",
        help="add a request header (repeatable)",
    )
    request.add_argument(
        "-p",
        "--protocol",
        action="append",
        default=[],
        metavar="PROTOCOL",
        help="offer a subprotocol (repeatable)",
    )
    request.add_argument("--origin", help="send this Origin header")
    request.add_argument("--compress", action="store_true", help="offer permessage-deflate")
    request.add_argument(
        "--proxy",
        metavar="URL",
        help="connect through this proxy (default: from the environment, honouring no_proxy)",
    )
    request.add_argument(
        "--insecure", action="store_true", help="do not verify the server's TLS certificate"
    )
    request.add_argument(
        "--cafile", type=_existing_file, metavar="PATH", help="trust exactly this CA bundle"
    )
    request.add_argument(
        "--ping-rate",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="send a ping every SECONDS (default: 30; 0 disables)",
    )
    request.add_argument(
        "--ping-timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help="fail if no pong arrives for SECONDS (default: never)",
    )
    request.add_argument(
        "--ping-timeout-data",
        action="store_true",
        help="with --ping-timeout: any data received counts as well as a pong",
    )
    request.add_argument(
        "--max-redirects",
        type=_redirects,
        default=10,
        metavar="N",
        help="follow at most N redirects of the upgrade (default: 10; 0 follows none)",
    )
    request.add_argument(
        "--persist",
        action="store_true",
        help="reconnect with back-off whenever the connection ends",
    )
    session = parser.add_argument_group("session")
    session.add_argument(
        "--send",
        action="append",
        default=[],
        metavar="TEXT",
        help=(
            "send TEXT once connected (repeatable), then close after as many messages "
            "came back (or --count); stdin is not read"
        ),
    )
    session.add_argument(
        "--count",
        type=_count,
        metavar="N",
        help="close (and exit) after receiving N messages",
    )
    session.add_argument(
        "--timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help="give up after SECONDS in all (connecting included): close, exit status 1",
    )
    session.add_argument(
        "--linger",
        type=_seconds,
        default=0.5,
        metavar="SECONDS",
        help=(
            "at the end of stdin, close once no message has arrived for SECONDS, so that "
            "replies to the last lines are printed (default: 0.5)"
        ),
    )
    session.add_argument(
        "--no-input", action="store_true", help="do not read stdin; just print events"
    )
    session.add_argument(
        "--record",
        metavar="FILE",
        help=(
            "write the session to FILE as JSON lines (both directions, time offsets, "
            "pings, the close or how it dropped), to replay with lomond.testing.Server"
        ),
    )
    return parser


def make_websocket(args: argparse.Namespace) -> WebSocket:
    """Return the WebSocket the arguments describe.

    Raises:
        ValueError: The URL, a header or another argument is invalid.
        TypeError: Likewise.
    """
    proxies = None if args.proxy is None else {"http": args.proxy, "https": args.proxy}
    return WebSocket(
        args.url,
        proxies=proxies,
        protocols=args.protocol,
        compress=args.compress,
        ssl_verify=not args.insecure,
        ssl_cafile=args.cafile,
        headers=args.header,
        origin=args.origin,
        connect_timeout=args.timeout or 30.0,
        max_redirects=args.max_redirects,
    )


def client_options(args: argparse.Namespace) -> ClientOptions:
    """Return the session options of the parsed command line."""
    return ClientOptions(
        send=args.send,
        count=args.count,
        timeout=args.timeout,
        linger=args.linger,
        persist=args.persist,
        ping_rate=args.ping_rate,
        ping_timeout=args.ping_timeout,
        data_resets_ping_timeout=args.ping_timeout_data,
    )


# -- entry point ---------------------------------------------------------------------


def use_colour(choice: str, stream: TextIO) -> bool:
    """Whether to colour output on ``stream`` for ``--color=choice``."""
    if choice != "auto":
        return choice == "always"
    # https://no-color.org: any non-empty NO_COLOR turns colour off.
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def _input_fd(args: argparse.Namespace) -> int | None:
    if args.send or args.no_input or sys.stdin is None:
        return None
    try:
        return sys.stdin.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``--verbose`` installs on the ``lomond`` logger."""


def configure_logging(verbose: bool) -> None:
    """Send lomond's log to stderr with ``--verbose``; otherwise keep it quiet.

    Events already report what lomond would log as a warning (a protocol error, a
    rejection), so without ``--verbose`` nothing is logged.
    """
    logger = logging.getLogger("lomond")
    for handler in list(logger.handlers):
        if isinstance(handler, (_StderrHandler, logging.NullHandler)):
            logger.removeHandler(handler)
    if verbose:
        handler = _StderrHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("lomond: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    else:
        logger.addHandler(logging.NullHandler())


def _run_recorded(client: InteractiveClient, path: str, parser: argparse.ArgumentParser) -> int:
    """Run ``client`` with ``--record path``: every step goes to the file as it happens."""
    from ..testing.recording import Recorder

    try:
        stream = open(path, "w", encoding="utf-8")
    except OSError as error:
        parser.error(f"--record: cannot write {path!r}: {error.strerror}")
    with stream:
        recorder = client.recorder = Recorder(stream, client.ws.url)
        client.ws.trace = recorder.trace
        try:
            return client.run()
        finally:
            recorder.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    Usage errors exit through :class:`SystemExit` with status 2, as argparse does.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.demo and args.url is not None:
        parser.error("--demo takes no URL")
    if not args.demo and args.url is None:
        parser.error("a URL is required (or try: lomond --demo)")
    stdout = sys.stdout
    if isinstance(stdout, io.TextIOWrapper):
        # Print what the terminal cannot encode as escapes rather than fail.
        stdout.reconfigure(errors="backslashreplace")
    printer = EventPrinter(stdout, as_json=args.json, colour=use_colour(args.color, stdout))
    configure_logging(args.verbose)
    try:
        if args.demo:
            from .demo import run_demo

            outcome = run_demo(printer)
            if outcome.exit_status:
                sys.stderr.write(f"lomond: {outcome.reason}\n")
            return outcome.exit_status
        try:
            ws = make_websocket(args)
        except (TypeError, ValueError) as error:
            parser.error(str(error))
        if args.insecure:
            sys.stderr.write(f"lomond: warning: {INSECURE_WARNING}\n")
        client = InteractiveClient(ws, client_options(args), printer, sys.stderr, _input_fd(args))
        if args.record is None:
            return client.run()
        return _run_recorded(client, args.record, parser)
    except KeyboardInterrupt:
        sys.stderr.write("lomond: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (``lomond URL | head``): stop quietly, and
        # keep Python from complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
        return 1
