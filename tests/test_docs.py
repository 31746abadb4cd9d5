"""The documentation cannot rot: its examples run, its doctests pass, its diagrams are real.

* Every ``docs/examples/*.py`` runs against a local server, and its output matches
  the ``.out`` file that the pages show next to it.
* The doctests of every page (and of the public modules' docstrings) pass.
* No page holds a Python example that nothing runs.
* The event orderings drawn in ``docs/events.rst`` are what lomond yields.
* Every public class, function, method and property of the public modules has a
  docstring.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import inspect
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import textwrap
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from servers import RawConnection, echo, frame, free_port_refused, raw_server, websockets_server

import lomond
from lomond import Status, WebSocket, events
from lomond.cli.demo_server import EchoServer
from lomond.errors import TransportFail, WebSocketClosing

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parent.parent
#: Where the README's links to the repository's files start.
REPOSITORY_FILES = "https://github.com/wildfoundry/dataplicity-lomond/blob/HEAD/"
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
PAGES = sorted(DOCS.glob("*.rst"))

#: The URL the pages show for the echo server, and the port they show as refused.
DOCUMENTED_ECHO_URL = "ws://127.0.0.1:8765/"
DOCUMENTED_REFUSED_PORT = 9

#: The public modules (those of docs/api.rst).
PUBLIC_MODULES = [
    "lomond",
    "lomond.websocket",
    "lomond.events",
    "lomond.persist",
    "lomond.multiplexer",
    "lomond.status",
    "lomond.errors",
    "lomond.response",
    "lomond.constants",
    "lomond.compression",
    "lomond.testing",
    "lomond.testing.server",
]


# -- running the example files ------------------------------------------------------


def example_command(name: str, *args: str) -> list[str]:
    return [sys.executable, "-u", str(EXAMPLES / name), *args]


def example_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_example(name: str, *args: str, cwd: Path | None = None) -> str:
    """Run ``docs/examples/<name>`` to the end; return its output (stdout and stderr)."""
    result = subprocess.run(
        example_command(name, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=20,
        cwd=cwd,
        env=example_env(),
    )
    assert result.returncode == 0, result.stdout
    return result.stdout


def documented_output(name: str) -> str:
    """The output a page shows for ``name`` (its ``.out`` file, without the command line)."""
    text = (EXAMPLES / name).with_suffix(".out").read_text(encoding="utf-8")
    return "".join(line for line in text.splitlines(True) if not line.startswith("$ "))


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].strip("/"))


def normalise(output: str, port: int, documented_port: int) -> str:
    """Show ``port`` as the pages do, and socket byte counts (which vary) as ``N``."""
    output = output.replace(f"127.0.0.1:{port}", f"127.0.0.1:{documented_port}")
    return re.sub(r"^(socket_\w+ +\{'length': )\d+", r"\1N", output, flags=re.M)


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    with EchoServer() as server:
        yield server.url


class TestExamples:
    """Each example runs, and prints what its page says it prints."""

    @pytest.mark.parametrize(
        "name",
        ["hello.py", "sending.py", "threads.py", "idle_timeout.py", "tracing.py", "streaming.py"],
    )
    def test_against_the_echo_server(self, echo_url: str, name: str) -> None:
        output = run_example(name, echo_url)
        documented_port = port_of(DOCUMENTED_ECHO_URL)
        expected = normalise(documented_output(name), documented_port, documented_port)
        assert normalise(output, port_of(echo_url), documented_port) == expected

    @pytest.mark.parametrize("name", ["connect_fail.py", "logging_setup.py"])
    def test_against_a_refused_port(self, name: str) -> None:
        port = free_port_refused()
        output = run_example(name, f"ws://127.0.0.1:{port}/")
        assert normalise(output, port, DOCUMENTED_REFUSED_PORT) == documented_output(name)

    def test_echo_server(self) -> None:
        """It serves until interrupted; the quick start's first program runs against it."""
        process = subprocess.Popen(
            example_command("echo_server.py", "0"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=example_env(),
        )
        try:
            assert process.stdout is not None
            first_line = process.stdout.readline()
            match = re.match(r"echo server on (ws://127\.0\.0\.1:(\d+)/) ", first_line)
            assert match, first_line
            url, port = match.group(1), int(match.group(2))
            documented_port = port_of(DOCUMENTED_ECHO_URL)
            assert normalise(first_line, port, documented_port) == documented_output(
                "echo_server.py"
            )
            output = run_example("hello.py", url)
            assert normalise(output, port, documented_port) == documented_output("hello.py")
            process.send_signal(signal.SIGINT)
            assert process.wait(10) == 0
        finally:
            process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()

    def test_persist_feed(self, echo_url: str) -> None:
        """It subscribes and prints the feed; it runs until stopped."""
        process = subprocess.Popen(
            example_command("persist_feed.py", echo_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=example_env(),
        )
        try:
            assert process.stdout is not None
            assert process.stdout.readline() == "{'subscribe': 'ticker'}\n"
        finally:
            process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()

    def test_multiplexer_feeds(self, echo_url: str) -> None:
        """Each feed prints what its page shows; the feeds interleave in any order."""
        output = run_example("multiplexer_feeds.py", echo_url)
        expected = documented_output("multiplexer_feeds.py")
        assert sorted(output.splitlines()) == sorted(expected.splitlines())
        lines = output.splitlines()
        for name in ("btc", "eth", "sol"):
            mine = [line for line in lines if line.startswith(name + " ")]
            assert mine == [f"{name} {{'subscribe': '{name}'}}", f"{name} disconnected: closed"]

    def test_client_certificate(self, tmp_path: Path) -> None:
        """With the files it names in its directory, it passes a server's client check."""
        trustme = pytest.importorskip("trustme")
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        client = ca.issue_cert("client.example")
        client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
        client.private_key_pem.write_to_path(str(tmp_path / "client.key"))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        context.verify_mode = ssl.CERT_REQUIRED
        ca.configure_trust(context)
        with websockets_server(echo, scheme="wss", ssl=context) as url:
            output = run_example("client_certificate.py", url + "/", cwd=tmp_path)
        assert output == "the server accepted the client certificate\ndisconnected: closed\n"

    def test_every_example_is_tested(self) -> None:
        tested = {
            "hello.py",
            "sending.py",
            "threads.py",
            "idle_timeout.py",
            "tracing.py",
            "connect_fail.py",
            "logging_setup.py",
            "echo_server.py",
            "persist_feed.py",
            "client_certificate.py",
            "price_bot.py",
            "test_price_bot.py",
            "multiplexer_feeds.py",
            "streaming.py",
        }
        assert {path.name for path in EXAMPLES.glob("*.py")} == tested

    def test_the_bot_s_tests(self) -> None:
        """The testing page's bot passes its tests, which use the ``lomond_server``
        fixture (the plugin that installing lomond registers) and replay
        ``incident.jsonl``."""
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_price_bot.py"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
            cwd=EXAMPLES,
            env=example_env(),
        )
        assert result.returncode == 0, result.stdout
        assert "3 passed" in result.stdout


# -- what the pages contain ---------------------------------------------------------

_CODE_DIRECTIVE = re.compile(r"\s*\.\. (?:code-block|code|sourcecode)::\s*(\S*)\s*$")
_PYTHON = {"", "default", "python", "python3", "py", "pycon"}


def literal_blocks(text: str) -> Iterator[tuple[int, str, str]]:
    """Yield ``(line number, language, code)`` for each literal block of a page.

    A literal block follows a paragraph that ends with ``::`` (its language is the
    default, Python) or a ``code-block`` directive.
    """
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        directive = _CODE_DIRECTIVE.match(line)
        if directive:
            language = directive.group(1)
        elif line.rstrip().endswith("::") and not line.lstrip().startswith(".."):
            language = ""
        else:
            index += 1
            continue
        indent = len(line) - len(line.lstrip())
        end = index + 1
        if directive:
            while end < len(lines) and lines[end].strip().startswith(":"):
                end += 1  # the directive's options
        body = []
        while end < len(lines) and (
            not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent
        ):
            body.append(lines[end])
            end += 1
        yield index + 1, language, textwrap.dedent("\n".join(body)).strip()
        index = end


def unrun_python(code: str) -> bool:
    """Whether ``code`` is a Python example that only a doctest or a test could run.

    Doctests run (below); text that is not Python (diagrams, shell sessions) and a
    single expression (a signature, a repr) are illustrations, not examples.
    """
    if code.startswith(">>>"):
        return False
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    return not (len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr))


