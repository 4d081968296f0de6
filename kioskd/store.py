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
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .aio import within
from .records import Event, PrintStatus, Status, Ticket, WindowRecord, WindowState

log = logging.getLogger("kioskd.store")

T = TypeVar("T")
MAX_BATCH = 64           # operations per commit
COMMIT_TIMEOUT = 10.0    # seconds an fsync may take before callers are told


class StoreClosed(RuntimeError):
    """The store was closed before the work could run."""


class Tx(Protocol):
    """What the queue engine may do inside one transaction."""

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


class Store(Protocol):
    on_commit: Callable[[list[Event]], None] | None     # called with each commit's events

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def transact(self, fn: Callable[[Tx], T]) -> T: ...
    async def read(self, fn: Callable[[Tx], T]) -> T: ...


# Each entry brings the schema from the version before it to its own number.
MIGRATIONS: list[str] = [
    # 1: the first release
    """
    CREATE TABLE tickets (
        seq           INTEGER PRIMARY KEY,
        id            TEXT NOT NULL UNIQUE,
        day           TEXT NOT NULL,
        number        TEXT NOT NULL,
        service       TEXT NOT NULL,
        priority      INTEGER NOT NULL,
        status        TEXT NOT NULL,
        issued_at     REAL NOT NULL,
        queue_at      REAL NOT NULL,
        window_id     TEXT,
        target_window TEXT,
        called_at     REAL,
        started_at    REAL,
        finished_at   REAL,
        recalls       INTEGER NOT NULL DEFAULT 0,
        transfers     INTEGER NOT NULL DEFAULT 0,
        terminal      TEXT,
        print_device  TEXT,
        print_status  TEXT NOT NULL DEFAULT 'none',
        print_error   TEXT,
        closed_by     TEXT,
        UNIQUE (day, number)
    );
    -- Only waiting tickets are in this index, so call-next reads a few
    -- hundred entries whether the table holds a day or a year.
    CREATE INDEX tickets_waiting ON tickets (priority DESC, queue_at, seq)
        WHERE status = 'waiting';
    CREATE INDEX tickets_at_window ON tickets (day) WHERE status IN ('called', 'serving');
    CREATE INDEX tickets_done ON tickets (service, finished_at) WHERE status = 'done';
    CREATE TABLE sequences (
        day    TEXT NOT NULL,
        prefix TEXT NOT NULL,
        last   INTEGER NOT NULL,
        PRIMARY KEY (day, prefix)
    ) WITHOUT ROWID;
    CREATE TABLE windows (
        id      TEXT PRIMARY KEY,
        state   TEXT NOT NULL,
        current TEXT,
        since   REAL NOT NULL
    );
    CREATE TABLE events (
        id   INTEGER PRIMARY KEY AUTOINCREMENT,
        at   REAL NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL
    );
    """,
    # 2: a ticket's place in its service's line is counted from an index that
    # holds only that service's waiting tickets, in line order
    """
    CREATE INDEX tickets_waiting_by_service
        ON tickets (service, priority, queue_at, seq, status, target_window)
        WHERE status = 'waiting' AND target_window IS NULL;   -- covering: no row reads
    """,
    # 3: a day's calls and transfers (statistics) and the alerts are read by type and
    # time, not by scanning a year of events
    """
    CREATE INDEX IF NOT EXISTS events_by_type ON events (type, at);
    """,
]

_TICKET_COLUMNS = {
    "seq": "seq", "id": "id", "day": "day", "number": "number", "service": "service",
    "priority": "priority", "status": "status", "issued_at": "issued_at",
    "queue_at": "queue_at", "window": "window_id", "target_window": "target_window",
    "called_at": "called_at", "started_at": "started_at", "finished_at": "finished_at",
    "recalls": "recalls", "transfers": "transfers", "terminal": "terminal",
    "print_device": "print_device", "print_status": "print_status",
    "print_error": "print_error", "closed_by": "closed_by",
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
    """Bring the schema up to date; returns the version now in place."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"database schema v{version} is newer than this kioskd (v{len(MIGRATIONS)})")
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        log.info("store: migrating schema to v%d", number)
        conn.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")
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
        rows = self.conn.execute("SELECT id, state, current, since FROM windows").fetchall()
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


class SQLiteStore:
    """The embedded store: one SQLite file, one connection, group commit.

    `on_commit(events)` is called on the event loop, in commit order, with the
    events each batch wrote, before the callers' awaits return.
    """

    def __init__(self, path: Path, on_commit: Callable[[list[Event]], None] | None = None):
        self.path = Path(path)
        self.on_commit = on_commit
        self._conn: sqlite3.Connection | None = None
        self._accepting = False
        self._pending: list[tuple[Callable[[Tx], Any], asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None

    async def open(self) -> None:
        conn = await asyncio.to_thread(connect, self.path)
        await asyncio.to_thread(migrate, conn)
        await asyncio.to_thread(conn.execute, "BEGIN IMMEDIATE")
        self._conn = conn
        self._accepting = True

    async def close(self) -> None:
        self._accepting = False                   # no new work; what is queued commits
        if self._flusher is not None:
            await self._flusher
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.to_thread(self._close_connection, conn)

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

    async def read(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn(tx)` in a worker thread on a read-only connection of its own: for
        reads too large for the loop (a day's statistics). It sees one snapshot of
        what was committed when it began, never what a batch has not yet committed,
        and holds up no call or issue; `tx` refuses writes."""
        if not self._accepting:
            raise StoreClosed("the store is closed")
        return await asyncio.to_thread(self._read, fn)

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
