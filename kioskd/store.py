"""Durable state: tickets, windows, number sequences and the event log, in SQLite (WAL).

The engine never sees SQL. It hands the store a function of one transaction
(`await store.transact(fn)`); `fn(tx)` reads and writes through the small `Tx`
interface below. Every answer the engine gives is committed (WAL,
synchronous=FULL: on disk) before it returns.

Group commit: the functions run one after another on the event loop, each inside
its own savepoint, against one connection that always holds an open write
transaction; then a worker thread commits them all with one fsync and opens the
next transaction. Functions queued while that commit is on disk run together in
the next batch. A failing function rolls back only its own writes. Running the
statements on the loop is deliberate: they touch a few cached pages of small
indexes (tens of microseconds), while the one wait on the disk — the fsync — is
off the loop, under a timeout. A writer thread running the statements instead
spent most of its time waiting for the GIL the loop held (measured: 8 ms for a
batch of 16 cheap operations). One connection and one batch at a time also
means two windows calling at the same instant are served one after the other.
A PostgreSQL store for halls that outgrow one machine implements the same
`Store` and `Tx` with row locks in place of the single writer.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .aio import within
from .migrations import MIGRATIONS
from .records import (Actor, AlertRecord, Appointment, AppointmentStatus, AuditEntry, Event,
                      PrintStatus, Rating, Status, Ticket, WindowRecord, WindowState)

log = logging.getLogger("kioskd.store")

T = TypeVar("T")
STORE_FILE = "kioskd.db"   # in the hall's data_dir
MAX_BATCH = 64           # operations per commit
COMMIT_TIMEOUT = 10.0    # seconds an fsync may take before callers are told


class StoreClosed(RuntimeError):
    """The store was closed before the work could run."""


class Tx(Protocol):
    """What the queue engine may do inside one transaction."""

    events: list[Event]          # the events written so far in this transaction

    def next_sequence(self, day: str, prefix: str) -> int: ...
    def insert_ticket(self, ticket: Ticket) -> None: ...
    def update_ticket(self, ticket: Ticket) -> None: ...
    def ticket(self, ticket_id: str) -> Ticket | None: ...
    def first_waiting(self, services: Sequence[str], window: str) -> Ticket | None: ...
    def waiting_for(self, services: Sequence[str], window: str, limit: int) -> list[Ticket]: ...
    def count_waiting_for(self, services: Sequence[str], window: str) -> int: ...
    def waiting_line(self, service: str, priority: bool) -> list[Ticket]: ...
    def count_ahead(self, ticket: Ticket) -> int: ...
    def waiting_counts(self) -> dict[str, int]: ...
    def waiting_before(self, day: str) -> list[Ticket]: ...
    def at_window_before(self, day: str) -> list[Ticket]: ...
    def recent_service_seconds(self, service: str, since: float, limit: int) -> list[float]: ...
    def window(self, window_id: str) -> WindowRecord | None: ...
    def windows(self) -> list[WindowRecord]: ...
    def open_windows(self) -> set[str]: ...
    def save_window(self, record: WindowRecord) -> None: ...
    def emit(self, type: str, at: float, data: dict[str, Any]) -> Event: ...
    def events_after(self, after_id: int, limit: int) -> list[Event]: ...
    def last_event_id(self) -> int: ...
    def tickets_of_day(self, day: str) -> list[Ticket]: ...
    def events_between(self, types: Sequence[str], start: float, end: float,
                       keys: Sequence[str] | None = None) -> list[Event]: ...
    def last_events_by(self, type: str, keys: Sequence[str]) -> list[Event]: ...
    def waiting_since(self) -> list[tuple[str, str | None, float, str]]: ...
    def tickets_at_windows(self) -> list[Ticket]: ...
    # appointments
    def insert_appointment(self, appointment: Appointment) -> None: ...
    def update_appointment(self, appointment: Appointment) -> None: ...
    def appointment(self, appointment_id: str) -> Appointment | None: ...
    def appointments_by_code(self, code: str) -> list[Appointment]: ...
    def appointments_of_day(self, day: str) -> list[Appointment]: ...
    def purge_appointments(self, before_day: str) -> int: ...
    # ratings
    def insert_rating(self, rating: Rating) -> None: ...
    def rating(self, ticket_id: str) -> Rating | None: ...
    def ratings_between(self, first_day: str, last_day: str) -> list[Rating]: ...
    # alerts
    def insert_alert(self, alert: AlertRecord) -> None: ...
    def update_alert(self, alert: AlertRecord) -> None: ...
    def alert(self, alert_id: int) -> AlertRecord | None: ...
    def open_alert_records(self) -> list[AlertRecord]: ...
    def alerts_between(self, start: float, end: float) -> list[AlertRecord]: ...
    # audit
    def audit(self, entry: AuditEntry) -> int: ...
    def audit_entries(self, day: str | None, *, window: str | None = None,
                      ticket: str | None = None, actor: str | None = None, after_id: int = 0,
                      limit: int = 500) -> list[AuditEntry]: ...
    def purge_audit(self, before_day: str, limit: int) -> int: ...
    # statistics of past days, kept once computed
    def day_summary(self, day: str) -> tuple[int, dict[str, Any]] | None: ...
    def save_day_summary(self, day: str, version: int, at: float, data: dict[str, Any]) -> None: ...
    def day_summaries(self, first_day: str, last_day: str) -> dict[str, tuple[int, dict[str, Any]]]: ...
    def days_with_tickets(self, first_day: str, last_day: str) -> list[str]: ...
    def day_summary_versions(self, first_day: str, last_day: str) -> dict[str, int]: ...
    def ticket_facts_of_day(self, day: str) -> list[tuple]: ...
    def event_values_between(self, types: Sequence[str], start: float, end: float,
                             keys: Sequence[str]) -> list[tuple]: ...
    def rating_counts(self, first_day: str, last_day: str) -> list[tuple[str, str, int, int]]: ...
    def window_state_before(self, window: str, at: float) -> str | None: ...
    def window_state_after(self, window: str, at: float) -> str | None: ...
    def first_event_at(self) -> float | None: ...


class Store(Protocol):
    on_commit: Callable[[list[Event]], None] | None     # called with each commit's events

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def transact(self, fn: Callable[[Tx], T]) -> T: ...
    async def view(self, fn: Callable[[Tx], T]) -> T: ...
    async def read(self, fn: Callable[[Tx], T]) -> T: ...


_TICKET_COLUMNS = {
    "seq": "seq", "id": "id", "day": "day", "number": "number", "service": "service",
    "priority": "priority", "status": "status", "issued_at": "issued_at",
    "queue_at": "queue_at", "window": "window_id", "target_window": "target_window",
    "called_at": "called_at", "started_at": "started_at", "finished_at": "finished_at",
    "recalls": "recalls", "transfers": "transfers", "terminal": "terminal",
    "print_device": "print_device", "print_status": "print_status",
    "print_error": "print_error", "closed_by": "closed_by", "appointment": "appointment",
}
assert set(_TICKET_COLUMNS) == {f.name for f in fields(Ticket)}
_SELECT_TICKET = "SELECT " + ", ".join(_TICKET_COLUMNS.values()) + " FROM tickets"
_WRITE_FIELDS = [f for f in _TICKET_COLUMNS if f != "seq"]


def _ticket(row: sqlite3.Row | None) -> Ticket | None:
    if row is None:
        return None
    values = dict(zip(_TICKET_COLUMNS, row))
    values["priority"] = bool(values["priority"])
    values["status"] = Status(values["status"])
    values["print_status"] = PrintStatus(values["print_status"])
    return Ticket(**values)


def _params(ticket: Ticket) -> list[Any]:
    return [getattr(ticket, name) for name in _WRITE_FIELDS]


def _event(row: sqlite3.Row) -> Event:
    return Event(id=row[0], at=row[1], type=row[2], data=json.loads(row[3]))


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date (migrations.py, SQLite's text of each step); returns
    the version now in place."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"database schema v{version} is newer than this kioskd (v{len(MIGRATIONS)})")
    for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
        log.info("store: migrating schema to v%d", number)
        conn.executescript(
            f"BEGIN IMMEDIATE; {step.sqlite}; PRAGMA user_version = {number}; COMMIT;")
    return len(MIGRATIONS)


def connect(path: Path) -> sqlite3.Connection:
    """A connection set up the one way kioskd uses SQLite: WAL, durable commits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA cache_size = -65536")          # 64 MiB: the hot indexes stay in memory
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class SQLiteTx:
    """The `Tx` of one SQLite transaction; collects the events it writes."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.events: list[Event] = []

    def _one(self, sql: str, params: Iterable[Any] = ()) -> Ticket | None:
        return _ticket(self.conn.execute(sql, tuple(params)).fetchone())

    def _all(self, sql: str, params: Iterable[Any] = ()) -> list[Ticket]:
        return [_ticket(r) for r in self.conn.execute(sql, tuple(params)).fetchall()]

    def next_sequence(self, day: str, prefix: str) -> int:
        row = self.conn.execute(
            "INSERT INTO sequences (day, prefix, last) VALUES (?, ?, 1) "
            "ON CONFLICT (day, prefix) DO UPDATE SET last = last + 1 RETURNING last",
            (day, prefix)).fetchone()
        return row[0]

    def insert_ticket(self, ticket: Ticket) -> None:
        cols = ", ".join(_TICKET_COLUMNS[f] for f in _WRITE_FIELDS)
        marks = ", ".join("?" for _ in _WRITE_FIELDS)
        cur = self.conn.execute(f"INSERT INTO tickets ({cols}) VALUES ({marks})", _params(ticket))
        ticket.seq = cur.lastrowid

    def update_ticket(self, ticket: Ticket) -> None:
        sets = ", ".join(f"{_TICKET_COLUMNS[f]} = ?" for f in _WRITE_FIELDS)
        self.conn.execute(f"UPDATE tickets SET {sets} WHERE seq = ?", [*_params(ticket), ticket.seq])

    def ticket(self, ticket_id: str) -> Ticket | None:
        return self._one(f"{_SELECT_TICKET} WHERE id = ?", (ticket_id,))

    def first_waiting(self, services: Sequence[str], window: str) -> Ticket | None:
        found = self.waiting_for(services, window, 1)
        return found[0] if found else None

    def waiting_for(self, services: Sequence[str], window: str, limit: int) -> list[Ticket]:
        """The tickets `window` would call next, in the order it would call them."""
        marks = ", ".join("?" for _ in services) or "NULL"
        return self._all(
            f"{_SELECT_TICKET} INDEXED BY tickets_waiting WHERE status = 'waiting' AND "
            f"((target_window IS NULL AND service IN ({marks})) OR target_window = ?) "
            "ORDER BY priority DESC, queue_at, seq LIMIT ?", (*services, window, limit))

    def count_waiting_for(self, services: Sequence[str], window: str) -> int:
        marks = ", ".join("?" for _ in services) or "NULL"
        return self.conn.execute(
            "SELECT count(*) FROM tickets INDEXED BY tickets_waiting WHERE status = 'waiting' AND "
            f"((target_window IS NULL AND service IN ({marks})) OR target_window = ?)",
            (*services, window)).fetchone()[0]

    def waiting_line(self, service: str, priority: bool) -> list[Ticket]:
        return self._all(
            f"{_SELECT_TICKET} INDEXED BY tickets_waiting_by_service WHERE status = 'waiting' "
            "AND target_window IS NULL AND service = ? AND priority = ? "
            "ORDER BY queue_at, seq", (service, int(priority)))

    def count_ahead(self, ticket: Ticket) -> int:
        p, q, s = int(ticket.priority), ticket.queue_at, ticket.seq
        if ticket.target_window is None:
            # Two range counts on the service's own index: all tickets of a higher
            # priority, then those of the same priority earlier in line.
            return self.conn.execute(
                "SELECT (SELECT count(*) FROM tickets INDEXED BY tickets_waiting_by_service "
                "        WHERE status = 'waiting' AND target_window IS NULL AND service = ? "
                "        AND priority > ?) "
                "     + (SELECT count(*) FROM tickets INDEXED BY tickets_waiting_by_service "
                "        WHERE status = 'waiting' AND target_window IS NULL AND service = ? "
                "        AND priority = ? AND (queue_at, seq) < (?, ?))",
                (ticket.service, p, ticket.service, p, q, s)).fetchone()[0]
        return self.conn.execute(
            "SELECT count(*) FROM tickets INDEXED BY tickets_waiting "
            "WHERE status = 'waiting' AND target_window = ? AND "
            "(priority > ? OR (priority = ? AND (queue_at < ? OR (queue_at = ? AND seq < ?))))",
            (ticket.target_window, p, p, q, q, s)).fetchone()[0]

    def waiting_counts(self) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT service, count(*) FROM tickets INDEXED BY tickets_waiting "
            "WHERE status = 'waiting' GROUP BY service").fetchall()
        return dict(rows)

    def waiting_before(self, day: str) -> list[Ticket]:
        return self._all(
            f"{_SELECT_TICKET} INDEXED BY tickets_waiting WHERE status = 'waiting' AND day < ?",
            (day,))

    def at_window_before(self, day: str) -> list[Ticket]:
        return self._all(
            f"{_SELECT_TICKET} INDEXED BY tickets_at_window "
            "WHERE status IN ('called', 'serving') AND day < ?", (day,))

    def recent_service_seconds(self, service: str, since: float, limit: int) -> list[float]:
        rows = self.conn.execute(
            "SELECT finished_at - coalesce(started_at, called_at) FROM tickets "
            "INDEXED BY tickets_done WHERE status = 'done' AND service = ? AND finished_at >= ? "
            "AND closed_by IS NULL "      # closed at day end: not a measure of service
            "ORDER BY finished_at DESC LIMIT ?", (service, since, limit)).fetchall()
        return [r[0] for r in rows if r[0] is not None]

    def window(self, window_id: str) -> WindowRecord | None:
        row = self.conn.execute(
            "SELECT id, state, current, since FROM windows WHERE id = ?", (window_id,)).fetchone()
        return WindowRecord(row[0], WindowState(row[1]), row[2], row[3]) if row else None

    def open_windows(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT id FROM windows WHERE state = 'open'")}

    def windows(self) -> list[WindowRecord]:
        """Every window's record, by id (both stores answer in the same order)."""
        rows = self.conn.execute(
            "SELECT id, state, current, since FROM windows ORDER BY id").fetchall()
        return [WindowRecord(r[0], WindowState(r[1]), r[2], r[3]) for r in rows]

    def save_window(self, record: WindowRecord) -> None:
        self.conn.execute(
            "INSERT INTO windows (id, state, current, since) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET state = excluded.state, "
            "current = excluded.current, since = excluded.since",
            (record.id, record.state.value, record.current, record.since))

    def emit(self, type: str, at: float, data: dict[str, Any]) -> Event:
        cur = self.conn.execute(
            "INSERT INTO events (at, type, data) VALUES (?, ?, ?)",
            (at, type, json.dumps(data, ensure_ascii=False, separators=(",", ":"))))
        event = Event(id=cur.lastrowid, type=type, at=at, data=data)
        self.events.append(event)
        return event

    def events_after(self, after_id: int, limit: int) -> list[Event]:
        rows = self.conn.execute(
            "SELECT id, at, type, data FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit)).fetchall()
        return [_event(r) for r in rows]

    def last_event_id(self) -> int:
        return self.conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]

    def tickets_of_day(self, day: str) -> list[Ticket]:
        """Every ticket whose number belongs to `day`, in issue order."""
        return self._all(f"{_SELECT_TICKET} WHERE day = ? ORDER BY seq", (day,))

    def events_between(self, types: Sequence[str], start: float, end: float,
                       keys: Sequence[str] | None = None) -> list[Event]:
        """The events of these types written at `start` <= at < `end`, in log order;
        with `keys`, their data holds only those keys (None when absent), read by
        SQLite instead of decoding every event's JSON here."""
        marks = ", ".join("?" for _ in types) or "NULL"
        where = (f"FROM events INDEXED BY events_by_type "
                 f"WHERE type IN ({marks}) AND at >= ? AND at < ? ORDER BY id")
        if keys is None:
            rows = self.conn.execute(f"SELECT id, at, type, data {where}",
                                     (*types, start, end)).fetchall()
            return [_event(r) for r in rows]
        wanted = ", ".join("json_extract(data, ?)" for _ in keys)
        rows = self.conn.execute(f"SELECT id, at, type, {wanted} {where}",
                                 (*(f'$."{key}"' for key in keys), *types, start, end)).fetchall()
        return [Event(id=r[0], at=r[1], type=r[2], data=dict(zip(keys, r[3:]))) for r in rows]

    def last_events_by(self, type: str, keys: Sequence[str]) -> list[Event]:
        """The last event of `type` for each distinct value of its data's `keys`
        (e.g. the last `alert` of each device and kind), newest first."""
        group = ", ".join("json_extract(data, ?)" for _ in keys) or "NULL"
        rows = self.conn.execute(
            "SELECT id, at, type, data FROM events WHERE id IN ("
            f"  SELECT max(id) FROM events INDEXED BY events_by_type WHERE type = ? "
            f"  GROUP BY {group}) ORDER BY id DESC",
            (type, *(f'$."{key}"' for key in keys))).fetchall()
        return [_event(r) for r in rows]

    # -- what the alerts watch ------------------------------------------------------

    def waiting_since(self) -> list[tuple[str, str | None, float, str]]:
        """(service, target window, issue time, number) of every waiting ticket, by index."""
        return self.conn.execute(
            "SELECT service, target_window, issued_at, number FROM tickets "
            "INDEXED BY tickets_waiting "
            "WHERE status = 'waiting'").fetchall()

    def tickets_at_windows(self) -> list[Ticket]:
        """Every ticket called or being served now."""
        return self._all(f"{_SELECT_TICKET} INDEXED BY tickets_at_window "
                         "WHERE status IN ('called', 'serving')")

    # -- appointments -------------------------------------------------------------------

    def insert_appointment(self, appointment: Appointment) -> None:
        values = _appointment_params(appointment)
        self.conn.execute(
            f"INSERT INTO appointments ({', '.join(_APPOINTMENT_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in values)})", values)

    def update_appointment(self, appointment: Appointment) -> None:
        values = _appointment_params(appointment)
        sets = ", ".join(f"{c} = ?" for c in _APPOINTMENT_COLUMNS)
        self.conn.execute(f"UPDATE appointments SET {sets} WHERE id = ?",
                          [*values, appointment.id])

    def appointment(self, appointment_id: str) -> Appointment | None:
        row = self.conn.execute(f"{_SELECT_APPOINTMENT} WHERE id = ?",
                                (appointment_id,)).fetchone()
        return _appointment(row) if row else None

    def appointments_by_code(self, code: str) -> list[Appointment]:
        rows = self.conn.execute(f"{_SELECT_APPOINTMENT} WHERE code = ? ORDER BY day",
                                 (code,)).fetchall()
        return [_appointment(r) for r in rows]

    def appointments_of_day(self, day: str) -> list[Appointment]:
        rows = self.conn.execute(f"{_SELECT_APPOINTMENT} WHERE day = ? ORDER BY slot_at, seq",
                                 (day,)).fetchall()
        return [_appointment(r) for r in rows]

    def purge_appointments(self, before_day: str) -> int:
        return self.conn.execute("DELETE FROM appointments WHERE day < ?", (before_day,)).rowcount

    # -- ratings ------------------------------------------------------------------------------

    def insert_rating(self, rating: Rating) -> None:
        self.conn.execute(
            "INSERT INTO ratings (ticket, day, window_id, service, level, at, source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rating.ticket, rating.day, rating.window, rating.service, rating.level,
             rating.at, rating.source))

    def rating(self, ticket_id: str) -> Rating | None:
        row = self.conn.execute(f"{_SELECT_RATING} WHERE ticket = ?", (ticket_id,)).fetchone()
        return Rating(*row) if row else None

    def ratings_between(self, first_day: str, last_day: str) -> list[Rating]:
        """The ratings of tickets whose day is first_day … last_day (inclusive)."""
        rows = self.conn.execute(f"{_SELECT_RATING} WHERE day BETWEEN ? AND ? ORDER BY at",
                                 (first_day, last_day)).fetchall()
        return [Rating(*r) for r in rows]

    # -- alerts ---------------------------------------------------------------------------------

    def insert_alert(self, alert: AlertRecord) -> None:
        values = _alert_params(alert)
        cur = self.conn.execute(
            f"INSERT INTO alerts ({', '.join(_ALERT_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in values)})", values)
        alert.id = cur.lastrowid

    def update_alert(self, alert: AlertRecord) -> None:
        values = _alert_params(alert)
        sets = ", ".join(f"{c} = ?" for c in _ALERT_COLUMNS)
        self.conn.execute(f"UPDATE alerts SET {sets} WHERE id = ?", [*values, alert.id])

    def alert(self, alert_id: int) -> AlertRecord | None:
        row = self.conn.execute(f"{_SELECT_ALERT} WHERE id = ?", (alert_id,)).fetchone()
        return _alert(row) if row else None

    def open_alert_records(self) -> list[AlertRecord]:
        """Every alert not yet closed, newest first."""
        rows = self.conn.execute(f"{_SELECT_ALERT} INDEXED BY alerts_open "
                                 "WHERE closed_at IS NULL").fetchall()
        return sorted((_alert(r) for r in rows), key=lambda a: a.id, reverse=True)

    def alerts_between(self, start: float, end: float) -> list[AlertRecord]:
        """The alerts raised at start <= raised_at < end, newest first."""
        rows = self.conn.execute(f"{_SELECT_ALERT} WHERE raised_at >= ? AND raised_at < ? "
                                 "ORDER BY id DESC", (start, end)).fetchall()
        return [_alert(r) for r in rows]

    # -- audit ----------------------------------------------------------------------------------

    def audit(self, entry: AuditEntry) -> int:
        cur = self.conn.execute(
            f"INSERT INTO audit ({_AUDIT_COLUMNS}) VALUES ({', '.join('?' * 14)})",
            _audit_params(entry))
        return cur.lastrowid

    def audit_entries(self, day: str | None, *, window: str | None = None,
                      ticket: str | None = None, actor: str | None = None, after_id: int = 0,
                      limit: int = 500) -> list[AuditEntry]:
        """Entries in the order they were written, after `after_id`, filtered by the
        hall's day, the window concerned, the ticket, and the actor (its label, or its
        role). Every day of a ticket when `day` is None (a ticket must be named then)."""
        where, params = audit_filter(day, window, ticket, actor, after_id)
        index = "audit_by_ticket" if ticket is not None else "audit_by_day"
        rows = self.conn.execute(
            f"{_SELECT_AUDIT} INDEXED BY {index} WHERE {' AND '.join(where)} "
            "ORDER BY id LIMIT ?", (*params, limit)).fetchall()
        return [_audit(r) for r in rows]

    def purge_audit(self, before_day: str, limit: int) -> int:
        """Delete at most `limit` of the entries of the days before `before_day`, oldest
        first, never one younger than 180 days by this machine's clock (the limit the
        store's trigger enforces)."""
        return self.conn.execute(
            "DELETE FROM audit WHERE id IN (SELECT id FROM audit INDEXED BY audit_by_day "
            "  WHERE day < ? AND at <= CAST(strftime('%s', 'now') AS REAL) - 180 * 86400 "
            "  ORDER BY day, id LIMIT ?)", (before_day, limit)).rowcount

    # -- statistics of past days ------------------------------------------------------

    def day_summary(self, day: str) -> tuple[int, dict[str, Any]] | None:
        row = self.conn.execute("SELECT version, data FROM day_summaries WHERE day = ?",
                                (day,)).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def save_day_summary(self, day: str, version: int, at: float, data: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO day_summaries (day, version, computed_at, data) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (day) DO UPDATE SET version = excluded.version, "
            "computed_at = excluded.computed_at, data = excluded.data",
            (day, version, at, json.dumps(data, ensure_ascii=False, separators=(",", ":"))))

    def day_summaries(self, first_day: str, last_day: str
                      ) -> dict[str, tuple[int, dict[str, Any]]]:
        rows = self.conn.execute(
            "SELECT day, version, data FROM day_summaries WHERE day BETWEEN ? AND ?",
            (first_day, last_day)).fetchall()
        return {r[0]: (r[1], json.loads(r[2])) for r in rows}

    def days_with_tickets(self, first_day: str, last_day: str) -> list[str]:
        """The days first_day … last_day on which numbers were issued (the numbering's
        own table: one row per day and prefix, not a scan of the tickets)."""
        rows = self.conn.execute(
            "SELECT DISTINCT day FROM sequences WHERE day BETWEEN ? AND ? ORDER BY day",
            (first_day, last_day)).fetchall()
        return [r[0] for r in rows]

    def day_summary_versions(self, first_day: str, last_day: str) -> dict[str, int]:
        """The version of each kept summary of first_day … last_day, without its data."""
        return dict(self.conn.execute(
            "SELECT day, version FROM day_summaries WHERE day BETWEEN ? AND ?",
            (first_day, last_day)).fetchall())

    def ticket_facts_of_day(self, day: str) -> list[tuple]:
        """What statistics need of each ticket of `day`, in no particular order, as plain
        tuples (id, service, status, issued_at, window, called_at, started_at, finished_at,
        closed_by): a fraction of the cost of whole tickets for a day of thousands."""
        return self.conn.execute(
            "SELECT id, service, status, issued_at, window_id, called_at, started_at, "
            "finished_at, closed_by FROM tickets WHERE day = ?", (day,)).fetchall()

    def event_values_between(self, types: Sequence[str], start: float, end: float,
                             keys: Sequence[str]) -> list[tuple]:
        """(id, at, type, value of each key or None) of the events of these types written
        at `start` <= at < `end`, in log order, as plain tuples: for reading thousands
        (statistics), where an Event and its dict cost more than the query."""
        marks = ", ".join("?" for _ in types) or "NULL"
        values = "".join(", json_extract(data, ?)" for _ in keys)
        return self.conn.execute(
            f"SELECT id, at, type{values} FROM events INDEXED BY events_by_type "
            f"WHERE type IN ({marks}) AND at >= ? AND at < ? ORDER BY id",
            (*(f'$."{key}"' for key in keys), *types, start, end)).fetchall()

    def rating_counts(self, first_day: str, last_day: str) -> list[tuple[str, str, int, int]]:
        """(window, service, level, how many) of the ratings of tickets whose day is
        first_day … last_day."""
        return self.conn.execute(
            "SELECT window_id, service, level, count(*) FROM ratings WHERE day BETWEEN ? AND ? "
            "GROUP BY window_id, service, level", (first_day, last_day)).fetchall()

    def window_state_before(self, window: str, at: float) -> str | None:
        """The state the window's last change before `at` left it in (None: no change)."""
        row = self.conn.execute(
            "SELECT json_extract(data, '$.state') FROM events INDEXED BY events_by_type "
            "WHERE type = 'window.changed' AND at < ? AND json_extract(data, '$.window') = ? "
            "ORDER BY at DESC, id DESC LIMIT 1", (at, window)).fetchone()
        return row[0] if row else None

    def window_state_after(self, window: str, at: float) -> str | None:
        """The state the window was in before its first change at or after `at` (None:
        no change since)."""
        row = self.conn.execute(
            "SELECT json_extract(data, '$.previous') FROM events INDEXED BY events_by_type "
            "WHERE type = 'window.changed' AND at >= ? AND json_extract(data, '$.window') = ? "
            "ORDER BY at, id LIMIT 1", (at, window)).fetchone()
        return row[0] if row else None

    def first_event_at(self) -> float | None:
        """When the hall's event log begins (None: nothing happened yet)."""
        row = self.conn.execute("SELECT at FROM events ORDER BY id LIMIT 1").fetchone()
        return row[0] if row else None


