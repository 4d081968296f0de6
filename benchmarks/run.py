#!/usr/bin/env python3
"""kioskd load benchmark: the real daemon, the real disk, against its own ceilings.

    .venv/bin/python benchmarks/run.py          (or: make bench)

1. Writes a throw-away hall (5 services A–E, 40 windows, no devices) to a temp
   dir and starts `python -m kioskd.cli run` on it, on a free 127.0.0.1 port.
2. Measures the ceilings on the same machine and filesystem: durable one-row
   SQLite commits per second (WAL, synchronous=FULL), the same with N rows a
   commit for N clients (the most group commit can give N clients), and the
   requests per second this client reaches against the same server on
   GET /livez, a route that does nothing.
3. Runs "windows calling while kiosks issue" at 8 and 32 concurrent clients:
   half loop POST /api/v1/tickets, half (one window each) loop
   POST /api/v1/windows/{w}/call-next, over a backlog of pre-issued tickets.
4. Runs the same load twice more on a shared PostgreSQL store ([store] url): a
   throwaway server on this machine (tests/pgserver.py, fsync and synchronous_commit
   on: durable like SQLite's synchronous=FULL; bench_pg.py), a new database for each,
   first with one daemon, then with two daemons sharing the database (each its own
   [hall] instance; the windows in turn theirs by `[[windows]] instance`, the kiosks
   in turn on each: half the clients on each daemon). The server's ceilings first:
   one connection committing one-row INSERTs, and N connections at once (pgbench).
   GET /livez is measured once, on the SQLite daemon: it touches no store.
5. Prints requests/s, p50/p99 latency and errors per route, the daemons' CPU (two
   daemons: the sum) and the PostgreSQL server's, and the project's aims: p99 of
   issue and call-next < 20 ms at 32 clients, and (issue + call-next rps) /
   (livez rps) >= 0.5 at the same concurrency.

Speed is reported, not asserted: the exit status is non-zero only when a
daemon did not start, answered a 5xx, or did not stop cleanly on SIGTERM.
Without PostgreSQL's server programs the PostgreSQL runs are skipped, saying why
(and so does the table); `--stores` chooses the runs.
The client is Python too and shares the CPUs with the daemon; comparing with
/livez through the same client is what makes the figures meaningful.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench_daemon import CpuSample, Daemon, free_port, machine_busy_seconds
from bench_hall import SERVICE_IDS, WINDOW_COUNT, window_instance, write_hall
from bench_load import (CALL_NEXT, ISSUE, LIVEZ, RouteStats, ScenarioResult,
                        Worker, issue_many, run_scenario, session)
from bench_pg import SETTINGS, ConcurrentCommits, PgServer, concurrent_commit_rate
from bench_pg import durable_commit_rate as pg_commit_rate
from bench_pg import missing as pg_missing
from bench_pg import server_cpu_seconds
from bench_pg import settings as pg_settings
from bench_results import record
from bench_sqlite import CommitCeiling, durable_commit_rate

AIM_P99_MS = 20.0
AIM_RATIO = 0.5
NOISY_PCT = 15.0      # other processes using more than this % of a core: say so


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Setup:
    """Where the load runs: the store, and the daemons sharing it."""

    key: str                             # its figures: "issue_call", or ["postgres"][key]
    title: str
    short: str                           # in the printed table's first column
    instances: tuple[str, ...] = ()      # the daemons' [hall] instance (PostgreSQL)

    @property
    def daemons(self) -> int:
        return max(1, len(self.instances))


SQLITE = Setup("sqlite", "SQLite, 1 daemon", "SQLite")
PG_ONE = Setup("one_daemon", "PostgreSQL, 1 daemon", "PG 1 daemon", ("solo",))
PG_TWO = Setup("two_daemons", "PostgreSQL, 2 daemons", "PG 2 daemons", ("east", "west"))
SETUPS = (SQLITE, PG_ONE, PG_TWO)
STORE_CHOICES = {"sqlite": SQLITE, "postgres": PG_ONE, "postgres2": PG_TWO}


@dataclass
class CpuUse:
    daemon_pct: float = 0.0       # of one core; several daemons: the sum
    loop_pct: float = 0.0         # the daemon's main thread: the event loop
    others_pct: float = 0.0       # every other thread: the store writer, to_thread workers
    client_pct: float = 0.0       # this process
    other_pct: float | None = None   # everything else on the machine: should be near 0
    server_pct: float | None = None  # the PostgreSQL server's processes
    daemons: int = 1


@dataclass
class Measured:
    result: ScenarioResult
    cpu: CpuUse | None = None
    waiting_before: int | None = None
    waiting_after: int | None = None


@dataclass
class Postgres:
    """The PostgreSQL server the PostgreSQL runs used, and what it allows."""

    settings: dict[str, str] = field(default_factory=dict)
    root: Path | None = None
    ceiling: CommitCeiling | None = None        # one connection, one row a commit
    ceilings: dict[int, ConcurrentCommits | None] = field(default_factory=dict)  # N at once


@dataclass
class Report:
    ceiling: CommitCeiling | None = None        # one row a commit
    ceilings: dict[int, CommitCeiling] = field(default_factory=dict)  # N clients: N rows a commit
    livez: dict[int, Measured] = field(default_factory=dict)
    loads: dict[str, dict[int, Measured]] = field(default_factory=dict)   # Setup.key: clients
    preissue: list[RouteStats] = field(default_factory=list)
    postgres: Postgres | None = None
    postgres_skipped: str | None = None         # why the PostgreSQL runs did not run

    @property
    def load(self) -> dict[int, Measured]:
        """SQLite's."""
        return self.loads.get(SQLITE.key, {})


