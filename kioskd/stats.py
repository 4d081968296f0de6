"""What the supervisor reads: counts, waiting and service times, window time and ratings
per service, window and hour, for a day or a range of days — computed from the store's
tickets, event log and ratings, and kept per finished day. No HTTP here.

A day is read in one snapshot of the store (`store.read`: a worker thread, off the
loop), by index: the tickets whose number belongs to the day (`tickets.day`), the day's
`ticket.called`, `ticket.transferred`, `ticket.no_show` and `window.changed` events
(`events_by_type`: type, then time) and the day's ratings. The ticket row says how each
ticket ended; the events say what its row forgets — a transfer or a re-admission clears
the row's call time, so only the log knows a ticket's first call, where it was
transferred from, and when each window opened, paused and held a ticket.

A range stays fast with a year of history because each finished day is summarised once
and kept (`day_summaries`): its counts, its window time, its ratings, and its waits and
service times as histograms in 0.1-minute steps. Merging those histograms gives a
range's percentiles EXACTLY: rounding to 0.1 minute is monotone, so the nearest-rank
percentile of the rounded durations is the rounded nearest-rank percentile of the raw
ones, and a histogram of rounded durations is all a nearest-rank percentile needs.
Today, and a day until its ratings can no longer change (`[evaluation] within_s` after
its midnight), is always computed live; a summary of another `SUMMARY_VERSION` is
computed again.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import math
import sys
from array import array
from base64 import b64decode, b64encode
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta
from functools import partial
from itertools import accumulate
from operator import itemgetter
from time import monotonic as time_now
from typing import Any
from zoneinfo import ZoneInfo

from .config import Config
from .queue import Queue, day_bounds
from .ratings import BAD, GOOD, LEVELS
from .store import StoreClosed, Tx

log = logging.getLogger("kioskd.stats")

SUMMARY_VERSION = 1            # what a kept day summary holds; another is computed again
MAX_DAYS = 366                 # the longest range one request may ask for
# What a day's figures read of its event log: each kind of event with the three keys
# it needs, as (id, at, type, key 1, key 2, key 3)
CALL_EVENTS = (("ticket.called", "ticket.no_show"), ("ticket", "service", "window"))
TRANSFER_EVENTS = (("ticket.transferred",), ("ticket", "from_service", "from_window"))
WINDOW_EVENTS = (("window.changed",), ("window", "state", "previous"))
SUMMARY_REST = 2.0             # background summaries: rest twice as long as a day took


# -- figures ------------------------------------------------------------------------------

def minutes(seconds: float) -> float:
    """Seconds as minutes rounded half-up to 0.1 (45 s → 0.8)."""
    return tenths(seconds) / 10


def tenths(seconds: float) -> int:
    """Seconds as a whole number of tenths of a minute, rounded half-up (45 s → 8)."""
    return math.floor(seconds / 6 + 0.5)


def rank(p: int, count: int) -> int:
    """The nearest rank (1-based) of the p-th percentile among `count` values: the
    smallest rank with at least p % of the values at or below it."""
    return max(1, (p * count + 99) // 100)


def nearest_rank(ordered: list[float], p: int) -> float:
    """The nearest-rank percentile of a sorted, non-empty list."""
    return ordered[rank(p, len(ordered)) - 1]


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


_BIG_ENDIAN = sys.byteorder == "big"
_WIDTHS = ((1, "B"), (2, "H"), (4, "I"), (8, "Q"))      # bytes per count, array type
assert all(array(code).itemsize == width for width, code in _WIDTHS)


class Histogram:
    """How many durations round to each tenth of a minute: bucket b counts those of
    b/10 minutes.

    Held as one integer whose bits [64·b, 64·b + 64) count bucket b, so that merging
    two histograms — a range of days — is one integer addition, done in C: no bucket
    ever counts 2^64 durations, so no field carries into the next. A year of days
    merges in milliseconds, where adding bucket by bucket in Python took a second.
    """

    __slots__ = ("packed",)

    def __init__(self, packed: int = 0):
        self.packed = packed

    @classmethod
    def of(cls, buckets: Mapping[int, int]) -> Histogram:
        """From {bucket: count}."""
        if not buckets:
            return cls()
        counts = array("Q", bytes(8 * (max(buckets) + 1)))
        for bucket, count in buckets.items():
            counts[bucket] = count
        if _BIG_ENDIAN:
            counts.byteswap()
        return cls(int.from_bytes(counts.tobytes(), "little"))

    def __add__(self, other: Histogram) -> Histogram:
        return Histogram(self.packed + other.packed)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Histogram) and other.packed == self.packed

    def __repr__(self) -> str:
        return f"Histogram({dict((b, n) for b, n in enumerate(self.counts()) if n)})"

    def counts(self) -> array:
        """The count of every bucket from 0.0 minutes to the largest."""
        counts = array("Q")
        counts.frombytes(self.packed.to_bytes(8 * ((self.packed.bit_length() + 63) // 64),
                                              "little"))
        if _BIG_ENDIAN:
            counts.byteswap()
        return counts

    @property
    def count(self) -> int:
        return sum(self.counts())

    def minutes(self) -> Minutes:
        """Nearest-rank p50, p90 and the largest, in minutes."""
        if not self.packed:
            return Minutes()
        counts = self.counts()
        running = list(accumulate(counts))
        total = running[-1]
        return Minutes(bisect_left(running, rank(50, total)) / 10,
                       bisect_left(running, rank(90, total)) / 10, (len(counts) - 1) / 10)

    def encode(self) -> str:
        """As kept in a day summary: "<bytes per count>:<base64 of the counts,
        little-endian, bucket 0 first>", each count in the fewest bytes that hold the
        day's largest — "1:AAIB" is two of 0.1 minute and one of 0.2. Empty: ""."""
        if not self.packed:
            return ""
        counts = self.counts()
        largest = max(counts)
        width, code = next(w for w in _WIDTHS if largest < 1 << (8 * w[0]))
        narrow = array(code, counts)
        if _BIG_ENDIAN:
            narrow.byteswap()
        return f"{width}:{b64encode(narrow.tobytes()).decode('ascii')}"

    @classmethod
    def decode(cls, text: str) -> Histogram:
        if not text:
            return cls()
        width_text, _, data = text.partition(":")
        width, raw = int(width_text), b64decode(data)
        if width != 8:                 # spread each count over 8 bytes (little-endian)
            wide = bytearray(len(raw) // width * 8)
            for byte in range(width):
                wide[byte::8] = raw[byte::width]
            raw = wide
        return cls(int.from_bytes(raw, "little"))


@dataclass
class Tally:
    """What happened to one service, one window or the whole hall over some days:
    counts, durations as histograms, ratings, and a window's time (seconds)."""

    issued: int = 0
    called: int = 0
    served: int = 0
    no_show: int = 0
    cancelled: int = 0
    transferred: int = 0
    waiting: int = 0
    at_window: int = 0
    waits: Histogram = field(default_factory=Histogram)
    service_times: Histogram = field(default_factory=Histogram)
    ratings: list[int] = field(default_factory=lambda: [0] * 5)     # [level 1 … level 5]
    open_s: float = 0.0
    serving_s: float = 0.0
    paused_s: float = 0.0

    def add(self, other: Tally) -> None:
        for name in COUNTS + WINDOW_TIME:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.waits += other.waits
        self.service_times += other.service_times
        self.ratings = [a + b for a, b in zip(self.ratings, other.ratings)]

    @property
    def wait_min(self) -> Minutes:
        return self.waits.minutes()

    @property
    def service_min(self) -> Minutes:
        return self.service_times.minutes()

    @property
    def rated(self) -> int:
        return sum(self.ratings)

    @property
    def good(self) -> int:
        return sum(self.ratings[level - 1] for level in GOOD)

    @property
    def bad(self) -> int:
        return sum(self.ratings[level - 1] for level in BAD)

    @property
    def satisfaction(self) -> float | None:
        """good / rated, to 4 decimals; None when nothing was rated."""
        return round(self.good / self.rated, 4) if self.rated else None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: getattr(self, name) for name in COUNTS + WINDOW_TIME}
        data.update(waits=self.waits.encode(), service_times=self.service_times.encode(),
                    ratings=list(self.ratings))
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Tally:
        return cls(**{name: data[name] for name in COUNTS + WINDOW_TIME},
                   waits=Histogram.decode(data["waits"]),
                   service_times=Histogram.decode(data["service_times"]),
                   ratings=list(data["ratings"]))


