"""lomond: a WebSocket client where a connection is a stream of events.

>>> from lomond import WebSocket
>>> ws = WebSocket("wss://example.org/feed")
>>> for event in ws.connect():  # doctest: +SKIP
...     print(event)
"""

import logging

from . import events
from ._version import __version__
from .persist import persist
from .status import Status
from .websocket import WebSocket

__all__ = ["WebSocket", "__version__", "events", "persist", "Status"]

# A library leaves the choice of log output to the application (logging HOWTO):
# without this, Python's last-resort handler would print lomond's warnings to stderr.
logging.getLogger("lomond").addHandler(logging.NullHandler())
