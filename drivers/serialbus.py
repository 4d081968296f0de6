"""One serial line shared by several devices (an RS-485 bus): one link, one lock, the gap.

Boards on RS-485 hang several to a cable, each with its own address, and the
host is the only master: a frame must never overlap another, and a short
silence (3.5 characters, Modbus RTU's rule, which text boards honour too)
must separate them. Every device on a port therefore goes through one `Bus`:
it opens the port once, runs one exchange at a time, waits the gap before
each, and closes the port when an exchange finds the cable gone, so the next
exchange (of any device on it) opens it afresh.

The link a bus holds is whatever the family opens: a pyserial port for text
boards, a pymodbus client for Modbus. `read_line` reads the port options
every serial family takes.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from .base import DeviceBusy, DeviceTimeout, DeviceUnavailable, Options

log = logging.getLogger("kioskd.devices")

L = TypeVar("L")
T = TypeVar("T")

PARITIES = {"N": "none", "E": "even", "O": "odd"}


@dataclass(frozen=True)
class SerialLine:
    """A serial port and its line settings, named as pyserial names them."""

    port: str                     # /dev/ttyUSB1, a pyserial URL, or a path the emulator links
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1

    @property
    def char_s(self) -> float:
        """Seconds one character takes on the wire (start, data, parity, stop bits)."""
        bits = 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
        return bits / self.baudrate

    @property
    def gap_s(self) -> float:
        """The silence between frames: 3.5 characters, at least 1.75 ms (Modbus RTU)."""
        return max(3.5 * self.char_s, 0.00175)

    def wire_s(self, size: int) -> float:
        """Seconds `size` bytes take on the wire."""
        return size * self.char_s

    def serial_kwargs(self) -> dict[str, Any]:
        return dict(baudrate=self.baudrate, bytesize=self.bytesize, parity=self.parity,
                    stopbits=self.stopbits)


def read_line(options: Options) -> SerialLine | None:
    """Read `port`, `baudrate`, `bytesize`, `parity` and `stopbits`; None when `port` is bad."""
    port = options.path("port", required=True)
    baudrate = options.integer("baudrate", 9600, low=300, high=4_000_000)
    bytesize = options.integer("bytesize", 8, low=7, high=8)
    parity = options.string("parity", "N")
    if parity not in PARITIES:
        options.problem("parity", f"'{parity}' is not one of N (none), E (even), O (odd)")
        parity = "N"
    stopbits = options.integer("stopbits", 1, low=1, high=2)
    if port is None:
        return None
    return SerialLine(port, baudrate, bytesize, parity, stopbits)


def is_url(port: str) -> bool:
    return "://" in port


def emulation_problem(port: str) -> str | None:
    """Why an emulated device cannot sit at `port`, or None: its emulator links a
    pseudo-terminal at a file path, which a device node or a URL is not."""
    if is_url(port) or (os.path.normpath(port) + "/").startswith("/dev/"):
        return ("an emulated board's port is a file path kioskd links to its "
                'pseudo-terminal, not a device or URL, e.g. port = "var/tty-bus1"')
    return None


def open_serial(port: str, *, timeout: float, **settings: Any):
    """`port` (a device path or any pyserial URL) opened exclusively, reads and
    writes bounded by `timeout`; every way it can fail as a DeviceUnavailable
    (DeviceBusy when another program holds it) in a technician's words. The
    one way every serial family opens its port."""
    import serial             # here, not at the top: reading devices.toml stays light

    try:
        return serial.serial_for_url(port, timeout=timeout, write_timeout=timeout,
                                     exclusive=True, **settings)
    except Exception as error:   # SerialException, and from URL handlers ValueError,
        raise open_error(port, error) from None    # TypeError, KeyError, termios.error


def open_error(port: str, error: BaseException) -> DeviceUnavailable:
    """Why `port` could not be opened, from the errno pyserial wraps when it has one."""
    code, reason = _cause(error)
    if code in (errno.EBUSY, errno.EAGAIN):        # EAGAIN: another process holds the lock
        return DeviceBusy(f"{port} is already open in another program "
                          "(a second kioskd, ModemManager, a terminal?)")
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return DeviceUnavailable(f"no serial device {port} (adapter unplugged?)")
    if code in (errno.EACCES, errno.EPERM):
        return DeviceUnavailable(f"permission denied on {port}: add kioskd's user to the "
                                 "dialout group")
    if code == errno.ENOTTY:
        return DeviceUnavailable(f"{port} is not a serial port")
    if code is None and not isinstance(error, OSError):
        return DeviceUnavailable(f"pyserial cannot open {port}: check the port and its "
                                 f"options ({type(error).__name__}: {error})")
    return DeviceUnavailable(f"cannot open {port}: {reason}")


def _cause(error: BaseException) -> tuple[int | None, str]:
    """The errno and the OS's words behind pyserial's wrapping of an error, when it has them."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen.errno, seen.strerror or str(seen)
        args = seen.args
        if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
            return args[0], args[1]            # termios.error(errno, text)
        seen = seen.__cause__ or seen.__context__
    return None, str(error)


