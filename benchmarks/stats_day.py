"""A hall's history for the statistics benchmark (stats_year.py, in make bench), and the
timing of its requests.

`filled` writes a number of days holding a number of tickets between them (history.py's
hall: 5 services, 40 windows) into a store by direct inserts — rows, event log and
ratings as the queue engine and the evaluation pad write them: every ticket issued,
most called, started and done, some no-shows, cancellations, recalls and transfers
(called again elsewhere), 40 % of the served ones rated; every window opened in the
morning, paused once and closed in the evening; a printer alert a day. The audit log
is left out: statistics never read it. Days are made in a second process while this
one inserts the day before (the machine has two cores).
"""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from bench_stats import percentile
from history import SERVICES, hall

from kioskd.config import Config
from kioskd.store import connect, migrate

TZ = ZoneInfo("Asia/Shanghai")
OPENS, CLOSES = 8.5, 17.5            # hours: numbers are issued between these
WINDOWS_OPEN, WINDOWS_CLOSE = 8.25, 17.75
RATED = 0.4                          # of the served tickets
LEVELS = (5,) * 70 + (4,) * 15 + (3,) * 8 + (2,) * 4 + (1,) * 3
TICKET_COLUMNS = ("id, day, number, service, priority, status, issued_at, queue_at, "
                  "window_id, called_at, started_at, finished_at, recalls, transfers, "
                  "closed_by")


@dataclass
class DayRows:
    day: str
    tickets: list[tuple]
    events: list[tuple[float, str, str]]      # at, type, data (JSON)
    ratings: list[tuple]


@cache
def _hall() -> Config:
    return hall(Path("."))


def _data(tid: str, number: str, service: str, status: str, window: str | None,
          extra: str = "") -> str:
    """An event's data as queue.py's _event_data writes it (the benchmark's names need
    no escaping: JSON by hand is five times faster than json.dumps here)."""
    where = "null" if window is None else f'"{window}","window_name":"{window}号窗口"'
    return (f'{{"ticket":"{tid}","number":"{number}","service":"{service}",'
            f'"service_name":"{service}","status":"{status}","priority":false,'
            f'"window":{where}{extra}}}')


def make_day(day: date, count: int, seed: int, today: bool = False) -> DayRows:
    """One day's rows and events, made the way queue.py makes them; `today` is not
    over: its windows are still open."""
    config = _hall()
    serving = {s: [w.id for w in config.windows if s in w.services] for s, _ in SERVICES}
    rng = random.Random(seed)
    text = day.isoformat()
    midnight = datetime.combine(day, datetime.min.time(), TZ).timestamp()
    opens = midnight + OPENS * 3600
    tickets, events, ratings = [], [], []
    ev = events.append
    for n in range(count):
        service, prefix = SERVICES[n % len(SERVICES)]
        issued = opens + (CLOSES - OPENS) * 3600 * n / count + rng.random()
        tid = f"{int(issued * 1000):012x}{rng.getrandbits(72):018x}"   # time-ordered, unique
        number = f"{prefix}{n // len(SERVICES) + 1:04d}"
        ev((issued, "ticket.issued", _data(
            tid, number, service, "waiting", None,
            f',"waiting_ahead":{rng.randrange(30)},"est_wait_min":{rng.randrange(60)}')))
        fate = rng.random()
        window = called = started = finished = None
        transfers, recalls, closed_by = 0, 0, None
        if fate < 0.03:                                       # cancelled while waiting
            status, finished, closed_by = "cancelled", issued + rng.uniform(60, 1800), "cancel"
            ev((finished, "ticket.cancelled", _data(tid, number, service, status, None,
                                                    ',"reason":"cancel"')))
        else:
            window = rng.choice(serving[service])
            called = issued + rng.uniform(30, 3600)
            ev((called, "ticket.called", _data(tid, number, service, "called", window)))
            if rng.random() < 0.1:
                recalls = 1
                ev((called + 30, "ticket.recalled",
                    _data(tid, number, service, "called", window, ',"recalls":1')))
            if fate < 0.10:                                   # no-show
                status, finished = "no_show", called + 90
                ev((finished, "ticket.no_show", _data(tid, number, service, status, window)))
            else:
                if fate < 0.15:                               # transferred, then served
                    moved = called + rng.uniform(60, 600)
                    to = SERVICES[(n + 1) % len(SERVICES)][0]
                    ev((moved, "ticket.transferred", _data(
                        tid, number, to, "waiting", None,
                        f',"waiting_ahead":3,"est_wait_min":10,"from_window":"{window}",'
                        f'"from_service":"{service}"')))
                    service, transfers = to, 1
                    window = rng.choice(serving[service])
                    called = moved + rng.uniform(30, 1200)
                    ev((called, "ticket.called", _data(tid, number, service, "called", window)))
                started = called + rng.uniform(10, 120)
                finished = started + rng.uniform(120, 1500)
                status = "done"
                ev((started, "ticket.started", _data(tid, number, service, "serving", window)))
                ev((finished, "ticket.done", _data(tid, number, service, status, window)))
                if rng.random() < RATED:
                    level, at = rng.choice(LEVELS), finished + rng.uniform(5, 100)
                    ratings.append((tid, text, window, service, level, at, "pad"))
                    ev((at, "ticket.rated", json.dumps(
                        {"ticket": tid, "number": number, "service": service,
                         "service_name": service, "window": window, "window_name": window,
                         "level": level}, separators=(",", ":"))))
        tickets.append((tid, text, number, service, 0, status, issued, issued, window,
                        called, started, finished, recalls, transfers, closed_by))
    for w in config.windows:                                  # open, one pause, closed
        paused = midnight + rng.uniform(10, 15) * 3600
        changes = [(midnight + WINDOWS_OPEN * 3600, "open", "closed"),
                   (paused, "paused", "open"), (paused + rng.uniform(300, 1800), "open", "paused")]
        if not today:
            changes.append((midnight + WINDOWS_CLOSE * 3600, "closed", "open"))
        for at, state, previous in changes:
            ev((at, "window.changed", json.dumps(
                {"window": w.id, "name": w.name, "state": state, "previous": previous},
                ensure_ascii=False, separators=(",", ":"))))
    low = opens + rng.uniform(3600, 7 * 3600)                 # the paper runs low once a day
    for at, state in ((low, "raised"), (low + 3600, "cleared")):
        ev((at, "alert", json.dumps({"device": "printer_1", "kind": "paper_near_end",
                                     "message": "paper near end", "state": state})))
    events.sort(key=lambda e: e[0])
    return DayRows(text, tickets, events, ratings)


