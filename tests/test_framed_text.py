"""Text boards over a pseudo-terminal: the real driver sends, an emulated board decodes with the same frame."""

from __future__ import annotations

import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import serial

import drivers.framed_text as framed_text
from drivers.base import DeviceBusy, DeviceTimeout, DeviceUnavailable, Health, State
from drivers.board import Line
from drivers.framed_text.driver import TextBoard
from drivers.framed_text.emulator import EmulatedTextBoard
from conftest import demo_frame, hall_toml
from kioskd.config import ConfigError, loads_config


FRAME = demo_frame("board")

CALL = "请A012号到5号窗口"


def board_settings(tmp_path: Path, *, address: int = 1, lines: int = 2, frame: str = FRAME,
                   options: str = "") -> framed_text.Settings:
    """A hall board on `tmp_path/tty-hall`, read from devices.toml text."""
    text = hall_toml() + textwrap.dedent(f"""
        [devices.board]
        driver = "framed_text"
        port = "tty-hall"
        shows = "hall"
        address = {address}
        lines = {lines}
        emulate = true
        """) + textwrap.dedent(options) + "\n" + frame
    return loads_config(text, base_dir=tmp_path, env={}).devices["board"].settings


def with_ack(frame: str = FRAME) -> str:
    return frame.replace('trailer = "0D 0A"', 'trailer = "0D 0A"\nack = "06"')


