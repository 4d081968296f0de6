"""The HTTP API (contract §3): every route, every error code, the SSE stream, no 500s.

These run the real application (its store, the lifespan) in-process over an ASGI
transport; the SSE tests run it behind a real uvicorn server. Every test runs on
both stores (BOTH_STORES): the SQLite file on disk, and a PostgreSQL database of
the test server. Roles and tokens are in test_auth.py; here the hall is open
(loopback, no tokens).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Clock, running
from kioskd.app import create_app
from kioskd.config import Config
from kioskd.httpserver import BoundedHttpToolsProtocol

BOTH_STORES = True
API = "/api/v1"

TICKET_KEYS = {"id", "number", "service", "status", "priority", "window", "issued_at",
               "called_at", "finished_at", "waiting_ahead", "est_wait_min", "print"}
WINDOW_KEYS = {"id", "name", "state", "since", "services", "temporary", "board", "current"}
STATUSES = {"waiting", "called", "serving", "done", "no_show", "cancelled"}


# -- running the application -------------------------------------------------------------

@pytest.fixture
async def client(hall_config, clock) -> AsyncIterator[httpx.AsyncClient]:
    async with running(hall_config, clock) as c:
        yield c


# -- helpers ---------------------------------------------------------------------------------

async def issue(client: httpx.AsyncClient, service: str = "property", **body: Any) -> dict:
    r = await client.post(f"{API}/tickets", json={"service": service, **body})
    assert r.status_code == 201, r.text
    return r.json()


async def act(client: httpx.AsyncClient, window: str, action: str, body: Any = None,
              expect: int = 200) -> dict | None:
    r = await client.post(f"{API}/windows/{window}/{action}",
                          **({} if body is None else {"json": body}))
    assert r.status_code == expect, r.text
    return r.json() if r.content else None


async def get(client: httpx.AsyncClient, path: str) -> Any:
    r = await client.get(path)
    assert r.status_code == 200, r.text
    return r.json()


async def snapshot(client: httpx.AsyncClient, *ticket_ids: str) -> dict:
    """Everything a refused request must leave as it was: the queue, every window,
    the given tickets, and the event log's last id (no event was written)."""
    tickets = {}
    for tid in ticket_ids:
        r = await client.get(f"{API}/tickets/{tid}")
        tickets[tid] = (r.status_code, r.json())
    return {
        "queue": await get(client, f"{API}/queue"),
        "windows": await get(client, f"{API}/windows"),
        "services": await get(client, f"{API}/services"),
        "tickets": tickets,
        "last_event": (await get(client, "/healthz"))["last_event"],
    }


def readable(detail: Any) -> str:
    assert isinstance(detail, str), f"detail should be a sentence, got {detail!r}"
    assert detail.strip(), "detail is empty"
    assert len(detail) < 2000, f"detail is not for a person to read: {len(detail)} chars"
    return detail


async def refused(client: httpx.AsyncClient, method: str, path: str, status: int, *,
                  watch: tuple[str, ...] = (), mentions: tuple[str, ...] = (),
                  **request: Any) -> str:
    """Send a request that must be refused with `status` and a readable detail,
    and check it changed nothing."""
    before = await snapshot(client, *watch)
    r = await client.request(method, f"{API}{path}", **request)
    assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
    assert r.headers["content-type"].startswith("application/json")
    detail = readable(r.json()["detail"])
    for word in mentions:
        assert word in detail, f"{word!r} not in {detail!r}"
    assert await snapshot(client, *watch) == before, f"{method} {path} changed the queue"
    return detail


# -- public reads ----------------------------------------------------------------------------

async def test_services_catalogue_with_guides_waiting_and_estimates(client):
    r = await client.get(f"{API}/services")
    assert r.status_code == 200
    services = r.json()
    assert [s["id"] for s in services] == ["property", "business", "social"]
    prop = services[0]
    assert prop["name"] == "不动产登记" and prop["prefix"] == "A"
    assert prop["code"] == "640100-001-01"
    assert prop["guide"]["materials"] == ["不动产权属证书", "申请人身份证明"]
    assert prop["guide"]["time_limit"] == "5个工作日" and prop["guide"]["fee"] == "不收费"
    assert prop["waiting"] == 0 and prop["est_wait_min"] == 0
    assert prop["open_windows"] == 3              # windows 1, 2, 4 (9 is closed)

    for _ in range(4):
        await issue(client, "property")
    prop = (await get(client, f"{API}/services"))[0]
    assert prop["waiting"] == 4
    assert prop["est_wait_min"] == math.ceil(4 * 10.0 / 3)


