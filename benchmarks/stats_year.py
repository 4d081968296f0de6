#!/usr/bin/env python3
"""Statistics with a year of history: how long do GET /stats for a day and for the year
take with 3 million tickets in the store, and is call-next as fast with the year loaded?

    .venv/bin/python benchmarks/stats_year.py [--days 365] [--tickets 3000000]
                                              [--rounds 20] [--data DIR]

1. Fills a store with `--days` days holding `--tickets` tickets (≈8,200 a day), their
   event log and ratings, by direct inserts (stats_day.py's history).
2. Runs the application in-process (httpx over ASGI, the lifespan included) with the
   hall's clock at 4 pm on the last day, its background summarising held back, and
   times GET /api/v1/stats:
   - the year's range once, cold: no day summarised yet, so the request computes and
     keeps all of them (what a daemon upgraded onto a year of history does once, in
     the background, at start-up);
   - the year's range again, warm: every past day from its kept summary, today live;
   - one past day (from its summary), and today (computed live: its 8,200 tickets);
   - the CSV export of the year, one row per day and scope.
3. Times call-next, issue and a ticket read through the queue engine, durable commits
   included, on a new store and on the year's (history.py's `measure`).

Prints p50/p90 (ms) and the aims: a day under 100 ms, the year under 2 s, call-next
no worse with the year loaded. Warm OS cache: the figures of a running daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import httpx

from bench_daemon import REPO
from bench_results import record
from bench_stats import percentile
from history import ROUNDS, hall, measure as engine_timings, pct
from stats_day import afternoon, filled, report, time_requests

from kioskd import stats
from kioskd.app import create_app
from kioskd.config import Config

AIM_DAY_MS = 100.0
AIM_YEAR_S = 2.0


async def statistics(config: Config, now: float, last: date, days: int, rounds: int
                     ) -> dict[str, list[float]]:
    first = last - timedelta(days=days - 1)
    middle = last - timedelta(days=days // 2)
    year = f"/api/v1/stats?from={first}&to={last}"

    async def held_back(queue):                 # the cold request must compute the days
        return None
    stats.keep_summaries = held_back
    app = create_app(config, clock=lambda: now)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hall.test",
                                     timeout=600) as client:
            started = time.perf_counter()
            r = await client.get(year)
            cold = time.perf_counter() - started
            assert r.status_code == 200, r.text
            body = r.json()
            print(f"  the year, cold: {cold:.1f} s, {body['days_computed']} days computed "
                  f"and kept", flush=True)
            timings = {"GET /stats the year, cold (computes every day)": [cold]}
            timings.update(await time_requests(client, {
                f"GET /stats the year ({first} … {last}), warm": year,
                f"GET /stats {middle} (a past day, its summary)": f"/api/v1/stats?date={middle}",
                f"GET /stats today ({last}, live)": "/api/v1/stats",
            }, rounds))
            csv_times = timings["GET /stats.csv the year, a row per day and scope"] = []
            for _ in range(max(3, rounds // 4)):
                started = time.perf_counter()
                r = await client.get(f"/api/v1/stats.csv?from={first}&to={last}")
                csv_times.append(time.perf_counter() - started)
                assert r.status_code == 200
            print(f"  the year's CSV: {len(r.content) / 2**20:.1f} MiB, "
                  f"{r.text.count(chr(10)) - 1:,} rows", flush=True)
    return timings


def forget_summaries(db: Path) -> None:
    """A reused store starts cold again."""
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM day_summaries")
    conn.commit()
    conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--tickets", type=int, default=3_000_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--engine-rounds", type=int, default=ROUNDS,
                        help="issue/call-next/read rounds through the queue engine, per store")
    parser.add_argument("--data", type=Path, help="keep the filled store in this folder and "
                        "reuse it next time (same --days and --tickets)")
    args = parser.parse_args()
    last = date.today()
    with tempfile.TemporaryDirectory(dir=REPO) as tmp:
        folder = args.data or Path(tmp) / "a-year-on"
        folder.mkdir(parents=True, exist_ok=True)
        db = filled(folder, args.days, args.tickets, last)
        forget_summaries(db)
        size = db.stat().st_size / 2**20
        timings = asyncio.run(statistics(hall(folder), afternoon(last), last, args.days,
                                         args.rounds))
        report(timings, args.rounds)
        print("\ncall-next, issue and a ticket read through the queue engine (history.py), "
              "durable commits, one at a time:", flush=True)
        fresh = Path(tmp) / "day-one"
        fresh.mkdir()
        engine = {"a new store": asyncio.run(engine_timings(fresh, args.engine_rounds)),
                  f"the year's store ({size:,.0f} MiB)":
                  asyncio.run(engine_timings(folder, args.engine_rounds))}
    print(f"{'operation':<11} {'store':<28} {'p50 ms':>8} {'p99 ms':>8}")
    for op in ("call-next", "issue", "ticket"):
        for label, values in engine.items():
            print(f"{op:<11} {label:<28} {pct(values[op], 50):8.3f} {pct(values[op], 99):8.3f}")
    labels = list(engine)
    ratio = pct(engine[labels[1]]["call-next"], 50) / pct(engine[labels[0]]["call-next"], 50)

    def p50(start: str) -> float:
        """The p50 of the repeated requests whose label begins with `start`."""
        label = next(k for k in timings if k.startswith(start)
                     and not k.endswith((" (first)", " (CPU)")))
        return percentile(sorted(timings[label]), 50)
    middle = last - timedelta(days=args.days // 2)
    cold = timings["GET /stats the year, cold (computes every day)"][0]
    print("\naims (p50):")
    print(f"  a past day  {p50(f'GET /stats {middle}') * 1e3:8.1f} ms   (aim < {AIM_DAY_MS:.0f} ms)")
    print(f"  today, live {p50('GET /stats today') * 1e3:8.1f} ms   (aim < {AIM_DAY_MS:.0f} ms)")
    print(f"  the year    {p50('GET /stats the year ('):8.2f} s    (aim < {AIM_YEAR_S:.0f} s; "
          f"cold, once: {cold:.0f} s)")
    print(f"  call-next with the year / without: {ratio:.2f}   (aim: about 1)")

    def p90(start: str) -> float:
        label = next(k for k in timings if k.startswith(start)
                     and not k.endswith((" (first)", " (CPU)")))
        return percentile(sorted(timings[label]), 90)
    csv = sorted(timings["GET /stats.csv the year, a row per day and scope"])
    record("stats_year", {
        "days": args.days, "tickets": args.tickets, "rounds": args.rounds,
        "database_mib": size,
        "past_day": {"p50_ms": p50(f"GET /stats {middle}") * 1e3,
                     "p90_ms": p90(f"GET /stats {middle}") * 1e3},
        "today": {"p50_ms": p50("GET /stats today") * 1e3, "p90_ms": p90("GET /stats today") * 1e3},
        "year": {"p50_ms": p50("GET /stats the year (") * 1e3,
                 "p90_ms": p90("GET /stats the year (") * 1e3},
        "year_cold_s": cold,
        "year_csv": {"p50_ms": percentile(csv, 50) * 1e3},
        "aim_day_ms": AIM_DAY_MS, "aim_year_s": AIM_YEAR_S,
        "call_next_year_over_new": ratio})
    return 0


if __name__ == "__main__":
    sys.exit(main())
