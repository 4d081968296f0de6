"""Routes for the early warnings: the alerts open now or of a day, and acknowledging one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import Field

from ..alerts import acknowledge_alert
from ..queue import Queue, day_bounds
from ..records import AlertRecord
from ..store import Tx
from .deps import GuardedRoute, actor, acts_as, read_day, roles
from .models import Answer, Problem

router = APIRouter(tags=["supervision"], route_class=GuardedRoute)

ERRORS = {401: {"model": Problem}, 403: {"model": Problem}, 404: {"model": Problem},
          409: {"model": Problem}, 422: {"model": Problem}, 503: {"model": Problem}}
STATES = ("open", "all")


class AlertOut(Answer):
    id: int
    kind: str = Field(description="wait, paused, load, serve, bad_rating, or a device's: "
                                  "paper_near_end, paper_out, cover_open, offline, ...",
                      examples=["load"])
    state: str = Field(description="open, acknowledged or closed")
    key: str = Field(description="the condition: one open alert per key",
                     examples=["load:property"])
    device: str | None = Field(None, examples=["printer_1"])
    window: str | None = None
    service: str | None = Field(None, examples=["property"])
    ticket: str | None = None
    message: str = Field(examples=["不动产登记：每个开放窗口平均 14 人等候，建议开放 9号窗口（临时）"])
    detail: dict[str, Any] = Field(default_factory=dict, examples=[{
        "waiting": 28, "open_windows": 2, "per_window": 14.0, "waiting_per_window": 10,
        "suggest_window": "9", "suggest_window_name": "9号窗口", "suggest_temporary": True}])
    raised_at: str
    acked_at: str | None = None
    acked_by: str | None = Field(None, description="who acknowledged it", examples=["supervisor"])
    closed_at: str | None = None
    closed_by: str | None = Field(None, description="`system` when its condition ended",
                                  examples=["system"])

    @classmethod
    def of(cls, a: AlertRecord, queue: Queue) -> AlertOut:
        return cls(id=a.id, kind=a.kind, state=a.state, key=a.key, device=a.device,
                   window=a.window, service=a.service, ticket=a.ticket, message=a.message,
                   detail=a.detail, raised_at=queue.iso(a.raised_at),
                   acked_at=queue.iso(a.acked_at), acked_by=a.acked_by,
                   closed_at=queue.iso(a.closed_at), closed_by=a.closed_by)


@router.get("/alerts", response_model=list[AlertOut], responses=ERRORS,
            dependencies=[roles("technician", "supervisor")],
            summary="The alerts open now, or all of a day's, newest first")
async def alerts(request: Request,
                 state: str = Query("open", description="`open`: open and acknowledged "
                                    "alerts, whenever raised; `all`: every alert raised on "
                                    "`date`, whatever its state"),
                 day: str | None = Query(None, alias="date", examples=["2026-11-30"],
                                         description="with state=all: YYYY-MM-DD, the hall's "
                                                     "local date; default today")):
    """Open alerts are those not yet closed, acknowledged or not. Each alert is raised
    once when its condition starts and closed by the system (`closed_by: system`) when
    it ends; see `GET /events` (`alert`) for each change as it happens."""
    queue: Queue = request.app.state.queue
    if state not in STATES:
        raise HTTPException(422, f"state: '{state[:40]}' is not one of {', '.join(STATES)}")
    if state == "open":
        if day is not None:
            raise HTTPException(422, "date: goes with state=all (the alerts open now have "
                                     "no date)")
        found = await queue.store.read(lambda tx: tx.open_alert_records())
    else:
        start, end = day_bounds(read_day(day, queue), queue.tz)
        found = await queue.store.read(lambda tx: tx.alerts_between(start, end))
    body = "[" + ",".join(AlertOut.of(a, queue).model_dump_json() for a in found) + "]"
    return Response(body, media_type="application/json")


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertOut, responses=ERRORS,
             dependencies=[roles("supervisor", "technician")],
             summary="Say the alert has been seen and is being dealt with")
async def acknowledge(request: Request, alert_id: str):
    """Records who (`acked_by`: the token's role) and when (`acked_at`); the alert
    stays open until its condition ends. An alert with no condition to end it (a
    bad rating, `bad_rating`) is closed by its acknowledgement. A supervisor
    acknowledges any alert, a technician a device's only (403 otherwise). 404: no
    such alert; 409: it is closed, or was acknowledged already (the answer says by
    whom)."""
    queue: Queue = request.app.state.queue
    number = int(alert_id) if alert_id.isascii() and alert_id.isdigit() else None
    found = await queue.store.read(lambda tx: tx.alert(number)) if number is not None else None
    if found is None:
        raise HTTPException(404, f"no alert '{alert_id[:40]}'")
    who = actor(request)
    if found.device is None and not acts_as(request, "supervisor"):
        raise HTTPException(403, "a technician acknowledges device alerts only; this one "
                                 "is for the hall supervisor")

    def op(tx: Tx, now: float) -> AlertRecord:
        return acknowledge_alert(tx, now, number, who, queue.clock_text)
    return AlertOut.of(await queue.run(op, actor=who), queue).answer()
