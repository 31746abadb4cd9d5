"""The pure parts of :mod:`lomond.network.proxy` and :mod:`lomond.network.socks`: URLs, choosing a
proxy, ``no_proxy``, and the bytes of each handshake (HTTP CONNECT, SOCKS5 with RFC
1929, SOCKS4/4a).

No sockets here: tests/network/test_networks.py runs the handshakes against real proxies.
"""

from __future__ import annotations

import base64

import pytest

from lomond.errors import ConnectFail
from lomond.network.proxy import (
    MAX_REPLY_SIZE,
    Proxy,
    build_connect_request,
    bypasses_proxy,
    check_connect_reply,
    find_reply_end,
    parse_proxy_url,
    select_proxy,
)
from lomond.network.socks import (
    SOCKS4_ERRORS,
    SOCKS5_ERRORS,
    socks4_check_reply,
    socks4_connect_request,
    socks5_auth_request,
    socks5_bound_address_size,
    socks5_check_auth_reply,
    socks5_check_method,
    socks5_check_reply,
    socks5_connect_request,
    socks5_greeting,
)

SECRET = "s3cr:t@/%"
SECRET_URL = "s3cr%3At%40%2F%25"


class TestProxyURLs:
    @pytest.mark.parametrize(
        ("url", "scheme", "host", "port"),
        [
            ("http://proxy.example:3128", "http", "proxy.example", 3128),
            ("http://proxy.example", "http", "proxy.example", 80),
            ("https://proxy.example", "https", "proxy.example", 443),
            ("socks5://proxy.example", "socks5", "proxy.example", 1080),
            ("socks5h://proxy.example:9050", "socks5h", "proxy.example", 9050),
            ("socks4://10.0.0.1", "socks4", "10.0.0.1", 1080),
            ("socks4a://10.0.0.1:1081", "socks4a", "10.0.0.1", 1081),
            ("HTTP://Proxy.Example:8080/", "http", "proxy.example", 8080),
            ("http://[::1]:3128", "http", "::1", 3128),
            # Environment variables often leave the scheme out: that is HTTP.
            ("proxy.example:3128", "http", "proxy.example", 3128),
            ("  proxy.example  ", "http", "proxy.example", 80),
        ],
    )
    def test_scheme_host_and_default_port(
        self, url: str, scheme: str, host: str, port: int
    ) -> None:
        proxy = parse_proxy_url(url)
        assert (proxy.scheme, proxy.host, proxy.port) == (scheme, host, port)
        assert proxy.username is None and proxy.password is None

    def test_credentials_are_percent_decoded(self) -> None:
        proxy = parse_proxy_url(f"socks5://us%20er:{SECRET_URL}@proxy:1080")
        assert proxy.username == "us er"
        assert proxy.password == SECRET

    def test_user_without_password(self) -> None:
        proxy = parse_proxy_url("http://alice@proxy")
        assert (proxy.username, proxy.password) == ("alice", None)

    def test_url_and_repr_carry_no_credentials(self) -> None:
        proxy = parse_proxy_url(f"http://alice:{SECRET_URL}@[::1]:3128/path")
        assert proxy.url == "http://[::1]:3128"
        assert repr(proxy) == "Proxy('http://[::1]:3128')"
        assert "alice" not in repr(proxy)
        assert proxy.address == "[::1]:3128"

    def test_equality(self) -> None:
        assert parse_proxy_url("http://p:1") == Proxy("http", "p", 1)
        assert parse_proxy_url("http://u:x@p:1") != Proxy("http", "p", 1)
        assert len({parse_proxy_url("http://p:1"), Proxy("http", "p", 1)}) == 1
        assert Proxy("http", "p", 1) != "http://p:1"
        assert f"{parse_proxy_url('http://u:secret@p:1')}" == "Proxy('http://p:1')"

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            (f"ftp://alice:{SECRET_URL}@proxy", "proxy scheme 'ftp' is not supported"),
            (f"http://alice:{SECRET_URL}@proxy:99999", "invalid port"),
            (f"http://alice:{SECRET_URL}@", "no host"),
            ("socks://proxy", "proxy scheme 'socks' is not supported"),
        ],
    )
    def test_invalid_urls_never_echo_credentials(self, url: str, message: str) -> None:
        with pytest.raises(ValueError, match=message) as raised:
            parse_proxy_url(url)
        assert SECRET_URL not in str(raised.value) and "alice" not in str(raised.value)

    def test_remote_dns(self) -> None:
        remote = {"http", "https", "socks5h", "socks4a"}
        for scheme in ("http", "https", "socks5", "socks5h", "socks4", "socks4a"):
            assert parse_proxy_url(f"{scheme}://p").resolves_remotely is (scheme in remote)

    def test_description_names_the_protocol_and_address(self) -> None:
        assert parse_proxy_url("socks5h://p:1").description == "SOCKS5 proxy p:1"
        assert parse_proxy_url("https://p:1").description == "HTTPS proxy p:1"
        assert parse_proxy_url("socks4a://[::1]:1").description == "SOCKS4 proxy [::1]:1"


