"""Early warnings: each condition raises one alert while it lasts, closes it when it ends,
and raises a new one when it returns; thresholds per hall and per service, 0 turning
one off; a printer's paper alerts from a real emulated printer, across restarts;
acknowledging over the API; the watch's own loop; the audit log; the cost of a check.

The hall runs in-process on the test's clock. The tests call the watch's check
directly after moving the clock (`Hall.check`), so what is raised is decided by the
clock, not by timing; the watch's own loop (woken by the same events) may look too,
and finds the same."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from conftest import Clock, device_in_state, eventually, running, serving, small_hall
from drivers.escpos import Settings
from drivers.escpos.codec import PrinterStatus
from drivers.escpos.connection import parse_connection
from drivers.escpos.emulator import EmulatedPrinter
from drivers.escpos.profiles import PROFILES
from kioskd.alerts import Watch, raise_alert
from kioskd.config import Alerts, Auth, Config, Device, Service, Thresholds, Window
from kioskd.records import Actor

API = "/api/v1"
TOKENS = Auth(kiosk=("k",), technician=("t",), supervisor=("s",), windows={"1": ("w1",)})
AS = {"supervisor": {"Authorization": "Bearer s"}, "technician": {"Authorization": "Bearer t"},
      "kiosk": {"Authorization": "Bearer k"}}


def alerting_hall(tmp_path: Path, *, wait_min: float = 30, serve_min: float = 30,
                  waiting_per_window: float = 10, pause_min: float = 15,
                  device_offline_s: float = 0, check_every_s: float = 3600,
                  services: dict[str, Thresholds] | None = None, auth: Auth = TOKENS) -> Config:
    """The small hall (windows 1, 2: property and business; 3: social; 4: property;
    9: temporary, all three) with these thresholds for the hall, and `services` their
    own. The kiosk terminal is never heard from: device_offline_s = 0 unless a test
    is about it."""
    config = small_hall(tmp_path / "var", auth)
    hall = Thresholds(wait_min=wait_min, serve_min=serve_min,
                      waiting_per_window=waiting_per_window)
    own = services or {}
    return replace(
        config,
        alerts=Alerts(check_every_s=check_every_s, pause_min=pause_min,
                      device_offline_s=device_offline_s, thresholds=hall),
        services=tuple(replace(s, thresholds=own.get(s.id, hall)) for s in config.services))


class Hall:
    """The daemon in-process as a supervisor sees it: tickets issued and called, the
    watch asked to look now, the alerts as GET /alerts lists them."""

    def __init__(self, app, client: httpx.AsyncClient, clock: Clock):
        self.app = app
        self.client = client
        self.clock = clock

    @property
    def watch(self) -> Watch:
        return self.app.state.alerts

    async def check(self) -> None:
        await self.watch.check()

    async def issue(self, service: str = "property", count: int = 1) -> list[dict]:
        issued = []
        for _ in range(count):
            r = await self.client.post(f"{API}/tickets", json={"service": service},
                                       headers=AS["kiosk"])
            assert r.status_code == 201, r.text
            issued.append(r.json())
        return issued

    async def press(self, window: str, action: str, expect: int = 200) -> httpx.Response:
        r = await self.client.post(f"{API}/windows/{window}/{action}", headers=AS["supervisor"])
        assert r.status_code == expect, r.text
        return r

    async def alerts(self, query: str = "", as_: str = "supervisor") -> list[dict]:
        r = await self.client.get(f"{API}/alerts{query}", headers=AS[as_])
        assert r.status_code == 200, r.text
        return r.json()

    async def open_of(self, kind: str) -> list[dict]:
        return [a for a in await self.alerts() if a["kind"] == kind]

    def events(self, key: str | None = None) -> list[dict]:
        """The `alert` events published so far (of `key`)."""
        return [e.data for e in self.app.state.bus.since(0) or []
                if e.type == "alert" and (key is None or e.data["key"] == key)]

    async def acknowledge(self, alert_id: int | str, as_: str = "supervisor") -> httpx.Response:
        return await self.client.post(f"{API}/alerts/{alert_id}/acknowledge", headers=AS[as_])


@asynccontextmanager
async def hall(config: Config, clock: Clock) -> AsyncIterator[Hall]:
    async with serving(config, clock) as (app, client):
        yield Hall(app, client, clock)


async def raised_once(h: Hall, key: str) -> dict:
    """Two looks at a lasting condition: one alert of `key`, one `raised` event."""
    await h.check()
    await h.check()
    [alert] = [a for a in await h.alerts() if a["key"] == key]
    assert [e["state"] for e in h.events(key) if e["alert"] == alert["id"]] == ["raised"]
    return alert


async def closed_by_the_system(h: Hall, alert: dict) -> dict:
    """The alert is no longer open and its condition's end is what closed it."""
    await h.check()
    assert alert["id"] not in [a["id"] for a in await h.alerts()]
    [kept] = [a for a in await h.alerts("?state=all") if a["id"] == alert["id"]]
    assert kept["state"] == "closed" and kept["closed_by"] == "system"
    assert [e["state"] for e in h.events(alert["key"]) if e["alert"] == alert["id"]] == [
        "raised", "closed"]
    return kept


