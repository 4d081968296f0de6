"""Keypads on a serial link: key frames read from an RS-485 bus or a receiver's port, answers written back.

The port is this device's alone (one bus, one reader). The reader thread reads
whatever has arrived, at most `READ_S` at a time, and feeds the key frame's
`FrameDecoder`, which resynchronises on the next header after garbage or a bad
frame; a frame broken off for `QUIET_S` (a keypad losing power mid-frame, a
receiver's truncated burst) is dropped, so it cannot swallow the next good one.
A frame whose command (where the frame has one) is not the key frame's is not a
key: our own answers echoed by a half-duplex adapter, another vendor's traffic.

Answers (`answer`, `beep`) are written by the device's worker thread while the
reader reads: a tty takes a write and a read at once.

Keypads that speak only when asked (`[devices.ID.poll]`, a polled RS-485 bus)
are asked in turn by the reader thread: the poll goes out in the answer frame,
and the keypad has `reply_timeout` to answer with its key frame (its `idle_key`
when nothing was pressed). Poll and reply are one exchange under the write
lock, so an answer to a keypad goes out between two polls, never inside one.
With an `idle_key`, a keypad is known alive: one that missed `SILENT_POLLS`
polls in a row makes the device `degraded` with a `keypad_silent` alert naming
it, until it answers again.
"""

from __future__ import annotations

import logging
import termios
import threading
import time
from typing import Any

import serial

from ..base import Alert, DeviceUnavailable, Health, State
from ..frames import Frame, FrameDecoder, hex_bytes
from ..serialbus import open_serial
from . import Settings
from .reader import KeyReader

log = logging.getLogger("kioskd.devices")

READ_S = 0.05              # the longest one read waits: a stop or a quiet line is seen this soon
QUIET_S = 0.1              # a frame broken off this long is dropped, as a keypad's receiver does
TEST_TEXT = "测试"
SILENT_POLLS = 3           # polls a keypad may miss in a row before it is reported silent

# what pyserial lets out on a port that went away
LINK_ERRORS = (serial.SerialException, OSError, termios.error)


