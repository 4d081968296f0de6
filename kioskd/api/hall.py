"""Routes for the hall at a glance: the service catalogue and the queue."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..queue import Queue
from .models import QueueOut, ServiceLine, ServiceOut, WindowOut

router = APIRouter(tags=["hall"])


@router.get("/services", response_model=list[ServiceOut],
            summary="The service catalogue with guides, waiting counts and estimated wait")
async def services(request: Request) -> list[ServiceOut]:
    """One catalogue for the kiosk, the ticket and any website: name, standard
    item code, materials, time limit and fee, with how many are waiting now."""
    queue: Queue = request.app.state.queue
    return [ServiceOut.of(queue.config, load) for load in await queue.load()]


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
