"""Tickets printed at the kiosk: the real escpos driver, supervised, talking to an
emulated printer over a real loopback TCP socket or a pseudo-terminal.

The emulator decodes what it receives into a ticket model; these tests assert on
that model ("a line reads 不动产登记"), on the device states and events the hall
sees, and on the ticket's `print` field. Faults are made by changing what the
emulated printer reports (paper, cover) or does (goes silent, drops the link).
"""

from __future__ import annotations

import io
import logging
import threading
import types
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from PIL import Image

from drivers.base import Health, State
from drivers.escpos import Settings
from drivers.escpos.codec import PrinterStatus
from drivers.escpos.emulator import Decoder, EmulatedPrinter
from drivers.escpos.profiles import PROFILES
from drivers.escpos.connection import parse_connection
from kioskd.config import Config, Device
from conftest import demo_hall, device_in_state, device_view, eventually, serving, small_hall

API = "/api/v1"
TIMEOUT = 0.5          # the printers' timeout here: a silent printer costs this much
POLL = 0.1             # seconds between status polls
WAIT = 10.0            # how long a test waits for a state before it fails


def printer_device(device_id: str, connection: str, poll: float = POLL) -> Device:
    settings = Settings(parse_connection(connection), "gb18030", PROFILES["80mm"])
    return Device(device_id, "escpos", {"connection": connection}, settings=settings,
                  timeout=TIMEOUT, poll_interval=poll)


def hall_with_printers(tmp_path: Path, printer: str, fallback: str | None = None,
                       *, print_materials: bool = False, poll: float = POLL) -> Config:
    """The small hall, its kiosk printing on `printer` (and `fallback`); the printers
    are polled every `poll` seconds."""
    config = small_hall(tmp_path / "var")
    devices = {"printer_1": printer_device("printer_1", printer, poll)}
    kiosk = {"printer": "printer_1"}
    if fallback is not None:
        devices["printer_2"] = printer_device("printer_2", fallback, poll)
        kiosk["fallback_printer"] = "printer_2"
    devices["kiosk_1"] = Device("kiosk_1", "terminal", kiosk)
    return replace(config, devices=devices,
                   hall=replace(config.hall, print_materials=print_materials))


@pytest.fixture
def emulator():
    printer = EmulatedPrinter(encoding="gb18030", profile=PROFILES["80mm"])
    yield printer
    printer.close()


@pytest.fixture
def spare():
    printer = EmulatedPrinter(encoding="gb18030", profile=PROFILES["80mm"])
    yield printer
    printer.close()


def tcp(printer: EmulatedPrinter) -> str:
    return f"tcp://127.0.0.1:{printer.listen_tcp('127.0.0.1', 0)}"


def linked(printer: EmulatedPrinter, link: str) -> str:
    """The printer's connection over a loopback socket or a pseudo-terminal."""
    if link == "tcp":
        return tcp(printer)
    return f"serial://{printer.listen_pty()}?baudrate=115200"


class Hall:
    """The daemon in-process: an HTTP client and its event log."""

    def __init__(self, client: httpx.AsyncClient, app):
        self.client = client
        self.app = app

    async def issue(self, service: str = "property", **body) -> dict:
        r = await self.client.post(f"{API}/tickets", json={"service": service,
                                                          "terminal": "kiosk_1", **body})
        assert r.status_code == 201, r.text
        return r.json()

    async def device(self, device_id: str = "printer_1") -> dict:
        return await device_view(self.client, device_id)

    async def until(self, state: str, device_id: str = "printer_1") -> dict:
        """Poll the device until it is in `state` (fails after WAIT seconds)."""
        return await device_in_state(self.client, device_id, state, WAIT)

    def events(self, type: str) -> list[dict]:
        return [e.data for e in self.app.state.bus.since(0) or [] if e.type == type]

    async def published(self, device_id: str, state: str) -> list[str]:
        """The device's `device.changed` states, once the last says `state`: the
        state shows in /devices a moment before its event is committed."""
        async def states() -> list[str]:
            return [e["state"] for e in self.events("device.changed")
                    if e["device"] == device_id]
        return await eventually(states, lambda seen: seen and seen[-1] == state,
                                f"{device_id}'s device.changed to say {state}", WAIT,
                                every=0.01)


@asynccontextmanager
async def hall(config: Config) -> AsyncIterator[Hall]:
    async with serving(config) as (app, client):
        yield Hall(client, app)


def printed(emulator: EmulatedPrinter, count: int = 1):
    return emulator.wait_for_tickets(count, timeout=WAIT)[count - 1]


