"""Early warnings: GET /alerts as the device layer raises and clears them, across
restarts (moved from test_stats.py; to be rewritten for the alerts table)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from conftest import device_in_state, running, serving, small_hall
from drivers.escpos import Settings
from drivers.escpos.codec import PrinterStatus
from drivers.escpos.connection import parse_connection
from drivers.escpos.emulator import EmulatedPrinter
from drivers.escpos.profiles import PROFILES
from kioskd.config import Config, Device

API = "/api/v1"


# -- alerts --------------------------------------------------------------------------------

async def alerts(client: httpx.AsyncClient) -> list[dict]:
    r = await client.get(f"{API}/alerts")
    assert r.status_code == 200, r.text
    return r.json()


def alert(device: str, kind: str, state: str, message: str = "paper near end") -> dict:
    """An alert as the device layer sends it (devices.Supervised.update_alerts)."""
    return {"device": device, "kind": kind, "message": message, "state": state}


async def test_alerts_are_open_until_cleared_newest_first_and_survive_a_restart(tmp_path, clock):
    config = small_hall(tmp_path / "var")        # printer_1 is disabled: never heard from
    async with serving(config, clock) as (app, client):
        assert await alerts(client) == []
        emit = app.state.devices.emit
        await emit("alert", alert("printer_1", "paper_near_end", "raised"))
        clock.advance(minutes=1)
        await emit("alert", alert("printer_1", "cover_open", "raised", "cover open"))
        await emit("alert", alert("board_7", "no_answer", "raised", "gone"))  # not in this hall
        listed = await alerts(client)
        assert [(a["device"], a["kind"]) for a in listed] == [
            ("printer_1", "cover_open"), ("printer_1", "paper_near_end")]
        near_end = listed[1]
        assert near_end == {"id": near_end["id"], "kind": "paper_near_end", "device": "printer_1",
                            "window": None, "service": None, "message": "paper near end",
                            "raised_at": "2026-11-30T09:00:00+08:00"}
        await emit("alert", alert("printer_1", "cover_open", "cleared", "cover open"))
        assert [a["kind"] for a in await alerts(client)] == ["paper_near_end"]

    async with serving(config, clock) as (app, client):        # the daemon restarted
        assert await alerts(client) == [near_end]
        await app.state.devices.emit("alert", alert("printer_1", "paper_near_end", "cleared"))
        assert await alerts(client) == []
        await app.state.devices.emit("alert", alert("printer_1", "paper_near_end", "raised"))
        again = await alerts(client)
        assert len(again) == 1 and again[0]["id"] > near_end["id"]


def printer_hall(tmp_path: Path, printer: EmulatedPrinter) -> Config:
    """The small hall whose kiosk prints on `printer`, polled every 0.1 s."""
    connection = f"tcp://127.0.0.1:{printer.listen_tcp('127.0.0.1', 0)}"
    settings = Settings(parse_connection(connection), "gb18030", PROFILES["80mm"])
    config = small_hall(tmp_path / "var")
    return replace(config, devices={
        "printer_1": Device("printer_1", "escpos", {"connection": connection},
                            settings=settings, timeout=0.5, poll_interval=0.1),
        "kiosk_1": Device("kiosk_1", "terminal", {"printer": "printer_1"})})


async def alerts_become(client: httpx.AsyncClient, kinds: list[str]) -> list[dict]:
    """Poll /alerts until it lists `kinds` (the printer is polled every 0.1 s)."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        listed = await alerts(client)
        if [a["kind"] for a in listed] == kinds:
            return listed
        assert asyncio.get_running_loop().time() < deadline, f"alerts stayed {listed}"
        await asyncio.sleep(0.02)


@pytest.fixture
def printer():
    emulated = EmulatedPrinter(encoding="gb18030", profile=PROFILES["80mm"])
    yield emulated
    emulated.close()


async def test_a_printer_near_its_paper_end_is_an_alert_until_paper_is_loaded(tmp_path, printer):
    config = printer_hall(tmp_path, printer)
    async with running(config, time.time) as client:
        printer.status = PrinterStatus(paper="near_end")
        [raised] = await alerts_become(client, ["paper_near_end"])
        assert raised["device"] == "printer_1" and "paper" in raised["message"]
        printer.status = PrinterStatus(paper="ok")
        await alerts_become(client, [])


async def test_paper_loaded_while_the_daemon_was_down_ends_the_alert_once_the_printer_answers(
        tmp_path, printer):
    config = printer_hall(tmp_path, printer)
    async with running(config, time.time) as client:
        printer.status = PrinterStatus(paper="near_end")
        [raised] = await alerts_become(client, ["paper_near_end"])
    printer.status = PrinterStatus(paper="ok")                   # loaded while stopped
    async with serving(config, time.time) as (app, client):
        await device_in_state(client, "printer_1", "ready")
        assert await alerts(client) == []
        log = [e.data for e in app.state.bus.since(0) or [] if e.type == "alert"]
        assert log == [raised_data(raised)]                      # no `cleared` was ever sent
    printer.status = PrinterStatus(paper="near_end")
    async with running(config, time.time) as client:             # near its end again
        await device_in_state(client, "printer_1", "degraded")
        [again] = await alerts(client)
        assert again["kind"] == "paper_near_end" and again["id"] > raised["id"]


def raised_data(listed: dict) -> dict:
    return {"device": listed["device"], "kind": listed["kind"], "message": listed["message"],
            "state": "raised"}