# -- the scenarios ------------------------------------------------------------------------------

def livez_workers(clients: int) -> list[Worker]:
    return [Worker(LIVEZ, lambda rng: ("/livez", None), seed=i) for i in range(clients)]


def hall_workers(clients: int, bases: list[str]) -> list[Worker]:
    """Half kiosks issuing random services, half windows "1".."k" calling the next ticket.
    With several daemons (`bases`, in the order of the setup's instances) the kiosks
    take them in turn, and each window calls through the daemon managing it."""
    kiosks = clients // 2
    windows = clients - kiosks
    assert windows <= WINDOW_COUNT
    workers = [Worker(ISSUE, lambda rng: ("/api/v1/tickets", {"service": rng.choice(SERVICE_IDS)}),
                      seed=100 + i, base=bases[i % len(bases)]) for i in range(kiosks)]
    for number in range(1, windows + 1):
        path = f"/api/v1/windows/{number}/call-next"
        base = window_instance(number, tuple(bases))    # as the hall gives it its daemon
        workers.append(Worker(CALL_NEXT, lambda rng, path=path: (path, None), seed=200 + number,
                              base=base))
    return workers


async def waiting(base: str) -> int | None:
    async with session(1) as http:
        try:
            async with http.get(base + "/api/v1/queue") as resp:
                if resp.status != 200:
                    return None
                return int((await resp.json())["waiting"])
        except (aiohttp.ClientError, asyncio.TimeoutError, KeyError, ValueError, TypeError):
            return None


@dataclass
class Sample:
    """CPU seconds so far, at one edge of the measured window."""

    daemons: list[CpuSample | None]
    client: float
    at: float
    machine: float | None
    server: float | None