# -- a ticket on paper --------------------------------------------------------------


@pytest.mark.parametrize("link", ["tcp", "pty"])
async def test_a_ticket_taken_at_the_kiosk_prints_in_chinese_with_its_qr_code(
        tmp_path, emulator, link):
    async with hall(hall_with_printers(tmp_path, linked(emulator, link))) as h:
        await h.until("ready")
        ticket = await h.issue("property")
        assert ticket["print"] == {"device": "printer_1", "status": "printed", "error": None}

        paper = printed(emulator)
        assert paper.find("测试政务服务中心") is not None
        assert paper.find("不动产登记") is not None
        number = paper.find(ticket["number"])
        assert number is not None and number.width >= 2 and number.height >= 2
        assert "1号窗口" in paper.text() and "4号窗口" in paper.text()
        assert "临时窗口" not in paper.text()          # a temporary window is not promised
        assert paper.qr_codes == [f"http://127.0.0.1:8080/ui/ticket/{ticket['id']}"]
        assert paper.cut
        assert "?" not in paper.text()


async def test_the_materials_line_is_printed_when_the_hall_wants_the_guide_on_paper(
        tmp_path, emulator):
    async with hall(hall_with_printers(tmp_path, tcp(emulator), print_materials=True)) as h:
        await h.until("ready")
        await h.issue("property")
        assert "不动产权属证书" in printed(emulator).text()


async def test_a_ticket_taken_without_printing_is_not_printed(tmp_path, emulator):
    async with hall(hall_with_printers(tmp_path, tcp(emulator))) as h:
        await h.until("ready")
        ticket = await h.issue("property", print=False)
        assert ticket["print"]["status"] == "none"
        await h.issue("business")
        assert printed(emulator).find("企业开办") is not None
        assert len(emulator.tickets) == 1


# -- faults -------------------------------------------------------------------------


@pytest.mark.parametrize("link", ["tcp", "pty"])
async def test_paper_near_end_degrades_the_printer_raises_an_alert_and_still_prints(
        tmp_path, emulator, link):
    async with hall(hall_with_printers(tmp_path, linked(emulator, link))) as h:
        await h.until("ready")
        emulator.status = PrinterStatus(paper="near_end")
        device = await h.until("degraded")
        assert device["detail"]["paper"] == "near_end"
        assert device["last_error"] == "paper near end"
        assert [a["kind"] for a in h.events("alert")] == ["paper_near_end"]

        ticket = await h.issue()
        assert ticket["print"]["status"] == "printed"
        assert printed(emulator).find(ticket["number"]) is not None

        emulator.status = PrinterStatus(paper="ok")
        await h.until("ready")
        assert await h.published("printer_1", "ready") == ["ready", "degraded", "ready"]
        assert [a["state"] for a in h.events("alert")] == ["raised", "closed"]


@pytest.mark.parametrize("link", ["tcp", "pty"])
@pytest.mark.parametrize("fault, reason", [
    (PrinterStatus(paper="out"), "paper out"),
    (PrinterStatus(cover_open=True, online=False), "cover open"),
])
async def test_a_printer_that_cannot_print_fails_the_print_not_the_issue_and_reprints_when_mended(
        tmp_path, emulator, fault, reason, link):
    async with hall(hall_with_printers(tmp_path, linked(emulator, link))) as h:
        await h.until("ready")
        emulator.status = fault
        device = await h.until("offline")
        assert device["last_error"] == reason

        ticket = await h.issue("property")
        assert ticket["status"] == "waiting"
        assert ticket["print"]["status"] == "failed"
        assert reason in ticket["print"]["error"]
        assert emulator.tickets == []

        r = await h.client.post(f"{API}/tickets/{ticket['id']}/reprint")
        assert r.status_code == 503
        assert r.json()["device"]["state"] == "offline"
        assert r.json()["device"]["last_error"] == reason

        called = await h.client.post(f"{API}/windows/1/call-next")
        assert called.json()["number"] == ticket["number"]      # the queue never noticed

        emulator.status = PrinterStatus()
        await h.until("ready")
        r = await h.client.post(f"{API}/tickets/{ticket['id']}/reprint")
        assert r.status_code == 200, r.text
        assert r.json()["print"] == {"device": "printer_1", "status": "printed", "error": None}
        assert printed(emulator).find(ticket["number"]) is not None


