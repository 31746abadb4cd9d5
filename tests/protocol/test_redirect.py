"""lomond.protocol.redirect: which redirects are followed, where to, with what."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lomond.protocol.redirect import (
    REDIRECT_STATUSES,
    RedirectRefused,
    Redirects,
    is_redirect,
)
from lomond.protocol.url import parse_url
from lomond.response import Response

REASONS = {
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    305: "Use Proxy",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
}


def redirect(location: str | None, status: int = 302) -> Response:
    head = f"HTTP/1.1 {status} {REASONS.get(status, 'Whatever')}\r\n"
    if location is not None:
        head += f"Location: {location}\r\n"
    return Response((head + "\r\n").encode("latin-1"))


def chain_from(url: str, max_redirects: int = 10, headers: list | None = None) -> Redirects:
    return Redirects(parse_url(url), headers or [], max_redirects)


class TestWhatIsARedirect:
    @pytest.mark.parametrize("status", sorted(REDIRECT_STATUSES))
    def test_the_five_statuses_with_a_location(self, status: int) -> None:
        assert is_redirect(redirect("/x", status))
        hop = chain_from("ws://a.example/").follow(redirect("/x", status))
        assert hop is not None and hop.target.url == "ws://a.example/x"

    @pytest.mark.parametrize("status", [200, 300, 304, 305, 400, 404, 503])
    def test_other_statuses_are_not_followed(self, status: int) -> None:
        assert not is_redirect(redirect("/x", status))
        assert chain_from("ws://a.example/").follow(redirect("/x", status)) is None

    def test_no_location_is_no_redirect(self) -> None:
        assert chain_from("ws://a.example/").follow(redirect(None)) is None
        assert chain_from("ws://a.example/").follow(redirect("")) is None

    def test_max_redirects_0_follows_nothing(self) -> None:
        assert chain_from("ws://a.example/", max_redirects=0).follow(redirect("/x")) is None


class TestLocation:
    @pytest.mark.parametrize(
        ("base", "location", "expected"),
        [
            ("ws://a.example/x/y", "z", "ws://a.example/x/z"),
            ("ws://a.example/x/y", "../z?q=1", "ws://a.example/z?q=1"),
            ("ws://a.example/x/y", "/new", "ws://a.example/new"),
            ("ws://a.example:8080/x", "/new", "ws://a.example:8080/new"),
            ("wss://a.example/x", "//b.example/p", "wss://b.example/p"),
            ("ws://a.example/x", "?page=2", "ws://a.example/x?page=2"),
            ("ws://a.example/x", "http://b.example/p", "ws://b.example/p"),
            ("ws://a.example/x", "https://b.example/p", "wss://b.example/p"),
            ("ws://a.example/x", "HTTPS://b.example/p", "wss://b.example/p"),
            ("ws://a.example/x", "wss://b.example:9/p", "wss://b.example:9/p"),
            ("ws://a.example/x", "ws://b.example/p#frag", "ws://b.example/p"),
            ("ws://[::1]:9000/x", "/y", "ws://[::1]:9000/y"),
        ],
    )
    def test_resolved_against_the_current_url(
        self, base: str, location: str, expected: str
    ) -> None:
        hop = chain_from(base).follow(redirect(location))
        assert hop is not None
        assert hop.target.url == expected

    def test_non_ascii_is_percent_encoded(self) -> None:
        hop = chain_from("ws://a.example/x").follow(redirect("/caf\u00e9"))
        assert hop is not None and hop.target.resource == "/caf%C3%A9"

    def test_relative_to_the_latest_hop(self) -> None:
        redirects = chain_from("ws://a.example/one/")
        redirects.follow(redirect("https://b.example/two/"))
        hop = redirects.follow(redirect("three"))
        assert hop is not None and hop.target.url == "wss://b.example/two/three"
        assert redirects.current.url == "wss://b.example/two/three"

    @pytest.mark.parametrize("location", ["ftp://b.example/", "mailto:x@y", "file:///etc/passwd"])
    def test_other_schemes_are_refused(self, location: str) -> None:
        with pytest.raises(RedirectRefused, match="not an http, https, ws or wss URL"):
            chain_from("ws://a.example/").follow(redirect(location))

    @pytest.mark.parametrize(
        ("location", "error"),
        [("https://:443/x", "has no host"), ("http://[::1/x", "Invalid IPv6 URL")],
    )
    def test_a_location_that_is_no_url_is_refused(self, location: str, error: str) -> None:
        with pytest.raises(RedirectRefused, match=error):
            chain_from("ws://a.example/").follow(redirect(location))


class TestNoDowngrade:
    @pytest.mark.parametrize("location", ["ws://b.example/", "http://a.example/", "http://b/"])
    def test_wss_to_ws_is_refused(self, location: str) -> None:
        with pytest.raises(RedirectRefused) as caught:
            chain_from("wss://a.example/").follow(redirect(location, 301))
        message = str(caught.value)
        assert message.startswith("refused redirect (301 Moved Permanently) from wss://a.example/")
        assert "it would give up TLS (wss:// to ws://)" in message

    def test_ws_to_wss_is_followed(self) -> None:
        hop = chain_from("ws://a.example/").follow(redirect("wss://a.example/"))
        assert hop is not None and hop.target.scheme == "wss"

    def test_downgrade_later_in_the_chain(self) -> None:
        redirects = chain_from("ws://a.example/")
        redirects.follow(redirect("wss://a.example/secure"))
        with pytest.raises(RedirectRefused, match="give up TLS"):
            redirects.follow(redirect("ws://a.example/plain"))


class TestLoopsAndLimits:
    def test_a_loop_names_the_chain(self) -> None:
        redirects = chain_from("ws://a.example/1")
        redirects.follow(redirect("/2"))
        with pytest.raises(RedirectRefused) as caught:
            redirects.follow(redirect("/1"))
        assert str(caught.value) == (
            "redirect loop: ws://a.example/1 -> ws://a.example/2 -> ws://a.example/1"
        )

    def test_a_redirect_to_itself(self) -> None:
        with pytest.raises(RedirectRefused, match="^redirect loop: ws://a/x -> ws://a/x$"):
            chain_from("ws://a/x").follow(redirect("/x"))

    def test_exactly_max_redirects_are_followed(self) -> None:
        redirects = chain_from("ws://a/0", max_redirects=3)
        for n in (1, 2, 3):
            assert redirects.follow(redirect(f"/{n}")) is not None
        with pytest.raises(RedirectRefused) as caught:
            redirects.follow(redirect("/4"))
        assert str(caught.value) == (
            "too many redirects (max_redirects=3): "
            "ws://a/0 -> ws://a/1 -> ws://a/2 -> ws://a/3 -> ws://a/4"
        )
        assert redirects.chain == ["ws://a/0", "ws://a/1", "ws://a/2", "ws://a/3"]

    def test_one_redirect(self) -> None:
        redirects = chain_from("ws://a/0", max_redirects=1)
        assert redirects.follow(redirect("/1")) is not None
        with pytest.raises(RedirectRefused, match="too many redirects"):
            redirects.follow(redirect("/2"))

    def test_credentials_never_in_the_chain(self) -> None:
        redirects = chain_from("ws://user:secret@a/0")
        with pytest.raises(RedirectRefused) as caught:
            redirects.follow(redirect("ws://user:secret@a/0"))
        assert "secret" not in str(caught.value) and "user" not in str(caught.value)


class TestCredentials:
    HEADERS = [
        (b"Authorization", b"Bearer token"),
        (b"Cookie", b"session=1"),
        (b"proxy-authorization", b"Basic xyz"),
        (b"X-Custom", b"kept"),
        (b"Sec-WebSocket-Protocol", b"chat"),
    ]
    KEPT = [(b"X-Custom", b"kept"), (b"Sec-WebSocket-Protocol", b"chat")]

    def test_same_origin_keeps_everything(self) -> None:
        redirects = chain_from("ws://u:p@a.example/x", headers=self.HEADERS)
        hop = redirects.follow(redirect("/y"))
        assert hop is not None
        assert hop.headers == self.HEADERS
        assert hop.target.authorization == parse_url("ws://u:p@a.example/").authorization
        assert not redirects.credentials_dropped

    @pytest.mark.parametrize(
        "location",
        [
            "ws://b.example/x",  # another host
            "ws://a.example:81/x",  # another port
            "wss://a.example/x",  # another scheme (and port)
            "ws://sub.a.example/x",
        ],
    )
    def test_leaving_the_origin_drops_credentials(self, location: str) -> None:
        redirects = chain_from("ws://u:p@a.example/x", headers=self.HEADERS)
        hop = redirects.follow(redirect(location))
        assert hop is not None
        assert hop.headers == self.KEPT
        assert hop.target.authorization is None
        assert redirects.credentials_dropped

    def test_host_case_is_the_same_origin(self) -> None:
        redirects = chain_from("ws://u:p@a.example/x", headers=self.HEADERS)
        hop = redirects.follow(redirect("ws://A.EXAMPLE/y"))
        assert hop is not None and hop.headers == self.HEADERS

    def test_dropped_for_the_rest_of_the_chain(self) -> None:
        redirects = chain_from("ws://u:p@a.example/x", headers=self.HEADERS)
        redirects.follow(redirect("ws://b.example/y"))
        hop = redirects.follow(redirect("ws://a.example/back"))
        assert hop is not None
        assert hop.headers == self.KEPT
        assert hop.target.authorization is None

    def test_credentials_in_the_location_go_to_its_url(self) -> None:
        redirects = chain_from("ws://u:p@a.example/x", headers=self.HEADERS)
        hop = redirects.follow(redirect("ws://other:pw@b.example/y"))
        assert hop is not None
        assert hop.target.authorization == parse_url("ws://other:pw@b/").authorization
        assert hop.target.url == "ws://b.example/y"
        assert hop.headers == self.KEPT

    def test_the_users_headers_are_not_changed(self) -> None:
        headers = list(self.HEADERS)
        redirects = chain_from("ws://a.example/x", headers=headers)
        redirects.follow(redirect("ws://b.example/y"))
        assert headers == self.HEADERS

    def test_hop_keeps_the_response(self) -> None:
        response = redirect("/y", 307)
        hop = chain_from("ws://a.example/x").follow(response)
        assert hop is not None and hop.response is response
        assert repr(hop) == "Hop('ws://a.example/y')"


class TestProperties:
    """Whatever a chain of servers answers, the rules hold at every hop."""

    LOCATIONS = st.sampled_from(
        [
            "/next",
            "relative",
            "?q=1",
            "ws://a.example/x",
            "wss://a.example/x",
            "http://a.example:8080/y",
            "https://b.example/z",
            "ws://b.example/w",
            "ws://user:pw@c.example/",
            "//b.example/p",
            "ftp://a.example/",
        ]
    )

    @settings(max_examples=300, deadline=None)
    @given(
        start=st.sampled_from(["ws://u:p@a.example/", "wss://u:p@a.example/s"]),
        locations=st.lists(st.tuples(LOCATIONS, st.sampled_from(sorted(REDIRECT_STATUSES)))),
        max_redirects=st.integers(min_value=1, max_value=5),
    )
    def test_every_hop_keeps_the_rules(
        self, start: str, locations: list[tuple[str, int]], max_redirects: int
    ) -> None:
        headers = [(b"Cookie", b"c=1"), (b"Authorization", b"Bearer t"), (b"X", b"1")]
        redirects = Redirects(parse_url(start), headers, max_redirects)
        origin = parse_url(start)
        left_origin = False
        previous = origin
        for location, status in locations:
            try:
                hop = redirects.follow(redirect(location, status))
            except RedirectRefused as error:
                assert str(error)  # a reason, and the chain stops growing
                assert len(redirects.chain) <= max_redirects + 1
                continue
            assert hop is not None
            target = hop.target
            assert not (previous.scheme == "wss" and target.scheme == "ws")
            if (target.scheme, target.host, target.port) != (
                origin.scheme,
                origin.host,
                origin.port,
            ):
                left_origin = True
            if left_origin:
                assert hop.headers == [(b"X", b"1")]
                assert target.authorization != origin.authorization
            else:
                assert hop.headers == headers
                assert target.authorization == origin.authorization
            assert "@" not in target.url
            assert len(redirects.chain) <= max_redirects + 1
            assert len(set(redirects.chain)) == len(redirects.chain)
            previous = target
