"""The text board: a screen becomes one frame per line, sent over its port's shared bus."""

from __future__ import annotations

import logging
import termios
import time
from typing import Any

import serial

from ..base import DeviceTimeout, DeviceUnavailable, Health, State
from ..board import Line, Screen, blank, plain
from ..frames import hex_bytes
from ..serialbus import Bus, Buses, open_serial
from . import Settings

log = logging.getLogger("kioskd.devices")

# what pyserial lets out on a port that went away: termios.error escapes
# reset_input_buffer and flush on a hung-up tty
LINK_ERRORS = (serial.SerialException, OSError, termios.error)

# every text board on one port shares one Bus: one open port, one frame at a time
BUSES: Buses[serial.Serial] = Buses()


class TextBoard:
    """One board at one address. Each frame is one exchange on the bus; with
    an `ack` in the frame, each try is its own exchange, so the neighbours'
    frames get through while a silent board is tried again."""

    test_pattern_s = 1.0         # how long self_test leaves its pattern up

    def __init__(self, device_id: str, settings: Settings, timeout: float):
        self.id = device_id
        self.settings = settings
        self.timeout = timeout
        self.bus: Bus[serial.Serial] | None = None
        self.shown: Screen | None = None          # the last screen sent whole
        self.where = f"board at address {settings.address} on {settings.line.port}"
        self._warned: set[str] = set()           # characters already logged as replaced

    # --- Driver

    def open(self) -> None:
        if self.bus is None:
            line, timeout = self.settings.line, self.timeout

            def open_port() -> serial.Serial:
                return open_serial(line.port, timeout=timeout, **line.serial_kwargs())
            self.bus = BUSES.acquire(line, lambda: Bus(line, open_port, close_port))
        try:
            self._run(lambda port: None)          # opens the port unless a neighbour has
        except DeviceUnavailable:
            self.close()
            raise

    def identify(self) -> dict[str, Any]:
        settings = self.settings
        return {"port": settings.line.port, "baudrate": settings.line.baudrate,
                "address": settings.address, "lines": settings.display.lines,
                "frame": settings.frame.describe(), "encoding": settings.frame.encoding,
                "ack": hex_bytes(settings.frame.ack) if settings.frame.ack else None}

    def poll(self) -> Health:
        self._run(self._check_port)
        return Health(State.READY, {"shows": plain(self.shown) if self.shown else []})

    def close(self) -> None:
        bus, self.bus = self.bus, None
        if bus is not None:
            BUSES.release(bus)

    def self_test(self) -> dict[str, Any]:
        """Every line reads 测试 TEST n for `test_pattern_s` (the first flashing,
        where the board can), then the last screen again."""
        display = self.settings.display
        pattern = tuple(Line(display.fit(f"测试 TEST {n}"), n == 1 and display.can_flash)
                        for n in range(1, display.lines + 1))
        before = self.shown or blank(display.lines)
        self.show(pattern)
        time.sleep(self.test_pattern_s)
        self.show(before)
        return {"test_pattern": plain(pattern), "then": plain(before)}

    # --- Board

    def show(self, screen: Screen) -> dict[str, Any]:
        """One frame per line, top line first; what the board now shows."""
        settings, spec = self.settings, self.settings.frame
        lines = (tuple(screen) + blank(settings.display.lines))[:settings.display.lines]
        replaced: set[str] = set()
        shown = []
        for index, line in enumerate(lines):
            payload, lost = spec.fit(line.text)
            replaced |= lost
            flash = line.flash and "flash" in spec.effect_names
            frame = spec.encode(settings.address, payload,
                                line=index if spec.has("line") else None,
                                effect=("flash" if flash else "steady") if spec.has("effect") else None)
            self._send(frame, f"line {index + 1}")
            shown.append(Line(payload.decode(spec.encoding), flash))
        self.shown = tuple(shown)
        result: dict[str, Any] = {"shows": plain(self.shown),
                                  "flashing": [n for n, line in enumerate(shown, 1) if line.flash]}
        if replaced:
            result["replaced"] = "".join(sorted(replaced))
            if replaced - self._warned:
                log.warning("%s: the board's %s cannot show %s; shown as '?'", self.id,
                            spec.encoding, "".join(sorted(replaced - self._warned)))
                self._warned |= replaced
        return result

    # --- on the wire

    def _send(self, frame: bytes, what: str) -> None:
        ack = self.settings.frame.ack
        tries = 1 + (self.settings.retries if ack else 0)
        problem = ""
        for _ in range(tries):
            try:
                self._run(lambda port: self._exchange(port, frame))
                return
            except DeviceTimeout as exc:          # no ack, or a wrong one: the port is fine
                problem = str(exc)
        raise DeviceTimeout(f"{self.where} did not acknowledge {what} "
                            f"({tries} tr{'ies' if tries > 1 else 'y'}, "
                            f"{self.settings.reply_timeout:g} s each; last: {problem})")

    def _exchange(self, port: serial.Serial, frame: bytes) -> None:
        ack, wait = self.settings.frame.ack, self.settings.reply_timeout
        name = self.settings.line.port
        try:
            if ack:
                port.reset_input_buffer()         # a late answer to an earlier frame
            port.write(frame)
            port.flush()                          # until sent: the bus times the gap from here
            if not ack:
                return
            if port.timeout != wait:
                port.timeout = wait
            answer = port.read(len(ack))
        except serial.SerialTimeoutException:
            raise DeviceUnavailable(f"{name} did not take a frame within {self.timeout:g} s "
                                    f"(a stuck adapter?)") from None
        except LINK_ERRORS as error:
            raise DeviceUnavailable(f"{name} failed: {error} (cable or adapter unplugged?)") from None
        if not answer:
            raise DeviceTimeout(f"no answer within {wait:g} s")
        if answer != ack:
            raise DeviceTimeout(f"answered {hex_bytes(answer)} instead of {hex_bytes(ack)}")

    def _check_port(self, port: serial.Serial) -> None:
        """A pulled cable shows here: a hung-up tty fails even a look at its input."""
        try:
            waiting = port.in_waiting
            if waiting:
                port.read(waiting)                # answers nobody waited for
        except LINK_ERRORS as error:
            raise DeviceUnavailable(f"{self.settings.line.port} failed: {error} "
                                    f"(cable or adapter unplugged?)") from None

    def _run(self, exchange) -> Any:
        if self.bus is None:
            raise DeviceUnavailable("not connected")
        return self.bus.run(exchange, timeout=self.timeout / 2)


def close_port(port: serial.Serial) -> None:
    try:
        port.close()
    except LINK_ERRORS:
        pass
