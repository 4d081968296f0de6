"""Several `kioskd run` daemons on one PostgreSQL database, as a hall spread over
floors runs them: one queue, each daemon with its own windows and kiosks.

Real processes, a real server (tests/pgserver.py), real HTTP and event streams.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

import drivers
from conftest import demo_frame, eventually, until
from daemon import Daemon, hall_toml
from kioskd.config import load_config
from pgserver import PgServer
from drivers.voice.speaker import read_log
from soak import PLAYER, REPO, Display

API = "/api/v1"
WINDOWS = {"east": ("1", "2"), "west": ("3", "4")}
ON = {w: name for name, windows in WINDOWS.items() for w in windows}


def shared_hall(directory: Path, url: str, instance: str, devices: str = "") -> Path:
    """The hall's devices.toml as the daemon `instance` has it: the same services and
    windows as every daemon of the hall, its own instance name and `devices`, the
    shared store."""
    directory.mkdir(parents=True, exist_ok=True)
    text = hall_toml(4, instances=ON).replace(
        'data_dir = "var"\n', f'data_dir = "var"\ninstance = "{instance}"\n', 1)
    path = directory / "devices.toml"
    path.write_text(f'{text}\n[store]\nurl = "{url}"\n{devices}', encoding="utf-8")
    return path


def hall_board(device_id: str) -> str:
    """A three-line hall board on a pseudo-terminal in the data dir (emulated here)."""
    return f"""
[devices.{device_id}]
driver = "framed_text"
port = "tty-{device_id}"
address = 1
shows = "hall"
lines = 3
reply_timeout = 0.3
timeout = 4

{demo_frame(device_id, ack=True)}"""


@contextmanager
def emulated_boards(configs: list[Path]) -> Iterator[dict[str, Any]]:
    """The boards of these devices.toml files, emulated on their pseudo-terminals."""
    boards = {}
    try:
        for path in configs:
            config = load_config(path, env={})
            for device in config.devices.values():
                emulator = drivers.family(device.driver).emulate(
                    device.id, replace(device.settings, emulate=True),
                    data_dir=config.hall.data_dir)
                emulator.start()
                boards[device.id] = emulator
        yield boards
    finally:
        for emulator in boards.values():
            emulator.close()


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
        self.issued_through: Counter = Counter()     # daemon url → its 201s
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
                if into is self.issued:
                    self.issued_through[url] += 1
            else:
                self.unexpected.append((url, r.status_code, r.text[:300]))


def voice(directory: Path, device_id: str) -> str:
    """A voice whose loudspeaker is a player script logging each WAV it plays
    (drivers.voice.speaker) to `directory`/speaker.log."""
    directory.mkdir(parents=True, exist_ok=True)
    player = directory / "player.sh"
    player.write_text(PLAYER.format(hang=directory / "never", repo=REPO, python=sys.executable,
                                    log=directory / "speaker.log"), encoding="utf-8")
    player.chmod(0o755)
    return f"""
