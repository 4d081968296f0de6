"""Every route the daemon serves against every role (contract §3, docs/api.md).

The expected answers come from ROUTES below, a table written from the contract and
the documentation — never from the guards in kioskd/api — so a guard that lets the
wrong role in, or keeps the right one out, fails here. A route the application
serves without a row in the table fails too: a new route must say who may call it.

The hall is test_auth's STRICT one: every role and every window has its own token,
as a hall bound beyond loopback must. For each (route, caller):

- public: answered (200) without a token, and with any token, even an unknown one;
- guarded, no token or an unknown one: 401 with `WWW-Authenticate: Bearer`;
- guarded, a token of another role or of another window: 403, nothing changed;
- guarded, a role the table allows: let through — whatever the route then says
  (2xx, 404, 409, 422), never 401/403 and never a 5xx but the contract's 503 of a
  device that is not ready (this hall's printer is disabled).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Mount

from conftest import serving, small_hall
from kioskd.app import create_app
from test_auth import BOOKING, EVALUATOR, KIOSK, STRICT, SUPER, TECH, bearer, denied, issue

API = "/api/v1"
PUBLIC = "public"
THIS_WINDOW = "window w"          # the clerk of the window named in the path
ANY_WINDOW = "any window"         # any window's clerk

WINDOW_TOKENS = {w: tokens[0] for w, tokens in STRICT.windows.items()}   # "1" -> "w1", ...
UNKNOWN = "not-a-token-of-this-hall"
# Who knocks: (label, token, the roles it holds — a window's as "window:ID").
CALLERS = [("no token", None, set()), ("unknown token", UNKNOWN, set()),
           ("kiosk", KIOSK, {"kiosk"}), ("technician", TECH, {"technician"}),
           ("supervisor", SUPER, {"supervisor"}), ("booking", BOOKING, {"booking"}),
           ("evaluator", EVALUATOR, {"evaluator"}),
           *[(f"window {w}", token, {f"window:{w}"}) for w, token in WINDOW_TOKENS.items()]]
# A path naming a window ({w}) is tried at these two, each of which has a clerk token:
# window 1's clerk is tried at window 3 and the other way round.
PATH_WINDOWS = ("1", "3")

SLOT = "2026-11-30T10:00"         # the hall's clock (conftest's `clock`) stands at 9:00 that day


@dataclass(frozen=True)
class Rule:
    """Who may call a route, and requests to try it with: (path, JSON body) each."""

    who: frozenset[str]
    samples: tuple[tuple[str, Any], ...]

    @property
    def public(self) -> bool:
        return PUBLIC in self.who

    def allows(self, principals: set[str], window: str | None) -> bool:
        for principal in principals:
            if principal in self.who:
                return True
            if principal.startswith("window:") and (
                    ANY_WINDOW in self.who
                    or (THIS_WINDOW in self.who and principal == f"window:{window}")):
                return True
        return False


def rule(who: Iterable[str], *samples: str | tuple[str, Any]) -> Rule:
    return Rule(frozenset(who), tuple(s if isinstance(s, tuple) else (s, None) for s in samples))


def public(*samples: str) -> Rule:
    return rule({PUBLIC}, *samples)


CLERK = {THIS_WINDOW, "supervisor"}
TICKET_DESK = {"kiosk", "technician", "supervisor"}
DEVICES = {"technician", "supervisor"}
BOOKING_SYSTEM = {"booking", "supervisor"}
RATERS = {"evaluator", "supervisor"}

# (method, route as the application declares it) -> who may call it, and how to try it.
# {TID}: a waiting ticket; {NID}: a no-show; {DONE}: a ticket just completed at window 1;
# {AID}: an appointment; {w}: each of PATH_WINDOWS.
ROUTES: dict[tuple[str, str], Rule] = {
    # -- outside /api/v1 (contract §3, docs/api.md "Outside /api/v1"): all public -------
    ("GET", "/livez"): public("/livez"),
    ("GET", "/healthz"): public("/healthz"),
    ("GET", "/metrics"): public("/metrics"),
    ("GET", "/docs"): public("/docs"),                         # "OpenAPI at /docs"
    ("GET", "/docs/oauth2-redirect"): public("/docs/oauth2-redirect"),
    ("GET", "/openapi.json"): public("/openapi.json"),
    ("HEAD", "/openapi.json"): public("/openapi.json"),
    ("MOUNT", "/static-offline-docs"): public("/static-offline-docs/swagger-ui.css"),
    ("GET", "/ui"): public("/ui"),
    ("GET", "/ui/"): public("/ui/"),
    ("GET", "/ui/{name}"): public(*(f"/ui/{page}" for page in (
        "kiosk", "window", "display", "diagnostics", "supervisor", "rate"))),
    ("GET", "/ui/ticket/{ticket_id}"): public("/ui/ticket/{TID}"),
    ("MOUNT", "/ui/static"): public("/ui/static/kioskd.css"),
    # -- /api/v1, the routes table of docs/api.md (contract §3 where it has the row) ---
    ("GET", "/api/v1/hall"): public("/api/v1/hall"),
    ("GET", "/api/v1/services"): public("/api/v1/services"),
    ("POST", "/api/v1/tickets"): rule({"kiosk", "supervisor"},
                                      ("/api/v1/tickets", {"service": "property"})),
    ("GET", "/api/v1/tickets/{ticket_id}"): public("/api/v1/tickets/{TID}"),
    ("GET", "/api/v1/tickets/{ticket_id}/qr.svg"): public("/api/v1/tickets/{TID}/qr.svg"),
    ("POST", "/api/v1/tickets/{ticket_id}/reprint"): rule(TICKET_DESK,
                                                          "/api/v1/tickets/{TID}/reprint"),
    ("POST", "/api/v1/tickets/{ticket_id}/cancel"): rule(TICKET_DESK,
                                                         "/api/v1/tickets/{TID}/cancel"),
    ("POST", "/api/v1/tickets/{ticket_id}/readmit"): rule({"kiosk", ANY_WINDOW, "supervisor"},
                                                          "/api/v1/tickets/{NID}/readmit"),
    ("GET", "/api/v1/windows"): public("/api/v1/windows"),
    ("GET", "/api/v1/windows/{w}"): public("/api/v1/windows/{w}"),
    ("GET", "/api/v1/queue"): public("/api/v1/queue"),
    ("GET", "/api/v1/windows/{w}/waiting"): public("/api/v1/windows/{w}/waiting"),
    ("GET", "/api/v1/calls"): public("/api/v1/calls"),
    ("GET", "/api/v1/windows/{w}/access"): rule(CLERK, "/api/v1/windows/{w}/access"),
    **{("POST", f"/api/v1/windows/{{w}}/{action}"): rule(CLERK, f"/api/v1/windows/{{w}}/{action}")
       for action in ("call-next", "recall", "start", "complete", "no-show", "pause", "resume")},
    ("POST", "/api/v1/windows/{w}/transfer"): rule(
        CLERK, ("/api/v1/windows/{w}/transfer", {"service": "business"})),
    ("POST", "/api/v1/windows/{w}/open"): rule({"supervisor"}, "/api/v1/windows/{w}/open"),
    ("POST", "/api/v1/windows/{w}/close"): rule({"supervisor"}, "/api/v1/windows/{w}/close"),
    ("GET", "/api/v1/events"): public("/api/v1/events", "/api/v1/events?since=0"),
    ("GET", "/api/v1/stats"): rule({"supervisor"}, "/api/v1/stats"),
    ("GET", "/api/v1/stats.csv"): rule({"supervisor"}, "/api/v1/stats.csv"),
    ("GET", "/api/v1/alerts"): rule(DEVICES, "/api/v1/alerts"),
    # "supervisor (technician: device alerts)"; there is no alert 1 here: 404 for both
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): rule(DEVICES,
                                                            "/api/v1/alerts/1/acknowledge"),
    ("POST", "/api/v1/appointments"): rule(BOOKING_SYSTEM, ("/api/v1/appointments", {
        "service": "property", "slot": SLOT, "code": "ROLE-2"})),
    ("GET", "/api/v1/appointments"): rule(BOOKING_SYSTEM, "/api/v1/appointments"),
    ("GET", "/api/v1/appointments/{appointment_id}"): rule(BOOKING_SYSTEM,
                                                           "/api/v1/appointments/{AID}"),
    ("POST", "/api/v1/appointments/{appointment_id}/cancel"): rule(
        BOOKING_SYSTEM, "/api/v1/appointments/{AID}/cancel"),
    ("POST", "/api/v1/appointments/check-in"): rule(
        {"kiosk", "supervisor"}, ("/api/v1/appointments/check-in", {"code": "ROLE-1"})),
    ("GET", "/api/v1/windows/{w}/rating"): rule({*RATERS, THIS_WINDOW},
                                                "/api/v1/windows/{w}/rating"),
    ("POST", "/api/v1/windows/{w}/rating"): rule(
        RATERS, ("/api/v1/windows/{w}/rating", {"ticket": "{DONE}", "level": 5})),
    ("GET", "/api/v1/windows/{w}/rating/access"): rule(RATERS,
                                                       "/api/v1/windows/{w}/rating/access"),
    ("GET", "/api/v1/audit"): rule({"supervisor"}, "/api/v1/audit"),
    ("GET", "/api/v1/devices"): rule(DEVICES, "/api/v1/devices"),
    ("GET", "/api/v1/devices/{device_id}"): rule(DEVICES, "/api/v1/devices/printer_1"),
    # printer_1 is disabled in this hall (its self-test would be a 503): the terminal's is a 409
    ("POST", "/api/v1/devices/{device_id}/test"): rule(DEVICES, "/api/v1/devices/kiosk_1/test"),
    ("POST", "/api/v1/devices/{device_id}/reconnect"): rule(DEVICES,
                                                            "/api/v1/devices/kiosk_1/reconnect"),
    ("GET", "/api/v1/devices/{device_id}/last-ticket.png"): rule(
        DEVICES, "/api/v1/devices/printer_1/last-ticket.png"),
    ("GET", "/api/v1/devices/{device_id}/last-announcement.wav"): rule(
        DEVICES, "/api/v1/devices/printer_1/last-announcement.wav"),
    ("POST", "/api/v1/devices/{device_id}/heartbeat"): rule(
        TICKET_DESK, ("/api/v1/devices/kiosk_1/heartbeat", {"page": "kiosk"})),
    ("POST", "/api/v1/devices/{device_id}/reload"): rule(DEVICES, "/api/v1/devices/kiosk_1/reload"),
}


def served_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the application answers; ("MOUNT", path) for a
    folder of files. FastAPI ≥ 0.16x keeps included routers as one lazy entry each in
    `app.routes`: `iter_route_contexts` unfolds them (older ones list routes flat)."""
    try:
        from fastapi.routing import iter_route_contexts
        routes: Iterable[Any] = iter_route_contexts(app.routes)
    except ImportError:
        routes = app.routes
    found = set()
    for route in routes:
        original = getattr(route, "original_route", route)
        if isinstance(original, Mount):
            found.add(("MOUNT", route.path))
        else:
            found.update((method, route.path) for method in route.methods or ())
    return found


