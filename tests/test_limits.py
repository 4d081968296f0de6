"""[limits]: a stuck button or a prank cannot flood the queue (429 with Retry-After),
and a refused issue changes nothing."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from conftest import serving, small_hall
from kioskd.config import Auth, Device, Limits

API = "/api/v1"
KIOSK, SUPER = "k-tok", "s-tok"
AUTH = Auth(kiosk=(KIOSK,), supervisor=(SUPER,), technician=("t-tok",),
            windows={w: (f"w{w}",) for w in ("1", "2", "3", "4", "9")})


def hall(tmp_path, limits: Limits):
    config = small_hall(tmp_path / "var", AUTH)
    devices = {**config.devices,
               "kiosk_2": Device("kiosk_2", "terminal", {"printer": "printer_1"})}
    return dataclasses.replace(config, limits=limits, devices=devices)


def client_at(app, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://hall.test")


async def issue(client: httpx.AsyncClient, terminal: str | None = "kiosk_1",
                token: str = KIOSK) -> httpx.Response:
    body = {"service": "property", **({"terminal": terminal} if terminal else {})}
    return await client.post(f"{API}/tickets", json=body,
                             headers={"Authorization": f"Bearer {token}"})


async def waiting(client: httpx.AsyncClient) -> int:
    r = await client.get(f"{API}/queue")
    return sum(s["waiting"] for s in r.json()["services"])


async def test_a_terminal_gets_its_burst_then_one_ticket_per_share_of_the_minute(tmp_path, clock):
    async with serving(hall(tmp_path, Limits(issue_per_terminal=4, issue_per_address=0)),
                       clock) as (app, client):
        for _ in range(4):                                 # a family of four, at once
            assert (await issue(client)).status_code == 201
        last_event = (await client.get("/healthz")).json()["last_event"]

        refused = await issue(client)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "15"      # 4 a minute: one every 15 s
        body = refused.json()
        assert body["reason"] == "rate_limited" and body["retry_after"] == 15
        assert "terminal kiosk_1" in body["detail"] and "4 a minute" in body["detail"]
        # nothing happened: no ticket, no event, no number used
        assert await waiting(client) == 4
        assert (await client.get("/healthz")).json()["last_event"] == last_event

        assert (await issue(client, "kiosk_2")).status_code == 201   # the next kiosk is not held up
        clock.advance(10)
        assert (await issue(client)).headers["Retry-After"] == "5"
        clock.advance(5)
        ticket = await issue(client)
        assert ticket.status_code == 201
        assert ticket.json()["number"] == "A006"           # the refusals used no number
        assert (await issue(client)).status_code == 429


async def test_one_address_is_limited_whatever_terminal_it_names(tmp_path, clock):
    async with serving(hall(tmp_path, Limits(issue_per_terminal=0, issue_per_address=3)),
                       clock) as (app, _):
        async with client_at(app, "10.0.0.7") as prank, client_at(app, "10.0.0.8") as kiosk:
            for terminal in ("kiosk_1", "kiosk_2", None):
                assert (await issue(prank, terminal)).status_code == 201
            refused = await issue(prank, "kiosk_2")
            assert refused.status_code == 429
            assert "address 10.0.0.7" in refused.json()["detail"]
            assert refused.headers["Retry-After"] == "20"
            assert (await issue(kiosk)).status_code == 201         # another address is served


async def test_a_refusal_by_one_limit_takes_nothing_from_the_other(tmp_path, clock):
    async with serving(hall(tmp_path, Limits(issue_per_terminal=2, issue_per_address=3)),
                       clock) as (app, _):
        async with client_at(app, "10.0.0.7") as one:
            assert (await issue(one)).status_code == 201
            assert (await issue(one)).status_code == 201
            assert (await issue(one)).status_code == 429           # the terminal is empty
            # ... and that refusal did not spend the address's third ticket
            assert (await issue(one, "kiosk_2")).status_code == 201
            refused = await issue(one, "kiosk_2")
            assert "address" in refused.json()["detail"]


async def test_a_supervisor_token_is_never_limited_and_zero_means_no_limit(tmp_path, clock):
    async with serving(hall(tmp_path, Limits(issue_per_terminal=1, issue_per_address=1)),
                       clock) as (app, client):
        assert (await issue(client)).status_code == 201
        assert (await issue(client)).status_code == 429
        for _ in range(5):
            assert (await issue(client, token=SUPER)).status_code == 201
    async with serving(hall(tmp_path / "off", Limits(0, 0)), clock) as (app, client):
        for _ in range(100):
            assert (await issue(client)).status_code == 201


async def test_a_wall_clock_set_back_does_not_drain_a_bucket(tmp_path, clock):
    async with serving(hall(tmp_path, Limits(issue_per_terminal=2, issue_per_address=0)),
                       clock) as (app, client):
        assert (await issue(client)).status_code == 201
        clock.advance(-3600)                               # NTP corrects the clock an hour back
        assert (await issue(client)).status_code == 201    # the second of the burst, still there
        assert (await issue(client)).status_code == 429
        clock.advance(30)
        assert (await issue(client)).status_code == 201


async def test_refusals_are_counted_and_logged_once_a_minute(tmp_path, clock, caplog):
    async with serving(hall(tmp_path, Limits(issue_per_terminal=1, issue_per_address=0)),
                       clock) as (app, client):
        assert (await issue(client)).status_code == 201
        caplog.clear()
        for _ in range(5):                                  # a stuck button
            assert (await issue(client)).status_code == 429
        lines = [r.getMessage() for r in caplog.records if "too many tickets" in r.getMessage()]
        assert len(lines) == 1 and lines[0].startswith("tickets: too many tickets from terminal kiosk_1")
        metrics = (await client.get("/metrics")).text
        assert 'kioskd_issues_refused_total{limit="terminal"} 5.0' in metrics
        assert 'kioskd_issues_refused_total{limit="address"} 0.0' in metrics
        clock.advance(60)
        assert (await issue(client)).status_code == 201
        assert (await issue(client)).status_code == 429
        lines = [r.getMessage() for r in caplog.records if "too many tickets" in r.getMessage()]
        assert len(lines) == 2


@pytest.mark.parametrize("toml, problem", [
    ("[limits]\nissue_per_terminal = -1\n", "[limits] issue_per_terminal: -1 is out of range"),
    ("[limits]\nissue_per_minute = 5\n", "[limits]: unknown key 'issue_per_minute'"),
    ('[limits]\nissue_per_address = "10"\n', "[limits] issue_per_address:"),
])
def test_the_limits_table_is_checked(tmp_path, toml, problem):
    from conftest import hall_toml
    from kioskd.config import check_config
    path = tmp_path / "devices.toml"
    path.write_text(hall_toml(toml))
    assert any(line.startswith(problem) for line in check_config(path)), check_config(path)
