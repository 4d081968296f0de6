"""Nothing identifying a person is printed, shown or logged in full (contract §4,
DOMAIN.md: screens mask names as 张*, an ID number is never printed or shown in full).

The real `kioskd run` process, a printer emulated in this test on a loopback TCP
port and call boards emulated here on pseudo-terminals (a Modbus digit display over
window 1, a framed Chinese text board in the hall and a text strip over window 2),
each reached by the real drivers. The booking system registers appointments with
full names, mobile and landline numbers and 18- and 15-digit ID numbers (in the
free-text `reference`, as it might); citizens check in at the kiosk, their tickets
print, clerks call, recall, transfer, complete and mark no-shows, a pad rates, a
booking is cancelled. Then every output is searched for each person's data in full
and for the parts masking hides (a phone's middle digits, an ID number's birth
date), with and without the spaces and dashes they were sent with: every answer the
day got, every GET route afterwards (the supervisor's too), every event since the
first, the audit log, the log file, every file in the data folder (the SQLite
database included), the tickets as the emulated printer decoded them and every text
the boards showed.

The masked forms (张**, 139****4816, 640102********1234) may be in the appointment's
own answers — to the booking system (register, list, read, cancel) and to the kiosk
that checked it in (the check-in's `appointment`) — and in the database, which keeps
only them; they are nowhere else: not in events, the audit log, the log, /metrics,
on paper or on a board.
"""

from __future__ import annotations

import textwrap
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import drivers
from conftest import demo_frame, running, small_hall, until
from daemon import Daemon, hall_toml
from drivers.escpos.emulator import EmulatedPrinter
from kioskd.config import load_config
from kioskd.privacy import is_personal_number, scrub_text
from secrets_outputs import Recorder, audit_log, data_files, every_event, get_routes, leaks

KIOSK, SUPER, TECH, BOOKING, EVALUATOR, W1, W2 = (
    "kiosk-tok-7f3a", "super-tok-91c2", "tech-tok-5d0e", "booking-tok-2b8f", "eval-tok-c4a1",
    "window1-tok-e6d9", "window2-tok-08b7")

HALL = hall_toml(2, boards={"1": "board_1", "2": "strip_2"}) + """
[auth]
kiosk = ["{KIOSK}"]
technician = ["{TECH}"]
supervisor = ["{SUPER}"]
booking = ["{BOOKING}"]
evaluator = ["{EVALUATOR}"]

[auth.windows]
"1" = ["{W1}"]
"2" = ["{W2}"]

[devices.printer_1]
driver = "escpos"
connection = "tcp://127.0.0.1:{printer_port}"
timeout = 3

[devices.kiosk_1]
driver = "terminal"
printer = "printer_1"

[devices.board_1]
driver = "modbus_digits"
port = "tty-bus"
unit = 1
reply_timeout = 0.3

[devices.hall_board]
driver = "framed_text"
port = "tty-hall"
address = 1
shows = "hall"
lines = 3
reply_timeout = 0.3
timeout = 4

{hall_frame}
[devices.strip_2]
driver = "framed_text"
port = "tty-hall"
address = 2
lines = 2
calling = "请{{number}}号\\n到{{window}}"
reply_timeout = 0.3
timeout = 4

{strip_frame}
"""

TZ = ZoneInfo("Asia/Shanghai")


class Person:
    """A citizen as the booking system knows them, and what of them may be seen."""

    def __init__(self, name: str, phone: str | int, id_number: str, *,
                 masked_name: str, masked_phone: str, masked_id: str):
        self.name, self.phone, self.id_number = name, phone, id_number
        self.masked = {"name": masked_name, "phone": masked_phone, "ID number": masked_id}

    def in_full(self) -> dict[str, str]:
        """Every form of their data that must never come out: whole, without the
        separators it was sent with, and the parts the masks hide."""
        phone = "".join(c for c in str(self.phone) if c.isdigit()).removeprefix("86")
        id_number = "".join(c for c in self.id_number if c.isalnum())
        forms = {"name": self.name, "given name": self.name[1:],
                 "phone as sent": str(self.phone), "phone's digits": phone,
                 "ID number as sent": self.id_number, "ID number's digits": id_number}
        if phone.startswith("1"):                  # a mobile: 139****4816 hides the middle
            forms["phone's first 7 digits"] = phone[:7]
            forms["phone's last 8 digits"] = phone[3:]
        else:                                      # a landline keeps only its last four
            forms["phone without its last four"] = phone[:-4]
        born = id_number[6:14] if len(id_number) == 18 else id_number[6:12]
        forms["ID number's birth date"] = born
        forms["ID number without its last four"] = id_number[:-4]
        forms["ID number without its first six"] = id_number[6:]
        return forms


