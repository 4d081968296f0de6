"""What the daemons of one hall sharing a PostgreSQL database agree on: the hall's
catalogue (services, windows, rules), who is running, and whose devices are whose.

A hall of several daemons ([store] url) has one queue, so it has one catalogue: a
window on the east floor calls tickets a kiosk on the west floor issued, under the
west daemon's prefixes and rules. The first daemon stores its catalogue in the
database (hall_settings 'catalogue'); a daemon whose devices.toml says otherwise is
refused while another daemon of the hall runs, naming every difference, and when
none runs its catalogue becomes the hall's (logged). Each daemon holds its
`[hall] instance` name with a session advisory lock for as long as its connection
lives: the server frees it when the daemon dies, however it dies, so "running"
is never a stale row.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from datetime import datetime
from typing import Any

from .config import Config

log = logging.getLogger("kioskd.instances")

# Advisory lock keys (two int4s). An instance's name: (INSTANCE_LOCK, hashtext(name));
# registering, hall-wide: (REGISTER_LOCK, 0). Advisory locks are per database.
INSTANCE_LOCK = 0x6B696F73          # "kios"
REGISTER_LOCK = 0x6B696F72          # "kior"
CATALOGUE = "catalogue"             # hall_settings key
_NAME_KEY = "hashtext('kioskd:instance:' || %s)"

_HALL_KEYS = ("name", "timezone", "number_width", "readmit_within_min", "readmit_after",
              "print_materials")
# The catalogue's parts in the order differences are told: (key, how one entry is named)
_TABLES = (("hall", "[hall]"), ("services", "service"), ("categories", "category"),
           ("windows", "window"), ("alerts", "[alerts]"), ("appointments", "[appointments]"),
           ("evaluation", "[evaluation]"), ("audit", "[audit]"))
_LISTS = {"services", "categories", "windows"}


class NotAdmitted(Exception):
    """This daemon may not join its hall's database as its devices.toml stands."""


class HallMismatch(NotAdmitted):
    """This devices.toml disagrees with the catalogue the hall's running daemons keep."""

    def __init__(self, differences: list[str], live: list[dict] | None = None):
        self.differences = differences
        self.live = live or []
        running = ", ".join(_who(row) for row in self.live)
        super().__init__(
            "this devices.toml disagrees with the hall's catalogue in the database"
            + (f" (the catalogue of the daemons running: {running})" if running else "") + ":\n"
            + "".join(f"  {line}\n" for line in differences)
            + "Make this devices.toml agree with theirs; or, to change the hall's catalogue, "
              "stop every daemon of the hall and start one with the new devices.toml (its "
              "catalogue then becomes the hall's), then the others with the same.")


class InstanceInUse(NotAdmitted):
    """Another daemon, alive, holds this daemon's instance name."""

    def __init__(self, name: str, holder: dict | None):
        self.name = name
        self.holder = holder
        who = (f"the daemon on {holder['host']} (pid {holder['pid']}, started "
               f"{_when(holder['started_at'])})" if holder else "another daemon")
        super().__init__(
            f"instance \"{name}\" is already running: {who} holds the name in the hall's "
            f"database. Stop that daemon first, or give this one another name in "
            f"[hall] instance")


class DeviceInUse(NotAdmitted):
    """A device id of this devices.toml is another instance's; device ids are hall-wide
    (events, /devices and the audit log name a device by its id alone)."""

    def __init__(self, claims: list[tuple[str, dict, bool]]):
        self.claims = claims
        lines = []
        for device, row, live in claims:
            where = _who(row) + ("" if live else ", not running now")
            lines.append(f"  device '{device}' is also instance \"{row['name']}\"'s ({where})")
        gone = sorted({row["name"] for _, row, live in claims if not live})
        super().__init__(
            "device ids are hall-wide, and this devices.toml names devices another "
            "instance has:\n" + "".join(f"{line}\n" for line in lines)
            + "Give this daemon's device another id, or remove it from the other instance's "
              "devices.toml and restart that daemon (it records its devices as it starts)"
            + (f"; an instance gone for good is forgotten with: DELETE FROM instances "
               f"WHERE name = '{gone[0]}'" if gone else ""))


# -- the catalogue ----------------------------------------------------------------------

def catalogue(config: Config) -> dict:
    """The hall-wide part of a devices.toml, as JSON-able data whose keys are the file's:
    what every daemon of the hall must read alike. Not the devices, nor the windows'
    boards and voices (device ids of the daemon driving them), nor what is each
    daemon's own (auth, server, limits, backup, data_dir, instance, store)."""
    hall, alerts = config.hall, config.alerts
    return _plain({
        "hall": {key: getattr(hall, key) for key in _HALL_KEYS},
        "services": [{"id": s.id, "name": s.name, "prefix": s.prefix, "code": s.code,
                      "service_time_min": s.service_time_min, "name_en": s.name_en,
                      "guide": asdict(s.guide), "alerts": asdict(s.thresholds)}
                     for s in config.services],
        "categories": [asdict(c) for c in config.categories],
        "windows": [{"id": w.id, "name": w.name, "services": w.services,
                     "temporary": w.temporary, "instance": w.instance} for w in config.windows],
        "alerts": {"check_every_s": alerts.check_every_s, "pause_min": alerts.pause_min,
                   "device_offline_s": alerts.device_offline_s, **asdict(alerts.thresholds)},
        "appointments": asdict(config.appointments),
        "evaluation": asdict(config.evaluation),
        "audit": {"retention_days": config.audit.retention_days},
    })


