"""The one way the daemon waits with a time limit.

Python 3.11's `asyncio.wait_for` loses a cancellation that arrives just as
the awaited future finishes: it returns the result, and the cancelled task
runs on. A board's feed stopped that way kept waiting for work that never
came, and the daemon's shutdown waited for it forever. `asyncio.timeout`
has no such gap, so every timed wait goes through `within`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """`await awaitable`, or TimeoutError after `seconds`; a cancellation always propagates."""
    async with asyncio.timeout(seconds):
        return await awaitable
