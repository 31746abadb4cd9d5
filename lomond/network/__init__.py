"""Opening the connection: DNS, TCP, proxies (HTTP CONNECT, SOCKS), TLS, deadlines.

Everything here blocks, under one connect deadline, and knows nothing of the
WebSocket protocol: it hands the session a connected socket, or raises
:class:`~lomond.errors.ConnectFail` with a sentence that says what failed.
"""
