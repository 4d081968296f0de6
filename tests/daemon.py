"""Run the real `kioskd run` process for tests: start, wait for it, stop or kill it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HALL_TOML = """\
[hall]
name = "进程测试大厅"
timezone = "Asia/Shanghai"
data_dir = "var"

[server]
host = "127.0.0.1"
port = 8080

[limits]                  # these tests load the hall faster than its kiosks ever could
issue_per_terminal = 0
issue_per_address = 0

[[services]]
id = "property"
name = "不动产登记"
prefix = "A"
code = "640100-001-01"

[[services]]
id = "business"
name = "企业开办"
prefix = "B"
code = "640100-002-01"

{windows}
"""


def hall_toml(windows: int = 4, boards: dict[str, str] | None = None,
              instances: dict[str, str] | None = None) -> str:
    """Two services and `windows` windows, odd ones preferring property; `boards`
    names a window's board device ({"1": "board_1"}), which the caller adds;
    `instances` the daemon a window is on ({"3": "west"})."""
    blocks = []
    for n in range(1, windows + 1):
        services = '["property", "business"]' if n % 2 else '["business", "property"]'
        board = f'board = "{boards[str(n)]}"\n' if boards and str(n) in boards else ""
        on = f'instance = "{instances[str(n)]}"\n' if instances and str(n) in instances else ""
        blocks.append(f'[[windows]]\nid = "{n}"\nname = "{n}号窗口"\nservices = {services}\n'
                      + board + on)
    return HALL_TOML.format(windows="\n".join(blocks))


DEAD_PRINTER = """
[devices.printer_1]
driver = "escpos"
connection = "tcp://127.0.0.1:{port}"
"""


def hall_with_a_dead_printer(directory: Path, windows: int = 2) -> Path:
    """A devices.toml in `directory`: a hall whose one printer is a TCP address nobody
    listens on, so it goes offline and stays there."""
    path = directory / "devices.toml"
    path.write_text(hall_toml(windows) + DEAD_PRINTER.format(port=free_port()))
    return path


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` different loopback ports free now (held open together while chosen,
    so they differ; another process may still take one before it is used)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class PortTaken(RuntimeError):
    """The daemon could not bind its port: another process took it after we chose it."""


class Daemon:
    """One `kioskd run` subprocess on a free loopback port."""

    def __init__(self, config: Path, port: int | None = None, env: dict[str, str] | None = None,
                 launcher: list[str] | None = None, log_level: str = "info"):
        """`env` is added to ours; `launcher` comes before the command (e.g. a shell
        that exports the process's own pid, as systemd's WATCHDOG_PID)."""
        self.config = config
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = config.parent / f"kioskd-{self.port}.log"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.launcher = launcher or []
        self.log_level = log_level

    def launch(self) -> Daemon:
        """Start the process and return at once."""
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [*self.launcher, sys.executable, "-m", "kioskd.cli", "run", "-c", str(self.config),
             "--port", str(self.port), "--log-level", self.log_level],
            stdout=out, stderr=subprocess.STDOUT, env=self.env)
        out.close()
        return self

    def start(self, timeout: float = 20) -> Daemon:
        self.launch()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                output = self.output()
                kind = PortTaken if "address already in use" in output else RuntimeError
                raise kind(f"kioskd exited with {self.proc.returncode}:\n{output}")
            try:
                if httpx.get(f"{self.url}/livez", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)      # a poll interval, bounded by the deadline above
        self.kill()
        raise TimeoutError(f"kioskd did not answer within {timeout}s:\n{self.output()}")

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, as systemd stops it; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, like a power cut for the process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
