"""lomond.status: close codes (RFC 6455 §7.4)."""

from __future__ import annotations

import pytest

from lomond.status import Status, is_valid_close_code

NAMED_CODES = {
    "NORMAL": 1000,
    "GOING_AWAY": 1001,
    "PROTOCOL_ERROR": 1002,
    "DATA_NOT_UNDERSTOOD": 1003,
    "BAD_DATA": 1007,
    "POLICY_VIOLATION": 1008,
    "MESSAGE_TOO_LARGE": 1009,
    "EXTENSION_FAILED": 1010,
    "UNEXPECTED_CONDITION": 1011,
}

#: The codes a close frame may carry (RFC 6455 §7.4; 1012-1014 registered with IANA).
VALID_CODES = [*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)]


class TestStatusNames:
    @pytest.mark.parametrize(("name", "code"), sorted(NAMED_CODES.items()))
    def test_named_code(self, name: str, code: int) -> None:
        status = getattr(Status, name)
        assert status == code
        assert int(status) == code

    def test_exactly_the_0_3_names(self) -> None:
        # The 0.3.x test: the set of upper-case names on Status.
        upper = {name for name in dir(Status) if name.isupper()}
        assert upper == set(NAMED_CODES)

    def test_codes_compare_and_hash_as_ints(self) -> None:
        assert {Status.NORMAL: "x"}[1000] == "x"
        assert Status.MESSAGE_TOO_LARGE.to_bytes(2, "big") == b"\x03\xf1"


class TestInvalidCodes:
    def test_is_immutable(self) -> None:
        assert isinstance(Status.invalid_codes, frozenset)

    @pytest.mark.parametrize("code", [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999])
    def test_reserved_and_unassigned_codes_are_invalid(self, code: int) -> None:
        # RFC 6455 §7.4.1: 1004-1006 and 1015 must never be sent; 0-999 unused;
        # 1016-2999 belong to future revisions.
        assert code in Status.invalid_codes
        assert not is_valid_close_code(code)

    def test_valid_codes_are_never_listed_as_invalid(self) -> None:
        assert Status.invalid_codes.isdisjoint(VALID_CODES)

    def test_1012_to_1014_are_valid(self) -> None:
        # Registered with IANA (service restart, try again later, bad gateway); 0.3.x
        # wrongly listed 1014 as invalid.
        for code in (1012, 1013, 1014):
            assert code not in Status.invalid_codes
            assert is_valid_close_code(code)

    def test_every_code_below_5000_is_either_valid_or_invalid(self) -> None:
        for code in range(5000):
            assert is_valid_close_code(code) is (code not in Status.invalid_codes)


class TestIsValidCloseCode:
    @pytest.mark.parametrize("code", VALID_CODES[:20] + [3000, 3999, 4000, 4999])
    def test_valid(self, code: int) -> None:
        assert is_valid_close_code(code)

    @pytest.mark.parametrize("code", [5000, 65535, -1])
    def test_undefined_codes_are_invalid(self, code: int) -> None:
        assert not is_valid_close_code(code)
