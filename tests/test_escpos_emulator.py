"""The emulated printer: its decoder against split and broken input, and the printer on TCP and a pty."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from drivers.base import TicketSlip
from drivers.escpos import layout
from drivers.escpos.codec import Job, PrinterStatus, encode_status, status_query
from drivers.escpos.emulator import DecodedTicket, Decoder, EmulatedPrinter, Line
from drivers.escpos.layout import ticket_job
from drivers.escpos.profiles import PROFILES
from drivers.escpos.render import render_ticket

SLIP = TicketSlip(
    hall="测试政务服务中心", service="企业开办", number="B007", priority=True,
    waiting_ahead=2, est_wait_min=12, issued_at="2026-11-30 10:02",
    windows=("2号窗口",), status_url="http://127.0.0.1:8080/t/B007", materials=("营业执照申请书",))
PROFILE = PROFILES["80mm"]
TICKET = ticket_job(SLIP, PROFILE, "gb18030")
STATUS_QUERIES = status_query(1) + status_query(2) + status_query(4)
TIMEOUT = 5.0

# a stream as a driver sends it: status, a native-QR ticket, status, a picture-QR test page, status
STREAM = (STATUS_QUERIES + TICKET + STATUS_QUERIES
          + layout.test_page_job(PROFILES["58mm-image"], "gb18030", {"device": "printer_1"})
          + STATUS_QUERIES)
NEAR_END = PrinterStatus(paper="near_end")


def decode_in_pieces(data: bytes, cuts: list[int]) -> tuple[bytes, list[DecodedTicket]]:
    decoder = Decoder("gb18030", lambda: NEAR_END)
    replies = bytearray()
    for start, end in zip([0, *cuts], [*cuts, len(data)]):
        replies += decoder.feed(data[start:end])
    return bytes(replies), decoder.take_tickets()


WHOLE = decode_in_pieces(STREAM, [])


def test_the_stream_decodes_to_two_tickets_and_three_answers():
    replies, tickets = WHOLE
    assert replies == bytes(encode_status(n, NEAR_END) for n in (1, 2, 4)) * 3
    assert [ticket.lines[0].text for ticket in tickets] == ["测试政务服务中心", "打印机测试页 TEST PAGE"]
    assert tickets[0].raw == TICKET                   # status queries are not part of a job
    assert tickets[1].images and tickets[1].beeps == 1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40).map(sorted))
def test_bytes_split_anywhere_decode_the_same(cuts):
    assert decode_in_pieces(STREAM, cuts) == WHOLE


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=512))
def test_random_bytes_never_crash_or_hang(data, chunk):
    decoder = Decoder("gbk")
    for start in range(0, len(data), chunk):
        decoder.feed(data[start:start + chunk])
    decoder.take_tickets()
    decoder.finish()


@settings(max_examples=200, deadline=2000)
@given(st.integers(min_value=0, max_value=len(TICKET) - 1), st.binary(min_size=1, max_size=8))
def test_a_damaged_job_is_recorded_and_the_next_one_still_prints(position, garbage):
    decoder = Decoder("gb18030")
    decoder.feed(TICKET[:position] + garbage + TICKET[position:])
    decoder.finish()                         # the damaged job, whatever it turned into
    decoder.feed(TICKET)
    assert any(ticket.find("B007") for ticket in decoder.take_tickets())


def test_a_job_cut_short_is_kept_as_incomplete():
    decoder = Decoder("gb18030")
    decoder.feed(TICKET[:len(TICKET) // 2])
    assert decoder.take_tickets() == []
    ticket = decoder.finish()
    assert not ticket.cut and ticket.find("测试政务服务中心")
    assert decoder.finish() is None


def test_commands_the_model_does_not_keep_are_recorded():
    decoder = Decoder()
    decoder.feed(b"\x1b@\x1bt\x00\x1b\x99" + Job().line("还能打印").cut().bytes())
    [ticket] = decoder.take_tickets()
    assert ticket.find("还能打印") is not None
    assert ticket.unhandled == ["ESC t 0", "ESC 0x99"]


# --- the printer on a link ------------------------------------------------------


@pytest.fixture
def printer(tmp_path: Path) -> Iterator[EmulatedPrinter]:
    printer = EmulatedPrinter(jobs_dir=tmp_path / "jobs")
    yield printer
    printer.close()


def connect(printer: EmulatedPrinter) -> socket.socket:
    if printer.tcp_address is None:
        printer.listen_tcp()
    connection = socket.create_connection(printer.tcp_address, timeout=TIMEOUT)
    return connection


def ask_status(connection: socket.socket) -> bytes:
    """The three answers; once they are in, every byte sent before has been read."""
    connection.sendall(STATUS_QUERIES)
    answer = b""
    while len(answer) < 3:
        chunk = connection.recv(3 - len(answer))
        assert chunk, "the printer hung up"
        answer += chunk
    return answer


def test_status_answers_follow_what_is_set(printer):
    with connect(printer) as connection:
        assert ask_status(connection) == bytes((0x12, 0x12, 0x12))
        printer.status = PrinterStatus(online=False, cover_open=True, paper="out")
        assert ask_status(connection) == bytes(
            encode_status(n, printer.status) for n in (1, 2, 4))


def test_a_ticket_over_tcp_is_decoded_and_saved(printer, tmp_path):
    with connect(printer) as connection:
        sent_at = time.monotonic()
        connection.sendall(TICKET)
        [ticket] = printer.wait_for_tickets(1, TIMEOUT)
        assert sent_at <= printer.last_byte_at <= ticket.completed_at <= time.monotonic()

    assert ticket.find("B007").width == 4
    assert ticket.find("优先") is not None
    assert ticket.qr_codes == [SLIP.status_url]
    assert printer.received_bytes == len(TICKET)
    jobs = tmp_path / "jobs"
    assert (jobs / "0001.bin").read_bytes() == TICKET
    saved = json.loads((jobs / "0001.json").read_text(encoding="utf-8"))
    assert saved["lines"][0]["text"] == "测试政务服务中心" and saved["cut"]
    assert printer.last_png == jobs / "0001.png"
    with Image.open(printer.last_png) as png:
        assert png.width == PROFILE.dots_per_line
    assert printer.detail()["jobs"] == 1 and printer.detail()["emulated"]


def test_a_silent_printer_reads_but_never_answers(printer):
    printer.silent = True
    with connect(printer) as connection:
        connection.sendall(STATUS_QUERIES + TICKET)
        printer.wait_for_tickets(1, TIMEOUT)
        connection.settimeout(0.2)
        with pytest.raises(socket.timeout):
            connection.recv(1)


def test_dropped_connections_keep_the_half_job_and_the_driver_reconnects(printer):
    with connect(printer) as connection:
        connection.sendall(TICKET[:200])
        ask_status(connection)
        printer.drop_connections()
        with pytest.raises(ConnectionResetError):
            connection.recv(1)
    assert len(printer.incomplete) == 1 and not printer.incomplete[0].cut

    for _ in range(3):
        with connect(printer) as connection:
            connection.sendall(TICKET)
            ask_status(connection)
    assert len(printer.wait_for_tickets(3, TIMEOUT)) == 3


def test_a_client_closing_mid_job_leaves_an_incomplete_job(printer):
    with connect(printer) as connection:
        connection.sendall(TICKET[:-10])
    printer.wait_until(lambda: len(printer.incomplete) == 1, TIMEOUT, "incomplete job")
    assert printer.incomplete[0].find("B007") is not None
    assert printer.tickets == []


def test_start_listens_where_configured(tmp_path):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    printer = EmulatedPrinter(listen=f"127.0.0.1:{port}")
    printer.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as connection:
            assert ask_status(connection) == bytes((0x12, 0x12, 0x12))
        assert printer.detail()["listen"] == f"127.0.0.1:{port}"
    finally:
        printer.close()
        printer.close()


def test_a_ticket_over_a_pty(printer):
    path = printer.listen_pty()
    with serial.Serial(path, timeout=TIMEOUT) as port:
        printer.status = NEAR_END
        port.write(status_query(4))
        assert port.read(1) == bytes((encode_status(4, NEAR_END),))
        port.write(TICKET)
        [ticket] = printer.wait_for_tickets(1, TIMEOUT)
        assert ticket.find("测试政务服务中心") is not None

        printer.silent = True
        port.write(status_query(1) + TICKET)
        printer.wait_for_tickets(2, TIMEOUT)
        port.timeout = 0.2
        assert port.read(1) == b""


# --- the picture --------------------------------------------------------------


def test_the_number_is_drawn_large_in_the_middle():
    number_only = DecodedTicket(lines=[], cut=True)
    line = Line("A012", "center", True, 4, 4)
    number_only.lines.append(line)
    number_only.printed.append(line)
    picture = render_ticket(number_only, PROFILE)

    assert picture.width == PROFILE.dots_per_line
    band = picture.crop((0, 0, picture.width, 4 * 24 + 16))
    left, top, right, bottom = Image.eval(band, lambda value: 255 - value).getbbox()
    assert right - left > 4 * 4 * 12 * 0.6          # four characters, four times wide
    assert left > 100 and picture.width - right > 100          # centred
    assert bottom - top > 50                        # four times tall


def test_chinese_is_drawn_with_real_glyphs_not_boxes():
    def drawn(text: str) -> bytes:
        ticket = DecodedTicket()
        ticket.printed.append(Line(text))
        return render_ticket(ticket, PROFILE).tobytes()

    assert drawn("中") != drawn("\ue000")           # a private-use character has no glyph
    assert drawn("中") != drawn("文")


@pytest.mark.parametrize("name", ["58mm", "80mm"])
def test_the_demo_ticket_renders_to_paper_width(name, tmp_path):
    from drivers.escpos.render import save_png

    decoder = Decoder()
    decoder.feed(ticket_job(SLIP, PROFILES[name], "gb18030"))
    [ticket] = decoder.take_tickets()
    path = save_png(ticket, PROFILES[name], tmp_path / f"ticket-{name}.png")
    with Image.open(path) as picture:
        assert picture.width == PROFILES[name].dots_per_line
        assert 800 < picture.height < 2000


def test_kioskd_emulate_printer_prints_each_job_and_stops_on_sigterm(tmp_path):
    command = [sys.executable, "-m", "kioskd.cli", "emulate", "printer", "--listen", "127.0.0.1:0",
               "--jobs", str(tmp_path), "--profile", "58mm"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as emulator:
        try:
            banner = emulator.stdout.readline()
            assert "listening on 127.0.0.1:" in banner
            port = int(banner.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as connection:
                connection.sendall(ticket_job(SLIP, PROFILES["58mm"], "gb18030"))
            job = emulator.stdout.readline()
            assert "测试政务服务中心" in job and str(tmp_path / "0001.png") in job
        finally:
            emulator.send_signal(signal.SIGTERM)
        assert emulator.wait(TIMEOUT) == 0