async def test_issue_and_look_up_a_ticket(client):
    first = await issue(client, "property")
    assert TICKET_KEYS <= set(first)
    assert first["number"] == "A001" and first["service"] == "property"
    assert first["status"] == "waiting" and first["priority"] is False
    assert first["window"] is None and first["called_at"] is None
    assert first["finished_at"] is None
    assert first["issued_at"].startswith("2026-11-30T09:00:00")
    assert first["waiting_ahead"] == 0 and first["est_wait_min"] == 0
    assert first["print"] == {"device": None, "status": "none", "error": None}
    assert len(first["id"]) >= 16                  # unguessable

    second = await issue(client, "property")
    assert second["number"] == "A002" and second["id"] != first["id"]
    assert second["waiting_ahead"] == 1 and second["est_wait_min"] == math.ceil(10 / 3)

    urgent = await issue(client, "property", priority=True)
    assert urgent["number"] == "A003" and urgent["priority"] is True
    assert urgent["waiting_ahead"] == 0

    other = await issue(client, "business")
    assert other["number"] == "B001" and other["waiting_ahead"] == 0

    r = await client.get(f"{API}/tickets/{first['id']}")
    assert r.status_code == 200
    looked_up = r.json()
    assert looked_up["number"] == "A001" and looked_up["waiting_ahead"] == 1   # urgent is ahead


async def test_issue_at_a_terminal(client):
    ticket = await issue(client, "social", terminal="kiosk_1", print=False)
    assert ticket["number"] == "C001"
    assert ticket["print"] == {"device": None, "status": "none", "error": None}
    printed = await issue(client, "social", terminal="kiosk_1")      # its printer is disabled here
    assert printed["print"]["status"] == "failed"
    assert printed["print"]["device"] == "printer_1"


async def test_windows_and_queue(client):
    r = await client.get(f"{API}/windows")
    assert r.status_code == 200
    windows = r.json()
    assert [w["id"] for w in windows] == ["1", "2", "3", "4", "9"]
    assert all(WINDOW_KEYS <= set(w) for w in windows)
    assert {w["id"]: w["state"] for w in windows} == {
        "1": "open", "2": "open", "3": "open", "4": "open", "9": "closed"}
    assert windows[4]["temporary"] is True and windows[0]["temporary"] is False
    assert windows[0]["services"] == ["property", "business"]
    assert all(w["current"] is None for w in windows)

    r = await client.get(f"{API}/windows/3")
    assert r.status_code == 200
    assert r.json()["name"] == "3号窗口" and r.json()["services"] == ["social"]

    await issue(client, "property")
    await issue(client, "property")
    await issue(client, "social")
    r = await client.get(f"{API}/queue")
    assert r.status_code == 200
    q = r.json()
    assert q["day"] == "2026-11-30" and q["waiting"] == 3
    lines = {s["id"]: s for s in q["services"]}
    assert lines["property"]["waiting"] == 2 and lines["social"]["waiting"] == 1
    assert lines["business"]["waiting"] == 0
    assert lines["property"]["minutes_per_ticket"] == 10.0
    assert [w["id"] for w in q["windows"]] == ["1", "2", "3", "4", "9"]


async def test_a_huge_body_is_refused_413_and_issues_nothing(client):
    before = (await client.get(f"{API}/queue")).json()
    huge = b'{"service": "property", "x": "' + b"x" * 200_000 + b'"}'

    async def without_length():
        for start in range(0, len(huge), 16_384):
            yield huge[start:start + 16_384]

    for body in (huge, without_length()):         # with a Content-Length, and chunked
        r = await client.post(f"{API}/tickets", content=body,
                              headers={"content-type": "application/json"})
        assert r.status_code == 413 and "body" in r.json()["detail"]
    assert (await client.get(f"{API}/queue")).json() == before


