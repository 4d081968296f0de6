"""Random days at the hall, checked against an independent model after every step.

A hypothesis state machine drives the real Queue over a real store -- a fresh SQLite
file per run, and (the same machine, fewer runs) a PostgreSQL database of the test
server emptied per run -- through issue / call-next / recall / start / complete / no-show /
transfer / cancel / re-admit / window state changes / restarts and clock moves,
midnight included. The model keeps its own line: a ticket's place is its issue
time (a transferred ticket keeps it; a re-admitted one takes the midpoint of the
places of the two tickets it goes between, or now when it goes to the back),
priority first, issue order breaking ties. Places are exact fractions, so the
model never loses precision where the engine's floats might. Each action takes a
second of hall time, so no two tickets are issued in the same instant here (the
same-instant cases are in test_queue.py).

Every action the model says must be refused has to raise one of the model's
errors and leave the database byte-for-byte as it was: every row of every table,
read on the side the same way for both stores (storedump.py).

Windows pressing call-next in the same instant are served in the order they
pressed on SQLite (one group commit). Of the PostgreSQL store the machine asks
what its row locks promise even when transactions run side by side: the answers
are those of some order of the presses (never one ticket twice, none passed over).
"""

from __future__ import annotations

import asyncio
import math
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, assume, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule, run_state_machine_as_test)

from kioskd.queue import Conflict, Invalid, NotFound, Queue
from kioskd.store import Store, store_for

from conftest import STORES, TZ, Clock, small_hall
from pgserver import PgServer
from storedump import StoreReader

WINDOWS = ["1", "2", "3", "4", "9"]
SERVICES = ["property", "business", "social"]
UNKNOWN_WINDOW = "42"
UNKNOWN_SERVICE = "passport"
AT_WINDOW = ("called", "serving")
ENDED = ("done", "no_show", "cancelled")
STATUSES = ("waiting",) + AT_WINDOW + ENDED

# mostly real windows and services, now and then one that does not exist
window_ids = st.sampled_from(WINDOWS * 3 + [UNKNOWN_WINDOW])
service_ids = st.sampled_from(SERVICES * 3 + [UNKNOWN_SERVICE])
priorities = st.sampled_from([False] * 5 + [True])     # the elderly, the disabled


@dataclass
class M:
    """The model's ticket."""

    id: str
    idx: int                  # issue order (the store's seq order)
    day: str
    number: str
    service: str
    priority: bool
    issued_at: int
    place: Fraction           # where it stands in line
    status: str = "waiting"
    window: str | None = None
    target: str | None = None
    called_at: int | None = None
    started_at: int | None = None
    finished_at: int | None = None
    closed_by: str | None = None
    recalls: int = 0
    transfers: int = 0

    def key(self) -> tuple:
        return (not self.priority, self.place, self.idx)


async def together(*coros, return_exceptions=False):
    """Start them all at once: the store serves them in one group commit, in order."""
    return await asyncio.gather(*coros, return_exceptions=return_exceptions)


class Refused(Exception):
    """The model's verdict: this action must be refused with one of `errors`."""

    def __init__(self, *errors: type[Exception]):
        self.errors = errors


