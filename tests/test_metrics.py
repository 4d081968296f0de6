"""GET /metrics: a scripted day in a hall, scraped over HTTP after every step.

The real application runs behind a real uvicorn server, with a real escpos
driver talking to an emulated printer over loopback TCP. After each step the
test scrapes /metrics, parses it with Prometheus's own text parser and asserts
that exactly the expected series moved, by exactly the expected amounts, and
nothing else did. The hall's clock is the test's, so waits are exact.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

import httpx
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families

from conftest import Clock, device_in_state, eventually, small_hall
from drivers.escpos.codec import PrinterStatus
from drivers.escpos.emulator import EmulatedPrinter
from drivers.escpos.profiles import PROFILES
from drivers.voice.speaker import read_log
from kioskd.config import Auth
from kioskd.metrics import WAIT_BUCKETS
from test_api import served
from test_printing import hall_with_printers, tcp
from test_voice import hall_config, speaker, voice_table

API = "/api/v1"
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"     # Prometheus's text format


# -- reading /metrics ---------------------------------------------------------------------------

def key(name: str, **labels: str) -> str:
    """A series as Prometheus writes it: `name{a="1",b="2"}`, labels sorted."""
    inside = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inside}}}" if inside else name


@dataclass
class Scrape:
    text: str
    samples: dict[str, float]

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples[key(name, **labels)]


async def scrape(http: httpx.AsyncClient) -> Scrape:
    r = await http.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == TEXT_FORMAT
    samples = {}
    for family in text_string_to_metric_families(r.text):      # the whole text parses
        for sample in family.samples:
            samples[key(sample.name, **sample.labels)] = sample.value
    return Scrape(r.text, samples)


# series whose values are not the hall's doing: the process's, and real latencies
NOT_THE_HALLS = re.compile(r"^process_|^kioskd_call_next_duration_seconds_(sum|bucket)")


def moved(before: Scrape, after: Scrape) -> dict[str, float]:
    """Every series of the hall whose value changed, and by how much (a new one from 0)."""
    changes = {}
    for name, value in after.samples.items():
        if NOT_THE_HALLS.search(name):
            continue
        change = value - before.samples.get(name, 0.0)
        if change:
            changes[name] = change
    assert before.samples.keys() - after.samples.keys() == set(), "series disappeared"
    return changes


def observed(name: str, buckets: tuple[float, ...], *values: float, **labels: str
             ) -> dict[str, float]:
    """What observing `values` moves in histogram `name`: its buckets, count and sum."""
    changes = {key(f"{name}_count", **labels): len(values),
               key(f"{name}_sum", **labels): sum(values),
               key(f"{name}_bucket", le="+Inf", **labels): len(values)}
    for bound in buckets:
        if inside := sum(1 for v in values if v <= bound):
            changes[key(f"{name}_bucket", le=str(float(bound)), **labels)] = inside
    return changes


def waited(service: str, *seconds: float) -> dict[str, float]:
    return observed("kioskd_ticket_wait_seconds", WAIT_BUCKETS, *seconds, service=service)


def issued(service: str, priority: bool = False, count: int = 1) -> dict[str, float]:
    return {key("kioskd_tickets_issued_total", service=service,
                priority="true" if priority else "false"): count}


def called(service: str, window: str) -> dict[str, float]:
    return {key("kioskd_tickets_called_total", service=service, window=window): 1,
            key("kioskd_call_next_duration_seconds_count"): 1}


def finished(service: str, outcome: str, count: int = 1) -> dict[str, float]:
    return {key("kioskd_tickets_finished_total", service=service, outcome=outcome): count}


def waiting(**change: int) -> dict[str, float]:
    return {key("kioskd_tickets_waiting", service=s): n for s, n in change.items()}


def device(device_id: str, driver: str, before: str, after: str) -> dict[str, float]:
    return {key("kioskd_device_state", device=device_id, driver=driver, state=before): -1,
            key("kioskd_device_state", device=device_id, driver=driver, state=after): 1}


class Day:
    """The hall over HTTP, scraped after each step."""

    def __init__(self, http: httpx.AsyncClient, last: Scrape):
        self.http = http
        self.last = last

    async def step(self) -> dict[str, float]:
        """What moved since the last step."""
        now = await scrape(self.http)
        changes, self.last = moved(self.last, now), now
        return changes

    async def issue(self, service: str, **body) -> dict:
        r = await self.http.post(f"{API}/tickets", json={"service": service, **body})
        assert r.status_code == 201, r.text
        return r.json()

    async def press(self, window: str, action: str, **body) -> dict:
        r = await self.http.post(f"{API}/windows/{window}/{action}", json=body or None)
        assert r.status_code == 200, r.text
        return r.json()

    async def printer(self, state: str) -> None:
        await device_in_state(self.http, "printer_1", state)


# -- the scripted day ---------------------------------------------------------------------------

async def test_the_counters_and_gauges_move_as_a_scripted_day_runs(tmp_path):
    clock = Clock()
    printer = EmulatedPrinter(encoding="gb18030", profile=PROFILES["80mm"])
    try:
        config = hall_with_printers(tmp_path, tcp(printer))
        async with served(config, clock) as (base, app), \
                httpx.AsyncClient(base_url=base, timeout=10) as http:
            await device_in_state(http, "printer_1", "ready")
            opened = await scrape(http)
            for service in ("property", "business", "social"):
                assert opened("kioskd_tickets_waiting", service=service) == 0
                assert opened("kioskd_tickets_issued_total", service=service,
                              priority="false") == 0
            assert opened("kioskd_tickets_called_total", service="social", window="3") == 0
            assert opened("kioskd_print_failures_total", device="printer_1") == 0
            assert [opened("kioskd_windows", state=s) for s in ("open", "paused", "closed")] \
                == [4, 0, 1]                                   # temporary window 9 is closed
            assert opened("kioskd_device_state", device="printer_1", driver="escpos",
                          state="ready") == 1
            assert opened("kioskd_device_state", device="kiosk_1", driver="terminal",
                          state="offline") == 1                # no page has reported
            assert opened("kioskd_event_stream_clients") == 0
            assert opened("kioskd_call_next_duration_seconds_count") == 0
            day = Day(http, opened)

            # 9:00 five people take numbers: A001, A002, A003 (priority), B001, C001
            taken = [await day.issue(service, priority=priority) for service, priority in (
                ("property", False), ("property", False), ("property", True),
                ("business", False), ("social", False))]
            assert [t["number"] for t in taken] == ["A001", "A002", "A003", "B001", "C001"]
            assert await day.step() == {
                **issued("property", count=2), **issued("property", priority=True),
                **issued("business"), **issued("social"),
                **waiting(property=3, business=1, social=1)}

            # 9:12 window 4 calls: the priority ticket first, after 12 minutes
            clock.advance(minutes=12)
            assert (await day.press("4", "call-next"))["number"] == "A003"
            assert await day.step() == {**called("property", "4"), **waited("property", 720),
                                        **waiting(property=-1)}

            await day.press("4", "recall")
            assert await day.step() == {
                key("kioskd_tickets_recalled_total", window="4"): 1}

            await day.press("4", "complete")
            assert await day.step() == finished("property", "done")

            # 9:15 A001 is called after 15 minutes and does not come
            clock.advance(minutes=3)
            assert (await day.press("4", "call-next"))["number"] == "A001"
            assert await day.step() == {**called("property", "4"), **waited("property", 900),
                                        **waiting(property=-1)}
            await day.press("4", "no-show")
            assert await day.step() == finished("property", "no_show")

            # C001 is called at window 3, and sent on to 不动产登记
            assert (await day.press("3", "call-next"))["number"] == "C001"
            assert await day.step() == {**called("social", "3"), **waited("social", 900),
                                        **waiting(social=-1)}
            await day.press("3", "transfer", service="property")
            assert await day.step() == {**finished("social", "transferred"),
                                        **waiting(property=1)}

            # A002 is called; then calling again finishes it and calls C001 once more:
            # a call, but not a wait (C001's wait ended at its first call)
            assert (await day.press("4", "call-next"))["number"] == "A002"
            assert await day.step() == {**called("property", "4"), **waited("property", 900),
                                        **waiting(property=-1)}
            assert (await day.press("4", "call-next"))["number"] == "C001"
            assert await day.step() == {**called("property", "4"), **finished("property", "done"),
                                        **waiting(property=-1)}

            # B001 gives up and cancels at the kiosk; window 1 pauses
            r = await http.post(f"{API}/tickets/{taken[3]['id']}/cancel")
            assert r.status_code == 200, r.text
            assert await day.step() == {**finished("business", "cancelled"),
                                        **waiting(business=-1)}
            await day.press("1", "pause")
            assert await day.step() == {key("kioskd_windows", state="open"): -1,
                                        key("kioskd_windows", state="paused"): 1}

            # the printer runs out of paper: offline, and the next ticket is not printed
            printer.status = PrinterStatus(paper="out")
            await day.printer("offline")
            assert await day.step() == device("printer_1", "escpos", "ready", "offline")
            ticket = await day.issue("property", terminal="kiosk_1")
            assert ticket["print"]["status"] == "failed"
            assert await day.step() == {
                **issued("property"), **waiting(property=1),
                key("kioskd_print_failures_total", device="printer_1"): 1}
            printer.status = PrinterStatus()
            await day.printer("ready")
            assert await day.step() == device("printer_1", "escpos", "offline", "ready")

            # a display follows the hall's events, then goes away
            async with http.stream("GET", f"{API}/events") as stream:
                assert stream.status_code == 200
                await eventually(lambda: scrape(http),
                                 lambda now: now("kioskd_event_stream_clients") == 1,
                                 "the stream to be counted")
                assert await day.step() == {key("kioskd_event_stream_clients"): 1}
            await eventually(lambda: scrape(http),
                             lambda now: now("kioskd_event_stream_clients") == 0,
                             "the closed stream to be let go")
            assert await day.step() == {key("kioskd_event_stream_clients"): -1}

            # the next morning's first ticket closes yesterday: A004 was left in line,
            # C001 at window 4
            clock.advance(hours=24)
            await day.issue("social")
            assert await day.step() == {**finished("property", "day_end", count=2),
                                        **issued("social"), **waiting(property=-1, social=1)}
    finally:
        printer.close()


async def test_the_call_next_latency_is_observed_for_each_answered_call(tmp_path):
    async with served(small_hall(tmp_path / "var"), Clock()) as (base, app), \
            httpx.AsyncClient(base_url=base, timeout=10) as http:
        before = await scrape(http)
        await http.post(f"{API}/tickets", json={"service": "social"})
        assert (await http.post(f"{API}/windows/3/call-next")).status_code == 200
        assert (await http.post(f"{API}/windows/3/call-next")).status_code == 204  # nobody
        await http.post(f"{API}/windows/3/pause")
        assert (await http.post(f"{API}/windows/3/call-next")).status_code == 409  # refused
        after = await scrape(http)
        name = "kioskd_call_next_duration_seconds"
        assert after(f"{name}_count") - before(f"{name}_count") == 2    # the 200 and the 204
        assert after(f"{name}_sum") > before(f"{name}_sum")


async def test_a_scrape_the_store_cannot_answer_still_shows_the_rest(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="kioskd.metrics")
    async with served(small_hall(tmp_path / "var"), Clock()) as (base, app), \
            httpx.AsyncClient(base_url=base, timeout=10) as http:
        assert (await scrape(http))("kioskd_tickets_waiting", service="social") == 0
        database = app.state.queue.store.path
        away = database.with_name("moved-away.db")
        database.rename(away)                           # a scrape's read cannot open it
        try:
            for _ in range(2):
                now = await scrape(http)
                assert not any(name.startswith(("kioskd_tickets_waiting", "kioskd_windows"))
                               for name in now.samples)
                assert now("kioskd_device_state", device="printer_1", driver="escpos",
                           state="disabled") == 1
        finally:
            away.rename(database)
        assert (await scrape(http))("kioskd_windows", state="open") == 4
    warned = [r.getMessage() for r in caplog.records if r.name == "kioskd.metrics"]
    assert len(warned) == 1 and "could not be read" in warned[0], warned


# -- the voice ----------------------------------------------------------------------------------

async def test_announcements_queued_and_their_latency_from_the_call(tmp_path):
    log = tmp_path / "speaker.jsonl"
    config = hall_config(tmp_path, voice_table(player=speaker(log, speed=2)))
    async with served(config, time.time) as (base, app), \
            httpx.AsyncClient(base_url=base, timeout=10) as http:
        await eventually(lambda: scrape(http),
                         lambda now: now("kioskd_device_state", device="voice", driver="voice",
                                         state="ready") == 1, "the voice to be ready")
        before = await scrape(http)
        assert before("kioskd_announcements_queued", device="voice") == 0
        for _ in range(2):
            await http.post(f"{API}/tickets", json={"service": "property"})
        await http.post(f"{API}/windows/1/call-next")

        await eventually(lambda: len(read_log(log)) if log.exists() else 0,
                         lambda count: count == 1, "A001 to begin")
        await http.post(f"{API}/windows/5/call-next")       # A002 waits behind A001 …
        await eventually(lambda: scrape(http),
                         lambda now: now("kioskd_announcements_queued", device="voice") == 1,
                         "A002 to be queued")
        said = await eventually(lambda: scrape(http), lambda now: now(
            "kioskd_announcements_total", device="voice", outcome="said") == 2,
            "both to be said", wait=30)
        assert said("kioskd_announcements_queued", device="voice") == 0
        assert said("kioskd_announcements_total", device="voice", outcome="dropped") == 0
        latency = "kioskd_announcement_latency_seconds"
        assert said(f"{latency}_count", device="voice") == 2
        # each began before the loudspeaker logged its start; A002 after A001 ended
        first_call, second_call = sorted(e.at for e in app.state.bus.recent(("ticket.called",), 2))
        first, second = read_log(log)
        rounding = 0.002                                  # waited_s is kept to the ms
        assert second.ended_at is not None and first.ended_at is not None
        assert first.ended_at - second_call - rounding \
            <= said(f"{latency}_sum", device="voice") \
            <= first.started_at - first_call + second.started_at - second_call + rounding


# -- what /metrics may show, and to whom ------------------------------------------------------

async def test_metrics_are_public_and_show_no_token_person_or_ticket(tmp_path):
    tokens = {"kiosk": "kiosk-secret-1", "supervisor": "boss-secret-2",
              "booking": "booking-secret-3", "window": "clerk-secret-4"}
    auth = Auth(kiosk=(tokens["kiosk"],), supervisor=(tokens["supervisor"],),
                booking=(tokens["booking"],), windows={"1": (tokens["window"],)})
    config = small_hall(tmp_path / "var", auth)
    clock = Clock()

    def bearer(role: str) -> dict:
        return {"Authorization": f"Bearer {tokens[role]}"}

    async with served(config, clock) as (base, app), \
            httpx.AsyncClient(base_url=base, timeout=10) as http:
        r = await http.post(f"{API}/appointments", headers=bearer("booking"), json={
            "service": "property", "slot": "2026-11-30T09:30:00+08:00", "code": "META-7",
            "name": "张三", "phone": "13812345678"})
        assert r.status_code == 201, r.text
        clock.advance(minutes=15)
        r = await http.post(f"{API}/appointments/check-in", headers=bearer("kiosk"),
                            json={"code": "META-7"})
        assert r.status_code == 201, r.text
        tickets = [r.json()["ticket"]]
        r = await http.post(f"{API}/tickets", headers=bearer("kiosk"), json={"service": "property"})
        tickets.append(r.json())
        r = await http.post(f"{API}/windows/1/call-next", headers=bearer("window"))
        assert r.status_code == 200, r.text

        now = await scrape(http)                            # no token: answered all the same
        assert now("kioskd_tickets_issued_total", service="property", priority="true") == 1
        for secret in [*tokens.values(), "张", "138****5678", "META-7",
                       *(t["number"] for t in tickets), *(t["id"] for t in tickets)]:
            assert secret not in now.text
        # every label value is from devices.toml or from a fixed vocabulary
        known = ({s.id for s in config.services} | {w.id for w in config.windows}
                 | set(config.devices) | {d.driver for d in config.devices.values()}
                 | {"ready", "degraded", "offline", "disabled", "open", "paused", "closed",
                    "done", "no_show", "cancelled", "transferred", "day_end", "true", "false",
                    "terminal", "address"})
        for family in text_string_to_metric_families(now.text):
            for sample in family.samples:
                for label, value in sample.labels.items():
                    assert label == "le" or value in known, (sample.name, label, value)

        r = await http.get("/metrics", headers={"Accept": "application/openmetrics-text"})
        assert r.headers["content-type"].startswith("application/openmetrics-text")
        names = {family.name for family in openmetrics(r.text)}
        assert {"kioskd_tickets_issued", "kioskd_ticket_wait_seconds",
                "kioskd_device_state"} <= names