async def test_health_openapi_and_docs(client):
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"

    r = await client.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path in ("/services", "/tickets", "/tickets/{ticket_id}", "/tickets/{ticket_id}/reprint",
                 "/tickets/{ticket_id}/cancel", "/tickets/{ticket_id}/readmit", "/windows",
                 "/windows/{w}", "/queue", "/events", "/windows/{w}/call-next",
                 "/windows/{w}/recall", "/windows/{w}/start", "/windows/{w}/complete",
                 "/windows/{w}/no-show", "/windows/{w}/transfer", "/windows/{w}/pause",
                 "/windows/{w}/resume", "/windows/{w}/open", "/windows/{w}/close"):
        assert f"{API}{path}" in paths, path
    # An integrator sees which token each route takes, and public routes take none.
    schema = r.json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    call_next = paths[f"{API}/windows/{{w}}/call-next"]["post"]
    assert call_next["security"] == [{"bearer": []}]
    assert "**Token:** the clerk token of window `w` or supervisor" in call_next["description"]
    assert "**Token:** kiosk or supervisor" in paths[f"{API}/tickets"]["post"]["description"]
    assert "security" not in paths[f"{API}/queue"]["get"]

    r = await client.get("/docs")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    # The hall has no internet: the page loads its scripts and styles from kioskd.
    assets = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert assets and not [a for a in assets if a.startswith(("http:", "https:", "//"))]
    for asset in assets:
        loaded = await client.get(asset)
        assert loaded.status_code == 200 and len(loaded.content) > 100, asset


# -- a ticket's life at a window -------------------------------------------------------------

async def test_call_next_answers_204_when_nothing_waits(client):
    r = await client.post(f"{API}/windows/1/call-next")
    assert r.status_code == 204 and r.content == b""
    assert (await get(client, f"{API}/windows/1"))["current"] is None


async def test_call_recall_start_complete(client):
    a1 = await issue(client, "property")
    a2 = await issue(client, "property")

    called = await act(client, "1", "call-next")
    assert called["id"] == a1["id"] and called["status"] == "called"
    assert called["window"] == "1" and called["called_at"] is not None
    assert called["waiting_ahead"] is None
    window = await get(client, f"{API}/windows/1")
    assert window["current"]["id"] == a1["id"] and window["current"]["status"] == "called"
    assert (await get(client, f"{API}/tickets/{a2['id']}"))["waiting_ahead"] == 0

    recalled = await act(client, "1", "recall")
    assert recalled["id"] == a1["id"] and recalled["recalls"] == 1

    started = await act(client, "1", "start")
    assert started["status"] == "serving" and started["started_at"] is not None

    done = await act(client, "1", "complete")
    assert done["status"] == "done" and done["finished_at"] is not None
    assert (await get(client, f"{API}/windows/1"))["current"] is None

    # call-next finishes the current ticket first
    called = await act(client, "2", "call-next")
    assert called["id"] == a2["id"]
    a3 = await issue(client, "business")
    called = await act(client, "2", "call-next")
    assert called["id"] == a3["id"]
    assert (await get(client, f"{API}/tickets/{a2['id']}"))["status"] == "done"


async def test_no_show_and_readmit(client):
    a1 = await issue(client, "property")
    await issue(client, "property")
    await act(client, "4", "call-next")
    gone = await act(client, "4", "no-show")
    assert gone["id"] == a1["id"] and gone["status"] == "no_show"
    assert (await get(client, f"{API}/windows/4"))["current"] is None

    r = await client.post(f"{API}/tickets/{a1['id']}/readmit")
    assert r.status_code == 200, r.text
    back = r.json()
    assert back["status"] == "waiting" and back["number"] == "A001"
    assert back["waiting_ahead"] == 1          # behind the one already waiting (readmit_after=2)