[devices.{device_id}]
driver = "voice"
player = ["{player}"]
repeat = 1
chime = ""
ahead = false
"""


@pytest.fixture
def two_daemons(tmp_path: Path, pg_server: PgServer):
    url = pg_server.create_database()
    daemons = {name: Daemon(shared_hall(tmp_path / name, url, name,
                                        voice(tmp_path / name, f"voice_{name}")))
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

    # Each daemon's /metrics counts what was done through it; together, the hall.
    for name, daemon in daemons.items():
        counted = _metric(daemon.url, "kioskd_tickets_issued_total")
        through = hall.issued_through[daemon.url]
        assert counted == through, f"{name} counted {counted} issues, {through} went through it"
        calls = _metric(daemon.url, "kioskd_tickets_called_total")
        assert calls == sum(1 for t in hall.called if ON[t["window"]] == name), name
        waits = _metric(daemon.url, "kioskd_ticket_wait_seconds_count")
        assert waits == calls, f"{name}: every call's wait is measured, the other floor's issues too"

    # The database agrees: one row per number, one call per ticket.
    assert rows(url, "SELECT day, number FROM tickets GROUP BY day, number "
                     "HAVING count(*) > 1") == []
    assert rows(url, "SELECT data->>'ticket' FROM events WHERE type = 'ticket.called' "
                     "GROUP BY 1 HAVING count(*) > 1") == []
    last = rows(url, "SELECT max(id) FROM events")[0][0]
    log = [(i, t) for i, t in rows(url, "SELECT id, type FROM events ORDER BY id")]
    # A display that read east's stream up to the middle of the burst picks up on
    # west's where it stopped: the ids mean the same on every daemon.
    middle = log[len(log) // 2][0]
    assert _resumed(daemons["west"].url, middle, last) == [e for e in log if e[0] > middle]

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


def _metric(url: str, name: str) -> float:
    """The sum of a metric's samples (every label) in the daemon's /metrics."""
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _resumed(url: str, after: int, through: int) -> list[tuple[int, str]]:
    """The (id, type) of the events a stream resumed with `Last-Event-ID: after` sends,
    up to id `through`."""
    seen: list[tuple[int, str]] = []
    fields: dict[str, str] = {}
    with httpx.stream("GET", f"{url}{API}/events", headers={"Last-Event-ID": str(after)},
                      timeout=httpx.Timeout(10)) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line == "" and "id" in fields:
                seen.append((int(fields["id"]), fields["event"]))
                if seen[-1][0] >= through:
                    return seen
                fields = {}
            elif line and not line.startswith(":"):
                key, _, value = line.partition(":")
                fields[key] = value.lstrip(" ")
    return seen


def test_a_ticket_moves_between_daemons_by_transfer_and_readmission(two_daemons):
    url, daemons = two_daemons
    east, west = (httpx.Client(base_url=daemons[n].url, timeout=10) for n in ("east", "west"))
    with east, west:
        assert [c.get("/healthz").json()["instance"] for c in (east, west)] == ["east", "west"]
        ticket = east.post(f"{API}/tickets", json={"service": "property"}).json()
        assert east.post(f"{API}/windows/1/call-next").json()["id"] == ticket["id"]
        # west's loudspeaker calls the ticket east's window 1 called
        said = until(lambda: _said(west, "voice_west", ticket["id"]),
                     "west's voice saying east's call", wait=30)
        assert said["text"] == f"请{ticket['number']}号到1号窗口办理", said
        until(lambda: [p for p in read_log(daemons["west"].config.parent / "speaker.log")
                       if p.rms], "west's speaker playing it", wait=30)
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


def test_a_daemon_whose_hall_disagrees_refuses_to_start_saying_what_differs(
        tmp_path: Path, pg_server: PgServer):
    url = pg_server.create_database()
    east = Daemon(shared_hall(tmp_path / "east", url, "east")).start()
    try:
        west_toml = shared_hall(tmp_path / "west", url, "west")
        west_toml.write_text(west_toml.read_text(encoding="utf-8").replace(
            'prefix = "A"', 'prefix = "P"'), encoding="utf-8")
        checked = subprocess.run([sys.executable, "-m", "kioskd.cli", "check", "-c",
                                  str(west_toml)], capture_output=True, text=True, timeout=60)
        assert checked.returncode == 2, checked.stderr
        difference = 'service property: prefix is "A" in the database, "P" in devices.toml'
        assert difference in checked.stderr
        west = Daemon(west_toml)
        with pytest.raises(RuntimeError, match="exited with 2") as refused:
            west.start()
        assert difference in str(refused.value) and "Traceback" not in str(refused.value)
        twin = Daemon(shared_hall(tmp_path / "twin", url, "east"))   # east's name again
        with pytest.raises(RuntimeError, match='instance "east" is already running'):
            twin.start()
        # the refused daemons changed nothing: east goes on, and the catalogue is east's
        with httpx.Client(base_url=east.url, timeout=10) as client:
            assert client.post(f"{API}/tickets", json={"service": "property"}
                               ).json()["number"] == "A001"
    finally:
        east.stop()


def _said(client: httpx.Client, voice_id: str, ticket: str) -> dict | None:
    said = client.get(f"{API}/devices/{voice_id}").json()["detail"].get("last_announcement")
    return said if said and said.get("ticket") == ticket else None


@pytest.mark.parametrize("stop", ["fast", "immediate"])
def test_the_database_going_away_answers_503_and_service_returns_with_nothing_lost(
        tmp_path, stop: str):
    """Both floors' hall boards show every call; the database stops (shut down, or
    killed as in a crash: `immediate`, recovered from its WAL at the next start): issue
    and call answer 503 saying so, the boards keep what they show; it starts again:
    both daemons come back by themselves, nothing answered before is lost, and a call
    on one floor reaches the other's board again."""
    server = PgServer()
    server.start()
    try:
        url = server.create_database()
        configs = {name: shared_hall(tmp_path / name, url, name, hall_board(f"hall_{name}"))
                   for name in WINDOWS}
        with emulated_boards(list(configs.values())) as boards:
            daemons = {name: Daemon(path) for name, path in configs.items()}
            try:
                for daemon in daemons.values():
                    daemon.start()
                with httpx.Client(base_url=daemons["east"].url, timeout=15) as east, \
                        httpx.Client(base_url=daemons["west"].url, timeout=15) as west:
                    _database_restart(server, stop, east, west, boards)
            finally:
                for daemon in daemons.values():
                    if daemon.proc is not None and daemon.proc.poll() is None:
                        daemon.stop()
            for daemon in daemons.values():
                assert "Traceback" not in daemon.output(), daemon.output()[-3000:]
    finally:
        server.destroy()