COUNTS = ("issued", "called", "served", "no_show", "cancelled", "transferred", "waiting",
          "at_window")
WINDOW_TIME = ("open_s", "serving_s", "paused_s")
assert {f.name for f in fields(Tally)} == {*COUNTS, *WINDOW_TIME, "waits", "service_times",
                                           "ratings"}


@dataclass
class Hour:
    """One hall-local hour: numbers issued, calls made, and the waits of the tickets
    first called in it."""

    hour: int
    issued: int = 0
    called: int = 0
    waits: Histogram = field(default_factory=Histogram)

    @property
    def wait_min(self) -> Minutes:
        return self.waits.minutes()


@dataclass
class Figures:
    """A day's or a range's figures: every service, window and hour seen, and the hall.
    Adding another day's keeps them exact (counts and histograms add up)."""

    first: str
    last: str
    totals: Tally = field(default_factory=Tally)
    services: dict[str, Tally] = field(default_factory=dict)
    windows: dict[str, Tally] = field(default_factory=dict)
    hours: dict[int, Hour] = field(default_factory=dict)
    days: int = 1
    from_summaries: int = 0        # days read from kept summaries
    computed: int = 0              # days computed from tickets and events for this answer

    def add(self, other: Figures) -> None:
        self.first, self.last = min(self.first, other.first), max(self.last, other.last)
        self.totals.add(other.totals)
        for mine, theirs in ((self.services, other.services), (self.windows, other.windows)):
            for key, tally in theirs.items():
                mine.setdefault(key, Tally()).add(tally)
        for h, hour in other.hours.items():
            merged = self.hours.setdefault(h, Hour(h))
            merged.issued += hour.issued
            merged.called += hour.called
            merged.waits += hour.waits
        self.days += other.days
        self.from_summaries += other.from_summaries
        self.computed += other.computed

    def service(self, service_id: str) -> Tally:
        return self.services.get(service_id) or Tally()

    def window(self, window_id: str) -> Tally:
        return self.windows.get(window_id) or Tally()

    def busy_hours(self) -> list[Hour]:
        """The hours with an issue or a call, ascending."""
        return [self.hours[h] for h in sorted(self.hours)
                if self.hours[h].issued or self.hours[h].called]

    def to_data(self) -> dict[str, Any]:
        """The day as kept in `day_summaries` (JSON)."""
        return {"day": self.first, "totals": self.totals.to_data(),
                "services": {k: t.to_data() for k, t in self.services.items()},
                "windows": {k: t.to_data() for k, t in self.windows.items()},
                "hours": {str(h.hour): {"issued": h.issued, "called": h.called,
                                        "waits": h.waits.encode()}
                          for h in self.hours.values()}}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Figures:
        return cls(data["day"], data["day"], Tally.from_data(data["totals"]),
                   {k: Tally.from_data(t) for k, t in data["services"].items()},
                   {k: Tally.from_data(t) for k, t in data["windows"].items()},
                   {int(h): Hour(int(h), v["issued"], v["called"], Histogram.decode(v["waits"]))
                    for h, v in data["hours"].items()},
                   from_summaries=1)