def python_only(text: str) -> str:
    """``text`` with the code blocks in other languages blanked out (a console session
    may show ``>>>`` lines that are output, not doctests); line numbers are kept."""
    lines = text.splitlines()
    for line_number, language, _ in literal_blocks(text):
        if language in _PYTHON:
            continue
        indent = len(lines[line_number - 1]) - len(lines[line_number - 1].lstrip())
        index = line_number
        while index < len(lines) and (
            not lines[index].strip() or len(lines[index]) - len(lines[index].lstrip()) > indent
        ):
            lines[index] = ""
            index += 1
    return "\n".join(lines) + "\n"


def literal_includes(page: Path) -> list[Path]:
    text = page.read_text(encoding="utf-8")
    return [
        (page.parent / target).resolve()
        for target in re.findall(r"^\s*\.\. literalinclude:: (\S+)", text, re.M)
    ]


class TestPages:
    """Every example on every page runs: as a doctest or as an included example file."""

    @pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
    def test_no_python_example_goes_unrun(self, page: Path) -> None:
        text = page.read_text(encoding="utf-8")
        unrun = [
            f"{page.name}:{line}: {code.splitlines()[0]}"
            for line, language, code in literal_blocks(text)
            if language in _PYTHON and unrun_python(code)
        ]
        assert not unrun, (
            "Python examples that no test runs; make them doctests, or example files "
            "in docs/examples/ included with literalinclude:\n" + "\n".join(unrun)
        )

    @pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
    def test_doctests(self, page: Path) -> None:
        test = doctest.DocTestParser().get_doctest(
            python_only(page.read_text(encoding="utf-8")), {}, page.name, str(page), 0
        )
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        runner.run(test)
        assert runner.failures == 0

    @pytest.mark.parametrize("name", PUBLIC_MODULES)
    def test_docstring_doctests(self, name: str) -> None:
        failures, _ = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
        assert failures == 0

    def test_included_files_exist_and_every_example_is_shown(self) -> None:
        included = {path for page in PAGES for path in literal_includes(page)}
        assert all(path.exists() for path in included), sorted(
            str(path) for path in included if not path.exists()
        )
        shown = sorted(EXAMPLES.glob("*.py")) + sorted(EXAMPLES.glob("*.out"))
        assert [path for path in shown if path.resolve() not in included] == []

    def test_the_readme_links_every_page(self) -> None:
        # The README is also the package's description, shown away from the
        # repository: its links are absolute, to the repository (see test_packaging).
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        page_link = r"\]\(" + re.escape(REPOSITORY_FILES) + r"(docs/[\w/]+\.rst)\)"
        linked = set(re.findall(page_link, readme))
        assert all((ROOT / link).exists() for link in linked), linked
        pages = {f"docs/{page.name}" for page in PAGES} - {"docs/index.rst", "docs/changelog.rst"}
        assert pages <= linked

    def test_the_quick_start_installs_this_version(self) -> None:
        # The package index has lomond 0.3.4, which has no command line: the quick
        # start installs from the checkout, and shows how to check the version.
        text = (DOCS / "quickstart.rst").read_text(encoding="utf-8")
        assert "$ python -m pip install .\n" in text
        assert "$ pip install lomond\n" not in text
        shown = f"   $ python -m lomond --version\n   lomond {lomond.__version__} (Python "
        assert shown in text
        printed = subprocess.run(
            [sys.executable, "-m", "lomond", "--version"],
            capture_output=True,
            text=True,
            env=example_env(),
            check=True,
        ).stdout
        assert printed.startswith(f"lomond {lomond.__version__} (Python ")

    def test_the_event_table_matches_the_classes(self) -> None:
        text = (DOCS / "events.rst").read_text(encoding="utf-8")
        rows = re.findall(r"^\s*\* - :class:`~lomond\.events\.(\w+)`\n\s*- ``(\w+)``", text, re.M)
        documented = dict(rows)
        classes = {
            name: cls
            for name, cls in vars(events).items()
            if inspect.isclass(cls)
            and issubclass(cls, events.Event)
            and cls is not events.Event
            and not name.startswith("_")
        }
        assert set(documented) == set(classes)
        for name, event_name in documented.items():
            assert classes[name].name == event_name


