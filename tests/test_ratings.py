"""Evaluation (好差评) through the API, in-process with the hall's clock in the test's
hand: a citizen at window 1 rates the ticket the clerk just completed — once, within
`[evaluation] within_s` — and anything else is refused with a reason; 不满意 and
非常不满意 raise an alert for the supervisor; the rating is in the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from conftest import OPENING, Clock, serving, small_hall
from kioskd.config import Auth, Config, Evaluation

API = "/api/v1"
EVALUATOR, BOSS, CLERK_1 = "pad-token", "boss-token", "clerk-1-token"
AUTH = Auth(evaluator=(EVALUATOR,), supervisor=(BOSS,), windows={"1": (CLERK_1,)})
PAD = {"Authorization": f"Bearer {EVALUATOR}"}
AT_WINDOW_1 = {"Authorization": f"Bearer {CLERK_1}"}
LEVELS = [{"level": 5, "name": "非常满意", "name_en": "Very satisfied"},
          {"level": 4, "name": "满意", "name_en": "Satisfied"},
          {"level": 3, "name": "基本满意", "name_en": "Fairly satisfied"},
          {"level": 2, "name": "不满意", "name_en": "Dissatisfied"},
          {"level": 1, "name": "非常不满意", "name_en": "Very dissatisfied"}]
RATED = "已评价，每次服务只能评价一次"
LATE = "评价时间已过（办结后 120 秒内可评价）"


def hall(tmp_path, within_s: float | None = None, auth: Auth = AUTH) -> Config:
    config = small_hall(tmp_path / "var", auth)
    return config if within_s is None else replace(config, evaluation=Evaluation(within_s))


class Hall:
    """The hall as the test drives it: a kiosk issues, window 1's clerk presses, the
    pad at a window reads and rates."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient, clock: Clock):
        self.app, self.client, self.clock = app, client, clock

    async def issue(self, service: str = "property") -> dict:
        r = await self.client.post(f"{API}/tickets", json={"service": service})
        assert r.status_code == 201, r.text
        return r.json()

    async def press(self, window: str, action: str, expect: int = 200) -> dict | None:
        headers = AT_WINDOW_1 if window == "1" else {}
        r = await self.client.post(f"{API}/windows/{window}/{action}", headers=headers)
        assert r.status_code == expect, r.text
        return r.json() if r.content else None

    async def completed(self, window: str = "1", service: str = "property") -> dict:
        """A ticket issued, called, served and completed at `window`."""
        ticket = await self.issue(service)
        called = await self.press(window, "call-next")
        assert called["id"] == ticket["id"]
        await self.press(window, "start")
        return await self.press(window, "complete")

    async def pad(self, window: str = "1", headers: dict | None = None) -> dict:
        r = await self.client.get(f"{API}/windows/{window}/rating", headers=PAD
                                  if headers is None else headers)
        assert r.status_code == 200, r.text
        return r.json()

    async def rate(self, ticket: Any, level: Any, window: str = "1",
                   headers: dict | None = None) -> httpx.Response:
        return await self.client.post(f"{API}/windows/{window}/rating",
                                      json={"ticket": ticket, "level": level},
                                      headers=PAD if headers is None else headers)

    async def stored(self, ticket_id: str):
        return await self.app.state.queue.store.read(lambda tx: tx.rating(ticket_id))

    async def alerts(self) -> list:
        return await self.app.state.queue.store.read(lambda tx: tx.open_alert_records())

    def events(self, type_: str) -> list:
        return [e for e in self.app.state.bus.since(0) or [] if e.type == type_]

    async def audit(self, ticket_id: str) -> list:
        day = self.app.state.queue.day_of(self.clock())
        return await self.app.state.queue.store.read(
            lambda tx: tx.audit_entries(day, ticket=ticket_id))


@pytest.fixture
async def rating_hall(tmp_path, clock) -> AsyncIterator[Hall]:
    async with serving(hall(tmp_path), clock) as (app, client):
        yield Hall(app, client, clock)


async def refused(h: Hall, ticket: Any, level: Any, status: int, window: str = "1",
                  headers: dict | None = None) -> dict:
    """The refusal's body; nothing was stored, no event written."""
    last = h.app.state.bus.last_id
    r = await h.rate(ticket, level, window, headers)
    assert r.status_code == status, r.text
    assert h.app.state.bus.last_id == last, "a refused rating wrote an event"
    return r.json()


# -- rating inside the time ----------------------------------------------------------------


