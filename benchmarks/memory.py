#!/usr/bin/env python3
"""Resident memory of the daemon with 150 windows configured: after start, and after load.

    .venv/bin/python benchmarks/memory.py [--load-seconds 10]      (part of: make bench)

Starts `kioskd run` on a hall of 150 windows and 10 services (no devices: the
daemon is one process) and reads VmRSS (resident now) and VmHWM (the most it
ever was) from /proc/PID/status:

1. one second after GET /healthz first answers;
2. after a short day's work: `--load-seconds` of 8 kiosks issuing while 8 windows
   call next (closed loop), then the read routes displays and supervisors use
   (windows, queue, services, stats, metrics) 20 times each, with 100 event
   streams (display pages) open throughout.

Against: what the same interpreter holds once it has imported kioskd (the floor
of any daemon written this way). Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench_daemon import ApiClient, Daemon, free_port
from bench_hall import big_hall_toml
from bench_load import CALL_NEXT, ISSUE, Worker, run_scenario, session
from bench_results import record
from startup import imports_alone

READS = ["/api/v1/windows", "/api/v1/queue", "/api/v1/services", "/api/v1/stats", "/metrics"]
STREAMS = 100


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


async def a_day(base: str, seconds: float, services: list[str]) -> int:
    """The load; returns the requests answered in the measured part."""
    workers = [Worker(ISSUE, lambda rng: ("/api/v1/tickets", {"service": rng.choice(services)}),
                      seed=i) for i in range(8)]
    workers += [Worker(CALL_NEXT, lambda rng, w=w: (f"/api/v1/windows/{w}/call-next", None),
                       seed=100 + w) for w in range(1, 9)]
    async def drain(stream: aiohttp.ClientResponse) -> None:
        """Read a stream as a display does (unread, its events would pile up in the daemon)."""
        async for _ in stream.content.iter_any():
            pass

    async with session(STREAMS + 20) as http:
        streams = [await http.get(base + "/api/v1/events",
                                  timeout=aiohttp.ClientTimeout(total=None))
                   for _ in range(STREAMS)]
        readers = [asyncio.create_task(drain(stream)) for stream in streams]
        try:
            result = await run_scenario(http, base, "a day", workers, 0.0, seconds)
            for path in READS:
                for _ in range(20):
                    async with http.get(base + path) as resp:
                        await resp.read()
                        if resp.status != 200:
                            raise RuntimeError(f"GET {path}: {resp.status}")
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            for stream in streams:
                stream.close()
    errors = sum(s.error_count for s in result.routes.values())
    if errors:
        raise RuntimeError(f"{errors} requests failed under load")
    return sum(len(s.latencies) for s in result.routes.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=150)
    parser.add_argument("--load-seconds", type=float, default=10.0)
    args = parser.parse_args()
    floor = imports_alone(1)
    with tempfile.TemporaryDirectory(prefix="kioskd-bench-memory-") as tmp:
        port = free_port()
        config = Path(tmp) / "devices.toml"
        config.write_text(big_hall_toml(port, args.windows), encoding="utf-8")
        daemon = Daemon(config, port, Path(tmp) / "daemon.log")
        daemon.start()
        try:
            daemon.wait_for("/healthz", 60)
            time.sleep(1.0)
            started = daemon.memory_kib()
            log(f"{args.load_seconds:g} s of issue + call-next, {STREAMS} event streams open")
            services = [s["id"] for s in ApiClient(port).request("GET", "/api/v1/services")]
            answered = asyncio.run(a_day(daemon.base, args.load_seconds, services))
            time.sleep(1.0)
            loaded = daemon.memory_kib()
        finally:
            code, _ = daemon.stop()
    if code != 0:
        log(f"the daemon exited with {code} after SIGTERM")
        return 1

    def mib(kib: int) -> str:
        return f"{kib / 1024:6.1f} MiB"
    print(f"\nkioskd resident memory, {args.windows} windows, 10 services, one process "
          f"({started['children']} children)")
    print(f"  after start         VmRSS {mib(started['rss'])}   VmHWM {mib(started['hwm'])}")
    print(f"  after the load      VmRSS {mib(loaded['rss'])}   VmHWM {mib(loaded['hwm'])}"
          f"   ({answered:,} issues and calls, then reads; {STREAMS} event streams)")
    print(f"  floor: the interpreter with kioskd imported, VmRSS {mib(floor['rss_kib'])}")
    record("memory", {"windows": args.windows, "load_seconds": args.load_seconds,
                      "answered": answered, "streams": STREAMS,
                      "start_rss_kib": started["rss"], "start_hwm_kib": started["hwm"],
                      "load_rss_kib": loaded["rss"], "load_hwm_kib": loaded["hwm"],
                      "children_rss_kib": loaded["children_rss"],
                      "imports_rss_kib": floor["rss_kib"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
