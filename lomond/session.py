"""Where lomond 0.3.x code finds :class:`WebsocketSession` (``connect(session_class=...)``).

The session lives in :mod:`lomond.loop.session`.
"""

from .loop.session import WebsocketSession

__all__ = ["WebsocketSession"]
