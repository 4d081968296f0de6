"""Emulated keypads: the far end of a keypad bus on a pty, pressing keys and reading what kioskd answers.

The keypads of one device hang off one pseudo-terminal linked at the device's
`port`, as they hang off one RS-485 cable or one receiver. `press` sends the
key frame a keypad at that address sends, built with the driver's own
`FrameSpec`; `send` puts any bytes on the line (garbage, a truncated frame).
What kioskd answers is decoded with the answer frame into a model a person
would read off the keypads: "keypad 3 shows A012", "keypad 3 beeped twice".

On a polled bus (`[devices.ID.poll]`) a keypad speaks only when asked: `press`
keeps the key until the keypad's next poll, which it answers with it (or with
the idle key when nothing waits), a gap after the poll's last byte; a keypad in
`silent` answers nothing, as one unplugged from the bus.

`kioskd emulate keypad` runs these keypads standalone for a technician, who
types presses on its standard input.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..frames import Frame, FrameDecoder, Rejected, hex_bytes
from ..ptyport import PtyPort
from . import Settings


@dataclass
class KeypadModel:
    """What one emulated keypad's display and buzzer did."""

    address: int
    shows: str = ""               # its display
    beeps: int = 0
    polls: int = 0                # polls it was asked (a polled bus)
    # every text shown, oldest first, with time.monotonic() its frame's last byte was on the wire
    answers: list[tuple[str, float]] = field(default_factory=list)


class EmulatedKeypads:
    """The keypads of one keypad device, on one pty."""

    def __init__(self, device_id: str, settings: Settings,
                 on_answer: Callable[[KeypadModel, str], None] | None = None):
        self.id = device_id
        self.settings = settings
        self.line = settings.line
        self.port = PtyPort(self.line, self._receive, link=self.line.port,
                            name=f"emulated keypads on {self.line.port}")
        self.changed = threading.Condition()
        self.keypads: dict[int, KeypadModel] = {}
        self.rejected: list[Rejected] = []
        self.acks = 0
        self.sent = 0                                  # frames pressed
        self.on_answer = on_answer                     # called with (keypad, "shows A012" | "beep")
        self.silent: set[int] = set()                  # polled keypads that answer nothing
        self._waiting: dict[int, deque[str]] = {}      # polled: keys pressed, not yet asked for
        answer = settings.answer
        self._decoder = FrameDecoder(answer.frame) if answer else None

    def start(self) -> None:
        self.port.start()

    def close(self) -> None:
        self.port.close()

    def pull(self) -> None:
        """The receiver unplugged: the pty goes away."""
        self.port.pull()

    def plug(self) -> None:
        self.port.plug()

    # --- pressing

    def frame(self, address: int, key: str) -> bytes:
        """The key frame the keypad at `address` sends for `key` ("01")."""
        return self.settings.frame.encode(address, key=bytes.fromhex(key))

    def key_of(self, address: int, action: str) -> str:
        """The code of the key that does `action` on the keypad at `address`."""
        keypad = self.settings.keypads.get(address)
        if keypad is None:
            raise KeyError(f"no keypad at address {address}")
        for key, mapped in keypad.keys.items():
            if str(mapped) == action:
                return key
        raise KeyError(f"keypad {address} has no key for {action} "
                       f"(its keys: {', '.join(map(str, keypad.keys.values()))})")

    def press(self, address: int, key: str, *, times: int = 1) -> float:
        """The keypad at `address` sends `key` ("01"), `times` frames in a row (a held
        key); when the last byte was on the wire."""
        if self.settings.poll is not None:             # kept until the keypad is asked
            with self.changed:
                self._waiting.setdefault(address, deque()).extend([key] * times)
                self.sent += times
            return time.monotonic()
        frame = self.frame(address, key)
        end = self.send(frame * times)
        with self.changed:
            self.sent += times
        return end

    def press_action(self, address: int, action: str, *, times: int = 1) -> float:
        return self.press(address, self.key_of(address, action), times=times)

    def send(self, data: bytes) -> float:
        """Any bytes onto the line, as they arrive at the daemon: handed over when
        their last byte would have arrived, which is when this returns (that time)."""
        self.port.send(data, after=time.monotonic())
        return time.monotonic()

    # --- the model

    def keypad(self, address: int) -> KeypadModel:
        with self.changed:
            return self.keypads.setdefault(address, KeypadModel(address))

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str = "") -> None:
        with self.changed:
            if not self.changed.wait_for(condition, timeout):
                raise TimeoutError(f"emulated keypads on {self.line.port}: no "
                                   f"{what or 'change'} after {timeout:g} s")

    def detail(self) -> dict[str, Any]:
        with self.changed:
            return {"pty": self.port.path, "plugged": self.port.plugged, "pressed": self.sent,
                    "acks": self.acks, "rejected": len(self.rejected),
                    "keypads": {str(k.address): {"shows": k.shows, "beeps": k.beeps,
                                                 "polls": k.polls}
                                for k in sorted(self.keypads.values(),
                                                key=lambda k: k.address)}}

    # --- the PtyPort's thread

    def _receive(self, data: bytes, wire_end: float) -> None:
        heard: list[tuple[KeypadModel, str]] = []
        replies: list[tuple[bytes, float]] = []
        ack = self.settings.frame.ack
        with self.changed:
            if self._decoder is None:
                items: list[Frame | Rejected] = [Rejected("not an answer", data)]
            else:
                items = self._decoder.feed(data)
            for item in items:
                if isinstance(item, Rejected):
                    if ack and item.raw.replace(ack, b"") == b"":
                        self.acks += item.raw.count(ack)
                    else:
                        self.rejected.append(item)
                    continue
                end = wire_end - self.line.wire_s(self._decoder.received - item.end)
                poll = self.settings.poll
                if poll is not None and item.command == poll.command:
                    reply = self._asked(item.address)
                    if reply is not None:
                        replies.append((reply, end + self.line.gap_s))
                    continue
                said = self._take(item, end)
                if said is not None:
                    heard.append(said)
            self.changed.notify_all()
        for reply, after in replies:
            self.port.send(reply, after=after)
        if self.on_answer is not None:
            for keypad, what in heard:
                self.on_answer(keypad, what)

    def _asked(self, address: int) -> bytes | None:
        """A poll to `address`: the key frame it answers, None when nobody answers."""
        if address not in self.settings.keypads or address in self.silent:
            return None
        keypad = self.keypads.setdefault(address, KeypadModel(address))
        keypad.polls += 1
        waiting = self._waiting.get(address)
        key = waiting.popleft() if waiting else self.settings.poll.idle_key
        return None if key is None else self.frame(address, key)

    def _take(self, frame: Frame, end: float) -> tuple[KeypadModel, str] | None:
        answer = self.settings.answer
        keypad = self.keypads.setdefault(frame.address, KeypadModel(frame.address))
        if frame.command == answer.show:
            keypad.shows = answer.frame.text(frame)
            keypad.answers.append((keypad.shows, end))
            return keypad, f"shows {keypad.shows}"
        if answer.beep is not None and frame.command == answer.beep:
            keypad.beeps += 1
            return keypad, "beeps"
        self.rejected.append(Rejected(f"unknown command {hex_bytes(frame.command)} to keypad "
                                      f"{frame.address}", frame.raw))
        return None