def choose(
    scheme: str,
    environ: dict[str, str] | None = None,
    proxies: dict[str, str | None] | None = None,
    host: str = "server.example",
    port: int = 443,
) -> str | None:
    proxy = select_proxy(scheme, host, port, proxies, environ or {})
    return None if proxy is None else proxy.url


class TestChoosingFromTheEnvironment:
    def test_nothing_set(self) -> None:
        assert choose("ws") is None
        assert choose("wss") is None

    @pytest.mark.parametrize(
        ("scheme", "environ", "expected"),
        [
            ("ws", {"http_proxy": "http://h:1"}, "http://h:1"),
            ("ws", {"https_proxy": "http://s:1"}, None),
            ("wss", {"https_proxy": "http://s:1"}, "http://s:1"),
            ("wss", {"http_proxy": "http://h:1"}, None),
            ("ws", {"all_proxy": "socks5h://a:1"}, "socks5h://a:1"),
            ("wss", {"all_proxy": "socks5h://a:1"}, "socks5h://a:1"),
            # ws_proxy / wss_proxy first, then http(s)_proxy, then all_proxy.
            ("ws", {"ws_proxy": "http://w:1", "http_proxy": "http://h:1"}, "http://w:1"),
            ("wss", {"wss_proxy": "http://w:1", "https_proxy": "http://s:1"}, "http://w:1"),
            ("ws", {"http_proxy": "http://h:1", "all_proxy": "http://a:1"}, "http://h:1"),
            ("wss", {"ws_proxy": "http://w:1"}, None),
            ("ws", {"wss_proxy": "http://w:1"}, None),
        ],
    )
    def test_order_of_variables(
        self, scheme: str, environ: dict[str, str], expected: str | None
    ) -> None:
        assert choose(scheme, environ) == expected

    def test_any_case_lower_case_first(self) -> None:
        assert choose("wss", {"HTTPS_PROXY": "http://upper:1"}) == "http://upper:1"
        assert choose("wss", {"Https_Proxy": "http://mixed:1"}) == "http://mixed:1"
        both = {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:1"}
        assert choose("wss", both) == "http://lower:1"
        assert choose("ws", {"ALL_PROXY": "socks5://upper:1"}) == "socks5://upper:1"
        # A more specific variable in any case beats a less specific one.
        assert choose("ws", {"WS_PROXY": "http://w:1", "http_proxy": "http://h:1"}) == "http://w:1"

    def test_empty_values_count_as_unset(self) -> None:
        environ = {"https_proxy": "", "HTTPS_PROXY": "http://upper:1", "all_proxy": " "}
        assert choose("wss", environ) == "http://upper:1"
        assert choose("ws", {"http_proxy": "", "all_proxy": "http://a:1"}) == "http://a:1"

    def test_cgi_ignores_upper_case_http_proxy(self) -> None:
        # "httpoxy": in CGI, HTTP_PROXY is the client's "Proxy:" request header.
        cgi = {"REQUEST_METHOD": "GET", "HTTP_PROXY": "http://attacker:1"}
        assert choose("ws", cgi) is None
        assert choose("ws", {**cgi, "http_proxy": "http://ours:1"}) == "http://ours:1"
        assert choose("ws", {"HTTP_PROXY": "http://upper:1"}) == "http://upper:1"

    def test_no_proxy_in_any_case(self) -> None:
        for name in ("no_proxy", "NO_PROXY", "No_Proxy"):
            environ = {"https_proxy": "http://s:1", name: "server.example"}
            assert choose("wss", environ) is None
        environ = {"https_proxy": "http://s:1", "no_proxy": "other.example"}
        assert choose("wss", environ) == "http://s:1"

    def test_invalid_variable_is_named(self) -> None:
        with pytest.raises(ValueError, match="environment variable https_proxy: .*'ftp'"):
            choose("wss", {"HTTPS_PROXY": "ftp://p"})

    def test_bypassed_host_ignores_an_invalid_setting(self) -> None:
        assert choose("wss", {"https_proxy": "ftp://p", "no_proxy": "*"}) is None


class TestChoosingFromTheArgument:
    def test_empty_dict_means_no_proxy(self) -> None:
        assert choose("wss", {"https_proxy": "http://s:1"}, proxies={}) is None

    def test_dict_is_used_as_given(self) -> None:
        proxies: dict[str, str | None] = {"http": "http://h:1", "https": "socks5://s:1"}
        environ = {"https_proxy": "http://env:1", "no_proxy": "*"}
        assert choose("ws", environ, proxies) == "http://h:1"
        assert choose("wss", environ, proxies) == "socks5://s:1"

    def test_same_names_as_the_environment(self) -> None:
        proxies: dict[str, str | None] = {"wss": "http://w:1", "https": "http://s:1"}
        assert choose("wss", proxies=proxies) == "http://w:1"
        assert choose("ws", proxies={"all": "socks5h://a:1"}) == "socks5h://a:1"
        assert choose("ws", proxies={"https": "http://s:1"}) is None

    def test_none_values_are_unset(self) -> None:
        assert choose("wss", proxies={"https": None, "all": "http://a:1"}) == "http://a:1"

    def test_no_proxy_key(self) -> None:
        proxies: dict[str, str | None] = {"https": "http://s:1", "no_proxy": ".example"}
        assert choose("wss", proxies=proxies) is None
        assert choose("wss", proxies=proxies, host="server.test") == "http://s:1"

    def test_entry_that_is_not_a_string(self) -> None:
        with pytest.raises(ValueError, match=r"proxies\['http'\]: a proxy URL must be a str"):
            select_proxy("ws", "h", 80, {"http": 3128}, {})  # type: ignore[dict-item]

    def test_invalid_entry_is_named(self) -> None:
        with pytest.raises(ValueError, match=r"proxies\['https'\]: proxy URL has no host"):
            choose("wss", proxies={"https": "http://"})


class TestNoProxy:
    @pytest.mark.parametrize(
        ("host", "port", "no_proxy"),
        [
            ("anything.example", 80, "*"),
            ("example.com", 80, "example.com"),
            ("ws.example.com", 80, "example.com"),
            ("a.b.example.com", 80, "example.com"),
            ("ws.example.com", 80, ".example.com"),
            ("example.com", 80, ".example.com"),
            ("ws.example.com", 80, "*.example.com"),
            ("WS.Example.COM", 80, "example.com"),
            ("ws.example.com", 80, "EXAMPLE.com"),
            ("ws.example.com.", 80, "example.com"),
            ("ws.example.com", 80, "example.com."),
            ("ws.example.com", 80, "other.org, example.com"),
            ("ws.example.com", 80, "other.org example.com"),
            ("ws.example.com", 80, " other.org ,, example.com "),
            ("localhost", 80, "localhost"),
            ("10.1.2.3", 80, "10.1.2.3"),
            ("10.1.2.3", 80, "10.0.0.0/8"),
            ("192.168.7.9", 80, "192.168.0.0/16"),
            ("::1", 80, "::1"),
            ("::1", 80, "[::1]"),
            ("fd00::5", 80, "fd00::/8"),
            ("2001:db8::1", 80, "2001:DB8::/32"),
            ("example.com", 8080, "example.com:8080"),
            ("ws.example.com", 8080, ".example.com:8080"),
            ("10.1.2.3", 8080, "10.1.2.3:8080"),
            ("::1", 8080, "[::1]:8080"),
        ],
    )
    def test_bypassed(self, host: str, port: int, no_proxy: str) -> None:
        assert bypasses_proxy(host, port, no_proxy)

    @pytest.mark.parametrize(
        ("host", "port", "no_proxy"),
        [
            ("example.com", 80, ""),
            ("example.com", 80, " , "),
            ("notexample.com", 80, "example.com"),
            ("example.com", 80, "ws.example.com"),
            ("example.com.evil", 80, "example.com"),
            ("example.com", 80, "."),
            ("example.com", 80, "*."),
            ("10.1.2.3", 80, "11.0.0.0/8"),
            ("10.1.2.3", 80, "2.3"),
            ("10.1.2.3", 80, "10.1.2.4"),
            # IP rules match IP literals only: lomond does not resolve to decide.
            ("localhost", 80, "127.0.0.1"),
            ("localhost", 80, "127.0.0.0/8"),
            ("::1", 80, "127.0.0.1"),
            ("127.0.0.1", 80, "::1"),
            ("::2", 80, "::1"),
            ("example.com", 80, "example.com:8080"),
            ("10.1.2.3", 80, "10.1.2.3:8080"),
            ("::1", 80, "[::1]:8080"),
        ],
    )
    def test_not_bypassed(self, host: str, port: int, no_proxy: str) -> None:
        assert not bypasses_proxy(host, port, no_proxy)


class TestHTTPConnect:
    def test_request_bytes(self) -> None:
        request = build_connect_request("server.example", 443, parse_proxy_url("http://p:3128"))
        assert request == (
            b"CONNECT server.example:443 HTTP/1.1\r\nHost: server.example:443\r\n\r\n"
        )

    def test_ipv6_target_is_bracketed(self) -> None:
        request = build_connect_request("::1", 8080, parse_proxy_url("http://p"), "Agent/1")
        assert request == (
            b"CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\nUser-Agent: Agent/1\r\n\r\n"
        )

    def test_basic_credentials_percent_decoded(self) -> None:
        proxy = parse_proxy_url(f"http://J%C3%BCrgen:{SECRET_URL}@p")
        request = build_connect_request("h", 80, proxy)
        expected = base64.b64encode(f"Jürgen:{SECRET}".encode()).decode()
        assert request.endswith(f"\r\nProxy-Authorization: Basic {expected}\r\n\r\n".encode())

    def test_user_without_password(self) -> None:
        request = build_connect_request("h", 80, parse_proxy_url("http://alice@p"))
        assert b"Proxy-Authorization: Basic " + base64.b64encode(b"alice:") in request

    def test_reply_end(self) -> None:
        reply = b"HTTP/1.1 200 OK\r\nVia: x\r\n\r\n"
        assert find_reply_end(reply) == len(reply)
        assert find_reply_end(reply + b"extra") == len(reply)
        assert find_reply_end(reply[:-1]) is None
        assert find_reply_end(b"") is None

    def test_reply_is_bounded(self) -> None:
        assert MAX_REPLY_SIZE == 64 * 1024
        assert find_reply_end(b"x" * (MAX_REPLY_SIZE - 1)) is None
        with pytest.raises(ConnectFail, match="longer than 64 KiB"):
            find_reply_end(b"x" * MAX_REPLY_SIZE)
        # The end must lie within the limit.
        with pytest.raises(ConnectFail):
            find_reply_end(b"x" * MAX_REPLY_SIZE + b"\r\n\r\n")

    @pytest.mark.parametrize(
        "reply",
        [
            b"HTTP/1.1 200 Connection established\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nProxy-agent: x\r\n\r\n",
            b"HTTP/1.1 204 \r\n\r\n",
        ],
    )
    def test_success(self, reply: bytes) -> None:
        assert check_connect_reply(reply).status_code in (200, 204)

    @pytest.mark.parametrize(
        ("reply", "reason"),
        [
            (
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="x"\r\n\r\n',
                "proxy refused CONNECT: 407 Proxy Authentication Required",
            ),
            (b"HTTP/1.1 403 Forbidden\r\n\r\n", "proxy refused CONNECT: 403 Forbidden"),
            (b"HTTP/1.1 502\r\n\r\n", "proxy refused CONNECT: 502 Bad Gateway"),
            (b"HTTP/1.1 599\r\n\r\n", "proxy refused CONNECT: 599"),
            (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "proxy refused CONNECT: 101"),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "proxy sent an invalid reply to CONNECT: b'SSH-2.0"),
            (b"HTTP/1.1 abc\r\n\r\n", "proxy sent an invalid reply to CONNECT"),
        ],
    )
    def test_refusals(self, reply: bytes, reason: str) -> None:
        with pytest.raises(ConnectFail) as raised:
            check_connect_reply(reply)
        assert str(raised.value).startswith(reason)


