"""What the disk allows: durable one-row SQLite commits per second, configured as kioskd does."""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from bench_stats import percentile


@dataclass
class CommitCeiling:
    commits: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.commits / self.seconds if self.seconds else 0.0


def durable_commit_rate(directory: Path, seconds: float = 3.0,
                        max_commits: int = 1_000_000) -> CommitCeiling:
    """One INSERT per BEGIN IMMEDIATE/COMMIT, WAL + synchronous=FULL, for `seconds`."""
    path = directory / "ceiling.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, at REAL NOT NULL, data TEXT)")
        payload = "x" * 200     # about the size of a ticket row
        latencies: list[float] = []
        started = time.perf_counter()
        end = started + seconds
        now = started
        while now < end and len(latencies) < max_commits:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO rows (at, data) VALUES (?, ?)", (now, payload))
            conn.execute("COMMIT")
            after = time.perf_counter()
            latencies.append(after - now)
            now = after
        elapsed = now - started
    finally:
        conn.close()
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(str(path) + suffix)
        except FileNotFoundError:
            pass
    latencies.sort()
    return CommitCeiling(len(latencies), elapsed, percentile(latencies, 50) * 1e3,
                         percentile(latencies, 99) * 1e3)
