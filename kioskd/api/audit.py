"""Route for the audit log: who changed what and when, read by the supervisor only."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from ..queue import Queue
from ..records import AuditEntry
from .deps import GuardedRoute, read_day, roles
from .models import Problem

router = APIRouter(tags=["supervision"], route_class=GuardedRoute)

ERRORS = {401: {"model": Problem}, 403: {"model": Problem}, 422: {"model": Problem},
          503: {"model": Problem}}


class ActorOut(BaseModel):
    label: str = Field(description="`window:3`, `kiosk:kiosk_1`, `supervisor`, `system` ...",
                       examples=["window:3"])
    role: str = Field(description="kiosk, window, technician, supervisor, booking, evaluator, "
                                  "keypad, system", examples=["window"])
    window: str | None = Field(description="the clerk's (or keypad's) own window")
    terminal: str | None = Field(description="the touch terminal the request came through")
    device: str | None = None
    token: bool = Field(description="false: no token was given (an open role on a "
                                    "loopback-only daemon)")


class AuditOut(BaseModel):
    id: int
    at: str
    action: str = Field(description="what changed: the event (`ticket.called`, "
                                    "`window.changed`, `appointment.checked_in`, `alert`...) "
                                    "or the command (`device.test`, `device.reconnect`)",
                        examples=["ticket.called"])
    actor: ActorOut
    ticket: str | None
    window: str | None = Field(description="the window the change concerns")
    appointment: str | None
    alert: int | None
    device: str | None
    detail: dict = Field(description="what changed: number, service, status, window state, "
                                     "outcome ... never personal data")

    @classmethod
    def of(cls, e: AuditEntry, queue: Queue) -> AuditOut:
        a = e.actor
        return cls(id=e.id, at=queue.iso(e.at), action=e.action,
                   actor=ActorOut(label=a.label, role=a.role, window=a.window,
                                  terminal=a.terminal, device=a.device, token=a.token),
                   ticket=e.ticket, window=e.window, appointment=e.appointment, alert=e.alert,
                   device=e.device, detail=e.detail)


class AuditPage(BaseModel):
    date: str | None = Field(description="the hall's day read; null when a ticket was "
                                         "named without a day (all its days)")
    entries: list[AuditOut]
    next_after: int | None = Field(description="pass as `after` for the next page; null "
                                               "when this was the last")


@router.get("/audit", response_model=AuditPage, responses=ERRORS,
            dependencies=[roles("supervisor")],
            summary="The audit log of a day: every change, who made it, and what changed")
async def audit_log(request: Request,
                    day: str | None = Query(None, alias="date", examples=["2026-11-30"],
                                            description="YYYY-MM-DD, the hall's local date; "
                                            "default today (all days when `ticket` is given "
                                            "without a date)"),
                    window: str | None = Query(None, max_length=64,
                                               description="only changes at this window"),
                    ticket: str | None = Query(None, max_length=64,
                                               description="only changes of this ticket"),
                    actor: str | None = Query(None, max_length=80, examples=["window:3"],
                                              description="an actor's label (`window:3`, "
                                              "`kiosk:kiosk_1`) or a role (`supervisor`)"),
                    after: int = Query(0, ge=0, description="entries after this id (paging)"),
                    limit: int = Query(200, ge=1, le=1000)) -> AuditPage:
    """Entries in the order they were written. The log is append-only: there is no
    route that changes or deletes an entry, and the store refuses both (an entry
    younger than 180 days is never deleted; older ones go after `[audit]
    retention_days`)."""
    queue: Queue = request.app.state.queue
    read = None if day is None and ticket is not None else read_day(day, queue).isoformat()
    if read is None and not ticket:
        raise HTTPException(422, "name a date or a ticket")
    entries = await queue.store.read(lambda tx: tx.audit_entries(
        read, window=window, ticket=ticket, actor=actor, after_id=after, limit=limit + 1))
    more = len(entries) > limit
    entries = entries[:limit]
    return AuditPage(date=read, entries=[AuditOut.of(e, queue) for e in entries],
                     next_after=entries[-1].id if more else None)
