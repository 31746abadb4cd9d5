"""lomond.protocol.frames: the wire format of RFC 6455 §5, in both directions."""

from __future__ import annotations

from typing import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lomond.errors import PayloadTooLarge, ProtocolError
from lomond.protocol.frame_reader import FrameReader
from lomond.protocol.frames import (
    RESERVED_OPCODES,
    RSV1,
    RSV2,
    RSV3,
    FrameHeader,
    Opcode,
    build_close_payload,
    build_frame,
    parse_close_payload,
    truncate_utf8,
)

RFC_KEY = b"\x37\xfa\x21\x3d"


def accept_all(header: FrameHeader) -> bool:
    """A header check that lets every frame through."""
    return True


class Recorder:
    """A header check that accepts every frame and remembers its header."""

    def __init__(self) -> None:
        self.seen: list[FrameHeader] = []

    def __call__(self, header: FrameHeader) -> bool:
        self.seen.append(header)
        return True


def chunkings(data: bytes) -> Iterator[list[bytes]]:
    """The data whole, one byte at a time, and split in two at every boundary."""
    yield [data]
    yield [data[index : index + 1] for index in range(len(data))]
    for index in range(1, len(data)):
        yield [data[:index], data[index:]]


def read_frames(chunks: list[bytes]) -> list[tuple[bool, int, int, bool, int, bytes]]:
    """Feed ``chunks`` to a FrameReader and return every frame as a plain tuple."""
    reader = FrameReader(accept_all)
    frames = []
    for chunk in chunks:
        reader.feed(chunk)
        while True:
            frame = reader.next_frame()
            if frame is None:
                break
            header, payload = frame
            frames.append(
                (header.fin, header.rsv, header.opcode, header.masked, header.length, payload)
            )
    assert not reader.mid_frame
    return frames


def read_all_ways(data: bytes) -> list[tuple[bool, int, int, bool, int, bytes]]:
    """Read ``data`` every way :func:`chunkings` cuts it; all must give the same frames."""
    expected = read_frames([data])
    for chunks in chunkings(data):
        assert read_frames(chunks) == expected, chunks
    return expected


class TestOpcode:
    def test_values(self) -> None:
        # RFC 6455 §5.2.
        assert [(opcode.name, int(opcode)) for opcode in Opcode] == [
            ("CONTINUATION", 0x0),
            ("TEXT", 0x1),
            ("BINARY", 0x2),
            ("CLOSE", 0x8),
            ("PING", 0x9),
            ("PONG", 0xA),
        ]

    def test_control_opcodes(self) -> None:
        assert {opcode for opcode in Opcode if opcode.is_control} == {
            Opcode.CLOSE,
            Opcode.PING,
            Opcode.PONG,
        }

    def test_reserved_opcodes(self) -> None:
        assert set(RESERVED_OPCODES) == {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF}
        assert not RESERVED_OPCODES & set(Opcode)

    def test_rsv_bits(self) -> None:
        assert (RSV1, RSV2, RSV3) == (4, 2, 1)


class TestRFC6455_5_7_GoldenFrames:
    """The examples of RFC 6455 §5.7, built and read back."""

    def test_unmasked_text(self) -> None:
        frame = b"\x81\x05\x48\x65\x6c\x6c\x6f"
        assert build_frame(Opcode.TEXT, b"Hello", None) == frame
        assert read_all_ways(frame) == [(True, 0, 1, False, 5, b"Hello")]

    def test_masked_text(self) -> None:
        frame = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
        assert build_frame(Opcode.TEXT, b"Hello", RFC_KEY) == frame
        assert read_all_ways(frame) == [(True, 0, 1, True, 5, b"Hello")]

    def test_fragmented_unmasked_text(self) -> None:
        first = b"\x01\x03\x48\x65\x6c"
        second = b"\x80\x02\x6c\x6f"
        assert build_frame(Opcode.TEXT, b"Hel", None, fin=False) == first
        assert build_frame(Opcode.CONTINUATION, b"lo", None) == second
        assert read_all_ways(first + second) == [
            (False, 0, 1, False, 3, b"Hel"),
            (True, 0, 0, False, 2, b"lo"),
        ]

    def test_unmasked_ping(self) -> None:
        frame = b"\x89\x05\x48\x65\x6c\x6c\x6f"
        assert build_frame(Opcode.PING, b"Hello", None) == frame
        assert read_all_ways(frame) == [(True, 0, 9, False, 5, b"Hello")]

    def test_masked_pong(self) -> None:
        frame = b"\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
        assert build_frame(Opcode.PONG, b"Hello", RFC_KEY) == frame
        assert read_all_ways(frame) == [(True, 0, 10, True, 5, b"Hello")]

    def test_256_bytes_binary_uses_a_16_bit_length(self) -> None:
        payload = bytes(range(256))
        frame = b"\x82\x7e\x01\x00" + payload
        assert build_frame(Opcode.BINARY, payload, None) == frame
        assert read_frames([frame]) == [(True, 0, 2, False, 256, payload)]

    def test_64_kib_binary_uses_a_64_bit_length(self) -> None:
        payload = b"\xab" * 65536
        frame = b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00" + payload
        assert build_frame(Opcode.BINARY, payload, None) == frame
        assert read_frames([frame]) == [(True, 0, 2, False, 65536, payload)]