def _plain(value: Any) -> Any:
    """Tuples as lists, so that what is compared is what JSON gives back."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def differences(stored: dict, mine: dict) -> list[str]:
    """Each way `mine` (this devices.toml's catalogue) differs from `stored` (the
    database's), one sentence a technician can act on; in the catalogue's order."""
    found: list[str] = []
    extra = sorted((set(stored) | set(mine)) - {key for key, _ in _TABLES})
    for key, noun in (*_TABLES, *((key, key) for key in extra)):
        theirs, ours = stored.get(key), mine.get(key)
        if theirs == ours:
            continue
        if key in _LISTS and isinstance(theirs or [], list) and isinstance(ours or [], list):
            found += _entry_differences(key, noun, theirs or [], ours or [])
        elif isinstance(theirs or {}, dict) and isinstance(ours or {}, dict):
            for name, a, b in _changed(theirs or {}, ours or {}):
                found.append(f"{noun} {name}: {_shown(a)} in the database, "
                             f"{_shown(b)} in devices.toml")
        else:
            found.append(f"{noun}: {_shown(theirs)} in the database, {_shown(ours)} in "
                         f"devices.toml")
    return found


def _entry_differences(key: str, noun: str, theirs: list, ours: list) -> list[str]:
    """Services, categories or windows, matched by id."""
    found = []
    stored = {str(entry.get("id")): entry for entry in theirs if isinstance(entry, dict)}
    mine = {str(entry.get("id")): entry for entry in ours if isinstance(entry, dict)}
    for entry_id in stored:
        if entry_id not in mine:
            found.append(f"{noun} {entry_id} is in the database but not in devices.toml")
    for entry_id in mine:
        if entry_id not in stored:
            found.append(f"{noun} {entry_id} is in devices.toml but not in the database")
    for entry_id, entry in stored.items():
        if entry_id in mine:
            found += [f"{noun} {entry_id}: {name} is {_shown(a)} in the database, "
                      f"{_shown(b)} in devices.toml"
                      for name, a, b in _changed(entry, mine[entry_id])]
    in_both = [entry_id for entry_id in stored if entry_id in mine]
    if in_both != [entry_id for entry_id in mine if entry_id in stored]:
        found.append(f"{key} are listed in another order: "
                     f"{', '.join(in_both)} in the database, "
                     f"{', '.join(e for e in mine if e in stored)} in devices.toml "
                     f"(the kiosk and the pages show them in this order)")
    return found


def _changed(theirs: dict, ours: dict, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, stored value, our value) for each key whose values differ; tables
    (a service's guide, its alerts) key by key."""
    changed = []
    for name in [*theirs, *(k for k in ours if k not in theirs)]:
        a, b = theirs.get(name), ours.get(name)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _changed(a, b, f"{prefix}{name}.")
        else:
            changed.append((f"{prefix}{name}", a, b))
    return changed


def _shown(value: Any) -> str:
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _who(row: dict) -> str:
    return f"{row['name']} on {row['host']}, pid {row['pid']}"


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


# -- the register -----------------------------------------------------------------------

def register(conn: Any, config: Config, *, host: str, pid: int, now: float) -> None:
    """Join the hall as `config.instance_name`: hold the name for the life of `conn`
    (a psycopg connection in autocommit mode, kept open while the daemon runs), make
    sure this devices.toml's catalogue is the hall's, and record this daemon.

    Raises InstanceInUse when a live daemon holds the name, HallMismatch when the
    catalogue differs while another daemon of the hall runs, DeviceInUse when another
    instance has one of this daemon's device ids. Two daemons starting at once take
    turns (a transaction advisory lock)."""
    name = config.instance_name
    if not _holding(conn, name):
        taken = conn.execute(f"SELECT pg_try_advisory_lock(%s::int4, {_NAME_KEY})",
                             (INSTANCE_LOCK, name)).fetchone()[0]
        if not taken:
            row = conn.execute("SELECT name, host, pid, started_at, devices FROM instances "
                               "WHERE name = %s", (name,)).fetchone()
            raise InstanceInUse(name, _row(row) if row else None)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s::int4, 0)", (REGISTER_LOCK,))
            _agree(conn, config, name)
            devices = sorted(config.devices)
            _check_devices(conn, name, devices)
            conn.execute(
                "INSERT INTO instances (name, host, pid, started_at, devices) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                "host = excluded.host, pid = excluded.pid, started_at = excluded.started_at, "
                "devices = excluded.devices", (name, host, pid, now, json.dumps(devices)))
    except BaseException:
        try:
            release(conn, name)
        except Exception:                # the connection is gone: so is the name
            pass
        raise
    log.info("instance %s: registered (host %s, pid %d, %d devices)", name, host, pid,
             len(config.devices))


