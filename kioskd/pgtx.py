"""The `Tx` of one PostgreSQL transaction, and the schema's migrations there: what the
queue engine reads and writes when the hall's daemons share one database.

`PgTx` answers every call exactly as `SQLiteTx` does (the same values, types and
order; tests/test_pgtx.py runs one script on both). What SQLite gets from its single
writer, PostgreSQL gets from row locks: in a writing transaction each row the engine
may then change is read `FOR UPDATE`, and call-next reads the head of its line `FOR
UPDATE SKIP LOCKED`, so two windows on two daemons calling at the same instant get
two different tickets and neither waits for the other. A read-only snapshot
(`writing=False`) locks nothing.

Events are not inserted as they are emitted: the store calls `write_events` just
before COMMIT, which numbers them under one lock held to the commit, so event ids
commit in order whichever daemon wrote them (a display resuming from `Last-Event-ID`
never misses one committed late under a smaller id), and tells every daemon with a
NOTIFY.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from .migrations import MIGRATIONS
from .records import (AlertRecord, Appointment, AuditEntry, Event, Rating, Ticket,
                      WindowRecord, WindowState)
from .store import (_ALERT_COLUMNS, _APPOINTMENT_COLUMNS, _SELECT_ALERT, _SELECT_APPOINTMENT,
                    _SELECT_AUDIT, _SELECT_RATING, _SELECT_TICKET, _TICKET_COLUMNS,
                    _WRITE_FIELDS, _alert, _alert_params, _appointment, _appointment_params,
                    _AUDIT_COLUMNS, _audit, _audit_params, _params, _ticket, audit_filter)

log = logging.getLogger("kioskd.store")

CHANNEL = "kioskd_events"                # NOTIFY payload: the last event id a commit wrote
EVENTS_LOCK = 0x6B696F736B640001         # "kioskd" 0 1: numbering the event log
MIGRATE_LOCK = 0x6B696F736B640002        # "kioskd" 0 2: migrating the schema
_SCHEMA_TABLE = "kioskd_schema"          # one row: the schema version in place

_WAITING_FOR = ("status = 'waiting' AND "
                "((target_window IS NULL AND service = ANY(%s::text[])) OR target_window = %s)")
_LINE_ORDER = "ORDER BY priority DESC, queue_at, seq"      # call-next's order (tickets_waiting)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _event(row: tuple) -> Event:
    """An event row whose data arrives decoded (jsonb)."""
    return Event(id=row[0], at=row[1], type=row[2], data=row[3])


def _unstorable(*keys: str | None) -> bool:
    """A key no PostgreSQL text can hold (it never contains NUL, which SQLite keeps):
    no row has it, so a lookup finds nothing, as on SQLite, where sending it would
    fail the transaction (a 500 for `GET /tickets/%00`)."""
    return any(key is not None and "\x00" in key for key in keys)


def _extracted(value: Any) -> Any:
    """A value of an event's data as SQLite's json_extract answers it: true and false
    as 1 and 0, an object or a list as its JSON text (keys in jsonb's order)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (dict, list)):
        return _dumps(value)
    return value


class PgTx:
    """The `Tx` of one PostgreSQL transaction on `conn` (psycopg 3, already inside the
    transaction). `writing=True` for the store's `transact`: the rows the engine may
    update are locked as they are read. `emit` only collects; the store writes
    `self.events` with `write_events` before it commits, so until then they carry
    id 0 and neither `events_after` nor `last_event_id` sees them."""

    def __init__(self, conn: psycopg.Connection, *, writing: bool):
        self.conn = conn
        self.writing = writing
        self.events: list[Event] = []
        self._for_update = " FOR UPDATE" if writing else ""

    def _run(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        return self.conn.cursor(row_factory=tuple_row).execute(sql, params)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._run(sql, params).fetchall()

    def _row(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        return self._run(sql, params).fetchone()

    def _tickets(self, sql: str, params: Sequence[Any] = ()) -> list[Ticket]:
        return [_ticket(r) for r in self._rows(sql, params)]

    # -- tickets ------------------------------------------------------------------

    def next_sequence(self, day: str, prefix: str) -> int:
        return self._row(
            "INSERT INTO sequences (day, prefix, last) VALUES (%s, %s, 1) "
            "ON CONFLICT (day, prefix) DO UPDATE SET last = sequences.last + 1 RETURNING last",
            (day, prefix))[0]

    def insert_ticket(self, ticket: Ticket) -> None:
        cols = ", ".join(_TICKET_COLUMNS[f] for f in _WRITE_FIELDS)
        marks = ", ".join("%s" for _ in _WRITE_FIELDS)
        ticket.seq = self._row(f"INSERT INTO tickets ({cols}) VALUES ({marks}) RETURNING seq",
                               _params(ticket))[0]

    def update_ticket(self, ticket: Ticket) -> None:
        sets = ", ".join(f"{_TICKET_COLUMNS[f]} = %s" for f in _WRITE_FIELDS)
        self._run(f"UPDATE tickets SET {sets} WHERE seq = %s", [*_params(ticket), ticket.seq])

    def ticket(self, ticket_id: str) -> Ticket | None:
        if _unstorable(ticket_id):
            return None
        return _ticket(self._row(f"{_SELECT_TICKET} WHERE id = %s{self._for_update}",
                                 (ticket_id,)))

    def first_waiting(self, services: Sequence[str], window: str) -> Ticket | None:
        """The ticket `window` calls next. Writing, the head of the line another
        transaction holds (another window calling right now) is passed over, not
        waited for."""
        lock = " FOR UPDATE SKIP LOCKED" if self.writing else ""
        return _ticket(self._row(
            f"{_SELECT_TICKET} WHERE {_WAITING_FOR} {_LINE_ORDER} LIMIT 1{lock}",
            (list(services), window)))

    def waiting_for(self, services: Sequence[str], window: str, limit: int) -> list[Ticket]:
        """The tickets `window` would call next, in the order it would call them."""
        return self._tickets(f"{_SELECT_TICKET} WHERE {_WAITING_FOR} {_LINE_ORDER} LIMIT %s",
                             (list(services), window, limit))

    def count_waiting_for(self, services: Sequence[str], window: str) -> int:
        return self._row(f"SELECT count(*) FROM tickets WHERE {_WAITING_FOR}",
                         (list(services), window))[0]

    def waiting_line(self, service: str, priority: bool) -> list[Ticket]:
        return self._tickets(
            f"{_SELECT_TICKET} WHERE status = 'waiting' AND target_window IS NULL "
            f"AND service = %s AND priority = %s ORDER BY queue_at, seq{self._for_update}",
            (service, bool(priority)))

    def count_ahead(self, ticket: Ticket) -> int:
        p, q, s = bool(ticket.priority), ticket.queue_at, ticket.seq
        if ticket.target_window is None:
            return self._row(
                "SELECT (SELECT count(*) FROM tickets "
                "        WHERE status = 'waiting' AND target_window IS NULL AND service = %s "
                "        AND priority > %s) "
                "     + (SELECT count(*) FROM tickets "
                "        WHERE status = 'waiting' AND target_window IS NULL AND service = %s "
                "        AND priority = %s AND (queue_at, seq) < (%s, %s))",
                (ticket.service, p, ticket.service, p, q, s))[0]
        return self._row(
            "SELECT count(*) FROM tickets WHERE status = 'waiting' AND target_window = %s "
            "AND (priority > %s OR (priority = %s AND "
            "     (queue_at < %s OR (queue_at = %s AND seq < %s))))",
            (ticket.target_window, p, p, q, q, s))[0]

    def waiting_counts(self) -> dict[str, int]:
        return dict(self._rows(
            "SELECT service, count(*) FROM tickets WHERE status = 'waiting' GROUP BY service"))

    def waiting_before(self, day: str) -> list[Ticket]:
        return self._tickets(f"{_SELECT_TICKET} WHERE status = 'waiting' AND day < %s "
                             f"{_LINE_ORDER}{self._for_update}", (day,))

    def at_window_before(self, day: str) -> list[Ticket]:
        return self._tickets(f"{_SELECT_TICKET} WHERE status IN ('called', 'serving') "
                             f"AND day < %s ORDER BY day, seq{self._for_update}", (day,))

    def recent_service_seconds(self, service: str, since: float, limit: int) -> list[float]:
        rows = self._rows(
            "SELECT finished_at - coalesce(started_at, called_at) FROM tickets "
            "WHERE status = 'done' AND service = %s AND finished_at >= %s "
            "AND closed_by IS NULL "      # closed at day end: not a measure of service
            "ORDER BY finished_at DESC, seq DESC LIMIT %s", (service, since, limit))
        return [r[0] for r in rows if r[0] is not None]

    def tickets_of_day(self, day: str) -> list[Ticket]:
        """Every ticket whose number belongs to `day`, in issue order."""
        return self._tickets(f"{_SELECT_TICKET} WHERE day = %s ORDER BY seq", (day,))

    def waiting_since(self) -> list[tuple[str, str | None, float, str]]:
        """(service, target window, issue time, number) of every waiting ticket, in line
        order."""
        return self._rows("SELECT service, target_window, issued_at, number FROM tickets "
                          f"WHERE status = 'waiting' {_LINE_ORDER}")

    def tickets_at_windows(self) -> list[Ticket]:
        """Every ticket called or being served now."""
        return self._tickets(f"{_SELECT_TICKET} WHERE status IN ('called', 'serving') "
                             f"ORDER BY day, seq{self._for_update}")

    # -- windows ------------------------------------------------------------------

    def window(self, window_id: str) -> WindowRecord | None:
        row = self._row(f"SELECT id, state, current, since FROM windows WHERE id = %s"
                        f"{self._for_update}", (window_id,))
        return WindowRecord(row[0], WindowState(row[1]), row[2], row[3]) if row else None

    def windows(self) -> list[WindowRecord]:
        """Every window's record, by id. Writing, they are locked: the day's roll-over
        saves windows it read here, and must not undo a change another daemon made in
        between (a pause, a call)."""
        rows = self._rows('SELECT id, state, current, since FROM windows ORDER BY id COLLATE "C"'
                          + self._for_update)
        return [WindowRecord(r[0], WindowState(r[1]), r[2], r[3]) for r in rows]

    def open_windows(self) -> set[str]:
        return {r[0] for r in self._rows("SELECT id FROM windows WHERE state = 'open'")}

    def save_window(self, record: WindowRecord) -> None:
        self._run(
            "INSERT INTO windows (id, state, current, since) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET state = excluded.state, "
            "current = excluded.current, since = excluded.since",
            (record.id, record.state.value, record.current, record.since))

    # -- the event log --------------------------------------------------------------

    def emit(self, type: str, at: float, data: dict[str, Any]) -> Event:
        """Collect an event; `write_events` gives it its id at commit."""
        if not self.writing:
            raise psycopg.errors.ReadOnlySqlTransaction(
                "a read-only transaction cannot write an event")
        if "\\u0000" in _dumps(data):     # jsonb cannot hold it: refused here, not at commit
            raise ValueError(f"{type}: text with a NUL character cannot be kept")
        event = Event(id=0, type=type, at=at, data=data)
        self.events.append(event)
        return event

    def events_after(self, after_id: int, limit: int) -> list[Event]:
        return [_event(r) for r in self._rows(
            "SELECT id, at, type, data FROM events WHERE id > %s ORDER BY id LIMIT %s",
            (after_id, limit))]

    def last_event_id(self) -> int:
        return self._row("SELECT coalesce(max(id), 0) FROM events")[0]

    def events_between(self, types: Sequence[str], start: float, end: float,
                       keys: Sequence[str] | None = None) -> list[Event]:
        """The events of these types written at `start` <= at < `end`, in log order;
        with `keys`, their data holds only those keys (None when absent)."""
        where = "FROM events WHERE type = ANY(%s::text[]) AND at >= %s AND at < %s ORDER BY id"
        if keys is None:
            return [_event(r) for r in self._rows(f"SELECT id, at, type, data {where}",
                                                  (list(types), start, end))]
        wanted = ", ".join("data -> %s::text" for _ in keys)
        rows = self._rows(f"SELECT id, at, type, {wanted} {where}",
                          (*keys, list(types), start, end))
        return [Event(id=r[0], at=r[1], type=r[2],
                      data={k: _extracted(v) for k, v in zip(keys, r[3:])}) for r in rows]

    def last_events_by(self, type: str, keys: Sequence[str]) -> list[Event]:
        """The last event of `type` for each distinct value of its data's `keys`,
        newest first (a JSON null groups with an absent key, as in SQLite)."""
        group = ", ".join("nullif(data -> %s::text, 'null'::jsonb)" for _ in keys)
        return [_event(r) for r in self._rows(
            "SELECT id, at, type, data FROM events WHERE id IN ("
            "  SELECT max(id) FROM events WHERE type = %s"
            f"  {'GROUP BY ' + group if keys else ''}) ORDER BY id DESC",
            (type, *keys))]

    def event_values_between(self, types: Sequence[str], start: float, end: float,
                             keys: Sequence[str]) -> list[tuple]:
        """(id, at, type, value of each key or None) of the events of these types
        written at `start` <= at < `end`, in log order, as plain tuples."""
        values = "".join(", data -> %s::text" for _ in keys)
        rows = self._rows(
            f"SELECT id, at, type{values} FROM events "
            "WHERE type = ANY(%s::text[]) AND at >= %s AND at < %s ORDER BY id",
            (*keys, list(types), start, end))
        return [(*r[:3], *map(_extracted, r[3:])) for r in rows]

    def window_state_before(self, window: str, at: float) -> str | None:
        """The state the window's last change before `at` left it in (None: no change)."""
        row = self._row(
            "SELECT data ->> 'state' FROM events WHERE type = 'window.changed' AND at < %s "
            "AND data ->> 'window' = %s ORDER BY at DESC, id DESC LIMIT 1", (at, window))
        return row[0] if row else None

    def window_state_after(self, window: str, at: float) -> str | None:
        """The state the window was in before its first change at or after `at` (None:
        no change since)."""
        row = self._row(
            "SELECT data ->> 'previous' FROM events WHERE type = 'window.changed' AND at >= %s "
            "AND data ->> 'window' = %s ORDER BY at, id LIMIT 1", (at, window))
        return row[0] if row else None

    def first_event_at(self) -> float | None:
        """When the hall's event log begins (None: nothing happened yet)."""
        row = self._row("SELECT at FROM events ORDER BY id LIMIT 1")
        return row[0] if row else None

    # -- appointments ---------------------------------------------------------------

    def insert_appointment(self, appointment: Appointment) -> None:
        values = _appointment_params(appointment)
        self._run(f"INSERT INTO appointments ({', '.join(_APPOINTMENT_COLUMNS)}) "
                  f"VALUES ({', '.join('%s' for _ in values)})", values)

    def update_appointment(self, appointment: Appointment) -> None:
        values = _appointment_params(appointment)
        sets = ", ".join(f"{c} = %s" for c in _APPOINTMENT_COLUMNS)
        self._run(f"UPDATE appointments SET {sets} WHERE id = %s", [*values, appointment.id])

    def appointment(self, appointment_id: str) -> Appointment | None:
        if _unstorable(appointment_id):
            return None
        row = self._row(f"{_SELECT_APPOINTMENT} WHERE id = %s{self._for_update}",
                        (appointment_id,))
        return _appointment(row) if row else None

    def appointments_by_code(self, code: str) -> list[Appointment]:
        if _unstorable(code):
            return []
        return [_appointment(r) for r in self._rows(
            f"{_SELECT_APPOINTMENT} WHERE code = %s ORDER BY day{self._for_update}", (code,))]

    def appointments_of_day(self, day: str) -> list[Appointment]:
        return [_appointment(r) for r in self._rows(
            f"{_SELECT_APPOINTMENT} WHERE day = %s ORDER BY slot_at, seq{self._for_update}",
            (day,))]

    def purge_appointments(self, before_day: str) -> int:
        return self._run("DELETE FROM appointments WHERE day < %s", (before_day,)).rowcount

    # -- ratings --------------------------------------------------------------------

    def insert_rating(self, rating: Rating) -> None:
        self._run(
            "INSERT INTO ratings (ticket, day, window_id, service, level, at, source) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (rating.ticket, rating.day, rating.window, rating.service, rating.level,
             rating.at, rating.source))

    def rating(self, ticket_id: str) -> Rating | None:
        if _unstorable(ticket_id):
            return None
        row = self._row(f"{_SELECT_RATING} WHERE ticket = %s", (ticket_id,))
        return Rating(*row) if row else None

    def ratings_between(self, first_day: str, last_day: str) -> list[Rating]:
        """The ratings of tickets whose day is first_day … last_day (inclusive)."""
        return [Rating(*r) for r in self._rows(
            f"{_SELECT_RATING} WHERE day BETWEEN %s AND %s ORDER BY at", (first_day, last_day))]

    def rating_counts(self, first_day: str, last_day: str) -> list[tuple[str, str, int, int]]:
        """(window, service, level, how many) of the ratings of tickets whose day is
        first_day … last_day."""
        return self._rows(
            "SELECT window_id, service, level, count(*) FROM ratings "
            "WHERE day BETWEEN %s AND %s GROUP BY window_id, service, level "
            'ORDER BY window_id COLLATE "C", service COLLATE "C", level',
            (first_day, last_day))

    # -- alerts ---------------------------------------------------------------------

    def insert_alert(self, alert: AlertRecord) -> None:
        values = _alert_params(alert)
        alert.id = self._row(f"INSERT INTO alerts ({', '.join(_ALERT_COLUMNS)}) "
                             f"VALUES ({', '.join('%s' for _ in values)}) RETURNING id",
                             values)[0]

    def update_alert(self, alert: AlertRecord) -> None:
        values = _alert_params(alert)
        sets = ", ".join(f"{c} = %s" for c in _ALERT_COLUMNS)
        self._run(f"UPDATE alerts SET {sets} WHERE id = %s", [*values, alert.id])

    def alert(self, alert_id: int) -> AlertRecord | None:
        row = self._row(f"{_SELECT_ALERT} WHERE id = %s{self._for_update}", (alert_id,))
        return _alert(row) if row else None

    def open_alert_records(self) -> list[AlertRecord]:
        """Every alert not yet closed, newest first."""
        return [_alert(r) for r in self._rows(
            f"{_SELECT_ALERT} WHERE closed_at IS NULL ORDER BY id DESC{self._for_update}")]

    def alerts_between(self, start: float, end: float) -> list[AlertRecord]:
        """The alerts raised at start <= raised_at < end, newest first."""
        return [_alert(r) for r in self._rows(
            f"{_SELECT_ALERT} WHERE raised_at >= %s AND raised_at < %s ORDER BY id DESC",
            (start, end))]

    # -- audit ----------------------------------------------------------------------

    def audit(self, entry: AuditEntry) -> int:
        return self._row(f"INSERT INTO audit ({_AUDIT_COLUMNS}) "
                         f"VALUES ({', '.join(['%s'] * 14)}) RETURNING id",
                         _audit_params(entry))[0]

    def audit_entries(self, day: str | None, *, window: str | None = None,
                      ticket: str | None = None, actor: str | None = None, after_id: int = 0,
                      limit: int = 500) -> list[AuditEntry]:
        """Entries in the order they were written, after `after_id`, filtered by the
        hall's day, the window concerned, the ticket, and the actor (its label, or its
        role). Every day of a ticket when `day` is None (a ticket must be named then)."""
        where, params = audit_filter(day, window, ticket, actor, after_id, "%s")
        if _unstorable(day, window, ticket, actor):
            return []
        return [_audit(r) for r in self._rows(
            f"{_SELECT_AUDIT} WHERE {' AND '.join(where)} ORDER BY id LIMIT %s",
            (*params, limit))]

    def purge_audit(self, before_day: str, limit: int) -> int:
        """Delete at most `limit` of the entries of the days before `before_day`, oldest
        first, never one younger than 180 days by the database's clock (the limit its
        trigger enforces)."""
        return self._run(
            "DELETE FROM audit WHERE id IN (SELECT id FROM audit "
            "  WHERE day < %s AND at <= extract(epoch FROM now()) - 180 * 86400 "
            "  ORDER BY day, id LIMIT %s)", (before_day, limit)).rowcount

    # -- statistics of past days ------------------------------------------------------

    def day_summary(self, day: str) -> tuple[int, dict[str, Any]] | None:
        row = self._row("SELECT version, data FROM day_summaries WHERE day = %s", (day,))
        return (row[0], json.loads(row[1])) if row else None

    def save_day_summary(self, day: str, version: int, at: float, data: dict[str, Any]) -> None:
        self._run(
            "INSERT INTO day_summaries (day, version, computed_at, data) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (day) DO UPDATE SET "
            "version = excluded.version, computed_at = excluded.computed_at, data = excluded.data",
            (day, version, at, _dumps(data)))

    def day_summaries(self, first_day: str, last_day: str
                      ) -> dict[str, tuple[int, dict[str, Any]]]:
        rows = self._rows("SELECT day, version, data FROM day_summaries "
                          "WHERE day BETWEEN %s AND %s", (first_day, last_day))
        return {r[0]: (r[1], json.loads(r[2])) for r in rows}

    def days_with_tickets(self, first_day: str, last_day: str) -> list[str]:
        """The days first_day … last_day on which numbers were issued."""
        rows = self._rows("SELECT day FROM sequences WHERE day BETWEEN %s AND %s "
                          "GROUP BY day ORDER BY day", (first_day, last_day))
        return [r[0] for r in rows]

    def day_summary_versions(self, first_day: str, last_day: str) -> dict[str, int]:
        """The version of each kept summary of first_day … last_day, without its data."""
        return dict(self._rows("SELECT day, version FROM day_summaries "
                               "WHERE day BETWEEN %s AND %s", (first_day, last_day)))

    def ticket_facts_of_day(self, day: str) -> list[tuple]:
        """What statistics need of each ticket of `day`, in no particular order, as plain
        tuples (id, service, status, issued_at, window, called_at, started_at,
        finished_at, closed_by)."""
        return self._rows(
            "SELECT id, service, status, issued_at, window_id, called_at, started_at, "
            "finished_at, closed_by FROM tickets WHERE day = %s", (day,))


def write_events(conn: psycopg.Connection, events: list[Event]) -> None:
    """Write a transaction's events, just before its COMMIT: under a lock held until
    the commit, so the ids (taken in list order) commit in order across daemons; each
    Event gets its id, and a NOTIFY on CHANNEL carrying the last id tells every daemon
    once the commit is done. Nothing for no events."""
    if not events:
        return
    # one statement, one round trip while the lock is held: the lock (taken before the
    # first row draws its id), the rows in list order, and the NOTIFY of the last id
    ids = conn.cursor(row_factory=tuple_row).execute(
        "WITH locked AS (SELECT pg_advisory_xact_lock(%s)), "
        "written AS (INSERT INTO events (at, type, data) "
        "  SELECT e.at, e.type, e.data::jsonb FROM locked, "
        "    unnest(%s::double precision[], %s::text[], %s::text[]) "
        "    WITH ORDINALITY AS e(at, type, data, n) ORDER BY e.n RETURNING id), "
        "told AS (SELECT pg_notify(%s, max(id)::text) FROM written) "
        "SELECT id FROM written, told ORDER BY id",
        (EVENTS_LOCK, [float(e.at) for e in events], [e.type for e in events],
         [_dumps(e.data) for e in events], CHANNEL)).fetchall()
    for event, (event_id,) in zip(events, ids, strict=True):
        # Event is frozen for its readers; the engine already holds these objects
        # (emit returned them) and learns their ids here.
        object.__setattr__(event, "id", event_id)


def migrate(conn: psycopg.Connection) -> int:
    """Bring a PostgreSQL database's schema up to date (migrations.py, PostgreSQL's
    text of each step, each in its own transaction); returns the version now in
    place. `conn` must not be inside a transaction. Daemons starting together take
    turns on a lock: the first migrates, the others find the work done."""
    cur = conn.cursor(row_factory=tuple_row)
    while True:
        with conn.transaction():
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            version = _schema_version(cur)
            if version > len(MIGRATIONS):
                raise RuntimeError(f"database schema v{version} is newer than this kioskd "
                                   f"(v{len(MIGRATIONS)})")
            if version == len(MIGRATIONS):
                return version
            log.info("store: migrating schema to v%d", version + 1)
            cur.execute(MIGRATIONS[version].postgres)
            cur.execute(f"UPDATE {_SCHEMA_TABLE} SET version = %s", (version + 1,))


def _schema_version(cur: psycopg.Cursor) -> int:
    """The version in place; a new database gets the table that keeps it, at 0."""
    if cur.execute("SELECT to_regclass(%s)", (_SCHEMA_TABLE,)).fetchone()[0] is None:
        cur.execute(f"CREATE TABLE {_SCHEMA_TABLE} (version integer NOT NULL)")
        cur.execute(f"INSERT INTO {_SCHEMA_TABLE} (version) VALUES (0)")
        return 0
    return cur.execute(f"SELECT version FROM {_SCHEMA_TABLE}").fetchone()[0]