# -- the built site ------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The docs built as HTML, warnings being errors (as .ci/run and tox build them)."""
    # Sphinx and MyST come with the dev extra, not the test extra.
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    output = tmp_path_factory.mktemp("html")
    built = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(DOCS), str(output)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    return output


def paragraphs(page: str) -> list[str]:
    """The text of each ``<p>`` of an HTML page, tags removed."""
    return [re.sub(r"<[^>]+>", "", text) for text in re.findall(r"<p>(.*?)</p>", page, re.S)]


class TestSite:
    def test_the_changelog_page_renders_the_markdown(self, site: Path) -> None:
        page = (site / "changelog.html").read_text(encoding="utf-8")
        # Headings, lists and inline code, not the Markdown source in a code block.
        assert re.search(r"<h1>Changelog", page)
        assert re.search(r"<h2>\[0\.4\.0\] - unreleased", page)
        assert re.search(r"<h3>Fixed", page)
        assert "<li><p><code" in page
        assert "## [0.4.0]" not in page and "<pre>" not in page

    def test_websocket_members_come_in_reading_order(self, site: Path) -> None:
        page = (site / "api.html").read_text(encoding="utf-8")
        public = [
            name
            for name, member in vars(WebSocket).items()
            if not name.startswith("_")
            and (inspect.isfunction(member) or isinstance(member, property))
        ]
        where = {name: page.find(f'id="lomond.websocket.WebSocket.{name}"') for name in public}
        assert [name for name, position in where.items() if position < 0] == []
        # What applications use first; what lomond calls itself last.
        first = ["connect", "close", "send_text", "send_binary", "send_json", "is_active"]
        last = ["get_proxy", "session", "key"]
        assert max(where[name] for name in first) < min(where[name] for name in last)
        assert sorted(first, key=where.__getitem__) == first
        assert sorted(last, key=where.__getitem__) == last

    def test_status_members_are_listed(self, site: Path) -> None:
        page = (site / "api.html").read_text(encoding="utf-8")
        for name in [*Status.__members__, "invalid_codes"]:
            assert f'id="lomond.status.Status.{name}"' in page, name

    def test_no_prose_is_shown_as_a_type(self, site: Path) -> None:
        # Napoleon reads "Whether X: Y" on a property's first line as "type: text".
        page = (site / "api.html").read_text(encoding="utf-8")
        assert '">Type<span class="colon">' not in page

    def test_no_runs_of_spaces_and_no_bare_paths(self, site: Path) -> None:
        page = (site / "api.html").read_text(encoding="utf-8")
        texts = paragraphs(page)
        assert len(texts) > 100
        assert [text for text in texts if re.search(r"\n[ \t]+\S|\S {2,}\S", text)] == []
        assert [text for text in texts if "docs/" in text or ".rst" in text] == []


