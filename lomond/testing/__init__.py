"""A test kit for code built on lomond: a real WebSocket server to test clients against.

:class:`Server` listens on 127.0.0.1 in a background thread; tests send from it,
expect what the client sends, close, drop or reset the connection, and replay
recorded sessions. The pytest plugin (:mod:`lomond.testing.plugin`) gives each
test a fresh one as the ``lomond_server`` fixture. See the "Testing your client"
page of the docs.

``import lomond`` does not import this package.
"""

from __future__ import annotations

from .server import Server

__all__ = ["Server"]
