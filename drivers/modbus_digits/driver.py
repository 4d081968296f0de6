"""The digit display: its text registers written and read back over a shared Modbus RTU bus.

Every display on a port talks through one `Bus` (drivers/serialbus.py) whose
link is one pymodbus RTU client on one open port. Retries are ours, one
`Bus.run` per attempt, so the neighbours' frames go out between the attempts
of a unit that does not answer: a dead unit costs its own `reply_timeout`
once per attempt and never holds up the others for longer than one of them.
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections.abc import Callable, Sequence
from typing import Any

from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from ..base import DeviceFault, DeviceTimeout, DeviceUnavailable, Health, State
from ..board import Line, Screen
from ..serialbus import Bus, Buses, SerialLine, is_url, open_serial
from . import Settings

log = logging.getLogger("kioskd.devices")

# pymodbus logs every unanswered request as an error; a silent unit is ours to report.
if logging.getLogger("pymodbus").level == logging.NOTSET:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

SELF_TEST_S = 1.0              # how long the self-test pattern stays up
WRITE_TIMEOUT_S = 1.0          # a port that takes no bytes this long is broken
EXCEPTIONS = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
              4: "device failure", 6: "device busy"}


class NoAnswer(DeviceTimeout):
    """One request got no valid answer; `garbled` when bytes came back but no frame
    (a bad CRC). The bus stays open: the cable is fine, one unit is not."""

    def __init__(self, message: str, *, garbled: bool):
        super().__init__(message)
        self.garbled = garbled


class SerialClient(ModbusSerialClient):
    """pymodbus's RTU client, except that opening the port says why it failed,
    and it never reopens the port behind the bus's back."""

    def open(self) -> None:
        params = self.comm_params
        self.socket = open_serial(params.host, timeout=WRITE_TIMEOUT_S,
                                  baudrate=params.baudrate, bytesize=params.bytesize,
                                  parity=params.parity, stopbits=params.stopbits)
        self.socket.inter_byte_timeout = self.inter_byte_timeout

    def connect(self) -> bool:
        return self.socket is not None

    def recv(self, size: int | None) -> bytes:
        """What has arrived, as soon as it arrives: pymodbus's own wait looks every
        4 characters and once more to see the input settle (5 ms a reply at 9600
        baud); its RTU framer asks again for the rest of a frame that came in parts."""
        port = self.socket
        if size is not None or port is None:
            return super().recv(size)
        try:
            fd = port.fileno()
        except Exception:              # a pyserial URL handler without a file descriptor
            return super().recv(size)
        try:
            ready, _, _ = select.select([fd], [], [], self.comm_params.timeout_connect)
            if not ready:
                return b""
            return port.read(max(port.in_waiting, 1))
        except (OSError, ValueError):  # a hung-up tty is readable and reads nothing
            self.close()
            raise gone(self.comm_params.host) from None


class ModbusLink:
    """One open port with its RTU client: a request, its answer, and the
    technician's words for whatever went wrong."""

    def __init__(self, line: SerialLine):
        self.line = line
        self.port = line.port
        self._heard = False
        self.client = SerialClient(line.port, framer=FramerType.RTU, retries=0,
                                   trace_packet=self._traced, **line.serial_kwargs())
        self.client.open()

    def request(self, call: Callable[[ModbusSerialClient], ModbusPDU], *,
                reply_timeout: float) -> ModbusPDU:
        """Send one request and wait `reply_timeout` for its answer. Raises NoAnswer,
        or DeviceUnavailable when the port itself is gone."""
        self.check()
        self.client.comm_params.timeout_connect = reply_timeout
        self._heard = False
        try:
            return call(self.client)
        except ModbusIOException:      # no answer, or none that decodes (pymodbus drops bad CRCs)
            self.check()               # a hung-up tty does not fail reads: it just stays silent
            raise NoAnswer("no valid answer", garbled=self._heard) from None
        except ConnectionException:    # pymodbus's word for a failed read or write on the port
            self.check()
            raise DeviceUnavailable(f"reading or writing {self.port} failed "
                                    "(adapter unplugged?)") from None
        except OSError as exc:
            self.check()
            raise DeviceUnavailable(f"{self.port} failed: {exc.strerror or exc} "
                                    "(adapter unplugged?)") from None
        except ModbusException as exc:
            raise NoAnswer(f"pymodbus: {exc}", garbled=self._heard) from None

    def check(self) -> None:
        """Raise DeviceUnavailable when the port has gone (a USB adapter unplugged,
        a tty hung up or replaced by a new one under the same name)."""
        port = self.client.socket
        if port is None:
            raise DeviceUnavailable(f"the serial line {self.port} was closed after an error "
                                    "(adapter unplugged?)")
        try:
            fd = port.fileno()
        except Exception:              # a pyserial URL handler without a file descriptor
            return
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if any(events & (select.POLLHUP | select.POLLERR | select.POLLNVAL)
               for _, events in poller.poll(0)):
            raise gone(self.port)
        if is_url(self.port):
            return
        try:
            if os.stat(self.port).st_rdev != os.fstat(fd).st_rdev:
                raise gone(self.port)
        except FileNotFoundError:
            raise gone(self.port) from None
        except OSError:
            return

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:              # the port is gone either way
            pass

    def _traced(self, sending: bool, data: bytes) -> bytes:
        if not sending and data:
            self._heard = True
        return data


