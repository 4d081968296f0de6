"""Who may call what (contract §3): bearer tokens per role, a window's token for that window.

No or unknown token on a guarded route: 401; a token of the wrong role or of another
window: 403; public routes need no token; with no tokens at all (a loopback hall) every
route is open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from conftest import running, small_hall
from kioskd.config import Auth

API = "/api/v1"

KIOSK, TECH, SUPER, W1, W3 = "k-tok", "t-tok", "s-tok", "w1", "w3"
BOOKING, EVALUATOR = "b-tok", "e-tok"
AUTH = Auth(kiosk=(KIOSK,), technician=(TECH,), supervisor=(SUPER, "s-tok-2"),
            windows={"1": (W1,), "3": (W3,)}, booking=(BOOKING,), evaluator=(EVALUATOR,))
# Every window with a token: as a hall bound beyond loopback must be.
STRICT = Auth(kiosk=(KIOSK,), technician=(TECH,), supervisor=(SUPER,),
              windows={"1": (W1,), "2": ("w2",), "3": (W3,), "4": ("w4",), "9": ("w9",)},
              booking=(BOOKING,), evaluator=(EVALUATOR,))


@pytest.fixture
async def client(tmp_path, clock) -> AsyncIterator[httpx.AsyncClient]:
    async with running(small_hall(tmp_path / "var", AUTH), clock) as c:
        yield c


@pytest.fixture
async def strict_client(tmp_path, clock) -> AsyncIterator[httpx.AsyncClient]:
    async with running(small_hall(tmp_path / "var", STRICT), clock) as c:
        yield c


@pytest.fixture
async def open_client(tmp_path, clock) -> AsyncIterator[httpx.AsyncClient]:
    async with running(small_hall(tmp_path / "var", Auth()), clock) as c:
        yield c


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


async def call(client: httpx.AsyncClient, method: str, path: str, token: str | None = None,
               body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return await client.request(method, f"{API}{path}", headers={**bearer(token), **(headers or {})},
                                **({} if body is None else {"json": body}))


async def issue(client: httpx.AsyncClient, service: str = "property", token: str = KIOSK,
                **body: Any) -> dict:
    r = await call(client, "POST", "/tickets", token, {"service": service, **body})
    assert r.status_code == 201, r.text
    return r.json()


async def state(client: httpx.AsyncClient) -> tuple:
    q = await client.get(f"{API}/queue")
    h = await client.get("/healthz")
    return q.json(), h.json()["last_event"]


async def denied(client: httpx.AsyncClient, method: str, path: str, token: str | None,
                 status: int, body: Any = None, headers: dict[str, str] | None = None,
                 mentions: tuple[str, ...] = ()) -> str:
    before = await state(client)
    r = await call(client, method, path, token, body, headers)
    assert r.status_code == status, f"{method} {path} as {token}: {r.status_code} {r.text}"
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail.strip()
    for word in mentions:
        assert word in detail, f"{word!r} not in {detail!r}"
    if status == 401:
        assert r.headers["www-authenticate"].lower().startswith("bearer")
    assert await state(client) == before, f"a refused {method} {path} changed the queue"
    return detail


# Every guarded route, with a body that would be accepted, and who may call it.
WINDOW_ACTIONS = ["call-next", "recall", "start", "complete", "no-show", "pause", "resume"]
GUARDED = [
    ("POST", "/tickets", {"service": "property"}),
    ("POST", "/tickets/TID/reprint", None),
    ("POST", "/tickets/TID/cancel", None),
    *[("POST", f"/windows/1/{a}", None) for a in WINDOW_ACTIONS],
    ("POST", "/windows/1/transfer", {"service": "business"}),
    ("POST", "/windows/1/open", None),
    ("POST", "/windows/1/close", None),
    ("GET", "/devices", None),
    ("GET", "/devices/printer_1", None),
    ("POST", "/devices/printer_1/test", None),
    ("POST", "/devices/printer_1/reconnect", None),
    ("GET", "/windows/1/access", None),
    ("POST", "/devices/kiosk_1/heartbeat", {"page": "kiosk"}),
    ("POST", "/devices/kiosk_1/reload", None),
    ("GET", "/devices/voice/last-announcement.wav", None),
    ("GET", "/stats", None),
    ("GET", "/stats.csv", None),
    ("GET", "/alerts", None),
    ("POST", "/alerts/1/acknowledge", None),
    ("GET", "/audit", None),
    ("POST", "/appointments", {"service": "property", "slot": "2026-11-30T10:00",
                               "code": "K7Q2"}),
    ("GET", "/appointments", None),
    ("GET", "/appointments/AID", None),
    ("POST", "/appointments/AID/cancel", None),
    ("POST", "/appointments/check-in", {"code": "K7Q2"}),
    ("GET", "/windows/1/rating", None),
    ("POST", "/windows/1/rating", {"ticket": "TID", "level": 5}),
    ("GET", "/windows/1/rating/access", None),
]
# Who may call the supervision routes: (method, path, body, allowed tokens).
SUPERVISION = [
    ("GET", "/stats", None, {SUPER}),
    ("GET", "/stats.csv", None, {SUPER}),
    ("GET", "/audit", None, {SUPER}),
    ("GET", "/alerts", None, {TECH, SUPER}),
    ("GET", "/appointments", None, {BOOKING, SUPER}),
    ("POST", "/appointments", {"service": "property", "slot": "2026-11-30T10:00",
                               "code": "K7Q2"}, {BOOKING, SUPER}),
    ("POST", "/appointments/check-in", {"code": "NOPE"}, {KIOSK, SUPER}),
    ("GET", "/windows/1/rating", None, {EVALUATOR, SUPER, W1}),
    ("POST", "/windows/1/rating", {"ticket": "TID", "level": 5}, {EVALUATOR, SUPER}),
]
EVERY_TOKEN = (KIOSK, TECH, SUPER, W1, W3, BOOKING, EVALUATOR)
PUBLIC = ["/services", "/windows", "/windows/1", "/queue", "/tickets/TID", "/hall", "/calls",
          "/windows/1/waiting", "/tickets/TID/qr.svg"]


# -- 401 ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path,body", GUARDED)
async def test_no_token_is_401_with_a_detail(client, method, path, body):
    ticket = await issue(client)
    detail = await denied(client, method, path.replace("TID", ticket["id"]), None, 401, body,
                          mentions=("token",))
    assert "supervisor" in detail                 # says which roles would do


@pytest.mark.parametrize("method,path,body", GUARDED)
async def test_unknown_token_is_401(client, method, path, body):
    ticket = await issue(client)
    await denied(client, method, path.replace("TID", ticket["id"]), "not-a-token", 401, body,
                 mentions=("unknown token",))


@pytest.mark.parametrize("header", ["Basic azpr", "Basic " + KIOSK, KIOSK, "Bearer", "Bearer  ",
                                    "Token " + SUPER, "bearer"])
async def test_other_schemes_are_401(client, header):
    await denied(client, "POST", "/tickets", None, 401, {"service": "property"},
                 headers={"Authorization": header}, mentions=("Bearer",))


async def test_scheme_is_case_insensitive(client):
    r = await call(client, "POST", "/tickets", None, {"service": "property"},
                   headers={"Authorization": f"bearer {KIOSK}"})
    assert r.status_code == 201


async def test_tokens_are_checked_before_the_body(client):
    """An unauthenticated caller learns nothing about the input it would need."""
    json_header = {"content-type": "application/json"}
    for token, status in [(None, 401), ("not-a-token", 401), (TECH, 403)]:
        for path, content in [("/tickets", b"{bad"), ("/tickets", b'{"service": 7}'),
                              ("/tickets", b'{"service": "property", "x": 1}'),
                              ("/windows/1/transfer", b"{bad"),
                              ("/windows/1/transfer", b"[]"),
                              ("/tickets", b"\xff\xfe"),
                              ("/windows/1/transfer", b"[" * 5_000 + b"]" * 5_000)]:
            before = await state(client)
            r = await client.post(f"{API}{path}", content=content,
                                  headers={**json_header, **bearer(token)})
            assert r.status_code == status, f"{path} {content!r} as {token}: {r.text}"
            assert isinstance(r.json()["detail"], str)
            assert await state(client) == before


# -- 403 ----------------------------------------------------------------------------------------

async def test_wrong_role_is_403(client):
    ticket = await issue(client)
    tid = ticket["id"]
    await denied(client, "POST", "/tickets", TECH, 403, {"service": "property"},
                 mentions=("technician", "kiosk"))
    await denied(client, "POST", "/tickets", W1, 403, {"service": "property"})
    for action in WINDOW_ACTIONS:
        await denied(client, "POST", f"/windows/1/{action}", KIOSK, 403)
        await denied(client, "POST", f"/windows/1/{action}", TECH, 403)
    await denied(client, "POST", "/windows/1/transfer", KIOSK, 403, {"service": "business"})
    for route in ("cancel", "reprint"):
        await denied(client, "POST", f"/tickets/{tid}/{route}", W1, 403)


@pytest.mark.parametrize("method,path,body,allowed", SUPERVISION)
async def test_supervision_routes_answer_only_their_roles(client, method, path, body, allowed):
    """Every other token is 403 (and changes nothing); the allowed ones get past the
    guard (their answer is whatever the route says: 200, 201, 404 for what the
    body names)."""
    for token in EVERY_TOKEN:
        if token in allowed:
            r = await call(client, method, path, token, body)
            assert r.status_code not in (401, 403), (token, r.text)
        else:
            await denied(client, method, path, token, 403, body)


async def test_a_clerk_never_rates_even_where_the_evaluator_role_is_open(tmp_path, clock):
    """A loopback hall with clerk tokens but none for the pads: the pad (no token)
    rates, the clerk's own token is refused — a clerk would grade their own work."""
    config = small_hall(tmp_path / "var", Auth(windows={"1": (W1,)}))
    async with running(config, clock) as c:
        await denied(c, "POST", "/windows/1/rating", W1, 403, {"ticket": "TID", "level": 5})
        r = await call(c, "POST", "/windows/1/rating", None, {"ticket": "TID", "level": 5})
        assert r.status_code == 404, r.text          # past the guard: no such ticket


