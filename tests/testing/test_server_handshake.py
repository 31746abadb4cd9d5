"""The opening handshake in the server's role, with bytes alone.

The request parsing and the deflate offers are also tested through the demo's echo
server (tests/cli/test_demo_server.py), which uses the same functions.
"""

from __future__ import annotations

from typing import Any

import pytest

from lomond.protocol.frames import build_frame
from lomond.protocol.handshake import accept_key
from lomond.testing.handshake import (
    DEFLATE_RESPONSE,
    checked_reject,
    choose_subprotocol,
    error_response,
    parse_request,
    upgrade_response,
)
from lomond.testing.protocol import ClientMessage, ServerProtocol, server_frame

REQUEST = (
    b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Protocol: v3\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"Sec-WebSocket-Version: 13"
)


class TestUpgradeResponse:
    def test_rfc_6455_example_with_a_subprotocol_and_deflate(self) -> None:
        _, headers = parse_request(REQUEST)
        response, deflate, protocol = upgrade_response(
            headers, subprotocols=["v3", "superchat"], compress=True
        )
        assert (deflate, protocol) == (True, "v3")
        assert response == (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(b"dGhlIHNhbXBsZSBub25jZQ==").encode() + b"\r\n"
            b"Sec-WebSocket-Protocol: v3\r\n"
            b"Sec-WebSocket-Extensions: " + DEFLATE_RESPONSE.encode() + b"\r\n\r\n"
        )
        assert accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

    def test_nothing_offered_nothing_chosen(self) -> None:
        _, headers = parse_request(REQUEST)
        response, deflate, protocol = upgrade_response(headers, compress=False)
        assert (deflate, protocol) == (False, None)
        assert b"Sec-WebSocket-Protocol" not in response
        assert b"Sec-WebSocket-Extensions" not in response

    def test_the_server_s_preference_wins(self) -> None:
        _, headers = parse_request(REQUEST)
        assert choose_subprotocol(headers, ["superchat", "chat"]) == "superchat"
        assert choose_subprotocol(headers, ["other"]) is None


class TestErrorResponse:
    def test_status_headers_and_body(self) -> None:
        assert error_response(503, [("Retry-After", "5")], "busy\n") == (
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n"
            b"Content-Length: 5\r\nConnection: close\r\n\r\nbusy\n"
        )

    def test_an_unknown_status(self) -> None:
        assert error_response(599).startswith(b"HTTP/1.1 599 Unknown\r\n")

    @pytest.mark.parametrize(
        "reject, expected",
        [
            (None, None),
            ((404, None), (404, [])),
            ([404, []], (404, [])),
            ((503, {"Retry-After": "5"}), (503, [("Retry-After", "5")])),
            ((302, [("Location", "ws://elsewhere/")]), (302, [("Location", "ws://elsewhere/")])),
        ],
    )
    def test_checked_reject(self, reject: Any, expected: Any) -> None:
        assert checked_reject(reject) == expected


class TestServerProtocol:
    """The client's frames, whole and one byte at a time (same answer)."""

    def messages(self, data: bytes, deflate: bool = False) -> list[tuple[int, bytes, bool]]:
        answers = []
        for step in (len(data), 1):
            protocol = ServerProtocol(deflate)
            got: list[ClientMessage] = []
            for start in range(0, len(data), step):
                protocol.receive_data(data[start : start + step])
                while (message := protocol.next_message()) is not None:
                    got.append(message)
            answers.append([(m.opcode, m.payload, m.compressed) for m in got])
        assert answers[0] == answers[1]
        return answers[0]

    def test_fragments_and_control_frames(self) -> None:
        key = b"\x01\x02\x03\x04"
        data = (
            build_frame(0x1, b"he", key, fin=False)
            + build_frame(0x9, b"ping", key)
            + build_frame(0x0, b"llo", key)
            + build_frame(0x8, b"\x03\xe8bye", key)
        )
        assert self.messages(data) == [
            (0x9, b"ping", False),
            (0x1, b"hello", False),
            (0x8, b"\x03\xe8bye", False),
        ]

    def test_server_frames_are_unmasked(self) -> None:
        assert server_frame(0x1, b"hi") == b"\x81\x02hi"
        assert server_frame(0x2, b"x" * 126)[:4] == b"\x82\x7e\x00\x7e"
        compressed = server_frame(0x1, b"aaaa", compressed=True)
        assert compressed[0] == 0xC1  # FIN, RSV1, text