class SerialKeypads(KeyReader):
    """Every keypad on one serial port."""

    def __init__(self, device_id: str, settings: Settings, timeout: float):
        super().__init__(device_id, settings, timeout)
        self.port: serial.Serial | None = None
        self._write_lock = threading.RLock()        # an ack inside a poll's exchange takes it again
        # polled keypads: polls missed in a row (every key there from the start: the
        # reader thread only changes values while a poll reads them)
        self.missed: dict[int, int] = dict.fromkeys(settings.keypads, 0)

    # --- Driver

    def open(self) -> None:
        if self.port is not None:
            return
        line = self.settings.line
        port = open_serial(line.port, timeout=self.timeout, **line.serial_kwargs())
        port.timeout = READ_S
        self.port = port
        decoder = FrameDecoder(self.settings.frame)
        self.start_reading(lambda: self._read(port, decoder))

    def identify(self) -> dict[str, Any]:
        settings = self.settings
        answer = settings.answer
        return {
            "port": settings.line.port, "baudrate": settings.line.baudrate,
            "frame": settings.frame.describe(),
            "answer": answer.frame.describe() if answer else None,
            "beep": hex_bytes(answer.beep) if answer and answer.beep else None,
            "debounce_s": settings.debounce_s,
            "keypads": {str(k.address): k.window for k in settings.keypads.values()
                        if k.kind == "caller"},
            "raters": {str(k.address): k.window for k in settings.keypads.values()
                       if k.kind == "rater"},
        }

    def poll(self) -> Health:
        health = self.health()
        silent = sorted(address for address, missed in list(self.missed.items())
                        if missed >= SILENT_POLLS)
        if not silent:
            return health
        keypads = self.settings.keypads
        names = "、".join(f"{address}号键盘（{keypads[address].window}号窗口）"
                         for address in silent)
        problem = (f"keypad{'s' if len(silent) > 1 else ''} "
                   f"{', '.join(map(str, silent))} do{'' if len(silent) > 1 else 'es'} not "
                   f"answer polls (unplugged, unpowered, or a wrong address?)")
        return Health(State.DEGRADED, {**health.detail, "silent": silent}, problem,
                      (Alert("keypad_silent", f"{names}不应答"),))

    def close(self) -> None:
        port, self.port = self.port, None
        self.stop_reading(lambda: _close(port))

    def self_test(self) -> dict[str, Any]:
        """With answers: 测试 on every keypad's display, and a beep. Without: what the
        bus heard (`heard`)."""
        answer = self.settings.answer
        if answer is None:
            return self.heard(self.settings.line.port)
        addresses = sorted(self.settings.keypads)
        for address in addresses:
            self.answer(address, TEST_TEXT)
            if answer.beep is not None:
                self.beep(address)
        return {"answers": True, "shown": TEST_TEXT, "beeped": answer.beep is not None,
                "keypads": addresses}

    # --- answers

    def answer(self, address: int, text: str) -> dict[str, Any]:
        """Show `text` on the keypad's display (what does not fit is left out)."""
        answer = self.settings.answer
        if answer is None:
            return {"answered": False}
        spec = answer.frame
        payload, _ = spec.fit(text)
        self._write(spec.encode(address, payload, command=answer.show))
        self.counts["answers"] += 1
        return {"answered": True, "shows": payload.decode(spec.encoding)}

    def beep(self, address: int) -> dict[str, Any]:
        """A short error beep, where the keypad has a buzzer."""
        answer = self.settings.answer
        if answer is None or answer.beep is None:
            return {"beeped": False}
        self._write(answer.frame.encode(address, b"", command=answer.beep))
        self.counts["beeps"] += 1
        return {"beeped": True}

    # --- on the wire

    def _write(self, data: bytes) -> None:
        port = self.port
        if port is None:
            raise DeviceUnavailable("not connected")
        try:
            with self._write_lock:
                port.write(data)
                port.flush()
        except serial.SerialTimeoutException:
            raise DeviceUnavailable(f"{self.settings.line.port} did not take a frame within "
                                    f"{self.timeout:g} s (a stuck adapter?)") from None
        except LINK_ERRORS as error:
            raise DeviceUnavailable(self._failed(error)) from None

    def _read(self, port: serial.Serial, decoder: FrameDecoder) -> None:
        """The reader thread: until close, or until the port fails."""
        if self.settings.poll is not None:
            return self._ask(port, decoder)
        last = time.monotonic()
        while not self.stopping:
            try:
                data = port.read(port.in_waiting or 1)
            except (*LINK_ERRORS, TypeError, AttributeError) as error:   # closed under it
                self.broken(self._failed(error))
                return
            now = time.monotonic()
            if not data:
                if now - last > QUIET_S:
                    self._rejected(decoder.flush())
                continue
            last = now
            for item in decoder.feed(data):
                if isinstance(item, Frame):
                    self._frame(item, now)
                else:
                    self._rejected([item])

    def _ask(self, port: serial.Serial, decoder: FrameDecoder) -> None:
        """The reader thread of a polled bus: every keypad in turn, until close."""
        poll = self.settings.poll
        spec = self.settings.answer.frame
        asks = [(address, spec.encode(address, b"", command=poll.command))
                for address in sorted(self.settings.keypads)]
        while not self.stopping:
            for address, ask in asks:
                if self.stopping:
                    return
                time.sleep(self.settings.line.gap_s)    # the bus quiet before each poll
                self.counts["polls"] += 1
                try:
                    with self._write_lock:
                        port.write(ask)
                        port.flush()
                        answered = self._reply(port, decoder, address, poll.reply_timeout)
                except (*LINK_ERRORS, TypeError, AttributeError) as error:
                    self.broken(self._failed(error))
                    return
                if poll.idle_key is not None:
                    missed = 0 if answered else self.missed.get(address, 0) + 1
                    if missed == SILENT_POLLS:
                        log.warning("%s: keypad %s does not answer its polls", self.id, address)
                    elif not missed and self.missed.get(address, 0) >= SILENT_POLLS:
                        log.info("%s: keypad %s answers again", self.id, address)
                    self.missed[address] = missed

    def _reply(self, port: serial.Serial, decoder: FrameDecoder, address: int,
               wait: float) -> bool:
        """Read until the keypad at `address` answered, or `wait` is over: whether it did."""
        deadline = time.monotonic() + wait
        answered = False
        while not answered and (left := deadline - time.monotonic()) > 0:
            port.timeout = left
            data = port.read(port.in_waiting or 1)
            now = time.monotonic()
            for item in decoder.feed(data):
                if isinstance(item, Frame):
                    answered |= self._frame(item, now) == address
                else:
                    self._rejected([item])
        port.timeout = READ_S
        self._rejected(decoder.flush())              # what is left will never complete
        return answered

    def _frame(self, frame: Frame, at: float) -> int | None:
        """A decoded frame: its keypad's address when it is a key frame."""
        spec = self.settings.frame
        if spec.has("command") and frame.command != spec.command:
            self.counts["not_keys"] += 1
            return None
        if spec.ack is not None:
            try:
                self._write(spec.ack)
            except DeviceUnavailable as error:
                self.broken(str(error))
        key = hex_bytes(frame.key)
        poll = self.settings.poll
        if poll is None or key != poll.idle_key:       # an idle answer is no key
            self.counts["frames"] += 1
            self.key(frame.address, key, at)
        return frame.address

    def _failed(self, error: Exception) -> str:
        return f"{self.settings.line.port} failed: {error} (cable or receiver unplugged?)"

    def _rejected(self, items) -> None:
        if items:
            self.rejected(len(items), items[0].reason)


def _close(port: serial.Serial | None) -> None:
    if port is None:
        return
    try:
        port.close()
    except Exception:                # closing a port that went away
        pass
