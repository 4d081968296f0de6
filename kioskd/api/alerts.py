"""Routes for the early warnings: the alerts open now, and acknowledging one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from ..queue import Queue
from .deps import GuardedRoute, roles
from .models import Problem

router = APIRouter(tags=["supervision"], route_class=GuardedRoute)

ERRORS = {401: {"model": Problem}, 403: {"model": Problem}, 404: {"model": Problem},
          409: {"model": Problem}, 422: {"model": Problem}, 503: {"model": Problem}}


class AlertOut(BaseModel):
    id: int
    kind: str = Field(examples=["paper_near_end"])
    state: str = Field(description="open, acknowledged or closed")
    device: str | None = Field(examples=["printer_1"])
    window: str | None = None
    service: str | None = None
    ticket: str | None = None
    message: str = Field(examples=["paper near end"])
    raised_at: str
    acked_at: str | None = None
    acked_by: str | None = None
    closed_at: str | None = None
    closed_by: str | None = None


@router.get("/alerts", response_model=list[AlertOut], responses=ERRORS,
            dependencies=[roles("technician", "supervisor")],
            summary="The alerts open now, newest first")
async def alerts(request: Request) -> list[AlertOut]:
    queue: Queue = request.app.state.queue
    found = await queue.store.read(lambda tx: tx.open_alert_records())
    return [AlertOut(id=a.id, kind=a.kind, state=a.state, device=a.device, window=a.window,
                     service=a.service, ticket=a.ticket, message=a.message,
                     raised_at=queue.iso(a.raised_at), acked_at=queue.iso(a.acked_at),
                     acked_by=a.acked_by, closed_at=queue.iso(a.closed_at),
                     closed_by=a.closed_by) for a in found]