def _database_restart(server: PgServer, stop: str, east: httpx.Client, west: httpx.Client,
                      boards: dict) -> None:
    before = [east.post(f"{API}/tickets", json={"service": "property"}).json()
              for _ in range(5)]
    first = east.post(f"{API}/windows/1/call-next").json()
    second = west.post(f"{API}/windows/3/call-next").json()
    assert (first["id"], second["id"]) == (before[0]["id"], before[1]["id"])
    for board in boards.values():      # each floor's board shows both floors' calls
        until(lambda: any(second["number"] in line for line in board.lines)
              and any(first["number"] in line for line in board.lines),
              f"{board} shows {first['number']} and {second['number']}")
    shown = {device: list(board.lines) for device, board in boards.items()}

    server.stop(stop)
    for client, issue_or_call in ((east, ("POST", f"{API}/tickets")),
                                  (west, ("POST", f"{API}/windows/4/call-next"))):
        refused = client.request(*issue_or_call, json={"service": "property"}
                                 if issue_or_call[1].endswith("tickets") else None)
        assert refused.status_code == 503, refused.text
        assert refused.json()["reason"] == "store_unavailable"
        assert "database" in refused.json()["detail"]
        assert client.get("/livez").status_code == 200          # the daemon itself lives
        until(lambda: client.get("/healthz").status_code == 503, "healthz says so")
    assert east.get("/healthz").json()["reason"] == "store_unavailable"
    assert {device: list(board.lines) for device, board in boards.items()} == shown

    server.start()
    back = _eventually_issued(east)
    until(lambda: west.get("/healthz").status_code == 200, "west back by itself", wait=30,
          every=0.2)
    assert back["number"] not in {t["number"] for t in before}
    for ticket in before:
        r = west.get(f"{API}/tickets/{ticket['id']}")
        assert r.status_code == 200 and r.json()["number"] == ticket["number"]
    assert east.get(f"{API}/tickets/{first['id']}").json()["status"] == "called"
    until(lambda: west.post(f"{API}/windows/4/call-next").status_code != 503,
          "west calling again", wait=30, every=0.2)
    third = west.get(f"{API}/windows/4").json()["current"]
    assert third["id"] == before[2]["id"]
    until(lambda: any(third["number"] in line for line in boards["hall_east"].lines),
          f"east's board shows west's call of {third['number']} after the outage")


def _eventually_issued(client: httpx.Client) -> dict:
    answers: list[httpx.Response] = []

    def issued() -> bool:
        answers.append(client.post(f"{API}/tickets", json={"service": "property"}))
        return answers[-1].status_code == 201

    until(issued, "issuing again after the database came back", wait=30, every=0.2)
    assert {r.status_code for r in answers[:-1]} <= {503}
    return answers[-1].json()


async def test_an_answer_committed_stands_when_its_events_cannot_be_read_back(pg_url: str):
    """Another daemon's event commits first, so this daemon must read the log to
    publish in order; the log cannot be read just then (made unreadable in this
    process: no transport fails the read-back alone). The operation was committed, so
    its answer stands, and the follower publishes both events, in order, once the log
    reads again."""
    from kioskd.pgstore import PostgresStore
    from kioskd.pgtx import write_events
    from kioskd.records import Event
    from kioskd.store import StoreUnavailable

    store = PostgresStore(pg_url)              # no config: the store alone, no register
    heard: list[Event] = []
    store.on_commit = heard.extend
    await store.open()
    try:
        def unreadable(fn):
            raise StoreUnavailable("the log cannot be read just now")
        store._read = unreadable
        with psycopg.connect(pg_url) as other, other.transaction():
            write_events(other, [Event(0, "window.changed", 1.0, {"window": "1"})])
        answer = await store.transact(
            lambda tx: (tx.emit("window.changed", 2.0, {"window": "2"}), "saved")[1])
        assert answer == "saved" and heard == []
        del store._read
        await eventually(lambda: [e.data["window"] for e in heard], lambda w: w == ["1", "2"],
                         "both events published in the log's order", wait=15)
        assert [e.local for e in heard] == [False, True]
    finally:
        await store.close()