class TestRFC6455_5_2_PayloadLength:
    @pytest.mark.parametrize(
        ("length", "encoded"),
        [
            (0, b"\x00"),
            (1, b"\x01"),
            (125, b"\x7d"),
            (126, b"\x7e\x00\x7e"),
            (127, b"\x7e\x00\x7f"),
            (65535, b"\x7e\xff\xff"),
            (65536, b"\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
        ],
    )
    def test_minimal_encoding(self, length: int, encoded: bytes) -> None:
        # RFC 6455 §5.2: "the minimal number of bytes MUST be used to encode the length".
        frame = build_frame(Opcode.BINARY, b"x" * length, None)
        assert frame[1 : 1 + len(encoded)] == encoded
        assert len(frame) == 1 + len(encoded) + length

    @pytest.mark.parametrize(
        ("length", "encoded"),
        [(5, b"\x85"), (126, b"\xfe\x00\x7e"), (65536, b"\xff\x00\x00\x00\x00\x00\x01\x00\x00")],
    )
    def test_mask_bit_with_each_encoding(self, length: int, encoded: bytes) -> None:
        frame = build_frame(Opcode.BINARY, b"x" * length, b"\x00\x00\x00\x00")
        assert frame[1 : 1 + len(encoded)] == encoded
        assert frame[1 + len(encoded) : 5 + len(encoded)] == b"\x00\x00\x00\x00"

    def test_reader_accepts_a_non_minimal_length(self) -> None:
        # Being liberal here costs nothing: the length is still unambiguous.
        frame = b"\x82\x7e\x00\x03abc"
        assert read_all_ways(frame) == [(True, 0, 2, False, 3, b"abc")]

    def test_most_significant_bit_of_a_64_bit_length_is_refused(self) -> None:
        # RFC 6455 §5.2: "the most significant bit MUST be 0".
        reader = FrameReader(accept_all)
        reader.feed(b"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00")
        with pytest.raises(PayloadTooLarge):
            reader.next_frame()


class TestBuildFrame:
    def test_fin_clear(self) -> None:
        assert build_frame(Opcode.BINARY, b"", None, fin=False) == b"\x02\x00"

    @pytest.mark.parametrize(("rsv", "first"), [(RSV1, 0xC1), (RSV2, 0xA1), (RSV3, 0x91)])
    def test_rsv_bits(self, rsv: int, first: int) -> None:
        assert build_frame(Opcode.TEXT, b"", None, rsv=rsv)[0] == first

    def test_empty_masked_frame_still_carries_the_key(self) -> None:
        assert build_frame(Opcode.PING, b"", b"\x01\x02\x03\x04") == b"\x89\x80\x01\x02\x03\x04"

    @pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
    def test_accepts_bytes_like_payloads(self, wrap: type) -> None:
        frame = build_frame(Opcode.BINARY, wrap(b"Hello"), RFC_KEY)
        assert frame == b"\x82\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
        assert type(frame) is bytes


class TestFrameReader:
    def test_nothing_until_a_frame_is_complete(self) -> None:
        reader = FrameReader(accept_all)
        assert reader.next_frame() is None
        reader.feed(b"\x81")
        assert reader.next_frame() is None
        reader.feed(b"\x05Hell")
        assert reader.next_frame() is None
        assert reader.mid_frame
        reader.feed(b"o")
        frame = reader.next_frame()
        assert frame is not None
        assert frame[1] == b"Hello"
        assert reader.next_frame() is None
        assert not reader.mid_frame

    def test_several_frames_in_one_feed(self) -> None:
        data = b"\x81\x02hi\x89\x00\x82\x01\xff\x01"
        reader = FrameReader(accept_all)
        reader.feed(data)
        payloads = []
        for _ in range(3):
            frame = reader.next_frame()
            assert frame is not None
            payloads.append(frame[1])
        assert payloads == [b"hi", b"", b"\xff"]
        assert reader.next_frame() is None
        assert reader.mid_frame  # the start of a fourth frame

    def test_check_sees_each_header_before_its_payload(self) -> None:
        check = Recorder()
        seen = check.seen
        reader = FrameReader(check)
        reader.feed(b"\x82\x7e\x10\x00" + b"x" * 10)
        assert reader.next_frame() is None
        assert len(seen) == 1
        assert (seen[0].fin, seen[0].opcode, seen[0].length) == (True, 2, 4096)
        reader.feed(b"x" * 100)
        assert reader.next_frame() is None
        assert len(seen) == 1  # checked once, not again as more payload arrives

    def test_check_sees_the_masked_flag_before_the_key_is_complete(self) -> None:
        # The key must be read before the header is complete; then the check runs.
        check = Recorder()
        seen = check.seen
        reader = FrameReader(check)
        reader.feed(b"\x81\x85\x37\xfa")
        assert reader.next_frame() is None
        assert seen == []
        reader.feed(b"\x21\x3d")
        assert reader.next_frame() is None
        assert len(seen) == 1 and seen[0].masked

    def test_a_refusing_check_raises_out_of_next_frame(self) -> None:
        def refuse(header: FrameHeader) -> bool:
            raise ProtocolError("no")

        reader = FrameReader(refuse)
        reader.feed(b"\x83\x00")
        with pytest.raises(ProtocolError, match="no"):
            reader.next_frame()

    def test_a_refused_frame_is_skipped(self) -> None:
        # The refused frame must not come back on the next call (nor be re-checked).
        def refuse_opcode_3(header: FrameHeader) -> bool:
            if header.opcode == 3:
                raise ProtocolError("reserved")
            return True

        for chunks in chunkings(b"\x83\x03abc\x81\x02hi"):
            reader = FrameReader(refuse_opcode_3)
            frames = []
            refused = 0
            for chunk in chunks:
                reader.feed(chunk)
                while True:
                    try:
                        frame = reader.next_frame()
                    except ProtocolError:
                        refused += 1
                        continue
                    if frame is None:
                        break
                    frames.append(frame[1])
            assert (refused, frames) == (1, [b"hi"]), chunks

    def test_a_frame_the_check_declines_is_skipped_unbuffered(self) -> None:
        reader = FrameReader(lambda header: header.opcode != Opcode.BINARY)
        reader.feed(b"\x82\x7f" + (1 << 20).to_bytes(8, "big"))
        assert reader.next_frame() is None
        for _ in range(16):
            reader.feed(bytes(65536))
            assert reader.next_frame() is None
        assert reader.pending_header() is None
        reader.feed(b"\x81\x02hi")
        frame = reader.next_frame()
        assert frame is not None and frame[1] == b"hi"
        assert not reader.mid_frame

    def test_nothing_is_read_after_a_length_with_the_top_bit_set(self) -> None:
        reader = FrameReader(accept_all)
        reader.feed(b"\x82\x7f\x80" + bytes(7))
        with pytest.raises(PayloadTooLarge):
            reader.next_frame()
        reader.feed(b"\x81\x02hi")
        assert reader.next_frame() is None

    def test_pending_header_and_payload(self) -> None:
        reader = FrameReader(accept_all)
        assert reader.pending_header() is None
        assert bytes(reader.pending_payload()) == b""
        reader.feed(b"\x01\x7e\x00\xc8abc")
        assert reader.next_frame() is None
        pending = reader.pending_header()
        assert pending is not None and pending.length == 200 and pending.opcode == 1
        view = reader.pending_payload()
        assert bytes(view) == b"abc"
        view.release()
        reader.feed(b"d" * 197 + b"\x80")
        frame = reader.next_frame()
        assert frame is not None and frame[1] == b"abc" + b"d" * 197
        assert reader.pending_header() is None

    def test_header_fields(self) -> None:
        check = Recorder()
        seen = check.seen
        reader = FrameReader(check)
        reader.feed(b"\x7a\x00")  # FIN clear, RSV 111, opcode 0xA
        reader.next_frame()
        (header,) = seen
        assert (header.fin, header.rsv, header.opcode, header.masked, header.length) == (
            False,
            0b111,
            0xA,
            False,
            0,
        )
        assert repr(header) == "FrameHeader(fin=False, rsv=7, opcode=10, masked=False, length=0)"

    def test_reserved_opcodes_and_bits_are_read_not_judged(self) -> None:
        # Judging frames is the protocol's job; the reader reports what it sees.
        assert read_all_ways(b"\xf3\x01x") == [(True, 7, 3, False, 1, b"x")]

    def test_returned_payload_is_bytes(self) -> None:
        reader = FrameReader(accept_all)
        reader.feed(bytearray(b"\x82\x01\x00"))
        frame = reader.next_frame()
        assert frame is not None and type(frame[1]) is bytes

    @settings(max_examples=100, deadline=None)
    @given(
        frames=st.lists(
            st.tuples(
                st.booleans(),
                st.integers(0, 7),
                st.integers(0, 15),
                st.one_of(st.none(), st.binary(min_size=4, max_size=4)),
                st.binary(max_size=300),
            ),
            max_size=6,
        ),
        data=st.data(),
    )
    def test_round_trip_at_any_boundaries(
        self,
        frames: list[tuple[bool, int, int, bytes | None, bytes]],
        data: st.DataObject,
    ) -> None:
        stream = b"".join(
            build_frame(opcode, payload, key, fin=fin, rsv=rsv)
            for fin, rsv, opcode, key, payload in frames
        )
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8).map(sorted))
        chunks = [stream[start:end] for start, end in zip([0, *cuts], [*cuts, len(stream)])]
        assert read_frames(chunks) == [
            (fin, rsv, opcode, key is not None, len(payload), payload)
            for fin, rsv, opcode, key, payload in frames
        ]


