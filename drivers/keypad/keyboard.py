"""A USB keypad that types like a keyboard, read through evdev with an exclusive grab.

Many cheap caller keypads are USB keyboards with a few keys. Left to the
system, their keys would type into whatever has the focus (the kiosk's page);
grabbed (EVIOCGRAB), they reach kioskd alone. A key acts when it goes down;
the kernel's auto-repeat of a held key (value 2) never acts, and a second
press within `debounce_s` is dropped like a serial keypad's.

The device is opened by its path, best a stable one under
/dev/input/by-id/: unplugged, reads fail with ENODEV and the supervisor opens
the path again (with backoff) until the keypad is back.
"""

from __future__ import annotations

import errno
import logging
import select
import time
from typing import Any

from ..base import DeviceBusy, DeviceUnavailable, Health
from . import Settings
from .reader import KeyReader

log = logging.getLogger("kioskd.devices")

READ_S = 0.1               # the longest one wait for input lasts: a stop is seen this soon
KEY_DOWN, KEY_HELD = 1, 2


def open_input(path: str):
    """The evdev input device at `path` (tests put a fake in its place: see test_keypads.py)."""
    import evdev
    return evdev.InputDevice(path)


class KeyboardKeypad(KeyReader):
    """One keyboard keypad, for one window."""

    def __init__(self, device_id: str, settings: Settings, timeout: float):
        super().__init__(device_id, settings, timeout)
        self.device = None
        self.path = settings.input

    def open(self) -> None:
        if self.device is not None:
            return
        try:
            device = open_input(self.path)
        except OSError as error:
            raise _open_error(self.path, error) from None
        try:
            device.grab()
        except OSError as error:
            _close(device)
            if error.errno == errno.EBUSY:
                raise DeviceBusy(f"{self.path} is grabbed by another program (a second "
                                 "kioskd? the desktop's input method?)") from None
            raise _open_error(self.path, error) from None
        self.device = device
        self.start_reading(lambda: self._read(device))

    def identify(self) -> dict[str, Any]:
        keypad = self.settings.keypads[None]
        return {"input": self.path, "name": getattr(self.device, "name", None),
                "grabbed": True, "window": keypad.window, "debounce_s": self.settings.debounce_s,
                "keys": {key: str(action) for key, action in keypad.keys.items()}}

    def poll(self) -> Health:
        return self.health()

    def close(self) -> None:
        device, self.device = self.device, None
        self.stop_reading(lambda: _close(device))

    def self_test(self) -> dict[str, Any]:
        """A keyboard keypad has no display to test: what it sent (`heard`)."""
        return self.heard(self.path)

    def _read(self, device) -> None:
        """The reader thread: until close, or until the keypad is unplugged."""
        from evdev import ecodes

        while not self.stopping:
            try:
                ready, _, _ = select.select([device.fd], [], [], READ_S)
                if not ready:
                    continue
                events = list(device.read())
            except BlockingIOError:
                continue
            except (OSError, ValueError) as error:   # ENODEV: unplugged
                self.broken(f"{self.path} failed: {getattr(error, 'strerror', None) or error} "
                            "(keypad unplugged?)")
                return
            now = time.monotonic()
            for event in events:
                if event.type != ecodes.EV_KEY:
                    continue
                if event.value == KEY_HELD:
                    self.counts["repeats"] += 1
                elif event.value == KEY_DOWN:
                    self.key(None, self._name(event.code), now)

    def _name(self, code: int) -> str:
        """evdev's name of a key; of several names for one code, the one the key map uses."""
        from evdev import ecodes

        names = ecodes.KEY.get(code) or ecodes.BTN.get(code) or f"KEY_{code}"
        if isinstance(names, str):
            return names
        keys = self.settings.keypads[None].keys
        return next((name for name in names if name in keys), names[0])


def _open_error(path: str, error: OSError) -> DeviceUnavailable:
    if error.errno in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return DeviceUnavailable(f"no input device {path} (keypad unplugged?)")
    if error.errno in (errno.EACCES, errno.EPERM):
        return DeviceUnavailable(f"permission denied on {path}: add kioskd's user to the "
                                 "input group")
    return DeviceUnavailable(f"cannot open {path}: {error.strerror or error}")


def _close(device) -> None:
    if device is None:
        return
    for step in ("ungrab", "close"):
        try:
            getattr(device, step)()
        except Exception:           # a device that went away
            pass
