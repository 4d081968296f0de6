"""kill -9 in the middle of a burst of issues and calls: nothing answered 2xx is lost,
no number is given twice, no ticket is called twice. On both stores (BOTH_STORES):
the daemon's SQLite file, and a PostgreSQL database of the test server, the daemon
then one instance of a shared-store hall (test_shared_store.shared_hall) calling at
its own windows."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from daemon import Daemon, hall_toml
from kioskd.config import load_config
from storedump import dump
from test_shared_store import WINDOWS as SHARED_WINDOWS, shared_hall

BOTH_STORES = True
API = "/api/v1"
KIOSKS = 3
WINDOWS = 3               # the SQLite hall's; on PostgreSQL, the instance's own
KILL_AFTER = 150          # answers before the kill: well inside the burst


def burst(url: str, windows: tuple[str, ...], answered: dict, enough: threading.Event,
          stop: threading.Event):
    lock = threading.Lock()

    def record(kind: str, body: dict) -> None:
        with lock:
            answered[kind].append(body)
            if len(answered["issued"]) + len(answered["called"]) >= KILL_AFTER:
                enough.set()

    def kiosk(n: int) -> None:
        with httpx.Client(base_url=url, timeout=5) as client:
            services = ["property", "business"]
            i = 0
            while not stop.is_set() and i < 10_000:
                i += 1
                try:
                    r = client.post(f"{API}/tickets", json={"service": services[(n + i) % 2]})
                except httpx.TransportError:
                    return                       # the daemon is gone
                record("issued" if r.status_code == 201 else "unexpected", r.json())

    def window(w: str) -> None:
        with httpx.Client(base_url=url, timeout=5) as client:
            i = 0
            while not stop.is_set() and i < 10_000:
                i += 1
                try:
                    r = client.post(f"{API}/windows/{w}/call-next")
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    record("called", r.json())
                elif r.status_code != 204:
                    record("unexpected", r.json())

    threads = [threading.Thread(target=kiosk, args=(n,)) for n in range(KIOSKS)]
    threads += [threading.Thread(target=window, args=(w,)) for w in windows]
    for t in threads:
        t.start()
    return threads


def hall(directory: Path, store_url: str | None) -> tuple[Path, tuple[str, ...]]:
    """The daemon's devices.toml, and the windows it calls at."""
    if store_url is None:
        config = directory / "devices.toml"
        config.write_text(hall_toml(windows=WINDOWS), encoding="utf-8")
        return config, tuple(str(w) for w in range(1, WINDOWS + 1))
    return shared_hall(directory, store_url, "east"), SHARED_WINDOWS["east"]


def test_kill_9_mid_burst_loses_nothing_answered(tmp_path: Path, store_url: str | None):
    config, windows = hall(tmp_path, store_url)
    answered: dict[str, list] = {"issued": [], "called": [], "unexpected": []}
    enough, stop = threading.Event(), threading.Event()

    first = Daemon(config).start()
    threads = burst(first.url, windows, answered, enough, stop)
    try:
        assert enough.wait(60), "the burst never got going"
        first.kill()                                   # SIGKILL mid-burst
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        first.kill()
    assert not any(t.is_alive() for t in threads)
    assert answered["unexpected"] == []

    second = Daemon(config).start()
    try:
        with httpx.Client(base_url=second.url, timeout=10) as client:
            for ticket in answered["issued"]:
                r = client.get(f"{API}/tickets/{ticket['id']}")
                assert r.status_code == 200, f"{ticket['number']} was answered 201 and is gone"
                assert r.json()["number"] == ticket["number"]
            for ticket in answered["called"]:
                assert client.get(f"{API}/tickets/{ticket['id']}").json()["status"] != "waiting"
            # The rest of the day: every window calls until nothing waits.
            called_after = []
            for w in windows:
                while (r := client.post(f"{API}/windows/{w}/call-next")).status_code == 200:
                    called_after.append(r.json())
                    assert len(called_after) < 100_000
            fresh = client.post(f"{API}/tickets", json={"service": "property"}).json()
    finally:
        second.stop()

    called_ids = [t["id"] for t in answered["called"] + called_after]
    assert len(called_ids) == len(set(called_ids)), "a ticket was called twice"
    issued_numbers = [t["number"] for t in answered["issued"]]
    assert len(issued_numbers) == len(set(issued_numbers))
    assert fresh["number"] not in issued_numbers

    rows = dump(load_config(config, env={}), ("tickets",))["tickets"]
    assert len(rows) == len({(r["day"], r["number"]) for r in rows}), "a number given twice"
    assert {r["status"] for r in rows} <= {"waiting", "called", "done"}
    # Every ticket of the day was called exactly once, before or after the crash,
    # except the new one just issued.
    waiting = [r["number"] for r in rows if r["status"] == "waiting"]
    assert waiting == [fresh["number"]]
