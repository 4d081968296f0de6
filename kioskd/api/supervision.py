"""Routes for hall management: statistics for a day or a range of days, as JSON or CSV."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ..queue import Queue
from ..ratings import LEVELS
from ..stats import (MAX_DAYS, Figures, Minutes, Tally, csv_text, figures_of_days, merged,
                     minutes)
from .deps import GuardedRoute, read_day, roles
from .models import Answer, Problem

router = APIRouter(tags=["supervision"], route_class=GuardedRoute)

ERRORS = {401: {"model": Problem}, 403: {"model": Problem}, 422: {"model": Problem},
          503: {"model": Problem}}


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


class RatingsOut(BaseModel):
    """The evaluations (好差评) of the tickets: 5 非常满意, 4 满意, 3 基本满意, 2 不满意,
    1 非常不满意."""

    by_level: dict[str, int] = Field(description="ratings per level, \"5\" … \"1\"",
                                     examples=[{"5": 30, "4": 8, "3": 2, "2": 1, "1": 0}])
    rated: int = Field(description="ratings given")
    good: int = Field(description="好评: levels 3–5")
    bad: int = Field(description="差评: levels 1–2")
    satisfaction: float | None = Field(description="good / rated, 4 decimals; null when "
                                                   "nothing was rated", examples=[0.9756])

    @classmethod
    def of(cls, t: Tally) -> RatingsOut:
        return cls(by_level={str(v.level): t.ratings[v.level - 1] for v in LEVELS},
                   rated=t.rated, good=t.good, bad=t.bad, satisfaction=t.satisfaction)


class Counts(BaseModel):
    issued: int = Field(description="numbers taken for it")
    called: int = Field(description="calls made (a ticket called again after a transfer or "
                                    "a re-admission counts again)")
    served: int = Field(description="tickets done")
    no_show: int = Field(description="tickets that ended as no-shows")
    cancelled: int = Field(description="tickets cancelled by a person")
    transferred: int = Field(description="transfers away from it")
    waiting: int = Field(description="still in line (a past day: left in line at day end)")
    at_window: int = Field(description="called or being served now")
    wait_min: MinutesOut = Field(description="issue to first call")
    service_min: MinutesOut = Field(description="start (or call) to finish, served tickets")
    ratings: RatingsOut

    @classmethod
    def fields_of(cls, t: Tally) -> dict:
        return dict(issued=t.issued, called=t.called, served=t.served, no_show=t.no_show,
                    cancelled=t.cancelled, transferred=t.transferred, waiting=t.waiting,
                    at_window=t.at_window, wait_min=MinutesOut.of(t.wait_min),
                    service_min=MinutesOut.of(t.service_min), ratings=RatingsOut.of(t))


class ServiceStats(Counts):
    id: str
    name: str


class WindowStats(BaseModel):
    id: str
    name: str
    called: int = Field(description="calls made at this window")
    served: int = Field(description="tickets done at this window")
    no_show: int = Field(description="tickets that ended as no-shows at this window")
    transferred: int = Field(description="transfers made from this window")
    wait_min: MinutesOut = Field(description="issue to first call, of the tickets this "
                                             "window called first")
    service_min: MinutesOut
    open_min: float = Field(description="minutes open", examples=[412.5])
    serving_min: float = Field(description="minutes with a ticket called or being served "
                                           "at it", examples=[371.0])
    paused_min: float = Field(description="minutes paused", examples=[35.2])
    ratings: RatingsOut

    @classmethod
    def of(cls, window_id: str, name: str, t: Tally) -> WindowStats:
        return cls(id=window_id, name=name, called=t.called, served=t.served,
                   no_show=t.no_show, transferred=t.transferred,
                   wait_min=MinutesOut.of(t.wait_min), service_min=MinutesOut.of(t.service_min),
                   open_min=minutes(t.open_s), serving_min=minutes(t.serving_s),
                   paused_min=minutes(t.paused_s), ratings=RatingsOut.of(t))


class HourStats(BaseModel):
    hour: int = Field(ge=0, le=23, description="the hall's local hour", examples=[9])
    issued: int = Field(description="numbers issued (arrivals); a range adds its days up")
    called: int = Field(description="calls made (a ticket called again after a transfer "
                                    "or re-admission counts again)")
    wait_p50_min: float | None = Field(description="of the tickets first called this hour")
    wait_p90_min: float | None
    wait_max_min: float | None


class StatsOut(Answer):
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    date: str | None = Field(examples=["2026-11-30"],
                             description="the day; null for a range of several days")
    first: str = Field(alias="from", examples=["2026-11-30"])
    last: str = Field(alias="to", examples=["2026-11-30"])
    days: int = Field(description="days in the range", examples=[1])
    days_from_summaries: int = Field(description="days read from their kept summaries")
    days_computed: int = Field(description="days computed from the tickets for this answer "
                                           "(today, a day not yet over, a day not yet "
                                           "summarised, which is then kept)")
    services: list[ServiceStats] = Field(description="every configured service")
    windows: list[WindowStats] = Field(description="every configured window")
    hours: list[HourStats] = Field(description="the hours with an issue or a call, ascending")
    totals: Counts

    @classmethod
    def of(cls, f: Figures, queue: Queue) -> StatsOut:
        config = queue.config
        return cls(
            date=f.first if f.first == f.last else None, first=f.first, last=f.last,
            days=f.days, days_from_summaries=f.from_summaries, days_computed=f.computed,
            services=[ServiceStats(id=s.id, name=s.name, **Counts.fields_of(f.service(s.id)))
                      for s in config.services],
            windows=[WindowStats.of(w.id, w.name, f.window(w.id)) for w in config.windows],
            hours=[HourStats(hour=h.hour, issued=h.issued, called=h.called,
                             wait_p50_min=(m := h.wait_min).p50, wait_p90_min=m.p90,
                             wait_max_min=m.max)
                   for h in f.busy_hours()],
            totals=Counts(**Counts.fields_of(f.totals)))


# -- routes ------------------------------------------------------------------------------

DAY_QUERY = Query(None, alias="date", examples=["2026-11-30"],
                  description="YYYY-MM-DD, the hall's local date; default today")
FROM_QUERY = Query(None, alias="from", examples=["2026-11-01"],
                   description="the first day of a range (with `to`), YYYY-MM-DD")
TO_QUERY = Query(None, alias="to", examples=["2026-11-30"],
                 description=f"the last day of a range, included; at most {MAX_DAYS} days")


def _days(queue: Queue, day: str | None, first: str | None, last: str | None
          ) -> tuple[date, date]:
    """The days asked for: `date`, or `from` … `to`; today when none is given."""
    if first is None and last is None:
        one = read_day(day, queue)
        return one, one
    if day is not None:
        raise HTTPException(422, "give either date, or from and to, not both")
    if first is None or last is None:
        missing = "from" if first is None else "to"
        raise HTTPException(422, f"{missing}: a range needs both from and to (YYYY-MM-DD)")
    begin, end = read_day(first, queue, "from"), read_day(last, queue, "to")
    if begin > end:
        raise HTTPException(422, f"from ({begin}) is after to ({end})")
    if (end - begin).days + 1 > MAX_DAYS:
        raise HTTPException(422, f"a range is at most {MAX_DAYS} days; {begin} … {end} is "
                            f"{(end - begin).days + 1}")
    return begin, end


@router.get("/stats", response_model=StatsOut, responses=ERRORS,
            dependencies=[roles("supervisor")],
            summary="A day's or a range's counts, times, window time and ratings per "
                    "service, window and hour")
async def stats(request: Request, day: str | None = DAY_QUERY,
                first: str | None = FROM_QUERY, last: str | None = TO_QUERY) -> StatsOut:
    """`?date=YYYY-MM-DD` for a day (default today) or `?from=…&to=…` for a range of
    at most 366 days, both included; a range adds its days up. Every configured
    service and window is listed, zeros included; a day without tickets answers zeros
    and nulls. Minutes are rounded to 0.1; p50 and p90 are nearest-rank percentiles,
    exact over a range too; null when there was nothing to measure. A finished day is
    read from its kept summary; today is computed live.

    - **issued**: numbers of those days, under the service they were issued for.
    - **called**: calls made, under the service and window of each call (a ticket
      called again after a transfer or a re-admission counts again).
    - **served / no_show / cancelled / waiting / at_window**: how each ticket stands
      now, under its service (and window) at the end. `served` = done (a ticket
      still at a window when the day was closed counts as served, without a service
      time); a re-admitted no-show counts by how it ended the second time;
      `cancelled` = cancelled by a person; `waiting` = in line now, or for a past
      day left in line when the day was closed; `at_window` = called or serving now.
      So `issued` = served + no_show + cancelled + waiting + at_window in `totals`.
    - **transferred**: transfers made (`ticket.transferred` events), under the
      service and window the ticket left.
    - **wait_min**: first call − issue time, counted once per ticket: a transferred
      or re-admitted ticket keeps its issue time and is called again, and that later
      call is not a second wait. Under the service it was first called for and the
      window that first called it.
    - **service_min**: finish − start (− call when never started) of served tickets.
    - **open_min / paused_min** (windows): time in that state, from the window's
      state when the day began and its `window.changed` events; today up to now.
      **serving_min**: time a ticket was called or being served at it.
    - **ratings**: per level, `rated`, `good` (levels 3–5), `bad` (1–2) and
      `satisfaction` = good / rated, of the tickets of those days, under the window
      and service rated.
    - **hours**: the hall's local hours: `issued` by issue time, `called` every call
      made in the hour, the waits by the hour of the first call.

    422: a date that is not YYYY-MM-DD, `date` with `from`/`to`, only one of `from`
    and `to`, `from` after `to`, or more than 366 days.
    """
    queue: Queue = request.app.state.queue
    first_day, last_day = _days(queue, day, first, last)
    days = await figures_of_days(queue, first_day, last_day)
    # a year's days merge in about 0.1 s: off the loop, with the answer's JSON
    return await asyncio.to_thread(_answer, days, queue)


def _answer(days: list[Figures], queue: Queue) -> Response:
    return StatsOut.of(merged(queue.config, days), queue).answer()


@router.get("/stats.csv", responses={**ERRORS, 200: {"content": {"text/csv": {}},
                                                      "description": "the CSV file"}},
            dependencies=[roles("supervisor")], response_class=Response,
            summary="The statistics as a CSV file: per day or for the whole range")
async def stats_csv(request: Request, day: str | None = DAY_QUERY,
                    first: str | None = FROM_QUERY, last: str | None = TO_QUERY,
                    by: Literal["day", "range"] = Query(
                        "day", description="`day`: rows for each day; `range`: rows for "
                                           "the whole range")) -> Response:
    """UTF-8 with a byte-order mark (Excel reads the Chinese names right), one header
    row, then for each day (`by=day`, `date` = YYYY-MM-DD) or for the whole range
    (`by=range`, `date` = FROM/TO) one row for the hall (`scope` = hall), one per
    configured service and one per window. Columns: date, scope, id, name, issued,
    called, served, no_show, cancelled, transferred, waiting, at_window, wait_p50_min,
    wait_p90_min, wait_max_min, service_p50_min, service_p90_min, service_max_min,
    open_min, serving_min, paused_min, rated, level_5 … level_1, good, bad,
    satisfaction — defined as in GET /stats. Empty cells: what does not apply (a
    window issues, cancels and holds in line nothing; only windows have window time)
    and times with nothing measured. Same 422s as GET /stats."""
    queue: Queue = request.app.state.queue
    first_day, last_day = _days(queue, day, first, last)
    days = await figures_of_days(queue, first_day, last_day)
    text = await asyncio.to_thread(csv_text, queue.config, days, by == "range")
    name = f"kioskd-stats-{first_day}_{last_day}.csv"
    return Response(text.encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})

