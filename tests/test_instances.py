"""Several daemons of one hall on one PostgreSQL database: what they must agree on
(kioskd/instances.py, against a real server), the devices.toml keys that say which
daemon is which, and the window routes refusing a clerk on the wrong daemon."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import psycopg
import pytest

from conftest import hall_toml, running, until
from kioskd.config import Config, ConfigError, loads_config, safe_url
from kioskd.instances import (DeviceInUse, HallMismatch, InstanceInUse, catalogue, differences,
                              live_instances, register, release)

ROOT = Path(__file__).resolve().parents[1]

# Until migration 5 is in kioskd/migrations.py, the tests make its two tables themselves.
SCHEMA = """
CREATE TABLE IF NOT EXISTS hall_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS instances (name TEXT PRIMARY KEY, host TEXT NOT NULL,
    pid INTEGER NOT NULL, started_at DOUBLE PRECISION NOT NULL, devices TEXT NOT NULL);
"""

WINDOW_2 = """
[[windows]]
id = "2"
name = "2号窗口"
services = ["property"]
{more}
"""

PRINTER = """
[devices.{id}]
driver = "escpos"
connection = "tcp://127.0.0.1:9"
enabled = false
"""


def hall(instance: str, *, prefix: str = "A", timezone: str = "Asia/Shanghai",
         window_2: str | None = 'instance = "east"', devices: tuple[str, ...] = (),
         extra: str = "") -> Config:
    """The minimal hall (window 1 on any daemon) with window 2 on east, as the daemon
    `instance` reads it; `window_2=None` leaves window 2 out."""
    text = hall_toml(
        (WINDOW_2.format(more=window_2) if window_2 is not None else "")
        + "".join(PRINTER.format(id=d) for d in devices) + extra,
        hall=f'instance = "{instance}"\ntimezone = "{timezone}"')
    return loads_config(text.replace('prefix = "A"', f'prefix = "{prefix}"'), env={})


@pytest.fixture
def db(pg_url):
    """The hall's database, with the register's tables; `connect()` opens a daemon's
    connection (closed at the end of the test)."""
    opened: list[psycopg.Connection] = []

    class Db:
        url = pg_url

        def connect(self) -> psycopg.Connection:
            conn = psycopg.connect(pg_url, autocommit=True)
            opened.append(conn)
            return conn

        def stored(self) -> dict:
            with psycopg.connect(pg_url) as conn:
                row = conn.execute("SELECT value FROM hall_settings WHERE key = 'catalogue'"
                                   ).fetchone()
            return json.loads(row[0]) if row else {}

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(SCHEMA)
    yield Db()
    for conn in opened:
        conn.close()


def start(db, config: Config, pid: int = 100) -> psycopg.Connection:
    """A daemon of `config` joins the hall on a connection of its own."""
    conn = db.connect()
    register(conn, config, host=f"pc-{config.instance_name}", pid=pid, now=1_800_000_000.0)
    return conn


def names(conn: psycopg.Connection) -> list[str]:
    return [row["name"] for row in live_instances(conn)]


# -- the register ------------------------------------------------------------------------

def test_the_first_daemon_stores_the_catalogue_and_its_record(db):
    east = hall("east", devices=("printer_e",))
    conn = start(db, east, pid=4242)
    assert db.stored() == catalogue(east)
    [me] = live_instances(conn)
    assert me == {"name": "east", "host": "pc-east", "pid": 4242,
                  "started_at": 1_800_000_000.0, "devices": ["printer_e"]}


def test_a_second_daemon_with_the_same_catalogue_joins(db):
    east = start(db, hall("east", devices=("printer_e",)))
    start(db, hall("west", devices=("printer_w",)))
    assert names(east) == ["east", "west"]
    assert db.stored() == catalogue(hall("east"))


@pytest.mark.parametrize("west, difference", [
    (dict(prefix="P"), 'service property: prefix is "A" in the database, "P" in devices.toml'),
    (dict(timezone="Asia/Urumqi"),
     '[hall] timezone: "Asia/Shanghai" in the database, "Asia/Urumqi" in devices.toml'),
    (dict(window_2=None), "window 2 is in the database but not in devices.toml"),
    (dict(window_2='instance = "west"'),
     'window 2: instance is "east" in the database, "west" in devices.toml'),
    (dict(extra=WINDOW_2.replace('"2"', '"8"').format(more="")),
     "window 8 is in devices.toml but not in the database"),
], ids=["prefix", "timezone", "window-gone", "window-moved", "window-added"])
def test_a_daemon_whose_catalogue_differs_is_refused_while_another_runs(db, west, difference):
    east = start(db, hall("east"))
    with pytest.raises(HallMismatch) as refused:
        start(db, hall("west", **west))
    assert refused.value.differences == [difference]
    message = str(refused.value)
    assert f"  {difference}\n" in message
    assert "east on pc-east" in message                     # who keeps the catalogue
    assert "stop every daemon of the hall" in message       # and what to do
    assert names(east) == ["east"]                          # west holds nothing, changed nothing
    assert db.stored() == catalogue(hall("east"))


def test_the_refusal_names_every_difference_one_a_line(db):
    start(db, hall("east"))
    with pytest.raises(HallMismatch) as refused:
        start(db, hall("west", prefix="P", timezone="Asia/Urumqi", window_2='instance = "west"',
                       extra=WINDOW_2.replace('"2"', '"8"').format(more="")))
    assert refused.value.differences == [
        '[hall] timezone: "Asia/Shanghai" in the database, "Asia/Urumqi" in devices.toml',
        'service property: prefix is "A" in the database, "P" in devices.toml',
        "window 8 is in devices.toml but not in the database",
        'window 2: instance is "east" in the database, "west" in devices.toml',
    ]
    lines = str(refused.value).splitlines()
    assert lines[1:5] == [f"  {line}" for line in refused.value.differences]


def test_the_same_name_twice_is_refused_until_the_first_daemon_is_gone(db):
    """The first daemon is a real process, killed with SIGKILL: the server drops its
    session, and with it the name."""
    script = textwrap.dedent(f"""
        import sys, time, psycopg
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from test_instances import hall
        from kioskd.instances import register
        conn = psycopg.connect({db.url!r}, autocommit=True)
        register(conn, hall("east"), host="pc-east", pid=4242, now=1.8e9)
        print("registered", flush=True)
        time.sleep(600)
    """)
    first = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert first.stdout.readline().strip() == "registered"
        with pytest.raises(InstanceInUse) as refused:
            start(db, hall("east"), pid=7)
        assert 'instance "east" is already running' in str(refused.value)
        assert "pc-east (pid 4242" in str(refused.value)
        assert "[hall] instance" in str(refused.value)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        first.stdout.close()
    conn = db.connect()

    def joined() -> bool:
        try:
            register(conn, hall("east"), host="pc-east-2", pid=7, now=1.9e9)
        except InstanceInUse:
            return False
        return True
    until(joined, "the server to drop the killed daemon's session")
    assert live_instances(conn)[0]["host"] == "pc-east-2"


def test_a_name_released_is_free_for_another_daemon(db):
    conn = start(db, hall("east"))
    register(conn, hall("east"), host="pc-east", pid=100, now=1.0)   # again: held once
    release(conn, "east")
    assert names(conn) == []
    start(db, hall("east"), pid=200)
    assert names(conn) == ["east"]


def test_with_no_daemon_running_a_changed_catalogue_becomes_the_halls(db, caplog):
    caplog.set_level(logging.INFO, logger="kioskd.instances")
    east = start(db, hall("east"))
    east.close()                                       # the whole hall stopped
    watcher = db.connect()
    until(lambda: not names(watcher), "east's session to end")
    west = start(db, hall("west", prefix="P"))
    assert db.stored() == catalogue(hall("west", prefix="P"))
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage().startswith("instance west: no other daemon of the hall is running")
    assert 'service property: prefix is "A" in the database, "P" in devices.toml' \
        in warning.getMessage()
    # east, restarted with the old file, now disagrees with the hall that runs
    with pytest.raises(HallMismatch) as refused:
        start(db, hall("east"))
    assert refused.value.differences == [
        'service property: prefix is "P" in the database, "A" in devices.toml']
    assert names(west) == ["west"]


def test_a_device_id_another_instance_has_is_refused(db):
    east = start(db, hall("east", devices=("printer_1", "printer_e")))
    with pytest.raises(DeviceInUse) as refused:
        start(db, hall("west", devices=("printer_1", "printer_w")))
    assert "device 'printer_1' is also instance \"east\"'s (east on pc-east, pid 100)" \
        in str(refused.value)
    assert "printer_e" not in str(refused.value) and "printer_w" not in str(refused.value)
    assert names(east) == ["east"]
    # east stopped: its record still claims the device, and says how to forget it
    east.close()
    watcher = db.connect()
    until(lambda: not names(watcher), "east's session to end")
    with pytest.raises(DeviceInUse) as refused:
        start(db, hall("west", devices=("printer_1",)))
    assert "not running now" in str(refused.value)
    assert "DELETE FROM instances WHERE name = 'east'" in str(refused.value)


def test_two_daemons_starting_at_once_take_turns(pg_server):
    """On an empty hall, two daemons with different catalogues start at the same
    instant: one stores its catalogue, the other is refused."""
    for _ in range(5):
        url = pg_server.create_database()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SCHEMA)
        configs = {"east": hall("east"), "west": hall("west", prefix="P")}
        outcome: dict[str, object] = {}
        go = threading.Barrier(2)
        conns = {name: psycopg.connect(url, autocommit=True) for name in configs}

        def join(name: str) -> None:
            go.wait()
            try:
                register(conns[name], configs[name], host=name, pid=1, now=1.0)
                outcome[name] = "joined"
            except HallMismatch as exc:
                outcome[name] = exc
        threads = [threading.Thread(target=join, args=(name,)) for name in configs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        try:
            [winner] = [name for name, what in outcome.items() if what == "joined"]
            [loser] = [what for what in outcome.values() if isinstance(what, HallMismatch)]
            with psycopg.connect(url) as conn:
                stored = json.loads(conn.execute("SELECT value FROM hall_settings").fetchone()[0])
            assert stored == catalogue(configs[winner])
            assert loser.live[0]["name"] == winner
        finally:
            for conn in conns.values():
                conn.close()


# -- differences ---------------------------------------------------------------------------

def test_differences_reach_into_guides_alerts_and_the_order_of_the_lists():
    stored = catalogue(hall("east"))
    mine = json.loads(json.dumps(stored))
    mine["services"][0]["guide"]["materials"] = ["身份证明"]
    mine["services"][0]["alerts"]["wait_min"] = 45.0
    mine["windows"].reverse()
    mine["alerts"]["pause_min"] = 20.0
    mine["audit"]["retention_days"] = 365
    assert differences(stored, mine) == [
        "service property: guide.materials is [] in the database, [\"身份证明\"] in devices.toml",
        "service property: alerts.wait_min is 30 in the database, 45 in devices.toml",
        "windows are listed in another order: 1, 2 in the database, 2, 1 in devices.toml "
        "(the kiosk and the pages show them in this order)",
        "[alerts] pause_min: 15 in the database, 20 in devices.toml",
        "[audit] retention_days: 180 in the database, 365 in devices.toml",
    ]
    assert differences(stored, json.loads(json.dumps(stored))) == []


def test_the_catalogue_is_the_hall_wide_part_only(tmp_path):
    """What is each daemon's own (its devices, boards, tokens, server, store) may differ."""
    east = hall("east", window_2='instance = "east"\nboard = "board_2"',
                extra='[devices.board_2]\ndriver = "modbus_digits"\nport = "/dev/ttyUSB1"\n'
                      '[server]\nport = 8081\n[auth]\nkiosk = ["kiosk-token-1"]\n'
                      '[store]\nurl = "postgresql://k:pw@db/hall"\n')
    west = hall("west", devices=("printer_w",))
    assert catalogue(east) == catalogue(west)
    assert catalogue(east) == json.loads(json.dumps(catalogue(east)))
    assert "board" not in json.dumps(catalogue(east))
    assert [w["instance"] for w in catalogue(east)["windows"]] == [None, "east"]