async def measure(daemons: list[Daemon], name: str, clients: int, workers: list[Worker],
                  warmup: float, duration: float,
                  server_cpu: Callable[[], float | None] | None = None) -> Measured:
    """One scenario; the CPU the daemons (summed), this client, the PostgreSQL server
    (`server_cpu`, its CPU seconds so far) and the rest of the machine used meanwhile."""
    samples: dict[str, Sample] = {}

    def on_window(edge: str) -> None:
        samples[edge] = Sample([d.cpu() for d in daemons], time.process_time(),
                               time.perf_counter(), machine_busy_seconds(),
                               server_cpu() if server_cpu else None)

    log(f"{name}: {clients} clients, {warmup:g} s warm-up + {duration:g} s measured"
        + (f", {len(daemons)} daemons" if len(daemons) > 1 else ""))
    async with session(clients) as http:
        result = await run_scenario(http, daemons[0].base, name, workers, warmup, duration,
                                    on_window)
    return Measured(result, cpu_use(samples.get("start"), samples.get("end")))


def cpu_use(start: Sample | None, end: Sample | None) -> CpuUse | None:
    if start is None or end is None or None in start.daemons or None in end.daemons:
        return None
    wall = end.at - start.at
    if wall <= 0:
        return None

    def pct(before: float, after: float) -> float:
        return 100 * (after - before) / wall

    pairs = list(zip(start.daemons, end.daemons))
    cpu = CpuUse(sum(pct(a.total, b.total) for a, b in pairs),
                 sum(pct(a.main, b.main) for a, b in pairs),
                 sum(pct(a.others, b.others) for a, b in pairs),
                 pct(start.client, end.client), daemons=len(pairs))
    if start.server is not None and end.server is not None:
        cpu.server_pct = pct(start.server, end.server)
    if start.machine is not None and end.machine is not None:
        cpu.other_pct = max(0.0, pct(start.machine, end.machine) - cpu.daemon_pct
                            - cpu.client_pct - (cpu.server_pct or 0.0))
    return cpu


async def top_up(daemon: Daemon, backlog: int, report: Report) -> int | None:
    """Bring the waiting line to `backlog` so call-next mostly finds work."""
    now = await waiting(daemon.base)
    missing = backlog - (now or 0)
    if missing > 0:
        log(f"pre-issuing {missing} tickets (waiting now: {now})")
        started = time.perf_counter()
        async with session(16) as http:
            stats = await issue_many(http, daemon.base, SERVICE_IDS, missing, concurrency=16)
        report.preissue.append(stats)
        log(f"  {stats.total_requests} issued in {time.perf_counter() - started:.1f} s, "
            f"{stats.error_count} errors")
        now = await waiting(daemon.base)
    return now


async def bench(setup: Setup, daemons: list[Daemon], args: argparse.Namespace, report: Report,
                server_cpu: Callable[[], float | None] | None = None) -> None:
    # Each concurrency's /livez ceiling runs just before its load, so that both see the
    # machine in the same state; on SQLite's daemon only: /livez touches no store.
    load = report.loads.setdefault(setup.key, {})
    for clients in args.clients:
        if setup is SQLITE:
            report.livez[clients] = await measure(daemons, "livez", clients,
                                                  livez_workers(clients), args.warmup,
                                                  args.duration)
        before = await top_up(daemons[0], args.backlog, report)
        measured = await measure(daemons, f"issue+call ({setup.title})", clients,
                                 hall_workers(clients, [d.base for d in daemons]),
                                 args.warmup, args.duration, server_cpu)
        measured.waiting_before = before
        measured.waiting_after = await waiting(daemons[0].base)
        load[clients] = measured


# -- printing -----------------------------------------------------------------------------------

def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                     for i, (c, w) in enumerate(zip(cells, widths))).rstrip()


def durable(settings: dict[str, str]) -> bool:
    """Whether the server answers a commit only once it is on disk."""
    return settings.get("fsync") == "on" and settings.get("synchronous_commit") in (
        "on", "remote_write", "remote_apply")


