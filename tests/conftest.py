"""Shared test configuration."""

from __future__ import annotations

import pytest

_PROXY_VARIABLES = [f"{scheme}_proxy" for scheme in ("ws", "wss", "http", "https", "all", "no")]


@pytest.fixture(autouse=True)
def _no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests talk to loopback servers directly: a developer's proxy settings must not
    reroute them (lomond reads ``*_proxy`` variables when ``proxies=None``)."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
