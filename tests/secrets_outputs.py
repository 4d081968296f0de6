"""Everything a running daemon says, gathered for tests that look for what must not be in it.

A `Recorder` is an HTTP client that keeps every answer it got (status, headers,
body); `outputs` adds what the daemon says without being asked for it in the
day's script: every event since the first, the whole audit log of the day, every
GET route, /metrics, the log file and every file in the data folder (the SQLite
database, its WAL, backups, the emulators' jobs). `leaks` finds needles in all of
it and says where each one was.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

API = "/api/v1"


@dataclass
class Recorder:
    """A client of the daemon at `url` keeping every answer it got."""

    url: str
    answers: list[tuple[str, str | bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def request(self, method: str, path: str, token: str | None = None, *,
                expect: int | None = None, headers: dict[str, str] | None = None,
                **kwargs: Any) -> httpx.Response:
        """`path` under /api/v1 unless it starts with another '/…' of the daemon's."""
        if not path.startswith(("/api/", "/healthz", "/livez", "/metrics", "/ui", "/docs",
                                "/openapi.json")):
            path = API + path
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        r = self.http.request(method, path, headers=sent, **kwargs)
        answer = f"{method} {path} -> {r.status_code}"
        self.answers.append((f"{answer} (headers)",
                             "".join(f"{k}: {v}\n" for k, v in r.headers.items())))
        self.answers.append((answer, r.text))
        if expect is not None:
            assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return r

    def close(self) -> None:
        self.http.close()


def every_event(url: str) -> str:
    """The event stream from the first event up to the last one committed now, as it
    came over the wire (`GET /events?since=0`)."""
    last = httpx.get(f"{url}/healthz", timeout=10).json()["last_event"]
    lines = []
    with httpx.Client(timeout=httpx.Timeout(10, read=20)) as client:
        with client.stream("GET", f"{url}{API}/events?since=0") as r:
            assert r.status_code == 200, r.read()
            for line in r.iter_lines():
                lines.append(line)
                if line.startswith("id:") and int(line[3:]) >= last:
                    break
    seen = [int(line[3:]) for line in lines if line.startswith("id:")]
    assert seen and seen[-1] == last and len(seen) == len(set(seen)), \
        f"the stream from 0 ended at {seen[-1:]} ({len(seen)} events); the log's last is {last}"
    return "\n".join(lines)


def audit_log(url: str, supervisor: str, date: str | None = None) -> list[dict]:
    """Every entry of the day's audit log, page after page."""
    entries, after = [], 0
    while True:
        params = {"after": after, "limit": 1000, **({"date": date} if date else {})}
        r = httpx.get(f"{url}{API}/audit", params=params, timeout=10,
                      headers={"Authorization": f"Bearer {supervisor}"})
        assert r.status_code == 200, r.text
        page = r.json()
        entries += page["entries"]
        if page["next_after"] is None:
            return entries
        after = page["next_after"]


def get_routes(url: str, supervisor: str, ids: dict[str, Iterable[str]]) -> list[tuple[str, str]]:
    """Every GET route of the API read with the supervisor's token (each of `ids`'
    tickets, appointments, windows and devices too): (what, answer)."""
    paths = ["/healthz", "/metrics", f"{API}/hall", f"{API}/services", f"{API}/queue",
             f"{API}/windows", f"{API}/calls?limit=50", f"{API}/stats", f"{API}/stats.csv",
             f"{API}/alerts?state=all", f"{API}/alerts", f"{API}/devices",
             f"{API}/appointments"]
    paths += [f"{API}/tickets/{t}" for t in ids.get("tickets", ())]
    paths += [f"{API}/tickets/{t}/qr.svg" for t in ids.get("tickets", ())]
    paths += [f"{API}/appointments/{a}" for a in ids.get("appointments", ())]
    for w in ids.get("windows", ()):
        paths += [f"{API}/windows/{w}", f"{API}/windows/{w}/waiting?limit=100",
                  f"{API}/windows/{w}/rating"]
    paths += [f"{API}/devices/{d}" for d in ids.get("devices", ())]
    found = []
    with httpx.Client(base_url=url, timeout=10,
                      headers={"Authorization": f"Bearer {supervisor}"}) as client:
        for path in paths:
            r = client.get(path)
            assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text}"
            found.append((f"GET {path}", r.text))
    return found


def data_files(folder: Path) -> list[tuple[str, bytes]]:
    """Every file under `folder` (the daemon stopped: its WAL checkpointed or not)."""
    return [(str(path.relative_to(folder.parent)), path.read_bytes())
            for path in sorted(folder.rglob("*")) if path.is_file()]


def leaks(needles: dict[str, dict[str, str | bytes]],
          places: Iterable[tuple[str, str | bytes]]) -> list[str]:
    """'where: what (as which form)' for every needle found in a place. `needles`
    maps what is looked for to its forms (the thing itself, parts, encodings); a
    place is text or bytes, and a bytes form is looked for in bytes places only.
    A text place is also read with its JSON escapes undone ("\\u5f20" is 张)."""
    found = []
    for where, content in places:
        if isinstance(content, bytes):
            views: list = [content]
        else:
            views = [content, _unescaped(content)]
        for what, shapes in needles.items():
            hits = [form for form, value in shapes.items()
                    if isinstance(content, bytes) or isinstance(value, str)
                    if any(_encoded(value, view) in view for view in views)]
            if hits:
                more = f" and {len(hits) - 1} other forms" if len(hits) > 1 else ""
                found.append(f"{where}: {what} ({hits[0]}{more})")
    return found


def _encoded(value: str | bytes, like: str | bytes) -> str | bytes:
    return value.encode() if isinstance(like, bytes) and isinstance(value, str) else value


def _unescaped(text: str) -> str:
    try:
        return json.dumps(json.loads(text), ensure_ascii=False)
    except ValueError:
        return text
