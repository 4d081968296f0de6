"""The audit log: a scripted day of a hall, every change in it found in GET /audit with
who made it; filters by day, window, ticket and actor; nothing can change an entry;
entries go only after the hall's retention, never before 180 days, and the purge
takes nothing else.

The application runs in-process on a real SQLite store (conftest's `serving`), with
tokens for every role so that each action is made by the role a hall would use.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from dataclasses import replace

import httpx
import pytest

from conftest import Clock, eventually, serving, small_hall
from kioskd import audit
from kioskd.config import Audit, Auth, ConfigError, loads_config

API = "/api/v1"
TOKENS = Auth(kiosk=("k",), technician=("t",), supervisor=("s",), booking=("b",),
              evaluator=("e",), windows={"1": ("w1",), "2": ("w2",), "3": ("w3",),
                                         "4": ("w4",), "9": ("w9",)})
# the actions of the scripted day that change the queue: event types the log must hold
QUEUE_CHANGES = ("ticket.", "window.changed")


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


class Day:
    """The hall's clerks, kiosk, technician and supervisor, each with their own token."""

    def __init__(self, client: httpx.AsyncClient, clock: Clock):
        self.client = client
        self.clock = clock

    async def post(self, token: str, path: str, body: dict | None = None,
                   expect: int | tuple[int, ...] = (200, 201, 204)) -> httpx.Response:
        self.clock.advance(seconds=30)
        r = await self.client.post(f"{API}{path}", json=body, headers=bearer(token))
        expected = (expect,) if isinstance(expect, int) else expect
        assert r.status_code in expected, f"{path}: {r.status_code} {r.text}"
        return r

    async def issue(self, service: str = "property", **extra) -> dict:
        r = await self.post("k", "/tickets", {"service": service, "terminal": "kiosk_1",
                                              "print": False, **extra}, 201)
        return r.json()

    async def log(self, **query) -> list[dict]:
        entries, after = [], 0
        while True:
            r = await self.client.get(f"{API}/audit", params={**query, "after": after,
                                                               "limit": 50},
                                      headers=bearer("s"))
            assert r.status_code == 200, r.text
            page = r.json()
            entries += page["entries"]
            if page["next_after"] is None:
                return entries
            after = page["next_after"]


async def scripted_day(day: Day) -> dict[str, str]:
    """A morning at the hall; returns the ids of the tickets it names."""
    a1 = await day.issue()
    a2 = await day.issue()
    b1 = await day.issue("business", priority=True)
    await day.post("w1", "/windows/1/call-next")              # B001 (priority)
    await day.post("w1", "/windows/1/recall")
    await day.post("w1", "/windows/1/start")
    await day.post("w1", "/windows/1/complete")
    await day.post("w1", "/windows/1/call-next")              # A001
    await day.post("w1", "/windows/1/no-show")
    await day.post("k", f"/tickets/{a1['id']}/readmit")
    await day.post("w4", "/windows/4/call-next")              # A002
    await day.post("w4", "/windows/4/transfer", {"service": "business"})
    await day.post("w1", "/windows/1/pause")
    await day.post("w1", "/windows/1/resume")
    await day.post("s", "/windows/9/open")
    await day.post("w9", "/windows/9/call-next")              # A002 again (transferred)
    await day.post("w9", "/windows/9/call-next")              # finishes it; then A001
    await day.post("w9", "/windows/9/complete")
    await day.post("s", "/windows/9/close")
    c1 = await day.issue("social")
    await day.post("k", f"/tickets/{c1['id']}/cancel")
    await day.post("t", "/devices/printer_1/reconnect", expect=503)   # disabled: refused
    return {"a1": a1["id"], "a2": a2["id"], "b1": b1["id"], "c1": c1["id"]}


