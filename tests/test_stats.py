"""The supervisor's figures: GET /stats for a day the test plays out at set clock times,
ranges and their refusals, the CSV's form, the histograms that keep a range's
percentiles exact, and who may read them. (tests/test_stats_day.py checks a day of
10,000 tickets and a range against an independent recomputation.)

The application runs in-process on a real store (conftest's `serving`), the hall's
clock moved by the test.
"""

from __future__ import annotations

import csv
import io
import random
import sqlite3
import threading
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from conftest import OPENING, Clock, running, small_hall
from kioskd.config import Auth
from kioskd.records import Status, Ticket
from kioskd.stats import (DayFacts, Histogram, Minutes, day_bounds, minutes, nearest_rank,
                          summarise, tenths)
from kioskd.store import SQLiteStore, StoreClosed

API = "/api/v1"
DAY = "2026-11-30"                  # conftest's OPENING: Monday 9:00 in Shanghai
ZEROS = {"issued": 0, "called": 0, "served": 0, "no_show": 0, "cancelled": 0, "transferred": 0,
         "waiting": 0, "at_window": 0}
NONE = {"p50": None, "p90": None, "max": None}
UNRATED = {"by_level": {"5": 0, "4": 0, "3": 0, "2": 0, "1": 0}, "rated": 0, "good": 0,
           "bad": 0, "satisfaction": None}


def at(hh_mm: str) -> float:
    """The Unix time of `hh:mm` on the test day."""
    hours, mins = map(int, hh_mm.split(":"))
    return OPENING + (hours - 9) * 3600 + mins * 60


def mins(p50: float, p90: float, most: float) -> dict:
    return {"p50": p50, "p90": p90, "max": most}


class Hall:
    """The hall in-process: a kiosk, the clerks, and a supervisor reading the figures;
    every action happens at the clock time the test names."""

    def __init__(self, client: httpx.AsyncClient, clock: Clock):
        self.client = client
        self.clock = clock
        self.numbers: dict[str, str] = {}        # number → ticket id

    def at(self, hh_mm: str) -> Hall:
        moment = at(hh_mm)
        assert moment >= self.clock.now, f"{hh_mm} is in the past"
        self.clock.now = moment
        return self

    async def issue(self, service: str) -> str:
        r = await self.client.post(f"{API}/tickets", json={"service": service})
        assert r.status_code == 201, r.text
        ticket = r.json()
        self.numbers[ticket["number"]] = ticket["id"]
        return ticket["number"]

    async def press(self, window: str, action: str, **body: Any) -> dict:
        r = await self.client.post(f"{API}/windows/{window}/{action}", json=body or None)
        assert r.status_code == 200, r.text
        return r.json()

    async def call(self, window: str) -> str:
        return (await self.press(window, "call-next"))["number"]

    async def ticket(self, number: str, action: str) -> dict:
        r = await self.client.post(f"{API}/tickets/{self.numbers[number]}/{action}")
        assert r.status_code == 200, r.text
        return r.json()

    async def stats(self, day: str | None = None) -> dict:
        r = await self.client.get(f"{API}/stats", params={} if day is None else {"date": day})
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
async def hall(tmp_path, clock) -> AsyncIterator[Hall]:
    async with running(small_hall(tmp_path / "var"), clock) as client:
        yield Hall(client, clock)


def by_id(items: list[dict]) -> dict[str, dict]:
    return {item["id"]: item for item in items}


# -- a day in the hall -------------------------------------------------------------------