# -- devices.toml --------------------------------------------------------------------------

def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        loads_config(text, env=env or {})
    return refused.value.problems


@pytest.mark.parametrize("url", ["postgresql://kioskd@10.0.0.2:5432/hall",
                                 "postgres://db/hall?sslmode=require", "postgresql:///hall"])
def test_a_postgresql_url_is_the_store(url):
    config = loads_config(hall_toml(f'[store]\nurl = "{url}"\n'), env={})
    assert config.store.url == url


def test_without_a_store_table_the_store_is_sqlite_in_the_data_dir():
    assert loads_config(hall_toml(), env={}).store.url is None


def test_the_password_comes_from_tokens_env_and_is_never_shown():
    config = loads_config(hall_toml('[store]\nurl = "postgresql://kioskd:${DB_PW}@db/hall"\n'),
                          env={"DB_PW": "s3cret-pw"})
    assert config.store.url == "postgresql://kioskd:s3cret-pw@db/hall"
    assert "s3cret" not in repr(config) and "s3cret" not in repr(config.store)
    assert safe_url(config.store.url) == "postgresql://kioskd:***@db/hall"
    assert problems(hall_toml('[store]\nurl = "postgresql://kioskd:${DB_PW}@db/hall"\n')) == [
        "[store] url: ${DB_PW} is not set"]