def source_patterns() -> list[re.Pattern[str]]:
    """Every string literal of lomond's code as a regular expression (the fields of an
    f-string match any text)."""
    patterns = []
    for path in sorted((ROOT / "lomond").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                parts = [
                    re.escape(value.value)
                    if isinstance(value, ast.Constant) and isinstance(value.value, str)
                    else ".+"
                    for value in node.values
                ]
                if sum(len(part) for part in parts if part != ".+") >= 8:
                    patterns.append(re.compile("".join(parts), re.S))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                patterns.append(re.compile(re.escape(node.value)))
    return patterns


def documented_reasons() -> list[str]:
    """The reasons in the first column of the tables of the troubleshooting page, with
    their ``<placeholders>`` filled in."""
    text = (DOCS / "troubleshooting.rst").read_text(encoding="utf-8")
    text = text[text.index("Why a connection could not be opened") :]
    reasons = []
    for cell in re.findall(r"^   \* - (.*?)^     - ", text, re.M | re.S):
        for literal in re.findall(r"``(.+?)``", " ".join(cell.split())):
            if " " in literal:
                reasons.append(re.sub(r"<[^>]+>", "X", literal))
    return reasons


#: Citations of documents that readers of the package do not have.
_OUTSIDE_CITATION = re.compile(r"\b(?:" + "SP" + "EC|ST" + "YLE)\b")


def test_nothing_cites_documents_outside_the_repository() -> None:
    files = [
        ROOT / "README.md",
        ROOT / "CHANGELOG.md",
        *sorted((ROOT / "lomond").rglob("*.py")),
        *sorted((ROOT / "tests").rglob("*.py")),
        *sorted(DOCS.glob("*.rst")),
        *sorted(EXAMPLES.glob("*.py")),
    ]
    cited = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in files
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _OUTSIDE_CITATION.search(line)
    ]
    assert cited == []


