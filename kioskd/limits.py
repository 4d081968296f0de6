"""How fast tickets may be taken: a stuck button or a prank must not flood the queue.

One token bucket per terminal and one per client address ([limits] in devices.toml):
a bucket holds `per_minute` tickets, so a family taking four numbers at once is never
refused, and refills at `per_minute` a minute. An issue takes one ticket from both
buckets or from neither, so a refused request costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .config import Limits

MAX_KEYS = 10_000       # buckets kept per kind; beyond it, full (idle) ones are let go


class _Buckets:
    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.levels: dict[str, tuple[float, float]] = {}    # key -> (tickets, at)

    def level(self, key: str, now: float) -> float:
        tickets, at = self.levels.get(key, (self.per_minute, now))
        # max(0, ...): a wall clock set back must not drain the bucket
        return min(self.per_minute, tickets + max(0.0, now - at) * self.per_minute / 60)

    def wait(self, key: str, now: float) -> float:
        """Seconds until `key` may take one ticket; 0 = now."""
        missing = 1 - self.level(key, now)
        return 0.0 if missing <= 0 else missing * 60 / self.per_minute

    def take(self, key: str, now: float) -> None:
        if len(self.levels) >= MAX_KEYS:
            self.levels = {k: v for k, v in self.levels.items()
                           if self.level(k, now) < self.per_minute}
        self.levels[key] = (self.level(key, now) - 1, now)


class TooManyTickets(Exception):
    """An issue refused by [limits]: answered 429 with `Retry-After`."""

    def __init__(self, detail: str, retry_after: int, limit: str):
        super().__init__(detail)
        self.retry_after = retry_after      # whole seconds, at least 1
        self.limit = limit                  # which bucket was empty: terminal, address
        self.first = True                   # the first refusal of its kind this minute


class IssueLimits:
    """The hall's [limits] on ticket issue, per terminal and per client address."""

    def __init__(self, limits: Limits, clock: Callable[[], float]):
        self.clock = clock
        self.terminals = _Buckets(limits.issue_per_terminal) if limits.issue_per_terminal else None
        self.addresses = _Buckets(limits.issue_per_address) if limits.issue_per_address else None
        self.told: dict[tuple[str, str], float] = {}   # (limit, key) -> when its refusal was logged

    def take(self, terminal: str | None, address: str | None) -> None:
        """One issue's share of both buckets, or TooManyTickets and nothing taken."""
        now = self.clock()
        held = [(buckets, key, limit) for buckets, key, limit in (
            (self.terminals, terminal, "terminal"), (self.addresses, address, "address"))
            if buckets is not None and key is not None]
        waits = [(buckets.wait(key, now), buckets, key, limit) for buckets, key, limit in held]
        wait, buckets, key, limit = max(waits, default=(0.0, None, None, ""), key=lambda w: w[0])
        if wait > 0:
            seconds = max(1, math.ceil(wait - 1e-6))     # 5.0000000001 s is 5 s
            refusal = TooManyTickets(f"too many tickets from {limit} {key}: at most "
                                     f"{buckets.per_minute} a minute; try again in {seconds} s",
                                     seconds, limit)
            refusal.first = now - self.told.get((limit, key), -math.inf) >= 60
            if refusal.first:
                if len(self.told) >= MAX_KEYS:
                    self.told.clear()
                self.told[(limit, key)] = now
            raise refusal
        for buckets, key, _ in held:
            buckets.take(key, now)