@pytest.mark.parametrize("url, why", [
    ("postgresql://kioskd:hunter22@[::1/hall", "is not a URL PostgreSQL can read"),
    ("postgresql://kioskd:hunter22@db/hall?colour=blue", 'invalid URI query parameter: "colour"'),
    ("postgresql://kioskd:hunter22@db:99999/hall", "port '99999' is not a number"),
])
def test_a_malformed_url_is_a_problem_naming_store_url_without_its_password(url, why):
    [problem] = problems(hall_toml(f'[store]\nurl = "{url}"\n'))
    assert problem.startswith("[store] url: 'postgresql://kioskd:***@")
    assert why in problem
    assert "hunter22" not in problem


@pytest.mark.parametrize("url", ["mysql://root:hunter22@db/hall", "sqlite:///var/kioskd.db",
                                 "host=db password=hunter22 dbname=hall"])
def test_another_kind_of_database_is_refused_plainly(url):
    [problem] = problems(hall_toml(f'[store]\nurl = "{url}"\n'))
    assert problem.startswith("[store] url: '")
    assert "is not a PostgreSQL URL; write postgresql://USER@HOST:PORT/DATABASE" in problem
    assert "hunter22" not in problem


def test_the_store_table_takes_url_only():
    assert problems(hall_toml('[store]\nurl = "postgresql://db/h"\npool = 3\n')) == [
        "[store]: unknown key 'pool'"]