async def test_a_rating_within_the_time_is_stored_announced_and_audited(rating_hall):
    h = rating_hall
    done = await h.completed()
    assert done["number"] == "A001" and done["status"] == "done"
    h.clock.advance(60)
    pad = await h.pad()
    assert pad == {
        "window": "1", "window_name": "1号窗口",
        "ticket": {"id": done["id"], "number": "A001", "service": "property",
                   "service_name": "不动产登记", "finished_at": "2026-11-30T09:00:00+08:00"},
        "remaining_s": 60.0, "within_s": 120.0, "levels": LEVELS}

    r = await h.rate(done["id"], 4)
    assert r.status_code == 201, r.text
    assert r.json() == {"ticket": done["id"], "number": "A001", "window": "1",
                        "window_name": "1号窗口", "service": "property",
                        "service_name": "不动产登记", "level": 4, "name": "满意",
                        "name_en": "Satisfied", "at": "2026-11-30T09:01:00+08:00",
                        "source": "pad"}
    stored = await h.stored(done["id"])
    assert (stored.level, stored.window, stored.service, stored.day, stored.at, stored.source) \
        == (4, "1", "property", "2026-11-30", OPENING + 60, "pad")
    [event] = h.events("ticket.rated")
    assert {k: event.data[k] for k in ("ticket", "number", "service", "window", "level")} == {
        "ticket": done["id"], "number": "A001", "service": "property", "window": "1", "level": 4}
    # In the audit log, as the evaluator's act (the pad's token), not the clerk's.
    [entry] = [e for e in await h.audit(done["id"]) if e.action == "ticket.rated"]
    assert (entry.actor.role, entry.actor.label, entry.actor.token) == ("evaluator", "evaluator", True)
    assert (entry.window, entry.detail["level"]) == ("1", 4)
    completed = [e for e in await h.audit(done["id"]) if e.action == "ticket.done"]
    assert [e.actor.label for e in completed] == ["window:1"]
    # The pad rests: nothing more to rate.
    assert (await h.pad())["ticket"] is None
    assert (await h.pad())["remaining_s"] is None
    assert await h.alerts() == []                 # 满意 raises nothing


async def test_a_second_rating_is_refused_and_the_first_kept(rating_hall):
    h = rating_hall
    done = await h.completed()
    assert (await h.rate(done["id"], 5)).status_code == 201
    for level in (5, 1):
        body = await refused(h, done["id"], level, 409)
        assert body == {"detail": RATED, "reason": "rated"}
    assert (await h.stored(done["id"])).level == 5
    assert await h.alerts() == []


async def test_a_rating_after_the_time_is_refused(rating_hall):
    h = rating_hall
    done = await h.completed()
    h.clock.advance(119)
    assert (await h.pad())["remaining_s"] == 1.0
    h.clock.advance(2)                                  # 121 s after completion
    assert (await h.pad())["ticket"] is None
    assert await refused(h, done["id"], 4, 409) == {"detail": LATE, "reason": "late"}
    assert await h.stored(done["id"]) is None


async def test_exactly_at_the_limit_is_still_in_time(rating_hall):
    h = rating_hall
    done = await h.completed()
    h.clock.advance(120)
    assert (await h.pad())["remaining_s"] == 0.0
    assert (await h.rate(done["id"], 3)).status_code == 201


async def test_within_s_from_the_config_is_honoured(tmp_path, clock):
    async with serving(hall(tmp_path, within_s=30), clock) as (app, client):
        h = Hall(app, client, clock)
        first, second = await h.completed(), await h.completed()
        pad = await h.pad()
        assert (pad["ticket"]["id"], pad["remaining_s"], pad["within_s"]) == (second["id"], 30, 30)
        clock.advance(31)
        assert (await h.pad())["ticket"] is None
        body = await refused(h, second["id"], 4, 409)
        assert body == {"detail": "评价时间已过（办结后 30 秒内可评价）", "reason": "late"}
        assert (await refused(h, first["id"], 4, 409))["reason"] == "late"


# -- tickets that cannot be rated -------------------------------------------------------------


async def test_tickets_not_completed_are_refused(rating_hall):
    h = rating_hall
    waiting = await h.issue()
    assert await refused(h, waiting["id"], 4, 409) == {
        "detail": f"{waiting['number']} 还在排队，办结后才能评价", "reason": "not_done"}

    called = await h.press("1", "call-next")
    assert called["status"] == "called"
    assert await refused(h, called["id"], 4, 409) == {
        "detail": f"{called['number']} 正在窗口办理，办结后才能评价", "reason": "not_done"}
    serving_ = await h.press("1", "start")
    assert serving_["status"] == "serving"
    assert (await refused(h, called["id"], 4, 409))["reason"] == "not_done"
    assert (await h.pad())["ticket"] is None

    await h.issue()
    await h.press("1", "complete")                     # the first is done; forget it here
    missed = await h.press("1", "call-next")
    missed = await h.press("1", "no-show")
    assert missed["status"] == "no_show"
    assert await refused(h, missed["id"], 4, 409) == {
        "detail": f"{missed['number']} 未到窗口办理（已记为未到），不能评价", "reason": "no_show"}

    gone = await h.issue()
    r = await h.client.post(f"{API}/tickets/{gone['id']}/cancel")
    assert r.status_code == 200, r.text
    assert await refused(h, gone["id"], 4, 409) == {
        "detail": f"{gone['number']} 已取消，不能评价", "reason": "cancelled"}

    for ticket in (waiting, missed, gone):
        assert await h.stored(ticket["id"]) is None


