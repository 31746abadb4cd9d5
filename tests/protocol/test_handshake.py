"""lomond.protocol.handshake: the upgrade request and the checks on its response (RFC 6455 §4)."""

from __future__ import annotations

import base64

import pytest

from lomond.errors import HandshakeError
from lomond.protocol.handshake import (
    accept_key,
    build_request,
    check_response,
    make_key,
    normalize_headers,
    parse_extensions,
    validate_header,
)
from lomond.response import Response

#: The example of RFC 6455 §1.3 / §4.2.2.
RFC_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def response(*header_lines: str, status: str = "101 Switching Protocols") -> Response:
    head = "\r\n".join([f"HTTP/1.1 {status}", *header_lines]) + "\r\n\r\n"
    return Response(head.encode("latin-1"))


UPGRADE = "Upgrade: websocket"
CONNECTION = "Connection: Upgrade"
ACCEPT = f"Sec-WebSocket-Accept: {RFC_ACCEPT}"


class TestRFC6455_4_1_Key:
    def test_accept_key_of_the_rfc_example(self) -> None:
        assert accept_key(RFC_KEY) == RFC_ACCEPT

    def test_key_is_16_bytes_base64(self) -> None:
        key = make_key(bytes(range(16)))
        assert key == b"AAECAwQFBgcICQoLDA0ODw=="
        assert len(base64.b64decode(key)) == 16


class TestRequest:
    def test_minimal_request(self) -> None:
        request = build_request(resource="/", host_header="example.com", key=RFC_KEY, agent="A/1")
        assert request == (
            b"GET / HTTP/1.1\r\n"
            b"Host: example.com\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n"
            b"User-Agent: A/1\r\n"
            b"\r\n"
        )

    def test_every_header_in_order(self) -> None:
        request = build_request(
            resource="/chat?room=1",
            host_header="[::1]:8080",
            key=RFC_KEY,
            agent="A/1",
            origin="http://example.com",
            authorization="Basic dXNlcjpwYXNz",
            protocols=["chat", "superchat"],
            extensions="permessage-deflate; client_max_window_bits",
            headers=[(b"X-One", b"1"), (b"X-Two", b"2")],
        )
        assert request == (
            b"GET /chat?room=1 HTTP/1.1\r\n"
            b"Host: [::1]:8080\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n"
            b"User-Agent: A/1\r\n"
            b"Origin: http://example.com\r\n"
            b"Authorization: Basic dXNlcjpwYXNz\r\n"
            b"Sec-WebSocket-Protocol: chat, superchat\r\n"
            b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            b"X-One: 1\r\n"
            b"X-Two: 2\r\n"
            b"\r\n"
        )

    def test_no_protocol_header_without_protocols(self) -> None:
        request = build_request(
            resource="/", host_header="h", key=RFC_KEY, agent="a", protocols=[], extensions=None
        )
        assert b"Sec-WebSocket-Protocol" not in request
        assert b"Sec-WebSocket-Extensions" not in request
        assert b"Origin" not in request
        assert b"Authorization" not in request


class TestUserHeaders:
    @pytest.mark.parametrize(
        ("name", "value"),
        [("X-Token", "abc"), (b"X-Token", b"abc"), ("X-Token", b"abc"), ("x!#$%&'*+-.^_`|~9", "")],
    )
    def test_valid_header_becomes_bytes(self, name: str | bytes, value: str | bytes) -> None:
        name_bytes, value_bytes = validate_header(name, value)
        assert (type(name_bytes), type(value_bytes)) == (bytes, bytes)
        assert name_bytes == (name.encode() if isinstance(name, str) else name)
        assert value_bytes == (value.encode() if isinstance(value, str) else value)

    @pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\r\nX-Evil: 1", "a\x00b", b"\n"])
    def test_injection_in_value_is_refused(self, value: str | bytes) -> None:
        with pytest.raises(ValueError):
            validate_header("X-Token", value)

    @pytest.mark.parametrize("name", ["", "X Token", "X:Token", "X\r\nEvil", "Ünïcode", "(x)"])
    def test_non_token_name_is_refused(self, name: str) -> None:
        with pytest.raises(ValueError):
            validate_header(name, "v")

    @pytest.mark.parametrize(
        "name",
        [
            "Host",
            "upgrade",
            "CONNECTION",
            "Sec-WebSocket-Key",
            "sec-websocket-version",
            "Sec-WebSocket-Accept",
            b"Host",
        ],
    )
    def test_handshake_headers_cannot_be_replaced(self, name: str | bytes) -> None:
        with pytest.raises(ValueError):
            validate_header(name, "x")

    def test_protocol_header_is_allowed(self) -> None:
        # A user Sec-WebSocket-Protocol header counts as the offer.
        assert validate_header("Sec-WebSocket-Protocol", "chat") == (
            b"Sec-WebSocket-Protocol",
            b"chat",
        )

    @pytest.mark.parametrize(("name", "value"), [(1, "v"), ("X-A", 1), ("X-A", None)])
    def test_wrong_types_are_type_errors(self, name: object, value: object) -> None:
        with pytest.raises(TypeError):
            validate_header(name, value)  # type: ignore[arg-type]

    def test_non_latin1_text_value_is_a_value_error(self) -> None:
        with pytest.raises(ValueError):
            validate_header("X-A", "snow ☃")

    def test_normalize_keeps_order(self) -> None:
        assert normalize_headers(None) == []
        assert normalize_headers({"X-B": "2", "X-A": "1"}) == [(b"X-B", b"2"), (b"X-A", b"1")]
        assert normalize_headers([("X-A", "1"), (b"X-A", b"2")]) == [
            (b"X-A", b"1"),
            (b"X-A", b"2"),
        ]

    def test_normalize_validates_every_pair(self) -> None:
        with pytest.raises(ValueError):
            normalize_headers([("X-A", "1"), ("Host", "evil")])