async def play_a_morning(h: Hall) -> None:
    """Two hours at the hall: served with and without a start, a no-show, a transfer
    (its second call is not a second wait), a cancellation, one left waiting and one
    still being served."""
    await h.at("9:00").issue("property")                       # A001
    await h.at("9:02").issue("property")                       # A002
    await h.at("9:05").issue("business")                       # B001
    assert await h.at("9:06").call("4") == "A001"              # waited 6 min
    await h.at("9:08").press("4", "start")
    await h.at("9:10").issue("social")                         # C001
    assert await h.at("9:11").call("3") == "C001"              # waited 1 min
    assert await h.at("9:12").call("1") == "A002"              # waited 10 min
    await h.at("9:13").press("3", "no-show")
    assert await h.at("9:14").call("2") == "B001"              # waited 9 min, as 企业开办
    await h.press("2", "start")
    await h.at("9:15").press("1", "complete")                  # A002: 3 min, never started
    moved = await h.at("9:16").press("2", "transfer", service="social")
    assert moved["status"] == "waiting" and moved["transfers"] == 1
    await h.at("9:18").press("4", "complete")                  # A001: 10 min from its start
    await h.at("9:20").issue("property")                       # A003
    assert await h.at("9:21").call("3") == "B001"              # called again: no new wait
    await h.at("9:22").press("3", "start")
    await h.at("9:30").press("3", "complete")                  # B001: 8 min, as 社保业务
    await h.issue("social")                                    # C002
    await h.at("9:40").issue("business")                       # B002
    await h.press("1", "pause")                                # window 1: 20 min paused
    await h.at("10:00").press("1", "resume")
    await h.press("9", "open")                                 # the temporary window: 30 min
    assert await h.at("10:05").call("4") == "A003"             # waited 45 min
    await h.at("10:06").press("4", "start")
    assert await h.at("10:10").call("3") == "C002"             # waited 40 min
    await h.at("10:15").ticket("B002", "cancel")
    await h.at("10:20").issue("property")                      # A004: still waiting
    await h.at("10:26").press("4", "complete")                 # A003: 20 min
    await h.at("10:30").press("9", "close")
    await h.at("10:31").press("3", "start")                    # C002: still being served


async def test_a_day_counts_every_ticket_once_under_the_right_service_and_window(hall):
    await play_a_morning(hall)
    hall.clock.advance(hours=1)
    stats = await hall.stats()                                 # today by default
    assert stats["date"] == DAY

    services = by_id(stats["services"])
    assert list(services) == ["property", "business", "social"]
    assert (stats["from"], stats["to"], stats["days"]) == (DAY, DAY, 1)
    assert (stats["days_from_summaries"], stats["days_computed"]) == (0, 1)   # today: live
    assert services["property"] == {
        "id": "property", "name": "不动产登记", **ZEROS, "issued": 4, "called": 3, "served": 3,
        "waiting": 1,
        "wait_min": mins(10.0, 45.0, 45.0),            # A001 6, A002 10, A003 45
        "service_min": mins(10.0, 20.0, 20.0),         # A002 3, A001 10, A003 20
        "ratings": UNRATED}
    assert services["business"] == {
        "id": "business", "name": "企业开办", **ZEROS, "issued": 2, "called": 1, "cancelled": 1,
        "transferred": 1,                              # B001 left for 社保业务
        "wait_min": mins(9.0, 9.0, 9.0), "service_min": NONE, "ratings": UNRATED}
    assert services["social"] == {
        "id": "social", "name": "社保业务", **ZEROS, "issued": 2, "called": 3, "served": 1,
        "no_show": 1, "at_window": 1,                  # B001 served here; C001 no-show; C002
        "wait_min": mins(1.0, 40.0, 40.0),             # C001 1, C002 40 (not B001's 2nd call)
        "service_min": mins(8.0, 8.0, 8.0), "ratings": UNRATED}

    # 9:00 (the hall's first event) to 11:31 is 151 minutes
    windows = by_id(stats["windows"])
    assert list(windows) == ["1", "2", "3", "4", "9"]
    assert windows["1"] == {"id": "1", "name": "1号窗口", "called": 1, "served": 1, "no_show": 0,
                            "transferred": 0, "wait_min": mins(10.0, 10.0, 10.0),
                            "service_min": mins(3.0, 3.0, 3.0), "open_min": 131.0,
                            "serving_min": 3.0, "paused_min": 20.0, "ratings": UNRATED}
    assert windows["2"] == {"id": "2", "name": "2号窗口", "called": 1, "served": 0, "no_show": 0,
                            "transferred": 1, "wait_min": mins(9.0, 9.0, 9.0),
                            "service_min": NONE, "open_min": 151.0, "serving_min": 2.0,
                            "paused_min": 0.0, "ratings": UNRATED}
    assert windows["3"] == {"id": "3", "name": "3号窗口", "called": 3, "served": 1, "no_show": 1,
                            "transferred": 0, "wait_min": mins(1.0, 40.0, 40.0),
                            "service_min": mins(8.0, 8.0, 8.0), "open_min": 151.0,
                            "serving_min": 2.0 + 9.0 + 81.0,   # C001, B001, C002 until now
                            "paused_min": 0.0, "ratings": UNRATED}
    assert windows["4"] == {"id": "4", "name": "4号窗口", "called": 2, "served": 2, "no_show": 0,
                            "transferred": 0, "wait_min": mins(6.0, 45.0, 45.0),
                            "service_min": mins(10.0, 20.0, 20.0), "open_min": 151.0,
                            "serving_min": 12.0 + 21.0, "paused_min": 0.0, "ratings": UNRATED}
    assert windows["9"] == {"id": "9", "name": "临时窗口", "called": 0, "served": 0, "no_show": 0,
                            "transferred": 0, "wait_min": NONE, "service_min": NONE,
                            "open_min": 30.0, "serving_min": 0.0, "paused_min": 0.0,
                            "ratings": UNRATED}

    assert stats["hours"] == [
        # 7 issued; calls A001 C001 A002 B001 B001; first-call waits 6 1 10 9
        {"hour": 9, "issued": 7, "called": 5, "wait_p50_min": 6.0, "wait_p90_min": 10.0,
         "wait_max_min": 10.0},
        # A004 issued; calls A003 (45) and C002 (40)
        {"hour": 10, "issued": 1, "called": 2, "wait_p50_min": 40.0, "wait_p90_min": 45.0,
         "wait_max_min": 45.0}]

    totals = stats["totals"]
    assert totals == {"issued": 8, "called": 7, "served": 4, "no_show": 1, "cancelled": 1,
                      "transferred": 1, "waiting": 1, "at_window": 1,
                      "wait_min": mins(9.0, 45.0, 45.0),      # 1 6 9 10 40 45
                      "service_min": mins(8.0, 20.0, 20.0),   # 3 8 10 20
                      "ratings": UNRATED}
    ends = ("served", "no_show", "cancelled", "waiting", "at_window")
    assert totals["issued"] == sum(totals[k] for k in ends)