def test_the_instance_name_is_the_host_name_unless_the_hall_names_it():
    assert loads_config(hall_toml(), env={}).instance_name == socket.gethostname()
    named = loads_config(hall_toml(hall='instance = "east-wing_2"'), env={})
    assert (named.hall.instance, named.instance_name) == ("east-wing_2", "east-wing_2")


@pytest.mark.parametrize("name", ["east wing", "东楼", "x" * 41, ""])
def test_an_instance_name_is_letters_digits_dash_and_underscore(name):
    [problem] = problems(hall_toml(hall=f'instance = "{name}"'))
    assert problem.startswith("[hall] instance: ")
    [problem] = problems(hall_toml(window=f'instance = "{name}"'))
    assert problem.startswith("[windows.1] instance: ")


def test_a_window_names_the_daemon_that_manages_it():
    config = hall("west")
    assert [(w.id, w.instance) for w in config.windows] == [("1", None), ("2", "east")]
    assert config.managed_elsewhere("2") == "east"
    assert config.managed_elsewhere("1") is None
    assert hall("east").managed_elsewhere("2") is None


BOARD_2 = '[devices.board_2]\ndriver = "modbus_digits"\nport = "/dev/ttyUSB1"\n'
KEYPADS = """
[devices.keypads]
driver = "keypad"
port = "/dev/ttyUSB2"

[devices.keypads.frame]
layout = ["header", "address", "key", "checksum", "trailer"]
header = "AA"
checksum = "xor8"
trailer = "55"

[devices.keypads.keypads]
1 = "1"
2 = "2"

[devices.keypads.keys]
"01" = "call-next"

[devices.keypads.raters]
102 = "2"

[devices.keypads.rater_keys]
"15" = "rate:5"
"""


def test_a_board_over_another_instances_window_is_refused():
    assert problems(hall_toml(WINDOW_2.format(more='instance = "east"\nboard = "board_2"')
                              + BOARD_2, hall='instance = "west"')) == [
        '[windows.2] board: device \'board_2\' is this daemon\'s (instance "west") but '
        'window 2 is instance "east"\'s; the board of a window belongs in the devices.toml '
        'of its instance']


