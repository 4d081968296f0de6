"""The queue engine: the rules of the hall — numbering, call-next, transfer, re-admission.

No HTTP and no SQL here. Each operation is a function of one store transaction
(`Tx`), run by `store.transact`; it checks the rule, changes the records and
writes the events the hall will see. Rule violations raise `QueueError`
subclasses whose message says what was wrong, and the store rolls back
whatever the failed operation wrote.
"""

from __future__ import annotations

import base64
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, time as clock_time, timedelta
from functools import partial
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from .config import Config, Window
from . import audit
from .records import (AT_WINDOW, SYSTEM, Actor, Event, PrintStatus, Status, Ticket, WindowRecord,
                      WindowState)
from .store import Store, Tx

T = TypeVar("T")

RECENT_TICKETS = 20            # service-time estimate: mean of this many recent tickets ...
RECENT_DAYS = 7                # ... finished within this many days
EVENT_REPLAY_LIMIT = 10_000    # the most events one reconnect replays


def ticket_id(now: float) -> str:
    """An unguessable ticket id (96 random bits) that sorts by issue time.

    The time-ordered head makes new ids land at the end of the store's id index,
    so inserting stays as cheap with years of tickets as on day one (a fully
    random id touches a random, usually uncached, page of that index).
    """
    head = int(now * 1000).to_bytes(6, "big")
    return base64.urlsafe_b64encode(head + secrets.token_bytes(12)).decode()


class QueueError(Exception):
    """An operation the hall's rules refuse; the message is for the person asking.
    `reason` names the rule for a program (a page says it in the citizen's language);
    `answer` holds more fields the refusal's body carries (`message_en`, ...)."""

    def __init__(self, message: str, reason: str | None = None, /, **answer: str):
        super().__init__(message)
        self.reason = reason
        self.answer = answer


class NotFound(QueueError):
    """No such ticket, window or service."""


class Conflict(QueueError):
    """The operation makes no sense in the current state."""


class Invalid(QueueError):
    """The request names something that does not exist or is incomplete."""


@dataclass(frozen=True)
class TicketView:
    """A ticket with its place in line, as answered to callers."""

    ticket: Ticket
    waiting_ahead: int | None
    est_wait_min: int | None


@dataclass(frozen=True)
class WindowView:
    record: WindowRecord
    window: Window
    current: Ticket | None


@dataclass(frozen=True)
class ServiceLoad:
    service: str
    waiting: int
    open_windows: int
    minutes_per_ticket: float
    est_wait_min: int | None


def day_bounds(day: date, tz: ZoneInfo) -> tuple[float, float]:
    """The Unix times at which the hall's local `day` begins and the next one begins."""
    start = datetime.combine(day, clock_time.min, tz)
    end = datetime.combine(day + timedelta(days=1), clock_time.min, tz)
    return start.timestamp(), end.timestamp()


