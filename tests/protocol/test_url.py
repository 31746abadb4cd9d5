"""WebSocket URL parsing (lomond.protocol.url), without sockets."""

from __future__ import annotations

import base64

import pytest

from lomond.protocol.url import parse_url


class TestParseURL:
    @pytest.mark.parametrize(
        ("url", "scheme", "host", "port", "resource"),
        [
            ("ws://example.org", "ws", "example.org", 80, "/"),
            ("WSS://Example.org/feed?x=1#frag", "wss", "example.org", 443, "/feed?x=1"),
            ("ws://[::1]:8080/a b", "ws", "::1", 8080, "/a%20b"),
            ("ws://h/caf\u00e9?q=\u00fc", "ws", "h", 80, "/caf%C3%A9?q=%C3%BC"),
            ("ws://b\u00fccher.example/", "ws", "xn--bcher-kva.example", 80, "/"),
        ],
    )
    def test_parts(self, url: str, scheme: str, host: str, port: int, resource: str) -> None:
        target = parse_url(url)
        assert (target.scheme, target.host, target.port, target.resource) == (
            scheme,
            host,
            port,
            resource,
        )
        assert "#" not in target.url

    @pytest.mark.parametrize(
        ("url", "host_header"),
        [
            ("ws://example.org:80/", "example.org"),
            ("wss://example.org:443/", "example.org"),
            ("ws://example.org:8080/", "example.org:8080"),
            ("wss://[::1]/", "[::1]"),
            ("ws://[::1]:9000/", "[::1]:9000"),
        ],
    )
    def test_host_header(self, url: str, host_header: str) -> None:
        assert parse_url(url).host_header == host_header

    def test_credentials_become_authorization_and_leave_the_url(self) -> None:
        target = parse_url("ws://us%40er:p%3Ass@example.org/x")
        assert target.url == "ws://example.org/x"
        assert target.authorization == "Basic " + base64.b64encode(b"us@er:p:ss").decode()
        assert parse_url("ws://example.org/").authorization is None

    @pytest.mark.parametrize(
        "url", ["http://example.org/", "example.org", "ws://", "ws:///path", "ws://h:99999/"]
    )
    def test_invalid(self, url: str) -> None:
        with pytest.raises(ValueError):
            parse_url(url)

    def test_not_a_string(self) -> None:
        with pytest.raises(TypeError):
            parse_url(b"ws://example.org/")  # type: ignore[arg-type]