class TestTroubleshooting:
    def test_the_reasons_listed_are_lomond_s(self) -> None:
        """Each reason on the troubleshooting page is a message lomond's code makes."""
        patterns = source_patterns()
        reasons = documented_reasons()
        assert len(reasons) > 30
        unknown = [
            reason
            for reason in reasons
            if not any(pattern.fullmatch(reason) for pattern in patterns)
        ]
        assert unknown == []


# -- the public names have docstrings -------------------------------------------------


def public_objects() -> Iterator[tuple[str, Any]]:
    """Yield ``(qualified name, object)`` for each public class, function, method and
    property defined in the public modules."""
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        yield module_name, module
        names = getattr(module, "__all__", None) or [
            name for name in vars(module) if not name.startswith("_")
        ]
        for name in names:
            value = getattr(module, name)
            if not (inspect.isclass(value) or inspect.isfunction(value)):
                continue
            if module_name != "lomond" and value.__module__ != module_name:
                continue  # imported from elsewhere, checked there
            yield f"{module_name}.{name}", value
            if not inspect.isclass(value):
                continue
            for attribute, member in vars(value).items():
                if attribute.startswith("_"):
                    continue
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if isinstance(member, property) or inspect.isfunction(member):
                    yield f"{module_name}.{name}.{attribute}", member


class TestDocstrings:
    def test_every_public_name_has_a_docstring(self) -> None:
        objects = list(public_objects())
        assert len(objects) > 50
        assert [name for name, value in objects if not (value.__doc__ or "").strip()] == []


# -- the orderings of docs/events.rst ---------------------------------------------------

#: What ``…`` stands for in a diagram: messages and polls.
_ANY = (events.Poll, events.Text, events.Binary, events.Ping, events.Pong)
_EVENT_LINE = re.compile(r"^([A-Z]\w*)\((.*?)\)(?:\s|$)")
_CHAIN_LINE = re.compile(r"^[A-Z]\w*(?: → [A-Z]\w*)+")


def diagrams() -> dict[str, str]:
    """The diagram after each ``.. _ordering-<name>:`` label of the events page."""
    text = (DOCS / "events.rst").read_text(encoding="utf-8")
    found = {}
    for match in re.finditer(r"^\.\. _ordering-([\w-]+):$", text, re.M):
        start = text.index(".. code-block:: text", match.end())
        _, _, code = next(literal_blocks(text[start:]))
        found[match.group(1)] = code
    return found


Step = Any  # ("event", class, {attribute: value}) or ("any",)


def stated_attributes(cls: type, arguments: str) -> dict[str, Any]:
    """The attribute values a diagram states in ``Name(arguments)``; a name such as
    ``reason`` stands for any value."""
    call = ast.parse(f"f({arguments})", mode="eval").body
    assert isinstance(call, ast.Call)
    pairs = list(zip(inspect.signature(cls).parameters, call.args))
    pairs += [(str(keyword.arg), keyword.value) for keyword in call.keywords]
    stated = {}
    for parameter, node in pairs:
        try:
            stated[parameter] = ast.literal_eval(node)
        except ValueError:
            pass
    return stated


def parse_diagram(code: str) -> list[Step]:
    """The events a diagram shows, with the attribute values it states."""
    steps: list[Step] = []
    for line in code.splitlines():
        chain = _CHAIN_LINE.match(line)
        event = _EVENT_LINE.match(line)
        if line.startswith("…"):
            steps.append(("any",))
        elif chain:
            steps.extend(("event", getattr(events, name), {}) for name in chain[0].split(" → "))
        elif event:
            cls = getattr(events, event[1])
            steps.append(("event", cls, stated_attributes(cls, event[2])))
    return steps