# -- one day -------------------------------------------------------------------------------

@dataclass(frozen=True)
class DayFacts:
    """What a day's figures are computed from, read in one snapshot of the store."""

    day: date
    tickets: list[tuple]           # Tx.ticket_facts_of_day
    events: list[tuple]            # CALL_EVENTS and TRANSFER_EVENTS, in log order
    window_changes: list[tuple]    # WINDOW_EVENTS, in log order
    ratings: list[tuple]           # Tx.rating_counts: (window, service, level, how many)
    window_states: dict[str, str]  # each window's state when its time began to count
    counted_from: float            # window time counts from the day's start (or the log's)
    until: float                   # … to its end, or now while the day lasts


def read_day(tx: Tx, config: Config, day: date, now: float,
             history_start: float | None) -> DayFacts:
    """Read the day from the store. A window's state when the day began: the
    `previous` of its first change that day; else, when its record has not changed
    since before the day, its state now; else the state its last change before the
    day left it in; else the `previous` of its first change after the day; else its
    state now. Window time counts from the day's start, or from the log's first event
    when the hall's history begins later (before it, kioskd knew nothing of the
    windows), until the day's end or now."""
    tz = ZoneInfo(config.hall.timezone)
    start, end = day_bounds(day, tz)

    def events(types_and_keys: tuple[tuple[str, ...], tuple[str, ...]]) -> list[tuple]:
        types, keys = types_and_keys
        return tx.event_values_between(types, start, end, keys)

    tickets = tx.ticket_facts_of_day(day.isoformat())
    calls, transfers = events(CALL_EVENTS), events(TRANSFER_EVENTS)
    changes = events(WINDOW_EVENTS)
    if transfers:                                  # one log order (ids ascend in each)
        calls = sorted(calls + transfers, key=itemgetter(0))
    ratings = tx.rating_counts(day.isoformat(), day.isoformat())
    states: dict[str, str] = {}
    for _, _, _, window_id, _, previous in changes:
        states.setdefault(window_id, previous)     # the previous of its first change
    for record in tx.windows():
        if record.id in states:
            continue
        if record.since <= start:
            states[record.id] = record.state.value
        else:
            states[record.id] = (tx.window_state_before(record.id, start)
                                 or tx.window_state_after(record.id, end)
                                 or record.state.value)
    counted_from = max(start, history_start if history_start is not None else end)
    return DayFacts(day, tickets, calls, changes, ratings, states, counted_from,
                    min(end, now))