class HallDay(RuleBasedStateMachine):
    def __init__(self, store_url: str | None = None):
        """On the SQLite file in a fresh data dir; or, with `store_url`, on that empty
        PostgreSQL database."""
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="kioskd-prop-"))
        self.config = small_hall(self.tmp / "var", store_url=store_url)
        self.in_order = store_url is None     # SQLite serves a burst in the order sent
        self.stored = StoreReader(self.config)
        self.hall = self.config.hall
        self.services = {s.id: s for s in self.config.services}
        self.win = {w.id: w for w in self.config.windows}
        self.clock = Clock()
        self.loop = asyncio.new_event_loop()
        self.store: Store | None = None
        self._open()
        # the model
        self.tickets: dict[str, M] = {}
        self.state = {w.id: ("closed" if w.temporary else "open") for w in self.config.windows}
        self.current: dict[str, str | None] = {w: None for w in WINDOWS}
        self.sequences: dict[tuple[str, str], int] = {}
        self.rolled: str | None = None

    # -- plumbing -----------------------------------------------------------------

    def _open(self) -> None:
        self.store = store_for(self.config)
        self.q = Queue(self.config, self.store, self.clock)
        self.loop.run_until_complete(self.store.open())
        self.loop.run_until_complete(self.q.setup())

    def teardown(self):
        try:
            if self.store is not None:
                self.loop.run_until_complete(self.store.close())
        finally:
            self.stored.close()
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def today(self) -> str:
        return datetime.fromtimestamp(self.clock.now, TZ).date().isoformat()

    def engine(self, coro):
        """Run an engine call; the engine closes past days first, and so does the model."""
        self.model_roll_over()
        return self.loop.run_until_complete(coro)

    def snapshot(self) -> dict[str, list[dict]]:
        """Every row of every table of the store, as stored."""
        return self.stored.dump()

    def act(self, make_coro, predict):
        """Let the model predict, then run the engine; refused actions change nothing."""
        try:
            expected = predict()
        except Refused as refused:
            self.engine(self.q.windows())          # let a pending day rollover happen first
            before = self.snapshot()
            try:
                self.engine(make_coro())
            except refused.errors:
                pass
            else:
                raise AssertionError(f"expected one of {refused.errors}, the engine accepted")
            event("refused")
            assert self.snapshot() == before, "a refused action changed the store"
            return None
        return expected, self.engine(make_coro())

    def tick(self, seconds: int = 1) -> None:
        """Everything at the hall takes a moment: no two tickets share an issue time."""
        self.clock.advance(seconds)

    # -- the model's rules -----------------------------------------------------------

    def model_roll_over(self) -> None:
        today = self.today()
        if self.rolled == today:
            return
        now = self.clock.now
        for t in self.tickets.values():
            if t.day < today and t.status in ("waiting",) + AT_WINDOW:
                event(f"day end closed a {t.status} ticket")
            if t.day < today and t.status == "waiting":
                t.status, t.finished_at, t.closed_by = "cancelled", now, "day_end"
            elif t.day < today and t.status in AT_WINDOW:
                t.status, t.finished_at, t.closed_by = "done", now, "day_end"
        for w, held in self.current.items():
            if held is not None and self.tickets[held].status not in AT_WINDOW:
                self.current[w] = None
        self.rolled = today

    def waiting(self) -> list[M]:
        return sorted((t for t in self.tickets.values() if t.status == "waiting"),
                      key=M.key)

    def callable_by(self, window: str, t: M) -> bool:
        if t.target is not None:
            return t.target == window
        return t.service in self.win[window].services

    def expected_next(self, window: str) -> M | None:
        line = [t for t in self.waiting() if self.callable_by(window, t)]
        return line[0] if line else None

    def ahead(self, t: M) -> int:
        if t.target is None:
            same = [u for u in self.waiting() if u.target is None and u.service == t.service]
        else:
            same = [u for u in self.waiting() if self.callable_by(t.target, u)]
        return sum(1 for u in same if u.key() < t.key())

    def minutes_per_ticket(self, service: str) -> Fraction:
        now = self.clock.now
        served = sorted((t for t in self.tickets.values()
                         if t.status == "done" and t.closed_by is None and t.service == service
                         and t.finished_at >= now - 7 * 86400),
                        key=lambda t: t.finished_at, reverse=True)[:20]
        if not served:
            return Fraction(self.services[service].service_time_min)
        event("estimate from real service times")
        seconds = sum(t.finished_at - (t.started_at if t.started_at is not None else t.called_at)
                      for t in served)
        return max(Fraction(seconds) / (60 * len(served)), Fraction(1, 2))

    def estimate(self, t: M) -> int | None:
        if t.target is not None:
            n = 1
        else:
            serving = [w for w in self.config.windows if t.service in w.services]
            n = sum(1 for w in serving if self.state[w.id] == "open")
            if n == 0:
                n = sum(1 for w in serving if not w.temporary)
        if n == 0:
            return None
        return math.ceil(self.ahead(t) * self.minutes_per_ticket(t.service) / n)

    def window_known(self, window: str) -> None:
        if window not in self.win:
            raise Refused(NotFound)

    def held(self, window: str) -> M:
        self.window_known(window)
        ticket_id = self.current[window]
        if ticket_id is None:
            raise Refused(Conflict)
        return self.tickets[ticket_id]

    def held_called(self, window):
        """The model's ticket called (not yet served) at `window`, as recall,
        start and no-show expect; otherwise the refusal the engine must give."""
        self.model_roll_over()
        t = self.held(window)
        if t.status != "called":
            raise Refused(Conflict)
        return t

    def busy(self, status: str | None = None) -> list[str]:
        return [w for w in WINDOWS if self.current[w] is not None
                and status in (None, self.tickets[self.current[w]].status)]

    def busy_window(self, which: int, status: str | None = None) -> str:
        """Mostly a window with someone at it: idle windows only refuse these actions."""
        busy = self.busy(status) or self.busy()
        if busy and which % 8:
            return busy[which % len(busy)]
        choices = WINDOWS + [UNKNOWN_WINDOW]
        return choices[which % len(choices)]

    def pick(self, pick: int, prefer: str | None = None) -> str:
        """A ticket id by a drawn number: -1 is a ticket that does not exist."""
        pool = sorted(self.tickets.values(), key=lambda t: t.idx)
        preferred = [t for t in pool if t.status == prefer]
        if preferred and pick % 3:
            pool = preferred
        if pick < 0 or not pool:
            return "no-such-ticket"
        return pool[pick % len(pool)].id

    # -- rules: the kiosk ------------------------------------------------------------

    @initialize(arrivals=st.lists(st.tuples(st.sampled_from(SERVICES), priorities),
                                  min_size=3, max_size=12))
    def morning_crowd(self, arrivals):
        for service, priority in arrivals:
            self.issue(service, priority)

    @rule(arrivals=st.lists(st.tuples(service_ids, priorities), min_size=1, max_size=3))
    def visitors_arrive(self, arrivals):
        for service, priority in arrivals:
            self.issue(service, priority)

    def issue(self, service, priority):
        self.tick()

        def predict():
            if service not in self.services:
                raise Refused(Invalid)
            prefix = self.services[service].prefix
            seq = self.sequences.get((self.today(), prefix), 0) + 1
            return f"{prefix}{seq:03d}", prefix, seq

        out = self.act(lambda: self.q.issue(service, priority), predict)
        if out is None:
            return
        (number, prefix, seq), view = out
        t = view.ticket
        assert t.number == number and t.day == self.today()
        assert t.id not in self.tickets
        self.sequences[(self.today(), prefix)] = seq
        self.tickets[t.id] = M(t.id, len(self.tickets), t.day, number, service, priority,
                               self.clock.now, Fraction(self.clock.now))

    @rule(pick=st.integers(-1, 10_000))
    def cancel(self, pick):
        self.tick()
        ticket_id = self.pick(pick, prefer="waiting")

        def predict():
            self.model_roll_over()
            t = self.tickets.get(ticket_id)
            if t is None:
                raise Refused(NotFound)
            if t.status != "waiting":
                raise Refused(Conflict)
            return t

        out = self.act(lambda: self.q.cancel(ticket_id), predict)
        if out is not None:
            t, view = out
            assert view.ticket.id == t.id and view.ticket.status == "cancelled"
            t.status, t.finished_at, t.closed_by = "cancelled", self.clock.now, "cancel"

    def recent_no_shows(self) -> list[M]:
        return [t for t in sorted(self.tickets.values(), key=lambda t: t.idx)
                if t.status == "no_show" and t.day == self.today()
                and self.clock.now + 1 - t.finished_at <= 60 * self.hall.readmit_within_min]

    @precondition(lambda self: self.recent_no_shows())
    @rule(pick=st.integers(0, 10_000))
    def missed_visitor_returns(self, pick):
        recent = self.recent_no_shows()
        self.readmit(pick, recent[pick % len(recent)].id)

    @rule(which=st.integers(0, 99), away=st.sampled_from([0, 60, 600, 1798, 1799, 1800]))
    def called_visitor_is_away_and_comes_back(self, which, away):
        """Call, nobody comes, no-show; the visitor turns up a little later."""
        open_now = [w for w in WINDOWS if self.state[w] == "open"]
        if not open_now:
            return
        window = open_now[which % len(open_now)]
        self.call_next(window)
        if self.current[window] is None:
            return
        ticket_id = self.current[window]
        self.no_show(0, window)
        self.clock.advance(away)
        self.readmit(0, ticket_id)

    @rule(pick=st.integers(-1, 10_000))
    def readmit(self, pick, ticket_id=None):
        self.tick()
        ticket_id = ticket_id or self.pick(pick, prefer="no_show")
        now = self.clock.now

        def predict():
            self.model_roll_over()
            t = self.tickets.get(ticket_id)
            if t is None:
                raise Refused(NotFound)
            if t.status != "no_show":
                raise Refused(Conflict)
            if t.day != self.today() or now - t.finished_at > 60 * self.hall.readmit_within_min:
                raise Refused(Conflict)
            line = [u for u in self.waiting() if u.target is None and u.service == t.service
                    and u.priority == t.priority]
            after = self.hall.readmit_after
            if len(line) <= after:
                assert not line or line[-1].place < now
                return t, Fraction(now), min(len(line), after)
            low, high = line[after - 1].place, line[after].place
            assume(low != high)       # two tickets with one place: no fraction between them
            return t, (low + high) / 2, after

        out = self.act(lambda: self.q.readmit(ticket_id), predict)
        if out is not None:
            (t, place, behind), view = out
            event(f"readmitted behind {behind}")
            assert view.ticket.id == t.id and view.ticket.status == "waiting"
            t.status, t.place, t.window, t.target = "waiting", place, None, None
            t.called_at = t.started_at = t.finished_at = None
            t.recalls = 0
            assert self.ahead(t) >= behind
            assert view.waiting_ahead == self.ahead(t)

    # -- rules: at the window ----------------------------------------------------------

    def _finish(self, window: str) -> None:
        held = self.current[window]
        if held is not None:
            t = self.tickets[held]
            t.status, t.finished_at = "done", self.clock.now
            self.current[window] = None

    def _take(self, window: str, t: M) -> None:
        t.status, t.window, t.target = "called", window, None
        t.called_at, t.started_at, t.recalls = self.clock.now, None, 0
        self.current[window] = t.id

    @rule(which=st.integers(0, 99))
    def clerk_calls(self, which):
        """The commonest thing at a hall: an open window calls the next number."""
        open_now = [w for w in WINDOWS if self.state[w] == "open"] or WINDOWS
        self.call_next(open_now[which % len(open_now)])

    @rule(window=window_ids)
    def call_next(self, window):
        self.tick()

        def predict():
            self.model_roll_over()
            self.window_known(window)
            if self.state[window] != "open":
                raise Refused(Conflict)
            self._finish(window)
            return self.expected_next(window)

        out = self.act(lambda: self.q.call_next(window), predict)
        if out is None:
            return
        expected, view = out
        if expected is None:
            assert view is None, f"window {window} called {view.ticket.number}, expected nobody"
            return
        assert view is not None, f"window {window} called nobody, expected {expected.number}"
        assert view.ticket.id == expected.id, (
            f"window {window} called {view.ticket.number}, expected {expected.number}")
        event("called " + ("a priority" if expected.priority else "an ordinary")
              + (" transferred" if expected.transfers else "")
              + (" re-admitted" if expected.place != expected.issued_at else "") + " ticket")
        self._take(window, expected)

    @rule(windows=st.lists(st.sampled_from(WINDOWS), min_size=2, max_size=6))
    def call_together(self, windows):
        """Several windows press call-next in the same instant."""
        self.tick()
        self.engine(self.q.windows())                 # settle a pending rollover
        results = self.loop.run_until_complete(together(
            *(self.q.call_next(w) for w in windows), return_exceptions=True))
        ids = [r.ticket.id for r in results if r is not None and not isinstance(r, Exception)]
        assert len(ids) == len(set(ids)), "two windows got the same ticket"
        pending = []
        for press, (window, result) in enumerate(zip(windows, results)):
            if self.state[window] != "open":
                assert isinstance(result, Conflict), result
            else:
                assert not isinstance(result, Exception), result
                pending.append((press, window, result))
        # Replay the presses on the model, each time the first pending one whose answer
        # is the model's now. Taking a ticket changes no other window's answer but the
        # one that ticket was, so this finds an order of the presses explaining every
        # answer whenever there is one; SQLite's must be the order they were sent in.
        served = []
        while pending:
            fits = [p for p in pending if self._answers(p[1], p[2])]
            assert fits, "no order of the presses explains what the windows got: " + ", ".join(
                f"{w} got {r.ticket.number if r else None}, the model has "
                f"{getattr(self.expected_next(w), 'number', None)}" for _, w, r in pending)
            press, window, result = fits[0]
            self._finish(window)
            if result is not None:
                self._take(window, self.tickets[result.ticket.id])
            served.append(press)
            pending.remove(fits[0])
        if self.in_order:
            assert served == sorted(served), f"SQLite served the presses as {served}"
        elif served != sorted(served):
            event("a burst of calls served out of the order sent")

    def _answers(self, window: str, result) -> bool:
        """Whether `result` is what call-next at `window` gives in the model's hall now."""
        expected = self.expected_next(window)
        if expected is None or result is None:
            return expected is None and result is None
        return result.ticket.id == expected.id

    @precondition(lambda self: self.busy("called"))
    @rule(which=st.integers(0, 99))
    def recall(self, which):
        self.tick()
        window = self.busy_window(which, "called")

        def predict():
            return self.held_called(window)

        out = self.act(lambda: self.q.recall(window), predict)
        if out is not None:
            t, view = out
            t.recalls += 1
            assert view.ticket.id == t.id and view.ticket.recalls == t.recalls

    @precondition(lambda self: self.busy("called"))
    @rule(which=st.integers(0, 99))
    def start(self, which):
        self.tick()
        window = self.busy_window(which, "called")

        def predict():
            return self.held_called(window)

        out = self.act(lambda: self.q.start(window), predict)
        if out is not None:
            t, view = out
            t.status, t.started_at = "serving", self.clock.now
            assert view.ticket.id == t.id and view.ticket.status == "serving"

    @precondition(lambda self: self.busy())
    @rule(which=st.integers(0, 99))
    def complete(self, which):
        self.tick()
        window = self.busy_window(which)

        def predict():
            self.model_roll_over()
            return self.held(window)

        out = self.act(lambda: self.q.complete(window), predict)
        if out is not None:
            t, view = out
            assert view.ticket.id == t.id and view.ticket.status == "done"
            self._finish(window)

    @precondition(lambda self: self.busy("called"))
    @rule(which=st.integers(0, 99))
    def no_show(self, which, window=None):
        self.tick()
        window = window or self.busy_window(which, "called")

        def predict():
            return self.held_called(window)

        out = self.act(lambda: self.q.no_show(window), predict)
        if out is not None:
            t, view = out
            assert view.ticket.id == t.id and view.ticket.status == "no_show"
            t.status, t.finished_at = "no_show", self.clock.now
            self.current[window] = None

    @precondition(lambda self: self.busy())
    @rule(which=st.integers(0, 99), service=st.sampled_from(SERVICES))
    def send_to_another_service(self, which, service):
        self.transfer(which, service, None)

    @precondition(lambda self: self.busy())
    @rule(which=st.integers(0, 99), to_window=st.sampled_from(WINDOWS))
    def send_to_a_window(self, which, to_window):
        self.transfer(which, None, to_window)

    @rule(which=st.integers(0, 99),
          service=st.sampled_from([None] + SERVICES + [UNKNOWN_SERVICE]),
          to_window=st.sampled_from([None] + WINDOWS + [UNKNOWN_WINDOW]))
    def transfer(self, which, service, to_window):
        self.tick()
        window = self.busy_window(which)

        def predict():
            self.model_roll_over()
            errors = []
            if service is None and to_window is None:
                errors.append(Invalid)
            if service is not None and service not in self.services:
                errors.append(Invalid)
            if to_window is not None and to_window not in self.win:
                errors.append(Invalid)
            if to_window is not None and to_window == window:
                errors.append(Invalid)
            try:
                t = self.held(window)
            except Refused as refused:
                errors.extend(refused.errors)
            if errors:                        # when several apply, any one will do
                raise Refused(*errors)
            return t

        out = self.act(lambda: self.q.transfer(window, service, to_window), predict)
        if out is None:
            return
        t, view = out
        event("transferred to a window" if to_window else "transferred to a service")
        t.status, t.window, t.target = "waiting", None, to_window
        t.service = service or t.service
        t.place = Fraction(t.issued_at)          # keeps the original issue time
        t.called_at = t.started_at = None
        t.recalls, t.transfers = 0, t.transfers + 1
        self.current[window] = None
        assert view.ticket.id == t.id and view.ticket.number == t.number
        assert (view.ticket.service, view.ticket.target_window) == (t.service, t.target)

    @rule(which=st.integers(0, 99),
          action=st.sampled_from(["recall", "start", "complete", "no_show", "transfer"]))
    def idle_window_is_asked(self, which, action):
        """A clerk presses a button with nobody at the window, or on a window that
        does not exist."""
        idle = [w for w in WINDOWS if self.current[w] is None] + [UNKNOWN_WINDOW]
        window = idle[which % len(idle)]
        self.tick()
        args = ("social", None) if action == "transfer" else ()
        self.act(lambda: getattr(self.q, action)(window, *args),
                 lambda: (self.model_roll_over(), self.held(window)))

    # -- rules: window states ----------------------------------------------------------

    @rule(window=window_ids, action=st.sampled_from(["pause", "resume", "open", "close"]))
    def set_state(self, window, action):
        self.tick()
        goal = {"pause": "paused", "resume": "open", "open": "open", "close": "closed"}[action]

        def predict():
            self.model_roll_over()
            self.window_known(window)
            state = self.state[window]
            if state == goal:
                return goal
            if action in ("pause", "resume") and state == "closed":
                raise Refused(Conflict)
            if action == "close" and self.current[window] is not None:
                raise Refused(Conflict)
            return goal

        out = self.act(lambda: getattr(self.q, action)(window), predict)
        if out is not None:
            goal, view = out
            self.state[window] = goal
            assert view.record.state == goal

    # -- rules: time and restarts ---------------------------------------------------------

    @rule(seconds=st.sampled_from([30, 300, 1200, 1797, 1798, 1799, 1800, 3 * 3600]))
    def time_passes(self, seconds):
        self.clock.advance(seconds)

    @precondition(lambda self: datetime.fromtimestamp(self.clock.now, TZ).hour >= 11)
    @rule(hour=st.integers(0, 9), minute=st.sampled_from([0, 30, 59]))
    def next_morning(self, hour, minute):
        today = datetime.fromtimestamp(self.clock.now, TZ).date()
        morning = datetime.combine(today + timedelta(days=1), datetime.min.time(), TZ)
        self.clock.now = int(morning.timestamp()) + 3600 * hour + 60 * minute

    @precondition(lambda self: 11 <= datetime.fromtimestamp(self.clock.now, TZ).hour < 23)
    @rule(seconds_left=st.sampled_from([2, 10, 45]))
    def almost_midnight(self, seconds_left):
        """Jump to a few seconds before midnight: the next actions straddle it."""
        today = datetime.fromtimestamp(self.clock.now, TZ).date()
        midnight = datetime.combine(today + timedelta(days=1), datetime.min.time(), TZ)
        self.clock.now = int(midnight.timestamp()) - seconds_left

    @rule()
    def restart(self):
        """The daemon is restarted (a power cut, an upgrade) on the same database."""
        self.loop.run_until_complete(self.store.close())
        self.store = None
        self._open()
        self.model_roll_over()            # setup() is the new engine's first action

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def store_agrees_with_the_rules_and_the_model(self):
        stored = self.stored.dump(("tickets", "windows"))
        rows = stored["tickets"]
        windows = {r["id"]: r for r in stored["windows"]}

        # no number twice in a day, numbers dense from 001 per service and day
        numbers = [(r["day"], r["number"]) for r in rows]
        assert len(numbers) == len(set(numbers)), "a number was given twice in a day"
        for (day, prefix), last in self.sequences.items():
            got = sorted(r["number"] for r in rows
                         if r["day"] == day and r["number"].startswith(prefix))
            assert got == [f"{prefix}{n:03d}" for n in range(1, last + 1)]

        # windows hold at most one ticket each, and each ticket at most one window
        held = [w["current"] for w in windows.values() if w["current"] is not None]
        assert len(held) == len(set(held)), "a ticket is held by two windows"
        by_id = {r["id"]: r for r in rows}
        for w in windows.values():
            if w["current"] is not None:
                t = by_id[w["current"]]
                assert t["status"] in AT_WINDOW, (w["id"], t["number"], t["status"])
                assert t["window_id"] == w["id"]
        for r in rows:
            assert r["status"] in STATUSES
            if r["status"] in AT_WINDOW:
                assert r["id"] in held, f"{r['number']} is {r['status']} but no window has it"
                assert r["called_at"] is not None
            if r["status"] == "waiting":
                assert r["window_id"] is None and r["finished_at"] is None
            if r["status"] in ENDED:
                assert r["finished_at"] is not None
            if r["status"] == "cancelled":
                assert r["closed_by"] in ("cancel", "day_end")
            assert (r["status"] == "serving") == (
                r["status"] in AT_WINDOW and r["started_at"] is not None)

        # the engine's store is the model's hall
        assert set(by_id) == set(self.tickets)
        for t in self.tickets.values():
            r = by_id[t.id]
            got = (r["number"], r["day"], r["service"], bool(r["priority"]), r["status"],
                   r["target_window"], r["recalls"], r["transfers"], r["closed_by"])
            want = (t.number, t.day, t.service, t.priority, t.status, t.target, t.recalls,
                    t.transfers, t.closed_by)
            assert got == want, (t.number, got, want)
            if t.status in AT_WINDOW:
                assert r["window_id"] == t.window, (t.number, r["window_id"], t.window)
            assert r["issued_at"] == t.issued_at
        for w in WINDOWS:
            assert windows[w]["state"] == self.state[w], w
            assert windows[w]["current"] == self.current[w], w

    @invariant()
    def every_waiting_ticket_knows_its_place_and_wait(self):
        waiting = self.waiting()
        if not waiting:
            return
        self.model_roll_over()
        views = self.loop.run_until_complete(together(*(self.q.ticket(t.id) for t in waiting)))
        for t, view in zip(waiting, views):
            if t.status != "waiting":                # closed by the rollover just now
                assert view.waiting_ahead is None
                continue
            assert view.waiting_ahead == self.ahead(t), (t.number, view.waiting_ahead)
            assert view.est_wait_min == self.estimate(t), (
                t.number, view.waiting_ahead, view.est_wait_min, self.estimate(t))