class TurnLock:
    """A lock taken in the order it was asked for. A device that retries at once
    after its own exchange queues behind the devices already waiting, so one
    silent unit costs each neighbour at most one of its attempts. Releasing
    hands the lock straight to the next in line and wakes that one thread only:
    25 devices waiting on a bus do not all wake for every frame."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiting: deque[threading.Event] = deque()
        self._held = False

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait for the turn, at most `timeout` seconds (None: as long as it takes)."""
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            turn = threading.Event()
            self._waiting.append(turn)
        if turn.wait(timeout):
            return True                       # handed over by release()
        with self._mutex:
            if turn.is_set():                 # handed over just as the time ran out
                return True
            self._waiting.remove(turn)
            return False

    def release(self) -> None:
        with self._mutex:
            if self._waiting:
                self._waiting.popleft().set()     # still held: now by the next in line
            else:
                self._held = False


class Bus(Generic[L]):
    """The devices of one port, one exchange at a time. `open_link` opens the
    port (raising DeviceUnavailable), `close_link` closes it and never raises."""

    def __init__(self, line: SerialLine, open_link: Callable[[], L],
                 close_link: Callable[[L], None]):
        self.line = line
        self._open_link = open_link
        self._close_link = close_link
        self._lock = TurnLock()
        self._link: L | None = None
        self._last_end = 0.0               # time.monotonic() the last exchange ended

    def run(self, exchange: Callable[[L], T], *, timeout: float) -> T:
        """Run `exchange(link)` alone on the bus, after the inter-frame gap.
        Waits at most `timeout` for the bus. A DeviceUnavailable from the
        exchange (the cable is gone) closes the port for everyone; a
        DeviceTimeout (one device did not answer) leaves it open."""
        if not self._lock.acquire(timeout=timeout):
            raise DeviceUnavailable(f"{self.line.port} stayed busy with other devices for "
                                    f"{timeout:g} s")
        try:
            if self._link is None:
                self._link = self._open_link()
            wait = self._last_end + self.line.gap_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                return exchange(self._link)
            except DeviceTimeout:         # one device did not answer; the cable is fine
                raise
            except DeviceUnavailable:
                self._drop()
                raise
            finally:
                self._last_end = time.monotonic()
        finally:
            self._lock.release()

    def close(self) -> None:
        self._lock.acquire()
        try:
            self._drop()
        finally:
            self._lock.release()

    def _drop(self) -> None:
        if self._link is not None:
            link, self._link = self._link, None
            self._close_link(link)

    @property
    def is_open(self) -> bool:
        return self._link is not None


class Buses(Generic[L]):
    """The buses of one family, one per port, each shared by reference count:
    a bus is closed when its last device closes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buses: dict[str, tuple[Bus[L], int]] = {}

    def acquire(self, line: SerialLine, make: Callable[[], Bus[L]]) -> Bus[L]:
        with self._lock:
            bus, users = self._buses.get(line.port, (None, 0))
            if bus is None:
                bus = make()
            self._buses[line.port] = (bus, users + 1)
            return bus

    def release(self, bus: Bus[L]) -> None:
        with self._lock:
            entry = self._buses.get(bus.line.port)
            if entry is None or entry[0] is not bus:
                return
            if entry[1] > 1:
                self._buses[bus.line.port] = (bus, entry[1] - 1)
                return
            del self._buses[bus.line.port]
        bus.close()


def same_line_problems(lines: dict[str, tuple[str, SerialLine]]) -> list[tuple[str, str, str]]:
    """Devices on one port must agree on driver and line settings:
    (device id, key, problem) for each that does not. `lines` maps a
    device id to its driver and line."""
    problems = []
    first: dict[str, tuple[str, str, SerialLine]] = {}
    for device_id, (driver, line) in lines.items():
        if line.port not in first:
            first[line.port] = (device_id, driver, line)
            continue
        other_id, other_driver, other = first[line.port]
        if driver != other_driver:
            problems.append((device_id, "port", f"{line.port} is also {other_id}'s port, a "
                                                f"{other_driver} device; one bus speaks one protocol"))
        elif line != other:
            problems.append((device_id, "port", f"{line.port} is shared with {other_id} but its "
                                                f"line settings differ; give both the same "
                                                f"baudrate, bytesize, parity and stopbits"))
    return problems


def resolve_port(port: str, base: Path) -> str:
    """A port as written: a URL or absolute path as is, a relative path against `base`."""
    if is_url(port) or Path(port).is_absolute():
        return port
    return str(base / port)
