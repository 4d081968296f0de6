"""Modbus digit displays: the real driver over a pty to the emulated RS-485 bus, faults and all."""

from __future__ import annotations

import textwrap
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
import serial

import drivers
from drivers.base import DeviceBusy, DeviceFault, DeviceTimeout, DeviceUnavailable, State
from drivers.board import Display, Line
from drivers.modbus_digits import Settings
from drivers.modbus_digits.driver import DigitDisplay
from drivers.modbus_digits.emulator import BusEmulator, bus_for
from drivers.serialbus import SerialLine
from conftest import hall_toml
from kioskd.config import ConfigError, loads_config

REPLY_TIMEOUT = 0.15


@pytest.fixture
def bus(tmp_path):
    """An RS-485 bus at 9600 baud with units 1, 2 and 3 (4 digits from register 0)."""
    emulator = BusEmulator(SerialLine(str(tmp_path / "tty-bus1"), 9600), link=tmp_path / "tty-bus1")
    emulator.start()
    for unit in (1, 2, 3):
        emulator.add_unit(unit)
    yield emulator
    emulator.close()


@pytest.fixture
def boards():
    """Opens displays for a test and closes them after it."""
    with ExitStack() as stack:
        def open_display(bus: BusEmulator, unit: int, *, timeout: float = 3.0, **options) -> DigitDisplay:
            options.setdefault("reply_timeout", REPLY_TIMEOUT)
            display = DigitDisplay(f"board_{unit}", Settings(bus.line, Display(), unit, **options),
                                   timeout)
            stack.callback(display.close)
            display.open()
            return display
        yield open_display


def number(text: str, flash: bool = False) -> tuple[Line]:
    return (Line(text, flash),)


# -- showing ------------------------------------------------------------------------

def test_a_number_on_the_board_over_window_5(tmp_path):
    config = loads_config(board_5_hall("""
        [devices.board_5]
        driver = "modbus_digits"
        port = "var/tty-bus1"
        baudrate = 9600
        unit = 5
        register = 0
        width = 4
        emulate = true
    """), base_dir=tmp_path)
    device = config.devices["board_5"]
    family = drivers.family("modbus_digits")
    emulated = family.emulate("board_5", device.settings, data_dir=tmp_path)
    emulated.start()
    board = family.create("board_5", device.settings, timeout=device.timeout, data_dir=tmp_path)
    try:
        board.open()
        assert board.identify() == {"port": str(tmp_path / "var/tty-bus1"), "unit": 5,
                                    "register": 0, "width": 4, "write": "fc16"}
        before = time.monotonic()
        assert board.show(number("A012")) == {"shows": "A012"}
        after = time.monotonic()
        assert emulated.unit.text == "A012"
        assert emulated.detail() == {"emulated": True, "pty": emulated.bus.port.path, "unit": 5,
                                     "shows": "A012"}
        written = emulated.unit.history[-1]
        assert written.text == "A012" and before < written.wire_end <= after
        assert bus_for(device.settings.line.port) is emulated.bus
        health = board.poll()
        assert health.state is State.READY and health.detail == {"shows": "A012", "restored": 0}
    finally:
        board.close()
        emulated.close()
    assert bus_for(device.settings.line.port) is None
    assert not (tmp_path / "var/tty-bus1").exists()


def test_numbers_are_aligned_padded_and_cut_to_the_width(bus, boards):
    right = boards(bus, 1)
    left = boards(bus, 2, align="left")
    center = boards(bus, 3, align="center", width=4)
    right.show(number("12"))
    left.show(number("12"))
    center.show(number("12"))
    assert [bus.unit(n).text for n in (1, 2, 3)] == ["  12", "12  ", " 12 "]
    assert right.show(number("A01234")) == {"shows": "A012"}
    assert bus.unit(1).registers == {0: ord("A"), 1: ord("0"), 2: ord("1"), 3: ord("2")}
    assert right.show(()) == {"shows": "    "}
    assert bus.unit(1).text == "    "


def test_a_model_that_takes_single_register_writes_gets_one_fc06_per_digit(bus, boards):
    board = boards(bus, 2, write="fc06")
    first = len(bus.requests)
    board.show(number("B7"))
    assert [request.function for request in bus.requests[first:]] == [6, 6, 6, 6]
    assert bus.unit(2).text == "  B7"
    assert [shown.text for shown in bus.unit(2).history] == ["    ", "    ", "  B ", "  B7"]


