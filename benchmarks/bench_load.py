"""Closed-loop HTTP load with aiohttp: N workers, each one request at a time, for a fixed time.

Every loop is bounded in time and in count and talks only to 127.0.0.1.
Latency is measured per request with time.perf_counter, from just before the
request is sent to the last byte of the answer. Only good answers that start
after the warm-up and finish before the end are counted (requests/s and
latency); errors are counted in every phase (warm-up included).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench_stats import percentile

MAX_REQUESTS_PER_WORKER = 100_000      # a bound on every loop, whatever the clock says
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)
STOP_GRACE = 15.0                      # after the end: how long stragglers may take


@dataclass(frozen=True)
class Route:
    """One kind of request and what counts as a good answer."""

    name: str
    method: str
    expected: frozenset[int]


LIVEZ = Route("livez", "GET", frozenset({200}))
ISSUE = Route("issue", "POST", frozenset({201}))
CALL_NEXT = Route("call-next", "POST", frozenset({200, 204}))


@dataclass
class RouteStats:
    route: Route
    clients: int = 0
    latencies: list[float] = field(default_factory=list)   # seconds, measured window only
    statuses: Counter = field(default_factory=Counter)       # measured window only
    errors: Counter = field(default_factory=Counter)         # every phase: status or exception
    error_samples: dict[Any, str] = field(default_factory=dict)
    total_requests: int = 0                                  # every phase

    def note_error(self, key: Any, sample: str) -> None:
        self.errors[key] += 1
        self.error_samples.setdefault(key, sample[:300])

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def server_errors(self) -> int:
        return sum(n for k, n in self.errors.items() if isinstance(k, int) and k >= 500)

    def summary(self, seconds: float) -> dict[str, float]:
        ordered = sorted(self.latencies)
        return {
            "rps": len(ordered) / seconds if seconds else 0.0,
            "p50_ms": percentile(ordered, 50) * 1e3,
            "p99_ms": percentile(ordered, 99) * 1e3,
            "max_ms": (ordered[-1] * 1e3) if ordered else 0.0,
        }


@dataclass
class Worker:
    """One client: a route and a function giving (path, json body) for each request;
    `base`, the daemon it talks to when not the scenario's (a hall of several)."""

    route: Route
    request: Callable[[random.Random], tuple[str, Any]]
    seed: int
    base: str | None = None


@dataclass
class ScenarioResult:
    name: str
    clients: int
    seconds: float                          # the measured window
    routes: dict[str, RouteStats]
    window_start: float = 0.0
    window_end: float = 0.0
    timed_out: bool = False


def session(concurrency: int) -> aiohttp.ClientSession:
    """One session, keep-alive, a connection for every client."""
    connector = aiohttp.TCPConnector(limit=concurrency + 4, limit_per_host=concurrency + 4,
                                     force_close=False, keepalive_timeout=60)
    return aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT)


async def _loop(http: aiohttp.ClientSession, base: str, worker: Worker, stats: RouteStats,
                measure_from: float, stop_at: float, max_requests: int) -> None:
    rng = random.Random(worker.seed)
    route = worker.route
    base = worker.base or base
    for _ in range(max_requests):
        started = time.perf_counter()
        if started >= stop_at:
            return
        path, body = worker.request(rng)
        status: int | None = None
        try:
            async with http.request(route.method, base + path, json=body) as resp:
                payload = await resp.read()
                status = resp.status
        except asyncio.CancelledError:
            raise
        except Exception as exc:   # a refused or reset connection, a timeout: an error
            stats.total_requests += 1
            stats.note_error(type(exc).__name__, f"{route.method} {path}: {exc!r}")
            await asyncio.sleep(0.01)   # do not spin on a dead server
            continue
        finished = time.perf_counter()
        stats.total_requests += 1
        if status not in route.expected:
            stats.note_error(status, f"{route.method} {path} -> {status}: "
                                     f"{payload[:200].decode(errors='replace')}")
        elif started >= measure_from and finished <= stop_at:
            stats.latencies.append(finished - started)
            stats.statuses[status] += 1


async def run_scenario(http: aiohttp.ClientSession, base: str, name: str,
                       workers: list[Worker], warmup: float, duration: float,
                       on_window: Callable[[str], None] | None = None,
                       max_requests: int = MAX_REQUESTS_PER_WORKER) -> ScenarioResult:
    """Run every worker concurrently: `warmup` s uncounted, then `duration` s counted.

    `on_window("start")` / `on_window("end")` are called at the edges of the
    measured window (to sample CPU there).
    """
    routes: dict[str, RouteStats] = {}
    for w in workers:
        routes.setdefault(w.route.name, RouteStats(w.route)).clients += 1
    t0 = time.perf_counter()
    measure_from, stop_at = t0 + warmup, t0 + warmup + duration
    tasks = [asyncio.create_task(_loop(http, base, w, routes[w.route.name], measure_from,
                                       stop_at, max_requests))
             for w in workers]

    async def edges() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        if on_window:
            on_window("start")
        await asyncio.sleep(max(0.0, stop_at - time.perf_counter()))
        if on_window:
            on_window("end")

    edge_task = asyncio.create_task(edges())
    result = ScenarioResult(name, len(workers), duration, routes, measure_from, stop_at)
    done, pending = await asyncio.wait(tasks, timeout=warmup + duration + STOP_GRACE)
    if pending:
        result.timed_out = True
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    await edge_task
    for task in done:
        if task.exception() is not None:
            stats = routes[workers[tasks.index(task)].route.name]
            stats.note_error(type(task.exception()).__name__, repr(task.exception()))
    return result


async def issue_many(http: aiohttp.ClientSession, base: str, services: list[str], count: int,
                     concurrency: int, timeout: float = 60.0) -> RouteStats:
    """Issue `count` tickets for random services, `concurrency` at a time (not measured)."""
    stats = RouteStats(ISSUE, clients=concurrency)
    remaining = [count]
    deadline = time.perf_counter() + timeout

    async def one(seed: int) -> None:
        rng = random.Random(seed)
        while remaining[0] > 0 and time.perf_counter() < deadline:
            remaining[0] -= 1
            try:
                async with http.post(base + "/api/v1/tickets",
                                     json={"service": rng.choice(services)}) as resp:
                    payload = await resp.read()
                    stats.total_requests += 1
                    if resp.status != 201:
                        stats.note_error(resp.status, payload[:200].decode(errors="replace"))
            except Exception as exc:
                stats.total_requests += 1
                stats.note_error(type(exc).__name__, repr(exc))
                await asyncio.sleep(0.01)

    await asyncio.gather(*(one(1000 + i) for i in range(concurrency)))
    return stats
