"""The load benchmark's PostgreSQL: a throwaway server, what it allows, what it costs.

The server is the tests' (tests/pgserver.py: initdb in a temporary folder, a loopback
port, under root run as `postgres`), with fsync on and PostgreSQL's default
synchronous_commit = on: a commit is answered once its WAL is on disk, as durable as
SQLite's synchronous=FULL. Its ceilings on the same disk: one connection committing
one-row INSERTs back to back (the SQLite ceiling's counterpart), and, with pgbench,
N connections doing so at once, which PostgreSQL's WAL flush groups: the most
N clients get from this server, each operation its own transaction.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench_daemon import CLK_TCK, REPO, _children
from bench_sqlite import CommitCeiling
from bench_stats import percentile

if str(REPO / "tests") not in sys.path:
    sys.path.append(str(REPO / "tests"))

from pgserver import PgServer, bindir  # noqa: E402  (tests/pgserver.py)

# What makes the server's commits durable, shown with the figures.
SETTINGS = ("server_version", "fsync", "synchronous_commit", "wal_sync_method",
            "full_page_writes")
PAYLOAD = "x" * 200          # about the size of a ticket row, as in bench_sqlite


def missing() -> str | None:
    """None when the server's programs are here; else why the PostgreSQL runs cannot be."""
    try:
        programs = bindir()
    except RuntimeError as exc:
        return str(exc)
    if not (programs / "initdb").exists():
        return f"PostgreSQL's server programs are not in {programs} (KIOSKD_TEST_PG_BINDIR)"
    return None


def settings(url: str) -> dict[str, str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in SETTINGS}


def _create_table(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS rows "
                     "(id bigserial PRIMARY KEY, at double precision NOT NULL, data text)")


def durable_commit_rate(url: str, seconds: float = 3.0,
                        max_commits: int = 1_000_000) -> CommitCeiling:
    """One connection, one INSERT a transaction (autocommit: one round trip), for `seconds`."""
    _create_table(url)
    with psycopg.connect(url, autocommit=True) as conn:
        latencies: list[float] = []
        started = time.perf_counter()
        end = started + seconds
        now = started
        while now < end and len(latencies) < max_commits:
            conn.execute("INSERT INTO rows (at, data) VALUES (%s, %s)", (now, PAYLOAD))
            after = time.perf_counter()
            latencies.append(after - now)
            now = after
        elapsed = now - started
    latencies.sort()
    return CommitCeiling(len(latencies), elapsed, percentile(latencies, 50) * 1e3,
                         percentile(latencies, 99) * 1e3)


@dataclass
class ConcurrentCommits:
    connections: int
    rate: float              # commits a second, all connections together
    latency_ms: float        # the mean time of one commit
    seconds: int

    def as_dict(self) -> dict:
        return {"connections": self.connections, "commits_per_s": self.rate,
                "mean_ms": self.latency_ms, "seconds": self.seconds}


def concurrent_commit_rate(server: PgServer, url: str, seconds: float,
                           connections: int) -> ConcurrentCommits | None:
    """`connections` pgbench clients each committing one-row INSERTs (autocommit) for
    `seconds` (whole, at least 1); None when pgbench is not installed."""
    pgbench = server.bin / "pgbench"
    if not pgbench.exists():
        return None
    _create_table(url)
    script = server.root / "insert.sql"           # where the server's user may read it
    script.write_text(f"INSERT INTO rows (at, data) VALUES (1.0, '{PAYLOAD}');\n")
    script.chmod(0o644)
    whole = max(1, round(seconds))
    command = [str(pgbench), "--no-vacuum", "--file", str(script),
               "--client", str(connections), "--jobs", str(min(connections, os.cpu_count() or 1)),
               "--time", str(whole), url]
    if os.geteuid() == 0:                          # as pgserver.py runs the server
        command = ["runuser", "-u", "postgres", "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=whole + 60)
    tps = re.search(r"^tps = ([\d.]+)", done.stdout, re.M)
    latency = re.search(r"^latency average = ([\d.]+) ms", done.stdout, re.M)
    if done.returncode != 0 or tps is None or latency is None:
        raise RuntimeError(f"pgbench failed ({done.returncode}): "
                           f"{done.stdout[-1000:]}{done.stderr[-1000:]}")
    return ConcurrentCommits(connections, float(tps.group(1)), float(latency.group(1)), whole)


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()     # after "pid (comm) "


def server_cpu_seconds(server: PgServer) -> float | None:
    """CPU seconds the server's processes used so far: the postmaster, every process
    below it (backends, WAL writer, checkpointer, ...) and those that ended (which the
    postmaster reaped); None when it is not running."""
    try:
        pid = int((server.data / "postmaster.pid").read_text().split()[0])
        fields = _stat_fields(pid)
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return None
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))   # utime stime cutime cstime
    for child in _children(pid):
        try:
            fields = _stat_fields(child)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue                                # a backend that just ended
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK
