"""kioskd speaks systemd's notify protocol: READY=1 once the store is open and the
API listens, WATCHDOG=1 from its event loop, STATUS= with the devices not ready,
STOPPING=1 at SIGTERM; nothing at all outside systemd.

A real AF_UNIX datagram socket stands in for systemd's (the protocol is one
datagram per message, sd_notify(3)); the daemon is the real `kioskd run` process.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from kioskd.systemd import Notifier

from daemon import Daemon, hall_toml, hall_with_a_dead_printer


WATCHDOG_USEC = 400_000          # a heartbeat every 0.2 s
# systemd sets WATCHDOG_PID to the service's main pid; a shell exporting its own pid
# before exec-ing kioskd does the same
AS_MAIN_PID = ["sh", "-c", 'export WATCHDOG_PID=$$; exec "$0" "$@"']


class NotifySocket:
    """systemd's end: a datagram socket that keeps what it is told, in order."""

    def __init__(self, address: str | bytes):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.heard: list[dict[str, str]] = []

    def next(self, timeout: float = 20) -> dict[str, str]:
        """The next message, as its assignments (READY=1 STATUS=...)."""
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096).decode()
        message = dict(line.split("=", 1) for line in data.splitlines())
        self.heard.append(message)
        return message

    def until(self, key: str, value: str, count: int = 1, timeout: float = 20) -> None:
        """Listen until `count` messages heard so far said `key`=`value`."""
        deadline = time.monotonic() + timeout
        while sum(m.get(key) == value for m in self.heard) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"not {count} × {key}={value} within {timeout} s; "
                                     f"heard {self.heard[-5:]}")
            try:
                self.next(left)
            except TimeoutError:
                pass

    def drain(self) -> None:
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(4096)
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)

    def close(self) -> None:
        self.sock.close()


def test_ready_when_serving_then_heartbeats_and_status_then_stopping(tmp_path: Path):
    systemd = NotifySocket(str(tmp_path / "notify.sock"))
    daemon = Daemon(hall_with_a_dead_printer(tmp_path), launcher=AS_MAIN_PID, env={
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    try:
        daemon.launch()
        systemd.until("READY", "1", timeout=30)
        # at READY the store is open and the API answers: no request has to wait
        assert httpx.get(f"{daemon.url}/healthz", timeout=2).json()["status"] == "ok"
        assert httpx.get(f"{daemon.url}/api/v1/services", timeout=2).status_code == 200
        systemd.until("WATCHDOG", "1", count=5)           # every 0.2 s, from the loop
        # `systemctl status` shows the dead printer once the supervisor gives up on it
        systemd.until("STATUS", "1 devices: printer_1 offline")
        statuses = [m["STATUS"] for m in systemd.heard if "STATUS" in m]
        assert statuses[0] == "starting: opening the store"       # the heartbeat's first
        ready_at = systemd.heard.index({"READY": "1"})
        assert all(m.get("WATCHDOG") == "1" or "STATUS" in m for m in systemd.heard[:ready_at])
        assert statuses[1].startswith("1 devices: ")               # at READY
        assert len(statuses) == len(set(statuses))        # said when it changes, only

        assert daemon.stop() == 0
        systemd.until("STOPPING", "1", timeout=5)
    finally:
        daemon.kill()
        systemd.close()


def test_an_abstract_socket_works_too(tmp_path: Path):
    hall = tmp_path / "devices.toml"
    hall.write_text(hall_toml(1))
    address = f"@kioskd-test-{uuid.uuid4().hex}"
    systemd = NotifySocket(b"\0" + address[1:].encode())
    daemon = Daemon(hall, env={"NOTIFY_SOCKET": address})
    try:
        daemon.launch()
        assert systemd.next(timeout=30).get("READY") == "1", daemon.output()
        assert daemon.stop() == 0
        systemd.until("STOPPING", "1", timeout=5)
    finally:
        daemon.kill()
        systemd.close()


def test_no_heartbeat_without_a_watchdog_or_for_another_process(tmp_path: Path):
    systemd = NotifySocket(str(tmp_path / "notify.sock"))
    try:
        for environ in ({"NOTIFY_SOCKET": str(tmp_path / "notify.sock")},
                        {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
                         "WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getppid())},
                        {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
                         "WATCHDOG_USEC": "0"}):
            notifier = Notifier(environ)
            assert notifier.watchdog_s is None
            asyncio.run(asyncio.wait_for(notifier.keep_alive(), 1))     # returns at once
            notifier.notify("READY=1")
            assert systemd.next(timeout=2) == {"READY": "1"}           # but notifies
            notifier.close()
    finally:
        systemd.close()


def test_outside_systemd_every_call_does_nothing():
    notifier = Notifier({})
    notifier.notify("READY=1")
    notifier.status("anything")
    asyncio.run(asyncio.wait_for(notifier.keep_alive(), 1))
    notifier.close()
    assert notifier.address is None and notifier.watchdog_s is None


def test_a_hung_event_loop_stops_the_heartbeat(tmp_path: Path):
    """The heartbeat comes from the loop itself: while the loop is blocked, systemd
    hears nothing (and restarts the daemon after WatchdogSec); once it runs again,
    so does the heartbeat."""
    systemd = NotifySocket(str(tmp_path / "notify.sock"))
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
                         "WATCHDOG_USEC": "100000", "WATCHDOG_PID": str(os.getpid())})
    assert notifier.watchdog_s == 0.1
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(notifier.keep_alive(), loop)
    entered, release = threading.Event(), threading.Event()

    def hang() -> None:                      # a handler stuck in a blocking call
        entered.set()
        release.wait(30)

    try:
        assert [systemd.next(timeout=2) for _ in range(3)] == [{"WATCHDOG": "1"}] * 3
        loop.call_soon_threadsafe(hang)
        assert entered.wait(5)
        systemd.drain()                      # what was sent before the loop hung
        with pytest.raises(TimeoutError):
            systemd.next(timeout=10 * notifier.watchdog_s)
        release.set()
        assert systemd.next(timeout=2) == {"WATCHDOG": "1"}
    finally:
        release.set()

        async def end_heartbeat() -> None:
            beating = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in beating:
                task.cancel()
            await asyncio.gather(*beating, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(end_heartbeat(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
        notifier.close()
        systemd.close()