def fill(path: Path, days: int, tickets: int, last: date) -> tuple[int, int, int]:
    """The history, inserted directly; returns (tickets, events, ratings)."""
    conn = connect(path)
    migrate(conn)
    conn.execute("PRAGMA journal_mode = OFF")         # bulk load of a new file only; the
    conn.execute("PRAGMA synchronous = OFF")          # daemon uses WAL and synchronous=FULL
    marks = ", ".join("?" for _ in TICKET_COLUMNS.split(", "))
    counts = [0, 0, 0]
    plan = [(last - timedelta(days=days - 1 - d),
             tickets * (d + 1) // days - tickets * d // days, 7919 * d + 6, d == days - 1)
            for d in range(days)]
    with ProcessPoolExecutor(max_workers=1) as maker:
        ahead = [maker.submit(make_day, *plan[d]) for d in range(min(2, days))]
        for d in range(days):
            rows = ahead.pop(0).result()
            if d + 2 < days:
                ahead.append(maker.submit(make_day, *plan[d + 2]))
            conn.execute("BEGIN")
            conn.executemany(f"INSERT INTO tickets ({TICKET_COLUMNS}) VALUES ({marks})",
                             rows.tickets)
            conn.executemany("INSERT INTO events (at, type, data) VALUES (?, ?, ?)", rows.events)
            conn.executemany("INSERT INTO ratings (ticket, day, window_id, service, level, at, "
                             "source) VALUES (?, ?, ?, ?, ?, ?, ?)", rows.ratings)
            conn.execute("COMMIT")
            counts[0] += len(rows.tickets)
            counts[1] += len(rows.events)
            counts[2] += len(rows.ratings)
            if d % 50 == 49:
                print(f"  {d + 1} days ...", flush=True)
    opened = datetime.combine(last, datetime.min.time(), TZ).timestamp() + 15.5 * 3600
    conn.executemany("INSERT INTO windows (id, state, current, since) VALUES (?, 'open', NULL, ?)",
                     [(w.id, opened) for w in _hall().windows])      # open since a pause
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    return counts[0], counts[1], counts[2]


def filled(folder: Path, days: int, tickets: int, last: date) -> Path:
    """The store in `folder`, filled unless it already is (a kept --data folder)."""
    db = folder / "kioskd.db"
    if db.exists():
        print(f"reusing {db}", flush=True)
        return db
    print(f"filling {days} days, {tickets:,} tickets ...", flush=True)
    started = time.perf_counter()
    made, events, ratings = fill(db, days, tickets, last)
    print(f"  {time.perf_counter() - started:.0f} s: {made:,} tickets, {events:,} events, "
          f"{ratings:,} ratings, database {db.stat().st_size / 2**20:,.0f} MiB", flush=True)
    return db


def afternoon(day: date) -> float:
    """4 pm on `day` in the hall: the clock the benchmarks' hall runs at."""
    return datetime.combine(day, datetime.min.time(), TZ).timestamp() + 16 * 3600


async def time_requests(client: httpx.AsyncClient, paths: dict[str, str], rounds: int
                        ) -> dict[str, list[float]]:
    """Each path once (its first answer), then `rounds` times: wall and CPU seconds."""
    timings: dict[str, list[float]] = {}
    for label, path in paths.items():
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
        print(f"  {label}: {body['days']} days, issued {body['totals']['issued']:,}, "
              f"served {body['totals']['served']:,}, wait p50 "
              f"{body['totals']['wait_min']['p50']} min, rated "
              f"{body['totals']['ratings']['rated']:,}", flush=True)
    return timings


def report(timings: dict[str, list[float]], rounds: int) -> None:
    print(f"\n{rounds} requests each after a first one, in-process (httpx over ASGI); "
          "(CPU): this process's CPU time per request, all threads")
    print(f"{'request':<58} {'p50 ms':>8} {'p90 ms':>8}")
    for label, values in timings.items():
        ordered = sorted(values)
        print(f"{label:<58} {percentile(ordered, 50) * 1e3:8.1f} "
              f"{percentile(ordered, 90) * 1e3:8.1f}")