_APPOINTMENT_COLUMNS = ("id", "day", "code", "service", "slot_at", "status", "created_at",
                        "name", "phone", "reference", "checked_in_at", "cancelled_at", "ticket")
_SELECT_APPOINTMENT = f"SELECT {', '.join(_APPOINTMENT_COLUMNS)} FROM appointments"
assert set(_APPOINTMENT_COLUMNS) == {f.name for f in fields(Appointment)}


def _appointment_params(a: Appointment) -> list[Any]:
    return [getattr(a, c) for c in _APPOINTMENT_COLUMNS]


def _appointment(row: sqlite3.Row) -> Appointment:
    values = dict(zip(_APPOINTMENT_COLUMNS, row))
    values["status"] = AppointmentStatus(values["status"])
    return Appointment(**values)


_SELECT_RATING = "SELECT ticket, day, window_id, service, level, at, source FROM ratings"

_ALERT_FIELDS = {"key": "key", "kind": "kind", "message": "message", "raised_at": "raised_at",
                 "device": "device", "window": "window_id", "service": "service",
                 "ticket": "ticket", "detail": "detail", "acked_at": "acked_at",
                 "acked_by": "acked_by", "closed_at": "closed_at", "closed_by": "closed_by"}
_ALERT_COLUMNS = tuple(_ALERT_FIELDS.values())
_SELECT_ALERT = f"SELECT id, {', '.join(_ALERT_COLUMNS)} FROM alerts"
assert set(_ALERT_FIELDS) | {"id"} == {f.name for f in fields(AlertRecord)}


