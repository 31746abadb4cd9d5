"""lomond.protocol.mask: XOR masking of client payloads (RFC 6455 §5.3)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from array import array
from itertools import cycle
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lomond.protocol import mask as mask_module
from lomond.protocol.mask import (
    ACCELERATED,
    BufferedRandom,
    mask,
    mask_python,
    prefixed_mask,
    prefixed_mask_python,
)

try:
    from lomond.protocol import _speedups
except ImportError:  # not built: no compiler, or installed with LOMOND_NO_EXTENSIONS=1
    _speedups = None  # type: ignore[assignment]

MaskFunction = Callable[..., bytes]
#: The directory that holds the lomond package under test: the checkout, or where
#: lomond is installed (the tests of an unpacked sdist test the installed one).
PACKAGE_PARENT = Path(mask_module.__file__).resolve().parents[2]


def implementations(python: MaskFunction, name: str) -> list[Any]:
    """The pure-Python function and its C twin ``_speedups.<name>`` (skipped if not built)."""
    return [
        pytest.param(python, id="python"),
        pytest.param(
            getattr(_speedups, name, None),
            id="c",
            marks=pytest.mark.skipif(
                _speedups is None, reason="lomond.protocol._speedups is not built"
            ),
        ),
    ]


IMPLEMENTATIONS = implementations(mask_python, "mask")
PREFIXED_IMPLEMENTATIONS = implementations(prefixed_mask_python, "prefixed_mask")


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


class TestBothImplementationsMaskTheSame:
    """``mask_python`` and the C ``_speedups.mask`` against the RFC's definition."""

    # Every size class: empty, the 8-byte words of the C loop and their tail, the
    # pieces of the pure-Python path and their tail, and random sizes up to 70,000.
    PIECE = mask_module._PIECE
    SIZES = sorted(
        {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 39, 40, 41, 125, 126, 127}
        | {PIECE - 1, PIECE, PIECE + 1, 2 * PIECE - 1, 2 * PIECE, 2 * PIECE + 1}
        | {2 * PIECE + 3, 5 * PIECE + 7, 65535, 65536, 65537, 70000}
        | set(random.Random(6455).sample(range(70001), 24))
    )

    @pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
    @pytest.mark.parametrize("size", SIZES)
    def test_random_sizes(self, implementation: MaskFunction, size: int) -> None:
        generator = random.Random(size)
        key = generator.randbytes(4) if sys.version_info >= (3, 9) else os.urandom(4)
        data = os.urandom(size)
        assert implementation(key, data) == reference_mask(key, data)

    @pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
    @pytest.mark.parametrize("offset", [1, 2, 3, 5, 7])
    @pytest.mark.parametrize("size", [0, 1, 3, 7, 8, 13, 1000, 16389, 70000])
    def test_odd_alignments(self, implementation: MaskFunction, offset: int, size: int) -> None:
        # A memoryview slice starts at any address: the C loop must not assume
        # 8-byte alignment, and the key still starts at the slice's first byte.
        key = b"\x9d\x01\xfe\x42"
        backing = bytearray(os.urandom(size + 16))
        view = memoryview(backing)[offset : offset + size]
        assert implementation(key, view) == reference_mask(key, bytes(view))

    @pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
    @pytest.mark.parametrize("size", [5, 70000])
    def test_bytes_like_inputs(self, implementation: MaskFunction, size: int) -> None:
        key = b"\x37\xfa\x21\x3d"
        payload = os.urandom(size)
        expected = reference_mask(key, payload)
        for data in (payload, bytearray(payload), memoryview(payload)):
            result = implementation(key, data)
            assert type(result) is bytes
            assert result == expected
        strided_key = memoryview(bytes(byte for octet in key for byte in (octet, 0)))[::2]
        for masking_key in (bytearray(key), memoryview(key), strided_key):
            assert implementation(masking_key, payload) == expected

    @pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
    def test_other_buffers_are_masked_byte_by_byte(self, implementation: MaskFunction) -> None:
        key = b"\x01\x02\x03\x04"
        words = array("I", range(5000))  # 4-byte items: 20,000 bytes, len() 5,000
        assert implementation(key, words) == reference_mask(key, words.tobytes())
        strided = memoryview(bytes(range(256)) * 100)[1::3]  # not contiguous
        assert implementation(key, strided) == reference_mask(key, strided.tobytes())

    @pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
    def test_input_is_left_alone(self, implementation: MaskFunction) -> None:
        data = bytearray(b"\x00" * 40000)
        implementation(b"\xff\xff\xff\xff", data)
        assert data == bytearray(40000)

    @pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
    @pytest.mark.parametrize("key", [b"", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05"])
    @pytest.mark.parametrize("data", [b"", b"payload"])
    def test_key_must_be_four_bytes(
        self, implementation: MaskFunction, key: bytes, data: bytes
    ) -> None:
        with pytest.raises(ValueError, match="masking key must be 4 bytes"):
            implementation(key, data)

    @pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
    @pytest.mark.parametrize("key", ["abcd", None, 1234, [1, 2, 3, 4]])
    def test_key_must_be_bytes_like(self, implementation: MaskFunction, key: object) -> None:
        with pytest.raises(TypeError):
            implementation(key, b"payload")

    @pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
    @pytest.mark.parametrize("data", ["text", "", None, 5, [1, 2, 3]])
    def test_data_must_be_bytes_like(self, implementation: MaskFunction, data: object) -> None:
        with pytest.raises(TypeError):
            implementation(b"\x01\x02\x03\x04", data)

    @pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
    def test_arguments_are_positional(self, implementation: MaskFunction) -> None:
        with pytest.raises(TypeError):
            implementation(b"\x01\x02\x03\x04")
        with pytest.raises(TypeError):
            implementation(b"\x01\x02\x03\x04", b"a", b"b")
        with pytest.raises(TypeError):
            implementation(key=b"\x01\x02\x03\x04", data=b"a")

    @pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
    def test_threads_mask_large_payloads_at_once(self, implementation: MaskFunction) -> None:
        # The C version releases the GIL for large payloads; results must not mix.
        payloads = [os.urandom(100_000 + index) for index in range(4)]
        keys = [bytes((index, 1, 2, 3)) for index in range(4)]
        results: list[bytes] = [b""] * 4

        def work(index: int) -> None:
            for _ in range(5):
                results[index] = implementation(keys[index], payloads[index])

        threads = [threading.Thread(target=work, args=(index,)) for index in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [reference_mask(k, p) for k, p in zip(keys, payloads)]

    @pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
    @settings(max_examples=50)
    @given(
        key=st.binary(min_size=4, max_size=4),
        data=st.binary(max_size=20000),
        offset=st.integers(0, 7),
    )
    def test_matches_the_rfc_definition(
        self, implementation: MaskFunction, key: bytes, data: bytes, offset: int
    ) -> None:
        view = memoryview(data)[offset:]
        masked = implementation(key, view)
        assert masked == reference_mask(key, view.tobytes())
        assert implementation(key, masked) == view.tobytes()


class TestPrefixedMask:
    """``prefixed_mask(prefix, key, data)``: a frame header and its masked payload."""

    @pytest.mark.parametrize("implementation", PREFIXED_IMPLEMENTATIONS)
    @pytest.mark.parametrize("size", TestBothImplementationsMaskTheSame.SIZES)
    @pytest.mark.parametrize("prefix", [b"", b"\x82\x85", b"\x82\xff" + bytes(8) + b"keys"])
    def test_is_prefix_then_mask(
        self, implementation: MaskFunction, size: int, prefix: bytes
    ) -> None:
        key = b"\x12\xab\x00\xff"
        data = os.urandom(size)
        result = implementation(prefix, key, data)
        assert type(result) is bytes
        assert result == prefix + reference_mask(key, data)

    @pytest.mark.parametrize("implementation", PREFIXED_IMPLEMENTATIONS)
    def test_bytes_like_arguments(self, implementation: MaskFunction) -> None:
        key = b"\x37\xfa\x21\x3d"
        payload = os.urandom(70000)
        expected = b"head" + reference_mask(key, payload)
        strided = memoryview(b"hxexaxdx")[::2]
        for prefix in (b"head", bytearray(b"head"), memoryview(b"head"), strided):
            for data in (payload, bytearray(payload), memoryview(payload)[0:]):
                assert implementation(prefix, key, data) == expected

    @pytest.mark.parametrize("implementation", PREFIXED_IMPLEMENTATIONS)
    def test_errors_are_those_of_mask(self, implementation: MaskFunction) -> None:
        with pytest.raises(ValueError, match="masking key must be 4 bytes"):
            implementation(b"", b"abc", b"data")
        with pytest.raises(ValueError, match="masking key must be 4 bytes"):
            implementation("not bytes", b"abc", b"data")  # the key is checked first
        for bad in ("text", None, 5):
            with pytest.raises(TypeError):
                implementation(bad, b"\x01\x02\x03\x04", b"data")
            with pytest.raises(TypeError):
                implementation(b"", b"\x01\x02\x03\x04", bad)
        with pytest.raises(TypeError):
            implementation(b"", b"\x01\x02\x03\x04")
        with pytest.raises(TypeError):
            implementation(prefix=b"", key=b"\x01\x02\x03\x04", data=b"")


class TestWhichImplementationIsUsed:
    def test_mask_is_the_c_one_when_built_and_not_switched_off(self) -> None:
        switched_off = os.environ.get("LOMOND_NO_EXTENSIONS") == "1"
        assert ACCELERATED is (_speedups is not None and not switched_off)
        assert mask is (_speedups.mask if ACCELERATED else mask_python)
        expected = _speedups.prefixed_mask if ACCELERATED else prefixed_mask_python
        assert prefixed_mask is expected

    @staticmethod
    def _accelerated_in_a_new_process(no_extensions: str | None) -> str:
        environment = dict(os.environ)
        environment.pop("LOMOND_NO_EXTENSIONS", None)
        if no_extensions is not None:
            environment["LOMOND_NO_EXTENSIONS"] = no_extensions
        code = "import lomond.protocol.mask as m; print(m.ACCELERATED, m.mask is m.mask_python)"
        finished = subprocess.run(
            [sys.executable, "-c", code],
            cwd=PACKAGE_PARENT,
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        )
        return finished.stdout.strip()

    def test_no_extensions_forces_pure_python(self) -> None:
        assert self._accelerated_in_a_new_process("1") == "False True"

    @pytest.mark.skipif(_speedups is None, reason="lomond.protocol._speedups is not built")
    def test_c_mask_is_used_by_default(self) -> None:
        assert self._accelerated_in_a_new_process(None) == "True False"
        # Only "1" switches it off.
        assert self._accelerated_in_a_new_process("0") == "True False"


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
