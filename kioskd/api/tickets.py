"""Routes for tickets: issue at a kiosk, look one up, reprint, cancel, re-admit."""

from __future__ import annotations

import asyncio

import qrcode
import qrcode.image.svg
from fastapi import APIRouter, Body, Request, Response, status

from ..printing import status_url
from ..queue import Invalid, Queue
from .deps import (GuardedRoute, actor, acts_as_token, any_window_or, check_terminal,
                   roles)
from .models import IssueRequest, Problem, ReprintRequest, TicketOut

router = APIRouter(tags=["tickets"], route_class=GuardedRoute)

ERRORS = {401: {"model": Problem}, 403: {"model": Problem}, 404: {"model": Problem},
          409: {"model": Problem}, 422: {"model": Problem}, 503: {"model": Problem}}
LIMITED = {429: {"model": Problem, "description": "Too many tickets from this terminal or "
                 "address ([limits]); `Retry-After` says when to ask again",
                 "headers": {"Retry-After": {"description": "seconds",
                                             "schema": {"type": "integer"}}}}}


@router.post("/tickets", status_code=status.HTTP_201_CREATED, response_model=TicketOut,
             responses={**ERRORS, **LIMITED}, dependencies=[roles("kiosk", "supervisor")],
             summary="Take a number")
async def issue(body: IssueRequest, request: Request) -> TicketOut:
    """Issue a ticket for a service. The ticket is committed to disk before this
    answers. With `terminal`, it is printed on that terminal's printer; a printer
    fault never fails the issue: `print.status` says what happened. Tickets from
    one terminal and from one client address are limited by the hall's [limits]
    (429 with `Retry-After`); a supervisor's token is not."""
    queue: Queue = request.app.state.queue
    if body.terminal is not None:
        check_terminal(queue.config, body.terminal)
    if not acts_as_token(request, "supervisor"):
        request.app.state.issue_limits.take(
            body.terminal, request.client.host if request.client else None)
    who = actor(request, body.terminal)
    view = await queue.issue(body.service, body.priority, body.terminal, actor=who)
    if body.terminal is not None and body.print:
        view = await request.app.state.printing.print_issued(view, body.terminal, who)
    return TicketOut.of(view, queue).answer(status.HTTP_201_CREATED)


@router.get("/tickets/{ticket_id}", response_model=TicketOut, responses=ERRORS,
            summary="A ticket and its place in line")
async def get_ticket(ticket_id: str, request: Request) -> TicketOut:
    queue: Queue = request.app.state.queue
    return TicketOut.of(await queue.ticket(ticket_id), queue).answer()


@router.get("/tickets/{ticket_id}/qr.svg", response_class=Response, responses={
                **ERRORS, 200: {"content": {"image/svg+xml": {}}}},
            summary="The QR code of the ticket's status page, as a picture")
async def ticket_qr(ticket_id: str, request: Request) -> Response:
    """What a kiosk shows when the ticket could not be printed: a phone scanning it
    opens `/ui/ticket/{id}`, the number and its place in line."""
    queue: Queue = request.app.state.queue
    view = await queue.ticket(ticket_id)            # 404 for an unknown ticket
    # ~7 ms of pure-Python encoding: not on the loop that answers calls and issues
    svg = await asyncio.to_thread(_qr_svg, status_url(queue.config, view.ticket.id))
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


def _qr_svg(text: str) -> str:
    image = qrcode.make(text, box_size=10, border=2, image_factory=qrcode.image.svg.SvgPathImage)
    return image.to_string(encoding="unicode")


@router.post("/tickets/{ticket_id}/cancel", response_model=TicketOut, responses=ERRORS,
             dependencies=[roles("kiosk", "technician", "supervisor")],
             summary="Cancel a waiting ticket")
async def cancel(ticket_id: str, request: Request) -> TicketOut:
    queue: Queue = request.app.state.queue
    return TicketOut.of(await queue.cancel(ticket_id, actor=actor(request)), queue).answer()


@router.post("/tickets/{ticket_id}/readmit", response_model=TicketOut, responses=ERRORS,
             dependencies=[any_window_or("kiosk", "supervisor")],
             summary="Put a no-show back in line")
async def readmit(ticket_id: str, request: Request) -> TicketOut:
    """A person who missed their call and comes back within the hall's
    `readmit_within_min` goes back in line after the next few waiting tickets
    of the service (`readmit_after`), not at the back."""
    queue: Queue = request.app.state.queue
    return TicketOut.of(await queue.readmit(ticket_id, actor=actor(request)), queue).answer()


@router.post("/tickets/{ticket_id}/reprint", response_model=TicketOut, responses=ERRORS,
             dependencies=[roles("kiosk", "technician", "supervisor")],
             summary="Print a ticket again")
async def reprint(ticket_id: str, request: Request,
                  body: ReprintRequest | None = Body(None)) -> TicketOut:
    queue: Queue = request.app.state.queue
    view = await queue.ticket(ticket_id)
    terminal = (body.terminal if body else None) or view.ticket.terminal
    if terminal is None:
        raise Invalid(f"{view.ticket.number} was not issued at a terminal; name one to print on")
    check_terminal(queue.config, terminal)
    printed = await request.app.state.printing.reprint(view, terminal, actor(request, terminal))
    return TicketOut.of(printed, queue).answer()