class EmptiedDatabase:
    """One database of the test server for every run of the machine, emptied before
    each: TRUNCATE ... RESTART IDENTITY leaves what a new database migrated by the
    store would hold, in ~100 ms with the store's opening, where a new database and
    its migrations take ~240 ms."""

    def __init__(self, server: PgServer):
        self.url = server.create_database("hallday")
        self._tables: list[str] = []

    def fresh(self) -> str:
        with psycopg.connect(self.url, autocommit=True) as conn:
            if not self._tables:        # none until the first run's store migrated it
                self._tables = [r[0] for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'kioskd_schema'")]
            if self._tables:
                conn.execute(f"TRUNCATE {', '.join(self._tables)} RESTART IDENTITY")
        return self.url


# Runs of 50 steps each. PostgreSQL's are fewer: a run there costs ~8 times one on
# SQLite (each transaction is a round trip to the server from a worker thread), and
# its runs together should take no longer than SQLite's (~18 s on the 2-core machine).
EXAMPLES = {"sqlite": 120, "postgresql": 15}


@pytest.mark.parametrize("store", STORES)
def test_a_day_at_the_hall(store: str, request: pytest.FixtureRequest):
    if store == "postgresql":
        database = EmptiedDatabase(request.getfixturevalue("pg_server"))
        machine = lambda: HallDay(database.fresh())     # noqa: E731
    else:
        machine = HallDay
    run_state_machine_as_test(machine, settings=settings(
        max_examples=EXAMPLES[store], stateful_step_count=50, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
