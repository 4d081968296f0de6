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
4. Prints requests/s, p50/p99 latency and errors per route, the daemon's CPU,
   and the project's aims: p99 of issue and call-next < 20 ms at 32 clients, and
   (issue + call-next rps) / (livez rps) >= 0.5 at the same concurrency.

Speed is reported, not asserted: the exit status is non-zero only when the
daemon did not start, answered a 5xx, or did not stop cleanly on SIGTERM.
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
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench_daemon import CpuSample, Daemon, free_port, machine_busy_seconds
from bench_hall import SERVICE_IDS, WINDOW_COUNT, write_hall
from bench_load import (CALL_NEXT, ISSUE, LIVEZ, RouteStats, ScenarioResult,
                        Worker, issue_many, run_scenario, session)
from bench_results import record
from bench_sqlite import CommitCeiling, durable_commit_rate

AIM_P99_MS = 20.0
AIM_RATIO = 0.5
NOISY_PCT = 15.0      # other processes using more than this % of a core: say so


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass
class CpuUse:
    daemon_pct: float = 0.0       # of one core
    loop_pct: float = 0.0         # the daemon's main thread: the event loop
    others_pct: float = 0.0       # every other thread: the store writer, to_thread workers
    client_pct: float = 0.0       # this process
    other_pct: float | None = None   # everything else on the machine: should be near 0


@dataclass
class Measured:
    result: ScenarioResult
    cpu: CpuUse | None = None
    waiting_before: int | None = None
    waiting_after: int | None = None


@dataclass
class Report:
    ceiling: CommitCeiling | None = None        # one row a commit
    ceilings: dict[int, CommitCeiling] = field(default_factory=dict)  # N clients: N rows a commit
    livez: dict[int, Measured] = field(default_factory=dict)
    load: dict[int, Measured] = field(default_factory=dict)
    preissue: list[RouteStats] = field(default_factory=list)


# -- the scenarios ------------------------------------------------------------------------------

def livez_workers(clients: int) -> list[Worker]:
    return [Worker(LIVEZ, lambda rng: ("/livez", None), seed=i) for i in range(clients)]


def hall_workers(clients: int) -> list[Worker]:
    """Half kiosks issuing random services, half windows "1".."k" calling the next ticket."""
    kiosks = clients // 2
    windows = clients - kiosks
    assert windows <= WINDOW_COUNT
    workers = [Worker(ISSUE, lambda rng: ("/api/v1/tickets", {"service": rng.choice(SERVICE_IDS)}),
                      seed=100 + i) for i in range(kiosks)]
    for number in range(1, windows + 1):
        path = f"/api/v1/windows/{number}/call-next"
        workers.append(Worker(CALL_NEXT, lambda rng, path=path: (path, None), seed=200 + number))
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


async def measure(daemon: Daemon, name: str, clients: int, workers: list[Worker],
                  warmup: float, duration: float) -> Measured:
    samples: dict[str, tuple[CpuSample | None, float, float, float | None]] = {}

    def on_window(edge: str) -> None:
        samples[edge] = (daemon.cpu(), time.process_time(), time.perf_counter(),
                         machine_busy_seconds())

    log(f"{name}: {clients} clients, {warmup:g} s warm-up + {duration:g} s measured")
    async with session(clients) as http:
        result = await run_scenario(http, daemon.base, name, workers, warmup, duration, on_window)
    cpu = None
    if "start" in samples and "end" in samples:
        (d0, c0, t0, m0), (d1, c1, t1, m1) = samples["start"], samples["end"]
        wall = t1 - t0
        if d0 is not None and d1 is not None and wall > 0:
            cpu = CpuUse(100 * (d1.total - d0.total) / wall, 100 * (d1.main - d0.main) / wall,
                         100 * (d1.others - d0.others) / wall, 100 * (c1 - c0) / wall)
            if m0 is not None and m1 is not None:
                cpu.other_pct = max(0.0, 100 * (m1 - m0) / wall - cpu.daemon_pct - cpu.client_pct)
    return Measured(result, cpu)


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


async def bench(daemon: Daemon, args: argparse.Namespace, report: Report) -> None:
    # Each concurrency's /livez ceiling runs just before its load, so that both see the
    # machine in the same state.
    for clients in args.clients:
        report.livez[clients] = await measure(daemon, "livez", clients, livez_workers(clients),
                                              args.warmup, args.duration)
        before = await top_up(daemon, args.backlog, report)
        measured = await measure(daemon, "issue+call", clients, hall_workers(clients),
                                 args.warmup, args.duration)
        measured.waiting_before = before
        measured.waiting_after = await waiting(daemon.base)
        report.load[clients] = measured