def print_report(report: Report, args: argparse.Namespace, ran: list[tuple[str, Daemon]],
                 tmp: Path) -> None:
    out = print
    out()
    out("kioskd benchmark")
    out(f"  machine: {os.cpu_count()} CPUs, {platform.platform(terse=True)}, "
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
        f"client loop {args.loop_name}")
    for label, daemon in ran:
        out(f"  {label}: pid {daemon.pid}, http://127.0.0.1:{daemon.port}, "
            f"config {daemon.config.relative_to(tmp)}")
    if ran:
        out(f"  command: {' '.join(ran[0][1].command)}")
    out(f"  each scenario: {args.warmup:g} s warm-up (not counted) + {args.duration:g} s measured;"
        " closed loop, keep-alive")
    out()

    c = report.ceiling
    if c is not None:
        out(f"SQLite durable commits (WAL, synchronous=FULL, 1 INSERT per BEGIN IMMEDIATE/COMMIT, "
            f"{c.seconds:.1f} s, same filesystem):")
        out(f"  {c.rate:,.0f} commits/s   p50 {c.p50_ms:.2f} ms   p99 {c.p99_ms:.2f} ms")
        for clients, g in report.ceilings.items():
            out(f"  {clients} rows a commit (the most {clients} clients get from group commit): "
                f"{g.row_rate:,.0f} rows/s   p50 {g.p50_ms:.2f} ms   p99 {g.p99_ms:.2f} ms")
        out()
    pg = report.postgres
    if pg is not None:
        s = pg.settings
        out(f"PostgreSQL {s.get('server_version', '?')}: a throwaway server on this machine "
            f"({pg.root}, loopback TCP, same filesystem), "
            + ", ".join(f"{k}={s[k]}" for k in SETTINGS if k != "server_version" and k in s)
            + (": a commit is answered once on disk, durable like SQLite's synchronous=FULL"
               if durable(s) else ": NOT DURABLE, commits are answered before they are on disk"))
        if pg.ceiling is not None:
            p = pg.ceiling
            out(f"PostgreSQL durable commits (1 INSERT a transaction, one connection, "
                f"{p.seconds:.1f} s):")
            out(f"  {p.rate:,.0f} commits/s   p50 {p.p50_ms:.2f} ms   p99 {p.p99_ms:.2f} ms")
        for clients, g in pg.ceilings.items():
            out(f"  {clients} connections at once (pgbench, {g.seconds} s; the most {clients} "
                f"clients get from its WAL flush): {g.rate:,.0f} commits/s   mean "
                f"{g.latency_ms:.2f} ms" if g is not None else
                f"  {clients} connections at once: not measured (pgbench is not installed)")
        out()
    if report.postgres_skipped:
        out(f"PostgreSQL runs: not run: {report.postgres_skipped}")
        out()

    headers = ["scenario", "clients", "route", "req/s", "p50 ms", "p99 ms", "max ms", "errors",
               "notes"]
    widths = [12, 7, 16, 8, 7, 7, 7, 6, 0]
    out(_row(headers, widths))
    out(_row(["-" * w if w else "-----" for w in widths], widths))

    def line(scenario: str, clients: str, label: str, stats: RouteStats, seconds: float,
             note: str = "") -> None:
        s = stats.summary(seconds)
        out(_row([scenario, clients, label, f"{s['rps']:,.0f}", f"{s['p50_ms']:.1f}",
                  f"{s['p99_ms']:.1f}", f"{s['max_ms']:.1f}", str(stats.error_count), note], widths))

    def cpu_note(m: Measured) -> str:
        if m.cpu is None:
            return ""
        count = sum(len(s.latencies) for s in m.result.routes.values())
        per_request = (f"; daemon CPU per request {m.cpu.daemon_pct * 10 * m.result.seconds / count:.3f}"
                       " ms" if count else "")
        several = m.cpu.daemons > 1
        return (f"{'':14}CPU, % of one core: "
                + (f"{m.cpu.daemons} daemons together" if several else "daemon")
                + f" {m.cpu.daemon_pct:.0f} (event-loop thread{'s' if several else ''} "
                f"{m.cpu.loop_pct:.0f}, other threads {m.cpu.others_pct:.0f}), "
                f"client {m.cpu.client_pct:.0f}"
                + ("" if m.cpu.server_pct is None else
                   f", PostgreSQL server {m.cpu.server_pct:.0f}")
                + ("" if m.cpu.other_pct is None else f", other processes {m.cpu.other_pct:.0f}")
                + per_request)

    for clients, m in report.livez.items():
        stats = m.result.routes["livez"]
        line("livez", str(clients), "GET /livez", stats, m.result.seconds)
        out(cpu_note(m))
    for setup in SETUPS:
        for clients, m in report.loads.get(setup.key, {}).items():
            r = m.result
            issue, call = r.routes["issue"], r.routes["call-next"]
            line(setup.short, str(clients), f"issue ({issue.clients})", issue, r.seconds)
            empty = call.statuses.get(204, 0)
            line("", "", f"call-next ({call.clients})", call, r.seconds,
                 f"{empty} of {len(call.latencies)} answered 204 (nothing waiting)"
                 if empty else "")
            both = RouteStats(ISSUE)
            both.latencies = issue.latencies + call.latencies
            both.errors = issue.errors + call.errors
            line("", "", "both", both, r.seconds,
                 f"waiting {m.waiting_before} -> {m.waiting_after}")
            out(cpu_note(m))
            if r.timed_out:
                out(f"  ! some {clients}-client loops did not finish in time and were cancelled")
    if len(report.loads) > 1:
        out("  (SQLite: the embedded store; PG 1 daemon: the same load on the PostgreSQL server; "
            "PG 2 daemons: two daemons on one database, each with half the kiosks and windows)")

    measured = [*report.livez.values(), *(m for load in report.loads.values()
                                         for m in load.values())]
    busy = [m.cpu.other_pct for m in measured if m.cpu is not None and m.cpu.other_pct is not None]
    if busy and max(busy) > NOISY_PCT:
        out(f"  ! other processes used up to {max(busy):.0f}% of a core during the measurements: "
            "the machine was not idle, so these figures are low and noisy")

    shown = False
    for name, stats in _all_stats(report):
        for key, count in stats.errors.most_common():
            if not shown:
                out()
                out("Errors (every phase, warm-up included):")
                shown = True
            out(f"  {name}: {count} x {key}: {stats.error_samples.get(key, '')}")

    out()
    out("Aims")
    big = max(args.clients)
    for setup in SETUPS:
        m = report.loads.get(setup.key, {}).get(big)
        if m is None:
            continue
        r = m.result
        for route in ("issue", "call-next"):
            p99 = r.routes[route].summary(r.seconds)["p99_ms"]
            verdict = "met" if p99 < AIM_P99_MS and r.routes[route].latencies else "MISSED"
            out(f"  p99 {route:<9} at {big} clients, {setup.title + ':':<44} {p99:6.1f} ms   "
                f"(aim < {AIM_P99_MS:g} ms)   {verdict}")
    if report.loads:
        out(f"    (closed loop: mean latency = clients / req/s, so a p99 under {AIM_P99_MS:g} ms at "
            f"{big} clients needs well over {big / AIM_P99_MS * 1000:,.0f} req/s)")
    for clients in sorted(report.load):
        if clients not in report.livez:
            continue
        ops = _ops(report.load[clients])
        lz = report.livez[clients].result
        livez_rps = len(lz.routes["livez"].latencies) / lz.seconds
        ratio = ops / livez_rps if livez_rps else 0.0
        aim = f"(aim >= {AIM_RATIO:g})   {'met' if ratio >= AIM_RATIO else 'MISSED'}" \
            if clients == big else "(for reference)"
        out(f"  (issue + call-next) / livez rps at {clients} clients, SQLite: "
            f"{ops:,.0f} / {livez_rps:,.0f} = {ratio:.2f}   {aim}")
    if big in report.load and c is not None and c.rate:
        ops = _ops(report.load[big])
        out(f"  store: {ops:,.0f} durable operations/s at {big} clients = "
            f"{ops / c.rate:.2f} x SQLite's one-commit-per-operation ceiling ({c.rate:,.0f}/s)")
        g = report.ceilings.get(big)
        if g is not None and g.row_rate:
            out(f"         = {ops / g.row_rate:.2f} x the group-commit ceiling at {big} clients "
                f"({g.row_rate:,.0f} rows/s, {big} a commit)")
    if pg is not None:
        for setup in (PG_ONE, PG_TWO):
            m = report.loads.get(setup.key, {}).get(big)
            if m is None:
                continue
            ops = _ops(m)
            text = f"  {setup.title}: {ops:,.0f} durable operations/s at {big} clients"
            if pg.ceiling is not None and pg.ceiling.rate:
                text += (f" = {ops / pg.ceiling.rate:.2f} x one connection's commits "
                         f"({pg.ceiling.rate:,.0f}/s)")
            g = pg.ceilings.get(big)
            if g is not None and g.rate:
                text += f", {ops / g.rate:.2f} x {big} connections' ({g.rate:,.0f}/s)"
            out(text)


