"""Tokens never come out of the daemon: not in its log, its events, its answers (errors
included), /metrics, the audit log, /devices, nor in the files it writes (the SQLite
database first of all).

The real `kioskd run` process, its tokens given as `${VAR}`s in devices.toml: some
from its environment, the others from a tokens.env beside the file (as systemd's
EnvironmentFile gives them). A scripted day uses every token rightly, then wrongly
(another role's route, another window's), sends unknown and malformed ones, and puts
tokens where they do not belong: query strings, paths, bodies, an Authorization header
of another scheme, Last-Event-ID. Then every output is searched for every token, whole
or in part (any 16 characters of it), and in the forms it could take on the way:
URL-encoded, base64, hex, and its SHA-256 (what the daemon keeps in memory to compare
against — never on disk).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import urllib.parse
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import running, small_hall
from daemon import Daemon, free_port, hall_toml
from kioskd.config import Auth
from secrets_outputs import Recorder, audit_log, data_files, every_event, get_routes, leaks

HALL = hall_toml(2) + """
[auth]
kiosk = ["${KIOSKD_KIOSK_TOKEN}"]
technician = ["${KIOSKD_TECHNICIAN_TOKEN}"]
supervisor = ["${KIOSKD_SUPERVISOR_TOKEN}"]
booking = ["${KIOSKD_BOOKING_TOKEN}"]
evaluator = ["${KIOSKD_EVALUATOR_TOKEN}"]

[auth.windows]
"1" = ["${KIOSKD_WINDOW_1_TOKEN}"]
"2" = ["${KIOSKD_WINDOW_2_TOKEN}"]

[devices.printer_1]
driver = "escpos"
connection = "tcp://127.0.0.1:{printer_port}"
emulate = true

