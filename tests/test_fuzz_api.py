"""The HTTP API fuzzed from its own OpenAPI schema (schemathesis): whatever a caller
sends, with whichever token, kioskd never answers 5xx (but the contract's 503 naming
a device that is not ready), every answer is one the schema documents (status
code, content type, body, headers), a guarded route without a valid token is 401,
and a request it refuses (4xx) leaves the queue exactly as it was: windows,
waiting lines, the day's ticket counts, appointments, alerts and the event log.

The hall is conftest's small hall with a token for every role and every window
(so nothing is open), its clock stopped at 09:00, and tickets, windows, an
appointment and an alert seeded in interesting states before the fuzz begins.
Each case is sent by a caller chosen from the case itself (the supervisor most
often, then every other role, the window's clerk, another window's clerk, no
token, an unknown token); a positive case may have a generated id swapped for a
real one, so the fuzz reaches the routes' real paths, not only their 404s.

`GET /api/v1/events` never ends by itself: it is fuzzed apart, each stream cut
after STREAM_S. Hypothesis runs derandomized with a fixed number of examples per
operation and phase, so a run is reproducible and fits CI (~60 s)."""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               negative_data_rejection,
                                               response_headers_conformance,
                                               response_schema_conformance,
                                               status_code_conformance)

from conftest import Clock, small_hall
from kioskd.app import create_app
from kioskd.config import Alerts, Auth, Thresholds

API = "/api/v1"
EVENTS = f"{API}/events"
STREAM_S = 0.3                        # how long an event stream is read before it is cut
EXAMPLES = 40                         # per operation and phase
WINDOWS = ("1", "2", "3", "4", "9")
TOKENS = {"supervisor": "super-t", "kiosk": "kiosk-t", "technician": "tech-t",
          "booking": "book-t", "evaluator": "eval-t"}
AUTH = Auth(**{role: (token,) for role, token in TOKENS.items()},
            windows={w: (f"clerk-{w}",) for w in WINDOWS})
SUPERVISOR = {"Authorization": f"Bearer {TOKENS['supervisor']}"}
# Who calls: the supervisor may do everything, so it reaches the most paths.
CALLERS = ("supervisor",) * 8 + tuple(TOKENS) + ("clerk", "other-clerk", "none", "unknown")


def no_server_error(ctx, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """No 5xx, but for the one the contract asks for: 503 with the state of a device
    that cannot take the command (the hall's printer is disabled)."""
    if response.status_code < 500:
        return
    body = response.json() if response.headers.get("content-type", [""])[0].startswith(
        "application/json") else None
    device = body.get("device") if isinstance(body, dict) else None
    assert response.status_code == 503 and isinstance(device, dict) \
        and device.get("state") != "ready", \
        f"server error {response.status_code}: {response.text[:300]}"


CHECKS = [no_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance, negative_data_rejection]
CODES = ("K7Q2-9041", "ZZ99-0001")     # the seeded appointments' check-in codes
NO_ALERTS = Thresholds(wait_min=0, serve_min=0, waiting_per_window=0)


def quiet_hall(data_dir: Path):
    """The small hall, fully guarded, with nothing that changes the event log by
    itself: no watch alerts (its checks follow every change a second later, and
    one landing between the two looks of a refused request would look like the
    request's doing); small_hall sets no issue limits."""
    config = small_hall(data_dir, AUTH)
    return dataclasses.replace(
        config,
        alerts=Alerts(pause_min=0, device_offline_s=0, thresholds=NO_ALERTS),
        services=tuple(dataclasses.replace(s, thresholds=NO_ALERTS) for s in config.services))


@dataclasses.dataclass
class Hall:
    client: asgi.ASGIClient
    tickets: list[str]
    appointments: list[str]
    known: dict | None = None       # the snapshot, while nothing can have changed it

    def ok(self, method: str, path: str, expect: int = 200, token: str = "supervisor",
           **kwargs) -> dict:
        r = self.client.request(method, API + path,
                                headers={"Authorization": f"Bearer {token_of(token)}"},
                                **kwargs)
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else {}

    def real(self) -> dict[str, tuple[str, ...]]:
        """Ids that exist, by the name of the path parameter or body field that
        takes one."""
        tickets = tuple(self.tickets)
        return {"w": WINDOWS, "window": WINDOWS, "ticket_id": tickets, "ticket": tickets,
                "device_id": ("printer_1", "kiosk_1"), "terminal": ("kiosk_1",),
                "alert_id": ("1",), "appointment_id": tuple(self.appointments),
                "service": ("property", "business", "social"), "code": CODES}

    def snapshot(self) -> dict:
        """Everything a refused request must leave as it was: every change kioskd
        makes is an event (the log's last id), and the tickets' states add up in
        the day's counts per service."""
        def get(path: str) -> object:
            r = self.client.get(path, headers=SUPERVISOR)
            assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text}"
            return r.json()
        stats = get(f"{API}/stats")
        return {
            "last_event": get("/healthz")["last_event"],
            "queue": get(f"{API}/queue"),
            "counts": {s["id"]: s for s in stats["services"]} | {"totals": stats["totals"]},
            "appointments": get(f"{API}/appointments"),
            "alerts": get(f"{API}/alerts?state=all"),
        }