def matches(steps: list[Step], collected: list[events.Event]) -> bool:
    if not steps:
        return not collected
    step, rest = steps[0], steps[1:]
    if step[0] == "any":
        if matches(rest, collected):
            return True
        return bool(collected) and isinstance(collected[0], _ANY) and matches(steps, collected[1:])
    if not collected:
        return False
    _, cls, stated = step
    event = collected[0]
    if type(event) is not cls:
        # A Poll comes every ``poll`` seconds until the end: the diagrams show only
        # the one that always comes, right after Ready.
        return type(event) is events.Poll and matches(steps, collected[1:])
    if any(getattr(event, name) != value for name, value in stated.items()):
        return False
    return matches(rest, collected[1:])


def run(ws: WebSocket, on_event: Callable[[Any], None] | None = None, **options: Any) -> list[Any]:
    collected = []
    for event in ws.connect(**options):
        collected.append(event)
        if on_event is not None:
            on_event(event)
    return collected


def read_until_eof(connection: RawConnection) -> None:
    while True:
        connection.recv_frame()


def scenario_session() -> list[Any]:
    with websockets_server(echo) as url:
        ws = WebSocket(url + "/path")

        def on_event(event: Any) -> None:
            if event.name == "ready":
                ws.send_text("hi")
            elif event.name == "text":
                ws.close()

        return run(ws, on_event)


def scenario_client_close() -> list[Any]:
    def server(connection: RawConnection) -> None:
        connection.handshake()
        opcode, payload = connection.recv_frame()
        assert opcode == 0x8
        connection.send(frame(0x1, b"in flight"))
        connection.send(frame(0x8, payload))

    with raw_server(server) as url:
        ws = WebSocket(url + "/")

        def on_event(event: Any) -> None:
            if event.name == "ready":
                ws.close()
                with pytest.raises(WebSocketClosing):
                    ws.send_text("more")

        return run(ws, on_event)


def scenario_server_close() -> list[Any]:
    close_payload = (1001).to_bytes(2, "big") + b"going away"

    def server(connection: RawConnection) -> None:
        connection.handshake()
        connection.send(frame(0x1, b"bye soon") + frame(0x8, close_payload))
        assert connection.recv_frame() == (0x1, b"last words")
        assert connection.recv_frame() == (0x8, close_payload)

    with raw_server(server) as url:
        ws = WebSocket(url + "/")

        def on_event(event: Any) -> None:
            if event.name == "closing":
                ws.send_text("last words")

        return run(ws, on_event)


def scenario_server_close_reset() -> list[Any]:
    def server(connection: RawConnection) -> None:
        connection.handshake()
        connection.sock.recv(64)  # the start of the message: enough to refuse it
        connection.send(frame(0x8, (1009).to_bytes(2, "big") + b"too big"))
        time.sleep(0.05)  # the client has read the close frame (and not yet echoed)
        connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.sock.close()

    with raw_server(server) as url:
        ws = WebSocket(url + "/")

        def on_event(event: Any) -> None:
            if event.name == "ready":
                ws.send_binary(bytes(256 * 1024))
            elif event.name == "closing":
                time.sleep(0.2)  # the reset arrives before the echo is written
                with pytest.raises(TransportFail):
                    ws.send_text("still there?")

        collected = run(ws, on_event)
    assert collected[-1].reason == "socket error; [Errno 104] Connection reset by peer"
    return collected


def scenario_connect_fail() -> list[Any]:
    return run(WebSocket(f"ws://127.0.0.1:{free_port_refused()}/"))


def scenario_rejected() -> list[Any]:
    def server(connection: RawConnection) -> None:
        connection.read_request()
        connection.send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    with raw_server(server) as url:
        return run(WebSocket(url + "/"))


def scenario_redirected() -> list[Any]:
    def redirect(connection: Any, request: Any) -> Any:
        if request.path != "/old":
            return None
        response = connection.respond(HTTPStatus.FOUND, "")
        response.headers["Location"] = "/new"
        return response

    with websockets_server(echo, process_request=redirect) as url:
        ws = WebSocket(url + "/old")
        collected = run(ws, lambda event: event.name == "poll" and ws.close(), poll=60)
    assert collected[2].url == collected[3].url == url + "/new"
    return collected