class TestRFC6455_5_5_1_ClosePayload:
    def test_build_empty(self) -> None:
        assert build_close_payload(None) == b""
        assert build_close_payload(None, "ignored") == b""

    def test_build_code_and_reason(self) -> None:
        assert build_close_payload(1000, "bye") == b"\x03\xe8bye"
        assert build_close_payload(4000, b"raw") == b"\x0f\xa0raw"
        assert build_close_payload(1001) == b"\x03\xe9"

    def test_build_encodes_utf8(self) -> None:
        assert build_close_payload(1000, "é") == b"\x03\xe8\xc3\xa9"

    def test_build_fits_a_control_frame(self) -> None:
        payload = build_close_payload(1000, "x" * 200)
        assert payload == b"\x03\xe8" + b"x" * 123
        assert len(payload) == 125

    def test_build_cuts_the_reason_at_a_character_boundary(self) -> None:
        payload = build_close_payload(1000, "é" * 100)  # 200 bytes of UTF-8
        assert payload == b"\x03\xe8" + "é".encode() * 61
        payload = build_close_payload(1000, "€" * 100)  # 3 bytes each
        assert payload == b"\x03\xe8" + "€".encode() * 41

    def test_parse_empty(self) -> None:
        assert parse_close_payload(b"") == (None, "")

    def test_parse_code_only(self) -> None:
        code, reason = parse_close_payload(b"\x03\xe8")
        assert (code, reason) == (1000, "")
        assert type(code) is int

    def test_parse_code_and_reason(self) -> None:
        assert parse_close_payload(b"\x0b\xb8caf\xc3\xa9") == (3000, "café")

    def test_one_byte_is_a_protocol_error(self) -> None:
        with pytest.raises(ProtocolError) as raised:
            parse_close_payload(b"\x03")
        assert raised.value.code == 1002

    @pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
    def test_invalid_codes_are_protocol_errors(self, code: int) -> None:
        with pytest.raises(ProtocolError) as raised:
            parse_close_payload(code.to_bytes(2, "big") + b"reason")
        assert raised.value.code == 1002

    @pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1012, 1014, 3000, 4999])
    def test_valid_codes(self, code: int) -> None:
        assert parse_close_payload(code.to_bytes(2, "big")) == (code, "")

    @pytest.mark.parametrize("reason", [b"\xff", b"ok\xc3", b"\xed\xa0\x80", b"\xc0\xaf"])
    def test_invalid_utf8_reason_fails_with_1007(self, reason: bytes) -> None:
        with pytest.raises(ProtocolError) as raised:
            parse_close_payload(b"\x03\xe8" + reason)
        assert raised.value.code == 1007

    @given(code=st.sampled_from([1000, 1003, 1008, 3001, 4321]), reason=st.text(max_size=30))
    def test_round_trip(self, code: int, reason: str) -> None:
        # At most 30 characters: 120 bytes of UTF-8, so nothing is cut.
        assert parse_close_payload(build_close_payload(code, reason)) == (code, reason)


class TestTruncateUtf8:
    def test_short_data_is_unchanged(self) -> None:
        assert truncate_utf8(b"abc", 3) == b"abc"
        assert truncate_utf8(b"", 0) == b""

    def test_cuts_before_a_split_character(self) -> None:
        assert truncate_utf8("a€".encode(), 3) == b"a"
        assert truncate_utf8("a€".encode(), 4) == "a€".encode()

    @settings(max_examples=100)
    @given(text=st.text(max_size=80), limit=st.integers(0, 130))
    def test_longest_valid_prefix(self, text: str, limit: int) -> None:
        data = text.encode("utf-8")
        cut = truncate_utf8(data, limit)
        assert len(cut) <= limit
        assert data.startswith(cut)
        decoded = cut.decode("utf-8")  # never splits a character
        # Maximal: the next whole character would not have fitted.
        if cut != data:
            next_character = text[len(decoded)]
            assert len(cut) + len(next_character.encode("utf-8")) > limit