class Queue:
    """The hall's queue: every public method is one durable transaction."""

    def __init__(self, config: Config, store: Store, clock: Callable[[], float] = time.time):
        self.config = config
        self.store = store
        self.clock = clock
        self.tz = ZoneInfo(config.hall.timezone)
        self._services = {s.id: s for s in config.services}
        self._windows = {w.id: w for w in config.windows}
        self._serving = {s.id: [w for w in config.windows if s.id in w.services]
                         for s in config.services}
        self._rolled_over: str | None = None

    # -- time ----------------------------------------------------------------

    def day_of(self, at: float) -> str:
        return datetime.fromtimestamp(at, self.tz).date().isoformat()

    def next_midnight(self, at: float) -> float:
        """The Unix time at which the hall's next local day begins."""
        return day_bounds(datetime.fromtimestamp(at, self.tz).date(), self.tz)[1]

    def start_of_day(self, at: float) -> float:
        """The Unix time at which the hall's local day of `at` began (23 or 25 hours
        before the next one on a day the clocks change)."""
        return day_bounds(datetime.fromtimestamp(at, self.tz).date(), self.tz)[0]

    def clock_text(self, at: float | None, with_date: bool = False) -> str:
        """A time as a person in the hall reads it: `09:45`, or `2026-11-30 09:45`;
        `?` for none."""
        if at is None:
            return "?"
        return datetime.fromtimestamp(at, self.tz).strftime(
            "%Y-%m-%d %H:%M" if with_date else "%H:%M")

    def iso(self, at: float | None) -> str | None:
        if at is None:
            return None
        return datetime.fromtimestamp(at, self.tz).isoformat(timespec="seconds")

    # -- running operations --------------------------------------------------

    async def run(self, op: Callable[..., T], *args: Any, actor: Actor = SYSTEM) -> T:
        """Run `op(tx, now, *args)` as one durable transaction, the way the queue's own
        operations run: after the day's roll-over, at the clock's time, every event it
        writes audited as done by `actor`. For the rules kept beside the queue
        (appointments, ratings, alerts)."""
        return await self._run(op, *args, actor=actor)

    async def _run(self, op: Callable[..., T], *args: Any, actor: Actor = SYSTEM) -> T:
        await self.close_past_days()
        return await self.store.transact(partial(self._at_now, op, args, actor))

    async def look(self, op: Callable[..., T], *args: Any) -> T:
        """`op(tx, now, *args)` that only reads (a view): it locks nothing, so with a
        shared store a window calling on another daemon never skips a ticket because
        somebody was looking at it."""
        await self.close_past_days()
        return await self.store.view(lambda tx: op(tx, self.clock(), *args))

    def _at_now(self, op: Callable[..., T], args: tuple, actor: Actor, tx: Tx) -> T:
        """Run `op` at the clock's time; each change it made (each event it wrote)
        goes into the audit log in the same transaction, as done by `actor`."""
        mark = len(tx.events)
        result = op(tx, self.clock(), *args)
        audit.record_events(tx, actor, tx.events[mark:], self.day_of)
        return result

    async def record(self, actor: Actor, action: str, **fields: Any) -> None:
        """Write one audit entry now, for a change made outside the queue (a device
        command); `fields` as `audit.record` takes them."""
        await self.store.transact(lambda tx: self._record(tx, actor, action, fields))

    def _record(self, tx: Tx, actor: Actor, action: str, fields: dict[str, Any]) -> None:
        now = self.clock()
        audit.record(tx, actor, action, now, self.day_of(now), **fields)

    async def setup(self) -> None:
        """Give every configured window a run-time record; close past days."""
        await self._run(self._setup)

    def _setup(self, tx: Tx, now: float) -> None:
        for window in self.config.windows:
            if tx.window(window.id) is None:
                state = WindowState.CLOSED if window.temporary else WindowState.OPEN
                tx.save_window(WindowRecord(window.id, state, None, now))

    # -- issuing -------------------------------------------------------------

    async def issue(self, service: str, priority: bool = False,
                    terminal: str | None = None, actor: Actor = SYSTEM) -> TicketView:
        return await self._run(self._issue, service, priority, terminal, actor=actor)

    def _issue(self, tx: Tx, now: float, service_id: str, priority: bool,
               terminal: str | None) -> TicketView:
        return self.issue_in(tx, now, service_id, priority, terminal)

    def issue_in(self, tx: Tx, now: float, service_id: str, priority: bool,
                 terminal: str | None, *, appointment: str | None = None,
                 queue_at: float | None = None) -> TicketView:
        """Issue inside a transaction the caller runs (`run`): an appointment's
        check-in issues its ticket with its place in line (`queue_at`, e.g. the slot)."""
        service = self._services.get(service_id)
        if service is None:
            raise Invalid(f"unknown service '{service_id}'; known: {', '.join(self._services)}")
        day = self.day_of(now)
        sequence = tx.next_sequence(day, service.prefix)
        number = f"{service.prefix}{sequence:0{self.config.hall.number_width}d}"
        ticket = Ticket(
            id=ticket_id(now), day=day, number=number, service=service.id,
            priority=priority, status=Status.WAITING, issued_at=now,
            queue_at=now if queue_at is None else queue_at, terminal=terminal,
            appointment=appointment)
        tx.insert_ticket(ticket)
        view = self._view(tx, ticket, now)
        extra = {"appointment": appointment} if appointment else {}
        tx.emit("ticket.issued", now, self._event_data(view, **extra))
        return view

    # -- at the window -------------------------------------------------------

    async def call_next(self, window_id: str, actor: Actor = SYSTEM) -> TicketView | None:
        return await self._run(self._call_next, window_id, actor=actor)

    def _call_next(self, tx: Tx, now: float, window_id: str) -> TicketView | None:
        window, record = self._window(tx, window_id)
        if record.state is not WindowState.OPEN:
            raise Conflict(f"window {window_id} is {record.state.value}; it calls only when open")
        finished = record.current is not None
        if finished:
            self._finish_current(tx, now, record)
        ticket = tx.first_waiting(window.services, window.id)
        if ticket is None:
            if finished:
                tx.save_window(record)          # the window is free: nobody waits
            return None
        ticket.status = Status.CALLED
        ticket.window = window.id
        ticket.target_window = None
        ticket.called_at = now
        ticket.started_at = None
        ticket.recalls = 0
        tx.update_ticket(ticket)
        record.current = ticket.id
        tx.save_window(record)
        view = TicketView(ticket, None, None)
        tx.emit("ticket.called", now, self._event_data(view, window=window))
        return view

    def _finish_current(self, tx: Tx, now: float, record: WindowRecord) -> None:
        ticket = tx.ticket(record.current) if record.current else None
        record.current = None                   # the caller saves the window
        if ticket is not None and ticket.status in AT_WINDOW:
            self._end(tx, now, ticket, Status.DONE)

    async def recall(self, window_id: str, actor: Actor = SYSTEM) -> TicketView:
        return await self._run(self._recall, window_id, actor=actor)

    def _recall(self, tx: Tx, now: float, window_id: str) -> TicketView:
        window, record, ticket = self._current(tx, window_id)
        if ticket.status is not Status.CALLED:
            raise Conflict(f"{ticket.number} is already being served at window {window_id}")
        ticket.recalls += 1
        tx.update_ticket(ticket)
        view = TicketView(ticket, None, None)
        tx.emit("ticket.recalled", now, self._event_data(view, window=window))
        return view

    async def start(self, window_id: str, actor: Actor = SYSTEM) -> TicketView:
        return await self._run(self._start, window_id, actor=actor)

    def _start(self, tx: Tx, now: float, window_id: str) -> TicketView:
        window, record, ticket = self._current(tx, window_id)
        if ticket.status is not Status.CALLED:
            raise Conflict(f"{ticket.number} is already being served at window {window_id}")
        ticket.status = Status.SERVING
        ticket.started_at = now
        tx.update_ticket(ticket)
        view = TicketView(ticket, None, None)
        tx.emit("ticket.started", now, self._event_data(view, window=window))
        return view

    async def complete(self, window_id: str, actor: Actor = SYSTEM) -> TicketView:
        return await self._run(self._complete, window_id, actor=actor)

    def _complete(self, tx: Tx, now: float, window_id: str) -> TicketView:
        window, record, ticket = self._current(tx, window_id)
        record.current = None
        tx.save_window(record)
        return self._end(tx, now, ticket, Status.DONE, window=window)

    async def no_show(self, window_id: str, actor: Actor = SYSTEM) -> TicketView:
        return await self._run(self._no_show, window_id, actor=actor)

    def _no_show(self, tx: Tx, now: float, window_id: str) -> TicketView:
        window, record, ticket = self._current(tx, window_id)
        if ticket.status is not Status.CALLED:
            raise Conflict(f"{ticket.number} is being served; complete or transfer it instead")
        record.current = None
        tx.save_window(record)
        return self._end(tx, now, ticket, Status.NO_SHOW, window=window)

    async def transfer(self, window_id: str, service: str | None = None,
                       to_window: str | None = None, actor: Actor = SYSTEM) -> TicketView:
        return await self._run(self._transfer, window_id, service, to_window, actor=actor)

    def _transfer(self, tx: Tx, now: float, window_id: str, service_id: str | None,
                  to_window: str | None) -> TicketView:
        if service_id is None and to_window is None:
            raise Invalid("name a service or a window to transfer to")
        if service_id is not None and service_id not in self._services:
            raise Invalid(f"unknown service '{service_id}'")
        if to_window is not None and to_window not in self._windows:
            raise Invalid(f"unknown window '{to_window}'")
        if to_window == window_id:
            raise Invalid(f"the ticket is already at window {window_id}")
        window, record, ticket = self._current(tx, window_id)
        source = ticket.service
        ticket.status = Status.WAITING
        ticket.service = service_id or ticket.service
        ticket.target_window = to_window
        ticket.queue_at = ticket.issued_at      # keeps its place: the original issue time
        ticket.window = None
        ticket.called_at = ticket.started_at = None
        ticket.recalls = 0
        ticket.transfers += 1
        tx.update_ticket(ticket)
        record.current = None
        tx.save_window(record)
        view = self._view(tx, ticket, now)
        tx.emit("ticket.transferred", now, self._event_data(
            view, from_window=window.id, from_service=source))
        return view

    # -- tickets ---------------------------------------------------------------

    async def ticket(self, ticket_id: str) -> TicketView:
        return await self.look(self._ticket_view, ticket_id)

    def _ticket_view(self, tx: Tx, now: float, ticket_id: str) -> TicketView:
        return self._view(tx, self._ticket(tx, ticket_id), now)

    async def record_print(self, ticket_id: str, device: str | None, status: PrintStatus,
                           error: str | None, actor: Actor = SYSTEM) -> TicketView:
        """Keep how the ticket's last print went: where, and why it failed
        (`ticket.printed`, with `print` = printed or failed)."""
        return await self._run(self._record_print, ticket_id, device, status, error,
                               actor=actor)

    def _record_print(self, tx: Tx, now: float, ticket_id: str, device: str | None,
                      status: PrintStatus, error: str | None) -> TicketView:
        ticket = self._ticket(tx, ticket_id)
        ticket.print_device, ticket.print_status, ticket.print_error = device, status, error
        tx.update_ticket(ticket)
        view = self._view(tx, ticket, now)
        tx.emit("ticket.printed", now, self._event_data(
            TicketView(ticket, None, None), print=status.value, device=device, error=error))
        return view

    def windows_serving(self, ticket: Ticket) -> list[Window]:
        """Where a ticket may be called: its target window, or the windows serving its service."""
        if ticket.target_window is not None:
            return [self._windows[ticket.target_window]]
        return self._serving[ticket.service]

    async def cancel(self, ticket_id: str, actor: Actor = SYSTEM) -> TicketView:
        return await self._run(self._cancel, ticket_id, actor=actor)

    def _cancel(self, tx: Tx, now: float, ticket_id: str) -> TicketView:
        ticket = self._ticket(tx, ticket_id)
        if ticket.status is not Status.WAITING:
            raise Conflict(f"{ticket.number} is {ticket.status.value}; only a waiting ticket "
                           "can be cancelled")
        return self._end(tx, now, ticket, Status.CANCELLED, reason="cancel")

    def _end(self, tx: Tx, now: float, ticket: Ticket, status: Status,
             window: Window | None = None, reason: str | None = None) -> TicketView:
        """How every ticket ends — done, no-show or cancelled — and the event it
        sends (`ticket.done`, `ticket.no_show`, `ticket.cancelled`). `reason` says
        why it ended without service ("cancel", "day_end")."""
        ticket.status = status
        ticket.finished_at = now
        ticket.closed_by = reason
        tx.update_ticket(ticket)
        view = TicketView(ticket, None, None)
        extra = {"reason": reason} if reason else {}
        tx.emit(f"ticket.{status.value}", now, self._event_data(view, window=window, **extra))
        return view

    async def readmit(self, ticket_id: str, actor: Actor = SYSTEM) -> TicketView:
        return await self._run(self._readmit, ticket_id, actor=actor)

    def _readmit(self, tx: Tx, now: float, ticket_id: str) -> TicketView:
        """Put a no-show back in line after the next few waiting tickets of its service."""
        ticket = self._ticket(tx, ticket_id)
        if ticket.status is not Status.NO_SHOW:
            raise Conflict(f"{ticket.number} is {ticket.status.value}; only a no-show "
                           "can be re-admitted")
        limit = self.config.hall.readmit_within_min
        missed_at = ticket.finished_at or ticket.called_at or ticket.issued_at
        if ticket.day != self.day_of(now) or now - missed_at > limit * 60:
            raise Conflict(f"{ticket.number} missed its call more than {limit} minutes ago; "
                           "please take a new number")
        line = tx.waiting_line(ticket.service, ticket.priority)
        after = self.config.hall.readmit_after
        if after == 0 and line:
            ticket.queue_at = line[0].queue_at - 1e-3
        elif len(line) <= after:
            ticket.queue_at = now if not line else max(now, line[-1].queue_at + 1e-3)
        else:
            ticket.queue_at = self._place_between(tx, line, after)
        ticket.status = Status.WAITING
        ticket.window = None
        ticket.target_window = None
        ticket.called_at = ticket.started_at = ticket.finished_at = None
        ticket.recalls = 0
        tx.update_ticket(ticket)
        view = self._view(tx, ticket, now)
        tx.emit("ticket.readmitted", now, self._event_data(view))
        return view

    @staticmethod
    def _place_between(tx: Tx, line: list[Ticket], after: int) -> float:
        """A place in line just behind line[after - 1] and ahead of line[after].

        Usually the midpoint of their times. When no float lies strictly between
        them (both taken in the same instant, or the gap halved away by earlier
        re-admissions), the rest of the line moves back by the smallest step a float
        allows; the midpoint alone would tie and let the older ticket jump ahead.
        """
        low, high = line[after - 1].queue_at, line[after].queue_at
        middle = low + (high - low) / 2
        if low < middle < high:
            return middle
        place = step = math.nextafter(low, math.inf)
        for behind in line[after:]:
            if behind.queue_at > step:
                break
            step = math.nextafter(step, math.inf)
            behind.queue_at = step
            tx.update_ticket(behind)
        return place

    # -- windows ---------------------------------------------------------------

    async def pause(self, window_id: str, actor: Actor = SYSTEM) -> WindowView:
        return await self._run(self._set_state, window_id, WindowState.PAUSED, actor=actor)

    async def resume(self, window_id: str, actor: Actor = SYSTEM) -> WindowView:
        return await self._run(self._set_state, window_id, WindowState.OPEN, False, actor=actor)

    async def open(self, window_id: str, actor: Actor = SYSTEM) -> WindowView:
        return await self._run(self._set_state, window_id, WindowState.OPEN, True, actor=actor)

    async def close(self, window_id: str, actor: Actor = SYSTEM) -> WindowView:
        return await self._run(self._set_state, window_id, WindowState.CLOSED, actor=actor)

    def _set_state(self, tx: Tx, now: float, window_id: str, state: WindowState,
                   opening: bool = True) -> WindowView:
        window, record = self._window(tx, window_id)
        if record.state is state:
            return self._window_view(tx, window, record)      # pressing twice changes nothing
        if state is WindowState.PAUSED and record.state is WindowState.CLOSED:
            raise Conflict(f"window {window_id} is closed; a closed window cannot pause")
        if state is WindowState.OPEN and not opening and record.state is WindowState.CLOSED:
            raise Conflict(f"window {window_id} is closed; a supervisor opens it")
        if state is WindowState.CLOSED and record.current is not None:
            current = tx.ticket(record.current)
            number = current.number if current else record.current
            raise Conflict(f"window {window_id} still has {number}; complete or transfer it "
                           "before closing")
        previous = record.state
        record.state = state
        record.since = now
        tx.save_window(record)
        view = self._window_view(tx, window, record)
        tx.emit("window.changed", now, {
            "window": window.id, "name": window.name, "state": state.value,
            "previous": previous.value})
        return view

    async def windows(self) -> list[WindowView]:
        return await self.look(self._all_windows)

    def _all_windows(self, tx: Tx, now: float) -> list[WindowView]:
        records = {r.id: r for r in tx.windows()}
        return [self._window_view(tx, w, records[w.id]) for w in self.config.windows
                if w.id in records]

    async def windows_as_of(self) -> tuple[list[WindowView], int]:
        """Every window, and the id of the last event their state includes."""
        return await self.look(lambda tx, now: (self._all_windows(tx, now), tx.last_event_id()))

    async def window(self, window_id: str) -> WindowView:
        return await self.look(self._one_window, window_id)

    def _one_window(self, tx: Tx, now: float, window_id: str) -> WindowView:
        window, record = self._window(tx, window_id)
        return self._window_view(tx, window, record)

    def _window_view(self, tx: Tx, window: Window, record: WindowRecord) -> WindowView:
        current = tx.ticket(record.current) if record.current else None
        return WindowView(record, window, current)

    async def next_calls(self) -> list[tuple[Window, Ticket]]:
        """What each open or paused window would likely call next: the head of
        each of its services' lines, and a ticket sent to it (the voice makes
        these calls' words ahead)."""
        return await self.look(self._next_calls)

    def _next_calls(self, tx: Tx, now: float) -> list[tuple[Window, Ticket]]:
        records = {r.id: r for r in tx.windows()}
        likely = []
        for window in self.config.windows:
            record = records.get(window.id)
            if record is None or record.state is WindowState.CLOSED:
                continue
            heads = {}
            for service in window.services:
                ticket = tx.first_waiting((service,), window.id)
                if ticket is not None:
                    heads.setdefault(ticket.id, ticket)
            likely += [(window, ticket) for ticket in heads.values()]
        return likely

    async def waiting_for(self, window_id: str, limit: int) -> tuple[int, list[Ticket]]:
        """How many tickets `window_id` could call, and the first `limit` of them
        in the order it would call them."""
        return await self.look(self._waiting_for, window_id, limit)

    def _waiting_for(self, tx: Tx, now: float, window_id: str, limit: int
                     ) -> tuple[int, list[Ticket]]:
        window, _record = self._window(tx, window_id)
        return (tx.count_waiting_for(window.services, window.id),
                tx.waiting_for(window.services, window.id, limit))

    # -- the hall at a glance ------------------------------------------------------

    async def load(self) -> list[ServiceLoad]:
        return await self.look(self._load)

    def _load(self, tx: Tx, now: float) -> list[ServiceLoad]:
        counts = tx.waiting_counts()
        open_ids = tx.open_windows()
        loads = []
        for service in self.config.services:
            waiting = counts.get(service.id, 0)
            open_now = sum(1 for w in self._serving[service.id] if w.id in open_ids)
            windows = self._serving_windows(service.id, open_ids)
            minutes = self._minutes_per_ticket(tx, service.id, now)
            loads.append(ServiceLoad(service.id, waiting, open_now, minutes,
                                     self._estimate(waiting, minutes, windows)))
        return loads

    async def overview(self) -> tuple[str, list[ServiceLoad], list[WindowView]]:
        """The hall's day, its lines and its windows, read in one transaction."""
        return await self.look(self._overview)

    def _overview(self, tx: Tx, now: float) -> tuple[str, list[ServiceLoad], list[WindowView]]:
        return self.day_of(now), self._load(tx, now), self._all_windows(tx, now)

    async def events_after(self, after_id: int) -> list[Event]:
        return await self.store.view(
            lambda tx: tx.events_after(after_id, EVENT_REPLAY_LIMIT))

    # -- day rollover ----------------------------------------------------------------

    async def close_past_days(self) -> None:
        """Roll over unless today's roll-over has run: what reads a past day (the
        statistics) sees it closed."""
        if self._rolled_over != self.day_of(self.clock()):
            await self.roll_over()

    async def roll_over(self) -> None:
        """Close what a past day left behind; runs before the first operation of a day."""
        self._rolled_over = await self.store.transact(self._roll_over)

    def _roll_over(self, tx: Tx) -> str:
        """Waiting tickets of a past day are cancelled, tickets still at a window are
        finished, and windows let go of them. Their history stays in the store."""
        now = self.clock()
        today = self.day_of(now)
        mark = len(tx.events)
        self._close_past_days(tx, now, today)
        audit.record_events(tx, SYSTEM, tx.events[mark:], self.day_of)
        return today

    def _close_past_days(self, tx: Tx, now: float, today: str) -> None:
        for ticket in tx.waiting_before(today):
            self._end(tx, now, ticket, Status.CANCELLED, reason="day_end")
        for ticket in tx.at_window_before(today):
            self._end(tx, now, ticket, Status.DONE, reason="day_end")
        for record in tx.windows():
            if record.current is not None:
                current = tx.ticket(record.current)
                if current is None or current.status not in AT_WINDOW:
                    record.current = None
                    tx.save_window(record)

    # -- lookups and estimates -----------------------------------------------------------

    def _window(self, tx: Tx, window_id: str) -> tuple[Window, WindowRecord]:
        window = self._windows.get(window_id)
        record = tx.window(window_id) if window else None
        if window is None or record is None:
            raise NotFound(f"unknown window '{window_id}'")
        return window, record

    def _current(self, tx: Tx, window_id: str) -> tuple[Window, WindowRecord, Ticket]:
        window, record = self._window(tx, window_id)
        ticket = tx.ticket(record.current) if record.current else None
        if ticket is None or ticket.status not in AT_WINDOW:
            raise Conflict(f"window {window_id} has no current ticket; call the next one first")
        return window, record, ticket

    def _ticket(self, tx: Tx, ticket_id: str) -> Ticket:
        ticket = tx.ticket(ticket_id)
        if ticket is None:
            raise NotFound(f"no ticket '{ticket_id}'")
        return ticket

    def _serving_windows(self, service_id: str, open_ids: set[str]) -> int:
        """The windows an estimate divides by: those open now, or, while none is
        (before opening, at lunch), those that usually serve it."""
        serving = self._serving[service_id]
        open_now = sum(1 for w in serving if w.id in open_ids)
        if open_now:
            return open_now
        return sum(1 for w in serving if not w.temporary)

    def _minutes_per_ticket(self, tx: Tx, service_id: str, now: float) -> float:
        recent = tx.recent_service_seconds(service_id, now - RECENT_DAYS * 86400, RECENT_TICKETS)
        if recent:
            return max(sum(recent) / len(recent) / 60, 0.5)
        return self._services[service_id].service_time_min

    @staticmethod
    def _estimate(ahead: int, minutes: float, windows: int) -> int | None:
        if windows <= 0:
            return None
        return math.ceil(ahead * minutes / windows)

    def _view(self, tx: Tx, ticket: Ticket, now: float) -> TicketView:
        """Where the ticket stands.

        `waiting_ahead` counts the waiting tickets call-next would take before this
        one from the same line: the same service (or, for a ticket transferred to a
        window, that window's own line: the tickets transferred to it and those of
        the services it serves), priority tickets first, then by time in line.

        `est_wait_min` = ceil(ahead × m / n): m is the mean service time of the
        service's last 20 tickets served in the past 7 days (the configured
        `service_time_min` until there are any), n the number of open windows that
        serve it (when none is open, the permanent windows that will). The people
        ahead are served n at a time, each taking m on average. None when no window
        serves the service at all, and for tickets no longer waiting.
        """
        if ticket.status is not Status.WAITING:
            return TicketView(ticket, None, None)
        ahead = tx.count_ahead(ticket)
        if ticket.target_window is not None:
            # The target window also calls the earlier tickets of the services it serves.
            target = self._windows.get(ticket.target_window)
            for service in target.services if target else ():
                ahead += tx.count_ahead(replace(ticket, service=service, target_window=None))
            windows = 1
        else:
            windows = self._serving_windows(ticket.service, tx.open_windows())
        minutes = self._minutes_per_ticket(tx, ticket.service, now)
        return TicketView(ticket, ahead, self._estimate(ahead, minutes, windows))

    def _event_data(self, view: TicketView, window: Window | None = None,
                    **extra: Any) -> dict[str, Any]:
        """What displays need and nothing that identifies a person."""
        t = view.ticket
        service = self._services.get(t.service)
        data: dict[str, Any] = {
            "ticket": t.id, "number": t.number, "service": t.service,
            "service_name": service.name if service else t.service,
            "status": t.status.value, "priority": t.priority,
            "window": t.window or t.target_window,
        }
        if window is not None:
            data["window"] = window.id
            data["window_name"] = window.name
        if t.recalls:
            data["recalls"] = t.recalls
        if view.waiting_ahead is not None:
            data["waiting_ahead"] = view.waiting_ahead
            data["est_wait_min"] = view.est_wait_min
        data.update(extra)
        return data
