"""Shared fixtures: a small hall built in code, a clock the test moves, a store on disk."""

from __future__ import annotations

import asyncio
import inspect
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI

from kioskd.app import create_app
from kioskd.config import (Auth, Config, Device, Guide, Hall, Limits, Service, StoreSettings,
                           Window, loads_config)
from kioskd.queue import Queue
from kioskd.store import store_for

from pgserver import PgServer

T = TypeVar("T")

TZ = ZoneInfo("Asia/Shanghai")
OPENING = datetime(2026, 11, 30, 9, 0, tzinfo=TZ).timestamp()   # a Monday, 9:00


class Clock:
    """Hall time that moves only when the test says so."""

    def __init__(self, start: float = OPENING):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = 0, *, minutes: float = 0, hours: float = 0) -> None:
        self.now += seconds + 60 * minutes + 3600 * hours


def small_hall(data_dir: Path, auth: Auth | None = None, store_url: str | None = None) -> Config:
    """不动产 (A), 企业开办 (B), 社保 (C); windows 1-2 comprehensive, 3 social security,
    4 property only, 9 temporary. `store_url`: a PostgreSQL database (the `store_url`
    fixture's), else the SQLite file in data_dir."""
    return Config(
        hall=Hall(name="测试政务服务中心", timezone="Asia/Shanghai", data_dir=data_dir,
                  number_width=3, readmit_within_min=30, readmit_after=2),
        auth=auth or Auth(),
        limits=Limits(0, 0),      # tests issue faster than kiosks can; test_limits sets its own
        store=StoreSettings(store_url),
        services=(
            Service("property", "不动产登记", "A", "640100-001-01",
                    Guide(("不动产权属证书", "申请人身份证明"), "5个工作日", "不收费"), 10.0),
            Service("business", "企业开办", "B", "640100-002-01",
                    Guide(("营业执照申请书",), "1个工作日", "不收费"), 6.0),
            Service("social", "社保业务", "C", "640100-003-01", Guide(), 4.0),
        ),
        windows=(
            Window("1", "1号窗口", ("property", "business")),
            Window("2", "2号窗口", ("business", "property")),
            Window("3", "3号窗口", ("social",)),
            Window("4", "4号窗口", ("property",)),
            Window("9", "临时窗口", ("property", "business", "social"), temporary=True),
        ),
        devices={
            # disabled: these tests are about the queue; test_printing.py prints for real
            "printer_1": Device("printer_1", "escpos", {"connection": "tcp://127.0.0.1:9"},
                                enabled=False),
            "kiosk_1": Device("kiosk_1", "terminal", {"printer": "printer_1"}),
        },
    )


# The smallest valid devices.toml: one service, one window. Tests add to it.
MINIMAL_HALL = """\
[hall]
name = "测试大厅"
@HALL@

[[services]]
id = "property"
name = "不动产登记"
prefix = "A"
code = "640100-001-01"

[[windows]]
id = "1"
name = "1号窗口"
services = ["property"]
@WINDOW@"""


def hall_toml(extra: str = "", *, hall: str = "", window: str = "") -> str:
    """The minimal hall with `hall` lines added to [hall], `window` lines to its
    window, and `extra` tables appended."""
    return (MINIMAL_HALL.replace("@HALL@", textwrap.dedent(hall))
            .replace("@WINDOW@", textwrap.dedent(window)) + "\n" + textwrap.dedent(extra))


def demo_frame(device_id: str, *, ack: bool = False) -> str:
    """The vendor frame the demo hall's text boards speak, as [devices.ID.frame]
    tables: AA 55 | address | 31 | line | effect | length | GB18030 text | sum8 | 0D 0A."""
    return f"""\
[devices.{device_id}.frame]
layout = ["header", "address", "command", "line", "effect", "length", "text", "checksum", "trailer"]
header = "AA 55"
address_bytes = 1
command = "31"
line_base = 1
length_bytes = 1
encoding = "gb18030"
checksum = "sum8"
checksum_span = ["address", "text"]
trailer = "0D 0A"
{'ack = "06"' if ack else ""}
[devices.{device_id}.frame.effects]
steady = "00"
flash = "01"
scroll = "02"
"""


SHIPPED_HALL = Path(__file__).resolve().parents[1] / "devices.toml"


def demo_hall(base_dir: Path, printer_port: int = 9100) -> Config:
    """The shipped demo hall, its paths (data, board ptys) under `base_dir`,
    its emulated printer at `printer_port` on loopback."""
    text = SHIPPED_HALL.read_text(encoding="utf-8")
    return loads_config(text.replace("tcp://127.0.0.1:9100", f"tcp://127.0.0.1:{printer_port}"),
                        base_dir=base_dir, env={})