def _alert_params(a: AlertRecord) -> list[Any]:
    values = [getattr(a, f) for f in _ALERT_FIELDS]
    values[_ALERT_COLUMNS.index("detail")] = json.dumps(a.detail, ensure_ascii=False,
                                                        separators=(",", ":"))
    return values


def _alert(row: sqlite3.Row) -> AlertRecord:
    values = dict(zip(("id", *_ALERT_FIELDS), row))
    values["detail"] = json.loads(values["detail"])
    return AlertRecord(**values)


_AUDIT_COLUMNS = ("at, day, action, actor, role, actor_window, terminal, token, ticket, "
                  "window_id, appointment, alert, device, detail")


def _audit_params(entry: AuditEntry) -> tuple:
    a = entry.actor
    return (entry.at, entry.day, entry.action, a.label, a.role, a.window, a.terminal,
            int(a.token), entry.ticket, entry.window or a.window, entry.appointment,
            entry.alert, entry.device or a.device,
            json.dumps(entry.detail, ensure_ascii=False, separators=(",", ":")))


def audit_filter(day: str | None, window: str | None, ticket: str | None, actor: str | None,
                 after_id: int, mark: str = "?") -> tuple[list[str], list[Any]]:
    """The WHERE terms and parameters of an audit log query (`Tx.audit_entries`), with
    the store's parameter `mark`."""
    where, params = [f"id > {mark}"], [after_id]
    if day is not None:
        where.append(f"day = {mark}")
        params.append(day)
    elif ticket is None:
        raise ValueError("name a day or a ticket")
    if ticket is not None:
        where.append(f"ticket = {mark}")
        params.append(ticket)
    if window is not None:
        where.append(f"window_id = {mark}")
        params.append(window)
    if actor is not None:
        where.append(f"(actor = {mark} OR role = {mark})")
        params += [actor, actor]
    return where, params