def _ops(m: Measured) -> float:
    """Issues and calls answered a second."""
    r = m.result
    return sum(len(r.routes[n].latencies) for n in ("issue", "call-next")) / r.seconds


def _all_stats(report: Report):
    for clients, m in report.livez.items():
        yield f"livez {clients}", m.result.routes["livez"]
    for stats in report.preissue:
        yield "pre-issue", stats
    for setup in SETUPS:
        for clients, m in report.loads.get(setup.key, {}).items():
            for name, stats in m.result.routes.items():
                yield f"{setup.short}: {name} {clients}", stats


# -- the daemons and the server -----------------------------------------------------------------

class StartFailed(Exception):
    """A daemon or the PostgreSQL server did not start; says which and why."""


def start_daemon(label: str, folder: Path, write: Callable[[int], Path]) -> Daemon:
    """A daemon on the hall `write(port)` writes into `folder`, up; another port when
    another program took the free one first."""
    for attempt in range(3):
        port = free_port()
        daemon = Daemon(write(port), port, folder / "daemon.log")
        log(f"{label}: hall in {folder}; starting: {' '.join(daemon.command)}")
        try:
            daemon.start()
            return daemon
        except RuntimeError as exc:
            daemon.kill()
            tail = daemon.log_tail()
            if "address already in use" in tail.lower() and attempt < 2:
                log(f"port {port} was taken; trying another")
                continue
            if tail:
                log(f"{label} output:\n" + tail)
            raise StartFailed(f"{label} did not start: {exc}") from None
    raise AssertionError("unreachable")


