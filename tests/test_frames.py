"""Vendor frames: checksums, what each vendor's frame carries there and back, and every mistake in a frame table named."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.frames import (
    MAX_TEXT,
    Frame,
    FrameDecoder,
    FrameSpec,
    Rejected,
    crc16_modbus,
    sum8,
    xor8,
)
from conftest import demo_frame, hall_toml
from kioskd.config import ConfigError, loads_config

# the minimal hall, its window under a text board whose options each test completes
HALL = hall_toml('[devices.board]\ndriver = "framed_text"\nport = "tty-board"\n',
                 window='board = "board"')

# A sum8 vendor with a 1-byte address, a length field, line, effect and trailer.
SUM8_VENDOR = "lines = 2\n" + demo_frame("board", ack=True)

# A CRC-16 vendor: 2-byte address, no length field, the trailer ends the text.
CRC_VENDOR = """\
lines = 3
[devices.board.frame]
layout = ["header", "address", "command", "line", "text", "checksum", "trailer"]
header = "02"
address_bytes = 2
byte_order = "big"
command = "44"
line_base = 0
encoding = "gbk"
checksum = "crc16_modbus"
trailer = "03"
"""

# An xor8 vendor: 4-byte little-endian address, 2-byte command, a 2-byte length
# counting everything from the address to the checksum, no trailer.
XOR_VENDOR = """\
[devices.board.frame]
layout = ["header", "address", "command", "length", "text", "checksum"]
header = "7E"
address_bytes = 4
byte_order = "little"
command = "A1 01"
length_bytes = 2
length_span = ["address", "checksum"]
checksum = "xor8"
checksum_span = ["header", "text"]
"""

VENDORS = {"sum8": SUM8_VENDOR, "crc16": CRC_VENDOR, "xor8": XOR_VENDOR}


def config_problems(device: str, tmp_path) -> list[str]:
    with pytest.raises(ConfigError) as error:
        loads_config(HALL + textwrap.dedent(device), base_dir=tmp_path, env={})
    return error.value.problems


def frame_spec(device: str, tmp_path) -> FrameSpec:
    config = loads_config(HALL + textwrap.dedent(device), base_dir=tmp_path, env={})
    return config.devices["board"].settings.frame


@pytest.fixture(params=sorted(VENDORS))
def vendor(request, tmp_path) -> FrameSpec:
    return frame_spec(VENDORS[request.param], tmp_path)


def decode_all(spec: FrameSpec, data: bytes) -> list[Frame | Rejected]:
    return FrameDecoder(spec).feed(data)


# -- checksums --------------------------------------------------------------------

def test_checksums_match_their_published_check_values():
    assert crc16_modbus(b"123456789") == 0x4B37
    # Modbus RTU "read 10 holding registers of unit 1" goes out as 01 03 00 00 00 0A C5 CD
    assert crc16_modbus(bytes.fromhex("01 03 00 00 00 0A")).to_bytes(2, "little") == b"\xc5\xcd"
    assert sum8(b"123456789") == 0xDD
    assert sum8(b"\xff\x02") == 0x01
    assert xor8(b"123456789") == 0x31
    assert xor8(b"") == sum8(b"") == 0


# -- encode, decode ----------------------------------------------------------------

def test_the_sum8_vendor_frame_is_the_bytes_its_manual_shows(tmp_path):
    spec = frame_spec(SUM8_VENDOR, tmp_path)
    text = "请A012号到5号窗口".encode("gb18030")
    frame = spec.encode(3, text, line=0, effect="flash")
    length = len(text)
    body = bytes([0x03, 0x31, 0x01, 0x01, length]) + text
    assert frame == b"\xaa\x55" + body + bytes([sum(body) & 0xFF]) + b"\r\n"


def test_the_crc_vendor_sends_its_crc_low_byte_first(tmp_path):
    spec = frame_spec(CRC_VENDOR, tmp_path)
    frame = spec.encode(0x0102, "窗口".encode("gbk"), line=2)
    covered = b"\x01\x02" + b"\x44" + b"\x02" + "窗口".encode("gbk")
    assert frame == b"\x02" + covered + crc16_modbus(covered).to_bytes(2, "little") + b"\x03"


def test_the_xor_vendor_counts_address_to_checksum_in_its_length(tmp_path):
    spec = frame_spec(XOR_VENDOR, tmp_path)
    frame = spec.encode(0x01020304, b"A012")
    assert frame[:7] == b"\x7e\x04\x03\x02\x01\xa1\x01"
    assert int.from_bytes(frame[7:9], "little") == 4 + 2 + 2 + 4 + 1
    assert frame[-1] == xor8(frame[:-1])
    assert len(frame) == 1 + 4 + 2 + 2 + 4 + 1


def test_each_vendor_reads_back_what_was_sent(vendor):
    lines = 3 if vendor.has("line") else 1
    for line in range(lines):
        effect = "flash" if vendor.has("effect") else None
        frame = vendor.encode(258 if vendor.address_bytes > 1 else 7, "请A012号到5号窗口",
                              line=line if vendor.has("line") else None, effect=effect)
        [decoded] = decode_all(vendor, frame)
        assert isinstance(decoded, Frame)
        assert vendor.text(decoded) == "请A012号到5号窗口"
        assert decoded.address == (258 if vendor.address_bytes > 1 else 7)
        assert decoded.command == vendor.command
        assert decoded.line == (line if vendor.has("line") else None)
        assert decoded.effect == effect
        assert decoded.raw == frame


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(VENDORS)), data=st.data())
def test_frames_split_anywhere_decode_the_same(tmp_path_factory, name, data):
    spec = frame_spec(VENDORS[name], tmp_path_factory.mktemp("vendor"))
    address = data.draw(st.integers(0, 256 ** spec.address_bytes - 1))
    text = data.draw(st.text(st.sampled_from("请号到窗口不动产登记暂停服务A0123456789 -"),
                             max_size=40))
    line = data.draw(st.integers(0, 2)) if spec.has("line") else None
    effect = data.draw(st.sampled_from(spec.effect_names)) if spec.has("effect") else None
    frames = [spec.encode(address, text, line=line, effect=effect) for _ in range(2)]
    stream = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    decoder = FrameDecoder(spec)
    out = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        out += decoder.feed(stream[start:end])
    assert [item.raw for item in out] == frames
    assert all(isinstance(item, Frame) and spec.text(item) == text and item.line == line
               and item.effect == effect and item.address == address for item in out)
    assert [item.end for item in out] == [len(frames[0]), len(stream)]


def test_what_a_frame_cannot_carry_is_refused_before_it_is_sent(tmp_path):
    sum8_spec = frame_spec(SUM8_VENDOR, tmp_path)
    with pytest.raises(ValueError, match="address 256 does not fit in 1 byte"):
        sum8_spec.encode(256, b"A")
    with pytest.raises(ValueError, match="at most 255"):
        sum8_spec.encode(1, b"A" * 256)
    with pytest.raises(ValueError, match="no 'blink' effect"):
        sum8_spec.encode(1, b"A", effect="blink")
    crc_spec = frame_spec(CRC_VENDOR, tmp_path)
    with pytest.raises(ValueError, match="contains the trailer 03"):
        crc_spec.encode(1, b"A\x03B")
    with pytest.raises(ValueError, match="no effect field"):
        crc_spec.encode(1, b"A", effect="flash")
    assert sum8_spec.max_text == 255
    assert frame_spec(XOR_VENDOR, tmp_path).max_text == 65535 - (4 + 2 + 2 + 1)
    assert crc_spec.max_text == MAX_TEXT


# -- what a board ignores ------------------------------------------------------------

def test_a_bad_checksum_is_rejected_and_the_next_frame_still_reads(vendor):
    good = vendor.encode(1, "暂停服务", line=0 if vendor.has("line") else None)
    bad = bytearray(good)
    text_at = good.index("暂停服务".encode(vendor.encoding))
    bad[text_at + 1] ^= 0x01
    decoder = FrameDecoder(vendor)
    out = decoder.feed(bytes(bad) + good)
    assert [type(item) for item in out] == [Rejected, Frame]
    assert "checksum" in out[0].reason
    assert vendor.text(out[1]) == "暂停服务"
    assert (decoder.rejected, decoder.frames) == (1, 1)


def test_a_wrong_trailer_is_rejected(tmp_path):
    spec = frame_spec(SUM8_VENDOR, tmp_path)
    frame = spec.encode(1, b"A012", line=0)
    [rejected] = decode_all(spec, frame[:-2] + b"\r\r")
    assert rejected.reason == "trailer 0D 0D where 0D 0A belongs"
    assert rejected.raw == frame[:-2] + b"\r\r"


def test_noise_between_frames_is_counted_once_and_skipped(vendor):
    frame = vendor.encode(1, "A012", line=0 if vendor.has("line") else None)
    noise = b"\x00\x11\x22garbage\r\n"
    decoder = FrameDecoder(vendor)
    out = decoder.feed(noise + frame + noise[:4]) + decoder.feed(noise[4:] + frame)
    assert [type(item) for item in out] == [Rejected, Frame, Rejected, Rejected, Frame]
    assert out[0] == Rejected(f"noise without a frame header ({len(noise)} bytes)", noise)
    assert b"".join(item.raw for item in out) == noise + frame + noise + frame


def test_a_frame_cut_short_is_dropped_when_the_line_goes_quiet(vendor):
    frame = vendor.encode(1, "请A012号", line=0 if vendor.has("line") else None)
    decoder = FrameDecoder(vendor)
    assert decoder.feed(frame[:-3]) == []
    [dropped] = decoder.flush()
    assert dropped.reason == f"an incomplete frame ({len(frame) - 3} bytes)"
    [again] = decoder.feed(frame)
    assert isinstance(again, Frame)


def test_a_frame_cut_short_inside_a_stream_costs_only_itself(tmp_path):
    """No length field: the next frame's trailer ends the broken one, whose
    checksum fails; the decoder hunts on from inside it and finds the next header."""
    spec = frame_spec(CRC_VENDOR, tmp_path)
    first = spec.encode(1, "请A012号", line=0)
    second = spec.encode(2, "到5号窗口", line=1)
    out = decode_all(spec, first[:6] + second)
    assert [type(item) for item in out] == [Rejected, Frame]
    assert spec.text(out[1]) == "到5号窗口" and out[1].address == 2


def test_a_checksum_that_looks_like_the_trailer_does_not_end_the_frame(tmp_path):
    spec = frame_spec(CRC_VENDOR, tmp_path)
    # find a text whose CRC holds the trailer byte 03
    for n in range(5000):
        frame = spec.encode(1, f"A{n:04d}", line=0)
        if b"\x03" in frame[-3:-1]:
            break
    else:
        pytest.fail("no CRC with an 03 byte in 5000 texts")
    [decoded] = decode_all(spec, frame)
    assert isinstance(decoded, Frame) and spec.text(decoded) == f"A{n:04d}"


def test_an_unknown_effect_or_a_line_below_the_first_is_rejected(tmp_path):
    spec = frame_spec(SUM8_VENDOR, tmp_path)
    for offset, value, reason in ((5, 0x07, "unknown effect 07"),
                                  (4, 0x00, "line number 0 is below the first line's (1)")):
        frame = bytearray(spec.encode(1, b"A012", line=0))
        frame[offset] = value
        frame[-3] = sum8(frame[2:-3])
        [rejected] = decode_all(spec, bytes(frame))
        assert rejected.reason == reason


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(sorted(VENDORS)), junk=st.binary(max_size=300),
       cut=st.integers(0, 60), data=st.data())
def test_random_and_truncated_bytes_never_crash_or_hang(tmp_path_factory, name, junk, cut, data):
    spec = frame_spec(VENDORS[name], tmp_path_factory.mktemp("vendor"))
    frame = spec.encode(1, "请A012号到5号窗口", line=0 if spec.has("line") else None)
    decoder = FrameDecoder(spec)
    pieces = data.draw(st.permutations([junk, frame[:cut], spec.header + junk[:20]]))
    out = []
    for piece in pieces:
        out += decoder.feed(piece)
    out += decoder.flush()
    assert all(isinstance(item, (Frame, Rejected)) for item in out)
    # after a flush the decoder is clean: a whole frame reads
    [item] = decoder.feed(frame)
    assert isinstance(item, Frame) and spec.text(item) == "请A012号到5号窗口"


# -- the frame table ---------------------------------------------------------------

def test_the_frame_description_reads_into_a_spec(tmp_path):
    spec = frame_spec(SUM8_VENDOR, tmp_path)
    assert spec.layout == ("header", "address", "command", "line", "effect", "length", "text",
                           "checksum", "trailer")
    assert (spec.header, spec.command, spec.trailer, spec.ack) == (b"\xaa\x55", b"\x31",
                                                                  b"\r\n", b"\x06")
    assert spec.effect_names == ("steady", "flash", "scroll")
    assert spec.describe() == ("AA 55 | address:1 | 31 | line:1 | effect:1 | length:1 | "
                               "text(gb18030) | sum8(address..text) | 0D 0A")


def test_the_checksum_covers_everything_between_header_and_checksum_unless_told(tmp_path):
    assert frame_spec(CRC_VENDOR, tmp_path).checksum_span == ("address", "text")


FRAME = "[devices.board.frame]"


@pytest.mark.parametrize("device, problem", [
    ("", "[devices.board] frame: missing table: describe the vendor's frame"),
    (SUM8_VENDOR.replace('header = "AA 55"', 'header = "ZZ"'),
     f"{FRAME} header: 'ZZ' is not hex bytes; write them like \"AA 55\""),
    (SUM8_VENDOR.replace('header = "AA 55"', 'hedaer = "AA 55"'),
     f"{FRAME}: unknown key 'hedaer' (did you mean 'header'?)"),
    (SUM8_VENDOR.replace('"command", "line"', '"line"'),
     f'{FRAME} layout: must include "command"'),
    (SUM8_VENDOR.replace('"checksum", "trailer"]', '"chksum", "trailer"]'),
     f"{FRAME} layout: unknown field 'chksum' (did you mean 'checksum'?)"),
    (SUM8_VENDOR.replace('"length", "text"', '"text", "length"'),
     f"{FRAME} layout: the length field must come before the text"),
    (SUM8_VENDOR.replace('checksum_span = ["address", "text"]',
                         'checksum_span = ["text", "address"]'),
     f"{FRAME} checksum_span: 'text' comes after 'address' in the layout"),
    (SUM8_VENDOR.replace('checksum_span = ["address", "text"]',
                         'checksum_span = ["address", "trailer"]'),
     f"{FRAME} checksum_span: cannot include the checksum itself"),
    (CRC_VENDOR.replace('"text", "checksum"', '"text", "length", "checksum"'),
     f"{FRAME} layout: the length field must come before the text"),
    (CRC_VENDOR + 'checksum_span = ["address", "effect"]\n',
     f"{FRAME} checksum_span: 'effect' is not in the layout"),
    (SUM8_VENDOR.replace('checksum = "sum8"', 'checksum = "none"'),
     f"{FRAME} checksum: missing: the layout has a checksum field"),
    (SUM8_VENDOR.replace('checksum = "sum8"', 'checksum = "crc32"'),
     f"{FRAME} checksum: 'crc32' is not one of none, sum8, xor8, crc16_modbus"),
    (CRC_VENDOR.replace('"checksum", ', ''),
     f"{FRAME} checksum: is 'crc16_modbus' but the layout has no \"checksum\" field"),
    (CRC_VENDOR.replace(', "trailer"]', ']'),
     f'{FRAME} layout: nothing ends the text: put a "length" field before it, or a "trailer" after it'),
    (CRC_VENDOR.replace('trailer = "03"', ''),
     f"{FRAME} trailer: missing: the layout has a trailer field"),
    (XOR_VENDOR + 'trailer = "0D"\n',
     f'{FRAME} trailer: is set but the layout has no "trailer" field'),
    (XOR_VENDOR + "line_base = 0\n",
     f'{FRAME} line_base: is set but the layout has no "line" field'),
    (SUM8_VENDOR.replace("address_bytes = 1", "address_bytes = 3"),
     f"{FRAME} address_bytes: 3 is not one of 1, 2, 4"),
    (SUM8_VENDOR.replace('encoding = "gb18030"', 'encoding = "utf-8"'),
     f"{FRAME} encoding: 'utf-8' is not one of gb18030, gbk"),
    (SUM8_VENDOR.replace('flash = "01"', 'flsh = "01"'),
     f"{FRAME[:-1]}.effects]: unknown key 'flsh' (did you mean 'flash'?)"),
    (SUM8_VENDOR.replace('steady = "00"', ''),
     f"{FRAME[:-1]}.effects] steady: missing: a line that does not flash is shown steady"),
    (SUM8_VENDOR.replace('flash = "01"', 'flash = "0101"'),
     f"{FRAME[:-1]}.effects]: every effect must have the same number of bytes"),
    (CRC_VENDOR + "[devices.board.frame.effects]\nsteady = \"00\"\n",
     f'{FRAME} effects: is set but the layout has no "effect" field'),
    (SUM8_VENDOR.replace("[devices.board.frame.effects]", "[devices.board.frame.efects]"),
     f"{FRAME} effects: missing: the layout has an effect field"),
    (XOR_VENDOR.replace('length_span = ["address", "checksum"]', 'length_span = ["address", "command"]'),
     f"{FRAME} length_span: must include the text"),
    (XOR_VENDOR + 'checksum_byte_order = "big"\n',
     f"{FRAME} checksum_byte_order: only a 2-byte checksum (crc16_modbus) has a byte order"),
    (SUM8_VENDOR.replace('ack = "06"', 'ack = ""'),
     f"{FRAME} ack: must not be empty"),
])
def test_every_mistake_in_a_frame_table_is_named(tmp_path, device, problem):
    problems = config_problems(device, tmp_path)
    assert any(line.startswith(problem) for line in problems), problems


def test_a_broken_layout_is_reported_alone_not_with_its_consequences(tmp_path):
    problems = config_problems(SUM8_VENDOR.replace('"header", ', ''), tmp_path)
    assert problems == [f'{FRAME} layout: must include "header"']


# -- a keypad's key frame: the same description, with a key field ----------------------

KEY_FRAME = FrameSpec(layout=("header", "address", "key", "checksum", "trailer"),
                      header=b"\xaa", checksum="xor8", checksum_span=("address", "key"),
                      trailer=b"\x55")

# A vendor whose keypads send a command (20: a key), a 2-byte key and the digits typed
TYPED_KEY_FRAME = FrameSpec(
    layout=("header", "address", "command", "key", "length", "text", "checksum", "trailer"),
    header=b"\x02", command=b"\x20", key_bytes=2, address_bytes=2, checksum="sum8",
    checksum_span=("address", "text"), trailer=b"\x03")


def test_a_key_frame_has_a_fixed_size_and_reads_back():
    frame = KEY_FRAME.encode(3, key=b"\x01")
    assert frame == bytes([0xAA, 0x03, 0x01, 0x03 ^ 0x01, 0x55])
    assert KEY_FRAME.describe() == "AA | address:1 | key:1 | xor8(address..key) | 55"
    [item] = decode_all(KEY_FRAME, frame)
    assert (item.address, item.key, item.payload, item.command) == (3, b"\x01", b"", b"")
    # noise full of headers, then two frames: each frame reads, the noise is counted
    items = decode_all(KEY_FRAME, b"\xaa\xaa\x07" + frame + b"\xaa\x03" + frame)
    assert [i.key for i in items if isinstance(i, Frame)] == [b"\x01", b"\x01"]
    assert any(isinstance(i, Rejected) for i in items)


def test_a_key_frame_may_carry_a_command_and_text():
    frame = TYPED_KEY_FRAME.encode(258, "12", key=b"\x00\x0b")
    [item] = decode_all(TYPED_KEY_FRAME, frame)
    assert (item.address, item.command, item.key, item.payload) == (258, b"\x20", b"\x00\x0b",
                                                                   b"12")


def test_what_a_key_frame_cannot_carry_is_refused():
    with pytest.raises(ValueError, match="carries a key code"):
        KEY_FRAME.encode(3)
    with pytest.raises(ValueError, match="no text field"):
        KEY_FRAME.encode(3, "A012", key=b"\x01")
    with pytest.raises(ValueError, match="1 bytes, not 2"):
        KEY_FRAME.encode(3, key=b"\x01\x02")
    with pytest.raises(ValueError, match="no key field"):
        frame_spec_without_key = FrameSpec(layout=("header", "address", "command", "text",
                                                   "trailer"), header=b"\xaa", command=b"\x31",
                                           trailer=b"\x55")
        frame_spec_without_key.encode(3, "A012", key=b"\x01")


@settings(max_examples=200, deadline=None)
@given(spec=st.sampled_from([KEY_FRAME, TYPED_KEY_FRAME]), junk=st.binary(max_size=300),
       cut=st.integers(0, 12), data=st.data())
def test_random_and_truncated_key_frames_never_crash_or_hang(spec, junk, cut, data):
    typed = spec.has("text")
    frame = spec.encode(1, "7" if typed else b"", key=b"\x05" * spec.key_bytes)
    decoder = FrameDecoder(spec)
    for piece in data.draw(st.permutations([junk, frame[:cut], spec.header + junk[:20]])):
        assert all(isinstance(item, (Frame, Rejected)) for item in decoder.feed(piece))
    decoder.flush()
    [item] = decoder.feed(frame)
    assert isinstance(item, Frame) and item.key == b"\x05" * spec.key_bytes


def test_a_board_frame_has_no_key_field(tmp_path):
    problems = config_problems(SUM8_VENDOR.replace('"command", "line"', '"command", "key", "line"'),
                               tmp_path)
    assert f"{FRAME} layout: a board's frame has no \"key\" field (that is a keypad's)" \
        in problems, problems


def test_a_text_is_fitted_to_its_frame_whole_characters_only():
    answer = FrameSpec(layout=("header", "address", "command", "length", "text", "checksum",
                               "trailer"), header=b"\xaa", command=b"\x31", checksum="xor8",
                       checksum_span=("address", "text"), trailer=b"\x55")
    assert answer.fit("A012") == (b"A012", set())
    assert answer.fit("A0\n12") == (b"A0 12", set())         # a control character: a space
    small = FrameSpec(layout=answer.layout, header=b"\xaa", command=b"\x31", checksum="xor8",
                      checksum_span=("address", "text"), trailer=b"\x55", encoding="gbk",
                      length_bytes=1)
    long = "请A012号到5号窗口" * 30                      # 450 bytes in GBK: more than 255
    payload, lost = small.fit(long + "𠀀")
    assert len(payload) <= small.max_text == 255
    assert long.encode("gbk").startswith(payload) and payload.decode("gbk")   # never half a character
    assert "𠀀" in lost                              # GBK lacks it, and it is past the end