def scenario_no_response() -> list[Any]:
    with raw_server(RawConnection.read_request) as url:
        collected = run(WebSocket(url + "/"))
    assert collected[-1].reason == "connection closed before the upgrade response"
    return collected


def scenario_protocol_error() -> list[Any]:
    def server(connection: RawConnection) -> None:
        connection.handshake()
        connection.send(frame(0x1, b"ok") + frame(0x3, b"reserved opcode"))
        opcode, payload = connection.recv_frame()
        assert opcode == 0x8 and payload[:2] == (1002).to_bytes(2, "big")
        connection.send(frame(0x8, payload))

    with raw_server(server) as url:
        collected = run(WebSocket(url + "/"))
    assert collected[-1].reason == collected[-2].error
    return collected


def scenario_unresponsive() -> list[Any]:
    def server(connection: RawConnection) -> None:
        connection.handshake()
        read_until_eof(connection)  # pings are read and never answered

    with raw_server(server) as url:
        collected = run(WebSocket(url + "/"), poll=0.1, ping_rate=0.1, ping_timeout=0.3)
    assert collected[-1].reason == "no pong within 0.3s (ping timeout)"
    return collected


def scenario_close_timeout() -> list[Any]:
    def server(connection: RawConnection) -> None:
        connection.handshake()
        read_until_eof(connection)  # the close frame is read and never answered

    with raw_server(server) as url:
        ws = WebSocket(url + "/")

        def on_event(event: Any) -> None:
            if event.name == "ready":
                ws.close()

        started = time.monotonic()
        collected = run(ws, on_event, close_timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 5
    assert collected[-1].reason == (
        "server did not close the connection within 0.3s (close timeout)"
    )
    return collected


def scenario_close_timeout_answered() -> list[Any]:
    def server(connection: RawConnection) -> None:
        connection.handshake()
        _, payload = connection.recv_frame()
        connection.send(frame(0x8, payload))
        read_until_eof(connection)  # and never close the connection

    with raw_server(server) as url:
        ws = WebSocket(url + "/")

        def on_event(event: Any) -> None:
            if event.name == "ready":
                ws.close()

        return run(ws, on_event, close_timeout=0.3)


def scenario_connection_lost() -> list[Any]:
    with raw_server(RawConnection.handshake) as url:
        return run(WebSocket(url + "/"))


SCENARIOS: dict[str, Callable[[], list[Any]]] = {
    "session": scenario_session,
    "client-close": scenario_client_close,
    "server-close": scenario_server_close,
    "server-close-reset": scenario_server_close_reset,
    "connect-fail": scenario_connect_fail,
    "rejected": scenario_rejected,
    "redirected": scenario_redirected,
    "no-response": scenario_no_response,
    "protocol-error": scenario_protocol_error,
    "unresponsive": scenario_unresponsive,
    "close-timeout": scenario_close_timeout,
    "close-timeout-answered": scenario_close_timeout_answered,
    "connection-lost": scenario_connection_lost,
}


class TestOrderings:
    """Each ordering diagram of the events page, against a local server."""

    def test_every_diagram_has_a_scenario(self) -> None:
        assert set(diagrams()) == set(SCENARIOS)

    @pytest.mark.parametrize("name", sorted(SCENARIOS))
    def test_diagram(self, name: str) -> None:
        steps = parse_diagram(diagrams()[name])
        assert steps
        collected = SCENARIOS[name]()
        assert matches(steps, collected), f"{name}: {collected}"


def test_the_tests_the_limits_page_names_exist() -> None:
    """``docs/limits.rst`` names the test of each bound: those tests must exist."""
    text = (DOCS / "limits.rst").read_text(encoding="utf-8")
    named = re.findall(r"``(tests/[\w/]+\.py)(?:::(\w+))?``", text)
    assert len(named) >= 10
    for path, name in named:
        source = (DOCS.parent / path).read_text(encoding="utf-8")
        if name:
            assert re.search(rf"^class {name}\b", source, re.M), f"{path}::{name}"
