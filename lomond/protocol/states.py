"""Where a connection is in its life: the states, and the one table of transitions.

:class:`~lomond.protocol.client.ClientProtocol` changes state only through
:data:`TRANSITIONS`; a change the table does not have is a bug in lomond
(:class:`InvalidTransition`). Failing the connection (RFC 6455 §7.1.7) is a state of
its own, not a flag: from ``FAILING`` on, data frames are skipped and the connection
can no longer end gracefully. The state diagram of ``docs/internals.rst`` is this
table, as :func:`describe` writes it (a test checks that they agree).
"""

from __future__ import annotations

from enum import Enum


class State(Enum):
    """Where a connection is in its life."""

    #: The upgrade request was sent; waiting for the response.
    CONNECTING = "connecting"
    #: Messages may flow both ways.
    OPEN = "open"
    #: The server sent a close frame; we may still send until we echo it.
    REMOTE_CLOSING = "remote_closing"
    #: We sent a close frame; waiting for the server's.
    CLOSING = "closing"
    #: The server broke the protocol: our close frame (1002, 1007 or 1009) was
    #: queued; waiting for the server's, skipping everything else it sends.
    FAILING = "failing"
    #: Both close frames were exchanged; waiting for the server to close the TCP
    #: connection.
    CLOSED = "closed"
    #: Both close frames were exchanged after a failure: it ends, but not gracefully.
    FAILED = "failed"
    #: The connection is over: ``Disconnected`` (the last event) was produced.
    DISCONNECTED = "disconnected"

    # Members are singletons compared by identity: hash them by identity too. Enum's
    # own hash (of the name, in Python) made each ``state in SENDING`` of the send
    # path cost more than the rest of the test (the send_text benchmark).
    __hash__ = object.__hash__


_ANY_END = "EOF, a socket error or a timeout (abort)"

#: Every transition the protocol makes, and what makes it.
TRANSITIONS: dict[tuple[State, State], str] = {
    (State.CONNECTING, State.OPEN): "a valid 101 response",
    (State.CONNECTING, State.DISCONNECTED): "a response that is not a valid upgrade, " + _ANY_END,
    (State.OPEN, State.CLOSING): "close()",
    (State.OPEN, State.REMOTE_CLOSING): "the server's close frame",
    (State.OPEN, State.FAILING): "a protocol violation by the server",
    (State.OPEN, State.DISCONNECTED): _ANY_END,
    (State.REMOTE_CLOSING, State.CLOSED): "our echo of the server's close frame",
    (State.REMOTE_CLOSING, State.DISCONNECTED): _ANY_END,
    (State.CLOSING, State.CLOSED): "the server's close frame",
    (State.CLOSING, State.DISCONNECTED): "a protocol violation (no second close frame), "
    + _ANY_END,
    (State.FAILING, State.FAILED): "the server's close frame",
    (State.FAILING, State.DISCONNECTED): "a second protocol violation, " + _ANY_END,
    (State.CLOSED, State.DISCONNECTED): "EOF, a socket error or a timeout: graceful if our "
    "close frame was written",
    (State.FAILED, State.DISCONNECTED): "EOF, a socket error or a timeout (not graceful)",
}

#: The states in which data messages may be sent.
SENDING = frozenset({State.OPEN, State.REMOTE_CLOSING})
#: The states in which frames from the server are read (after the server's close
#: frame nothing is: RFC 6455 §5.5.1).
READING = frozenset({State.OPEN, State.CLOSING, State.FAILING})
#: The states in which our close frame was queued (and nothing may follow it).
CLOSE_QUEUED = frozenset({State.CLOSING, State.FAILING, State.CLOSED, State.FAILED})
#: The states of a closing handshake under way, and of one that is over.
CLOSING_STATES = frozenset({State.CLOSING, State.REMOTE_CLOSING, State.FAILING})
CLOSED_STATES = frozenset({State.CLOSED, State.FAILED, State.DISCONNECTED})


class InvalidTransition(RuntimeError):
    """A bug in lomond: the state machine was asked for a transition it does not have."""


def check_transition(old: State, new: State) -> None:
    """Raise :class:`InvalidTransition` unless :data:`TRANSITIONS` has ``old → new``."""
    if (old, new) not in TRANSITIONS:
        raise InvalidTransition(f"cannot go from {old.name} to {new.name}")


def describe() -> str:
    """The table as text, one transition a line: ``OPEN → CLOSING: close()``."""
    return "\n".join(f"{old.name} → {new.name}: {why}" for (old, new), why in TRANSITIONS.items())
