"""lomond.compression: the Deflate options, the negotiation, and the codec (RFC 7692).

The codec is checked against zlib itself, and against a *strict* inflater: zlib's
inflate resolves a distance from the output of the call in progress as well as from
its window, so a window that is too small goes unnoticed inside one call. Asking for
one byte of output per call leaves the window as the only history, as it is for a
peer that inflates each message on its own.
"""

from __future__ import annotations

import random
import re
import tracemalloc
import zlib
from typing import TYPE_CHECKING, Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lomond import WebSocket
from lomond.errors import CompressionParameterError, PayloadTooLarge, ProtocolError
from lomond.protocol import ClientProtocol
from lomond.protocol.deflate import Deflate, PerMessageDeflate
from lomond.protocol.frames import RSV1, Opcode, build_frame
from lomond.protocol.handshake import accept_key
from lomond.status import Status

if TYPE_CHECKING:
    from lomond.protocol.deflate import ExtensionParameters

TAIL = b"\x00\x00\xff\xff"
ZLIB_VERSION = tuple(int(part) for part in re.findall(r"\d+", zlib.ZLIB_RUNTIME_VERSION)[:3])
KiB = 1024
MiB = 1024 * KiB


def codec(
    *,
    server_bits: int = 15,
    client_bits: int = 15,
    server_no_context_takeover: bool = False,
    client_no_context_takeover: bool = False,
    **options: Any,
) -> PerMessageDeflate:
    return PerMessageDeflate(
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
        server_no_context_takeover=server_no_context_takeover,
        client_no_context_takeover=client_no_context_takeover,
        **options,
    )


def server_deflate(data: bytes, compressor: Any = None, wbits: int = 15) -> bytes:
    """Compress one message as a server would (RFC 7692 §7.2.1)."""
    if compressor is None:
        compressor = zlib.compressobj(wbits=-wbits)
    compressed: bytes = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert compressed.endswith(TAIL)
    return compressed[:-4]


def strict_inflate(decompressor: Any, payload: bytes) -> bytes:
    """Inflate one message's payload one output byte per call (see the module doc)."""
    out = bytearray()
    data = payload + TAIL
    while True:
        chunk = decompressor.decompress(data, 1)
        out += chunk
        data = decompressor.unconsumed_tail
        if not chunk:
            return bytes(out)


