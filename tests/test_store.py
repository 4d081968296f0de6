"""The SQLite store: schema versions, durable settings, group commit that isolates a
failing operation, and hot queries whose cost does not grow with a year of history."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
from pathlib import Path

import pytest

from kioskd.records import Status, Ticket
from kioskd.store import (MIGRATIONS, SQLiteStore, SQLiteTx, StoreUnavailable, connect,
                          migrate)


def ticket(seq_day: str, n: int, status: Status, service: str = "property",
           at: float = 1_700_000_000.0) -> Ticket:
    return Ticket(id=f"{seq_day}-{n}", day=seq_day, number=f"A{n:07d}", service=service,
                  priority=False, status=status, issued_at=at + n, queue_at=at + n,
                  called_at=at + n + 60, finished_at=at + n + 360)


def test_a_new_database_gets_the_whole_schema_and_a_reopen_keeps_it(tmp_path: Path):
    conn = connect(tmp_path / "k.db")
    assert migrate(conn) == len(MIGRATIONS)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    conn.close()
    again = connect(tmp_path / "k.db")
    assert migrate(again) == len(MIGRATIONS)
    assert again.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert again.execute("PRAGMA synchronous").fetchone()[0] == 2     # FULL: fsync per commit


def test_a_database_from_a_newer_kioskd_is_refused(tmp_path: Path):
    conn = connect(tmp_path / "k.db")
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer than this kioskd"):
        migrate(conn)


# sha256 (first 16 hex digits) of each released step's SQLite text: halls' databases ran
# these exactly; a change to the schema is a new step, never an edit of one of these.
RELEASED_SQLITE_STEPS = ["481141e12bef0c30", "d5e189a90db4e8f4", "e231c27b5a48707f",
                         "27d15dda7e3d9e60", "93d3c1a7357a4b14"]


def test_released_schema_steps_never_change():
    done = [hashlib.sha256(m.sqlite.encode()).hexdigest()[:16]
            for m in MIGRATIONS[:len(RELEASED_SQLITE_STEPS)]]
    assert done == RELEASED_SQLITE_STEPS


def test_a_database_of_the_v4_schema_migrates_to_v5_and_keeps_what_it_holds(tmp_path: Path):
    old = connect(tmp_path / "k.db")
    for number, step in enumerate(MIGRATIONS[:4], start=1):     # as the v4 kioskd did
        old.executescript(
            f"BEGIN IMMEDIATE; {step.sqlite}; PRAGMA user_version = {number}; COMMIT;")
    tx = SQLiteTx(old)
    kept = ticket("2026-11-30", 1, Status.WAITING)
    tx.insert_ticket(kept)
    tx.emit("ticket.issued", 1.0, {"ticket": kept.id})
    old.close()

    conn = connect(tmp_path / "k.db")
    assert migrate(conn) == 5
    tx = SQLiteTx(conn)
    assert tx.ticket(kept.id) == kept
    assert [e.data for e in tx.events_after(0, 10)] == [{"ticket": kept.id}]
    conn.execute("INSERT INTO hall_settings (key, value) VALUES ('catalogue', '[]')")
    conn.execute("INSERT INTO instances (name, host, pid, started_at, devices) "
                 "VALUES ('east', 'hall-1', 42, 1.5, '[\"printer_1\"]')")
    fresh = connect(tmp_path / "fresh.db")
    migrate(fresh)
    schema = "SELECT type, name, sql FROM sqlite_master ORDER BY name"
    assert conn.execute(schema).fetchall() == fresh.execute(schema).fetchall()


async def test_one_failing_operation_does_not_undo_the_others_in_its_commit(tmp_path: Path):
    store = SQLiteStore(tmp_path / "k.db")
    await store.open()
    day = "2026-11-30"

    def good(n):
        def op(tx):
            tx.insert_ticket(ticket(day, n, Status.WAITING))
            tx.emit("ticket.issued", 0.0, {"n": n})
            return n
        return op

    def bad(tx):
        tx.insert_ticket(ticket(day, 999, Status.WAITING))
        tx.emit("ticket.issued", 0.0, {"n": 999})
        raise ValueError("refused")

    # Queued together, they land in the same batch; the bad one must roll back alone.
    results = await asyncio.gather(*(store.transact(good(n)) for n in range(20)),
                                   store.transact(bad), return_exceptions=True)
    assert results[:20] == list(range(20))
    assert isinstance(results[20], ValueError)
    rows = await store.transact(lambda tx: tx.conn.execute(
        "SELECT number FROM tickets ORDER BY seq").fetchall())
    assert [r[0] for r in rows] == [f"A{n:07d}" for n in range(20)]
    events = await store.transact(lambda tx: tx.events_after(0, 100))
    assert [e.data["n"] for e in events] == list(range(20))
    assert [e.id for e in events] == list(range(1, 21))
    await store.close()


async def test_a_database_failure_mid_batch_answers_every_caller_and_the_store_goes_on(
        tmp_path: Path):
    store = SQLiteStore(tmp_path / "k.db")
    await store.open()

    def breaks_the_transaction(tx):
        tx.conn.execute("ROLLBACK")      # the savepoint is gone: the batch cannot finish

    def writes(tx):
        tx.insert_ticket(ticket("2026-11-30", 1, Status.WAITING))
        return "written"

    results = await asyncio.wait_for(asyncio.gather(
        store.transact(writes), store.transact(breaks_the_transaction),
        return_exceptions=True), timeout=10)
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    # Nothing of the failed batch was kept, and the next operation works.
    assert await store.transact(writes) == "written"
    count = await store.transact(
        lambda tx: tx.conn.execute("SELECT count(*) FROM tickets").fetchone()[0])
    assert count == 1
    await store.close()


def _steps(conn: sqlite3.Connection, fn) -> int:
    """SQLite virtual-machine steps a call takes: a cost that does not depend on the
    machine's speed or load."""
    count = 0

    def tick():
        nonlocal count
        count += 1
        return 0
    conn.set_progress_handler(tick, 1)
    try:
        fn()
    finally:
        conn.set_progress_handler(None, 0)
    return count


