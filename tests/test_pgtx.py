"""The PostgreSQL transaction layer, against a real server: one script of every `Tx`
call answers the same on PostgreSQL as on SQLite; the schema migrates once however
many daemons start at the same moment; event ids commit in order across daemons and
every daemon hears of each commit; two windows calling at the same instant on two
daemons get two different tickets; the audit log refuses changes in SQLite's words."""

from __future__ import annotations

import copy
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from conftest import until
from kioskd import pgtx, store
from kioskd.migrations import MIGRATIONS
from kioskd.pgtx import PgTx, write_events
from kioskd.records import (Actor, AlertRecord, Appointment, AppointmentStatus, AuditEntry,
                            Event, PrintStatus, Rating, Status, Ticket, WindowRecord,
                            WindowState)
from kioskd.store import SQLiteTx, Tx

DAY, YESTERDAY, TOMORROW = "2026-11-30", "2026-11-29", "2026-12-01"
T = 1_764_432_000.0                      # the script's day, early morning
TX_METHODS = sorted(name for name, value in vars(Tx).items()
                    if callable(value) and not name.startswith("_"))
UNORDERED = {"ticket_facts_of_day"}      # "in no particular order": compared sorted


# -- running one script on both stores ------------------------------------------------

def shape(value: Any) -> Any:
    """`value` with the type of every part spelled out: 1 and 1.0, True and 1, a
    Status and its string all differ."""
    if is_dataclass(value):
        return (type(value).__name__,
                tuple((f.name, shape(getattr(value, f.name))) for f in fields(value)))
    if isinstance(value, Enum):
        return (type(value).__name__, value.value)
    if isinstance(value, dict):
        return ("dict", sorted(((repr(k), shape(v)) for k, v in value.items()),
                               key=lambda kv: kv[0]))
    if isinstance(value, (set, frozenset)):
        return ("set", sorted(map(repr, value)))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [shape(v) for v in value])
    return (type(value).__name__, value)


class Recorder:
    """Runs a script's transactions on one store and keeps every answer it gives."""

    def __init__(self, begin: Callable[[bool], Any]):
        self._begin = begin               # writing -> a context manager giving a Tx
        self.answers: list[tuple[str, Any]] = []
        self.called: set[str] = set()

    @contextmanager
    def tx(self, writing: bool = True) -> Iterator[Any]:
        with self._begin(writing) as tx:
            yield _Recording(tx, self)
        self.answers.append(("events written", list(tx.events)))   # ids known once committed


class _Recording:
    def __init__(self, tx: Any, recorder: Recorder):
        self._tx, self._recorder = tx, recorder

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._tx, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self._recorder.called.add(name)
            try:
                result = method(*args, **kwargs)
            except ValueError as exc:          # the engine's own refusal, not a database's
                self._recorder.answers.append((name, ("raised", type(exc).__name__, str(exc))))
                return None
            if name == "emit":                 # its id is given at commit: compare it then
                kept = result
            elif name == "insert_ticket":
                kept = args[0].seq
            elif name == "insert_alert":
                kept = args[0].id
            elif name in UNORDERED:
                kept = sorted(result)
            else:
                kept = copy.deepcopy(result)
            self._recorder.answers.append((name, kept))
            return result
        return call


def sqlite_begin(conn: sqlite3.Connection) -> Callable[[bool], Any]:
    @contextmanager
    def begin(writing: bool) -> Iterator[SQLiteTx]:
        conn.execute("BEGIN IMMEDIATE" if writing else "BEGIN")
        tx = SQLiteTx(conn)
        try:
            yield tx
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return begin


def pg_begin(conn: psycopg.Connection) -> Callable[[bool], Any]:
    @contextmanager
    def begin(writing: bool) -> Iterator[PgTx]:
        with conn.transaction():
            if not writing:
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            tx = PgTx(conn, writing=writing)
            yield tx
            write_events(conn, tx.events)
    return begin


def make_ticket(c: Any, service: str, prefix: str, at: float, *, day: str = DAY,
                priority: bool = False, status: Status = Status.WAITING, **more: Any) -> Ticket:
    """A ticket numbered by the store, inserted."""
    number = c.next_sequence(day, prefix)
    ticket = Ticket(id=f"{day}-{prefix}{number}", day=day, number=f"{prefix}{number:03d}",
                    service=service, priority=priority, status=status, issued_at=at,
                    queue_at=more.pop("queue_at", at), **more)
    c.insert_ticket(ticket)
    return ticket


