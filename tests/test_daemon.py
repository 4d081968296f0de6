"""The real `kioskd run` process over HTTP: tickets, the SSE stream with Last-Event-ID,
a clean SIGTERM, `kioskd check`, and the refusal to serve a network without tokens."""

from __future__ import annotations

import json
import queue
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from daemon import Daemon, hall_toml

API = "/api/v1"


@pytest.fixture
def hall_file(tmp_path: Path) -> Path:
    path = tmp_path / "devices.toml"
    path.write_text(hall_toml(windows=4), encoding="utf-8")
    return path


@pytest.fixture
def daemon(hall_file: Path):
    d = Daemon(hall_file).start()
    yield d
    d.kill()


class EventReader:
    """Reads one SSE stream in a thread into a queue of (id, type, body)."""

    def __init__(self, url: str, last_event_id: int | None = None):
        headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
        self.events: queue.Queue = queue.Queue()
        self.connected = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(5, read=30))
        self._response = self._client.send(
            self._client.build_request("GET", f"{url}{API}/events", headers=headers),
            stream=True)
        assert self._response.status_code == 200
        assert self._response.headers["content-type"].startswith("text/event-stream")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            for line in self._response.iter_lines():
                if line == "":
                    if "data" in fields:
                        self.events.put((int(fields["id"]), fields["event"],
                                         json.loads(fields["data"])))
                    fields = {}
                elif not line.startswith(":"):
                    key, _, value = line.partition(":")
                    fields[key] = value.lstrip(" ")
        except (httpx.TransportError, httpx.StreamClosed, RuntimeError):
            pass

    def next(self, timeout: float = 10) -> tuple[int, str, dict]:
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        self._response.close()
        self._client.close()


def issue(url: str, service: str = "property") -> dict:
    r = httpx.post(f"{url}{API}/tickets", json={"service": service}, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def test_a_kiosk_and_a_window_over_http_with_the_live_stream(daemon: Daemon):
    stream = EventReader(daemon.url)
    a001 = issue(daemon.url)
    called = httpx.post(f"{daemon.url}{API}/windows/1/call-next", timeout=10)
    assert called.status_code == 200 and called.json()["number"] == a001["number"] == "A001"

    first_id, kind, body = stream.next()
    assert (kind, body["data"]["number"]) == ("ticket.issued", "A001")
    second_id, kind, body = stream.next()
    assert (kind, body["data"]["number"], body["data"]["window"]) == ("ticket.called", "A001", "1")
    assert second_id > first_id
    stream.close()

    # The display is offline while two more people take numbers.
    issue(daemon.url)
    issue(daemon.url, "business")

    resumed = EventReader(daemon.url, last_event_id=second_id)
    missed = [resumed.next(), resumed.next()]
    assert [(k, b["data"]["number"]) for _, k, b in missed] == [
        ("ticket.issued", "A002"), ("ticket.issued", "B001")]
    assert [i for i, _, _ in missed] == sorted(i for i, _, _ in missed)
    assert missed[0][0] > second_id
    # ... and then it is live again.
    httpx.post(f"{daemon.url}{API}/windows/2/call-next", timeout=10)
    live_id, kind, body = resumed.next()
    assert (kind, body["data"]["window"]) == ("ticket.called", "2") and live_id > missed[1][0]
    resumed.close()


def test_a_display_resumes_across_a_daemon_restart(hall_file: Path):
    first = Daemon(hall_file).start()
    try:
        stream = EventReader(first.url)
        issue(first.url)
        seen_id, _, _ = stream.next()
        stream.close()
        issue(first.url)
        assert first.stop() == 0
    finally:
        first.kill()
    second = Daemon(hall_file).start()
    try:
        resumed = EventReader(second.url, last_event_id=seen_id)
        missed_id, kind, body = resumed.next()
        assert (kind, body["data"]["number"]) == ("ticket.issued", "A002")
        assert missed_id == seen_id + 1
        # Numbers go on from where the day was, never from A001 again.
        assert issue(second.url)["number"] == "A003"
        resumed.close()
    finally:
        second.kill()


def test_sigterm_mid_burst_answers_in_flight_requests_and_closes_cleanly(
        daemon: Daemon, hall_file: Path):
    answers: list[tuple[int, dict]] = []
    lock = threading.Lock()
    enough, stop = threading.Event(), threading.Event()

    def kiosk() -> None:
        with httpx.Client(base_url=daemon.url, timeout=10) as client:
            for _ in range(5_000):
                if stop.is_set():
                    return
                try:
                    r = client.post(f"{API}/tickets", json={"service": "property"})
                except httpx.TransportError:
                    return                  # the daemon no longer accepts: fine
                with lock:
                    answers.append((r.status_code, r.json()))
                    if len(answers) >= 50:
                        enough.set()

    threads = [threading.Thread(target=kiosk) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        assert enough.wait(30)
        assert daemon.stop() == 0           # SIGTERM while requests are in flight
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert {status for status, _ in answers} == {201}, "every answer was a success"
    log = daemon.output()
    assert "store: closed cleanly" in log
    db = hall_file.parent / "var" / "kioskd.db"
    wal = db.with_name("kioskd.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "the WAL was checkpointed on close"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        numbers = {row[0] for row in conn.execute("SELECT number FROM tickets")}
    assert {body["number"] for _, body in answers} <= numbers


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kioskd.cli", *args],
                          capture_output=True, text=True, timeout=60)


def test_check_accepts_the_shipped_demo_hall():
    shipped = Path(__file__).resolve().parent.parent / "devices.toml"
    result = run_cli("check", "-c", str(shipped))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_check_names_every_problem_and_exits_2(tmp_path: Path):
    bad = tmp_path / "devices.toml"
    bad.write_text(hall_toml(windows=2).replace('services = ["property", "business"]',
                                                'services = ["property", "nosuch"]')
                   + '\n[server2]\nport = 1\n', encoding="utf-8")
    result = run_cli("check", "-c", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert any("nosuch" in line and "windows" in line for line in lines), lines
    assert any("server2" in line for line in lines), lines


def test_run_refuses_a_network_bind_without_tokens(hall_file: Path):
    result = run_cli("run", "-c", str(hall_file), "--host", "0.0.0.0", "--port", "1")
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0" in result.stderr
    assert "[auth] kiosk" in result.stderr
