"""Following redirects of the upgrade request, as pure decisions.

A server may answer the upgrade request with a redirect (``301``, ``302``, ``303``,
``307`` or ``308`` and a ``Location``; RFC 9110 §15.4) instead of ``101``.
:class:`Redirects` holds the chain of one ``connect()`` and decides, for each
redirect response, where the next request goes and with which headers, or why the
redirect is refused. It does no I/O: the shell closes the connection and opens the
next one (:mod:`lomond.loop.session`).

The rules:

* ``Location`` may be absolute or relative (resolved against the current URL);
  ``http://`` becomes ``ws://`` and ``https://`` becomes ``wss://``; any other scheme
  is refused.
* A redirect from ``wss://`` to ``ws://`` is refused: it would drop TLS.
* Once a redirect leaves the origin (scheme, host and port) of the URL given by the
  user, credentials are no longer sent, for the rest of the chain: the user's URL
  credentials (``Authorization``), and the ``Authorization``, ``Cookie`` and
  ``Proxy-Authorization`` headers the user supplied. Credentials in a ``Location``
  itself came from the server that redirected, and go to the URL they are part of.
* A URL met twice in the chain is a loop; more than ``max_redirects`` redirects are
  too many. Both are refused with a reason that shows the chain.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from ..errors import HandshakeError
from .url import Target, parse_url

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    from ..response import Response
    from .handshake import HeaderList

#: The status codes of the redirects lomond follows (RFC 9110 §15.4).
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: The user-supplied request headers that are not sent once a redirect leaves the
#: user's origin.
CREDENTIAL_HEADERS = frozenset({b"authorization", b"cookie", b"proxy-authorization"})
# urljoin() resolves relative references only for the schemes it knows: ws and wss
# are resolved as their HTTP twins.
_TO_HTTP = {"ws": "http", "wss": "https"}
_TO_WS = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_ARROW = " -> "


class RedirectRefused(HandshakeError):
    """A redirect that lomond does not follow; the message says why."""


class Hop:
    """Where the next upgrade request goes, and what it carries.

    Attributes:
        target: The next URL, parsed; its ``authorization`` is the ``Authorization``
            value to send (``None``: none).
        headers: The user's extra request headers for this request.
        response: The redirect response that led here.
    """

    __slots__ = ("target", "headers", "response")

    def __init__(self, target: Target, headers: HeaderList, response: Response) -> None:
        self.target = target
        self.headers = headers
        self.response = response

    def __repr__(self) -> str:
        return f"Hop({self.target.url!r})"


def is_redirect(response: Response) -> bool:
    """Whether ``response`` is a redirect lomond can follow: a 3xx status it knows
    (see :data:`REDIRECT_STATUSES`) with a ``Location``."""
    return response.status_code in REDIRECT_STATUSES and bool(response.get("location"))


def _origin(target: Target) -> tuple[str, str, int]:
    return target.scheme, target.host.lower(), target.port


class Redirects:
    """The redirects of one connection attempt, from the URL the user gave.

    Args:
        target: The user's URL, parsed.
        headers: The user's extra request headers.
        max_redirects: How many redirects to follow at most; ``0`` follows none.
    """

    def __init__(self, target: Target, headers: HeaderList, max_redirects: int) -> None:
        self.max_redirects = max_redirects
        self._origin = _origin(target)
        self._headers = list(headers)
        self._current = target
        # The Authorization value from the user's URL credentials.
        self._user_authorization = target.authorization
        #: The URLs requested so far (without credentials), the user's first.
        self.chain: list[str] = [target.url]
        #: Whether the chain left the user's origin: credentials are no longer sent.
        self.credentials_dropped = False

    @property
    def current(self) -> Target:
        """The URL of the request that is under way."""
        return self._current

    def follow(self, response: Response) -> Hop | None:
        """Decide what to do with the response to the current request.

        Returns:
            The next request, or ``None`` when ``response`` is no redirect to follow
            (not a redirect, or ``max_redirects`` is ``0``): it is rejected as
            any other answer that is not ``101``.

        Raises:
            RedirectRefused: The redirect may not be followed: a ``Location`` that
                is not a ``ws``/``wss``/``http``/``https`` URL, a change from
                ``wss`` to ``ws``, a loop, or more than ``max_redirects`` redirects.
        """
        if self.max_redirects == 0 or not is_redirect(response):
            return None
        status = f"{response.status_code} {response.status}".strip()
        location = (response.get("location") or "").strip()
        target = self._resolve(location, status)
        current = self._current
        if current.scheme == "wss" and target.scheme == "ws":
            raise RedirectRefused(
                f"refused redirect ({status}) from {current.url} to {target.url}: "
                "it would give up TLS (wss:// to ws://)"
            )
        chain = _ARROW.join([*self.chain, target.url])
        if target.url in self.chain:
            raise RedirectRefused(f"redirect loop: {chain}")
        if len(self.chain) > self.max_redirects:
            raise RedirectRefused(
                f"too many redirects (max_redirects={self.max_redirects}): {chain}"
            )
        if _origin(target) != self._origin:
            self.credentials_dropped = True
        self.chain.append(target.url)
        self._current = target
        return Hop(self._hop_target(target), self.headers, response)

    @property
    def headers(self) -> HeaderList:
        """The user's headers for the current request (without credentials once the
        chain left the user's origin)."""
        if not self.credentials_dropped:
            return list(self._headers)
        return [pair for pair in self._headers if pair[0].lower() not in CREDENTIAL_HEADERS]

    def _resolve(self, location: str, status: str) -> Target:
        """The absolute ``ws``/``wss`` URL ``location`` points to, from the current URL."""
        current = self._current
        base = current.url.replace(current.scheme, _TO_HTTP[current.scheme], 1)
        try:
            absolute = urljoin(base, location)
            scheme = urlsplit(absolute).scheme.lower()
        except ValueError as error:  # e.g. an unclosed "[" in the host
            raise RedirectRefused(
                f"refused redirect ({status}) from {current.url} to {location!r}: {error}"
            ) from None
        if scheme not in _TO_WS:
            raise RedirectRefused(
                f"refused redirect ({status}) from {current.url} to {location!r}: "
                "not an http, https, ws or wss URL"
            )
        ws_url = _TO_WS[scheme] + absolute[len(scheme) :]
        try:
            return parse_url(ws_url)
        except ValueError as error:
            raise RedirectRefused(
                f"refused redirect ({status}) from {current.url} to {location!r}: {error}"
            ) from None

    def _hop_target(self, target: Target) -> Target:
        """``target`` with the credentials to send: its own (from ``Location``), else
        the user's while the chain stays at the user's origin."""
        if target.authorization is not None or self.credentials_dropped:
            return target
        user = self._user_authorization
        if user is None:
            return target
        return _with_authorization(target, user)


def _with_authorization(target: Target, authorization: str) -> Target:
    return Target(
        target.scheme, target.host, target.port, target.resource, authorization, target.url
    )