SOCKS = parse_proxy_url("socks5://p:1080")
SOCKS_AUTH = parse_proxy_url(f"socks5h://alice:{SECRET_URL}@p:1080")


class TestSocks5:
    def test_greeting(self) -> None:
        assert socks5_greeting(SOCKS) == b"\x05\x01\x00"
        assert socks5_greeting(SOCKS_AUTH) == b"\x05\x02\x00\x02"

    def test_method_choice(self) -> None:
        assert socks5_check_method(b"\x05\x00", SOCKS) == 0
        assert socks5_check_method(b"\x05\x02", SOCKS_AUTH) == 2
        assert socks5_check_method(b"\x05\x00", SOCKS_AUTH) == 0

    @pytest.mark.parametrize(
        ("reply", "proxy", "reason"),
        [
            (b"\x05\xff", SOCKS, "accepted none of the offered authentication methods (it may"),
            (b"\x05\xff", SOCKS_AUTH, "accepted none of the offered authentication methods"),
            (b"\x05\x02", SOCKS, "accepted none"),  # chose a method not offered
            (b"\x05\x01", SOCKS_AUTH, "accepted none"),  # GSSAPI, not offered
            (b"\x04\x00", SOCKS, "did not answer as a SOCKS5 proxy"),
            (b"HT", SOCKS, "did not answer as a SOCKS5 proxy"),
        ],
    )
    def test_method_refusals(self, reply: bytes, proxy: Proxy, reason: str) -> None:
        with pytest.raises(ConnectFail, match=reason.replace("(", r"\(")):
            socks5_check_method(reply, proxy)

    def test_rfc_1929_request(self) -> None:
        secret = SECRET.encode()
        expected = b"\x01\x05alice" + bytes([len(secret)]) + secret
        assert socks5_auth_request(SOCKS_AUTH) == expected
        assert socks5_auth_request(parse_proxy_url("socks5://bob@p")) == b"\x01\x03bob\x00"

    def test_rfc_1929_fields_are_bounded(self) -> None:
        long_name = Proxy("socks5", "p", 1, "x" * 256, "pw")
        with pytest.raises(ConnectFail, match="user name is longer than 255 bytes"):
            socks5_auth_request(long_name)
        assert len(socks5_auth_request(Proxy("socks5", "p", 1, "x" * 255, "y" * 255))) == 513

    def test_rfc_1929_reply(self) -> None:
        socks5_check_auth_reply(b"\x01\x00", SOCKS_AUTH)
        with pytest.raises(ConnectFail, match="rejected the user name or password"):
            socks5_check_auth_reply(b"\x01\x01", SOCKS_AUTH)

    @pytest.mark.parametrize(
        ("host", "port", "expected"),
        [
            ("127.0.0.1", 8080, b"\x05\x01\x00\x01\x7f\x00\x00\x01\x1f\x90"),
            ("::1", 443, b"\x05\x01\x00\x04" + b"\x00" * 15 + b"\x01\x01\xbb"),
            ("example.com", 80, b"\x05\x01\x00\x03\x0bexample.com\x00\x50"),
        ],
    )
    def test_connect_request(self, host: str, port: int, expected: bytes) -> None:
        assert socks5_connect_request(host, port) == expected

    def test_host_name_is_bounded(self) -> None:
        with pytest.raises(ConnectFail, match="host name is longer than 255 bytes"):
            socks5_connect_request("a" * 256, 80)

    def test_reply_success(self) -> None:
        socks5_check_reply(b"\x05\x00", SOCKS, "h:1")
        assert socks5_bound_address_size(b"\x00\x01\x0a", SOCKS) == 5
        assert socks5_bound_address_size(b"\x00\x04\x20", SOCKS) == 17
        assert socks5_bound_address_size(b"\x00\x03\x07", SOCKS) == 9

    def test_reply_unknown_address_type(self) -> None:
        with pytest.raises(ConnectFail, match="unknown address type 9"):
            socks5_bound_address_size(b"\x00\x09\x00", SOCKS)

    @pytest.mark.parametrize(("code", "reason"), sorted(SOCKS5_ERRORS.items()))
    def test_every_error_code_is_readable(self, code: int, reason: str) -> None:
        with pytest.raises(ConnectFail) as raised:
            socks5_check_reply(bytes([5, code]), SOCKS, "h.example:443")
        assert (
            str(raised.value) == f"SOCKS5 proxy p:1080 could not connect to h.example:443: {reason}"
        )

    def test_error_codes_of_rfc_1928(self) -> None:
        assert sorted(SOCKS5_ERRORS) == list(range(1, 9))
        assert SOCKS5_ERRORS[5] == "connection refused"
        with pytest.raises(ConnectFail, match="unknown error code 0x2a"):
            socks5_check_reply(b"\x05\x2a", SOCKS, "h:1")
        with pytest.raises(ConnectFail, match="did not answer as a SOCKS5 proxy"):
            socks5_check_reply(b"\x00\x5a", SOCKS, "h:1")