async def test_a_fault_found_while_printing_is_reported_before_the_next_poll(tmp_path, emulator):
    async with hall(hall_with_printers(tmp_path, tcp(emulator), poll=3600)) as h:
        await h.until("ready")
        emulator.status = PrinterStatus(paper="out")
        ticket = await h.issue()                       # the status asked before the job says no
        assert ticket["print"]["status"] == "failed"
        assert "paper out" in ticket["print"]["error"]
        assert (await h.device())["state"] == "offline"
        assert emulator.tickets == []


@pytest.mark.parametrize("link", ["tcp", "pty"])
async def test_a_silent_printer_costs_its_timeout_and_the_hall_goes_on(tmp_path, emulator, link):
    async with hall(hall_with_printers(tmp_path, linked(emulator, link))) as h:
        await h.until("ready")
        emulator.silent = True
        ticket = await h.issue()
        assert ticket["print"]["status"] == "failed"
        silent = "escpos device 'printer_1' is offline: no reply from "
        assert ticket["print"]["error"].startswith(silent), ticket["print"]["error"]
        assert f"within {TIMEOUT:g} s" in ticket["print"]["error"]
        await h.until("offline")
        # issue and call keep answering while the printer is broken
        other = await h.issue("social")
        assert other["print"]["status"] == "failed"
        assert other["print"]["error"].startswith(silent), other["print"]["error"]
        called = await h.client.post(f"{API}/windows/3/call-next")
        assert called.json()["number"] == other["number"]

        emulator.silent = False
        await h.until("ready")
        r = await h.client.post(f"{API}/tickets/{ticket['id']}/reprint")
        assert r.json()["print"]["status"] == "printed"
        assert printed(emulator).find(ticket["number"]) is not None


async def test_a_dropped_connection_is_logged_once_and_the_printer_comes_back(
        tmp_path, emulator, caplog):
    caplog.set_level(logging.INFO, logger="kioskd.devices")
    async with hall(hall_with_printers(tmp_path, tcp(emulator))) as h:
        await h.until("ready")
        emulator.drop_connections()
        await h.until("offline")
        device = await h.until("ready")
        assert "127.0.0.1" in device["last_error"]          # what the drop looked like, kept
        ticket = await h.issue()
        assert ticket["print"]["status"] == "printed"
    lines = [r.getMessage() for r in caplog.records if r.name == "kioskd.devices"]
    assert sum("-> offline" in line for line in lines) == 1, lines


async def test_a_printer_that_is_not_there_reconnects_with_backoff_and_logs_once(
        tmp_path, emulator, caplog):
    caplog.set_level(logging.INFO, logger="kioskd.devices")
    port = emulator.listen_tcp("127.0.0.1", 0)
    emulator.close()                                  # nothing listens there now
    async with hall(hall_with_printers(tmp_path, f"tcp://127.0.0.1:{port}")) as h:
        await eventually(lambda: h.app.state.devices.get("printer_1").attempts,
                         lambda n: n >= 2, "two connection attempts", WAIT)
        device = await h.device()
        assert device["state"] == "offline"
        assert "127.0.0.1" in device["last_error"]
        ticket = await h.issue()
        assert ticket["print"]["status"] == "failed"
        assert "printer_1" in ticket["print"]["error"]

        again = EmulatedPrinter(encoding="gb18030", profile=PROFILES["80mm"])
        try:
            again.listen_tcp("127.0.0.1", port)
            await h.until("ready")
        finally:
            again.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "kioskd.devices"]
    assert sum("offline after 1 attempt" in line for line in lines) == 1, lines
    assert any("recovered after" in line for line in lines), lines


async def test_the_fallback_printer_prints_while_the_first_is_out_of_paper(
        tmp_path, emulator, spare):
    async with hall(hall_with_printers(tmp_path, tcp(emulator), tcp(spare))) as h:
        await h.until("ready", "printer_1")
        await h.until("ready", "printer_2")
        emulator.status = PrinterStatus(paper="out")
        await h.until("offline", "printer_1")
        ticket = await h.issue()
        assert ticket["print"] == {"device": "printer_2", "status": "printed", "error": None}
        assert printed(spare).find(ticket["number"]) is not None
        assert emulator.tickets == []


# -- the technician's routes -----------------------------------------------------------