async def test_devices_are_for_the_technician(client):
    for token in (KIOSK, W1):
        await denied(client, "GET", "/devices", token, 403, mentions=("technician",))
        await denied(client, "POST", "/devices/printer_1/test", token, 403)
    r = await call(client, "GET", "/devices/printer_1", TECH)
    assert r.status_code == 200 and r.json()["state"] == "disabled"
    r = await call(client, "POST", "/devices/printer_1/test", TECH)
    assert r.status_code == 503 and r.json()["device"]["state"] == "disabled"


async def test_readmit_is_for_clerks_kiosks_and_supervisors(strict_client):
    c = strict_client
    a1 = await issue(c)
    await call(c, "POST", "/windows/1/call-next", W1)
    await call(c, "POST", "/windows/1/no-show", W1)
    path = f"/tickets/{a1['id']}/readmit"
    await denied(c, "POST", path, None, 401, mentions=("token",))
    await denied(c, "POST", path, "not-a-token", 401)
    await denied(c, "POST", path, TECH, 403, mentions=("technician",))
    for token in ("w4", KIOSK, SUPER):                       # any window's clerk
        r = await call(c, "POST", path, token)
        assert r.status_code == 200 and r.json()["status"] == "waiting"
        await call(c, "POST", "/windows/1/call-next", W1)
        await call(c, "POST", "/windows/1/no-show", W1)


