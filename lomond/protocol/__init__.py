"""The sans-I/O protocol: RFC 6455 and RFC 7692 as pure logic.

Bytes from the server go in, events come out; calls go in, bytes for the server
come out. Nothing here touches a socket, a thread or a clock (a test checks the
imports of every module in this folder), so all of it can be tested with bytes
alone. :class:`ClientProtocol` is the entry point.
"""

from .client import ClientProtocol, State

__all__ = ["ClientProtocol", "State"]
