#!/usr/bin/env python3
"""The hall's benchmark table: one row per figure, every figure from one run's results.

    .venv/bin/python benchmarks/table.py [FOLDER]      (make bench prints it last)

Reads the folder a `make bench` run wrote (suite.py: machine.json, status.json and
one JSON per benchmark, bench_results.py); without FOLDER, the newest under
artifacts/bench/. Prints a Markdown table — the measure, this run's figure, the
same on a PostgreSQL store with one daemon and with two sharing it (the issue and
call rows, run.py), and what it is held against (the do-nothing route, the disk's
durable-commit ceiling, the wire time, the interpreter alone, an aim) — under a
line naming the machine.
A row whose benchmark failed, did not run, or recorded no such figure says so:
it never shows another run's numbers.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_daemon import REPO
from bench_results import read

RESULTS_ROOT = REPO / "artifacts" / "bench"


# -- formatting ---------------------------------------------------------------------------------

def ms(value: float) -> str:
    """A time given in milliseconds, to three figures or so."""
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def pp(f: dict, high: str = "p99") -> str:
    """A latency's p50 and p99 (or `high`: p90 for the few-sample statistics), in ms."""
    return f"p50 {ms(f['p50_ms'])} · {high} {ms(f[high + '_ms'])}"


def rate(value: float) -> str:
    return f"{value:,.0f}/s"


def mib(kib: float) -> str:
    return f"{kib / 1024:.0f} MiB"


def ratio(part: float, whole: float) -> str:
    return f"{part / whole:.2f}×" if whole else "—"