async def test_another_windows_token_is_403(client):
    await issue(client, "property")
    await issue(client, "social")
    for action in WINDOW_ACTIONS:
        await denied(client, "POST", f"/windows/1/{action}", W3, 403,
                     mentions=("window 3", "window 1"))
    await denied(client, "POST", "/windows/1/transfer", W3, 403, {"service": "business"})
    # and the other way round
    await denied(client, "POST", "/windows/3/call-next", W1, 403)


async def test_open_and_close_are_for_the_supervisor_only(client):
    for token in (W1, KIOSK, TECH):
        await denied(client, "POST", "/windows/1/close", token, 403, mentions=("supervisor",))
    for token in (W1, W3, KIOSK, TECH):
        await denied(client, "POST", "/windows/9/open", token, 403, mentions=("supervisor",))
    await denied(client, "POST", "/windows/1/open", W1, 403)
    r = await call(client, "POST", "/windows/9/open", SUPER)
    assert r.status_code == 200 and r.json()["state"] == "open"
    r = await call(client, "POST", "/windows/1/close", "s-tok-2")     # any supervisor token
    assert r.status_code == 200 and r.json()["state"] == "closed"


# -- the right role -------------------------------------------------------------------------------

async def test_kiosk_and_supervisor_issue(client):
    assert (await issue(client, token=KIOSK))["number"] == "A001"
    assert (await issue(client, token=SUPER))["number"] == "A002"


