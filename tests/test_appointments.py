"""Appointments in the hall: the booking system registers them, a citizen checks in at
the kiosk with the code — inside the window (its early and late edge), before it,
after it; reused, unknown, other-day and cancelled codes; where the appointment's
ticket stands in line against walk-ins and priority tickets; listing a day and
cancelling; who may do what; and the name and phone, masked everywhere they could
appear (answers, the SQLite files' bytes, the events, the audit log, the log)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from conftest import OPENING, Clock, serving, small_hall
from kioskd.config import Auth

API = "/api/v1"
TODAY = "2026-11-30"                  # OPENING's day, a Monday; the clock starts at 09:00
SLOT = "2026-11-30T09:30:00+08:00"    # check-in window 09:15 .. 10:00 (15 before, 30 after)


def at(hhmm: str) -> float:
    """OPENING's day at hh:mm, hall time."""
    hours, minutes = map(int, hhmm.split(":"))
    return OPENING + (hours - 9) * 3600 + minutes * 60


@pytest.fixture
async def hall(tmp_path: Path, clock: Clock):
    async with serving(small_hall(tmp_path / "var"), clock) as (app, client):
        yield app, client


async def book(client, code: str = "K7Q2-9041", slot: str = SLOT, service: str = "property",
               **more) -> dict:
    r = await client.post(f"{API}/appointments",
                          json={"service": service, "slot": slot, "code": code, **more})
    assert r.status_code == 201, r.text
    return r.json()


async def check_in(client, code: str = "K7Q2-9041", expect: int = 201, **more) -> dict:
    r = await client.post(f"{API}/appointments/check-in", json={"code": code, **more})
    assert r.status_code == expect, r.text
    return r.json()


async def walk_in(client, priority: bool = False) -> str:
    r = await client.post(f"{API}/tickets", json={"service": "property", "priority": priority})
    assert r.status_code == 201, r.text
    return r.json()["number"]


async def waiting(client) -> int:
    return (await client.get(f"{API}/queue")).json()["waiting"]


async def appointment(client, appointment_id: str) -> dict:
    r = await client.get(f"{API}/appointments/{appointment_id}")
    assert r.status_code == 200, r.text
    return r.json()


# ------------------------------------------------------------------ registering

async def test_registering_answers_the_appointment_with_its_check_in_window(hall, clock):
    _app, client = hall
    booked = await book(client, code="k7q2-9041", reference="YY-0042")
    assert booked["status"] == "booked" and booked["day"] == TODAY
    assert booked["code"] == "K7Q2-9041"                       # kept in capitals
    assert booked["service_name"] == "不动产登记"
    assert booked["slot"] == SLOT
    assert booked["check_in_from"] == "2026-11-30T09:15:00+08:00"
    assert booked["check_in_until"] == "2026-11-30T10:00:00+08:00"
    assert booked["ticket"] is None and booked["number"] is None
    assert booked["reference"] == "YY-0042"
    assert len(booked["id"]) >= 24                              # 96 random bits and a time
    assert await appointment(client, booked["id"]) == booked


async def test_a_slot_is_read_with_its_offset_or_as_the_halls_time(hall):
    _app, client = hall
    utc = await book(client, code="UTC1", slot="2026-11-30T01:30:00Z")
    naive = await book(client, code="NAIVE1", slot="2026-11-30T09:30")
    spaced = await book(client, code="SPACE1", slot="2026-11-30 09:30:00")
    assert utc["slot"] == naive["slot"] == spaced["slot"] == SLOT


@pytest.mark.parametrize("body, words", [
    ({"service": "passport"}, "unknown service 'passport'"),
    ({"slot": "tomorrow morning"}, "not an ISO 8601 date and time"),
    ({"slot": "2026-11-30"}, "not an ISO 8601 date and time"),           # a day is not a slot
    ({"slot": "2026-13-01T09:00"}, "not an ISO 8601 date and time"),
    ({"code": "ab1"}, "4 to 32 letters, digits or '-'"),
    ({"code": "A" * 33}, "4 to 32 letters, digits or '-'"),
    ({"code": "预约码1234"}, "4 to 32 letters, digits or '-'"),
    ({"code": "AB 12"}, "4 to 32 letters, digits or '-'"),
    ({"slot": "2026-11-30T08:29"}, "is past: check-in for it closed at 08:59"),
])
async def test_bad_registrations_are_refused_and_keep_nothing(hall, body, words):
    _app, client = hall
    r = await client.post(f"{API}/appointments", json={
        "service": "property", "slot": SLOT, "code": "GOOD-1", **body})
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"]
    assert (await client.get(f"{API}/appointments")).json() == []


