#!/usr/bin/env python3
"""Ticket printing benchmark: the real daemon printing on an emulated printer over TCP.

    .venv/bin/python benchmarks/printing.py          (part of: make bench)

Starts `kioskd run` on a throw-away hall whose kiosk prints on an emulated
ESC/POS printer listening on loopback TCP in this process, then measures, one
kiosk pressing one button after another:

1. issue → last byte at the printer: from sending POST /tickets to the moment
   the emulated printer has the job's cut (its monotonic clock is this
   process's), p50/p99; and the issue's answer time with and without printing;
2. how far issue latency moves while the printer is silent: the first issue
   after it falls silent (the supervisor has not noticed yet: it costs the
   printer's timeout), then issues while it is known offline.

Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench_daemon import ApiClient, Daemon, free_port
from bench_hall import devices_toml
from bench_results import record
from bench_stats import percentile

from drivers.escpos.emulator import EmulatedPrinter
from drivers.escpos.profiles import PROFILES

PRINTER_TIMEOUT = 1.0    # seconds: what a silent printer may cost one issue


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Kiosk(ApiClient):
    """One kiosk on one keep-alive HTTP connection."""

    def issue(self, terminal: bool) -> tuple[float, float, dict]:
        """(sent at, answered at, ticket) in time.monotonic() seconds."""
        body = {"service": "property", "terminal": "kiosk_1"} if terminal else {"service": "property"}
        sent = time.monotonic()
        ticket = self.request("POST", "/api/v1/tickets", body)
        return sent, time.monotonic(), ticket

    def until(self, state: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.request("GET", "/api/v1/devices/printer_1")["state"] != state:
            if time.monotonic() > deadline:
                raise RuntimeError(f"printer_1 did not become {state} within {timeout:.0f} s")
            time.sleep(0.05)


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    return (f"p50 {percentile(ordered, 50) * 1000:6.2f} ms   p99 {percentile(ordered, 99) * 1000:6.2f} ms"
            f"   (n={len(values)})")


def figures(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"p50_ms": percentile(ordered, 50) * 1000, "p99_ms": percentile(ordered, 99) * 1000,
            "n": len(values)}


def hall_with_printer(directory: Path, port: int, printer_port: int) -> Path:
    text = devices_toml(port) + f"""
[devices.printer_1]
driver = "escpos"
connection = "tcp://127.0.0.1:{printer_port}"
timeout = {PRINTER_TIMEOUT}
poll_interval = 2

[devices.kiosk_1]
driver = "terminal"
printer = "printer_1"
"""
    path = directory / "devices.toml"
    path.write_text(text, encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=300, help="issues per measurement")
    args = parser.parse_args()
    n = args.tickets

    printer = EmulatedPrinter(encoding="gb18030", profile=PROFILES["80mm"])   # no jobs folder
    printer_port = printer.listen_tcp("127.0.0.1", 0)
    with tempfile.TemporaryDirectory(prefix="kioskd-bench-print-") as tmp:
        port = free_port()
        daemon = Daemon(hall_with_printer(Path(tmp), port, printer_port), port,
                        Path(tmp) / "daemon.log")
        daemon.start()
        try:
            kiosk = Kiosk(port)
            kiosk.until("ready")
            for _ in range(20):                                   # warm up
                kiosk.issue(terminal=True)
                kiosk.issue(terminal=False)
            printer.wait_for_tickets(20, timeout=30)

            to_paper, answered_printed, answered_plain = [], [], []
            for i in range(n):
                sent, answered, ticket = kiosk.issue(terminal=True)
                assert ticket["print"]["status"] == "printed", ticket["print"]
                paper = printer.wait_for_tickets(21 + i, timeout=30)[-1]
                to_paper.append(paper.completed_at - sent)
                answered_printed.append(answered - sent)
            for _ in range(n):
                sent, answered, _ticket = kiosk.issue(terminal=False)
                answered_plain.append(answered - sent)

            printer.silent = True
            sent, answered, ticket = kiosk.issue(terminal=True)
            first_silent = answered - sent
            first_status = ticket["print"]["status"]
            kiosk.until("offline")
            silent_printing, silent_plain = [], []
            for _ in range(n):
                sent, answered, ticket = kiosk.issue(terminal=True)
                assert ticket["print"]["status"] == "failed"
                silent_printing.append(answered - sent)
                sent, answered, _ticket = kiosk.issue(terminal=False)
                silent_plain.append(answered - sent)
            printer.silent = False
            kiosk.until("ready")
        finally:
            code, _ = daemon.stop()
            printer.close()

    base = percentile(sorted(answered_plain), 50)
    print(f"\nkioskd printing benchmark: {n} issues each, one kiosk, printer timeout "
          f"{PRINTER_TIMEOUT:g} s, emulated 80mm printer over loopback TCP")
    print(f"  issue → last byte at the printer     {ms(to_paper)}")
    print(f"  issue answered, printed              {ms(answered_printed)}")
    print(f"  issue answered, no printing          {ms(answered_plain)}")
    print(f"  printer silent, first issue          {first_silent * 1000:6.0f} ms   "
          f"(print.status {first_status}; bounded by the timeout)")
    print(f"  printer offline, issue at the kiosk  {ms(silent_printing)}")
    print(f"  printer offline, issue, no printing  {ms(silent_plain)}")
    print(f"  p50 ratios to 'no printing, printer healthy': printed "
          f"{percentile(sorted(answered_printed), 50) / base:.2f}x, printer offline "
          f"{percentile(sorted(silent_printing), 50) / base:.2f}x (at the kiosk), "
          f"{percentile(sorted(silent_plain), 50) / base:.2f}x (no printing)")
    if code == 0:
        record("printing", {"to_paper": figures(to_paper),
                            "answered_printed": figures(answered_printed),
                            "answered_plain": figures(answered_plain),
                            "first_silent_ms": first_silent * 1000,
                            "offline_at_kiosk": figures(silent_printing),
                            "printer_timeout_s": PRINTER_TIMEOUT})
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