# -- the rows -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One line of the table. `label` may name figures ({displays}); `defaults`
    fill them when the benchmark left none. `figure` and `against` format the
    benchmark's figures; a KeyError or TypeError in them means a missing figure.
    `postgres` and `postgres_2` format the same measure on a PostgreSQL store, one
    daemon and two sharing it (None: a measure with no such run)."""

    benchmark: str
    label: str
    figure: Callable[[dict], str]
    against: Callable[[dict], str]
    defaults: dict[str, Any] = field(default_factory=dict)
    postgres: Callable[[dict], str] | None = None
    postgres_2: Callable[[dict], str] | None = None


class NotRun(Exception):
    """A run the benchmark skipped, saying why (PostgreSQL's server not installed)."""


def _postgres(f: dict) -> dict:
    """run.py's PostgreSQL figures; NotRun when it skipped them."""
    pg = f["postgres"]
    if pg.get("skipped"):
        raise NotRun(pg["skipped"])
    return pg


def _cpu(scenario: dict) -> str:
    """The daemons' CPU (two daemons: the sum) and the PostgreSQL server's, if measured."""
    cpu = scenario.get("cpu")
    if not cpu:
        return ""
    used = [f"{'daemons' if cpu.get('daemons', 1) > 1 else 'daemon'} {cpu['daemon_pct']:.0f}%"]
    if cpu.get("server_pct") is not None:
        used.append(f"PostgreSQL {cpu['server_pct']:.0f}%")
    return " · CPU " + ", ".join(used)


def _load(n: int) -> list[Row]:
    """issue, call-next and their throughput at `n` clients (run.py), on SQLite and,
    in their own columns, on PostgreSQL with one daemon and with two."""
    def sqlite(f: dict) -> dict:
        return f["issue_call"][str(n)]

    def one_daemon(f: dict) -> dict:
        return _postgres(f)["one_daemon"][str(n)]

    def two_daemons(f: dict) -> dict:
        return _postgres(f)["two_daemons"][str(n)]

    def latency(name: str, scenario: Callable[[dict], dict]) -> Callable[[dict], str]:
        def cell(f: dict) -> str:
            figures = scenario(f)["routes"][name]
            return f"{pp(figures)} · {rate(figures['rps'])}"
        return cell

    def rps(scenario: dict) -> float:
        return scenario["routes"]["issue"]["rps"] + scenario["routes"]["call-next"]["rps"]

    def throughput(scenario: Callable[[dict], dict]) -> Callable[[dict], str]:
        return lambda f: rate(rps(scenario(f))) + _cpu(scenario(f))

    def livez(f: dict) -> dict:
        return f["livez"][str(n)]["routes"]["livez"]

    def ceilings(f: dict) -> str:
        commits = f["durable_commit_ceilings"][str(n)]["rows_per_s"]
        done = rps(sqlite(f))
        text = (f"GET /livez (does nothing): {rate(livez(f)['rps'])} "
                f"({ratio(done, livez(f)['rps'])}); durable commits, {n} rows a "
                f"commit: {rate(commits)} ({ratio(done, commits)})")
        pg = f.get("postgres") or {}
        at_once = (pg.get("concurrent_commits") or {}).get(str(n))
        if not pg.get("skipped") and at_once:
            text += (f"; PostgreSQL durable commits, {n} connections at once: "
                     f"{rate(at_once['commits_per_s'])}")
        return text

    livez_latency = (lambda f: f"GET /livez (does nothing), {n} clients: {pp(livez(f))}")
    return [
        Row("run", f"issue, {n} clients ({n // 2} issuing)",
            latency("issue", sqlite), livez_latency,
            postgres=latency("issue", one_daemon), postgres_2=latency("issue", two_daemons)),
        Row("run", f"call-next, {n} clients ({n - n // 2} calling)",
            latency("call-next", sqlite), livez_latency,
            postgres=latency("call-next", one_daemon),
            postgres_2=latency("call-next", two_daemons)),
        Row("run", f"issue + call-next throughput, {n} clients (CPU: % of one core)",
            throughput(sqlite), ceilings,
            postgres=throughput(one_daemon), postgres_2=throughput(two_daemons)),
    ]


def _first_start(f: dict) -> str:
    return f"first start, new store: {ms(f['big']['first_healthz_s'] * 1000)}"


def _started(hall: dict) -> str:
    ready = hall["ready_median_s"]
    return (f"median {ms(hall['healthz_median_s'] * 1000)} "
            f"({'no READY=1' if ready is None else ms(ready * 1000)})")


ROWS: list[Row] = [
    *_load(8),
    *_load(32),
    Row("printing", "issue → last byte at the printer (emulated, loopback TCP)",
        lambda f: pp(f["to_paper"]),
        lambda f: f"the issue answered, no printing: {pp(f['answered_plain'])}"),
    Row("boards", "call → board frame on the wire, one call (Modbus, {baud} baud)",
        lambda f: pp(f["single"]),
        lambda f: f"wire time of the frame: {ms(f['single_floor']['p50_ms'])}",
        {"baud": 9600}),
    Row("boards", "call → board frame on the wire, {windows} windows at once, {buses} buses",
        lambda f: pp(f["burst"]),
        lambda f: f"wire time, each bus busy back to back: {pp(f['burst_floor'])}",
        {"windows": 100, "buses": 4}),
    Row("keypads", "keypad press → number on its display (RS-485, 9600 baud)",
        lambda f: pp(f["single"]),
        lambda f: f"wire time of the answer: {ms(f['single_floor_ms'])}"),
    Row("voice", "call → voice playback starts, warm (WAV made ahead)",
        lambda f: pp(f["warm"]),
        lambda f: f"aim: p99 < {ms(f['aim_warm_p99_ms'])}"),
    Row("voice", "call → voice playback starts, cold (synthesised on the call)",
        lambda f: pp(f["cold"]),
        lambda f: f"warm: {pp(f['warm'])} (the difference is synthesis)"),
    Row("fanout", "call → ticket.called at the last of {displays} displays (event streams)",
        lambda f: pp(f["last"]),
        lambda f: f"1 display: {pp(f['one_display'])}; clients' CPU "
                  f"{ms(f['client_cpu_per_call_ms'])} a call",
        {"displays": 500}),
    Row("fanout", "call-next answered, {displays} displays listening",
        lambda f: pp(f["answer"]),
        lambda f: f"first display has the call: {pp(f['first'])}",
        {"displays": 500}),
    Row("stats_year", "statistics, a past day ({tickets:,} tickets over {days} days stored)",
        lambda f: pp(f["past_day"], "p90"),
        lambda f: f"aim: < {ms(f['aim_day_ms'])}",
        {"tickets": 3_000_000, "days": 365}),
    Row("stats_year", "statistics, today (live)",
        lambda f: pp(f["today"], "p90"),
        lambda f: f"aim: < {ms(f['aim_day_ms'])}"),
    Row("stats_year", "statistics, the year ({days} days)",
        lambda f: pp(f["year"], "p90"),
        lambda f: f"aim: < {ms(f['aim_year_s'] * 1000)}; cold, every day computed once: "
                  f"{ms(f['year_cold_s'] * 1000)}",
        {"days": 365}),
    Row("history", "call-next, {history:,} past tickets stored (queue engine)",
        lambda f: pp(f["year_call-next"]),
        lambda f: f"a new store: {pp(f['day_one_call-next'])}",
        {"history": 3_000_000}),
    Row("backup", "call-next during the daily backup copy ({history:,} tickets)",
        lambda f: pp(f["during_call-next"]),
        lambda f: f"no copy running: {pp(f['quiet_call-next'])}; the copy "
                  f"{f['copy_mb']:.0f} MB in {f['copy_s']:.1f} s",
        {"history": 1_000_000}),
    Row("alerts_check", "early-warning check, {windows} windows, {waiting} waiting",
        lambda f: f"median {ms(f['in_transaction_ms'])} on the loop",
        lambda f: f"aim: < {ms(f['aim_ms'])}",
        {"windows": 150, "waiting": 500}),
    Row("startup", "start-up, exec → /healthz (READY=1), demo hall",
        lambda f: _started(f["demo"]),
        lambda f: f"the interpreter importing kioskd: {ms(f['imports_s'] * 1000)}"),
    Row("startup", "start-up, exec → /healthz (READY=1), {windows} windows",
        lambda f: _started(f["big"]),
        _first_start, {"windows": 150}),
    Row("memory", "resident memory, {windows} windows, after start",
        lambda f: f"VmRSS {mib(f['start_rss_kib'])} · VmHWM {mib(f['start_hwm_kib'])}",
        lambda f: f"the interpreter with kioskd imported: {mib(f['imports_rss_kib'])}",
        {"windows": 150}),
    Row("memory", "resident memory, {windows} windows, after load",
        lambda f: f"VmRSS {mib(f['load_rss_kib'])} · VmHWM {mib(f['load_hwm_kib'])}",
        lambda f: f"{f['answered']:,} issues/calls in {f['load_seconds']:g} s, "
                  f"{f['streams']} event streams",
        {"windows": 150}),
]


# -- the machine --------------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _filesystem(path: Path) -> str:
    """The type of the filesystem `path` is on, from /proc/mounts."""
    best, kind = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def machine() -> dict[str, Any]:
    """This machine, as the table's header names it."""
    import tempfile
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "ram_gib": _ram_gib(),
            "kernel": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "tmp_fs": _filesystem(Path(tempfile.gettempdir()).resolve()),
            "repo_fs": _filesystem(REPO),
            "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "date": time.strftime("%Y-%m-%d %H:%M %Z")}


def machine_line(m: dict[str, Any]) -> str:
    ram = f"{m['ram_gib']:.0f} GiB RAM" if m.get("ram_gib") else "RAM ?"
    load = f"; load {m['load']:.2f} at the start" if m.get("load") is not None else ""
    return (f"{m['cpu']}, {m['cores']} cores, {ram}, {m['kernel']}, Python {m['python']}, "
            f"SQLite {m['sqlite']}; temp on {m['tmp_fs']}, checkout on {m['repo_fs']}{load}")


# -- the table ----------------------------------------------------------------------------------

def cells(row: Row, figures: dict | None,
          status: dict | None) -> tuple[str, str, str, str, str]:
    """The row's cells: measure, this run, PostgreSQL, PostgreSQL with 2 daemons, against."""
    label, figure, against = _cells(row, figures, status)
    if figure.startswith(("**FAILED**", "not run")):     # said once, in the first column
        return label, figure, "", "", against
    return label, figure, _column(row.postgres, figures), _column(row.postgres_2, figures), \
        against


def _column(format_: Callable[[dict], str] | None, figures: dict | None) -> str:
    if format_ is None or figures is None:
        return ""
    try:
        return format_(figures)
    except NotRun:
        return "not run"                                  # why: above the table
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        return f"**FAILED** (figure missing: {exc})"


def _cells(row: Row, figures: dict | None, status: dict | None) -> tuple[str, str, str]:
    label_values = {**row.defaults, **(figures or {})}
    try:
        label = row.label.format_map(label_values)
    except (KeyError, ValueError, IndexError):
        label = row.label.format_map(row.defaults)
    script = f"{row.benchmark}.py"
    if status is not None and status.get("exit") != 0:
        how = status.get("exit")
        why = {"timeout": "timed out", "interrupted": "interrupted"}.get(how, f"exit {how}")
        return label, f"**FAILED** ({script}: {why})", ""
    if figures is None:
        return label, ("**FAILED** (no figures recorded)" if status is not None
                       else f"not run ({script})"), ""
    try:
        return label, row.figure(figures), row.against(figures)
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        return label, f"**FAILED** (figure missing: {exc})", ""


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def render(where: Path) -> str:
    """The table of the run in `where`, Markdown."""
    try:
        m = json.loads((where / "machine.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        m = machine()
    try:
        statuses = json.loads((where / "status.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        statuses = {}
    cache: dict[str, dict | None] = {}
    lines = [f"kioskd benchmarks, {m.get('date', '?')}"
             + (" — QUICK MODE: small runs that check the wiring; not figures to quote"
                if m.get("quick") else ""),
             "",
             f"Machine: {machine_line(m)}",
             ""]
    postgres = postgres_line(read(where, "run"))
    if postgres:
        lines += [postgres, ""]
    lines += ["| measure | this run (SQLite) | PostgreSQL, 1 daemon | PostgreSQL, 2 daemons "
              "| against |",
              "|---|---|---|---|---|"]
    for row in ROWS:
        if row.benchmark not in cache:
            cache[row.benchmark] = read(where, row.benchmark)
        line = cells(row, cache[row.benchmark], statuses.get(row.benchmark))
        lines.append("| " + " | ".join(_escape(cell) for cell in line) + " |")
    return "\n".join(lines)


def postgres_line(run: dict | None) -> str:
    """What the PostgreSQL columns ran on, from run.py's figures ("" when none)."""
    pg = (run or {}).get("postgres")
    if not pg:
        return ""
    if pg.get("skipped"):
        return f"PostgreSQL columns: not run: {pg['skipped']}"
    server = pg.get("server") or {}
    version = server.get("server_version", "?").split(" ")[0]
    settings = ", ".join(f"{k} {server[k]}" for k in ("fsync", "synchronous_commit")
                         if k in server)
    return (f"PostgreSQL columns: the same load on a throwaway PostgreSQL {version} server on "
            f"this machine ({settings}: "
            + ("durable, like SQLite's synchronous=FULL" if pg.get("durable") else "NOT durable")
            + "), a database of its own for one daemon, then for two daemons sharing it, "
            "each with half the kiosks and half the windows")


def newest(root: Path = RESULTS_ROOT) -> Path | None:
    runs = sorted(p for p in root.glob("*") if p.is_dir()) if root.exists() else []
    return runs[-1] if runs else None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    where = Path(args[0]) if args else newest()
    if where is None:
        print(f"no results: run `make bench` first (results go to {RESULTS_ROOT})",
              file=sys.stderr)
        return 2
    if not where.is_dir():
        print(f"{where}: no such folder", file=sys.stderr)
        return 2
    print(render(where))
    return 0


if __name__ == "__main__":
    sys.exit(main())