[devices.kiosk_1]
driver = "terminal"
printer = "printer_1"
"""

# Where each token comes from: the daemon's environment, or tokens.env beside the file.
FROM_ENVIRONMENT = ("KIOSKD_KIOSK_TOKEN", "KIOSKD_SUPERVISOR_TOKEN", "KIOSKD_WINDOW_1_TOKEN")
FROM_FILE = ("KIOSKD_TECHNICIAN_TOKEN", "KIOSKD_BOOKING_TOKEN", "KIOSKD_EVALUATOR_TOKEN",
             "KIOSKD_WINDOW_2_TOKEN")
PART = 16                     # characters of a token that count as a leak on their own


def new_tokens() -> dict[str, str]:
    tokens = {name: secrets.token_urlsafe(30) for name in FROM_ENVIRONMENT + FROM_FILE}
    # one with characters that change on the way (URL-encoded, in a shell's file), and
    # longer than the 40 characters an echo of a date or an alert id is cut to
    tokens["KIOSKD_SUPERVISOR_TOKEN"] = f"sv+{secrets.token_hex(24)}/=~"
    tokens["KIOSKD_TECHNICIAN_TOKEN"] = secrets.token_urlsafe(45)
    return tokens


def forms(token: str) -> dict[str, str | bytes]:
    """The token as it might show up: itself, any PART characters of it, URL-encoded,
    base64 (at each alignment in a longer text), hex, and its SHA-256."""
    raw = token.encode()
    found: dict[str, str | bytes] = {"the token": token}
    found.update({f"characters {i}-{i + PART}": token[i:i + PART]
                  for i in range(0, len(token) - PART + 1)})
    if urllib.parse.quote(token, safe="") != token:
        found["URL-encoded"] = urllib.parse.quote(token, safe="")
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw).decode()
        found[f"base64 ({pad})"] = encoded[4 if pad else 0:-4]
        found[f"url-safe base64 ({pad})"] = (base64.urlsafe_b64encode(b"\0" * pad + raw)
                                             .decode()[4 if pad else 0:-4])
    found["hex"] = raw.hex()
    found["HEX"] = raw.hex().upper()
    found["SHA-256 (hex)"] = hashlib.sha256(raw).hexdigest()
    found["SHA-256"] = hashlib.sha256(raw).digest()
    return found


@pytest.fixture
def hall(tmp_path: Path):
    tokens = new_tokens()
    config = tmp_path / "devices.toml"
    config.write_text(HALL.replace("{printer_port}", str(free_port())), encoding="utf-8")
    (tmp_path / "tokens.env").write_text(
        "# the hall's tokens, read by kioskd beside devices.toml\n"
        + "".join(f"{name}={tokens[name]}\n" for name in FROM_FILE), encoding="utf-8")
    (tmp_path / "tokens.env").chmod(0o600)       # the service's alone, or kioskd refuses it
    daemon = Daemon(config, env={name: tokens[name] for name in FROM_ENVIRONMENT},
                    log_level="debug")
    for name in FROM_FILE:
        assert name not in daemon.env, f"{name} must come from tokens.env only"
    daemon.start()
    yield daemon, tokens
    daemon.kill()


def test_no_token_comes_out_anywhere(hall):
    daemon, tokens = hall
    kiosk, tech, sup = (tokens[f"KIOSKD_{role}_TOKEN"] for role in
                        ("KIOSK", "TECHNICIAN", "SUPERVISOR"))
    booking, evaluator = tokens["KIOSKD_BOOKING_TOKEN"], tokens["KIOSKD_EVALUATOR_TOKEN"]
    w1, w2 = tokens["KIOSKD_WINDOW_1_TOKEN"], tokens["KIOSKD_WINDOW_2_TOKEN"]
    hall_ = Recorder(daemon.url)
    call = hall_.request
    ids: dict[str, list[str]] = {"tickets": [], "appointments": [], "windows": ["1", "2"],
                                 "devices": ["printer_1", "kiosk_1"]}

    # -- the day, every token used as it should be (each one works: env and file) ---------
    call("POST", "/devices/kiosk_1/heartbeat", kiosk, json={"page": "kiosk"}, expect=200)
    for service in ("property", "property", "business", "business"):
        r = call("POST", "/tickets", kiosk, json={"service": service, "terminal": "kiosk_1"},
                 expect=201)
        ids["tickets"].append(r.json()["id"])
    done = call("POST", "/windows/1/call-next", w1, expect=200).json()
    call("POST", "/windows/1/start", w1, expect=200)
    call("POST", "/windows/1/complete", w1, expect=200)
    call("POST", "/windows/1/rating", evaluator, json={"ticket": done["id"], "level": 1},
         expect=201)                                   # 非常不满意: an alert for the supervisor
    missed = call("POST", "/windows/2/call-next", w2, expect=200).json()
    call("POST", "/windows/2/no-show", w2, expect=200)
    call("POST", f"/tickets/{missed['id']}/readmit", kiosk, expect=200)
    call("POST", "/windows/2/call-next", w2, expect=200)
    call("POST", "/windows/2/transfer", w2, json={"window": "1"}, expect=200)
    call("POST", "/windows/2/pause", w2, expect=200)
    call("POST", "/windows/2/resume", sup, expect=200)
    slot = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%dT%H:%M")
    booked = call("POST", "/appointments", booking, expect=201,
                  json={"service": "property", "slot": slot, "code": "SECRET-42"}).json()
    ids["appointments"].append(booked["id"])
    checked = call("POST", "/appointments/check-in", kiosk, expect=201,
                   json={"code": "secret-42", "terminal": "kiosk_1"}).json()
    ids["tickets"].append(checked["ticket"]["id"])
    call("GET", "/devices", tech, expect=200)
    call("POST", "/devices/printer_1/reconnect", tech, expect=200)
    call("POST", "/devices/printer_1/test", tech, expect=200)
    call("POST", f"/tickets/{ids['tickets'][-2]}/reprint", tech, expect=200)
    call("GET", "/stats", sup, expect=200)
    alerts = call("GET", "/alerts", sup, expect=200).json()
    assert [a["kind"] for a in alerts] == ["bad_rating"], alerts
    call("POST", f"/alerts/{alerts[0]['id']}/acknowledge", sup, expect=200)

    # -- the wrong role, the wrong window ----------------------------------------------------
    for method, path, token in [("POST", "/windows/2/call-next", w1),
                                ("POST", "/windows/1/complete", w2),
                                ("GET", "/windows/2/access", w1),
                                ("GET", "/stats", kiosk), ("POST", "/tickets", tech),
                                ("POST", "/windows/1/call-next", evaluator),
                                ("GET", "/devices", booking), ("GET", "/audit", tech),
                                ("POST", "/windows/1/rating", w1),
                                ("POST", "/appointments/check-in", booking)]:
        call(method, path, token, json={"service": "property"} if path == "/tickets" else None,
             expect=403)

    # -- unknown and malformed tokens ------------------------------------------------------
    near = kiosk[:-1] + ("A" if kiosk[-1] != "A" else "B")
    for token in (near, kiosk + "x", sup.upper(), w1[:20], f"{kiosk} {sup}"):
        call("POST", "/tickets", token, json={"service": "property"}, expect=401)
    headers_sent = [f"Basic {base64.b64encode(f'kiosk:{kiosk}'.encode()).decode()}",
                    f"Token {sup}", sup, f"Bearer{tech}", f"Bearer: {w1}", f"bearer\t{w2}",
                    f"Digest username=\"kiosk\", response=\"{kiosk}\""]
    for header in headers_sent:
        call("POST", "/tickets", headers={"Authorization": header},
             json={"service": "property"}, expect=401)
        call("GET", "/stats", headers={"Authorization": header}, expect=401)

    # -- tokens where they do not belong ----------------------------------------------------
    call("GET", "/queue", params={"token": kiosk, "access_token": sup}, expect=200)
    call("GET", "/audit", sup, params={"actor": sup, "window": w1}, expect=200)
    call("GET", "/stats", sup, params={"date": sup}, expect=422)
    call("GET", "/alerts", tech, params={"state": tech}, expect=422)
    call("GET", "/windows/1/waiting", params={"limit": w1}, expect=422)
    call("GET", "/events", headers={"Last-Event-ID": sup}, expect=422)
    call("GET", "/events", params={"since": kiosk}, expect=422)
    call("GET", f"/tickets/{kiosk}", expect=404)
    call("GET", f"/tickets/{kiosk}/qr.svg", expect=404)
    call("POST", f"/windows/{w1}/call-next", sup, expect=404)
    call("GET", f"/windows/{w2}", expect=404)
    call("GET", f"/devices/{tech}", tech, expect=404)
    call("POST", f"/devices/{tech}/test", tech, expect=404)
    call("POST", f"/alerts/{tech}/acknowledge", tech, expect=404)
    call("GET", f"/appointments/{booking}", booking, expect=404)
    call("POST", f"/appointments/{booking}/cancel", booking, expect=404)
    call("POST", f"/tickets/{sup}/cancel", kiosk, expect=404)
    call("GET", f"/ui/{kiosk}", expect=404)
    call("POST", "/tickets", kiosk, json={"service": kiosk}, expect=422)
    call("POST", "/tickets", kiosk, json={"service": "property", "terminal": kiosk}, expect=422)
    call("POST", "/tickets", kiosk, json={"service": "property", "token": kiosk}, expect=422)
    call("POST", "/tickets", kiosk, json={"service": "property", "priority": kiosk}, expect=422)
    call("POST", "/tickets", kiosk, content=f'{{"service": "{kiosk}"'.encode(),
         headers={"content-type": "application/json"}, expect=422)
    call("POST", "/windows/1/transfer", w1, json={"window": w1}, expect=422)
    call("POST", "/windows/1/transfer", w1, json={"service": w1}, expect=422)
    call("POST", "/windows/1/rating", evaluator, json={"ticket": evaluator, "level": 5},
         expect=404)
    call("POST", "/appointments/check-in", kiosk, json={"code": kiosk}, expect=422)
    call("POST", "/appointments/check-in", kiosk, json={"code": "SECRET-42",
                                                        "terminal": kiosk}, expect=422)
    call("POST", "/appointments", booking, expect=422,
         json={"service": "property", "slot": booking, "code": "SECRET-43"})
    call("POST", "/appointments", booking, expect=422,
         json={"service": booking, "slot": slot, "code": "SECRET-44"})
    call("POST", "/devices/kiosk_1/heartbeat", kiosk, json={"page": "kiosk", "token": kiosk},
         expect=422)

    # -- everything the daemon says ---------------------------------------------------------
    places = list(hall_.answers)
    places.append(("GET /events?since=0", every_event(daemon.url)))
    places.append(("the audit log", repr(audit_log(daemon.url, sup))))
    places += get_routes(daemon.url, sup, ids)
    hall_.close()
    assert daemon.stop() == 0
    log = daemon.output()
    assert "window 1: ticket.called" in log          # the log is there, and says things
    places.append((f"the log ({daemon.log.name})", log))
    places += data_files(daemon.config.parent / "var")
    assert any(name.endswith("kioskd.db") for name, _ in places)

    needles = {name: forms(token) for name, token in tokens.items()}
    needles.update({f"the Authorization header {h.split()[0]!r}": {"as sent": h}
                    for h in headers_sent})
    found = leaks(needles, places)
    assert found == [], "tokens came out:\n" + "\n".join(found)


# -- the pieces, in-process ----------------------------------------------------------------

async def test_an_error_says_what_was_wrong_without_the_token_in_it(tmp_path, clock):
    """A kiosk token pasted into the terminal field is not shown back (the kiosk page
    shows errors to the hall), nor one cut short by the echo's length limit; tokens
    shorter than 8 characters are not looked for (they would be guessed anyway, and
    hiding '1' would garble 'window 1')."""
    long = "kiosk-" + secrets.token_urlsafe(40)
    auth = Auth(kiosk=(long,), supervisor=("sv-tok",), windows={"1": ("1",), "2": ("2",)})
    async with running(small_hall(tmp_path / "var", auth), clock) as client:
        kiosk = {"Authorization": f"Bearer {long}"}
        r = await client.post("/api/v1/tickets", headers=kiosk,
                              json={"service": "property", "terminal": long})
        assert r.status_code == 422
        assert r.json()["detail"].startswith("unknown terminal '***'; known: kiosk_1")
        r = await client.get("/api/v1/stats", params={"date": long},
                             headers={"Authorization": "Bearer sv-tok"})
        assert r.status_code == 422 and r.json()["detail"].startswith("date: '***…' is not")
        r = await client.post("/api/v1/windows/2/call-next", headers={"Authorization": "Bearer 1"})
        assert r.status_code == 403
        assert r.json()["detail"] == "this token is for window 1; this needs supervisor or window 2"
