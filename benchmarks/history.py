"""Call-next with a year of history: is it as fast with 3 million tickets as on day one?

Builds two stores on this disk — one holding only today's waiting tickets, one that also
holds a year of finished ones (3,000,000 tickets, 10,000 a day for 300 days) — then
times the engine's own operations on each (issue and call-next through Queue, durable
commits included) and prints the percentiles and their ratio.

    .venv/bin/python benchmarks/history.py [--history 3000000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from bench_results import record

from kioskd.config import Config, Hall, Service, Window
from kioskd.queue import Queue, ticket_id
from kioskd.store import SQLiteStore, connect, migrate

SERVICES = [("property", "A"), ("business", "B"), ("social", "C"), ("fund", "D"), ("tax", "E")]
WINDOWS = 40
WAITING_TODAY = 300
ROUNDS = 2_000


def hall(data_dir: Path) -> Config:
    return Config(
        hall=Hall(name="基准测试大厅", data_dir=data_dir),
        services=tuple(Service(sid, sid, prefix, f"640100-00{i}-01")
                       for i, (sid, prefix) in enumerate(SERVICES)),
        windows=tuple(Window(str(n), f"{n}号窗口",
                             tuple(s for s, _ in SERVICES[n % 5:] + SERVICES[:n % 5])[:2])
                      for n in range(1, WINDOWS + 1)))


def fill_history(path: Path, tickets: int) -> float:
    """Insert `tickets` finished tickets spread over past days; returns seconds taken."""
    started = time.perf_counter()
    conn = connect(path)
    migrate(conn)
    conn.execute("PRAGMA synchronous = OFF")      # bulk load only; the daemon uses FULL
    per_day = 10_000
    first = date.today() - timedelta(days=tickets // per_day + 1)
    columns = ("id, day, number, service, priority, status, issued_at, queue_at, window_id, "
               "called_at, started_at, finished_at")
    conn.execute("BEGIN")
    batch = []
    for n in range(tickets):
        day = first + timedelta(days=n // per_day)
        service, prefix = SERVICES[n % 5]
        t0 = time.mktime(day.timetuple()) + 9 * 3600 + (n % per_day) * 2.5
        status = ("done", "done", "done", "no_show", "cancelled")[n % 5]
        batch.append((ticket_id(t0), day.isoformat(), f"{prefix}{n % per_day:04d}",
                      service, int(n % 17 == 0), status, t0, t0, str(1 + n % WINDOWS),
                      t0 + 600, t0 + 650, t0 + 900))
        if len(batch) == 50_000:
            conn.executemany(f"INSERT INTO tickets ({columns}) VALUES "
                             "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)
            batch.clear()
    if batch:
        conn.executemany(f"INSERT INTO tickets ({columns}) VALUES "
                         "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started


async def measure(data_dir: Path, rounds: int = ROUNDS) -> dict[str, list[float]]:
    config = hall(data_dir)
    store = SQLiteStore(data_dir / "kioskd.db")
    queue = Queue(config, store)
    await store.open()
    await queue.setup()
    for n in range(WAITING_TODAY):
        await queue.issue(SERVICES[n % 5][0])
    timings: dict[str, list[float]] = {"issue": [], "call-next": [], "ticket": []}
    for n in range(rounds):
        t = time.perf_counter()
        view = await queue.issue(SERVICES[n % 5][0])
        timings["issue"].append(time.perf_counter() - t)
        t = time.perf_counter()
        await queue.call_next(str(1 + n % WINDOWS))
        timings["call-next"].append(time.perf_counter() - t)
        t = time.perf_counter()
        await queue.ticket(view.ticket.id)
        timings["ticket"].append(time.perf_counter() - t)
    await store.close()
    return timings


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=3_000_000)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as tmp:
        fresh, year = Path(tmp) / "day-one", Path(tmp) / "a-year-on"
        year.mkdir()
        print(f"filling {args.history:,} past tickets ...", flush=True)
        took = fill_history(year / "kioskd.db", args.history)
        size = (year / "kioskd.db").stat().st_size / 2**20
        print(f"  {took:.0f} s, database {size:.0f} MiB")
        results = {}
        for label, where in (("day one", fresh), (f"{args.history:,} past", year)):
            where.mkdir(exist_ok=True)
            results[label] = asyncio.run(measure(where, args.rounds))
        print(f"\n{args.rounds} rounds each, {WAITING_TODAY} waiting, durable commits "
              "(one operation at a time)")
        print(f"{'operation':<11} {'history':<18} {'p50 ms':>8} {'p99 ms':>8}")
        labels = list(results)
        for op in ("issue", "call-next", "ticket"):
            for label in labels:
                v = results[label][op]
                print(f"{op:<11} {label:<18} {pct(v, 50):8.3f} {pct(v, 99):8.3f}")
            ratios = [pct(results[labels[1]][op], p) / pct(results[labels[0]][op], p)
                      for p in (50, 99)]
            print(f"{op:<11} {'ratio':<18} {ratios[0]:8.2f} {ratios[1]:8.2f}")
    day_one, year = (results[label] for label in labels)
    record("history", {"history": args.history, "rounds": args.rounds, "database_mib": size,
                       **{f"{which}_{op}": {"p50_ms": pct(v[op], 50), "p99_ms": pct(v[op], 99)}
                          for which, v in (("day_one", day_one), ("year", year))
                          for op in ("issue", "call-next", "ticket")}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
