"""Routes for a window: what its clerk presses all day, and what a supervisor opens."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query, Request, Response, status

from ..queue import Conflict, Queue
from .deps import GuardedRoute, actor, roles, window_role
from .models import (Problem, TicketOut, TransferRequest, WaitingTicket, WindowOut,
                     WindowWaitingOut)

router = APIRouter(tags=["windows"], route_class=GuardedRoute)

ERRORS = {401: {"model": Problem}, 403: {"model": Problem}, 404: {"model": Problem},
          409: {"model": Problem}, 422: {"model": Problem}}


async def on_this_daemon(w: str, request: Request) -> None:
    """409 when another daemon of the hall manages window `w` ([[windows]] instance):
    its clerk's console, board and keypad are on that daemon's floor, and a console
    pointed here by mistake says so instead of acting. A supervisor, who watches the
    whole hall, acts on any window from any daemon."""
    other = request.app.state.config.managed_elsewhere(w)
    if other is not None and actor(request).role != "supervisor":
        raise Conflict(f"窗口 {w} 由 {other} 楼层的服务程序管理，请使用该楼层的窗口终端 "
                       f"(window {w} is managed by the daemon of instance {other}; use the "
                       f"console it serves)", "other_instance", instance=other)


CLERK = window_role("supervisor")
# the clerk of window `w`, or a supervisor, on the daemon that manages the window
AT_WINDOW = [CLERK, Depends(on_this_daemon)]


@router.get("/windows", response_model=list[WindowOut], summary="Every window and its ticket")
async def windows(request: Request) -> list[WindowOut]:
    queue: Queue = request.app.state.queue
    return [WindowOut.of(v, queue) for v in await queue.windows()]


@router.get("/windows/{w}", response_model=WindowOut, responses=ERRORS, summary="One window")
async def window(w: str, request: Request) -> WindowOut:
    queue: Queue = request.app.state.queue
    return WindowOut.of(await queue.window(w), queue).answer()


@router.get("/windows/{w}/waiting", response_model=WindowWaitingOut, responses=ERRORS,
            summary="What this window would call next, in order")
async def waiting(w: str, request: Request,
                  limit: int = Query(20, ge=0, le=200, description="list at most this many")
                  ) -> WindowWaitingOut:
    """Priority tickets first, then the longest waiting, among the services the
    window serves and the tickets sent to it: the order call-next takes them."""
    queue: Queue = request.app.state.queue
    count, tickets = await queue.waiting_for(w, limit)
    return WindowWaitingOut(window=w, count=count, tickets=[
        WaitingTicket(id=t.id, number=t.number, service=t.service,
                      service_name=queue.config.service_name(t.service), priority=t.priority,
                      issued_at=queue.iso(t.issued_at), target_window=t.target_window)
        for t in tickets])


@router.get("/windows/{w}/access", responses=ERRORS, dependencies=AT_WINDOW,
            summary="May this token act at this window? (changes nothing)")
async def access(w: str, request: Request) -> dict:
    """200 when the token (or none, where the window has no token) may press this
    window's buttons; 401/403 with the reason otherwise. The clerk's console asks
    before it shows its buttons."""
    queue: Queue = request.app.state.queue
    await queue.window(w)                          # 404 for an unknown window
    return {"window": w, "allowed": True}


@router.post("/windows/{w}/call-next", response_model=TicketOut, dependencies=AT_WINDOW,
             responses={**ERRORS, 204: {"description": "nothing is waiting"}},
             summary="Call the next ticket")
async def call_next(w: str, request: Request):
    """Finish the window's current ticket, if any, then call the next one among
    the services it serves: priority tickets first, then the one waiting longest.
    204 when nothing is waiting; 409 when the window is paused or closed."""
    queue: Queue = request.app.state.queue
    asked = time.perf_counter()
    view = await queue.call_next(w, actor=actor(request))
    request.app.state.metrics.call_next.observe(time.perf_counter() - asked)
    if view is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return TicketOut.of(view, queue).answer()


@router.post("/windows/{w}/recall", response_model=TicketOut, responses=ERRORS,
             dependencies=AT_WINDOW, summary="Call the current ticket again")
async def recall(w: str, request: Request) -> TicketOut:
    queue: Queue = request.app.state.queue
    return TicketOut.of(await queue.recall(w, actor=actor(request)), queue).answer()


@router.post("/windows/{w}/start", response_model=TicketOut, responses=ERRORS,
             dependencies=AT_WINDOW, summary="The person arrived: start serving")
async def start(w: str, request: Request) -> TicketOut:
    queue: Queue = request.app.state.queue
    return TicketOut.of(await queue.start(w, actor=actor(request)), queue).answer()


@router.post("/windows/{w}/complete", response_model=TicketOut, responses=ERRORS,
             dependencies=AT_WINDOW, summary="Finish the current ticket")
async def complete(w: str, request: Request) -> TicketOut:
    queue: Queue = request.app.state.queue
    return TicketOut.of(await queue.complete(w, actor=actor(request)), queue).answer()


@router.post("/windows/{w}/no-show", response_model=TicketOut, responses=ERRORS,
             dependencies=AT_WINDOW, summary="Nobody came")
async def no_show(w: str, request: Request) -> TicketOut:
    queue: Queue = request.app.state.queue
    return TicketOut.of(await queue.no_show(w, actor=actor(request)), queue).answer()


@router.post("/windows/{w}/transfer", response_model=TicketOut, responses=ERRORS,
             dependencies=AT_WINDOW, summary="Send the current ticket to another service or window")
async def transfer(w: str, body: TransferRequest, request: Request) -> TicketOut:
    """The ticket queues again under its own number and keeps its original issue
    time, so the person does not go to the back of the line."""
    queue: Queue = request.app.state.queue
    return TicketOut.of(await queue.transfer(w, body.service, body.window,
                                                     actor=actor(request)), queue).answer()


@router.post("/windows/{w}/pause", response_model=WindowOut, responses=ERRORS,
             dependencies=AT_WINDOW, summary="Stop calling for a while")
async def pause(w: str, request: Request) -> WindowOut:
    queue: Queue = request.app.state.queue
    return WindowOut.of(await queue.pause(w, actor=actor(request)), queue).answer()


@router.post("/windows/{w}/resume", response_model=WindowOut, responses=ERRORS,
             dependencies=AT_WINDOW, summary="Call again after a pause")
async def resume(w: str, request: Request) -> WindowOut:
    queue: Queue = request.app.state.queue
    return WindowOut.of(await queue.resume(w, actor=actor(request)), queue).answer()


@router.post("/windows/{w}/open", response_model=WindowOut, responses=ERRORS,
             dependencies=[roles("supervisor")], summary="Open a window (temporary ones too)")
async def open_window(w: str, request: Request) -> WindowOut:
    queue: Queue = request.app.state.queue
    return WindowOut.of(await queue.open(w, actor=actor(request)), queue).answer()


@router.post("/windows/{w}/close", response_model=WindowOut, responses=ERRORS,
             dependencies=[roles("supervisor")], summary="Close a window")
async def close_window(w: str, request: Request) -> WindowOut:
    queue: Queue = request.app.state.queue
    return WindowOut.of(await queue.close(w, actor=actor(request)), queue).answer()
