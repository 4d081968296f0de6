"""Window keypads acting on the queue: each press is its window's action, audited as the keypad's.

A keypad (drivers/keypad) is a client of the queue like the clerk's console:
it acts for its own window only, through the same queue operations, so what a
key does is refused exactly as the API refuses it (a paused window does not
call, a ticket is rated once, within its time). Every action is audited with
`Actor("keypad", window=..., device=...)`.

The drivers read keys on their own threads and hand each press to the loop;
one task here takes them in the order they came. Where the keypads take
answers, the keypad's display shows the number just called (or recalled) and
its buzzer beeps when a key could do nothing: nothing waiting, a refusal. A
rating keypad's display follows its window's events: when the window completes
a ticket it asks for a rating ("A012请评价"), when the ticket is rated (on the
keypad or the pad page) it thanks, and when the rating time is up it goes
blank. Each time a keypad bus (re)connects, its displays are written with the
present (a caller its window's ticket, a rater what it says now), as boards
are. An answer is written on the device's worker and never waited for: a dead
keypad bus never holds up the next press, a call or the API.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from drivers.keypad.reader import KeyPress

from .config import Config
from .devices import DeviceNotReady, Supervisor
from .events import EventBus
from .queue import Queue, QueueError
from .ratings import Ratings
from .records import Actor, Event, WindowState

log = logging.getLogger("kioskd.keypads")


class Keypads:
    """Every keypad device of the hall, acting on the queue."""

    def __init__(self, config: Config, queue: Queue, ratings: Ratings, bus: EventBus,
                 devices: Supervisor):
        self.config = config
        self.queue = queue
        self.ratings = ratings
        self.bus = bus
        self.devices = devices
        self.ids = {d.id for d in config.devices.values() if d.driver == "keypad" and d.enabled}
        # window -> its rating keypads that have a display: (device, address)
        self.raters: dict[str, list[tuple[str, int]]] = {}
        for device_id in sorted(self.ids):
            settings = config.devices[device_id].settings
            if getattr(settings, "answer", None) is None:
                continue
            for keypad in settings.keypads.values():
                if keypad.kind == "rater":
                    self.raters.setdefault(keypad.window, []).append((device_id, keypad.address))
        self._asking: dict[tuple[str, int], str] = {}     # rater -> the ticket it asks about
        self._saying: dict[tuple[str, int], str] = {}     # rater -> what its display says
        self._presses: asyncio.Queue[KeyPress] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._answers: set[asyncio.Task] = set()
        self._timers: dict[tuple[str, int], asyncio.TimerHandle] = {}

    async def start(self) -> None:
        if not self.ids:
            return
        self._loop = asyncio.get_running_loop()
        self._presses = asyncio.Queue()
        if self.raters:
            self.bus.listen(self._heard_events)
        self.devices.on_connected.append(self._connected)
        for device_id in self.ids:           # connected already, before we listened
            self._connected(device_id)
        self._task = asyncio.create_task(self._run(), name="keypads")

    async def stop(self) -> None:
        self.bus.unlisten(self._heard_events)
        for timer in self._timers.values():
            timer.cancel()
        if self._connected in self.devices.on_connected:
            self.devices.on_connected.remove(self._connected)
        tasks = [t for t in (self._task, *self._answers) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _connected(self, device_id: str) -> None:
        if device_id not in self.ids:
            return
        driver = self.devices.get(device_id).driver
        if driver is not None:
            driver.listen(self._heard)
        settings = self.config.devices[device_id].settings
        if getattr(settings, "answer", None) is not None:
            task = asyncio.create_task(self._restore(device_id), name=f"restore {device_id}")
            self._answers.add(task)
            task.add_done_callback(self._answers.discard)

    async def _restore(self, device_id: str) -> None:
        """A keypad bus (re)connected: its displays show the present, as boards do (a
        keypad that lost power, a daemon restarted): each caller its window's ticket,
        each rater what it asks or says now, or blank."""
        for keypad in self.config.devices[device_id].settings.keypads.values():
            rater = (device_id, keypad.address)
            if keypad.kind == "rater":
                text = self._saying.get(rater, "")
            else:
                try:
                    current = (await self.queue.window(keypad.window)).current
                except QueueError:
                    continue
                text = current.number if current is not None else ""
            self._show(device_id, keypad.address, text)

    def _heard(self, press: KeyPress) -> None:
        """On a keypad's reader thread: into the loop, in order."""
        try:
            self._loop.call_soon_threadsafe(self._presses.put_nowait, press)
        except RuntimeError:                 # the loop has closed: the daemon is stopping
            pass

    async def _run(self) -> None:
        while True:
            press = await self._presses.get()
            try:
                await self.act(press)
            except Exception:                # the store failed, a bug: the next press goes on
                log.exception("%s: %s at window %s failed", press.keypad, press.action,
                              press.window)
                self._answer(press, None)

    async def act(self, press: KeyPress) -> dict[str, Any]:
        """Do what the key says at its window; what came of it (kept in the device's
        detail as `last_action`)."""
        window, action = press.window, press.action
        actor = Actor("keypad", window=window, device=press.device)
        outcome: dict[str, Any] = {"keypad": press.address, "window": window,
                                   "action": str(action)}
        queue = self.queue
        # the actions on the window's current ticket: the ticket they leave
        on_ticket = {"call-next": queue.call_next, "recall": queue.recall,
                     "start": queue.start, "complete": queue.complete,
                     "no-show": queue.no_show}
        try:
            if action.kind in on_ticket:
                view = await on_ticket[action.kind](window, actor=actor)
                if view is None:                 # call-next with nothing waiting
                    outcome["result"] = "nothing waiting"
                else:
                    outcome["number"] = view.ticket.number
            elif action.kind in ("pause", "resume", "pause-resume"):
                resume = action.kind == "resume"
                if action.kind == "pause-resume":
                    resume = (await queue.window(window)).record.state is WindowState.PAUSED
                await (queue.resume if resume else queue.pause)(window, actor=actor)
                outcome["result"] = "resumed" if resume else "paused"
            elif action.kind == "transfer":
                view = await queue.transfer(window, action.service, None, actor=actor)
                outcome["number"] = view.ticket.number
            elif action.kind == "rate":
                rated = await self.ratings.rate_latest(window, action.level, "keypad",
                                                       actor=actor)
                outcome["number"] = rated.ticket.number
        except QueueError as refused:
            outcome["refused"] = str(refused)
            log.info("%s: %s at window %s refused: %s", press.keypad, action, window, refused)
        self._keep(press, outcome)
        shows = outcome.get("number") if action.kind in ("call-next", "recall") else None
        if shows is not None:
            self._answer(press, shows)
        elif "refused" in outcome or outcome.get("result") == "nothing waiting":
            self._answer(press, None)
        return outcome

    # -- the rating keypads' displays ---------------------------------------------------

    def _heard_events(self, events: list[Event]) -> None:
        """On the loop, with each commit's events: a completion asks the window's rating
        keypads for a rating, a rating thanks."""
        for event in events:
            if event.type not in ("ticket.done", "ticket.rated"):
                continue
            window_id = event.data.get("window")
            raters = self.raters.get(window_id or "")
            if not raters:
                continue
            if event.type == "ticket.done" and event.data.get("reason"):
                continue                         # a no-show is not rated
            window = self.config.window(window_id)
            for rater in raters:
                answer = self.config.devices[rater[0]].settings.answer
                ticket = event.data.get("ticket", "")
                if event.type == "ticket.done":
                    template = answer.rate_prompt
                    self._asking[rater] = ticket
                    self._clear_later(rater, ticket, self.ratings.within_s)
                elif self._asking.get(rater) == ticket:
                    template = answer.thanks
                else:
                    continue                     # rated after another ticket was done
                text = template.format(number=event.data.get("number", ""),
                                       window=window.name if window else window_id)
                self._saying[rater] = text
                self._show(rater[0], rater[1], text)

    def _clear_later(self, rater: tuple[str, int], ticket: str, after_s: float) -> None:
        """Blank the rater once `ticket`'s rating time is up, unless it asks about
        another ticket by then."""
        timer = self._timers.pop(rater, None)
        if timer is not None:
            timer.cancel()

        def clear() -> None:
            self._timers.pop(rater, None)
            if self._asking.get(rater) == ticket:
                del self._asking[rater]
                self._saying.pop(rater, None)
                self._show(rater[0], rater[1], "")
        self._timers[rater] = self._loop.call_later(after_s, clear)

    def _keep(self, press: KeyPress, outcome: dict[str, Any]) -> None:
        try:
            self.devices.get(press.device).status.detail["last_action"] = outcome
        except LookupError:
            pass

    def _answer(self, press: KeyPress, text: str | None) -> None:
        """Show `text` on the keypad's display, or beep (None), where it can."""
        if press.address is not None:
            self._show(press.device, press.address, text)

    def _show(self, device_id: str, address: int, text: str | None) -> None:
        """Show `text` on a keypad's display, or beep (None), where it can; never waited for."""
        settings = self.config.devices[device_id].settings
        if getattr(settings, "answer", None) is None:
            return
        try:
            outcome = self.devices.get(device_id).begin(
                (lambda driver: driver.beep(address)) if text is None
                else (lambda driver: driver.answer(address, text)))
        except DeviceNotReady:
            return                           # the bus is down: its state says so already
        task = asyncio.ensure_future(outcome)    # a task of its own: stop may cancel it unstarted
        self._answers.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Future) -> None:
        self._answers.discard(task)
        if not task.cancelled():
            task.exception()      # DeviceNotReady: logged by the supervisor as the device's state