def zero_bomb(mebibytes: int) -> bytes:
    """A compressed message of ``mebibytes`` MiB of zeros, in about 1 KiB per MiB.

    After a sync flush the compressor is in the same state for every MiB of zeros,
    so deflating two MiB gives the piece to repeat.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MiB)
    first, repeated = (
        compressor.compress(zeros) + compressor.flush(zlib.Z_SYNC_FLUSH) for _ in "ab"
    )
    return (first + repeated * (mebibytes - 1))[: -len(TAIL)]


def inflated_size(payload: bytes) -> int:
    """How large ``payload`` inflates, counted 16 MiB at a time."""
    decompressor = zlib.decompressobj(-15)
    data, size = payload + TAIL, 0
    while data:
        size += len(decompressor.decompress(data, 16 * MiB))
        data = decompressor.unconsumed_tail
    return size


def random_bytes(generator: random.Random, count: int) -> bytes:
    return generator.getrandbits(8 * count).to_bytes(count, "little") if count else b""


def tempting(seed: int, count: int = 12) -> list[bytes]:
    """Messages that repeat pieces of earlier ones from 1 to 600 bytes back.

    Random bytes leave a compressor nothing to match but those repeats, so it
    uses every distance its window allows, across message boundaries too.
    """
    generator = random.Random(seed)
    history = bytearray(random_bytes(generator, 600))
    messages = []
    for _ in range(count):
        message = bytearray()
        while len(message) < 400:
            back = generator.choice([3, 100, 250, 255, 256, 257, 260, 300, 400, 500, 600])
            start = len(history) + len(message) - back
            piece = (history + message)[start : start + 12]
            message += piece + random_bytes(generator, generator.randrange(0, 8))
        history += message
        messages.append(bytes(message))
    return messages


# -- the options ----------------------------------------------------------------


class TestDeflateOptions:
    def test_defaults(self) -> None:
        options = Deflate()
        assert repr(options) == (
            "Deflate(client_max_window_bits=None, server_max_window_bits=None, "
            "client_no_context_takeover=False, server_no_context_takeover=False, "
            "level=None, mem_level=5, min_size=0)"
        )

    def test_compress_true_offers_client_max_window_bits(self) -> None:
        # compress=True offers exactly this (docs/compression.rst).
        assert Deflate().offer() == "permessage-deflate; client_max_window_bits"
        request = WebSocket("ws://example.com/", compress=True)._make_protocol().data_to_send()
        assert b"\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" in (
            request
        )

    def test_compress_false_offers_nothing(self) -> None:
        request = WebSocket("ws://example.com/")._make_protocol().data_to_send()
        assert b"sec-websocket-extensions" not in request.lower()

    @pytest.mark.parametrize(
        ("options", "offer"),
        [
            ({"client_max_window_bits": 8}, "permessage-deflate; client_max_window_bits=8"),
            ({"client_max_window_bits": 15}, "permessage-deflate; client_max_window_bits=15"),
            (
                {"server_max_window_bits": 10},
                "permessage-deflate; client_max_window_bits; server_max_window_bits=10",
            ),
            (
                {"client_no_context_takeover": True},
                "permessage-deflate; client_max_window_bits; client_no_context_takeover",
            ),
            (
                {"server_no_context_takeover": True},
                "permessage-deflate; client_max_window_bits; server_no_context_takeover",
            ),
            (
                {
                    "client_max_window_bits": 9,
                    "server_max_window_bits": 8,
                    "client_no_context_takeover": True,
                    "server_no_context_takeover": True,
                },
                "permessage-deflate; client_max_window_bits=9; server_max_window_bits=8; "
                "client_no_context_takeover; server_no_context_takeover",
            ),
            # Local knobs are not offered.
            (
                {"level": 1, "mem_level": 9, "min_size": 100},
                "permessage-deflate; client_max_window_bits",
            ),
        ],
    )
    def test_offer(self, options: dict[str, Any], offer: str) -> None:
        assert Deflate(**options).offer() == offer

    @pytest.mark.parametrize(
        ("options", "error"),
        [
            ({"client_max_window_bits": 7}, ValueError),
            ({"client_max_window_bits": 16}, ValueError),
            ({"client_max_window_bits": True}, TypeError),
            ({"client_max_window_bits": "9"}, TypeError),
            ({"server_max_window_bits": 7}, ValueError),
            ({"server_max_window_bits": 16}, ValueError),
            ({"server_max_window_bits": 9.0}, TypeError),
            ({"client_no_context_takeover": 1}, TypeError),
            ({"server_no_context_takeover": "yes"}, TypeError),
            ({"level": 10}, ValueError),
            ({"level": -2}, ValueError),
            ({"level": False}, TypeError),
            ({"mem_level": 0}, ValueError),
            ({"mem_level": 10}, ValueError),
            ({"mem_level": None}, TypeError),
            ({"min_size": -1}, ValueError),
            ({"min_size": 1.5}, TypeError),
        ],
    )
    def test_invalid_options(self, options: dict[str, Any], error: type[Exception]) -> None:
        name = next(iter(options))
        with pytest.raises(error, match=name):
            Deflate(**options)

    @pytest.mark.parametrize("level", [None, -1, 0, 1, 9])
    def test_levels(self, level: int | None) -> None:
        negotiated = Deflate(level=level).accept([])
        message = b"level " * 100
        compressed = negotiated.compress(message)
        assert zlib.decompressobj(-15).decompress(compressed + TAIL) == message


# -- negotiation (RFC 7692 §7.1) -------------------------------------------------


def negotiated(codec: PerMessageDeflate) -> tuple[int, int, bool, bool]:
    return (
        codec.server_max_window_bits,
        codec.client_max_window_bits,
        codec.server_no_context_takeover,
        codec.client_no_context_takeover,
    )


class TestRFC7692_7_1_Negotiation:
    @pytest.mark.parametrize(
        ("options", "parameters", "expected"),
        [
            ({}, [], (15, 15, False, False)),
            # §7.1.1.1 / §7.1.1.2: the server may add either no_context_takeover.
            ({}, [("server_no_context_takeover", None)], (15, 15, True, False)),
            ({}, [("client_no_context_takeover", None)], (15, 15, False, True)),
            # §7.1.2.1: the server may limit its own window unasked.
            ({}, [("server_max_window_bits", "9")], (9, 15, False, False)),
            ({}, [("server_max_window_bits", "8")], (8, 15, False, False)),
            # §7.1.2.2: a value-less offer lets the server pick any client window.
            ({}, [("client_max_window_bits", "8")], (15, 8, False, False)),
            ({}, [("client_max_window_bits", "15")], (15, 15, False, False)),
            # An offered client limit holds even if the server does not repeat it.
            ({"client_max_window_bits": 10}, [], (15, 10, False, False)),
            (
                {"client_max_window_bits": 10},
                [("client_max_window_bits", "9")],
                (15, 9, False, False),
            ),
            (
                {"client_max_window_bits": 10},
                [("client_max_window_bits", "10")],
                (15, 10, False, False),
            ),
            (
                {"server_max_window_bits": 10},
                [("server_max_window_bits", "10")],
                (10, 15, False, False),
            ),
            (
                {"server_max_window_bits": 10},
                [("server_max_window_bits", "8")],
                (8, 15, False, False),
            ),
            (
                {"server_no_context_takeover": True},
                [("server_no_context_takeover", None)],
                (15, 15, True, False),
            ),
            # We keep our own promise not to take over the context, whatever the answer.
            ({"client_no_context_takeover": True}, [], (15, 15, False, True)),
            (
                {
                    "client_max_window_bits": 12,
                    "server_max_window_bits": 12,
                    "client_no_context_takeover": True,
                    "server_no_context_takeover": True,
                },
                [
                    ("client_no_context_takeover", None),
                    ("server_max_window_bits", "11"),
                    ("server_no_context_takeover", None),
                    ("client_max_window_bits", "9"),
                ],
                (11, 9, True, True),
            ),
        ],
    )
    def test_accepted(
        self,
        options: dict[str, Any],
        parameters: ExtensionParameters,
        expected: tuple[int, int, bool, bool],
    ) -> None:
        assert negotiated(Deflate(**options).accept(parameters)) == expected

    def test_codec_repr(self) -> None:
        accepted = Deflate().accept([("server_no_context_takeover", None)])
        assert repr(accepted) == (
            "<PerMessageDeflate server_max_window_bits=15 client_max_window_bits=15 "
            "server_no_context_takeover=True client_no_context_takeover=False>"
        )

    def test_local_options_reach_the_codec(self) -> None:
        accepted = Deflate(level=1, mem_level=9, min_size=64).accept([])
        assert (accepted.level, accepted.mem_level, accepted.min_size) == (1, 9, 64)
        assert Deflate().accept([]).level == -1

    @pytest.mark.parametrize(
        ("options", "parameters", "reason"),
        [
            ({}, [("foo", None)], "unknown parameter foo"),
            ({}, [("x_max_window_bits", "10")], "unknown parameter x_max_window_bits"),
            # Parameter names are matched exactly, as websockets and RFC 7692 spell them.
            ({}, [("Server_No_Context_Takeover", None)], "unknown parameter"),
            (
                {},
                [("server_no_context_takeover", None), ("server_no_context_takeover", None)],
                "duplicate parameter server_no_context_takeover",
            ),
            (
                {},
                [("client_no_context_takeover", None), ("client_no_context_takeover", None)],
                "duplicate parameter client_no_context_takeover",
            ),
            (
                {},
                [("server_max_window_bits", "10"), ("server_max_window_bits", "10")],
                "duplicate parameter server_max_window_bits",
            ),
            (
                {},
                [("client_max_window_bits", "10"), ("client_max_window_bits", "9")],
                "duplicate parameter client_max_window_bits",
            ),
            ({}, [("server_no_context_takeover", "1")], "server_no_context_takeover must not"),
            ({}, [("client_no_context_takeover", "")], "client_no_context_takeover must not"),
            ({}, [("server_max_window_bits", None)], "server_max_window_bits needs a value"),
            ({}, [("client_max_window_bits", None)], "client_max_window_bits needs a value"),
            ({}, [("server_max_window_bits", "7")], "server_max_window_bits=7 is outside 8-15"),
            ({}, [("server_max_window_bits", "16")], "server_max_window_bits=16 is outside"),
            ({}, [("client_max_window_bits", "0")], "client_max_window_bits needs a value"),
            ({}, [("client_max_window_bits", "99")], "client_max_window_bits=99 is outside"),
            ({}, [("server_max_window_bits", "")], "server_max_window_bits needs a value"),
            ({}, [("server_max_window_bits", "ten")], "server_max_window_bits needs a value"),
            ({}, [("server_max_window_bits", "-9")], "server_max_window_bits needs a value"),
            ({}, [("server_max_window_bits", "+9")], "server_max_window_bits needs a value"),
            ({}, [("server_max_window_bits", "9.0")], "server_max_window_bits needs a value"),
            # §7.1.2: no leading zeroes.
            ({}, [("server_max_window_bits", "09")], "server_max_window_bits needs a value"),
            # Latin-1 digits that str.isdigit() accepts and int() does not.
            ({}, [("server_max_window_bits", "\xb2")], "server_max_window_bits needs a value"),
            ({}, [("client_max_window_bits", "1\xb9")], "client_max_window_bits needs a value"),
            # Answers beyond the offer (§7.1.2.1, §7.1.2.2).
            (
                {"client_max_window_bits": 10},
                [("client_max_window_bits", "11")],
                "client_max_window_bits=11 exceeds the offered 10",
            ),
            (
                {"server_max_window_bits": 10},
                [("server_max_window_bits", "15")],
                "server_max_window_bits=15 exceeds the offered 10",
            ),
            # Offers a server must confirm when it accepts (§7.1.1.1, §7.1.2.1).
            (
                {"server_no_context_takeover": True},
                [],
                "server ignored the offered server_no_context_takeover",
            ),
            (
                {"server_max_window_bits": 12},
                [("server_no_context_takeover", None)],
                "server ignored the offered server_max_window_bits=12",
            ),
        ],
    )
    def test_rejected(
        self, options: dict[str, Any], parameters: ExtensionParameters, reason: str
    ) -> None:
        with pytest.raises(CompressionParameterError, match=reason.replace("+", r"\+")):
            Deflate(**options).accept(parameters)

    @settings(max_examples=300, deadline=None)
    @given(
        client_bits=st.one_of(st.none(), st.integers(8, 15)),
        server_bits=st.one_of(st.none(), st.integers(8, 15)),
        client_no_context_takeover=st.booleans(),
        server_no_context_takeover=st.booleans(),
        parameters=st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        "server_no_context_takeover",
                        "client_no_context_takeover",
                        "server_max_window_bits",
                        "client_max_window_bits",
                        "other",
                    ]
                ),
                st.one_of(
                    st.none(),
                    st.integers(0, 20).map(str),
                    st.text(st.characters(max_codepoint=255), max_size=4),
                ),
            ),
            max_size=5,
        ),
    )
    def test_any_answer_is_accepted_within_the_offer_or_refused(
        self,
        client_bits: int | None,
        server_bits: int | None,
        client_no_context_takeover: bool,
        server_no_context_takeover: bool,
        parameters: ExtensionParameters,
    ) -> None:
        options = Deflate(
            client_max_window_bits=client_bits,
            server_max_window_bits=server_bits,
            client_no_context_takeover=client_no_context_takeover,
            server_no_context_takeover=server_no_context_takeover,
        )
        try:
            accepted = options.accept(parameters)
        except CompressionParameterError:
            return  # the only way to refuse
        answer = dict(parameters)
        assert len(answer) == len(parameters)
        assert set(answer) <= {
            "server_no_context_takeover",
            "client_no_context_takeover",
            "server_max_window_bits",
            "client_max_window_bits",
        }
        assert 8 <= accepted.server_max_window_bits <= (server_bits or 15)
        assert 8 <= accepted.client_max_window_bits <= (client_bits or 15)
        assert accepted.server_no_context_takeover == ("server_no_context_takeover" in answer)
        assert accepted.server_no_context_takeover >= server_no_context_takeover
        assert accepted.client_no_context_takeover >= client_no_context_takeover
        if server_bits is not None:
            assert "server_max_window_bits" in answer


# -- compressing -------------------------------------------------------------------


class TestRFC7692_7_2_1_Compressing:
    def test_golden_hello(self) -> None:
        # RFC 7692 §7.2.3.1 and §7.2.3.2: "Hello", then "Hello" again sharing the window.
        negotiated = codec()
        assert negotiated.compress(b"Hello") == bytes.fromhex("f248cdc9c90700")
        assert negotiated.compress(b"Hello") == bytes.fromhex("f200110000")

    def test_empty_message(self) -> None:
        # The empty stored block of the flush, less the tail: one 0x00 byte (§7.2.3.6).
        assert codec().compress(b"") == b"\x00"
        assert zlib.decompressobj(-15).decompress(b"\x00" + TAIL) == b""

    def test_tail_is_stripped(self) -> None:
        compressed = codec().compress(b"some text " * 50)
        assert not compressed.endswith(TAIL)
        assert zlib.decompressobj(-15).decompress(compressed + TAIL) == b"some text " * 50

    @pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
    def test_bytes_like_payloads(self, kind: Any) -> None:
        message = b"bytes-like " * 20
        compressed = codec().compress(kind(message))
        assert zlib.decompressobj(-15).decompress(compressed + TAIL) == message

    def test_context_takeover(self) -> None:
        negotiated = codec()
        message = b"the same message again and again"
        first, second = negotiated.compress(message), negotiated.compress(message)
        assert len(second) < len(first)
        decompressor = zlib.decompressobj(-15)
        assert decompressor.decompress(first + TAIL) == message
        assert decompressor.decompress(second + TAIL) == message

    def test_client_no_context_takeover(self) -> None:
        negotiated = codec(client_no_context_takeover=True)
        message = b"the same message again and again"
        first, second = negotiated.compress(message), negotiated.compress(message)
        assert first == second
        # Each message inflates on its own, as a peer that drops its window would.
        assert zlib.decompressobj(-15).decompress(second + TAIL) == message

    @pytest.mark.parametrize("bits", range(9, 16))
    def test_window_bits_are_honoured(self, bits: int) -> None:
        # A peer that inflates with exactly the agreed window decodes every message,
        # even those that tempt the compressor to reach further back.
        negotiated = codec(client_bits=bits, level=9)
        decompressor = zlib.decompressobj(-bits)
        large = [bytes(40_000), random_bytes(random.Random(1), 40_000)]
        for message in tempting(bits, count=6) + large:
            assert strict_inflate(decompressor, negotiated.compress(message)) == message

    def test_should_compress(self) -> None:
        assert codec().should_compress(0) is True
        negotiated = codec(min_size=100)
        assert [negotiated.should_compress(n) for n in (0, 99, 100, 5000)] == [
            False,
            False,
            True,
            True,
        ]


class TestRFC7692_7_1_2_WindowOf8Bits:
    """zlib's quirk: it cannot deflate with a 256-byte window, and what lomond does."""

    @pytest.mark.skipif(ZLIB_VERSION < (1, 2, 9), reason="older zlib swaps 8 for 9 silently")
    def test_zlib_refuses_a_raw_window_of_8_bits(self) -> None:
        # The premise (zlib >= 1.2.9, zlib-ng): deflateInit2 refuses windowBits -8.
        with pytest.raises(ValueError):
            zlib.compressobj(wbits=-8)
        zlib.decompressobj(wbits=-8)  # inflating with it is fine

    def test_the_strict_inflater_sees_a_window_that_is_too_large(self) -> None:
        # The control: a window of 10 bits reaches back past 256 bytes, and a peer
        # holding only 256 bytes of history fails on it.
        compressor = zlib.compressobj(9, zlib.DEFLATED, -10)
        decompressor = zlib.decompressobj(-8)
        with pytest.raises(zlib.error, match="too far back"):
            for message in tempting(1):
                strict_inflate(decompressor, server_deflate(message, compressor))

    @pytest.mark.parametrize("level", range(10))
    @pytest.mark.parametrize("mem_level", [1, 5, 9])
    def test_compressing_with_9_bits_stays_within_8(self, level: int, mem_level: int) -> None:
        # zlib reaches back at most its window minus 262 bytes: 250 with 9 bits.
        negotiated = codec(client_bits=8, level=level, mem_level=mem_level)
        decompressor = zlib.decompressobj(-8)
        for message in tempting(level * 10 + mem_level):
            assert strict_inflate(decompressor, negotiated.compress(message)) == message

    @pytest.mark.parametrize("mem_level", [1, 5, 9])
    def test_compressing_with_9_bits_stays_within_8_for_text(self, mem_level: int) -> None:
        negotiated = codec(client_bits=8, mem_level=mem_level)
        decompressor = zlib.decompressobj(-8)
        text = " ".join(str(n * n) for n in range(3000)).encode()
        compressed = negotiated.compress(text)
        assert len(compressed) < len(text) * 0.6  # a 512-byte window still compresses
        assert strict_inflate(decompressor, compressed) == text
        assert strict_inflate(decompressor, negotiated.compress(text[:1000])) == text[:1000]

    def test_compressing_with_8_bits_without_context_takeover(self) -> None:
        negotiated = codec(client_bits=8, client_no_context_takeover=True)
        for message in tempting(3, count=4):
            assert strict_inflate(zlib.decompressobj(-8), negotiated.compress(message)) == message

    def test_inflating_a_server_that_swaps_8_for_9(self) -> None:
        # A server with zlib before 1.2.9 deflates with 9 bits when it promised 8.
        compressor = zlib.compressobj(9, zlib.DEFLATED, -9)
        negotiated = codec(server_bits=8)
        for message in tempting(4):
            payload = server_deflate(message, compressor)
            assert negotiated.decompress(payload, None, True) == message