def _hot_queries(tx: SQLiteTx) -> dict[str, callable]:
    probe = tx.ticket("2026-11-30-9")
    return {
        "call-next": lambda: tx.first_waiting(["business", "property"], "1"),
        "place in line": lambda: tx.count_ahead(probe),
        "waiting per service": tx.waiting_counts,
        "service time": lambda: tx.recent_service_seconds("property", 1_700_000_000.0, 20),
        "ticket by id": lambda: tx.ticket(probe.id),
        "rollover": lambda: tx.waiting_before("2026-11-30"),
    }


async def test_a_read_its_caller_stopped_waiting_for_is_waited_for_at_close(tmp_path: Path):
    """A read given up on (a scrape's timeout, a daily copy at shutdown) keeps its
    thread; the store closes after it, never under it."""
    store = SQLiteStore(tmp_path / "k.db")
    await store.open()
    entered, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def slow_read(tx):
        entered.set()
        release.wait(30)
        seen.append(store._conn is not None)          # the store still open
        return tx.conn.execute("SELECT count(*) FROM tickets").fetchone()[0]

    reader = asyncio.create_task(store.read(slow_read))
    assert await asyncio.to_thread(entered.wait, 10)
    reader.cancel()
    closing = asyncio.create_task(store.close())
    done, _ = await asyncio.wait([closing], timeout=0.3)
    assert not done                                  # waiting for the read's thread
    release.set()
    await asyncio.wait_for(closing, 10)
    assert seen == [True] and reader.cancelled()


def test_hot_queries_cost_the_same_with_a_year_of_history(tmp_path: Path):
    conn = connect(tmp_path / "k.db")
    migrate(conn)
    tx = SQLiteTx(conn)
    conn.execute("BEGIN")
    for n in range(20):                                  # today: 20 people waiting
        tx.insert_ticket(ticket("2026-11-30", n, Status.WAITING))
    conn.execute("COMMIT")
    day_one = {name: _steps(conn, q) for name, q in _hot_queries(tx).items()}

    # A year of finished tickets (scaled down for test time; benchmarks/history.py
    # measures the full three million): none of it may be read by the hot queries.
    conn.execute("BEGIN")
    for d in range(100):
        day = f"2025-{1 + d // 28:02d}-{1 + d % 28:02d}"
        for n in range(2_000):
            status = (Status.DONE, Status.NO_SHOW, Status.CANCELLED)[n % 3]
            tx.insert_ticket(ticket(day, n, status, ("property", "business")[n % 2],
                                    at=1_690_000_000.0 + d * 86400))
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    after_a_year = {name: _steps(conn, q) for name, q in _hot_queries(tx).items()}

    for name, steps in after_a_year.items():
        assert steps <= day_one[name] * 1.5 + 50, (
            f"{name}: {day_one[name]} steps on day one, {steps} with 200,000 old tickets")
