#!/usr/bin/env python3
"""A day's statistics with a year of history: how long does GET /stats take?

    .venv/bin/python benchmarks/stats_day.py [--days 365] [--per-day 2000] [--rounds 40]

Fills a store on this disk by direct inserts with `--days` days of `--per-day`
tickets each (history.py's hall: 5 services, 40 windows), rows and event log as
the queue engine writes them: every ticket issued, most called, started and done,
some no-shows, cancellations, recalls and transfers (called again elsewhere), and
a few printer alerts a day. Then runs the application in-process (httpx over
ASGI, the lifespan included) with the hall's clock in the afternoon of the last
day and times GET /api/v1/stats for that day, for a day in the middle of the
year, and GET /api/v1/alerts. Prints p50/p90 and the query plans. Warm OS cache:
the figures of a daemon that has been running, not of its first request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for path in (HERE, REPO):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import httpx  # noqa: E402

from bench_stats import percentile  # noqa: E402
from history import SERVICES, hall  # noqa: E402

from kioskd.app import create_app  # noqa: E402
from kioskd.config import Config  # noqa: E402
from kioskd.queue import ticket_id  # noqa: E402
from kioskd.store import connect, migrate  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
OPENS, CLOSES = 8.5, 17.5            # hours: numbers are issued between these
TICKET_COLUMNS = ("id, day, number, service, priority, status, issued_at, queue_at, "
                  "window_id, called_at, started_at, finished_at, recalls, transfers, "
                  "closed_by")


class Day:
    """One day's rows and events, made the way queue.py makes them."""

    def __init__(self, config: Config, rng: random.Random, day: date):
        self.rng = rng
        self.day = day.isoformat()
        self.names = {s.id: s.name for s in config.services}
        self.windows = {w.id: w for w in config.windows}
        self.serving = {s: [w.id for w in config.windows if s in w.services]
                        for s, _ in SERVICES}
        self.tickets: list[tuple] = []
        self.events: list[tuple[float, str, dict]] = []
        self.opens = datetime.combine(day, datetime.min.time(), TZ).timestamp() + OPENS * 3600

    def data(self, tid: str, number: str, service: str, status: str, window: str | None,
             **extra) -> dict:
        d = {"ticket": tid, "number": number, "service": service,
             "service_name": self.names[service], "status": status, "priority": False,
             "window": window}
        if window is not None:
            d["window_name"] = self.windows[window].name
        d.update(extra)
        return d

    def ticket(self, n: int, per_day: int) -> None:
        rng = self.rng
        service, prefix = SERVICES[n % len(SERVICES)]
        issued = self.opens + (CLOSES - OPENS) * 3600 * n / per_day + rng.random()
        tid, number = ticket_id(issued), f"{prefix}{n // len(SERVICES) + 1:03d}"
        ev = self.events.append
        ev((issued, "ticket.issued", self.data(tid, number, service, "waiting", None,
                                               waiting_ahead=rng.randrange(30),
                                               est_wait_min=rng.randrange(60))))
        fate = rng.random()
        window = called = started = finished = None
        transfers, recalls, closed_by = 0, 0, None
        if fate < 0.03:                                       # cancelled while waiting
            status, finished, closed_by = "cancelled", issued + rng.uniform(60, 1800), "cancel"
            ev((finished, "ticket.cancelled", self.data(tid, number, service, status, None,
                                                        reason="cancel")))
        else:
            window = rng.choice(self.serving[service])
            called = issued + rng.uniform(30, 3600)
            ev((called, "ticket.called", self.data(tid, number, service, "called", window)))
            if rng.random() < 0.1:
                recalls = 1
                ev((called + 30, "ticket.recalled",
                    self.data(tid, number, service, "called", window, recalls=1)))
            if fate < 0.10:                                   # no-show
                status, finished = "no_show", called + 90
                ev((finished, "ticket.no_show", self.data(tid, number, service, status, window)))
            else:
                if fate < 0.15:                               # transferred, then served
                    moved = called + rng.uniform(60, 600)
                    to = SERVICES[(n + 1) % len(SERVICES)][0]
                    ev((moved, "ticket.transferred", self.data(
                        tid, number, to, "waiting", None, from_window=window,
                        from_service=service, waiting_ahead=3, est_wait_min=10)))
                    service, transfers = to, 1
                    window = rng.choice(self.serving[service])
                    called = moved + rng.uniform(30, 1200)
                    ev((called, "ticket.called", self.data(tid, number, service, "called",
                                                           window)))
                started = called + rng.uniform(10, 120)
                finished = started + rng.uniform(120, 1500)
                status = "done"
                ev((started, "ticket.started", self.data(tid, number, service, "serving",
                                                         window)))
                ev((finished, "ticket.done", self.data(tid, number, service, status, window)))
        self.tickets.append((tid, self.day, number, service, 0, status, issued, issued, window,
                             called, started, finished, recalls, transfers, closed_by))

    def alerts(self) -> None:
        """The paper runs low once a day and a roll is loaded an hour later."""
        low = self.opens + self.rng.uniform(3600, 7 * 3600)
        for at, state in ((low, "raised"), (low + 3600, "cleared")):
            self.events.append((at, "alert", {"device": "printer_1", "kind": "paper_near_end",
                                              "message": "paper near end", "state": state}))