# -- a ticket waiting too long --------------------------------------------------------------

async def test_a_long_wait_is_raised_once_closed_when_called_and_raised_anew(tmp_path, clock):
    async with hall(alerting_hall(tmp_path), clock) as h:
        await h.issue("property", 2)
        clock.advance(minutes=5)
        await h.issue("property")
        clock.advance(minutes=25)
        await h.check()
        assert await h.alerts() == []                        # A001 has waited 30 min: not over
        clock.advance(minutes=17)
        alert = await raised_once(h, "wait:property")
        assert alert["message"] == ("不动产登记：3 人等候已超过 30 分钟，最长 A001 已等 47 分钟")
        assert alert["detail"] == {"count": 3, "longest": "A001", "longest_min": 47,
                                   "wait_min": 30}
        assert (alert["kind"], alert["state"], alert["service"], alert["window"]) == (
            "wait", "open", "property", None)
        assert alert["raised_at"] == "2026-11-30T09:47:00+08:00"

        for window in ("1", "2"):                            # two called, A003 still waits
            await h.press(window, "call-next")
        await h.check()
        assert [a["id"] for a in await h.open_of("wait")] == [alert["id"]]
        await h.press("4", "call-next")
        await closed_by_the_system(h, alert)

        await h.issue("property")                            # it returns: a new alert
        clock.advance(minutes=31)
        again = await raised_once(h, "wait:property")
        assert again["id"] > alert["id"]
        assert again["message"] == "不动产登记：1 人等候已超过 30 分钟，最长 A004 已等 31 分钟"


async def test_a_services_own_threshold_overrides_the_halls_and_zero_turns_it_off(
        tmp_path, clock):
    config = alerting_hall(tmp_path, wait_min=30, services={
        "property": Thresholds(wait_min=10, serve_min=30, waiting_per_window=10),
        "business": Thresholds(wait_min=0, serve_min=30, waiting_per_window=10)})
    async with hall(config, clock) as h:
        for service in ("property", "business", "social"):
            await h.issue(service)
        clock.advance(minutes=11)
        await h.check()
        assert [a["key"] for a in await h.alerts()] == ["wait:property"]
        clock.advance(minutes=20)
        await h.check()
        assert sorted(a["key"] for a in await h.alerts()) == ["wait:property", "wait:social"]
        clock.advance(hours=3)                               # business never warns
        await h.check()
        assert sorted(a["key"] for a in await h.open_of("wait")) == [
            "wait:property", "wait:social"]


# -- a window paused too long ---------------------------------------------------------------

async def test_a_long_pause_is_raised_once_closed_when_resumed_and_raised_anew(tmp_path, clock):
    async with hall(alerting_hall(tmp_path, pause_min=15), clock) as h:
        await h.press("3", "pause")
        clock.advance(minutes=15)
        await h.check()
        assert await h.alerts() == []
        clock.advance(minutes=1)
        alert = await raised_once(h, "paused:3")
        assert alert["message"] == "3号窗口：暂停已超过 15 分钟（09:00 起，已 16 分钟）"
        assert (alert["kind"], alert["window"]) == ("paused", "3")

        await h.press("3", "resume")
        await closed_by_the_system(h, alert)
        await h.press("3", "pause")
        clock.advance(minutes=20)
        again = await raised_once(h, "paused:3")
        assert again["id"] > alert["id"]