async def test_a_clerk_works_their_own_window(client):
    a1 = await issue(client, "property")
    c1 = await issue(client, "social")
    for token, window, ticket in [(W1, "1", a1), (W3, "3", c1)]:
        r = await call(client, "POST", f"/windows/{window}/call-next", token)
        assert r.status_code == 200 and r.json()["id"] == ticket["id"]
        for action in ("recall", "start", "complete"):
            r = await call(client, "POST", f"/windows/{window}/{action}", token)
            assert r.status_code == 200, (action, r.text)
        r = await call(client, "POST", f"/windows/{window}/call-next", token)
        assert r.status_code == 204
        assert (await call(client, "POST", f"/windows/{window}/pause", token)).json()["state"] \
            == "paused"
        assert (await call(client, "POST", f"/windows/{window}/resume", token)).json()["state"] \
            == "open"

    a2 = await issue(client, "property")
    assert (await call(client, "POST", "/windows/1/call-next", W1)).json()["id"] == a2["id"]
    r = await call(client, "POST", "/windows/1/transfer", W1, {"window": "3"})
    assert r.status_code == 200 and r.json()["target_window"] == "3"
    assert (await call(client, "POST", "/windows/3/call-next", W3)).json()["id"] == a2["id"]
    r = await call(client, "POST", "/windows/3/no-show", W3)
    assert r.status_code == 200 and r.json()["status"] == "no_show"
    r = await call(client, "POST", f"/tickets/{a2['id']}/readmit", W1)   # any window's clerk
    assert r.status_code == 200 and r.json()["status"] == "waiting"


async def test_supervisor_acts_at_any_window(client):
    await issue(client, "property")
    await issue(client, "social")
    for window in ("1", "3"):
        for action in ("call-next", "recall", "start", "complete", "pause", "resume"):
            r = await call(client, "POST", f"/windows/{window}/{action}", SUPER)
            assert r.status_code == 200, (window, action, r.text)
    a3 = await issue(client, "property")
    await call(client, "POST", "/windows/1/call-next", SUPER)
    r = await call(client, "POST", "/windows/1/no-show", SUPER)
    assert r.status_code == 200
    r = await call(client, "POST", f"/tickets/{a3['id']}/readmit", SUPER)
    assert r.status_code == 200
    await call(client, "POST", "/windows/1/call-next", SUPER)
    r = await call(client, "POST", "/windows/1/transfer", SUPER, {"service": "business"})
    assert r.status_code == 200


async def test_ticket_desk_roles(client):
    for token in (KIOSK, TECH, SUPER):
        ticket = await issue(client)
        r = await call(client, "POST", f"/tickets/{ticket['id']}/cancel", token)
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        # reprint passes the guard and reaches the printer (not running here: 503)
        printed = await issue(client, terminal="kiosk_1")
        r = await call(client, "POST", f"/tickets/{printed['id']}/reprint", token)
        assert r.status_code == 503 and "printer_1" in r.json()["detail"]


