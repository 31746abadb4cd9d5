"""The one table of transitions: the protocol follows it, uses all of it, and the docs show it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import pytest
from test_client import KEY, REQUEST, STATES, close_frame, frame, upgrade_response

from lomond.protocol import ClientProtocol, State
from lomond.protocol.states import TRANSITIONS, InvalidTransition, check_transition, describe

INTERNALS = Path(__file__).resolve().parents[2] / "docs" / "internals.rst"


class Recording(ClientProtocol):
    """A protocol that notes each transition it makes."""

    made: set[tuple[State, State]] = set()

    def _transition(self, new_state: State) -> None:
        Recording.made.add((self.state, new_state))
        super()._transition(new_state)


def drive(script: Callable[[ClientProtocol], Any]) -> None:
    protocol = Recording(REQUEST, KEY)
    protocol.data_to_send()
    script(protocol)


def test_every_transition_is_made_and_none_other() -> None:
    Recording.made = set()
    response = upgrade_response()
    scripts: list[Callable[[ClientProtocol], Any]] = [
        lambda p: p.receive_eof(),  # CONNECTING → DISCONNECTED
        lambda p: (
            p.receive_data(response),
            p.close(),
            p.receive_data(close_frame(1000)),
            p.receive_eof(),
        ),  # OPEN → CLOSING → CLOSED → DISCONNECTED
        lambda p: (
            p.receive_data(response + close_frame(1001)),
            p.echo_close(),
            p.abort("timeout"),
        ),  # REMOTE_CLOSING → CLOSED
        lambda p: (p.receive_data(response + close_frame(1001)), p.receive_eof()),
        lambda p: (p.receive_data(response), p.receive_eof()),  # OPEN → DISCONNECTED
        lambda p: (p.receive_data(response), p.close(), p.receive_eof()),
        # OPEN → FAILING → FAILED → DISCONNECTED, and FAILING → DISCONNECTED
        lambda p: (
            p.receive_data(response),
            p.events_received(),
            p.receive_data(frame(0x3)),
            p.receive_data(close_frame(1002)),
            p.receive_eof(),
        ),
        lambda p: (
            p.receive_data(response),
            p.events_received(),
            p.receive_data(frame(0x3)),
            p.receive_eof(),
        ),
    ]
    for script in scripts:
        drive(script)
    assert Recording.made == set(TRANSITIONS)


def test_a_transition_outside_the_table_is_refused() -> None:
    with pytest.raises(InvalidTransition, match="cannot go from CLOSED to OPEN"):
        check_transition(State.CLOSED, State.OPEN)
    for state in State:
        if state is not State.DISCONNECTED:
            assert any(old is state for old, _ in TRANSITIONS), state
    assert not [new for old, new in TRANSITIONS if old is State.DISCONNECTED]


@pytest.mark.parametrize(("setup", "state", "graceful"), STATES)
def test_graceful_only_from_closed(
    setup: Callable[[], ClientProtocol], state: State, graceful: bool
) -> None:
    assert graceful is (state is State.CLOSED)


def test_the_docs_show_the_table() -> None:
    """docs/internals.rst shows the transitions exactly as ``describe()`` gives them."""
    text = INTERNALS.read_text(encoding="utf-8")
    block = re.search(r"\.\. _state-table:\n\n[^\n]*::\n\n((?:    [^\n]*\n|\n)+)", text)
    assert block, "docs/internals.rst has no state table"
    shown = "\n".join(line[4:] for line in block.group(1).strip("\n").splitlines())
    assert shown == describe()