async def test_cancel(client):
    ticket = await issue(client, "business")
    r = await client.post(f"{API}/tickets/{ticket['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["finished_at"] is not None
    assert (await get(client, f"{API}/queue"))["waiting"] == 0


async def test_transfer_to_a_service_keeps_number_and_place(client):
    a1 = await issue(client, "property")
    b1 = await issue(client, "business")
    await act(client, "1", "call-next")
    moved = await act(client, "1", "transfer", {"service": "business"})
    assert moved["id"] == a1["id"] and moved["number"] == "A001"
    assert moved["service"] == "business" and moved["status"] == "waiting"
    assert moved["transfers"] == 1 and moved["window"] is None
    assert moved["waiting_ahead"] == 0          # issued before B001: keeps its place
    assert (await get(client, f"{API}/windows/1"))["current"] is None
    assert (await get(client, f"{API}/tickets/{b1['id']}"))["waiting_ahead"] == 1
    again = await act(client, "2", "call-next")
    assert again["id"] == a1["id"]


async def test_transfer_to_a_window(client):
    a1 = await issue(client, "property")
    await act(client, "1", "call-next")
    moved = await act(client, "1", "transfer", {"window": "3"})
    assert moved["status"] == "waiting" and moved["target_window"] == "3"
    assert moved["service"] == "property"
    assert await act(client, "4", "call-next", expect=204) is None  # window 3's alone
    called = await act(client, "3", "call-next")
    assert called["id"] == a1["id"] and called["window"] == "3"


async def test_pause_resume_open_close(client):
    paused = await act(client, "2", "pause")
    assert WINDOW_KEYS <= set(paused) and paused["state"] == "paused"
    assert (await act(client, "2", "resume"))["state"] == "open"

    opened = await act(client, "9", "open")
    assert opened["state"] == "open" and opened["temporary"] is True
    ticket = await issue(client, "social")
    assert (await act(client, "9", "call-next"))["id"] == ticket["id"]
    await act(client, "9", "complete")
    assert (await act(client, "9", "close"))["state"] == "closed"
    assert (await act(client, "9", "close"))["state"] == "closed"     # twice changes nothing


# -- 503: the device layer ----------------------------------------------------------------------

async def test_reprint_answers_503_naming_the_printer_while_it_is_disabled(client):
    ticket = await issue(client, "property", terminal="kiosk_1")
    detail = await refused(client, "POST", f"/tickets/{ticket['id']}/reprint", 503,
                           watch=(ticket["id"],), mentions=("printer_1",))
    assert "disabled" in detail
    # naming another terminal is the same printer here, and the same answer
    await refused(client, "POST", f"/tickets/{ticket['id']}/reprint", 503,
                  json={"terminal": "kiosk_1"}, watch=(ticket["id"],), mentions=("printer_1",))


async def test_reprint_refusals_before_the_printer(client):
    plain = await issue(client, "property")
    await refused(client, "POST", "/tickets/nope/reprint", 404)
    await refused(client, "POST", f"/tickets/{plain['id']}/reprint", 422,
                  watch=(plain["id"],), mentions=("A001",))
    await refused(client, "POST", f"/tickets/{plain['id']}/reprint", 422,
                  json={"terminal": "printer_1"}, watch=(plain["id"],), mentions=("printer_1",))
    await refused(client, "POST", f"/tickets/{plain['id']}/reprint", 422,
                  json={"terminal": "kiosk_1", "copies": 2}, watch=(plain["id"],),
                  mentions=("copies",))


# -- 404 ---------------------------------------------------------------------------------------

async def test_unknown_ticket_is_404(client):
    ticket = await issue(client)
    for method, path in [("GET", "/tickets/no-such-ticket"),
                         ("POST", "/tickets/no-such-ticket/cancel"),
                         ("POST", "/tickets/no-such-ticket/readmit")]:
        detail = await refused(client, method, path, 404, watch=(ticket["id"],))
        assert "no-such-ticket" in detail


async def test_unknown_window_is_404(client):
    ticket = await issue(client)
    await refused(client, "GET", "/windows/77", 404, mentions=("77",))
    for action in ("call-next", "recall", "start", "complete", "no-show", "pause", "resume",
                   "open", "close"):
        await refused(client, "POST", f"/windows/77/{action}", 404, watch=(ticket["id"],),
                      mentions=("77",))
    await refused(client, "POST", "/windows/77/transfer", 404, json={"service": "social"},
                  watch=(ticket["id"],), mentions=("77",))


async def test_a_nul_in_an_id_or_a_filter_is_not_there_on_either_store(client):
    """PostgreSQL text cannot hold a NUL, SQLite's can: a key with one is simply not
    found, as on SQLite, never a 500; free text with one is refused, not stored."""
    ticket = await issue(client, "property")
    await act(client, "1", "call-next")
    await act(client, "1", "complete")
    for method, path, body in [("GET", "/tickets/%00", None),
                               ("POST", "/tickets/%00/cancel", None),
                               ("POST", "/tickets/%00/readmit", None),
                               ("GET", "/appointments/%00", None),
                               ("POST", "/appointments/%00/cancel", None),
                               ("POST", "/windows/1/rating", {"ticket": "\x00", "level": 5})]:
        await refused(client, method, path, 404, watch=(ticket["id"],),
                      **({} if body is None else {"json": body}))
    for query in ("ticket=%00", "date=2026-11-30&ticket=%00", "date=2026-11-30&window=%00",
                  "date=2026-11-30&actor=%00"):
        page = await get(client, f"{API}/audit?{query}")
        assert page["entries"] == [], query
    assert (await get(client, f"{API}/audit?ticket={ticket['id']}"))["entries"]
    await refused(client, "POST", "/appointments", 422, mentions=("reference", "NUL"),
                  json={"service": "property", "slot": "2026-11-30T10:00", "code": "K7Q2-9041",
                        "reference": "YY-\x00-42"})
    assert await get(client, f"{API}/appointments") == []


# -- 409: nonsense in the current state ----------------------------------------------------------

async def test_window_actions_without_a_current_ticket_are_409(client):
    ticket = await issue(client, "social")          # waiting, but window 1 does not serve it
    for action in ("recall", "start", "complete", "no-show"):
        detail = await refused(client, "POST", f"/windows/1/{action}", 409,
                               watch=(ticket["id"],))
        assert "no current ticket" in detail
    await refused(client, "POST", "/windows/1/transfer", 409, json={"service": "business"},
                  watch=(ticket["id"],))


async def test_recall_start_no_show_while_serving_are_409(client):
    ticket = await issue(client, "property")
    await act(client, "1", "call-next")
    await act(client, "1", "start")
    for action in ("recall", "start", "no-show"):
        detail = await refused(client, "POST", f"/windows/1/{action}", 409,
                               watch=(ticket["id"],))
        assert "A001" in detail


async def test_window_state_conflicts_are_409(client):
    ticket = await issue(client, "property")
    await refused(client, "POST", "/windows/9/pause", 409, watch=(ticket["id"],),
                  mentions=("closed",))
    await refused(client, "POST", "/windows/9/resume", 409, watch=(ticket["id"],),
                  mentions=("closed",))
    await refused(client, "POST", "/windows/9/call-next", 409, watch=(ticket["id"],),
                  mentions=("closed",))
    await act(client, "1", "pause")
    await refused(client, "POST", "/windows/1/call-next", 409, watch=(ticket["id"],),
                  mentions=("paused",))
    await act(client, "1", "resume")
    await act(client, "1", "call-next")
    await refused(client, "POST", "/windows/1/close", 409, watch=(ticket["id"],),
                  mentions=("A001",))


async def test_ticket_state_conflicts_are_409(client):
    a1 = await issue(client, "property")
    a2 = await issue(client, "property")
    await act(client, "1", "call-next")
    await refused(client, "POST", f"/tickets/{a1['id']}/cancel", 409,
                  watch=(a1["id"], a2["id"]), mentions=("A001", "called"))
    await refused(client, "POST", f"/tickets/{a2['id']}/readmit", 409,
                  watch=(a1["id"], a2["id"]), mentions=("A002", "waiting"))
    await act(client, "1", "complete")
    await refused(client, "POST", f"/tickets/{a1['id']}/cancel", 409,
                  watch=(a1["id"], a2["id"]), mentions=("done",))
    await refused(client, "POST", f"/tickets/{a1['id']}/readmit", 409,
                  watch=(a1["id"], a2["id"]), mentions=("done",))


async def test_readmit_too_late_is_409(client, clock):
    a1 = await issue(client, "property")
    await act(client, "1", "call-next")
    await act(client, "1", "no-show")
    clock.advance(minutes=31)
    await refused(client, "POST", f"/tickets/{a1['id']}/readmit", 409, watch=(a1["id"],),
                  mentions=("30 minutes",))


# -- 422: bad input ----------------------------------------------------------------------------

async def test_issue_bad_input_is_422(client):
    json_header = {"content-type": "application/json"}
    d = await refused(client, "POST", "/tickets", 422, content=b"{bad", headers=json_header)
    assert "malformed JSON" in d
    d = await refused(client, "POST", "/tickets", 422, content=b"", headers=json_header)
    assert "service" in d or "body" in d
    await refused(client, "POST", "/tickets", 422, content=b'{"service": "\xff"}',
                  headers=json_header, mentions=("not UTF-8",))
    await refused(client, "POST", "/tickets", 422, content=b"[" * 5_000 + b"]" * 5_000,
                  headers=json_header, mentions=("nested too deeply",))
    d = await refused(client, "POST", "/tickets", 422, json={"service": "字" * 10_000})
    assert len(d) < 300 and "known: property, business, social" in d
    d = await refused(client, "POST", "/tickets", 422, content=b'{"service": "\\ud800"}',
                      headers=json_header)
    assert "\\ud800" in d                              # shown escaped, not a 500
    await refused(client, "POST", "/tickets", 422, content=b"service=property",
                  headers={"content-type": "application/x-www-form-urlencoded"})
    await refused(client, "POST", "/tickets", 422, json={}, mentions=("service",))
    await refused(client, "POST", "/tickets", 422, json={"service": "property", "priority": "yes"},
                  mentions=("priority",))
    await refused(client, "POST", "/tickets", 422, json={"service": "property", "priority": 1},
                  mentions=("priority",))
    await refused(client, "POST", "/tickets", 422, json={"service": "property", "print": "no"},
                  mentions=("print",))
    await refused(client, "POST", "/tickets", 422, json={"service": 7}, mentions=("service",))
    await refused(client, "POST", "/tickets", 422, json={"service": "property", "name": "张三"},
                  mentions=("name",))                       # extra="forbid"
    await refused(client, "POST", "/tickets", 422, json={"service": "passports"},
                  mentions=("passports", "property"))      # names the known ones
    await refused(client, "POST", "/tickets", 422,
                  json={"service": "property", "terminal": "kiosk_9"},
                  mentions=("kiosk_9", "kiosk_1"))
    await refused(client, "POST", "/tickets", 422,
                  json={"service": "property", "terminal": "printer_1"}, mentions=("printer_1",))
    await refused(client, "POST", "/tickets", 422, json=["property"])


async def test_transfer_bad_input_is_422(client):
    ticket = await issue(client, "property")
    await act(client, "1", "call-next")
    watch = (ticket["id"],)
    json_header = {"content-type": "application/json"}
    await refused(client, "POST", "/windows/1/transfer", 422, content=b"{bad",
                  headers=json_header, watch=watch, mentions=("malformed JSON",))
    await refused(client, "POST", "/windows/1/transfer", 422, watch=watch)    # no body
    await refused(client, "POST", "/windows/1/transfer", 422, json={}, watch=watch,
                  mentions=("service", "window"))
    await refused(client, "POST", "/windows/1/transfer", 422,
                  json={"service": None, "window": None}, watch=watch)
    await refused(client, "POST", "/windows/1/transfer", 422, json={"service": "passports"},
                  watch=watch, mentions=("passports",))
    await refused(client, "POST", "/windows/1/transfer", 422, json={"window": "77"},
                  watch=watch, mentions=("77",))
    await refused(client, "POST", "/windows/1/transfer", 422, json={"window": "1"},
                  watch=watch)                              # to itself
    await refused(client, "POST", "/windows/1/transfer", 422, json={"window": 3},
                  watch=watch, mentions=("window",))
    await refused(client, "POST", "/windows/1/transfer", 422,
                  json={"service": "social", "reason": "x"}, watch=watch, mentions=("reason",))
    assert (await get(client, f"{API}/windows/1"))["current"]["id"] == ticket["id"]


async def test_event_stream_rejects_a_bad_resume_point(client):
    r = await client.get(f"{API}/events", headers={"Last-Event-ID": "yesterday"})
    assert r.status_code == 422 and readable(r.json()["detail"])
    r = await client.get(f"{API}/events?since=-1")
    assert r.status_code == 422 and readable(r.json()["detail"])


# -- no input gives a 500 ----------------------------------------------------------------------

HUGE = "字" * 100_000
NASTY_STRINGS = ["", " ", HUGE, "\x00", "\ud800", "\udfff", "property\x00", "☃" * 50,
                 "../../etc/passwd", "'; DROP TABLE tickets; --", "%s%s%n", "\u202e1",
                 "property ", "PROPERTY", "1", "9"]
NASTY_VALUES: list[Any] = [None, True, False, 0, -1, 2 ** 70, 1.5, [], {}, ["property"],
                           {"id": "property"}, [[[[[]]]]], {"a": {"b": {"c": None}}}]
CRAFTED_BODIES: list[bytes] = [
    b"", b"null", b"true", b"0", b'"property"', b"[]", b"[{}]", b"{bad", b"{", b"}",
    b'{"service": "property",}', b"\xff\xfe", b"\x00", b'{"service": "\\ud800"}',
    b'{"service": "\\udfff", "terminal": "\\ud800"}', b'{"window": "\\ud800"}',
    b'{"service": "property", "service": "social"}', b'{"service": NaN}',
    b'{"service": 1e999}', b'[' * 5_000 + b']' * 5_000, b'{"a":' * 2_000 + b"1" + b"}" * 2_000,
    json.dumps({"service": HUGE}).encode(), json.dumps({"window": HUGE}).encode(),
    json.dumps({"service": "property", "terminal": HUGE}).encode(),
    json.dumps({HUGE: 1}).encode(), b'{"\\ud800": 1}', b'{"service": "property", "\\ud800": 1}',
    json.dumps({"service": "property", "x" * 10_000: 1}).encode(),
]


def _bodies_for(keys: tuple[str, ...]) -> list[bytes]:
    bodies = list(CRAFTED_BODIES)
    for key in keys:
        for value in [*NASTY_STRINGS, *NASTY_VALUES]:
            bodies.append(json.dumps({key: value}).encode())
            bodies.append(json.dumps({"service": "property", key: value}).encode())
    return bodies


async def _post_raw(client: httpx.AsyncClient, path: str, body: bytes) -> httpx.Response:
    return await client.post(f"{API}{path}", content=body,
                             headers={"content-type": "application/json"})


async def _ensure_current(client: httpx.AsyncClient) -> None:
    await issue(client, "property")
    await act(client, "1", "call-next")


def _assert_answered(r: httpx.Response, body: bytes, also: tuple[int, ...] = ()) -> None:
    assert r.status_code < 500 or r.status_code in also, \
        f"{body[:200]!r} -> {r.status_code} {r.text[:500]}"
    if r.status_code >= 400:
        readable(r.json()["detail"])


async def test_crafted_bodies_never_give_500(client):
    for body in _bodies_for(("service", "priority", "terminal", "print")):
        _assert_answered(await _post_raw(client, "/tickets", body), body)
    for body in _bodies_for(("service", "window")):
        await _ensure_current(client)
        _assert_answered(await _post_raw(client, "/windows/1/transfer", body), body)
    printed = await issue(client, "property", terminal="kiosk_1")
    for body in _bodies_for(("terminal",)):
        r = await _post_raw(client, f"/tickets/{printed['id']}/reprint", body)
        _assert_answered(r, body, also=(503,))          # the printer is not running here
    # odd ids in the path
    for tid in ["%00", "%ED%A0%80", "..%2F..", "x" * 5000, "%F0%9F%92%A9", "%FF"]:
        for method, path in [("GET", f"/tickets/{tid}"), ("POST", f"/tickets/{tid}/cancel"),
                             ("POST", f"/tickets/{tid}/readmit"),
                             ("POST", f"/tickets/{tid}/reprint"),
                             ("GET", f"/windows/{tid}"), ("POST", f"/windows/{tid}/call-next"),
                             ("POST", f"/windows/{tid}/transfer")]:
            r = await client.request(method, f"{API}{path}", json={"service": "social"})
            _assert_answered(r, path.encode(), also=(503,) if "reprint" in path else ())
    # the hall still works
    assert (await client.get("/healthz")).status_code == 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(codec="utf-8")) | st.sampled_from(NASTY_STRINGS),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)