def stop_daemon(label: str, daemon: Daemon, failures: list[str]) -> None:
    """SIGTERM; what went wrong (it had exited, or did not stop cleanly) into `failures`."""
    if daemon.proc is None:
        return
    crashed = daemon.proc.poll()
    code, took = daemon.stop(15.0)
    if crashed is not None:
        failures.append(f"{label} exited by itself during the run (code {crashed})")
    elif code is None:
        failures.append(f"{label} did not exit within 15 s of SIGTERM (killed)")
    elif code != 0:
        failures.append(f"{label} exited with {code} after SIGTERM")
    else:
        log(f"{label} stopped cleanly on SIGTERM in {took:.1f} s")


def run_sqlite(runner: asyncio.Runner, args: argparse.Namespace, report: Report, tmp: Path,
               ran: list[tuple[str, Daemon]], failures: list[str]) -> None:
    started = time.monotonic()
    label = "SQLite daemon"
    daemon = start_daemon(label, tmp, lambda port: write_hall(tmp, port))
    ran.append((label, daemon))
    try:
        data_dir = tmp / "var"
        if data_dir.exists() and os.stat(data_dir).st_dev != os.stat(tmp).st_dev:
            log(f"warning: {data_dir} is not on the same filesystem as {tmp}")
        log(f"daemon up (pid {daemon.pid}) after {time.monotonic() - started:.1f} s; "
            f"measuring SQLite durable commits for {args.commit_seconds:g} s")
        report.ceiling = durable_commit_rate(tmp, args.commit_seconds)
        for clients in args.clients:
            report.ceilings[clients] = durable_commit_rate(tmp, args.commit_seconds, rows=clients)
        runner.run(bench(SQLITE, [daemon], args, report))
    finally:
        stop_daemon(label, daemon, failures)