def summarise(config: Config, facts: DayFacts) -> Figures:
    """The day's figures from its tickets, events and ratings.

    - issued: tickets whose number belongs to the day, under the service they were
      issued for (a transferred ticket's first `from_service`).
    - How a ticket ended, from its row, under its service and window at the end:
      served = `done` (also one still at a window when the day was closed, whose
      service time is then unknown and left out); no_show = `no_show` (one re-admitted
      counts by how it ended the second time); cancelled = cancelled by a person;
      waiting = still in line (or, for a past day, left in line when the day was
      closed: `day_end`); at_window = called or being served now. A window counts
      only the tickets served and missed at it.
    - called: calls made (`ticket.called`; a ticket called again after a transfer or a
      re-admission counts again), under the service and window of the call.
    - transferred: transfers made, under the service and window it left.
    - wait: first call − issue, once per ticket (a transferred or re-admitted ticket
      keeps its issue time and is called again; that later call is not a wait),
      under the service it was called for, the window that called it, and the hour.
    - service time: finished − started (− called when never started) of served tickets.
    - hours: issues by issue time, calls by call time, in the hall's time zone.
    - ratings: each rating of a ticket of the day, under the window and service it
      rates; good = levels 3–5, bad = 1–2.
    - a window's time: open and paused = time in that state; serving = time a ticket
      was at it (called or being served; from its call to its end, transfer or no-show).

    Tickets and events add keys and durations to lists, which `Counter` counts in C;
    the distinct keys are then added to the hall, service and window they name (about
    40 % less time than adding to tallies ticket by ticket, measured on 8,200 tickets).
    """
    day = facts.day
    start, until = facts.counted_from, facts.until
    hours_of = _hours_of(day, ZoneInfo(config.hall.timezone))
    tickets = {t[0]: t for t in facts.tickets}
    issued_for: dict[str, str] = {}
    first_calls: dict[str, tuple[float, str | None, str | None]] = {}
    at_window: dict[str, tuple[str | None, float]] = {}          # ticket → (window, since)
    serving: Counter = Counter()                                 # window → seconds
    changes: defaultdict[str, list[tuple[float, str]]] = defaultdict(list)
    calls: list[tuple] = []              # (service, window) of each call
    call_times: list[float] = []
    transfers: list[tuple] = []          # (service, window) left
    ends: list[tuple] = []               # (how it ended, service, window) of each ticket
    # tenths of a minute, per hall, service, window and hour
    waits: list[int] = []
    service_waits: defaultdict[str | None, list[int]] = defaultdict(list)
    window_waits: defaultdict[str | None, list[int]] = defaultdict(list)
    wait_hours: list[float] = []
    times: list[int] = []
    service_times: defaultdict[str | None, list[int]] = defaultdict(list)
    window_times: defaultdict[str | None, list[int]] = defaultdict(list)

    def within(begin: float, end: float) -> float:
        return max(0.0, min(end, until) - max(begin, start))

    for _, at, _, window_id, state, _ in facts.window_changes:
        changes[window_id].append((at, state))
    # a called ticket: (its service, the window); a transfer: (the service and window left)
    for _, at, kind, ticket_id, service_id, window_id in facts.events:
        if ticket_id not in tickets:                      # another day's ticket
            continue
        held = at_window.pop(ticket_id, None)             # a call, transfer or no-show ends
        if held is not None:                              # the ticket's stay at a window
            serving[held[0]] += within(held[1], at)
        if kind == "ticket.called":
            calls.append((service_id, window_id))
            call_times.append(at)
            if ticket_id not in first_calls:
                first_calls[ticket_id] = (at, service_id, window_id)
            at_window[ticket_id] = (window_id, at)
        elif kind == "ticket.transferred":
            issued_for.setdefault(ticket_id, service_id)
            transfers.append((service_id, window_id))

    add_wait, add_time, add_end = waits.append, times.append, ends.append
    for (ticket_id, service_id, status, issued_at, window_id, called_at, started_at,
         finished_at, closed_by) in facts.tickets:
        first = first_calls.get(ticket_id)
        if first is None and called_at is not None:
            # A log without this ticket's call (a store filled by hand): its row's call.
            first = (called_at, service_id, window_id)
            calls.append((service_id, window_id))
            call_times.append(called_at)
            at_window[ticket_id] = (window_id, called_at)
        if first is not None:
            waited = first[0] - issued_at                 # tenths(): half-up, in line
            tenth = int(waited / 6 + 0.5) if waited > 0 else 0
            add_wait(tenth)
            service_waits[first[1]].append(tenth)
            window_waits[first[2]].append(tenth)
            wait_hours.append(first[0])
            held = at_window.pop(ticket_id, None)         # its last stay at a window
            if held is not None:                          # ends when it did, or goes on
                left = finished_at if finished_at is not None and status in ("done", "no_show") \
                    else until
                begin = held[1] if held[1] > start else start
                if left > until:
                    left = until
                if left > begin:
                    serving[held[0]] += left - begin
        if status == "done":
            add_end(("served", service_id, window_id))
            began = started_at if started_at is not None else called_at
            if closed_by != "day_end" and began is not None and finished_at is not None:
                took = finished_at - began
                tenth = int(took / 6 + 0.5) if took > 0 else 0
                add_time(tenth)
                service_times[service_id].append(tenth)
                window_times[window_id].append(tenth)
        elif status == "no_show":
            add_end(("no_show", service_id, window_id))
        elif status == "waiting" or closed_by == "day_end":
            add_end(("waiting", service_id, None))
        elif status == "cancelled":
            add_end(("cancelled", service_id, None))
        else:                                             # called or serving
            add_end(("at_window", service_id, None))

    figures = Figures(day.isoformat(), day.isoformat(), computed=1)
    services, windows, totals = figures.services, figures.windows, figures.totals
    for s in config.services:
        services[s.id] = Tally()
    for w in config.windows:
        windows[w.id] = Tally()

    def scopes(service_id: str | None, window_id: str | None = None) -> list[Tally]:
        found = [totals]
        if service_id is not None:
            found.append(services.get(service_id) or services.setdefault(service_id, Tally()))
        if window_id is not None:
            found.append(windows.get(window_id) or windows.setdefault(window_id, Tally()))
        return found

    issued = ([issued_for.get(t[0], t[1]) for t in facts.tickets] if issued_for
              else [t[1] for t in facts.tickets])
    for key, n in Counter(issued).items():
        for tally in scopes(key):
            tally.issued += n
    for key, n in Counter(calls).items():
        for tally in scopes(*key):
            tally.called += n
    for key, n in Counter(transfers).items():
        for tally in scopes(*key):
            tally.transferred += n
    for (name, service_id, window_id), n in Counter(ends).items():
        for tally in scopes(service_id, window_id):
            setattr(tally, name, getattr(tally, name) + n)

    totals.waits, totals.service_times = _histogram(waits), _histogram(times)
    for service_id, tenths_of in service_waits.items():
        if service_id is not None:
            scopes(service_id)[-1].waits = _histogram(tenths_of)
    for service_id, tenths_of in service_times.items():
        scopes(service_id)[-1].service_times = _histogram(tenths_of)
    for window_id, tenths_of in window_waits.items():
        if window_id is not None:
            scopes(None, window_id)[-1].waits = _histogram(tenths_of)
    for window_id, tenths_of in window_times.items():
        if window_id is not None:
            scopes(None, window_id)[-1].service_times = _histogram(tenths_of)

    hours = figures.hours
    for h, n in hours_of(map(itemgetter(3), facts.tickets)).items():
        hours.setdefault(h, Hour(h)).issued += n
    for h, n in hours_of(call_times).items():
        hours.setdefault(h, Hour(h)).called += n
    by_hour: defaultdict[int, Counter] = defaultdict(Counter)
    for (h, tenth), n in hours_of(wait_hours, waits).items():
        by_hour[h][tenth] += n
    for h, tenths_of in by_hour.items():
        hours[h].waits = Histogram.of(tenths_of)

    for window_id, service_id, level, n in facts.ratings:
        for tally in scopes(service_id, window_id):
            tally.ratings[level - 1] += n

    for window_id, seconds in serving.items():
        if window_id is not None:
            scopes(None, window_id)[-1].serving_s = seconds
    for window_id in set(facts.window_states) | set(changes):
        state = facts.window_states.get(window_id)
        since = start
        spent: Counter = Counter()
        for at, new_state in changes.get(window_id, ()):
            spent[state] += within(since, at)
            state, since = new_state, max(since, at)
        spent[state] += within(since, until)
        tally = scopes(None, window_id)[-1]
        tally.open_s, tally.paused_s = spent["open"], spent["paused"]
    return figures


