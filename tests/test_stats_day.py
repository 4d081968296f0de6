"""The supervisor's figures on generated days played through the real queue engine,
checked against an independent recomputation: a day of 10,000 tickets, and three days
read as a range (kept day summaries for the past days), as JSON and as CSV.

The hall is played step by step (37 s of hall time a step, the clock moved by the
test) with a seeded mix of services, priorities, no-shows, re-admissions,
cancellations, transfers to a service and to a window, pauses, temporary windows and
ratings. Each step's operations run together (`asyncio.gather`), so the store commits
them as one group, and the test keeps its own record of what each one answered. The
expected figures are computed from that record alone — raw durations, sorted,
nearest rank, rounded half-up with `Decimal` — never by kioskd.stats.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import random
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conftest import Clock, eventually, serving
from kioskd.config import Config, Evaluation, Hall, Service, Window
from kioskd.queue import Conflict, Queue
from kioskd import stats
from kioskd.records import Rating
from kioskd.stats import SUMMARY_VERSION
from kioskd.store import SQLiteStore

API = "/api/v1"
TZ = ZoneInfo("Asia/Shanghai")
STEP = 37                          # seconds of hall time per step: waits of every tenth
FIRST_DAY = date(2026, 11, 30)     # a Monday
SERVICES = (("property", "不动产登记", "A", 30), ("business", "企业开办", "B", 20),
            ("social", '社保, "综合"', "C", 25), ("medical", "医保", "D", 15),
            ("tax", "税务，发票", "E", 10))
WINDOWS = 40
TEMPORARY = ("38", "39", "40")
KEEP_SERVING = ("1", "2")          # on the big day: still serving at midnight
ARRIVALS_BY_HOUR = {8: 0.5, 9: 1.3, 10: 1.6, 11: 1.3, 12: 0.6, 13: 0.8, 14: 1.1, 15: 1.0,
                    16: 0.8, 17: 0.3}
LEVELS = (5,) * 12 + (4,) * 4 + (3,) * 2 + (2,) + (1,)
NONE = {"p50": None, "p90": None, "max": None}


def hall(data_dir: Path) -> Config:
    ids = [s[0] for s in SERVICES]
    return Config(
        hall=Hall(name='测试中心, "统计"', timezone="Asia/Shanghai", data_dir=data_dir,
                  number_width=4, readmit_within_min=30, readmit_after=2),
        services=tuple(Service(sid, name, prefix, f"640100-00{n}-01")
                       for n, (sid, name, prefix, _) in enumerate(SERVICES)),
        windows=tuple(Window(str(n), f"{n}号窗口",
                             tuple(ids[(n + k) % len(ids)] for k in range(1 + n % 3)),
                             temporary=str(n) in TEMPORARY)
                      for n in range(1, WINDOWS + 1)),
        evaluation=Evaluation(within_s=120))


def at(day: date, hours: float) -> float:
    return datetime.combine(day, datetime.min.time(), TZ).timestamp() + round(hours * 3600)


# -- the test's own record ---------------------------------------------------------------

@dataclass
class Tk:
    """One ticket as the test saw it."""

    id: str
    day: str
    issued_service: str
    service: str
    issued_at: float
    status: str = "waiting"
    window: str | None = None
    target: str | None = None
    calls: list[tuple[float, str, str]] = field(default_factory=list)   # at, service, window
    stays: list[list] = field(default_factory=list)     # [window, from, to (None: open)]
    started_at: float | None = None                     # in its last stay
    finished_at: float | None = None
    closed_by: str | None = None
    transfers: list[tuple[float, str, str]] = field(default_factory=list)
    rating: tuple[int, str, str] | None = None          # level, window, service


@dataclass
class Win:
    """One window as the test drives it."""

    id: str
    services: tuple[str, ...]
    temporary: bool
    state: str
    current: Tk | None = None
    phase: str = ""                # called | serving
    due: float = 0.0               # when it acts next
    paused_until: float = 0.0
    changes: list[tuple[float, str]] = field(default_factory=list)
    at_day_start: dict[str, str] = field(default_factory=dict)


class Sim:
    """Plays days at the hall through the queue engine and records what happened."""

    def __init__(self, queue: Queue, clock: Clock, seed: int):
        self.queue = queue
        self.clock = clock
        self.rng = random.Random(seed)
        self.tickets: dict[str, Tk] = {}
        self.windows = {w.id: Win(w.id, w.services, w.temporary,
                                  "closed" if w.temporary else "open")
                        for w in queue.config.windows}
        self.first_event_at: float | None = None
        self.readmits: list[tuple[float, Tk]] = []
        self.ratings: list[tuple[float, Tk, str]] = []
        self.waiting: dict[str, Tk] = {}
        self.lines: Counter = Counter()          # waiting per service, and per target window
        self.done_as: Counter = Counter()        # what the mix held: re-admissions, ...

    def event(self, now: float) -> None:
        if self.first_event_at is None:
            self.first_event_at = now

    def waits(self, t: Tk) -> None:
        self.waiting[t.id] = t
        self.lines[("window", t.target) if t.target else t.service] += 1

    def leaves_line(self, t: Tk) -> None:
        del self.waiting[t.id]
        self.lines[("window", t.target) if t.target else t.service] -= 1

    def waiting_for(self, w: Win) -> bool:
        return self.lines[("window", w.id)] > 0 or any(self.lines[s] > 0 for s in w.services)

    async def play_day(self, day: date, count: int, keep_serving: tuple[str, ...] = ()) -> None:
        rng = self.rng
        self.close_day_before(day)
        self.readmits.clear()                     # a no-show of yesterday is not re-admitted
        self.ratings.clear()                      # ... nor a ticket rated the next morning
        for t in list(self.waiting.values()):
            self.leaves_line(t)
        for w in self.windows.values():
            w.at_day_start[day.isoformat()] = w.state
        hours = list(ARRIVALS_BY_HOUR)
        weights = list(ARRIVALS_BY_HOUR.values())
        arrivals: Counter = Counter()
        for _ in range(count):
            h = rng.choices(hours, weights)[0]
            begin, end = max(h, 8.5), min(h + 1, 17.5)
            arrivals[int((at(day, rng.uniform(begin, end)) - at(day, 8.5)) // STEP)] += 1
        start, step = at(day, 8.25), 0
        stop_calling, close_from, end = at(day, 17.9), at(day, 18.0), at(day, 18.5)
        while (now := start + step * STEP) < end:
            self.clock.now = now
            ops: list[tuple[Any, Any]] = []
            since_opening = int((now - at(day, 8.5)) // STEP)
            for _ in range(arrivals.get(since_opening, 0) if now >= at(day, 8.5) else 0):
                service = rng.choices([s[0] for s in SERVICES], [s[3] for s in SERVICES])[0]
                ops.append((self.issued, self.queue.issue(service, rng.random() < 0.05)))
            for due, ticket in [r for r in self.readmits if r[0] <= now]:
                self.readmits.remove((due, ticket))
                ops.append((partial_apply(self.readmitted, ticket),
                            self.queue.readmit(ticket.id)))
            for due, ticket, window in [r for r in self.ratings if r[0] <= now]:
                self.ratings.remove((due, ticket, window))
                level = rng.choice(LEVELS)
                rating = Rating(ticket.id, ticket.day, window, ticket.service, level, now, "pad")
                ops.append((partial_apply(self.rated, ticket, rating),
                            self.queue.run(lambda tx, now, r=rating: tx.insert_rating(r))))
            if self.waiting and rng.random() < 0.22 and now < stop_calling:
                ticket = rng.choice(list(self.waiting.values()))
                ops.append((partial_apply(self.cancelled, ticket),
                            self.queue.cancel(ticket.id)))
            for w in self.windows.values():
                op = self.decide(w, now, day, stop_calling, close_from,
                                 keep_serving=w.id in keep_serving)
                if op is not None:
                    ops.append(op)
            results = await asyncio.gather(*(coro for _, coro in ops), return_exceptions=True)
            for (apply, _), result in zip(ops, results):
                apply(result, now)
            step += 1

    def close_day_before(self, day: date) -> None:
        """What the roll-over does at the day's first operation: leftovers of the days
        before are closed (the test's record follows)."""
        for t in self.tickets.values():
            if t.day < day.isoformat() and t.status in ("waiting", "called", "serving"):
                t.closed_by = "day_end"
                if t.status == "waiting":
                    t.status = "cancelled"
                else:
                    t.status = "done"
                    for w in self.windows.values():
                        if w.current is t:
                            w.current = None

    def decide(self, w: Win, now: float, day: date, stop_calling: float, close_from: float,
               keep_serving: bool):
        rng, q = self.rng, self.queue
        if w.state == "closed":
            opens = at(day, 10.0) if w.temporary else at(day, 8.25)
            closes = at(day, 15.0) if w.temporary else close_from
            if opens <= now < closes:
                return partial_apply(self.changed, w, "open"), q.open(w.id)
            return None
        if w.state == "paused":
            if now >= w.paused_until:
                return partial_apply(self.changed, w, "open"), q.resume(w.id)
            return None
        if now < w.due:
            return None
        closes = at(day, 15.0) if w.temporary else close_from
        if w.current is None:
            if now >= closes:
                return partial_apply(self.changed, w, "closed"), q.close(w.id)
            if rng.random() < 0.004:
                w.paused_until = now + STEP * rng.randint(3, 25)
                return partial_apply(self.changed, w, "paused"), q.pause(w.id)
            if now < stop_calling and (self.waiting_for(w) or rng.random() < 0.15):
                return partial_apply(self.called, w, None), q.call_next(w.id)
            return None
        if keep_serving and w.phase == "serving" and now >= at(day, 17.0):
            return None                            # still serving at midnight
        r = rng.random()
        if w.phase == "called":
            if r < 0.06:
                return partial_apply(self.ended, w, "no_show"), q.no_show(w.id)
            if r < 0.09:
                others = [s[0] for s in SERVICES if s[0] != w.current.service]
                service = rng.choice(others)
                return partial_apply(self.transferred, w, service, None), \
                    q.transfer(w.id, service=service)
            if r < 0.10:
                targets = [o.id for o in self.windows.values() if o.id != w.id
                           and not o.temporary and o.state == "open"]
                target = rng.choice(targets)
                return partial_apply(self.transferred, w, None, target), \
                    q.transfer(w.id, to_window=target)
            if r < 0.15:
                return partial_apply(self.ended, w, "done"), q.complete(w.id)
            if r < 0.18 and now < stop_calling:
                return partial_apply(self.called, w, w.current), q.call_next(w.id)
            if r < 0.185:
                w.paused_until = now + STEP * rng.randint(1, 5)     # paused with a ticket
                return partial_apply(self.changed, w, "paused"), q.pause(w.id)
            return partial_apply(self.started, w), q.start(w.id)
        if r < 0.04:
            others = [s[0] for s in SERVICES if s[0] != w.current.service]
            service = rng.choice(others)
            return partial_apply(self.transferred, w, service, None), \
                q.transfer(w.id, service=service)
        if r < 0.25 and now < stop_calling:
            return partial_apply(self.called, w, w.current), q.call_next(w.id)
        return partial_apply(self.ended, w, "done"), q.complete(w.id)

    # -- what each answer means ----------------------------------------------------------

    def issued(self, result, now: float) -> None:
        ticket = ok(result).ticket
        assert ticket.issued_at == now
        t = Tk(ticket.id, ticket.day, ticket.service, ticket.service, now)
        self.tickets[t.id] = t
        self.waits(t)
        self.event(now)

    def called(self, w: Win, finishing: Tk | None, result, now: float) -> None:
        view = ok(result)
        if w.current is not None:
            assert finishing is None or finishing is w.current
            self.finish(w, w.current, "done", now)
        if view is None:
            return
        t = self.tickets[view.ticket.id]
        assert t.status == "waiting" and (t.target in (None, w.id)), (t, w.id)
        self.leaves_line(t)
        t.status, t.window, t.target, t.started_at = "called", w.id, None, None
        t.calls.append((now, t.service, w.id))
        t.stays.append([w.id, now, None])
        w.current, w.phase, w.due = t, "called", now + STEP
        self.event(now)

    def started(self, w: Win, result, now: float) -> None:
        ok(result)
        w.current.status, w.current.started_at = "serving", now
        w.phase, w.due = "serving", now + STEP * self.rng.randint(1, 3)
        self.event(now)

    def ended(self, w: Win, status: str, result, now: float) -> None:
        ok(result)
        self.finish(w, w.current, status, now)

    def finish(self, w: Win, t: Tk, status: str, now: float) -> None:
        t.status, t.finished_at = status, now
        t.stays[-1][2] = now
        w.current = None
        w.due = now
        if status == "done" and self.rng.random() < 0.5:
            self.ratings.append((now + STEP * self.rng.randint(0, 3), t, w.id))
        if status == "no_show" and self.rng.random() < 0.3:
            self.readmits.append((now + STEP * self.rng.randint(1, 20), t))
        self.event(now)

    def transferred(self, w: Win, service: str | None, target: str | None, result,
                    now: float) -> None:
        ok(result)
        t = w.current
        t.transfers.append((now, t.service, w.id))
        t.service = service or t.service
        t.status, t.window, t.target, t.started_at = "waiting", None, target, None
        t.stays[-1][2] = now
        self.waits(t)
        self.done_as["transfer to a window" if target else "transfer"] += 1
        w.current, w.due = None, now
        self.event(now)

    def readmitted(self, t: Tk, result, now: float) -> None:
        ok(result)
        assert t.status == "no_show"
        t.status, t.window, t.target, t.finished_at = "waiting", None, None, None
        self.waits(t)
        self.done_as["re-admission"] += 1
        self.event(now)

    def cancelled(self, t: Tk, result, now: float) -> None:
        if isinstance(result, Conflict):          # called by a window earlier in the batch
            assert t.status != "waiting"
            return
        ok(result)
        self.leaves_line(t)
        t.status, t.closed_by, t.finished_at = "cancelled", "cancel", now
        self.event(now)

    def rated(self, t: Tk, rating: Rating, result, now: float) -> None:
        ok(result)
        t.rating = (rating.level, rating.window, rating.service)

    def changed(self, w: Win, state: str, result, now: float) -> None:
        ok(result)
        assert w.state != state
        self.done_as[state] += 1
        w.state = state
        w.changes.append((now, state))
        self.event(now)


def partial_apply(fn, *args):
    return lambda result, now: fn(*args, result, now)


def ok(result):
    if isinstance(result, BaseException):
        raise result
    return result


# -- the independent recomputation -----------------------------------------------------

def tenth(seconds: float) -> float:
    """Seconds as minutes to 0.1, half-up, in decimal arithmetic."""
    return float((Decimal(seconds) / 60).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def percentiles(seconds: list[float]) -> dict:
    if not seconds:
        return dict(NONE)
    ordered = sorted(seconds)

    def nearest(p: int) -> float:
        return ordered[math.ceil(Decimal(p * len(ordered)) / 100) - 1]
    return {"p50": tenth(nearest(50)), "p90": tenth(nearest(90)), "max": tenth(ordered[-1])}


class Expect:
    """One scope's figures, accumulated from the record."""

    def __init__(self):
        self.counts = Counter()
        self.waits: list[float] = []
        self.service_times: list[float] = []
        self.levels = Counter()
        self.seconds = Counter()

    def ratings(self) -> dict:
        rated = sum(self.levels.values())
        good = sum(self.levels[level] for level in (3, 4, 5))
        return {"by_level": {str(level): self.levels[level] for level in (5, 4, 3, 2, 1)},
                "rated": rated, "good": good, "bad": rated - good,
                "satisfaction": round(good / rated, 4) if rated else None}

    def counted(self, *names: str) -> dict:
        return {name: self.counts[name] for name in names}


ALL_COUNTS = ("issued", "called", "served", "no_show", "cancelled", "transferred", "waiting",
              "at_window")


def expected(sim: Sim, config: Config, days: list[date], until: float,
             closed: bool = False) -> dict:
    """GET /stats as the record says it should answer for `days`, at `until`; `closed`:
    the last day is over (the roll-over finished what was at a window)."""
    totals, services, windows = Expect(), defaultdict(Expect), defaultdict(Expect)
    hours: defaultdict[int, Counter] = defaultdict(Counter)
    hour_waits: defaultdict[int, list] = defaultdict(list)
    wanted = {d.isoformat() for d in days}

    def local_hour(t: float) -> int:
        return datetime.fromtimestamp(t, TZ).hour

    for t in sim.tickets.values():
        if t.day not in wanted:
            continue
        day_end = at(date.fromisoformat(t.day) + timedelta(days=1), 0)
        totals.counts["issued"] += 1
        services[t.issued_service].counts["issued"] += 1
        hours[local_hour(t.issued_at)]["issued"] += 1
        for n, (called_at, service, window) in enumerate(t.calls):
            for scope in (totals, services[service], windows[window]):
                scope.counts["called"] += 1
                if n == 0:
                    scope.waits.append(called_at - t.issued_at)
            hours[local_hour(called_at)]["called"] += 1
            if n == 0:
                hour_waits[local_hour(called_at)].append(called_at - t.issued_at)
        for _, service, window in t.transfers:
            for scope in (totals, services[service], windows[window]):
                scope.counts["transferred"] += 1
        for window, begin, end in t.stays:
            stop = min(end if end is not None else until, until, day_end)
            windows[window].seconds["serving"] += max(0.0, stop - begin)
        ends = (totals, services[t.service])
        status, closed_by = t.status, t.closed_by
        if closed and status in ("called", "serving"):
            status, closed_by = "done", "day_end"
        if status == "done":
            for scope in (*ends, windows[t.window]):
                scope.counts["served"] += 1
                if closed_by != "day_end":
                    began = t.started_at if t.started_at is not None else t.calls[-1][0]
                    scope.service_times.append(t.finished_at - began)
        elif status == "no_show":
            for scope in (*ends, windows[t.window]):
                scope.counts["no_show"] += 1
        elif status == "waiting" or closed_by == "day_end":
            for scope in ends:
                scope.counts["waiting"] += 1
        elif status == "cancelled":
            for scope in ends:
                scope.counts["cancelled"] += 1
        else:
            for scope in ends:
                scope.counts["at_window"] += 1
        if t.rating is not None:
            level, window, service = t.rating
            for scope in (totals, services[service], windows[window]):
                scope.levels[level] += 1

    for day in days:
        begin = max(at(day, 0), sim.first_event_at)
        stop = min(at(day + timedelta(days=1), 0), until)
        for w in sim.windows.values():
            state, since = w.at_day_start.get(day.isoformat(), w.state), begin
            for changed_at, new_state in w.changes:
                if at(day, 0) <= changed_at < at(day + timedelta(days=1), 0):
                    windows[w.id].seconds[state] += max(0.0, min(changed_at, stop) - since)
                    state, since = new_state, changed_at
            windows[w.id].seconds[state] += max(0.0, stop - since)

    def counts(scope: Expect) -> dict:
        return {**scope.counted(*ALL_COUNTS), "wait_min": percentiles(scope.waits),
                "service_min": percentiles(scope.service_times), "ratings": scope.ratings()}

    return {
        "totals": counts(totals),
        "services": [{"id": s.id, "name": s.name, **counts(services[s.id])}
                     for s in config.services],
        "windows": [{"id": w.id, "name": w.name,
                     **windows[w.id].counted("called", "served", "no_show", "transferred"),
                     "wait_min": percentiles(windows[w.id].waits),
                     "service_min": percentiles(windows[w.id].service_times),
                     "open_min": tenth(windows[w.id].seconds["open"]),
                     "serving_min": tenth(windows[w.id].seconds["serving"]),
                     "paused_min": tenth(windows[w.id].seconds["paused"]),
                     "ratings": windows[w.id].ratings()} for w in config.windows],
        "hours": [{"hour": h, "issued": hours[h]["issued"], "called": hours[h]["called"],
                   "wait_p50_min": (p := percentiles(hour_waits[h]))["p50"],
                   "wait_p90_min": p["p90"], "wait_max_min": p["max"]}
                  for h in sorted(hours) if hours[h]["issued"] or hours[h]["called"]],
    }


def assert_figures(answer: dict, expect: dict) -> None:
    """Field by field, so that a difference names its service, window or hour."""
    assert answer["totals"] == expect["totals"]
    for got, want in zip(answer["services"], expect["services"], strict=True):
        assert got == want, f"service {want['id']}"
    for got, want in zip(answer["windows"], expect["windows"], strict=True):
        assert got == want, f"window {want['id']}"
    assert answer["hours"] == expect["hours"]


# -- the played days ---------------------------------------------------------------------

@dataclass
class Played:
    data_dir: Path
    sim: Sim
    days: list[date]
    seconds: float

    def copy(self, to: Path) -> Config:
        shutil.copytree(self.data_dir, to)
        return hall(to)


def play(data_dir: Path, days: list[tuple[date, int, tuple[str, ...]]], seed: int) -> Played:
    async def run() -> Sim:
        config = hall(data_dir)
        clock = Clock(at(days[0][0], 8.0))
        store = SQLiteStore(data_dir / "kioskd.db")
        queue = Queue(config, store, clock)
        await store.open()
        await queue.setup()
        sim = Sim(queue, clock, seed)
        for day, count, keep in days:
            await sim.play_day(day, count, keep)
        await store.close()
        return sim
    started = time.perf_counter()
    sim = asyncio.run(run())
    return Played(data_dir, sim, [d for d, _, _ in days], time.perf_counter() - started)


@pytest.fixture(scope="module")
def big_day(tmp_path_factory) -> Played:
    played = play(tmp_path_factory.mktemp("big") / "var", [(FIRST_DAY, 10_000, KEEP_SERVING)],
                  seed=7)
    print(f"\n10,000 tickets played in {played.seconds:.1f} s")
    return played


@pytest.fixture(scope="module")
def three_days(tmp_path_factory) -> Played:
    return play(tmp_path_factory.mktemp("three") / "var",
                [(FIRST_DAY + timedelta(days=n), 700, ()) for n in range(3)], seed=11)


@pytest.fixture
def without_background_summaries(monkeypatch):
    """The daemon's start-up summarising held back: the request itself must compute."""
    async def nothing(queue):
        return None
    monkeypatch.setattr(stats, "keep_summaries", nothing)


async def get(client, path: str, **params) -> dict:
    r = await client.get(f"{API}{path}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


# -- the day of 10,000 tickets ---------------------------------------------------------------

def test_the_day_played_is_the_mix_it_should_be(big_day):
    tickets = big_day.sim.tickets.values()
    assert len(tickets) == 10_000
    mix = Counter(t.status for t in tickets)
    assert mix["done"] > 8_000 and mix["no_show"] > 200 and mix["cancelled"] > 50
    done_as = big_day.sim.done_as
    assert done_as["transfer"] > 300 and done_as["transfer to a window"] > 20
    assert done_as["re-admission"] > 50
    assert done_as["paused"] > 40 and done_as["open"] > 40 and done_as["closed"] > 30
    assert sum(1 for t in tickets if t.rating) > 3_000
    assert Counter(t.status for t in tickets)["serving"] == 2        # at 18:30


async def test_a_day_of_10000_tickets_equals_the_recomputation_while_it_lasts(big_day, tmp_path):
    config = big_day.copy(tmp_path / "var")
    until = at(FIRST_DAY, 18.5)
    async with serving(config, Clock(until)) as (_app, client):
        started = time.perf_counter()
        answer = await get(client, "/stats")
        took = time.perf_counter() - started
    assert (answer["date"], answer["days_computed"], answer["days_from_summaries"]) == (
        FIRST_DAY.isoformat(), 1, 0)
    assert_figures(answer, expected(big_day.sim, config, [FIRST_DAY], until))
    assert answer["totals"]["at_window"] == 2 and answer["totals"]["waiting"] > 0
    print(f"\nGET /stats of today's 10,000 tickets: {took * 1e3:.0f} ms")


async def test_the_day_once_over_is_kept_and_still_equals_the_recomputation(big_day, tmp_path):
    config = big_day.copy(tmp_path / "var")
    next_day = FIRST_DAY + timedelta(days=1)
    clock = Clock(at(next_day, 0) + config.evaluation.within_s - 1)
    async with serving(config, clock) as (app, client):
        answer = await get(client, "/stats", date=FIRST_DAY.isoformat())
        assert answer["days_computed"] == 1        # ratings may still come: not kept yet
        assert await app.state.queue.store.read(
            lambda tx: tx.day_summary(FIRST_DAY.isoformat())) is None
        clock.advance(2)
        answer = await get(client, "/stats", date=FIRST_DAY.isoformat())
        assert answer["days_computed"] == 1
        kept = await get(client, "/stats", date=FIRST_DAY.isoformat())
    assert (kept["days_computed"], kept["days_from_summaries"]) == (0, 1)
    assert kept == answer | {"days_computed": 0, "days_from_summaries": 1}
    # the roll-over closed the day: left in line is waiting, at a window is served
    expect = expected(big_day.sim, config, [FIRST_DAY], clock.now, closed=True)
    assert_figures(kept, expect)
    assert kept["totals"]["at_window"] == 0


# -- a range of days ---------------------------------------------------------------------

async def test_a_range_equals_the_recomputation_from_all_its_tickets_at_once(
        three_days, tmp_path, without_background_summaries):
    config = three_days.copy(tmp_path / "var")
    first, last = three_days.days[0], three_days.days[-1]
    clock = Clock(at(last, 18.5))                  # the third day is today
    async with serving(config, clock) as (app, client):
        whole = await get(client, "/stats", **{"from": first.isoformat(),
                                               "to": last.isoformat()})
        assert (whole["date"], whole["from"], whole["to"], whole["days"]) == (
            None, first.isoformat(), last.isoformat(), 3)
        assert (whole["days_computed"], whole["days_from_summaries"]) == (3, 0)
        again = await get(client, "/stats", **{"from": first.isoformat(),
                                               "to": last.isoformat()})
        assert (again["days_computed"], again["days_from_summaries"]) == (1, 2)   # today live
        assert again == whole | {"days_computed": 1, "days_from_summaries": 2}
        versions = await app.state.queue.store.read(
            lambda tx: tx.day_summary_versions(first.isoformat(), last.isoformat()))
        assert versions == {first.isoformat(): SUMMARY_VERSION,
                            (first + timedelta(days=1)).isoformat(): SUMMARY_VERSION}
    assert_figures(whole, expected(three_days.sim, config, three_days.days, clock.now))
    days = {}
    for day in three_days.days:                    # a range's days add up to the range
        days[day] = expected(three_days.sim, config, [day], clock.now)
    assert whole["totals"]["issued"] == sum(d["totals"]["issued"] for d in days.values()) == 2100


async def test_a_summary_of_another_version_is_computed_again(
        three_days, tmp_path, without_background_summaries):
    config = three_days.copy(tmp_path / "var")
    first, second = three_days.days[0], three_days.days[1]
    clock = Clock(at(three_days.days[-1], 18.5))
    async with serving(config, clock) as (app, client):
        store = app.state.queue.store
        await store.transact(lambda tx: tx.save_day_summary(
            first.isoformat(), SUMMARY_VERSION - 1, clock.now, {"what": "an older shape"}))
        await store.transact(lambda tx: tx.save_day_summary(
            second.isoformat(), SUMMARY_VERSION + 1, clock.now, {}))
        answer = await get(client, "/stats", **{"from": first.isoformat(),
                                                "to": second.isoformat()})
        assert (answer["days_computed"], answer["days_from_summaries"]) == (2, 0)
        versions = await store.read(lambda tx: tx.day_summary_versions(
            first.isoformat(), second.isoformat()))
        assert set(versions.values()) == {SUMMARY_VERSION}
    assert_figures(answer, expected(three_days.sim, config, [first, second], clock.now))


async def test_past_days_are_summarised_in_the_background_at_start(three_days, tmp_path):
    config = three_days.copy(tmp_path / "var")
    later = three_days.days[-1] + timedelta(days=2)
    async with serving(config, Clock(at(later, 9.0))) as (app, client):
        store = app.state.queue.store
        r = await client.get("/livez")              # start-up did not wait for them
        assert r.status_code == 200
        wanted = {d.isoformat() for d in three_days.days} | {
            (three_days.days[-1] + timedelta(days=1)).isoformat()}        # an empty day too
        await eventually(lambda: store.read(lambda tx: tx.day_summary_versions(
                             "2000-01-01", later.isoformat())),
                         lambda versions: versions == dict.fromkeys(wanted, SUMMARY_VERSION),
                         "every past day summarised", wait=30, every=0.05)
        answer = await get(client, "/stats", **{"from": three_days.days[0].isoformat(),
                                                "to": later.isoformat()})
    assert (answer["days"], answer["days_from_summaries"], answer["days_computed"]) == (5, 4, 1)


async def test_the_csv_holds_the_same_figures_as_the_json(three_days, tmp_path):
    config = three_days.copy(tmp_path / "var")
    first, last = three_days.days[0], three_days.days[-1]
    span = {"from": first.isoformat(), "to": last.isoformat()}
    async with serving(config, Clock(at(last + timedelta(days=1), 9.0))) as (_app, client):
        per_day = {d: await get(client, "/stats", date=d.isoformat()) for d in three_days.days}
        whole = await get(client, "/stats", **span)
        r = await client.get(f"{API}/stats.csv", params=span)
        r_range = await client.get(f"{API}/stats.csv", params={**span, "by": "range"})
        r_day = await client.get(f"{API}/stats.csv", params={"date": first.isoformat()})
    for answer in (r, r_range, r_day):
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "text/csv; charset=utf-8"
        assert answer.content.startswith("\ufeff".encode())
    assert r.headers["content-disposition"] == \
        f'attachment; filename="kioskd-stats-{first}_{last}.csv"'
    assert r_day.headers["content-disposition"] == \
        f'attachment; filename="kioskd-stats-{first}_{first}.csv"'

    def table(answer) -> list[dict]:
        return list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig"))))

    rows = table(r)
    scopes = 1 + len(config.services) + len(config.windows)
    assert len(rows) == 3 * scopes
    for day, answer in per_day.items():
        check_rows([row for row in rows if row["date"] == day.isoformat()], answer, config)
    range_rows = table(r_range)
    assert {row["date"] for row in range_rows} == {f"{first}/{last}"}
    check_rows(range_rows, whole, config)
    assert table(r_day) == [row for row in rows if row["date"] == first.isoformat()]
    assert any(row["name"] == '社保, "综合"' for row in rows)      # quoted, read back whole


def check_rows(rows: list[dict], answer: dict, config: Config) -> None:
    """The rows of one day (or the range) against GET /stats's answer."""
    assert [(row["scope"], row["id"]) for row in rows] == [("hall", "")] + [
        ("service", s.id) for s in config.services] + [("window", w.id) for w in config.windows]
    assert rows[0]["name"] == config.hall.name
    items = [answer["totals"], *answer["services"], *answer["windows"]]
    for row, item in zip(rows, items, strict=True):
        expect = {"name": item.get("name", config.hall.name)}
        for count in ALL_COUNTS:
            expect[count] = str(item[count]) if count in item else ""
        for prefix, times in (("wait", item["wait_min"]), ("service", item["service_min"])):
            for p in ("p50", "p90", "max"):
                expect[f"{prefix}_{p}_min"] = "" if times[p] is None else str(times[p])
        for kind in ("open", "serving", "paused"):
            expect[f"{kind}_min"] = str(item[f"{kind}_min"]) if "open_min" in item else ""
        ratings = item["ratings"]
        expect.update(rated=str(ratings["rated"]), good=str(ratings["good"]),
                      bad=str(ratings["bad"]),
                      satisfaction="" if ratings["satisfaction"] is None
                      else f"{ratings['satisfaction']:.4f}",
                      **{f"level_{level}": str(n) for level, n in ratings["by_level"].items()})
        assert {k: row[k] for k in expect} == expect, (row["scope"], row["id"])
