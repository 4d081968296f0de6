"""Backups of the store, taken while the daemon runs, and their restore.

`backup` copies the SQLite store with SQLite's online backup API in one step: the
copy holds one snapshot, every transaction committed when it began and nothing
after, while the daemon goes on issuing and calling (WAL: a reader never blocks
the writer). The copy is written beside its destination, checked, made a single
self-contained file (journal mode DELETE), then renamed into place: a backup that
exists is whole.

`daily` is the daemon's own copy, one a day (at start and after each midnight, when
the day has none yet), keeping the newest `[backup] keep` of them and removing only
its own older copies.

`restore` replaces the store with a backup only while it holds the store's lock,
so never under a running daemon; the store it replaces is kept beside it.

Run as root (a technician with sudo), both act on the data dir as its owner, the
service's user: a file SQLite creates there (the -wal and -shm beside the store)
must stay the daemon's to open.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .store import MIGRATIONS, StoreInUse, StoreLock


class BackupError(RuntimeError):
    """A backup or a restore that could not be done; nothing was changed."""


@dataclass(frozen=True)
class Summary:
    """What a store file holds, in the words a technician checks."""

    path: Path
    schema: int
    tickets: int
    last_day: str | None
    last_event: int
    size: int

    def __str__(self) -> str:
        last = f", the last on {self.last_day}" if self.last_day else ""
        return (f"{self.path}: {self.tickets} tickets{last}, {self.last_event} events, "
                f"schema v{self.schema}, {self.size / 1e6:.1f} MB")


def backup(db: Path, destination: Path) -> Summary:
    """Copy the store `db` to `destination` (a file, or a folder to put a dated file
    in). Refuses to overwrite a file."""
    if not db.exists():
        raise BackupError(f"there is no store at {db}")
    if destination.is_dir():
        destination = destination / time.strftime("kioskd-%Y%m%d-%H%M%S.db")
    if destination.exists():
        raise BackupError(f"{destination} exists; name a new file or a folder")
    if not destination.parent.is_dir():
        raise BackupError(f"{destination.parent} is not a folder")
    partial = destination.with_name(destination.name + ".partial")
    with as_owner_of(db.parent):
        try:
            source = _open_read_only(db)
            source.execute("SELECT count(*) FROM sqlite_master").fetchone()   # -wal, -shm theirs
        except sqlite3.Error as exc:
            raise BackupError(f"cannot read the store {db}: {exc}") from exc
    try:
        try:
            target = sqlite3.connect(partial)
        except sqlite3.Error as exc:
            raise BackupError(f"cannot write {partial}: {exc}") from exc
        try:
            source.backup(target)                 # pages=-1: one step, one snapshot
            target.execute("PRAGMA journal_mode = DELETE")
            _check(target, partial)
        finally:
            target.close()
        _fsync(partial)
        os.replace(partial, destination)
        _fsync(destination.parent)
    except (sqlite3.Error, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"the backup to {destination} failed: {exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    return summary(destination)


DAILY = re.compile(r"kioskd-\d{4}-\d\d-\d\d\.db")


def daily(db: Path, folder: Path, day: str, keep: int) -> tuple[Summary | None, list[Path]]:
    """The day's copy in `folder` unless it is there, then the daily copies beyond
    the newest `keep` removed (and no other file); returns what was made and removed."""
    if keep == 0:
        return None, []
    folder.mkdir(parents=True, exist_ok=True)
    today = folder / f"kioskd-{day}.db"
    made = None if today.exists() else backup(db, today)
    copies = sorted(path for path in folder.iterdir() if DAILY.fullmatch(path.name))
    removed = copies[:-keep]
    for path in removed:
        path.unlink()
    return made, removed


def restore(source_file: Path, db: Path) -> tuple[Summary, Path | None, str | None]:
    """Replace the store `db` with the backup `source_file`; returns what it now
    holds, where the store it replaced was kept (None when there was none), and a
    warning when that store's ticket numbers could not be carried over.

    The numbers: a backup's per-day counters stop where the copy was taken, while
    the hall may have handed out later numbers on paper since. The restored store
    counts on from the higher of the two, so no number is given twice in a day."""
    if not source_file.is_file():
        raise BackupError(f"there is no backup at {source_file}")
    source = _open_read_only(source_file)
    try:
        _check(source, source_file)
        with as_owner_of(db.parent):
            lock = StoreLock(db)
            try:
                lock.acquire("kioskd restore")
            except StoreInUse as exc:
                raise BackupError(f"{exc}; stop it first (systemctl stop kioskd)") from None
            except OSError as exc:
                raise BackupError(f"cannot lock {db}: {exc}") from exc
            try:
                kept = _set_aside(db)
                restoring = db.with_name(db.name + ".restoring")
                restoring.unlink(missing_ok=True)
                target = sqlite3.connect(restoring)
                try:
                    source.backup(target)
                    target.execute("PRAGMA journal_mode = WAL")    # as the daemon keeps it
                    warning = _carry_numbers(kept, target) if kept else None
                finally:
                    target.close()
                _fsync(restoring)
                os.replace(restoring, db)
                _fsync(db.parent)
            finally:
                lock.release()
    finally:
        source.close()
    return summary(db), kept, warning


def _carry_numbers(replaced: Path, target: sqlite3.Connection) -> str | None:
    """Raise the target's per-day counters to the replaced store's."""
    try:
        old = _open_read_only(replaced)
        try:
            counters = old.execute("SELECT day, prefix, last FROM sequences").fetchall()
        finally:
            old.close()
    except sqlite3.Error as exc:
        return (f"the replaced store's ticket numbers could not be read ({exc}): numbers "
                "handed out after the backup was taken may be given again today")
    with target:
        target.executemany(
            "INSERT INTO sequences (day, prefix, last) VALUES (?, ?, ?) "
            "ON CONFLICT (day, prefix) DO UPDATE SET last = max(last, excluded.last)",
            counters)
    return None


def summary(path: Path) -> Summary:
    conn = _open_read_only(path)
    try:
        schema = conn.execute("PRAGMA user_version").fetchone()[0]
        tickets, last_day = conn.execute("SELECT count(*), max(day) FROM tickets").fetchone()
        last_event = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
    except sqlite3.Error as exc:
        raise BackupError(f"{path} is not a kioskd store: {exc}") from exc
    finally:
        conn.close()
    return Summary(path, schema, tickets, last_day, last_event, path.stat().st_size)


def _open_read_only(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def _check(conn: sqlite3.Connection, path: Path) -> None:
    """A kioskd store this kioskd can open, and not damaged."""
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        schema = conn.execute("PRAGMA user_version").fetchone()[0]
        has_tickets = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                   "AND name = 'tickets'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a kioskd store: {exc}") from exc
    if problems != ["ok"]:
        raise BackupError(f"{path} is damaged: {'; '.join(problems[:3])}")
    if not has_tickets or schema < 1:
        raise BackupError(f"{path} is not a kioskd store (no tickets table)")
    if schema > len(MIGRATIONS):
        raise BackupError(f"{path} was written by a newer kioskd (schema v{schema}; this "
                          f"kioskd knows v{len(MIGRATIONS)})")


def _set_aside(db: Path) -> Path | None:
    """Rename the store and its -wal and -shm together, so the set still opens."""
    if not db.exists():
        return None
    kept = db.with_name(time.strftime(f"{db.stem}-before-restore-%Y%m%d-%H%M%S{db.suffix}"))
    for suffix in ("", "-wal", "-shm"):
        part = db.with_name(db.name + suffix)
        if part.exists():
            os.replace(part, kept.with_name(kept.name + suffix))
    return kept


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def as_owner_of(folder: Path) -> Iterator[None]:
    """Act as the folder's owner when running as root and it is someone else's: what
    is created there stays the service's to open. A no-op otherwise."""
    try:
        st = folder.stat()
    except FileNotFoundError:
        yield
        return
    if os.geteuid() != 0 or st.st_uid == 0:
        yield
        return
    os.setegid(st.st_gid)
    os.seteuid(st.st_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
