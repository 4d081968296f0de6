"""What both keypad links share: the reader thread, the key map, debounce, and handing presses on.

A keypad link reads on a thread of its own (keys come when people press them,
not when the supervisor polls), turns what it reads into (address, key code)
and calls `key`. That maps the address to its keypad and window and the code
to an action, drops a key its keypad sent last, again within `debounce_s` of
it (a held key repeats, a bouncing contact or an impatient thumb presses
twice: each acts once; another key in between is a new press), and
hands a `KeyPress` to the listener kioskd set with `listen`. Presses read
before there is a listener wait for it, a few at most.

Nothing a keypad sends can stop the reader: an unmapped address, an unknown
key or a malformed frame is counted (the counts show in `/devices`) and logged
once, not once per press, so a flood of garbage costs a line, not the journal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..base import DeviceUnavailable, Health, State
from . import Action, Settings

log = logging.getLogger("kioskd.devices")

PENDING = 32               # presses kept while nobody listens yet
REJECTED_LOG_S = 60.0      # malformed input is logged at most once this often
STOP_JOIN_S = 2.0


@dataclass(frozen=True)
class KeyPress:
    """A key that acts: which keypad, for which window, what to do."""

    device: str
    address: int | None           # None: a keyboard keypad
    window: str
    key: str                      # the code as devices.toml writes it: "01", "KEY_KP1"
    action: Action
    kind: str                     # "caller" or "rater"
    at: float                     # time.monotonic() it was read

    @property
    def keypad(self) -> str:
        """The keypad in a technician's words: "keypad 3 on keypads"."""
        where = f"keypad {self.address}" if self.address is not None else "keypad"
        return f"{where} on {self.device}"


Listener = Callable[[KeyPress], None]


class KeyReader:
    """The part of a keypad driver that turns keys into presses. Subclasses
    open their link, start `read` on the reader thread with `start_reading`,
    and call `key`, `rejected` and `broken` from it."""

    def __init__(self, device_id: str, settings: Settings, timeout: float):
        self.id = device_id
        self.settings = settings
        self.timeout = timeout
        self.counts: Counter[str] = Counter()
        self.last: dict[str, Any] | None = None       # the last key that acted
        self.failure: str | None = None               # why the reader stopped
        self._lock = threading.Lock()
        self._listener: Listener | None = None
        self._pending: deque[KeyPress] = deque(maxlen=PENDING)
        self._last_seen: dict[int | None, tuple[str, float]] = {}   # keypad -> its last key
        self._warned: set[tuple[Any, ...]] = set()
        self._rejected_logged_at = float("-inf")
        self._rejected_unlogged = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- for kioskd

    def listen(self, listener: Listener) -> None:
        """Hand every press to `listener` (called on the reader thread), starting
        with those read while nobody listened."""
        with self._lock:
            self._listener = listener
            waiting = list(self._pending)
            self._pending.clear()
        for press in waiting:
            self._hand(listener, press)

    # --- for the subclasses

    def start_reading(self, read: Callable[[], None]) -> None:
        self.failure = None
        self._stop.clear()
        self._thread = threading.Thread(target=read, name=f"keypad-{self.id}", daemon=True)
        self._thread.start()

    def stop_reading(self, release: Callable[[], None] = lambda: None) -> None:
        """Stop the reader thread (its reads wait a moment at most), then `release`
        the link: never closed under a read in progress."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_JOIN_S)
        release()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def broken(self, problem: str) -> None:
        """The link failed under the reader (unplugged): the next poll reports it."""
        if not self.stopping:
            self.failure = problem

    def check(self) -> None:
        """Raise DeviceUnavailable when the reader has stopped."""
        if self.failure is not None:
            raise DeviceUnavailable(self.failure)
        if self._thread is None or not self._thread.is_alive():
            raise DeviceUnavailable("not reading (closed)")

    def health(self) -> Health:
        self.check()
        return Health(State.READY, {"counts": dict(self.counts), "last_key": self.last})

    def heard(self, where: str) -> dict[str, Any]:
        """The self-test of keypads that take no answers: what was heard, for a
        technician pressing a key and watching `last_key`."""
        return {"answers": False, "listening": where, "last_key": self.last,
                "counts": dict(self.counts),
                "hint": "these keypads take no answers: press a key and read last_key"}

    def key(self, address: int | None, key: str, at: float) -> None:
        """A key read from the keypad at `address`: mapped, debounced, handed on."""
        keypad = self.settings.keypads.get(address)
        if keypad is None:
            self.counts["unmapped"] += 1
            self._once(("address", address), "%s: keypad address %s is not mapped to any "
                       "window; its keys are ignored (map it in [devices.%s.keypads] or "
                       "[devices.%s.raters])", self.id, address, self.id, self.id)
            return
        action = keypad.keys.get(key)
        if action is None:
            self.counts["unknown_keys"] += 1
            self._once(("key", address, key), "%s: key %s of keypad %s does nothing: it is "
                       "not in the keypad's key map", self.id, key, address)
            return
        seen = self._last_seen.get(address)
        self._last_seen[address] = (key, at)
        if seen is not None and seen[0] == key and at - seen[1] < self.settings.debounce_s:
            self.counts["debounced"] += 1
            return
        self.counts["presses"] += 1
        press = KeyPress(self.id, address, keypad.window, key, action, keypad.kind, at)
        self.last = {"address": address, "window": keypad.window, "key": key,
                     "action": str(action), "at": time.time()}
        with self._lock:
            listener = self._listener
            if listener is None:
                self._pending.append(press)
                return
        self._hand(listener, press)

    def rejected(self, count: int, reason: str) -> None:
        """`count` pieces of malformed input; the reason of the first logged at once,
        then how many more at most every REJECTED_LOG_S."""
        if not count:
            return
        self.counts["rejected"] += count
        self._rejected_unlogged += count
        now = time.monotonic()
        if now - self._rejected_logged_at >= REJECTED_LOG_S:
            more = self._rejected_unlogged - 1
            log.warning("%s: skipped malformed input: %s%s", self.id, reason,
                        f" (and {more} more since the last such line)" if more > 0 else "")
            self._rejected_logged_at = now
            self._rejected_unlogged = 0

    def _once(self, what: tuple[Any, ...], message: str, *args: Any) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning(message, *args)

    def _hand(self, listener: Listener, press: KeyPress) -> None:
        try:
            listener(press)
        except Exception:                     # kioskd's side: never the reader's end
            log.exception("%s: a key press could not be handed on", self.id)
