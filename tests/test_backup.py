"""`kioskd backup` copies the store while the daemon runs; `kioskd restore` puts a
backup back, never under a running daemon, keeping the store it replaces.

The daemon is the real `kioskd run` process, loaded by kiosks and windows over HTTP;
the commands run as a technician runs them, in their own processes.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from kioskd.backup import daily
from kioskd.config import Backup, ConfigError, loads_config
from kioskd.store import MIGRATIONS

from conftest import Clock, eventually, serving, small_hall, until
from daemon import Daemon, hall_toml

API = "/api/v1"


def kioskd(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kioskd.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def tickets_in(db: Path) -> dict[str, str]:
    """id → number of every ticket in a store file."""
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT id, number FROM tickets"))


@pytest.fixture
def hall(tmp_path: Path) -> Path:
    path = tmp_path / "devices.toml"
    path.write_text(hall_toml(4))
    return path


class Load:
    """Kiosks issuing and windows calling as fast as they are answered, each answer
    noted in order with the moment it came."""

    def __init__(self, url: str, kiosks: int = 3, windows: int = 2):
        self.url = url
        self.answered: list[tuple[str, str]] = []      # (id, number), in answer order
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._kiosk, daemon=True) for _ in range(kiosks)]
        self.threads += [threading.Thread(target=self._window, args=(str(n),), daemon=True)
                         for n in range(1, windows + 1)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def count(self) -> int:
        with self.lock:
            return len(self.answered)

    def _kiosk(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                r = client.post(f"{API}/tickets", json={"service": "property"})
                if r.status_code != 201:
                    self.errors.append(r.text)
                    continue
                with self.lock:
                    self.answered.append((r.json()["id"], r.json()["number"]))

    def _window(self, window: str) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                r = client.post(f"{API}/windows/{window}/call-next")
                if r.status_code not in (200, 204):
                    self.errors.append(r.text)


def test_a_backup_under_load_holds_every_ticket_answered_before_it_began(
        hall: Path, tmp_path: Path):
    daemon = Daemon(hall).start()
    copy = tmp_path / "copy.db"
    try:
        with Load(daemon.url) as load:
            until(lambda: load.count() >= 200, "200 tickets answered", 30)
            with load.lock:
                before = list(load.answered)
            done = kioskd("backup", "-c", hall, copy)
            during = load.count() - len(before)
        assert done.returncode == 0, done.stderr
        assert not load.errors, load.errors[:3]
    finally:
        daemon.stop()

    assert during > 0                       # the hall was served while the copy was taken
    held = tickets_in(copy)
    assert {ticket: held.get(ticket) for ticket, _ in before} == dict(before)
    assert len(set(held.values())) == len(held)          # one day: no number twice
    assert f"copy.db: {len(held)} tickets" in done.stdout
    # one self-contained file, whole: nothing beside it, nothing damaged
    assert sorted(p.name for p in tmp_path.glob("copy.db*")) == ["copy.db"]
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_restore_is_refused_under_a_running_daemon_then_puts_the_backup_back(
        hall: Path, tmp_path: Path):
    db = tmp_path / "var" / "kioskd.db"
    daemon = Daemon(hall).start()
    try:
        kept = [issue(daemon) for _ in range(3)]
        assert kioskd("backup", "-c", hall, tmp_path / "b.db").returncode == 0
        later = [issue(daemon)]                             # after the backup: not in it

        refused = kioskd("restore", "-c", hall, tmp_path / "b.db")
        assert refused.returncode == 1
        assert f"in use by kioskd run (pid {daemon.proc.pid})" in refused.stderr
        assert "systemctl stop kioskd" in refused.stderr
        later.append(issue(daemon))                         # the running store untouched
        assert [t["number"] for t in later] == ["A004", "A005"]
    finally:
        assert daemon.stop() == 0

    restored = kioskd("restore", "-c", hall, tmp_path / "b.db")
    assert restored.returncode == 0, restored.stderr
    assert "3 tickets" in restored.stdout
    [aside] = [p for p in (tmp_path / "var").glob("kioskd-before-restore-*.db")]
    assert f"kept as {aside}" in restored.stdout
    # the replaced store is whole beside it: every ticket up to the restore
    assert tickets_in(aside) == {t["id"]: t["number"] for t in kept + later}

    daemon = Daemon(hall, port=daemon.port).start()
    try:
        for ticket in kept:
            assert get(daemon, ticket["id"]).json()["number"] == ticket["number"]
        for ticket in later:
            assert get(daemon, ticket["id"]).status_code == 404
        # A004 and A005 are on paper in the hall: the numbering goes on after them
        assert issue(daemon)["number"] == "A006"
    finally:
        daemon.stop()
    assert db.exists()


def test_a_damaged_store_is_replaced_with_a_warning_about_the_numbers(
        hall: Path, tmp_path: Path):
    daemon = Daemon(hall).start()
    try:
        issue(daemon)
        assert kioskd("backup", "-c", hall, tmp_path / "b.db").returncode == 0
    finally:
        daemon.stop()
    db = tmp_path / "var" / "kioskd.db"
    db.write_bytes(b"\0" * 4096)                           # the disk ate it
    restored = kioskd("restore", "-c", hall, tmp_path / "b.db")
    assert restored.returncode == 0, restored.stderr
    assert "may be given again today" in restored.stderr
    assert tickets_in(db) and len(tickets_in(db)) == 1


def test_what_is_not_a_backup_is_refused_and_nothing_changes(hall: Path, tmp_path: Path):
    daemon = Daemon(hall).start()
    try:
        ticket = issue(daemon)
        assert kioskd("backup", "-c", hall, tmp_path / "good.db").returncode == 0
    finally:
        daemon.stop()
    db = tmp_path / "var" / "kioskd.db"
    before = db.read_bytes()

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE x (y)").connection.close()
    newer = tmp_path / "newer.db"
    newer.write_bytes((tmp_path / "good.db").read_bytes())
    with sqlite3.connect(newer) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")

    for path, words in ((garbage, "is not a kioskd store"), (other, "no tickets table"),
                        (newer, "written by a newer kioskd"),
                        (tmp_path / "missing.db", "there is no backup")):
        refused = kioskd("restore", "-c", hall, path)
        assert refused.returncode == 1 and words in refused.stderr, (path, refused.stderr)
    assert db.read_bytes() == before
    assert not list(db.parent.glob("*before-restore*"))

    # a backup never overwrites; a folder gets a dated file
    exists = kioskd("backup", "-c", hall, tmp_path / "good.db")
    assert exists.returncode == 1 and "exists" in exists.stderr
    folder = tmp_path / "backups"
    folder.mkdir()
    dated = kioskd("backup", "-c", hall, folder)
    assert dated.returncode == 0, dated.stderr
    [made] = folder.iterdir()
    assert made.name.startswith("kioskd-") and tickets_in(made) == {ticket["id"]: "A001"}
    nowhere = kioskd("backup", "-c", hall, tmp_path / "no" / "such" / "x.db")
    assert nowhere.returncode == 1 and "is not a folder" in nowhere.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_run_as_root_the_files_in_the_data_dir_stay_the_service_users(tmp_path: Path):
    """A technician runs the commands with sudo; the daemon runs as its own user
    (here nobody), which must still open every file they leave in its data dir."""
    hall_dir = Path(tempfile.mkdtemp(prefix="kioskd-hall-"))   # pytest's tmp is root's only
    hall_dir.chmod(0o755)
    try:
        hall = hall_dir / "devices.toml"
        hall.write_text(hall_toml(1))
        daemon = Daemon(hall).start()
        try:
            issue(daemon)
        finally:
            daemon.stop()
        data = hall_dir / "var"
        nobody = 65534
        for path in [data, *data.iterdir()]:
            os.chown(path, nobody, nobody)
        (data / "kioskd.db-wal").unlink(missing_ok=True)       # a clean stop leaves none
        (data / "kioskd.db-shm").unlink(missing_ok=True)

        assert kioskd("backup", "-c", hall, tmp_path / "b.db").returncode == 0
        assert kioskd("restore", "-c", hall, tmp_path / "b.db").returncode == 0
        owners = {path.name: path.stat().st_uid for path in data.iterdir()}
        assert "kioskd.db" in owners and set(owners.values()) == {nobody}, owners
    finally:
        shutil.rmtree(hall_dir)


def issue(daemon: Daemon) -> dict:
    r = httpx.post(f"{daemon.url}{API}/tickets", json={"service": "property"}, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def get(daemon: Daemon, ticket_id: str) -> httpx.Response:
    return httpx.get(f"{daemon.url}{API}/tickets/{ticket_id}", timeout=10)


# ---------------------------------------------------------------- the daily copy

async def test_the_daemon_keeps_a_copy_a_day_and_removes_only_its_own_old_ones(tmp_path: Path):
    """Days pass as restarts (start-up takes the day's copy like each midnight does)."""
    config = replace(small_hall(tmp_path / "var"), backup=Backup(keep=2))
    folder = tmp_path / "var" / "backups"
    clock = Clock()
    days = []
    for n in range(3):
        async with serving(config, clock) as (app, client):
            day = app.state.queue.day_of(clock())
            days.append(day)
            copy = folder / f"kioskd-{day}.db"
            await eventually(copy.exists, bool, f"{copy.name}")
            r = await client.post(f"{API}/tickets", json={"service": "property"})
            assert r.status_code == 201
            if n == 0:
                (folder / "notes.txt").write_text("the technician's")
                (folder / "kioskd-before-the-move.db").write_bytes(b"theirs")
        clock.advance(hours=24)
    # each copy holds the days before it (taken at start, before that day's ticket)
    assert len(tickets_in(folder / f"kioskd-{days[2]}.db")) == 2
    assert len(tickets_in(folder / f"kioskd-{days[1]}.db")) == 1
    assert sorted(p.name for p in folder.iterdir()) == sorted([
        f"kioskd-{days[1]}.db", f"kioskd-{days[2]}.db",      # keep = 2: the first went
        "kioskd-before-the-move.db", "notes.txt"])


def test_keep_0_takes_no_copy_and_the_settings_are_checked(tmp_path: Path):
    db = tmp_path / "kioskd.db"
    sqlite3.connect(db).close()
    assert daily(db, tmp_path / "backups", "2026-11-30", keep=0) == (None, [])
    assert not (tmp_path / "backups").exists()

    base = hall_toml(1)
    config = loads_config(base + '[backup]\nkeep = 30\nfolder = "/srv/copies"\n',
                          base_dir=tmp_path)
    assert config.backup == Backup(keep=30, folder=Path("/srv/copies"))
    assert loads_config(base, base_dir=tmp_path).backup == Backup(keep=7, folder=None)
    for bad, words in (("keep = -1", "[backup] keep"), ("keep = \"7\"", "[backup] keep"),
                       ("kept = 3", "[backup]"), ("folder = 5", "[backup] folder")):
        with pytest.raises(ConfigError) as refused:
            loads_config(base + f"[backup]\n{bad}\n", base_dir=tmp_path)
        assert any(words in problem for problem in refused.value.problems), refused.value
