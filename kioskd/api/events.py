"""The live event stream (Server-Sent Events), resumable with Last-Event-ID."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from ..events import EventBus
from ..queue import Queue
from ..records import Event
from .models import EventOut

router = APIRouter(tags=["events"])

PING_SECONDS = 15


@router.get("/events", summary="Live hall events (text/event-stream)",
            response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "one SSE message per event: `id`, `event` "
                             "(the type) and `data` (JSON: id, type, at, data)"}})
async def events(request: Request,
                 last_event_id: int | None = Header(None, alias="Last-Event-ID", ge=0),
                 since: int | None = Query(None, ge=0, description="same as Last-Event-ID, "
                                           "for clients that cannot set headers")):
    """Every change as it is committed: `ticket.issued`, `ticket.called`,
    `ticket.recalled`, `ticket.started`, `ticket.done`, `ticket.no_show`,
    `ticket.transferred`, `ticket.cancelled`, `ticket.readmitted`, `ticket.printed`,
    `ticket.rated`, `appointment.registered`, `appointment.cancelled`,
    `appointment.checked_in`, `window.changed`, `device.changed`, `alert` (raised,
    acknowledged, closed) and `announcement.dropped`. Ids increase. A
    client reconnecting with `Last-Event-ID` first receives everything it missed.
    Without it the stream starts with what happens next."""
    queue: Queue = request.app.state.queue
    bus: EventBus = request.app.state.bus
    resume_from = last_event_id if last_event_id is not None else since
    return EventSourceResponse(_stream(request, bus, queue, resume_from), ping=PING_SECONDS)


async def _stream(request: Request, bus: EventBus, queue: Queue,
                  resume_from: int | None) -> AsyncIterator[ServerSentEvent]:
    async with bus.subscribe() as live:        # subscribe first: nothing slips between
        if resume_from is not None and resume_from > bus.last_id:
            resume_from = None                 # an id from another database (restored,
                                               # reset): start afresh rather than stay silent
        sent = bus.last_id if resume_from is None else resume_from
        while resume_from is not None:
            missed = bus.since(sent)
            from_memory = missed is not None
            if not from_memory:                # older than memory: read the log
                missed = await queue.events_after(sent)
            for event in missed:
                yield _message(event, queue)
                sent = event.id
            if from_memory or not missed:
                break
        async for event in live:
            if event.id > sent:
                yield _message(event, queue)
                sent = event.id


def _message(event: Event, queue: Queue) -> ServerSentEvent:
    body = EventOut.of(event, queue).model_dump()
    return ServerSentEvent(id=str(event.id), event=event.type,
                           data=json.dumps(body, ensure_ascii=False, separators=(",", ":")))
