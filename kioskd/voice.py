"""Says each call in the hall: "请A012号到5号窗口办理", in the zone of the window that calls.

The queue's events drive the voice as they drive the boards, followed as
each commit publishes them (`EventBus.listen`): a call, a recall and (when
the hall words one) a transfer become an `Announcement` for the voice
device of the window's zone, or for every voice device when the window
names none. Each voice device has an `Announcer`: one queue, said one at a
time in the order of the calls, on a thread of its own (a player runs for
seconds; it must never hold up a call, an issue or the device's polls).
The same call again within `merge_s` is said once; an announcement that
could not begin within `max_age_s` of its call is dropped with an
`announcement.dropped` event rather than said late.

A call's words are handed to the driver to synthesise the moment the call
is heard, so the next announcement is ready while the current one plays;
and after each change to the lines, the tickets each window would call next
are synthesised ahead, so that a call is usually said from the cache.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from drivers.base import DeviceError
from drivers.voice.driver import Clip, Closed
from drivers.voice.speech import announcement

from .aio import within
from .config import Config
from .devices import DeviceNotReady, Supervised, Supervisor, Worker
from .events import EventBus, Follower
from .queue import Queue
from .records import Event

log = logging.getLogger("kioskd.voice")

SAID = {"ticket.called": "call", "ticket.recalled": "recall", "ticket.transferred": "transfer"}
# events after which the tickets the windows call next may have changed
LINES_CHANGED = frozenset({"ticket.issued", "ticket.called", "ticket.transferred",
                           "ticket.readmitted", "ticket.cancelled", "window.changed"})
AHEAD_AFTER_S = 0.2        # changes to the lines within this time make one pass
PLAY_MARGIN_S = 2.0        # past the player's own limit, its thread is given up on
RECENT = 8                 # announcements begun, kept to merge a repeat of them
AHEAD_REMEMBERED = 1000    # words asked for ahead, not asked for again


@dataclass(eq=False)
class Announcement:
    """Words to say, and what they are for."""

    kind: str                  # call, recall, transfer, test
    text: str                  # as a person reads it: 请A012号到5号窗口办理
    spoken: str                # as the engine is given it: 请A 零一二号到5号窗口办理
    at: float                  # when it was asked for (the call's time)
    ticket: str | None = None
    number: str = ""
    window: str | None = None
    clip: Future | None = None                  # the driver's synthesis, once asked
    generation: int = 0                         # ... of the engine opened that many times
    outcome: asyncio.Future | None = None       # a test waits on it

    def same_as(self, other: Announcement, within: float) -> bool:
        return (other.ticket == self.ticket and other.window == self.window
                and other.spoken == self.spoken and abs(self.at - other.at) <= within)


@dataclass(eq=False)
class Announcer:
    """One voice device's announcements, said one at a time in the order of the calls."""

    device: Supervised
    emit: Callable[[str, dict[str, Any]], Awaitable[None]]
    clock: Callable[[], float]
    queue: deque[Announcement] = field(default_factory=deque)
    recent: deque[Announcement] = field(default_factory=lambda: deque(maxlen=RECENT))
    current: Announcement | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"said": 0, "merged": 0,
                                                             "dropped": 0})
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    made_ahead: OrderedDict[str, None] = field(default_factory=OrderedDict)
    # called with the device's id and what it said as each announcement begins (metrics)
    on_said: list[Callable[[str, dict[str, Any]], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.settings = self.device.device.settings
        self.speaker = self._new_speaker()
        self._show()

    @property
    def id(self) -> str:
        return self.device.device.id

    # -- taking announcements ------------------------------------------------------

    def add(self, item: Announcement) -> bool:
        """Queue `item`; False when it repeats one queued or just begun (merged)."""
        for other in itertools.chain(self.queue, [self.current] if self.current else [],
                                     self.recent):
            if item.same_as(other, self.settings.merge_s):
                self.counts["merged"] += 1
                log.info("%s: %s %s at window %s merged with the same call %.1f s before",
                         self.id, item.kind, item.number, item.window, item.at - other.at)
                self._show()
                return False
        self.queue.append(item)
        self._prepare(item)
        self.wake.set()
        self._show()
        return True

    def ahead(self, spoken: str) -> None:
        """Synthesise words likely to be called soon, behind anything urgent (once:
        the head of a line stays the head through many changes to the lines)."""
        if not self.settings.ahead or not self.device.usable or spoken in self.made_ahead:
            return
        self.device.driver.prepare(spoken, urgent=False)
        self.made_ahead[spoken] = None
        if len(self.made_ahead) > AHEAD_REMEMBERED:
            self.made_ahead.popitem(last=False)

    async def test(self) -> dict[str, Any]:
        """The technician's test: the test words, queued like a call; what happened."""
        if not self.device.usable:
            raise DeviceNotReady(self.device.view())
        text, spoken = self.device.driver.test_words()
        item = Announcement("test", text, spoken, self.clock(),
                            outcome=asyncio.get_running_loop().create_future())
        self.add(item)
        outcome = await item.outcome
        if "dropped" in outcome:
            raise DeviceNotReady(self.device.view(), f"the test words were not said: "
                                                     f"{outcome['dropped']}")
        return outcome

    def _prepare(self, item: Announcement) -> None:
        if item.clip is None and self.device.usable:
            driver = self.device.driver
            item.clip, item.generation = driver.prepare(item.spoken, urgent=True), driver.generation

    # -- saying them -----------------------------------------------------------------

    async def run(self) -> None:
        while True:
            while not self.queue:
                self.wake.clear()
                await self.wake.wait()
            item = self.current = self.queue.popleft()
            self._show()
            try:
                outcome = await self._say(item)
            except Exception as exc:          # a bug must not silence the hall
                log.exception("%s: could not say %s", self.id, item.text)
                outcome = {"dropped": f"error: {exc}"}
            finally:
                self.current = None
                self.recent.append(item)
            if item.outcome is not None and not item.outcome.done():
                item.outcome.set_result(outcome)
            self._show()

    async def _say(self, item: Announcement) -> dict[str, Any]:
        clip = await self._clip(item)
        if isinstance(clip, str):
            return await self._drop(item, clip)
        if self._time_left(item) <= 0:
            return await self._drop(item, "it waited too long to begin")
        device = self.device
        driver = device.driver
        limit = clip.duration + device.device.timeout + PLAY_MARGIN_S
        try:
            outcome = await within(
                asyncio.wrap_future(self.speaker.submit(lambda: driver.play(clip))), limit)
        except TimeoutError:                  # play() stops its player itself; this is a bug
            self.speaker.stop()
            self.speaker = self._new_speaker()
            driver.player_problem = f"the player's thread did not return within {limit:.0f} s"
            outcome = {"played": False, "problem": driver.player_problem}
        self.counts["said"] += 1
        said = {"kind": item.kind, "text": item.text, "ticket": item.ticket,
                "number": item.number or None, "window": item.window,
                "waited_s": round(outcome.get("started_at", self.clock()) - item.at, 3),
                **driver.said(clip, outcome)}
        device.status.detail["last_announcement"] = said
        for listener in self.on_said:
            listener(self.id, said)
        await device.apply(driver.health())
        return said

    async def _clip(self, item: Announcement) -> Clip | str:
        """The item's clip from a working engine, or why there is none in time."""
        device = self.device
        while self._time_left(item) > 0:
            if not device.usable:
                await self._until_connected(item)
                continue
            self._prepare(item)
            try:
                # two tries of the engine, each under the device's timeout, and a margin
                return await within(asyncio.wrap_future(item.clip),
                                    2 * device.device.timeout + PLAY_MARGIN_S)
            except Closed:                     # closed meanwhile: ask the engine opened next
                if item.generation == device.driver.generation:
                    await self._until_connected(item)
                item.clip = None
            except (DeviceError, TimeoutError) as exc:
                error = str(exc) or "synthesis did not finish in time"
                await device.broken(error)
                return f"could not be synthesised: {error}"
        if not device.usable:
            return f"the voice device is {device.status.state.value}: {device.status.last_error}"
        return "it waited too long to begin"

    async def _until_connected(self, item: Announcement) -> None:
        """Wait for the device to (re)connect, at most as long as `item` may still wait."""
        self.connected.clear()
        with suppress(TimeoutError):
            await within(self.connected.wait(), max(self._time_left(item), 0))

    def _time_left(self, item: Announcement) -> float:
        return item.at + self.settings.max_age_s - self.clock()

    async def _drop(self, item: Announcement, reason: str) -> dict[str, Any]:
        self.counts["dropped"] += 1
        waited = round(self.clock() - item.at, 1)
        log.warning("%s: not said (%s after the call): %s — %s", self.id, f"{waited:g} s",
                    item.text, reason)
        await self.emit("announcement.dropped", {
            "device": self.id, "kind": item.kind, "ticket": item.ticket,
            "number": item.number or None, "window": item.window, "text": item.text,
            "waited_s": waited, "reason": reason})
        return {"dropped": reason, "text": item.text, "waited_s": waited}

    def _show(self) -> None:
        detail = self.device.status.detail
        detail["queue"] = len(self.queue)
        detail["saying"] = self.current.text if self.current else None
        detail.update(self.counts)

    def _new_speaker(self) -> Worker:
        return Worker(f"speaker-{self.id}")


class Voices(Follower):
    """Every voice device of the hall, fed from the event bus."""

    def __init__(self, config: Config, queue: Queue, bus: EventBus, devices: Supervisor,
                 clock: Callable[[], float] = time.time):
        super().__init__(config, queue, bus, devices, clock)
        self.announcers: dict[str, Announcer] = {}
        self.on_said: list[Callable[[str, dict[str, Any]], None]] = []   # see Announcer.on_said
        self._windows = {w.id: w for w in config.windows}
        self._lines_changed = asyncio.Event()

    async def start(self) -> None:
        for device_id, supervised in self.devices.devices.items():
            if supervised.device.driver != "voice" or supervised.driver is None:
                continue                           # not a voice, or disabled
            announcer = Announcer(supervised, self.devices.emit, self.clock,
                                  on_said=self.on_said)
            self.announcers[device_id] = announcer
            supervised.tester = announcer.test
            self.spawn(announcer.run(), f"voice {device_id}")
        if not self.announcers:
            return
        self.follow()
        self.spawn(self._ahead(), "voice ahead")

    async def stop(self) -> None:
        await super().stop()
        for announcer in self.announcers.values():
            announcer.speaker.stop()

    def zone(self, window_id: str | None) -> list[Announcer]:
        """The announcers that call `window_id`: its zone's, or every one."""
        window = self._windows.get(window_id or "")
        if window is not None and window.voice is not None:
            announcer = self.announcers.get(window.voice)
            return [announcer] if announcer else []
        return list(self.announcers.values())

    def _connected(self, device_id: str) -> None:
        announcer = self.announcers.get(device_id)
        if announcer is not None:
            announcer.connected.set()
            announcer.made_ahead.clear()
            self._lines_changed.set()          # make the likely calls with the new engine

    def _heard(self, events: list[Event]) -> None:
        for event in events:
            if event.type in SAID:
                try:
                    self._announce(event)
                except Exception:
                    log.exception("voice: could not follow event %d (%s)", event.id, event.type)
            if event.type in LINES_CHANGED:
                self._lines_changed.set()

    def _announce(self, event: Event) -> None:
        data = event.data
        kind = SAID[event.type]
        service = data.get("service_name", "")
        if kind == "transfer":
            where = data.get("from_window")
            target_window = self._windows.get(data.get("window") or "")
            target = target_window.name if target_window else service
        else:
            where = data.get("window")
            target = ""
        window = self._windows.get(where or "")
        window_name = data.get("window_name") or (window.name if window else "")
        for announcer in self.zone(where):
            settings = announcer.settings
            template = {"call": settings.template, "recall": settings.recall_template,
                        "transfer": settings.transfer}[kind]
            if not template:
                continue
            words = dict(number=data["number"], window=window_name, service=service,
                         target=target)
            announcer.add(Announcement(
                kind, template.format(**words), announcement(template, **words), event.at,
                ticket=data.get("ticket"), number=data["number"], window=where))

    async def _ahead(self) -> None:
        """After the lines change, synthesise what each window would call next."""
        while True:
            await self._lines_changed.wait()
            await asyncio.sleep(AHEAD_AFTER_S)
            self._lines_changed.clear()
            try:
                likely = await self.queue.next_calls()
            except Exception as exc:
                log.warning("voice: could not read the next calls: %s", exc)
                continue
            for window, ticket in likely:
                words = dict(number=ticket.number, window=window.name,
                             service=self.config.service_name(ticket.service), target="")
                for announcer in self.zone(window.id):
                    announcer.ahead(announcement(announcer.settings.template, **words))