def token_of(caller: str) -> str:
    return TOKENS.get(caller) or f"clerk-{caller}"


def seed(hall: Hall) -> None:
    """Tickets waiting (one priority), called, being served, done and rated badly
    (an open alert), done and still ratable, a no-show, a cancelled one; window 3
    paused, the temporary window 9 closed; an appointment checked in and one booked."""
    def issue(service: str, **more) -> str:
        ticket = hall.ok("POST", "/tickets", 201, json={"service": service, **more})
        hall.tickets.append(ticket["id"])
        return ticket["id"]
    for service in ("property", "business", "social", "property", "business", "property"):
        issue(service)
    issue("property", priority=True)
    issue("social", terminal="kiosk_1", print=False)
    hall.ok("POST", "/windows/1/call-next")
    hall.ok("POST", "/windows/1/complete")
    hall.ok("POST", "/windows/1/rating", 201, token="evaluator",
            json={"ticket": hall.tickets[6], "level": 1})          # a bad_rating alert
    hall.ok("POST", "/windows/2/call-next")
    hall.ok("POST", "/windows/2/no-show")
    hall.ok("POST", "/windows/2/call-next")
    hall.ok("POST", "/windows/2/complete")                          # ratable for 120 s
    hall.ok("POST", "/windows/1/call-next")
    hall.ok("POST", "/windows/2/call-next")
    hall.ok("POST", "/windows/2/start")
    hall.ok("POST", "/windows/3/pause")
    hall.ok("POST", f"/tickets/{hall.tickets[5]}/cancel")
    for code, slot in zip(CODES, ("09:10", "11:00")):
        booked = hall.ok("POST", "/appointments", 201, token="booking", json={
            "service": "property", "slot": f"2026-11-30T{slot}:00+08:00", "code": code,
            "name": "张三", "phone": "13812345678"})
        hall.appointments.append(booked["id"])
    checked = hall.ok("POST", "/appointments/check-in", 201, token="kiosk",
                      json={"code": "K7Q2-9041"})
    hall.tickets.append(checked["ticket"]["id"])
    issue("business")
    issue("social")


class Forward:
    """The application the schema's cases are sent to: the hall the module's
    fixture runs (the schema is read at import, before any hall exists)."""

    def __init__(self):
        self.app = None

    async def __call__(self, scope, receive, send) -> None:
        assert self.app is not None, "no hall is running"
        await self.app(scope, receive, send)


FORWARD = Forward()
whole = schemathesis.openapi.from_dict(create_app(quiet_hall(Path("unused"))).openapi())
whole.app = FORWARD
schema = whole.exclude(path=EVENTS)            # never ends: fuzzed on its own, bounded
events = whole.include(path=EVENTS)


