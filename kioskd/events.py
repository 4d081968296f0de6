"""The hall's one in-process event bus: SSE streams, boards, voice and pages read it.

Events are written to the store's event log in the same transaction as the
change they describe, so their ids increase with commit order and survive a
restart. The bus keeps the most recent ones in memory, so a display that was
offline for a few minutes gets what it missed from `since()` without touching
the disk; older gaps are read back from the store by the caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from .records import Event

if TYPE_CHECKING:
    from .config import Config
    from .devices import Supervisor
    from .queue import Queue

log = logging.getLogger("kioskd.events")

HISTORY = 20_000       # about half a busy hall's day of events
CALLS = ("ticket.called", "ticket.recalled")
SUBSCRIBER_BACKLOG = 2_000


class Subscription:
    """One reader's queue of live events. A reader that falls too far behind is
    dropped (`lagged` is set) rather than slowing the hall; it reconnects with
    its last id and gets the rest from history."""

    def __init__(self, backlog: int = SUBSCRIBER_BACKLOG):
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=backlog)
        self.lagged = False

    def _offer(self, event: Event) -> bool:
        try:
            self._queue.put_nowait(event)
            return True
        except asyncio.QueueFull:
            self.lagged = True
            return False

    def end(self) -> None:
        """End the subscription: its reader gets None (the oldest unread event gives
        way if the queue is full)."""
        while True:
            try:
                self._queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()

    async def get(self) -> Event | None:
        """The next event, or None once the subscription has ended."""
        return await self._queue.get()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while (event := await self.get()) is not None:
            yield event


class EventBus:
    """Publish committed events to live subscribers; remember recent ones."""

    def __init__(self, history: int = HISTORY):
        self._history: deque[Event] = deque(maxlen=history)
        self._subscribers: set[Subscription] = set()
        self._listeners: list[Callable[[list[Event]], None]] = []
        self.last_id = 0
        # each event's SSE message, encoded once for every stream that sends it
        # (api.events); an event never changes once committed
        self.rendered: dict[int, bytes] = {}

    def publish(self, events: Iterable[Event]) -> None:
        """Called on the event loop, in commit order."""
        fresh = []
        for event in events:
            if event.id <= self.last_id:
                continue
            fresh.append(event)
            self.last_id = event.id
            self._history.append(event)
            for sub in list(self._subscribers):
                if not sub._offer(event):
                    log.warning("events: a subscriber fell %d events behind; dropping it",
                                SUBSCRIBER_BACKLOG)
                    self._subscribers.discard(sub)
                    sub.end()
        if not fresh:
            return
        for listener in self._listeners:
            try:
                listener(fresh)
            except Exception:
                log.exception("events: a listener failed on events %d to %d", fresh[0].id,
                              fresh[-1].id)

    def listen(self, listener: Callable[[list[Event]], None]) -> None:
        """Call `listener(events)` on the loop with each commit's new events as they
        are published, before any subscriber reads them: for quick, non-blocking
        followers (the boards) that must not wait a turn of the loop behind a
        burst of requests, and that act once on all of a commit's events."""
        self._listeners.append(listener)

    def unlisten(self, listener: Callable[[list[Event]], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def remember(self, events: Iterable[Event]) -> None:
        """Seed history at start-up (from the store) without notifying anyone."""
        for event in events:
            if event.id > self.last_id:
                self._history.append(event)
                self.last_id = event.id

    def since(self, last_id: int) -> list[Event] | None:
        """Events after `last_id`, or None when history no longer reaches back that far."""
        if last_id >= self.last_id:
            return []
        if not self._history or self._history[0].id > last_id + 1:
            return None
        return [e for e in self._history if e.id > last_id]

    def recent(self, types: Iterable[str], limit: int, since_at: float = 0.0) -> list[Event]:
        """The last `limit` remembered events of `types` at or after `since_at`, newest first."""
        wanted = set(types)
        found: list[Event] = []
        for event in reversed(self._history):
            if event.at < since_at or len(found) >= limit:
                break
            if event.type in wanted:
                found.append(event)
        return found

    def latest_calls(self, since_at: float, limit: int, up_to: int | None = None) -> list[Event]:
        """The latest call or recall of each ticket at or after `since_at` (the start
        of the hall's day), newest first, at most `limit`; events after `up_to` are
        left out. What a hall display and a hall board show before live events."""
        found: list[Event] = []
        seen: set[str] = set()
        if limit <= 0:
            return found
        for event in self.recent(CALLS, 4 * limit + 16, since_at=since_at):
            ticket = event.data.get("ticket")
            if (up_to is not None and event.id > up_to) or ticket in seen \
                    or not event.data.get("window"):
                continue
            seen.add(ticket)
            found.append(event)
            if len(found) == limit:
                break
        return found

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        sub = self.join()
        try:
            yield sub
        finally:
            self.leave(sub)

    def join(self) -> Subscription:
        """A subscription receiving every event from now on, until `leave`."""
        sub = Subscription()
        self._subscribers.add(sub)
        return sub

    def leave(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def close(self) -> None:
        """End every subscription (shutdown): streams finish instead of hanging."""
        for sub in list(self._subscribers):
            sub.end()
        self._subscribers.clear()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)


class Follower:
    """A part of the daemon that drives devices from the hall's events (the
    boards, the voice): it hears each commit's events (`_heard`) and each
    device's (re)connection (`_connected`), and runs tasks of its own.
    `follow` starts the hearing; `stop` undoes all of it."""

    def __init__(self, config: Config, queue: Queue, bus: EventBus, devices: Supervisor,
                 clock: Callable[[], float] = time.time):
        self.config = config
        self.queue = queue
        self.bus = bus
        self.devices = devices
        self.clock = clock
        self._tasks: list[asyncio.Task] = []

    def follow(self) -> None:
        self.devices.on_connected.append(self._connected)
        self.bus.listen(self._heard)

    def spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        """Run `coroutine` as a task of this follower's, cancelled by `stop`."""
        self._tasks.append(asyncio.create_task(coroutine, name=name))

    async def stop(self) -> None:
        self.bus.unlisten(self._heard)
        if self._connected in self.devices.on_connected:
            self.devices.on_connected.remove(self._connected)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def _heard(self, events: list[Event]) -> None:
        raise NotImplementedError

    def _connected(self, device_id: str) -> None:
        raise NotImplementedError