def hall_script(rec: Recorder, now: float) -> None:
    """A hall's day in Tx calls: several services, windows, priorities, transfers to a
    window, ties in line, appointments, ratings, alerts, audit and statistics."""
    with rec.tx(writing=False) as c:                      # a new database
        c.first_event_at()
        c.last_event_id()
        c.events_after(0, 10)
        c.windows()
        c.first_waiting(["property"], "1")
        c.waiting_counts()
        c.day_summary(YESTERDAY)

    with rec.tx() as c:
        for window_id, state in (("2", WindowState.OPEN), ("10", WindowState.PAUSED),
                                 ("1", WindowState.OPEN), ("3", WindowState.CLOSED)):
            c.save_window(WindowRecord(window_id, state, None, T))
        t: dict[str, Ticket] = {}
        t["y_waiting"] = make_ticket(c, "property", "A", T - 86400, day=YESTERDAY)
        t["y_called"] = make_ticket(c, "business", "B", T - 86000, day=YESTERDAY,
                                    status=Status.CALLED, window="2", called_at=T - 85000)
        t["y_serving"] = make_ticket(c, "property", "A", T - 85900, day=YESTERDAY,
                                     status=Status.SERVING, window="1", called_at=T - 85800,
                                     started_at=T - 85700)
        t["a1"] = make_ticket(c, "property", "A", T + 10, terminal="kiosk_1",
                              print_device="printer_1", print_status=PrintStatus.PRINTED)
        t["a2"] = make_ticket(c, "property", "A", T + 20, priority=True)
        t["a3"] = make_ticket(c, "property", "A", T + 10)       # same time as a1: by seq
        t["b1"] = make_ticket(c, "business", "B", T + 5)
        t["b2"] = make_ticket(c, "business", "B", T + 30, priority=True)
        t["c1"] = make_ticket(c, "tax", "C", T + 1)
        t["a4"] = make_ticket(c, "property", "A", T + 3, target_window="2", transfers=1)
        t["b3"] = make_ticket(c, "business", "B", T + 2, target_window="10", transfers=1)
        t["a5"] = make_ticket(c, "property", "A", T + 40, priority=True, target_window="2")
        t["x1"] = make_ticket(c, "property", "A", T + 50, status=Status.CALLED, window="1",
                              called_at=T + 100, recalls=2)
        t["x2"] = make_ticket(c, "business", "B", T + 60, status=Status.SERVING, window="2",
                              called_at=T + 110, started_at=T + 115)
        t["d1"] = make_ticket(c, "property", "A", T + 70, status=Status.DONE, window="1",
                              called_at=T + 150, started_at=T + 155, finished_at=T + 400)
        t["d2"] = make_ticket(c, "property", "A", T + 80, status=Status.DONE, window="10",
                              called_at=T + 160, finished_at=T + 300)
        t["d3"] = make_ticket(c, "property", "A", T + 90, status=Status.DONE, window="1",
                              called_at=T + 170, finished_at=T + 900, closed_by="day_end")
        t["d4"] = make_ticket(c, "tax", "C", T + 95, status=Status.DONE, window="10",
                              called_at=T + 180, started_at=T + 200, finished_at=T + 500)
        t["d5"] = make_ticket(c, "property", "A", T + 96, status=Status.DONE, window="10",
                              called_at=T + 190, started_at=T + 250, finished_at=T + 400)
        t["n1"] = make_ticket(c, "property", "A", T + 97, status=Status.NO_SHOW, window="1",
                              called_at=T + 200, finished_at=T + 260)
        t["k1"] = make_ticket(c, "business", "B", T + 98, status=Status.CANCELLED,
                              finished_at=T + 99, closed_by="cancel")
        c.emit("ticket.issued", T + 10, {"ticket": t["a1"].id, "number": "A004",
                                         "service": "property", "priority": False})
        c.emit("ticket.called", T + 100, {"ticket": t["x1"].id, "service": "property",
                                          "window": "1", "window_name": "1号窗口"})
        c.emit("ticket.no_show", T + 260, {"ticket": t["n1"].id, "service": "property",
                                           "window": "1"})
        c.emit("ticket.transferred", T + 300, {"ticket": t["a4"].id, "service": "property",
                                               "from_service": "business", "from_window": "1"})
        c.emit("window.changed", T + 1000, {"window": "1", "state": "paused",
                                            "previous": "open"})
        c.emit("window.changed", T + 1500, {"window": "10", "state": "paused",
                                            "previous": "open"})
        c.emit("window.changed", T + 2000, {"window": "1", "state": "open",
                                            "previous": "paused"})
        c.emit("alert", T + 2100, {"device": "printer_1", "kind": "paper_out",
                                   "state": "raised"})
        c.emit("alert", T + 2200, {"device": "board_1", "kind": "offline", "state": "raised"})
        c.emit("alert", T + 2300, {"device": None, "kind": "window_paused", "state": "raised"})
        c.emit("alert", T + 2400, {"kind": "long_wait", "state": "raised"})
        c.emit("alert", T + 2500, {"device": "printer_1", "kind": "paper_out",
                                   "state": "closed"})
        c.emit("device.changed", T + 2600, {
            "device": "printer_1", "ready": True, "detail": {"paper": "out"},
            "tags": ["escpos", "tcp"], "level": 2.5, "count": 3, "none": None,
            "name": "打印机", "big": 12_345_678_901_234, "small": 1e-7})

    with rec.tx() as c:                                   # what the engine reads and writes
        c.ticket(t["a1"].id)
        c.ticket("no-such-ticket")
        c.first_waiting(["property", "business"], "1")
        c.first_waiting(["business"], "2")
        c.first_waiting(["tax", "property"], "10")
        c.first_waiting([], "3")
        for services, window in ((["property", "business"], "1"), (["business"], "2"),
                                 (["tax", "property"], "10"), ([], "2"), ([], "3")):
            c.waiting_for(services, window, 20)
            c.waiting_for(services, window, 2)
            c.count_waiting_for(services, window)
        for service, priority in (("property", False), ("property", True),
                                  ("business", False), ("nothing", False)):
            c.waiting_line(service, priority)
        for key in ("a1", "a2", "a3", "a4", "a5", "b1", "b3", "c1"):
            c.count_ahead(t[key])
        c.waiting_counts()
        c.waiting_before(DAY)
        c.waiting_before("2027-01-01")
        c.at_window_before(DAY)
        c.at_window_before(TOMORROW)
        c.at_window_before("2020-01-01")
        c.recent_service_seconds("property", T, 10)
        c.recent_service_seconds("property", T, 1)
        c.recent_service_seconds("property", T + 350, 10)
        c.recent_service_seconds("tax", T, 10)
        c.recent_service_seconds("business", T, 10)
        c.window("1")
        c.window("no-such-window")
        c.windows()
        c.open_windows()
        called = c.first_waiting(["property", "business"], "1")
        called.status, called.window, called.called_at = Status.CALLED, "1", T + 3000
        c.update_ticket(called)
        c.save_window(WindowRecord("1", WindowState.OPEN, called.id, T + 3000))
        c.emit("ticket.called", T + 3000, {"ticket": called.id, "service": called.service,
                                           "window": "1"})
        c.ticket(called.id)
        c.window("1")
        c.tickets_of_day(DAY)
        c.tickets_of_day(YESTERDAY)
        c.waiting_since()
        c.tickets_at_windows()
        c.waiting_counts()

        p0 = Appointment("p0", "2026-10-01", "K9", "property", T - 5e6,
                         AppointmentStatus.BOOKED, T - 6e6)
        p1 = Appointment("p1", DAY, "K1", "property", T + 3600, AppointmentStatus.BOOKED,
                         T - 86400, name="张*", phone="138****5678", reference="ref-1")
        p2 = Appointment("p2", TOMORROW, "K1", "property", T + 90000,
                         AppointmentStatus.BOOKED, T - 86300)
        p3 = Appointment("p3", DAY, "K2", "business", T + 1800, AppointmentStatus.BOOKED,
                         T - 86200)
        p4 = Appointment("p4", DAY, "K3", "tax", T + 3600, AppointmentStatus.BOOKED, T - 86100)
        for appointment in (p0, p2, p1, p3, p4):
            c.insert_appointment(appointment)
        p3.status, p3.checked_in_at, p3.ticket = AppointmentStatus.CHECKED_IN, T + 1700, "tk"
        c.update_appointment(p3)
        c.appointment("p3")
        c.appointment("no-such-appointment")
        c.appointments_by_code("K1")
        c.appointments_by_code("nothing")
        c.appointments_of_day(DAY)
        c.purge_appointments("2026-11-01")
        c.appointments_of_day("2026-10-01")

        c.insert_rating(Rating(t["d1"].id, DAY, "1", "property", 5, T + 410, "pad"))
        c.insert_rating(Rating(t["d2"].id, DAY, "10", "property", 2, T + 310, "keypad"))
        c.insert_rating(Rating(t["d4"].id, DAY, "10", "tax", 5, T + 510, "pad"))
        c.insert_rating(Rating(t["d5"].id, DAY, "10", "property", 5, T + 420, "pad"))
        c.insert_rating(Rating(t["y_serving"].id, YESTERDAY, "1", "property", 4, T - 80000,
                               "pad"))
        c.rating(t["d1"].id)
        c.rating("no-such-ticket")
        c.ratings_between(DAY, DAY)
        c.ratings_between(YESTERDAY, DAY)
        c.rating_counts(YESTERDAY, DAY)
        c.rating_counts(TOMORROW, TOMORROW)

        paper = AlertRecord(None, "device:printer_1:paper_out", "paper_out", "打印机缺纸",
                            T + 2100, device="printer_1", detail={"paper": "out", "n": 1})
        paused = AlertRecord(None, "window:1:paused", "window_paused", "1号窗口暂停过久",
                             T + 2300, window="1")
        slow = AlertRecord(None, "service:tax:slow", "service_slow", "办理超时", T + 2400,
                           service="tax", ticket=t["d4"].id)
        for alert in (paper, paused, slow):
            c.insert_alert(alert)
        paused.acked_at, paused.acked_by = T + 2350, "supervisor"
        c.update_alert(paused)
        paper.closed_at, paper.closed_by = T + 2500, "system"
        c.update_alert(paper)
        c.alert(paper.id)
        c.alert(999)
        c.open_alert_records()
        c.alerts_between(T, T + 10_000)
        c.alerts_between(T + 2200, T + 2400)

        old = now - 400 * 86400
        actors = [Actor("window", window="1"), Actor("kiosk", terminal="kiosk_1"),
                  Actor("supervisor"), Actor("keypad", window="2", device="keypad_2"),
                  Actor("system", token=False)]
        for n in range(3):
            c.audit(AuditEntry(old + n, f"2025-01-0{n + 1}", "ticket.issued", actors[1],
                               ticket=f"old-{n}", detail={"number": f"A00{n}"}))
        c.audit(AuditEntry(now - 100 * 86400, "2025-02-01", "window.changed", actors[2],
                           window="3", detail={"state": "open"}))
        ids = [c.audit(AuditEntry(now - 50 + n, DAY, action, actor, ticket=ticket, window=window,
                                  appointment=appointment, alert=alert_id, device=device,
                                  detail=detail))
               for n, (action, actor, ticket, window, appointment, alert_id, device, detail) in
               enumerate([
                   ("ticket.issued", actors[1], t["a1"].id, None, None, None, None,
                    {"number": "A004", "service": "property"}),
                   ("ticket.called", actors[0], t["a1"].id, "1", None, None, None, {}),
                   ("ticket.called", actors[3], t["b2"].id, None, None, None, None,
                    {"by": "keypad"}),
                   ("window.changed", actors[2], None, "10", None, None, None,
                    {"state": "paused", "previous": "open"}),
                   ("alert", actors[4], None, None, None, paper.id, "printer_1",
                    {"state": "raised", "nested": {"a": [1, 2.5, None]}}),
                   ("appointment.checked_in", actors[1], "tk", None, "p3", None, None,
                    {"on_time": True}),
               ])]
        c.audit_entries(DAY)
        c.audit_entries(DAY, window="1")
        c.audit_entries(DAY, window="2")
        c.audit_entries(None, ticket=t["a1"].id)
        c.audit_entries(DAY, actor="window:1")
        c.audit_entries(DAY, actor="kiosk")
        c.audit_entries(DAY, actor="keypad:2")
        c.audit_entries(DAY, after_id=ids[1], limit=2)
        c.audit_entries(None)                          # refused: no day and no ticket
        c.purge_audit("2026-01-01", 2)
        c.purge_audit("2026-01-01", 10)
        c.audit_entries("2025-01-03")
        c.audit_entries("2025-02-01")                  # an old day, but young: kept

        c.save_day_summary(YESTERDAY, 3, T, {"tickets": 3, "services": {"property": 2}})
        c.save_day_summary("2026-11-28", 3, T, {"tickets": 0, "mean": 4.25})
        c.save_day_summary(YESTERDAY, 4, T + 1, {"tickets": 3, "名": "不动产"})
        c.day_summary(YESTERDAY)
        c.day_summary("2020-01-01")
        c.day_summaries("2026-11-01", DAY)
        c.days_with_tickets("2026-11-01", DAY)
        c.days_with_tickets(TOMORROW, TOMORROW)
        c.day_summary_versions("2026-11-01", DAY)

    with rec.tx(writing=False) as c:                      # reports, from a snapshot
        c.ticket_facts_of_day(DAY)
        c.ticket_facts_of_day(TOMORROW)
        c.event_values_between(("ticket.called", "ticket.no_show"), T, T + 10_000,
                               ("ticket", "service", "window"))
        c.event_values_between(("ticket.transferred",), T, T + 10_000,
                               ("ticket", "from_service", "from_window"))
        c.event_values_between(("window.changed",), T + 1000, T + 2000,
                               ("window", "state", "previous"))
        c.event_values_between(("device.changed",), T, T + 10_000,
                               ("ready", "detail", "tags", "level", "count", "none",
                                "missing", "name", "big", "small"))
        c.event_values_between((), T, T + 10_000, ("window",))
        c.events_between(("alert", "window.changed"), T, T + 10_000)
        c.events_between(("alert",), T + 2200, T + 2500, ("device", "kind", "missing"))
        c.events_between(("device.changed",), T, T + 10_000, ("ready", "detail", "tags"))
        c.events_between((), T, T + 10_000)
        c.last_events_by("alert", ["device"])
        c.last_events_by("alert", ["device", "kind"])
        c.last_events_by("alert", [])
        c.last_events_by("nothing", ["device"])
        c.window_state_before("1", T + 1500)
        c.window_state_before("1", T + 5000)
        c.window_state_before("1", T)
        c.window_state_after("1", T + 1500)
        c.window_state_after("1", T)
        c.window_state_after("10", T + 5000)
        c.first_event_at()
        c.last_event_id()
        c.events_after(0, 100)
        c.events_after(3, 2)
        c.first_waiting(["property", "business"], "1")
        c.windows()


