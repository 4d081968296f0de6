"""Chinese text LED boards that take vendor-defined frames on a serial line (`driver = "framed_text"`).

One board per address; several may share an RS-485 port. The board's frame
is described in `[devices.ID.frame]` (see `drivers/frames.py`), its wording in
the options every board takes (see `drivers/board.py`):

    [devices.hall_board]
    driver = "framed_text"
    port = "/dev/ttyUSB1"      # a device path or pyserial URL; emulate = true: a path to link
    baudrate = 9600            # bytesize, parity, stopbits too (drivers/serialbus.py)
    address = 1                # the board's address on the port (default 1)
    lines = 2                  # more than one needs a "line" field in the frame
    reply_timeout = 0.3        # seconds to wait for the frame's `ack`, when it has one
    retries = 2                # frames sent again when no ack came (then: timeout)
    emulate = false            # true: kioskd runs an emulated board behind `port` (the demo)
    [devices.hall_board.frame]
    ...

Text the frame's encoding cannot carry (GBK lacks some rare characters) is
shown with '?' in their place rather than failing the call; `show` names
them under "replaced". Control characters become spaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

from ..base import Options
from ..board import Display, read_display
from ..frames import FrameSpec, read_frame
from ..serialbus import SerialLine, emulation_problem, read_line

DEFAULTS = {"calling": "请{number}号到{window}", "paused": "暂停服务", "idle": "{window}",
            "closed": ""}


@dataclass(frozen=True)
class Settings:
    BUS_ADDRESS: ClassVar[str] = "address"     # the option naming where on its cable it listens

    line: SerialLine
    display: Display
    frame: FrameSpec
    address: int = 1
    emulate: bool = False         # run an emulated board behind `line.port` (the demo hall)
    reply_timeout: float = 0.3    # seconds to wait for an ack; used only when the frame has one
    retries: int = 2              # sends after the first when no ack came

    @property
    def longest_show_s(self) -> float:
        """The longest a `show` may take: every line unacknowledged until its last try."""
        if self.frame.ack is None:
            return 0.0
        return self.display.lines * (self.retries + 1) * self.reply_timeout


def configure(options: Options) -> Settings | None:
    """Read `[devices.ID]` for a text board; None when it has problems."""
    line = read_line(options)
    frame = read_frame(options)
    display = read_display(options, defaults=DEFAULTS,
                           can_flash=frame is not None and "flash" in frame.effect_names)
    if frame is not None and display.lines > 1 and not frame.has("line"):
        options.problem("lines", f"is {display.lines} but the frame has no \"line\" field to "
                                 "say which line a text goes on")
    address_bytes = frame.address_bytes if frame is not None else 4
    address = options.integer("address", 1, low=0, high=256 ** address_bytes - 1)
    reply_timeout = options.number("reply_timeout", 0.3, above=0)
    retries = options.integer("retries", 2, low=0, high=10)
    emulate = options.boolean("emulate", False)
    problem = emulation_problem(line.port) if emulate and line is not None else None
    if problem:
        options.problem("emulate", problem)
        return None
    if line is None or frame is None:
        return None
    return Settings(line, display, frame, address, emulate, reply_timeout, retries)


def create(device_id: str, settings: Settings, *, timeout: float, data_dir: Path):
    from .driver import TextBoard
    return TextBoard(device_id, settings, timeout)


def emulate(device_id: str, settings: Settings, *, data_dir: Path):
    """The emulated board an `emulate = true` device shows on; None otherwise."""
    if not settings.emulate:
        return None
    from .emulator import EmulatedTextBoard
    return EmulatedTextBoard(device_id, settings)
