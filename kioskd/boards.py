"""Keeps every call board showing what the hall is doing now: each window's number, the latest calls.

The queue's events drive the boards, followed as each commit publishes them
(`EventBus.listen`): `ticket.called` puts the number on the
board over that window (flashing for the board's `flash_s` where it can, then
steady) and at the top of every hall board; pause, close, finish and transfer
change the window's board too. Each board has a `Feed`: the screen it should
show and a task that puts it there through the device's supervisor, so a
slow or dead board never holds up another, a call, or the API. A feed writes
only the latest screen (a burst of calls costs one write per board, not one
per call), and writes again whenever its device (re)connects, so a board that
lost power or was unplugged comes back showing the present, not the past.
A board's write starts on its device's worker straight from the listener,
once per commit, so a burst of calls does not queue it behind the requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from drivers.board import Display, Line, Screen, blank, fill, plain

from .config import Config, Window
from .devices import DeviceNotReady, Supervised, Supervisor
from .events import CALLS, EventBus, Follower
from .queue import Queue
from .records import AT_WINDOW, Event, WindowState

log = logging.getLogger("kioskd.boards")



@dataclass
class AtWindow:
    """What a window's board needs to know about the window."""

    state: WindowState = WindowState.CLOSED
    ticket: str | None = None          # the ticket called or served there
    number: str = ""
    service: str = ""                  # its service's name
    flash_until: float = 0.0


@dataclass(frozen=True)
class Call:
    """A line of the hall board: a ticket called to a window."""

    ticket: str
    number: str
    window: str                        # the window's name: 5号窗口
    service: str
    day: str
    at: float


@dataclass(eq=False)
class Feed:
    """One board: the screen it should show, and the task that puts it there.
    A new screen for an idle board is handed to the device's worker at once
    (from the event listener: no turn of the loop in between); the task awaits
    the outcome and writes the latest screen again if it changed meanwhile."""

    device: Supervised
    display: Display
    wanted: Screen = ()
    shown: Screen | None = None        # what the board was last seen to take
    dirty: asyncio.Event = field(default_factory=asyncio.Event)
    running: bool = False              # the feed's task has started
    writing: tuple[Screen, Awaitable[dict]] | None = None     # a write under way

    def __post_init__(self) -> None:
        self.device.status.detail["should_show"] = plain(self.wanted)

    def want(self, screen: Screen) -> bool:
        """Ask for `screen`; True when that changes what the board should show."""
        if screen == self.wanted:
            return False
        self.wanted = screen
        self.device.status.detail["should_show"] = plain(screen)
        self.dirty.set()
        return True

    def start_writing(self) -> None:
        """Hand the latest screen to the device's worker now, unless a write is
        under way (the task writes it next) or the task has not started."""
        if self.running and self.writing is None:
            self.writing = self._begin()
            self.dirty.set()

    def reconnected(self) -> None:
        self.shown = None
        self.dirty.set()

    def _begin(self) -> tuple[Screen, Awaitable[dict]] | None:
        screen = self.wanted
        if screen == self.shown or not self.device.usable:
            return None                    # an offline board is written when it reconnects
        try:
            return screen, self.device.begin(lambda driver: driver.show(screen))
        except DeviceNotReady:
            return None

    async def run(self) -> None:
        self.running = True
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            if self.writing is None:
                self.writing = self._begin()
            if self.writing is None:
                continue
            screen, outcome = self.writing
            try:
                shows = await outcome
            except DeviceNotReady as exc:
                self.shown = None
                log.debug("%s: not shown now: %s", self.device.device.id, exc)
                continue
            finally:
                self.writing = None
            self.shown = screen
            self.device.status.detail.update(shows)     # what the driver says the board took
            if self.wanted != screen:
                self.dirty.set()