class TestParseExtensions:
    def test_empty(self) -> None:
        assert parse_extensions([]) == []
        assert parse_extensions([""]) == []

    def test_name_only(self) -> None:
        assert parse_extensions(["permessage-deflate"]) == [("permessage-deflate", [])]

    def test_parameters_with_and_without_values(self) -> None:
        assert parse_extensions(
            ["permessage-deflate; client_max_window_bits=10 ; server_no_context_takeover"]
        ) == [
            (
                "permessage-deflate",
                [("client_max_window_bits", "10"), ("server_no_context_takeover", None)],
            )
        ]

    def test_quoted_values_are_unquoted(self) -> None:
        # RFC 7692 §7.1: a parameter value may be a quoted-string.
        assert parse_extensions(['permessage-deflate; server_max_window_bits="10"']) == [
            ("permessage-deflate", [("server_max_window_bits", "10")])
        ]

    def test_several_extensions_and_values(self) -> None:
        assert parse_extensions(["a; x=1, b", "c"]) == [
            ("a", [("x", "1")]),
            ("b", []),
            ("c", []),
        ]

    @pytest.mark.parametrize("value", ["; x=1", "a; =1", "a;;"])
    def test_empty_names_are_handshake_errors(self, value: str) -> None:
        with pytest.raises(HandshakeError):
            parse_extensions([value])


class TestRFC6455_4_2_2_CheckResponse:
    def test_valid_response(self) -> None:
        assert check_response(response(UPGRADE, CONNECTION, ACCEPT), RFC_KEY, []) == (None, [])

    def test_header_values_are_case_insensitive(self) -> None:
        ok = response("Upgrade: WebSocket", "Connection: keep-alive, UPGRADE", ACCEPT)
        assert check_response(ok, RFC_KEY, []) == (None, [])

    def test_chosen_subprotocol(self) -> None:
        ok = response(UPGRADE, CONNECTION, ACCEPT, "Sec-WebSocket-Protocol: superchat")
        assert check_response(ok, RFC_KEY, ["chat", "superchat"]) == ("superchat", [])

    def test_no_subprotocol_chosen_is_fine(self) -> None:
        ok = response(UPGRADE, CONNECTION, ACCEPT)
        assert check_response(ok, RFC_KEY, ["chat"]) == (None, [])

    def test_extensions_are_returned_for_the_caller_to_check(self) -> None:
        ok = response(UPGRADE, CONNECTION, ACCEPT, "Sec-WebSocket-Extensions: permessage-deflate")
        assert check_response(ok, RFC_KEY, []) == (None, [("permessage-deflate", [])])

    @pytest.mark.parametrize(
        "status", ["200 OK", "403 Forbidden", "301 Moved Permanently", "100 Continue", "1O1 X"]
    )
    def test_status_other_than_101(self, status: str) -> None:
        with pytest.raises(HandshakeError):
            check_response(response(UPGRADE, CONNECTION, ACCEPT, status=status), RFC_KEY, [])

    @pytest.mark.parametrize(
        "lines",
        [
            pytest.param((CONNECTION, ACCEPT), id="no-upgrade"),
            pytest.param(("Upgrade: h2c", CONNECTION, ACCEPT), id="wrong-upgrade"),
            pytest.param((UPGRADE, ACCEPT), id="no-connection"),
            pytest.param((UPGRADE, "Connection: close", ACCEPT), id="wrong-connection"),
            pytest.param((UPGRADE, "Connection: Upgraded", ACCEPT), id="connection-not-token"),
            pytest.param((UPGRADE, CONNECTION), id="no-accept"),
            pytest.param(
                (UPGRADE, CONNECTION, "Sec-WebSocket-Accept: " + accept_key(b"other")),
                id="wrong-accept",
            ),
            pytest.param(
                (UPGRADE, CONNECTION, "Sec-WebSocket-Accept: " + RFC_ACCEPT.lower()),
                id="accept-in-wrong-case",
            ),
            pytest.param(
                (UPGRADE, CONNECTION, ACCEPT, "Sec-WebSocket-Protocol: other"),
                id="unoffered-subprotocol",
            ),
        ],
    )
    def test_invalid_upgrade(self, lines: tuple[str, ...]) -> None:
        with pytest.raises(HandshakeError):
            check_response(response(*lines), RFC_KEY, ["chat"])

    def test_reason_is_readable(self) -> None:
        with pytest.raises(HandshakeError, match="403"):
            check_response(response(status="403 Forbidden"), RFC_KEY, [])
