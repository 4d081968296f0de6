"""The real daemon as a subprocess: start, wait for /livez, read its CPU and memory, SIGTERM it."""

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


def _status_kib(pid: int) -> dict[str, int]:
    """The Vm* lines of /proc/PID/status, in KiB ({} once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Vm") and value.strip().endswith("kB"):
            out[key] = int(value.split()[0])
    return out


def _children(pid: int) -> list[int]:
    """Every process below `pid` (children, grandchildren, ...), from /proc/*/stat."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        ppid = int(text[text.rindex(")") + 2:].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


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
    def __init__(self, config: Path, port: int, log_path: Path,
                 env: dict[str, str] | None = None):
        self.config = config
        self.port = port
        self.log_path = log_path
        self.env = env              # added to this process's environment
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
        self.spawn()
        self.wait_for("/livez", timeout)

    def spawn(self) -> None:
        """Exec the daemon and return at once."""
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                self.command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
                env=None if self.env is None else {**os.environ, **self.env})
        finally:
            log.close()

    def wait_for(self, path: str, timeout: float = 30.0, every: float = 0.1) -> float:
        """Poll GET `path` until it answers 200; the time.monotonic() it did.
        RuntimeError if the daemon exits or the time runs out first."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {self.proc.returncode} while starting")
            try:
                with _NO_PROXY.open(self.base + path, timeout=1.0) as resp:
                    if resp.status == 200:
                        return time.monotonic()
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(every)
        raise RuntimeError(f"GET {path} did not answer within {timeout:.0f} s")

    def memory_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak resident) of the daemon and, summed, of its child
        processes (a voice worker), in KiB, from /proc."""
        own = _status_kib(self.pid)
        children = _children(self.pid)
        kids = [_status_kib(c) for c in children]
        return {"rss": own.get("VmRSS", 0), "hwm": own.get("VmHWM", 0),
                "children": len(children),
                "children_rss": sum(k.get("VmRSS", 0) for k in kids)}

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
