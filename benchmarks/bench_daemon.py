"""The real daemon as a subprocess: start, wait for /livez, read its CPU, SIGTERM it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # 127.0.0.1 only


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


REPO = Path(__file__).resolve().parent.parent     # the checkout the daemon runs from


def venv_python() -> str:
    candidate = REPO / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


@dataclass
class CpuSample:
    """CPU seconds used so far by a process: its main thread (the event loop) and the rest."""

    at: float
    main: float
    others: float

    @property
    def total(self) -> float:
        return self.main + self.others


def machine_busy_seconds() -> float | None:
    """CPU seconds every process on the machine has used (all cores), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def _task_seconds(stat_path: Path) -> float:
    text = stat_path.read_text()
    fields = text[text.rindex(")") + 2:].split()   # after "pid (comm) "
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / CLK_TCK


class ApiClient:
    """One client of the daemon's API on one keep-alive HTTP connection."""

    def __init__(self, port: int, timeout: float = 30.0):
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def request(self, method: str, path: str, body: dict | None = None) -> Any:
        """The JSON answer; RuntimeError for a status of 300 or more."""
        payload = json.dumps(body).encode() if body is not None else None
        self.http.request(method, path, payload, {"Content-Type": "application/json"})
        response = self.http.getresponse()
        data = json.loads(response.read() or b"null")
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {data}")
        return data


class Daemon:
    def __init__(self, config: Path, port: int, log_path: Path):
        self.config = config
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.base = f"http://127.0.0.1:{port}"

    @property
    def command(self) -> list[str]:
        # the daemon's own log level (KIOSKD_LOG_LEVEL, else info): what a hall runs
        return [venv_python(), "-m", "kioskd.cli", "run", "-c", str(self.config),
                "--port", str(self.port)]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until GET /livez answers 200; RuntimeError if it does not."""
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                self.command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {self.proc.returncode} while starting")
            try:
                with _NO_PROXY.open(self.base + "/livez", timeout=1.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"GET /livez did not answer within {timeout:.0f} s")

    def cpu(self) -> CpuSample | None:
        """Main-thread and other-thread CPU seconds, from /proc/<pid>/task/*/stat."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        main = others = 0.0
        try:
            for task in Path(f"/proc/{self.pid}/task").iterdir():
                try:
                    seconds = _task_seconds(task / "stat")
                except (FileNotFoundError, ProcessLookupError, ValueError):
                    continue    # a thread that just ended
                if task.name == str(self.pid):
                    main += seconds
                else:
                    others += seconds
        except FileNotFoundError:
            return None
        return CpuSample(time.perf_counter(), main, others)

    def threads(self) -> int:
        try:
            return len(list(Path(f"/proc/{self.pid}/task").iterdir()))
        except FileNotFoundError:
            return 0

    def stop(self, timeout: float = 15.0) -> tuple[int | None, float]:
        """SIGTERM; (exit code or None if it had to be killed, seconds it took)."""
        if self.proc is None:
            return None, 0.0
        if self.proc.poll() is not None:
            return self.proc.returncode, 0.0
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None, time.monotonic() - started
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
