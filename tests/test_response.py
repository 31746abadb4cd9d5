"""lomond.response: the server's HTTP response head."""

from __future__ import annotations

import pytest

from lomond.response import Response

UPGRADE_RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"\r\n"
)


class TestStatusLine:
    def test_upgrade_response(self) -> None:
        response = Response(UPGRADE_RESPONSE)
        assert response.http_ver == "HTTP/1.1"
        assert response.status_code == 101
        assert response.status == "Switching Protocols"
        assert response.raw == UPGRADE_RESPONSE
        assert type(response.raw) is bytes

    def test_repr(self) -> None:
        assert repr(Response(UPGRADE_RESPONSE)) == "<response HTTP/1.1 101 Switching Protocols>"
        assert repr(Response(b"HTTP/1.0 404 Not Found\r\n\r\n")) == (
            "<response HTTP/1.0 404 Not Found>"
        )

    def test_reason_phrase_with_spaces(self) -> None:
        response = Response(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
        assert response.status == "Proxy Authentication Required"

    def test_no_reason_phrase(self) -> None:
        response = Response(b"HTTP/1.1 204\r\n\r\n")
        assert (response.status_code, response.status) == (204, "")

    @pytest.mark.parametrize("head", [b"HTTP/1.1 abc Nope\r\n\r\n", b"garbage\r\n\r\n", b""])
    def test_status_code_is_none_when_not_a_number(self, head: bytes) -> None:
        assert Response(head).status_code is None

    def test_without_the_blank_line(self) -> None:
        response = Response(b"HTTP/1.1 200 OK\r\nServer: x")
        assert response.status_code == 200
        assert response.get("server") == "x"

    def test_bytearray_input(self) -> None:
        response = Response(bytearray(UPGRADE_RESPONSE))
        assert response.status_code == 101
        assert response.raw == UPGRADE_RESPONSE


class TestHeaders:
    def test_names_are_lower_cased_and_values_stripped(self) -> None:
        response = Response(UPGRADE_RESPONSE)
        assert response.headers == {
            "upgrade": "websocket",
            "connection": "Upgrade",
            "sec-websocket-accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        }

    def test_repeated_headers_are_joined(self) -> None:
        response = Response(b"HTTP/1.1 200 OK\r\nX-A: one\r\nx-a:two \r\nX-A: three\r\n\r\n")
        assert response.headers["x-a"] == "one, two, three"
        assert response.get_list("X-A") == ["one", "two", "three"]

    def test_get_is_case_insensitive(self) -> None:
        response = Response(UPGRADE_RESPONSE)
        assert response.get("UPGRADE") == "websocket"
        assert response.get("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

    def test_get_default(self) -> None:
        response = Response(UPGRADE_RESPONSE)
        assert response.get("retry-after") is None
        assert response.get("retry-after", "5") == "5"

    def test_get_with_bytes_is_a_type_error(self) -> None:
        # 0.3.x raised AssertionError (gone under python -O); a TypeError is explicit.
        with pytest.raises(TypeError):
            Response(UPGRADE_RESPONSE).get(b"upgrade")  # type: ignore[arg-type]

    def test_get_list(self) -> None:
        response = Response(b"HTTP/1.1 101 X\r\nConnection: keep-alive ,  Upgrade,,\r\n\r\n")
        assert response.get_list("connection") == ["keep-alive", "Upgrade"]
        assert response.get_list("missing") == []

    def test_get_list_of_blank_header(self) -> None:
        assert Response(b"HTTP/1.1 200 OK\r\nX-Empty:\r\n\r\n").get_list("x-empty") == []

    def test_value_containing_a_colon(self) -> None:
        response = Response(b"HTTP/1.1 200 OK\r\nLocation: http://example.com:80/x\r\n\r\n")
        assert response.get("location") == "http://example.com:80/x"

    def test_obsolete_line_folding(self) -> None:
        response = Response(b"HTTP/1.1 200 OK\r\nX-Long: one\r\n  two\r\n\ttwo-b\r\n\r\n")
        assert response.get("x-long") == "one two two-b"

    def test_latin1_bytes_do_not_break_parsing(self) -> None:
        response = Response(b"HTTP/1.1 200 OK\r\nX-Name: caf\xe9\r\n\r\n")
        assert response.get("x-name") == "caf\xe9"

    def test_retry_after_is_reachable_for_persist(self) -> None:
        response = Response(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 120\r\n\r\n")
        assert response.get("Retry-After") == "120"
