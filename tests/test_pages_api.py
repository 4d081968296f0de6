"""The API the pages stand on: the hall and its kiosk categories, where a service
is served, what waits for a window, the latest calls, a ticket's QR code, and a
terminal that is as alive as its page."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from conftest import Clock, demo_hall, running, serving, small_hall
from daemon import free_port

from kioskd.config import Device

API = "/api/v1"


async def test_the_kiosk_learns_the_hall_its_categories_and_where_each_service_is_served(tmp_path):
    config = demo_hall(tmp_path, free_port())
    async with running(config, Clock()) as client:
        hall = (await client.get(f"{API}/hall")).json()
        assert hall["name"] == "银川市民大厅（演示）"
        assert [c["id"] for c in hall["categories"]] == ["realty", "enterprise", "social", "housing"]
        assert hall["categories"][1]["services"] == ["business", "investment", "construction"]
        assert hall["now"].endswith("+08:00")

        services = {s["id"]: s for s in (await client.get(f"{API}/services")).json()}
        property_ = services["property"]
        assert property_["category"] == "realty"
        assert property_["name_en"] == "Real estate registration"
        assert property_["guide"]["where"] == "一楼东侧 3号、4号窗口"
        assert [(w["id"], w["state"]) for w in property_["windows"]] == [
            ("3", "open"), ("4", "open"), ("T1", "closed")]


async def test_services_in_no_category_are_listed_last_under_other(tmp_path):
    async with running(small_hall(tmp_path), Clock()) as client:
        hall = (await client.get(f"{API}/hall")).json()
        assert hall["categories"] == [{"id": "other", "name": "其他服务", "name_en": "Other services",
                                       "services": ["property", "business", "social"]}]
        services = (await client.get(f"{API}/services")).json()
        assert {s["category"] for s in services} == {"other"}
        assert services[0]["name_en"] is None and services[0]["guide"]["where"] == ""


async def test_a_window_sees_what_it_would_call_next_in_order(tmp_path):
    clock = Clock()
    async with running(small_hall(tmp_path), clock) as client:
        numbers = []
        for service, priority in [("property", False), ("business", False), ("social", False),
                                  ("property", True)]:
            r = await client.post(f"{API}/tickets", json={"service": service, "priority": priority})
            numbers.append(r.json()["number"])
            clock.advance(60)
        waiting = (await client.get(f"{API}/windows/1/waiting")).json()
        # window 1 serves property and business: the priority ticket first, then the oldest
        assert waiting["count"] == 3
        assert [t["number"] for t in waiting["tickets"]] == ["A002", "A001", "B001"]
        assert waiting["tickets"][0]["priority"] is True
        assert (await client.get(f"{API}/windows/1/waiting?limit=1")).json()["count"] == 3
        called = (await client.post(f"{API}/windows/1/call-next")).json()
        assert called["number"] == "A002"            # the list was call-next's order
        current = (await client.get(f"{API}/windows/1")).json()["current"]
        assert current["service_name"] == "不动产登记" and current["priority"] is True
        assert current["issued_at"] and current["started_at"] is None
        assert (await client.get(f"{API}/windows/nope/waiting")).status_code == 404


async def test_the_latest_calls_one_per_ticket_newest_first(tmp_path):
    clock = Clock()
    async with running(small_hall(tmp_path), clock) as client:
        for _ in range(3):
            await client.post(f"{API}/tickets", json={"service": "property"})
        await client.post(f"{API}/windows/1/call-next")
        clock.advance(30)
        await client.post(f"{API}/windows/4/call-next")
        clock.advance(30)
        await client.post(f"{API}/windows/1/recall")
        calls = (await client.get(f"{API}/calls")).json()
        assert [(c["number"], c["window_name"], c["recalled"]) for c in calls] == [
            ("A001", "1号窗口", True), ("A002", "4号窗口", False)]
        assert len((await client.get(f"{API}/calls?limit=1")).json()) == 1
        clock.advance(hours=24)                      # tomorrow: yesterday's calls are gone
        assert (await client.get(f"{API}/calls")).json() == []


async def test_a_ticket_qr_code_leads_to_its_status_page(tmp_path):
    async with running(small_hall(tmp_path), Clock()) as client:
        ticket = (await client.post(f"{API}/tickets", json={"service": "property"})).json()
        r = await client.get(f"{API}/tickets/{ticket['id']}/qr.svg")
        assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml"
        assert r.text.startswith("<svg") and "<path" in r.text
        assert (await client.get(f"{API}/tickets/nope/qr.svg")).status_code == 404


async def test_a_terminal_is_ready_while_its_page_reports_and_offline_when_it_stops(tmp_path):
    clock = Clock()
    config = small_hall(tmp_path)
    config = replace(config, devices={**config.devices, "kiosk_1": Device(
        "kiosk_1", "terminal", {"printer": "printer_1", "offline_after_s": 10.0})})
    async with serving(config, clock) as (app, client):
        kiosk = (await client.get(f"{API}/devices/kiosk_1")).json()
        assert kiosk["state"] == "offline"
        assert kiosk["last_error"] == "no page has reported since the daemon started"
        async with app.state.bus.subscribe() as events:
            r = await client.post(f"{API}/devices/kiosk_1/heartbeat",
                                  json={"page": "kiosk", "screen": "1080x1920", "elder": True})
            assert r.status_code == 200
            first_key = r.json()["reload_key"]
            assert r.json()["state"] == "ready" and r.json()["interval_s"] > 0
            changed = await asyncio.wait_for(events.get(), 5)
            assert (changed.type, changed.data["device"], changed.data["state"]) == (
                "device.changed", "kiosk_1", "ready")
            kiosk = (await client.get(f"{API}/devices/kiosk_1")).json()
            assert kiosk["state"] == "ready"
            assert kiosk["detail"]["page"] == {"page": "kiosk", "screen": "1080x1920",
                                               "elder": True, "address": "127.0.0.1"}

            clock.advance(11)                        # silent past offline_after_s
            changed = await asyncio.wait_for(events.get(), 5)
            assert (changed.data["device"], changed.data["state"]) == ("kiosk_1", "offline")
            assert "has not reported for 10 s" in changed.data["problem"]

        r = await client.post(f"{API}/devices/kiosk_1/reload")
        assert r.status_code == 200
        r = await client.post(f"{API}/devices/kiosk_1/heartbeat")
        assert r.json()["state"] == "ready" and r.json()["reload_key"] != first_key

        assert (await client.post(f"{API}/devices/printer_1/heartbeat")).status_code == 409
        assert (await client.post(f"{API}/devices/printer_1/reload")).status_code == 409
        assert (await client.post(f"{API}/devices/nope/heartbeat")).status_code == 404
        r = await client.post(f"{API}/devices/kiosk_1/heartbeat", json={"page": "x" * 41})
        assert r.status_code == 422


async def test_a_service_nobody_serves_now_says_so_and_still_has_an_estimate(tmp_path):
    async with running(small_hall(tmp_path), Clock()) as client:
        await client.post(f"{API}/tickets", json={"service": "social"})
        assert (await client.post(f"{API}/windows/3/close")).status_code == 200
        social = {s["id"]: s for s in (await client.get(f"{API}/services")).json()}["social"]
        assert social["open_windows"] == 0             # window 3 closed, 9 (temporary) too
        assert social["est_wait_min"] is not None      # as if its usual window were open
        line = {s["id"]: s for s in (await client.get(f"{API}/queue")).json()["services"]}["social"]
        assert line["open_windows"] == 0