# -- decompressing -----------------------------------------------------------------


class TestRFC7692_7_2_2_Decompressing:
    @pytest.mark.parametrize(
        "payload",
        [
            pytest.param("f248cdc9c90700", id="7.2.3.1 one compressed block"),
            pytest.param("00 0500faff 48656c6c6f 00", id="7.2.3.3 a stored block"),
            pytest.param("f348cdc9c9070000", id="7.2.3.4 BFINAL set"),
            pytest.param("f2480500 0000ffff cac9c90700", id="7.2.3.5 two blocks"),
        ],
    )
    def test_rfc_golden_payloads(self, payload: str) -> None:
        negotiated = codec()
        assert negotiated.decompress(bytes.fromhex(payload), None, True) == b"Hello"
        # ... and the connection goes on: the next message decodes too.
        assert negotiated.decompress(bytes.fromhex("f248cdc9c90700"), None, True) == b"Hello"

    def test_shared_window(self) -> None:
        # RFC 7692 §7.2.3.2.
        negotiated = codec()
        assert negotiated.decompress(bytes.fromhex("f248cdc9c90700"), None, True) == b"Hello"
        assert negotiated.decompress(bytes.fromhex("f200110000"), None, True) == b"Hello"

    def test_fragments(self) -> None:
        negotiated = codec()
        assert negotiated.decompress(bytes.fromhex("f248cd"), None, False) == b"He"
        assert negotiated.decompress(bytes.fromhex("c9c90700"), None, True) == b"llo"

    def test_empty_final_fragment(self) -> None:
        # §7.2.3.6: the last fragment may carry nothing at all.
        compressor = zlib.compressobj(wbits=-15)
        first = compressor.compress(b"Hello") + compressor.flush(zlib.Z_SYNC_FLUSH)
        negotiated = codec()
        assert negotiated.decompress(first, None, False) == b"Hello"
        assert negotiated.decompress(b"", None, True) == b""

    def test_a_bfinal_block_starts_a_new_context(self) -> None:
        # After BFINAL the deflate stream is over. A message that then refers back to
        # the old window fails the connection: it is never delivered short or empty.
        negotiated = codec()
        assert negotiated.decompress(bytes.fromhex("f348cdc9c9070000"), None, True) == b"Hello"
        with pytest.raises(ProtocolError, match="invalid compressed data") as raised:
            negotiated.decompress(bytes.fromhex("f200110000"), None, True)
        assert raised.value.code == Status.PROTOCOL_ERROR

    def test_a_bfinal_block_in_a_first_fragment(self) -> None:
        compressor = zlib.compressobj(wbits=-15)
        second = server_deflate(b" world", compressor)
        negotiated = codec()
        assert negotiated.decompress(bytes.fromhex("f348cdc9c90700"), None, False) == b"Hello"
        assert negotiated.decompress(second, None, True) == b" world"

    def test_garbage_after_a_bfinal_block(self) -> None:
        with pytest.raises(ProtocolError, match="invalid compressed data"):
            codec().decompress(bytes.fromhex("f348cdc9c90700") + b"\xff\xff", None, True)

    def test_invalid_data(self) -> None:
        with pytest.raises(ProtocolError, match="invalid compressed data") as raised:
            codec().decompress(b"\xff\xff\xff\xff", None, True)
        assert raised.value.code == Status.PROTOCOL_ERROR

    def test_server_context_takeover(self) -> None:
        compressor = zlib.compressobj(wbits=-15)
        negotiated = codec()
        message = b"a message the server sends again and again"
        for _ in range(3):
            assert negotiated.decompress(server_deflate(message, compressor), None, True) == message

    def test_server_no_context_takeover(self) -> None:
        negotiated = codec(server_no_context_takeover=True)
        message = b"a message the server sends again and again"
        for _ in range(3):
            assert negotiated.decompress(server_deflate(message), None, True) == message

    @pytest.mark.parametrize("bits", range(8, 16))
    def test_server_window_bits(self, bits: int) -> None:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -max(9, bits))
        negotiated = codec(server_bits=bits)
        for message in tempting(bits, count=4):
            assert negotiated.decompress(server_deflate(message, compressor), None, True) == message