class Boards(Follower):
    """Every board of the hall, fed from the event bus."""

    def __init__(self, config: Config, queue: Queue, bus: EventBus, devices: Supervisor,
                 clock: Callable[[], float] = time.time):
        super().__init__(config, queue, bus, devices, clock)
        self.windows: dict[str, AtWindow] = {}
        self.calls: list[Call] = []                  # newest first, one per ticket,
        self.hall_lines = 0                          # as many as the tallest hall board shows
        self.window_feeds: dict[str, Feed] = {}      # window id -> the board over it
        self.hall_feeds: list[Feed] = []
        self.feeds: dict[str, Feed] = {}             # device id -> feed
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._early: list[Event] | None = None    # events heard while the present loads
        self._changed: set[Feed] = set()            # feeds whose screen the events changed
        self._window_config = {w.id: w for w in config.windows}

    # -- running -------------------------------------------------------------

    async def start(self) -> None:
        for device_id, supervised in self.devices.devices.items():
            display = getattr(supervised.device.settings, "display", None)
            if display is None or supervised.driver is None:
                continue                           # not a board, or disabled
            feed = self.feeds[device_id] = Feed(supervised, display, blank(display.lines))
            if display.shows == "hall":
                self.hall_feeds.append(feed)
                self.hall_lines = max(self.hall_lines, display.lines)
        for window in self.config.windows:
            if window.board in self.feeds:
                self.window_feeds[window.id] = self.feeds[window.board]
        if not self.feeds:
            return
        self._early = []
        self.follow()
        self.spawn(self._load_then_feed(), "boards")
        self.spawn(self._at_midnight(), "boards midnight")

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        await super().stop()

    def _connected(self, device_id: str) -> None:
        feed = self.feeds.get(device_id)
        if feed is not None:
            feed.reconnected()

    def _heard(self, events: list[Event]) -> None:
        """A commit's events as they are published, on the loop: the boards follow
        at once, not a turn of the loop later behind a burst of requests, and
        each board changed by them starts its write (one, with all of the
        commit applied: a call that finishes a ticket and calls the next is
        one write, not a blank and then the number)."""
        if self._early is not None:
            self._early.extend(events)
            return
        for event in events:
            try:
                self.apply(event)
            except Exception:
                log.exception("boards: could not follow event %d (%s)", event.id, event.type)
        changed, self._changed = self._changed, set()
        for feed in changed:
            feed.start_writing()

    async def _load_then_feed(self) -> None:
        while True:
            try:
                await self._load()
                break
            except Exception:
                log.exception("boards: could not read the hall's state; trying again")
                await asyncio.sleep(1)
        for device_id, feed in self.feeds.items():   # after the load: no blank flicker
            self.spawn(feed.run(), f"board {device_id}")

    async def _load(self) -> None:
        """The present: each window's state and ticket, and today's latest calls;
        then the events published meanwhile that it does not include."""
        views, last_id = await self.queue.windows_as_of()
        now = self.clock()
        for view in views:
            ticket = view.current
            self.windows[view.window.id] = AtWindow(
                view.record.state, ticket.id if ticket else None,
                ticket.number if ticket else "",
                self.config.service_name(ticket.service) if ticket else "")
        latest = self.bus.latest_calls(self.queue.start_of_day(now), self.hall_lines,
                                       up_to=last_id)
        self.calls = [call for event in latest if (call := self._call(event))]
        self._render_all()
        early, self._early = self._early or [], None
        self._heard([event for event in early if event.id > last_id])

    async def _at_midnight(self) -> None:
        """Yesterday's calls leave the hall boards at local midnight."""
        while True:
            now = self.clock()
            await asyncio.sleep(max(self.queue.next_midnight(now) - now + 1, 1))
            self._render_all()

    # -- what boards should show -----------------------------------------------

    def apply(self, event: Event) -> None:
        """Bring the model up to `event` and re-render the boards it touches."""
        data = event.data
        now = self.clock()
        touched: set[str] = set()
        if event.type in CALLS:
            window_id = data["window"]
            at = self.windows.setdefault(window_id, AtWindow(WindowState.OPEN))
            at.ticket, at.number = data["ticket"], data["number"]
            at.service = data.get("service_name", "")
            feed = self.window_feeds.get(window_id)
            if feed is not None and feed.display.can_flash and feed.display.flash_s > 0:
                at.flash_until = now + feed.display.flash_s
                self._later(f"window {window_id}", feed.display.flash_s,
                            lambda: self._render_window(window_id))
            touched.add(window_id)
            call = self._call(event)
            if call is not None:
                others = [c for c in self.calls if c.ticket != call.ticket]
                self.calls = [call, *others][:self.hall_lines]   # weeks of calls: never more
                self._render_hall(now)
                flash = max((f.display.flash_s for f in self.hall_feeds
                             if f.display.can_flash), default=0)
                if flash > 0:
                    self._later("hall", flash, lambda: self._render_hall(self.clock()))
        elif event.type == "ticket.started":
            at = self.windows.get(data.get("window"))
            if at is not None and at.ticket == data["ticket"]:
                at.flash_until = 0.0
                touched.add(data["window"])
        elif event.type == "window.changed":
            at = self.windows.setdefault(data["window"], AtWindow())
            at.state = WindowState(data["state"])
            touched.add(data["window"])
        elif event.type.startswith("ticket."):
            # done, no-show, cancelled, transferred: the ticket has left its window
            for key in ("window", "from_window"):
                window_id = data.get(key)
                at = self.windows.get(window_id) if window_id else None
                if at is not None and at.ticket == data.get("ticket") and \
                        data.get("status") not in AT_WINDOW:
                    self.windows[window_id] = AtWindow(at.state)
                    touched.add(window_id)
        for window_id in touched:
            self._render_window(window_id)

    def _render_all(self) -> None:
        for window_id in self.window_feeds:
            self._render_window(window_id)
        self._render_hall(self.clock())

    def _render_window(self, window_id: str) -> None:
        feed = self.window_feeds.get(window_id)
        if feed is not None:
            self._want(feed, window_screen(feed.display, self._window_config[window_id],
                                           self.windows.get(window_id, AtWindow()),
                                           self.clock()))

    def _render_hall(self, now: float) -> None:
        today = self.queue.day_of(now)
        calls = [call for call in self.calls if call.day == today]
        for feed in self.hall_feeds:
            self._want(feed, hall_screen(feed.display, calls, now))

    def _want(self, feed: Feed, screen: Screen) -> None:
        if feed.want(screen):
            self._changed.add(feed)

    def _later(self, key: str, delay: float, render: Callable[[], None]) -> None:
        """Render again after `delay` (a flash ends); a newer call replaces the timer."""
        if key in self._timers:
            self._timers[key].cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(delay + 0.01, render)

    def _call(self, event: Event) -> Call | None:
        data = event.data
        window = self._window_config.get(data.get("window", ""))
        if window is None:
            return None
        return Call(data["ticket"], data["number"], window.name,
                    data.get("service_name", ""), self.queue.day_of(event.at), event.at)