async def test_a_pause_limit_of_zero_never_warns(tmp_path, clock):
    async with hall(alerting_hall(tmp_path, pause_min=0), clock) as h:
        await h.press("3", "pause")
        clock.advance(hours=4)
        await h.check()
        assert await h.alerts() == []


# -- too many waiting per open window -------------------------------------------------------

async def test_a_crowd_per_open_window_suggests_the_temporary_window_until_it_opens(
        tmp_path, clock):
    async with hall(alerting_hall(tmp_path, waiting_per_window=2), clock) as h:
        await h.issue("property", 6)                         # windows 1, 2, 4: 2 each
        await h.check()
        assert await h.alerts() == []
        await h.issue("property")                            # 7 / 3 = 2.3
        alert = await raised_once(h, "load:property")
        assert alert["message"] == ("不动产登记：每个开放窗口平均 2.3 人等候，"
                                    "建议开放 临时窗口（临时）")
        assert alert["detail"] == {
            "waiting": 7, "open_windows": 3, "per_window": 2.3, "waiting_per_window": 2,
            "suggest_window": "9", "suggest_window_name": "临时窗口", "suggest_temporary": True}

        await h.press("9", "open")                           # 7 / 4 = 1.75
        await closed_by_the_system(h, alert)

        await h.press("4", "close")                          # 7 / 3 again: window 4 it is
        again = await raised_once(h, "load:property")
        assert again["id"] > alert["id"]
        assert again["message"] == "不动产登记：每个开放窗口平均 2.3 人等候，建议开放 4号窗口"
        assert again["detail"]["suggest_window"] == "4"


async def test_waiting_with_no_window_open_is_a_crowd_and_zero_turns_it_off(tmp_path, clock):
    config = alerting_hall(tmp_path, services={
        "business": Thresholds(wait_min=30, serve_min=30, waiting_per_window=0)})
    async with hall(config, clock) as h:
        await h.press("3", "close")                          # social: only 3 and temporary 9
        await h.issue("social")
        alert = await raised_once(h, "load:social")
        assert alert["message"] == "社保业务：1 人等候，没有开放的窗口，建议开放 临时窗口（临时）"
        assert alert["detail"]["open_windows"] == 0 and alert["detail"]["per_window"] is None

        for window in ("1", "2"):                            # business: nobody open, but off
            await h.press(window, "close")
        await h.issue("business", 5)
        await h.check()
        assert [a["key"] for a in await h.alerts()] == ["load:social"]

        await h.press("3", "open")
        await closed_by_the_system(h, alert)


# -- a ticket at a window too long ----------------------------------------------------------

async def test_a_long_service_is_raised_once_and_closed_when_the_ticket_is_finished(
        tmp_path, clock):
    config = alerting_hall(tmp_path, serve_min=30, services={
        "social": Thresholds(wait_min=30, serve_min=10, waiting_per_window=10)})
    async with hall(config, clock) as h:
        [a001] = await h.issue("property")
        [c001] = await h.issue("social")
        await h.press("1", "call-next")
        await h.press("3", "call-next")
        clock.advance(minutes=11)                            # social's own limit: 10
        await h.press("1", "start")
        social = await raised_once(h, f"serve:3:{c001['id']}")
        assert social["message"] == "3号窗口：C001（社保业务）已办理 11 分钟，超过 10 分钟"
        assert (social["kind"], social["window"], social["ticket"], social["service"]) == (
            "serve", "3", c001["id"], "social")
        clock.advance(minutes=20)                            # A001 from its call: 31 min
        property_ = await raised_once(h, f"serve:1:{a001['id']}")
        assert property_["detail"]["number"] == "A001"
        assert property_["detail"]["status"] == "serving"

        await h.press("1", "complete")
        await closed_by_the_system(h, property_)
        await h.press("3", "no-show")
        await closed_by_the_system(h, social)