@pytest.fixture
def sqlite_conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = store.connect(tmp_path / "k.db")
    store.migrate(conn)
    yield conn
    conn.close()


@pytest.fixture
def pg_conn(pg_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_url) as conn:
        pgtx.migrate(conn)
        yield conn


def test_every_tx_call_answers_the_same_on_postgresql_as_on_sqlite(
        sqlite_conn: sqlite3.Connection, pg_conn: psycopg.Connection):
    now = time.time()
    on_sqlite, on_pg = Recorder(sqlite_begin(sqlite_conn)), Recorder(pg_begin(pg_conn))
    hall_script(on_sqlite, now)
    hall_script(on_pg, now)

    assert on_sqlite.called == set(TX_METHODS), (
        f"the script does not call {sorted(set(TX_METHODS) - on_sqlite.called)}")
    missing = [name for name in TX_METHODS if not callable(getattr(PgTx, name, None))]
    assert not missing, f"PgTx lacks {missing}"
    assert len(on_pg.answers) == len(on_sqlite.answers)
    for n, (lite, pg) in enumerate(zip(on_sqlite.answers, on_pg.answers)):
        assert lite[0] == pg[0]
        assert shape(pg[1]) == shape(lite[1]), f"answer {n}, {lite[0]}: {pg[1]!r} != {lite[1]!r}"
    # the script means something: it found tickets, events and entries to compare
    answers = dict(on_sqlite.answers)
    assert answers["first_waiting"] is not None and answers["events_after"]
    assert answers["audit_entries"] and answers["ticket_facts_of_day"] == []