def fill(path: Path, config: Config, days: int, per_day: int, last: date) -> tuple[int, int]:
    """The history, inserted directly; returns (tickets, events)."""
    rng = random.Random(6)
    conn = connect(path)
    migrate(conn)
    conn.execute("PRAGMA synchronous = OFF")          # bulk load only; the daemon uses FULL
    tickets = events = 0
    marks = ", ".join("?" for _ in TICKET_COLUMNS.split(", "))
    for d in range(days):
        day = Day(config, rng, last - timedelta(days=days - 1 - d))
        for n in range(per_day):
            day.ticket(n, per_day)
        day.alerts()
        day.events.sort(key=lambda e: e[0])
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO tickets ({TICKET_COLUMNS}) VALUES ({marks})", day.tickets)
        conn.executemany("INSERT INTO events (at, type, data) VALUES (?, ?, ?)",
                         [(at, type, json.dumps(data, ensure_ascii=False, separators=(",", ":")))
                          for at, type, data in day.events])
        conn.execute("COMMIT")
        tickets += len(day.tickets)
        events += len(day.events)
        if d % 50 == 49:
            print(f"  {d + 1} days ...", flush=True)
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return tickets, events


def plans(path: Path, day: str) -> list[str]:
    conn = connect(path)
    found = []
    for sql, params in (
            ("SELECT * FROM tickets WHERE day = ? ORDER BY seq", (day,)),
            ("SELECT * FROM events INDEXED BY events_by_type WHERE type IN (?, ?) "
             "AND at >= ? AND at < ? ORDER BY id", ("ticket.called", "ticket.transferred", 0, 1))):
        rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
        found.append(" / ".join(r[-1] for r in rows))
    conn.close()
    return found


async def measure(config: Config, now: float, days: dict[str, str], rounds: int
                  ) -> dict[str, list[float]]:
    app = create_app(config, clock=lambda: now)
    timings: dict[str, list[float]] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hall.test") as client:
            for label, path in {**days, "GET /alerts": "/api/v1/alerts"}.items():
                first = time.perf_counter()
                r = await client.get(path)
                assert r.status_code == 200, r.text
                timings[f"{label} (first)"] = [time.perf_counter() - first]
                times = timings[label] = []
                cpu = timings[f"{label} (CPU)"] = []
                for _ in range(rounds):
                    t, c = time.perf_counter(), time.process_time()
                    r = await client.get(path)
                    times.append(time.perf_counter() - t)
                    cpu.append(time.process_time() - c)
                    assert r.status_code == 200, r.text
                body = r.json()
                if "totals" in body:
                    print(f"  {label}: issued {body['totals']['issued']}, served "
                          f"{body['totals']['served']}, wait p50 "
                          f"{body['totals']['wait_min']['p50']} min, "
                          f"{len(body['hours'])} hours")
                else:
                    print(f"  {label}: {len(body)} open")
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--per-day", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--data", type=Path, help="keep the filled store in this folder and "
                        "reuse it next time (same --days and --per-day)")
    args = parser.parse_args()
    last = date.today()
    middle = last - timedelta(days=args.days // 2)
    now = datetime.combine(last, datetime.min.time(), TZ).timestamp() + 16 * 3600
    with tempfile.TemporaryDirectory(dir=REPO) as tmp:
        folder = args.data or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        config = hall(folder)
        db = folder / "kioskd.db"
        if db.exists():
            print(f"reusing {db}", flush=True)
        else:
            print(f"filling {args.days} days x {args.per_day:,} tickets ...", flush=True)
            started = time.perf_counter()
            tickets, events = fill(db, config, args.days, args.per_day, last)
            print(f"  {time.perf_counter() - started:.0f} s: {tickets:,} tickets, "
                  f"{events:,} events, database {db.stat().st_size / 2**20:.0f} MiB")
        for plan in plans(db, last.isoformat()):
            print(f"  plan: {plan}")
        days = {f"GET /stats today ({last})": "/api/v1/stats",
                f"GET /stats {middle}": f"/api/v1/stats?date={middle}",
                "GET /stats a day without tickets": "/api/v1/stats?date=1999-01-01"}
        timings = asyncio.run(measure(config, now, days, args.rounds))
    print(f"\n{args.rounds} requests each after a first one, in-process (httpx over ASGI); "
          "(CPU): this process's CPU time per request, all threads — what a busy machine "
          "does not inflate")
    print(f"{'request':<50} {'p50 ms':>8} {'p90 ms':>8}")
    for label, values in timings.items():
        ordered = sorted(values)
        print(f"{label:<50} {percentile(ordered, 50) * 1e3:8.1f} "
              f"{percentile(ordered, 90) * 1e3:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
