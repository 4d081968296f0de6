"""The shared store: one PostgreSQL database that several kioskd daemons of a hall use.

A large hall runs a daemon per floor or wing, each driving its own printers, boards
and speakers, over one queue. Each daemon implements the same `Store` as the
embedded SQLite store (store.py), so the engine is unchanged:

- Each `transact(fn)` is one PostgreSQL transaction, run in a worker thread on a
  pooled connection (psycopg 3 is synchronous here; the loop never waits on the
  database). `fn` reads and writes through `PgTx`, which locks the rows it reads
  for an update, and takes the next waiting ticket with `FOR UPDATE SKIP LOCKED`:
  two windows on two daemons calling at the same instant get two tickets. A
  transaction that loses a deadlock or a serialisation race is run again from the
  start (`fn` is a function of the transaction alone).
- Events are written just before the commit under one advisory lock (pgtx.write_events),
  so their ids commit in order across daemons, and announced with NOTIFY. Every
  daemon LISTENs on a connection of its own and reads the log forward from the last
  id it published: its event streams, boards and voices see every daemon's events,
  in the log's order, under the same ids. A caller's own events are published
  before its await returns, as with SQLite.
- When the database cannot be reached, work fails at once with `StoreUnavailable`
  (503), saying why; one attempt a second, and the listening connection's
  reconnects, find the way back. Nothing is answered as done that was not committed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool, PoolTimeout

from .aio import within
from .records import Event
from .store import StoreClosed, StoreUnavailable, Tx

log = logging.getLogger("kioskd.store")

T = TypeVar("T")

POOL_SIZE = 8               # connections (and worker threads) per daemon
CONNECT_TIMEOUT = 3.0       # seconds to reach the database before a request is told
ANSWER_TIMEOUT = 10.0       # seconds a transaction may take before its caller is told
LOCK_TIMEOUT_MS = 5000      # a row lock waited for longer than this fails the transaction
RETRIES = 8                 # runs of a transaction that lost a deadlock or a race
PROBE_EVERY = 1.0           # seconds between attempts while the database is down
CATCH_UP_EVERY = 5.0        # seconds between reads of the log with no NOTIFY heard
READ_BATCH = 1000           # events read forward at a time

RACES = (errors.SerializationFailure, errors.DeadlockDetected, errors.LockNotAvailable)
UNREACHABLE = (psycopg.OperationalError, PoolTimeout)


def _conninfo(url: str) -> str:
    """The URL with what kioskd needs of every connection: a bound on connecting,
    keepalives (a pulled cable is noticed in seconds, not hours), a name in
    pg_stat_activity, and bounded lock waits."""
    return psycopg.conninfo.make_conninfo(
        url, connect_timeout=max(1, int(CONNECT_TIMEOUT)), keepalives=1, keepalives_idle=5,
        keepalives_interval=2, keepalives_count=3,
        application_name="kioskd",
        options=f"-c lock_timeout={LOCK_TIMEOUT_MS} -c synchronous_commit=on")


class PostgresStore:
    """The store of a hall whose daemons share one PostgreSQL database.

    `config` is the daemon's own (its instance name and the hall-wide catalogue it
    must agree on, kioskd/instances.py); None skips registration (tools, tests of
    the store alone)."""

    def __init__(self, url: str, config: Any = None,
                 on_commit: Callable[[list[Event]], None] | None = None):
        self.url = url
        self.config = config
        self.on_commit = on_commit
        self._pool: ConnectionPool | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._accepting = False
        self._down: str | None = None          # why the database cannot be reached, if so
        self._probed = 0.0                     # monotonic time of the last attempt while down
        self._cursor = 0                       # the last event id published
        self._publishing = asyncio.Lock()
        self._heard = asyncio.Event()          # a NOTIFY arrived, or the listener came back
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        # a NOTIFY on this channel ends the listener's wait at once when the store closes
        self._wake_channel = f"kioskd_close_{os.getpid()}_{id(self):x}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._follower: asyncio.Task | None = None
        self._running: set[asyncio.Future] = set()
        self._mine: set[int] = set()           # ids this daemon wrote, until published

    def __str__(self) -> str:
        from .config import safe_url
        return safe_url(self.url)

    # -- opening and closing ------------------------------------------------------------

    async def open(self) -> None:
        """Connect, migrate, register this daemon, start listening. Fails (the daemon
        does not start) when the database cannot be reached or refuses this hall."""
        from .pgtx import migrate
        self._loop = asyncio.get_running_loop()
        self._threads = ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="kioskd-pg")
        conninfo = _conninfo(self.url)
        try:
            listening = await self._in_thread(self._listen_connection, conninfo)
        except UNREACHABLE as exc:
            self._threads.shutdown(wait=False)
            raise StoreUnavailable(f"the database at {self} cannot be reached: "
                                   f"{_first_line(exc)}") from None
        try:
            await self._in_thread(self._migrate_and_register, listening, migrate)
            self._pool = ConnectionPool(
                conninfo, min_size=2, max_size=POOL_SIZE, open=False, timeout=CONNECT_TIMEOUT,
                kwargs={"autocommit": True},
                reconnect_timeout=365 * 86400, name="kioskd")
            await self._in_thread(self._pool.open, True, CONNECT_TIMEOUT * 3)
            self._cursor = await self._in_thread(self._last_event_id, listening)
        except BaseException:
            listening.close()
            if self._pool is not None:
                self._pool.close()
            self._threads.shutdown(wait=False)
            raise
        self._stop.clear()
        self._listener = threading.Thread(target=self._listen, args=(listening, conninfo),
                                          name="kioskd-pg-listen", daemon=True)
        self._listener.start()
        self._follower = asyncio.create_task(self._follow(), name="kioskd-store-follow")
        self._accepting = True

    async def close(self) -> None:
        self._accepting = False
        await asyncio.gather(*self._running, return_exceptions=True)
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
            self._follower = None
        self._stop.set()
        if self._listener is not None:
            await asyncio.to_thread(self._wake_listener)
            await asyncio.to_thread(self._listener.join, CONNECT_TIMEOUT + 2)
            self._listener = None
        if self._pool is not None:
            await asyncio.to_thread(self._pool.close)
            self._pool = None
        if self._threads is not None:
            self._threads.shutdown(wait=False)
            self._threads = None

    def _listen_connection(self, conninfo: str) -> psycopg.Connection:
        conn = psycopg.connect(conninfo, autocommit=True)
        conn.execute("LISTEN kioskd_events")
        conn.execute(f'LISTEN "{self._wake_channel}"')
        return conn

    def _wake_listener(self) -> None:
        """End the listener's wait for a NOTIFY now rather than at its next quiet second,
        so that closing takes milliseconds, not up to a second. With the database away
        the listener waits to reconnect instead, and `_stop` has woken it already."""
        if self._pool is None:
            return
        try:
            with self._pool.connection(timeout=0.5) as conn:
                conn.execute("SELECT pg_notify(%s, '')", (self._wake_channel,))
        except UNREACHABLE + (psycopg.Error,):
            pass

    def _migrate_and_register(self, conn: psycopg.Connection, migrate: Callable) -> None:
        migrate(conn)
        self._register(conn)

    def _register(self, conn: psycopg.Connection) -> None:
        """This daemon, by its instance name, in the hall's register (kioskd/instances.py):
        its session holds the name while it lives; a catalogue that disagrees refuses."""
        if self.config is None:
            return
        from .instances import register
        register(conn, self.config, host=socket.gethostname(), pid=os.getpid(), now=time.time())

    @staticmethod
    def _last_event_id(conn: psycopg.Connection) -> int:
        return conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]

    # -- work -------------------------------------------------------------------------------

    async def transact(self, fn: Callable[[Tx], T]) -> T:
        result, events = await self._work(self._transact, fn)
        if events:                             # published before the caller hears the answer
            try:
                await self._publish_through(events[-1].id, events)
            except (StoreUnavailable, StoreClosed) as exc:
                # committed all the same: the answer stands, and the follower publishes
                # them once the log can be read again
                log.warning("store: events %d to %d wait to be published: %s",
                            events[0].id, events[-1].id, exc)
        return result

    async def view(self, fn: Callable[[Tx], T]) -> T:
        """`fn(tx)` that only reads: on one snapshot of what was committed when it
        began, locking nothing (a view must never make a call on another daemon skip
        the ticket it looks at). Here the same as `read`."""
        return await self._work(self._read, fn)

    async def read(self, fn: Callable[[Tx], T]) -> T:
        """`fn(tx)` on one read-only snapshot, holding no lock: for large reads."""
        return await self._work(self._read, fn)

    async def _work(self, run: Callable[[Callable[[Tx], T]], Any], fn: Callable[[Tx], T]) -> Any:
        if not self._accepting:
            raise StoreClosed("the store is closed")
        if self._down is not None:
            now = time.monotonic()
            if now - self._probed < PROBE_EVERY:
                raise StoreUnavailable(self._down)
            self._probed = now                  # this request tries the way back
        future = self._in_thread(run, fn)
        self._running.add(future)
        future.add_done_callback(self._running.discard)
        try:
            return await within(asyncio.shield(future), ANSWER_TIMEOUT)
        except TimeoutError:
            log.error("store: the database has not answered for %.0f s", ANSWER_TIMEOUT)
            raise StoreUnavailable(f"the database did not answer within {ANSWER_TIMEOUT:.0f} s; "
                                   "the change may still be saved") from None

    def _in_thread(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        assert self._threads is not None and self._loop is not None
        return self._loop.run_in_executor(self._threads, fn, *args)

    def _transact(self, fn: Callable[[Tx], T]) -> tuple[T, list[Event]]:
        """One transaction (a worker thread). Lost races (a deadlock with another
        daemon, two of them inserting one alert) run it again; so does a pooled
        connection found dead before the commit (the server restarted): nothing was
        written. Dying during the commit leaves the outcome unknown, and says so."""
        from .pgtx import PgTx, write_events
        stale = 0
        for attempt in range(1, RETRIES + 1):
            committing = False
            try:
                with self._connection() as conn, conn.transaction():
                    tx = PgTx(conn, writing=True)
                    result = fn(tx)
                    write_events(conn, tx.events)
                    # known as this daemon's before anyone can read them back
                    self._mine.update(e.id for e in tx.events)
                    committing = True
                self._reached()
                return result, tx.events
            except errors.UniqueViolation:
                # two daemons inserting the same row at once (one open alert per key):
                # the second run sees the first's row; a real duplicate fails again
                if attempt > 1:
                    raise
            except RACES as exc:
                if attempt == RETRIES:
                    raise StoreUnavailable(f"the database was too busy to finish this "
                                           f"({type(exc).__name__} {attempt} times)") from exc
                log.debug("store: %s; running the transaction again", _first_line(exc))
            except UNREACHABLE as exc:
                if committing:
                    self._unreachable(exc)
                    raise StoreUnavailable("the database went away while saving this; it "
                                           "may or may not be saved") from None
                stale += 1
                if stale == 2 or isinstance(exc, PoolTimeout):
                    raise self._unreachable(exc) from None
                self._drop_stale()
        raise AssertionError("unreachable")

    def _read(self, fn: Callable[[Tx], T]) -> T:
        from .pgtx import PgTx
        for attempt in (1, 2):
            try:
                with self._connection() as conn, conn.transaction():
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    result = fn(PgTx(conn, writing=False))
                self._reached()
                return result
            except UNREACHABLE as exc:         # a pooled connection found dead: once more
                if attempt == 2 or isinstance(exc, PoolTimeout):
                    raise self._unreachable(exc) from None
                self._drop_stale()
        raise AssertionError("unreachable")

    def _connection(self):
        if self._pool is None:
            raise StoreClosed("the store is closed")
        return self._pool.connection(timeout=CONNECT_TIMEOUT)

    def _drop_stale(self) -> None:
        """A pooled connection was dead (the server restarted, or dropped it): the pool
        looks at its idle ones now and replaces the dead, rather than each request
        finding one more. Idle connections are not checked on every use: that costs a
        round trip per transaction."""
        if self._pool is not None:
            self._pool.check()

    def _reached(self) -> None:
        if self._down is not None:
            self._down = None
            log.warning("store: the database answers again")

    def _unreachable(self, exc: Exception) -> StoreUnavailable:
        reason = (f"the queue's database cannot be reached ({_first_line(exc)}); "
                  "nothing was changed, and kioskd keeps trying")
        if self._down is None:
            log.error("store: %s", reason)
        self._down = reason
        self._probed = time.monotonic()
        return StoreUnavailable(reason)

    # -- the hall's events, from every daemon ------------------------------------------------

    async def _publish_through(self, last_id: int, own: list[Event]) -> None:
        """Publish every event up to `last_id` (this transaction's last), in id order:
        its own at once when nothing was committed between, else read from the log."""
        async with self._publishing:
            if self._cursor >= last_id:
                return
            if own[0].id == self._cursor + 1 and _consecutive(own):
                self._deliver(own)
                return
            await self._catch_up(until=last_id)

    async def _catch_up(self, until: int | None = None) -> None:
        """Read the log forward from the cursor and publish it (the lock is held)."""
        while until is None or self._cursor < until:
            events = await self._in_thread(self._read_after, self._cursor)
            if not events:
                return
            self._deliver(events)

    def _read_after(self, after: int) -> list[Event]:
        """The log after `after`; each event this daemon did not write marked so."""
        events = self._read(lambda tx: tx.events_after(after, READ_BATCH))
        return [e if e.id in self._mine else replace(e, local=False) for e in events]

    def _deliver(self, events: list[Event]) -> None:
        self._cursor = events[-1].id
        self._mine.difference_update(e.id for e in events)
        if self.on_commit is not None:
            try:
                self.on_commit(events)
            except Exception:                  # a subscriber's fault must not lose an answer
                log.exception("store: on_commit handler failed")

    async def _follow(self) -> None:
        """Publish what other daemons commit: on each NOTIFY, and every few seconds
        whatever was heard (a NOTIFY lost with a connection)."""
        while True:
            try:
                await within(self._heard.wait(), CATCH_UP_EVERY)
            except TimeoutError:
                pass
            self._heard.clear()
            if self._down is not None:
                continue
            try:
                async with self._publishing:
                    await self._catch_up()
            except (StoreUnavailable, StoreClosed):
                pass                           # the listener notices and reconnects
            except Exception:
                log.exception("store: reading the event log failed")

    def _listen(self, conn: psycopg.Connection, conninfo: str) -> None:
        """The listening connection's thread: hears NOTIFYs, notices the database going,
        reconnects (and registers this daemon again) when it is back."""
        wake = lambda: self._loop.call_soon_threadsafe(self._heard.set)  # noqa: E731
        while not self._stop.is_set():
            try:
                heard = 0
                for _ in conn.notifies(timeout=1.0, stop_after=1):
                    heard += 1
                    wake()
                if not heard:
                    conn.execute("SELECT 1")   # a quiet second: is the server still there?
            except psycopg.Error as exc:
                if self._stop.is_set():
                    break
                self._loop.call_soon_threadsafe(self._unreachable, exc)
                conn.close()
                conn = self._reconnect(conninfo)
                if conn is None:
                    return
                self._loop.call_soon_threadsafe(self._back)
        try:
            # the instance name, free when close() returns: the server ends a closed
            # session's backend a moment later, and a daemon restarted at once in
            # that moment was refused its own name ("already running")
            conn.execute("SELECT pg_advisory_unlock_all()")
        except psycopg.Error:
            pass
        conn.close()

    def _reconnect(self, conninfo: str) -> psycopg.Connection | None:
        delay = 0.2
        while not self._stop.wait(delay):
            try:
                conn = self._listen_connection(conninfo)
                self._register(conn)
                self._drop_stale()             # the pool's connections died with the server
                log.warning("store: listening to the database again")
                return conn
            except Exception as exc:           # down still, or a register refusal: log, retry
                log.debug("store: reconnecting: %s", _first_line(exc))
                delay = min(delay * 2, PROBE_EVERY * 2)
        return None

    def _back(self) -> None:
        self._reached()
        self._heard.set()                      # read what was missed while away


def admission(config: Any) -> Exception | None:
    """Why this daemon may not join its hall's shared store now, read without changing
    anything (`kioskd check`; `kioskd run` before it serves): an `instances.NotAdmitted`
    (its name taken, its catalogue or device ids disagreeing with the running daemons'),
    a `StoreUnavailable`, or None."""
    from .config import safe_url
    from .instances import admission as refusal
    try:
        with psycopg.connect(_conninfo(config.store.url), autocommit=True) as conn:
            return refusal(conn, config)
    except UNREACHABLE as exc:
        return StoreUnavailable(f"the database at {safe_url(config.store.url)} cannot be "
                                f"reached: {_first_line(exc)}")


def _consecutive(events: list[Event]) -> bool:
    return all(b.id == a.id + 1 for a, b in zip(events, events[1:]))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