def test_a_board_that_can_flash_flashes_a_new_call(bus, boards):
    bus.add_unit(4, register=100, width=4, flash_register=110)
    board = boards(bus, 4, register=100, flash_register=110)
    assert board.show(number("C003", flash=True)) == {"shows": "C003", "flashing": True}
    assert bus.unit(4).text == "C003" and bus.unit(4).flashing
    assert board.show(number("C003")) == {"shows": "C003", "flashing": False}
    assert not bus.unit(4).flashing
    assert [(shown.text, shown.flashing) for shown in bus.unit(4).history] == [
        ("C003", False), ("C003", True), ("C003", True), ("C003", False)]


def test_the_self_test_shows_eights_then_the_last_number_again(bus, boards):
    board = boards(bus, 1)
    board.show(number("A5"))
    result: dict = {}
    testing = threading.Thread(target=lambda: result.update(board.self_test()))
    testing.start()
    bus.wait_until(lambda: bus.unit(1).text == "8888", timeout=2, what="test pattern")
    bus.wait_until(lambda: bus.unit(1).text == "  A5", timeout=3, what="number back")
    testing.join(timeout=2)
    assert result == {"pattern": "8888", "shows": "  A5"}
    pattern, back = bus.unit(1).history[-2:]
    assert back.wire_end - pattern.wire_end >= 1.0


# -- a shared bus with a dead unit on it -------------------------------------------------

def test_a_dead_unit_costs_its_timeout_once_per_attempt(bus, boards):
    board = boards(bus, 1, retries=2)
    bus.unit(1).silent = True
    started = time.monotonic()
    with pytest.raises(DeviceTimeout, match=r"unit 1 on .*tty-bus1 does not answer "
                                            r"\(write registers 0-3; 3 attempts, 0.15 s each\)"):
        board.show(number("A1"))
    assert time.monotonic() - started >= 3 * REPLY_TIMEOUT
    assert bus.unit(1).heard == 1 + 3                # the probe at open, then 3 tries
    board.close()
    with pytest.raises(DeviceTimeout, match=r"does not answer \(read registers 0-3; 1 attempt, "):
        board.open()                 # a reconnect's probe is one try
    assert bus.unit(1).heard == 1 + 3 + 1