_SELECT_AUDIT = ("SELECT id, at, day, action, role, actor_window, terminal, token, ticket, "
                 "window_id, appointment, alert, device, detail FROM audit")


def _audit(row: sqlite3.Row) -> AuditEntry:
    (id_, at, day, action, role, actor_window, terminal, token, ticket, window, appointment,
     alert, device, detail) = row
    actor = Actor(role, window=actor_window, terminal=terminal,
                  device=device if role == "keypad" else None, token=bool(token))
    return AuditEntry(at=at, day=day, action=action, actor=actor, ticket=ticket, window=window,
                      appointment=appointment, alert=alert, device=device,
                      detail=json.loads(detail), id=id_)


def store_file(data_dir: Path) -> Path:
    """Where the embedded store of a hall with this data dir lives."""
    return Path(data_dir) / STORE_FILE


def store_for(config: Any) -> Store:
    """The hall's store as its devices.toml says: `[store] url` names a PostgreSQL
    database the hall's daemons share (pgstore.py); without it, the embedded SQLite
    file under the data dir."""
    if config.store.url is None:
        return SQLiteStore(store_file(config.hall.data_dir))
    from .pgstore import PostgresStore
    return PostgresStore(config.store.url, config)


class StoreInUse(RuntimeError):
    """Another process holds the store: a daemon running on it, or a restore."""