def _body(keys: list[str]) -> st.SearchStrategy[Any]:
    fields = st.dictionaries(st.sampled_from(keys) | st.text(max_size=10),
                             json_values | st.sampled_from(["property", "social", "kiosk_1",
                                                            "1", "3", "9"]), max_size=5)
    return fields | json_values


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=_body(["service", "priority", "terminal", "print"]))
async def test_issue_never_gives_500(client, body):
    raw = json.dumps(body).encode()
    _assert_answered(await _post_raw(client, "/tickets", raw), raw)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=_body(["service", "window"]))
async def test_transfer_never_gives_500(client, body):
    await _ensure_current(client)
    raw = json.dumps(body).encode()
    _assert_answered(await _post_raw(client, "/windows/1/transfer", raw), raw)


# -- Server-Sent Events over a real server ------------------------------------------------------

@asynccontextmanager
async def served(config: Config, clock: Clock) -> AsyncIterator[tuple[str, Any]]:
    """The application behind a real uvicorn server on a free loopback port, with the
    daemon's own HTTP protocol."""
    app = create_app(config, clock=clock)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on",
                                           log_level="warning", http=BoundedHttpToolsProtocol))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                    raise AssertionError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def sse(response: httpx.Response) -> AsyncIterator[dict]:
    """Parse a text/event-stream into {id, event, data} messages (comments skipped)."""
    message: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in message:
                message["data"] = json.loads(message["data"])
                yield message
            message = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data" and "data" in message:      # a multi-line data field
                value = message["data"] + "\n" + value
            message[name] = value


