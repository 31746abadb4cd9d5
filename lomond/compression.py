"""permessage-deflate (RFC 7692): :class:`Deflate`, the options you choose.

``WebSocket(compress=True)`` is ``WebSocket(compress=Deflate())``. The options, the
defaults and the memory each choice costs are explained on the :doc:`/compression`
page of the docs; the codec itself is :mod:`lomond.protocol.deflate`.
"""

from .protocol.deflate import EXTENSION_NAME, MAX_STREAMS_PER_FRAME, Deflate

__all__ = ["Deflate", "EXTENSION_NAME", "MAX_STREAMS_PER_FRAME"]
