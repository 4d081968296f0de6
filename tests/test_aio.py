"""Timed waits (kioskd/aio.py): a cancellation is never lost, a time limit still holds."""

from __future__ import annotations

import asyncio

import pytest

from kioskd.aio import within


async def test_a_cancellation_that_comes_as_the_wait_ends_is_not_lost():
    # A device's worker finishes a write just as the daemon stops the board's feed:
    # Python 3.11's wait_for returned the write's result here and the feed ran on.
    done = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(within(done, 10))
    await asyncio.sleep(0)                     # the task is waiting on `done`
    done.set_result("written")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_the_result_comes_back_and_a_late_one_times_out():
    done = asyncio.get_running_loop().create_future()
    done.set_result(42)
    assert await within(done, 1) == 42
    never = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        await within(never, 0.05)
    assert never.cancelled()                   # what was waited for is not left running