ZHANG = Person("张三丰", "+86 139 5720 4816", "640102198703261234", masked_name="张**",
               masked_phone="139****4816", masked_id="640102********1234")
OUYANG = Person("欧阳娜娜", 13860419275, "6401 0219 9211 0752 6X", masked_name="欧***",
                masked_phone="138****9275", masked_id="640102********526X")
WANG = Person("Wang Fang", "0951-5082736", "640102730915461", masked_name="W********",
              masked_phone="*******2736", masked_id="640102*****5461")
PEOPLE = (ZHANG, OUYANG, WANG)

# the answers that may carry the masked forms: the appointment's own, and the check-in
APPOINTMENT_ANSWERS = ("POST /api/v1/appointments", "GET /api/v1/appointments")


def hall_file(folder: Path, printer_port: int) -> Path:
    text = HALL.format(KIOSK=KIOSK, TECH=TECH, SUPER=SUPER, BOOKING=BOOKING, EVALUATOR=EVALUATOR,
                       W1=W1, W2=W2, printer_port=printer_port,
                       hall_frame=demo_frame("hall_board", ack=True),
                       strip_frame=demo_frame("strip_2", ack=True))
    path = folder / "devices.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def hall(tmp_path: Path):
    """The daemon, its printer emulated here, and its boards emulated here (as
    `kioskd emulate board` runs them): (daemon, printer, {device id: emulator})."""
    printer = EmulatedPrinter(jobs_dir=tmp_path / "printer-jobs", name="the test's printer")
    printer.start()
    boards = {}
    try:
        config_path = hall_file(tmp_path, printer.listen_tcp("127.0.0.1", 0))
        config = load_config(config_path, env={})
        for device in config.devices.values():
            if device.driver in ("modbus_digits", "framed_text"):
                emulator = drivers.family(device.driver).emulate(
                    device.id, replace(device.settings, emulate=True),
                    data_dir=config.hall.data_dir)
                emulator.start()
                boards[device.id] = emulator
        daemon = Daemon(config_path, log_level="debug").start()     # the most it ever says
        try:
            yield daemon, printer, boards
        finally:
            daemon.kill()
    finally:
        for emulator in boards.values():
            emulator.close()
        printer.close()