def run_postgres(runner: asyncio.Runner, setups: list[Setup], args: argparse.Namespace,
                 report: Report, tmp: Path, ran: list[tuple[str, Daemon]],
                 failures: list[str]) -> None:
    """The PostgreSQL runs on one throwaway server, a new database for each."""
    try:
        server = PgServer(fsync=True)
        server.start()
    except RuntimeError as exc:
        raise StartFailed(f"the PostgreSQL server did not start: {exc}") from None
    try:
        pg = report.postgres = Postgres(pg_settings(server.url()), server.root)
        log(f"PostgreSQL {pg.settings['server_version']} up in {server.root}; measuring its "
            f"durable commits for {args.commit_seconds:g} s")
        ceiling_url = server.create_database("ceiling")
        pg.ceiling = pg_commit_rate(ceiling_url, args.commit_seconds)
        for clients in args.clients:
            pg.ceilings[clients] = concurrent_commit_rate(server, ceiling_url,
                                                          args.commit_seconds, clients)
        for setup in setups:
            url = server.create_database(setup.key)
            daemons: list[tuple[str, Daemon]] = []
            try:
                for name in setup.instances:
                    folder = tmp / f"pg-{setup.key}-{name}"
                    label = (f"PostgreSQL daemon {name}"
                             + (f" (of {setup.daemons})" if setup.daemons > 1 else ""))
                    daemons.append((label, start_daemon(
                        label, folder, lambda port, folder=folder, name=name: write_hall(
                            folder, port, url, name, setup.instances))))
                    ran.append(daemons[-1])
                runner.run(bench(setup, [d for _, d in daemons], args, report,
                                 lambda: server_cpu_seconds(server)))
            finally:
                for label, daemon in daemons:
                    stop_daemon(label, daemon, failures)
            if failures:
                break
    finally:
        try:                                         # kept with the temp dir on failure
            shutil.copyfile(server.root / "server.log", tmp / "postgres.log")
        except OSError:
            pass
        server.destroy()


# -- main ---------------------------------------------------------------------------------------

def _event_loop_factory():
    try:
        import uvloop
    except ImportError:
        return None, "asyncio"
    return uvloop.new_event_loop, "uvloop"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=float, default=1.5, help="uncounted seconds first")
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32],
                        help="concurrencies to run (even, at most %d)" % (2 * WINDOW_COUNT))
    parser.add_argument("--backlog", type=int, default=3000,
                        help="waiting tickets to have before each issue+call scenario")
    parser.add_argument("--commit-seconds", type=float, default=3.0,
                        help="how long to measure SQLite's and PostgreSQL's durable commits")
    parser.add_argument("--stores", nargs="+", choices=list(STORE_CHOICES),
                        default=list(STORE_CHOICES),
                        help="the runs: sqlite, postgres (1 daemon), postgres2 (2 daemons "
                             "sharing the database); default: all three")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (always kept "
                        "on failure)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file "
                        "(and, in a make bench run, to its results: bench_results.py)")
    args = parser.parse_args(argv)
    for n in args.clients:
        if not 2 <= n <= 2 * WINDOW_COUNT:
            parser.error(f"--clients {n}: between 2 and {2 * WINDOW_COUNT}")
    if not (0 < args.duration <= 120 and 0 <= args.warmup <= 30):
        parser.error("--duration must be in (0, 120] and --warmup in [0, 30]")
    return args


