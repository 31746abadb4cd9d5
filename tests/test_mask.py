"""lomond.mask: XOR masking of client payloads (RFC 6455 §5.3)."""

from __future__ import annotations

from itertools import cycle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lomond.mask import BufferedRandom, make_masking_key, mask


def reference_mask(key: bytes, data: bytes) -> bytes:
    """RFC 6455 §5.3, literally: octet i is XORed with key octet i MOD 4."""
    return bytes(octet ^ key_octet for octet, key_octet in zip(data, cycle(key)))


class TestRFC6455_5_3_Masking:
    def test_rfc_example(self) -> None:
        # RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
        assert mask(b"\x37\xfa\x21\x3d", b"Hello") == b"\x7f\x9f\x4d\x51\x58"

    def test_unmasking_is_masking(self) -> None:
        assert mask(b"\x37\xfa\x21\x3d", b"\x7f\x9f\x4d\x51\x58") == b"Hello"

    def test_empty_payload(self) -> None:
        assert mask(b"\x01\x02\x03\x04", b"") == b""

    @pytest.mark.parametrize("length", [1, 2, 3, 4, 5, 7, 8, 9, 125, 126, 1000])
    def test_lengths_not_a_multiple_of_the_key(self, length: int) -> None:
        key = b"\xa1\xb2\xc3\xd4"
        data = bytes(range(256)) * 4
        assert mask(key, data[:length]) == reference_mask(key, data[:length])

    def test_leading_zero_bytes_are_kept(self) -> None:
        # The implementation XORs big integers; zeros at either end must survive.
        assert mask(b"\x00\x00\x00\x00", b"\x00\x00\x00") == b"\x00\x00\x00"
        assert mask(b"\x01\x00\x00\x00", b"\x01\x00\x00\x00\x01") == b"\x00\x00\x00\x00\x00"

    def test_zero_key_is_identity(self) -> None:
        assert mask(b"\x00" * 4, b"payload") == b"payload"

    @pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
    def test_accepts_bytes_like(self, wrap: type) -> None:
        result = mask(b"\x37\xfa\x21\x3d", wrap(b"Hello"))
        assert type(result) is bytes
        assert result == b"\x7f\x9f\x4d\x51\x58"

    @settings(max_examples=100)
    @given(key=st.binary(min_size=4, max_size=4), data=st.binary(max_size=300))
    def test_matches_the_rfc_definition(self, key: bytes, data: bytes) -> None:
        masked = mask(key, data)
        assert masked == reference_mask(key, data)
        assert mask(key, masked) == data


class TestMaskingKey:
    def test_comes_from_the_injected_source(self) -> None:
        requested: list[int] = []

        def random_bytes(count: int) -> bytes:
            requested.append(count)
            return b"\x09\x08\x07\x06"

        assert make_masking_key(random_bytes) == b"\x09\x08\x07\x06"
        assert requested == [4]

    def test_default_source_gives_four_fresh_bytes(self) -> None:
        keys = {make_masking_key() for _ in range(8)}
        assert all(type(key) is bytes and len(key) == 4 for key in keys)
        # Eight equal 32-bit random keys would mean the source is not random.
        assert len(keys) > 1


class TestBufferedRandom:
    def test_hands_out_the_source_bytes_in_order_with_one_call_per_batch(self) -> None:
        calls: list[int] = []
        counter = iter(range(1_000_000))

        def source(size: int) -> bytes:
            calls.append(size)
            return bytes(next(counter) % 256 for _ in range(size))

        random_bytes = BufferedRandom(source, batch=16)
        keys = [random_bytes(4) for _ in range(8)]
        assert b"".join(keys) == bytes(range(32))
        assert calls == [16, 16]

    def test_request_larger_than_a_batch(self) -> None:
        random_bytes = BufferedRandom(lambda size: b"\x07" * size, batch=4)
        assert random_bytes(10) == b"\x07" * 10
        assert len(random_bytes(4)) == 4

    def test_default_source_gives_fresh_keys(self) -> None:
        random_bytes = BufferedRandom()
        keys = {random_bytes(4) for _ in range(2000)}
        assert len(keys) > 1990  # 2,000 draws from 2**32: collisions are rare