class TestBoundedInflation:
    def test_exactly_the_limit(self) -> None:
        assert codec().decompress(server_deflate(bytes(1000)), 1000, True) == bytes(1000)

    def test_one_byte_over_the_limit(self) -> None:
        with pytest.raises(PayloadTooLarge) as raised:
            codec().decompress(server_deflate(bytes(1001)), 1000, True)
        assert raised.value.code == Status.MESSAGE_TOO_LARGE

    def test_limit_of_zero(self) -> None:
        assert codec().decompress(server_deflate(b""), 0, True) == b""
        with pytest.raises(PayloadTooLarge):
            codec().decompress(server_deflate(b"x"), 0, True)

    @pytest.mark.parametrize("size", [256 * KiB - 1, 256 * KiB, 256 * KiB + 1, 3 * MiB + 7])
    def test_messages_larger_than_one_inflation_step(self, size: int) -> None:
        message = random_bytes(random.Random(size), 1000) * (size // 1000) + bytes(size % 1000)
        payload = server_deflate(message)
        assert codec().decompress(payload, size, True) == message
        assert codec().decompress(payload, None, True) == message
        with pytest.raises(PayloadTooLarge):
            codec().decompress(payload, size - 1, True)

    @pytest.mark.parametrize("size", [0, 1, 1000, 258 * 1000, 10 * MiB])
    def test_deflate_expands_at_most_1032_times(self, size: int) -> None:
        # decompress() inflates in one call, without steps, when the payload cannot
        # reach the limit: this bound (zeros compress best) is what makes that safe.
        payload = server_deflate(bytes(size))
        assert size <= (len(payload) + 4) * 1032
        limit = (len(payload) + 4) * 1032
        assert codec().decompress(payload, limit, True) == bytes(size)

    def test_zero_bomb_costs_the_limit_not_its_size(self) -> None:
        bomb = zero_bomb(256)
        assert len(bomb) < 300 * KiB
        assert inflated_size(bomb) == 256 * MiB
        negotiated = codec()
        tracemalloc.start()
        try:
            with pytest.raises(PayloadTooLarge):
                negotiated.decompress(bomb, 1 * MiB, True)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 2 * MiB, f"inflating the bomb peaked at {peak / MiB:.1f} MiB"


# -- memory per connection (docs/compression.rst) ------------------------------


def retained(action: Any) -> int:
    """Bytes still allocated after ``action()``, with what it returned kept alive."""
    tracemalloc.start()
    try:
        kept = action()
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del kept
    return current


@pytest.mark.skipif(
    "ng" in zlib.ZLIB_RUNTIME_VERSION, reason="the documented figures are zlib's, not zlib-ng's"
)
class TestMemoryPerConnection:
    MESSAGE = bytes(range(256)) * 64

    @pytest.mark.parametrize(
        ("options", "expected_kib"),
        [
            ({}, 150),  # 2**17 window + 2**14 hash and buffer + state
            ({"mem_level": 8}, 262),
            ({"mem_level": 1}, 135),
            ({"client_bits": 12}, 38),
            ({"client_bits": 9, "mem_level": 1}, 9),
            ({"client_bits": 8, "mem_level": 1}, 9),
        ],
    )
    def test_compressor(self, options: dict[str, Any], expected_kib: int) -> None:
        def send() -> PerMessageDeflate:
            negotiated = codec(**options)
            negotiated.compress(self.MESSAGE)
            return negotiated

        assert retained(send) == pytest.approx(expected_kib * KiB, abs=3 * KiB)

    @pytest.mark.parametrize(("bits", "expected_kib"), [(15, 39), (12, 11), (9, 7.5), (8, 7.5)])
    def test_decompressor(self, bits: int, expected_kib: float) -> None:
        payload = server_deflate(self.MESSAGE)

        def receive() -> PerMessageDeflate:
            negotiated = codec(server_bits=bits)
            negotiated.decompress(payload, None, True)
            return negotiated

        assert retained(receive) == pytest.approx(expected_kib * KiB, abs=2 * KiB)

    def test_nothing_kept_without_context_takeover(self) -> None:
        payload = server_deflate(self.MESSAGE)

        def both() -> PerMessageDeflate:
            negotiated = codec(server_no_context_takeover=True, client_no_context_takeover=True)
            negotiated.compress(self.MESSAGE)
            negotiated.decompress(payload, None, True)
            return negotiated

        assert retained(both) < 1 * KiB

    def test_nothing_allocated_before_the_first_message(self) -> None:
        assert retained(lambda: Deflate().accept([])) < 1 * KiB


# -- properties --------------------------------------------------------------------


@st.composite
def parameter_sets(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "client_bits": draw(st.integers(8, 15)),
        "client_no_context_takeover": draw(st.booleans()),
        "level": draw(st.integers(-1, 9)),
        "mem_level": draw(st.integers(1, 9)),
    }


def messages() -> st.SearchStrategy[list[bytes]]:
    """Messages that are often similar to each other, so windows and contexts matter."""
    piece = st.one_of(
        st.binary(max_size=300),
        st.text(max_size=100).map(str.encode),
        st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=8), st.integers(1, 200)),
    )
    message = st.lists(piece, max_size=4).map(b"".join)
    return st.lists(message, min_size=1, max_size=6).flatmap(
        lambda ms: st.lists(st.sampled_from(ms), min_size=1, max_size=8).map(
            lambda repeats: ms + repeats
        )
    )


