#!/usr/bin/env python3
"""Start-up time: from exec of `kioskd run` to GET /healthz answering, and to READY=1.

    .venv/bin/python benchmarks/startup.py [--starts 5]          (part of: make bench)

Two halls: the demo hall (`devices.toml` as shipped, on free ports: its emulated
printer, boards and keypads, the voice's worker process), and a hall of 150
windows and 10 services with no devices. Each is started once unmeasured (the
store is created, the OS caches the code), then `--starts` times on that store,
as a hall's server restarts: from just before the exec to the first 200 from
GET /healthz (polled every 5 ms; it answers once the store does) and to the
READY=1 the daemon sends systemd (a notify socket of this process's own, as
NOTIFY_SOCKET). Each start ends with SIGTERM. Medians are printed, with the floor
the daemon cannot beat: the same interpreter importing kioskd's modules and exiting.
Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_daemon import REPO, Daemon, free_port, venv_python
from bench_hall import big_hall_toml
from bench_results import record

IMPORTS = "import kioskd.cli, kioskd.app"
RSS = ("import re; print(re.search(r'VmRSS:\\s+(\\d+)', "
       "open('/proc/self/status').read()).group(1))")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def demo_toml(port: int) -> str:
    """The shipped demo hall on free ports (its paths are relative to the file)."""
    text = (REPO / "devices.toml").read_text(encoding="utf-8")
    text, servers = re.subn(r"(?m)^port = 8080$", f"port = {port}", text)
    text, printers = re.subn(r"tcp://127\.0\.0\.1:9100", f"tcp://127.0.0.1:{free_port()}", text)
    if servers != 1 or printers != 1:
        raise RuntimeError("devices.toml changed: its port 8080 or printer at :9100 not found")
    # the demo's issues in memory.py all come from one address
    text, limits = re.subn(r"(?m)^(issue_per_terminal|issue_per_address) = \d+", r"\1 = 0", text)
    if limits != 2:
        raise RuntimeError("devices.toml changed: its [limits] issue_per_* not found")
    return text


class NotifySocket:
    """systemd's side of sd_notify: when READY=1 came."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.ready_at: float | None = None
        self.got = threading.Event()
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            if b"READY=1" in data.split(b"\n") and not self.got.is_set():
                self.ready_at = time.monotonic()
                self.got.set()

    def reset(self) -> None:
        self.ready_at = None
        self.got.clear()

    def close(self) -> None:
        self.sock.close()


def one_start(daemon: Daemon, notify: NotifySocket) -> tuple[float, float | None]:
    """(exec → /healthz, exec → READY=1) in seconds; stops the daemon after."""
    notify.reset()
    began = time.monotonic()
    daemon.spawn()
    try:
        healthy = daemon.wait_for("/healthz", 120, every=0.005) - began
        ready = notify.ready_at - began if notify.got.wait(30) else None
    finally:
        code, _ = daemon.stop(20)
    if code != 0:
        raise RuntimeError(f"the daemon exited with {code} after SIGTERM:\n{daemon.log_tail()}")
    return healthy, ready


def starts(directory: Path, text_for_port, count: int) -> dict:
    """One unmeasured start, then `count` measured ones, of the hall `text_for_port(port)`."""
    directory.mkdir()
    port = free_port()
    config = directory / "devices.toml"
    config.write_text(text_for_port(port), encoding="utf-8")
    notify = NotifySocket(directory / "notify.sock")
    daemon = Daemon(config, port, directory / "daemon.log",
                    env={"NOTIFY_SOCKET": str(notify.path)})
    try:
        first = one_start(daemon, notify)
        healthz, ready = [], []
        for _ in range(count):
            h, r = one_start(daemon, notify)
            healthz.append(h)
            if r is not None:
                ready.append(r)
    finally:
        daemon.kill()
        notify.close()
    return {"first_healthz_s": first[0], "healthz_s": healthz, "ready_s": ready,
            "healthz_median_s": statistics.median(healthz),
            "ready_median_s": statistics.median(ready) if ready else None}


def imports_alone(count: int) -> dict:
    """The floor: the daemon's interpreter importing kioskd and exiting (median seconds),
    and what that leaves resident (KiB)."""
    times = []
    for _ in range(count + 1):
        began = time.monotonic()
        subprocess.run([venv_python(), "-c", IMPORTS], cwd=REPO, check=True)
        times.append(time.monotonic() - began)
    rss = subprocess.run([venv_python(), "-c", f"{IMPORTS}; {RSS}"], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    return {"seconds": statistics.median(times[1:]), "rss_kib": int(rss)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=5, help="measured starts per hall")
    parser.add_argument("--windows", type=int, default=150)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kioskd-bench-startup-") as tmp:
        floor = imports_alone(args.starts)
        log(f"the demo hall: {args.starts + 1} starts")
        demo = starts(Path(tmp) / "demo", demo_toml, args.starts)
        log(f"{args.windows} windows: {args.starts + 1} starts")
        big = starts(Path(tmp) / "big", lambda port: big_hall_toml(port, args.windows),
                     args.starts)

    def line(label: str, f: dict) -> None:
        ready = "—" if f["ready_median_s"] is None else f"{f['ready_median_s'] * 1000:6.0f} ms"
        print(f"  {label:<22} /healthz {f['healthz_median_s'] * 1000:6.0f} ms   READY=1 {ready}"
              f"   (first start, new store: /healthz {f['first_healthz_s'] * 1000:.0f} ms)")
    print(f"\nkioskd start-up: exec → answering, median of {args.starts} starts on an existing "
          "store")
    line("demo hall", demo)
    line(f"{args.windows} windows", big)
    print(f"  floor: the interpreter importing kioskd and exiting  "
          f"{floor['seconds'] * 1000:.0f} ms")
    record("startup", {"starts": args.starts, "windows": args.windows, "demo": demo, "big": big,
                       "imports_s": floor["seconds"], "imports_rss_kib": floor["rss_kib"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