def hall_config(tmp_path):
    return small_hall(tmp_path / "var", STRICT)      # no [limits]: tickets are taken fast here


async def as_(client: httpx.AsyncClient, token: str, method: str, path: str,
              body: Any = None) -> httpx.Response:
    r = await client.request(method, f"{API}{path}", headers=bearer(token),
                             **({} if body is None else {"json": body}))
    assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
    return r


async def prepared(client: httpx.AsyncClient) -> dict[str, str]:
    """A morning in the STRICT hall, so that an allowed caller meets state its action
    makes sense in: window 1 has just completed A001 (ratable) and serves A002,
    window 2 marked B001 a no-show, window 3 serves C001, A003 waits (issued at
    kiosk_1), and the booking system has an appointment at 10:00 (code ROLE-1)."""
    done = await issue(client, "property")
    await as_(client, WINDOW_TOKENS["1"], "POST", "/windows/1/call-next")
    await as_(client, WINDOW_TOKENS["1"], "POST", "/windows/1/complete")
    missed = await issue(client, "business")
    await as_(client, WINDOW_TOKENS["2"], "POST", "/windows/2/call-next")
    await as_(client, WINDOW_TOKENS["2"], "POST", "/windows/2/no-show")
    await issue(client, "property")
    await as_(client, WINDOW_TOKENS["1"], "POST", "/windows/1/call-next")
    await issue(client, "social")
    await as_(client, WINDOW_TOKENS["3"], "POST", "/windows/3/call-next")
    waiting = await issue(client, "property", terminal="kiosk_1")
    booked = await as_(client, BOOKING, "POST", "/appointments",
                       {"service": "property", "slot": SLOT, "code": "ROLE-1"})
    return {"TID": waiting["id"], "NID": missed["id"], "DONE": done["id"],
            "AID": booked.json()["id"]}


