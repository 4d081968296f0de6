"""The far end of a serial line, on a pseudo-terminal: where an emulated board listens.

A driver opens the pty's path exactly as it opens /dev/ttyUSB0, so the demo
and the tests run the real driver over a real tty. A pty moves bytes at once,
so the port models the wire: a chunk written at time t finishes arriving at
max(t, the end of the previous bytes) + its size in character times at the
line's baudrate, and a reply is handed over only when it would have finished
arriving. `wire_end` of a chunk is therefore when its last byte was on the wire.

`link` gives the pty a stable path (a symlink, as udev gives a USB adapter a
stable name): a cable pulled and plugged back (`pull`, `plug`) makes a new pty
behind the same path, as a re-plugged adapter does.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

from .serialbus import SerialLine

log = logging.getLogger("kioskd.emulators")

# (data, wire_end): bytes as they came, and time.monotonic() their last byte was on the wire
Receiver = Callable[[bytes, float], None]


class PtyPort:
    def __init__(self, line: SerialLine, receive: Receiver, *, link: str | Path | None = None,
                 name: str = "emulated port"):
        self.line = line
        self.receive = receive
        self.link = Path(link) if link else None
        self.name = name
        self.path: str | None = None         # the pty's own /dev/pts/N
        self.wire_free_at = 0.0
        self.received_bytes = 0
        self._fds: tuple[int, int] | None = None     # (master, slave)
        self._wake_read, self._wake_write = os.pipe()
        self._lock = threading.Lock()                # guards _fds against pull/plug
        self._selecting: tuple[int, int] | None = None   # the fds the serve thread selects on
        self._selected = threading.Condition(self._lock)  # ... notified when it stops
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def address(self) -> str:
        """What a driver opens: the stable link, or the pty itself."""
        return str(self.link) if self.link else (self.path or "")

    def start(self) -> str:
        self.plug()
        self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
        self._thread.start()
        return self.address

    def plug(self) -> None:
        """Connect (again): a fresh pty behind the same link."""
        with self._lock:
            if self._fds is not None:
                return
            master, slave = os.openpty()
            tty.setraw(slave)
            tty.setraw(master)
            os.set_blocking(master, False)
            self._fds = (master, slave)
            self.path = os.ttyname(slave)
            if self.link is not None:
                self.link.parent.mkdir(parents=True, exist_ok=True)
                temporary = self.link.with_name(self.link.name + ".new")
                temporary.unlink(missing_ok=True)
                temporary.symlink_to(self.path)
                temporary.replace(self.link)
        self._wake()

    def pull(self) -> None:
        """The cable pulled: the pty goes away, the driver's reads and writes fail."""
        with self._lock:
            if self._fds is None:
                return
            fds = self._fds
            master, slave = fds
            self._fds = None
            if self.link is not None:
                self.link.unlink(missing_ok=True)
            # A select() on the master holds it open: closed under it, the kernel
            # hangs the driver's end up only when that select returns.
            self._wake()
            self._selected.wait_for(lambda: self._selecting is not fds, timeout=1)
            os.close(master)
            os.close(slave)

    @property
    def plugged(self) -> bool:
        return self._fds is not None

    def send(self, data: bytes, *, after: float) -> None:
        """Answer `data`, starting `after` (a wire_end plus the device's turnaround):
        handed over when its last byte would have arrived."""
        start = max(after, self.wire_free_at)
        end = start + self.line.wire_s(len(data))
        self.wire_free_at = end
        delay = end - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        with self._lock:
            if self._fds is None:
                return
            try:
                os.write(self._fds[0], data)
            except OSError:
                log.debug("%s: nobody reads the pty; answer dropped", self.name)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.pull()
        self._wake()                  # pull() wakes nobody when the cable was already out
        if self._thread is not None:
            self._thread.join(timeout=5)
        os.close(self._wake_read)
        os.close(self._wake_write)

    def _wake(self) -> None:
        try:
            os.write(self._wake_write, b"!")
        except OSError:
            pass

    def _serve(self) -> None:
        while not self._closed:
            with self._lock:
                fds = self._selecting = self._fds
            watched = [self._wake_read] + ([fds[0]] if fds else [])
            try:
                ready, _, _ = select.select(watched, [], [])
            except (OSError, ValueError):     # the master closed under it (pull timed out)
                continue
            finally:
                with self._lock:
                    self._selecting = None
                    self._selected.notify_all()
            if self._wake_read in ready:
                os.read(self._wake_read, 4096)
                continue
            if fds is None:
                continue
            with self._lock:                  # pull() may not close the master under the read
                if fds is not self._fds:
                    continue
                try:
                    data = os.read(fds[0], 65536)
                except BlockingIOError:
                    continue
                except OSError:               # EIO: the driver's end is not open right now
                    data = None
            if data is None:
                time.sleep(0.01)              # the master stays readable until it is; don't spin
                continue
            if not data:
                continue
            now = time.monotonic()
            start = max(now, self.wire_free_at)
            self.wire_free_at = start + self.line.wire_s(len(data))
            self.received_bytes += len(data)
            try:
                self.receive(data, self.wire_free_at)
            except Exception:
                log.exception("%s: failed on %d bytes", self.name, len(data))