async def test_a_re_admitted_no_show_is_one_wait_and_ends_as_served(hall):
    await hall.at("9:00").issue("social")
    assert await hall.at("9:05").call("3") == "C001"           # waited 5 min
    await hall.at("9:06").press("3", "no-show")
    await hall.at("9:10").ticket("C001", "readmit")
    assert await hall.at("9:20").call("3") == "C001"           # back: not a second wait
    await hall.at("9:30").press("3", "complete")               # 10 min from the call
    social = by_id((await hall.stats(DAY))["services"])["social"]
    assert social == {"id": "social", "name": "社保业务", **ZEROS, "issued": 1, "called": 2,
                      "served": 1, "wait_min": mins(5.0, 5.0, 5.0),
                      "service_min": mins(10.0, 10.0, 10.0), "ratings": UNRATED}
    assert (await hall.stats(DAY))["hours"] == [
        {"hour": 9, "issued": 1, "called": 2, "wait_p50_min": 5.0, "wait_p90_min": 5.0,
         "wait_max_min": 5.0}]
    window = by_id((await hall.stats(DAY))["windows"])["3"]
    assert (window["called"], window["serving_min"]) == (2, 1.0 + 10.0)   # 9:05-06, 9:20-30


async def test_a_closed_day_counts_what_was_left_in_line_as_waiting(hall):
    await hall.at("9:00").issue("property")
    await hall.issue("property")
    await hall.issue("property")
    assert await hall.at("9:10").call("4") == "A001"
    await hall.press("4", "start")                             # still being served at midnight
    assert await hall.at("9:20").call("1") == "A002"           # still called at midnight
    hall.clock.advance(hours=24)                               # the next morning
    await hall.issue("social")                                 # the day rolls over first

    closed = await hall.stats(DAY)
    assert closed["totals"] | {"wait_min": None} == {
        **ZEROS, "issued": 3, "called": 2, "served": 2, "waiting": 1, "wait_min": None,
        "service_min": NONE, "ratings": UNRATED}               # no service time is known
    assert closed["totals"]["wait_min"] == mins(10.0, 20.0, 20.0)
    assert by_id(closed["windows"])["4"]["served"] == 1
    today = await hall.stats()
    assert today["date"] == "2026-12-01"
    assert today["totals"] | {"wait_min": None} == {**ZEROS, "issued": 1, "waiting": 1,
                                                    "wait_min": None, "service_min": NONE,
                                                    "ratings": UNRATED}
    assert [h["hour"] for h in today["hours"]] == [9]