async def test_every_change_of_a_scripted_day_is_in_the_log_with_who_made_it(tmp_path):
    clock = Clock()
    async with serving(small_hall(tmp_path / "var", TOKENS), clock) as (app, client):
        day = Day(client, clock)
        ids = await scripted_day(day)
        entries = await day.log(date="2026-11-30")
        events = [e for e in app.state.bus.since(0) or []
                  if e.type.startswith(QUEUE_CHANGES)]

    # one entry per change, in the same order, saying the same thing
    changes = [e for e in entries if e["action"].startswith(QUEUE_CHANGES)]
    assert [(c["action"], c["ticket"]) for c in changes] == \
        [(e.type, e.data.get("ticket")) for e in events]
    assert len(changes) == 22
    by_action = Counter(c["action"] for c in changes)
    assert by_action["ticket.issued"] == 4 and by_action["ticket.called"] == 5
    assert by_action["window.changed"] == 4

    actors = {(c["action"], c["ticket"], c["window"]): c["actor"]["label"] for c in changes}
    assert actors[("ticket.issued", ids["a1"], None)] == "kiosk:kiosk_1"
    assert actors[("ticket.recalled", ids["b1"], "1")] == "window:1"
    assert actors[("ticket.transferred", ids["a2"], "4")] == "window:4"
    assert actors[("ticket.readmitted", ids["a1"], None)] == "kiosk"
    assert actors[("ticket.cancelled", ids["c1"], None)] == "kiosk"
    window_changes = [(c["actor"]["label"], c["window"], c["detail"]["state"])
                      for c in changes if c["action"] == "window.changed"]
    assert window_changes == [("window:1", "1", "paused"), ("window:1", "1", "open"),
                              ("supervisor", "9", "open"), ("supervisor", "9", "closed")]
    called = next(c for c in changes if c["action"] == "ticket.called")
    assert called["detail"]["number"] == "B001" and called["detail"]["status"] == "called"
    assert called["actor"] == {"label": "window:1", "role": "window", "window": "1",
                               "terminal": None, "device": None, "token": True}

    # the technician's command, refused by the device, is in the log with its outcome
    [command] = [e for e in entries if e["action"] == "device.reconnect"]
    assert command["actor"]["label"] == "technician" and command["device"] == "printer_1"
    assert command["detail"]["outcome"] == "failed" and command["detail"]["state"] == "disabled"
    assert [e["id"] for e in entries] == sorted(e["id"] for e in entries)


async def test_the_log_filters_by_window_ticket_actor_and_day(tmp_path):
    clock = Clock()
    async with serving(small_hall(tmp_path / "var", TOKENS), clock) as (app, client):
        day = Day(client, clock)
        ids = await scripted_day(day)
        everything = await day.log()                          # today, by default
        at_1 = await day.log(window="1")
        of_a2 = await day.log(ticket=ids["a2"])               # every day of the ticket
        clerk_9 = await day.log(actor="window:9")
        supervisor = await day.log(actor="supervisor")
        kiosk_role = await day.log(actor="kiosk")
        clock.advance(hours=24)
        await day.issue()
        next_day = await day.log(date="2026-12-01")
        earlier = await day.log(date="2026-11-30")

    assert earlier == everything and len(everything) > len(at_1) > 0
    assert at_1 == [e for e in everything if e["window"] == "1"]
    assert {e["ticket"] for e in of_a2} == {ids["a2"]}
    assert [e["action"] for e in of_a2] == ["ticket.issued", "ticket.called",
                                            "ticket.transferred", "ticket.called",
                                            "ticket.done"]
    assert clerk_9 and all(e["actor"]["label"] == "window:9" for e in clerk_9)
    assert [e["detail"].get("state") for e in supervisor] == ["open", "closed"]
    assert {e["actor"]["label"] for e in kiosk_role} == {"kiosk", "kiosk:kiosk_1"}
    assert [e["action"] for e in next_day if e["action"].startswith("ticket.")][-1] == \
        "ticket.issued"
    assert all(e["at"].startswith("2026-12-01") for e in next_day)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_nothing_in_the_api_changes_the_log(tmp_path, method):
    clock = Clock()
    async with serving(small_hall(tmp_path / "var", TOKENS), clock) as (app, client):
        day = Day(client, clock)
        await scripted_day(day)
        before = await day.log()
        r = await client.request(method, f"{API}/audit", headers=bearer("s"),
                                 json={"action": "nothing happened"})
        assert r.status_code == 405
        assert await day.log() == before


