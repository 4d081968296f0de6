"""Emulated digit displays: one RS-485 bus on a pty holding several Modbus units.

The bus reads what the driver sends with pymodbus's own RTU framer and PDU
classes (the same tables the driver's client encodes with) and answers FC03,
FC06 and FC16 with pymodbus's response PDUs; a unit nobody emulates stays
silent, as on a real bus. Each unit decodes its text registers into the text
it shows and keeps a history of (text, flashing, wire_end) per write, so a
test or benchmark can tell what the board showed and when each write's last
byte was on the wire. Faults a test sets: a silent unit, replies with a bad
CRC, a power cut (registers blank), the cable pulled (`pull`, `plug`).

One bus per port: every `emulate = true` display on a port registers its unit
with the one `BusEmulator` there (`bus_for(port)`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterResponse,
)

from ..ptyport import PtyPort
from ..serialbus import SerialLine
from . import Settings

log = logging.getLogger("kioskd.emulators")

if logging.getLogger("pymodbus").level == logging.NOTSET:    # its decode chatter is not ours
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

STALE_S = 0.5        # a partial frame this old is line noise: the master never pauses mid-frame
KEEP = 10_000        # requests and writes remembered (the demo hall runs for days)


@dataclass(frozen=True)
class Shown:
    """What a unit showed after one write, and when that write's last byte was on the wire."""

    text: str
    flashing: bool
    wire_end: float                  # time.monotonic()


@dataclass(frozen=True)
class Request:
    """One request frame the bus decoded."""

    unit: int
    function: int                    # 3, 6, 16, ...
    wire_end: float                  # time.monotonic() its last byte was on the wire
    answered: bool                   # a unit sent a reply (possibly a corrupted one)


@dataclass
class EmulatedUnit:
    """One digit display on the bus: its registers and the faults a test sets."""

    unit: int
    register: int = 0
    width: int = 4
    flash_register: int | None = None
    functions: frozenset[int] = frozenset({3, 6, 16})   # what the model accepts
    silent: bool = False             # hears, applies and answers nothing (a dead unit)
    corrupting: bool = False         # every reply goes out with a bad CRC while set
    corrupt_next: int = 0            # ... or the next this many replies
    corrupted: int = 0               # replies sent with a bad CRC
    heard: int = 0                   # requests addressed to it
    answered: int = 0                # replies sent (corrupted ones too)
    registers: dict[int, int] = field(default_factory=dict)
    history: list[Shown] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.power_cycle()

    @property
    def text(self) -> str:
        """What the digits show: one ASCII code per register; 0 (just powered up) is blank."""
        values = (self.registers[address] for address in self.text_registers)
        return "".join(" " if value == 0 else chr(value) if 32 <= value <= 126 else "?"
                       for value in values)

    @property
    def flashing(self) -> bool:
        return self.flash_register is not None and self.registers[self.flash_register] != 0

    @property
    def text_registers(self) -> range:
        return range(self.register, self.register + self.width)

    def power_cycle(self) -> None:
        """Power lost and back: every register blank, nothing flashing."""
        self.registers = {address: 0 for address in self.text_registers}
        if self.flash_register is not None:
            self.registers[self.flash_register] = 0

    def holds(self, addresses: Iterable[int]) -> bool:
        return all(address in self.registers for address in addresses)