def fragments(payload: bytes, cuts: list[int]) -> Iterator[tuple[bytes, bool]]:
    cuts = sorted({cut % (len(payload) + 1) for cut in cuts})
    edges = [0, *cuts, len(payload)]
    for index, (start, end) in enumerate(zip(edges, edges[1:])):
        yield payload[start:end], index == len(edges) - 2


KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def open_client(extension: str, options: Deflate) -> ClientProtocol:
    """A ClientProtocol past a handshake whose response accepted ``extension``."""
    protocol = ClientProtocol(b"GET / HTTP/1.1\r\n\r\n", KEY, deflate=options)
    protocol.data_to_send()
    protocol.receive_data(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(KEY).encode() + b"\r\n"
        b"Sec-WebSocket-Extensions: " + extension.encode() + b"\r\n\r\n"
    )
    assert [event.name for event in protocol.events_received()] == ["ready"]
    return protocol


def client_frames(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Cut a client's bytes into ``(opcode, rsv, unmasked payload)``."""
    position = 0
    while position < len(data):
        first, second = data[position], data[position + 1]
        length, position = second & 0x7F, position + 2
        if length >= 126:
            size = 2 if length == 126 else 8
            length = int.from_bytes(data[position : position + size], "big")
            position += size
        key, position = data[position : position + 4], position + 4
        masked, position = data[position : position + length], position + length
        yield first & 0xF, first >> 4 & 0x7, bytes(b ^ key[i % 4] for i, b in enumerate(masked))


class TestProperties:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(parameters=parameter_sets(), sent=messages(), data=st.data())
    def test_any_message_round_trips_under_every_parameter_set(
        self, parameters: dict[str, Any], sent: list[bytes], data: st.DataObject
    ) -> None:
        """Our compressor's output, fragmented anywhere, decodes through our decoder
        configured as the peer (same window, same context rule), and through a strict
        zlib inflater holding exactly the negotiated window."""
        bits = parameters["client_bits"]
        no_takeover = parameters["client_no_context_takeover"]
        sender = codec(**parameters)
        receiver = codec(server_bits=bits, server_no_context_takeover=no_takeover)
        strict = zlib.decompressobj(-bits)
        limit = data.draw(st.one_of(st.none(), st.integers(0, 4000)))
        for message in sent:
            payload = sender.compress(message)
            if no_takeover:
                strict = zlib.decompressobj(-bits)
            assert strict_inflate(strict, payload) == message
            cuts = data.draw(st.lists(st.integers(0, 10_000), max_size=3))
            parts = []
            size = 0
            try:
                for piece, final in fragments(payload, cuts):
                    # As the protocol does: what is left of the limit for this message.
                    remaining = None if limit is None else limit - size
                    part = receiver.decompress(piece, remaining, final)
                    size += len(part)
                    parts.append(part)
            except PayloadTooLarge:
                assert limit is not None
                assert len(message) > limit
                return  # the connection would be failed here
            assert limit is None or len(message) <= limit
            assert b"".join(parts) == message

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(parameters=parameter_sets(), sent=messages(), data=st.data())
    def test_any_message_round_trips_between_two_protocols(
        self, parameters: dict[str, Any], sent: list[bytes], data: st.DataObject
    ) -> None:
        """What one ClientProtocol sends, replayed as server frames (fragmented
        anywhere) to another negotiated the mirror way, comes out as sent."""
        bits = parameters["client_bits"]
        no_takeover = parameters["client_no_context_takeover"]
        min_size = data.draw(st.integers(0, 50))
        suffix = "; client_no_context_takeover" if no_takeover else ""
        sender = open_client(
            f"permessage-deflate; client_max_window_bits={bits}{suffix}",
            Deflate(
                level=parameters["level"], mem_level=parameters["mem_level"], min_size=min_size
            ),
        )
        suffix = "; server_no_context_takeover" if no_takeover else ""
        receiver = open_client(
            f"permessage-deflate; server_max_window_bits={bits}{suffix}", Deflate()
        )
        expected: list[str | bytes] = []
        for message in sent:
            is_text = data.draw(st.booleans())
            if is_text:
                value = message.decode("utf-8", "replace")
                sender.send_message(Opcode.TEXT, value.encode("utf-8"), data.draw(st.booleans()))
                expected.append(value)
            else:
                sender.send_message(Opcode.BINARY, message, data.draw(st.booleans()))
                expected.append(message)
        wire = b""
        for opcode, rsv, payload in client_frames(sender.data_to_send()):
            cuts = data.draw(st.lists(st.integers(0, 10_000), max_size=3))
            for index, (piece, final) in enumerate(fragments(payload, cuts)):
                wire += build_frame(
                    opcode if index == 0 else Opcode.CONTINUATION,
                    piece,
                    None,
                    fin=final,
                    rsv=rsv if index == 0 else 0,
                )
            assert rsv in (0, RSV1)
        receiver.receive_data(wire)
        received = receiver.events_received()
        assert [getattr(event, "text", getattr(event, "data", None)) for event in received] == (
            expected
        )