class Hall:
    """Emulated boards and the drivers that talk to them; all closed after the test."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.opened: list = []

    def board(self, settings: framed_text.Settings) -> EmulatedTextBoard:
        board = framed_text.emulate("board", settings, data_dir=self.tmp_path)
        board.start()
        self.opened.append(board)
        return board

    def driver(self, settings: framed_text.Settings, *, timeout: float = 1.0,
               connect: bool = True) -> TextBoard:
        driver = framed_text.create("board", settings, timeout=timeout, data_dir=self.tmp_path)
        self.opened.append(driver)
        if connect:
            driver.open()
        return driver

    def close(self) -> None:
        for thing in reversed(self.opened):
            thing.close()


@pytest.fixture
def hall(tmp_path):
    hall = Hall(tmp_path)
    yield hall
    hall.close()


# -- what the hall reads ---------------------------------------------------------------

def test_a_two_line_board_shows_the_call_on_its_first_line(hall, tmp_path):
    settings = board_settings(tmp_path)
    board = hall.board(settings)
    driver = hall.driver(settings)

    result = driver.show((Line(CALL), Line("不动产登记")))

    board.wait_for_line(1, "不动产登记")
    assert board.lines == [CALL, "不动产登记"]
    assert board.flashing == [False, False]
    assert result == {"shows": [CALL, "不动产登记"], "flashing": []}
    assert driver.poll() == Health(State.READY, {"shows": [CALL, "不动产登记"]})
    assert board.rejected == [] and board.ignored == 0
    detail = board.detail()
    assert detail["emulated"] is True and detail["address"] == 1
    assert detail["shows"] == [CALL, "不动产登记"]
    assert detail["pty"].startswith("/dev/pts/")
    assert Path(detail["link"]).resolve() == Path(detail["pty"])


def test_a_new_call_flashes_and_then_stands_still(hall, tmp_path):
    settings = board_settings(tmp_path)
    assert settings.display.can_flash
    board = hall.board(settings)
    driver = hall.driver(settings)

    assert driver.show((Line(CALL, flash=True), Line("")))["flashing"] == [1]
    board.wait_until(lambda: board.frames == 2, 2, "the flashing screen")
    assert board.lines == [CALL, ""] and board.flashing == [True, False]

    driver.show((Line(CALL), Line("")))
    board.wait_until(lambda: board.frames == 4, 2, "the steady screen")
    assert board.flashing == [False, False]


def test_a_board_that_cannot_flash_shows_the_call_steady(hall, tmp_path):
    frame = FRAME.replace('flash = "01"\n', "")
    settings = board_settings(tmp_path, frame=frame)
    assert not settings.display.can_flash
    board = hall.board(settings)
    driver = hall.driver(settings)

    assert driver.show((Line(CALL, flash=True), Line("")))["flashing"] == []
    board.wait_for_line(0, CALL)
    assert board.flashing == [False, False]
    assert board.rejected == []


def test_boards_sharing_a_port_each_show_their_own_window(hall, tmp_path):
    one, two = board_settings(tmp_path, address=1, lines=1), board_settings(tmp_path, address=2, lines=1)
    board_1, board_2 = hall.board(one), hall.board(two)
    driver_1, driver_2 = hall.driver(one), hall.driver(two)
    assert driver_1.bus is driver_2.bus                 # one port, one bus
    assert board_1.port is board_2.port                 # one emulated cable, two boards on it
    assert board_1.port.board(2) is board_2.board and board_1.port.board(9) is None

    driver_1.show((Line("请A012号到1号窗口"),))
    driver_2.show((Line("请B003号到2号窗口"),))

    board_2.wait_for_line(0, "请B003号到2号窗口")
    assert board_1.lines == ["请A012号到1号窗口"]
    nobody = hall.driver(board_settings(tmp_path, address=9, lines=1))
    nobody.show((Line("请C001号到9号窗口"),))
    board_1.wait_until(lambda: board_1.ignored == 1, 2, "the frame to address 9")
    assert board_1.lines == ["请A012号到1号窗口"] and board_2.lines == ["请B003号到2号窗口"]
    assert board_1.rejected == []


def test_a_board_with_another_checksum_rejects_the_frame_and_shows_nothing(hall, tmp_path):
    board = hall.board(board_settings(tmp_path, lines=1,
                                      frame=FRAME.replace('checksum = "sum8"', 'checksum = "xor8"')))
    driver = hall.driver(board_settings(tmp_path, lines=1))

    driver.show((Line(CALL),))                  # no ack: the driver cannot tell

    board.wait_until(lambda: board.rejected, 2, "a rejected frame")
    [rejected] = board.rejected
    assert rejected.reason.startswith("bad xor8 checksum")
    assert board.lines == [""] and board.frames == 0


def test_a_frame_with_a_wrong_header_is_noise_to_the_board(hall, tmp_path):
    board = hall.board(board_settings(tmp_path, lines=1))
    driver = hall.driver(board_settings(tmp_path, lines=1,
                                        frame=FRAME.replace('header = "AA 55"', 'header = "AA 56"')))

    driver.show((Line(CALL),))

    board.wait_until(lambda: board.rejected, 2, "a rejected frame")
    assert [r.reason.split(" (")[0] for r in board.rejected] == ["noise without a frame header"]
    assert board.lines == [""]


def test_characters_gbk_lacks_are_shown_as_question_marks(hall, tmp_path):
    settings = board_settings(tmp_path, lines=1,
                              frame=FRAME.replace('encoding = "gb18030"', 'encoding = "gbk"'))
    board = hall.board(settings)
    driver = hall.driver(settings)

    result = driver.show((Line("请吉𠮷号到窗口\r\n"),))

    assert result["replaced"] == "𠮷"
    board.wait_for_line(0, "请吉?号到窗口  ")
    assert result["shows"] == ["请吉?号到窗口  "]


def test_the_board_history_says_when_each_frame_was_on_the_wire(hall, tmp_path):
    settings = board_settings(tmp_path, lines=1)
    board = hall.board(settings)
    driver = hall.driver(settings)
    frame = settings.frame.encode(1, CALL.encode("gb18030"), line=0, effect="steady")

    sent = time.monotonic()
    driver.show((Line(CALL),))

    board.wait_until(lambda: board.frames == 1, 2)
    [(lines, wire_end)] = board.history
    assert lines == (CALL,)
    # 9600 baud, 8N1: the frame's last byte leaves ~1 ms per byte after the write
    assert sent + settings.line.wire_s(len(frame)) <= wire_end < sent + 0.5


# -- acknowledged frames ---------------------------------------------------------------

def test_a_silent_board_times_out_after_its_retries_and_its_neighbour_still_works(hall, tmp_path):
    options = "reply_timeout = 0.15\nretries = 2\n"
    one = board_settings(tmp_path, address=1, lines=1, frame=with_ack(), options=options)
    two = board_settings(tmp_path, address=2, lines=1, frame=with_ack(), options=options)
    board_1, board_2 = hall.board(one), hall.board(two)
    driver_1, driver_2 = hall.driver(one), hall.driver(two)
    board_1.silent = True

    failure: list[Exception] = []

    def show_on_the_silent_board():
        try:
            driver_1.show((Line("请A012号到1号窗口"),))
        except Exception as exc:
            failure.append(exc)

    thread = threading.Thread(target=show_on_the_silent_board)
    thread.start()
    board_1.wait_until(lambda: board_1.frames >= 1, 2, "the first try")
    started = time.monotonic()
    driver_2.show((Line("请B003号到2号窗口"),))       # returns once board 2 acknowledged
    neighbour_s = time.monotonic() - started
    assert board_2.lines == ["请B003号到2号窗口"]
    thread.join(5)

    [error] = failure
    assert isinstance(error, DeviceTimeout)
    assert str(error).startswith(f"board at address 1 on {one.line.port} did not acknowledge "
                                 f"line 1 (3 tries, 0.15 s each")
    assert board_1.frames == 3                         # it heard every try, answered none
    assert neighbour_s < 0.4                           # waited for one try at most, not all three
    assert driver_1.bus.is_open                        # one silent board keeps the port open

    board_1.silent = False
    driver_1.show((Line("请A012号到1号窗口"),))
    assert board_1.lines == ["请A012号到1号窗口"]


def test_a_wrong_answer_is_tried_again_like_no_answer(hall, tmp_path):
    settings = board_settings(tmp_path, lines=1, frame=with_ack(),
                              options="reply_timeout = 0.1\nretries = 1\n")
    board = hall.board(board_settings(tmp_path, lines=1,
                                      frame=with_ack().replace('ack = "06"', 'ack = "15"')))
    driver = hall.driver(settings)

    with pytest.raises(DeviceTimeout, match=r"\(2 tries, .*answered 15 instead of 06"):
        driver.show((Line(CALL),))
    assert board.frames == 2


# -- the cable ---------------------------------------------------------------------

def test_a_pulled_cable_is_seen_by_the_next_poll_and_a_new_open_works_once_plugged(hall, tmp_path):
    settings = board_settings(tmp_path, lines=1)
    board = hall.board(settings)
    driver = hall.driver(settings)
    driver.show((Line(CALL),))
    board.wait_for_line(0, CALL)

    board.pull()
    with pytest.raises(DeviceUnavailable, match="cable or adapter unplugged"):
        driver.poll()
    with pytest.raises(DeviceUnavailable,
                       match=f"no serial device {settings.line.port} \\(adapter unplugged\\?\\)"):
        driver.show((Line("请A013号到5号窗口"),))
    driver.close()

    board.plug()
    driver.open()
    driver.show((Line("请A013号到5号窗口"),))
    board.wait_for_line(0, "请A013号到5号窗口")
    assert driver.poll().state is State.READY


def test_a_show_on_a_pulled_cable_fails_at_once(hall, tmp_path):
    settings = board_settings(tmp_path, lines=1, frame=with_ack(), options="reply_timeout = 0.5")
    board = hall.board(settings)
    driver = hall.driver(settings)
    board.pull()
    started = time.monotonic()
    with pytest.raises(DeviceUnavailable) as error:
        driver.show((Line(CALL),))
    assert not isinstance(error.value, DeviceTimeout)   # not retried: the cable is gone
    assert time.monotonic() - started < 0.4
    assert not driver.bus.is_open


def test_opening_a_board_that_is_not_there_or_taken_says_so(hall, tmp_path):
    settings = board_settings(tmp_path, lines=1)
    absent = hall.driver(settings, connect=False)
    with pytest.raises(DeviceUnavailable, match=r"no serial device .*tty-hall \(adapter unplugged\?\)"):
        absent.open()
    absent.close()

    hall.board(settings)
    holder = serial.serial_for_url(settings.line.port, exclusive=True)
    try:
        with pytest.raises(DeviceBusy, match="already open in another program"):
            hall.driver(settings, connect=False).open()
    finally:
        holder.close()


# -- the technician --------------------------------------------------------------------

def test_self_test_shows_the_pattern_then_the_last_screen_again(hall, tmp_path):
    settings = board_settings(tmp_path)
    board = hall.board(settings)
    driver = hall.driver(settings)
    driver.test_pattern_s = 0.05
    driver.show((Line(CALL), Line("不动产登记")))

    result = driver.self_test()

    assert result == {"test_pattern": ["测试 TEST 1", "测试 TEST 2"], "then": [CALL, "不动产登记"]}
    board.wait_until(lambda: board.frames == 6, 2, "the pattern and the screen again")
    screens = [lines for lines, _ in board.history]
    assert ("测试 TEST 1", "测试 TEST 2") in screens
    assert screens[-1] == (CALL, "不动产登记")


def test_identify_close_and_close_again(hall, tmp_path):
    settings = board_settings(tmp_path, frame=with_ack())
    hall.board(settings)
    driver = hall.driver(settings)
    assert driver.identify() == {
        "port": settings.line.port, "baudrate": 9600, "address": 1, "lines": 2,
        "frame": "AA 55 | address:1 | 31 | line:1 | effect:1 | length:1 | text(gb18030) | "
                 "sum8(address..text) | 0D 0A",
        "encoding": "gb18030", "ack": "06"}
    driver.close()
    driver.close()
    with pytest.raises(DeviceUnavailable, match="not connected"):
        driver.poll()


# -- devices.toml ------------------------------------------------------------------------

def test_a_board_that_is_not_emulated_has_no_emulator(tmp_path):
    real = replace(board_settings(tmp_path), emulate=False)
    assert framed_text.emulate("board", real, data_dir=tmp_path) is None


@pytest.mark.parametrize("options, frame, problem", [
    ('port = "/dev/ttyUSB1"\n', FRAME,
     "[devices.board] emulate: an emulated board's port is a file path kioskd links to its "
     "pseudo-terminal"),
    ("", FRAME.replace('"line", ', "").replace("line_base = 1\n", ""),
     '[devices.board] lines: is 2 but the frame has no "line" field'),
    ("address = 300\n", FRAME, "[devices.board] address: 300 is out of range; expected 0 to 255"),
    ("retries = -1\n", FRAME, "[devices.board] retries: -1 is out of range"),
])
def test_board_options_that_cannot_work_are_named(tmp_path, options, frame, problem):
    text = hall_toml() + textwrap.dedent("""
        [devices.board]
        driver = "framed_text"
        shows = "hall"
        lines = 2
        emulate = true
        """) + options + ('port = "tty-hall"\n' if "port" not in options else "")
    if "address" not in options:
        text += "address = 1\n"
    with pytest.raises(ConfigError) as error:
        loads_config(text + frame, base_dir=tmp_path, env={})
    assert any(line.startswith(problem) for line in error.value.problems), error.value.problems