class BusEmulator:
    """An RS-485 bus on a pty with the units a test adds."""

    def __init__(self, line: SerialLine, *, link: str | Path | None = None,
                 name: str = "emulated Modbus bus"):
        self.line = line
        self.name = name
        self.port = PtyPort(line, self._receive, link=link, name=name)
        self.units: dict[int, EmulatedUnit] = {}
        self.requests: list[Request] = []
        self.changed = threading.Condition()
        self._buffer = bytearray()
        self._buffer_end = 0.0
        self._framer = FramerRTU(DecodePDU(is_server=True))

    # --- running

    def start(self) -> str:
        """Start serving; returns the path a driver opens."""
        return self.port.start()

    def close(self) -> None:
        self.port.close()

    @property
    def address(self) -> str:
        return self.port.address

    def pull(self) -> None:
        """The cable pulled: the driver's port hangs up."""
        self.port.pull()

    def plug(self) -> None:
        """The cable back: a fresh pty behind the same path."""
        with self.changed:
            self._buffer.clear()
        self.port.plug()

    # --- the units

    def add_unit(self, unit: int, *, register: int = 0, width: int = 4,
                 flash_register: int | None = None,
                 functions: Iterable[int] = (3, 6, 16)) -> EmulatedUnit:
        with self.changed:
            emulated = EmulatedUnit(unit, register, width, flash_register, frozenset(functions))
            self.units[unit] = emulated
            return emulated

    def remove_unit(self, unit: int) -> None:
        with self.changed:
            self.units.pop(unit, None)

    def unit(self, unit: int) -> EmulatedUnit:
        return self.units[unit]

    def power_cycle(self, unit: int) -> None:
        with self.changed:
            self.units[unit].power_cycle()
            self.changed.notify_all()

    @property
    def corrupted(self) -> int:
        """Replies sent with a bad CRC, all units together."""
        return sum(unit.corrupted for unit in self.units.values())

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str = "") -> None:
        """Wait until `condition()` holds, checked after every decoded request."""
        with self.changed:
            if not self.changed.wait_for(condition, timeout):
                raise TimeoutError(f"{self.name}: no {what or 'change'} after {timeout:g} s")

    # --- the wire

    def _receive(self, data: bytes, wire_end: float) -> None:
        replies: list[tuple[bytes, float]] = []
        with self.changed:
            if self._buffer and wire_end - self.line.wire_s(len(data)) - self._buffer_end > STALE_S:
                log.debug("%s: dropped %d bytes of a frame that never ended", self.name,
                          len(self._buffer))
                self._buffer.clear()
            self._buffer += data
            self._buffer_end = wire_end
            while self._buffer:
                try:
                    used, request = self._framer.handleFrame(bytes(self._buffer), 0, 0)
                except ModbusException:          # a frame with a good CRC but no sense
                    self._buffer.clear()
                    break
                del self._buffer[:used]
                if request is None:
                    break
                frame_end = wire_end - self.line.wire_s(len(self._buffer))
                reply = self._answer(request, frame_end)
                _trim(self.requests)
                if reply is not None:
                    replies.append((reply, frame_end))
            self.changed.notify_all()
        for reply, frame_end in replies:
            self.port.send(reply, after=frame_end + self.line.gap_s)

    def _answer(self, request: ModbusPDU, wire_end: float) -> bytes | None:
        """The reply frame to one request, after applying it; None for no reply."""
        unit = self.units.get(request.dev_id)
        if unit is None or unit.silent:
            self.requests.append(Request(request.dev_id, request.function_code, wire_end, False))
            if unit is not None:
                unit.heard += 1
            return None
        unit.heard += 1
        response = self._apply(unit, request, wire_end)
        response.dev_id = unit.unit
        frame = self._framer.buildFrame(response)
        if unit.corrupting or unit.corrupt_next > 0:
            unit.corrupt_next = max(0, unit.corrupt_next - 1)
            unit.corrupted += 1
            frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
        unit.answered += 1
        self.requests.append(Request(unit.unit, request.function_code, wire_end, True))
        return frame

    def _apply(self, unit: EmulatedUnit, request: ModbusPDU, wire_end: float) -> ModbusPDU:
        function = request.function_code
        if function not in unit.functions or function not in (3, 6, 16):
            return ExceptionResponse(function, ExcCodes.ILLEGAL_FUNCTION)
        if function == 3:
            addresses = range(request.address, request.address + request.count)
            if not unit.holds(addresses):
                return ExceptionResponse(function, ExcCodes.ILLEGAL_ADDRESS)
            return ReadHoldingRegistersResponse(
                registers=[unit.registers[address] for address in addresses])
        values = list(request.registers)
        if function == 16 and len(values) != request.count:
            return ExceptionResponse(function, ExcCodes.ILLEGAL_VALUE)
        addresses = range(request.address, request.address + len(values))
        if not unit.holds(addresses):
            return ExceptionResponse(function, ExcCodes.ILLEGAL_ADDRESS)
        unit.registers.update(zip(addresses, values))
        unit.history.append(Shown(unit.text, unit.flashing, wire_end))
        _trim(unit.history)
        if function == 6:
            return WriteSingleRegisterResponse(address=request.address, registers=values)
        return WriteMultipleRegistersResponse(address=request.address, count=len(values))


def _trim(kept: list[Any]) -> None:
    if len(kept) > 2 * KEEP:
        del kept[:-KEEP]


# --- one bus per port, shared by the emulated devices on it

_lock = threading.Lock()
_buses: dict[str, tuple[BusEmulator, int]] = {}


def bus_for(port: str) -> BusEmulator | None:
    """The running bus emulator at `port` (a device's `settings.line.port`), if any."""
    with _lock:
        entry = _buses.get(port)
        return entry[0] if entry else None


class EmulatedDisplay:
    """The emulated display of one `emulate = true` device: its unit on the bus of
    its port, the bus started by the first display there and closed by the last."""

    def __init__(self, device_id: str, settings: Settings):
        self.id = device_id
        self.settings = settings
        self.bus: BusEmulator | None = None

    def start(self) -> None:
        if self.bus is not None:
            return
        line = self.settings.line
        with _lock:
            bus, users = _buses.get(line.port, (None, 0))
            if bus is None:
                bus = BusEmulator(line, link=line.port, name=f"emulated Modbus bus {line.port}")
                try:
                    bus.start()                   # OSError: the link cannot be made
                except OSError:
                    bus.close()
                    raise
            _buses[line.port] = (bus, users + 1)
        s = self.settings
        if s.unit in bus.units:
            log.warning("%s: unit %d on %s is emulated for another device too", self.id,
                        s.unit, line.port)
        bus.add_unit(s.unit, register=s.register, width=s.width, flash_register=s.flash_register)
        self.bus = bus

    @property
    def unit(self) -> EmulatedUnit:
        return self._started().unit(self.settings.unit)

    def detail(self) -> dict[str, Any]:
        bus = self.bus
        unit = bus.units.get(self.settings.unit) if bus else None
        detail: dict[str, Any] = {"emulated": True, "pty": bus.port.path if bus else None,
                                  "unit": self.settings.unit,
                                  "shows": unit.text if unit else None}
        if unit is not None and unit.flash_register is not None:
            detail["flashing"] = unit.flashing
        return detail

    def close(self) -> None:
        bus, self.bus = self.bus, None
        if bus is None:
            return
        bus.remove_unit(self.settings.unit)
        port = self.settings.line.port
        with _lock:
            entry = _buses.get(port)
            if entry is None or entry[0] is not bus:
                return
            if entry[1] > 1:
                _buses[port] = (bus, entry[1] - 1)
                return
            del _buses[port]
        bus.close()

    def _started(self) -> BusEmulator:
        if self.bus is None:
            raise RuntimeError(f"{self.id}: the emulated display is not started")
        return self.bus
