"""systemd's notify protocol (sd_notify(3)), spoken by kioskd itself.

`READY=1` once the store is open and the API listens, `WATCHDOG=1` from the event
loop every half `WatchdogSec` (a loop that hangs stops the heartbeat, and systemd
restarts the daemon), `STATUS=` with what `systemctl status` should show, and
`STOPPING=1`. The protocol is one datagram per message on the AF_UNIX socket named
by `$NOTIFY_SOCKET`; without it (outside systemd) every call does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger("kioskd.systemd")


class Notifier:
    """The link to systemd's notify socket, opened once; a no-op without one."""

    def __init__(self, environ: dict[str, str] | None = None):
        environ = os.environ if environ is None else environ
        self.address = _address(environ.get("NOTIFY_SOCKET", ""))
        self.watchdog_s = _watchdog_interval(environ)
        self._sock: socket.socket | None = None
        self._status = ""
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)     # a full socket drops a message, never waits

    def notify(self, *lines: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            log.warning("systemd: notify %s failed: %s", lines[0].split("=")[0], exc)

    def status(self, text: str) -> None:
        """STATUS=text, sent only when it changed."""
        if text != self._status:
            self._status = text
            self.notify(f"STATUS={text}")

    async def keep_alive(self, status: Callable[[], str] | None = None) -> None:
        """Send WATCHDOG=1 (and the status, when it changed) every half interval,
        from the event loop itself, until cancelled. Returns at once when systemd
        asked for no watchdog."""
        if self._sock is None or self.watchdog_s is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            if status is not None:
                self.status(status())
            await asyncio.sleep(self.watchdog_s / 2)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):                 # an abstract socket
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    log.warning("systemd: NOTIFY_SOCKET %r is neither a path nor abstract; not notifying",
                value)
    return None


def _watchdog_interval(environ: dict[str, str]) -> float | None:
    """WatchdogSec in seconds when it is meant for this process (sd_watchdog_enabled)."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None                           # meant for another process of the unit
    return int(usec) / 1_000_000