def _histogram(tenths_of: list[int]) -> Histogram:
    return Histogram.of(Counter(tenths_of))


def _hours_of(day: date, tz: ZoneInfo) -> Callable[..., Counter]:
    """A function counting times of `day` by local hour (0–23), or (hour, value) pairs
    when given values too. The hours are found by bisecting when each begins (a
    skipped hour begins with the next one, a repeated one covers both), in C
    (`map`), which is cheaper than a time-zone conversion or a Python call per time."""
    begins = [datetime.combine(day, time(h), tz).timestamp() for h in range(1, 24)]
    hour = partial(bisect_right, begins)

    def count(times: Iterable[float], values: Iterable[Any] | None = None) -> Counter:
        return Counter(map(hour, times) if values is None else zip(map(hour, times), values))
    return count


def day_figures(tx: Tx, config: Config, day: date, now: float) -> Figures:
    """Read and summarise one day, as it stands now."""
    return summarise(config, read_day(tx, config, day, now, tx.first_event_at()))


def _summary_of_day(tx: Tx, config: Config, day: date, now: float) -> dict[str, Any]:
    """The day as kept, encoded in the worker thread too (about 5 ms)."""
    return day_figures(tx, config, day, now).to_data()


# -- days and ranges --------------------------------------------------------------------