def filled(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: filled(v, ids) for k, v in value.items()}
    return value


def tries(rule_: Rule, ids: dict[str, str]) -> list[tuple[str, Any, str | None]]:
    """(path, body, the window the path names) for each sample, at each PATH_WINDOWS."""
    found = []
    for path, body in rule_.samples:
        for window in (PATH_WINDOWS if "{w}" in path else (None,)):
            found.append((filled(path, {**ids, "w": window}), filled(body, ids), window))
    return found


async def head_of(app: FastAPI, path: str, token: str | None) -> tuple[int, dict[str, str]]:
    """Status and headers of an answer that never ends (the event stream; httpx's
    in-process transport would wait for its end): the request goes straight to the
    application, and the client hangs up as soon as the answer has begun."""
    begun: asyncio.Future = asyncio.get_running_loop().create_future()
    asked = False

    async def receive() -> dict:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.wait([begun])
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start" and not begun.done():
            begun.set_result(message)

    route, _, query = path.partition("?")
    headers = [(b"host", b"hall.test")] + [(k.lower().encode(), v.encode())
                                           for k, v in bearer(token).items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": route, "raw_path": route.encode(),
             "query_string": query.encode(), "root_path": "", "headers": headers,
             "server": ("hall.test", 80), "client": ("127.0.0.1", 50000)}
    async with asyncio.timeout(10):
        await app(scope, receive, send)
    start = begun.result()
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