def _agree(conn: Any, config: Config, name: str) -> None:
    """The hall's catalogue is this devices.toml's: stored when the hall has none, kept
    when equal, refused when another daemon runs with another, adopted when none does."""
    mine = catalogue(config)
    changes = _catalogue_changes(conn, mine)
    if changes:
        live = [r for r in live_instances(conn) if r["name"] != name]
        if live:
            raise HallMismatch(changes, live)
        log.warning("instance %s: no other daemon of the hall is running, so this "
                    "devices.toml's catalogue is the hall's now; what changed: %s", name,
                    "; ".join(changes))
    elif changes is None:
        log.info("instance %s: the hall's catalogue stored (the first daemon of the hall)", name)
    else:
        return
    conn.execute("INSERT INTO hall_settings (key, value) VALUES (%s, %s) ON CONFLICT (key) "
                 "DO UPDATE SET value = excluded.value",
                 (CATALOGUE, json.dumps(mine, ensure_ascii=False, sort_keys=True)))


def _catalogue_changes(conn: Any, mine: dict) -> list[str] | None:
    """How the hall's stored catalogue differs from `mine` ([]: not at all; None: the
    hall has none yet)."""
    row = conn.execute("SELECT value FROM hall_settings WHERE key = %s",
                       (CATALOGUE,)).fetchone()
    if row is None:
        return None
    try:
        stored = json.loads(row[0])
    except ValueError:
        stored = {}
    if stored == mine:
        return []
    return (differences(stored if isinstance(stored, dict) else {}, mine)
            or ["the catalogue in the database is not one this kioskd can read"])


def admission(conn: Any, config: Config) -> NotAdmitted | None:
    """What `register` would refuse, read without changing anything (`kioskd check`,
    and `kioskd run` before it starts serving): None when this daemon may join."""
    if conn.execute("SELECT to_regclass('instances') IS NULL").fetchone()[0]:
        return None                      # a new database: the first daemon migrates it
    name = config.instance_name
    live = live_instances(conn)
    holder = next((r for r in live if r["name"] == name), None)
    if holder is not None and not _holding(conn, name):
        return InstanceInUse(name, holder)
    changes = _catalogue_changes(conn, catalogue(config))
    others = [r for r in live if r["name"] != name]
    if changes and others:
        return HallMismatch(changes, others)
    try:
        _check_devices(conn, name, sorted(config.devices))
    except DeviceInUse as refused:
        return refused
    return None


def _check_devices(conn: Any, name: str, devices: list[str]) -> None:
    live = {row["name"] for row in live_instances(conn)}
    claims = []
    for row in _rows(conn, "WHERE name <> %s ORDER BY name", (name,)):
        for device in sorted(set(row["devices"]) & set(devices)):
            claims.append((device, row, row["name"] in live))
    if claims:
        raise DeviceInUse(claims)


def live_instances(conn: Any) -> list[dict]:
    """The hall's daemons running now (their session holds their name), by name:
    {name, host, pid, started_at, devices}."""
    return _rows(conn, f"""
        WHERE EXISTS (SELECT 1 FROM pg_locks l
                      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                        AND l.database = (SELECT oid FROM pg_database
                                          WHERE datname = current_database())
                        AND l.classid = %s::int4::oid
                        AND l.objid = {_NAME_KEY.replace('%s', 'i.name')}::oid)
        ORDER BY name""", (INSTANCE_LOCK,))


def release(conn: Any, name: str) -> None:
    """Give up the instance name (closing the connection does too)."""
    if _holding(conn, name):
        conn.execute(f"SELECT pg_advisory_unlock(%s::int4, {_NAME_KEY})", (INSTANCE_LOCK, name))


def _holding(conn: Any, name: str) -> bool:
    """Whether this session holds the name already (a session lock taken twice would
    need two unlocks)."""
    return conn.execute(f"""
        SELECT EXISTS (SELECT 1 FROM pg_locks
                       WHERE locktype = 'advisory' AND granted AND objsubid = 2
                         AND pid = pg_backend_pid()
                         AND database = (SELECT oid FROM pg_database
                                         WHERE datname = current_database())
                         AND classid = %s::int4::oid AND objid = {_NAME_KEY}::oid)""",
                        (INSTANCE_LOCK, name)).fetchone()[0]


def _rows(conn: Any, where: str, params: tuple) -> list[dict]:
    rows = conn.execute(f"SELECT i.name, i.host, i.pid, i.started_at, i.devices "
                        f"FROM instances i {where}", params).fetchall()
    return [_row(row) for row in rows]


def _row(row: tuple) -> dict:
    name, host, pid, started_at, devices = row
    try:
        listed = json.loads(devices)
    except ValueError:
        listed = []
    return {"name": name, "host": host, "pid": pid, "started_at": float(started_at),
            "devices": listed if isinstance(listed, list) else []}