async def test_a_day_without_tickets_is_zeros_and_nulls(hall):
    await hall.at("9:00").issue("property")                    # another day's ticket
    for day in ("2026-11-29", "2025-01-01", "2030-06-15", "0001-01-01", "9999-12-30"):
        stats = await hall.stats(day)
        assert stats["date"] == day
        assert stats["hours"] == []
        assert stats["totals"] == {**ZEROS, "wait_min": NONE, "service_min": NONE,
                                   "ratings": UNRATED}
        assert [s["id"] for s in stats["services"]] == ["property", "business", "social"]
        assert all(s | {"id": None, "name": None} == {**ZEROS, "id": None, "name": None,
                                                        "wait_min": NONE, "service_min": NONE,
                                                        "ratings": UNRATED}
                   for s in stats["services"])
        assert [w["served"] for w in stats["windows"]] == [0, 0, 0, 0, 0]


@pytest.mark.parametrize("bad", ["2026-13-01", "2026-02-30", "yesterday", "20261130",
                                 "2026-W48-1", "2026-11-30T09:00", "", "x" * 300,
                                 "9999-12-31"])
async def test_a_bad_date_is_422_saying_what_a_date_looks_like(hall, bad):
    r = await hall.client.get(f"{API}/stats", params={"date": bad})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "YYYY-MM-DD" in detail and len(detail) < 200


# -- ranges ------------------------------------------------------------------------------

async def test_a_range_adds_its_days_up_and_keeps_the_finished_ones(hall):
    await play_a_morning(hall)
    first = await hall.stats(DAY)
    hall.clock.advance(hours=24)                               # the next morning
    await hall.issue("social")
    await hall.call("3")
    hall.clock.advance(minutes=3)
    r = await hall.client.get(f"{API}/stats", params={"from": DAY, "to": "2026-12-01"})
    assert r.status_code == 200, r.text
    both = r.json()
    assert (both["date"], both["from"], both["to"], both["days"]) == (
        None, DAY, "2026-12-01", 2)
    assert (both["days_computed"], both["days_from_summaries"]) == (2, 0)
    assert both["totals"]["issued"] == first["totals"]["issued"] + 1 == 9
    assert both["totals"]["called"] == first["totals"]["called"] + 1
    assert both["totals"]["wait_min"] == mins(9.0, 45.0, 45.0)       # 0 1 6 9 10 40 45
    assert both["hours"] == [                                   # C001 of 12-01 at 10:31
        {"hour": 9, "issued": 7, "called": 5, "wait_p50_min": 6.0, "wait_p90_min": 10.0,
         "wait_max_min": 10.0},
        {"hour": 10, "issued": 2, "called": 3, "wait_p50_min": 40.0, "wait_p90_min": 45.0,
         "wait_max_min": 45.0}]                                # 0 40 45
    kept = await hall.stats(DAY)                               # the first day is over now
    assert (kept["days_computed"], kept["days_from_summaries"]) == (0, 1)
    # its A004, left in line, is waiting; C002, at window 3 at midnight, served
    assert kept["totals"] | {"wait_min": None, "service_min": None} == first["totals"] | {
        "waiting": 1, "at_window": 0, "served": 5, "wait_min": None, "service_min": None}
    window = by_id(kept["windows"])["3"]
    assert window["serving_min"] == 2.0 + 9.0 + (24 * 60 - 10 * 60 - 10)   # C002 until 24:00
    assert window["open_min"] == 15 * 60.0                      # 9:00 to midnight


@pytest.mark.parametrize("params, says", [
    ({"from": "2026-12-01", "to": "2026-11-30"}, "from (2026-12-01) is after to (2026-11-30)"),
    ({"from": "2025-11-29", "to": "2026-11-30"}, "at most 366 days"),
    ({"from": "2026-11-30"}, "to: a range needs both from and to"),
    ({"to": "2026-11-30"}, "from: a range needs both from and to"),
    ({"date": "2026-11-30", "from": "2026-11-30", "to": "2026-11-30"}, "either date"),
    ({"from": "30.11.2026", "to": "2026-11-30"}, "from: '30.11.2026' is not a date"),
    ({"from": "2026-11-01", "to": "tomorrow"}, "to: 'tomorrow' is not a date")])
@pytest.mark.parametrize("path", ["/stats", "/stats.csv"])
async def test_a_range_is_refused_with_what_was_wrong(hall, path, params, says):
    r = await hall.client.get(f"{API}{path}", params=params)
    assert r.status_code == 422, r.text
    assert says in r.json()["detail"]


async def test_a_leap_year_fits_in_a_range(hall):
    r = await hall.client.get(f"{API}/stats", params={"from": "2024-01-01", "to": "2024-12-31"})
    assert r.status_code == 200, r.text
    assert r.json()["days"] == 366 and r.json()["totals"]["issued"] == 0