SOCKS4 = parse_proxy_url("socks4://userid@p:1080")


class TestSocks4:
    def test_socks4_request(self) -> None:
        assert socks4_connect_request("10.1.2.3", 80, SOCKS4) == (
            b"\x04\x01\x00\x50\x0a\x01\x02\x03userid\x00"
        )
        anonymous = parse_proxy_url("socks4://p")
        assert (
            socks4_connect_request("10.1.2.3", 80, anonymous)
            == b"\x04\x01\x00\x50\x0a\x01\x02\x03\x00"
        )

    def test_socks4a_request_carries_the_name(self) -> None:
        assert socks4_connect_request("ws.example", 443, SOCKS4) == (
            b"\x04\x01\x01\xbb\x00\x00\x00\x01userid\x00ws.example\x00"
        )

    def test_ipv6_is_refused(self) -> None:
        with pytest.raises(ConnectFail, match="cannot reach IPv6 address ::1"):
            socks4_connect_request("::1", 80, SOCKS4)

    def test_reply(self) -> None:
        socks4_check_reply(b"\x00\x5a", SOCKS4, "h:1")
        socks4_check_reply(b"\x04\x5a", SOCKS4, "h:1")  # some proxies echo the version

    @pytest.mark.parametrize(("code", "reason"), sorted(SOCKS4_ERRORS.items()))
    def test_every_error_code_is_readable(self, code: int, reason: str) -> None:
        with pytest.raises(ConnectFail) as raised:
            socks4_check_reply(bytes([0, code]), SOCKS4, "10.1.2.3:80")
        assert (
            str(raised.value) == f"SOCKS4 proxy p:1080 could not connect to 10.1.2.3:80: {reason}"
        )

    def test_unknown_code_and_version(self) -> None:
        with pytest.raises(ConnectFail, match="unknown reply code 1"):
            socks4_check_reply(b"\x00\x01", SOCKS4, "h:1")
        with pytest.raises(ConnectFail, match="did not answer as a SOCKS4 proxy"):
            socks4_check_reply(b"\x05\x00", SOCKS4, "h:1")