# -- printing -----------------------------------------------------------------------------------

def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                     for i, (c, w) in enumerate(zip(cells, widths))).rstrip()


def print_report(report: Report, args: argparse.Namespace, daemon: Daemon, tmp: Path) -> None:
    out = print
    out()
    out("kioskd benchmark")
    out(f"  machine: {os.cpu_count()} CPUs, {platform.platform(terse=True)}, "
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
        f"client loop {args.loop_name}")
    out(f"  daemon: pid {daemon.pid}, http://127.0.0.1:{daemon.port}, data in {tmp / 'var'}")
    out(f"  command: {' '.join(daemon.command)}")
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

    headers = ["scenario", "clients", "route", "req/s", "p50 ms", "p99 ms", "max ms", "errors",
               "notes"]
    widths = [11, 7, 16, 8, 7, 7, 7, 6, 0]
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
        return (f"{'':13}CPU, % of one core: daemon {m.cpu.daemon_pct:.0f} (event-loop thread "
                f"{m.cpu.loop_pct:.0f}, other threads {m.cpu.others_pct:.0f}), "
                f"client {m.cpu.client_pct:.0f}"
                + ("" if m.cpu.other_pct is None else f", other processes {m.cpu.other_pct:.0f}")
                + per_request)

    for clients, m in report.livez.items():
        stats = m.result.routes["livez"]
        line("livez", str(clients), "GET /livez", stats, m.result.seconds)
        out(cpu_note(m))
    for clients, m in report.load.items():
        r = m.result
        issue, call = r.routes["issue"], r.routes["call-next"]
        line("issue+call", str(clients), f"issue ({issue.clients})", issue, r.seconds)
        empty = call.statuses.get(204, 0)
        line("", "", f"call-next ({call.clients})", call, r.seconds,
             f"{empty} of {len(call.latencies)} answered 204 (nothing waiting)" if empty else "")
        both = RouteStats(ISSUE)
        both.latencies = issue.latencies + call.latencies
        both.errors = issue.errors + call.errors
        line("", "", "both", both, r.seconds,
             f"waiting {m.waiting_before} -> {m.waiting_after}")
        out(cpu_note(m))
        if r.timed_out:
            out(f"  ! some {clients}-client loops did not finish in time and were cancelled")

    busy = [m.cpu.other_pct for m in (*report.livez.values(), *report.load.values())
            if m.cpu is not None and m.cpu.other_pct is not None]
    if busy and max(busy) > NOISY_PCT:
        out(f"  ! other processes used up to {max(busy):.0f}% of a core during the measurements: "
            "the machine was not idle, so these figures are low and noisy")

    errors = [(name, s) for name, s in _all_stats(report)]
    shown = False
    for name, stats in errors:
        for key, count in stats.errors.most_common():
            if not shown:
                out()
                out("Errors (every phase, warm-up included):")
                shown = True
            out(f"  {name}: {count} x {key}: {stats.error_samples.get(key, '')}")

    out()
    out("Aims")
    big = max(report.load) if report.load else None
    if big is not None:
        r = report.load[big].result
        for route in ("issue", "call-next"):
            p99 = r.routes[route].summary(r.seconds)["p99_ms"]
            verdict = "met" if p99 < AIM_P99_MS and r.routes[route].latencies else "MISSED"
            out(f"  p99 {route:<9} at {big} clients: {p99:6.1f} ms   (aim < {AIM_P99_MS:g} ms)"
                f"   {verdict}")
    if big is not None:
        out(f"    (closed loop: mean latency = clients / req/s, so a p99 under {AIM_P99_MS:g} ms at "
            f"{big} clients needs well over {big / AIM_P99_MS * 1000:,.0f} req/s)")
    for clients in sorted(report.load):
        if clients not in report.livez:
            continue
        r = report.load[clients].result
        ops = sum(len(r.routes[n].latencies) for n in ("issue", "call-next")) / r.seconds
        lz = report.livez[clients].result
        livez_rps = len(lz.routes["livez"].latencies) / lz.seconds
        ratio = ops / livez_rps if livez_rps else 0.0
        aim = f"(aim >= {AIM_RATIO:g})   {'met' if ratio >= AIM_RATIO else 'MISSED'}" \
            if clients == big else "(for reference)"
        out(f"  (issue + call-next) / livez rps at {clients} clients: "
            f"{ops:,.0f} / {livez_rps:,.0f} = {ratio:.2f}   {aim}")
    if big is not None and c is not None and c.rate:
        r = report.load[big].result
        ops = sum(len(r.routes[n].latencies) for n in ("issue", "call-next")) / r.seconds
        out(f"  store: {ops:,.0f} durable operations/s at {big} clients = "
            f"{ops / c.rate:.2f} x the one-commit-per-operation ceiling ({c.rate:,.0f}/s)")
        g = report.ceilings.get(big)
        if g is not None and g.row_rate:
            out(f"         = {ops / g.row_rate:.2f} x the group-commit ceiling at {big} clients "
                f"({g.row_rate:,.0f} rows/s, {big} a commit)")