async def test_public_routes_need_no_token(client):
    ticket = await issue(client)
    for path in PUBLIC:
        r = await client.get(f"{API}{path.replace('TID', ticket['id'])}")
        assert r.status_code == 200, (path, r.text)
    for path in ("/healthz", "/openapi.json", "/docs"):
        assert (await client.get(path)).status_code == 200
    # a token, even a wrong one, on a public route does not matter
    r = await client.get(f"{API}/queue", headers=bearer("not-a-token"))
    assert r.status_code == 200


async def test_a_window_without_tokens_is_open_on_loopback(client):
    """Windows 2, 4 and 9 have no tokens in this hall: like any role without tokens they
    are open (allowed on a loopback bind only, which `kioskd run` enforces)."""
    ticket = await issue(client, "business")
    r = await call(client, "POST", "/windows/2/call-next", None)
    assert r.status_code == 200 and r.json()["id"] == ticket["id"]
    r = await call(client, "POST", "/windows/2/no-show", TECH)     # any caller may act for it
    assert r.status_code == 200
    r = await call(client, "POST", f"/tickets/{ticket['id']}/readmit", None)   # as its clerk
    assert r.status_code == 200
    await denied(client, "POST", "/windows/2/call-next", "not-a-token", 401)
    # open/close stay the supervisor's
    await denied(client, "POST", "/windows/2/close", None, 401)


# -- a hall with no tokens at all ------------------------------------------------------------------

async def test_loopback_hall_without_tokens_is_open(open_client):
    c = open_client
    a1 = await issue(c, token=None)
    b1 = await issue(c, "business", token=None)
    printed = await issue(c, token=None, terminal="kiosk_1")
    for method, path, body, status in [
        ("POST", "/windows/1/call-next", None, 200),
        ("POST", "/windows/1/recall", None, 200),
        ("POST", "/windows/1/start", None, 200),
        ("POST", "/windows/1/complete", None, 200),
        ("POST", "/windows/1/call-next", None, 200),
        ("POST", "/windows/1/no-show", None, 200),
        ("POST", f"/tickets/{a1['id']}/readmit", None, 409),      # was completed, not missed
        ("POST", f"/tickets/{b1['id']}/readmit", None, 200),
        ("POST", f"/tickets/{b1['id']}/cancel", None, 200),
        ("POST", f"/tickets/{printed['id']}/reprint", None, 503),
        ("POST", "/windows/2/call-next", None, 200),
        ("POST", "/windows/2/transfer", {"service": "social"}, 200),
        ("POST", "/windows/2/pause", None, 200),
        ("POST", "/windows/2/resume", None, 200),
        ("POST", "/windows/9/open", None, 200),
        ("POST", "/windows/9/close", None, 200),
    ]:
        r = await call(c, method, path, None, body)
        assert r.status_code == status, (path, r.text)
    # an unknown token is still refused: it is a mistake worth telling
    r = await call(c, "POST", "/tickets", "not-a-token", {"service": "property"})
    assert r.status_code == 401


async def test_the_pages_routes_answer_their_roles(client):
    """The console asks whether its token may act at its window; the kiosk page
    reports for its terminal; a technician reloads a terminal's page."""
    assert (await call(client, "GET", "/windows/1/access", W1)).status_code == 200
    assert (await call(client, "GET", "/windows/1/access", SUPER)).status_code == 200
    detail = await denied(client, "GET", "/windows/1/access", W3, 403, mentions=("window 1",))
    assert "window 3" in detail
    await denied(client, "GET", "/windows/1/access", KIOSK, 403)
    for token in (KIOSK, TECH, SUPER):
        r = await call(client, "POST", "/devices/kiosk_1/heartbeat", token, {"page": "kiosk"})
        assert r.status_code == 200, (token, r.text)
    await denied(client, "POST", "/devices/kiosk_1/heartbeat", W1, 403)
    for token in (TECH, SUPER):
        assert (await call(client, "POST", "/devices/kiosk_1/reload", token)).status_code == 200
    await denied(client, "POST", "/devices/kiosk_1/reload", KIOSK, 403)