def to_json(report: Report) -> dict:
    def scen(m: Measured) -> dict:
        return {
            "clients": m.result.clients, "seconds": m.result.seconds,
            "routes": {n: {**s.summary(m.result.seconds), "count": len(s.latencies),
                           "errors": {str(k): v for k, v in s.errors.items()},
                           "statuses": {str(k): v for k, v in s.statuses.items()}}
                       for n, s in m.result.routes.items()},
            "cpu": m.cpu.__dict__ if m.cpu else None,
            "waiting_before": m.waiting_before, "waiting_after": m.waiting_after,
        }

    def ceiling(c: CommitCeiling | None) -> dict | None:
        return None if c is None else {"rate": c.rate, "p50_ms": c.p50_ms, "p99_ms": c.p99_ms,
                                       "seconds": c.seconds}

    pg = report.postgres
    postgres: dict = {"skipped": report.postgres_skipped}
    if pg is not None:
        postgres.update({
            "server": pg.settings, "durable": durable(pg.settings),
            "durable_commits": ceiling(pg.ceiling),
            "concurrent_commits": {str(n): None if g is None else g.as_dict()
                                   for n, g in pg.ceilings.items()},
            **{setup.key: {str(k): scen(m) for k, m in report.loads.get(setup.key, {}).items()}
               for setup in (PG_ONE, PG_TWO) if setup.key in report.loads},
        })
    return {
        "sqlite_durable_commits": ceiling(report.ceiling),
        "durable_commit_ceilings": {str(n): g.as_dict() for n, g in report.ceilings.items()},
        "livez": {str(k): scen(m) for k, m in report.livez.items()},
        "issue_call": {str(k): scen(m) for k, m in report.load.items()},
        "postgres": postgres,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    factory, args.loop_name = _event_loop_factory()
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="kioskd-bench-"))
    report = Report()
    failures: list[str] = []
    ran: list[tuple[str, Daemon]] = []          # every daemon started: (label, daemon)
    setups = [STORE_CHOICES[name] for name in args.stores]
    postgres = [s for s in setups if s is not SQLITE]
    report.postgres_skipped = None if postgres else "not chosen (--stores)"

    with asyncio.Runner(loop_factory=factory) as runner:
        try:
            if SQLITE in setups:
                run_sqlite(runner, args, report, tmp, ran, failures)
            if postgres and not failures:
                report.postgres_skipped = pg_missing()
                if report.postgres_skipped:
                    log(f"PostgreSQL runs skipped: {report.postgres_skipped}")
                else:
                    run_postgres(runner, postgres, args, report, tmp, ran, failures)
        except KeyboardInterrupt:
            failures.append("interrupted")
        except StartFailed as exc:
            failures.append(str(exc))
        except Exception:     # a fault of the benchmark itself: say so, still stop the daemons
            traceback.print_exc()
            failures.append("the benchmark itself failed (traceback above)")
    if failures:
        for label, daemon in ran:
            tail = daemon.log_tail()
            if tail:
                log(f"{label} output (last lines):\n" + tail)

    if report.livez or report.loads:
        print_report(report, args, ran, tmp)
    for name, stats in _all_stats(report):
        if stats.server_errors:
            failures.append(f"{name}: {stats.server_errors} answers were 5xx")
    for label, daemon in ran:
        warnings = [line for line in daemon.log_tail(100_000).splitlines()
                    if any(f" {level} " in line for level in ("WARNING", "ERROR", "CRITICAL"))]
        if warnings:
            print()
            print(f"{label}'s warnings and errors ({len(warnings)}; the last 10 of "
                  f"{daemon.log_path}):")
            print("\n".join("  " + line for line in warnings[-10:]))
    if args.json:
        args.json.write_text(json.dumps(to_json(report), indent=2))
    if not failures:
        record("run", to_json(report))
    print()
    print(f"Total time {time.monotonic() - started:.0f} s. "
          + ("OK" if not failures else "FAILED: " + "; ".join(failures)))
    if failures or args.keep:
        print(f"Temp dir kept: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