@dataclass(frozen=True)
class Reading:
    """Each day's figures, and the summaries computed for days that are over."""

    days: list[Figures]
    to_keep: list[tuple[str, dict[str, Any]]]


def read_days(tx: Tx, config: Config, first: date, last: date, now: float) -> Reading:
    """Each day first … last: a kept summary of the current version for a finished
    day, else computed from the store (and returned for keeping when the day is
    over: past its midnight by `[evaluation] within_s`, when no rating can change
    it). Days before the hall's first event and days to come are empty (a store
    without events, filled by hand, is read day by day from its tickets)."""
    tz = ZoneInfo(config.hall.timezone)
    history_start = tx.first_event_at()
    kept = tx.day_summaries(first.isoformat(), last.isoformat())
    days, to_keep = [], []
    for n in range((last - first).days + 1):
        day = first + timedelta(days=n)
        text = day.isoformat()
        start, end = day_bounds(day, tz)
        if (history_start is not None and end <= history_start) or start > now:
            days.append(Figures(text, text))
            continue
        over = now >= end + config.evaluation.within_s
        summary = kept.get(text) if over else None
        if summary is not None and summary[0] == SUMMARY_VERSION:
            days.append(Figures.from_data(summary[1]))
            continue
        figures = summarise(config, read_day(tx, config, day, now, history_start))
        days.append(figures)
        if over:
            to_keep.append((text, figures.to_data()))
    return Reading(days, to_keep)