async def test_a_slot_still_in_its_check_in_window_may_be_booked(hall, clock):
    _app, client = hall
    clock.now = at("09:59")
    assert (await book(client, slot="2026-11-30T09:30"))["status"] == "booked"


async def test_a_code_is_one_appointments_a_day_whatever_its_case(hall):
    _app, client = hall
    await book(client, code="AB12")
    r = await client.post(f"{API}/appointments",
                          json={"service": "business", "slot": "2026-11-30T11:00", "code": "ab12"})
    assert r.status_code == 409, r.text
    assert r.json()["detail"] == ("code: the check-in code AB12 is already used by another "
                                  "appointment on 2026-11-30")
    assert (await book(client, code="ab12", slot="2026-12-01T10:00"))["day"] == "2026-12-01"


# ------------------------------------------------------------------ checking in: the window

async def test_check_in_at_the_early_edge_is_a_priority_ticket(hall, clock):
    _app, client = hall
    booked = await book(client)
    clock.now = at("09:15")
    done = await check_in(client, "k7q2-9041")                  # typed in small letters
    ticket = done["ticket"]
    assert done["on_time"] is True
    assert done["message"] == "签到成功。您的预约时间是 09:30，将优先为您办理。"
    assert "served ahead of walk-ins" in done["message_en"]
    assert ticket["priority"] is True and ticket["service"] == "property"
    assert ticket["appointment"] == booked["id"] and ticket["status"] == "waiting"
    assert done["appointment"]["status"] == "checked_in"
    assert done["appointment"]["checked_in_at"] == "2026-11-30T09:15:00+08:00"
    assert done["appointment"]["ticket"] == ticket["id"]
    assert done["appointment"]["number"] == ticket["number"] == "A001"
    assert (await appointment(client, booked["id"]))["number"] == "A001"
    got = (await client.get(f"{API}/tickets/{ticket['id']}")).json()
    assert got["appointment"] == booked["id"]


async def test_check_in_at_the_late_edge_is_still_on_time(hall, clock):
    _app, client = hall
    await book(client)
    clock.now = at("10:00")
    done = await check_in(client)
    assert done["on_time"] is True and done["ticket"]["priority"] is True


async def test_check_in_before_the_window_says_when_and_changes_nothing(hall, clock):
    _app, client = hall
    booked = await book(client)
    clock.now = at("09:15") - 1
    refused = await check_in(client, expect=409)
    assert refused["reason"] == "too_early"
    assert refused["message"] == "请于 09:15 后签到（预约时间 09:30）。"
    assert refused["message_en"] == "Please check in from 09:15 (your appointment is at 09:30)."
    assert refused["detail"].startswith("请于 09:15 后签到")
    assert await waiting(client) == 0
    assert (await appointment(client, booked["id"]))["status"] == "booked"
    clock.now = at("09:15")
    assert (await check_in(client))["ticket"]["number"] == "A001"   # the number was not used


async def test_check_in_after_the_window_is_a_normal_ticket_and_says_so(hall, clock):
    _app, client = hall
    booked = await book(client, code="LATE-01")
    clock.now = at("10:00") + 1
    done = await check_in(client, "LATE-01")
    assert done["on_time"] is False
    assert done["message"] == "您已超过预约时间（09:30），已为您取普通号。"
    assert done["message_en"] == ("You are past your appointment time (09:30): "
                                  "you have a regular number.")
    assert done["ticket"]["priority"] is False
    assert done["ticket"]["appointment"] == booked["id"]
    assert done["appointment"]["status"] == "checked_in"


# ------------------------------------------------------------------ checking in: refusals