def test_a_read_only_snapshot_writes_no_event(pg_conn: psycopg.Connection):
    with pg_conn.transaction():
        with pytest.raises(errors.ReadOnlySqlTransaction, match="read-only"):
            PgTx(pg_conn, writing=False).emit("ticket.issued", T, {})


# -- migrations ---------------------------------------------------------------------

def _pg_schema(conn: psycopg.Connection) -> dict[str, Any]:
    """Tables with their columns in order, and index names, as PostgreSQL holds them."""
    columns = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position").fetchall()
    indexes = conn.execute("SELECT tablename, indexname FROM pg_indexes "
                           "WHERE schemaname = 'public'").fetchall()
    tables: dict[str, list[str]] = {}
    for table, column in columns:
        tables.setdefault(table, []).append(column)
    return {"tables": tables, "indexes": sorted(indexes),
            "triggers": conn.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal "
                                     "ORDER BY tgname").fetchall()}


def test_both_stores_migrate_to_the_same_tables_columns_and_indexes(
        sqlite_conn: sqlite3.Connection, pg_conn: psycopg.Connection):
    pg = _pg_schema(pg_conn)
    lite_tables = {name: [c[1] for c in sqlite_conn.execute(f"PRAGMA table_info({name})")]
                   for (name,) in sqlite_conn.execute(
                       "SELECT name FROM sqlite_master WHERE type = 'table' "
                       "AND name NOT LIKE 'sqlite_%'")}
    assert {k: v for k, v in pg["tables"].items() if k != "kioskd_schema"} == lite_tables
    lite_indexes = {(table, name) for table, name in sqlite_conn.execute(
        "SELECT tbl_name, name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    named = {(table, name) for table, name in pg["indexes"]
             if not name.endswith(("_pkey", "_key"))}   # SQLite's are sqlite_autoindex_*
    assert named == lite_indexes
    assert "hall_settings" in lite_tables and "instances" in lite_tables
    assert pg["triggers"] == [("audit_append_only",)]


def test_migrating_twice_changes_nothing_and_a_newer_schema_is_refused_in_sqlites_words(
        pg_conn: psycopg.Connection, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    before = _pg_schema(pg_conn)
    with caplog.at_level(logging.INFO, logger="kioskd.store"):
        assert pgtx.migrate(pg_conn) == len(MIGRATIONS) == 5
    assert not [r for r in caplog.records if "migrating" in r.getMessage()]
    assert _pg_schema(pg_conn) == before
    assert pg_conn.execute("SELECT version FROM kioskd_schema").fetchall() == [(5,)]

    pg_conn.execute("UPDATE kioskd_schema SET version = 6")
    pg_conn.commit()
    with pytest.raises(RuntimeError) as on_pg:
        pgtx.migrate(pg_conn)
    lite = store.connect(tmp_path / "newer.db")
    lite.execute("PRAGMA user_version = 6")
    with pytest.raises(RuntimeError) as on_sqlite:
        store.migrate(lite)
    assert str(on_pg.value) == str(on_sqlite.value) == \
        "database schema v6 is newer than this kioskd (v5)"


def test_two_daemons_migrating_a_new_database_at_once_both_start_and_each_step_runs_once(
        pg_url: str, caplog: pytest.LogCaptureFixture):
    start = threading.Barrier(2)
    results: list[Any] = []

    def daemon() -> None:
        with psycopg.connect(pg_url) as conn:
            start.wait(10)
            try:
                results.append(pgtx.migrate(conn))
            except Exception as exc:   # kept for the assertion below
                results.append(exc)

    with caplog.at_level(logging.INFO, logger="kioskd.store"):
        threads = [threading.Thread(target=daemon) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert results == [5, 5]
    steps = [r.getMessage() for r in caplog.records if "migrating" in r.getMessage()]
    assert sorted(steps) == [f"store: migrating schema to v{n}" for n in range(1, 6)]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM kioskd_schema").fetchall() == [(5,)]


# -- the event log across daemons -----------------------------------------------------

def _listener(url: str) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(f"LISTEN {pgtx.CHANNEL}")
    return conn


def test_a_second_daemons_events_wait_for_the_firsts_commit_and_each_commit_is_heard(
        pg_conn: psycopg.Connection, pg_url: str):
    listener = _listener(pg_url)
    first = [Event(0, "ticket.issued", T, {"n": 1}), Event(0, "ticket.called", T, {"n": 2})]
    second = [Event(0, "ticket.issued", T, {"n": 3})]
    with psycopg.connect(pg_url) as other, psycopg.connect(pg_url, autocommit=True) as watch:
        def write_second() -> None:
            with other.transaction():
                write_events(other, second)

        with pg_conn.transaction():
            write_events(pg_conn, first)
            writer = threading.Thread(target=write_second)
            writer.start()
            until(lambda: watch.execute(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone(), "the second writer to wait for the events lock")
        writer.join(10)
        assert not writer.is_alive()
    assert [e.id for e in first + second] == [1, 2, 3]
    heard = [(n.channel, n.payload) for n in listener.notifies(timeout=10, stop_after=2)]
    assert heard == [(pgtx.CHANNEL, "2"), (pgtx.CHANNEL, "3")]
    with pg_conn.transaction():
        stored = PgTx(pg_conn, writing=False).events_after(0, 10)
    assert [(e.id, e.data) for e in stored] == [(1, {"n": 1}), (2, {"n": 2}), (3, {"n": 3})]
    with pg_conn.transaction():
        write_events(pg_conn, [])                   # nothing written, nothing told:
    fourth = [Event(0, "ticket.done", T, {"n": 4})]
    with pg_conn.transaction():
        write_events(pg_conn, fourth)
    heard = [n.payload for n in listener.notifies(timeout=10, stop_after=1)]
    assert heard == ["4"] and fourth[0].id == 4     # the next thing heard is the next commit
    listener.close()


def test_event_ids_commit_in_order_across_daemons(pg_conn: psycopg.Connection, pg_url: str):
    """Four daemons write as fast as they can; whenever one's commit is heard, every
    smaller id is already committed: a display resuming after it misses nothing."""
    daemons, commits = 4, 25
    listener = _listener(pg_url)
    last_ids: list[int] = []
    failures: list[BaseException] = []

    def daemon(k: int) -> None:
        try:
            with psycopg.connect(pg_url) as conn:
                for n in range(commits):
                    events = [Event(0, "ticket.issued", T + n, {"daemon": k, "n": n, "i": i})
                              for i in range(1 + (k + n) % 3)]
                    with conn.transaction():
                        write_events(conn, events)
                    last_ids.append(events[-1].id)
        except BaseException as exc:       # kept for the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=daemon, args=(k,)) for k in range(daemons)]
    for thread in threads:
        thread.start()
    heard: list[int] = []
    gaps: list[tuple[int, int]] = []
    for notify in listener.notifies(timeout=60, stop_after=daemons * commits):
        heard.append(int(notify.payload))
        committed = pg_conn.execute("SELECT count(*) FROM events WHERE id <= %s",
                                    (heard[-1],)).fetchone()[0]
        pg_conn.rollback()
        if committed != heard[-1]:
            gaps.append((heard[-1], committed))
    for thread in threads:
        thread.join(60)
    assert not failures
    assert not gaps, f"heard of id N while fewer than N ids were committed: {gaps[:5]}"
    assert heard == sorted(last_ids) and len(set(heard)) == daemons * commits
    total = pg_conn.execute("SELECT count(*), max(id) FROM events").fetchone()
    assert total[0] == total[1] == sum(1 + (k + n) % 3 for k in range(daemons)
                                       for n in range(commits))
    listener.close()


# -- locks ---------------------------------------------------------------------------

def _line(conn: psycopg.Connection, count: int) -> list[Ticket]:
    """`count` waiting tickets of one service, in line order."""
    with conn.transaction():
        tx = PgTx(conn, writing=True)
        line = [Ticket(id=f"t{n}", day=DAY, number=f"A{n:03d}", service="property",
                       priority=False, status=Status.WAITING, issued_at=T + n, queue_at=T + n)
                for n in range(count)]
        for ticket in line:
            tx.insert_ticket(ticket)
        return line


def test_two_windows_calling_at_once_on_two_daemons_get_two_tickets_and_neither_waits(
        pg_conn: psycopg.Connection, pg_url: str):
    line = _line(pg_conn, 3)
    with psycopg.connect(pg_url) as one, psycopg.connect(pg_url) as two:
        for conn in (one, two):
            conn.execute("SET lock_timeout = '5s'")       # a wait fails the test, not hangs it
            conn.commit()
        with one.transaction(), two.transaction():
            first = PgTx(one, writing=True).first_waiting(["property"], "1")
            second = PgTx(two, writing=True).first_waiting(["property"], "2")
            assert (first.id, second.id) == (line[0].id, line[1].id)
            with pg_conn.transaction():                   # a snapshot takes no lock
                assert PgTx(pg_conn, writing=False).first_waiting(
                    ["property"], "3").id == line[0].id
            for tx, ticket, window in ((PgTx(one, writing=True), first, "1"),
                                       (PgTx(two, writing=True), second, "2")):
                ticket.status, ticket.window = Status.CALLED, window
                tx.update_ticket(ticket)
        with one.transaction():
            assert PgTx(one, writing=True).first_waiting(["property"], "1").id == line[2].id


LOCKING_READS: dict[str, Callable[[PgTx], Any]] = {
    "ticket": lambda tx: tx.ticket("t0"),
    "first_waiting": lambda tx: tx.first_waiting(["property"], "1"),
    "waiting_line": lambda tx: tx.waiting_line("property", False),
    "waiting_before": lambda tx: tx.waiting_before(TOMORROW),
    "at_window_before": lambda tx: tx.at_window_before(TOMORROW),
    "tickets_at_windows": lambda tx: tx.tickets_at_windows(),
    "window": lambda tx: tx.window("1"),
    "windows": lambda tx: tx.windows(),
    "appointment": lambda tx: tx.appointment("p1"),
    "appointments_by_code": lambda tx: tx.appointments_by_code("K1"),
    "appointments_of_day": lambda tx: tx.appointments_of_day(DAY),
    "alert": lambda tx: tx.alert(1),
    "open_alert_records": lambda tx: tx.open_alert_records(),
}
_ROWS = {Ticket: ("tickets", "seq", "seq"), WindowRecord: ("windows", "id", "id"),
         Appointment: ("appointments", "id", "id"), AlertRecord: ("alerts", "id", "id")}


def _locked(conn: psycopg.Connection, record: Any) -> bool:
    """Whether another transaction holds the record's row (NOWAIT: no waiting)."""
    table, column, attribute = _ROWS[type(record)]
    try:
        with conn.transaction():
            conn.execute(f"SELECT 1 FROM {table} WHERE {column} = %s FOR UPDATE NOWAIT",
                         (getattr(record, attribute),))
    except errors.LockNotAvailable:
        return True
    return False


@pytest.mark.parametrize("writing", [True, False], ids=["transact", "snapshot"])
def test_a_writing_transaction_locks_each_row_it_reads_for_the_engine_to_update(
        pg_conn: psycopg.Connection, pg_url: str, writing: bool):
    _line(pg_conn, 2)
    with pg_conn.transaction():
        tx = PgTx(pg_conn, writing=True)
        tx.insert_ticket(Ticket(id="c1", day=YESTERDAY, number="A900", service="property",
                                priority=False, status=Status.CALLED, issued_at=T - 9e4,
                                queue_at=T - 9e4, window="1"))
        tx.save_window(WindowRecord("1", WindowState.OPEN, "c1", T))
        tx.save_window(WindowRecord("2", WindowState.PAUSED, None, T))
        tx.insert_appointment(Appointment("p1", DAY, "K1", "property", T,
                                          AppointmentStatus.BOOKED, T))
        tx.insert_alert(AlertRecord(None, "window:1:paused", "window_paused", "暂停", T))
    with psycopg.connect(pg_url, autocommit=True) as probe:
        for name, read in LOCKING_READS.items():
            with pg_conn.transaction():
                found = read(PgTx(pg_conn, writing=writing))
                records = found if isinstance(found, list) else [found]
                assert records and None not in records, name
                assert [_locked(probe, r) for r in records] == [writing] * len(records), name
            assert not any(_locked(probe, r) for r in records), f"{name} after commit"


# -- the audit log's rules ------------------------------------------------------------------

def test_the_audit_log_refuses_a_change_and_a_young_deletion_in_sqlites_words(
        sqlite_conn: sqlite3.Connection, pg_conn: psycopg.Connection):
    now = time.time()
    entries = [AuditEntry(now - 200 * 86400, "2026-05-01", "ticket.issued", Actor("kiosk")),
               AuditEntry(now - 60, DAY, "ticket.called", Actor("window", window="1"))]
    lite = SQLiteTx(sqlite_conn)
    lite_ids = [lite.audit(e) for e in entries]
    with pg_conn.transaction():
        pg_ids = [PgTx(pg_conn, writing=True).audit(e) for e in entries]
    said = []
    for sql in ("UPDATE audit SET action = 'x' WHERE id = {}", "DELETE FROM audit WHERE id = {}"):
        with pytest.raises(sqlite3.IntegrityError) as on_sqlite:
            sqlite_conn.execute(sql.format(lite_ids[1]))
        with pytest.raises(psycopg.IntegrityError) as on_pg, pg_conn.transaction():
            pg_conn.execute(sql.format(pg_ids[1]))
        assert on_pg.value.diag.message_primary == str(on_sqlite.value)
        said.append(str(on_sqlite.value))
    assert said == ["the audit log is append-only", "audit entries are kept at least 180 days"]
    # an entry past the 180 days may go, in both
    assert sqlite_conn.execute(f"DELETE FROM audit WHERE id = {lite_ids[0]}").rowcount == 1
    with pg_conn.transaction():
        assert pg_conn.execute(f"DELETE FROM audit WHERE id = {pg_ids[0]}").rowcount == 1
