"""Several `kioskd run` daemons on one PostgreSQL database, as a hall spread over
floors runs them: one queue, each daemon with its own windows and kiosks.

Real processes, a real server (tests/pgserver.py), real HTTP and event streams.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import httpx
import psycopg
import pytest

from conftest import until
from daemon import Daemon, hall_toml
from pgserver import PgServer
from soak import Display

API = "/api/v1"
WINDOWS = {"east": ("1", "2"), "west": ("3", "4")}
ON = {w: name for name, windows in WINDOWS.items() for w in windows}


def shared_hall(directory: Path, url: str, instance: str) -> Path:
    """The hall's devices.toml as the daemon `instance` has it: the same services and
    windows as every daemon of the hall, its own instance name, the shared store."""
    directory.mkdir(parents=True, exist_ok=True)
    text = hall_toml(4, instances=ON).replace(
        'data_dir = "var"\n', f'data_dir = "var"\ninstance = "{instance}"\n', 1)
    path = directory / "devices.toml"
    path.write_text(f'{text}\n[store]\nurl = "{url}"\n', encoding="utf-8")
    return path


def rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


class Hall:
    """Kiosks issuing and windows calling through their own daemons, on threads,
    until told to stop; every answer kept."""

    def __init__(self, daemons: dict[str, Daemon], kiosks_each: int = 2):
        self.daemons = daemons
        self.kiosks_each = kiosks_each
        self.issued: list[dict] = []
        self.called: list[dict] = []
        self.unexpected: list[tuple[str, int, str]] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for name, daemon in self.daemons.items():
            for n in range(self.kiosks_each):
                self._spawn(self._kiosk, daemon.url, n)
            for w in WINDOWS[name]:
                self._spawn(self._window, daemon.url, w)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def join(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(30)
        assert not any(t.is_alive() for t in self._threads)

    def answers(self) -> int:
        with self._lock:
            return len(self.issued) + len(self.called)

    def _kiosk(self, url: str, n: int) -> None:
        services = ("property", "business")
        with httpx.Client(base_url=url, timeout=10) as client:
            i = 0
            while not self.stop.is_set():
                i += 1
                r = client.post(f"{API}/tickets", json={"service": services[(n + i) % 2]})
                self._keep(r, 201, self.issued, url)

    def _window(self, url: str, window: str) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            while not self.stop.is_set():
                r = client.post(f"{API}/windows/{window}/call-next")
                if r.status_code != 204:
                    self._keep(r, 200, self.called, url)
                else:
                    self.stop.wait(0.01)     # nothing waiting for it: the kiosks catch up

    def _keep(self, r: httpx.Response, expected: int, into: list, url: str) -> None:
        with self._lock:
            if r.status_code == expected:
                into.append(r.json())
            else:
                self.unexpected.append((url, r.status_code, r.text[:300]))


@pytest.fixture
def two_daemons(tmp_path: Path, pg_server: PgServer):
    url = pg_server.create_database()
    daemons = {name: Daemon(shared_hall(tmp_path / name, url, name))
               for name in WINDOWS}
    try:
        for daemon in daemons.values():
            daemon.start()
        yield url, daemons
    finally:
        for daemon in daemons.values():
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.stop()


def test_two_daemons_share_one_queue_no_number_or_call_twice_and_each_sees_every_call(
        two_daemons):
    url, daemons = two_daemons
    displays = {name: Display(d.url) for name, d in daemons.items()}
    for display in displays.values():
        display.start()
    until(lambda: all(d.connects for d in displays.values()), "both displays connected")
    hall = Hall(daemons)
    hall.start()
    try:
        until(lambda: hall.answers() >= 400, "400 answers from the two daemons", wait=120)
    finally:
        hall.join()
    assert hall.unexpected == []

    # The rest of the day: every window calls through its own daemon until nothing waits.
    for name, daemon in daemons.items():
        with httpx.Client(base_url=daemon.url, timeout=10) as client:
            for w in WINDOWS[name]:
                while (r := client.post(f"{API}/windows/{w}/call-next")).status_code == 200:
                    hall.called.append(r.json())
                assert r.status_code == 204, r.text

    numbers = [t["number"] for t in hall.issued]
    assert len(numbers) == len(set(numbers)), "a number was given twice"
    called = [t["id"] for t in hall.called]
    assert len(called) == len(set(called)), "a ticket was called twice"
    assert set(called) == {t["id"] for t in hall.issued}, "a ticket was never called"
    by_daemon = Counter(t["window"] for t in hall.called)
    assert set(by_daemon) == set(ON), f"every window called: {by_daemon}"

    # The database agrees: one row per number, one call per ticket.
    assert rows(url, "SELECT day, number FROM tickets GROUP BY day, number "
                     "HAVING count(*) > 1") == []
    assert rows(url, "SELECT data->>'ticket' FROM events WHERE type = 'ticket.called' "
                     "GROUP BY 1 HAVING count(*) > 1") == []
    last = rows(url, "SELECT max(id) FROM events")[0][0]

    # Each daemon's event stream carries every call, the other daemon's too, under
    # the same ids and in the same order as the log.
    try:
        for name, display in displays.items():
            until(lambda: display.events and display.events[-1][0] >= last,
                  f"{name}'s display reached event {last}", wait=30)
    finally:
        for daemon in daemons.values():      # ends the streams: the displays stop reading
            daemon.stop()
        for display in displays.values():
            display.close()
    log = [(i, t) for i, t in rows(url, "SELECT id, type FROM events ORDER BY id")]
    for name, display in displays.items():
        seen = [(i, t) for i, t, _ in display.events]
        assert [i for i, _ in seen] == sorted(set(i for i, _ in seen)), f"{name}: out of order"
        first = seen[0][0]
        assert seen == [e for e in log if first <= e[0] <= last], f"{name} missed events"
        calls = {data["data"]["ticket"] for _, kind, data in display.events
                 if kind == "ticket.called"}
        assert calls == set(called), f"{name}'s display missed calls"
        theirs = {t["id"] for t in hall.called if ON[t["window"]] != name}
        assert theirs and theirs <= calls


def test_a_ticket_moves_between_daemons_by_transfer_and_readmission(two_daemons):
    url, daemons = two_daemons
    east, west = (httpx.Client(base_url=daemons[n].url, timeout=10) for n in ("east", "west"))
    with east, west:
        ticket = east.post(f"{API}/tickets", json={"service": "property"}).json()
        assert east.post(f"{API}/windows/1/call-next").json()["id"] == ticket["id"]
        # window 1 (east) sends it to window 3 (west): west's window calls it next
        moved = east.post(f"{API}/windows/1/transfer", json={"window": "3"})
        assert moved.status_code == 200, moved.text
        assert west.get(f"{API}/windows/3/waiting").json()["tickets"][0]["id"] == ticket["id"]
        assert west.post(f"{API}/windows/3/call-next").json()["id"] == ticket["id"]
        # not there: a no-show at west, re-admitted at an east kiosk, called again at east
        assert west.post(f"{API}/windows/3/no-show").status_code == 200
        readmitted = east.post(f"{API}/tickets/{ticket['id']}/readmit")
        assert readmitted.status_code == 200, readmitted.text
        assert readmitted.json()["status"] == "waiting"
        again = east.post(f"{API}/windows/2/call-next")
        assert again.json()["id"] == ticket["id"], again.text
        # a window of the other floor is refused, saying whose it is
        refused = east.post(f"{API}/windows/3/call-next")
        assert refused.status_code == 409 and refused.json()["instance"] == "west"
    kinds = [t for (t,) in rows(url, "SELECT type FROM events WHERE data->>'ticket' = "
                                     f"'{ticket['id']}' ORDER BY id")]
    assert kinds == ["ticket.issued", "ticket.called", "ticket.transferred", "ticket.called",
                     "ticket.no_show", "ticket.readmitted", "ticket.called"]


def test_the_database_going_away_answers_503_and_service_returns_with_nothing_lost(tmp_path):
    server = PgServer()
    server.start()
    try:
        url = server.create_database()
        daemon = Daemon(shared_hall(tmp_path / "east", url, "east")).start()
        try:
            with httpx.Client(base_url=daemon.url, timeout=15) as client:
                _database_restart(server, client)
        finally:
            daemon.stop()
        assert "Traceback" not in daemon.output(), daemon.output()[-3000:]
    finally:
        server.destroy()


def _database_restart(server: PgServer, client: httpx.Client) -> None:
    before = [client.post(f"{API}/tickets", json={"service": "property"}).json()
              for _ in range(5)]
    called = client.post(f"{API}/windows/1/call-next").json()
    assert called["id"] == before[0]["id"]

    server.stop("fast")
    refused = client.post(f"{API}/tickets", json={"service": "property"})
    assert refused.status_code == 503, refused.text
    assert refused.json()["reason"] == "store_unavailable"
    assert "database" in refused.json()["detail"]
    assert client.post(f"{API}/windows/2/call-next").status_code == 503
    assert client.get("/livez").status_code == 200          # the daemon itself lives
    assert client.get("/healthz").status_code == 503        # and says what is missing

    server.start()
    back = _eventually_issued(client)
    assert back["number"] not in {t["number"] for t in before}
    for ticket in before:
        r = client.get(f"{API}/tickets/{ticket['id']}")
        assert r.status_code == 200 and r.json()["number"] == ticket["number"]
    assert client.get(f"{API}/tickets/{called['id']}").json()["status"] == "called"
    nxt = client.post(f"{API}/windows/2/call-next")
    assert nxt.status_code == 200 and nxt.json()["id"] == before[1]["id"]


def _eventually_issued(client: httpx.Client) -> dict:
    answers: list[httpx.Response] = []

    def issued() -> bool:
        answers.append(client.post(f"{API}/tickets", json={"service": "property"}))
        return answers[-1].status_code == 201

    until(issued, "issuing again after the database came back", wait=30, every=0.2)
    assert {r.status_code for r in answers[:-1]} <= {503}
    return answers[-1].json()