async def test_a_code_used_twice_names_when_and_the_number(hall, clock):
    _app, client = hall
    await book(client)
    clock.now = at("09:20")
    first = await check_in(client)
    clock.now = at("09:26")
    refused = await check_in(client, expect=409)
    assert refused["reason"] == "already_checked_in"
    assert refused["message"] == "该预约已于 09:20 签到，号码是 A001，请勿重复签到。"
    assert refused["message_en"] == "This appointment was checked in at 09:20: your number is A001."
    assert first["ticket"]["number"] == "A001"
    assert await waiting(client) == 1                             # no second ticket


async def test_unknown_and_malformed_codes(hall, clock):
    _app, client = hall
    await book(client)
    clock.now = at("09:20")
    unknown = await check_in(client, "K7Q2-9042", expect=404)
    assert unknown["reason"] == "unknown_code"
    assert unknown["message"].startswith("没有找到这个签到码的预约")
    for typed in ("K7", "K7Q2 9041", "https://hall.test/?code=K7Q2-9041", "K" * 33):
        malformed = await check_in(client, typed, expect=422)
        assert malformed["reason"] == "bad_code"
        assert "4 到 32 位" in malformed["message"]
    assert await waiting(client) == 0


async def test_a_code_of_another_day_names_that_day(hall, clock):
    _app, client = hall
    await book(client, code="TOMORROW", slot="2026-12-01T10:00")
    await book(client, code="YESTERDAY", slot="2026-11-30T16:00")
    clock.now = at("09:20")
    refused = await check_in(client, "TOMORROW", expect=409)
    assert refused["reason"] == "other_day"
    assert refused["message"] == "您的预约是 2026年12月1日，请当天再来签到。"
    assert refused["message_en"] == "Your appointment is on 1 December 2026. Please check in on that day."

    clock.now = at("09:20") + 86400                               # Tuesday
    refused = await check_in(client, "YESTERDAY", expect=409)
    assert refused["reason"] == "other_day"
    assert refused["message"] == "您的预约是 2026年11月30日，已经过期。如需办理，请直接取号。"
    assert await waiting(client) == 0