@asynccontextmanager
async def serving(config: Config, clock: Callable[[], float] = time.time
                  ) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The application with its lifespan, and a client talking to it in-process; its
    store is the config's (`[store] url`, as `small_hall(..., store_url=)` sets it)."""
    app = create_app(config, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hall.test") as client:
            yield app, client


@asynccontextmanager
async def running(config: Config, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    """Only the client of `serving`."""
    async with serving(config, clock) as (_app, client):
        yield client


async def device_view(client: httpx.AsyncClient, device_id: str) -> dict:
    """GET /api/v1/devices/ID, which must answer 200."""
    r = await client.get(f"/api/v1/devices/{device_id}")
    assert r.status_code == 200, r.text
    return r.json()


async def eventually(read: Callable[[], Awaitable[T] | T], holds: Callable[[T], object],
                     what: str, wait: float = 10.0, every: float = 0.02) -> T:
    """Read (an API answer, an emulator's model, a file) until what was read holds, and
    return it; fail after `wait` seconds, showing the last reading. `read` may be a
    coroutine function or a plain one. The one poll-with-a-timeout of the asyncio tests."""
    async def reading() -> T:
        value = read()
        return await value if inspect.isawaitable(value) else value
    deadline = asyncio.get_running_loop().time() + wait
    while not holds(value := await reading()):
        assert asyncio.get_running_loop().time() < deadline, \
            f"waited {wait:g} s for {what}; last read: {value!r}"
        await asyncio.sleep(every)
    return value


def until(condition: Callable[[], T], what: str, wait: float = 10.0, every: float = 0.02) -> T:
    """Call `condition()` until it returns something truthy, and return that; fail
    after `wait` seconds. The one poll-with-a-timeout of the synchronous tests."""
    deadline = time.monotonic() + wait
    while not (result := condition()):
        assert time.monotonic() < deadline, f"waited {wait:g} s for {what}"
        time.sleep(every)
    return result


async def device_in_state(client: httpx.AsyncClient, device_id: str, state: str,
                          wait: float = 10.0) -> dict:
    """Poll the device until it is in `state`; fails after `wait` seconds."""
    return await eventually(lambda: device_view(client, device_id),
                            lambda device: device["state"] == state,
                            f"{device_id} to be {state}", wait)


class HallClient:
    """The daemon in-process as the hall uses it: a kiosk takes 不动产登记 tickets,
    clerks press their window's buttons, a technician reads the devices."""

    wait = 10.0                          # how long `until` waits before the test fails

    def __init__(self, app: FastAPI, client: httpx.AsyncClient):
        self.app = app
        self.client = client

    async def issue(self, count: int = 1, *, ids: bool = False) -> list[str]:
        """Take `count` tickets; their numbers (or ids)."""
        issued = []
        for _ in range(count):
            r = await self.client.post("/api/v1/tickets", json={"service": "property"})
            assert r.status_code == 201, r.text
            issued.append(r.json()["id" if ids else "number"])
        return issued

    async def press(self, window_id: str, action: str, **body) -> httpx.Response:
        r = await self.client.post(f"/api/v1/windows/{window_id}/{action}", json=body or None)
        assert r.status_code < 300, r.text
        return r

    async def call(self, window: str) -> str:
        return (await self.press(window, "call-next")).json()["number"]

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        """Poll `condition` (it reads an emulator's model) until it holds."""
        await eventually(condition, bool, what, self.wait, every=0.01)

    async def device(self, device_id: str) -> dict:
        return await device_view(self.client, device_id)

    async def state(self, device_id: str, state: str) -> dict:
        return await device_in_state(self.client, device_id, state, self.wait)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak-seconds", type=float, default=None, metavar="N",
                     help="run tests/test_soak.py about N seconds, repeating its fault "
                          "cycle (default: the CI run, about 75 s)")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One throwaway PostgreSQL server for the whole run (tests/pgserver.py). Without
    fsync: its tests kill daemons, not the server or the machine, so what a commit
    wrote is in the kernel's cache either way (test_shared_store's outage test runs a
    server of its own, with fsync, and crashes that)."""
    server = PgServer(fsync=False)
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh, empty database on the test server."""
    return pg_server.create_database()


@pytest.fixture
def clock() -> Clock:
    return Clock()


STORES = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module that sets `BOTH_STORES = True` runs each test using `store_url` (through
    `hall_config`, `queue`, ...) once on SQLite and once on PostgreSQL."""
    if "store_url" in metafunc.fixturenames and getattr(metafunc.module, "BOTH_STORES", False):
        metafunc.parametrize("store_url", STORES, indirect=True, ids=STORES)


@pytest.fixture
def store_url(request: pytest.FixtureRequest) -> str | None:
    """The hall's `[store] url`: None (the SQLite file in data_dir) unless the module
    runs on both stores (BOTH_STORES) and this is its PostgreSQL run: then a fresh
    database on the test server."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return request.getfixturevalue("pg_url")
    return None


@pytest.fixture
def hall_config(tmp_path: Path, store_url: str | None) -> Config:
    return small_hall(tmp_path / "var", store_url=store_url)


@pytest.fixture
async def queue(hall_config: Config, clock: Clock):
    """An open queue over the hall's store: a real SQLite file, or a real PostgreSQL
    database (store_url)."""
    store = store_for(hall_config)
    q = Queue(hall_config, store, clock)
    await store.open()
    await q.setup()
    yield q
    await store.close()