# -- devices --------------------------------------------------------------------------------

async def test_a_silent_terminal_is_an_alert_until_its_page_reports_a_disabled_device_never(
        tmp_path, clock):
    config = alerting_hall(tmp_path, device_offline_s=60)   # printer_1: enabled = false
    async with hall(config, clock) as h:
        clock.advance(seconds=60)
        await h.check()
        assert await h.alerts("", "technician") == []
        clock.advance(seconds=1)
        alert = await raised_once(h, "device:kiosk_1:offline")
        assert (alert["kind"], alert["device"]) == ("offline", "kiosk_1")
        assert alert["message"].startswith("kiosk_1：离线已超过 60 秒")

        r = await h.client.post(f"{API}/devices/kiosk_1/heartbeat", json={"page": "kiosk"},
                                headers=AS["kiosk"])
        assert r.status_code == 200, r.text
        await closed_by_the_system(h, alert)
        clock.advance(hours=2)                               # printer_1 is never looked for
        await h.check()
        assert await h.alerts() == []


def printer_hall(tmp_path: Path, printer: EmulatedPrinter | None, **thresholds) -> Config:
    """The small hall whose kiosk prints on `printer` (None: nothing answers at its
    address), polled every 0.1 s; no tokens."""
    if printer is not None:
        connection = f"tcp://127.0.0.1:{printer.listen_tcp('127.0.0.1', 0)}"
    else:
        connection = "tcp://127.0.0.1:9"                     # discard: refused on loopback
    settings = Settings(parse_connection(connection), "gb18030", PROFILES["80mm"])
    config = alerting_hall(tmp_path, auth=Auth(), **thresholds)     # open: loopback
    return replace(config, devices={
        "printer_1": Device("printer_1", "escpos", {"connection": connection},
                            settings=settings, timeout=0.5, poll_interval=0.1),
        "kiosk_1": Device("kiosk_1", "terminal", {"printer": "printer_1"})})


async def alerts_become(client: httpx.AsyncClient, kinds: list[str]) -> list[dict]:
    """Poll /alerts until it lists `kinds` (the printer is polled every 0.1 s)."""
    async def listed() -> list[dict]:
        return (await client.get(f"{API}/alerts")).json()
    return await eventually(listed, lambda alerts: [a["kind"] for a in alerts] == kinds,
                            f"the alerts {kinds}")


@pytest.fixture
def printer():
    emulated = EmulatedPrinter(encoding="gb18030", profile=PROFILES["80mm"])
    yield emulated
    emulated.close()


async def test_a_printer_near_its_paper_end_is_an_alert_until_paper_is_loaded(tmp_path, printer):
    config = printer_hall(tmp_path, printer)
    async with serving(config, time.time) as (app, client):
        await device_in_state(client, "printer_1", "ready")
        printer.status = PrinterStatus(paper="near_end")
        device = await device_in_state(client, "printer_1", "degraded")
        # raised before the printer's state changed: whoever sees `degraded` sees its alert
        [raised] = await alerts_become(client, ["paper_near_end"])
        assert device and raised["device"] == "printer_1"
        assert raised["key"] == "device:printer_1:paper_near_end"
        assert raised["message"] == "printer_1：打印纸将尽，请尽快换纸"
        assert "paper" in raised["detail"]["reported"]
        printer.status = PrinterStatus(paper="ok")
        await alerts_become(client, [])
        states = [e.data["state"] for e in app.state.bus.since(0) if e.type == "alert"]
        assert states == ["raised", "closed"]


async def test_a_fault_on_a_live_link_is_an_alert_named_after_it(tmp_path, printer):
    async with running(printer_hall(tmp_path, printer), time.time) as client:
        await device_in_state(client, "printer_1", "ready")
        printer.status = PrinterStatus(paper="out")
        [out] = await alerts_become(client, ["paper_out"])
        assert out["message"] == "printer_1：打印机缺纸"
        printer.status = PrinterStatus(paper="ok")
        await alerts_become(client, [])


