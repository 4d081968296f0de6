"""What the supervisor reads: a day's counts and times per service, window and hour —
computed from the store's tickets and event log, no HTTP here.

A day's figures come from two reads, both by index: the tickets whose number belongs
to the day (`tickets.day`), and the day's `ticket.called` and `ticket.transferred`
events (`events_by_type`: type, then time). The ticket row says how each ticket
ended; the events say what its row forgets — a transfer or a re-admission clears the
row's call time, so only the log knows a ticket's first call and where it was
transferred from. `day_stats` runs inside `store.read`: a worker thread, off the loop.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from .config import Config
from .queue import day_bounds
from .records import Event, Status, Ticket
from .store import Tx

DAY_EVENTS = ("ticket.called", "ticket.transferred")
DAY_EVENT_KEYS = ("ticket", "service", "from_service", "from_window")


# -- figures ------------------------------------------------------------------------------

def minutes(seconds: float) -> float:
    """Seconds as minutes rounded half-up to 0.1 (45 s → 0.8)."""
    return math.floor(seconds / 6 + 0.5) / 10


def nearest_rank(ordered: list[float], p: float) -> float:
    """The nearest-rank percentile of a sorted, non-empty list: the smallest value
    with at least p % of the values at or below it."""
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


@dataclass(frozen=True)
class Minutes:
    """p50, p90 (nearest rank) and max of some durations, in minutes; None without any."""

    p50: float | None = None
    p90: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, seconds: Iterable[float]) -> Minutes:
        ordered = sorted(seconds)
        if not ordered:
            return cls()
        return cls(minutes(nearest_rank(ordered, 50)), minutes(nearest_rank(ordered, 90)),
                   minutes(ordered[-1]))


@dataclass
class Tally:
    """The counts and durations (seconds) of one service, one window or the whole hall."""

    issued: int = 0
    served: int = 0
    no_show: int = 0
    cancelled: int = 0
    transferred: int = 0
    waiting: int = 0
    at_window: int = 0
    waits: list[float] = field(default_factory=list)
    service_times: list[float] = field(default_factory=list)

    @property
    def wait_min(self) -> Minutes:
        return Minutes.of(self.waits)

    @property
    def service_min(self) -> Minutes:
        return Minutes.of(self.service_times)


@dataclass
class Hour:
    """One hall-local hour: numbers issued, calls made, and the waits of the tickets
    first called in it."""

    hour: int
    issued: int = 0
    called: int = 0
    waits: list[float] = field(default_factory=list)

    @property
    def wait_min(self) -> Minutes:
        return Minutes.of(self.waits)


@dataclass(frozen=True)
class DayStats:
    date: str
    services: dict[str, Tally]     # every configured service, in the config's order
    windows: dict[str, Tally]      # every configured window, in the config's order
    hours: list[Hour]              # the hours with an issue or a call, ascending
    totals: Tally                  # the whole hall, services no longer configured included


def day_stats(tx: Tx, config: Config, day: date) -> DayStats:
    """Read the day from the store and summarise it."""
    tz = ZoneInfo(config.hall.timezone)
    start, end = day_bounds(day, tz)
    return summarise(config, day, tx.tickets_of_day(day.isoformat()),
                     tx.events_between(DAY_EVENTS, start, end, DAY_EVENT_KEYS))


def summarise(config: Config, day: date, tickets: list[Ticket],
              events: list[Event]) -> DayStats:
    """The day's figures from its tickets and its call and transfer events (log order).

    - issued: tickets whose number belongs to the day, under the service they were
      issued for (a transferred ticket's first `from_service`).
    - How a ticket ended, from its row, under its service and window at the end:
      served = `done` (also one still at a window when the day was closed, whose
      service time is then unknown and left out); no_show = `no_show` (one re-admitted
      counts by how it ended the second time); cancelled = cancelled by a person;
      waiting = still in line (or, for a past day, left in line when the day was
      closed: `day_end`); at_window = called or being served now.
    - transferred: transfers made, under the service and window it left.
    - wait: first call − issue, once per ticket (a transferred or re-admitted ticket
      keeps its issue time and is called again; that later call is not a wait),
      under the service it was called for, and in the hour of that call.
    - service time: finished − started (− called when never started) of served tickets.
    - hours: issues by issue time, calls (every `ticket.called`, second calls
      included) by call time, in the hall's time zone.
    """
    tz = ZoneInfo(config.hall.timezone)
    services = {s.id: Tally() for s in config.services}
    windows = {w.id: Tally() for w in config.windows}
    totals = Tally()
    hours: dict[int, Hour] = {}
    # When each local hour begins (a skipped hour begins with the next one, a repeated
    # one covers both): bisecting these is much cheaper than a time-zone conversion.
    begins = [datetime.combine(day, time(h), tz).timestamp() for h in range(24)]

    def hour(at: float) -> Hour:
        h = min(max(bisect_right(begins, at) - 1, 0), 23)
        found = hours.get(h)
        if found is None:
            found = hours[h] = Hour(h)
        return found

    def tallies(service: str | None, window: str | None = None) -> Iterator[Tally]:
        yield totals
        if service in services:
            yield services[service]
        if window in windows:
            yield windows[window]

    def waited(ticket: Ticket, service: str | None, called_at: float) -> None:
        wait = max(0.0, called_at - ticket.issued_at)
        hour(called_at).waits.append(wait)
        for tally in tallies(service):
            tally.waits.append(wait)

    by_id = {t.id: t for t in tickets}
    issued_for: dict[str, str] = {}
    called: set[str] = set()
    for event in events:
        ticket = by_id.get(event.data.get("ticket"))
        if ticket is None:                       # another day's ticket
            continue
        if event.type == "ticket.transferred":
            source = event.data.get("from_service")
            issued_for.setdefault(ticket.id, source)
            for tally in tallies(source, event.data.get("from_window")):
                tally.transferred += 1
        elif event.type == "ticket.called":
            hour(event.at).called += 1
            if ticket.id not in called:
                called.add(ticket.id)
                waited(ticket, event.data.get("service"), event.at)

    for t in tickets:
        hour(t.issued_at).issued += 1
        for tally in tallies(issued_for.get(t.id, t.service)):
            tally.issued += 1
        if t.id not in called and t.called_at is not None:
            # A log without this ticket's call (a store filled by hand): its row's call.
            hour(t.called_at).called += 1
            waited(t, t.service, t.called_at)
        if t.status is Status.DONE:
            took = _service_seconds(t)
            for tally in tallies(t.service, t.window):
                tally.served += 1
                if took is not None:
                    tally.service_times.append(took)
        elif t.status is Status.NO_SHOW:
            for tally in tallies(t.service, t.window):
                tally.no_show += 1
        elif t.status is Status.WAITING or (t.status is Status.CANCELLED
                                            and t.closed_by == "day_end"):
            for tally in tallies(t.service):
                tally.waiting += 1
        elif t.status is Status.CANCELLED:
            for tally in tallies(t.service):
                tally.cancelled += 1
        else:                                    # called or serving
            for tally in tallies(t.service):
                tally.at_window += 1
    return DayStats(day.isoformat(), services, windows,
                    [hours[h] for h in sorted(hours)], totals)


def _service_seconds(t: Ticket) -> float | None:
    began = t.started_at if t.started_at is not None else t.called_at
    if t.closed_by == "day_end" or began is None or t.finished_at is None:
        return None
    return max(0.0, t.finished_at - began)