async def next_event(stream: AsyncIterator[dict], timeout: float = 5) -> dict:
    return await asyncio.wait_for(anext(stream), timeout)


async def subscribed(app, count: int) -> None:
    async with asyncio.timeout(5):
        while app.state.bus.subscriber_count < count:
            await asyncio.sleep(0.005)


def check_message(message: dict, type_: str) -> dict:
    assert message["event"] == type_
    data = message["data"]
    assert set(data) == {"id", "type", "at", "data"}
    assert data["type"] == type_ and str(data["id"]) == message["id"]
    assert data["at"].startswith("2026-11-30T")
    return data


async def test_event_stream_live_and_resumed(hall_config, clock):
    async with served(hall_config, clock) as (base, app):
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            async with http.stream("GET", f"{API}/events") as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                await subscribed(app, 1)
                stream = sse(r)
                t1 = (await http.post(f"{API}/tickets", json={"service": "property"})).json()
                t2 = (await http.post(f"{API}/tickets", json={"service": "social"})).json()
                first = check_message(await next_event(stream), "ticket.issued")
                second = check_message(await next_event(stream), "ticket.issued")
                assert first["data"]["ticket"] == t1["id"] and first["data"]["number"] == "A001"
                assert second["data"]["number"] == "C001" and second["data"]["ticket"] == t2["id"]
                assert second["id"] > first["id"]
                await stream.aclose()

            # reconnect: what was missed first, then what happens next
            resumed = {"headers": {"Last-Event-ID": str(first["id"])}}
            async with http.stream("GET", f"{API}/events", **resumed) as r:
                assert r.status_code == 200
                stream = sse(r)
                again = check_message(await next_event(stream), "ticket.issued")
                assert again == second
                await subscribed(app, 1)
                await http.post(f"{API}/tickets", json={"service": "business"})
                third = check_message(await next_event(stream), "ticket.issued")
                assert third["data"]["number"] == "B001" and third["id"] > second["id"]
                await stream.aclose()

            # the same with ?since= for clients that cannot set headers
            async with http.stream("GET", f"{API}/events?since={first['id']}") as r:
                assert r.status_code == 200
                stream = sse(r)
                assert check_message(await next_event(stream), "ticket.issued") == second
                assert check_message(await next_event(stream), "ticket.issued") == third
                await subscribed(app, 1)
                called = (await http.post(f"{API}/windows/1/call-next")).json()
                message = check_message(await next_event(stream), "ticket.called")
                assert message["data"]["ticket"] == called["id"]
                assert message["data"]["window"] == "1"
                await stream.aclose()