async def test_the_technician_sees_every_device_prints_a_test_page_and_reconnects(
        tmp_path, emulator):
    async with hall(hall_with_printers(tmp_path, tcp(emulator))) as h:
        await h.until("ready")
        r = await h.client.get(f"{API}/devices")
        assert r.status_code == 200
        by_id = {d["id"]: d for d in r.json()}
        assert by_id["printer_1"]["driver"] == "escpos"
        assert by_id["printer_1"]["detail"]["profile"] == "80mm"
        assert by_id["printer_1"]["detail"]["paper"] == "ok"
        assert by_id["kiosk_1"]["state"] == "offline"        # until its page reports
        assert by_id["kiosk_1"]["detail"]["printer"] == "printer_1"
        assert by_id["kiosk_1"]["detail"]["printer_state"] == "ready"
        for device in by_id.values():
            assert set(device) == {"id", "driver", "state", "detail", "last_error", "since"}

        r = await h.client.post(f"{API}/devices/printer_1/test")
        assert r.status_code == 200, r.text
        page = printed(emulator)
        assert "80mm" in page.text() and "gb18030" in page.text().lower()

        r = await h.client.post(f"{API}/devices/printer_1/reconnect")
        assert r.status_code == 200
        assert r.json()["state"] == "ready"

        assert (await h.client.get(f"{API}/devices/nope")).status_code == 404
        r = await h.client.post(f"{API}/devices/kiosk_1/test")
        assert r.status_code == 409


async def test_a_test_page_on_a_printer_out_of_paper_answers_503_with_its_state(
        tmp_path, emulator):
    async with hall(hall_with_printers(tmp_path, tcp(emulator))) as h:
        await h.until("ready")
        emulator.status = PrinterStatus(paper="out")
        await h.until("offline")
        r = await h.client.post(f"{API}/devices/printer_1/test")
        assert r.status_code == 503
        body = r.json()
        assert "paper out" in body["detail"]
        assert body["device"]["id"] == "printer_1" and body["device"]["state"] == "offline"


async def test_a_disabled_printer_is_shown_disabled_and_its_tickets_say_so(tmp_path, emulator):
    config = hall_with_printers(tmp_path, tcp(emulator))
    devices = dict(config.devices)
    devices["printer_1"] = replace(devices["printer_1"], enabled=False)
    async with hall(replace(config, devices=devices)) as h:
        printer = await h.device("printer_1")
        assert printer["state"] == "disabled"
        assert "enabled = false" in printer["last_error"]
        ticket = await h.issue()
        assert ticket["print"]["status"] == "failed"
        assert "disabled" in ticket["print"]["error"]
        r = await h.client.post(f"{API}/devices/printer_1/test")
        assert r.status_code == 503


async def test_a_printer_that_stops_coming_back_is_given_up_and_reconnected_by_hand(
        tmp_path, emulator):
    port = emulator.listen_tcp("127.0.0.1", 0)
    emulator.close()
    config = hall_with_printers(tmp_path, f"tcp://127.0.0.1:{port}")
    devices = {**config.devices, "printer_1": replace(config.devices["printer_1"], retry_limit=2)}
    async with hall(replace(config, devices=devices)) as h:
        device = await h.until("disabled")
        assert device["last_error"].startswith("gave up after 2 attempts: ")
        again = EmulatedPrinter(encoding="gb18030", profile=PROFILES["80mm"])
        try:
            again.listen_tcp("127.0.0.1", port)
            r = await h.client.post(f"{API}/devices/printer_1/reconnect")
            assert r.status_code == 200, r.text
            assert r.json()["state"] == "ready"
        finally:
            again.close()


async def test_a_printer_behind_a_device_file_prints_without_reading_back(tmp_path):
    """file:// links (/dev/usb/lp0) only write: the ticket is sent, the state stays ready."""
    lp0 = tmp_path / "lp0"
    lp0.touch()
    async with hall(hall_with_printers(tmp_path, f"file://{lp0}")) as h:
        device = await h.until("ready")
        assert "cannot read back" in device["detail"]["status"]
        ticket = await h.issue("social")
        assert ticket["print"]["status"] == "printed"
    decoder = Decoder("gb18030", lambda: PrinterStatus())
    decoder.feed(lp0.read_bytes())
    [paper] = decoder.take_tickets()
    assert paper.find(ticket["number"]) is not None and paper.find("社保业务") is not None


