"""The ticket as a citizen reads it: encoded by the codec and layout, read back by the emulator's decoder."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import TicketSlip
from drivers.escpos.codec import (ENCODINGS, STATUS_QUERIES, Job, PrinterStatus, decode_status,
                                  display_width, encode_status, qr_picture, raster_bits,
                                  status_query)
from drivers.escpos.emulator import DecodedTicket, Decoder, PrintedImage
from drivers.escpos import layout
from drivers.escpos.layout import ticket_job, wrap
from drivers.escpos.profiles import PROFILES

SLIP = TicketSlip(
    hall="自治区政务服务中心", service="不动产登记", number="A012", priority=False,
    waiting_ahead=3, est_wait_min=15, issued_at="2026-11-28 09:41",
    windows=("1号窗口", "5号窗口"), status_url="http://10.0.0.2:8080/t/01JDXYZ0123",
    materials=("不动产权属证书", "申请人身份证明", "户口簿", "结婚证", "房屋买卖合同", "完税证明"))


def printed(job: bytes, encoding: str = "gb18030") -> DecodedTicket:
    decoder = Decoder(encoding)
    assert decoder.feed(job) == b""
    [ticket] = decoder.take_tickets()
    return ticket


@pytest.mark.parametrize("profile", ["58mm", "80mm"])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_ticket_says_where_to_go(profile, encoding):
    ticket = printed(ticket_job(SLIP, PROFILES[profile], encoding), encoding)

    hall = ticket.lines[0]
    assert (hall.text, hall.align, hall.bold) == ("自治区政务服务中心", "center", True)
    assert ticket.find("不动产登记").align == "center"
    number = ticket.find("A012")
    assert number.text == "A012"
    assert (number.width, number.height, number.bold, number.align) == (4, 4, True, "center")
    assert ticket.find("前面还有 3 人等候") is not None
    assert ticket.find("预计等候约 15 分钟") is not None
    assert ticket.find("请到 1号窗口、5号窗口 办理").bold
    assert ticket.find("2026-11-28 09:41") is not None
    assert ticket.qr_codes == [SLIP.status_url]
    assert "请备齐：不动产权属证书" in ticket.text()
    assert ticket.find("优先") is None
    assert ticket.cut and ticket.unhandled == []
    assert "?" not in ticket.text() and "\ufffd" not in ticket.text()


def test_priority_ticket_is_marked_and_optional_lines_are_left_out():
    slip = replace(SLIP, priority=True, waiting_ahead=0, est_wait_min=None, materials=())
    ticket = printed(ticket_job(slip, PROFILES["80mm"], "gb18030"))

    mark = ticket.find("优先")
    assert mark.bold and mark.width == 2
    assert ticket.find("前面还有 0 人等候") is not None
    assert ticket.find("预计等候") is None
    assert ticket.find("请备齐") is None


def test_qr_as_a_picture_on_printers_without_native_qr():
    profile = PROFILES["58mm-image"]
    ticket = printed(ticket_job(SLIP, profile, "gb18030"))

    assert ticket.qr_codes == []
    [image] = [item for item in ticket.printed if isinstance(item, PrintedImage)]
    assert image.width == profile.dots_per_line
    expected = raster_bits(qr_picture(SLIP.status_url, profile.qr_module_size), profile.dots_per_line)
    assert (image.width, image.height) == expected.size
    white_bits = bytes(byte ^ 0xFF for byte in image.bits)     # mode "1" packs white as 1
    assert white_bits == expected.tobytes()           # the very QR code of the status URL


@pytest.mark.parametrize("profile", PROFILES.values(), ids=PROFILES.keys())
def test_every_line_fits_the_paper(profile):
    slip = replace(SLIP, hall="某某自治区某某市某某区人民政府政务服务中心（市民之家）",
                   windows=tuple(f"{n}号窗口" for n in range(1, 12)))
    ticket = printed(ticket_job(slip, profile, "gb18030"))

    for line in ticket.lines:
        assert display_width(line.text) * line.width <= profile.chars_per_line, line
    assert "".join(line.text for line in ticket.lines if "号窗口" in line.text).count("号窗口") == 11


def test_58mm_wraps_where_80mm_does_not():
    widest = {}
    for name in ("58mm", "80mm"):
        ticket = printed(ticket_job(SLIP, PROFILES[name], "gb18030"))
        materials = ticket.text().split("请备齐：")[1].split("\n-")[0]
        assert "完税证明" in materials
        widest[name] = max(display_width(line) for line in materials.split("\n"))
    assert widest["58mm"] <= 32 < widest["80mm"] <= 48


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("text", ["——————", "：", "ＡＢＣ１２３", "，。、！？", "请到5号窗口"])
def test_punctuation_and_full_width_lines_print_as_chinese(text, encoding):
    ticket = printed(Job(encoding).initialize().line(text).cut().bytes(), encoding)
    assert ticket.lines[0].text == text


def test_ascii_lines_are_sent_without_chinese_mode():
    ticket = printed(Job().initialize().line("A012  tcp://10.0.0.5").cut().bytes())
    assert ticket.lines[0].text == "A012  tcp://10.0.0.5"
    assert b"\x1c&" not in ticket.raw


def test_characters_gbk_cannot_carry_are_replaced_not_raised():
    text = "𠀀字😀好"
    assert printed(Job("gbk").initialize().line(text).cut().bytes(), "gbk").lines[0].text == "？字？好"
    assert printed(Job("gb18030").initialize().line(text).cut().bytes()).lines[0].text == text


def test_control_characters_in_text_do_not_become_commands():
    ticket = printed(Job().initialize().line("第一行\n\x1bd\x05第二行").cut().bytes())
    assert [line.text for line in ticket.lines] == ["第一行  d 第二行"]


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        Job("utf-8")
    with pytest.raises(ValueError):
        Job().size(9, 1)
    with pytest.raises(ValueError):
        Job().qr("")
    with pytest.raises(ValueError):
        Job().beep(times=0)


def test_test_page_shows_setup_and_samples():
    profile = PROFILES["58mm"]
    identity = {"device": "printer_1", "connection": "tcp://10.0.0.5:9100", "usb": "{0416:5011}"}
    ticket = printed(layout.test_page_job(profile, "gbk", identity), "gbk")

    assert ticket.find("58mm") is not None and ticket.find("gbk") is not None
    assert ticket.find("device: printer_1") is not None
    assert ticket.find("connection: tcp://10.0.0.5:9100") is not None
    assert ticket.find("usb: {0416:5011}") is not None
    assert ticket.find("——————————") is not None
    assert ticket.find("ＡＢＣ１２３") is not None
    ruler = ticket.find("....:....1")
    assert len(ruler.text) == profile.chars_per_line
    assert ticket.qr_codes == ["kioskd test page"]
    assert ticket.beeps == 1 and ticket.cut


def test_wrap_never_starts_a_line_with_closing_punctuation():
    lines = wrap("一二三四五六七八九，十", 18)
    assert lines == ["一二三四五六七八", "九，十"]


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="中文窗口号、，。 abcd1234", max_size=80),
       columns=st.integers(min_value=2, max_value=48))
def test_wrap_keeps_every_character_within_the_columns(text, columns):
    lines = wrap(text, columns)
    assert all(display_width(line) <= columns for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")


# --- status -------------------------------------------------------------------

ALL_STATUSES = [PrinterStatus(online, cover, paper) for online, cover, paper
                in itertools.product((True, False), (False, True), ("ok", "near_end", "out"))]


@pytest.mark.parametrize("status", ALL_STATUSES, ids=str)
def test_status_round_trips(status):
    replies = {n: encode_status(n, status) for n in STATUS_QUERIES}
    assert decode_status(replies) == status


def test_status_bits_are_epsons():
    assert status_query(1) == b"\x10\x04\x01"
    assert encode_status(1, PrinterStatus()) == 0x12
    assert encode_status(1, PrinterStatus(online=False)) == 0x1A
    assert encode_status(2, PrinterStatus(cover_open=True)) == 0x16
    assert encode_status(4, PrinterStatus(paper="near_end")) == 0x1E
    assert decode_status({2: 0x32}).paper == "out"          # paper-end stop alone
    assert decode_status({4: 0x72}).paper == "out"          # sensor bits 5-6 alone


def test_only_status_bytes_decode():
    for byte in range(256):
        valid = byte & 0x81 == 0 and byte & 0x12 == 0x12
        for n in STATUS_QUERIES:
            if valid:
                decode_status({n: byte})
            else:
                with pytest.raises(ValueError):
                    decode_status({n: byte})
    with pytest.raises(ValueError):
        decode_status({3: 0x12})
