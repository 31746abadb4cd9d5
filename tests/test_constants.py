"""lomond.constants: the values RFC 6455 fixes, and the default User-Agent."""

from __future__ import annotations

import platform

from lomond import __version__, constants


class TestRFC6455Constants:
    def test_ws_key_is_the_rfc_guid_as_bytes(self) -> None:
        # RFC 6455 §1.3 / §4.2.2: the GUID appended to Sec-WebSocket-Key.
        assert constants.WS_KEY == b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        assert type(constants.WS_KEY) is bytes

    def test_ws_version_is_13(self) -> None:
        # RFC 6455 §4.1: "The value of this header field MUST be 13."
        assert constants.WS_VERSION == 13
        assert type(constants.WS_VERSION) is int


class TestUserAgent:
    def test_starts_with_lomond_and_the_version(self) -> None:
        assert constants.USER_AGENT.startswith(f"Lomond/{__version__} ")

    def test_names_the_interpreter(self) -> None:
        implementation = f"{platform.python_implementation()}/{platform.python_version()}"
        assert implementation in constants.USER_AGENT

    def test_is_a_valid_header_value(self) -> None:
        agent = constants.USER_AGENT
        assert isinstance(agent, str)
        agent.encode("ascii")
        assert not any(character in agent for character in "\r\n\x00")
        assert agent == agent.strip()

    def test_does_not_leak_the_full_platform_string(self) -> None:
        # 0.3.x sent platform.platform() (kernel build, distribution); that is gone.
        assert platform.platform() not in constants.USER_AGENT
