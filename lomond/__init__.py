"""lomond: a WebSocket client where a connection is a stream of events.

>>> from lomond import WebSocket
>>> ws = WebSocket("wss://example.org/feed")
>>> for event in ws.connect():  # doctest: +SKIP
...     print(event)
"""

from . import events
from ._version import __version__
from .multiplexer import Multiplexer
from .persist import persist
from .status import Status
from .websocket import WebSocket

__all__ = ["Multiplexer", "WebSocket", "__version__", "events", "persist", "Status"]

# lomond's logger ("lomond") gets its NullHandler when lomond first logs: see
# lomond._logging, which also keeps `import lomond` from importing logging.