async def test_a_ticket_closed_at_day_end_is_refused(rating_hall):
    """A ticket still at the window at midnight is finished by the day's end, not by the
    clerk: its ticket.done carries reason day_end; the pad ignores it and a rating is
    refused, though only seconds have passed."""
    h = rating_hall
    h.clock.advance(hours=14, minutes=59, seconds=30)           # 23:59:30
    at_window = await h.issue()
    await h.press("1", "call-next")
    h.clock.advance(40)                                         # 00:00:10, the next day
    pad = await h.pad()                                         # the day rolls over first
    assert pad["ticket"] is None
    closed = (await h.client.get(f"{API}/tickets/{at_window['id']}")).json()
    assert closed["status"] == "done"
    [ended] = [e for e in h.events("ticket.done") if e.data["ticket"] == at_window["id"]]
    assert ended.data["reason"] == "day_end"
    assert await refused(h, at_window["id"], 4, 409) == {
        "detail": f"{at_window['number']} 未在窗口办结（当日结束时关闭），不能评价",
        "reason": "day_end"}


async def test_a_ticket_completed_at_another_window_is_refused(rating_hall):
    h = rating_hall
    done = await h.completed("2")
    assert (await h.pad("2"))["ticket"]["id"] == done["id"]
    assert (await h.pad("1"))["ticket"] is None                  # window 1's pad: nothing
    assert await refused(h, done["id"], 4, 409, window="1") == {
        "detail": f"{done['number']} 是在2号窗口办结的，只能在该窗口评价",
        "reason": "other_window"}
    assert (await h.rate(done["id"], 4, window="2")).status_code == 201


async def test_unknown_window_or_ticket_is_404(rating_hall):
    h = rating_hall
    done = await h.completed()
    assert (await refused(h, "no-such-ticket", 4, 404))["detail"] == \
        "没有这张票（'no-such-ticket'），无法评价"
    assert (await refused(h, done["id"], 4, 404, window="77"))["detail"] == "没有窗口 '77'"
    r = await h.client.get(f"{API}/windows/77/rating", headers=PAD)
    assert r.status_code == 404 and r.json()["detail"] == "没有窗口 '77'"
    r = await h.client.get(f"{API}/windows/77/rating/access", headers=PAD)
    assert r.status_code == 404


@pytest.mark.parametrize("level", [0, 6, -1, "5", 2.5, 5.0, True, None, [4], {"level": 4}])
async def test_a_level_that_is_not_a_whole_number_from_1_to_5_is_422(rating_hall, level):
    h = rating_hall
    done = await h.completed()
    body = await refused(h, done["id"], level, 422)
    assert body["detail"].startswith("level: ")
    assert await h.stored(done["id"]) is None
    assert (await h.pad())["ticket"]["id"] == done["id"]      # still there to rate
    assert (await h.rate(done["id"], 1)).status_code == 201


async def test_a_body_without_level_or_ticket_or_with_more_is_422(rating_hall):
    h = rating_hall
    done = await h.completed()
    for body in ({"ticket": done["id"]}, {"level": 4},
                 {"ticket": done["id"], "level": 4, "comment": "好"},
                 {"ticket": done["id"], "level": 4, "source": "Bad Source!"}):
        r = await h.client.post(f"{API}/windows/1/rating", json=body, headers=PAD)
        assert r.status_code == 422, (body, r.text)
    assert await h.stored(done["id"]) is None
    r = await h.client.post(f"{API}/windows/1/rating", headers=PAD,
                            json={"ticket": done["id"], "level": 4, "source": "keypad"})
    assert r.status_code == 201 and r.json()["source"] == "keypad"


# -- who may rate -------------------------------------------------------------------------------