def test_no_personal_data_comes_out_in_full(hall):
    daemon, printer, boards = hall
    hall_ = Recorder(daemon.url)
    call = hall_.request
    for device in ("printer_1", "board_1", "hall_board", "strip_2"):
        until(lambda: call("GET", f"/devices/{device}", TECH).json()["state"] == "ready",
              f"{device} to be ready", wait=15)
    call("POST", "/devices/kiosk_1/heartbeat", KIOSK, json={"page": "kiosk"}, expect=200)
    now = datetime.now(TZ)
    slot = now.strftime("%Y-%m-%dT%H:%M")                 # check-in is open: on time
    later = (now + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M")

    # -- the booking system registers, with everything it knows -----------------------------
    booked = {}
    for n, (person, at) in enumerate([(ZHANG, slot), (OUYANG, slot), (WANG, later)]):
        r = call("POST", "/appointments", BOOKING, expect=201, json={
            "service": "property" if n != 1 else "business", "slot": at, "code": f"PD-{n}",
            "name": person.name, "phone": person.phone,
            "reference": f"身份证 {person.id_number} 电话 {person.phone}"})
        booked[person.name] = r.json()
        assert r.json()["name"] == person.masked["name"], r.json()
        assert r.json()["phone"] == person.masked["phone"], r.json()
        assert person.masked["ID number"] in r.json()["reference"], r.json()
    # refused bodies quote none of it
    for wrong in ({"service": "nosuch"}, {"slot": ZHANG.id_number}, {"slot": "yesterday"},
                  {"code": "x"}, {"code": "PD-0"}, {"phone": [ZHANG.phone]},
                  {"name": ZHANG.name * 30}, {"id_number": ZHANG.id_number},
                  {"reference": f"{ZHANG.name} {ZHANG.id_number}" * 10}):
        body = {"service": "property", "slot": slot, "code": "PD-9", "name": ZHANG.name,
                "phone": ZHANG.phone, **wrong}
        r = call("POST", "/appointments", BOOKING, json=body)
        assert r.status_code in (409, 422), r.text
    # a check-in code is no place for an ID number or a phone number: kioskd would keep
    # it, show it to the booking system's and the supervisor's screens, and compare it
    for code in (OUYANG.id_number.replace(" ", ""), str(OUYANG.phone)):
        call("POST", "/appointments", BOOKING, expect=422,
             json={"service": "property", "slot": slot, "code": code})

    # -- the kiosk checks them in, and people take numbers -------------------------------
    for code in ("PD-0", "pd-1"):
        r = call("POST", "/appointments/check-in", KIOSK, expect=201,
                 json={"code": code, "terminal": "kiosk_1"})
        assert r.json()["ticket"]["print"]["status"] == "printed", r.json()
    call("POST", "/appointments/check-in", KIOSK, json={"code": "PD-0"}, expect=409)
    call("POST", "/appointments/check-in", KIOSK, json={"code": OUYANG.id_number}, expect=422)
    call("POST", "/appointments/check-in", KIOSK, expect=404,
         json={"code": OUYANG.id_number.replace(" ", "")})
    call("POST", "/appointments/check-in", KIOSK, expect=422,
         json={"code": "PD-0", "terminal": ZHANG.id_number})
    for service in ("property", "business", "property"):
        call("POST", "/tickets", KIOSK, json={"service": service, "terminal": "kiosk_1"},
             expect=201)

    # -- the windows work ----------------------------------------------------------------
    first = call("POST", "/windows/1/call-next", W1, expect=200).json()
    assert first["appointment"] == booked[ZHANG.name]["id"], first     # booked: first
    call("POST", "/windows/1/recall", W1, expect=200)
    call("POST", "/windows/1/start", W1, expect=200)
    call("POST", "/windows/1/transfer", W1, json={"window": "2"}, expect=200)
    second = call("POST", "/windows/2/call-next", W2, expect=200).json()
    call("POST", "/windows/2/start", W2, expect=200)
    call("POST", "/windows/2/complete", W2, expect=200)
    call("POST", "/windows/2/rating", EVALUATOR, json={"ticket": second["id"], "level": 5},
         expect=201)
    call("POST", "/windows/1/call-next", W1, expect=200)
    missed = call("POST", "/windows/1/no-show", W1, expect=200).json()
    call("POST", f"/tickets/{missed['id']}/readmit", KIOSK, expect=200)
    call("POST", "/windows/1/call-next", W1, expect=200)
    call("POST", "/windows/1/complete", W1, expect=200)
    call("POST", "/windows/2/call-next", W2, expect=200)
    call("POST", f"/appointments/{booked[WANG.name]['id']}/cancel", BOOKING, expect=200)
    call("GET", "/appointments", BOOKING, expect=200)

    # what the boards should show, they show (the writes are behind the answers)
    for device, emulator in boards.items():
        until(lambda: shown(emulator) == call("GET", f"/devices/{device}", TECH)
              .json()["detail"]["should_show"], f"{device} to show the hall's state")
    tickets = printer.wait_for_tickets(5, timeout=10)
    assert all(history(emulator) for emulator in boards.values())

    # -- everything the daemon said ---------------------------------------------------------
    ids = {"tickets": [first["id"], second["id"], missed["id"]],
           "appointments": [a["id"] for a in booked.values()], "windows": ["1", "2"],
           "devices": ["printer_1", "kiosk_1", "board_1", "hall_board", "strip_2"]}
    places = list(hall_.answers)
    places.append(("GET /events?since=0", every_event(daemon.url)))
    places.append(("the audit log", repr(audit_log(daemon.url, SUPER))))
    places += get_routes(daemon.url, SUPER, ids)
    places += [(f"printed ticket {n}", f"{t.text()}\n{t.qr_codes}")
               for n, t in enumerate(printer.tickets, 1)]
    places += [(f"{device} showed", repr(history(emulator))) for device, emulator in boards.items()]
    hall_.close()
    assert daemon.stop() == 0
    log = daemon.output()
    assert "appointment.checked_in" in log and "window 1: ticket.called" in log
    places.append((f"the log ({daemon.log.name})", log))
    places += data_files(daemon.config.parent / "var")
    assert any(name.endswith("kioskd.db") for name, _ in places)
    assert len(tickets) == 5 and any("请到" in t.text() or "窗口" in t.text() for t in tickets)

    in_full = {f"{p.masked['name']}'s {what}": form for p in PEOPLE
               for what, form in p.in_full().items()}
    found = leaks({what: {"in full": form} for what, form in in_full.items()}, places)
    assert found == [], "personal data came out in full:\n" + "\n".join(found)

    masked = {f"{p.masked['name']}'s masked {what}": {"masked": form}
              for p in PEOPLE for what, form in p.masked.items()}
    may_show = [(where, content) for where, content in places
                if where.startswith(APPOINTMENT_ANSWERS) or "kioskd.db" in where]
    elsewhere = [place for place in places if place not in may_show]
    found = leaks(masked, elsewhere)
    assert found == [], "masked personal data where it has no business:\n" + "\n".join(found)
    # ... and it is where it belongs: the data went in, masked
    assert [what for what, shape in masked.items() if not leaks({what: shape}, may_show)] == []


def shown(emulator) -> list[str]:
    """What an emulated board shows now, as `should_show` says it: one string a line."""
    lines = getattr(emulator, "lines", None)
    return lines if lines is not None else [emulator.unit.text.strip()]


def history(emulator) -> list:
    """Everything an emulated board showed, oldest first."""
    if hasattr(emulator, "lines"):
        return [lines for lines, _ in emulator.history]
    return [(shown.text, shown.flashing) for shown in emulator.unit.history]


# -- the pieces, in-process ----------------------------------------------------------------

@pytest.mark.parametrize("written", [
    "640102198703261234", "640102 19870326 1234", "640102-19870326-1234",
    "640102 1987 0326 1234", "6401 0219 8703 2612 34", "640102870326123"])
def test_an_id_number_is_masked_however_it_is_written(written):
    digits = written.replace(" ", "").replace("-", "")
    masked = scrub_text(f"身份证：{written}。")
    assert masked == f"身份证：{digits[:6]}{'*' * (len(digits) - 10)}{digits[-4:]}。"
    assert is_personal_number(written)


def test_a_phone_next_to_a_landline_is_not_taken_for_an_id_number():
    assert scrub_text("电话 0951-6012345 139 5720 4816") == "电话 0951-***2345 139****4816"


@pytest.mark.parametrize("code", ["K7Q2-9041", "PD-0", "20261130042", "YY-640102-0042"])
def test_a_booking_code_is_not_a_personal_number(code):
    assert not is_personal_number(code)


async def test_an_error_never_repeats_a_phone_or_id_number(tmp_path, clock):
    """Whatever field they were put in: the detail says what was wrong, masked."""
    async with running(small_hall(tmp_path / "var"), clock) as client:
        r = await client.post("/api/v1/tickets", json={"service": "property",
                                                       "terminal": ZHANG.id_number})
        assert r.status_code == 422
        assert r.json()["detail"].startswith("unknown terminal '640102********1234'")
        r = await client.get(f"/api/v1/tickets/{ZHANG.phone}")
        assert r.status_code == 404 and "139****4816" in r.json()["detail"]
        r = await client.get("/api/v1/stats", params={"date": "13957204816"})
        assert r.status_code == 422 and "'139****4816'" in r.json()["detail"]