async def test_the_demo_halls_emulated_printer_links_its_last_ticket_as_png(tmp_path):
    free = EmulatedPrinter(encoding="gb18030", profile=PROFILES["80mm"])
    port = free.listen_tcp("127.0.0.1", 0)      # a free port for the daemon's own emulator
    free.close()
    config = demo_hall(tmp_path, port)
    async with hall(config) as h:
        device = await h.until("ready")
        assert device["detail"]["emulator"]["last_png"] is None
        ticket = await h.issue("property")
        assert ticket["print"]["status"] == "printed"
        device = await h.device()
        link = device["detail"]["emulator"]["last_png"]
        assert link == f"{API}/devices/printer_1/last-ticket.png"
        r = await h.client.get(link)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        picture = Image.open(io.BytesIO(r.content))
        assert picture.width == PROFILES["80mm"].dots_per_line
        jobs = tmp_path / "var" / "emulators" / "printer_1"
        assert len(list(jobs.glob("*.json"))) == 1
        r = await h.client.get(f"{API}/devices/kiosk_1/last-ticket.png")
        assert r.status_code == 409


class HangingDriver:
    """A driver whose poll never returns, like a library call that ignores its
    timeout: no transport can make this happen, so it is a stand-in."""

    released = threading.Event()

    def __init__(self, *args, **kwargs):
        self.polls = 0

    def open(self) -> None:
        pass

    def identify(self) -> dict:
        return {}

    def close(self) -> None:
        HangingDriver.released.set()

    def self_test(self) -> dict:
        return {}

    def poll(self):
        self.polls += 1
        if self.polls > 1:
            HangingDriver.released.wait(30)
        return Health(State.READY)


async def test_a_driver_call_that_hangs_is_abandoned_and_the_hall_goes_on(tmp_path, monkeypatch):
    family = types.SimpleNamespace(configure=None, create=lambda *a, **k: HangingDriver())
    monkeypatch.setattr("drivers.family", lambda name: family if name == "hanging" else None)
    config = small_hall(tmp_path / "var")
    hanging = Device("lamp", "hanging", {}, timeout=0.2, poll_interval=0.05)
    async with hall(replace(config, devices={"lamp": hanging})) as h:
        await h.until("ready", "lamp")
        device = await h.until("offline", "lamp")
        assert device["last_error"] == "no answer within 1.2 s"      # timeout + 1 s margin
        assert HangingDriver.released.is_set()       # its link was closed from another thread
        r = await h.client.post(f"{API}/tickets", json={"service": "property"})
        assert r.status_code == 201


async def test_a_reprint_that_fails_answers_503_and_the_ticket_says_so(tmp_path, emulator):
    async with hall(hall_with_printers(tmp_path, tcp(emulator), poll=3600)) as h:
        await h.until("ready")
        ticket = await h.issue()
        assert ticket["print"]["status"] == "printed"
        emulator.status = PrinterStatus(paper="out")       # not polled yet: still `ready`
        r = await h.client.post(f"{API}/tickets/{ticket['id']}/reprint")
        assert r.status_code == 503
        assert r.json()["detail"].startswith(f"{ticket['number']} not printed: ")
        assert "paper out" in r.json()["detail"]
        assert r.json()["device"]["state"] == "offline"
        kept = (await h.client.get(f"{API}/tickets/{ticket['id']}")).json()
        assert kept["print"]["status"] == "failed" and "paper out" in kept["print"]["error"]
        assert len(emulator.tickets) == 1


async def test_the_demo_printer_prints_on_a_standalone_emulator_holding_its_port(tmp_path, emulator):
    port = emulator.listen_tcp("127.0.0.1", 0)             # `kioskd emulate printer` got there first
    config = demo_hall(tmp_path, port)
    async with hall(config) as h:
        device = await h.until("ready")
        assert "emulator" not in device["detail"]
        ticket = await h.issue("property")
        assert ticket["print"]["status"] == "printed"
        assert printed(emulator).find(ticket["number"]) is not None


class BuggyPrinter(HangingDriver):
    """A driver that lets a library's exception out of print_ticket: a bug no
    transport can provoke on purpose, so a stand-in."""

    def poll(self):
        return Health(State.READY)

    def print_ticket(self, slip):
        raise KeyError("boom")


async def test_a_driver_bug_while_printing_fails_the_print_not_the_issue(tmp_path, monkeypatch):
    family = types.SimpleNamespace(configure=None, create=lambda *a, **k: BuggyPrinter())
    monkeypatch.setattr("drivers.family", lambda name: family if name == "buggy" else None)
    config = small_hall(tmp_path / "var")
    devices = {"printer_1": Device("printer_1", "buggy", {}, poll_interval=3600),
               "kiosk_1": Device("kiosk_1", "terminal", {"printer": "printer_1"})}
    async with hall(replace(config, devices=devices)) as h:
        await h.until("ready")
        ticket = await h.issue()
        assert ticket["status"] == "waiting"
        assert ticket["print"]["status"] == "failed"
        assert "driver error: KeyError" in ticket["print"]["error"]