async def test_the_csv_is_a_spreadsheet_excel_reads(hall):
    await play_a_morning(hall)
    r = await hall.client.get(f"{API}/stats.csv")              # today by default
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == \
        f'attachment; filename="kioskd-stats-{DAY}_{DAY}.csv"'
    assert r.content.startswith(b"\xef\xbb\xbf")               # the BOM Excel looks for
    lines = r.content.decode("utf-8-sig").split("\r\n")
    assert lines[0] == (
        "date,scope,id,name,issued,called,served,no_show,cancelled,transferred,waiting,"
        "at_window,wait_p50_min,wait_p90_min,wait_max_min,service_p50_min,service_p90_min,"
        "service_max_min,open_min,serving_min,paused_min,rated,level_5,level_4,level_3,"
        "level_2,level_1,good,bad,satisfaction")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert len(rows) == 1 + 1 + 3 + 5 and lines[-1] == ""
    assert rows[1][:8] == [DAY, "hall", "", "测试政务服务中心", "8", "7", "4", "1"]
    assert rows[2][:5] == [DAY, "service", "property", "不动产登记", "4"]
    window_1 = rows[5]
    assert window_1[:4] == [DAY, "window", "1", "1号窗口"]
    assert window_1[4] == window_1[8] == window_1[10] == window_1[11] == ""   # no issued …
    assert window_1[18:21] == ["71.0", "3.0", "20.0"]        # open, serving, paused: 10:31
    assert rows[4][12:18] == ["1.0", "40.0", "40.0", "8.0", "8.0", "8.0"]    # social's times
    bad = await hall.client.get(f"{API}/stats.csv", params={"by": "week"})
    assert bad.status_code == 422 and "by" in bad.json()["detail"]


async def test_a_store_filled_by_hand_without_events_is_read_from_its_tickets(tmp_path, clock):
    """Benchmarks and imports write ticket rows without an event log: their calls and
    times come from the rows; windows have no time (nothing says when they opened)."""
    config = small_hall(tmp_path / "var")
    store = SQLiteStore(config.hall.data_dir / "kioskd.db")
    await store.open()
    issued = OPENING - 86_400                                  # yesterday 9:00
    rows = [Ticket(id=f"t{n}", day="2026-11-29", number=f"A00{n}", service="property",
                   priority=False, status=Status.DONE, issued_at=issued, queue_at=issued,
                   window="4", called_at=issued + 60 * n, started_at=issued + 60 * n + 30,
                   finished_at=issued + 60 * n + 330) for n in (1, 2)]
    await store.transact(lambda tx: [tx.insert_ticket(t) for t in rows])
    await store.close()
    async with running(config, clock) as client:
        r = await client.get(f"{API}/stats", params={"date": "2026-11-29"})
    assert r.status_code == 200, r.text
    day = r.json()
    assert day["totals"] | {"ratings": None} == {
        **ZEROS, "issued": 2, "called": 2, "served": 2, "ratings": None,
        "wait_min": mins(1.0, 2.0, 2.0), "service_min": mins(5.0, 5.0, 5.0)}
    window = by_id(day["windows"])["4"]
    assert (window["called"], window["serving_min"], window["open_min"]) == (2, 0.0, 0.0)


# -- exact percentiles over days ------------------------------------------------------------

def test_merged_histograms_give_the_percentiles_of_all_the_durations_at_once():
    """Rounding to 0.1 minute is monotone, so a range's nearest-rank percentiles from the
    days' histograms are those of all its raw durations: checked on random days."""
    rng = random.Random(5)
    for _ in range(200):
        days = [[rng.choice((rng.uniform(0, 90), rng.expovariate(1 / 600), 3.0, 9.0))
                 for _ in range(rng.randint(0, 40))] for _ in range(rng.randint(1, 8))]
        merged = Histogram()
        for durations in days:
            merged += Histogram.decode(Histogram.of(Counter(map(tenths, durations))).encode())
        everything = [d for durations in days for d in durations]
        assert merged.minutes() == Minutes.of(everything)
        assert merged.count == len(everything)