def gone(port: str) -> DeviceUnavailable:
    return DeviceUnavailable(f"no serial device {port} any more (adapter unplugged?)")


_buses: Buses[ModbusLink] = Buses()


def _new_bus(line: SerialLine) -> Bus[ModbusLink]:
    """The one bus of `line.port`, shared by every display on it (take it with
    `_buses.acquire`, give it back with `_buses.release`)."""
    return Bus(line, lambda: ModbusLink(line), ModbusLink.close)


class DigitDisplay:
    """One digit display: one unit on a shared RS-485 bus."""

    def __init__(self, device_id: str, settings: Settings, timeout: float):
        self.id = device_id
        self.settings = settings
        self.timeout = timeout
        self.bus: Bus[ModbusLink] | None = None
        self.screen: Screen | None = None          # the last screen asked for
        self.wanted: list[int] | None = None       # the registers the board should hold
        self.wanted_flash = False
        self.restored = 0                          # times a poll found the text lost and rewrote it
        self._deadline = 0.0

    # --- Driver

    def open(self) -> None:
        self.close()
        line = self.settings.line
        self.bus = _buses.acquire(line, lambda: _new_bus(line))
        self._start()
        try:
            self._read_text(attempts=1)            # one try: a dead unit's reconnect costs one timeout
        except Exception:
            self.close()
            raise

    def identify(self) -> dict[str, Any]:
        s = self.settings
        return {"port": s.line.port, "unit": s.unit, "register": s.register, "width": s.width,
                "write": s.write}

    def poll(self) -> Health:
        self._start()
        values = self._read_text()
        if self.wanted is not None and values != self.wanted:
            log.info("%s: unit %d shows %r instead of %r (lost power?); writing it again",
                     self.id, self.settings.unit, text_of(values), text_of(self.wanted))
            self._write(self.wanted, self.wanted_flash)
            self.restored += 1
            values = self.wanted
        detail: dict[str, Any] = {"shows": text_of(values), "restored": self.restored}
        if self.settings.flash_register is not None:
            detail["flashing"] = self.wanted_flash
        return Health(State.READY, detail)

    def close(self) -> None:
        bus, self.bus = self.bus, None
        if bus is not None:
            try:
                _buses.release(bus)
            except Exception:          # closing the port failed: it is released either way
                log.debug("%s: closing %s failed", self.id, bus.line.port, exc_info=True)

    def self_test(self) -> dict[str, Any]:
        pattern = "8" * self.settings.width
        self._start()
        self._show(Line(pattern))
        time.sleep(SELF_TEST_S)
        self._start()
        shown = self._show(self.screen[0] if self.screen else Line(""))
        return {"pattern": pattern, **shown}

    # --- Board

    def show(self, screen: Screen) -> dict[str, Any]:
        self.screen = screen
        self._start()
        return self._show(screen[0] if screen else Line(""))

    # --- the registers

    def layout(self, text: str) -> str:
        """`text` as the display shows it: ASCII, cut or padded to `width`, aligned."""
        width = self.settings.width
        text = "".join(char if " " <= char <= "~" else "?" for char in text)[:width]
        align = self.settings.align
        return text.rjust(width) if align == "right" else text.ljust(width) if align == "left" \
            else text.center(width)

    def _show(self, line: Line) -> dict[str, Any]:
        text = self.layout(line.text)
        flash = line.flash and self.settings.flash_register is not None
        self.wanted = [ord(char) for char in text]
        self.wanted_flash = flash
        self._write(self.wanted, flash)
        shown: dict[str, Any] = {"shows": text}
        if self.settings.flash_register is not None:
            shown["flashing"] = flash
        return shown

    def _write(self, values: Sequence[int], flash: bool) -> None:
        s = self.settings
        unit = s.unit
        if s.write == "fc16":
            self._run(f"write registers {s.register}-{s.register + s.width - 1}",
                      lambda client: client.write_registers(s.register, list(values),
                                                            device_id=unit))
        else:
            for address, value in zip(s.registers, values):
                self._run(f"write register {address}",
                          lambda client, a=address, v=value: client.write_register(
                              a, v, device_id=unit))
        if s.flash_register is not None:
            register = s.flash_register
            self._run(f"write register {register} (flash)",
                      lambda client: client.write_register(register, int(flash), device_id=unit))

    def _read_text(self, attempts: int | None = None) -> list[int]:
        s = self.settings
        response = self._run(f"read registers {s.register}-{s.register + s.width - 1}",
                             lambda client: client.read_holding_registers(
                                 s.register, count=s.width, device_id=s.unit),
                             attempts=attempts, expect=s.width)
        return list(response.registers)

    def _start(self) -> None:
        """A public call begins: everything it does fits in the device's timeout."""
        self._deadline = time.monotonic() + self.timeout

    def _run(self, what: str, call: Callable[[ModbusSerialClient], ModbusPDU], *,
             attempts: int | None = None, expect: int | None = None) -> ModbusPDU:
        """One request to this unit, tried up to `attempts` times (one bus turn each);
        DeviceTimeout when no attempt got an answer, DeviceFault when the unit refuses."""
        s = self.settings
        attempts = attempts or s.attempts
        tried = garbled = 0
        while tried < attempts:
            left = self._deadline - time.monotonic()
            if tried and left <= 0:
                break
            tried += 1
            try:
                response = self._bus().run(
                    lambda link: link.request(call, reply_timeout=s.reply_timeout),
                    timeout=max(0.0, min(self.timeout / 2, left)))
            except NoAnswer as exc:
                garbled += exc.garbled
                continue
            if response.isError():
                code = response.exception_code
                raise DeviceFault(f"unit {s.unit} on {s.line.port} refuses to {what}: "
                                  f"{EXCEPTIONS.get(code, f'exception {code}')}"
                                  f"{refusal_hint(s, code)}")
            if expect is not None and len(response.registers) != expect:
                garbled += 1
                continue
            return response
        each = f"{s.reply_timeout:g} s" + (" each" if tried > 1 else "")
        tries = f"{tried} attempt{'s' if tried > 1 else ''}"
        if garbled:
            raise DeviceTimeout(f"unit {s.unit} on {s.line.port} answers garbled to {what} "
                                f"({garbled} of {tries}: noise, a missing terminator or a "
                                f"wrong baudrate?)")
        raise DeviceTimeout(f"unit {s.unit} on {s.line.port} does not answer ({what}; "
                            f"{tries}, {each})")

    def _bus(self) -> Bus[ModbusLink]:
        if self.bus is None:
            raise DeviceUnavailable("not connected")
        return self.bus


def refusal_hint(settings: Settings, code: int) -> str:
    if code == 1 and settings.write == "fc16":
        return "; if this model takes single-register writes only, set write = \"fc06\""
    if code == 2:
        return "; check register, width and flash_register against the display's manual"
    return ""


def text_of(values: Sequence[int]) -> str:
    """What registers show: ASCII codes; 0 (a board just powered up) is blank."""
    return "".join(" " if value == 0 else chr(value) if 32 <= value <= 126 else "?"
                   for value in values)
