"""The pytest plugin: the ``lomond_server`` fixture.

pytest loads it through the ``pytest11`` entry point that lomond's package declares,
so installing lomond is enough. Nothing else imports it (``import lomond`` does not
import pytest). Each test that names the fixture gets a fresh, started
:class:`~lomond.testing.Server`, stopped after the test; the test fails if a client
broke the protocol or a replay differed from its recording
(:meth:`~lomond.testing.Server.check`).
"""

from __future__ import annotations

import pytest

TYPE_CHECKING = False  # typing is not imported at run time
if TYPE_CHECKING:
    from typing import Generator, Iterator

    from .server import Server

#: The fixture's name.
FIXTURE = "lomond_server"


@pytest.fixture(name=FIXTURE)
def lomond_server() -> Iterator[Server]:
    """A fresh :class:`lomond.testing.Server`, started, and stopped after the test.

    The test fails if the server saw a protocol violation from a client, or a
    replay that differed from its recording.
    """
    from .server import Server

    with Server() as server:
        yield server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, None, None]:
    """Fail a test that passed if its ``lomond_server`` saw a violation or mismatch."""
    outcome = yield
    if call.when != "call":
        return
    report = outcome.get_result()  # type: ignore[attr-defined]
    server = getattr(item, "funcargs", {}).get(FIXTURE)
    if server is None or not report.passed:
        return
    try:
        server.check()
    except AssertionError as error:
        report.outcome = "failed"
        report.longrepr = str(error)
