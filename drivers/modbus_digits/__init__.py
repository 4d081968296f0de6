"""Digit displays over the windows, Modbus RTU on RS-485 (`driver = "modbus_digits"`).

One ASCII character per holding register, from `register` on, `width` of
them; several displays share one cable, each at its own unit id:

    [devices.board_5]
    driver = "modbus_digits"
    port = "/dev/ttyUSB1"      # a device path or a pyserial URL
    baudrate = 9600            # bytesize, parity, stopbits as well (serialbus.read_line)
    unit = 5                   # Modbus unit id, 1..247 (the factory address is usually 1)
    register = 0               # the first holding register of the text
    width = 4                  # characters, 1..32
    align = "right"            # or "left", "center"
    write = "fc16"             # or "fc06": a model that takes single-register writes only
    flash_register = 16        # optional: the register that makes the digits flash (1/0)
    reply_timeout = 0.3        # seconds one unit has to answer one request
    retries = 2                # more attempts after no (or a garbled) answer

plus the wording keys every board takes (`calling`, `paused`, `idle`,
`closed`, `flash_s`; see `drivers/board.py`), which here may hold ASCII text
and `{number}` only.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

from ..base import Options
from ..board import Display, read_display
from ..serialbus import SerialLine, emulation_problem, read_line

ALIGNS = ("right", "left", "center")
WRITES = ("fc16", "fc06")
MAX_WIDTH = 32
TEMPLATE_KEYS = ("calling", "paused", "idle", "closed")


@dataclass(frozen=True)
class Settings:
    BUS_ADDRESS: ClassVar[str] = "unit"     # the option naming where on its cable it listens

    line: SerialLine
    display: Display
    unit: int = 1
    register: int = 0
    width: int = 4
    align: str = "right"
    write: str = "fc16"
    flash_register: int | None = None    # None: this display cannot flash
    reply_timeout: float = 0.3
    retries: int = 2
    emulate: bool = False                # kioskd runs an emulated bus at `line.port` (the demo hall)

    @property
    def registers(self) -> range:
        """The holding registers that hold the text."""
        return range(self.register, self.register + self.width)

    @property
    def attempts(self) -> int:
        return self.retries + 1

    @property
    def longest_show_s(self) -> float:
        """How long a `show` to a unit that does not answer takes: every try of its
        first request. (A show of several requests, with write = "fc06" or a flash
        register, each answered only at its last try, would take longer; the driver
        stops trying at the device's timeout.)"""
        return self.attempts * self.reply_timeout


def configure(options: Options) -> Settings | None:
    """Read `[devices.ID]` for a Modbus digit display; None when it has problems."""
    line = read_line(options)
    ok = line is not None
    unit = options.integer("unit", 1, low=1, high=247)
    width = options.integer("width", 4, low=1, high=MAX_WIDTH)
    register = options.integer("register", 0, low=0, high=65535)
    registers_ok = register + width <= 65536
    if not registers_ok:
        options.problem("register", f"{register} + width {width} runs past register 65535")
        ok = False
    align = options.string("align", "right")
    if align not in ALIGNS:
        options.problem("align", f"'{align}' is not one of {', '.join(ALIGNS)}")
        ok = False
    write = options.string("write", "fc16")
    if write not in WRITES:
        options.problem("write", f"'{write}' is not one of fc16 (write multiple registers) "
                                 "or fc06 (one register at a time)")
        ok = False
    flash = options.integer("flash_register", -1, low=0, high=65535)
    flash_register = None if flash < 0 else flash
    if registers_ok and flash_register is not None and register <= flash_register < register + width:
        options.problem("flash_register", f"{flash_register} is one of the text's registers "
                                          f"({register} to {register + width - 1})")
        ok = False
    reply_timeout = options.number("reply_timeout", 0.3, above=0)
    retries = options.integer("retries", 2, low=0, high=10)
    display = read_display(options, can_flash=flash_register is not None, hall=False,
                           max_lines=1, defaults={"columns": width})
    ok = _templates_ok(options, display) and ok
    emulate = options.boolean("emulate", False)
    problem = emulation_problem(line.port) if emulate and line is not None else None
    if problem:
        options.problem("emulate", problem)
        ok = False
    if not ok or line is None:
        return None
    return Settings(line, display, unit, register, width, align, write, flash_register,
                    reply_timeout, retries, emulate)


def _templates_ok(options: Options, display: Display) -> bool:
    """A digit display shows ASCII and the ticket's number, nothing else."""
    ok = True
    for key in TEMPLATE_KEYS:
        template = getattr(display, key)
        fields = sorted({name for _, name, _, _ in _parse(template) if name} - {"number"})
        if fields:
            options.problem(key, f"a digit display shows only {{number}}, not {{{fields[0]}}}")
            ok = False
        elif not all(" " <= char <= "~" for char in template):
            odd = next(char for char in template if not " " <= char <= "~")
            options.problem(key, f"'{template}' has '{odd}'; a digit display shows ASCII "
                                 "letters, digits and signs only")
            ok = False
    if display.hall_line != Display().hall_line:
        options.problem("hall_line", "a digit display shows only its window's number")
        ok = False
    return ok


def _parse(template: str):
    return string.Formatter().parse(template)     # read_display has checked the syntax


def create(device_id: str, settings: Settings, *, timeout: float, data_dir: Path):
    from .driver import DigitDisplay
    return DigitDisplay(device_id, settings, timeout)


def emulate(device_id: str, settings: Settings, *, data_dir: Path):
    """The emulated display an `emulate = true` device shows on; None otherwise."""
    if not settings.emulate:
        return None
    from .emulator import EmulatedDisplay
    return EmulatedDisplay(device_id, settings)
