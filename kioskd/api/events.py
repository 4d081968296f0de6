"""The live event stream (Server-Sent Events), resumable with Last-Event-ID."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from functools import partial

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from ..events import EventBus, Subscription
from ..queue import Queue
from ..records import Event
from .models import EventOut, Problem

router = APIRouter(tags=["events"])

PING_SECONDS = 15
# A client that has not taken one write in this long is gone (a display unplugged
# without a FIN); one that falls SUBSCRIBER_BACKLOG events behind is dropped by the bus.
SEND_TIMEOUT_S = 30
FULL_RETRY_S = 10       # what a client turned away because the streams are full is told
RENDERED = 4096         # events kept encoded (a display resuming from further back re-encodes)
STOPPING_GRACE_S = 2    # a stopping server lets each stream end itself this long


@router.get("/events", summary="Live hall events (text/event-stream)",
            response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "one SSE message per event: `id`, `event` "
                             "(the type) and `data` (JSON: id, type, at, data)"},
                       503: {"model": Problem, "description": "[server] event_clients "
                             "streams are open already; `Retry-After` says when to try again"}})
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
    Without it the stream starts with what happens next. At most the hall's
    `[server] event_clients` streams are open at once; one more is answered 503."""
    queue: Queue = request.app.state.queue
    bus: EventBus = request.app.state.bus
    cap = queue.config.server.event_clients
    if bus.subscriber_count >= cap:
        return JSONResponse({"detail": f"the hall's {cap} event streams are all open "
                             "([server] event_clients); try again later",
                             "reason": "event_clients_full"},
                            status_code=503, headers={"Retry-After": str(FULL_RETRY_S)})
    resume_from = last_event_id if last_event_id is not None else since
    live = bus.join()           # subscribed (and counted) at once: nothing slips between,
                                # and many displays reconnecting together meet an exact cap
    stopping = anyio.Event()    # set by sse-starlette as the server begins to stop
    return _Stream(_stream(bus, queue, live, resume_from), ping=PING_SECONDS,
                   send_timeout=SEND_TIMEOUT_S, leave=lambda: bus.leave(live),
                   shutdown_event=stopping, shutdown_grace_period=STOPPING_GRACE_S,
                   data_sender_callable=partial(_end_when, stopping, live))


async def _end_when(stopping: anyio.Event, live: Subscription) -> None:
    """The server is stopping: end the stream, so that its response completes and
    the display sees the stream end, rather than cut off (which uvicorn logs as an
    ERROR on every stop with a display connected)."""
    await stopping.wait()
    live.end()


class _Stream(EventSourceResponse):
    """An event stream that leaves the bus however it ends: finished, dropped as a
    laggard, timed out on a send, disconnected, or never started."""

    def __init__(self, *args, leave: Callable[[], None], **kwargs):
        super().__init__(*args, **kwargs)
        self._leave = leave

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._leave()


async def _stream(bus: EventBus, queue: Queue, live: Subscription,
                  resume_from: int | None) -> AsyncIterator[bytes]:
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
            yield _message(event, queue, bus)
            sent = event.id
        if from_memory or not missed:
            break
    async for event in live:
        if event.id > sent:
            yield _message(event, queue, bus)
            sent = event.id


def _message(event: Event, queue: Queue, bus: EventBus) -> bytes:
    """The event as one SSE message, encoded once however many displays are reading:
    with 500 of them, encoding per stream was most of a call's cost on the loop."""
    rendered = bus.rendered.get(event.id)
    if rendered is None:
        body = EventOut.of(event, queue).model_dump()
        rendered = ServerSentEvent(id=str(event.id), event=event.type, data=json.dumps(
            body, ensure_ascii=False, separators=(",", ":"))).encode()
        if len(bus.rendered) >= RENDERED:
            del bus.rendered[next(iter(bus.rendered))]      # the oldest
        bus.rendered[event.id] = rendered
    return rendered