def window_screen(display: Display, window: Window, at: AtWindow, now: float) -> Screen:
    """What the board over `window` shows: the number called or served there,
    the paused text, the idle text, or the closed text."""
    if at.state is WindowState.CLOSED:
        template, flash = display.closed, False
    elif at.state is WindowState.PAUSED:
        template, flash = display.paused, False
    elif at.ticket is not None:
        template, flash = display.calling, display.can_flash and now < at.flash_until
    else:
        template, flash = display.idle, False
    text = fill(template, number=at.number, window=window.name, service=at.service)
    lines = [Line(display.fit(part), flash and bool(part)) for part in text.split("\n")]
    return _exactly(lines, display.lines)


def hall_screen(display: Display, calls: list[Call], now: float) -> Screen:
    """The latest calls, newest first, one a line; the newest flashes a while."""
    lines = []
    for position, call in enumerate(calls[:display.lines]):
        text = fill(display.hall_line, number=call.number, window=call.window,
                    service=call.service)
        flash = position == 0 and display.can_flash and now < call.at + display.flash_s
        lines.append(Line(display.fit(text), flash))
    return _exactly(lines, display.lines)


def _exactly(lines: list[Line], count: int) -> Screen:
    lines = lines[:count]
    return tuple(lines) + blank(count - len(lines))

