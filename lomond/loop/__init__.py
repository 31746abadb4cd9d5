"""The blocking shell: the one generator that owns the socket, the clock and the timers.

It moves bytes between a socket and the sans-I/O protocol (:mod:`lomond.protocol`),
fires the timers, and yields the protocol's events to the application.
"""
