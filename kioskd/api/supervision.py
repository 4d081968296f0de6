"""Routes for hall management: statistics."""

from __future__ import annotations

import re
from datetime import date
from functools import partial

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from ..queue import Queue
from ..stats import DayStats, Minutes, Tally, day_stats
from .deps import GuardedRoute, roles
from .models import Answer, Problem

router = APIRouter(tags=["supervision"], route_class=GuardedRoute)

ERRORS = {401: {"model": Problem}, 403: {"model": Problem}, 422: {"model": Problem},
          503: {"model": Problem}}
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


# -- shapes ------------------------------------------------------------------------------

class MinutesOut(BaseModel):
    """Durations in minutes (0.1): nearest-rank p50 and p90, and the longest;
    null when there were none."""

    p50: float | None = Field(examples=[6.5])
    p90: float | None = Field(examples=[18.2])
    max: float | None = Field(examples=[41.0])

    @classmethod
    def of(cls, m: Minutes) -> MinutesOut:
        return cls(p50=m.p50, p90=m.p90, max=m.max)


class Counts(BaseModel):
    issued: int = Field(description="numbers taken for it that day")
    served: int = Field(description="tickets done")
    no_show: int = Field(description="tickets that ended as no-shows")
    cancelled: int = Field(description="tickets cancelled by a person")
    transferred: int = Field(description="transfers away from it that day")
    waiting: int = Field(description="still in line (a past day: left in line at day end)")
    at_window: int = Field(description="called or being served now")
    wait_min: MinutesOut = Field(description="issue to first call")
    service_min: MinutesOut = Field(description="start (or call) to finish, served tickets")

    @classmethod
    def fields_of(cls, t: Tally) -> dict:
        return dict(issued=t.issued, served=t.served, no_show=t.no_show,
                    cancelled=t.cancelled, transferred=t.transferred, waiting=t.waiting,
                    at_window=t.at_window, wait_min=MinutesOut.of(t.wait_min),
                    service_min=MinutesOut.of(t.service_min))


class ServiceStats(Counts):
    id: str
    name: str


class WindowStats(BaseModel):
    id: str
    name: str
    served: int = Field(description="tickets done at this window")
    no_show: int = Field(description="tickets that ended as no-shows at this window")
    transferred: int = Field(description="transfers made from this window")
    service_min: MinutesOut

    @classmethod
    def of(cls, window_id: str, name: str, t: Tally) -> WindowStats:
        return cls(id=window_id, name=name, served=t.served, no_show=t.no_show,
                   transferred=t.transferred, service_min=MinutesOut.of(t.service_min))


class HourStats(BaseModel):
    hour: int = Field(ge=0, le=23, description="the hall's local hour", examples=[9])
    issued: int
    called: int = Field(description="calls made (a ticket called again after a transfer "
                                    "or re-admission counts again)")
    wait_p50_min: float | None = Field(description="of the tickets first called this hour")
    wait_max_min: float | None


class StatsOut(Answer):
    date: str = Field(examples=["2026-11-30"])
    services: list[ServiceStats] = Field(description="every configured service")
    windows: list[WindowStats] = Field(description="every configured window")
    hours: list[HourStats] = Field(description="the hours with an issue or a call, ascending")
    totals: Counts

    @classmethod
    def of(cls, stats: DayStats, queue: Queue) -> StatsOut:
        config = queue.config
        return cls(
            date=stats.date,
            services=[ServiceStats(id=s.id, name=s.name, **Counts.fields_of(stats.services[s.id]))
                      for s in config.services],
            windows=[WindowStats.of(w.id, w.name, stats.windows[w.id]) for w in config.windows],
            hours=[HourStats(hour=h.hour, issued=h.issued, called=h.called,
                             wait_p50_min=h.wait_min.p50, wait_max_min=h.wait_min.max)
                   for h in stats.hours],
            totals=Counts(**Counts.fields_of(stats.totals)))


# -- routes ------------------------------------------------------------------------------

def _day(text: str | None, queue: Queue) -> date:
    if text is None:
        return date.fromisoformat(queue.day_of(queue.clock()))
    try:
        if ISO_DATE.fullmatch(text) and (day := date.fromisoformat(text)) < date.max:
            return day                           # (the last date has no next midnight)
    except ValueError:
        pass
    shown = text if len(text) <= 40 else text[:40] + "…"
    raise HTTPException(422, f"date: '{shown}' is not a date kioskd can read; use YYYY-MM-DD, "
                        "e.g. 2026-11-30")


@router.get("/stats", response_model=StatsOut, responses=ERRORS,
            dependencies=[roles("supervisor")],
            summary="A day's counts, waiting and service times per service, window and hour")
async def stats(request: Request,
                day: str | None = Query(None, alias="date", examples=["2026-11-30"],
                                        description="YYYY-MM-DD, the hall's local date; "
                                                    "default today")
                ) -> StatsOut:
    """Every configured service and window is listed, zeros included; a day without
    tickets answers zeros and nulls. Minutes are rounded to 0.1; p50 and p90 are
    nearest-rank percentiles; null when there was nothing to measure.

    - **issued**: numbers of that day, under the service they were issued for.
    - **served / no_show / cancelled / waiting / at_window**: how each ticket stands
      now, under its service (and window) at the end. `served` = done (a ticket
      still at a window when the day was closed counts as served, without a service
      time); a re-admitted no-show counts by how it ended the second time;
      `cancelled` = cancelled by a person; `waiting` = in line now, or for a past
      day left in line when the day was closed; `at_window` = called or serving now.
      So `issued` = served + no_show + cancelled + waiting + at_window in `totals`.
    - **transferred**: transfers made that day (`ticket.transferred` events), under
      the service and window the ticket left.
    - **wait_min**: first call − issue time of the tickets called that day, counted
      once per ticket: a transferred or re-admitted ticket keeps its issue time and
      is called again, and that later call is not a second wait. Under the service
      it was first called for.
    - **service_min**: finish − start (− call when never started) of served tickets.
    - **hours**: the hall's local hours: `issued` by issue time, `called` every call
      made in the hour (later calls of a ticket included), the waits by the hour of
      the first call.
    """
    queue: Queue = request.app.state.queue
    figures = await queue.store.read(partial(day_stats, config=queue.config,
                                             day=_day(day, queue)))
    return StatsOut.of(figures, queue).answer()
