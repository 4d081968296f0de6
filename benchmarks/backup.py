"""Backups under load: how long does an online copy of a year's store take, and what
does it cost the issues and calls made while it runs?

    .venv/bin/python benchmarks/backup.py [--history 1000000] [--rounds 1000]

1. Fills a store with `--history` finished tickets (history.py's filler: 10,000 a day).
2. Opens it as the daemon does (the queue engine on SQLiteStore, durable commits),
   puts 300 tickets in line, and times issue + call-next, one pair at a time:
   - `--rounds` pairs with nothing else running;
   - then the same pairs for as long as `kioskd.backup.backup` copies the store in a
     thread of the same process (as the daemon's daily copy does; `kioskd backup`
     runs in a process of its own and competes for the disk only).
3. Prints the copy's time, size and rate, and issue/call-next p50/p99 without and
   during the copy, with their ratios; checks that the copy holds every ticket.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from bench_results import record
from history import SERVICES, WINDOWS, fill_history, hall, pct

from kioskd import backup
from kioskd.queue import Queue
from kioskd.store import SQLiteStore

WAITING = 300


async def pair(queue: Queue, n: int, timings: dict[str, list[float]]) -> None:
    t = time.perf_counter()
    await queue.issue(SERVICES[n % 5][0])
    timings["issue"].append(time.perf_counter() - t)
    t = time.perf_counter()
    await queue.call_next(str(1 + n % WINDOWS))
    timings["call-next"].append(time.perf_counter() - t)


async def measure(data_dir: Path, rounds: int) -> tuple[dict, dict, float, backup.Summary]:
    store = SQLiteStore(data_dir / "kioskd.db")
    queue = Queue(hall(data_dir), store)
    await store.open()
    await queue.setup()
    for n in range(WAITING):
        await queue.issue(SERVICES[n % 5][0])
    quiet: dict[str, list[float]] = {"issue": [], "call-next": []}
    for n in range(rounds):
        await pair(queue, n, quiet)
    during: dict[str, list[float]] = {"issue": [], "call-next": []}
    started = time.perf_counter()
    copying = asyncio.ensure_future(asyncio.to_thread(
        backup.backup, store.path, data_dir.parent / "copy.db"))
    n = 0
    while not copying.done():
        await pair(queue, n, during)
        n += 1
    took = time.perf_counter() - started
    copy = copying.result()
    await store.close()
    return quiet, during, took, copy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as tmp:
        store = Path(tmp) / "hall"
        store.mkdir()
        print(f"filling {args.history:,} past tickets ...", flush=True)
        fill_history(store / "kioskd.db", args.history)
        quiet, during, took, copy = asyncio.run(measure(store, args.rounds))
    mb = copy.size / 1e6
    print(f"\nthe copy: {copy.tickets:,} tickets, {mb:.0f} MB in {took:.2f} s "
          f"({mb / took:.0f} MB/s), while {len(during['issue'])} issue + call-next "
          "pairs were answered")
    assert copy.tickets >= args.history + WAITING, "the copy lacks tickets"
    print(f"{'operation':<10} {'':<16} {'p50 ms':>8} {'p99 ms':>8}")
    for op in ("issue", "call-next"):
        for label, timings in (("quiet", quiet), ("during the copy", during)):
            print(f"{op:<10} {label:<16} {pct(timings[op], 50):8.2f} "
                  f"{pct(timings[op], 99):8.2f}")
        print(f"{op:<10} {'ratio':<16} {pct(during[op], 50) / pct(quiet[op], 50):8.2f} "
              f"{pct(during[op], 99) / pct(quiet[op], 99):8.2f}")
    record("backup", {"history": args.history, "copy_s": took, "copy_mb": mb,
                      "pairs_during": len(during["issue"]),
                      **{f"{label}_{op}": {"p50_ms": pct(t[op], 50), "p99_ms": pct(t[op], 99)}
                         for label, t in (("quiet", quiet), ("during", during))
                         for op in ("issue", "call-next")}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