def merged(config: Config, days: list[Figures]) -> Figures:
    """One figure for all the days: counts and times added, histograms merged."""
    total = Figures(days[0].first, days[0].last, days=0)
    for day in days:
        total.add(day)
    for s in config.services:
        total.services.setdefault(s.id, Tally())
    for w in config.windows:
        total.windows.setdefault(w.id, Tally())
    return total


async def figures_of_days(queue: Queue, first: date, last: date) -> list[Figures]:
    """Each day's figures, first … last (at most MAX_DAYS), read off the loop; the
    summaries computed for finished days are kept, each by a small transaction."""
    await queue.close_past_days()      # a past day is read as it was closed
    reading = await queue.store.read(partial(read_days, config=queue.config, first=first,
                                             last=last, now=queue.clock()))
    await _keep(queue, reading.to_keep)
    return reading.days


async def _keep(queue: Queue, summaries: list[tuple[str, dict[str, Any]]]) -> None:
    """Keep each summary by its own small transaction (one row), not one big one."""
    now = queue.clock()
    for day, data in summaries:
        await queue.store.transact(partial(_save, day, data, now))


def _save(day: str, data: dict[str, Any], at: float, tx: Tx) -> None:
    tx.save_day_summary(day, SUMMARY_VERSION, at, data)


async def keep_summaries(queue: Queue) -> None:
    """Summarise, in the background, every finished day of the hall's history that has
    no summary of the current version: at start-up (never delaying it), then after each
    midnight once its ratings are over. One day at a time, read off the loop, each kept
    by a small transaction, resting between days for calls and issues."""
    while True:
        try:
            await summarise_missing_days(queue)
        except StoreClosed:
            return                          # shutting down
        except Exception:
            log.exception("stats: summarising past days failed; trying again after midnight")
        now = queue.clock()
        wake = queue.next_midnight(now) + queue.config.evaluation.within_s + 1
        await asyncio.sleep(max(wake - now, 1))