class StoreLock:
    """An exclusive lock on a store file, held by the one process working on it: a
    second daemon on the same data dir refuses to start, and `kioskd restore` never
    replaces a running daemon's store. An flock: the kernel lets go when the
    process dies, so a crash leaves nothing to clean up. The file says who holds it."""

    def __init__(self, db: Path):
        self.db = Path(db)
        self.path = self.db.with_name(self.db.name + ".lock")
        self._fd: int | None = None

    def acquire(self, holder: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise StoreInUse(f"{self.db} is in use by {who or 'another process'}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder} (pid {os.getpid()})\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)          # the lock goes with it; the file stays (no unlink race)


class SQLiteStore:
    """The embedded store: one SQLite file, one connection, group commit.

    `on_commit(events)` is called on the event loop, in commit order, with the
    events each batch wrote, before the callers' awaits return.
    """

    def __init__(self, path: Path, on_commit: Callable[[list[Event]], None] | None = None):
        self.path = Path(path)
        self.on_commit = on_commit
        self._lock = StoreLock(self.path)
        self._conn: sqlite3.Connection | None = None
        self._accepting = False
        self._pending: list[tuple[Callable[[Tx], Any], asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None
        self._reading: set[asyncio.Future] = set()      # reads running in worker threads

    async def open(self) -> None:
        await asyncio.to_thread(self._lock.acquire, "kioskd run")
        try:
            conn = await asyncio.to_thread(connect, self.path)
            await asyncio.to_thread(migrate, conn)
            await asyncio.to_thread(conn.execute, "BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        self._conn = conn
        self._accepting = True

    async def close(self) -> None:
        self._accepting = False                   # no new work; what is queued commits
        if self._flusher is not None:
            await self._flusher
        # a read whose caller stopped waiting still runs in its thread: the store closes
        # (its WAL checkpointed, its lock let go) once the last has let go of the file
        await asyncio.gather(*self._reading, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.to_thread(self._close_connection, conn)
        self._lock.release()

    @staticmethod
    def _close_connection(conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()

    async def transact(self, fn: Callable[[Tx], T]) -> T:
        if not self._accepting:
            raise StoreClosed("the store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="kioskd-store-commit")
        return await future

    async def view(self, fn: Callable[[Tx], T]) -> T:
        """`fn(tx)` that only reads, at the latest state: a small read, where the shared
        store takes no locks. Here it runs in the next batch like any transaction
        (it sees what the batch's earlier work wrote; a read needs no fsync)."""
        return await self.transact(fn)

    async def read(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn(tx)` in a worker thread on a read-only connection of its own: for
        reads too large for the loop (a day's statistics). It sees one snapshot of
        what was committed when it began, never what a batch has not yet committed,
        and holds up no call or issue; `tx` refuses writes. A caller that stops
        waiting (a timeout, a cancelled task) leaves the read running to its end,
        and `close` waits for it."""
        if not self._accepting:
            raise StoreClosed("the store is closed")
        reading = asyncio.ensure_future(asyncio.to_thread(self._read, fn))
        self._reading.add(reading)
        reading.add_done_callback(self._reading.discard)
        return await asyncio.shield(reading)

    def _read(self, fn: Callable[[Tx], T]) -> T:
        conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                               isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("BEGIN")                 # one snapshot for every statement of fn
            return fn(SQLiteTx(conn))
        finally:
            conn.close()

    async def _flush(self) -> None:
        """Run and commit batches until nothing is pending."""
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    await self._commit_batch(batch)
                except Exception as exc:       # the database itself failed mid-batch
                    log.exception("store: a batch of %d operations failed", len(batch))
                    self._fail(batch, f"the database failed: {exc}")
                    try:
                        await asyncio.to_thread(_roll_back_and_begin, self._conn)
                    except sqlite3.Error:
                        log.exception("store: could not start over after the failure")
        finally:
            self._flusher = None

    async def _commit_batch(self, batch: list) -> None:
        conn = self._conn
        assert conn is not None
        tx = SQLiteTx(conn)
        outcomes: list[tuple[Any, BaseException | None]] = []
        changes = conn.total_changes
        for fn, _ in batch:
            mark = len(tx.events)
            conn.execute("SAVEPOINT job")
            try:
                result = fn(tx)
            except Exception as exc:          # the job's own error: undo its writes only
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                del tx.events[mark:]
                outcomes.append((None, exc))
            else:
                conn.execute("RELEASE job")
                outcomes.append((result, None))
        if conn.total_changes != changes:      # reads alone need no fsync
            committed = await self._commit(conn, batch)
            if not committed:
                return
        if tx.events and self.on_commit is not None:
            try:
                self.on_commit(list(tx.events))
            except Exception:                  # a subscriber's fault must not lose an answer
                log.exception("store: on_commit handler failed")
        for (_, future), (result, error) in zip(batch, outcomes):
            _settle(future, result, error)

    async def _commit(self, conn: sqlite3.Connection, batch: list) -> bool:
        """fsync the batch off the loop. Callers hear within COMMIT_TIMEOUT either way;
        the connection is not touched again until the disk has answered."""
        commit = asyncio.ensure_future(asyncio.to_thread(_commit_and_begin, conn))
        try:
            await within(asyncio.shield(commit), COMMIT_TIMEOUT)
            return True
        except TimeoutError:
            log.error("store: the disk has not answered a commit for %.0f s", COMMIT_TIMEOUT)
            self._fail(batch, f"the disk did not answer within {COMMIT_TIMEOUT:.0f} s; "
                              "the change may still be saved")
            try:
                await commit
                log.warning("store: the late commit completed")
                return True
            except sqlite3.Error as exc:
                error = exc
        except sqlite3.Error as exc:
            error = exc
        log.error("store: commit of %d operations failed: %s", len(batch), error)
        await asyncio.to_thread(_roll_back_and_begin, conn)
        self._fail(batch, f"the database could not commit: {error}")
        return False

    @staticmethod
    def _fail(batch: list, reason: str) -> None:
        for _, future in batch:
            _settle(future, None, StoreUnavailable(reason))


def _commit_and_begin(conn: sqlite3.Connection) -> None:
    conn.execute("COMMIT")
    conn.execute("BEGIN IMMEDIATE")


def _roll_back_and_begin(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.execute("BEGIN IMMEDIATE")


class StoreUnavailable(RuntimeError):
    """The database refused a commit (disk full, I/O error); nothing was written."""


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
