"""lomond.errors: the exception tree (docs/api.rst), unchanged from 0.3.x."""

from __future__ import annotations

import pytest

from lomond import errors
from lomond.errors import (
    CompressionParameterError,
    ConnectFail,
    CriticalProtocolError,
    FrameBuildError,
    HandshakeError,
    PayloadTooLarge,
    ProtocolError,
    TransportFail,
    WebSocketClosed,
    WebSocketClosing,
    WebSocketError,
    WebSocketUnavailable,
)
from lomond.status import Status

#: Each exception and its direct parent, as in 0.3.x (``reference/lomond-0.3.4.md`` §7).
TREE: list[tuple[type[Exception], type[Exception]]] = [
    (WebSocketError, Exception),
    (FrameBuildError, WebSocketError),
    (HandshakeError, WebSocketError),
    (CompressionParameterError, HandshakeError),
    (ProtocolError, WebSocketError),
    (PayloadTooLarge, ProtocolError),
    (CriticalProtocolError, WebSocketError),
    (ConnectFail, WebSocketError),
    (TransportFail, WebSocketError),
    (WebSocketUnavailable, WebSocketError),
    (WebSocketClosed, WebSocketUnavailable),
    (WebSocketClosing, WebSocketUnavailable),
]

ALL_ERRORS = [error for error, _ in TREE]


def _id(value: object) -> str:
    return getattr(value, "__name__", repr(value))


class TestHierarchy:
    @pytest.mark.parametrize(("error", "parent"), TREE, ids=_id)
    def test_direct_parent(self, error: type[Exception], parent: type[Exception]) -> None:
        assert error.__bases__ == (parent,)

    @pytest.mark.parametrize("error", ALL_ERRORS, ids=_id)
    def test_everything_is_a_websocket_error(self, error: type[Exception]) -> None:
        assert issubclass(error, WebSocketError)

    @pytest.mark.parametrize("error", ALL_ERRORS, ids=_id)
    def test_exported_from_lomond_errors(self, error: type[Exception]) -> None:
        assert getattr(errors, error.__name__) is error

    def test_sending_errors_are_caught_by_websocket_unavailable(self) -> None:
        # 0.3.x code catches WebSocketUnavailable around sends; it must keep working.
        for error in (WebSocketClosed, WebSocketClosing):
            with pytest.raises(WebSocketUnavailable):
                raise error("data not sent")

    def test_closed_and_closing_are_distinct(self) -> None:
        assert not issubclass(WebSocketClosed, WebSocketClosing)
        assert not issubclass(WebSocketClosing, WebSocketClosed)


class TestMessages:
    @pytest.mark.parametrize("error", ALL_ERRORS[1:], ids=_id)
    def test_messages_are_plain_strings(self, error: type[Exception]) -> None:
        # 0.3.x ran str.format on the message, so a literal brace raised KeyError.
        assert str(error("bad {payload} {0} }{")) == "bad {payload} {0} }{"

    def test_base_message_is_plain_too(self) -> None:
        assert str(WebSocketError("{x}")) == "{x}"


class TestProtocolErrorCodes:
    def test_protocol_error_fails_with_1002_by_default(self) -> None:
        error = ProtocolError("reserved opcode")
        assert error.code == Status.PROTOCOL_ERROR == 1002

    def test_payload_too_large_fails_with_1009(self) -> None:
        assert PayloadTooLarge("too big").code == Status.MESSAGE_TOO_LARGE == 1009

    def test_code_can_be_given(self) -> None:
        error = ProtocolError("invalid UTF-8", Status.BAD_DATA)
        assert error.code == 1007
        assert str(error) == "invalid UTF-8"

    def test_code_is_an_int(self) -> None:
        assert isinstance(ProtocolError("x").code, int)