@pytest.fixture(scope="module")
def hall(tmp_path_factory: pytest.TempPathFactory):
    FORWARD.app = create_app(quiet_hall(tmp_path_factory.mktemp("fuzz") / "var"), clock=Clock())
    try:
        with asgi.get_client(FORWARD) as client:   # starts the hall's lifespan, kept
            state = Hall(client, [], [])
            seed(state)
            yield state
    finally:
        asgi.shutdown_lifespans()                  # the hall's lifespan ends: store closed
        FORWARD.app = None


def chooser(case: schemathesis.Case) -> random.Random:
    """Choices made for a case (who calls, which real ids) that follow from the case
    itself: the same case is always sent the same way, run after run."""
    body = case.body if isinstance(case.body, (dict, list, str, bytes, int, float)) else None
    seen = repr((case.method, case.path, case.path_parameters, case.query, body))
    return random.Random(hashlib.sha256(seen.encode("utf-8", "surrogatepass")).digest())


def authorization(case: schemathesis.Case, caller: str) -> dict[str, str]:
    """The caller's Authorization header; none when the case itself is about a
    missing or malformed one (a negative case of its headers)."""
    if case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER):
        return {}
    window = (case.path_parameters or {}).get("w")
    if caller == "clerk":
        caller = window if window in WINDOWS else "1"
    elif caller == "other-clerk":
        caller = next(w for w in WINDOWS if w != window)
    if caller == "none":
        return {}
    return {"Authorization": f"Bearer {'not-a-token' if caller == 'unknown' else token_of(caller)}"}


@schema.parametrize()
@settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_api(case: schemathesis.Case, hall: Hall) -> None:
    choose = chooser(case)
    caller = choose.choice(CALLERS)
    if case.meta is None or case.meta.generation.mode.is_positive:
        real = hall.real()
        for values in (case.path_parameters, case.body):
            for name in values if isinstance(values, dict) else ():
                if name in real and choose.random() < 0.5:
                    values[name] = choose.choice(real[name])
    headers = authorization(case, caller)
    before = hall.known or hall.snapshot()
    hall.known = None
    response = case.call(headers=headers)
    case.validate_response(response, checks=CHECKS)
    if caller in ("none", "unknown") and case.operation.definition.raw.get("security") \
            and response.status_code != 405:
        assert response.status_code == 401, \
            f"{case.method} {case.formatted_path} without a valid token: {response.status_code}"
    unchanged_if_refused(case, response, before, hall)


def unchanged_if_refused(case: schemathesis.Case, response: schemathesis.Response,
                         before: dict, hall: Hall) -> None:
    if 400 <= response.status_code < 500:
        after = hall.snapshot()
        assert after == before, \
            f"{case.method} {case.formatted_path} answered {response.status_code} " \
            f"({response.text[:200]}) but changed the queue"
        hall.known = after          # the next case's "before": nothing has changed since


@events.parametrize()
@settings(max_examples=10, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_event_stream(case: schemathesis.Case, hall: Hall) -> None:
    """The event stream, read for STREAM_S and then cut (it never ends by itself):
    what it sent by then is an event stream, or a documented refusal."""
    before = hall.known or hall.snapshot()
    hall.known = None
    response = case.call(headers=authorization(case, "none"), timeout=STREAM_S)
    case.validate_response(response, checks=CHECKS)
    unchanged_if_refused(case, response, before, hall)


BODY_ROUTES = [(op.method.upper(), op.path)
               for op in (result.ok() for result in schema.get_all_operations())
               if "requestBody" in op.definition.raw]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_a_body_over_the_limit_is_refused_as_documented(method: str, path: str,
                                                         hall: Hall) -> None:
    """413 for a body over 64 KiB, on every route that takes one: an answer the
    schema lists, and nothing changed. (The fuzz never sends one that large.)"""
    operation = schema[path][method]
    filled = {name: "1" for name in re.findall(r"{(\w+)}", path)}
    case = operation.Case(path_parameters=filled, body={"service": "x" * 70_000},
                          media_type="application/json")
    before = hall.snapshot()
    response = case.call(headers=SUPERVISOR)
    assert response.status_code == 413, response.text
    case.validate_response(response, checks=CHECKS)
    assert hall.snapshot() == before
