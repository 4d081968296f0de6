"""Routes for the hall at a glance: its name and clock, the service catalogue, the
queue and the latest calls."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from ..events import EventBus
from ..queue import Queue
from .models import CallOut, HallOut, QueueOut, ServiceLine, ServiceOut, WindowOut

router = APIRouter(tags=["hall"])

@router.get("/hall", response_model=HallOut, summary="The hall: name, clock, kiosk categories")
async def hall(request: Request) -> HallOut:
    queue: Queue = request.app.state.queue
    now = queue.clock()
    return HallOut.of(queue.config, queue.day_of(now), queue.iso(now))


@router.get("/services", response_model=list[ServiceOut],
            summary="The service catalogue with guides, waiting counts and estimated wait")
async def services(request: Request) -> list[ServiceOut]:
    """One catalogue for the kiosk, the ticket and any website: name, standard
    item code, materials, time limit, fee and where to go, with how many are
    waiting now and which windows serve it."""
    queue: Queue = request.app.state.queue
    _day, loads, windows = await queue.overview()
    return [ServiceOut.of(queue.config, load, windows) for load in loads]


@router.get("/queue", response_model=QueueOut, summary="Waiting per service, and every window")
async def hall_queue(request: Request) -> QueueOut:
    queue: Queue = request.app.state.queue
    day, loads, windows = await queue.overview()
    lines = [ServiceLine(id=l.service, name=queue.config.service(l.service).name,
                         waiting=l.waiting, open_windows=l.open_windows,
                         est_wait_min=l.est_wait_min,
                         minutes_per_ticket=round(l.minutes_per_ticket, 1)) for l in loads]
    return QueueOut(day=day, waiting=sum(l.waiting for l in loads),
                    services=lines, windows=[WindowOut.of(v, queue) for v in windows])


@router.get("/calls", response_model=list[CallOut], summary="Today's latest calls, newest first")
async def calls(request: Request,
                limit: int = Query(10, ge=1, le=50, description="at most this many")
                ) -> list[CallOut]:
    """One entry per ticket, its latest call or recall: what a hall display shows
    when it starts, before the event stream brings the next ones."""
    queue: Queue = request.app.state.queue
    bus: EventBus = request.app.state.bus
    found = []
    for event in bus.latest_calls(queue.start_of_day(queue.clock()), limit):
        data = event.data
        window = queue.config.window(data["window"])
        found.append(CallOut(event_id=event.id, ticket=data["ticket"], number=data["number"],
                             service=data["service"], service_name=data.get("service_name", ""),
                             window=data["window"],
                             window_name=data.get("window_name") or (window.name if window else ""),
                             at=queue.iso(event.at), recalled=event.type == "ticket.recalled"))
    return found