def test_a_histogram_keeps_each_count_in_as_few_bytes_as_it_needs():
    for counts, width in (({0: 1, 3: 255}, "1"), ({7: 256}, "2"), ({2: 65_536, 9: 1}, "4"),
                          ({1: 2**40}, "8"), ({}, "")):
        histogram = Histogram.of(counts)
        text = histogram.encode()
        assert text.partition(":")[0] == width
        assert Histogram.decode(text) == histogram
        assert dict((b, n) for b, n in enumerate(histogram.counts()) if n) == counts
    assert Histogram.of({0: 2, 2: 1}).encode() == "1:AgAB"       # two of 0.0 min, one of 0.2
    assert (Histogram.of({1: 3}) + Histogram.of({1: 2, 4: 1})).minutes() == Minutes(0.1, 0.4, 0.4)
    assert Histogram().minutes() == Minutes()


def test_minutes_round_half_up_and_percentiles_take_the_nearest_rank():
    assert [minutes(s) for s in (0, 2.9, 3, 45, 59.9, 600)] == [0.0, 0.0, 0.1, 0.8, 1.0, 10.0]
    ordered = [60.0 * n for n in range(1, 11)]                  # 1 .. 10 minutes
    assert nearest_rank(ordered, 50) == 300 and nearest_rank(ordered, 90) == 540
    assert nearest_rank([7.0], 90) == 7.0
    assert Minutes.of([]) == Minutes(None, None, None)
    assert Minutes.of([600, 60, 120]) == Minutes(2.0, 10.0, 10.0)


def test_a_day_is_the_halls_local_day():
    start, end = day_bounds(date(2026, 11, 30), ZoneInfo("Asia/Shanghai"))
    assert start == OPENING - 9 * 3600 and end - start == 86_400


@pytest.mark.parametrize("day, length_h", [(date(2026, 3, 8), 23), (date(2026, 11, 1), 25)])
def test_hours_are_local_hours_on_the_days_the_clocks_change(tmp_path, day, length_h):
    zone = ZoneInfo("America/New_York")
    config = small_hall(tmp_path)
    config = replace(config, hall=replace(config.hall, timezone="America/New_York"))
    start, end = day_bounds(day, zone)
    assert end - start == length_h * 3600
    times = [start + 600 * n for n in range(int(end - start) // 600)]
    # (id, service, status, issued_at, window, called_at, started_at, finished_at, closed_by)
    tickets = [(str(n), "property", "waiting", t, None, None, None, None, None)
               for n, t in enumerate(times)]
    stats = summarise(config, DayFacts(day, tickets, [], [], [], {}, start, end))
    expected = Counter(datetime.fromtimestamp(t, zone).hour for t in times)
    assert {h.hour: h.issued for h in stats.busy_hours()} == expected
    assert stats.totals.issued == stats.totals.waiting == len(times)


# -- who may read them ---------------------------------------------------------------------

TOKENS = Auth(kiosk=("k",), technician=("t",), supervisor=("s",), windows={"1": ("w1",)})


@pytest.mark.parametrize("path, token, status", [
    ("/stats", "s", 200), ("/stats", "t", 403), ("/stats", "k", 403), ("/stats", "w1", 403),
    ("/stats", None, 401), ("/stats", "nonsense", 401),
    ("/stats.csv", "s", 200), ("/stats.csv", "t", 403), ("/stats.csv", "w1", 403),
    ("/stats.csv", None, 401),
    ("/alerts", "s", 200), ("/alerts", "t", 200), ("/alerts", "k", 403), ("/alerts", "w1", 403),
    ("/alerts", None, 401)])
async def test_statistics_are_for_the_supervisor_alerts_also_for_the_technician(
        tmp_path, clock, path, token, status):
    async with running(small_hall(tmp_path / "var", TOKENS), clock) as client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = await client.get(f"{API}{path}", headers=headers)
        assert r.status_code == status, r.text
        if status != 200:
            assert r.json()["detail"]


async def test_the_role_is_checked_before_the_date(tmp_path, clock):
    async with running(small_hall(tmp_path / "var", TOKENS), clock) as client:
        r = await client.get(f"{API}/stats?date=nonsense", headers={"Authorization": "Bearer t"})
        assert r.status_code == 403


# -- the store's read ----------------------------------------------------------------------

async def test_a_read_runs_off_the_loop_sees_what_was_committed_and_cannot_write(queue):
    view = await queue.issue("property")
    loop_thread = threading.get_ident()

    def read(tx):
        assert threading.get_ident() != loop_thread
        return tx.tickets_of_day(DAY)
    assert [t.number for t in await queue.store.read(read)] == [view.ticket.number]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await queue.store.read(lambda tx: tx.insert_ticket(view.ticket))
    assert len(await queue.store.read(read)) == 1
    await queue.store.close()
    with pytest.raises(StoreClosed):
        await queue.store.read(read)