def test_neighbours_of_a_dead_unit_wait_for_at_most_one_of_its_attempts(bus, boards):
    attempts = 4
    dead = boards(bus, 1, retries=attempts - 1)
    neighbours = [boards(bus, 2), boards(bus, 3)]
    bus.unit(1).silent = True
    done = threading.Event()
    failures: list[Exception] = []
    waits: list[tuple[float, float]] = []          # (asked, shown) per neighbour write

    def dead_board() -> None:
        try:
            for _ in range(2):
                with pytest.raises(DeviceTimeout):
                    dead.show(number("X"))
        except Exception as exc:
            failures.append(exc)
        finally:
            done.set()

    def neighbour(board: DigitDisplay, prefix: str) -> None:
        count = 0
        while not done.is_set():
            count += 1
            asked = time.monotonic()
            try:
                board.show(number(f"{prefix}{count:03d}"))
            except Exception as exc:
                failures.append(exc)
                return
            waits.append((asked, time.monotonic()))

    threads = [threading.Thread(target=dead_board)] + [
        threading.Thread(target=neighbour, args=(board, prefix))
        for board, prefix in zip(neighbours, "BC")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not failures
    dead_frames = [r.wire_end for r in bus.requests if r.unit == 1 and not r.answered]
    assert len(dead_frames) == 2 * attempts
    assert len(waits) >= 2 * attempts        # the neighbours kept writing the whole time
    for asked, shown in waits:
        # the dead unit's requests that went out while this write was pending: at most
        # the one already on the bus, never a second (its retries queue behind)
        assert sum(asked < end < shown for end in dead_frames) <= 1
        assert shown - asked < attempts * REPLY_TIMEOUT      # far less than the dead unit's budget
    assert bus.unit(2).text.startswith("B") and bus.unit(3).text.startswith("C")


# -- noise ----------------------------------------------------------------------------

def test_replies_with_a_bad_crc_are_tried_again(bus, boards):
    board = boards(bus, 2, retries=2)
    bus.unit(2).corrupt_next = 2
    assert board.show(number("A9")) == {"shows": "  A9"}
    assert bus.unit(2).corrupted == 2 and bus.unit(2).heard == 4     # the probe, then 3 tries


def test_a_unit_whose_every_reply_is_garbled_times_out(bus, boards):
    board = boards(bus, 2, retries=1)
    bus.unit(2).corrupting = True
    with pytest.raises(DeviceTimeout, match=r"unit 2 on .* answers garbled to write registers "
                                            r"0-3 \(2 of 2 attempts: noise"):
        board.show(number("A9"))
    assert bus.unit(2).corrupted == 2
    bus.unit(2).corrupting = False
    assert board.show(number("A10"))["shows"] == " A10"


# -- cables and power -------------------------------------------------------------------

def test_a_pulled_cable_takes_the_board_offline_until_it_is_back(bus, boards):
    board = boards(bus, 1)
    neighbour = boards(bus, 2)
    board.show(number("A1"))
    bus.pull()
    with pytest.raises(DeviceUnavailable, match=r"no serial device .*tty-bus1 .*unplugged"):
        board.show(number("A2"))
    with pytest.raises(DeviceUnavailable, match="no serial device "):
        board.open()
    with pytest.raises(DeviceUnavailable, match="no serial device "):
        neighbour.poll()
    bus.power_cycle(1)               # the board lost power with the cable
    bus.plug()
    board.open()
    health = board.poll()
    assert health.detail == {"shows": "  A2", "restored": 1}
    assert bus.unit(1).text == "  A2"
    assert neighbour.show(number("B2")) == {"shows": "  B2"}


def test_a_board_that_lost_power_gets_its_number_back_at_the_next_poll(bus, boards):
    board = boards(bus, 3)
    board.show(number("A12"))
    assert board.poll().detail["restored"] == 0
    bus.power_cycle(3)
    assert bus.unit(3).text == "    "
    assert board.poll().detail == {"shows": " A12", "restored": 1}
    assert bus.unit(3).text == " A12"
    assert board.poll().detail["restored"] == 1


def test_a_unit_that_refuses_the_registers_is_a_fault(bus, boards):
    with pytest.raises(DeviceFault, match=r"unit 1 on .* refuses to read registers 8-11: "
                                          r"illegal data address; check register"):
        boards(bus, 1, register=8)
    bus.add_unit(6, functions=(3, 6))
    board = boards(bus, 6)
    with pytest.raises(DeviceFault, match=r"illegal function; .* set write = \"fc06\""):
        board.show(number("A1"))


def test_close_is_safe_twice_and_a_closed_board_says_so(bus, boards):
    board = boards(bus, 1)
    board.close()
    board.close()
    with pytest.raises(DeviceUnavailable, match="not connected"):
        board.poll()
    DigitDisplay("never", Settings(bus.line, Display(), 1), 3.0).close()


def test_a_port_that_cannot_be_opened(tmp_path, bus):
    def opened(port: str) -> None:
        DigitDisplay("board_1", Settings(SerialLine(port), Display(), 1), 3.0).open()

    with pytest.raises(DeviceUnavailable, match=r"no serial device .*no-such-tty "
                                                r"\(adapter unplugged\?\)"):
        opened(str(tmp_path / "no-such-tty"))
    (tmp_path / "notes.txt").write_text("not a tty")
    with pytest.raises(DeviceUnavailable, match=r"notes.txt is not a serial port"):
        opened(str(tmp_path / "notes.txt"))
    with serial.serial_for_url(bus.address, exclusive=True):       # another program has it
        with pytest.raises(DeviceBusy, match=r"tty-bus1 is already open in another program"):
            opened(bus.address)


# -- configuration ----------------------------------------------------------------------

def board_5_hall(devices: str) -> str:
    """The minimal hall, its window under board_5, with `devices` appended."""
    return hall_toml(devices, window='board = "board_5"')


def problems(tmp_path: Path, options: str) -> list[str]:
    text = board_5_hall('[devices.board_5]\ndriver = "modbus_digits"\n' + textwrap.dedent(options))
    with pytest.raises(ConfigError) as caught:
        loads_config(text, base_dir=tmp_path)
    return caught.value.problems


def test_the_settings_of_a_digit_display(tmp_path):
    config = loads_config(board_5_hall("""
        [devices.board_5]
        driver = "modbus_digits"
        port = "/dev/ttyUSB1"
        unit = 5
        register = 40
        width = 6
        align = "left"
        write = "fc06"
        flash_register = 60
        reply_timeout = 0.2
        retries = 1
        paused = "----"
        idle = "HELLO"
    """), base_dir=tmp_path)
    settings = config.devices["board_5"].settings
    assert settings.line == SerialLine("/dev/ttyUSB1", 9600)
    assert (settings.unit, settings.register, settings.width, settings.align, settings.write,
            settings.flash_register, settings.reply_timeout, settings.retries, settings.emulate) \
        == (5, 40, 6, "left", "fc06", 60, 0.2, 1, False)
    assert settings.display.can_flash and settings.display.columns == 6
    assert settings.display.idle == "HELLO" and settings.display.shows == "window"
    defaults = loads_config(board_5_hall('[devices.board_5]\ndriver = "modbus_digits"\n'
                                      'port = "rfc2217://10.0.0.9:4001"\n'), base_dir=tmp_path)
    settings = defaults.devices["board_5"].settings
    assert (settings.line.port, settings.unit, settings.register, settings.width, settings.align,
            settings.write, settings.flash_register, settings.reply_timeout, settings.retries) \
        == ("rfc2217://10.0.0.9:4001", 1, 0, 4, "right", "fc16", None, 0.3, 2)
    assert not settings.display.can_flash


def test_templates_hold_ascii_and_the_number_only(tmp_path):
    assert problems(tmp_path, """
        port = "/dev/ttyUSB1"
        calling = "请{number}"
        paused = "{window}"
        idle = "{nope}"
        hall_line = "{number}"
    """) == [
        "[devices.board_5] idle: unknown field {nope}; a board template takes {number}, "
        "{window}, {service}",
        "[devices.board_5] calling: '请{number}' has '请'; a digit display shows ASCII letters, "
        "digits and signs only",
        "[devices.board_5] paused: a digit display shows only {number}, not {window}",
        "[devices.board_5] hall_line: a digit display shows only its window's number",
    ]


def test_digit_display_options_out_of_range(tmp_path):
    assert problems(tmp_path, """
        port = "/dev/ttyUSB1"
        unit = 0
        width = 33
        register = 65534
        align = "middle"
        write = "fc15"
        flash_register = 65535
        retries = -1
        reply_timeout = 0
        shows = "hall"
        colour = "red"
    """) == [
        "[devices.board_5] unit: 0 is out of range; expected 1 to 247",
        "[devices.board_5] width: 33 is out of range; expected 1 to 32",
        "[devices.board_5] register: 65534 + width 4 runs past register 65535",
        "[devices.board_5] align: 'middle' is not one of right, left, center",
        "[devices.board_5] write: 'fc15' is not one of fc16 (write multiple registers) or fc06 "
        "(one register at a time)",
        "[devices.board_5] reply_timeout: 0 is out of range; expected a number greater than 0",
        "[devices.board_5] retries: -1 is out of range; expected 0 to 10",
        "[devices.board_5] shows: this kind of board can only show its window's number",
        "[devices.board_5]: unknown key 'colour'",
    ]
    assert problems(tmp_path, 'port = "/dev/ttyUSB1"\nflash_register = 2\n') == [
        "[devices.board_5] flash_register: 2 is one of the text's registers (0 to 3)"]
    assert problems(tmp_path, "unit = 3\n") == ["[devices.board_5]: missing key 'port'"]


@pytest.mark.parametrize("port", ["/dev/ttyUSB1", "socket://127.0.0.1:4001", "/dev/../dev/ttyS0"])
def test_an_emulated_board_needs_a_port_path_to_link(tmp_path, port):
    assert problems(tmp_path, f'port = "{port}"\nemulate = true\n') == [
        "[devices.board_5] emulate: an emulated board's port is a file path kioskd links to its "
        'pseudo-terminal, not a device or URL, e.g. port = "var/tty-bus1"']


def test_two_emulated_boards_on_one_port_share_one_bus(tmp_path):
    config = loads_config(board_5_hall("""
        [devices.board_5]
        driver = "modbus_digits"
        port = "var/tty-bus1"
        unit = 5
        emulate = true

        [devices.board_6]
        driver = "modbus_digits"
        port = "var/tty-bus1"
        unit = 6
        width = 3
        emulate = true
    """).replace('[[windows]]', '[[windows]]\nid = "6"\nname = "6号窗口"\nservices = ["property"]\n'
                                'board = "board_6"\n\n[[windows]]', 1), base_dir=tmp_path)
    family = drivers.family("modbus_digits")
    with ExitStack() as stack:
        shown = {}
        for device_id in ("board_5", "board_6"):
            settings = config.devices[device_id].settings
            emulated = family.emulate(device_id, settings, data_dir=tmp_path)
            emulated.start()
            stack.callback(emulated.close)
            board = family.create(device_id, settings, timeout=3.0, data_dir=tmp_path)
            stack.callback(board.close)
            board.open()
            board.show(number(device_id[-1] * 2))
            shown[device_id] = emulated
        bus = bus_for(str(tmp_path / "var/tty-bus1"))
        assert shown["board_5"].bus is shown["board_6"].bus is bus
        assert {n: unit.text for n, unit in bus.units.items()} == {5: "  55", 6: " 66"}