async def test_the_store_refuses_to_change_or_delete_an_entry(tmp_path):
    clock = Clock(time.time())
    config = small_hall(tmp_path / "var", TOKENS)
    async with serving(config, clock) as (app, client):
        await Day(client, clock).issue()
    db = sqlite3.connect(config.hall.data_dir / "kioskd.db")
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE audit SET actor = 'supervisor'")
        with pytest.raises(sqlite3.DatabaseError, match="at least 180 days"):
            db.execute("DELETE FROM audit")
        assert db.execute("SELECT actor FROM audit").fetchall() == [("kiosk:kiosk_1",)]
    finally:
        db.close()


async def test_only_the_supervisor_reads_the_log(tmp_path):
    async with serving(small_hall(tmp_path / "var", TOKENS), Clock()) as (app, client):
        for token, status in ((None, 401), ("k", 403), ("t", 403), ("w1", 403), ("b", 403),
                              ("e", 403), ("x", 401), ("s", 200)):
            r = await client.get(f"{API}/audit", headers=bearer(token) if token else {})
            assert r.status_code == status, (token, r.text)
        r = await client.get(f"{API}/audit?date=30.11.2026", headers=bearer("s"))
        assert r.status_code == 422 and "YYYY-MM-DD" in r.json()["detail"]


async def test_entries_go_after_the_retention_and_never_before_180_days(tmp_path):
    """Entries written 200 days ago by this machine's clock, then the purge."""
    long_ago = time.time() - 200 * 86400
    clock = Clock(long_ago)
    config = small_hall(tmp_path / "var", TOKENS)
    kept_for_a_year = replace(config, audit=Audit(retention_days=365))
    async with serving(config, clock) as (app, client):
        old = await Day(client, clock).issue()
    clock.now = time.time()
    async with serving(kept_for_a_year, clock) as (app, client):   # purges at start: nothing
        day = Day(client, clock)
        # its issue then, and its cancellation at the end of its day, written today
        assert [e["action"] for e in await day.log(ticket=old["id"])] == [
            "ticket.issued", "ticket.cancelled"]
        recent = await day.issue()
    async with serving(config, clock) as (app, client):            # 180 days: the old go
        day = Day(client, clock)
        purged = await purge_entry(day)             # the purge runs in the background
        assert [e["action"] for e in await day.log(ticket=old["id"])] == ["ticket.cancelled"]
        assert [e["action"] for e in await day.log(ticket=recent["id"])] == ["ticket.issued"]
        assert purged["actor"]["label"] == "system"
        assert purged["detail"]["entries"] >= 1 and purged["detail"]["retention_days"] == 180
        queue = app.state.queue
        # whatever a caller asks, the store keeps what is younger than 180 days
        assert await queue.run(audit.purge_expired, 1, queue.day_of) == 0
        assert [e["action"] for e in await day.log(ticket=recent["id"])] == ["ticket.issued"]

        # the retention takes what it names and nothing else: the old ticket, its
        # events and its day's statistics stay
        r = await client.get(f"{API}/tickets/{old['id']}")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        old_day = queue.day_of(long_ago)
        r = await client.get(f"{API}/stats", params={"date": old_day}, headers=bearer("s"))
        assert r.status_code == 200 and r.json()["totals"]["issued"] == 1
    with sqlite3.connect(config.hall.data_dir / "kioskd.db") as db:
        events = db.execute("SELECT type FROM events WHERE data LIKE ? ORDER BY id",
                            (f'%{old["id"]}%',)).fetchall()
    assert events == [("ticket.issued",), ("ticket.cancelled",)]


async def purge_entry(day: Day, wait: float = 10.0) -> dict:
    """Poll today's log until the start-up purge has written its entry."""
    async def purges() -> list[dict]:
        return [e for e in await day.log() if e["action"] == "audit.purged"]
    [entry] = await eventually(purges, bool, "the start-up purge's entry", wait)
    return entry


def test_a_retention_under_180_days_is_refused(tmp_path):
    text = ('[hall]\nname = "厅"\n[[services]]\nid = "a"\nname = "甲"\nprefix = "A"\n'
            'code = "1"\n[[windows]]\nid = "1"\nname = "1号"\nservices = ["a"]\n'
            '[audit]\nretention_days = 90\n')
    with pytest.raises(ConfigError) as caught:
        loads_config(text, base_dir=tmp_path, env={})
    assert any("[audit]" in p and "retention_days" in p and "180" in p
               for p in caught.value.problems)