async def answered_publicly(app: FastAPI, client: httpx.AsyncClient, method: str, path: str,
                            token: str | None, who: str) -> None:
    if path.startswith(f"{API}/events"):
        status, headers = await head_of(app, path, token)
        assert status == 200 and headers["content-type"].startswith("text/event-stream"), \
            f"{path} as {who}: {status}"
        return
    r = await client.request(method, path, headers=bearer(token))
    assert r.status_code == 200, f"{method} {path} as {who}: {r.status_code} {r.text[:200]}"


async def let_through(client: httpx.AsyncClient, method: str, path: str, body: Any,
                      token: str, who: str) -> None:
    r = await client.request(method, path, headers=bearer(token),
                             **({} if body is None else {"json": body}))
    # the contract's 503 of a device that is not ready (this hall's printer is
    # disabled) is the route's answer, given past the guard
    device_not_ready = r.status_code == 503 and "device" in r.json()
    assert r.status_code not in (401, 403) and (r.status_code < 500 or device_not_ready), \
        f"{method} {path} as {who} (allowed): {r.status_code} {r.text[:300]}"


@pytest.fixture
async def hall(tmp_path, clock) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, dict[str, str]]]:
    async with serving(hall_config(tmp_path), clock) as (app, client):
        yield app, client, await prepared(client)


# -- the table is complete -------------------------------------------------------------------

def test_every_route_served_has_a_row_and_every_row_a_route(tmp_path):
    served = served_routes(create_app(hall_config(tmp_path)))
    assert served - set(ROUTES) == set(), \
        "routes with no row in ROUTES (say who may call them, from the docs)"
    assert set(ROUTES) - served == set(), "rows in ROUTES for routes the daemon does not serve"


def test_every_guarded_route_is_under_the_api():
    """Outside /api/v1 everything is public (contract §3): a token there would be a
    route nobody documented."""
    assert [key for key, r in ROUTES.items() if not r.public and not key[1].startswith(API)] \
        == []


# -- route × caller ----------------------------------------------------------------------------

@pytest.mark.parametrize("key", sorted(ROUTES), ids=lambda key: f"{key[0]} {key[1]}")
async def test_route_answers_each_caller_as_the_table_says(hall, key):
    app, client, ids = hall
    method, _ = key
    method = "GET" if method == "MOUNT" else method
    rule_ = ROUTES[key]
    for path, body, window in tries(rule_, ids):
        if rule_.public:
            for who, token, _ in CALLERS:
                await answered_publicly(app, client, method, path, token, who)
            continue
        relative = path[len(API):]
        allowed = []
        for who, token, principals in CALLERS:       # every refusal first: none changes a thing
            if token in (None, UNKNOWN):
                detail = await denied(client, method, relative, token, 401, body)
                assert "token" in detail, f"{path} as {who}: {detail!r}"
            elif rule_.allows(principals, window):
                allowed.append((who, token))
            else:
                await denied(client, method, relative, token, 403, body)
        assert allowed, f"{method} {path}: nobody may call it?"
        for who, token in allowed:
            await let_through(client, method, path, body, token, who)


# -- a clerk's token acts for its own window only ------------------------------------------------

async def test_no_window_token_ever_acts_for_another_window(tmp_path, clock):
    """Every window-scoped route that is not public, at every window, with every
    other window's clerk token: 403 naming both windows, and the queue, the windows
    and the event log unchanged — while every window has a ticket at its desk, so
    that a wrongly admitted call-next, complete or transfer would have done something."""
    async with serving(hall_config(tmp_path), clock) as (app, client):
        await as_(client, SUPER, "POST", "/windows/9/open")
        for service in ("property", "business", "social", "property", "business"):
            await issue(client, service)
        for window in ("1", "2", "3", "4", "9"):
            r = await as_(client, WINDOW_TOKENS[window], "POST", f"/windows/{window}/call-next")
            assert r.status_code == 200, (window, r.text)
        scoped = [(method, route) for method, route in ROUTES
                  if "{w}" in route and not ROUTES[(method, route)].public]
        assert len(scoped) >= 14
        for method, route in scoped:
            body = filled(ROUTES[(method, route)].samples[0][1], {"DONE": "none"})
            for window in WINDOW_TOKENS:
                for other, token in WINDOW_TOKENS.items():
                    if other == window:
                        continue
                    path = route[len(API):].replace("{w}", window)
                    detail = await denied(client, method, path, token, 403, body)
                    assert f"window {other}" in detail, (path, other, detail)
        # and each clerk's own token still works at its own window
        for window, token in WINDOW_TOKENS.items():
            r = await as_(client, token, "POST", f"/windows/{window}/complete")
            assert r.json()["status"] == "done"
