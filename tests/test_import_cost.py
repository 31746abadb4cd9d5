"""``import lomond`` loads only what every connection needs.

TLS (``ssl``, ``lomond.network.tls``), proxies (``lomond.network.tunnel``,
``lomond.network.socks``), JSON, ``hashlib`` (OpenSSL's libcrypto), ``random`` and
``logging`` (see ``lomond._logging``) are imported where they are first used, so a
program that never needs them never pays for loading them. The test kit
(``lomond.testing``) is imported by tests only (tests/testing/test_plugin.py also
checks that ``import lomond`` leaves pytest alone). ``typing`` is never
imported at run time: names for the type checker are imported under ``if
TYPE_CHECKING:`` (ruff's rule TC004 catches one used at run time). The benchmarks
measure the time (``benchmarks/``); this test keeps the list honest.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from lomond._logging import log

REPOSITORY = Path(__file__).resolve().parent.parent

DEFERRED = [
    "typing",
    "logging",
    "ssl",
    "_ssl",
    "json",
    "hashlib",
    "_hashlib",
    "random",
    "http",
    "email",
    "lomond.network.tls",
    "lomond.network.tunnel",
    "lomond.network.socks",
    "lomond.cli.console",
    "lomond.cli.main",
    "lomond.testing",
]


def run_python(code: str, site: bool = False) -> str:
    """Run ``code`` in a fresh interpreter; return what it printed.

    Without ``site`` the interpreter runs with ``-S``: no ``.pth`` file can import
    anything first (but nothing from site-packages, such as certifi, is found).
    """
    finished = subprocess.run(
        [sys.executable, *([] if site else ["-S"]), "-c", code],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=True,
    )
    assert finished.stderr == ""
    return finished.stdout.strip()


def modules_after(code: str, site: bool = False) -> set[str]:
    """The modules loaded after running ``code`` in a fresh interpreter."""
    script = f"import sys, json\nbefore = set(sys.modules)\n{code}\n"
    script += "print(json.dumps(sorted(set(sys.modules) - before)))"
    return set(json.loads(run_python(script, site)))


def test_import_lomond_defers_what_few_programs_need() -> None:
    # json was imported by the harness before the baseline: check it on its own.
    loaded = modules_after("import lomond")
    assert "lomond.websocket" in loaded
    assert sorted(loaded & set(DEFERRED) - {"json"}) == []
    assert run_python("import sys\nimport lomond\nprint('json' in sys.modules)") == "False"


def test_what_is_deferred_is_there_when_used() -> None:
    code = (
        "import lomond\n"
        "from lomond.events import Text\n"
        "assert Text('[1]').json == [1]\n"
        "from lomond.protocol.handshake import accept_key\n"
        "assert accept_key(b'dGhlIHNhbXBsZSBub25jZQ==') == 's3pPLMBiTxaQ9kYGzzhZRbK+xOo='\n"
        "ws = lomond.WebSocket('wss://example.org/')\n"
        "ws._tls_context()\n"
        "lomond.persist.__module__\n"
        "from lomond.persist import exponential_backoff\n"
        "assert 0 <= exponential_backoff(0, 1)(0) <= 1\n"
    )
    loaded = modules_after(code, site=True)
    assert {"ssl", "lomond.network.tls"} <= loaded  # (site may have imported the others first)


def test_a_session_that_goes_well_does_not_import_logging() -> None:
    # Its messages are DEBUG and INFO: nothing can receive them before logging is
    # imported, so lomond._logging drops them without importing it.
    code = (
        "import sys\n"
        "from lomond import WebSocket\n"
        "from lomond.cli.demo_server import EchoServer\n"
        "with EchoServer() as server:\n"
        "    ws = WebSocket(server.url)\n"
        "    for event in ws.connect():\n"
        "        if event.name == 'ready':\n"
        "            ws.close()\n"
        "print(event.name, 'logging' in sys.modules)\n"
    )
    assert run_python(code) == "disconnected False"


class TestLogger:
    """``lomond._logging.log``: logging.getLogger("lomond"), set up on first use."""

    def test_records_name_the_caller(self, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.DEBUG, logger="lomond"):
            log.debug("debug %s", 1)
            log.info("info %s", 2)
            log.warning("warning %s", 3)
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("exception %s", 4)
        records = [record for record in caplog.records if record.name == "lomond"]
        assert [record.getMessage() for record in records] == [
            "debug 1",
            "info 2",
            "warning 3",
            "exception 4",
        ]
        assert {record.funcName for record in records} == {"test_records_name_the_caller"}
        assert {record.pathname for record in records} == {__file__}
        assert records[-1].exc_info is not None and records[-1].exc_info[0] is ValueError

    def test_one_null_handler_however_often_it_logs(self) -> None:
        code = (
            "import logging\n"
            "from lomond._logging import get_logger, log\n"
            "for _ in range(3):\n"
            "    log.debug('again')\n"
            "assert get_logger() is logging.getLogger('lomond')\n"
            "print([type(handler).__name__ for handler in get_logger().handlers])\n"
        )
        assert run_python(code) == "['NullHandler']"

    def test_nothing_reaches_stderr_without_configuration(self) -> None:
        # Python's last-resort handler prints warnings of loggers without handlers.
        code = "from lomond._logging import log\nlog.warning('not for stderr')\n"
        assert run_python(code) == ""  # run_python checks that stderr is empty