async def test_a_cancelled_appointment_cannot_check_in(hall, clock):
    _app, client = hall
    booked = await book(client)
    r = await client.post(f"{API}/appointments/{booked['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert r.json()["cancelled_at"] == "2026-11-30T09:00:00+08:00"
    clock.now = at("09:20")
    refused = await check_in(client, expect=409)
    assert refused["reason"] == "cancelled"
    assert refused["message"].startswith("该预约已取消")
    assert await waiting(client) == 0


# ------------------------------------------------------------------ where the ticket stands

async def test_an_appointment_is_called_ahead_of_earlier_walk_ins_near_its_slot(hall, clock):
    """At window 4 (property only): priority tickets first; among them an appointment
    stands at its slot and a priority walk-in at its issue time. So: the priority
    walk-in of 09:10, the 09:30 appointment, the priority walk-in of 09:35, then the
    walk-ins of 09:00 and 09:05, then the appointment that came too late (09:36)."""
    _app, client = hall
    await book(client, code="ONTIME-1")                           # 09:30
    await book(client, code="LATE-1", slot="2026-11-30T09:00")
    clock.now = at("09:00")
    first = await walk_in(client)
    clock.now = at("09:05")
    second = await walk_in(client)
    clock.now = at("09:10")
    early_priority = await walk_in(client, priority=True)
    clock.now = at("09:20")
    on_time = await check_in(client, "ONTIME-1")
    assert on_time["ticket"]["waiting_ahead"] == 1               # the 09:10 priority walk-in
    clock.now = at("09:35")
    later_priority = await walk_in(client, priority=True)
    clock.now = at("09:36")
    late = await check_in(client, "LATE-1")
    assert late["on_time"] is False and late["ticket"]["waiting_ahead"] == 5

    called = []
    for _ in range(6):
        r = await client.post(f"{API}/windows/4/call-next")
        assert r.status_code == 200, r.text
        called.append(r.json()["number"])
    assert called == [early_priority, on_time["ticket"]["number"], later_priority,
                      first, second, late["ticket"]["number"]]


# ------------------------------------------------------------------ listing and cancelling

async def test_listing_a_day_by_slot_and_cancelling(hall, clock):
    _app, client = hall
    eleven = await book(client, code="SLOT-1100", slot="2026-11-30T11:00")
    nine_thirty = await book(client, code="SLOT-0930")
    ten = await book(client, code="SLOT-1000", slot="2026-11-30T10:00", service="business")
    tomorrow = await book(client, code="SLOT-TMRW", slot="2026-12-01T09:00")

    today = (await client.get(f"{API}/appointments")).json()
    assert [a["id"] for a in today] == [nine_thirty["id"], ten["id"], eleven["id"]]
    named = (await client.get(f"{API}/appointments", params={"date": TODAY})).json()
    assert named == today
    later = (await client.get(f"{API}/appointments", params={"date": "2026-12-01"})).json()
    assert [a["id"] for a in later] == [tomorrow["id"]]
    r = await client.get(f"{API}/appointments", params={"date": "30.11.2026"})
    assert r.status_code == 422 and "YYYY-MM-DD" in r.json()["detail"]

    r = await client.post(f"{API}/appointments/{ten['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = await client.post(f"{API}/appointments/{ten['id']}/cancel")
    assert r.status_code == 409
    assert r.json()["detail"] == "the appointment was already cancelled at 2026-11-30 09:00"

    clock.now = at("09:20")
    done = await check_in(client, "SLOT-0930")
    r = await client.post(f"{API}/appointments/{nine_thirty['id']}/cancel")
    assert r.status_code == 409
    assert r.json()["detail"] == ("the appointment was checked in at 2026-11-30 09:20 with "
                                  f"ticket {done['ticket']['number']}; cancel the ticket instead")
    statuses = {a["code"]: (a["status"], a["number"])
                for a in (await client.get(f"{API}/appointments")).json()}
    assert statuses == {"SLOT-0930": ("checked_in", "A001"), "SLOT-1000": ("cancelled", None),
                        "SLOT-1100": ("booked", None)}

    clock.now = at("09:00") + 86400                               # the next day
    r = await client.post(f"{API}/appointments/{eleven['id']}/cancel")
    assert r.status_code == 409 and r.json()["detail"] == "the appointment's day (2026-11-30) is over"
    r = await client.get(f"{API}/appointments/AAAAnot-an-appointment")
    assert r.status_code == 404
    r = await client.post(f"{API}/appointments/AAAAnot-an-appointment/cancel")
    assert r.status_code == 404


# ------------------------------------------------------------------ at a terminal

async def test_a_check_in_at_a_terminal_prints_and_is_audited_as_that_kiosk(tmp_path, clock):
    config = small_hall(tmp_path / "var", Auth(kiosk=("kiosk-t",)))
    async with serving(config, clock) as (app, client):
        client.headers["Authorization"] = "Bearer kiosk-t"     # booking: open on loopback
        await at_a_terminal(app, client, clock)


async def at_a_terminal(app, client, clock):
    await book(client)
    await book(client, code="NOPRINT")
    clock.now = at("09:20")
    r = await client.post(f"{API}/appointments/check-in", json={"code": "K7Q2-9041",
                                                                "terminal": "kiosk_9"})
    assert r.status_code == 422 and "unknown terminal 'kiosk_9'" in r.json()["detail"]
    assert await waiting(client) == 0

    done = await check_in(client, terminal="kiosk_1")
    # small_hall's printer is disabled: the print was tried on the terminal's printer
    assert done["ticket"]["print"]["device"] == "printer_1"
    assert done["ticket"]["print"]["status"] == "failed"
    quiet = await check_in(client, "NOPRINT", terminal="kiosk_1", print=False)
    assert quiet["ticket"]["print"]["status"] == "none"

    entries = await app.state.queue.store.read(lambda tx: tx.audit_entries(TODAY))
    checked_in = [e for e in entries if e.action == "appointment.checked_in"]
    assert [e.actor.label for e in checked_in] == ["kiosk:kiosk_1", "kiosk:kiosk_1"]
    assert checked_in[0].appointment == done["appointment"]["id"]
    assert checked_in[0].ticket == done["ticket"]["id"]


async def test_events_say_what_changed_and_never_the_code(hall, clock):
    app, client = hall
    booked = await book(client, code="SECRET-CODE-77")
    clock.now = at("09:20")
    done = await check_in(client, "SECRET-CODE-77")
    other = await book(client, code="SECRET-CODE-88", slot="2026-11-30T15:00")
    await client.post(f"{API}/appointments/{other['id']}/cancel")
    events = [e for e in await app.state.queue.events_after(0) if e.type.startswith("appointment.")]
    assert [e.type for e in events] == ["appointment.registered", "appointment.checked_in",
                                        "appointment.registered", "appointment.cancelled"]
    checked = events[1].data
    assert checked["appointment"] == booked["id"] and checked["service"] == "property"
    assert checked["slot"] == SLOT and checked["status"] == "checked_in"
    assert checked["ticket"] == done["ticket"]["id"] and checked["number"] == "A001"
    assert checked["on_time"] is True
    assert events[3].data["status"] == "cancelled"
    assert "SECRET-CODE" not in repr([e.data for e in await app.state.queue.events_after(0)])


# ------------------------------------------------------------------ who may do what

async def test_booking_registers_lists_and_cancels_a_kiosk_checks_in_a_supervisor_does_all(
        tmp_path, clock):
    auth = Auth(kiosk=("kiosk-t",), booking=("booking-t",), supervisor=("super-t",),
                technician=("tech-t",), evaluator=("eval-t",))
    config = small_hall(tmp_path / "var", auth)

    def bearer(token: str) -> dict:
        return {"Authorization": f"Bearer {token}"}

    async with serving(config, clock) as (_app, client):
        body = {"service": "property", "slot": SLOT, "code": "ROLE-1"}
        r = await client.post(f"{API}/appointments", json=body)
        assert r.status_code == 401
        for token in ("kiosk-t", "tech-t", "eval-t"):
            r = await client.post(f"{API}/appointments", json=body, headers=bearer(token))
            assert r.status_code == 403, token
        r = await client.post(f"{API}/appointments", json=body, headers=bearer("booking-t"))
        assert r.status_code == 201
        booked = r.json()
        r = await client.post(f"{API}/appointments", json={**body, "code": "ROLE-2"},
                              headers=bearer("super-t"))
        assert r.status_code == 201
        second = r.json()

        for token, expected in (("kiosk-t", 403), ("booking-t", 200), ("super-t", 200)):
            r = await client.get(f"{API}/appointments", headers=bearer(token))
            assert r.status_code == expected, token
            r = await client.get(f"{API}/appointments/{booked['id']}", headers=bearer(token))
            assert r.status_code == expected, token

        clock.now = at("09:20")
        for token in ("booking-t", "tech-t"):
            r = await client.post(f"{API}/appointments/check-in", json={"code": "ROLE-1"},
                                  headers=bearer(token))
            assert r.status_code == 403, token
        r = await client.post(f"{API}/appointments/check-in", json={"code": "ROLE-1"},
                              headers=bearer("kiosk-t"))
        assert r.status_code == 201
        r = await client.post(f"{API}/appointments/check-in", json={"code": "ROLE-2"},
                              headers=bearer("super-t"))
        assert r.status_code == 201

        third = (await client.post(f"{API}/appointments", json={**body, "code": "ROLE-3"},
                                   headers=bearer("booking-t"))).json()
        r = await client.post(f"{API}/appointments/{third['id']}/cancel", headers=bearer("kiosk-t"))
        assert r.status_code == 403
        r = await client.post(f"{API}/appointments/{third['id']}/cancel",
                              headers=bearer("booking-t"))
        assert r.status_code == 200
        assert second["status"] == "booked"


# ------------------------------------------------------------------ personal data

FULL_NAME = "张三丰"
FULL_PHONE = "13812345678"


def leaks(text: str) -> list[str]:
    return [value for value in (FULL_NAME, FULL_PHONE, "138 1234 5678", "1234 5678")
            if value in text]


async def test_the_full_name_and_phone_appear_nowhere(tmp_path, clock, caplog):
    caplog.set_level(logging.DEBUG)
    config = small_hall(tmp_path / "var")
    answers: list[str] = []
    async with serving(config, clock) as (app, client):
        async def send(method: str, path: str, **kwargs) -> dict:
            r = await client.request(method, f"{API}{path}", **kwargs)
            answers.append(r.text)
            return r.json()

        booked = await send("POST", "/appointments", json={
            "service": "property", "slot": SLOT, "code": "PRIV-1", "name": FULL_NAME,
            "phone": FULL_PHONE, "reference": f"回访电话 {FULL_PHONE}"})
        assert booked["name"] == "张**" and booked["phone"] == "138****5678"
        assert booked["reference"] == "回访电话 138****5678"
        spaced = await send("POST", "/appointments", json={
            "service": "business", "slot": SLOT, "code": "PRIV-2", "name": f" {FULL_NAME} ",
            "phone": "+86 138 1234 5678"})
        assert spaced["name"] == "张**" and spaced["phone"] == "138****5678"
        as_number = await send("POST", "/appointments", json={
            "service": "social", "slot": SLOT, "code": "PRIV-3", "phone": int(FULL_PHONE)})
        assert as_number["phone"] == "138****5678"

        # Refused bodies never echo them: a bad type, an unknown key, a bad slot,
        # a used code, malformed JSON.
        refusals = [
            {"service": 5, "slot": SLOT, "code": "PRIV-9", "name": FULL_NAME, "phone": FULL_PHONE},
            {"service": "property", "slot": SLOT, "code": "PRIV-9", "name": [FULL_NAME],
             "phone": {"mobile": FULL_PHONE}},
            {"service": "property", "slot": SLOT, "code": "PRIV-9", "phone": FULL_PHONE,
             "mobile": FULL_PHONE},
            {"service": "property", "slot": "soon", "code": "PRIV-9", "name": FULL_NAME,
             "phone": FULL_PHONE},
            {"service": "property", "slot": SLOT, "code": "PRIV-1", "name": FULL_NAME,
             "phone": FULL_PHONE},
            {"slot": SLOT, "code": "PRIV-9", "name": FULL_NAME, "phone": FULL_PHONE},
            {"service": "property", "slot": SLOT, "code": "PRIV-9", "name": FULL_NAME * 30,
             "phone": FULL_PHONE * 5},
        ]
        for body in refusals:
            before = len(answers)
            await send("POST", "/appointments", json=body)
            assert answers[before].startswith('{"detail"'), answers[before]
        r = await client.post(f"{API}/appointments", content=(
            '{"service": "property", "name": "%s", "phone": "%s",' % (FULL_NAME, FULL_PHONE)
        ).encode(), headers={"Content-Type": "application/json"})
        answers.append(r.text)
        assert r.status_code == 422

        clock.now = at("09:20")
        await send("POST", "/appointments/check-in", json={"code": "priv-1", "terminal": "kiosk_1"})
        await send("POST", "/appointments/check-in", json={"code": "priv-1"})
        await send("POST", f"/appointments/{spaced['id']}/cancel")
        await send("GET", "/appointments")
        await send("GET", f"/appointments/{booked['id']}")
        await send("GET", "/queue")
        await send("GET", "/audit", params={"date": TODAY})
        events = await app.state.queue.events_after(0)
        audit = await app.state.queue.store.read(lambda tx: tx.audit_entries(TODAY))
        assert any(e.action == "appointment.registered" for e in audit)

    assert leaks("\n".join(answers)) == []
    assert leaks(repr([(e.type, e.data) for e in events])) == []
    assert leaks(repr(audit)) == []
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    assert leaks(logged) == []

    files = sorted(config.hall.data_dir.glob("kioskd.db*"))
    assert files and files[0].name == "kioskd.db"
    for path in files:
        raw = path.read_bytes()
        for value in (FULL_NAME, FULL_PHONE):
            for encoding in ("utf-8", "utf-16-le", "utf-16-be", "gb18030"):
                assert value.encode(encoding) not in raw, (path.name, value, encoding)
    with sqlite3.connect(files[0]) as db:
        rows = db.execute("SELECT * FROM audit").fetchall() + \
            db.execute("SELECT * FROM appointments").fetchall() + \
            db.execute("SELECT * FROM events").fetchall()
    assert rows and leaks(repr(rows)) == []
