"""What the disk allows: durable SQLite commits per second, configured as kioskd does.

One row a commit is what a store that commits each operation on its own can reach.
kioskd's store commits together what arrived while the last commit was on disk
(group commit), so with N clients each waiting for its own answer a commit carries
at most N operations: N rows a commit, back to back, is the most durable operations
per second N clients can get from this disk, whatever the software above it does.
"""

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
    rows: int = 1              # rows in each commit

    @property
    def rate(self) -> float:
        """Commits a second."""
        return self.commits / self.seconds if self.seconds else 0.0

    @property
    def row_rate(self) -> float:
        """Rows (operations) a second."""
        return self.rate * self.rows

    def as_dict(self) -> dict:
        return {"rows_per_commit": self.rows, "commits_per_s": self.rate,
                "rows_per_s": self.row_rate, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms,
                "seconds": self.seconds}


def durable_commit_rate(directory: Path, seconds: float = 3.0,
                        max_commits: int = 1_000_000, rows: int = 1) -> CommitCeiling:
    """`rows` INSERTs per BEGIN IMMEDIATE/COMMIT, WAL + synchronous=FULL, for `seconds`."""
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
            for _ in range(rows):
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
                         percentile(latencies, 99) * 1e3, rows)