def _all_stats(report: Report):
    for clients, m in report.livez.items():
        yield f"livez {clients}", m.result.routes["livez"]
    for stats in report.preissue:
        yield "pre-issue", stats
    for clients, m in report.load.items():
        for name, stats in m.result.routes.items():
            yield f"{name} {clients}", stats


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
                        help="how long to measure SQLite durable commits")
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
    c = report.ceiling
    return {
        "sqlite_durable_commits": None if c is None else
        {"rate": c.rate, "p50_ms": c.p50_ms, "p99_ms": c.p99_ms, "seconds": c.seconds},
        "durable_commit_ceilings": {str(n): g.as_dict() for n, g in report.ceilings.items()},
        "livez": {str(k): scen(m) for k, m in report.livez.items()},
        "issue_call": {str(k): scen(m) for k, m in report.load.items()},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    factory, args.loop_name = _event_loop_factory()
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="kioskd-bench-"))
    report = Report()
    failures: list[str] = []

    daemon = None
    for attempt in range(3):     # another program may take the free port before the daemon does
        port = free_port()
        daemon = Daemon(write_hall(tmp, port), port, tmp / "daemon.log")
        log(f"hall in {tmp}; starting: {' '.join(daemon.command)}")
        try:
            daemon.start()
            break
        except RuntimeError as exc:
            daemon.kill()
            tail = daemon.log_tail()
            if "address already in use" in tail.lower() and attempt < 2:
                log(f"port {port} was taken; trying another")
                continue
            if tail:
                log("daemon output:\n" + tail)
            print(f"FAILED: the daemon did not start: {exc}. Temp dir kept: {tmp}")
            return 1
    assert daemon is not None
    try:
        data_dir = tmp / "var"
        if data_dir.exists() and os.stat(data_dir).st_dev != os.stat(tmp).st_dev:
            log(f"warning: {data_dir} is not on the same filesystem as {tmp}")
        log(f"daemon up (pid {daemon.pid}) after {time.monotonic() - started:.1f} s; "
            f"measuring SQLite durable commits for {args.commit_seconds:g} s")
        report.ceiling = durable_commit_rate(tmp, args.commit_seconds)
        for clients in args.clients:
            report.ceilings[clients] = durable_commit_rate(tmp, args.commit_seconds, rows=clients)
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(bench(daemon, args, report))
    except KeyboardInterrupt:
        failures.append("interrupted")
    except Exception:     # a fault of the benchmark itself: say so, still stop the daemon
        traceback.print_exc()
        failures.append("the benchmark itself failed (traceback above)")
    finally:
        if daemon.proc is not None:
            crashed = daemon.proc.poll()
            code, took = daemon.stop(15.0)
            if crashed is not None:
                failures.append(f"the daemon exited by itself during the run (code {crashed})")
            elif code is None:
                failures.append("the daemon did not exit within 15 s of SIGTERM (killed)")
            elif code != 0:
                failures.append(f"the daemon exited with {code} after SIGTERM")
            else:
                log(f"daemon stopped cleanly on SIGTERM in {took:.1f} s")
        if failures and daemon.proc is not None:
            tail = daemon.log_tail()
            if tail:
                log("daemon output (last lines):\n" + tail)

    if report.livez or report.load:
        print_report(report, args, daemon, tmp)
    for name, stats in _all_stats(report):
        if stats.server_errors:
            failures.append(f"{name}: {stats.server_errors} answers were 5xx")
    daemon_log = daemon.log_tail(10)
    if daemon_log.strip():
        print()
        print(f"Daemon log (warnings and errors, last 10 lines of {daemon.log_path}):")
        print("\n".join("  " + line for line in daemon_log.splitlines()))
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