async def test_event_stream_resumes_across_a_restart(hall_config, clock):
    """Ids survive a restart: a display reconnecting to the new process gets what it missed."""
    config = hall_config
    async with served(config, clock) as (base, app):
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            await http.post(f"{API}/tickets", json={"service": "property"})
            last = (await http.get("/healthz")).json()["last_event"]
            await http.post(f"{API}/tickets", json={"service": "property"})
    async with served(config, clock) as (base, app):
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            async with http.stream("GET", f"{API}/events",
                                   headers={"Last-Event-ID": str(last)}) as r:
                stream = sse(r)
                missed = check_message(await next_event(stream), "ticket.issued")
                assert missed["data"]["number"] == "A002" and missed["id"] == last + 1
                await stream.aclose()


async def test_event_stream_with_an_id_from_the_future_starts_afresh(hall_config, clock):
    """A display that saw ids of another database (restored from a backup, reset) is not
    left silent until the new ids catch up with its Last-Event-ID."""
    async with served(hall_config, clock) as (base, app):
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            async with http.stream("GET", f"{API}/events",
                                   headers={"Last-Event-ID": "999999"}) as r:
                assert r.status_code == 200
                await subscribed(app, 1)
                stream = sse(r)
                await http.post(f"{API}/tickets", json={"service": "property"})
                message = check_message(await next_event(stream), "ticket.issued")
                assert message["data"]["number"] == "A001"
                await stream.aclose()