def test_keypads_at_another_instances_window_are_refused():
    found = problems(hall_toml(WINDOW_2.format(more='instance = "east"') + KEYPADS,
                               hall='instance = "west"'))
    assert found == [
        "[devices.keypads.keypads] 2: device 'keypads' is this daemon's (instance \"west\") "
        "but its keypad is bound to window 2, which is instance \"east\"'s; a window's "
        "keypads belong in the devices.toml of its instance",
        "[devices.keypads.raters] 102: device 'keypads' is this daemon's (instance \"west\") "
        "but its rating keypad is bound to window 2, which is instance \"east\"'s; a "
        "window's keypads belong in the devices.toml of its instance"]


def test_a_daemons_own_windows_and_an_unnamed_daemon_may_bind_anything():
    own = WINDOW_2.format(more='instance = "east"\nboard = "board_2"') + BOARD_2 + KEYPADS
    assert loads_config(hall_toml(own, hall='instance = "east"'), env={}).window("2").board \
        == "board_2"
    # without [hall] instance the file does not say which daemon it is: nothing to cross-check
    assert loads_config(hall_toml(own), env={}).window("2").instance == "east"


# -- the window routes ----------------------------------------------------------------------

AUTH = """
[auth]
supervisor = ["supervisor-token"]
kiosk = ["kiosk-token-0001"]
[auth.windows]
"1" = ["clerk-1-token"]
"2" = ["clerk-2-token"]
"""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_clerk_at_a_window_another_daemon_manages_is_sent_there(tmp_path, clock):
    config = loads_config(hall_toml(WINDOW_2.format(more='instance = "east"') + AUTH,
                                    hall='instance = "west"'), base_dir=tmp_path, env={})
    async with running(config, clock) as client:
        for _ in range(3):
            r = await client.post("/api/v1/tickets", json={"service": "property"},
                                  headers=bearer("kiosk-token-0001"))
            assert r.status_code == 201, r.text
        clerk = bearer("clerk-2-token")
        for method, action in [("GET", "access"), ("POST", "call-next"), ("POST", "recall"),
                               ("POST", "start"), ("POST", "complete"), ("POST", "no-show"),
                               ("POST", "pause"), ("POST", "resume")]:
            r = await client.request(method, f"/api/v1/windows/2/{action}", headers=clerk)
            assert r.status_code == 409, (action, r.text)
            assert r.json()["reason"] == "other_instance"
            assert r.json()["instance"] == "east"
            assert r.json()["detail"].startswith("窗口 2 由 east 楼层的服务程序管理")
        r = await client.post("/api/v1/windows/2/transfer", json={"service": "property"},
                              headers=clerk)
        assert (r.status_code, r.json()["reason"]) == (409, "other_instance")
        # nothing happened at window 2
        assert (await client.get("/api/v1/windows/2")).json()["current"] is None

        # window 1 is on every daemon: its clerk works here
        r = await client.post("/api/v1/windows/1/call-next", headers=bearer("clerk-1-token"))
        assert (r.status_code, r.json()["number"]) == (200, "A001")
        # a supervisor acts at any window from any daemon
        supervisor = bearer("supervisor-token")
        r = await client.post("/api/v1/windows/2/call-next", headers=supervisor)
        assert (r.status_code, r.json()["number"], r.json()["window"]) == (200, "A002", "2")
        r = await client.post("/api/v1/windows/2/pause", headers=supervisor)
        assert (r.status_code, r.json()["state"]) == (200, "paused")
        # unknown windows stay 404, and a clerk of another window stays 403
        assert (await client.post("/api/v1/windows/7/call-next", headers=supervisor)
                ).status_code == 404
        assert (await client.post("/api/v1/windows/2/call-next",
                                  headers=bearer("clerk-1-token"))).status_code == 403


async def test_the_daemon_named_by_the_window_serves_its_clerk(tmp_path, clock):
    config = loads_config(hall_toml(WINDOW_2.format(more='instance = "east"') + AUTH,
                                    hall='instance = "east"'), base_dir=tmp_path, env={})
    async with running(config, clock) as client:
        r = await client.post("/api/v1/tickets", json={"service": "property"},
                              headers=bearer("kiosk-token-0001"))
        assert r.status_code == 201, r.text
        r = await client.post("/api/v1/windows/2/call-next", headers=bearer("clerk-2-token"))
        assert (r.status_code, r.json()["number"]) == (200, "A001")