async def test_the_evaluator_and_the_supervisor_rate_never_the_clerk(rating_hall):
    h = rating_hall
    first, second = await h.completed(), await h.completed()
    assert (await refused(h, second["id"], 4, 403, headers=AT_WINDOW_1))["detail"] == \
        "this token is for window 1; this needs evaluator or supervisor"
    assert (await refused(h, second["id"], 4, 401, headers={}))["detail"].startswith(
        "a token is needed")
    r = await h.client.get(f"{API}/windows/1/rating/access", headers=AT_WINDOW_1)
    assert r.status_code == 403
    # The clerk may see what the pad shows (to tell the citizen), not rate it.
    assert (await h.pad(headers=AT_WINDOW_1))["ticket"]["id"] == second["id"]
    assert (await h.client.get(f"{API}/windows/1/rating")).status_code == 401
    r = await h.client.get(f"{API}/windows/1/rating/access", headers=PAD)
    assert r.status_code == 200 and r.json() == {"window": "1", "allowed": True}

    assert (await h.rate(second["id"], 4)).status_code == 201
    by_boss = await h.rate(first["id"], 5, headers={"Authorization": f"Bearer {BOSS}"})
    assert by_boss.status_code == 201, by_boss.text
    actors = {e.ticket: e.actor.label for t in (first, second)
              for e in await h.audit(t["id"]) if e.action == "ticket.rated"}
    assert actors == {first["id"]: "supervisor", second["id"]: "evaluator"}


async def test_a_clerk_token_cannot_rate_even_where_the_evaluator_is_open(tmp_path, clock):
    """A loopback hall whose evaluator role has no token: anyone may rate without one,
    but a clerk who shows their window's token is known, and refused."""
    config = hall(tmp_path, auth=Auth(windows={"1": (CLERK_1,)}))
    async with serving(config, clock) as (app, client):
        h = Hall(app, client, clock)
        done = await h.completed()
        body = await refused(h, done["id"], 4, 403, headers=AT_WINDOW_1)
        assert body["detail"].startswith("窗口工作人员不能为本人的服务评价")
        assert (await h.rate(done["id"], 4, headers={})).status_code == 201


# -- bad ratings raise alerts -------------------------------------------------------------------


async def test_dissatisfied_and_very_dissatisfied_raise_one_alert_each(rating_hall):
    h = rating_hall
    tickets = [await h.completed() for _ in range(3)]
    for ticket, level in zip(tickets, (2, 1, 3)):
        r = await h.rate(ticket["id"], level)
        assert r.status_code == 201, r.text
    raised = [e.data for e in h.events("alert") if e.data["state"] == "raised"]
    assert [(a["kind"], a["ticket"], a["window"], a["service"], a["message"]) for a in raised] == [
        ("bad_rating", tickets[0]["id"], "1", "property", "1号窗口 A001（不动产登记）评价：不满意"),
        ("bad_rating", tickets[1]["id"], "1", "property", "1号窗口 A002（不动产登记）评价：非常不满意"),
    ]
    open_now = await h.alerts()
    assert sorted((a.key, a.kind) for a in open_now) == sorted(
        [(f"rating:{tickets[0]['id']}", "bad_rating"), (f"rating:{tickets[1]['id']}", "bad_rating")])
    # A second try at the same ticket raises nothing more.
    await refused(h, tickets[0]["id"], 1, 409)
    assert len([e for e in h.events("alert") if e.data["state"] == "raised"]) == 2


# -- what the pad shows ---------------------------------------------------------------------------


async def test_the_pad_shows_the_latest_completion_only(rating_hall):
    """A clerk who completes two tickets in quick succession: the pad asks about the
    second; once it is rated the pad rests rather than go back to the first (whose
    citizen has left), though the first may still be rated while its time lasts."""
    h = rating_hall
    assert (await h.pad())["ticket"] is None
    first = await h.completed()
    h.clock.advance(10)
    second = await h.completed()
    h.clock.advance(5)
    pad = await h.pad()
    assert (pad["ticket"]["number"], pad["remaining_s"]) == (second["number"], 115.0)
    # A call-next that finishes the current ticket completes it too.
    third = await h.issue()
    await h.press("1", "call-next")
    h.clock.advance(30)
    fourth = await h.issue()
    await h.press("1", "call-next")
    pad = await h.pad()
    assert (pad["ticket"]["id"], pad["remaining_s"]) == (third["id"], 120.0)
    assert (await h.rate(third["id"], 5)).status_code == 201
    assert (await h.pad())["ticket"] is None
    assert (await h.rate(first["id"], 4)).status_code == 201     # 45 s: still in time
    assert (await h.pad())["ticket"] is None
    assert (await h.client.get(f"{API}/tickets/{fourth['id']}")).json()["status"] == "called"


async def test_the_pad_finds_its_ticket_after_a_restart(tmp_path, clock):
    config = hall(tmp_path)
    async with serving(config, clock) as (app, client):
        done = await Hall(app, client, clock).completed()
    clock.advance(20)
    async with serving(config, clock) as (app, client):      # the daemon restarted
        h = Hall(app, client, clock)
        pad = await h.pad()
        assert (pad["ticket"]["id"], pad["remaining_s"]) == (done["id"], 100.0)
        assert (await h.rate(done["id"], 4)).status_code == 201
