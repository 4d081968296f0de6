"""Evaluation (好差评): the one rating a citizen gives a completed ticket on the window's
pad, within `[evaluation] within_s` of its completion — the rules, without HTTP.

A ticket may be rated once, at the window that completed it, while the time lasts:
anything else is refused with a reason the citizen can read on the pad. A rating of
不满意 or 非常不满意 raises a `bad_rating` alert for the supervisor in the same
transaction as the rating itself.

What the pad should show is found in memory: the window's latest `ticket.done` event
on the bus (the rating time is minutes at most, far inside the bus's history), then
that one ticket and its rating are read by key. No table is scanned.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import alerts
from .config import Window
from .events import EventBus
from .queue import Conflict, Invalid, NotFound, Queue
from .records import SYSTEM, Actor, Rating, Status, Ticket
from .store import Tx


@dataclass(frozen=True)
class Level:
    level: int
    name: str
    name_en: str


# Best first: the order the pad shows them in.
LEVELS = (
    Level(5, "非常满意", "Very satisfied"),
    Level(4, "满意", "Satisfied"),
    Level(3, "基本满意", "Fairly satisfied"),
    Level(2, "不满意", "Dissatisfied"),
    Level(1, "非常不满意", "Very dissatisfied"),
)
LEVEL = {level.level: level for level in LEVELS}
GOOD = frozenset({5, 4, 3})        # 好评 under the State Council's 好差评 rules
BAD = frozenset({2, 1})            # 差评: these raise a bad_rating alert for the supervisor
DONE_EVENTS_LOOKED_AT = 2_000      # the bus's latest completions read back, at most


class RatingRefused(Conflict):
    """A rating the rules refuse (409). `reason` names the rule for a program (the pad
    says it in the citizen's language): `not_done`, `no_show`, `cancelled`, `day_end`,
    `other_window`, `rated`, `late`; and for a keypad, which names no ticket, `none`."""

    def __init__(self, reason: str, message: str):
        super().__init__(message, reason)


@dataclass(frozen=True)
class Pending:
    """The ticket a window's pad should ask about now, and the seconds left to rate it."""

    ticket: Ticket
    remaining_s: float


@dataclass(frozen=True)
class Rated:
    """A rating just taken, with the ticket it rates."""

    rating: Rating
    ticket: Ticket


class Ratings:
    """Takes ratings at the windows: what a pad should show (`pending`) and one
    rating (`rate`), each one transaction of the queue's (`Queue.run`)."""

    def __init__(self, queue: Queue, bus: EventBus):
        self.queue = queue
        self.bus = bus
        self.config = queue.config

    @property
    def within_s(self) -> float:
        return self.config.evaluation.within_s

    async def pending(self, window_id: str) -> Pending | None:
        """The window's most recently completed ticket while it can still be rated:
        None when there is none, it was rated, or its time is over."""
        return await self.queue.look(self._pending, window_id)

    async def rate(self, window_id: str, ticket_id: str, level: int, source: str = "pad",
                   actor: Actor = SYSTEM) -> Rated:
        """Record `level` for the ticket at its window, as given by `actor` (the audit
        log's); `source` says through what: "pad", "keypad", ..."""
        return await self.queue.run(self._rate, window_id, ticket_id, level, source,
                                    actor=actor)

    async def rate_latest(self, window_id: str, level: int, source: str,
                          actor: Actor = SYSTEM) -> Rated:
        """Rate the window's most recently completed ticket, as a rating keypad does:
        it knows no ticket. Refused as `rate` refuses it (rated already, too late),
        or with `none` when the window has completed nothing the bus remembers."""
        return await self.queue.run(self._rate_latest, window_id, level, source, actor=actor)

    # -- the rules ----------------------------------------------------------------------

    def _latest_done(self, window_id: str, since_at: float = 0.0) -> str | None:
        """The ticket of the window's latest completion (not a no-show) on the bus."""
        done = self.bus.recent(("ticket.done",), DONE_EVENTS_LOOKED_AT, since_at=since_at)
        latest = next((e for e in done if e.data.get("window") == window_id
                       and not e.data.get("reason")), None)
        return latest.data.get("ticket", "") if latest else None

    def _rate_latest(self, tx: Tx, now: float, window_id: str, level: int,
                     source: str) -> Rated:
        self._window(window_id)
        ticket_id = self._latest_done(window_id)
        if ticket_id is None:
            raise RatingRefused("none", "本窗口还没有办结的业务，无法评价")
        return self._rate(tx, now, window_id, ticket_id, level, source)

    def _pending(self, tx: Tx, now: float, window_id: str) -> Pending | None:
        self._window(window_id)
        latest = self._latest_done(window_id, now - self.within_s)
        if latest is None:
            return None
        ticket = tx.ticket(latest)
        if ticket is None or self._refusal(tx, ticket, window_id, now) is not None:
            return None                 # only the latest: once rated, the pad rests
        return Pending(ticket, self._remaining(ticket, now))

    def _rate(self, tx: Tx, now: float, window_id: str, ticket_id: str, level: int,
              source: str) -> Rated:
        window = self._window(window_id)
        if isinstance(level, bool) or not isinstance(level, int) or level not in LEVEL:
            raise Invalid(f"level must be a whole number from 1 to 5 "
                          f"({', '.join(f'{v.level} {v.name}' for v in LEVELS)}), "
                          f"not {level!r}")
        ticket = tx.ticket(ticket_id)
        if ticket is None:
            raise NotFound(f"没有这张票（'{ticket_id}'），无法评价")
        refusal = self._refusal(tx, ticket, window_id, now)
        if refusal is not None:
            raise refusal
        rating = Rating(ticket=ticket.id, day=ticket.day, window=window.id,
                        service=ticket.service, level=level, at=now, source=source)
        tx.insert_rating(rating)
        tx.emit("ticket.rated", now, {
            "ticket": ticket.id, "number": ticket.number, "service": ticket.service,
            "service_name": self.config.service_name(ticket.service),
            "window": window.id, "window_name": window.name,
            "level": level, "level_name": LEVEL[level].name})
        if level in BAD:
            alerts.raise_alert(
                tx, now, key=f"rating:{ticket.id}", kind="bad_rating",
                window=window.id, service=ticket.service, ticket=ticket.id,
                message=f"{window.name} {ticket.number}"
                        f"（{self.config.service_name(ticket.service)}）评价：{LEVEL[level].name}",
                detail={"level": level, "number": ticket.number})
        return Rated(rating, ticket)

    def _refusal(self, tx: Tx, ticket: Ticket, window_id: str,
                 now: float) -> RatingRefused | None:
        """Why `ticket` cannot be rated at `window_id` now, or None when it can: it must
        have been completed (not a no-show, not cancelled, not closed at day end), at
        this window, not yet rated, and no longer ago than `within_s`."""
        number = ticket.number
        if ticket.status in (Status.WAITING, Status.CALLED, Status.SERVING):
            where = "还在排队" if ticket.status is Status.WAITING else "正在窗口办理"
            return RatingRefused("not_done", f"{number} {where}，办结后才能评价")
        if ticket.status is Status.NO_SHOW:
            return RatingRefused("no_show", f"{number} 未到窗口办理（已记为未到），不能评价")
        if ticket.status is Status.CANCELLED:
            return RatingRefused("cancelled", f"{number} 已取消，不能评价")
        if ticket.closed_by == "day_end":
            return RatingRefused("day_end", f"{number} 未在窗口办结（当日结束时关闭），不能评价")
        if ticket.window != window_id:
            other = self.config.window(ticket.window or "")
            name = other.name if other else f"{ticket.window} 号窗口"
            return RatingRefused("other_window",
                                 f"{number} 是在{name}办结的，只能在该窗口评价")
        if tx.rating(ticket.id) is not None:
            return RatingRefused("rated", "已评价，每次服务只能评价一次")
        if self._remaining(ticket, now) < 0:
            return RatingRefused("late", f"评价时间已过（办结后 {self.within_s:g} 秒内可评价）")
        return None

    def _remaining(self, ticket: Ticket, now: float) -> float:
        return self.within_s - (now - (ticket.finished_at or 0.0))

    def _window(self, window_id: str) -> Window:
        window = self.config.window(window_id)
        if window is None:
            raise NotFound(f"没有窗口 '{window_id}'")
        return window