async def test_paper_loaded_while_the_daemon_was_down_ends_the_alert_once_the_printer_answers(
        tmp_path, printer):
    config = printer_hall(tmp_path, printer)
    async with running(config, time.time) as client:
        printer.status = PrinterStatus(paper="near_end")
        [raised] = await alerts_become(client, ["paper_near_end"])
    printer.status = PrinterStatus(paper="ok")                   # loaded while stopped

    # started again with the printer unreachable: it has not answered, its alert stands
    # (the watch looks at start-up and here again: nothing is closed)
    async with serving(printer_hall(tmp_path, None), time.time) as (app, client):
        await app.state.alerts.check()
        assert [a["id"] for a in (await client.get(f"{API}/alerts")).json()] == [raised["id"]]

    async with serving(config, time.time) as (app, client):
        await device_in_state(client, "printer_1", "ready")
        await alerts_become(client, [])
        [closed] = (await client.get(f"{API}/alerts?state=all")).json()
        assert closed["id"] == raised["id"] and closed["closed_by"] == "system"
        assert [e.data["state"] for e in app.state.bus.since(0) or [] if e.type == "alert"
                ][-1:] == ["closed"]
    printer.status = PrinterStatus(paper="near_end")
    async with running(config, time.time) as client:             # near its end again
        [again] = await alerts_become(client, ["paper_near_end"])
        assert again["id"] > raised["id"]


# -- acknowledging --------------------------------------------------------------------------

async def test_acknowledging_records_who_and_when_and_the_alert_stays_until_its_end(
        tmp_path, clock):
    async with hall(alerting_hall(tmp_path, pause_min=15, device_offline_s=60), clock) as h:
        await h.press("3", "pause")
        clock.advance(minutes=16)
        await h.check()
        paused = next(a for a in await h.alerts() if a["kind"] == "paused")
        offline = next(a for a in await h.alerts() if a["kind"] == "offline")

        r = await h.acknowledge(paused["id"], "technician")
        assert r.status_code == 403 and "device alerts only" in r.json()["detail"]
        assert (await h.acknowledge(paused["id"], "kiosk")).status_code == 403
        clock.advance(minutes=1)
        r = await h.acknowledge(paused["id"])
        assert r.status_code == 200, r.text
        acked = r.json()
        assert (acked["state"], acked["acked_by"], acked["acked_at"]) == (
            "acknowledged", "supervisor", "2026-11-30T09:17:00+08:00")
        assert [e["state"] for e in h.events("paused:3")] == ["raised", "acknowledged"]
        assert h.events("paused:3")[-1]["acked_by"] == "supervisor"
        listed = await h.alerts()
        assert next(a for a in listed if a["id"] == paused["id"]) == acked

        r = await h.acknowledge(paused["id"])
        assert r.status_code == 409
        assert r.json()["detail"] == (f"alert {paused['id']} was already acknowledged by "
                                      "supervisor at 09:17")
        r = await h.acknowledge(offline["id"], "technician")      # a device's: the technician's
        assert r.status_code == 200 and r.json()["acked_by"] == "technician"

        await h.press("3", "resume")                               # it ends by itself still
        await h.check()
        assert paused["id"] not in [a["id"] for a in await h.alerts()]
        r = await h.acknowledge(paused["id"])
        assert r.status_code == 409 and "already closed (by system at 09:17)" in r.json()["detail"]
        for unknown in ("999999", "abc", "-1"):
            r = await h.acknowledge(unknown)
            assert r.status_code == 404 and r.json()["detail"] == f"no alert '{unknown}'"


async def test_a_bad_rating_alert_is_left_alone_by_the_watch_and_closed_by_acknowledging(
        tmp_path, clock):
    async with hall(alerting_hall(tmp_path), clock) as h:
        def bad(tx, now):
            return raise_alert(tx, now, key="rating:T1",
                               kind="bad_rating", window="1", message="1号窗口 A001 评价：不满意")
        rating = await h.app.state.queue.run(bad, actor=Actor("evaluator"))
        clock.advance(hours=1)
        await h.check()
        [listed] = await h.alerts()
        assert listed["id"] == rating.id and listed["state"] == "open"
        r = await h.acknowledge(rating.id)
        assert r.status_code == 200
        assert (r.json()["state"], r.json()["acked_by"], r.json()["closed_by"]) == (
            "closed", "supervisor", "supervisor")
        assert await h.alerts() == []


