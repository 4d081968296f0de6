"""What a board should show, decided from the window's state and the hall's calls
(`kioskd/boards.py`), before any driver is involved."""

from __future__ import annotations

from drivers.board import Display, Line
from kioskd.boards import AtWindow, Call, hall_screen, window_screen
from kioskd.config import Window
from kioskd.records import WindowState

WINDOW = Window("5", "5号窗口", ("property",))
DIGITS = Display()                                       # a 4-digit Modbus display
STRIP = Display(calling="请{number}号\n到{window}", paused="暂停服务", idle="{window}",
                lines=2, can_flash=True, flash_s=5)
HALL = Display(shows="hall", lines=3, can_flash=True, flash_s=5)


def called(number: str = "A012", flash_until: float = 0.0) -> AtWindow:
    return AtWindow(WindowState.OPEN, "t-1", number, "不动产登记", flash_until)


def texts(screen) -> list[str]:
    return [line.text for line in screen]


def test_a_called_number_shows_on_the_window_board():
    assert window_screen(DIGITS, WINDOW, called(), now=0) == (Line("A012"),)


def test_a_new_call_flashes_until_its_time_is_up_where_the_board_can():
    at = called(flash_until=105)
    assert window_screen(STRIP, WINDOW, at, now=100) == (Line("请A012号", True),
                                                        Line("到5号窗口", True))
    assert window_screen(STRIP, WINDOW, at, now=106) == (Line("请A012号"), Line("到5号窗口"))
    assert window_screen(DIGITS, WINDOW, at, now=100) == (Line("A012"),)   # cannot flash


def test_paused_idle_and_closed_windows():
    paused = AtWindow(WindowState.PAUSED, "t-1", "A012", "不动产登记")
    assert texts(window_screen(DIGITS, WINDOW, paused, now=0)) == ["----"]
    assert texts(window_screen(STRIP, WINDOW, paused, now=0)) == ["暂停服务", ""]
    idle = AtWindow(WindowState.OPEN)
    assert texts(window_screen(DIGITS, WINDOW, idle, now=0)) == [""]
    assert texts(window_screen(STRIP, WINDOW, idle, now=0)) == ["5号窗口", ""]
    closed = AtWindow(WindowState.CLOSED)
    assert texts(window_screen(STRIP, WINDOW, closed, now=0)) == ["", ""]


def test_the_hall_board_shows_the_latest_calls_newest_first_as_many_as_it_has_lines():
    calls = [Call(f"t-{n}", f"A{n:03d}", f"{n}号窗口", "不动产登记", "2026-11-30", 100 - n)
             for n in range(1, 6)]
    screen = hall_screen(HALL, calls, now=97)
    assert texts(screen) == ["A001 → 1号窗口", "A002 → 2号窗口", "A003 → 3号窗口"]
    assert [line.flash for line in screen] == [True, False, False]
    assert not hall_screen(HALL, calls, now=200)[0].flash
    assert texts(hall_screen(HALL, calls[:1], now=200)) == ["A001 → 1号窗口", "", ""]


def test_text_is_cut_to_the_board_width_counting_a_chinese_character_as_two():
    narrow = Display(calling="请{number}号到{window}", columns=10)
    assert texts(window_screen(narrow, WINDOW, called(), now=0)) == ["请A012号到"]