async def summarise_missing_days(queue: Queue) -> list[str]:
    """Summarise the finished days without a current summary, newest first; returns them."""
    await queue.close_past_days()
    now = queue.clock()
    history_start = await queue.store.read(lambda tx: tx.first_event_at())
    if history_start is None:
        return []
    first = date.fromisoformat(queue.day_of(history_start))
    last = date.fromisoformat(queue.day_of(now - queue.config.evaluation.within_s)) \
        - timedelta(days=1)
    if last < first:
        return []
    versions = await queue.store.read(lambda tx: tx.day_summary_versions(
        first.isoformat(), last.isoformat()))
    days = [last - timedelta(days=n) for n in range((last - first).days + 1)]
    done = []
    for day in days:
        if versions.get(day.isoformat()) == SUMMARY_VERSION:
            continue
        began = time_now()
        summary = await queue.store.read(partial(_summary_of_day, config=queue.config,
                                                 day=day, now=now))
        await _keep(queue, [(day.isoformat(), summary)])
        done.append(day.isoformat())
        # The worker thread holds the interpreter lock while it counts: calls and issues
        # wait for it up to a switch interval (5 ms) at a time. Resting between days
        # keeps that to a third of the time while a long history is being caught up.
        await asyncio.sleep(max(0.05, (time_now() - began) * SUMMARY_REST))
    if done:
        log.info("stats: summarised %d past days (%s … %s)", len(done), done[-1], done[0])
    return done


# -- the export -----------------------------------------------------------------------------

CSV_COLUMNS = (
    "date", "scope", "id", "name",
    "issued", "called", "served", "no_show", "cancelled", "transferred", "waiting",
    "at_window",
    "wait_p50_min", "wait_p90_min", "wait_max_min",
    "service_p50_min", "service_p90_min", "service_max_min",
    "open_min", "serving_min", "paused_min",
    "rated", "level_5", "level_4", "level_3", "level_2", "level_1", "good", "bad",
    "satisfaction")
_NOT_FOR_WINDOWS = ("issued", "cancelled", "waiting", "at_window")


def csv_rows(config: Config, label: str, figures: Figures) -> Iterator[list[Any]]:
    """One row for the hall, then each configured service, then each window. Cells
    that do not apply are empty: a window issues, cancels and holds in line nothing
    (tickets are issued for a service and wait in its line), a service and the hall
    have no window time, and a time is empty when nothing was measured."""
    yield _row(label, "hall", "", config.hall.name, figures.totals)
    for s in config.services:
        yield _row(label, "service", s.id, s.name, figures.service(s.id))
    for w in config.windows:
        yield _row(label, "window", w.id, w.name, figures.window(w.id))


def _row(label: str, scope: str, id_: str, title: str, t: Tally) -> list[Any]:
    counts = {count: getattr(t, count) for count in COUNTS}
    if scope == "window":
        counts.update(dict.fromkeys(_NOT_FOR_WINDOWS, ""))
    times = [*_cells(t.wait_min), *_cells(t.service_min)]
    window_time = ([minutes(t.open_s), minutes(t.serving_s), minutes(t.paused_s)]
                   if scope == "window" else ["", "", ""])
    levels = [t.ratings[level.level - 1] for level in LEVELS]
    satisfaction = "" if t.satisfaction is None else f"{t.satisfaction:.4f}"
    return [label, scope, id_, title, *counts.values(), *times, *window_time, t.rated,
            *levels, t.good, t.bad, satisfaction]


def _cells(m: Minutes) -> list[Any]:
    return ["" if v is None else v for v in (m.p50, m.p90, m.max)]


def csv_text(config: Config, days: list[Figures], by_range: bool) -> str:
    """The CSV export, with a UTF-8 byte-order mark (Excel then reads Chinese right):
    one header row (CSV_COLUMNS), then per day (`date` = YYYY-MM-DD) or for the whole
    range (`date` = FIRST/LAST) the hall, each service and each window."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    if by_range:
        whole = merged(config, days)
        writer.writerows(csv_rows(config, f"{whole.first}/{whole.last}", whole))
    else:
        for day in days:
            writer.writerows(csv_rows(config, day.first, day))
    return out.getvalue()