async def test_the_days_alerts_whatever_their_state_and_refusals(tmp_path, clock):
    async with hall(alerting_hall(tmp_path, pause_min=15), clock) as h:
        await h.press("3", "pause")
        clock.advance(minutes=16)
        await h.check()
        await h.press("3", "resume")
        await h.press("2", "pause")
        clock.advance(minutes=16)
        await h.check()
        listed = await h.alerts("?state=all&date=2026-11-30")
        assert [(a["key"], a["state"]) for a in listed] == [("paused:2", "open"),
                                                            ("paused:3", "closed")]
        assert await h.alerts("?state=all") == listed                  # today by default
        assert await h.alerts("?state=all&date=2026-11-29") == []
        for query, words in (("?state=closed", "state: 'closed' is not one of open, all"),
                             ("?date=2026-11-30", "date: goes with state=all"),
                             ("?state=all&date=30.11.2026", "is not a date")):
            r = await h.client.get(f"{API}/alerts{query}", headers=AS["supervisor"])
            assert r.status_code == 422 and words in r.json()["detail"], r.text
        r = await h.client.get(f"{API}/alerts", headers=AS["kiosk"])
        assert r.status_code == 403


# -- the watch on its own -------------------------------------------------------------------

async def test_the_watch_looks_by_itself(tmp_path, clock):
    config = alerting_hall(tmp_path, pause_min=15, check_every_s=0.05)
    async with hall(config, clock) as h:
        await h.press("4", "pause")
        clock.advance(minutes=16)                       # no event, no call: its own round
        found = await eventually(lambda: h.open_of("paused"), bool,
                                 "the watch to look by itself", wait=5)
        assert [a["key"] for a in found] == ["paused:4"]


async def test_every_change_of_an_alert_is_in_the_audit_log(tmp_path, clock):
    async with hall(alerting_hall(tmp_path, pause_min=15), clock) as h:
        await h.press("3", "pause")
        clock.advance(minutes=16)
        await h.check()
        [alert] = await h.alerts()
        await h.acknowledge(alert["id"])
        await h.press("3", "resume")
        await h.check()
        entries = await h.app.state.queue.store.read(
            lambda tx: tx.audit_entries("2026-11-30", window="3"))
        about = [(e.actor.label, e.detail["state"]) for e in entries if e.alert == alert["id"]]
        assert about == [("system", "raised"), ("supervisor", "acknowledged"),
                         ("system", "closed")]


# -- a big hall -----------------------------------------------------------------------------

async def test_a_big_hall_is_looked_at_whole(tmp_path, clock):
    """150 windows, 10 services, 500 waiting tickets and a ticket at most windows: one
    check sees the long waits, the crowding and the long services. (How long the
    check takes is measured by benchmarks/alerts_check.py, in make bench.)"""
    base = alerting_hall(tmp_path, wait_min=30, waiting_per_window=1)
    services = tuple(Service(f"s{i}", f"事项{i}", chr(ord("A") + i), f"640100-{i:03d}-01",
                             thresholds=base.alerts.thresholds) for i in range(10))
    windows = tuple(Window(str(i), f"{i}号窗口", (f"s{i % 10}", f"s{(i + 3) % 10}"),
                           temporary=i > 140) for i in range(1, 151))
    config = replace(base, services=services, windows=windows, categories=())
    async with hall(config, clock) as h:
        queue = h.app.state.queue
        for window in windows[:140]:
            await queue.issue(window.services[0])
            await queue.call_next(window.id)
        for n in range(500):
            await queue.issue(f"s{n % 10}")
        clock.advance(minutes=45)
        await h.check()
        kinds = {a["kind"] for a in await h.alerts()}
        assert kinds == {"wait", "load", "serve"}
