"""Protocol constants and the default ``User-Agent``."""

from __future__ import annotations

import os
import sys

from ._version import __version__

#: The GUID that RFC 6455 §1.3 appends to ``Sec-WebSocket-Key`` to compute the accept key.
WS_KEY = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: The only protocol version defined by RFC 6455.
WS_VERSION = 13

# The platform module is not used: on Python 3.8 importing it starts subprocess.
_IMPLEMENTATION = {"cpython": "CPython", "pypy": "PyPy"}.get(
    sys.implementation.name, sys.implementation.name
)
_SYSTEM = os.uname().sysname if hasattr(os, "uname") else "Windows"

#: Sent as ``User-Agent`` unless ``WebSocket(agent=...)`` says otherwise, e.g.
#: ``Lomond/0.4.0 CPython/3.12.1 Linux``: lomond's version, the interpreter and the
#: OS family, but not the full platform string (0.3.x sent the kernel build and the
#: distribution, from ``platform.platform()``).
USER_AGENT = (
    f"Lomond/{__version__} {_IMPLEMENTATION}/{'.'.join(map(str, sys.version_info[:3]))} {_SYSTEM}"
)
